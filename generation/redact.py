"""Secrets never reach shards, cards, logs or error text.

`redact_text` replaces every known secret (API keys and Hub tokens from the environment, plus any
registered at run time) with `***`; `install_redaction` puts a filter on every logging handler so
no log line can carry one.
"""
from __future__ import annotations

import logging
import os
import re

SECRET_ENV_VARS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")
_registered: set[str] = set()
# Shapes of common secrets, caught even when we were never told the value.
_PATTERNS = (re.compile(r"sk-[A-Za-z0-9_\-]{16,}"), re.compile(r"hf_[A-Za-z0-9]{20,}"))


def register_secret(value: str | None) -> None:
    if value and len(value) >= 6:
        _registered.add(value)


def known_secrets() -> set[str]:
    values = {os.environ.get(name, "") for name in SECRET_ENV_VARS}
    return {v for v in values | _registered if v and len(v) >= 6}


def redact_text(text: str) -> str:
    for secret in sorted(known_secrets(), key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _PATTERNS:
        text = pattern.sub("***", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            if redact_text(str(exc)) != str(exc):
                record.exc_info = None
                record.msg = f"{clean} ({type(exc).__name__}: {redact_text(str(exc))})"
                record.args = None
        return True


_FILTER = RedactingFilter()


def install_redaction() -> None:
    """Attach the filter to every handler of the root and `mmat` loggers (idempotent)."""
    for logger in (logging.getLogger(), logging.getLogger("mmat")):
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
