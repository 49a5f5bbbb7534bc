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
