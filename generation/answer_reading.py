"""Reading an answer's parts: every number it holds (`parse_numbers`, `parse_number`) and the option it
names (`choice_index`). The verifier (`generation.verify`, which re-exports them) and the quality
definitions (`generation.quality.grounding`) both read answers this way; a leaf module, so neither imports
the other to share it.
"""
from __future__ import annotations

import re
from typing import Optional

from generation.answers import ANSWER_LEAD_IN, LETTERS, normalise_answer, strip_accents

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+)?|(?<![\w.])-?\.\d+")
_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
               "hundred": 100, "thousand": 1000, "none": 0})
normalise = normalise_answer


def parse_numbers(text: str) -> list[float]:
    """Every number in `text` (digits, `1,234.5`, `3/4`, and the words zero…twenty, tens, hundred)."""
    text = strip_accents(str(text)).lower().replace("$", " ").replace("€", " ").replace("£", " ")
    values: list[float] = []
    for match in _NUMBER.finditer(text):
        token = match.group().replace(",", "").replace(" ", "")
        try:
            if "/" in token:
                num, den = token.split("/")
                values.append(float(num) / float(den))
            else:
                values.append(float(token))
        except (ValueError, ZeroDivisionError):
            continue
    for word in re.findall(r"[a-z]+", text):
        if word in _WORDS and word != "none":
            values.append(float(_WORDS[word]))
    return values


def parse_number(text: str) -> Optional[float]:
    """The number in `text` when there is exactly one, else None."""
    values = parse_numbers(text)
    return values[0] if len(values) == 1 else None


def _strip_option_prefix(text: str) -> str:
    return re.sub(r"^\s*\(?[A-Za-z]\)\s*|^\s*[A-Za-z][.:]\s+", "", text)


def choice_index(text: str, choices: list[str]) -> Optional[int]:
    """Which option `text` names: by letter (`B`, `(B)`, `B.`, `Option B`, `B. dog`) or by its text."""
    if not choices:
        return None
    raw = ANSWER_LEAD_IN.sub("", str(text).strip()).strip()
    letter = re.fullmatch(r"(?:option|choice)?\s*\(?([A-Za-z])\)?\s*[.:)]?", raw, re.I)
    if letter:
        index = LETTERS.index(letter.group(1).upper())
        return index if index < len(choices) else None
    norm = normalise(raw)
    options = [normalise(_strip_option_prefix(choice)) for choice in choices]
    for index, option in enumerate(options):
        if option and option == norm:
            return index
    labelled = re.match(r"(?:option|choice)?\s*\(?([A-Za-z])[.:)]\s*(.+)$", raw, re.I)
    if labelled:
        index = LETTERS.index(labelled.group(1).upper())
        if index < len(choices) and normalise(labelled.group(2)) == options[index]:
            return index
    return None
