"""What the run has done so far: the progress bar, the periodic run-log record, and the run's totals.

Both engines record outcomes the same way (`recording`): a bar over the plan, the foundation
failures quarantined first, then one `on_done(usage, record)` per sample as it finishes, which
counts it in the `RunSummary`, advances the bar and writes the sample's quarantine line to the run
log. Whatever the console shows (nothing with `--quiet`), the run log gets the same numbers
(samples/s, ETA, tokens, USD, quarantined) as a JSON record every `log_every_s` seconds and at the
end, so scripts can follow a run too.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from generation.checkpoint import Checkpoint, QuarantineRecord
from generation.plan import Plan
from generation.processor import quarantine_record
from generation.schema import TeacherUsage

# Per-sample and periodic records go to the run log only (the console filter in generation.logs drops them).
sample_log = logging.getLogger("mmat.samples")
progress_log = logging.getLogger("mmat.progress")


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
    elapsed_s: float = 0.0  # the whole run: planning, samples, then shards, audit and card
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


def progress_fields(done: int, total: int, elapsed_s: float, usage: TeacherUsage, quarantined: int = 0) -> dict:
    """What the bar and the run log show: samples/s, ETA, tokens and USD so far."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    return {"done": done, "total": total, "quarantined": quarantined, "samples_per_s": round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1), "elapsed_s": round(elapsed_s, 1),
            "tokens": usage.prompt_tokens + usage.completion_tokens, "cost_usd": round(usage.cost_usd, 6)}


def format_eta(eta_s: Optional[float]) -> str:
    """H:MM:SS of the ETA `progress_fields` computed, `-:--:--` before there is a rate."""
    if eta_s is None:
        return "-:--:--"
    seconds = int(round(eta_s))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            # The ETA is the one `progress_fields` computes from the rate the line shows (rich's own
            # TimeRemainingColumn estimates from a recent window and contradicted the rate beside it).
            # The bar goes to stderr: stdout is for data (`mmat show`, summaries a script may read).
            self.progress = Progress(TextColumn("generate"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TextColumn("ETA {task.fields[eta]}"),
                                     TextColumn("{task.fields[cost]}"), TextColumn("{task.fields[quarantined]}"),
                                     TextColumn("{task.fields[waiting]}"),
                                     transient=False, console=Console(stderr=True))
            self.task = self.progress.add_task("generate", total=total, rate="0.00 samples/s", eta="-:--:--",
                                               cost="0 tok $0.0000", quarantined="", waiting="")
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

    def set_waiting(self, text: str) -> None:
        """Say on the progress line why the run is paused (a provider's Retry-After), '' when it goes on;
        the run log gets the same text."""
        if self.progress:
            self.progress.update(self.task, waiting=text)
        if text:
            progress_log.info("waiting: %s", text, extra={"data": {"waiting": text}})

    def advance(self, usage: TeacherUsage, quarantined: bool = False) -> None:
        self.done += 1
        self.quarantined += int(quarantined)
        self.usage = usage
        now = time.perf_counter()
        if self.progress:
            fields = progress_fields(self.done, self.total, now - self.start, usage, self.quarantined)
            self.progress.update(self.task, advance=1, rate=f"{fields['samples_per_s']:.2f} samples/s",
                                 eta=format_eta(fields["eta_s"]),
                                 cost=f"{fields['tokens']:,} tok ${fields['cost_usd']:.4f}",
                                 quarantined=f"{self.quarantined} quarantined" if self.quarantined else "")
        if now - self.last_log >= self.log_every_s:
            self.last_log = now
            self._log()


OutcomeCallback = Callable[[Optional[TeacherUsage], Optional[QuarantineRecord]], None]


def outcome_recorder(summary: RunSummary, progress: RunProgress) -> OutcomeCallback:
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


@contextmanager
def recording(plan: Plan, checkpoint: Checkpoint, summary: RunSummary, quiet: bool) -> Iterator[OutcomeCallback]:
    """The scaffold of every executor: a bar over the plan, the records the sources could not turn
    into samples (missing field, unreadable image, ...) quarantined first, then `on_done` per sample."""
    from generation.teachers.limiter import listen_to_waits

    # A provider's Retry-After pauses every request: the bar says so (`RunProgress.set_waiting`).
    with RunProgress(plan.size, quiet) as progress, listen_to_waits(progress.set_waiting):
        on_done = outcome_recorder(summary, progress)
        for failure in plan.foundation_failures:
            record = quarantine_record(None, failure, failure.sample_id)
            checkpoint.quarantine(record)
            on_done(None, record)
        yield on_done
