"""One sample through the four stages: the engine's spine, the same in both engines.

Read this right after the sources: `SampleProcessor.process(sample)` decodes the sample's images (a
broken one quarantines it before any teacher call), runs the rationale and reflection loop
(`generation.rationale`: the teacher reasons, the operators observe), applies the answer-mismatch
policy (`generation.verify`), asks the teacher's judge when configured, renders, sanitises and parses
back the RR and ORR rows (`generation.integration`), and makes the result durable in the checkpoint
(`generation.checkpoint`, fsync'd on one writer thread) before it counts.

Guarantees:
- A bad sample never stops the run: `process` returns its quarantine record instead of raising, with
  the stage it failed at and one redacted line of reason (`quarantine_record`).
- What dooms the whole run is not the sample's fault: a `TeacherFatalError` (a rejected key, a refused
  model, no quota) sets `fatal`, is returned as a record that is never stored (`is_fatal`), and the
  engines stop starting samples; the rerun does the sample again. `run_stopped` is the run's last line.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from generation.atomic import disk_error
from generation.checkpoint import Checkpoint, QuarantineRecord
from generation.config import PipelineConfig
from generation.errors import one_line
from generation.integration import build_rows
from generation.plan import operator_cache_dir
from generation.rationale import RationaleSettings, generate_trajectory
from generation.redact import redact
from generation.schema import Quarantined, Sample, TeacherUsage
from generation.splits import assign_split
from generation.teachers.base import Teacher, TeacherError, TeacherFatalError, fatal_cause
from generation.verify import enforce_policy
from operators.base import OperatorError, OperatorRunner
from operators.config import OperatorsConfig
from operators.images import ImageDecodeError, LoadedImage

log = logging.getLogger("mmat.runner")


def build_engine_parts(config: PipelineConfig, work_dir: Path,
                       operators_config: Optional[OperatorsConfig] = None) -> tuple[Teacher, OperatorRunner]:
    """The teacher and the operators a `SampleProcessor` runs with (both engines; a Ray generation
    actor passes only the operators that run inside it). Call it on the event loop the samples run
    on: the teacher's client and the VLM caption bind to it."""
    from generation.teachers.batch_client import with_batch_folder
    from generation.teachers.factory import make_teacher
    from operators.registry import build_operators

    teacher = make_teacher(with_batch_folder(config.teacher, work_dir))  # teacher.batch: its records' folder
    operators = build_operators(operators_config or config.operators, operator_cache_dir(config, work_dir),
                                caption_client=teacher.caption_client)
    return teacher, operators


def quarantine_record(sample: Optional[Sample], exc: BaseException, sample_id: str = "") -> QuarantineRecord:
    """What the checkpoint stores for a sample that failed: its stage, the error type, one redacted line."""
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
    return QuarantineRecord(id=sample_id, stage=stage, error_type=error_type, message=one_line(redact(message)),
                            source=source)


def is_fatal(record: Optional[QuarantineRecord]) -> bool:
    """Is this the record of a run-stopping teacher error (never stored, never counted)?"""
    return record is not None and record.error_type == TeacherFatalError.__name__


def run_stopped(fatal: TeacherFatalError) -> TeacherFatalError:
    """The one line a run stopped by `fatal` ends with: what happened, the fix, how to resume."""
    fix = f"{fatal.fix}, then rerun" if fatal.fix else "fix it and rerun"
    return TeacherFatalError(f"{fatal}. The run stopped at the first such error: {fix} the same command to resume "
                             f"(finished samples are kept)", fatal.fix)


class GroupCommit:
    """Checkpoint writes from the event loop, durable before the awaiting sample goes on, batched: the
    writer thread takes every sample that finished while it was writing and commits them with one
    write and one fsync (`Checkpoint.add_finished_many`), so the per-sample fsync does not bound a run
    with hundreds of samples in flight. A failed commit fails every sample of its batch."""

    def __init__(self, checkpoint: Checkpoint, writer: ThreadPoolExecutor) -> None:
        self.checkpoint = checkpoint
        self.writer = writer
        self._finished: list[tuple[tuple, asyncio.Future]] = []
        self._quarantined: list[tuple[QuarantineRecord, asyncio.Future]] = []
        self._busy = False

    async def finished(self, entry: tuple) -> None:
        future = asyncio.get_running_loop().create_future()
        self._finished.append((entry, future))
        self._kick()
        await future

    async def quarantine(self, record: QuarantineRecord) -> None:
        future = asyncio.get_running_loop().create_future()
        self._quarantined.append((record, future))
        self._kick()
        await future

    def _kick(self) -> None:
        if self._busy:
            return  # the running commit picks these up when it is done
        self._busy = True
        asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._finished or self._quarantined:
                finished, self._finished = self._finished, []
                quarantined, self._quarantined = self._quarantined, []
                for batch, write in ((finished, self.checkpoint.add_finished_many),
                                     (quarantined, self.checkpoint.quarantine_many)):
                    if not batch:
                        continue
                    try:
                        await loop.run_in_executor(self.writer, write, [item for item, _ in batch])
                    except BaseException as exc:  # noqa: BLE001 - each waiting sample gets it
                        for _, future in batch:
                            if not future.done():
                                future.set_exception(exc)
                    else:
                        for _, future in batch:
                            if not future.done():
                                future.set_result(None)
        finally:
            self._busy = False


class SampleProcessor:
    """One sample through rationale → reflection → integration → checkpoint (see the module docstring)."""

    def __init__(self, config: PipelineConfig, teacher: Teacher, operators: OperatorRunner,
                 checkpoint: Checkpoint) -> None:
        self.config = config
        self.teacher = teacher
        self.operators = operators
        self.checkpoint = checkpoint
        self.settings = RationaleSettings(max_steps=config.rationale.max_steps,
                                          reflection=config.rationale.reflection,
                                          staged_rate=config.reflection.staged_rate)
        # Checkpoint appends fsync; on the event loop each would stall every sample in flight, so they
        # go to one writer thread (one thread: appends to a file never interleave), which commits the
        # samples that finished meanwhile together (one write, one fsync: `GroupCommit`).
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._commit = GroupCommit(checkpoint, self._writer)
        # The first error that dooms the run (see the module docstring); the engines stop on it.
        self.fatal: Optional[TeacherFatalError] = None

    async def aclose(self) -> None:
        """Wait for the pending checkpoint writes, close the teacher, log its totals."""
        try:
            self._writer.shutdown(wait=True)
        finally:
            await self.teacher.aclose()
            if self.teacher.stats is not None:
                log.info("%s", self.teacher.stats.summary())

    async def rows_for(self, sample: Sample) -> tuple[dict[str, dict], TeacherUsage]:
        images = [LoadedImage(ref.read_bytes()) for ref in sample.images]
        for image in images:
            image.check()  # a broken image quarantines here, before any teacher call
        trajectory = await generate_trajectory(sample, images, self.teacher, self.operators, self.settings)
        enforce_policy(trajectory, sample, self.config.teacher)  # on_mismatch, require_grounding
        if self.config.teacher.judge:
            judged = await self.teacher.judge(trajectory, sample)
            if judged is not None:
                trajectory.judge_score, judge_usage = judged
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
            if disk_error(exc):  # a full disk (e.g. the operator cache's) is the run's: one line, exit 1
                raise
            fatal = fatal_cause(exc)
            if fatal is not None:
                self.fatal = self.fatal or fatal
                return None, quarantine_record(sample, fatal)
            record = quarantine_record(sample, exc)
            if record.stage == "internal":
                log.warning("internal error on %s", sample.id, exc_info=True)
            await self._commit.quarantine(record)
            return None, record
        split = assign_split(sample, self.config.output.validation_fraction)
        await self._commit.finished((sample.id, sample.source, split, rows))
        return usage, None
