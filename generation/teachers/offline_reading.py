"""What the offline teacher reads out of a dialogue's tool results: quotes, tables, counts and the solution.

Split from `generation.teachers.offline` (the teacher's choices and steps stay there): every method here
reads only what the operators returned in this dialogue (and, for TabMWP, which of the source's cells and
solution numbers those results show), so a thought built from them cites nothing a tool did not return.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from generation.quality.definitions import CONSTANTS, Evidence, Target, evidence_of
from generation.sources.instructions import MULTIPLE_CHOICE_PROMPT, SHORT_ANSWER_PROMPT
from generation.teachers.base import TeacherContext
from generation.teachers.table_evidence import derive_from_ocr, table_readings, table_sentence, title_reading
from generation.teachers.table_reading import derive, read_table
from operators.colours import COLOUR_NAMES
from operators.label_bbox_segments import read_segments_text

_COUNT_WORDS = ("how many", "count")
_CONSTRAINT = re.compile(r"\s*(" + "|".join(map(re.escape, (SHORT_ANSWER_PROMPT, MULTIPLE_CHOICE_PROMPT))) + r")\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$])")
_QUOTE_CHARS = 220


def bare_question(question: str) -> str:
    """The question without the response-style constraint the foundation stage appended."""
    return _CONSTRAINT.sub("", question).strip()


def solution_sentences(text: Optional[str]) -> list[str]:
    if not text:
        return []
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    return [s.strip() for line in lines for s in _SENTENCE.split(line) if s.strip()]


def _has(text: str, phrases: Sequence[str]) -> bool:
    return any(re.search(rf"\b{re.escape(p)}\b", text) for p in phrases)


def _count_target(question: str) -> list[str]:
    match = re.search(r"how many ([a-z][a-z\- ]*?)(?: are| is| can| do| does| in| on| there|\?|$)", question.lower())
    return [match.group(1).strip()] if match else []


def _clip(text: str, limit: int = _QUOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


_PASSAGE = re.compile(r'^\s*\[\d+\]\s*(?P<title>[^"\n]+?):\s*"(?P<text>.*)"\s*$')


def _pieces(text: str) -> list[tuple[str, str]]:
    """An operator result in quotable pieces, smallest first: (where, piece) for each sentence of a line,
    then the line; a retrieved passage `[1] Title: "text"` is quoted without its number and title."""
    out = []
    for line in text.splitlines():
        passage = _PASSAGE.match(line)
        where, line = (passage.group("title"), passage.group("text")) if passage else ("", line.strip())
        if not line or line.lower().startswith("retrieved passages"):
            continue
        parts = [p.strip() for p in _SENTENCE.split(line) if p.strip()]
        out += [(where, p) for p in parts if len(parts) > 1] + [(where, line)]
    return out


class EvidenceReading:
    """The teacher's readings of the tool results (a mixin of `OfflineTeacher`)."""

    @staticmethod
    def _dialogue_observations(ctx: TeacherContext) -> list[Any]:
        """Every result this dialogue has shown so far (earlier questions first), in order."""
        return [o for qa in ctx.previous for s in qa.steps for o in s.observations] + \
            [o for s in ctx.steps for o in s.observations]


    def _observations(self, ctx: TeacherContext, operator: str, backend: Optional[str] = None) -> list[str]:
        """The texts `operator` returned in this dialogue so far, latest first."""
        return [o.text for o in reversed(self._dialogue_observations(ctx))
                if o.operator == operator and (backend is None or o.backend == backend)]


    def _ocr_text(self, ctx: TeacherContext) -> str:
        """Every OCR result of this dialogue, latest first (TabMWP: the table as the model sees it)."""
        return "\n".join(self._observations(ctx, "ocr"))


    def _table(self, ctx: TeacherContext) -> str:
        """TabMWP: the table's cells as the OCR read them (`table_evidence.table_sentence`); "" elsewhere."""
        if ctx.sample.source != "tabmwp":
            return ""
        text = self._ocr_text(ctx)
        columns, rows = table_readings(text, ctx.sample.meta.get("table_for_pd"))
        return _clip(table_sentence(title_reading(text, ctx.sample.meta.get("table_title")), columns, rows), 1500)


    @staticmethod
    def _cells(ctx: TeacherContext) -> list[str]:
        """The cells of TabMWP's table (`table_for_pd`), whose values only the OCR may show."""
        table = ctx.sample.meta.get("table_for_pd")
        return [str(c) for v in table.values() for c in (v if isinstance(v, (list, tuple)) else [v])] \
            if isinstance(table, dict) else []


    def _derivation(self, ctx: TeacherContext, staged_math: bool) -> list[str]:
        """TabMWP's solution as far as the tool results give its numbers (`table_evidence.derive_from_ocr`);
        staged: its method only (the sentences without numbers)."""
        if ctx.sample.source != "tabmwp":  # LLaVA-CoT's reasoning is quoted as the source's, never as ours
            return []
        texts = "\n".join(o.text for o in self._dialogue_observations(ctx))
        sentences, _ = derive_from_ocr(solution_sentences(ctx.qa.source_rationale), bare_question(ctx.qa.question),
                                       texts, evidence_of(ctx.previous), self._cells(ctx))
        if staged_math:
            return [s for s in sentences if not re.search(r"\d", s)]
        return sentences


    def _missing(self, ctx: TeacherContext) -> list[str]:
        """Numbers the source's solution uses that no tool result shows (for the step that says so)."""
        texts = "\n".join(o.text for o in self._dialogue_observations(ctx))
        _, missing = derive_from_ocr(solution_sentences(ctx.qa.source_rationale), bare_question(ctx.qa.question),
                                     texts, evidence_of(ctx.previous), self._cells(ctx))
        return [f"{v:g}" for v in missing]


    def _quote(self, ctx: TeacherContext, target: Target) -> Optional[str]:
        """'The ocr result says "…".' for the first result piece that holds the target (a small count: the
        whole result, which is what the count is read from, not a line where the digit happens to be;
        a retrieved passage is quoted by its sentence, small numbers too: "about 11 months")."""
        count = target.kind == "number" and target.value is not None and target.value in CONSTANTS
        for operator, text in ((o.operator, o.text) for o in self._dialogue_observations(ctx)):
            whole = count and operator != "rag"  # a passage states a number in a sentence; it lists nothing to count
            for where, piece in ([("", text)] if whole else _pieces(text)):
                probe = Evidence(ctx.qa.question)
                probe.add_result(piece)
                if probe.supports(target):
                    source = (f"retrieved passage on {where}" if where else "retrieved passage") if operator == "rag" \
                        else f"{operator} result"
                    return f'The {source} says "{_clip(piece, 300 if whole else _QUOTE_CHARS)}".'
        return None


    def _describe(self, ctx: TeacherContext) -> str:
        """What the tools showed, for a step that cannot reach the answer from them."""
        seen: dict[tuple[str, str], None] = {}
        for step in ctx.steps:
            for obs in step.observations:
                seen.setdefault((obs.operator, _clip(obs.text, 160)), None)
        parts = [f'The {name} result says "{text}".' for name, text in seen]
        asked = "which option is right" if ctx.qa.choices else "the answer"
        tail = f"None of these results shows {asked}, so I cannot confirm it from the tool evidence."
        return " ".join(parts[:4] + [tail]) if parts else f"No tool result shows {asked}, so I cannot confirm it."


    def _read_off(self, ctx: TeacherContext) -> Optional[tuple[list[str], str]]:
        """(sentences deriving a result from the tool results, the result): a table read from the OCR text,
        or a count from the objects `label_bbox`'s segments found; None when neither applies."""
        question = bare_question(ctx.qa.question).split("\n")[0]
        question = re.sub(r"^question:\s*", "", question, flags=re.I)
        for text in self._observations(ctx, "ocr")[:1] if ctx.sample.source != "tabmwp" else ():  # TabMWP: its solution
            table = read_table(text)
            derived = derive(question, table) if table else None
            if derived:
                return derived
        if not _has(question.lower(), _COUNT_WORDS):
            return None
        for text in self._observations(ctx, "label_bbox", backend="segments")[:1]:
            found = read_segments_text(text)
            if found is None:
                continue
            total, tally = found
            listed = ", ".join(f"{n} {colour}" for colour, n in tally.items())
            seen = (f"The label_bbox result finds {total} separate objects ({listed}); it separates objects by "
                    "segmentation and cannot name them.")
            colour = next((c for c in COLOUR_NAMES if re.search(rf"\b{c}\b", question.lower().replace("gray", "grey"))),
                          None)
            if colour:
                return [seen, f"The question counts the {colour} ones: {tally.get(colour, 0)}."], str(tally.get(colour, 0))
            noun = (_count_target(question) or ["objects"])[0]
            return [seen, f"Taking them as the {noun} the question counts, there are {total}."], str(total)
        return None
