"""The offline teacher: deterministic reasoning grounded in what the tools return.

It needs no network and no key, so the demo and the tests run anywhere. It is not GPT-4o: every row it
produces says `teacher.model = "offline-annotations"`. It reads the source's annotations to decide
*where to look* and *what to compute*, and writes only what the tool results support
(`generation.quality.definitions`, the audit's own definitions, judge every thought before it is used):

- Visual CoT: the annotated box is cropped (`region`) and read with `ocr` for the text subsets
  (TextVQA, TextCap, DocVQA, InfographicsVQA, SROIE, DUDE), captioned with `image_caption` for the
  others; when the crop's text lacks the answer, the whole image is read.
- TabMWP: the table is read with `ocr`; the thought lists the values of `table_for_pd` and writes out
  each calculation of the native solution.
- InfoSeek: `rag` with the question, then (when no passage holds the answer) with the entity the image
  shows; the thought quotes the passage sentence that contains the answer.
- Tables read with `ocr` (ROBUT/WTQ and the like): the rows are read from the OCR text and the result written
  out (`generation.teachers.table_reading`): a superlative as the column's values and the extreme one, a
  count as the matching rows and `1 + 1 = 2`, a total as `14 + 12 = 26`.
- Counting objects in a scene: `label_bbox` (on Visual CoT's box when there is one). Offline its backend is
  `segments`, which finds separate objects and their colours but cannot name them, so the thought counts
  all of them, or those of the colour asked, from the tool's list, and says it cannot name them.
- Choice questions: the thought names the option whose text the evidence shows (or the derived result).
- Everything else: operators chosen from the question's words (text → ocr, people → face_detection,
  knowledge → rag, otherwise image_caption), and `ocr` as a second look when a diagram's labels may hold
  the option.

Where no evidence supports the answer it does not pretend: the last step says what the tools showed
and that it does not settle the question, without stating the answer (the row's `meta.grounded` is
then false; `teacher.require_grounding: true` quarantines it). Its checks are real: the general check
is the shared leak detector (`generation.reflection.leak_verdict`), the math check looks for calculations
of the native solution that the steps could write from the evidence and did not. Defects exist only when the
loop asks for one (`TeacherContext.staged`, `reflection.staged_rate`): a math step that names the
method but writes no calculation, or a first step that guesses the answer before any tool ran.
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Sequence

from generation.quality.definitions import (
    CONSTANTS,
    Evidence,
    StepView,
    Target,
    answer_target,
    equations,
    evidence_of,
    judge_question,
    states_answer,
)
from generation.reflection import leak_verdict
from generation.schema import Sample, TeacherUsage, Trajectory, is_math
from generation.sources.instructions import MULTIPLE_CHOICE_PROMPT, SHORT_ANSWER_PROMPT
from generation.teachers.base import FinalAnswer, ReflectionVerdict, StepDecision, TeacherContext, TeacherStats
from generation.teachers.table_reading import derive, read_table
from generation.verify import answers_match
from operators.colours import COLOUR_NAMES
from operators.label_bbox_segments import read_segments_text

MODEL_NAME = "offline-annotations"

VISUAL_COT_TEXT_SUBSETS = ("textvqa", "textcap", "docvqa", "infographicsvqa", "sroie", "dude")
_TEXT_SUBSETS = VISUAL_COT_TEXT_SUBSETS + (
    "st_vqa", "screen2words", "vistext", "hateful_memes", "robut", "tqa", "chartqa", "ocrvqa", "dvqa", "figureqa",
    "ai2d", "geoqa", "docvqa")
_TEXT_WORDS = ("text", "written", "say", "says", "read", "title", "word", "sign", "label", "table", "chart",
               "screen", "app", "page", "menu", "caption", "meme", "column", "row", "value", "brand", "memo",
               "invoice", "receipt", "document", "letter")
_PEOPLE_WORDS = ("person", "people", "man", "men", "woman", "women", "face", "faces", "who is", "boy", "girl",
                 "astronaut", "player", "wearing", "crew", "human")
_COUNT_WORDS = ("how many", "count")
_KNOWLEDGE_WORDS = ("which country", "what country", "when was", "what year", "who designed", "who built",
                    "founded", "capital", "named after", "in which", "height of", "how tall", "how old",
                    "architect", "native to", "species", "what city")
_LABELLED_WORDS = ("diagram", "figure", "chart", "graph", "label", "labelled", "labeled", "map", "table", "arrow")
_PURPOSES = {"image_caption": "a description of the image", "ocr": "the text in the image",
             "face_detection": "where the people's faces are", "label_bbox": "the separate objects to count"}
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


class OfflineTeacher:
    """Implements `generation.teachers.base.Teacher` without a model: no images seen (`mode` None), no
    VLM to caption with, no judge, no endpoint to check, no totals beyond the rows' own."""

    mode: Optional[str] = None
    caption_client = None
    stats: Optional[TeacherStats] = None

    def __init__(self, model_name: str = MODEL_NAME) -> None:
        self.model_name = model_name

    def _usage(self) -> TeacherUsage:
        return TeacherUsage(model=self.model_name)

    # -- what the evidence says so far ------------------------------------------------------------
    @staticmethod
    def _evidence(ctx: TeacherContext, steps: Optional[Sequence[Any]] = None) -> Evidence:
        _, evidence = judge_question(ctx.qa.question, list(ctx.steps if steps is None else steps), ctx.qa.answer,
                                     ctx.qa.choices, prior=evidence_of(ctx.previous))
        return evidence

    @staticmethod
    def _candidates(ctx: TeacherContext) -> list[str]:
        """The reference answer, then the accepted aliases a source lists (InfoSeek)."""
        meta = ctx.qa.meta
        names = [ctx.qa.answer] + [str(a) for a in (meta.get("answers") or []) + (meta.get("answer_aliases") or [])]
        return list(dict.fromkeys(n.strip() for n in names if str(n).strip()))

    def _answer(self, ctx: TeacherContext, evidence: Evidence) -> str:
        """The answer to give: the reference, or an accepted alias the evidence shows when it lacks the reference."""
        for name in self._candidates(ctx):
            if evidence.supports(self._target(ctx, name)):
                return name
        return ctx.qa.answer

    @staticmethod
    def _target(ctx: TeacherContext, answer: str) -> Target:
        return answer_target(answer, ctx.qa.choices)

    @staticmethod
    def _called(ctx: TeacherContext) -> list[tuple[str, Optional[str]]]:
        """(operator, rag query) of every call this question made so far."""
        out: list[tuple[str, Optional[str]]] = [(name, None) for step in ctx.steps for name in step.operators]
        return out + [("rag", step.rag_query) for step in ctx.steps if step.rag_query]

    # -- which operators -------------------------------------------------------------------------
    def choose_operators(self, ctx: TeacherContext) -> tuple[list[str], dict[str, dict], Optional[str]]:
        question = bare_question(ctx.qa.question)
        q = question.lower()
        available = set(ctx.operators_available)
        source, subset = ctx.sample.source, ctx.sample.subset.lower()
        box = ctx.qa.meta.get("bbox") or ctx.sample.meta.get("bbox")
        chosen: list[str] = []
        args: dict[str, dict] = {}
        rag_query = None
        # Counting objects in a scene (not rows of a table or text): label_bbox finds them.
        counting = _has(q, _COUNT_WORDS) and "label_bbox" in available and source not in ("tabmwp", "infoseek") \
            and not _has(q, _KNOWLEDGE_WORDS)
        if source == "visual_cot" and box:
            tool = "ocr" if subset.startswith(VISUAL_COT_TEXT_SUBSETS) else (
                "label_bbox" if counting else "image_caption")
            chosen.append(tool)
            args[tool] = {"region": [float(v) for v in box]}
        elif source == "tabmwp":
            chosen.append("ocr")
        else:
            if _has(q, _TEXT_WORDS) or subset.startswith(_TEXT_SUBSETS):
                chosen.append("ocr")
            if _has(q, _PEOPLE_WORDS):
                chosen.append("face_detection")
            if source == "infoseek" or _has(q, _KNOWLEDGE_WORDS):
                rag_query = question
            if not chosen or source in ("llava_cot", "infoseek"):
                chosen.insert(0, "image_caption")
        if counting and "ocr" not in chosen:  # not rows of a table nor words of a text
            chosen.append("label_bbox")
            args["label_bbox"] = {**args.get("label_bbox", {}), "labels": _count_target(question) or ["object"]}
        chosen = [name for name in dict.fromkeys(chosen) if name in available]
        if rag_query and "rag" not in available:
            rag_query = None
        return chosen, {k: v for k, v in args.items() if k in chosen}, rag_query

    def _plan(self, ctx: TeacherContext, chosen: list[str], args: dict[str, dict], rag_query: Optional[str]) -> str:
        question = bare_question(ctx.qa.question)
        region = next((a["region"] for a in args.values() if "region" in a), None)
        if region is not None:
            box = "[" + ", ".join(f"{v:g}" for v in region) + "]"
            what = {"ocr": "read the text there with ocr", "label_bbox": "find the separate objects there with "
                    "label_bbox"}.get(chosen[0], "look at that part with image_caption")
            return f"The question asks: {question} The part of the image that answers it is around {box}, so I will {what}."
        needs = [_PURPOSES[name] for name in chosen if name in _PURPOSES]
        if rag_query:
            needs.append("background knowledge about the subject")
        tools = ", ".join(chosen + (["rag"] if rag_query else []))
        return f"The question asks: {question} To answer it I need {', '.join(needs)}, so I will use {tools}."

    def _guess(self, ctx: TeacherContext) -> str:
        """The staged general defect: the answer named before any tool ran."""
        target = self._target(ctx, ctx.qa.answer)
        claim = f"{target.letter} ({target.text})" if target.letter else ctx.qa.answer
        return f" Before looking, I would say the answer is {claim}."

    def _follow_up(self, ctx: TeacherContext, evidence: Evidence) -> Optional[StepDecision]:
        """One more tool call when the first ones did not show the answer and another may."""
        if evidence.supports(self._target(ctx, self._answer(ctx, evidence))):
            return None
        called = self._called(ctx)
        names = [name for name, _ in called]
        available = set(ctx.operators_available)
        source, subset = ctx.sample.source, ctx.sample.subset.lower()
        entity = ctx.sample.meta.get("entity_text")
        if source == "infoseek" and entity and "rag" in available and sum(n == "rag" for n in names) == 1:
            query = re.sub(r"\bthis (?:\w+)\b", str(entity), bare_question(ctx.qa.question), count=1, flags=re.I)
            query = query if query != bare_question(ctx.qa.question) else f"{entity}: {query}"
            thought = f"The passages do not answer it. The subject of the image is {entity}, so I will search for that."
            return StepDecision(thought=thought, rag_query=query, usage=self._usage())
        if "ocr" not in available or names.count("ocr") >= (2 if source == "visual_cot" else 1):
            return None
        if source == "visual_cot" and subset.startswith(VISUAL_COT_TEXT_SUBSETS) and "ocr" in names:
            return StepDecision(thought="The text in that part does not show it clearly, so I will read the whole "
                                        "image with ocr.", operators=["ocr"], usage=self._usage())
        q = bare_question(ctx.qa.question).lower()
        word_options = [c for c in ctx.qa.choices if not re.fullmatch(r"[\d\s.,/%$°-]+", c)]
        if source != "visual_cot" and "ocr" not in names and (word_options or _has(q, _LABELLED_WORDS)):
            first = ", ".join(dict.fromkeys(names)) or "first look"
            return StepDecision(thought=f"The {first} result does not settle it; the image may label what is asked, "
                                        "so I will read its text with ocr.", operators=["ocr"], usage=self._usage())
        return None

    # -- thoughts -----------------------------------------------------------------------------------
    @staticmethod
    def _table(ctx: TeacherContext) -> str:
        """TabMWP's `table_for_pd` (column -> values) as one sentence of rows."""
        table = ctx.sample.meta.get("table_for_pd")
        if not isinstance(table, dict) or not table:
            return ""
        columns = [str(c) for c in table]
        values = [list(v) if isinstance(v, (list, tuple)) else [v] for v in table.values()]
        rows = ["; ".join(f"{c}: {vals[i]}" for c, vals in zip(columns, values) if i < len(vals))
                for i in range(max(len(v) for v in values))]
        title = ctx.sample.meta.get("table_title")
        text = (f'The table "{title}" lists ' if title else "The table lists ") + " | ".join(rows[:40]) + "."
        return _clip(text, 1500)

    @staticmethod
    def _dialogue_observations(ctx: TeacherContext) -> list[Any]:
        """Every result this dialogue has shown so far (earlier questions first), in order."""
        return [o for qa in ctx.previous for s in qa.steps for o in s.observations] + \
            [o for s in ctx.steps for o in s.observations]

    def _quote(self, ctx: TeacherContext, target: Target) -> Optional[str]:
        """'The ocr result says "…".' for the first result piece that holds the target (a small count: the
        whole result, which is what the count is read from, not a line where the digit happens to be)."""
        whole = target.kind == "number" and target.value is not None and target.value in CONSTANTS
        for operator, text in ((o.operator, o.text) for o in self._dialogue_observations(ctx)):
            for where, piece in ([("", text)] if whole else _pieces(text)):
                probe = Evidence(ctx.qa.question)
                probe.add_result(piece)
                if probe.supports(target):
                    source = (f"retrieved passage on {where}" if where else "retrieved passage") if operator == "rag" \
                        else f"{operator} result"
                    return f'The {source} says "{_clip(piece, 300 if whole else _QUOTE_CHARS)}".'
        return None

    @staticmethod
    def _conclusion(target: Target, answer: str) -> str:
        if target.letter:
            return f"This matches option {target.letter} ({target.text}), so the answer is {target.letter}."
        return f"So the answer is {answer}."

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

    def _observations(self, ctx: TeacherContext, operator: str, backend: Optional[str] = None) -> list[str]:
        """The texts `operator` returned in this dialogue so far, latest first."""
        return [o.text for o in reversed(self._dialogue_observations(ctx))
                if o.operator == operator and (backend is None or o.backend == backend)]

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

    def _derivation(self, ctx: TeacherContext, staged_math: bool) -> list[str]:
        """The native calculation written out (TabMWP solution, LLaVA-CoT reasoning); staged: its method only."""
        sentences = solution_sentences(ctx.qa.source_rationale) if ctx.sample.source in ("tabmwp", "llava_cot") else []
        if staged_math:
            return [s for s in sentences if not re.search(r"\d", s)]
        return sentences

    def _accepts(self, ctx: TeacherContext, thought: str, answer: str, grounded: bool = True) -> bool:
        """Would this last step be free of leaks (and, with `grounded`, reach a grounded answer)?"""
        steps = [StepView(s.thought, s.signal, tuple((o.operator, o.text) for o in s.observations)) for s in ctx.steps]
        verdict, _ = judge_question(ctx.qa.question, steps + [StepView(thought, "end")], answer, ctx.qa.choices,
                                    prior=evidence_of(ctx.previous))
        return (verdict.grounded or not grounded) and not any(leak.step == len(steps) for leak in verdict.leaks)

    def _final_thought(self, ctx: TeacherContext, staged_math: bool = False) -> tuple[str, bool]:
        """(the step that ends the reasoning, whether it is the staged math defect)."""
        evidence = self._evidence(ctx)
        answer = self._answer(ctx, evidence)
        target = self._target(ctx, answer)
        table = self._table(ctx)
        derivation = self._derivation(ctx, staged_math)
        if staged_math and len(derivation) < len(self._derivation(ctx, False)) and \
                any(equations(s) for s in self._derivation(ctx, False)):
            method = " ".join(derivation) or "I can compute the result from these values."
            return " ".join(p for p in (table, method) if p), True
        quote = self._quote(ctx, target)
        conclusion = self._conclusion(target, answer)
        # With a calculation the derivation is the support; without one, the quote of the result that shows it.
        tries = ([table, *derivation, conclusion], [quote, conclusion]) if derivation else \
            ([quote, table, conclusion], [quote, conclusion])
        # First what the tool results give when read off (a table's rows, the objects found), if it is the answer.
        read_off = self._read_off(ctx)
        if read_off and answers_match(read_off[1], ctx.qa):
            tries = ([*read_off[0], conclusion],) + tries
        for parts in tries:
            if any(p is None for p in parts):
                continue
            thought = " ".join(p for p in parts if p)
            if self._accepts(ctx, thought, answer):
                return thought, False
        # Not reachable from the evidence: the calculation that can be written without claiming the answer,
        # then what the tools showed; the table's values only where they do not name the answer (a small
        # count is often a cell of the table, and the misread OCR does not show it).
        written = [s for s in derivation if not states_answer(s, target, ctx.qa.question)]
        describe = self._describe(ctx)
        for parts in ([table, *written], written, [table, describe], [describe]):
            thought = " ".join(p for p in parts if p)
            if thought and self._accepts(ctx, thought, answer, grounded=False):
                return thought, False
        return describe, False

    # -- Teacher protocol -------------------------------------------------------------------------
    async def next_step(self, ctx: TeacherContext) -> StepDecision:
        if ctx.reflection_feedback is not None:
            return StepDecision(thought=self._final_thought(ctx)[0], next_action="final_answer", usage=self._usage())
        if not ctx.steps:
            prior = evidence_of(ctx.previous)
            known = prior is not None and prior.supports(self._target(ctx, self._answer(ctx, prior)))
            chosen, args, rag_query = self.choose_operators(ctx)
            if not known and (chosen or rag_query):
                thought = self._plan(ctx, chosen, args, rag_query)
                staged = ctx.staged == "general"
                return StepDecision(thought=thought + (self._guess(ctx) if staged else ""), operators=chosen,
                                    operator_args=args, rag_query=rag_query, next_action="continue",
                                    usage=self._usage(), staged=staged)
        else:
            follow = self._follow_up(ctx, self._evidence(ctx))
            if follow is not None:
                return follow
        thought, staged = self._final_thought(ctx, staged_math=ctx.staged == "math")
        return StepDecision(thought=thought, next_action="final_answer", usage=self._usage(), staged=staged)

    async def reflect(self, ctx: TeacherContext, kind: Literal["general", "math"]):
        """General: the shared leak detector (`generation.reflection.leak_verdict`, the audit's definition).
        Math: the calculations of the native solution whose operands the evidence gives (so the steps could
        have written them) and that no step wrote."""
        if kind == "general":
            return leak_verdict(ctx), self._usage()
        if not is_math(ctx.sample, ctx.qa):
            return None, self._usage()
        evidence = self._evidence(ctx)
        written = {(tuple(sorted(ops)), round(values[-1], 6))
                   for step in ctx.steps if step.signal != "reflection" for ops, values in equations(step.thought)}
        missing = []
        for sentence in self._derivation(ctx, False):
            for operands, values in equations(sentence):
                if all(evidence.known(v) for v in operands):
                    evidence.derived += values
                    if (tuple(sorted(operands)), round(values[-1], 6)) not in written:
                        missing.append(sentence)
                        break
        if not missing:
            return None, self._usage()
        reason = ("Wait, the reasoning skips calculations it needs: " + " ".join(dict.fromkeys(missing))
                  + " I will write them out before giving the answer.")
        return ReflectionVerdict(kind="math", reason=reason, thought=self._final_thought(ctx)[0]), self._usage()

    async def final_answer(self, ctx: TeacherContext) -> FinalAnswer:
        return FinalAnswer(answer=self._answer(ctx, self._evidence(ctx)), usage=self._usage())

    async def judge(self, trajectory: Trajectory, sample: Sample) -> None:
        return None

    async def preflight(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

