"""The real teacher: any OpenAI-compatible chat endpoint (GPT-4o, vLLM, SGLang, Ollama, llama.cpp)
behind `generation.teachers.base.Teacher`.

`OpenAITeacher` renders the prompt templates (`generation.teachers.prompts`: rationale step, general
and math reflection, final answer) as one growing conversation per question (one system text, the
images, the question, the steps in order, the task last: a provider's prompt cache reuses the prefix),
asks through its `ChatClient` (`generation.teachers.chat_client`: limits, retries, structured output
with one schema for every task, repair, accounting) and turns the replies
(`generation.teachers.replies`) into the loop's `StepDecision` / `ReflectionVerdict` / `FinalAnswer`.
The images go as data URLs, in every task's call (the prefix holds them). A prompt longer than the model's context is shortened by the rule in
`generation.teachers.model_limits`, else the sample is quarantined with why. The judge pass runs on
the same client (`generation.teachers.judge`); so does the VLM caption operator (`caption_client`).

Text-only mode (`teacher.vision: false`, or `auto` once the server says the model takes no images):
no image parts in any request, no VLM caption; the images reach the model only through the operators.
"""
from __future__ import annotations

import logging
from typing import Any, Literal, Optional, Sequence

from generation.config import TeacherConfig
from generation.schema import Sample, TeacherUsage, Trajectory
from generation.teachers.base import (FinalAnswer, ReflectionVerdict, StepDecision, TeacherContext,
                                      TeacherStats)
from generation.teachers.caption_client import CaptionClient
from generation.teachers.chat_client import ChatClient
from generation.teachers.judge import judge_dialogue
from generation.teachers.model_limits import ContextOverflow, more_to_omit, omit_observations
from generation.teachers.prompts import MAX_OBSERVATION_CHARS, TOOL_DESCRIPTIONS, render_turns
from generation.teachers.replies import AnswerReply, ReasonReply, ReplyT, step_reply
from operators.images import LoadedImage

log = logging.getLogger("mmat.teacher")


class OpenAITeacher:
    """Implements `generation.teachers.base.Teacher` over an OpenAI-compatible endpoint."""

    model_name: str
    caption_client: Optional[CaptionClient]

    def __init__(self, cfg: TeacherConfig, api_key: str, base_url: Optional[str] = None) -> None:
        self.cfg = cfg
        self.model_name = cfg.model
        self.chat = ChatClient(cfg, api_key=api_key, base_url=base_url)
        # Text-only from the start: no VLM caption (the template caption describes the image instead).
        self.caption_client = CaptionClient(self.chat) if self.chat.vision else None
        self.owned_server: Any = None  # a llama.cpp server this teacher started itself; stopped by aclose

    @property
    def mode(self) -> str:
        """What rows record as `meta.teacher_mode`: `vision`, or `text_only` (no images sent)."""
        return "vision" if self.chat.vision else "text_only"

    @property
    def stats(self) -> TeacherStats:
        return self.chat.stats

    # -- prompt variables ------------------------------------------------------------------------
    @staticmethod
    def _qa_vars(ctx: TeacherContext) -> dict[str, Any]:
        """Every task's variables: the question's context (tools included) is the same for all of them."""
        qa = ctx.qa
        tools = [name for name in ctx.operators_available if name != "rag" and name in TOOL_DESCRIPTIONS]
        return {"question": qa.question, "choices": list(qa.choices), "answer": qa.answer,
                "source_rationale": qa.source_rationale, "steps": list(ctx.steps), "previous": list(ctx.previous),
                "operators": tools, "rag": "rag" in ctx.operators_available, "tool_descriptions": TOOL_DESCRIPTIONS}

    async def _ask(self, task: str, variables: dict[str, Any], images: Sequence[LoadedImage],
                   reply_type: type[ReplyT]) -> tuple[ReplyT, TeacherUsage]:
        """Render `task`'s conversation and ask; when it does not fit the model's context, omit the oldest
        steps' results (see `generation.teachers.model_limits`) and ask again, else quarantine."""
        steps = variables.get("steps") or []
        omitted = 0
        while True:
            shown = omit_observations(steps, omitted) if omitted else steps
            turns = render_turns(task, **{**variables, "steps": shown})
            try:
                return await self.chat.complete_turns(task, turns, images, reply_type)
            except ContextOverflow as overflow:
                more = more_to_omit(steps, omitted, overflow, turns.chars(), MAX_OBSERVATION_CHARS)
                if more == 0:
                    raise self.chat._error("context", str(overflow)) from None
                omitted += more
                self.chat.stats.context_trims += 1
                log.debug("teacher %s: %s; omitting the %d oldest results", task, overflow, omitted)

    # -- Teacher protocol ------------------------------------------------------------------------
    async def next_step(self, ctx: TeacherContext) -> StepDecision:
        variables = dict(feedback=ctx.reflection_feedback, **self._qa_vars(ctx))
        reply, usage = await self._ask("rationale_step", variables, ctx.images,
                                       step_reply(variables["operators"]))  # an operator not offered: repaired, never dropped
        operators = [name for name in dict.fromkeys(reply.operators) if name != "rag"]
        args: dict[str, dict] = {}
        labels = [label.strip() for label in reply.labels if label and label.strip()]
        if "label_bbox" in operators and labels:
            args["label_bbox"] = {"labels": labels}
        query = (reply.rag.query or "").strip()
        return StepDecision(thought=reply.thought, operators=operators, operator_args=args,
                            rag_query=query if reply.rag.needed and query else None,
                            next_action="final_answer" if ctx.reflection_feedback else reply.next_action,
                            usage=usage)

    async def reflect(self, ctx: TeacherContext, kind: Literal["general", "math"]
                      ) -> tuple[Optional[ReflectionVerdict], TeacherUsage]:
        task = f"reflection_{kind}"
        # The cheating check reads the reasoning, but the images are part of the prefix every call shares.
        reply, usage = await self._ask(task, self._qa_vars(ctx), ctx.images, ReasonReply)
        if not reply.reason:
            return None, usage
        thought = reply.thought if kind == "math" else None
        return ReflectionVerdict(kind=kind, reason=reply.reason, thought=thought), usage

    async def final_answer(self, ctx: TeacherContext) -> FinalAnswer:
        reply, usage = await self._ask("final_answer", self._qa_vars(ctx), ctx.images, AnswerReply)
        return FinalAnswer(answer=reply.answer, usage=usage)

    async def judge(self, trajectory: Trajectory, sample: Sample) -> tuple[float, TeacherUsage]:
        """The optional quality pass: one 0-1 score per dialogue (see `generation.teachers.judge`)."""
        return await judge_dialogue(self.chat, trajectory, sample, model=self.cfg.judge_model)

    async def preflight(self) -> None:
        await self.chat.preflight()

    async def aclose(self) -> None:
        try:
            await self.chat.aclose()
        finally:
            if self.owned_server is not None:
                self.owned_server.stop()
