"""Does a final answer match the reference? (the verifier of the rationale stage)

Cheap, conservative checks in the spirit of T3-Agent's verifiers and MAmmoTH-VL's filter, so wrong
final answers are caught before they become training data:

- multiple choice: option letters (`B`, `(B)`, `B.`, `Option B`, `B. dog`) and option texts compare by
  option index, whichever form the reference uses;
- InfoSeek `answer_eval`: a list of accepted strings (aliases) and/or numeric ranges
  (`{"range": [lo, hi]}`, `[lo, hi]`, `{"wikidata": value}`);
- numbers: the prediction must hold exactly one number; integers compare exactly, decimals within a
  relative tolerance or to the reference's precision; `2,000`, `$5`, `45%`, `3/4`, `seven` all read;
- yes/no: the first word decides (`Yes, it is.` = `yes`);
- everything else: the normal form of `generation.answers.normalise_answer` (case, accents,
  punctuation, articles, `The answer is:`, number forms), the same one the source adapters use.

`enforce_policy` applies `teacher.on_mismatch`: `quarantine` raises `Quarantined`, `keep` keeps the
sample with `meta.verified = false` in its rows.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Union

from generation.answers import LETTERS, normalise_answer
from generation.answer_reading import (  # noqa: F401 - re-exported: callers read answers through verify
    _strip_option_prefix,
    choice_index,
    parse_number,
    parse_numbers,
)
from generation.schema import QA

_OPTION_LETTER = re.compile(r"\(?[A-Za-z]\)?[.:)]?")
_UNIT_TAIL = re.compile(r"^[$€£¥]?\s*(?P<num>[-\d.,/]+)\s*[a-z%°²³ .]*$")
# The one normal form of answers and choices, shared with every source adapter.
normalise = normalise_answer


def _decimals(text: str) -> int:
    match = re.search(r"\d\.(\d+)", text)
    return len(match.group(1)) if match else 0


def numbers_match(predicted: float, reference: float, reference_text: str, rel_tol: float = 1e-2) -> bool:
    """Integers exactly; decimals within `rel_tol` or equal at the reference's precision."""
    places = _decimals(reference_text)
    if places == 0 and "/" not in reference_text and float(reference).is_integer():
        return abs(predicted - reference) < 1e-9
    if abs(predicted - reference) <= rel_tol * abs(reference) + 1e-12:
        return True
    return round(predicted, places) == round(reference, places)


def _answer_eval(answer_eval: Any) -> tuple[list[str], list[tuple[float, float]]]:
    """InfoSeek `answer_eval` → (accepted strings, numeric ranges)."""
    items = answer_eval if isinstance(answer_eval, list) else [answer_eval]
    if len(items) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in items):
        items = [items]  # a bare [lo, hi]
    aliases: list[str] = []
    ranges: list[tuple[float, float]] = []
    for item in items:
        if isinstance(item, str):
            aliases.append(item)
        elif isinstance(item, dict):
            if isinstance(item.get("range"), (list, tuple)) and len(item["range"]) == 2:
                lo, hi = item["range"]
                ranges.append((float(lo), float(hi)))
            elif isinstance(item.get("wikidata"), (int, float)):
                ranges.append((float(item["wikidata"]), float(item["wikidata"])))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, (int, float)) for x in item):
            ranges.append((float(item[0]), float(item[1])))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            ranges.append((float(item), float(item)))
    return aliases, ranges


def _text_match(predicted: str, reference: str, rel_tol: float) -> bool:
    p, r = normalise(predicted), normalise(reference)
    if not p:
        return False
    if p == r:
        return True
    if r in ("yes", "no"):
        return p.split()[0] == r
    shape = _UNIT_TAIL.match(r)
    r_num = parse_number(reference) if shape else None
    p_num = parse_number(predicted)
    if r_num is not None and p_num is not None:
        return numbers_match(p_num, r_num, shape.group("num") if shape else reference, rel_tol)
    return False


def answers_match(predicted: str, qa: QA, rel_tol: float = 1e-2) -> bool:
    """Whether the teacher's final answer agrees with the reference of `qa`."""
    predicted = str(predicted or "").strip()
    if not predicted:
        return False
    reference = qa.answer
    if qa.choices:
        p, r = choice_index(predicted, qa.choices), choice_index(reference, qa.choices)
        if p is not None and r is not None:
            return p == r
    elif _OPTION_LETTER.fullmatch(reference.strip()):
        # a letter whose options live only in the question text (a dataset row keeps no choices):
        # compare letters, or "A" would vanish as an article and match nothing
        p, r = choice_index(predicted, list(LETTERS)), choice_index(reference, list(LETTERS))
        if p is not None and r is not None:
            return p == r
    answer_eval = qa.meta.get("answer_eval")
    if answer_eval is not None:
        aliases, ranges = _answer_eval(answer_eval)
        if any(_text_match(predicted, alias, rel_tol) for alias in aliases):
            return True
        if ranges:
            value = parse_number(predicted)
            if value is not None and any(lo - 1e-9 <= value <= hi + 1e-9 for lo, hi in ranges):
                return True
    return _text_match(predicted, reference, rel_tol)


GROUNDING_REASON = "answer not supported by tool evidence"
ADMISSION_REASON = "the reasoning admits it could not confirm the answer"


def requires_grounding(teacher: Any) -> bool:
    """Does `teacher.require_grounding` quarantine ungrounded samples? `auto` (the default): yes for the
    offline teacher, whose tools are all the evidence it has; no for a model teacher, whose own reading of
    the image is evidence the audit cannot see (its rows keep `meta.grounded` / `meta.evidence` instead)."""
    value = getattr(teacher, "require_grounding", False)
    if value == "auto":
        return getattr(teacher, "kind", None) == "offline"
    return value is True


def enforce_policy(trajectory, sample, policy: Union[str, Any]) -> None:
    """`on_mismatch: quarantine` turns a wrong final answer into a quarantined sample; `keep` keeps
    it with `meta.verified = false`. `policy` is the `on_mismatch` value or the `TeacherConfig`, whose
    `require_grounding` (see `requires_grounding`) also quarantines a sample with an answer no evidence
    supports (neither a tool's nor the source's own rationale: `generation.quality.evidence_kinds`), or
    one given after a last thought that admits it could not confirm it ("admits no evidence")."""
    from generation.schema import Quarantined

    if requires_grounding(policy):
        from generation.quality.evidence_judgement import trajectory_evidence
        from generation.quality.evidence_kinds import last_thought_admits

        kinds = None
        for index, qa in enumerate(trajectory.qas):
            where = f" (question {index + 1})" if len(trajectory.qas) > 1 else ""
            if qa.grounded is False:
                kinds = kinds or trajectory_evidence(trajectory, sample)
                if kinds[index].kind == "none":
                    raise Quarantined(sample.id, "verification", f"{GROUNDING_REASON}{where}", "NotGrounded")
            if last_thought_admits(qa.steps):
                raise Quarantined(sample.id, "verification", f"{GROUNDING_REASON}: {ADMISSION_REASON}{where}",
                                  "NotGrounded")
    policy = getattr(policy, "on_mismatch", policy)
    if policy != "quarantine":
        return
    for index, qa in enumerate(trajectory.qas):
        if qa.verified is None:
            qa.verified = answers_match(qa.final_answer, sample.qas[index]) if index < len(sample.qas) else None
        if qa.verified is False:
            where = f" (question {index + 1})" if len(trajectory.qas) > 1 else ""
            raise Quarantined(sample.id, "verification",
                              f"final answer {qa.final_answer!r} does not match the reference {qa.reference_answer!r}"
                              f"{where}", "AnswerMismatch")
