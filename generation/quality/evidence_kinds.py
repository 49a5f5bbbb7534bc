"""Kinds of evidence a row's answer rests on, told apart so nobody mistakes one for another.

- **tool**: the operators' results and retrieved passages (and arithmetic written out from them) support the
  answer: `generation.quality.definitions.Evidence.supports`, what `meta.grounded` has always meant.
- **source_rationale**: only the source's own rationale supports it (LLaVA-CoT's CAPTION / REASONING /
  CONCLUSION, TabMWP's solution, Visual-CoT's box). A thought built from such a rationale says so by
  starting with `SOURCE_RATIONALE_LEAD`, the one marker the offline teacher writes and the audit reads.
- **none**: nothing the row shows supports the answer.

The marker is a sentence a reader sees too: the row itself says where the thought's content comes from.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

EVIDENCE_KINDS = ("tool", "source_rationale", "none")

# A thought built from the source's own rationale starts with these words (then the rationale's text).
SOURCE_RATIONALE_LEAD = "The source's own rationale says:"


def is_source_rationale(thought: str) -> bool:
    """Is this thought built from the source's own rationale (does it start with the marker)?"""
    return (thought or "").lstrip().startswith(SOURCE_RATIONALE_LEAD)


def rationale_text(thought: str) -> str:
    """The rationale a marked thought quotes (the text after the marker); '' for any other thought."""
    if not is_source_rationale(thought):
        return ""
    return thought.lstrip()[len(SOURCE_RATIONALE_LEAD):].strip()


# --------------------------------------------------------------------------- admitting no evidence
# A thought that says the reasoning could not confirm the answer: the offline teacher's "None of these
# results shows the answer, so I cannot confirm it", a model's "I am unable to verify ...".
_ADMISSION = re.compile(
    r"\b(?:can ?not|can't|could not|couldn't|unable to|am not able to|is not possible to)\s+"
    r"(?:confirm|verify|determine|tell|see|find|read|check)\b"
    r"|\bnone of (?:these|the) (?:results|tools?|readings|outputs)\b[^.]*\b(?:shows?|gives?|confirms?|answers?)\b"
    r"|\bno (?:evidence|result|tool)\b[^.]*\b(?:shows?|supports?|confirms?|gives?)\b", re.I)


def admits_no_evidence(thought: str) -> bool:
    """Does this thought say that the reasoning could not confirm the answer?"""
    return bool(thought) and bool(_ADMISSION.search(thought))


def last_thought_admits(steps: Sequence[Any]) -> bool:
    """Does the question's last thought (the one the final answer follows) admit it has no evidence?"""
    thoughts = [t for t in (getattr(s, "thought", "") or "" for s in steps) if t.strip()]
    return bool(thoughts) and admits_no_evidence(thoughts[-1])


# ------------------------------------------------------------------------------------------ kinds
def _with_rationale(step: Any) -> Any:
    """The step as the definitions read it, with a marked thought's rationale added as evidence."""
    from generation.quality.definitions import StepView, step_view

    view = step if isinstance(step, StepView) else step_view(step)
    text = rationale_text(view.thought)
    if not text:
        return view
    return StepView(view.thought, view.signal, (("source_rationale", text),) + tuple(view.observations))


@dataclass(frozen=True)
class QuestionEvidence:
    """One question's evidence kind (`EVIDENCE_KINDS`) and whether its last thought admits no evidence."""

    kind: str
    admits_no_evidence: bool = False


def question_evidence(questions: Sequence[tuple[str, Sequence[Any], str, Optional[Sequence[str]]]],
                      grounded: Optional[Sequence[bool]] = None) -> list[QuestionEvidence]:
    """Per question of a dialogue, in order ((question, steps, answer, choices or None to read them from the
    question)): `tool` when `judge_question` calls it grounded; `source_rationale` when it is grounded once
    the marked thoughts' rationale is read as evidence too; else `none`. Later questions see the earlier
    ones' evidence, as in `judge_dialogue`. `grounded`: the questions' verdicts when the caller has judged
    them already (the audit), so they are not judged twice."""
    from generation.quality.definitions import judge_question

    out: list[QuestionEvidence] = []
    tool_prior = rationale_prior = None
    marked = any(is_source_rationale(getattr(s, "thought", "")) for _, steps, _, _ in questions for s in steps)
    for index, (question, steps, answer, choices) in enumerate(questions):
        if grounded is None:
            verdict, tool_prior = judge_question(question, steps, answer, choices, prior=tool_prior)
        kind = "tool" if (verdict.grounded if grounded is None else grounded[index]) else "none"
        if marked:  # the same dialogue again, each marked thought's rationale read as a result
            verdict, rationale_prior = judge_question(question, [_with_rationale(s) for s in steps], answer,
                                                      choices, prior=rationale_prior)
            if kind == "none" and verdict.grounded:
                kind = "source_rationale"
        out.append(QuestionEvidence(kind, last_thought_admits(steps)))
    return out


def row_kind(kinds: Sequence[str]) -> Optional[str]:
    """A dialogue's kind: its weakest question's (`none` < `source_rationale` < `tool`); None without questions."""
    if not kinds:
        return None
    return min(kinds, key=lambda kind: {"none": 0, "source_rationale": 1, "tool": 2}[kind])


def trajectory_evidence(trajectory: Any, sample: Any = None) -> list[QuestionEvidence]:
    """`question_evidence` of an engine `Trajectory` (choices from the `sample`'s QAs when given)."""
    qas = list(getattr(sample, "qas", None) or [])
    return question_evidence([(qa.question, qa.steps, qa.final_answer,
                               qas[i].choices if i < len(qas) else None) for i, qa in enumerate(trajectory.qas)])
