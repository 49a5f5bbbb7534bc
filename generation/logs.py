"""Run logging: a structured JSON-lines log file per run, plus concise console lines.

Secrets are scrubbed by a filter on the root logger, so no handler (ours or a library's) can write a
key or a token to the console or the file.

Records passed `extra={"data": {...}}` keep those fields as JSON in the file (progress: samples/s,
ETA, tokens, USD; quarantines: id, stage, error type, message). The per-sample and periodic loggers
(`mmat.samples`, `mmat.progress`) write to the file only: the console has the progress bar.

`--quiet` means the console shows mmat's warnings and errors only: `quiet_third_party` also silences
what other libraries print on their own (Python warnings, RapidOCR's and other libraries' log lines
below ERROR, the progress bars of transformers, huggingface_hub, datasets and tqdm), in this process
and, through environment variables, in the processes it starts.
"""
from __future__ import annotations

import json
import logging
import time
import os
import sys
import warnings
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

        from rich.console import Console

        # stderr: stdout carries data (`mmat show`, summaries) that a pipe may read
        handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False, markup=False)
        handler.addFilter(_console_filter)
        root.addHandler(handler)
        _installed["console"] = handler
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    if quiet:
        quiet_third_party()
    _install_redaction()


# Libraries that log (or print bars) on their own; their records below ERROR are dropped under --quiet.
THIRD_PARTY_LOGGERS = ("RapidOCR", "rapidocr", "ppocr", "paddle", "paddlex", "deepface", "transformers",
                       "datasets", "huggingface_hub", "httpx", "urllib3", "onnxruntime", "PIL", "ray",
                       "xllamacpp", "ddgs", "primp", "matplotlib")
# Read at import by these libraries (and by the processes a run starts): no bars, errors only.
_QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
              "TRANSFORMERS_VERBOSITY": "error", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
              "TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2", "PYTHONWARNINGS": "ignore"}


# A run's console is the progress bar and mmat's own lines: other libraries' bars ("Loading weights"
# when the RAG model loads, "Generating train split") are off in every run, quiet or not.
# deepface prints its INFO lines itself ("Directory ~/.deepface has been created"), gated by this variable.
_NO_BARS_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1",
                "DEEPFACE_LOG_LEVEL": str(logging.WARNING)}


def no_third_party_bars() -> None:
    """Turn off other libraries' progress bars, in this process and the processes a run starts."""
    for key, value in _NO_BARS_ENV.items():
        os.environ.setdefault(key, value)
    if "transformers" in sys.modules:  # imported already: the variables came too late for it
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def quiet_third_party() -> None:
    """Silence other libraries' warnings and progress bars (see the module docstring). A filter, not a
    level, on their loggers: RapidOCR sets its logger's level itself when an engine is built."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    if logging.lastResort is not None:  # what prints a library's records when nobody handles them
        logging.lastResort.setLevel(logging.ERROR)
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if _errors_only not in logger.filters:
            logger.addFilter(_errors_only)
    no_third_party_bars()
    if "transformers" in sys.modules:  # imported already: the env variables came too late for it
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()


def setup_run_logging(log_path: Path, quiet: bool = False) -> None:
    """Console lines plus a JSON-lines file (`run.log` in the work folder) that keeps everything."""
    setup_console_logging(quiet)
    no_third_party_bars()
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
