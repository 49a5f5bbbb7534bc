"""The real teacher: any OpenAI-compatible chat endpoint (GPT-4o, vLLM, SGLang, Ollama, llama.cpp)
behind `generation.teachers.base.Teacher`.

`OpenAITeacher` renders the prompt templates (`generation.teachers.prompts`: rationale step, general
and math reflection, final answer), asks through its `ChatClient` (`generation.teachers.chat_client`:
limits, retries, structured output, repair, accounting) and turns the replies
(`generation.teachers.replies`) into the loop's `StepDecision` / `ReflectionVerdict` / `FinalAnswer`.
The images go as data URLs. A prompt longer than the model's context is shortened by the rule in
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
from generation.teachers.chat_client import CaptionClient, ChatClient
from generation.teachers.judge import judge_dialogue
from generation.teachers.model_limits import ContextOverflow, count_observations, more_to_omit, omit_observations
from generation.teachers.prompts import MAX_OBSERVATION_CHARS, TOOL_DESCRIPTIONS, render_prompt
from generation.teachers.replies import SCHEMAS, AnswerReply, ReasonReply, ReplyT, StepReply, step_schema
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
        qa = ctx.qa
        return {"question": qa.question, "choices": list(qa.choices), "answer": qa.answer,
                "source_rationale": qa.source_rationale, "steps": list(ctx.steps), "previous": list(ctx.previous)}

    async def _ask(self, task: str, variables: dict[str, Any], images: Sequence[LoadedImage],
                   schema: dict[str, Any], reply_type: type[ReplyT]) -> tuple[ReplyT, TeacherUsage]:
        """Render `task`'s prompt and ask; when it does not fit the model's context, omit the oldest
        steps' results (see `generation.teachers.model_limits`) and ask again, else quarantine."""
        steps = variables.get("steps") or []
        total = count_observations(steps)
        omitted = 0
        while True:
            shown = omit_observations(steps, omitted) if omitted else steps
            system, user = render_prompt(task, **{**variables, "steps": shown})
            try:
                return await self.chat.complete_json(task, system, user, images, schema, reply_type)
            except ContextOverflow as overflow:
                more = more_to_omit(steps, omitted, overflow, len(system) + len(user), MAX_OBSERVATION_CHARS)
                if more == 0:
                    raise self.chat._error("context", str(overflow)) from None
                omitted += more
                self.chat.stats.context_trims += 1
                log.debug("teacher %s: %s; omitting the %d oldest results", task, overflow, omitted)

    # -- Teacher protocol ------------------------------------------------------------------------
    async def next_step(self, ctx: TeacherContext) -> StepDecision:
        tools = [name for name in ctx.operators_available if name != "rag" and name in TOOL_DESCRIPTIONS]
        rag = "rag" in ctx.operators_available
        variables = dict(operators=tools, rag=rag, tool_descriptions=TOOL_DESCRIPTIONS,
                         feedback=ctx.reflection_feedback, **self._qa_vars(ctx))
        reply, usage = await self._ask("rationale_step", variables, ctx.images, step_schema(tools), StepReply)
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
        images = ctx.images if kind == "math" else []  # the cheating check reads the reasoning, not the image
        reply, usage = await self._ask(task, self._qa_vars(ctx), images, SCHEMAS[task], ReasonReply)
        if not reply.reason:
            return None, usage
        thought = reply.thought if kind == "math" else None
        return ReflectionVerdict(kind=kind, reason=reply.reason, thought=thought), usage

    async def final_answer(self, ctx: TeacherContext) -> FinalAnswer:
        reply, usage = await self._ask("final_answer", self._qa_vars(ctx), ctx.images, SCHEMAS["final_answer"],
                                       AnswerReply)
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
