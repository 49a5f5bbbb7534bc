"""`Agent`: a tuned model, the operators, and the format it was tuned on; one question at a time.

    from agent import Agent
    with Agent.open(endpoint="http://localhost:8000/v1", model="mmat-rr", format="rr") as agent:
        result = agent.run_sync(["photo.jpg"], "What is written on the sign? Answer the question using "
                                "a single word or phrase.")
    result.answer, result.status, result.steps, result.turns, result.tool_calls, result.tokens

`await agent.run(images, question)` is the same inside an event loop; several questions may run at
once (`mmat eval` bounds how many). Formats: `rr` (`agent.rr`), `orr` (`agent.orr`), `plain`
(`agent.plain`, the baseline). Images: file paths, bytes, PIL images or `LoadedImage`s.
"""
from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Sequence

from agent.endpoint import ChatModel, SamplingSettings
from agent.errors import QuestionFailed
from agent.orr import run_orr
from agent.plain import run_plain
from agent.rr import run_rr
from agent.serving import EndpointSpec, open_chat
from agent.settings import AgentSettings, check_format
from agent.tools import AgentTools, build_tools, operators_settings
from agent.trajectory import ERROR, AgentResult
from operators.images import ImageDecodeError, LoadedImage

Runner = Callable[..., Awaitable[None]]
RUNNERS: dict[str, Runner] = {"rr": run_rr, "orr": run_orr, "plain": run_plain}


def load_image(image: Any) -> LoadedImage:
    """A path, bytes, a PIL image or a LoadedImage → a decoded LoadedImage (QuestionFailed if unreadable)."""
    if isinstance(image, LoadedImage):
        loaded = image
    elif isinstance(image, (bytes, bytearray, memoryview)):
        loaded = LoadedImage(bytes(image))
    elif isinstance(image, (str, Path)):
        try:
            loaded = LoadedImage(Path(image).expanduser().read_bytes())
        except OSError as exc:
            raise QuestionFailed(f"cannot read the image {str(image)!r}: {exc.strerror or exc}") from None
    elif hasattr(image, "save"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        loaded = LoadedImage(buffer.getvalue())
    else:
        raise QuestionFailed(f"not an image: {type(image).__name__}")
    try:
        loaded.rgb
    except ImageDecodeError as exc:
        raise QuestionFailed(f"the image cannot be read: {exc}") from None
    return loaded


class Agent:
    """A `ChatModel` + `AgentTools` + `AgentSettings`. `close()` stops what `Agent.open` started."""

    def __init__(self, chat: ChatModel, tools: Optional[AgentTools] = None,
                 settings: Optional[AgentSettings] = None,
                 tools_factory: Optional[Callable[[], AgentTools]] = None) -> None:
        self.chat = chat
        self._tools = tools
        self._tools_factory = tools_factory or build_tools
        self._tools_lock = threading.Lock()
        self.settings = settings or AgentSettings()
        self._stack = contextlib.ExitStack()
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def tools(self) -> AgentTools:
        """Built on first use: the plain baseline needs none (and loads no operator)."""
        with self._tools_lock:  # questions starting together build them once
            if self._tools is None:
                self._tools = self._tools_factory()
        return self._tools

    @classmethod
    def open(cls, *, endpoint: Optional[str] = None, model: Optional[str] = None, gguf: Optional[str] = None,
             model_path: Optional[str] = None, base_model: Optional[str] = None, format: str = "rr",
             max_steps: int = 8, orr_operators: Optional[list[str]] = None, operators_config: Any = None,
             cache_dir: Optional[Path] = None, vision: Optional[bool] = None,
             sampling: Optional[SamplingSettings] = None, api_key_env: str = "OPENAI_API_KEY",
             threads: Optional[int] = None, n_ctx: int = 4096, parallel: int = 1,
             timeout_s: float = 300.0) -> "Agent":
        """Connect to (or start) the model named by exactly one of `endpoint`, `gguf`, `model_path`
        (see `agent.serving`) and pick the operators' backends from `operators_config` (a pipeline YAML
        or an `OperatorsConfig`; the cache in `cache_dir`)."""
        settings = AgentSettings(format=format, max_steps=max_steps, orr_operators=orr_operators)
        spec = EndpointSpec(endpoint=endpoint, model=model, gguf=gguf, model_path=model_path, base_model=base_model,
                            api_key_env=api_key_env, vision=vision, sampling=sampling or SamplingSettings(),
                            timeout_s=timeout_s, threads=threads, n_ctx=n_ctx, parallel=parallel)
        return cls.from_spec(spec, settings, operators_config=operators_config, cache_dir=cache_dir)

    @classmethod
    def from_spec(cls, spec: EndpointSpec, settings: AgentSettings, *, operators_config: Any = None,
                  cache_dir: Optional[Path] = None) -> "Agent":
        operators_config = operators_settings(operators_config)  # a bad YAML stops here, before any model runs
        stack = contextlib.ExitStack()
        try:
            chat = open_chat(spec, stack)
            agent = cls(chat, settings=settings, tools_factory=lambda: build_tools(operators_config, cache_dir))
        except BaseException:
            stack.close()
            raise
        agent._stack = stack
        return agent

    async def run(self, images: Sequence[Any], question: str, format: Optional[str] = None) -> AgentResult:
        """One question; never raises for a problem of this question alone (status `error`, `error` says
        why), raises `AgentError` for one that dooms every question (an unreachable endpoint)."""
        fmt = check_format(format or self.settings.format)
        result = AgentResult(format=fmt, question=question, model=self.chat.name, n_images=len(images),
                             images_sent=self.chat.vision)
        start = time.perf_counter()
        try:
            loaded = [load_image(image) for image in images]
            tools = None if fmt == "plain" else await asyncio.to_thread(lambda: self.tools)
            await RUNNERS[fmt](self.chat, tools, loaded, question, self.settings, result)
        except QuestionFailed as exc:
            result.status, result.error = ERROR, str(exc)
        finally:
            result.latency_s = time.perf_counter() - start
            result.model = self.chat.name
        return result

    def run_sync(self, images: Sequence[Any], question: str, format: Optional[str] = None) -> AgentResult:
        """`run` from code without an event loop (one loop per agent, kept for its connections)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self.run(images, question, format))

    async def aclose(self) -> None:
        await self.chat.aclose()
        self._stack.close()

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.run_until_complete(self.chat.aclose())
            loop.close()
        else:
            with contextlib.suppress(RuntimeError):  # a client made in a loop that is gone already
                asyncio.run(self.chat.aclose())
        self._stack.close()

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> "Agent":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()
