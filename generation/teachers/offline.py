"""The offline teacher: deterministic reasoning from operator outputs and the source's own rationale.

It needs no network and no key, so the demo and the tests run anywhere. It is not GPT-4o: every row it
produces says `teacher.model = "offline-annotations"`. It picks operators from the question and the
source (text → ocr, people → face_detection, knowledge → rag, counting/location → label_bbox,
otherwise image_caption), writes each thought from what the operators returned and from the native
rationale (LLaVA-CoT reasoning, TabMWP solution, Visual CoT box), and ends with the reference answer.
Its math check is real: it flags a reasoning that skipped intermediate steps of the source solution
and repairs it with the full solution.
"""
from __future__ import annotations

import re
from typing import Literal, Optional

from generation.schema import Sample, TeacherUsage, Trajectory
from generation.sources.instructions import MULTIPLE_CHOICE_PROMPT, SHORT_ANSWER_PROMPT
from generation.teachers.base import FinalAnswer, ReflectionVerdict, StepDecision, TeacherContext, TeacherStats

MODEL_NAME = "offline-annotations"

_TEXT_WORDS = ("text", "written", "say", "read", "title", "word", "sign", "label", "table", "chart",
               "screen", "app", "page", "menu", "caption", "meme", "column", "row", "value", "brand")
_TEXT_SUBSETS = ("st_vqa", "screen2words", "vistext", "hateful_memes", "robut", "tqa", "docvqa", "textvqa",
                 "chartqa", "infographicsvqa", "textcap", "dude", "sroie")
_PEOPLE_WORDS = ("person", "people", "man", "woman", "face", "who is", "boy", "girl", "astronaut", "player",
                 "wearing", "crew", "human")
_COUNT_WORDS = ("how many", "count", "number of", "where is", "where are", "located", "left of", "right of")
_KNOWLEDGE_WORDS = ("which country", "what country", "when was", "what year", "who designed", "who built",
                    "founded", "capital", "named after", "in which", "height of", "how tall", "how old",
                    "architect", "native to", "species", "what city")
_CONSTRAINT = re.compile(r"\s*(" + "|".join(map(re.escape, (SHORT_ANSWER_PROMPT, MULTIPLE_CHOICE_PROMPT))) + r")\s*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9$])")


def bare_question(question: str) -> str:
    """The question without the response-style constraint the foundation stage appended."""
    return _CONSTRAINT.sub("", question).strip()


def solution_sentences(text: Optional[str]) -> list[str]:
    if not text:
        return []
    lines = [line.strip() for line in text.replace("\r", "").split("\n") if line.strip()]
    return [s.strip() for line in lines for s in _SENTENCE.split(line) if s.strip()]


def _count_target(question: str) -> list[str]:
    match = re.search(r"how many ([a-z][a-z\- ]*?)(?: are| is| can| do| does| in| on| there|\?|$)", question.lower())
    return [match.group(1).strip()] if match else []


def _is_math(ctx: TeacherContext) -> bool:
    return bool(ctx.qa.meta.get("math") or ctx.sample.meta.get("math"))


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

    # -- which operators -------------------------------------------------------------------------
    def choose_operators(self, ctx: TeacherContext) -> tuple[list[str], dict[str, dict], Optional[str]]:
        question = bare_question(ctx.qa.question)
        q = question.lower()
        available = set(ctx.operators_available)
        subset = ctx.sample.subset.lower()
        chosen: list[str] = []
        args: dict[str, dict] = {}
        if ctx.sample.source == "tabmwp" or any(w in q for w in _TEXT_WORDS) or subset.startswith(_TEXT_SUBSETS):
            chosen.append("ocr")
        if any(w in q for w in _PEOPLE_WORDS):
            chosen.append("face_detection")
        targets = _count_target(question)
        if any(w in q for w in _COUNT_WORDS) and "label_bbox" in available:
            chosen.append("label_bbox")
            args["label_bbox"] = {"labels": targets or ["object"]}
        rag_query = None
        if ctx.sample.source == "infoseek" or any(w in q for w in _KNOWLEDGE_WORDS):
            rag_query = question
        if not chosen or ctx.sample.source in ("llava_cot", "infoseek"):
            chosen.insert(0, "image_caption")
        chosen = [name for name in chosen if name in available]
        if rag_query and "rag" not in available:
            rag_query = None
        return chosen, {k: v for k, v in args.items() if k in chosen}, rag_query

    # -- thoughts -----------------------------------------------------------------------------------
    def _plan_thought(self, ctx: TeacherContext, chosen: list[str], rag_query: Optional[str]) -> str:
        purposes = {
            "image_caption": "an overview of the scene",
            "ocr": "the text in the image",
            "face_detection": "where the people's faces are",
            "label_bbox": "the location of the relevant objects",
        }
        needs = [purposes[name] for name in chosen]
        if rag_query:
            needs.append("background knowledge about the subject")
        question = bare_question(ctx.qa.question)
        if not needs:
            return f"The question asks: {question} I can look at the image directly to answer it."
        tools = ", ".join(chosen + (["rag"] if rag_query else []))
        return f"The question asks: {question} To answer it I need {', '.join(needs)}, so I will use {tools}."

    def _evidence(self, ctx: TeacherContext) -> str:
        parts = []
        for step in ctx.steps:
            for obs in step.observations:
                text = obs.text if len(obs.text) <= 300 else obs.text[:297] + "..."
                parts.append(f"The {obs.operator} result says: {text}")
        return " ".join(parts)

    def _rationale_thought(self, ctx: TeacherContext, compress_math: bool) -> str:
        qa = ctx.qa
        sentences = solution_sentences(qa.source_rationale)
        bbox = qa.meta.get("bbox")
        pieces = [self._evidence(ctx)]
        if bbox:
            pieces.append(f"The region that answers the question is around {bbox}.")
        if compress_math and len(sentences) >= 3:
            sentences = [sentences[0], sentences[-1]]
        pieces.append(" ".join(sentences))
        text = " ".join(p for p in pieces if p).strip()
        return text or "The image and the results above contain what is needed to answer the question."

    # -- Teacher protocol -------------------------------------------------------------------------
    async def next_step(self, ctx: TeacherContext) -> StepDecision:
        if ctx.reflection_feedback is not None:
            return StepDecision(thought=self._rationale_thought(ctx, compress_math=False),
                                next_action="final_answer", usage=self._usage())
        if not ctx.steps:
            chosen, args, rag_query = self.choose_operators(ctx)
            if chosen or rag_query:
                return StepDecision(thought=self._plan_thought(ctx, chosen, rag_query), operators=chosen,
                                    operator_args=args, rag_query=rag_query, next_action="continue",
                                    usage=self._usage())
        return StepDecision(thought=self._rationale_thought(ctx, compress_math=_is_math(ctx)),
                            next_action="final_answer", usage=self._usage())

    async def reflect(self, ctx: TeacherContext, kind: Literal["general", "math"]):
        """General check: an offline teacher cannot judge cheating, so it reports none. Math check: the
        reasoning must contain every step of the source solution."""
        if kind == "general":
            return None, self._usage()
        sentences = solution_sentences(ctx.qa.source_rationale)
        reasoning = " ".join(step.thought for step in ctx.steps)
        missing = [s for s in sentences if s not in reasoning]
        if not missing:
            return None, self._usage()
        reason = ("The reasoning skips intermediate steps of the calculation: "
                  + " ".join(missing) + " These steps must be shown before giving the answer.")
        verdict = ReflectionVerdict(kind="math", reason=reason,
                                    thought=self._rationale_thought(ctx, compress_math=False))
        return verdict, self._usage()

    async def final_answer(self, ctx: TeacherContext) -> FinalAnswer:
        return FinalAnswer(answer=ctx.qa.answer, usage=self._usage())

    async def judge(self, trajectory: Trajectory, sample: Sample) -> None:
        return None

    async def preflight(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
