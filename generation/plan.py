"""`mmat generate --dry-run`: what a run would do, before any teacher call is paid for.

Reads the sources and the checkpoint, probes which operator backends are available, and writes
nothing: no dataset folder, no work folder, no operator cache.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig
from generation.runner import RunOptions, make_plan, resolve_work_dir, worker_name

# Rough size of one teacher call, for the cost estimate only (prompt with one image + history).
EST_PROMPT_TOKENS = 1500
EST_COMPLETION_TOKENS = 250


def describe_plan(config: PipelineConfig, options: RunOptions) -> str:
    from operators.registry import build_operators

    work_dir = resolve_work_dir(config, Path(options.out_dir))
    checkpoint = Checkpoint(work_dir, worker=worker_name(options), readonly=True)
    plan = make_plan(config, options, checkpoint)
    by_source = Counter(s.source for s in plan.todo)
    questions = sum(len(s.qas) for s in plan.todo)
    # per question: up to max_steps steps, general (+math) reflection, final answer
    calls_per_question = config.rationale.max_steps + (2 if config.rationale.reflection else 0) + 1
    calls = questions * calls_per_question + (len(plan.todo) if config.teacher.judge else 0)
    teacher = config.teacher
    cost = 0.0
    if teacher.kind == "openai":
        cost = calls * (EST_PROMPT_TOKENS * teacher.prices.prompt_per_1m
                        + EST_COMPLETION_TOKENS * teacher.prices.completion_per_1m) / 1e6
    operators = build_operators(config.operators, None)  # no cache: a dry run creates no folder
    lines = [
        f"plan for {options.out_dir} (worker {options.shard_index + 1} of {options.num_shards})",
        "sources: " + ", ".join(f"{s.kind} ({s.path or s.hub_id})" for s in config.sources),
        f"samples: {plan.total} in this slice, {plan.skipped} done before, {len(plan.todo)} to run, "
        f"{len(plan.foundation_failures)} already failing the foundation stage",
        "to run per source: " + (", ".join(f"{k}={v}" for k, v in sorted(by_source.items())) or "none"),
        f"operators available: {', '.join(operators.available) or 'none'}",
    ]
    lines += [f"operator unavailable: {name}: {why}" for name, why in operators.unavailable.items()]
    model = "offline-annotations" if teacher.kind == "offline" else teacher.model
    if teacher.kind == "llamacpp" and teacher.model_path and not teacher.base_url:
        from generation.teachers.llamacpp import model_alias

        model = f"{model_alias(teacher.model_path)}, a llama.cpp server the run starts"
    lines += [
        f"teacher: {teacher.kind} ({model}{', ' + teacher.base_url if teacher.base_url else ''}), "
        f"concurrency {config.runner.max_concurrency or teacher.max_concurrency}",
        f"estimated teacher calls: up to {calls:,} ({questions} questions x {calls_per_question}"
        + (f" + {len(plan.todo)} judge calls)" if config.teacher.judge else ")"),
        f"estimated cost: up to ${cost:,.2f}" + (" (offline teacher: free)" if teacher.kind == "offline" else
                                                  " (local model: free)" if teacher.kind == "llamacpp" else
                                                  f" at ~{EST_PROMPT_TOKENS}+{EST_COMPLETION_TOKENS} tokens per call"),
        f"work folder: {work_dir}",
    ]
    return "\n".join(lines)
