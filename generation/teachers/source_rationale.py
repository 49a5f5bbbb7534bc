"""The rationale a source ships with a question, as the offline teacher may quote it (issue 29, point 6).

Three sources carry one: LLaVA-CoT (a model's CAPTION, REASONING and CONCLUSION), TabMWP (the annotated
solution) and Visual-CoT (the box around the evidence). The offline teacher uses it only where its tools
cannot show the answer, and then says so: the thought starts with
`generation.quality.evidence_kinds.SOURCE_RATIONALE_LEAD` and holds nothing but the source's own text, so
the audit counts the answer as grounded by the source's rationale, apart from tool evidence. Nothing here
adds words of ours to the quoted text (an appended "so the answer is X" would make any answer "supported").
"""
from __future__ import annotations

import re
from typing import Any, Optional

from generation.quality.definitions import Evidence, Target
from generation.quality.evidence_kinds import SOURCE_RATIONALE_LEAD

_SPACES = re.compile(r"\s+")


def rationale_of(sample: Any, qa: Any) -> Optional[str]:
    """The source's own rationale for this question as one text, or None when the source ships none that can
    hold an answer (Visual-CoT's box locates the evidence but does not state the answer: `box_rationale`)."""
    if sample.source == "llava_cot":  # its stages, named as the source names them
        parts = [f"{name}: {text}" for name, text in (("Caption", qa.meta.get("caption")), ("Reasoning", qa.source_rationale),
                                                     ("Conclusion", qa.meta.get("conclusion"))) if text and str(text).strip()]
    elif sample.source == "tabmwp":
        parts = [qa.source_rationale]
    else:
        return None
    text = " ".join(_SPACES.sub(" ", str(p)).strip() for p in parts if p and str(p).strip())
    return text or None


def box_rationale(sample: Any, qa: Any) -> Optional[str]:
    """Visual-CoT's rationale: the annotated region ("The answer is found in the image region [...]")."""
    if sample.source == "visual_cot" and (qa.meta.get("bbox") or sample.meta.get("bbox")) and qa.source_rationale:
        return qa.source_rationale
    return None


def marked(text: str) -> str:
    """A thought that quotes the source's rationale, marked as such."""
    return f"{SOURCE_RATIONALE_LEAD} {text}"


def supported_by(text: str, target: Target, question: str, evidence: Optional[Evidence] = None) -> bool:
    """Does the rationale text (with the tool evidence so far) support the target, by the audit's rules?"""
    probe = evidence.copy(question) if evidence is not None else Evidence(question)
    probe.add_result(text)
    probe.add_thought(text)
    return probe.supports(target)
