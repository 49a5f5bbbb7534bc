"""What goes into a chat request and comes out of one, for every caller of the teacher's endpoint
(the teacher, the judge, the VLM caption operator): an image as a `data:` URL the chat API takes, the
JSON object inside a model's reply, a reply dict read with attribute access, the token counts in a
reply's usage block (cached prompt tokens included, whichever server sent them).
"""
from __future__ import annotations

import base64
import io
import json
import re
from typing import Any, Optional

from pydantic import ValidationError

from operators.images import LoadedImage

_IMAGE_BYTES_LIMIT = 8_000_000
_IMAGE_MAX_SIDE = 2048


_MIME = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
         (b"GIF89a", "image/gif"))


def _sniff(data: bytes) -> Optional[str]:
    for magic, mime in _MIME:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_data_url(image: LoadedImage, max_side: int = _IMAGE_MAX_SIDE, *, as_jpeg: bool = False) -> str:
    """A `data:` URL the chat API accepts: the original bytes when they are PNG/JPEG/GIF/WebP and not
    huge (unless `as_jpeg`), otherwise a JPEG re-encoded at most `max_side` px on its longer side."""
    mime = None if as_jpeg else _sniff(image.data)
    data = image.data
    if mime is None or len(data) > _IMAGE_BYTES_LIMIT:
        picture = image.rgb
        if max(picture.size) > max_side:
            picture = picture.copy()
            picture.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=90)
        data, mime = buffer.getvalue(), "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


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


def as_namespace(value: Any) -> Any:
    """A reply dict as attribute access (`reply.choices[0].message.content`), for callers that expect
    the SDK's objects (the image_caption operator)."""
    from types import SimpleNamespace

    if isinstance(value, dict):
        return SimpleNamespace(**{k: as_namespace(v) for k, v in value.items()})
    if isinstance(value, list):
        return [as_namespace(v) for v in value]
    return value


def validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "reply"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def usage_tokens(completion: Any) -> tuple[int, int, int]:
    """(prompt, cached prompt, completion) tokens of a reply dict; zeros when the server sent no usage.

    Cached: OpenAI's and vLLM's (`--enable-prompt-tokens-details`) and SGLang's
    `usage.prompt_tokens_details.cached_tokens`, else DeepSeek-style `usage.prompt_cache_hit_tokens`,
    else a flat `usage.cached_tokens`, else llama.cpp's `timings.cache_n`; never more than the prompt."""
    usage = completion.get("usage") if isinstance(completion, dict) else None
    if not isinstance(usage, dict):
        return 0, 0, 0
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    if not cached:
        cached = _int(usage.get("prompt_cache_hit_tokens")) or _int(usage.get("cached_tokens"))
    if not cached:
        timings = completion.get("timings")
        cached = _int(timings.get("cache_n")) if isinstance(timings, dict) else 0
    return prompt, min(cached, prompt), _int(usage.get("completion_tokens"))


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0
