"""One comparison form for answers and choices, used by every source adapter and by the verifier.

The guarantee: two answers (or an answer and an option) that differ only in case, accents,
whitespace, punctuation, articles, a leading "The answer is:", or the way a number is written
(`1,000` / `1000`, `42.0` / `42`, `42.` / `42`, `P.M.` / `pm`) compare equal everywhere, because
everywhere compares `normalise_answer(a) == normalise_answer(b)`. Before this module the adapters and
the verifier each had their own rule, and TabMWP lost every clock-time problem: the answer
`2:10 P.M.` lost its final period, its choice `2:10 P.M.` kept it, so the answer was "not one of the
choices".

`normalise_answer` is only ever a comparison key: rows keep the answer as the upstream wrote it,
periods that belong to it (`P.M.`, `U.S.`) included. The one rewrite of a row's answer lives here
too, `strip_added_period`, for the upstreams that end an answer with a period of their own (The
Cauldron's `correct_casing`, LLaVA-CoT's "The answer is X."); adapters of other sources never call it.
"""
from __future__ import annotations

import re
import string
import unicodedata
from decimal import Decimal, InvalidOperation

__all__ = ["ANSWER_LEAD_IN", "LETTERS", "ends_with_abbreviation", "normalise_answer", "strip_accents",
           "strip_added_period"]

# Option letters, in order: choice i is `LETTERS[i]` wherever choices are written, read or compared.
LETTERS = string.ascii_uppercase

# "The answer is: X", "Answer: X", "Final answer X" -> "X"
ANSWER_LEAD_IN = re.compile(r"^\s*(?:the\s+)?(?:final\s+)?(?:answer|ans)\b\s*(?:is\b)?\s*[:：]?\s*(?=\S)", re.I)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
# Punctuation that becomes a space; `.` is handled on its own (decimal points stay), and `- / %` carry
# meaning in answers (`555-0142`, `3/4`, `45%`).
_PUNCT = set(string.punctuation) - {".", "-", "/", "%"}
_NON_DECIMAL_PERIOD = re.compile(r"(?<!\d)\.|\.(?!\d)")
_DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")
# A final period that belongs to the answer: letter-period pairs (`P.M.`, `U.S.`, `e.g.`) and a few
# common abbreviations. Everything else at the end of a short answer is sentence punctuation.
_ABBREVIATION_END = re.compile(
    r"(?:\b(?:[A-Za-z]\.){2,}|\b(?:Inc|Corp|Co|Ltd|Jr|Sr|Dr|Mr|Mrs|Ms|St|Mt|Ave|Blvd|Rd|Bros|etc|vs|approx)\.)$", re.I)


_PUNCT_TO_SPACE = str.maketrans({ch: " " for ch in _PUNCT})


def strip_accents(text: str) -> str:
    if text.isascii():  # nothing to decompose, no combining mark (most answers, every English dialogue)
        return text
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))


def _plain_decimal(match: re.Match) -> str:
    try:
        value = Decimal(match.group())
    except InvalidOperation:  # pragma: no cover - the pattern only matches decimals
        return match.group()
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def normalise_answer(text: object) -> str:
    """The comparison key of an answer or a choice.

    Lower case, no accents, no "The answer is:" lead-in, no thousands separators, decimals without
    trailing zeros (`18.60` -> `18.6`), punctuation but `- / %` turned into spaces, periods removed
    except decimal points (so `P.M.`, `p.m` and `pm` agree, and `42.` equals `42`), no articles,
    single spaces.
    """
    text = strip_accents(unicodedata.normalize("NFKC", str(text))).casefold().strip()
    text = ANSWER_LEAD_IN.sub("", text)
    text = _THOUSANDS.sub("", text)
    text = text.translate(_PUNCT_TO_SPACE)
    text = _NON_DECIMAL_PERIOD.sub("", text)
    text = _DECIMAL.sub(_plain_decimal, text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def ends_with_abbreviation(text: str) -> bool:
    """`2:10 P.M.`, `U.S.`, `Acme Inc.`: the final period is part of the answer."""
    return bool(_ABBREVIATION_END.search(text.rstrip()))


def strip_added_period(answer: str) -> str:
    """The short answer without the one period an upstream appended to it (`Starbucks.` -> `Starbucks`,
    `42.` -> `42`, `Dr. example.` -> `Dr. example`), keeping a period that is part of it (`P.M.`, `U.S.`,
    `Example Corp.`). Callers apply it to short answers only: in prose a final period is punctuation."""
    text = answer.strip()
    if not text.endswith(".") or text.endswith("..") or ends_with_abbreviation(text):
        return text
    return text[:-1].rstrip() or text
