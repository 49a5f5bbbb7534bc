"""Run logging: a structured JSON-lines log file per run, plus concise console lines.

Secrets are scrubbed by a filter on the root logger, so no handler (ours or a library's) can write a
key or a token to the console or the file.

Records passed `extra={"data": {...}}` keep those fields as JSON in the file (progress: samples/s,
ETA, tokens, USD; quarantines: id, stage, error type, message). The per-sample and periodic loggers
(`mmat.samples`, `mmat.progress`) write to the file only: the console has the progress bar.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            payload["data"] = data
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # already rendered (and redacted) by generation.redact
            payload["exception"] = record.exc_text
        text = json.dumps(payload, ensure_ascii=False, default=str)
        from generation.redact import redact

        return redact(text)  # `data` fields too


FILE_ONLY_LOGGERS = ("mmat.samples", "mmat.progress")


def _console_filter(record: logging.LogRecord) -> bool:
    return not record.name.startswith(FILE_ONLY_LOGGERS)


_installed: dict[str, logging.Handler] = {}


def setup_console_logging(quiet: bool = False) -> None:
    """One console handler on the `mmat` logger (INFO, or WARNING with --quiet)."""
    root = logging.getLogger("mmat")
    root.setLevel(logging.INFO)
    handler = _installed.get("console")
    if handler is None:
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, show_time=False, markup=False)
        handler.addFilter(_console_filter)
        root.addHandler(handler)
        _installed["console"] = handler
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    _install_redaction()


def setup_run_logging(log_path: Path, quiet: bool = False) -> None:
    """Console lines plus a JSON-lines file (`run.log` in the work folder) that keeps everything."""
    setup_console_logging(quiet)
    root = logging.getLogger("mmat")
    old = _installed.pop("file", None)
    if old is not None:
        root.removeHandler(old)
        old.close()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(JsonLineFormatter())
    handler.setLevel(logging.DEBUG)
    root.addHandler(handler)
    _installed["file"] = handler


def _install_redaction() -> None:
    from generation.redact import install_redaction

    install_redaction()
