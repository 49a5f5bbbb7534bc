"""The real teacher: any OpenAI-compatible chat endpoint (GPT-4o, vLLM, SGLang, Ollama) behind `Teacher`.

Two layers:

- `ChatClient` speaks HTTP. One `AsyncOpenAI` client (its own retries off), a bound on requests in
  flight, an RPM/TPM limiter, retries with exponential backoff and full jitter on 429/5xx/timeouts that
  honour `Retry-After` (a 429 pauses every request, not just the one that got it), structured output
  (`json_schema` → `json_object` → plain JSON, stepping down once when the server refuses a format),
  one repair round for an unparsable reply (a reply cut off at `max_tokens` counts as unparsable),
  and token/latency/USD accounting per call. Every failure becomes a one-line `TeacherError` with the
  key redacted.
- `OpenAITeacher` renders the prompt templates in `generation/prompts/` (rationale step, general and
  math reflection, final answer, judge), sends the images as data URLs and turns replies into the
  loop's `StepDecision` / `ReflectionVerdict` / `FinalAnswer`. A prompt longer than the model's
  context is shortened by the rule in `generation.teachers.model_limits`, else quarantined with why.

Text-only mode (`teacher.vision: false`, or `auto` once the server says the model takes no images):
no image parts in any request, no VLM caption; the images reach the model only through the operators.

Latency per call is its wall time, from rendering the request to the parsed reply: retries, backoff,
the repair round and any wait for a concurrency slot or the rate limiter included.
"""
from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import random
import re
import time
from collections import OrderedDict, Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from generation.config import TeacherConfig
from generation.redact import redact, register_secret
from generation.schema import Sample, TeacherUsage, Trajectory
from generation.teachers.base import (FinalAnswer, ReflectionVerdict, StepDecision, TeacherContext, TeacherError,
                                      TeacherFatalError)
from generation.teachers.limiter import RateLimiter
from generation.teachers.model_limits import (ContextOverflow, context_overflow, count_observations, has_images,
                                              more_to_omit, omit_observations, refuses_images, without_images)
from operators.images import LoadedImage

log = logging.getLogger("mmat.teacher")

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"
TOOL_DESCRIPTIONS = {
    "image_caption": "describes the image: a scene graph (objects, attributes, relationships), then a concise caption.",
    "ocr": "reads the text in the image, line by line, with positions.",
    "label_bbox": "finds the objects named in \"labels\" and returns their boxes as normalised [x1, y1, x2, y2].",
    "face_detection": "finds human faces and returns their boxes in pixel coordinates.",
}
MAX_RETRY_AFTER_S = 120.0      # a provider asking for longer than this is treated as down
MAX_OBSERVATION_CHARS = 4000   # one operator result as the teacher sees it
MAX_ERROR_CHARS = 300
_IMAGE_BYTES_LIMIT = 8_000_000
_IMAGE_MAX_SIDE = 2048
_RETRYABLE_STATUS = {408, 409, 429}
FORMAT_ORDER = ("json_schema", "json_object", "none")
HTTP_TRANSPORT = "auto"  # auto (aiohttp when installed) | aiohttp | httpx


# --------------------------------------------------------------------------------------------------
# Replies: lenient pydantic models over what the teacher returns (plain-JSON servers drift a little)
# --------------------------------------------------------------------------------------------------
class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RagReply(_Lenient):
    needed: bool = False
    query: Optional[str] = None


class StepReply(_Lenient):
    thought: str = Field(min_length=1)
    operators: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    rag: RagReply = Field(default_factory=RagReply)
    next_action: Literal["continue", "final_answer"] = "continue"

    @field_validator("thought", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("operators", "labels", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("rag", mode="before")
    @classmethod
    def _rag(cls, value: Any) -> Any:
        if value is None or value is False:
            return {}
        if isinstance(value, str):
            return {"needed": bool(value.strip()), "query": value.strip() or None}
        return value

    @field_validator("next_action", mode="before")
    @classmethod
    def _action(cls, value: Any) -> Any:
        if isinstance(value, str):
            v = value.strip().lower().replace(" ", "_")
            if v in ("final_answer", "final", "answer", "end", "stop", "done", "finish"):
                return "final_answer"
            if v in ("continue", "next", "more"):
                return "continue"
        return value


class ReasonReply(_Lenient):
    reason: Optional[str] = None
    thought: Optional[str] = None

    @field_validator("reason", "thought", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            return None if value.lower() in ("", "none", "null", "n/a") else value
        return value


class AnswerReply(_Lenient):
    answer: str = Field(min_length=1)

    @field_validator("answer", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        return value.strip() if isinstance(value, str) else value


class JudgeReply(_Lenient):
    coherence: float
    relevance: float
    accuracy: float

    @property
    def score(self) -> float:
        return sum(min(1.0, max(0.0, v)) for v in (self.coherence, self.relevance, self.accuracy)) / 3


ReplyT = TypeVar("ReplyT", bound=BaseModel)


def _strict(properties: dict[str, Any], title: str) -> dict[str, Any]:
    return {"title": title, "type": "object", "additionalProperties": False,
            "required": list(properties), "properties": properties}


def step_schema(operators: Sequence[str]) -> dict[str, Any]:
    return _step_schema(tuple(n for n in operators if n != "rag"))


@lru_cache(maxsize=64)
def _step_schema(names: tuple[str, ...]) -> dict[str, Any]:
    items: dict[str, Any] = {"type": "string", "enum": list(names)} if names else {"type": "string"}
    return _strict({
        "thought": {"type": "string"},
        "operators": {"type": "array", "items": items},
        "labels": {"type": "array", "items": {"type": "string"}},
        "rag": {"type": "object", "additionalProperties": False, "required": ["needed", "query"],
                "properties": {"needed": {"type": "boolean"}, "query": {"type": ["string", "null"]}}},
        "next_action": {"type": "string", "enum": ["continue", "final_answer"]},
    }, "rationale_step")


SCHEMAS = {
    "reflection_general": _strict({"reason": {"type": ["string", "null"]}}, "reflection_general"),
    "reflection_math": _strict({"reason": {"type": ["string", "null"]}, "thought": {"type": ["string", "null"]}},
                               "reflection_math"),
    "final_answer": _strict({"answer": {"type": "string"}}, "final_answer"),
    "judge": _strict({"coherence": {"type": "number"}, "relevance": {"type": "number"},
                      "accuracy": {"type": "number"}}, "judge"),
}


def parse_json_reply(text: Optional[str]) -> Any:
    """The JSON object in a reply: the whole text, a ```json fence, or the outermost {...}."""
    if text is None or not text.strip():
        raise ValueError("empty reply")
    stripped = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.S)
    candidates = [stripped] + ([fence.group(1).strip()] if fence else [])
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        candidates.append(stripped[start:end + 1])
    error: Optional[Exception] = None
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as exc:
            error = error or exc
            continue
        if isinstance(value, dict):
            return value
        error = ValueError(f"expected a JSON object, got {type(value).__name__}")
    raise ValueError(f"not JSON: {error}")


# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(PROMPTS)), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                             auto_reload=False)  # no stat() per render

    def clip(text: Any, limit: int = MAX_OBSERVATION_CHARS) -> str:
        text = str(text)
        return text if len(text) <= limit else text[: limit - 3] + "..."

    env.filters["clip"] = clip
    return env


def render_prompt(name: str, **variables: Any) -> tuple[str, str]:
    """(system, user) text of `generation/prompts/{name}.j2`, split at its `[user]` line."""
    text = _environment().get_template(f"{name}.j2").render(**variables)
    if "[user]" not in text:
        raise ValueError(f"prompt template {name}.j2 has no [user] section")
    system, user = text.split("[user]", 1)
    system = system.replace("[system]", "", 1)
    return _tidy(system), _tidy(user)


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
         (b"GIF89a", "image/gif"))


def _sniff(data: bytes) -> Optional[str]:
    for magic, mime in _MIME:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_data_url(image: LoadedImage) -> str:
    """A `data:` URL the chat API accepts: the original bytes when they are PNG/JPEG/GIF/WebP and not
    huge, otherwise a re-encoded JPEG at most 2048 px on its longer side."""
    mime = _sniff(image.data)
    data = image.data
    if mime is None or len(data) > _IMAGE_BYTES_LIMIT:
        picture = image.rgb.copy()
        picture.thumbnail((_IMAGE_MAX_SIDE, _IMAGE_MAX_SIDE))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        data, mime = buffer.getvalue(), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# --------------------------------------------------------------------------------------------------
# Errors and retries
# --------------------------------------------------------------------------------------------------
def retry_after_seconds(headers: Any) -> Optional[float]:
    """`retry-after-ms`, then `retry-after` (seconds or an HTTP date); None when absent or unreadable."""
    if headers is None:
        return None
    try:
        value = headers.get("retry-after-ms")
        if value is not None:
            return max(0.0, float(value) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def backoff_seconds(attempt: int, base_s: float, max_s: float, retry_after: Optional[float] = None,
                    rng: Optional[random.Random] = None) -> float:
    """How long to wait before retry number `attempt` (1-based).

    Without a hint: full jitter over an exponentially growing window, `uniform(0, min(max, base·2^(n-1)))`.
    With `Retry-After`: that long (capped at MAX_RETRY_AFTER_S) plus up to `base_s` of jitter, so
    clients told the same time do not come back in the same instant."""
    uniform = (rng or random).uniform
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S) + uniform(0, base_s)
    return uniform(0, min(max_s, base_s * (2 ** (attempt - 1))))


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _status(exc: BaseException) -> Optional[int]:
    return getattr(exc, "status_code", None)


def _error_message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(getattr(exc, "message", None) or exc)


def _is_retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    status = _status(exc)
    if status is None:
        return False
    if status == 429 and _error_code(exc) == "insufficient_quota":
        return False  # billing, not load: waiting will not help
    return status in _RETRYABLE_STATUS or status >= 500


def _error_code(exc: BaseException) -> Optional[str]:
    code = getattr(exc, "code", None)
    if code:
        return str(code)
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("code"):
            return str(inner["code"])
    return None


def _connect_failure(exc: BaseException) -> Optional[str]:
    """The root cause when a request failed to connect at all (refused, DNS, unreachable), else None.

    The SDK's aiohttp transport reports a refused connection as a connect *timeout*; the cause chain
    tells them apart."""
    import openai

    if not isinstance(exc, openai.APIConnectionError):
        return None
    chain, seen = [], set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for item in chain:
        if isinstance(item, (ConnectionRefusedError, ConnectionResetError)) or \
                type(item).__name__ in ("ClientConnectorError", "ClientConnectorDNSError", "ConnectError"):
            return str(chain[-1]) or type(chain[-1]).__name__
    return None


def _retry_worthy(exc: BaseException) -> bool:
    """Retryable, unless it is a refusal of the images (llama.cpp sends those as HTTP 500)."""
    return _is_retryable(exc) and not refuses_images(exc)


def _unsupported_param(exc: BaseException) -> Optional[str]:
    """Which request feature a 400/422 refused: `response_format`, `max_tokens` or `temperature`."""
    if _status(exc) not in (400, 422):
        return None
    message = _error_message(exc).lower()
    param = str(getattr(exc, "param", None) or "").lower()
    if param == "response_format" or any(k in message for k in ("response_format", "json_schema", "json_object",
                                                                 "structured output", "guided_json")):
        return "response_format"
    if "max_tokens" in (param, message) or ("max_tokens" in message and "max_completion_tokens" in message):
        return "max_tokens"
    if param == "temperature" or ("temperature" in message and ("unsupported" in message or "not support" in message)):
        return "temperature"
    return None


# --------------------------------------------------------------------------------------------------
# The HTTP layer
# --------------------------------------------------------------------------------------------------
@dataclass
class TeacherStats:
    """What the teacher did over the whole run, quarantined samples included."""

    requests: int = 0
    retries: int = 0
    repairs: int = 0
    failures: Counter = field(default_factory=Counter)  # by kind: rate_limit, server, timeout, unparsable, ...
    downgrades: list[str] = field(default_factory=list)
    usage: TeacherUsage = field(default_factory=TeacherUsage)
    context_trims: int = 0  # prompts re-sent with older results omitted to fit the model's context

    def summary(self) -> str:
        u = self.usage
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())) or "none"
        return (f"teacher {u.model}: {self.requests} requests, {self.retries} retries, {self.repairs} repairs, "
                f"{self.context_trims} context trims, failed: {failed}; {u.prompt_tokens:,} prompt + "
                f"{u.completion_tokens:,} completion tokens, ${u.cost_usd:.4f}")


class ChatClient:
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
        self._params: dict[str, Any] = {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature}
        if cfg.stop:
            self._params["stop"] = list(cfg.stop)
        self.vision = cfg.vision is not False  # auto: until the server refuses an image
        self.stats = TeacherStats(usage=TeacherUsage(model=cfg.model))
        self._urls: OrderedDict[str, str] = OrderedDict()
        # Set by the first error that dooms the run (401/403/quota): no request is sent after it.
        self.fatal: Optional[TeacherFatalError] = None

    # -- accounting ------------------------------------------------------------------------------
    def usage_of(self, prompt_tokens: int, completion_tokens: int, latency_s: float,
                 model: Optional[str] = None) -> TeacherUsage:
        prices = self.cfg.prices
        cost = prompt_tokens * prices.prompt_per_1m / 1e6 + completion_tokens * prices.completion_per_1m / 1e6
        return TeacherUsage(model=model or self.model, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, latency_s=latency_s, cost_usd=cost)

    def _error(self, kind: str, message: str, fix: Optional[str] = None) -> TeacherError:
        """A one-line, redacted error; with `fix`, a `TeacherFatalError` that stops the run."""
        self.stats.failures[kind] += 1
        text = redact(_one_line(message), self._secrets)
        if fix is None:
            return TeacherError(text)
        self.fatal = self.fatal or TeacherFatalError(text, fix)
        return TeacherFatalError(text, fix)

    # -- one JSON call ---------------------------------------------------------------------------
    async def complete_json(self, task: str, system: str, user: str, images: Sequence[LoadedImage],
                            schema: dict[str, Any], reply_type: type[ReplyT],
                            model: Optional[str] = None) -> tuple[ReplyT, TeacherUsage]:
        """Ask, parse into `reply_type`, repair once if needed. Raises TeacherError."""
        start = time.perf_counter()
        messages = self._messages(system, user, images)
        prompt = completion = 0
        completion_obj = await self._request(task, messages, schema, model)
        prompt, completion = self._count(completion_obj, prompt, completion)
        text, problem = self._read(completion_obj, reply_type)
        if problem is not None and not isinstance(problem, TeacherError):
            self.stats.repairs += 1
            repair = messages + [
                {"role": "assistant", "content": text or ""},
                {"role": "user", "content": f"Your reply could not be used: {_one_line(str(problem))}. Reply again "
                                            f"with only the JSON object, following the schema exactly."},
            ]
            try:
                completion_obj = await self._request(task, repair, schema, model)
            except ContextOverflow as overflow:  # the repair round itself does not fit: it failed
                completion_obj = {}
                problem = ValueError(f"{problem}; the repair request does not fit the model context ({overflow})")
            else:
                prompt, completion = self._count(completion_obj, prompt, completion)
                text, problem = self._read(completion_obj, reply_type)
            if problem is not None and not isinstance(problem, TeacherError):
                problem = self._error("unparsable", f"teacher reply for {task} unusable after one repair retry: "
                                                    f"{problem}")
        usage = self.usage_of(prompt, completion, time.perf_counter() - start, model)
        self.stats.usage = self.stats.usage.add(usage)
        if problem is not None:
            raise problem
        return text, usage  # type: ignore[return-value]

    def _count(self, completion: dict[str, Any], prompt: int, done: int) -> tuple[int, int]:
        p, c = _tokens(completion)
        return prompt + p, done + c

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
            return reply_type.model_validate(parse_json_reply(text)), None
        except (ValueError, ValidationError) as exc:
            reason = str(exc) if not isinstance(exc, ValidationError) else _validation_summary(exc)
            return text, ValueError(reason)

    def _messages(self, system: str, user: str, images: Sequence[LoadedImage]) -> list[dict[str, Any]]:
        if not self.vision:
            return [{"role": "system", "content": system}, {"role": "user", "content": user}]
        content: list[dict[str, Any]] = []
        for image in images:
            url: dict[str, Any] = {"url": self.data_url(image)}
            if self.cfg.image_detail != "auto":
                url["detail"] = self.cfg.image_detail
            content.append({"type": "image_url", "image_url": url})
        content.append({"type": "text", "text": user})
        return [{"role": "system", "content": system}, {"role": "user", "content": content}]

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
        """Without server-side schemas the prompt carries the schema itself."""
        if self.format == "json_schema":
            return messages
        system = dict(messages[0])
        system["content"] = (f"{system['content']}\n\nReply with only a JSON object that follows this JSON schema:\n"
                             f"{json.dumps(schema)}")
        return [system, *messages[1:]]

    async def _request(self, task: str, messages: list[dict[str, Any]], schema: dict[str, Any],
                       model: Optional[str]) -> Any:
        """One completion, stepping down a structured-output format or a parameter the server refuses."""
        import openai

        while True:
            if not self.vision and has_images(messages):
                messages = without_images(messages)  # built before the switch to text-only mode
            used_format = self.format
            used_params = dict(self._params)
            kwargs: dict[str, Any] = dict(used_params)
            response_format = self._response_format(schema)
            if response_format is not None:
                kwargs["response_format"] = response_format
            if self.cfg.extra_body:
                kwargs["extra_body"] = dict(self.cfg.extra_body)
            try:
                return await self._with_retries(task, self._with_schema_text(messages, schema), kwargs, model)
            except openai.APIStatusError as exc:  # a 400/422, or a refusal of the images
                if refuses_images(exc) and has_images(messages):
                    self._text_only_after(exc)
                    continue
                overflow = context_overflow(exc)
                if overflow is not None:
                    raise overflow from None
                refused = _unsupported_param(exc)
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
                raise self._error("bad_request", f"teacher rejected the request (HTTP {_status(exc)}): "
                                                 f"{_error_message(exc)}{hint}") from None

    def _text_only_after(self, exc: BaseException) -> None:
        """The server refused an image: text-only mode from now on (`vision: auto`), else a clear error."""
        if self.cfg.vision is True:
            raise self._error("vision", f"teacher refused the images ({_one_line(_error_message(exc))}); set "
                                        f"teacher.vision: auto or false for a text-only model") from None
        if self.vision:
            self.vision = False
            self.stats.downgrades.append("vision->text_only")
            log.warning("teacher %s takes no images (%s): text-only mode from now on, the images reach it only "
                        "through the operators", self.model, redact(_one_line(_error_message(exc)), self._secrets))

    def _step_down_format(self, used: str, exc: BaseException) -> None:
        if self.format != used:
            return  # another request already stepped down
        nxt = FORMAT_ORDER[FORMAT_ORDER.index(used) + 1]
        self.format = nxt
        self.stats.downgrades.append(f"{used}->{nxt}")
        log.warning("teacher endpoint refused response_format %s (%s); using %s from now on", used,
                    redact(_one_line(_error_message(exc)), self._secrets), nxt)

    def _swap_param(self, old: str, new: Optional[str]) -> None:
        if old not in self._params:
            return
        value = self._params.pop(old)
        if new:
            self._params[new] = value
        self.stats.downgrades.append(f"{old}->{new or 'dropped'}")
        log.warning("teacher endpoint refused %s; %s from now on", old, f"sending {new}" if new else "omitting it")

    async def _with_retries(self, task: str, messages: list[dict[str, Any]], kwargs: dict[str, Any],
                            model: Optional[str]) -> Any:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        if self.fatal is not None:  # the endpoint already refused this run: send nothing more
            raise self.fatal
        attempts = self.cfg.max_retries + 1
        estimate = self._estimate_tokens(messages)

        def wait(state) -> float:
            exc = state.outcome.exception()
            response = getattr(exc, "response", None)
            hint = retry_after_seconds(getattr(response, "headers", None)) if response is not None else None
            if hint is not None and _status(exc) == 429:
                self.limiter.pause(min(hint, MAX_RETRY_AFTER_S))
            return backoff_seconds(state.attempt_number, self.cfg.backoff_base_s, self.cfg.backoff_max_s, hint)

        def before_sleep(state) -> None:
            self.stats.retries += 1
            exc = state.outcome.exception()
            log.debug("teacher %s: attempt %d failed (%s); retrying in %.2f s", task, state.attempt_number,
                      type(exc).__name__, state.next_action.sleep if state.next_action else 0.0)

        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts), wait=wait,
                                               retry=retry_if_exception(_retry_worthy), reraise=True,
                                               before_sleep=before_sleep):
                with attempt:
                    return await self._attempt(messages, kwargs, estimate, model)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clean line
            import openai

            if isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError)) or refuses_images(exc):
                raise
            raise self._http_error(exc, task, attempts) from None
        raise self._error("internal", f"teacher {task}: no attempt was made")  # pragma: no cover

    async def _attempt(self, messages: list[dict[str, Any]], kwargs: dict[str, Any], estimate: int,
                       model: Optional[str]) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.cfg.max_concurrency)
        async with self._slots:
            await self.limiter.acquire(estimate)
            self.stats.requests += 1
            completion = await self._post({"model": model or self.model, "messages": messages, **kwargs})
        prompt, done = _tokens(completion)
        if prompt or done:
            self.limiter.settle(estimate, prompt + done)
        return completion

    async def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /chat/completions` through the SDK's low-level `post` (auth, base URL, timeouts and its
        error classes), skipping its per-request parameter transform and response models: plain dicts
        cost a fraction of the CPU, which is what bounds throughput at hundreds of requests in flight."""
        extra = body.pop("extra_body", None)
        if extra:
            body.update(extra)
        reply = await self.client.post("/chat/completions", body=body, cast_to=object)
        if not isinstance(reply, dict):
            raise ValueError(f"teacher endpoint returned {type(reply).__name__}, not a JSON object")
        return reply

    def _http_error(self, exc: BaseException, task: str, attempts: int) -> TeacherError:
        import openai

        tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        status = _status(exc)
        refused = _connect_failure(exc)
        if refused is not None:
            return self._error("connection", f"cannot reach the teacher at {self.base_url or 'api.openai.com'} {tries}: "
                                             f"{refused}")
        if isinstance(exc, openai.APITimeoutError):
            return self._error("timeout", f"teacher request timed out {tries} (timeout_s={self.cfg.timeout_s}, {task})")
        if isinstance(exc, openai.APIConnectionError):
            return self._error("connection", f"teacher connection failed {tries}: {_error_message(exc)}")
        if status == 401:
            return self._error("auth", f"teacher rejected the API key (HTTP 401); check the environment variable "
                                       f"{self.cfg.api_key_env}", fix=f"set {self.cfg.api_key_env} to a valid key")
        if status == 403:
            return self._error("auth", f"teacher refused access (HTTP 403): {_error_message(exc)}",
                               fix=f"use a key (${self.cfg.api_key_env}) that may call model {self.model}")
        if status == 429 and _error_code(exc) == "insufficient_quota":
            return self._error("quota", f"teacher quota exhausted (HTTP 429 insufficient_quota): {_error_message(exc)}",
                               fix="add credit to the account or use another key")
        if status == 429:
            return self._error("rate_limit", f"teacher rate-limited (HTTP 429) {tries}: {_error_message(exc)}")
        if status is not None and status >= 500:
            return self._error("server", f"teacher server error (HTTP {status}) {tries}: {_error_message(exc)}")
        if status is not None:
            return self._error("http", f"teacher request failed (HTTP {status}): {_error_message(exc)}")
        return self._error("internal", f"teacher request failed: {type(exc).__name__}: {exc}")

    async def complete_raw(self, messages: list[dict[str, Any]], model: Optional[str] = None,
                           **params: Any) -> Any:
        """A plain chat completion (no JSON handling) through the same slots, limiter and retries."""
        start = time.perf_counter()
        if "max_completion_tokens" in self._params and "max_tokens" in params:
            params["max_completion_tokens"] = params.pop("max_tokens")
        if "temperature" not in self._params:
            params.pop("temperature", None)
        kwargs = {**self._params, **params}
        if self.cfg.extra_body:
            kwargs["extra_body"] = dict(self.cfg.extra_body)
        completion = await self._with_retries("raw", messages, kwargs, model)
        prompt, done = self._count(completion, 0, 0)
        self.stats.usage = self.stats.usage.add(self.usage_of(prompt, done, time.perf_counter() - start, model))
        for choice in completion.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = redact(message["content"], self._secrets)
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


def _tokens(completion: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a reply dict; zeros when the server sent no usage."""
    usage = completion.get("usage") if isinstance(completion, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def as_namespace(value: Any) -> Any:
    """A reply dict as attribute access (`reply.choices[0].message.content`), for callers that expect
    the SDK's objects (the image_caption operator)."""
    from types import SimpleNamespace

    if isinstance(value, dict):
        return SimpleNamespace(**{k: as_namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return [as_namespace(v) for v in value]
    return value


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "reply"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# The teacher
# --------------------------------------------------------------------------------------------------
class CaptionClient:
    """What `image_caption`'s VLM backend calls: `await client(messages, model=..., max_tokens=...,
    temperature=...)` → a chat completion. It rides on the teacher's slots, limiter and retries, and
    its tokens count in the teacher's run totals."""

    def __init__(self, chat: ChatClient) -> None:
        self._chat = chat
        self.model_name = chat.model

    async def __call__(self, messages: list[dict[str, Any]], model: Optional[str] = None, **params: Any) -> Any:
        if not self._chat.vision:  # the operator falls back to its template caption
            from operators.base import BackendUnavailable

            raise BackendUnavailable(f"image_caption/vlm: the teacher {self.model_name} takes no images "
                                     f"(text-only mode)")
        return await self._chat.complete_raw(messages, model=model, **params)


class OpenAITeacher:
    """Implements `generation.teachers.base.Teacher` over an OpenAI-compatible endpoint."""

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
        from generation.teachers.judge import judge_dialogue

        return await judge_dialogue(self.chat, trajectory, sample, model=self.cfg.judge_model)

    async def preflight(self) -> None:
        await self.chat.preflight()

    async def aclose(self) -> None:
        try:
            await self.chat.aclose()
        finally:
            if self.owned_server is not None:
                self.owned_server.stop()
