"""Prompt-cache accounting the way OpenAI reports it, for the test server and the cost benchmark.

OpenAI caches prompts of 1,024 tokens or more; a request's cached part is the longest prefix, in
128-token steps, that an earlier request (recently) began with. The prefix is everything in order: the
structured-output schema (it prefixes the system message), the tools, then each message and its
content parts, images included, exactly as sent (/work/shared/PROVIDERS.md). This module counts the
same way with a deterministic stand-in tokenizer: text is one token per 4 characters of the running
text (a text that extends another extends its tokens), an image is 765 tokens (a 1024-px image at high
detail; 85 at `detail: low`) identified by its bytes.

    cache = PrefixCache()
    prompt_tokens, cached_tokens = cache.account(payload)   # then the payload's prefixes are cached too
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, Iterator

MIN_PREFIX = 1024
STEP = 128
IMAGE_TOKENS = 765
LOW_DETAIL_IMAGE_TOKENS = 85
CHARS_PER_TOKEN = 4


def prompt_parts(payload: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The request's prompt in the order the cache sees it: ("schema" | "tools" | "mark" | "text", str) and
    ("image", the image_url object). Marks are the role and end-of-message markers the stand-in counts."""
    fmt = payload.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        yield "schema", "<|schema|>" + json.dumps(fmt.get("json_schema"), sort_keys=True)
    if payload.get("tools"):
        yield "tools", "<|tools|>" + json.dumps(payload["tools"], sort_keys=True)
    for message in payload.get("messages") or []:
        yield "mark", f"<|{message.get('role', '')}|>"
        content = message.get("content")
        if isinstance(content, str):
            yield "text", content
            continue
        for block in content or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "image_url":
                yield "image", block.get("image_url") or {}
            else:
                yield "text", str(block.get("text", ""))
        yield "mark", "<|end|>"


def prompt_units(payload: dict[str, Any]) -> Iterator[bytes]:
    """The request's prompt as a stream of token stand-ins (bytes), in the order the cache sees them."""
    pending: list[str] = []

    def text_units() -> Iterator[bytes]:
        text = "".join(pending)
        pending.clear()
        for start in range(0, len(text), CHARS_PER_TOKEN):
            yield text[start:start + CHARS_PER_TOKEN].encode("utf-8", "surrogatepass")

    for kind, part in prompt_parts(payload):
        if kind != "image":
            pending.append(part)
            continue
        yield from text_units()
        digest = hashlib.sha256(str(part.get("url", "")).encode()).digest()[:16]
        count = LOW_DETAIL_IMAGE_TOKENS if part.get("detail") == "low" else IMAGE_TOKENS
        for index in range(count):
            yield digest + index.to_bytes(2, "big")
    yield from text_units()


def prompt_tokens(payload: dict[str, Any]) -> int:
    return sum(1 for _ in prompt_units(payload))


class PrefixCache:
    """The prefixes (at every 128-token step from 1,024 on) of the prompts seen so far, the oldest
    forgotten beyond `max_entries`."""

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.requests = 0

    def account(self, payload: dict[str, Any]) -> tuple[int, int]:
        """(prompt tokens, cached tokens) of this request; its prefixes are cached from now on."""
        digest = hashlib.sha1()
        boundaries: list[tuple[int, bytes]] = []
        count = 0
        for unit in prompt_units(payload):
            digest.update(len(unit).to_bytes(1, "big") + unit)
            count += 1
            if count >= MIN_PREFIX and count % STEP == 0:
                boundaries.append((count, digest.copy().digest()))
        cached = 0
        with self._lock:
            for length, key in boundaries:
                if key in self._seen:
                    cached = length
                    self._seen.move_to_end(key)
                else:
                    self._seen[key] = None
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            self.prompt_tokens += count
            self.cached_tokens += cached
            self.requests += 1
        return count, cached
