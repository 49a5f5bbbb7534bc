"""Where a thought's sentences end: one definition for ORR's compression (`generation.integration`:
repeated sentences dropped, leaking ones cut) and the audit's repeated-sentence check
(`generation.quality.row_judgement`).

A full stop after a title ("Dr.", "Mr.", "St."), a common abbreviation ("e.g.", "vs.") or an initial
("J. Smith") does not end a sentence: split there, "So the answer is Dr. Helen Ortiz." became "So the
answer is Dr." and "Helen Ortiz.", and ORR dropped the second as a repeat of the OCR quote's tail.
"""
from __future__ import annotations

import re

_BREAK = re.compile(r"(?<=[.!?])\s+")
_NOT_AN_END = frozenset({"dr", "mr", "mrs", "ms", "prof", "st", "mt", "jr", "sr", "vs", "etc", "e.g", "i.e",
                         "no", "fig", "approx", "inc", "ltd", "co", "corp", "dept", "univ", "ave", "rd"})


def _ends_sentence(piece: str) -> bool:
    """Does `piece` (text up to a break) end a sentence, rather than with a title, abbreviation or initial?"""
    last = piece.rstrip().split()[-1] if piece.strip() else ""
    if not last.endswith("."):
        return True  # "!" or "?"
    word = last[:-1].strip("\"'([").lower()
    if word in _NOT_AN_END:
        return False
    return not (len(word) == 1 and word.isalpha())  # an initial: "J."


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, each with its end mark; empty pieces left out."""
    sentences: list[str] = []
    current = ""
    for piece in _BREAK.split(text):
        current = f"{current} {piece}" if current else piece
        if _ends_sentence(current):
            if current.strip():
                sentences.append(current)
            current = ""
    if current.strip():
        sentences.append(current)
    return sentences
