"""Plain data that flows between the four stages (DESIGN §1).

Every stage is a function over these models; no stage reaches into another's internals. They are
pydantic models so the runner can checkpoint them as JSON and so bad data fails at the edge.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

ENGINE_VERSION = "0.1.0"

Signal = Literal["continue", "reflection", "end"]


class ImageRef(BaseModel):
    """One image of a sample: a file on disk or bytes already in memory, read only when needed."""

    path: Optional[str] = None
    data: Optional[bytes] = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError("ImageRef has neither path nor data")
        return Path(self.path).read_bytes()

    def sha256(self) -> str:
        return hashlib.sha256(self.read_bytes()).hexdigest()


class QA(BaseModel):
    """One question-answer pair. A dialogue holds one or more, all about the same images."""

    question: str
    answer: str
    choices: list[str] = Field(default_factory=list)
    source_rationale: Optional[str] = None
    # Extra per-question facts (InfoSeek answer_eval ranges, TabMWP ques_type, Visual CoT bbox, ...).
    meta: dict[str, Any] = Field(default_factory=dict)


class Sample(BaseModel):
    """The foundation stage's output: one dialogue's worth of source data, in one shape for all sources.

    `qas[0]` is the dialogue's primary question; multi-QA records (Cauldron `texts`, multi-turn
    conversations) keep every pair of one image set here, in order.
    """

    id: str
    source: str
    subset: str
    # "train" / "validation" when the native layout says so; None lets generation.splits decide by id.
    split: Optional[str] = None
    images: list[ImageRef] = Field(default_factory=list)
    qas: list[QA]
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def question(self) -> str:
        return self.qas[0].question

    @property
    def answer(self) -> str:
        return self.qas[0].answer

    @property
    def choices(self) -> list[str]:
        return self.qas[0].choices

    @property
    def source_rationale(self) -> Optional[str]:
        return self.qas[0].source_rationale


def is_math(sample: Sample, qa: QA) -> bool:
    """Does this question get the math check? (the source marks it, per question or for the sample)"""
    return bool(qa.meta.get("math") or sample.meta.get("math"))


class Observation(BaseModel):
    """What one operator (or RAG) returned in a step, as the dialogue shows it, and which backend produced
    it (e.g. `paddle` or `rapidocr` for `ocr`): the dialogue text is the same whichever backend ran."""

    operator: str
    text: str
    backend: Optional[str] = None


class Step(BaseModel):
    thought: str
    operators: list[str] = Field(default_factory=list)
    rag_query: Optional[str] = None
    signal: Signal = "continue"
    observations: list[Observation] = Field(default_factory=list)


class Reflection(BaseModel):
    kind: Literal["none", "general", "math"] = "none"
    reason: str = ""
    # `check`: a check found the defect in what the teacher wrote; `staged`: the teacher wrote the defect
    # on purpose (`reflection.staged_rate`) and a check found it; None when there is no reflection.
    origin: Optional[Literal["check", "staged"]] = None


class TeacherUsage(BaseModel):
    """Cost accounting that travels with every row (distilabel-style statistics)."""

    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost_usd: float = 0.0
    # The part of prompt_tokens the provider served from its prompt cache (billed at the cached price).
    cached_tokens: int = 0

    def add(self, other: "TeacherUsage") -> "TeacherUsage":
        return TeacherUsage(
            model=self.model or other.model,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            latency_s=self.latency_s + other.latency_s,
            cost_usd=self.cost_usd + other.cost_usd,
        )


class QATrajectory(BaseModel):
    """The reasoning for one question: steps (reflection included), and the short final answer."""

    question: str
    reference_answer: str
    steps: list[Step]
    final_answer: str
    reflection: Reflection = Field(default_factory=Reflection)
    verified: Optional[bool] = None
    # The answer is supported by the evidence the steps show (`generation.quality.definitions`).
    grounded: Optional[bool] = None


class Trajectory(BaseModel):
    """The rationale + reflection stages' output for one sample."""

    sample_id: str
    qas: list[QATrajectory]
    usage: TeacherUsage = Field(default_factory=TeacherUsage)
    operators_available: list[str] = Field(default_factory=list)
    judge_score: Optional[float] = None
    # `vision` (the teacher saw the images) or `text_only` (only the operators' text); None: the
    # offline teacher, which reads the annotations, not the images.
    teacher_mode: Optional[str] = None

    @property
    def reflection(self) -> Reflection:
        """The row-level reflection: the first question that needed one, else `none`."""
        for qa in self.qas:
            if qa.reflection.kind != "none":
                return qa.reflection
        return Reflection()


class Quarantined(Exception):
    """Raised (or yielded) when one sample cannot go on; the runner records it and moves on."""

    def __init__(self, sample_id: str, stage: str, reason: str, error_type: str = "") -> None:
        super().__init__(f"{sample_id} [{stage}] {reason}")
        self.sample_id = sample_id
        self.stage = stage
        self.reason = reason
        self.error_type = error_type or type(self).__name__
