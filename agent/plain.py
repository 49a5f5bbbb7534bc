"""The baseline: the question alone (with its response-style constraint) and the images, one call.

No system prompt, no operators: what the model answers without the agent runtime. `mmat eval` runs it
beside RR and ORR so the latency and accuracy ratios (ORR vs plain, RR vs plain) come from one run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from agent.conversation import Conversation
from agent.endpoint import ChatModel
from agent.tools import AgentTools
from agent.trajectory import UNPARSABLE, AgentResult
from generation.dialogue_format import ANSWER_FORMAT_REMINDER, parse_answer
from operators.images import LoadedImage

if TYPE_CHECKING:
    from agent.settings import AgentSettings


async def run_plain(chat: ChatModel, tools: Optional[AgentTools], images: Sequence[LoadedImage], question: str,
                    settings: "AgentSettings", result: AgentResult) -> None:
    conversation = Conversation(chat, images, result)
    conversation.add("user", question, n_images=len(images))
    answer = await conversation.ask(parse_answer, ANSWER_FORMAT_REMINDER)
    if answer is None:
        result.status = UNPARSABLE
        return
    result.answer = answer
