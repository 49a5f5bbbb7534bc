"""What the VLM caption operator (`operators.image_caption`, backend `vlm`) calls: the teacher's own chat
client, so its calls share the teacher's slots, rate limiter, retries and accounting.

While a sample's teacher conversation is open (`ChatClient.complete_turns` sets it for the sample's task),
a caption call about its one image is sent as that conversation plus a caption task (`Task: caption`,
then the operator's own prompt), with the teacher's one response schema: the provider's prompt cache
reuses the sample's prefix (issue 31). The reply goes back in the operator's own shape. Any other
caption call is sent as the operator wrote it.
"""
from __future__ import annotations

import json
import time
from typing import Any, Optional

from generation.teachers.chat_client import CONVERSATION, ChatClient
from generation.teachers.payloads import parse_json_reply
from generation.teachers.prompts import TASK_LINE
from generation.teachers.reply_schema import TEACHER_REPLY, caption_for_operator
from operators.errors import BackendUnavailable

# The caption task's own rule (the shared system text holds none of a task's rules), before the operator's prompt.
CAPTION_RULE = "Describe the image from the image alone; the question and the steps above are context, not something to answer."


class CaptionClient:
    """What `image_caption`'s VLM backend calls: `await client(messages, model=..., max_tokens=...,
    temperature=...)` → a chat completion. It rides on the teacher's slots, limiter and retries, and
    its tokens count in the teacher's run totals."""

    def __init__(self, chat: ChatClient) -> None:
        self._chat = chat
        self.model_name = chat.model

    async def __call__(self, messages: list[dict[str, Any]], model: Optional[str] = None, **params: Any) -> Any:
        if not self._chat.vision:  # the operator falls back to its template caption
            raise BackendUnavailable(f"image_caption/vlm: the teacher {self.model_name} takes no images "
                                     f"(text-only mode)")
        reply = await self._in_conversation(messages, model, params)
        if reply is not None:
            return reply
        return await self._chat.complete_raw(messages, model=model, **params)

    async def _in_conversation(self, messages: list[dict[str, Any]], model: Optional[str],
                               params: dict[str, Any]) -> Optional[Any]:
        """The caption call as the sample's open teacher conversation plus a caption task (the operator's
        prompt), with the teacher's one response schema: the provider reuses the sample's cached prefix.
        Only for a call about the one image the conversation holds; None otherwise (sent as it is)."""
        chat = self._chat
        held = CONVERSATION.get()
        if held is None or held[0] is not chat or held[2] != 1:
            return None
        parts = [block for message in messages if isinstance(message.get("content"), list)
                 for block in message["content"] if isinstance(block, dict)]
        texts = [block.get("text", "") for block in parts if block.get("type") == "text"]
        texts += [m["content"] for m in messages if isinstance(m.get("content"), str)]
        if sum(1 for block in parts if block.get("type") == "image_url") != 1 or not texts:
            return None
        prefix = held[1]
        task = {"type": "text", "text": f"{TASK_LINE}caption\n{CAPTION_RULE}\n" + "\n".join(texts)}
        conversation = prefix[:-1] + [{**prefix[-1], "content": [*prefix[-1]["content"], task]}]
        start = time.perf_counter()
        completion = await chat._request("caption", conversation, TEACHER_REPLY, model, params)
        return chat.settle_raw(completion, start, model, rewrite=_in_operator_shape)


def _in_operator_shape(content: str) -> str:
    """The teacher-schema reply as the caption operator's own JSON; an unusable one as it is (the
    operator reports it)."""
    try:
        return json.dumps(caption_for_operator(parse_json_reply(content)))
    except ValueError:
        return content
