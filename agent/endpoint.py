"""The model the agent talks to, behind one narrow interface: messages in, reply text and usage out.

`ChatModel` is what the RR loop, the ORR one-shot and the plain baseline call; they never import
`openai`. Messages are the row schema's content-block form (`{"role", "content": [{"type": "image"},
{"type": "text", "text": …}]}`); the images they point at travel beside them, in order.
`OpenAIChat` speaks the OpenAI chat API to any compatible server (vLLM serving a merged LoRA,
llama.cpp, OpenAI): image blocks become `image_url` parts (data URLs), or are left out for a model
that takes no images. `agent.local_model.TransformersChat` runs a local transformers model instead.

Failures are sorted once, here: an endpoint that cannot be reached, rejects the key or does not serve
the model is an `AgentError` (nothing can run: stop); a request that fails after the client's retries
(a timeout, a 400 for one long prompt, a 5xx) is `QuestionFailed` (that question ends as `error`).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence

from agent.errors import AgentError, QuestionFailed
from agent.trajectory import Completion
from operators.images import LoadedImage

log = logging.getLogger("mmat.agent")

NO_KEY_PLACEHOLDER = "no-key"  # what a server without auth gets when no key is set


@dataclass
class SamplingSettings:
    """How every reply is sampled. Greedy by default: an evaluation must be repeatable."""

    max_tokens: int = 512
    temperature: float = 0.0
    extra_body: dict[str, Any] = field(default_factory=dict)  # server-specific (llama.cpp repeat_penalty, seed)


class ChatModel(Protocol):
    """What the agent needs from a model."""

    name: str
    vision: bool  # False: image blocks are left out (a text-only model sees the images through the operators)

    async def complete(self, messages: Sequence[dict[str, Any]], images: Sequence[LoadedImage]) -> Completion: ...

    async def aclose(self) -> None: ...


def block_text(block: dict[str, Any]) -> str:
    return block.get("text") or ""


def openai_messages(messages: Sequence[dict[str, Any]], images: Sequence[LoadedImage], vision: bool,
                    max_image_side: int = 1536) -> list[dict[str, Any]]:
    """Content-block messages → the chat API's: image blocks become data-URL parts (in order), or are
    dropped for a text-only model; a message of one text block is sent as a plain string."""
    from generation.teachers.payloads import image_data_url

    out: list[dict[str, Any]] = []
    next_image = 0
    for msg in messages:
        content = msg["content"]
        if isinstance(content, str):
            out.append({"role": msg["role"], "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for block in content:
            if block.get("type") == "image":
                if vision and next_image < len(images):
                    url = image_data_url(images[next_image], max_image_side)
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                next_image += 1
            else:
                parts.append({"type": "text", "text": block_text(block)})
        if len(parts) == 1 and parts[0]["type"] == "text":
            out.append({"role": msg["role"], "content": parts[0]["text"]})
        else:
            out.append({"role": msg["role"], "content": parts})
    return out


def api_key_from_env(env_var: str) -> str:
    """The key in `$env_var`, or a placeholder for a local server without auth."""
    from generation.config import ConfigError
    from generation.redact import register_secret
    from generation.teachers.factory import malformed_key

    key = (os.environ.get(env_var) or "").strip()
    problem = malformed_key(key, env_var)  # a line break or non-ASCII character: one line, never the key
    if problem:
        raise ConfigError(problem)
    if key:
        register_secret(key)
        return key
    return NO_KEY_PLACEHOLDER


def probe_vision(base_url: str) -> Optional[bool]:
    """Whether the server says its model takes images (llama.cpp's `/props`); None when it does not say."""
    from generation.teachers.llamacpp import LlamaCppError, probe_server

    try:
        return probe_server(base_url, timeout_s=5.0).vision
    except LlamaCppError:
        return None


class OpenAIChat:
    """`ChatModel` over the OpenAI chat API (`openai.AsyncOpenAI`; its own retries for 429/5xx)."""

    def __init__(self, base_url: str, model: Optional[str] = None, *, api_key: str = NO_KEY_PLACEHOLDER,
                 vision: Optional[bool] = None, sampling: Optional[SamplingSettings] = None,
                 timeout_s: float = 300.0, max_retries: int = 2) -> None:
        self.base_url = base_url
        self.name = model or ""
        self.sampling = sampling or SamplingSettings()
        self._client_args = dict(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries)
        self._client: Any = None
        if vision is None:
            vision = probe_vision(base_url)
            if vision is False:
                log.info("%s takes no images (the server says so): text-only, the images reach it through the "
                         "operators", base_url)
        self.vision = True if vision is None else vision

    @property
    def client(self) -> Any:
        """Made on first use, inside the event loop that uses it (its connections belong to that loop)."""
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(**self._client_args)
        return self._client

    async def resolve_model(self) -> str:
        """The model to ask: the one given, else the first the server lists."""
        if not self.name:
            import openai

            try:
                listing = await self.client.models.list()
            except openai.APIError as exc:
                raise self._fatal(exc) or AgentError(f"cannot list the models of {self.base_url}: {exc}") from None
            ids = [m.id for m in listing.data]
            if not ids:
                raise AgentError(f"{self.base_url} lists no model: pass --model NAME")
            self.name = ids[0]
            log.info("model: %s (the first one %s lists)", self.name, self.base_url)
        return self.name

    def _fatal(self, exc: BaseException) -> Optional[AgentError]:
        """The errors that doom every request, as one line with the fix; None for per-request ones."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return None
        if isinstance(exc, openai.APIConnectionError):
            return AgentError(f"cannot reach the endpoint {self.base_url}: {exc} (is the server running? "
                              f"check --endpoint)")
        if isinstance(exc, openai.AuthenticationError):
            return AgentError(f"the endpoint {self.base_url} rejected the API key (HTTP 401): set the key in the "
                              f"environment variable named by --api-key-env")
        if isinstance(exc, openai.PermissionDeniedError):
            return AgentError(f"the endpoint {self.base_url} refused model {self.name!r} (HTTP 403)")
        if isinstance(exc, openai.NotFoundError):
            return AgentError(f"the endpoint {self.base_url} does not serve model {self.name!r} (HTTP 404): "
                              f"check --model (or --endpoint, which must end in /v1)")
        return None

    async def complete(self, messages: Sequence[dict[str, Any]], images: Sequence[LoadedImage]) -> Completion:
        import openai

        model = await self.resolve_model()
        body = openai_messages(messages, images, self.vision)
        start = time.perf_counter()
        try:
            reply = await self.client.chat.completions.create(
                model=model, messages=body, max_tokens=self.sampling.max_tokens,
                temperature=self.sampling.temperature, extra_body=self.sampling.extra_body or None)
        except openai.APIError as exc:
            fatal = self._fatal(exc)
            if fatal is not None:
                raise fatal from None
            raise QuestionFailed(f"the model request failed: {type(exc).__name__}: {exc}") from None
        latency = time.perf_counter() - start
        if not reply.choices:
            raise QuestionFailed("the endpoint sent a reply without choices")
        choice = reply.choices[0]
        usage = reply.usage
        return Completion(text=choice.message.content or "", latency_s=latency, finish_reason=choice.finish_reason,
                          prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=getattr(usage, "completion_tokens", 0) or 0)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
