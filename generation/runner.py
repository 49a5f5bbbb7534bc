"""The local engine: runs the four stages over every sample, concurrently, resumably.

The runner owns what the stages must not know about: concurrency, the operator cache, checkpoints,
quarantine, progress and the final shards + card. Each finished sample is durable (fsync'd) before it
counts; a rerun of the same config skips finished and quarantined ids; `retry` re-runs only the
quarantined ones. Shards are rebuilt from the checkpoint at the end, atomically per file, and the
card is re-rendered from every shard in the folder, under a lock shared by the workers of a sharded
run, so the last worker to finish leaves a card that describes all of them.

What dooms the whole run stops it early, with one line: an unwritable dataset, work or cache folder
and a teacher key the endpoint rejects are found before the first paid call (`generation.preflight`);
a rejected key, a refused model or an exhausted quota met mid-run stops it at the first occurrence
(`TeacherFatalError`: no new sample starts, the sample is not quarantined, finished ones stay). A run
whose every sample failed exits 3 whatever the allowed quarantine rate.

The Ray engine (`generation.ray_engine`) is another `execute` for `run_generation`: same plan,
`SampleProcessor`, outcome recording, shards and card.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from generation.checkpoint import Checkpoint, QuarantineRecord, RecordRef
from generation.config import ConfigError, PipelineConfig
from generation.folder_lock import out_folder_lock, out_lock_path  # noqa: F401  (out_lock_path: re-export)
from generation.integration import build_rows
from generation.rationale import RationaleSettings, generate_trajectory
from generation.schema import Quarantined, Sample, TeacherUsage
from generation.sources import read_source
from generation.splits import assign_split, hash_fraction
from generation.teachers.base import Teacher, TeacherError, TeacherFatalError, fatal_cause
from generation.writer import WriterSettings, clean_stale_temps, write_group
from operators.base import OperatorError
from operators.images import ImageDecodeError, LoadedImage

log = logging.getLogger("mmat.runner")
# Per-sample and periodic records go to the run log only (the console filter in generation.logs drops them).
sample_log = logging.getLogger("mmat.samples")
progress_log = logging.getLogger("mmat.progress")


@dataclass
class RunOptions:
    out_dir: Path
    num_shards: int = 1
    shard_index: int = 0
    quiet: bool = False
    only_ids: Optional[set[str]] = None  # just these ids
    retry: bool = False  # `mmat retry`: run the quarantined ids again (and only those)
    max_quarantine_rate: Optional[float] = None  # overrides runner.max_quarantine_rate
    limit: Optional[int] = None  # at most this many new samples (smoke runs)


@dataclass
class RunSummary:
    total: int = 0  # samples of this worker's slice
    skipped: int = 0  # finished or quarantined by an earlier run
    finished: int = 0  # finished in this run
    quarantined: int = 0  # quarantined in this run
    finished_total: int = 0  # finished in this worker's slice, over every run so far
    quarantined_total: int = 0  # quarantined (and not finished since) in this worker's slice
    quarantine_by_stage: Counter = field(default_factory=Counter)
    rows: dict[str, int] = field(default_factory=dict)  # "orr/train" -> count, over the whole checkpoint
    usage: TeacherUsage = field(default_factory=TeacherUsage)
    operator_executions: int = 0
    elapsed_s: float = 0.0
    out_dir: Optional[Path] = None
    work_dir: Optional[Path] = None
    exit_code: int = 0
    exit_message: str = ""  # why the exit code is not 0

    @property
    def quarantine_rate(self) -> float:
        """Quarantined / attempted over the worker's whole slice (every run so far: a resumed or retried
        run is judged on the dataset it leaves, not on its last piece); this run's when no totals."""
        if self.finished_total + self.quarantined_total:
            return self.quarantined_total / (self.finished_total + self.quarantined_total)
        attempted = self.finished + self.quarantined
        return self.quarantined / attempted if attempted else 0.0


def default_work_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    return out_dir.parent / ".mmat-work" / out_dir.name


def resolve_work_dir(config: PipelineConfig, out_dir: Path) -> Path:
    return Path(config.runner.work_dir) if config.runner.work_dir else default_work_dir(Path(out_dir))


def writer_settings(config: PipelineConfig, options: RunOptions) -> WriterSettings:
    return WriterSettings(shard_max_bytes=config.output.shard_max_bytes, row_group_rows=config.output.row_group_rows,
                          worker_index=options.shard_index, num_workers=options.num_shards)


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
    """This worker's samples that are neither finished nor quarantined (with `retry`: its quarantined
    ones). A source quarantines its own repeated ids (`{id}#repeat-n`, see `generation.sources`); an id
    that two `sources:` entries both yield (the same folder listed twice) is planned once."""
    finished = checkpoint.finished_ids()
    quarantined = set(checkpoint.quarantined(finished))
    only = options.only_ids
    if options.retry:
        only = quarantined if only is None else only & quarantined
        done = finished
    else:
        done = finished | quarantined
    todo: list[Sample] = []
    failures: list[Quarantined] = []
    total = skipped = 0
    duplicates: list[str] = []
    seen: set[str] = set()
    for item in iter_samples(config):
        sample_id = item.sample_id if isinstance(item, Quarantined) else item.id
        if not in_worker_slice(sample_id, options):
            continue
        if only is not None and sample_id not in only:
            continue
        if sample_id in seen:
            duplicates.append(sample_id)
            continue
        seen.add(sample_id)
        total += 1
        if sample_id in done:
            skipped += 1
            continue
        if options.limit is not None and len(todo) + len(failures) >= options.limit:
            continue
        (failures if isinstance(item, Quarantined) else todo).append(item)
    if duplicates:
        log.warning("%d ids come from more than one `sources:` entry (e.g. %s); each is generated once, from the "
                    "first entry: is a source listed twice?", len(duplicates), ", ".join(duplicates[:3]))
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
    sample_id = sample.id if sample else sample_id
    source = sample.source if sample else sample_id.split("/", 1)[0]
    message = " ".join(redact_text(message).split())  # one line
    return QuarantineRecord(id=sample_id, stage=stage, error_type=error_type, message=message, source=source)


class SampleProcessor:
    """One sample through rationale → reflection → integration → checkpoint. Shared by both engines."""

    def __init__(self, config: PipelineConfig, teacher: Teacher, operators: Any, checkpoint: Checkpoint) -> None:
        self.config = config
        self.teacher = teacher
        self.operators = operators
        self.checkpoint = checkpoint
        self.settings = RationaleSettings(max_steps=config.rationale.max_steps,
                                          reflection=config.rationale.reflection,
                                          staged_rate=config.reflection.staged_rate)
        # Checkpoint appends fsync; on the event loop each would stall every sample in flight, so they
        # go to one writer thread (one thread: appends to a file never interleave).
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        # The first error that dooms the run (see the module docstring); the engines stop on it.
        self.fatal: Optional[TeacherFatalError] = None

    async def _durably(self, fn: Callable[..., None], *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def close(self) -> None:
        """Wait for the pending checkpoint writes."""
        self._writer.shutdown(wait=True)

    async def rows_for(self, sample: Sample) -> tuple[dict[str, dict], TeacherUsage]:
        images = [LoadedImage(ref.read_bytes()) for ref in sample.images]
        for image in images:
            image.rgb  # decode now: a broken image quarantines here, before any teacher call
        trajectory = await generate_trajectory(sample, images, self.teacher, self.operators, self.settings)
        from generation.verify import enforce_policy

        enforce_policy(trajectory, sample, self.config.teacher)
        judge = getattr(self.teacher, "judge", None)
        if self.config.teacher.judge and judge is not None:
            trajectory.judge_score, judge_usage = await judge(trajectory, sample)
            trajectory.usage = trajectory.usage.add(judge_usage)
        return (build_rows(sample, trajectory, [im.data for im in images], self.config.integration.max_chars),
                trajectory.usage)

    async def process(self, sample: Sample) -> tuple[Optional[TeacherUsage], Optional[QuarantineRecord]]:
        """Never raises for a bad sample: returns (usage, None) when done, (None, record) when quarantined.

        A `TeacherFatalError` is not the sample's fault: it sets `self.fatal` and returns its record
        without quarantining the sample (`is_fatal(record)`), so the rerun does it again."""
        try:
            rows, usage = await self.rows_for(sample)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one sample's failure must never stop the run
            fatal = fatal_cause(exc)
            if fatal is not None:
                self.fatal = self.fatal or fatal
                return None, _quarantine_record(sample, fatal)
            record = _quarantine_record(sample, exc)
            if record.stage == "internal":
                log.warning("internal error on %s", sample.id, exc_info=True)
            await self._durably(self.checkpoint.quarantine, record)
            return None, record
        split = assign_split(sample, self.config.output.validation_fraction)
        await self._durably(self.checkpoint.add_finished, sample.id, sample.source, split, rows)
        return usage, None


def is_fatal(record: Optional[QuarantineRecord]) -> bool:
    """Is this the record of a run-stopping teacher error (never stored, never counted)?"""
    return record is not None and record.error_type == TeacherFatalError.__name__


def run_stopped(fatal: TeacherFatalError) -> TeacherFatalError:
    """The one line a run stopped by `fatal` ends with: what happened, the fix, how to resume."""
    fix = f"{fatal.fix}, then rerun" if fatal.fix else "fix it and rerun"
    return TeacherFatalError(f"{fatal}. The run stopped at the first such error: {fix} the same command to resume "
                             f"(finished samples are kept)", fatal.fix)


def write_shards(checkpoint: Checkpoint, out_dir: Path, config: PipelineConfig, options: RunOptions,
                 refs: Optional[list[RecordRef]] = None) -> dict[str, int]:
    """Rebuild this worker's shards from every finished record of its slice (whichever worker's rows
    file holds it), grouped and sorted by id; groups whose shards already hold those rows are kept.
    Records are read one at a time from the checkpoint, so memory does not grow with the dataset.
    `refs`: `checkpoint.finished_refs()` when the caller has them already (one pass over the files)."""
    settings = writer_settings(config, options)
    clean_stale_temps(out_dir, settings)
    groups: dict[tuple[str, str], list] = {}
    for ref in checkpoint.finished_refs() if refs is None else refs:
        if in_worker_slice(ref.id, options):
            groups.setdefault((ref.source, ref.split), []).append(ref)
    counts: Counter = Counter()
    for (source, split), refs in sorted(groups.items()):
        refs.sort(key=lambda r: r.id)
        ids = [r.id for r in refs]
        for fmt in ("rr", "orr"):
            rows = (checkpoint.materialise(checkpoint.load(r), fmt) for r in refs)
            written = write_group(out_dir, fmt, source, split, rows, settings, ids=ids)
            counts[f"{fmt}/{split}"] += written.rows
    return dict(counts)


def progress_fields(done: int, total: int, elapsed_s: float, usage: TeacherUsage, quarantined: int = 0) -> dict:
    """What the bar and the run log show: samples/s, ETA, tokens and USD so far."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    return {"done": done, "total": total, "quarantined": quarantined, "samples_per_s": round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1), "elapsed_s": round(elapsed_s, 1),
            "tokens": usage.prompt_tokens + usage.completion_tokens, "cost_usd": round(usage.cost_usd, 6)}


class RunProgress:
    """A rich progress bar (done/total, samples/s, ETA, tokens, USD, quarantined); silent with --quiet.

    Whatever the console shows, the run log gets the same numbers as a JSON record every
    `log_every_s` seconds and at the end, so scripts (`--quiet`) can follow a run too."""

    def __init__(self, total: int, quiet: bool, log_every_s: float = 10.0) -> None:
        self.quiet = quiet
        self.total = total
        self.progress = None
        self.log_every_s = log_every_s
        if not quiet and total:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("generate"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[cost]}"), TextColumn("{task.fields[quarantined]}"),
                                     transient=False)
            self.task = self.progress.add_task("generate", total=total, rate="0.00 samples/s",
                                               cost="0 tok $0.0000", quarantined="")
        self.start = time.perf_counter()
        self.last_log = self.start
        self.done = 0
        self.quarantined = 0
        self.usage = TeacherUsage()

    def __enter__(self) -> "RunProgress":
        if self.progress:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress:
            self.progress.__exit__(*exc)
        self._log()

    def _log(self) -> None:
        if self.total:
            fields = progress_fields(self.done, self.total, time.perf_counter() - self.start, self.usage,
                                     self.quarantined)
            progress_log.info("progress %d/%d", self.done, self.total, extra={"data": fields})

    def advance(self, usage: TeacherUsage, quarantined: bool = False) -> None:
        self.done += 1
        self.quarantined += int(quarantined)
        self.usage = usage
        now = time.perf_counter()
        if self.progress:
            fields = progress_fields(self.done, self.total, now - self.start, usage, self.quarantined)
            self.progress.update(self.task, advance=1, rate=f"{fields['samples_per_s']:.2f} samples/s",
                                 cost=f"{fields['tokens']:,} tok ${fields['cost_usd']:.4f}",
                                 quarantined=f"{self.quarantined} quarantined" if self.quarantined else "")
        if now - self.last_log >= self.log_every_s:
            self.last_log = now
            self._log()


async def process_all(samples: Iterable[Sample], processor: SampleProcessor, concurrency: int,
                      on_done: Callable[[Optional[TeacherUsage], Optional[QuarantineRecord]], None]) -> None:
    """Bounded concurrency over samples; results are reported as they finish."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(sample: Sample) -> None:
        async with semaphore:
            if processor.fatal is not None:  # the run is stopping: start nothing new
                return
            usage, record = await processor.process(sample)
        if not is_fatal(record):
            on_done(usage, record)

    pending: set[asyncio.Task] = set()
    for sample in samples:
        if processor.fatal is not None:
            break
        # Keep the task set bounded too, so a million-sample plan does not create a million tasks.
        if len(pending) >= concurrency * 2:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        pending.add(asyncio.create_task(one(sample)))
    if pending:
        await asyncio.gather(*pending)
    if processor.fatal is not None:
        raise run_stopped(processor.fatal)


def operator_cache_dir(config: PipelineConfig, work_dir: Path) -> Path:
    """Where operator results are cached (both engines): `operators.cache_dir`, else in the work folder."""
    return Path(config.operators.cache_dir) if config.operators.cache_dir else Path(work_dir) / "operator-cache"


def build_engine_parts(config: PipelineConfig, work_dir: Path) -> tuple[Teacher, Any]:
    from generation.teachers.factory import make_teacher
    from operators.registry import build_operators

    teacher = make_teacher(config.teacher)
    operators = build_operators(config.operators, operator_cache_dir(config, work_dir),
                                caption_client=getattr(teacher, "caption_client", None))
    return teacher, operators


QUARANTINE_EXIT_CODE = 3


def finish_run(summary: RunSummary, checkpoint: Checkpoint, config: PipelineConfig, options: RunOptions) -> RunSummary:
    """Shards, the quality audit (into run.log and the card) and the card from the checkpoint, then the
    quarantine threshold decides the exit code.

    Shards and card are written under the dataset folder's lock, so the workers of a sharded run take
    turns and every card describes a folder no worker is rewriting; the card is rendered from all
    shards in the folder (every worker's), so the last worker to finish leaves the complete card."""
    from publishing.card import CARD_FILENAME, write_card
    from generation.quality.audit import audit_run
    from mmat_1m import card_configs

    out_dir = Path(options.out_dir)
    refs = checkpoint.finished_refs()
    finished = {ref.id for ref in refs}
    quarantined = checkpoint.quarantined(finished)
    with out_folder_lock(out_dir):
        summary.rows = write_shards(checkpoint, out_dir, config, options, refs)
        (out_dir / CARD_FILENAME).with_suffix(".md.tmp").unlink(missing_ok=True)  # a killed card write
        if card_configs(out_dir):
            write_card(out_dir, run_stats={
                "quarantined_total": len(quarantined),
                "quarantine_by_stage": dict(Counter(r.stage for r in quarantined.values())),
                "elapsed_s": round(summary.elapsed_s, 2),
            }, quality_report=audit_run(out_dir))
        else:
            log.warning("no finished samples: no shards and no card in %s", out_dir)
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


OutcomeCallback = Callable[[Optional[TeacherUsage], Optional[QuarantineRecord]], None]


def outcome_recorder(summary: RunSummary, progress: "RunProgress") -> OutcomeCallback:
    """The callback both engines call once per sample: counts, usage, progress and the run log."""

    def on_done(usage: Optional[TeacherUsage], record: Optional[QuarantineRecord]) -> None:
        if record is not None:
            summary.quarantined += 1
            summary.quarantine_by_stage[record.stage] += 1
            sample_log.info("quarantined %s at %s: %s: %s", record.id, record.stage, record.error_type,
                            record.message, extra={"data": dict(record.__dict__)})
        else:
            summary.finished += 1
            summary.usage = summary.usage.add(usage)
        progress.advance(summary.usage, quarantined=record is not None)

    return on_done


def quarantine_foundation_failures(plan: Plan, checkpoint: Checkpoint, on_done: OutcomeCallback) -> None:
    """Records the sources could not turn into samples (missing field, unreadable image, ...)."""
    for failure in plan.foundation_failures:
        record = _quarantine_record(None, failure, failure.sample_id)
        checkpoint.quarantine(record)
        on_done(None, record)


def log_teacher_stats(teacher: Teacher) -> None:
    """The teacher's own totals (requests, retries, repairs, failures), when it keeps them."""
    stats = getattr(teacher, "stats", None)
    if stats is not None and hasattr(stats, "summary"):
        log.info("%s", stats.summary())


async def _run_async(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint, plan: Plan,
                     summary: RunSummary) -> None:
    teacher, operators = build_engine_parts(config, checkpoint.dir)
    processor = SampleProcessor(config, teacher, operators, checkpoint)
    concurrency = config.runner.max_concurrency or config.teacher.max_concurrency

    with RunProgress(len(plan.todo) + len(plan.foundation_failures), options.quiet) as progress:
        on_done = outcome_recorder(summary, progress)
        quarantine_foundation_failures(plan, checkpoint, on_done)
        try:
            await process_all(plan.todo, processor, concurrency, on_done)
        finally:
            processor.close()
            await teacher.aclose()
            log_teacher_stats(teacher)
    summary.operator_executions = getattr(operators, "executions", 0)


def run_log_path(work_dir: Path, options: RunOptions) -> Path:
    """`run.log`, or `run-{worker}.log` for a worker of a sharded run (one writer per file)."""
    name = worker_name(options)
    return Path(work_dir) / ("run.log" if name == "0" else f"run-{name}.log")


Executor = Callable[[PipelineConfig, RunOptions, Checkpoint, Plan, RunSummary], None]


def execute_locally(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint, plan: Plan,
                    summary: RunSummary) -> None:
    """The local engine: one process, one event loop, `max_concurrency` samples in flight."""
    asyncio.run(_run_async(config, options, checkpoint, plan, summary))


def check_options(config: PipelineConfig, options: RunOptions) -> None:
    """What the config and the flags must say before a run starts; one line each (exit 2)."""
    if not config.sources:
        raise ConfigError("sources: the list is empty; add at least one source (see configs/demo.yaml)")
    if options.limit is not None and options.limit < 0:
        raise ConfigError(f"--limit must be 0 or more, not {options.limit}")
    if not 0 <= options.shard_index < options.num_shards:
        raise ConfigError(f"--shard-index must be from 0 to {options.num_shards - 1} (--num-shards {options.num_shards})")


def run_generation(config: PipelineConfig, options: RunOptions, execute: Optional[Executor] = None) -> RunSummary:
    """The whole run: plan, process (resumably), shards + card, exit code. Raises `CheckpointLocked`
    when another live run of the same worker holds the work folder.

    `execute` processes the plan's samples (default: `execute_locally`; the Ray engine passes its
    own); everything around it (checkpoint, plan, shards, card, exit code) is the same for both."""
    from generation.preflight import check_folders, check_teacher

    options.out_dir = Path(options.out_dir)
    check_options(config, options)
    work_dir = resolve_work_dir(config, options.out_dir)
    check_folders(options.out_dir, work_dir, operator_cache_dir(config, work_dir))
    checkpoint = Checkpoint(work_dir, worker=worker_name(options), lock=True, num_shards=options.num_shards)
    try:
        from generation.logs import setup_run_logging

        setup_run_logging(run_log_path(work_dir, options), quiet=options.quiet)
        start = time.perf_counter()
        clean_stale_temps(options.out_dir, writer_settings(config, options))
        plan = make_plan(config, options, checkpoint)
        summary = RunSummary(total=plan.total, skipped=plan.skipped, out_dir=options.out_dir, work_dir=work_dir)
        log.info("plan%s: %d samples in slice, %d done before, %d to run", " (retry)" if options.retry else "",
                 plan.total, plan.skipped, len(plan.todo) + len(plan.foundation_failures))
        from generation.teachers.llamacpp import served_teacher

        # teacher.kind llamacpp: a local server for exactly as long as the samples run (both engines)
        with served_teacher(config.teacher, Path(work_dir) / "llamacpp-server.log") as teacher_config:
            config = config.model_copy(update={"teacher": teacher_config})
            summary.usage = TeacherUsage(model=config.teacher.model if config.teacher.kind != "offline"
                                         else "offline-annotations")
            if plan.todo:
                try:
                    check_teacher(config)
                except TeacherFatalError as exc:
                    raise run_stopped(exc) from None
            (execute or execute_locally)(config, options, checkpoint, plan, summary)
        summary.elapsed_s = time.perf_counter() - start
        finish_run(summary, checkpoint, config, options)
        if options.retry:
            checkpoint.compact_quarantine()
        progress_log.info("run finished", extra={"data": {
            "finished": summary.finished, "quarantined": summary.quarantined, "skipped": summary.skipped,
            "total": summary.total, "finished_total": summary.finished_total,
            "quarantined_total": summary.quarantined_total, "quarantine_by_stage": dict(summary.quarantine_by_stage),
            "rows": summary.rows, "tokens": summary.usage.prompt_tokens + summary.usage.completion_tokens,
            "cost_usd": round(summary.usage.cost_usd, 6), "elapsed_s": round(summary.elapsed_s, 2),
            "exit_code": summary.exit_code}})
        return summary
    finally:
        checkpoint.close()
