"""Does a final answer match the reference? (the verifier of the rationale stage)

Normalised text, choice letters, numbers with a tolerance and InfoSeek `answer_eval` ranges, in the
spirit of T3-Agent's verifiers and MAmmoTH-VL's filter: cheap checks that catch wrong final answers
before they become training data.
"""
from __future__ import annotations

import re
import string
from typing import Any, Optional

from generation.schema import QA

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*")


def normalise(text: str) -> str:
    text = text.lower().strip()
    text = re.sub(r"^the answer is:?\s*", "", text)
    text = "".join(ch for ch in text if ch not in set(string.punctuation) - {".", "-"})
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.rstrip(".").split())


def parse_number(text: str) -> Optional[float]:
    match = _NUMBER.search(text.replace("$", ""))
    if not match:
        return None
    try:
        return float(match.group().replace(",", "").rstrip("."))
    except ValueError:
        return None


def _choice_index(text: str, choices: list[str]) -> Optional[int]:
    t = text.strip()
    letter = re.fullmatch(r"\(?([A-Za-z])\)?[.:]?", t)
    if letter:
        idx = ord(letter.group(1).upper()) - ord("A")
        return idx if 0 <= idx < len(choices) else None
    norm = normalise(t)
    for i, choice in enumerate(choices):
        if normalise(choice) == norm:
            return i
    return None


def _in_ranges(value: float, answer_eval: Any) -> Optional[bool]:
    """InfoSeek numeric answers carry `answer_eval` like [{"range": [lo, hi]}] or [lo, hi]."""
    ranges = []
    for item in answer_eval if isinstance(answer_eval, list) else [answer_eval]:
        if isinstance(item, dict) and "range" in item:
            ranges.append(item["range"])
        elif isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(x, (int, float)) for x in item):
            ranges.append(item)
    if not ranges:
        return None
    return any(float(lo) <= value <= float(hi) for lo, hi in ranges)


def answers_match(predicted: str, qa: QA, rel_tol: float = 1e-2) -> bool:
    reference = qa.answer
    if qa.choices:
        p, r = _choice_index(predicted, qa.choices), _choice_index(reference, qa.choices)
        if p is not None and r is not None:
            return p == r
    answer_eval = qa.meta.get("answer_eval")
    p_num = parse_number(predicted)
    if answer_eval is not None and p_num is not None:
        ranged = _in_ranges(p_num, answer_eval)
        if ranged is not None:
            return ranged
        if isinstance(answer_eval, list):
            if any(normalise(str(a)) == normalise(predicted) for a in answer_eval):
                return True
    if normalise(predicted) == normalise(reference):
        return True
    r_num = parse_number(reference)
    if p_num is not None and r_num is not None and re.fullmatch(r"[\s\-\d.,$%]*[a-z ]*", normalise(reference)):
        return abs(p_num - r_num) <= rel_tol * max(1.0, abs(r_num))
    return False


def enforce_policy(trajectory, sample, policy: str) -> None:
    """`on_mismatch: quarantine` turns a wrong final answer into a quarantined sample; `keep` keeps
    it with `meta.verified = false`."""
    from generation.schema import Quarantined

    if policy != "quarantine":
        return
    for qa in trajectory.qas:
        if qa.verified is False:
            raise Quarantined(sample.id, "verification",
                              f"final answer {qa.final_answer!r} does not match the reference", "AnswerMismatch")
