"""The HTTP layer every teacher call goes through: one chat client, shared by the teacher, the judge
and the VLM caption operator.

`ChatClient` speaks an OpenAI-compatible `/chat/completions`: one `AsyncOpenAI` client (its own
retries off), a bound on requests in flight, an RPM/TPM limiter, retries with exponential backoff
and full jitter on 429/5xx/timeouts that honour `Retry-After` (a 429 pauses every request, not just
the one that got it; `generation.teachers.http_errors` says what a failure means), structured
output (`json_schema` → `json_object` → plain JSON, stepping down once when the server refuses a
format), one repair round for an unparsable reply (a reply cut off at `max_tokens` counts as
unparsable), and token/latency/USD accounting per call. Every failure becomes a one-line
`TeacherError` with the key redacted; a failure that dooms the run (401/403/quota) is a
`TeacherFatalError` and no request is sent after it.

Text-only mode (`teacher.vision: false`, or `auto` once the server refuses an image): no image parts
in any request from then on (`generation.teachers.caption_client.CaptionClient` then tells the caption
operator to fall back).

What goes into a request and comes out of one (an image as a data URL, the JSON object in a reply)
is in `generation.teachers.payloads`, which the caption operator reads too. A request is built by
`request_body` (pure: the exact JSON body) and sent by `transport` (default `send`, the only method that
talks HTTP), so another transport (the Batch API) reuses everything else.

Prompt caching (issue 31): a teacher call is a conversation (`complete_turns`: one system text, the
images, the question, the steps appended in order, the task last) with one response schema for every
task (`generation.teachers.reply_schema`), so a sample's calls extend one prefix. The VLM caption
operator's call, made while a sample's teacher conversation is open (a context variable of the sample's
task), is sent as that conversation plus the caption task, so it reuses the prefix too. Cached prompt
tokens (`usage.prompt_tokens_details.cached_tokens`, or the vLLM / SGLang / llama.cpp equivalents) are
counted and billed at the model's cached price (`generation.teachers.prices`).

A provider that asks to wait (429 `Retry-After`, or "try again in ...") pauses every request once and
says so on the progress line; a wait longer than `teacher.max_wait_s` stops the run at once
(`TeacherFatalError`, exit 2) with when to rerun.

Latency per call is its wall time, from rendering the request to the parsed reply: retries, backoff,
the repair round and any wait for a concurrency slot or the rate limiter included.

The retry and wait policy (backoff, jitter, `Retry-After`, the long-wait stop, one clean error per
failure) is `generation.teachers.chat_retries.RetryPolicy`, which `ChatClient` inherits; what stays here
(the request, the format and parameter step-downs, the repair round, the accounting) acts on the same
request and is read together.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections import OrderedDict
from typing import Any, Callable, Optional, Sequence

from pydantic import ValidationError

from generation.config import TeacherConfig
from generation.errors import one_line
from generation.redact import redact, register_secret
from generation.schema import TeacherUsage
from generation.teachers.base import TeacherError, TeacherFatalError, TeacherStats
from generation.teachers.chat_retries import RetryPolicy
from generation.teachers.http_errors import error_message, status_of, unsupported_param
from generation.teachers.limiter import RateLimiter
from generation.teachers.prices import FREE, cost_usd, how_to_set_prices, teacher_prices
from generation.teachers.prompts import Turns, teacher_replies
from generation.teachers.reply_schema import TEACHER_REPLY, task_reply_schema, unwrap_reply
from generation.teachers.model_limits import (ContextOverflow, context_overflow, has_images, refuses_images,
                                              without_images)
from generation.teachers.payloads import (as_namespace, image_data_url, parse_json_reply,  # noqa: F401
                                          usage_tokens, validation_summary)
from generation.teachers.replies import ReplyT
from operators.images import LoadedImage

log = logging.getLogger("mmat.teacher")

# The open teacher conversation of the sample whose task is running: (client, messages without the task
# text, images in it). Set by `complete_turns`; read by the caption operator's calls (`CaptionClient`).
CONVERSATION: contextvars.ContextVar[Optional[tuple[Any, list[dict[str, Any]], int]]] = \
    contextvars.ContextVar("mmat_teacher_conversation", default=None)

MAX_ERROR_CHARS = 300
FORMAT_ORDER = ("json_schema", "json_object", "none")
HTTP_TRANSPORT = "auto"  # auto (aiohttp when installed) | aiohttp | httpx


# -- the client ------------------------------------------------------------------------------------
def schema_in_prompt(base_url: Optional[str]) -> bool:
    """Does the server read a structured-output schema as prompt tokens (so one shared schema keeps the
    cached prefix)? OpenAI's API and Azure OpenAI do; a local or self-hosted server (llama.cpp, vLLM,
    SGLang) constrains decoding with it instead, and gets each task's own schema (`task_reply_schema`)."""
    from urllib.parse import urlsplit

    if not base_url:
        return True  # the openai client's default: api.openai.com
    host = (urlsplit(base_url).hostname or "").lower()
    return host.endswith(("openai.com", "openai.azure.com", "azure.com"))


class ChatClient(RetryPolicy):
    """JSON-in, JSON-out chat calls with limits, retries and accounting. Shared by teacher and judge."""

    def __init__(self, cfg: TeacherConfig, api_key: str, base_url: Optional[str] = None) -> None:
        import openai

        self.cfg = cfg
        self.model = cfg.model
        self.base_url = base_url
        self._secrets = [api_key]
        register_secret(api_key)
        for name in ("httpx", "httpx2"):  # one INFO line per request is noise at a million samples
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.WARNING)
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=cfg.timeout_s,
                                         max_retries=0, http_client=_http_client(cfg))
        self.limiter = RateLimiter(cfg.requests_per_minute, cfg.tokens_per_minute)
        self._slots: Optional[asyncio.Semaphore] = None
        self.format = "json_schema" if cfg.structured_output == "auto" else cfg.structured_output
        self.shared_schema = schema_in_prompt(base_url) if cfg.shared_schema == "auto" else bool(cfg.shared_schema)
        self._params: dict[str, Any] = {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature}
        if cfg.stop:
            self._params["stop"] = list(cfg.stop)
        self.vision = cfg.vision is not False  # auto: until the server refuses an image
        self.stats = TeacherStats(usage=TeacherUsage(model=cfg.model))
        self.prices = teacher_prices(cfg)
        if self.prices is None:
            log.warning("%s: cost_usd is recorded as 0", how_to_set_prices(cfg))
        self._urls: OrderedDict[str, str] = OrderedDict()
        # Set by the first error that dooms the run (401/403/quota): no request is sent after it.
        self.fatal: Optional[TeacherFatalError] = None
        # What sends a built request body and returns the reply dict (the Batch API replaces it).
        self.transport = self.send
        if cfg.batch:  # the OpenAI Batch API at half the price (issue 31): generation.teachers.batch_client
            from generation.teachers.batch_client import attach_batch

            attach_batch(self)

    # -- accounting ------------------------------------------------------------------------------
    def usage_of(self, prompt_tokens: int, completion_tokens: int, latency_s: float,
                 model: Optional[str] = None, cached_tokens: int = 0) -> TeacherUsage:
        prices = self.prices or FREE  # unknown: recorded as 0.0 (warned once, in __init__)
        cost = cost_usd(prices, prompt_tokens, cached_tokens, completion_tokens)
        return TeacherUsage(model=model or self.model, prompt_tokens=prompt_tokens, cached_tokens=cached_tokens,
                            completion_tokens=completion_tokens, latency_s=latency_s, cost_usd=cost)

    def _error(self, kind: str, message: str, fix: Optional[str] = None) -> TeacherError:
        """A one-line, redacted error; with `fix`, a `TeacherFatalError` that stops the run."""
        self.stats.failures[kind] += 1
        text = redact(one_line(message, MAX_ERROR_CHARS), self._secrets)
        if fix is None:
            return TeacherError(text)
        self.fatal = self.fatal or TeacherFatalError(text, fix)
        return TeacherFatalError(text, fix)

    # -- one JSON call ---------------------------------------------------------------------------
    async def complete_json(self, task: str, system: str, user: str, images: Sequence[LoadedImage],
                            schema: dict[str, Any], reply_type: type[ReplyT],
                            model: Optional[str] = None) -> tuple[ReplyT, TeacherUsage]:
        """Ask (one system and one user text), parse into `reply_type`, repair once if needed. Raises
        TeacherError. The judge's call; the teacher's tasks go through `complete_turns`."""
        return await self._complete(task, self._messages(system, user, images), schema, reply_type, model)

    async def complete_turns(self, task: str, turns: Turns, images: Sequence[LoadedImage],
                             reply_type: type[ReplyT], model: Optional[str] = None) -> tuple[ReplyT, TeacherUsage]:
        """One teacher task as a conversation that extends the sample's earlier calls (`conversation`),
        with the one response schema of every task. The conversation without its task text stays open
        for the caption operator's calls of this sample (`CaptionClient`)."""
        messages = self.conversation(turns, images)
        last = messages[-1]
        if isinstance(last["content"], list):
            prefix = messages[:-1] + [{**last, "content": last["content"][:-1]}]
            CONVERSATION.set((self, prefix, sum(1 for b in last["content"] if b.get("type") == "image_url")))
        schema = TEACHER_REPLY if self.shared_schema else task_reply_schema(task, getattr(reply_type, "offered", None))
        return await self._complete(task, messages, schema, reply_type, model)

    def conversation(self, turns: Turns, images: Sequence[LoadedImage]) -> list[dict[str, Any]]:
        """The messages of a teacher call: the system text, then one user message with the images, the
        question's context, each step, and the task text last, as separate parts (text-only: joined)."""
        system = {"role": "system", "content": turns.system}
        if not self.vision:
            return [system, {"role": "user", "content": turns.user_text()}]
        content = self._image_parts(images)
        content += [{"type": "text", "text": text} for text in turns.user_texts()]
        return [system, {"role": "user", "content": content}]

    async def _complete(self, task: str, messages: list[dict[str, Any]], schema: dict[str, Any],
                        reply_type: type[ReplyT], model: Optional[str] = None) -> tuple[ReplyT, TeacherUsage]:
        start = time.perf_counter()
        prompt = cached = completion = 0
        completion_obj = await self._request(task, messages, schema, model)
        prompt, cached, completion = self._count(completion_obj, prompt, cached, completion)
        text, problem = self._read(completion_obj, reply_type)
        if problem is not None and not isinstance(problem, TeacherError):
            self.stats.repairs += 1
            repair = messages + [
                {"role": "assistant", "content": text or ""},
                {"role": "user", "content": f"Your reply could not be used: {one_line(str(problem), MAX_ERROR_CHARS)}. Reply again "
                                            f"with only the JSON object, following the schema exactly."},
            ]
            try:
                completion_obj = await self._request(task, repair, schema, model)
            except ContextOverflow as overflow:  # the repair round itself does not fit: it failed
                completion_obj = {}
                problem = ValueError(f"{problem}; the repair request does not fit the model context ({overflow})")
            else:
                prompt, cached, completion = self._count(completion_obj, prompt, cached, completion)
                text, problem = self._read(completion_obj, reply_type)
            if problem is not None and not isinstance(problem, TeacherError):
                problem = self._error("unparsable", f"teacher reply for {task} unusable after one repair retry: "
                                                    f"{problem}")
        usage = self.usage_of(prompt, completion, time.perf_counter() - start, model, cached)
        self.stats.usage = self.stats.usage.add(usage)
        if problem is not None:
            raise problem
        return text, usage  # type: ignore[return-value]

    def _count(self, completion: dict[str, Any], prompt: int, cached: int, done: int) -> tuple[int, int, int]:
        p, k, c = usage_tokens(completion)
        return prompt + p, cached + k, done + c

    def _read(self, completion: dict[str, Any], reply_type: type[ReplyT]) -> tuple[Any, Optional[Exception]]:
        """(parsed reply, None) or (raw text, what is wrong with it)."""
        try:
            choice = completion["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            return None, ValueError("reply has no choices")
        refusal = message.get("refusal")
        if refusal:
            return None, self._error("refusal", f"teacher refused: {refusal}")
        text = message.get("content")
        if isinstance(text, list):  # some servers return content blocks
            text = "".join(block.get("text", "") for block in text if isinstance(block, dict))
        if text:
            text = redact(text, self._secrets)  # nothing key-shaped may reach a row, whatever the model says
        if choice.get("finish_reason") == "length":  # even when what came parses: it was cut short
            return text, ValueError(f"reply cut off at max_tokens={self.cfg.max_tokens}")
        try:
            return reply_type.model_validate(unwrap_reply(parse_json_reply(text))), None
        except (ValueError, ValidationError) as exc:
            reason = str(exc) if not isinstance(exc, ValidationError) else validation_summary(exc)
            return text, ValueError(reason)

    def _messages(self, system: str, user: str, images: Sequence[LoadedImage]) -> list[dict[str, Any]]:
        if not self.vision:
            return [{"role": "system", "content": system}, {"role": "user", "content": user}]
        content = self._image_parts(images)
        content.append({"type": "text", "text": user})
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]

    def _image_parts(self, images: Sequence[LoadedImage]) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for image in images:
            url: dict[str, Any] = {"url": self.data_url(image)}
            if self.cfg.image_detail != "auto":
                url["detail"] = self.cfg.image_detail
            content.append({"type": "image_url", "image_url": url})
        return content

    def data_url(self, image: LoadedImage) -> str:
        """Data URLs are cached by content hash: a sample's k calls encode its images once."""
        url = self._urls.get(image.sha256)
        if url is None:
            url = image_data_url(image)
            self._urls[image.sha256] = url
            while len(self._urls) > max(64, 2 * self.cfg.max_concurrency):
                self._urls.popitem(last=False)
        else:
            self._urls.move_to_end(image.sha256)
        return url

    def _estimate_tokens(self, messages: list[dict[str, Any]]) -> int:
        chars, images = 0, 0
        for message in messages:
            content = message["content"]
            if isinstance(content, str):
                chars += len(content)
                continue
            for block in content:
                if block["type"] == "text":
                    chars += len(block["text"])
                else:
                    images += 1
        per_image = 85 if self.cfg.image_detail == "low" else 765
        return chars // 4 + images * per_image + self.cfg.max_tokens

    def _response_format(self, schema: dict[str, Any]) -> Optional[dict[str, Any]]:
        if self.format == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": schema["title"], "schema": schema, "strict": True}}
        if self.format == "json_object":
            return {"type": "json_object"}
        return None

    def _with_schema_text(self, messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
        if schema is not TEACHER_REPLY and schema.get("title") == TEACHER_REPLY["title"]:
            schema = TEACHER_REPLY  # a task's own schema: the prompt names every object, as for the shared one
        """Without server-side schemas the prompt carries the schema itself (for the teacher's one schema:
        every task's reply object in words, `teacher_replies.txt`, the same for every call)."""
        if self.format == "json_schema":
            return messages
        system = dict(messages[0])
        if schema is TEACHER_REPLY:
            system["content"] = f"{system['content']}\n{teacher_replies()}"
            return [system, *messages[1:]]
        system["content"] = (f"{system['content']}\n\nReply with only a JSON object that follows this JSON schema:\n"
                             f"{json.dumps(schema)}")
        return [system, *messages[1:]]

    def request_body(self, messages: list[dict[str, Any]], schema: Optional[dict[str, Any]],
                     model: Optional[str] = None, overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        """The exact JSON body of one `POST /chat/completions` for the client's current state (format,
        parameters it stepped down to, `extra_body` merged in). Pure: no I/O, no accounting. `overrides`
        (a caller's `max_tokens` / `temperature`) follow the client's parameter step-downs."""
        body: dict[str, Any] = {"model": model or self.model,
                                "messages": self._with_schema_text(messages, schema) if schema else messages,
                                **self._params}
        for key, value in (overrides or {}).items():
            if key == "max_tokens" and "max_completion_tokens" in self._params:
                key = "max_completion_tokens"
            elif key == "temperature" and "temperature" not in self._params:
                continue
            body[key] = value
        response_format = self._response_format(schema) if schema else None
        if response_format is not None:
            body["response_format"] = response_format
        if self.cfg.extra_body:
            body.update(self.cfg.extra_body)
        return body

    async def _request(self, task: str, messages: list[dict[str, Any]], schema: dict[str, Any],
                       model: Optional[str], overrides: Optional[dict[str, Any]] = None) -> Any:
        """One completion, stepping down a structured-output format or a parameter the server refuses."""
        import openai

        while True:
            if not self.vision and has_images(messages):
                messages = without_images(messages)  # built before the switch to text-only mode
            used_format = self.format
            used_params = dict(self._params)
            response_format = self._response_format(schema)
            try:
                return await self._with_retries(task, self.request_body(messages, schema, model, overrides))
            except openai.APIStatusError as exc:  # a 400/422, or a refusal of the images
                if refuses_images(exc) and has_images(messages):
                    self._text_only_after(exc)
                    continue
                overflow = context_overflow(exc)
                if overflow is not None:
                    raise overflow from None
                refused = unsupported_param(exc)
                if refused == "response_format" and response_format is not None \
                        and self.cfg.structured_output == "auto":
                    self._step_down_format(used_format, exc)
                    continue
                if refused == "max_tokens" and "max_tokens" in used_params:
                    self._swap_param("max_tokens", "max_completion_tokens")
                    continue
                if refused == "temperature" and "temperature" in used_params:
                    self._swap_param("temperature", None)
                    continue
                hint = ("; set teacher.structured_output: auto to fall back to plain JSON"
                        if refused == "response_format" else "")
                raise self._error("bad_request", f"teacher rejected the request (HTTP {status_of(exc)}): "
                                                 f"{error_message(exc)}{hint}") from None

    def _text_only_after(self, exc: BaseException) -> None:
        """The server refused an image: text-only mode from now on (`vision: auto`), else a clear error."""
        if self.cfg.vision is True:
            raise self._error("vision", f"teacher refused the images ({one_line(error_message(exc), MAX_ERROR_CHARS)}); set "
                                        f"teacher.vision: auto or false for a text-only model") from None
        if self.vision:
            self.vision = False
            self.stats.downgrades.append("vision->text_only")
            log.warning("teacher %s takes no images (%s): text-only mode from now on, the images reach it only "
                        "through the operators", self.model, redact(one_line(error_message(exc), MAX_ERROR_CHARS), self._secrets))

    def _step_down_format(self, used: str, exc: BaseException) -> None:
        if self.format != used:
            return  # another request already stepped down
        nxt = FORMAT_ORDER[FORMAT_ORDER.index(used) + 1]
        self.format = nxt
        self.stats.downgrades.append(f"{used}->{nxt}")
        log.warning("teacher endpoint refused response_format %s (%s); using %s from now on", used,
                    redact(one_line(error_message(exc), MAX_ERROR_CHARS), self._secrets), nxt)

    def _swap_param(self, old: str, new: Optional[str]) -> None:
        if old not in self._params:
            return
        value = self._params.pop(old)
        if new:
            self._params[new] = value
        self.stats.downgrades.append(f"{old}->{new or 'dropped'}")
        log.warning("teacher endpoint refused %s; %s from now on", old, f"sending {new}" if new else "omitting it")

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /chat/completions` with a body `request_body` built, through the SDK's low-level `post`
        (auth, base URL, timeouts and its error classes), skipping its per-request parameter transform
        and response models: plain dicts cost a fraction of the CPU, which is what bounds throughput at
        hundreds of requests in flight."""
        reply = await self.client.post("/chat/completions", body=body, cast_to=object)
        if not isinstance(reply, dict):
            raise ValueError(f"teacher endpoint returned {type(reply).__name__}, not a JSON object")
        return reply

    async def complete_raw(self, messages: list[dict[str, Any]], model: Optional[str] = None,
                           **params: Any) -> Any:
        """A plain chat completion (no JSON handling) through the same slots, limiter and retries."""
        start = time.perf_counter()
        completion = await self._with_retries("raw", self.request_body(messages, None, model, params))
        return self.settle_raw(completion, start, model)

    def settle_raw(self, completion: dict[str, Any], start: float, model: Optional[str],
                   rewrite: Optional[Callable[[str], str]] = None) -> Any:
        """A plain completion's tokens and latency (since `start`) added to the run's totals, each reply
        text redacted (then passed through `rewrite`); the reply with attribute access, as the SDK's."""
        prompt, cached, done = self._count(completion, 0, 0, 0)
        self.stats.usage = self.stats.usage.add(self.usage_of(prompt, done, time.perf_counter() - start, model,
                                                              cached))
        for choice in completion.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                content = redact(message["content"], self._secrets)
                message["content"] = rewrite(content) if rewrite is not None else content
        return as_namespace(completion)

    async def preflight(self) -> None:
        """Check the endpoint and the key before a long run: one `GET /models` (free on OpenAI)."""
        import openai

        try:
            listing = await self.client.models.list()
        except openai.APIError as exc:
            raise self._http_error(exc, "preflight", 1) from None
        names = {m.id for m in getattr(listing, "data", [])}
        if names and self.model not in names:
            log.warning("teacher model %r is not in the endpoint's model list (%s)", self.model,
                        ", ".join(sorted(names)[:8]))

    async def aclose(self) -> None:
        closing = getattr(self.transport, "aclose", None)  # the Batch API transport: its open batches
        if closing is not None:
            await closing()
        await self.client.close()


def _http_client(cfg: TeacherConfig, transport: Optional[str] = None) -> Any:
    """The SDK's aiohttp transport when aiohttp is installed (less CPU per request than httpx's pool at
    hundreds of connections), else its httpx client; one pooled connection per request in flight."""
    import openai

    try:  # openai ≥ 3 ships httpx2; older releases use httpx
        import httpx2 as httpx_module  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        import httpx as httpx_module  # type: ignore[no-redef]
    size = max(cfg.max_concurrency, 1) + 8
    limits = httpx_module.Limits(max_connections=size, max_keepalive_connections=size)
    transport = transport or HTTP_TRANSPORT
    if transport in ("auto", "aiohttp") and hasattr(openai, "DefaultAioHttpClient"):
        try:
            import aiohttp  # noqa: F401

            return openai.DefaultAioHttpClient(limits=limits, timeout=cfg.timeout_s)
        except (ImportError, RuntimeError):
            if transport == "aiohttp":
                raise
    return openai.DefaultAsyncHttpxClient(limits=limits, timeout=cfg.timeout_s)
