"""The work folder's durable record of the teacher's Batch API jobs: what makes a killed run resume
without paying for any request twice.

Layout of `<work folder>/teacher-batches/` (one writer: the run holds `.lock`, an flock):
    batches.jsonl   the journal, one event a line, each fsync'd before the step it guards goes on:
                      {"event": "intent", "local": L, "file": F, "ids": [...], "t": T}  input uploaded, before
                                                                                      `batches.create`
                      {"event": "created", "local": L, "batch": B}     after `batches.create` returned B
                      {"event": "done", "local": L, "batch": B, "status": S}  results stored (or none to store)
    results.jsonl   one line per answered request, as the provider's output/error files give them
                    ({"custom_id", "response": {"status_code", "body"}} or {"custom_id", "error": ...}),
                    appended and fsync'd before the batch's "done" event.

Why this order: a batch is open from its intent until its "done". A run killed after the intent but
before "created" does not know whether the provider made the batch; the resumed run looks for it by its
metadata (`mmat_batch: L`) and creates it only when it is not there, from the same uploaded file. A run
killed after "created" polls the batch id. A run killed after the results were stored finds each
request's answer here by its `custom_id` (a hash of the request body): a resumed sample asks the same
request and gets the stored answer instead of a new submission. A torn last line (killed mid-write) is
skipped on reading; its batch has no "done", so it is collected again.

The results are indexed by offset, not held in memory: a line with a base64 image in its request is
never stored (only answers are), and an answer is read back once, when its sample asks for it.
"""
from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from generation.errors import MmatError

JOURNAL = "batches.jsonl"
RESULTS = "results.jsonl"
LOCK = ".lock"


class BatchFolderBusy(MmatError):
    """Another live run holds this batch folder (one writer per folder)."""


@dataclass
class OpenBatch:
    """A batch between its intent and its "done": its request ids and, once known, the provider's id."""

    local: str
    file_id: str
    ids: list[str]
    t: float
    batch_id: Optional[str] = None


@dataclass
class BatchStore:
    """The journal and the results of one run's batches, in `folder`. Construct with `open_store`."""

    folder: Path
    open: dict[str, OpenBatch] = field(default_factory=dict)  # by local id
    done: int = 0  # batches finished over the folder's whole history
    _index: dict[str, int] = field(default_factory=dict)  # custom_id -> offset of its line in results.jsonl
    _lock_fd: Optional[int] = None
    _results: Any = None  # binary append handle
    _journal: Any = None

    # -- reading what a killed run left ----------------------------------------------------------
    def _load(self) -> None:
        for event in _lines(self.folder / JOURNAL):
            kind, local = event.get("event"), event.get("local")
            if kind == "intent":
                self.open[local] = OpenBatch(local, event["file"], list(event["ids"]), float(event.get("t", 0)))
            elif kind == "created" and local in self.open:
                self.open[local].batch_id = event["batch"]
            elif kind == "done":
                self.open.pop(local, None)
                self.done += 1
        path = self.folder / RESULTS
        if path.exists():
            with open(path, "rb") as handle:
                offset = 0
                for raw in handle:
                    if raw.endswith(b"\n"):
                        cid = _custom_id_of(raw)
                        if cid is not None:
                            self._index.setdefault(cid, offset)
                    offset += len(raw)
        for name in (JOURNAL, RESULTS):
            _truncate_torn_tail(self.folder / name)

    # -- queries ---------------------------------------------------------------------------------
    def result(self, custom_id: str) -> Optional[dict[str, Any]]:
        """The stored output/error line of `custom_id`, or None."""
        offset = self._index.get(custom_id)
        if offset is None:
            return None
        with open(self.folder / RESULTS, "rb") as handle:
            handle.seek(offset)
            return json.loads(handle.readline())

    def has_result(self, custom_id: str) -> bool:
        return custom_id in self._index

    @property
    def results(self) -> int:
        return len(self._index)

    def open_ids(self) -> dict[str, str]:
        """custom_id -> local id of the open batch it was submitted in."""
        return {cid: batch.local for batch in self.open.values() for cid in batch.ids}

    # -- writing ---------------------------------------------------------------------------------
    def intent(self, local: str, file_id: str, ids: list[str]) -> OpenBatch:
        """Durable before `batches.create` is called."""
        batch = OpenBatch(local, file_id, list(ids), time.time())
        self._append_event({"event": "intent", "local": local, "file": file_id, "ids": batch.ids, "t": batch.t})
        self.open[local] = batch
        return batch

    def created(self, local: str, batch_id: str) -> None:
        self._append_event({"event": "created", "local": local, "batch": batch_id})
        self.open[local].batch_id = batch_id

    def store_results(self, lines: Iterable[dict[str, Any]], batch_id: str) -> int:
        """Append the answered lines (one fsync for all of them); returns how many were new."""
        if self._results is None:
            self._results = open(self.folder / RESULTS, "ab")
        offset = self._results.seek(0, os.SEEK_END)
        new = 0
        chunks: list[bytes] = []
        for line in lines:
            cid = line.get("custom_id")
            if not isinstance(cid, str) or cid in self._index:
                continue
            raw = json.dumps({**line, "batch": batch_id}, separators=(",", ":")).encode() + b"\n"
            chunks.append(raw)
            self._index[cid] = offset
            offset += len(raw)
            new += 1
        if chunks:
            self._results.write(b"".join(chunks))
            self._results.flush()
            os.fsync(self._results.fileno())
        return new

    def finish(self, local: str, status: str) -> None:
        batch = self.open.pop(local, None)
        self._append_event({"event": "done", "local": local, "batch": batch.batch_id if batch else None,
                            "status": status})
        self.done += 1

    def _append_event(self, event: dict[str, Any]) -> None:
        if self._journal is None:
            self._journal = open(self.folder / JOURNAL, "ab")
        self._journal.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def close(self) -> None:
        for handle in (self._results, self._journal):
            if handle is not None:
                handle.close()
        self._results = self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


def open_store(folder: Path) -> BatchStore:
    """Lock `folder` (raises `BatchFolderBusy` when a live run holds it) and read what is there."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise BatchFolderBusy(f"{folder} is used by another running `mmat generate` (teacher.batch runs one "
                                  f"process per work folder: runner.processes 1, no --num-shards)") from None
        raise
    store = BatchStore(folder=folder, _lock_fd=fd)
    store._load()
    return store


def _lines(path: Path) -> Iterable[dict[str, Any]]:
    """The complete JSON lines of `path` (a torn last line, from a kill mid-write, is skipped)."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                yield json.loads(raw)
            except ValueError:
                continue


def _custom_id_of(raw: bytes) -> Optional[str]:
    try:
        value = json.loads(raw).get("custom_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _truncate_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a kill mid-write), so the next append starts a fresh line."""
    if not path.exists():
        return
    size = path.stat().st_size
    with open(path, "rb+") as handle:
        step = 65536
        end = size
        while end > 0:
            start = max(0, end - step)
            handle.seek(start)
            chunk = handle.read(end - start)
            if end == size and chunk.endswith(b"\n"):
                return
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                return
            end = start
        handle.truncate(0)
