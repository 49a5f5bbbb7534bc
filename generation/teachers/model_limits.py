"""What a teacher model cannot take — a prompt beyond its context, or images — read from the server's
errors, and the rule that makes a prompt fit.

A server's refusal is never an opaque 400 in a quarantine record:

- **Context.** llama.cpp (`exceed_context_size_error` with `n_prompt_tokens`/`n_ctx`), OpenAI
  (`context_length_exceeded`) and vLLM ("maximum context length is M tokens…") all say how long the
  prompt was and what fits. The rule (`OpenAITeacher` applies it): replace the oldest steps'
  operator/RAG results with a short marker, oldest first, about as many as the overflow needs, and
  ask again; when nothing is left to shorten, the sample is quarantined with "prompt exceeds the
  model context (N > M tokens)". The dialogue's own rows keep every result in full: only what the
  teacher is shown is shortened.
- **Images.** A text-only model behind llama.cpp ("image input is not supported"), OpenAI ("image_url
  is only supported by certain models") or vLLM ("not a multimodal model") refuses image parts;
  with `teacher.vision: auto` the teacher then switches to text-only mode once for the whole run.
"""
from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from generation.schema import Step
from generation.teachers.base import TeacherError
from generation.teachers.http_errors import error_body, error_message, status_of

OMITTED_OBSERVATION = "[result omitted: the prompt did not fit the model's context]"

_MAX_CONTEXT = re.compile(r"maximum context length is (\d+)", re.I)
_PROMPT_LEN = re.compile(r"(\d+) in the messages|resulted in (\d+) tokens|request \((\d+) tokens\)|prompt contains (\d+)",
                         re.I)
_REQUESTED = re.compile(r"requested (\d+) tokens", re.I)  # vLLM/OpenAI: prompt + the reply's max_tokens
_AVAILABLE = re.compile(r"available context size \((\d+) tokens\)", re.I)
_IMAGE_REFUSALS = ("image input is not supported", "image_url is only supported", "not a multimodal model",
                   "does not support image", "doesn't support image", "images are not supported",
                   "images not supported", "does not support vision", "vision is not supported")


class ContextOverflow(TeacherError):
    """The prompt is longer than the model's context. `prompt_tokens`/`context` are None when the
    server did not say; `requested` is prompt + the reply's `max_tokens` when the server counts both
    (vLLM, OpenAI), None when it counts the prompt alone (llama.cpp)."""

    def __init__(self, prompt_tokens: Optional[int], context: Optional[int], requested: Optional[int] = None) -> None:
        self.prompt_tokens = prompt_tokens
        self.context = context
        self.requested = requested
        m = "?" if context is None else str(context)
        if requested is not None and prompt_tokens is not None and requested > prompt_tokens:
            text = f"{requested} > {m} tokens, {requested - prompt_tokens} of them for the reply"
        else:
            text = f"{'?' if prompt_tokens is None else prompt_tokens} > {m} tokens"
        super().__init__(f"prompt exceeds the model context ({text})")

    @property
    def excess(self) -> Optional[int]:
        """Tokens to shed, when the server said enough to tell."""
        total = self.requested if self.requested is not None else self.prompt_tokens
        if total is None or self.context is None:
            return None
        return total - self.context


def context_overflow(exc: BaseException) -> Optional[ContextOverflow]:
    """The overflow a 400 reports (llama.cpp, OpenAI, vLLM wording), else None."""
    if status_of(exc) not in (400, 413, 422):
        return None
    error = error_body(exc)
    message = error_message(exc)
    code = str(error.get("code") or getattr(exc, "code", None) or "")
    kind = str(error.get("type") or "")
    known = (kind == "exceed_context_size_error" or code == "context_length_exceeded"
             or _MAX_CONTEXT.search(message) or _AVAILABLE.search(message))
    if not known:
        return None

    def number(*candidates: Any) -> Optional[int]:
        for value in candidates:
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                return int(value)
        return None

    prompt_match = _PROMPT_LEN.search(message)
    requested_match = _REQUESTED.search(message)
    context_match = _MAX_CONTEXT.search(message) or _AVAILABLE.search(message)
    prompt = number(error.get("n_prompt_tokens"),
                    next((g for g in prompt_match.groups() if g), None) if prompt_match else None)
    context = number(error.get("n_ctx"), context_match.group(1) if context_match else None)
    requested = number(requested_match.group(1) if requested_match else None)
    return ContextOverflow(prompt if prompt is not None else requested, context, requested)


def refuses_images(exc: BaseException) -> bool:
    """Did the server refuse the request because it cannot take images?"""
    status = status_of(exc)
    if status is None or status < 400:
        return False
    message = error_message(exc).lower()
    return any(phrase in message for phrase in _IMAGE_REFUSALS)


def has_images(messages: Sequence[dict[str, Any]]) -> bool:
    return any(isinstance(m.get("content"), list) and any(b.get("type") == "image_url" for b in m["content"])
               for m in messages)


def without_images(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same messages with every image part removed; a content list left with text only becomes a
    plain string (what text-only servers expect)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            texts = [block for block in content if block.get("type") != "image_url"]
            if all(block.get("type") == "text" for block in texts):
                content = "\n".join(block.get("text", "") for block in texts)
            else:
                content = texts
            message = {**message, "content": content}
        out.append(message)
    return out


def count_observations(steps: Sequence[Step]) -> int:
    return sum(len(step.observations) for step in steps)


def omit_observations(steps: Sequence[Step], count: int) -> list[Step]:
    """`steps` with their first `count` observations (oldest first) replaced by a short marker."""
    out: list[Step] = []
    left = count
    for step in steps:
        if left > 0 and step.observations:
            observations = []
            for obs in step.observations:
                if left > 0:
                    obs = obs.model_copy(update={"text": OMITTED_OBSERVATION})
                    left -= 1
                observations.append(obs)
            step = step.model_copy(update={"observations": observations})
        out.append(step)
    return out


def more_to_omit(steps: Sequence[Step], omitted: int, overflow: ContextOverflow, prompt_chars: int,
                 shown_chars: int) -> int:
    """How many more observations to omit so the prompt probably fits: enough of their characters
    to cover the overflow at this prompt's characters per token (at least one; the server checks)."""
    remaining = [obs for step in steps for obs in step.observations][omitted:]
    if not remaining:
        return 0
    n, excess = overflow.prompt_tokens, overflow.excess
    if not n or not excess or excess <= 0 or prompt_chars <= 0:
        return 1
    needed_chars = excess * prompt_chars / n
    freed, count = 0.0, 0
    for obs in remaining:
        freed += max(0, min(len(obs.text), shown_chars) - len(OMITTED_OBSERVATION))
        count += 1
        if freed >= needed_chars:
            break
    return count
