"""Credentials never reach rows, logs or error text (generation/redact.py)."""
from __future__ import annotations

import io
import logging

from generation.redact import (
    RedactingFilter,
    install_redaction,
    redact,
    redact_text,
    register_secret,
    uninstall_redaction,
)

KEY = "sk-proj-PLANTEDabcdefghijklmnop0123"


def test_redact_masks_given_known_and_key_shaped_secrets(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_PlantedTokenValue123456")
    assert redact(f"key={KEY}!") == "key=***!"
    assert redact("custom secret abc-DEF-123456", ["abc-DEF-123456"]) == "custom secret ***"
    assert redact("Incorrect API key provided: sk-abc12***********xyz9.") == "Incorrect API key provided: ***."
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload") == "Authorization: ***"
    assert redact("token hf_PlantedTokenValue123456 used") == "token *** used"
    assert redact("risk-averse task-force sk-learn EMPTY") == "risk-averse task-force sk-learn EMPTY"
    register_secret("vllm-secret-key-42")
    assert redact_text("calling with vllm-secret-key-42") == "calling with ***"


def test_log_records_of_every_logger_are_scrubbed_whatever_prints_them():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logger = logging.getLogger("thirdparty.client")  # not ours, no filter on it
    logger.addHandler(handler)
    logger.propagate = False
    install_redaction()
    try:
        logger.warning("request with %s failed", KEY)
        try:
            raise RuntimeError(f"upstream said: bad key {KEY}")
        except RuntimeError:
            logger.exception("retrying")
        logger.warning("stack", stack_info=True)
    finally:
        uninstall_redaction()
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert KEY not in text and "request with *** failed" in text and "upstream said: bad key ***" in text


def test_the_filter_alone_scrubs_a_handler():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("mmat.redact-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("boom %s", KEY, exc_info=ValueError(KEY))
    finally:
        logger.removeHandler(handler)
    assert KEY not in stream.getvalue() and "boom ***" in stream.getvalue()
