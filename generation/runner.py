"""The local engine: runs the four stages over every sample, concurrently, resumably.

The runner owns what the stages must not know about: concurrency, the operator cache, checkpoints,
quarantine, progress and the final shards + card. Each finished sample is durable (fsync'd) before it
counts; a rerun of the same config skips finished and quarantined ids; shards are rebuilt from the
checkpoint at the end, atomically.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from generation.checkpoint import Checkpoint, QuarantineRecord
from generation.config import PipelineConfig
from generation.integration import build_rows
from generation.rationale import RationaleSettings, generate_trajectory
from generation.schema import Quarantined, Sample, TeacherUsage
from generation.sources import read_source
from generation.splits import assign_split, hash_fraction
from generation.teachers.base import Teacher, TeacherError
from generation.writer import WriterSettings, write_group
from operators.base import OperatorError
from operators.images import ImageDecodeError, LoadedImage

log = logging.getLogger("mmat.runner")


@dataclass
class RunOptions:
    out_dir: Path
    num_shards: int = 1
    shard_index: int = 0
    quiet: bool = False
    only_ids: Optional[set[str]] = None  # `mmat retry`: just these ids
    max_quarantine_rate: Optional[float] = None  # overrides runner.max_quarantine_rate
    limit: Optional[int] = None  # at most this many new samples (smoke runs)


@dataclass
class RunSummary:
    total: int = 0  # samples of this worker's slice
    skipped: int = 0  # finished or quarantined by an earlier run
    finished: int = 0  # finished in this run
    quarantined: int = 0  # quarantined in this run
    quarantine_by_stage: Counter = field(default_factory=Counter)
    rows: dict[str, int] = field(default_factory=dict)  # "orr/train" -> count, over the whole checkpoint
    usage: TeacherUsage = field(default_factory=TeacherUsage)
    operator_executions: int = 0
    elapsed_s: float = 0.0
    out_dir: Optional[Path] = None
    work_dir: Optional[Path] = None
    exit_code: int = 0

    @property
    def quarantine_rate(self) -> float:
        attempted = self.finished + self.quarantined
        return self.quarantined / attempted if attempted else 0.0


def default_work_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    return out_dir.parent / ".mmat-work" / out_dir.name


def worker_name(options: RunOptions) -> str:
    return "0" if options.num_shards == 1 else f"{options.shard_index:05d}-of-{options.num_shards:05d}"


def in_worker_slice(sample_id: str, options: RunOptions) -> bool:
    """Deterministic split of the ids over N workers (e.g. a Slurm array)."""
    return options.num_shards == 1 or int(hash_fraction(sample_id) * 2**32) % options.num_shards == options.shard_index


def iter_samples(config: PipelineConfig) -> Iterator[Sample | Quarantined]:
    for source_cfg in config.sources:
        yield from read_source(source_cfg)


@dataclass
class Plan:
    """What a run will do: the samples to process now and the foundation-stage quarantines."""

    todo: list[Sample]
    foundation_failures: list[Quarantined]
    total: int
    skipped: int


def make_plan(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint) -> Plan:
    done = checkpoint.finished_ids() | set(checkpoint.quarantined())
    todo: list[Sample] = []
    failures: list[Quarantined] = []
    total = skipped = 0
    for item in iter_samples(config):
        sample_id = item.sample_id if isinstance(item, Quarantined) else item.id
        if not in_worker_slice(sample_id, options):
            continue
        if options.only_ids is not None and sample_id not in options.only_ids:
            continue
        total += 1
        if sample_id in done:
            skipped += 1
            continue
        if options.limit is not None and len(todo) + len(failures) >= options.limit:
            continue
        (failures if isinstance(item, Quarantined) else todo).append(item)
    return Plan(todo, failures, total, skipped)


def _quarantine_record(sample: Sample | None, exc: BaseException, sample_id: str = "") -> QuarantineRecord:
    from generation.redact import redact_text

    if isinstance(exc, Quarantined):
        stage, error_type, message = exc.stage, exc.error_type, exc.reason
    elif isinstance(exc, ImageDecodeError):
        stage, error_type, message = "foundation", "ImageDecodeError", str(exc)
    elif isinstance(exc, OperatorError):
        stage, error_type, message = "operators", type(exc).__name__, str(exc)
    elif isinstance(exc, TeacherError):
        stage, error_type, message = "rationale", type(exc).__name__, str(exc)
    else:
        stage, error_type, message = "internal", type(exc).__name__, str(exc) or repr(exc)
    return QuarantineRecord(id=sample.id if sample else sample_id, stage=stage, error_type=error_type,
                            message=redact_text(message), source=sample.source if sample else "")


class SampleProcessor:
    """One sample through rationale → reflection → integration → checkpoint. Shared by both engines."""

    def __init__(self, config: PipelineConfig, teacher: Teacher, operators: Any, checkpoint: Checkpoint) -> None:
        self.config = config
        self.teacher = teacher
        self.operators = operators
        self.checkpoint = checkpoint
        self.settings = RationaleSettings(max_steps=config.rationale.max_steps,
                                          reflection=config.rationale.reflection)

    async def rows_for(self, sample: Sample) -> tuple[dict[str, dict], TeacherUsage]:
        images = [LoadedImage(ref.read_bytes()) for ref in sample.images]
        for image in images:
            image.rgb  # decode now: a broken image quarantines here, before any teacher call
        trajectory = await generate_trajectory(sample, images, self.teacher, self.operators, self.settings)
        from generation.verify import enforce_policy

        enforce_policy(trajectory, sample, self.config.teacher.on_mismatch)
        judge = getattr(self.teacher, "judge", None)
        if self.config.teacher.judge and judge is not None:
            trajectory.judge_score, judge_usage = await judge(trajectory, sample)
            trajectory.usage = trajectory.usage.add(judge_usage)
        return build_rows(sample, trajectory, [im.data for im in images]), trajectory.usage

    async def process(self, sample: Sample) -> tuple[Optional[TeacherUsage], Optional[QuarantineRecord]]:
        """Never raises for a bad sample: returns (usage, None) when done, (None, record) when quarantined."""
        try:
            rows, usage = await self.rows_for(sample)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one sample's failure must never stop the run
            record = _quarantine_record(sample, exc)
            if record.stage == "internal":
                log.warning("internal error on %s", sample.id, exc_info=True)
            self.checkpoint.quarantine(record)
            return None, record
        split = assign_split(sample, self.config.output.validation_fraction)
        self.checkpoint.add_finished(sample.id, sample.source, split, rows)
        return usage, None


def write_shards(checkpoint: Checkpoint, out_dir: Path, config: PipelineConfig, options: RunOptions) -> dict[str, int]:
    """Rebuild this worker's shards from every finished record, grouped and sorted by id."""
    groups: dict[tuple[str, str], list[int]] = {}
    records = sorted(checkpoint.finished(), key=lambda r: r["id"])
    for index, record in enumerate(records):
        groups.setdefault((record["source"], record["split"]), []).append(index)
    settings = WriterSettings(shard_max_bytes=config.output.shard_max_bytes,
                              row_group_rows=config.output.row_group_rows,
                              worker_index=options.shard_index, num_workers=options.num_shards)
    counts: Counter = Counter()
    for (source, split), indices in sorted(groups.items()):
        for fmt in ("rr", "orr"):
            rows = (checkpoint.materialise(records[i], fmt) for i in indices)
            written = write_group(out_dir, fmt, source, split, rows, settings)
            counts[f"{fmt}/{split}"] += written.rows
    return dict(counts)


class _Progress:
    """A rich progress bar with samples/s, ETA, tokens and USD; silent with --quiet."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = None
        if not quiet and total:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[cost]}"), transient=False)
            self.task = self.progress.add_task("generate", total=total, rate="", cost="")
        self.start = time.perf_counter()
        self.done = 0

    def __enter__(self) -> "_Progress":
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress:
            self.progress.__exit__(*exc)

    def advance(self, usage: TeacherUsage) -> None:
        self.done += 1
        if self.progress:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            tokens = usage.prompt_tokens + usage.completion_tokens
            self.progress.update(self.task, advance=1, rate=f"{rate:.2f} samples/s",
                                 cost=f"{tokens:,} tok ${usage.cost_usd:.4f}")


async def process_all(samples: Iterable[Sample], processor: SampleProcessor, concurrency: int,
                      on_done: Callable[[Optional[TeacherUsage], Optional[QuarantineRecord]], None]) -> None:
    """Bounded concurrency over samples; results are reported as they finish."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(sample: Sample) -> None:
        async with semaphore:
            usage, record = await processor.process(sample)
        on_done(usage, record)

    pending: set[asyncio.Task] = set()
    for sample in samples:
        # Keep the task set bounded too, so a million-sample plan does not create a million tasks.
        if len(pending) >= concurrency * 2:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(one(sample)))
    if pending:
        await asyncio.gather(*pending)


def build_engine_parts(config: PipelineConfig, work_dir: Path) -> tuple[Teacher, Any]:
    from generation.teachers.factory import make_teacher
    from operators.registry import build_operators

    teacher = make_teacher(config.teacher)
    cache_dir = Path(config.operators.cache_dir) if config.operators.cache_dir else work_dir / "operator-cache"
    operators = build_operators(config.operators, cache_dir, caption_client=getattr(teacher, "caption_client", None))
    return teacher, operators


def finish_run(summary: RunSummary, checkpoint: Checkpoint, config: PipelineConfig, options: RunOptions) -> RunSummary:
    """Shards + card from the checkpoint, then the quarantine threshold decides the exit code."""
    summary.rows = write_shards(checkpoint, options.out_dir, config, options)
    from publishing.card import write_card

    write_card(options.out_dir, run_stats={
        "quarantined_total": len(checkpoint.quarantined()),
        "quarantine_by_stage": dict(Counter(r.stage for r in checkpoint.quarantined().values())),
        "elapsed_s": round(summary.elapsed_s, 2),
    })
    threshold = options.max_quarantine_rate
    if threshold is None:
        threshold = config.runner.max_quarantine_rate
    if summary.quarantine_rate > threshold:
        summary.exit_code = 3
    return summary


async def _run_async(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint, plan: Plan,
                     summary: RunSummary) -> None:
    teacher, operators = build_engine_parts(config, checkpoint.dir)
    processor = SampleProcessor(config, teacher, operators, checkpoint)
    concurrency = config.runner.max_concurrency or config.teacher.max_concurrency

    with _Progress(len(plan.todo) + len(plan.foundation_failures), options.quiet) as progress:
        for failure in plan.foundation_failures:
            record = _quarantine_record(None, failure, failure.sample_id)
            checkpoint.quarantine(record)
            summary.quarantined += 1
            summary.quarantine_by_stage[record.stage] += 1
            progress.advance(summary.usage)

        def on_done(usage: Optional[TeacherUsage], record: Optional[QuarantineRecord]) -> None:
            if record is not None:
                summary.quarantined += 1
                summary.quarantine_by_stage[record.stage] += 1
            else:
                summary.finished += 1
                summary.usage = summary.usage.add(usage)
            progress.advance(summary.usage)

        try:
            await process_all(plan.todo, processor, concurrency, on_done)
        finally:
            await teacher.aclose()
    summary.operator_executions = getattr(operators, "executions", 0)


def run_generation(config: PipelineConfig, options: RunOptions) -> RunSummary:
    options.out_dir = Path(options.out_dir)
    work_dir = Path(config.runner.work_dir) if config.runner.work_dir else default_work_dir(options.out_dir)
    checkpoint = Checkpoint(work_dir, worker=worker_name(options))
    from generation.logs import setup_run_logging

    setup_run_logging(work_dir / "run.log", quiet=options.quiet)
    start = time.perf_counter()
    plan = make_plan(config, options, checkpoint)
    summary = RunSummary(total=plan.total, skipped=plan.skipped, out_dir=options.out_dir, work_dir=work_dir)
    summary.usage = TeacherUsage(model=config.teacher.model if config.teacher.kind != "offline" else "offline-annotations")
    log.info("plan: %d samples in slice, %d done before, %d to run", plan.total, plan.skipped,
             len(plan.todo) + len(plan.foundation_failures))
    asyncio.run(_run_async(config, options, checkpoint, plan, summary))
    summary.elapsed_s = time.perf_counter() - start
    return finish_run(summary, checkpoint, config, options)
