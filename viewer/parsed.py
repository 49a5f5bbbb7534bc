"""A row's dialogue as the viewer reads it: the system prompt, then per question its steps and answer.

This is the viewer's ONE reading of a row's dialogue structure; `viewer.view` and the card's example
dialogues (`publishing.examples`) draw only from what `parse_row` returns. The reading itself is the
project's one parser of the RR and ORR layouts, `generation.dialogue_format`, reading rows as written
(`strict=False`): a field may hold markup and the request turns may be worded as earlier engines
wrote them (a hand-edited row, or one from before the sanitiser or the paper's wording, shows as it
is, as text), but the messages must be the layout's. A row whose messages are not raises
`FormatError`; the page then shows the raw messages (still as text) with the reason.

Where the pieces come from: the messages, through the parser, give the dialogue's structure (the
questions, the user turn that followed each step as written, the answers, the image blocks, the ORR
API outputs and one-turn thought); each RR step's fields (thought, operators, RAG query, signal,
results) come from the row's `steps` column, which records the same steps structured (with each
result's backend, `viewer.view`). The two must line up, step for step, question by question.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from generation.dialogue_format import (  # noqa: F401  (FormatError, message_text: for the view)
    FormatError,
    ORRDialogue,
    RRStep,
    message_text,
    parse_messages,
)


@dataclass(frozen=True)
class Question:
    question: str  # RR: the question turn as written; ORR: the question
    answer: Optional[str]  # the dialogue's short answer to it
    steps: tuple[RRStep, ...] = ()  # RR
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


def column_step(step: dict[str, Any]) -> RRStep:
    """One entry of the row's `steps` column as the parser's step type."""
    return RRStep(thought=step.get("thought") or "", operators=tuple(step.get("operators") or ()),
                  rag_query=step.get("rag_query") or None, signal=step.get("signal") or "continue",
                  observations=tuple((o.get("operator") or "", o.get("text") or "")
                                     for o in step.get("observations") or ()))


def parse_row(row: dict[str, Any]) -> Dialogue:
    """The row's dialogue (see the module docstring); raises `FormatError`."""
    parsed = parse_messages(row.get("messages") or [], row.get("format"), strict=False)
    if isinstance(parsed, ORRDialogue):
        return Dialogue("orr", None, tuple(
            Question(q.question, q.answer, n_images=q.n_images, api_outputs=q.api_outputs, thought=q.thought)
            for q in parsed.questions))
    column = [column_step(s) for s in row.get("steps") or ()]
    counts = [len(q.steps) for q in parsed.questions]
    if len(column) != sum(counts):
        raise FormatError(f"the messages hold {sum(counts)} steps, the steps column {len(column)}")
    questions, start = [], 0
    for q, n in zip(parsed.questions, counts):
        # an RR question shows its turn as written (the question, then "Please start your reasoning.")
        questions.append(Question(q.asked, q.answer, tuple(column[start:start + n]), q.n_images,
                                  turns_after=q.turns_after))
        start += n
    return Dialogue("rr", parsed.system, tuple(questions))
