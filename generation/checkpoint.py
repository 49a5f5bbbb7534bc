"""Durable per-sample progress, so `kill -9` at any moment loses at most the samples in flight.

Layout of a work folder (one per dataset folder; the workers of a sharded run share it):
    rows-{worker}.jsonl     one line per finished sample (its RR and ORR rows without image bytes),
                            appended and fsync'd before the sample counts as done
    quarantine.jsonl        one line per quarantined sample: id, stage, error type, message
                            (worker `i` of a sharded run writes `quarantine-{worker}.jsonl`)
    blobs/ab/<sha256>       image bytes, content-addressed, written atomically (shared by RR and ORR)
    .lock-{worker}          held (flock) while a run of that worker is alive
    .lock-layout-{N}        held shared by every live worker of a `--num-shards N` run

Every file has exactly one writer (its worker), so appends never interleave; readers take the union
of all workers' files, so a change of `--num-shards` never redoes finished work. A torn last line
(the process died mid-write) is ignored on read and cut off when the writer reopens the file; the
sample is simply redone. An append that fails (a full disk) is cut back off before the error goes up,
so a line is either whole or absent. A sample that is both finished and quarantined (a retry that
worked) counts as finished.

One work folder, one `--num-shards`: the workers of one sharded run split the ids between them, but a
run with another `--num-shards` (a single-worker run included) would split them differently and
generate the same samples again. So each live worker holds its N's layout lock shared and a run
whose N differs from a live one is refused (`CheckpointLocked`); after it ends, any N may resume
the folder.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from generation.errors import MmatError
from generation.redact import mask_known

_ID_PREFIX = re.compile(r'^\{"id":("(?:[^"\\]|\\.)*")')
_REF_PREFIX = re.compile(r'^\{"id":("(?:[^"\\]|\\.)*"),"source":("(?:[^"\\]|\\.)*"),"split":("(?:[^"\\]|\\.)*"),')


class CheckpointLocked(MmatError, RuntimeError):
    """Another live process is already running this worker on this work folder."""


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """One whole, fsync'd line, or (on a write or fsync error, e.g. a full disk) none at all."""
    # Known secrets (API keys, Hub tokens from the environment) never reach a stored line.
    data = (mask_known(json.dumps(record, ensure_ascii=False, separators=(",", ":"))) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def _complete_lines(path: Path) -> Iterator[str]:
    """Every complete line of a checkpoint file; a torn tail from a crash ends the file."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            yield line


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete, parseable line; a torn tail from a crash is skipped."""
    for line in _complete_lines(path):
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue


def _read_ids(path: Path) -> Iterator[str]:
    """The ids of a rows file without parsing whole rows (every line starts with `{"id":"…"`)."""
    for line in _complete_lines(path):
        match = _ID_PREFIX.match(line)
        try:
            yield json.loads(match.group(1)) if match else json.loads(line)["id"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue


def _replace_atomically(path: Path, data: bytes, prefix: str) -> None:
    """`path` holds `data` (fsync'd) or is left as it was; a temp file never survives an error."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, lines: Iterable[dict[str, Any]], prefix: str) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in lines)
    _replace_atomically(path, text.encode("utf-8"), prefix)


@dataclass(frozen=True)
class RecordRef:
    """Where one finished record lives, so shards can be written without holding every row in memory."""

    id: str
    source: str
    split: str
    path: Path
    offset: int


@dataclass
class QuarantineRecord:
    id: str
    stage: str
    error_type: str
    message: str
    source: str = ""


class BlobStore:
    def __init__(self, root: Path, tmp_prefix: str = ".tmp-") -> None:
        self.root = root
        self.tmp_prefix = tmp_prefix

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _replace_atomically(target, data, self.tmp_prefix)
        return sha

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()


class Checkpoint:
    """The work folder of one run; one worker of a sharded run writes its own rows/quarantine files.

    `lock=True` (what the runner uses) holds an exclusive lock for this worker while the object lives,
    so two runs of the same worker cannot append to the same files; the kernel drops it when the
    process dies, `kill -9` included. `num_shards` (with `lock`) also holds the layout lock of that
    `--num-shards` (see the module docstring). `readonly=True` (the dry run) creates, repairs and
    locks nothing.
    """

    def __init__(self, work_dir: Path, worker: str = "0", *, lock: bool = False, readonly: bool = False,
                 num_shards: Optional[int] = None) -> None:
        self.dir = Path(work_dir)
        self.worker = worker
        self.readonly = readonly
        self.rows_path = self.dir / f"rows-{worker}.jsonl"
        self.quarantine_path = self.dir / ("quarantine.jsonl" if worker == "0" else f"quarantine-{worker}.jsonl")
        self.tmp_prefix = f".tmp-{worker}-"
        self.blobs = BlobStore(self.dir / "blobs", self.tmp_prefix)
        self._lock_fd: Optional[int] = None
        self._layout_fd: Optional[int] = None
        if readonly:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        if lock:
            self._acquire_lock()
            if num_shards is not None:
                try:
                    self._acquire_layout_lock(num_shards)
                except BaseException:
                    self.close()
                    raise
            self._remove_stale_temps()
        self._repair_tail(self.rows_path)
        self._repair_tail(self.quarantine_path)

    # -- lifecycle ---------------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        import fcntl

        fd = os.open(self.dir / f".lock-{self.worker}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise CheckpointLocked(
                    f"another run of worker {self.worker} is using the work folder {self.dir}; wait for it to "
                    f"finish (or stop it), then rerun the same command to resume") from None
            raise
        self._lock_fd = fd

    def _acquire_layout_lock(self, num_shards: int) -> None:
        """Share the lock of `num_shards`; refuse when a live run with another `--num-shards` holds its own.

        Each run takes its own lock before looking at the others', so of two runs starting at once at
        least one sees the other (both may refuse; neither ever runs beside the other)."""
        import fcntl

        fd = os.open(self.dir / f".lock-layout-{num_shards}", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)  # blocks only while another run probes it (a moment)
        self._layout_fd = fd
        for other in sorted(self.dir.glob(".lock-layout-*")):
            n = other.name.rsplit("-", 1)[-1]
            if n == str(num_shards) or not n.isdigit():
                continue
            probe = os.open(other, os.O_RDWR)
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                other_run = "a single-worker run" if n == "1" else f"a run with --num-shards {n}"
                this_run = "this single-worker run" if num_shards == 1 else f"this run (--num-shards {num_shards})"
                raise CheckpointLocked(
                    f"{other_run} is using the work folder {self.dir}; {this_run} would generate the same "
                    f"samples again: wait for it to finish (or stop it), or run with --num-shards {n}") from None
            finally:
                os.close(probe)  # closing drops the probe's lock

    def close(self) -> None:
        """Release the worker and layout locks (a no-op without them)."""
        for name in ("_lock_fd", "_layout_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _remove_stale_temps(self) -> None:
        """Half-written temp files this worker left behind when it was killed (we hold its lock)."""
        for path in self.dir.glob(f"{self.tmp_prefix}*"):
            path.unlink(missing_ok=True)
        blobs = self.dir / "blobs"
        if blobs.is_dir():
            for sub in blobs.iterdir():
                if sub.is_dir():
                    for path in sub.glob(f"{self.tmp_prefix}*"):
                        path.unlink(missing_ok=True)

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
    def rows_files(self) -> list[Path]:
        """Every worker's rows file, this worker's first."""
        others = sorted(p for p in self.dir.glob("rows-*.jsonl") if p != self.rows_path)
        return ([self.rows_path] if self.rows_path.exists() else []) + others

    def finished(self) -> Iterator[dict[str, Any]]:
        """Finished records of all workers, each id once (the first durable copy wins)."""
        seen: set[str] = set()
        for path in self.rows_files():
            for record in read_jsonl(path):
                if record["id"] not in seen:
                    seen.add(record["id"])
                    yield record

    def finished_ids(self) -> set[str]:
        return {sample_id for path in self.rows_files() for sample_id in _read_ids(path)}

    def finished_refs(self) -> list[RecordRef]:
        """(id, source, split, file, offset) of every finished record, each id once (first copy wins)."""
        seen: set[str] = set()
        refs: list[RecordRef] = []
        for path in self.rows_files():
            with open(path, "rb") as fh:
                offset = 0
                for raw in fh:
                    start, offset = offset, offset + len(raw)
                    if not raw.endswith(b"\n"):
                        break
                    line = raw.decode("utf-8")
                    match = _REF_PREFIX.match(line)
                    try:
                        if match:
                            sample_id, source, split = (json.loads(g) for g in match.groups())
                        else:
                            record = json.loads(line)
                            sample_id, source, split = record["id"], record["source"], record["split"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue
                    if sample_id not in seen:
                        seen.add(sample_id)
                        refs.append(RecordRef(sample_id, source, split, path, start))
        return refs

    def load(self, ref: RecordRef) -> dict[str, Any]:
        """The full stored record a `RecordRef` points at."""
        with open(ref.path, "rb") as fh:
            fh.seek(ref.offset)
            return json.loads(fh.readline())

    def add_finished(self, sample_id: str, source: str, split: str, rows: dict[str, dict[str, Any]]) -> None:
        """Store image bytes as blobs, then make the sample durable with one fsync'd line.

        Known secrets are masked in the stored line, so no key reaches a shard even if a model or an
        operator repeated one."""
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
    def quarantine_files(self) -> list[Path]:
        files = [p for p in self.dir.glob("quarantine*.jsonl")]
        return sorted(files, key=lambda p: (p != self.quarantine_path, p.name))

    def quarantine(self, record: QuarantineRecord) -> None:
        _append_line(self.quarantine_path, record.__dict__)

    def quarantined(self, finished_ids: Optional[set[str]] = None) -> dict[str, QuarantineRecord]:
        """The latest record per id over all workers, minus ids that finished since (a retry that worked)."""
        done = self.finished_ids() if finished_ids is None else finished_ids
        records: dict[str, QuarantineRecord] = {}
        for path in self.quarantine_files():
            for r in read_jsonl(path):
                if r.get("id") not in done:
                    records[r["id"]] = QuarantineRecord(**r)
        return records

    def release_quarantined(self, ids: set[str]) -> None:
        """Forget these quarantine records in every worker's file; each file rewritten atomically."""
        for path in self.quarantine_files():
            records = list(read_jsonl(path))
            keep = [r for r in records if r.get("id") not in ids]
            if len(keep) != len(records):
                _write_atomic(path, keep, self.tmp_prefix)

    def compact_quarantine(self) -> int:
        """Drop records of ids that finished since and older records of re-quarantined ids; returns
        how many lines went. Only when no other worker runs (`mmat retry`)."""
        done = self.finished_ids()
        dropped = 0
        for path in self.quarantine_files():
            records = list(read_jsonl(path))
            latest: dict[str, dict[str, Any]] = {}
            for r in records:
                if r.get("id") not in done:
                    latest.pop(r["id"], None)
                    latest[r["id"]] = r
            if len(latest) != len(records):
                _write_atomic(path, latest.values(), self.tmp_prefix)
                dropped += len(records) - len(latest)
        return dropped
