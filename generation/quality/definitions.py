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
- **leaked** (per step): the step states the target before the evidence supports it, or it mentions a
  reference, standard, given, expected or correct answer (`LEAK_DEFINITION`, which the model-based
  reflection prompt shows verbatim). Only the thought's own words count: what it copies from the
  question (its instruction phrases, `generation.sources.instructions`, wherever they stand; any run of
  `COPIED_RUN_WORDS` words the question has; its options listed) is cut out first
  (`without_question_text`), so "Answer yes or no." is no verdict. A step built from the source's own
  rationale (`evidence_kinds.is_source_rationale`) is a declared quote, not a statement (a reference
  answer named there still leaks). A leak in a step a reflection *replaced* (`generation.final_trajectory`:
  the step before the reflection, or one its thought names) is *repaired*: the dialogue shows the defect
  and its repair, the pattern reflection data teaches. The audit's `leaked` counts unrepaired leaks;
  `tests/test_leak_definition.py` measures precision and recall on hand-made dialogues.
- **verified**: the final answer matches the reference (`generation.verify.answers_match`).
- **duplicates**: exact (the same dialogue text and the same images) and near (the dialogue texts'
  word 5-gram sets overlap by at least `NEAR_DUPLICATE_JACCARD`, estimated by MinHash).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
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


# A yes/no verdict: "the answer is yes", "so no", a thought that opens with "Yes," — never "yes or no"
# (the instruction's words, or "whether yes or no").
_NOT_ALTERNATIVE = r"(?!\s*(?:or|/|,)\s*(?:yes|no)\b)"
_CONCLUSION = re.compile(r"\banswer(?: is| would be| must be)?\s*:?\s*[\"']?(yes|no)\b" + _NOT_ALTERNATIVE +
                         r"|\b(?:so|therefore|thus|hence)\s*,?\s*(yes|no)\b" + _NOT_ALTERNATIVE +
                         r"|^(yes|no)\s*[,.!;:]" + _NOT_ALTERNATIVE, re.I)
# Text a thought copies from its question is not a statement: a run of at least this many words that the
# question has too (the question quoted, its option list), and every instruction phrase of
# `generation.sources.instructions`, wherever it stands.
COPIED_RUN_WORDS = 5
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.U)
_CUT = " … "  # what a removed copy leaves: no verdict or claim can run across it


@lru_cache(maxsize=1)
def _instruction_phrases() -> re.Pattern:
    from generation.sources.instructions import (BREVITY_SUFFIXES, LEADING_INSTRUCTIONS, LETTER_SUFFIXES,
                                                 YES_NO_INSTRUCTIONS)

    phrases = sorted(set(BREVITY_SUFFIXES + LETTER_SUFFIXES + YES_NO_INSTRUCTIONS + LEADING_INSTRUCTIONS),
                     key=len, reverse=True)
    body = "|".join(r"\s+".join(re.escape(word) for word in phrase.split()) for phrase in phrases)
    return re.compile(rf"(?<![^\W_])(?:{body})(?![^\W_])", re.I)


def without_question_text(thought: str, question: str) -> str:
    """`thought` with what it copies from `question` cut out: every instruction phrase (wherever it
    stands, quoted or not), and every run of `COPIED_RUN_WORDS` or more words the question has in the
    same order (a quote of the question or of its options). What is left is what the thought itself says."""
    text = _instruction_phrases().sub(_CUT, thought)
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]
    asked = [w.lower() for w in _WORD.findall(question or "")]
    n = COPIED_RUN_WORDS
    if len(words) < n or len(asked) < n:
        return text
    grams = {tuple(asked[i: i + n]) for i in range(len(asked) - n + 1)}
    copied = [False] * len(words)
    for i in range(len(words) - n + 1):
        if tuple(w for _, _, w in words[i: i + n]) in grams:
            copied[i: i + n] = [True] * n
    out, pos, i = [], 0, 0
    while i < len(words):
        if not copied[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(words) and copied[j + 1]:
            j += 1
        end = words[j][1]
        while end < len(text) and text[end] in "?.!:;,)\"'":  # the copy's own closing punctuation
            end += 1
        out += [text[pos: words[i][0]], _CUT]
        pos, i = end, j + 1
    return "".join(out) + text[pos:]


def _mentioned_outside_question(thought: str, target_norm: str, question: str,
                                options: Sequence[str] = ()) -> bool:
    """Does `thought` say `target_norm` other than by quoting the question (which lists the options) or by
    listing the options (`50, 55, 60 and 65`: the target between two other options)? A quote is the
    target with the one or two words before it, or after it, as the question has them."""
    words, wanted = normalise_answer(thought).split(), target_norm.split()
    if not wanted:
        return False
    asked = f" {normalise_answer(question)} "
    others = {normalise_answer(o) for o in options} - {target_norm, ""}
    n = len(wanted)
    for p in range(len(words) - n + 1):
        if words[p: p + n] != wanted:
            continue
        before, after = words[max(0, p - 2): p], words[p + n: p + n + 2]
        quoted = any(side and f" {' '.join(ctx)} " in asked
                     for side, ctx in ((before, before + wanted), (after, wanted + after)))
        near = [w for w in words[max(0, p - 2): p] + words[p + n: p + n + 3] if w not in ("and", "or")]
        listed = sum(1 for w in near if w in others) >= 2
        if not quoted and not listed:
            return True
    return False


def states_answer(thought: str, target: Target, question: str) -> bool:
    """Does the step say what the answer is (the target's text, its option letter, or a yes/no verdict)?
    Read on the thought's own words: what it copies from the question is cut out first
    (`without_question_text`)."""
    own = without_question_text(thought, question).strip()
    if target.kind == "yesno" and any((m.group(1) or m.group(2) or m.group(3)).lower() == target.norm
                                      for m in _CONCLUSION.finditer(own)):
        return True
    letter = target.letter or (target.text.strip("(). ") if target.kind == "label" else None)
    if letter and _letter_claim(letter).search(own):
        return True
    if target.kind in ("label", "yesno"):
        return False  # a yes/no is stated by a verdict or its option's letter, not by the word in passing
    return _mentioned_outside_question(own, target.norm, question, question_choices(question))


def mentions_reference_answer(thought: str, question: str) -> Optional[str]:
    """The phrase naming a reference/standard/given answer, unless the question itself uses it."""
    for match in _REFERENCE.finditer(_instruction_phrases().sub(_CUT, thought)):
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
    from generation.final_trajectory import replaced_in_question
    from generation.quality.evidence_kinds import is_source_rationale

    views = [s if isinstance(s, StepView) else step_view(s) for s in steps]
    target = answer_target(answer, question_choices(question) if choices is None else choices)
    evidence = prior.copy(question) if prior is not None else Evidence(question)
    replaced = replaced_in_question(views)  # a leak there is repaired: a reflection replaced the step
    leaks: list[Leak] = []
    for index, step in enumerate(views):
        if step.signal == "reflection":
            evidence.add_results(step.observations)
            continue
        phrase = mentions_reference_answer(step.thought, question)
        if phrase:
            leaks.append(Leak(index, f"step {index + 1} mentions a {phrase.lower()!r}", index in replaced))
        elif step.thought and not is_source_rationale(step.thought) and states_answer(step.thought, target, question):
            probe = evidence.copy()  # the step's own calculations and comparisons may show it
            probe.add_thought(step.thought)
            if not probe.supports(target):
                leaks.append(Leak(index, f"step {index + 1} states the answer {target.text!r} before any "
                                         "evidence supports it", index in replaced))
        evidence.add_thought(step.thought)
        evidence.add_results(step.observations)
    return QuestionQuality(target, evidence.supports(target), leaks), evidence


def orr_views(thought: str, api_outputs: Sequence[tuple[str, str]] = ()) -> tuple[StepView, ...]:
    """One ORR turn as the definitions read it: the API outputs (a step of results, when there are any),
    then the thought; a thought that goes on into a quote of the source's own rationale (from
    `SOURCE_RATIONALE_LEAD` on) is two steps, so the quote is read as the declared quote it is, as in RR.
    The audit and integration's ORR check both read ORR through this."""
    from generation.quality.evidence_kinds import SOURCE_RATIONALE_LEAD

    views = [StepView("", "continue", tuple(api_outputs))] if api_outputs else []
    at = thought.find(SOURCE_RATIONALE_LEAD)
    parts = [thought[:at].strip(), thought[at:].strip()] if at > 0 else [thought]
    return tuple(views + [StepView(part, "end" if i == len(parts) - 1 else "continue") for i, part in enumerate(parts)
                          if part or i == len(parts) - 1])


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
