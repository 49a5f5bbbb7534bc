"""Durable per-sample progress, so `kill -9` at any moment loses at most the samples in flight.

Layout of a work folder:
    rows-{worker}.jsonl     one line per finished sample (its RR and ORR rows without image bytes),
                            appended and fsync'd before the sample counts as done
    quarantine.jsonl        one line per quarantined sample: id, stage, error type, message
    blobs/ab/<sha256>       image bytes, content-addressed, written atomically (shared by RR and ORR)

A torn last line (the process died mid-write) is ignored on read; the sample is simply redone.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional


def _append_line(path: Path, record: dict[str, Any]) -> None:
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete, parseable line; a torn tail from a crash is skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


@dataclass
class QuarantineRecord:
    id: str
    stage: str
    error_type: str
    message: str
    source: str = ""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        return sha

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()


class Checkpoint:
    """The work folder of one run (one worker of a sharded run writes its own rows file)."""

    def __init__(self, work_dir: Path, worker: str = "0") -> None:
        self.dir = Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows_path = self.dir / f"rows-{worker}.jsonl"
        self.quarantine_path = self.dir / "quarantine.jsonl"
        self.blobs = BlobStore(self.dir / "blobs")
        self._repair_tail(self.rows_path)
        self._repair_tail(self.quarantine_path)

    @staticmethod
    def _repair_tail(path: Path) -> None:
        """Cut a torn last line so the next append starts on a fresh line."""
        if not path.exists() or path.stat().st_size == 0:
            return
        with open(path, "rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) == b"\n":
                return
            data = path.read_bytes()
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())

    # -- finished samples -------------------------------------------------------------------------
    def finished(self) -> Iterator[dict[str, Any]]:
        """Finished records, each id once (the first durable copy wins)."""
        seen: set[str] = set()
        for record in read_jsonl(self.rows_path):
            if record["id"] not in seen:
                seen.add(record["id"])
                yield record

    def finished_ids(self) -> set[str]:
        return {r["id"] for r in read_jsonl(self.rows_path)}

    def add_finished(self, sample_id: str, source: str, split: str, rows: dict[str, dict[str, Any]]) -> None:
        """Store image bytes as blobs, then make the sample durable with one fsync'd line."""
        stored: dict[str, Any] = {}
        image_shas: Optional[list[str]] = None
        for fmt, row in rows.items():
            if image_shas is None:
                image_shas = [self.blobs.put(img["bytes"]) for img in row["images"]]
            stored[fmt] = {k: v for k, v in row.items() if k != "images"}
        _append_line(self.rows_path, {"id": sample_id, "source": source, "split": split,
                                      "images": image_shas or [], "rows": stored})

    def materialise(self, record: dict[str, Any], fmt: str) -> dict[str, Any]:
        """A stored record back into a full row with its image bytes."""
        row = dict(record["rows"][fmt])
        row["images"] = [{"bytes": self.blobs.get(sha), "path": None} for sha in record["images"]]
        return row

    # -- quarantine --------------------------------------------------------------------------------
    def quarantine(self, record: QuarantineRecord) -> None:
        _append_line(self.quarantine_path, record.__dict__)

    def quarantined(self) -> dict[str, QuarantineRecord]:
        """The latest record per id."""
        return {r["id"]: QuarantineRecord(**r) for r in read_jsonl(self.quarantine_path)}

    def release_quarantined(self, ids: set[str]) -> None:
        """Forget these quarantine records (for `mmat retry`); rewritten atomically."""
        keep = [r for r in read_jsonl(self.quarantine_path) if r["id"] not in ids]
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for r in keep:
                fh.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.quarantine_path)
