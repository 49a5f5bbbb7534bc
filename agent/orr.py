"""The ORR one-shot: the operators run first, their results go into the question, one call answers.

The user turn is built exactly as the ORR rows build it (`generation.dialogue_format.render_orr_question`:
question, "Use the following API outputs to help answer the question:", one
`<|begin_api_invoke|>NAME<|end_api_invoke|><|begin_result_of_api|>RESULT<|end_result_of_api|>` block per
distinct result), with the images; no system prompt, no RAG (ORR rows carry none). The operators are
every non-RAG operator available here, in the canonical order, or the ones the caller names, in its
order. The reply must parse as `<THOUGHT>…</THOUGHT><ANSWER>The answer is: …</ANSWER>`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from agent.conversation import Conversation
from agent.endpoint import ChatModel
from agent.tools import AgentTools
from agent.trajectory import UNPARSABLE, AgentResult
from generation.dialogue_format import ORR_FORMAT_REMINDER, parse_orr_reply, render_orr_question
from operators.images import LoadedImage

if TYPE_CHECKING:
    from agent.settings import AgentSettings


async def run_orr(chat: ChatModel, tools: AgentTools, images: Sequence[LoadedImage], question: str,
                  settings: "AgentSettings", result: AgentResult) -> None:
    names = tools.image_operators if settings.orr_operators is None else [
        name for name in settings.orr_operators if name != "rag"]
    observations, result.skipped = await tools.session(images, question).call(names)
    distinct = {(o.operator, o.text): o for o in observations}  # each distinct result once, in call order
    result.api_outputs = list(distinct.values())
    conversation = Conversation(chat, images, result)
    conversation.add("user", render_orr_question(question, list(distinct)), n_images=len(images))
    reply = await conversation.ask(parse_orr_reply, ORR_FORMAT_REMINDER)
    if reply is None:
        result.status = UNPARSABLE
        return
    result.thought, result.answer = reply
