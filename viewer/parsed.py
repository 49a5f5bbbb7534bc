"""A row's dialogue as the viewer reads it: the system prompt, then per question its steps and answer.

This is the viewer's ONE reading of a row's dialogue structure; `viewer.view` and the card's example
dialogues (`publishing.examples`) draw only from what `parse_row` returns.

Where the pieces come from (no tag inside a message's text is parsed with a pattern here):
- steps (thought, operators, RAG query, signal, observations) from the row's structured `steps`
  column, split into questions after each `end` signal (DESIGN §5: every question ends with one);
- questions, RR user turns and RR short answers from the *positions* of the messages in the layout
  (RR per question: user question, (assistant step, user turn) per step, assistant answer; ORR per
  question: user turn, assistant turn); the first ORR question is the row's `question` column, the
  rest of that user turn being the API outputs, which the steps hold;
- the ORR short answer: the assistant turn minus the layout's literal `ORR_ANSWER` frame.

A row whose messages do not line up with its steps raises `LayoutMismatch`; the page then shows the
raw messages (still as text) with the reason.

SWITCH POINT for the project's strict parser (issue 13, `generation.dialogue_format`): once it is on
main, the body of `parse_row` becomes `parse_messages(row["messages"], row["format"])` mapped onto the
dataclasses below (its `RRQuestion`/`ORRQuestion` carry the same fields: question, answer, steps,
n_images, api_outputs, thought; its `RRStep.observations` are the same `(operator, text)` pairs), and
its `FormatError` replaces `LayoutMismatch`. Nothing else in the viewer or the card changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

# The ORR assistant turn's frame (DESIGN §5): `<THOUGHT>…</THOUGHT><ANSWER>The answer is: X</ANSWER>`.
ORR_ANSWER_OPEN = "<ANSWER>The answer is: "
ORR_ANSWER_CLOSE = "</ANSWER>"


class LayoutMismatch(ValueError):
    """The row's messages are not the RR/ORR layout of its steps column."""


@dataclass(frozen=True)
class Step:
    thought: str
    operators: tuple[str, ...] = ()
    rag_query: Optional[str] = None
    signal: str = "continue"
    observations: tuple[tuple[str, str], ...] = ()  # (operator, text) per result, in order

    @classmethod
    def from_column(cls, step: dict[str, Any]) -> "Step":
        return cls(
            thought=step.get("thought") or "",
            operators=tuple(step.get("operators") or ()),
            rag_query=step.get("rag_query") or None,
            signal=step.get("signal") or "continue",
            observations=tuple((o.get("operator") or "", o.get("text") or "") for o in step.get("observations") or ()),
        )


@dataclass(frozen=True)
class Question:
    question: str
    answer: Optional[str]  # the dialogue's short answer to it (None: not readable from the row)
    steps: tuple[Step, ...] = ()
    n_images: int = 0
    # RR: the user turn that followed each step, as written (results, no results, reflection, summary)
    turns_after: tuple[str, ...] = ()
    # ORR: the operator outputs shown in this question's user turn, and the one-turn thought
    api_outputs: tuple[tuple[str, str], ...] = ()
    thought: Optional[str] = None


@dataclass(frozen=True)
class Dialogue:
    format: str
    system: Optional[str]
    questions: tuple[Question, ...] = field(default_factory=tuple)


def message_text(message: dict[str, Any]) -> str:
    """A content-block message's text (a plain-string content is one block)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(block.get("text") or "" for block in content or () if block.get("type") == "text")


def image_count(message: dict[str, Any]) -> int:
    content = message.get("content")
    return 0 if isinstance(content, str) else sum(1 for b in content or () if b.get("type") == "image")


def split_questions(steps: Sequence[Step]) -> list[list[Step]]:
    """Steps per question: each question's steps end with its `end` step."""
    groups: list[list[Step]] = [[]]
    for step in steps:
        groups[-1].append(step)
        if step.signal == "end":
            groups.append([])
    return groups[:-1] if not groups[-1] and len(groups) > 1 else groups


def _expect(messages: Sequence[dict], index: int, role: str) -> dict:
    if index >= len(messages):
        raise LayoutMismatch(f"the dialogue ends at message {index}, where a {role} turn should be")
    if messages[index].get("role") != role:
        raise LayoutMismatch(f"message {index} is a {messages[index].get('role')!r} turn where the layout has {role!r}")
    return messages[index]


def _parse_rr(messages: Sequence[dict], groups: list[list[Step]]) -> Dialogue:
    system = message_text(messages[0]) if messages and messages[0].get("role") == "system" else None
    at = 1 if system is not None else 0
    questions = []
    for steps in groups:
        asked = _expect(messages, at, "user")
        turns_after = []
        for k in range(len(steps)):
            _expect(messages, at + 1 + 2 * k, "assistant")
            turns_after.append(message_text(_expect(messages, at + 2 + 2 * k, "user")))
        answer = _expect(messages, at + 1 + 2 * len(steps), "assistant")
        questions.append(Question(question=message_text(asked), answer=message_text(answer), steps=tuple(steps),
                                  n_images=image_count(asked), turns_after=tuple(turns_after)))
        at += 2 + 2 * len(steps)
    if at != len(messages):
        raise LayoutMismatch(f"{len(messages) - at} message(s) after the last question's answer")
    return Dialogue("rr", system, tuple(questions))


def orr_api_outputs(steps: Sequence[Step]) -> list[tuple[str, str]]:
    """The non-RAG operator results an ORR user turn shows: each distinct result once, in call order."""
    return list(dict.fromkeys(obs for step in steps for obs in step.observations if obs[0] != "rag"))


def _orr_answer(text: str) -> Optional[str]:
    head, sep, tail = text.rpartition(ORR_ANSWER_OPEN)
    return tail[: -len(ORR_ANSWER_CLOSE)] if sep and tail.endswith(ORR_ANSWER_CLOSE) else None


def _parse_orr(messages: Sequence[dict], groups: list[list[Step]], first_question: str) -> Dialogue:
    if len(messages) % 2 or len(messages) // 2 != len(groups):
        raise LayoutMismatch(f"{len(messages)} messages for {len(groups)} question(s) of steps; ORR has one "
                             f"user and one assistant turn per question")
    api_outputs = orr_api_outputs([s for steps in groups for s in steps])
    questions = []
    for k, steps in enumerate(groups):
        asked = _expect(messages, 2 * k, "user")
        reply = message_text(_expect(messages, 2 * k + 1, "assistant"))
        text = message_text(asked)
        question = first_question if k == 0 and first_question and text.startswith(first_question) else text
        questions.append(Question(
            question=question, answer=_orr_answer(reply), steps=tuple(steps), n_images=image_count(asked),
            api_outputs=tuple(api_outputs) if k == 0 else (),
            thought=" ".join(s.thought for s in steps if s.signal != "reflection"),
        ))
    return Dialogue("orr", None, tuple(questions))


def parse_row(row: dict[str, Any]) -> Dialogue:
    """The row's dialogue (see the module docstring for where each piece comes from)."""
    steps = [Step.from_column(s) for s in row.get("steps") or ()]
    groups = split_questions(steps)
    messages = row.get("messages") or []
    fmt = row.get("format")
    if fmt == "rr":
        return _parse_rr(messages, groups)
    if fmt == "orr":
        return _parse_orr(messages, groups, row.get("question") or "")
    raise LayoutMismatch(f"unknown format {fmt!r} (rr or orr)")
