"""Kinds of evidence a row's answer rests on, told apart so nobody mistakes one for another.

- **tool**: the operators' results and retrieved passages (and arithmetic written out from them) support the
  answer: `generation.quality.definitions.Evidence.supports`, what `meta.grounded` has always meant.
- **source_rationale**: only the source's own rationale supports it (LLaVA-CoT's CAPTION / REASONING /
  CONCLUSION, TabMWP's solution, Visual-CoT's box). A thought built from such a rationale says so by
  starting with `SOURCE_RATIONALE_LEAD`, the one marker the offline teacher writes and the audit reads.
- **none**: nothing the row shows supports the answer.

The marker is a sentence a reader sees too: the row itself says where the thought's content comes from.
This module imports nothing from the project (the leak judgement reads the marker from here); which kind a
question's answer has is judged in `generation.quality.evidence_judgement`.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

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
