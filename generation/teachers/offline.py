"""The offline teacher: deterministic reasoning grounded in what the tools return.

It needs no network and no key, so the demo and the tests run anywhere. It is not GPT-4o: every row it
produces says `teacher.model = "offline-annotations"`. It reads the source's annotations to decide
*where to look* and *what to compute*, and writes only what the tool results support
(`generation.quality.definitions`, the audit's own definitions, judge every thought before it is used):

- Visual CoT: the annotated box is cropped (`region`) and read with `ocr` for the text subsets
  (TextVQA, TextCap, DocVQA, InfographicsVQA, SROIE, DUDE), captioned with `image_caption` for the
  others; when the crop's text lacks the answer, the whole image is read.
- TabMWP: the table is read with `ocr`; the thought lists the cells as the OCR read them (a misread one
  quoted, then what it is taken to mean: `"$2/1b", i.e. $2/lb`; one whose numbers it lost is not cited)
  and writes out the native solution's calculations from those values (`generation.teachers.table_evidence`).
- InfoSeek: the first step names the entity the image shows (the source's `entity_text`, unless that
  name is the answer) and asks `rag` about it; the thought quotes the sentence of a passage on it that
  contains the answer. Without an entity, `rag` with the question.
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

Where the tools cannot show the answer and the source ships a rationale that does (LLaVA-CoT's CAPTION,
REASONING and CONCLUSION, TabMWP's solution), one step says what the tools did not show, and the last
step quotes the rationale under the marker `generation.quality.evidence_kinds.SOURCE_RATIONALE_LEAD`
(`generation.teachers.source_rationale`): the audit counts that answer as grounded by the source's
rationale, apart from tool evidence. Visual-CoT's box opens its dialogue the same way (where to look).
Where nothing supports the answer it does not pretend: the last step says what the tools showed and that
it does not settle the question, without stating the answer or deriving half of it (`meta.grounded`
false; `teacher.require_grounding`, on for this teacher by default, quarantines the sample). Its checks are real: the general check
is the shared leak detector (`generation.reflection.leak_verdict`), the math check looks for calculations
of the native solution that the steps could write from the evidence and did not. Defects exist only when the
loop asks for one (`TeacherContext.staged`, `reflection.staged_rate`): a math step that names the
method but writes no calculation, or a first step that guesses the answer before any tool ran.
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional, Sequence

from generation.quality.definitions import (
    Evidence,
    StepView,
    Target,
    answer_target,
    equations,
    evidence_of,
    judge_question,
    states_answer,
)
from generation.quality.evidence_kinds import is_source_rationale
from generation.final_trajectory import replaced_in_question
from generation.reflection import leak_verdict, near_copy, restates
from generation.schema import Sample, TeacherUsage, Trajectory, is_math
from generation.sources.instructions import question_content
from generation.teachers.base import FinalAnswer, ReflectionVerdict, StepDecision, TeacherContext, TeacherStats
from generation.teachers.source_rationale import box_rationale, marked, rationale_of, supported_by
from generation.teachers.offline_reading import (  # noqa: F401 - bare_question, _count_target: agent/tools.py
    _COUNT_WORDS, EvidenceReading, _count_target, _has, bare_question, solution_sentences,
)
from generation.verify import answers_match

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
_KNOWLEDGE_WORDS = ("which country", "what country", "when was", "what year", "who designed", "who built",
                    "founded", "capital", "named after", "in which", "height of", "how tall", "how old",
                    "architect", "native to", "species", "what city")
_LABELLED_WORDS = ("diagram", "figure", "chart", "graph", "label", "labelled", "labeled", "map", "table", "arrow")
_PURPOSES = {"image_caption": "a description of the image", "ocr": "the text in the image",
             "face_detection": "where the people's faces are", "label_bbox": "the separate objects to count"}
# The step before a quoted source rationale ends with this (how `next_step` knows it was written).
BRIDGE_TAIL = "so I will use the source's own rationale."


def asked(question: str) -> str:
    """The question as a plan quotes it: what it asks (`question_content`: no "Question:" label, no options
    block, no instruction), ended as a sentence. "The question asks: Question: How many stars are there?
    Choices: A. 6 B. 7 C. 8 To answer it ..." was what a row taught."""
    text = question_content(question)
    return text if not text or text[-1] in ".?!" else text + "."


class OfflineTeacher(EvidenceReading):
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
                named = self._named_subject(ctx)
                rag_query = named[1] if named else question_content(question)
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
        question = asked(ctx.qa.question)
        region = next((a["region"] for a in args.values() if "region" in a), None)
        if region is not None:
            box = "[" + ", ".join(f"{v:g}" for v in region) + "]"
            what = {"ocr": "read the text there with ocr", "label_bbox": "find the separate objects there with "
                    "label_bbox"}.get(chosen[0], "look at that part with image_caption")
            return f"The question asks: {question} I will {what}, in the region {box}."
        needs = [_PURPOSES[name] for name in chosen if name in _PURPOSES]
        named = self._named_subject(ctx) if rag_query else None
        if rag_query:
            needs.append(f"background knowledge about {named[0] if named else 'the subject'}")
        tools = ", ".join(chosen + (["rag"] if rag_query else []))
        subject = f" The subject of the image is {named[0]}." if named else ""
        return f"The question asks: {question}{subject} To answer it I need {', '.join(needs)}, so I will use {tools}."

    def _named_subject(self, ctx: TeacherContext) -> Optional[tuple[str, str]]:
        """(entity, rag query about it) for an InfoSeek question whose image the source names (`entity_text`)
        and whose answer is not that name: the subject is said before any passage is read, so the passage
        the thought quotes is the one about what the image shows, not the one that happens to hold the
        answer (three towers retrieved for "this tower": the step must say which tower it is first)."""
        entity = str(ctx.sample.meta.get("entity_text") or "").strip()
        if ctx.sample.source != "infoseek" or not entity or \
                any(states_answer(f"The subject of the image is {entity}.", self._target(ctx, name), ctx.qa.question)
                    for name in self._candidates(ctx)):
            return None
        content = question_content(ctx.qa.question)
        query = re.sub(r"\bthis (?:\w+)\b", entity, content, count=1, flags=re.I)
        return entity, query if query != content else f"{entity}: {query}"

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
        if "ocr" not in available or names.count("ocr") >= (2 if source == "visual_cot" else 1):
            return None
        if source == "visual_cot" and subset.startswith(VISUAL_COT_TEXT_SUBSETS) and "ocr" in names:
            return StepDecision(thought="The text in that part does not show it clearly, so I will read the whole "
                                        "image with ocr.", operators=["ocr"], usage=self._usage())
        q = bare_question(ctx.qa.question).lower()
        word_options = [c for c in ctx.qa.choices if not re.fullmatch(r"[\d\s.,/%$°-]+", c)]
        if source != "visual_cot" and "ocr" not in names and (word_options or _has(q, _LABELLED_WORDS)):
            seen = list(dict.fromkeys(names))
            listed = ", ".join(seen[:-1]) + f" and {seen[-1]}" if len(seen) > 1 else "".join(seen)
            first = f"{listed} result{'s' if len(seen) > 1 else ''}" if seen else "first look"
            return StepDecision(thought=f"The {first} do{'' if len(seen) > 1 else 'es'} not show it yet; the image may "
                                        "label what is asked, so I will read its text with ocr.", operators=["ocr"],
                                usage=self._usage())
        return None

    # -- thoughts -----------------------------------------------------------------------------------
    @staticmethod
    def _conclusion(target: Target, answer: str) -> str:
        if target.letter:
            return f"This matches option {target.letter} ({target.text}), so the answer is {target.letter}."
        return f"So the answer is {answer}."

    def _accepts(self, ctx: TeacherContext, thought: str, answer: str, grounded: bool = True) -> bool:
        """Would this last step be free of leaks (and, with `grounded`, reach a grounded answer)?"""
        steps = [StepView(s.thought, s.signal, tuple((o.operator, o.text) for o in s.observations)) for s in ctx.steps]
        verdict, _ = judge_question(ctx.qa.question, steps + [StepView(thought, "end")], answer, ctx.qa.choices,
                                    prior=evidence_of(ctx.previous))
        return (verdict.grounded or not grounded) and not any(leak.step == len(steps) for leak in verdict.leaks)

    def _final_thought(self, ctx: TeacherContext, staged_math: bool = False, repair: bool = False,
                       table: Optional[str] = None) -> tuple[str, bool, str]:
        """(the next thought, whether it is the staged math defect, `final_answer` or `continue`): the answer
        derived from the tool results; else, where the source's rationale supports it, a step saying what the
        tools did not show (`continue`), then the rationale quoted under its marker; else what the tools
        showed and that it does not settle the question. `repair`: an end step in any case (no bridge);
        `table`: the table sentence to use ("" leaves it out)."""
        evidence = self._evidence(ctx)
        answer = self._answer(ctx, evidence)
        target = self._target(ctx, answer)
        table = self._table(ctx) if table is None else table
        derivation = self._derivation(ctx, staged_math)
        if staged_math and len(derivation) < len(self._derivation(ctx, False)) and \
                any(equations(s) for s in self._derivation(ctx, False)):
            method = " ".join(derivation) or "I can compute the result from these values."
            return " ".join(p for p in (table, method) if p), True, "final_answer"
        quote = self._quote(ctx, target)
        rationale = rationale_of(ctx.sample, ctx.qa)
        if quote and rationale and not re.search(r"[^\W\d_]", quote.split('"', 1)[-1]):
            # a quote with no word in it ("42", "2016 2017 2018") shows the number, not how it answers the
            # question; where the source ships its own reasoning, that says how
            quote = None
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
                return thought, False, "final_answer"
        # Not reachable from the tool results: the source's own rationale, said to be that, where it supports it.
        if rationale and supported_by(rationale, target, ctx.qa.question, evidence):
            if not repair and not any(s.thought.endswith(BRIDGE_TAIL) for s in ctx.steps):
                return self._bridge(ctx, target, table), False, "continue"
            return marked(rationale), False, "final_answer"
        return self._describe(ctx), False, "final_answer"

    def _bridge(self, ctx: TeacherContext, target: Target, table: str) -> str:
        """The step before a quoted rationale: what the tools showed, and what they did not."""
        names = list(dict.fromkeys(o.operator for o in self._dialogue_observations(ctx)))  # earlier questions' too
        listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)
        tools = f"The {listed} " + ("results do" if len(names) > 1 else "result does") if names else ""
        missing = [v for v in (self._missing(ctx) if ctx.sample.source == "tabmwp" and names else [])
                   if not states_answer(v, target, ctx.qa.question)]  # the answer itself is not named here
        asked = "which option is right" if ctx.qa.choices else "the answer"
        if missing:
            gap = f"{tools} not show every value the source's solution uses (it also uses {', '.join(missing[:6])}), "
        else:
            gap = f"{tools} not show {asked}, " if names else f"No tool result shows {asked}, "
        shown = [table] if table and not states_answer(table, target, ctx.qa.question) else []
        return " ".join(shown + [gap + BRIDGE_TAIL])

    def _repair_thought(self, ctx: TeacherContext) -> str:
        """The step that repairs what the general check found (an answer named before the evidence): the answer
        derived again from the tool results, in words of its own. The step it replaces (the old end) is often
        sound, and the engine rejects a repair that copies it or says it again whole (`near_copy`,
        `restates`), so the repair is a rewrite: the calculations alone (the table's listing is in the results
        already), or the result that shows the answer read in other words. A quoted source rationale is quoted
        again from its own words, the part with the numbers where that differs enough."""
        replaced = [ctx.steps[i].thought for i in replaced_in_question(ctx.steps) if ctx.steps[i].signal != "reflection"]
        full = self._final_thought(ctx, repair=True)[0]
        evidence = self._evidence(ctx)
        answer = self._answer(ctx, evidence)
        target = self._target(ctx, answer)
        if is_source_rationale(full):
            rationale = rationale_of(ctx.sample, ctx.qa) or ""
            worked = " ".join(s for s in solution_sentences(rationale) if re.search(r"\d", s))
            options = [marked(worked)] if worked and supported_by(worked, target, ctx.qa.question, evidence) else []
            return next((t for t in options if self._fresh(t, replaced)), full)
        ending = (f"That is option {target.letter} ({target.text}): the answer is {target.letter}." if target.letter
                  else f"That gives the answer: {answer}.")
        worked = [s for s in self._derivation(ctx, False) if re.search(r"\d", s)]
        options = [" ".join(["Working from the ocr result:", *worked, ending])] if worked else []
        read_off = self._read_off(ctx)
        if read_off and answers_match(read_off[1], ctx.qa):
            options.append(" ".join([*read_off[0][1:], ending]) if len(read_off[0]) > 1 else "")
        quote = self._quote(ctx, target)
        if quote:
            which = (f"which is option {target.letter} ({target.text}): the answer is {target.letter}." if target.letter
                     else f"which gives the answer: {answer}.")
            options.append(re.sub(r"^The (.+?) says ", r"The \1 reads ", quote)[:-1] + ", " + which)
        for thought in options:
            if thought and self._fresh(thought, replaced) and self._accepts(ctx, thought, answer):
                return thought
        return next((t for t in options if t and self._fresh(t, replaced)), full)

    @staticmethod
    def _fresh(thought: str, replaced: list[str]) -> bool:
        """Neither a near copy of a step it replaces nor one of them said again whole."""
        return not any(near_copy(thought, old) or restates(thought, old) for old in replaced)

    # -- Teacher protocol -------------------------------------------------------------------------
    async def next_step(self, ctx: TeacherContext) -> StepDecision:
        if ctx.reflection_feedback is not None:
            return StepDecision(thought=self._repair_thought(ctx), next_action="final_answer", usage=self._usage())
        box = box_rationale(ctx.sample, ctx.qa)
        if box and not ctx.steps and not ctx.previous:  # Visual-CoT: where to look, as the source says it
            return StepDecision(thought=marked(box), next_action="continue", usage=self._usage())
        if not [s for s in ctx.steps if not is_source_rationale(s.thought)]:
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
        thought, staged, action = self._final_thought(ctx, staged_math=ctx.staged == "math")
        return StepDecision(thought=thought, next_action=action, usage=self._usage(), staged=staged)

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
        # The repair writes each calculation after its method; the table's listing, which the staged step
        # already showed, is not said again (the engine rejects a repair that restates the step it replaces).
        return ReflectionVerdict(kind="math", reason=reason, thought=self._final_thought(ctx, repair=True, table="")[0]), \
            self._usage()

    async def final_answer(self, ctx: TeacherContext) -> FinalAnswer:
        return FinalAnswer(answer=self._answer(ctx, self._evidence(ctx)), usage=self._usage())

    async def judge(self, trajectory: Trajectory, sample: Sample) -> None:
        return None

    async def preflight(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

