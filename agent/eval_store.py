"""Durable answers of `mmat eval`, so a rerun after `kill -9` (or Ctrl-C) asks only what is left.

Guarantee: an answer counts once it is a whole, fsync'd line of `answers.jsonl` in the eval's work
folder (the same append as generation's checkpoint: `generation.checkpoint`); a line torn by a crash
is cut off when the folder is opened again, so that question is simply asked again. A rerun skips
every (model, format, question id) the file already holds, and the report is computed from the file,
so an eval finished over three runs reports the same as one uninterrupted run. A damaged line (invalid
UTF-8, `null`, a list, a cut line in the middle) is skipped with one warning naming the file and line,
and its question is asked again (`generation.checkpoint_lines.read_jsonl`). One live eval per
folder (an flock, dropped by the kernel whatever ends the process); a second one is refused.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any, Iterator

from agent.errors import AgentError
from generation.checkpoint import Checkpoint, _append_line, read_jsonl

ANSWERS_FILE = "answers.jsonl"


def answer_key(record: dict[str, Any]) -> tuple[str, str, str]:
    return (str(record.get("model")), str(record.get("format")), str(record.get("id")))


class AnswerStore:
    def __init__(self, work_dir: Path) -> None:
        import fcntl

        self.dir = Path(work_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AgentError(f"cannot write the eval work folder {self.dir}: {exc.strerror or exc} "
                             f"(pass --work-dir)") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise AgentError(f"another mmat eval is using {self.dir}; wait for it (or stop it), then rerun "
                                 f"to resume, or pass another --work-dir") from None
            raise
        self.path = self.dir / ANSWERS_FILE
        Checkpoint._repair_tail(self.path)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every durable answer, first copy of a key only."""
        seen: set[tuple[str, str, str]] = set()
        for record in read_jsonl(self.path, "those questions are asked again"):
            key = answer_key(record)
            if key not in seen:
                seen.add(key)
                yield record

    def answered(self, model: str) -> set[tuple[str, str]]:
        """(format, id) of every answer of `model`."""
        return {(str(r.get("format")), str(r.get("id"))) for r in self.records() if r.get("model") == model}

    def add(self, record: dict[str, Any]) -> None:
        _append_line(self.path, record)

    def close(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> "AnswerStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
