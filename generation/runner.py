"""The run: plan, process every sample (resumably), rebuild the folder, decide the exit code.

`run_generation` is the one way a run goes, whichever engine executes the samples: it checks the
flags and the folders, holds this worker's checkpoint, plans (`generation.plan`), starts a local
llama.cpp server for `teacher.kind: llamacpp`, checks the teacher's key, hands the plan to an
executor, then rebuilds the shards and the card from the checkpoint (`generation.shards`) and judges
the quarantine rate. The local executor is here (`execute_locally`: one process, one event loop,
`samples_in_flight` samples at once through `generation.processor.SampleProcessor`); the Ray
executor (`generation.ray_engine`) plugs into the same place. Both record outcomes through
`generation.progress.recording`.

Guarantees: each finished sample is durable (fsync'd) before it counts; a rerun of the same config
skips finished and quarantined ids; `retry` re-runs only the quarantined ones. What dooms the whole
run stops it early, with one line: an unwritable dataset, work or cache folder and a teacher key the
endpoint rejects are found before the first paid call (`generation.preflight`); a rejected key, a
refused model or an exhausted quota met mid-run stops it at the first occurrence (`TeacherFatalError`:
no new sample starts, the sample is not quarantined, finished ones stay). A run whose every sample
failed exits 3 whatever the allowed quarantine rate.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Iterable, Optional

from generation.checkpoint import Checkpoint, QuarantineRecord
from generation.config import ConfigError, PipelineConfig
from generation.folder_lock import run_lock
from generation.plan import (Plan, RunOptions, in_worker_slice, make_plan, operator_cache_dir, resolve_work_dir,
                             worker_name)
from generation.processor import SampleProcessor, build_engine_parts, is_fatal, run_stopped
from generation.sample_worker import longest_first
from generation.progress import RunSummary, progress_log, recording
from generation.schema import Sample, TeacherUsage
from generation.shards import CardWriter, RollingShards, rebuild_folder, writer_settings
from generation.teachers.base import TeacherFatalError
from generation.teachers.offline import MODEL_NAME as OFFLINE_MODEL
from generation.writer import clean_stale_temps

log = logging.getLogger("mmat.runner")

QUARANTINE_EXIT_CODE = 3
Executor = Callable[[PipelineConfig, RunOptions, Checkpoint, Plan, RunSummary], None]


async def process_all(samples: Iterable[Sample], processor: SampleProcessor, concurrency: int,
                      on_done: Callable[[Optional[TeacherUsage], Optional[QuarantineRecord]], None]) -> None:
    """At most `concurrency` samples at once, longest first within a window (`longest_first`); results
    are reported as they finish. One task per sample in flight, never one per sample planned."""
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()

    async def one(sample: Sample) -> None:
        try:
            usage, record = await processor.process(sample)
        finally:
            slots.release()
        if not is_fatal(record):
            on_done(usage, record)

    for sample in longest_first(samples, window=concurrency):
        await slots.acquire()
        if processor.fatal is not None:  # the run is stopping: start nothing new
            slots.release()
            break
        task = asyncio.create_task(one(sample))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    if processor.fatal is not None:
        raise run_stopped(processor.fatal)


async def _run_async(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint, plan: Plan,
                     summary: RunSummary) -> None:
    teacher, operators = build_engine_parts(config, checkpoint.dir)
    processor = SampleProcessor(config, teacher, operators, checkpoint)
    with recording(plan, checkpoint, summary, options.quiet) as on_done:
        try:
            await process_all(plan.todo, processor, config.samples_in_flight, on_done)
        finally:
            await processor.aclose()
    summary.operator_executions = operators.executions


def execute_locally(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint, plan: Plan,
                    summary: RunSummary) -> None:
    """The local engine: one process, one event loop, `samples_in_flight` samples at once; with
    `runner.processes` > 1, that many generation processes (`generation.process_engine`)."""
    if config.runner.processes > 1:
        from generation.process_engine import execute_in_processes

        execute_in_processes(config, options, checkpoint, plan, summary)
        return
    asyncio.run(_run_async(config, options, checkpoint, plan, summary))


def check_options(config: PipelineConfig, options: RunOptions) -> None:
    """What the config and the flags must say before a run starts; one line each (exit 2)."""
    if not config.sources:
        raise ConfigError("sources: the list is empty; add at least one source (see configs/demo.yaml)")
    if options.limit is not None and options.limit < 0:
        raise ConfigError(f"--limit must be 0 or more, not {options.limit}")
    if not 0 <= options.shard_index < options.num_shards:
        raise ConfigError(f"--shard-index must be from 0 to {options.num_shards - 1} (--num-shards {options.num_shards})")


def run_log_path(work_dir: Path, options: RunOptions) -> Path:
    """`run.log`, or `run-{worker}.log` for a worker of a sharded run (one writer per file)."""
    name = worker_name(options)
    return Path(work_dir) / ("run.log" if name == "0" else f"run-{name}.log")


def finish_run(summary: RunSummary, checkpoint: Checkpoint, config: PipelineConfig, options: RunOptions,
               generation_s: float, write_card: Optional[CardWriter] = None) -> RunSummary:
    """Shards + card from the checkpoint (`generation.shards`; the card shows `generation_s`, the time
    up to this end), then the quarantine threshold decides the exit code, judged on this worker's whole
    slice over every run so far."""
    summary.rows, finished, quarantined = rebuild_folder(checkpoint, config, options, generation_s, write_card)
    summary.finished_total = sum(1 for i in finished if in_worker_slice(i, options))
    summary.quarantined_total = sum(1 for i in quarantined if in_worker_slice(i, options))
    threshold = options.max_quarantine_rate
    if threshold is None:
        threshold = config.runner.max_quarantine_rate
    attempted = summary.finished_total + summary.quarantined_total
    if summary.quarantined_total and not summary.finished_total:
        summary.exit_code = QUARANTINE_EXIT_CODE
        summary.exit_message = (f"every sample failed ({summary.quarantined_total} of {attempted} quarantined); "
                                f"see quarantine.jsonl in {summary.work_dir}")
    elif summary.quarantine_rate > threshold:
        summary.exit_code = QUARANTINE_EXIT_CODE
        summary.exit_message = (f"quarantine rate {summary.quarantine_rate:.1%} ({summary.quarantined_total} of "
                                f"{attempted} samples) is above the allowed maximum; see quarantine.jsonl in "
                                f"{summary.work_dir}")
    if summary.exit_code:
        log.error("%s", summary.exit_message)
    return summary


def run_generation(config: PipelineConfig, options: RunOptions, execute: Optional[Executor] = None,
                   write_card: Optional[CardWriter] = None) -> RunSummary:
    """The whole run: plan, process (resumably), shards + card, exit code. Raises `CheckpointLocked`
    when another live run of the same worker holds the work folder.

    `execute` processes the plan's samples (default: `execute_locally`; the Ray engine passes its
    own); everything around it (checkpoint, plan, shards, card, exit code) is the same for both.
    `write_card` renders the card at the end (`publishing.run.run_generation` passes the card's own
    writer: this module does not import `publishing/`); without one the card is not written."""
    from generation.logs import setup_run_logging
    from generation.preflight import check_folders, check_teacher
    from generation.teachers.llamacpp import served_teacher

    options.out_dir = Path(options.out_dir)
    check_options(config, options)
    work_dir = resolve_work_dir(config, options.out_dir)
    check_folders(options.out_dir, work_dir, operator_cache_dir(config, work_dir))
    checkpoint = Checkpoint(work_dir, worker=worker_name(options), lock=True, num_shards=options.num_shards)
    running = ExitStack()  # the folder's run lock (`generation.folder_lock`): a push waits for this run's end
    try:
        setup_run_logging(run_log_path(work_dir, options), quiet=options.quiet)
        running.enter_context(run_lock(options.out_dir, shared=True, on_wait=lambda: log.warning(
            "a `mmat push` of %s is running; waiting for it to finish before this run starts", options.out_dir)))
        start = time.perf_counter()
        clean_stale_temps(options.out_dir, writer_settings(config, options))
        plan = make_plan(config, options, checkpoint)
        summary = RunSummary(total=plan.total, skipped=plan.skipped, out_dir=options.out_dir, work_dir=work_dir)
        log.info("plan%s: %d samples in slice, %d done before, %d to run", " (retry)" if options.retry else "",
                 plan.total, plan.skipped, plan.size)
        # teacher.kind llamacpp: a local server for exactly as long as the samples run (both engines)
        with served_teacher(config.teacher, Path(work_dir) / "llamacpp-server.log") as teacher_config:
            config = config.model_copy(update={"teacher": teacher_config})
            summary.usage = TeacherUsage(model=config.teacher.model if config.teacher.kind != "offline"
                                         else OFFLINE_MODEL)
            if plan.todo:
                try:
                    check_teacher(config)
                except TeacherFatalError as exc:
                    raise run_stopped(exc) from None
            if plan.size:  # nothing left (a rerun of a finished run): no teacher, no engine, no thread
                with RollingShards(checkpoint, options.out_dir, config, options):
                    (execute or execute_locally)(config, options, checkpoint, plan, summary)
        finish_run(summary, checkpoint, config, options, generation_s=time.perf_counter() - start,
                   write_card=write_card)
        summary.elapsed_s = time.perf_counter() - start  # the whole run: its shards, audit and card too
        if options.retry:
            checkpoint.compact_quarantine()
        progress_log.info("run finished", extra={"data": {
            "finished": summary.finished, "quarantined": summary.quarantined, "skipped": summary.skipped,
            "total": summary.total, "finished_total": summary.finished_total,
            "quarantined_total": summary.quarantined_total, "quarantine_by_stage": dict(summary.quarantine_by_stage),
            "rows": summary.rows, "tokens": summary.usage.prompt_tokens + summary.usage.completion_tokens,
            "prompt_tokens": summary.usage.prompt_tokens, "cached_tokens": summary.usage.cached_tokens,
            "completion_tokens": summary.usage.completion_tokens, **_usage_costs(config, summary.usage),
            "cost_usd": round(summary.usage.cost_usd, 6), "elapsed_s": round(summary.elapsed_s, 2),
            "exit_code": summary.exit_code}})
        return summary
    finally:
        running.close()
        checkpoint.close()


def _usage_costs(config: PipelineConfig, usage) -> dict:
    """run.log's cost of each part of the run's tokens (prompt, cached, completion), at the teacher's
    prices (the Batch API's half price in batch mode): `generation.teachers.prices.usage_costs`."""
    from generation.teachers.prices import scaled, teacher_prices, usage_costs

    prices = teacher_prices(config.teacher)
    if prices is not None and getattr(config.teacher, "batch", False):
        prices = scaled(prices, 0.5)
    return usage_costs(prices, usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens)
