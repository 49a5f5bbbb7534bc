"""The narrow interface between the rationale/reflection loop and whoever reasons (DESIGN §4).

The loop never imports `openai`: it asks a `Teacher` for the next step, for a reflection verdict and
for the final short answer. Every call returns its own token usage, which travels with the row.
Everything else the engine reads of a teacher is declared on `Teacher` too (its mode, its way to the
model for the caption operator, the judge pass, the endpoint check, its run totals): a teacher that
lacks a capability says so (None, a no-op), so no caller probes for attributes.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Optional, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from generation.errors import MmatError
from generation.schema import QATrajectory, Sample, Step, TeacherUsage, Trajectory
from operators.images import LoadedImage


class TeacherError(MmatError):
    """The teacher could not produce a usable reply for this sample (garbage, refusals, HTTP errors
    after retries). The runner quarantines the sample with this message."""


class TeacherFatalError(TeacherError):
    """The teacher will refuse every request of this run, whatever the sample: a rejected key (HTTP
    401), no permission for the model (403), an exhausted quota. The runner stops at the first one
    (exit 2) instead of quarantining every sample; the sample is not quarantined and runs again on
    the rerun. `fix` says what the user must do before rerunning."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


def fatal_cause(exc: BaseException) -> Optional[TeacherFatalError]:
    """The `TeacherFatalError` behind `exc` (itself, or one it was raised from or while handling, e.g.
    an operator that wrapped the teacher's client error), else None."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TeacherFatalError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


@dataclass
class TeacherContext:
    """Everything the teacher may look at for one question. It never contains the reference answer's
    use instructions: the answer is there only so the offline teacher and the verifier can read it."""

    sample: Sample
    qa_index: int
    images: list[LoadedImage]
    operators_available: list[str]
    steps: list[Step] = field(default_factory=list)
    previous: list[QATrajectory] = field(default_factory=list)  # earlier questions of this dialogue
    reflection_feedback: Optional[str] = None  # set when asking for the repaired step
    # A defect the loop asks the teacher to stage in this question (`reflection.staged_rate`): "math" (a
    # calculation step left out) or "general" (the answer stated before the evidence). A teacher that
    # writes it says so (`StepDecision.staged`); the reflection that finds it is then `origin: staged`.
    staged: Optional[Literal["general", "math"]] = None
    staged_written: bool = False

    @property
    def qa(self):
        return self.sample.qas[self.qa_index]


class StepDecision(BaseModel):
    thought: str
    operators: list[str] = Field(default_factory=list)
    # Optional per-operator arguments, e.g. {"label_bbox": {"labels": ["dog", "ball"]}}.
    operator_args: dict[str, dict] = Field(default_factory=dict)
    rag_query: Optional[str] = None
    next_action: Literal["continue", "final_answer"] = "continue"
    usage: TeacherUsage = Field(default_factory=TeacherUsage)
    staged: bool = False  # this step carries the defect `TeacherContext.staged` asked for


class ReflectionVerdict(BaseModel):
    """A defect found by a reflection check. `thought` is the repaired step when the check wrote one
    (the math check does); otherwise the loop asks for a repaired step with the reason as feedback."""

    kind: Literal["general", "math"]
    reason: str
    thought: Optional[str] = None
    usage: TeacherUsage = Field(default_factory=TeacherUsage)


class FinalAnswer(BaseModel):
    answer: str
    usage: TeacherUsage = Field(default_factory=TeacherUsage)


@dataclass
class TeacherStats:
    """What the teacher did over the whole run, quarantined samples included."""

    requests: int = 0
    retries: int = 0
    repairs: int = 0
    failures: Counter = field(default_factory=Counter)  # by kind: rate_limit, server, timeout, unparsable, ...
    downgrades: list[str] = field(default_factory=list)
    usage: TeacherUsage = field(default_factory=TeacherUsage)
    context_trims: int = 0  # prompts re-sent with older results omitted to fit the model's context

    def summary(self) -> str:
        u = self.usage
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        return (f"teacher {u.model}: {self.requests} requests, {self.retries} retries, {self.repairs} repairs, "
                f"{self.context_trims} context trims, failed: {failed}; {u.prompt_tokens:,} prompt + "
                f"{u.completion_tokens:,} completion tokens, ${u.cost_usd:.4f}")


# What the VLM caption operator awaits to reach the teacher's model: `(messages, model=..., **params)`
# → a chat completion (see `generation.teachers.chat_client.CaptionClient`).
CaptionCall = Callable[..., Awaitable[Any]]


@runtime_checkable
class Teacher(Protocol):
    model_name: str
    # What rows record as `meta.teacher_mode`: `vision` or `text_only`; None for a teacher with no model
    # (the offline teacher reads annotations, not images). Read after each sample: it may change mid-run.
    mode: Optional[str]
    # The caption operator's way to the teacher's model; None when there is no VLM to caption with.
    caption_client: Optional[CaptionCall]
    # The run's totals (requests, retries, repairs, failures, tokens); None when the teacher keeps none.
    stats: Optional[TeacherStats]

    async def next_step(self, ctx: TeacherContext) -> StepDecision: ...

    async def reflect(
        self, ctx: TeacherContext, kind: Literal["general", "math"]
    ) -> tuple[Optional[ReflectionVerdict], TeacherUsage]: ...

    async def final_answer(self, ctx: TeacherContext) -> FinalAnswer: ...

    async def judge(self, trajectory: Trajectory, sample: Sample) -> Optional[tuple[float, TeacherUsage]]:
        """The optional quality pass (`teacher.judge: true`): (score in [0, 1], its usage), or None when
        this teacher cannot judge."""
        ...

    async def preflight(self) -> None:
        """Check the endpoint and the key before the first paid call (one free request); raises
        `TeacherFatalError` when the run cannot go on. A no-op for a teacher without an endpoint."""
        ...

    async def aclose(self) -> None: ...
