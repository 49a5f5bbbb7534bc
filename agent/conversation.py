"""One question's conversation with the model: the messages so far, every call, one retry per reply.

`ask(parse, reminder)` sends the messages, parses the reply with the project's strict parser
(`generation.dialogue_format`) and, when it does not parse, asks once more with the reply and the
format reminder appended; a second reply that does not parse ends the question as `unparsable`.
A reply cut at `max_tokens` counts as unparsable even when the cut text parses (as in generation: a
cut reply is an incomplete thought). The failed reply and the reminder stay out of `messages` (they
are in `calls`), so what the model sees next, and what the trajectory keeps, is the format it was
tuned on.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Optional, Sequence, TypeVar

from agent.endpoint import ChatModel
from agent.trajectory import AgentResult, ModelCall
from generation.dialogue_format import FormatError, image_block, message, text_block
from operators.images import LoadedImage

T = TypeVar("T")


class Conversation:
    def __init__(self, chat: ChatModel, images: Sequence[LoadedImage], result: AgentResult) -> None:
        self.chat = chat
        self.images = list(images)
        self.result = result
        self.messages = result.messages

    def add(self, role: str, text: str, n_images: int = 0) -> None:
        self.messages.append(message(role, *[image_block() for _ in range(n_images)], text_block(text)))

    async def _call(self, messages: list[dict[str, Any]], retry: bool) -> tuple[str, ModelCall]:
        completion = await self.chat.complete(messages, self.images)
        call = ModelCall(**asdict(completion), retry=retry)
        self.result.calls.append(call)
        return completion.text.strip(), call

    @staticmethod
    def _parse(parse: Callable[[str], T], text: str, call: ModelCall) -> T:
        if call.finish_reason == "length":
            raise FormatError("the reply was cut at max_tokens")
        return parse(text)

    async def ask(self, parse: Callable[[str], T], reminder: str) -> Optional[T]:
        """The parsed reply (appended to `messages` as the assistant turn), or None: unparsable twice."""
        text, call = await self._call(self.messages, retry=False)
        try:
            value = self._parse(parse, text, call)
        except FormatError:
            call.parsed = False
            retry_messages = [*self.messages, message("assistant", text_block(call.text)),
                              message("user", text_block(reminder))]
            text, call = await self._call(retry_messages, retry=True)
            try:
                value = self._parse(parse, text, call)
            except FormatError:
                call.parsed = False
                return None
        self.add("assistant", text)
        return value
