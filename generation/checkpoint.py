"""Durable per-sample progress, so `kill -9` at any moment loses at most the samples in flight.

Layout of a work folder (one per dataset folder; the workers of a sharded run share it):
    rows-{worker}.jsonl     one line per finished sample (its RR and ORR rows without image bytes),
                            appended and fsync'd before the sample counts as done (samples finishing
                            together share one write and one fsync: a group commit)
    rows-{worker}.idx       the index of that file, so a resume reads ids without the rows; a cache,
                            never the truth (`generation.checkpoint_index`)
    rows-{worker}.checked   the stamp saying the rows file was read in full and found whole when its
                            writer last closed it (`generation.checkpoint_index`)
    quarantine.jsonl        one line per quarantined sample: id, stage, error type, message
                            (worker `i` of a sharded run writes `quarantine-{worker}.jsonl`)
    source-index/           per source file, the ids of its records and where they are
                            (`generation.sources.record_index`: a cache checked against the file)
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

A line of any of these files that is damaged after it was written (not UTF-8, cut, `null`, a key
added or missing) is skipped with one warning naming the file and line, and its sample is redone
(`generation.checkpoint_lines`); the rows files are checked when the plan is made, before any paid call.

Every file here is written by `generation.atomic` (or appended, fsync'd, as above). The index format
and its check stamp live in `generation.checkpoint_index`, the line shapes in
`generation.checkpoint_lines`; this module holds how the files are written together and locked.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional

from generation.atomic import write_atomic
from generation.checkpoint_index import (IndexEntry, index_line, index_path, index_tail, load_index,  # noqa: F401
                                         stamp_matches, write_stamp)
from generation.checkpoint_lines import Damage, QuarantineRecord, read_jsonl, read_quarantine  # noqa: F401
from generation.errors import MmatError
from generation.redact import mask_known


class CheckpointLocked(MmatError, RuntimeError):
    """Another live process is already running this worker on this work folder."""


def _encode(record: dict[str, Any]) -> bytes:
    # Known secrets (API keys, Hub tokens from the environment) never reach a stored line.
    return (mask_known(json.dumps(record, ensure_ascii=False, separators=(",", ":"))) + "\n").encode("utf-8")


def _append_bytes(path: Path, data: bytes, sync: bool = True) -> int:
    """Append whole lines, fsync'd, or (on a write or fsync error, e.g. a full disk) none of them at
    all. Returns the offset they start at."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)
    return start


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """One whole, fsync'd line, or none at all."""
    _append_bytes(path, _encode(record))


def _replace_atomically(path: Path, data: bytes, prefix: str) -> None:
    """`path` holds `data` durably or is left as it was (`generation.atomic.write_atomic`)."""
    write_atomic(path, data, tmp_prefix=prefix)


def _write_atomic(path: Path, lines: Iterable[dict[str, Any]], prefix: str) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in lines)
    write_atomic(path, text.encode("utf-8"), tmp_prefix=prefix)


def _file_state(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (0, -1, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _has_damage(path: Path, good: int) -> bool:
    """Does the file hold lines besides its `good` records (damaged ones, which a rewrite drops)?"""
    with open(path, "rb") as fh:
        return sum(1 for _ in fh) != good


class RecordRef(NamedTuple):
    """Where one finished record lives, so shards can be written without holding every row in memory
    (a tuple: a resume makes one per finished sample)."""

    id: str
    source: str
    split: str
    path: Path
    offset: int


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
        # (the rows files' states, repaired?, refs) of the last `finished_refs`: one read per change
        self._refs_cache: Optional[tuple[tuple, bool, list[RecordRef]]] = None
        self._checked: dict[Path, tuple[int, int]] = {}  # rows file -> (inode, size) read in full here
        self._wrote_all = not readonly and not self.rows_path.exists()  # every line of it is this process's
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
        """Stamp this worker's rows file as checked (when it was read in full, or its stamp matched, in
        this process: see `generation.checkpoint_index`), then release the worker and layout locks (a
        no-op without them)."""
        if self._lock_fd is not None and (self.rows_path in self._checked or self._wrote_all) \
                and self.rows_path.exists():
            try:
                load_index(self.rows_path, repair=True)  # the index whole before it is stamped
                write_stamp(self.rows_path, self.tmp_prefix)
            except OSError:  # a full disk: the next run reads the rows file in full instead
                pass
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
        for path in (self.dir / "source-index").glob(f"{self.tmp_prefix}*"):  # generation.sources.record_index
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
        for ref in self.finished_refs():
            yield self.load(ref)

    def finished_ids(self) -> set[str]:
        return {ref.id for ref in self.finished_refs()}

    def finished_refs(self, repair: bool = True) -> list[RecordRef]:
        """(id, source, split, file, offset) of every finished record, each id once (first copy wins),
        read from the rows files' indexes (`load_index`; `repair=False` while the writer may append).
        The files are read again only when one of them changed since the last call (a new file, or
        another size, mtime or inode: rows files only grow, or are cut back by a repair)."""
        files = self.rows_files()
        state = tuple((path, *_file_state(path)) for path in files)  # before reading: a later append shows next time
        repair = repair and not self.readonly
        cached = self._refs_cache
        if cached is not None and cached[0] == state and (cached[1] or not repair):
            return list(cached[2])
        seen: set[str] = set()
        refs: list[RecordRef] = []
        for path in files:
            for start, _, sample_id, source, split in self._entries(path, repair and path == self.rows_path):
                if sample_id not in seen:
                    seen.add(sample_id)
                    refs.append(RecordRef(sample_id, source, split, path, start))
        self._refs_cache = (state, repair, refs)
        return list(refs)

    def _entries(self, path: Path, repair: bool) -> list[IndexEntry]:
        """A rows file's finished lines (`load_index`), read in full first unless this process read it
        in full already (then only its growth) or its check stamp matches (see
        `generation.checkpoint_index`): a damaged line is skipped with one warning, its sample redone."""
        st = path.stat()
        seen = self._checked.get(path)
        checked = (seen is not None and seen[0] == st.st_ino and seen[1] <= st.st_size) \
            or (path == self.rows_path and self._wrote_all) or stamp_matches(path)
        damage = Damage(path, "those samples are redone")
        entries = load_index(path, repair=repair, checked=checked, damage=damage)
        damage.report()
        self._checked[path] = (st.st_ino, st.st_size)
        return entries

    def load(self, ref: RecordRef) -> dict[str, Any]:
        """The full stored record a `RecordRef` points at."""
        with open(ref.path, "rb") as fh:
            fh.seek(ref.offset)
            return json.loads(fh.readline())

    def add_finished(self, sample_id: str, source: str, split: str, rows: dict[str, dict[str, Any]]) -> None:
        """Store image bytes as blobs, then make the sample durable with one fsync'd line.

        Known secrets are masked in the stored line, so no key reaches a shard even if a model or an
        operator repeated one."""
        self.add_finished_many([(sample_id, source, split, rows)])

    def add_finished_many(self, samples: list[tuple[str, str, str, dict[str, dict[str, Any]]]]) -> None:
        """`add_finished` for several samples with one write and one fsync (a group commit): all of
        them are durable when it returns, or (an error) none of their lines is in the file."""
        lines: list[bytes] = []
        meta: list[tuple[str, str, str]] = []
        for sample_id, source, split, rows in samples:
            stored: dict[str, Any] = {}
            image_shas: Optional[list[str]] = None
            for fmt, row in rows.items():
                if image_shas is None:
                    image_shas = [self.blobs.put(img["bytes"]) for img in row["images"]]
                stored[fmt] = {k: v for k, v in row.items() if k != "images"}
            lines.append(_encode({"id": sample_id, "source": source, "split": split,
                                  "images": image_shas or [], "rows": stored}))
            meta.append((sample_id, source, split))
        if not lines:
            return
        start = _append_bytes(self.rows_path, b"".join(lines))
        entries = []
        for line, (sample_id, source, split) in zip(lines, meta):
            entries.append(index_line((start, start + len(line), sample_id, source, split)))
            start += len(line)
        try:  # the index is a cache (see the module docstring): no fsync, and a failure here is repaired
            _append_bytes(index_path(self.rows_path), "".join(entries).encode("utf-8"), sync=False)
        except OSError:
            pass

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

    def quarantine_many(self, records: list[QuarantineRecord]) -> None:
        """`quarantine` for several records with one write and one fsync."""
        if records:
            _append_bytes(self.quarantine_path, b"".join(_encode(r.__dict__) for r in records))

    def quarantined(self, finished_ids: Optional[set[str]] = None) -> dict[str, QuarantineRecord]:
        """The latest record per id over all workers, minus ids that finished since (a retry that worked)."""
        done = self.finished_ids() if finished_ids is None else finished_ids
        records: dict[str, QuarantineRecord] = {}
        for path in self.quarantine_files():
            for r in read_quarantine(path):
                if r.id not in done:
                    records[r.id] = r
        return records

    def release_quarantined(self, ids: set[str]) -> None:
        """Forget these quarantine records in every worker's file; each file rewritten atomically."""
        for path in self.quarantine_files():
            records = [r.__dict__ for r in read_quarantine(path)]
            keep = [r for r in records if r["id"] not in ids]
            if len(keep) != len(records) or _has_damage(path, len(records)):
                _write_atomic(path, keep, self.tmp_prefix)

    def compact_quarantine(self) -> int:
        """Drop records of ids that finished since and older records of re-quarantined ids; returns
        how many lines went. Only when no other worker runs (`mmat retry`)."""
        done = self.finished_ids()
        dropped = 0
        for path in self.quarantine_files():
            records = [r.__dict__ for r in read_quarantine(path)]
            latest: dict[str, dict[str, Any]] = {}
            for r in records:
                if r["id"] not in done:
                    latest.pop(r["id"], None)
                    latest[r["id"]] = r
            if len(latest) != len(records) or _has_damage(path, len(records)):
                _write_atomic(path, latest.values(), self.tmp_prefix)
                dropped += len(records) - len(latest)
        return dropped
