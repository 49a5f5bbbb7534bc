"""What the teacher replies, as lenient pydantic models, and the JSON schemas it is asked to follow.

Servers that only do plain JSON drift a little (a string where a list belongs, `"final"` for
`final_answer`, `"none"` for no reason): the models accept those forms and normalise them, so one
harmless drift never costs a repair round. The schemas are strict (`additionalProperties: false`)
for servers that enforce them (`response_format: json_schema`).

Operator names are the exception to leniency about content: a step that names an operator this run
did not offer (`shell`, `OCR_v2`, a known operator that is off here) is never dropped in silence, which
would leave a row that says it used tools and shows none. `step_reply(offered)` gives the reply type
that knows the offered names: a name that differs only in case, spaces or hyphens (`OCR`, `Image
Caption`) is read as that operator; any other name makes the reply invalid, so the chat client asks
once more naming the unknown operator and the offered ones (its one repair round), and a second
such reply quarantines the sample (`teacher reply for rationale_step unusable after one repair retry:
operators: unknown operator 'shell' ...`). `rag` is always accepted (it has its own field).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, ClassVar, Literal, Optional, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RagReply(_Lenient):
    needed: bool = False
    query: Optional[str] = None


class StepReply(_Lenient):
    thought: str = Field(min_length=1)
    operators: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    rag: RagReply = Field(default_factory=RagReply)
    next_action: Literal["continue", "final_answer"] = "continue"
    # The operator names this run offered (`step_reply`); None: any name (the plain type, for tests and tools).
    offered: ClassVar[Optional[tuple[str, ...]]] = None

    @field_validator("thought", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("operators", "labels", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rag", mode="before")
    @classmethod
    def _rag(cls, value: Any) -> Any:
        if value is None or value is False:
            return {}
        if isinstance(value, str):
            return {"needed": bool(value.strip()), "query": value.strip() or None}
        return value

    @field_validator("next_action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> Any:
        if isinstance(value, str):
            v = value.strip().lower().replace(" ", "_")
            if v in ("final_answer", "final", "answer", "end", "stop", "done", "finish"):
                return "final_answer"
            if v in ("continue", "next", "more"):
                return "continue"
        return value

    @field_validator("operators", mode="after")
    @classmethod
    def _known_operators(cls, value: list[str]) -> list[str]:
        if cls.offered is None:
            return value
        by_key = {_name_key(name): name for name in (*cls.offered, "rag")}
        names: list[str] = []
        for name in value:
            known = by_key.get(_name_key(name))
            if known is None:
                offered = ", ".join(cls.offered) or "none in this run"
                raise ValueError(f"unknown operator {name[:40]!r} (not one offered here): use only the offered "
                                 f"operators ({offered}), or an empty list")
            names.append(known)
        return names


def _name_key(name: str) -> str:
    """`OCR`, ` ocr `, `Image Caption`, `image-caption` -> the operator's own spelling's key."""
    return re.sub(r"[\s\-]+", "_", name.strip()).casefold()


def step_reply(operators: Sequence[str]) -> type[StepReply]:
    """The step reply type that accepts only `operators` (and `rag`) as operator names (module docstring)."""
    return _step_reply(tuple(n for n in operators if n != "rag"))


@lru_cache(maxsize=64)
def _step_reply(names: tuple[str, ...]) -> type[StepReply]:
    return type("OfferedStepReply", (StepReply,), {"offered": names, "__module__": __name__})


class ReasonReply(_Lenient):
    reason: Optional[str] = None
    thought: Optional[str] = None

    @field_validator("reason", "thought", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return None if value.lower() in ("", "none", "null", "n/a") else value
        return value


class AnswerReply(_Lenient):
    answer: str = Field(min_length=1)

    @field_validator("answer", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value


class JudgeReply(_Lenient):
    coherence: float
    relevance: float
    accuracy: float

    @property
    def score(self) -> float:
        return sum(min(1.0, max(0.0, v)) for v in (self.coherence, self.relevance, self.accuracy)) / 3


ReplyT = TypeVar("ReplyT", bound=BaseModel)


def _strict(properties: dict[str, Any], title: str) -> dict[str, Any]:
    return {"title": title, "type": "object", "additionalProperties": False,
            "required": list(properties), "properties": properties}


def step_schema(operators: Sequence[str]) -> dict[str, Any]:
    return _step_schema(tuple(n for n in operators if n != "rag"))


@lru_cache(maxsize=64)
def _step_schema(names: tuple[str, ...]) -> dict[str, Any]:
    items: dict[str, Any] = {"type": "string", "enum": list(names)} if names else {"type": "string"}
    return _strict({
        "thought": {"type": "string"},
        "operators": {"type": "array", "items": items},
        "labels": {"type": "array", "items": {"type": "string"}},
        "rag": {"type": "object", "additionalProperties": False, "required": ["needed", "query"],
                "properties": {"needed": {"type": "boolean"}, "query": {"type": ["string", "null"]}}},
        "next_action": {"type": "string", "enum": ["continue", "final_answer"]},
    }, "rationale_step")


SCHEMAS = {
    "reflection_general": _strict({"reason": {"type": ["string", "null"]}}, "reflection_general"),
    "reflection_math": _strict({"reason": {"type": ["string", "null"]}, "thought": {"type": ["string", "null"]}},
                               "reflection_math"),
    "final_answer": _strict({"answer": {"type": "string"}}, "final_answer"),
    "judge": _strict({"coherence": {"type": "number"}, "relevance": {"type": "number"},
                      "accuracy": {"type": "number"}}, "judge"),
}
