"""What the end of a run read from each shard file, kept in the run's work folder (`shard-readings/`),
so the audit and the card's numbers read only the shard files they have not read before.

Why: the audit and the card describe the whole folder, and reading every row of it was most of the end
of a large run (200k rows: 118 s of audit and 20 s of card numbers, against about 1 s for the tail
shards themselves). With rolling shards (`generation.shards.RollingShards`) each part file is read
while the samples run, by a process of its own (`ReadAhead`), so the end reads only the tail.

A reading is a per-file result that merges exactly (`generation.quality.audit.ShardAudit`,
`publishing.card_stats.ShardStats`): the report and the card are the same with or without this cache.

Guarantees:
- an entry is used only for the very file it was read from: its key holds the file's path in the
  folder, size, mtime and inode (a rewritten shard is a new file: a new inode and mtime), and a digest
  of the code a reading depends on (every `generation` and `publishing` module, `mmat_1m`, and the
  pyarrow, numpy and xxhash versions), so a changed definition never reuses an old number;
- an entry is written to a temp name and renamed (a kill leaves the old entry, the new one, or a temp
  file that `prune` removes); an unreadable or foreign entry is read again from the shard, never trusted;
- entries hold numbers, ids, names of sources, subsets, models, operators and backends (what the
  card and the report show), never a row's text;
- the format is `.npz` of plain arrays, loaded with `allow_pickle=False` (no code runs on loading).
"""
from __future__ import annotations

import functools
import io
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Protocol

import numpy as np

from generation.atomic import write_atomic

log = logging.getLogger("mmat.readings")

CACHE_DIRNAME = "shard-readings"  # in the work folder
_TMP_PREFIX = ".tmp-reading-"
_REPO = Path(__file__).resolve().parents[1]


class Reading(Protocol):
    """A per-file result the cache can keep: its state as JSON-able `meta` and plain numpy arrays."""

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...


def add_counts(into: Any, other: Any) -> None:
    """Add the counts of one dataclass of counts (int and `Counter` fields, e.g. `GroupStats`,
    `FormatStats`) to another of the same type: what merging two readings does."""
    for name, value in vars(other).items():
        if isinstance(value, Counter):
            getattr(into, name).update(value)
        else:
            setattr(into, name, getattr(into, name) + value)


def counts_to_json(counts: Any) -> dict[str, Any]:
    """A dataclass of counts as JSON: a `Counter` as [key, count] pairs (its order and int keys kept)."""
    return {name: [[k, n] for k, n in value.items()] if isinstance(value, Counter) else value
            for name, value in vars(counts).items()}


def counts_from_json(cls: type, raw: dict[str, Any]) -> Any:
    """`counts_to_json` back into an instance of `cls`."""
    out = cls()
    for name, value in raw.items():
        setattr(out, name, Counter({k: n for k, n in value}) if isinstance(getattr(out, name), Counter) else int(value))
    return out


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of every source file a reading may depend on, and of the versions of the libraries that
    read and hash (pyarrow counts the tokens): a change to any of them makes every entry stale (read
    again once), so no number from older code is ever reused."""
    import pyarrow
    import xxhash

    digest = xxhash.xxh3_128()
    digest.update(f"pyarrow {pyarrow.__version__} numpy {np.__version__} xxhash {xxhash.VERSION}\x00".encode())
    files = sorted([*(_REPO / "generation").rglob("*.py"), *(_REPO / "publishing").rglob("*.py"), _REPO / "mmat_1m.py"])
    for path in files:
        digest.update(str(path.relative_to(_REPO)).encode("utf-8") + b"\x00")
        digest.update(path.read_bytes())
    return digest.hexdigest()


class ReadingsCache:
    """Readings of the shard files of one dataset folder (`root`), kept in `folder`. `reading` gives a
    file's, from its entry when the entry matches the file as it is now, else read now and kept; `prune`
    removes the entries no `reading` used since the cache was opened (shards rewritten or gone)."""

    def __init__(self, folder: Path, root: Path) -> None:
        self.folder = Path(folder)
        self.root = Path(root).resolve()
        self.used: set[str] = set()
        self.hits = 0
        self.misses = 0

    def _entry(self, path: Path, kind: str) -> tuple[str, str]:
        """(entry file name, key) of a shard file as it is now."""
        import xxhash

        resolved = Path(path).resolve()
        where = str(resolved.relative_to(self.root))
        st = resolved.stat()
        key = json.dumps([code_digest(), kind, where, st.st_size, st.st_mtime_ns, st.st_ino])
        return f"{kind}-{xxhash.xxh3_64_hexdigest(where.encode('utf-8'))}.npz", key

    def reading(self, path: Path, kind: str, read: Callable[[str], Reading],
                load: Callable[[dict[str, Any], dict[str, np.ndarray]], Reading]) -> Any:
        """The `kind` reading of the shard at `path`: `load(meta, arrays)` of its entry, else `read(path)`
        (then kept)."""
        name, key = self._entry(path, kind)  # stat before reading: a file replaced meanwhile misses next time
        self.used.add(name)
        found = self._load(self.folder / name, key, load)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        result = read(str(path))
        self._save(self.folder / name, key, result)
        return result

    def _load(self, entry: Path, key: str, load: Callable[..., Reading]) -> Optional[Reading]:
        if not entry.is_file():
            return None
        try:
            with np.load(entry, allow_pickle=False) as data:
                meta = json.loads(bytes(data["__meta__"]).decode("utf-8"))
                if meta.pop("__key__", None) != key:
                    return None
                return load(meta, {name: data[name] for name in data.files if name != "__meta__"})
        except Exception as exc:  # noqa: BLE001 - a torn or foreign entry is read again, never trusted
            log.debug("%s unreadable (%s: %s); reading the shard again", entry.name, type(exc).__name__, exc)
            return None

    def _save(self, entry: Path, key: str, result: Reading) -> None:
        meta, arrays = result.to_arrays()
        buffer = io.BytesIO()
        np.savez(buffer, __meta__=np.frombuffer(json.dumps({**meta, "__key__": key}).encode("utf-8"), dtype=np.uint8),
                 **arrays)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(entry, buffer.getbuffer(), tmp_prefix=_TMP_PREFIX)  # `generation.atomic`
        except OSError as exc:  # nothing is lost: the next audit reads the shard again
            log.warning("could not keep the reading %s in %s: %s", entry.name, self.folder, exc)

    def prune(self) -> int:
        """Remove the entries (and temp files) no `reading` used since this cache was opened; call it after
        reading the whole folder. Returns the files removed."""
        removed = 0
        if not self.folder.is_dir():
            return 0
        for path in self.folder.iterdir():
            if path.name not in self.used and (path.suffix == ".npz" or path.name.startswith(_TMP_PREFIX)):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def run_cache(work_dir: Path, out_dir: Path) -> ReadingsCache:
    """The readings cache of a run's dataset folder, in its work folder."""
    return ReadingsCache(Path(work_dir) / CACHE_DIRNAME, out_dir)


def read_ahead(work_dir: Path, out_dir: Path, files: Iterable[Path], fmt: str) -> None:
    """Read new shard files into the run's cache before the end of the run needs them: the card's
    numbers of every file, and the audit's readings of every file, its rows and its tokens (the end audits
    RR and ORR side by side, each with the other format's tokens for the token ratio)."""
    from generation.quality.audit import read_shard
    from publishing.card_stats import read_shard_stats

    cache = run_cache(work_dir, out_dir)
    for path in files:
        read_shard_stats(Path(path), cache)
        read_shard(Path(path), "rows", cache)
        read_shard(Path(path), "tokens", cache)


class ReadAhead:
    """The process that reads part files ahead while the samples run (`RollingShards` hands it each new
    part): `python -m generation.readings_cache WORK_DIR OUT_DIR PARENT_PID`, one JSON line
    `[format, path]` per file on its stdin.

    Why a process: read in the engine's own process, 20k samples took 202 s against 182 s without
    reading ahead (C = 256 on 2 cores): the pure-Python reading held the GIL against the event loop
    (every wake-up of the loop waited for the reader's switch interval), so the generation lost more than
    the end gained. The process runs at a lower priority (`nice` 10), so it takes the CPU the engine
    and the server leave. It ends when its stdin closes (whatever ends the engine, `kill -9` included)
    and, on Linux, when the thread that started it ends (`generation.orphans`). What it has not read
    when the run ends, the end reads itself."""

    def __init__(self, work_dir: Path, out_dir: Path) -> None:
        self.work_dir, self.out_dir = Path(work_dir), Path(out_dir)
        self._proc: Optional[subprocess.Popen] = None

    def add(self, files: Iterable[Path], fmt: str) -> None:
        if self._proc is None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))}
            self._proc = subprocess.Popen([sys.executable, "-m", "generation.readings_cache", str(self.work_dir),
                                           str(self.out_dir), str(os.getpid())], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, text=True)
        for path in files:
            self._proc.stdin.write(json.dumps([fmt, str(path)]) + "\n")
        self._proc.stdin.flush()

    def close(self) -> None:
        """Wait until every file handed over is read (the end of the run would read it otherwise)."""
        if self._proc is None:
            return
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        code = self._proc.wait()
        if code != 0:
            log.warning("reading parts ahead stopped (exit code %s); the end of the run reads the rest", code)
        self._proc = None


def _main(argv: list[str]) -> int:
    """The `ReadAhead` process."""
    from generation.orphans import die_with_parent

    work_dir, out_dir, parent = Path(argv[0]), Path(argv[1]), int(argv[2])
    die_with_parent(parent)
    try:
        os.nice(10)
    except (AttributeError, OSError):  # no `nice` here: full priority, still correct
        pass
    failed = 0
    for line in sys.stdin:
        path = "?"
        try:
            fmt, path = json.loads(line)
            read_ahead(work_dir, out_dir, [Path(path)], fmt)
        except Exception as exc:  # noqa: BLE001 - one file not read ahead: the end reads it
            failed += 1
            print(f"{path}: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
