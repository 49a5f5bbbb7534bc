"""Which kind of evidence each answer rests on (`generation.quality.evidence_kinds.EVIDENCE_KINDS`), judged
with the leak/grounding definitions: `tool` when `judge_question` calls the answer grounded; `source_rationale`
when it is grounded only once the thoughts marked with `SOURCE_RATIONALE_LEAD` are read as evidence; else
`none`. The engine (`generation.verify.enforce_policy`, `meta.evidence` in `generation.integration`) and the
audit (`generation.quality.row_judgement`) call the same functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from generation.quality.definitions import StepView, judge_question, step_view
from generation.quality.evidence_kinds import is_source_rationale, last_thought_admits, rationale_text


def _with_rationale(step: Any) -> Any:
    """The step as the definitions read it, with a marked thought's rationale added as evidence."""
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
