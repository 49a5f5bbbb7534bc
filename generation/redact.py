"""Secrets never reach shards, cards, logs or error text: the one place secrets are masked.

- `redact(text, secrets)` replaces the given secrets, every known one (API keys and Hub tokens from
  the environment, plus any registered at run time with `register_secret`) and anything shaped like
  a key (`sk-…`, `hf_…`, `api_…`, `Bearer …`, including the half-masked keys providers quote back,
  e.g. `Incorrect API key provided: sk-abc***xyz`) with `***`, and the credentials of any URL
  (`http://user:password@host` → `http://***@host`). For logs, error lines, what a push sends to the
  Hub. `redact_text(text)` is `redact(text)`.
- `mask_known(text, secrets)` masks only the given and the known secrets: for rows (the checkpoint's
  lines), whose text may hold key-shaped strings that are data, not keys.
- `redact_fields(value)` is `redact` over a JSON-like value, with the values of secret-named keys
  (`api_key`, `token`, `password`, ...) masked whatever they look like: for the card's run stats.
- `install_redaction()` scrubs every log record of the process: it wraps the log-record factory (so
  records of every logger are clean whatever handler prints them) and also puts `RedactingFilter` on
  the root and `mmat` handlers.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable, Optional

MASK = "***"
SECRET_ENV_VARS = ("OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN",
                   "HUGGINGFACE_TOKEN", "AZURE_OPENAI_API_KEY")
_MIN_SECRET_LEN = 6  # shorter "secrets" (e.g. "EMPTY") would shred ordinary text
_registered: set[str] = set()
# Shapes of common secrets, caught even when we were never told the value.
_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-*.]{5,}[A-Za-z0-9_\-*]"),            # OpenAI keys (sk-…, sk-proj-…), masked too
    re.compile(r"\bhf_[A-Za-z0-9]{8,}"),                                 # Hugging Face tokens
    re.compile(r"\bapi_[A-Za-z0-9]{16,}\b"),                            # api_… keys
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9_\-.~+/=*]{5,}[A-Za-z0-9_\-~+/=*]"),  # Authorization header values
)
# Keys whose value is a secret whatever it looks like.
_SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|authori[sz]ation|credential|^token$|_token$|hf_token|"
                         r"bearer)", re.I)
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/@]+@")  # scheme://user[:password]@


def register_secret(value: Optional[str]) -> None:
    """Remember a secret that did not come from a standard env var (e.g. `teacher.api_key_env`)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered.add(value)


def known_secrets() -> set[str]:
    values = {os.environ.get(name, "") for name in SECRET_ENV_VARS}
    return {v for v in values | _registered if v and len(v) >= _MIN_SECRET_LEN}


def mask_known(text: str, secrets: Iterable[Optional[str]] = ()) -> str:
    """`text` with the given secrets and every known secret masked (no shapes: see the module docstring)."""
    if not text:
        return text
    values = {s for s in secrets if s and len(s) >= _MIN_SECRET_LEN} | known_secrets()
    for secret in sorted(values, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact(text: str, secrets: Iterable[Optional[str]] = ()) -> str:
    """`text` with the given secrets, every known secret and every key-shaped string masked."""
    if not text:
        return text
    text = mask_known(text, secrets)
    for pattern in _PATTERNS:
        text = pattern.sub(MASK, text)
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + "@", text)


def redact_text(text: str) -> str:
    return redact(text)


def redact_fields(value: Any) -> Any:
    """`value` (dicts, lists, strings, numbers) with secret-named keys' values masked and strings redacted."""
    if isinstance(value, dict):
        return {k: (MASK if _SECRET_KEY.search(str(k)) else redact_fields(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_fields(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact a log record in place: its message, its traceback and its stack."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: keep what we can
        message = str(record.msg)
    clean = redact(message)
    if clean != message or record.args:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
        # Formatters re-render exc_info only when exc_text is empty; drop it so nobody can.
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A handler/logger filter that scrubs each record it sees (it never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub_record(record)
        return True


_FILTER = RedactingFilter()
_factory_state: dict[str, object] = {}


def _install_record_factory() -> None:
    if "factory" in _factory_state:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        return scrub_record(previous(*args, **kwargs))

    _factory_state.update(factory=factory, previous=previous)
    logging.setLogRecordFactory(factory)


def install_redaction() -> None:
    """Scrub every log record from now on, in every logger; idempotent."""
    _install_record_factory()
    for logger in (logging.getLogger(), logging.getLogger("mmat")):
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)


def uninstall_redaction() -> None:
    """Undo the record-factory part of `install_redaction` (tests)."""
    if _factory_state and logging.getLogRecordFactory() is _factory_state["factory"]:
        logging.setLogRecordFactory(_factory_state["previous"])  # type: ignore[arg-type]
    _factory_state.clear()
