"""What a good dialogue is, defined once: verified, grounded, leaked, duplicate.

Every place that judges data quality calls these functions: the audit (`mmat audit`, the card's
Quality section, the numbers in `run.log`), the rationale loop (`meta.grounded`, and
`teacher.require_grounding`), the general reflection check (its leak detector), and the offline
teacher (which writes a step only from evidence these functions accept). So a row the engine calls
grounded is grounded for the audit too, and a step the reflection flags is a step the audit counts.

The definitions work on what a dialogue shows, in order: the question, then steps (a thought, then
the operator and retrieval results that came back), then the final answer.

- **target**: what the answer claims. The answer itself; for a choice question answered by a letter,
  the chosen option's text (`choice_index`, the verifier's own reading of letters and options).
- **evidence**: the operator results and retrieved passages shown so far (earlier questions of the
  dialogue included), the numbers of the question, a few constants (`CONSTANTS`), and every number a
  step *derives* by arithmetic written out with known operands (`45 + 52 = 97`, `$6.20 × 3 = $18.60`:
  the operands must be evidence numbers or earlier results, and the arithmetic must be right), and
  every fact a step *decides* from known numbers and states rightly: a comparison (`$8.95 is less than
  $12.00`, `45 > 41`) and a parity (`27 ends in 7, so it is odd`).
- **supported**: the target is in the evidence. Text: its normal form (`generation.answers`) occurs,
  word for word, in the evidence's normal form. Numbers: the value is an evidence number or a derived
  one; a fraction `a/b` (TabMWP's simplified probabilities, `4/11`) also when its numerator and its
  denominator are both known numbers (evidence, derived, or the question's). Yes/no: the evidence speaks about what the question asks (at least half of its content words
  occur in it; a proxy: no text can show that a "no" is right), or a step decided a comparison of known
  numbers (what settles "does she have enough?"). A text answer a decided fact names (`odd`) is supported
  like one the results show. Long answers (more than
  `LONG_ANSWER_WORDS` words): at least `LONG_ANSWER_RECALL` of their content words occur in it.
- **grounded** (per question): the target is supported by the evidence shown before the final turn.
- **leaked** (per step): the step states the target before the evidence supports it (a quote of the
  question, which lists the options, is not a statement), or it mentions a reference, standard, given,
  expected or correct answer (`LEAK_DEFINITION`, which the model-based reflection prompt shows
  verbatim). A leak followed by a reflection step of the same question is *repaired*: the dialogue
  shows the defect and its repair, the pattern reflection data teaches. The audit's `leaked` counts
  unrepaired leaks.
- **verified**: the final answer matches the reference (`generation.verify.answers_match`).
- **duplicates**: exact (the same dialogue text and the same images) and near (the dialogue texts'
  word 5-gram sets overlap by at least `NEAR_DUPLICATE_JACCARD`, estimated by MinHash).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from generation.answers import normalise_answer
from generation.quality.grounding import (  # noqa: F401 - re-exported: callers import them from here
    CONSTANTS,
    LONG_ANSWER_RECALL,
    LONG_ANSWER_WORDS,
    Evidence,
    Target,
    _number,
    _places,
    answer_target,
    content_words,
    decided_facts,
    equations,
    same_number,
)


# The words the model-based general reflection is shown (`prompts/reflection_general.j2` includes the file).
LEAK_DEFINITION = (Path(__file__).resolve().parents[1] / "prompts" / "leak_definition.txt").read_text().strip()

_REFERENCE = re.compile(
    r"\b(?:reference|standard|given|expected|provided|ground[- ]truth|gold|annotated|official|correct)\s+"
    r"(?:answer|solution|label)s?\b", re.I)


# ------------------------------------------------------------------------------------- dialogues
@dataclass(frozen=True)
class StepView:
    """One step as the definitions read it: the thought, its signal, then the results that came back."""

    thought: str
    signal: str = "continue"
    observations: tuple[tuple[str, str], ...] = ()  # (operator, text)


def step_view(step: Any) -> StepView:
    """A `StepView` of an engine `Step` (observations are objects) or a parsed `RRStep` (pairs)."""
    pairs = tuple((o.operator, o.text) if hasattr(o, "operator") else (str(o[0]), str(o[1]))
                  for o in getattr(step, "observations", ()) or ())
    return StepView(step.thought or "", step.signal, pairs)


def question_choices(question: str) -> list[str]:
    """The options written into a question's text (rows carry no choices column)."""
    from generation.sources.base import parse_listed_choices

    return parse_listed_choices(question)


# ---------------------------------------------------------------------------------------- leaks
def _letter_claim(letter: str) -> re.Pattern:
    return re.compile(r"(?i:\b(?:option|choice|answer is|answer:|answer would be|answer must be))\s*\(?" + letter
                      + r"\b")


_CONCLUSION = re.compile(r"\banswer(?: is| would be| must be)?\s*:?\s*[\"']?(yes|no)\b"
                         r"|\b(?:so|therefore|thus|hence)\s*,?\s*(yes|no)\b|^(yes|no)\s*[,.!;:]", re.I)


def _mentioned_outside_question(thought: str, target_norm: str, question: str) -> bool:
    """Does `thought` say `target_norm` other than by quoting the question (which lists the options)?"""
    words, wanted = normalise_answer(thought).split(), target_norm.split()
    if not wanted:
        return False
    asked = f" {normalise_answer(question)} "
    n = len(wanted)
    for p in range(len(words) - n + 1):
        if words[p: p + n] == wanted:
            before, after = " ".join(words[max(0, p - 2): p + n]), " ".join(words[p: p + n + 2])
            if f" {before} " not in asked and f" {after} " not in asked:
                return True
    return False


def states_answer(thought: str, target: Target, question: str) -> bool:
    """Does the step say what the answer is (the target's text, its option letter, or a yes/no verdict)?"""
    if target.kind == "yesno" and any((m.group(1) or m.group(2) or m.group(3)).lower() == target.norm
                                      for m in _CONCLUSION.finditer(thought.strip())):
        return True
    letter = target.letter or (target.text.strip("(). ") if target.kind == "label" else None)
    if letter and _letter_claim(letter).search(thought):
        return True
    if target.kind in ("label", "yesno"):
        return False  # a yes/no is stated by a verdict or its option's letter, not by the word in passing
    return _mentioned_outside_question(thought, target.norm, question)


def mentions_reference_answer(thought: str, question: str) -> Optional[str]:
    """The phrase naming a reference/standard/given answer, unless the question itself uses it."""
    for match in _REFERENCE.finditer(thought):
        if match.group().lower() not in question.lower():
            return match.group()
    return None


@dataclass(frozen=True)
class Leak:
    step: int  # index within the question's steps
    reason: str
    repaired: bool = False


@dataclass
class QuestionQuality:
    target: Target
    grounded: bool
    leaks: list[Leak] = field(default_factory=list)

    @property
    def leaked(self) -> bool:
        """An unrepaired leak: what the dialogue teaches as sound reasoning."""
        return any(not leak.repaired for leak in self.leaks)


def judge_question(question: str, steps: Sequence[Any], answer: str, choices: Optional[Sequence[str]] = None,
                   prior: Optional[Evidence] = None) -> tuple[QuestionQuality, Evidence]:
    """Grounded and leaked for one question. `steps`: engine `Step`s, parsed `RRStep`s or `StepView`s;
    `choices`: None reads them from the question's text; `prior`: the evidence of the dialogue's earlier
    questions. Returns the verdict and the evidence after this question (for the next one)."""
    views = [s if isinstance(s, StepView) else step_view(s) for s in steps]
    target = answer_target(answer, question_choices(question) if choices is None else choices)
    evidence = prior.copy(question) if prior is not None else Evidence(question)
    leaks: list[Leak] = []
    for index, step in enumerate(views):
        if step.signal == "reflection":
            leaks = [Leak(leak.step, leak.reason, True) for leak in leaks]
            evidence.add_results(step.observations)
            continue
        phrase = mentions_reference_answer(step.thought, question)
        if phrase:
            leaks.append(Leak(index, f"step {index + 1} mentions a {phrase.lower()!r}"))
        elif step.thought and states_answer(step.thought, target, question):
            probe = evidence.copy()  # the step's own calculations and comparisons may show it
            probe.add_thought(step.thought)
            if not probe.supports(target):
                leaks.append(Leak(index, f"step {index + 1} states the answer {target.text!r} before any "
                                         "evidence supports it"))
        evidence.add_thought(step.thought)
        evidence.add_results(step.observations)
    return QuestionQuality(target, evidence.supports(target), leaks), evidence


def judge_dialogue(questions: Sequence[Any]) -> list[QuestionQuality]:
    """`judge_question` over a dialogue's questions in order (each with `.question`, `.steps`, `.answer`,
    like a parsed `RRQuestion`); later questions see the earlier ones' evidence."""
    verdicts, evidence = [], None
    for q in questions:
        verdict, evidence = judge_question(q.question, q.steps, q.answer, prior=evidence)
        verdicts.append(verdict)
    return verdicts


def evidence_of(previous: Sequence[Any]) -> Optional[Evidence]:
    """The evidence earlier questions of a dialogue showed (engine `QATrajectory`s), for the next one."""
    evidence = None
    for qa in previous:
        _, evidence = judge_question(qa.question, qa.steps, qa.final_answer, prior=evidence)
    return evidence


# Near-duplicates live in their own module (MinHash/LSH and its settings); re-exported for callers.
from generation.quality.near_duplicates import (  # noqa: E402,F401
    NEAR_DUPLICATE_JACCARD,
    SIGNATURE_VALUES,
    NearDuplicates,
    _distinct_rows,
    minhash,
    shingles,
)
