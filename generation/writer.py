"""Shard writer: finished rows → parquet shards in the dataset layout (DESIGN §7).

Rows arrive as plain dicts in the `mmat_1m.FEATURES` schema. Each (format, source, split) group goes to
`data/{format}/{source}/{split}-{i:05d}-of-{n:05d}.parquet`, at most `shard_max_bytes` of encoded row
data per file, row groups of `row_group_rows` rows so streaming reads stay small.

Crash safety (`kill -9` at any moment):
- every file is written to a temp name (`.tmp-w{i}of{n}-…`, named after the worker so concurrent
  workers never touch each other's), fsync'd, and renamed into place: no half-written shard ever has
  a real name, and the loaders' `{split}-*.parquet` globs never see a temp file;
- a group is replaced by first removing this worker's old files of the group, then renaming the new
  ones in: at no moment do old and new files sit side by side, so no row is ever in two shards (a
  kill in between leaves rows missing from the folder, never duplicated; they are still in the
  checkpoint and the rerun writes them);
- a group whose files already hold exactly the rows to write is left alone, so a rerun rewrites
  only what changed;
- `clean_stale_temps` removes the temp files a killed run of this worker left behind.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from mmat_1m import FEATURES, shard_dir

SCHEMA = FEATURES.arrow_schema


@dataclass
class WriterSettings:
    shard_max_bytes: int = 500_000_000
    row_group_rows: int = 64
    # With N independent workers, worker i names its files `{split}-{i:05d}-of-{N:05d}[-{j:03d}].parquet`
    # so the workers' outputs never collide and all match the configs' `{split}-*.parquet` globs.
    worker_index: int = 0
    num_workers: int = 1


@dataclass
class GroupWritten:
    format: str
    source: str
    split: str
    rows: int = 0
    files: list[Path] = field(default_factory=list)


def _row_bytes(encoded: dict) -> int:
    """A cheap upper-bound estimate of one encoded row's size (images dominate)."""
    size = sum(len(img.get("bytes") or b"") for img in encoded.get("images") or [])
    return size + sum(len(m["content"][-1]["text"] or "") for m in encoded.get("messages") or []) + 512


def _chunks(rows: Iterable[dict], max_bytes: int) -> Iterator[list[dict]]:
    chunk: list[dict] = []
    size = 0
    for row in rows:
        encoded = FEATURES.encode_example(row)
        nbytes = _row_bytes(encoded)
        if chunk and size + nbytes > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(encoded)
        size += nbytes
    if chunk:
        yield chunk


def temp_prefix(settings: WriterSettings) -> str:
    return f".tmp-w{settings.worker_index}of{settings.num_workers}-"


def clean_stale_temps(out_dir: Path, settings: Optional[WriterSettings] = None) -> int:
    """Remove temp shards a killed run left under `out_dir/data`: this worker's own, or every one when
    the run is a single worker (it owns the whole folder). Returns how many went."""
    settings = settings or WriterSettings()
    data = Path(out_dir) / "data"
    if not data.is_dir():
        return 0
    pattern = ".tmp-*" if settings.num_workers == 1 else f"{temp_prefix(settings)}*"
    removed = 0
    for path in data.rglob(pattern):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_tmp(folder: Path, encoded_rows: list[dict], row_group_rows: int, serial: int,
               settings: WriterSettings) -> Path:
    tmp = folder / f"{temp_prefix(settings)}{os.getpid()}-{serial:05d}.parquet"
    with pq.ParquetWriter(tmp, SCHEMA) as writer:
        for start in range(0, len(encoded_rows), row_group_rows):
            batch = encoded_rows[start : start + row_group_rows]
            writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    return tmp


def _names(split: str, count: int, settings: WriterSettings) -> list[str]:
    if settings.num_workers == 1:
        return [f"{split}-{j:05d}-of-{count:05d}.parquet" for j in range(count)]
    stem = f"{split}-{settings.worker_index:05d}-of-{settings.num_workers:05d}"
    if count == 1:
        return [f"{stem}.parquet"]
    return [f"{stem}-{j:03d}.parquet" for j in range(count)]


def _mine(path: Path, split: str, settings: WriterSettings) -> bool:
    """Is this existing file one this worker wrote (and may replace)?"""
    if settings.num_workers == 1:
        return path.name.startswith(f"{split}-") and "-of-" in path.name
    return path.name.startswith(f"{split}-{settings.worker_index:05d}-of-{settings.num_workers:05d}")


def _existing(folder: Path, split: str, settings: WriterSettings) -> list[Path]:
    return sorted(p for p in folder.glob(f"{split}-*.parquet") if _mine(p, split, settings))


def _unchanged(files: list[Path], split: str, ids: list[str], settings: WriterSettings) -> bool:
    """Do this worker's current files of the group hold exactly `ids`, in order, under proper names?"""
    if not files or [p.name for p in files] != _names(split, len(files), settings):
        return False
    found: list[str] = []
    try:
        for path in files:
            found.extend(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    except Exception:  # unreadable or foreign file: rewrite the group
        return False
    return found == ids


def write_group(out_dir: Path, fmt: str, source: str, split: str, rows: Iterable[dict],
                settings: Optional[WriterSettings] = None, ids: Optional[list[str]] = None) -> GroupWritten:
    """Write one group's rows (already in final order); replaces this worker's older files of the group.

    With `ids` (the ids of `rows`, in order) a group whose files already hold exactly those rows is not
    rewritten (`rows` is then never consumed)."""
    settings = settings or WriterSettings()
    folder = Path(out_dir) / shard_dir(fmt, source)
    folder.mkdir(parents=True, exist_ok=True)
    old = _existing(folder, split, settings)
    if ids is not None and _unchanged(old, split, ids, settings):
        return GroupWritten(fmt, source, split, rows=len(ids), files=old)
    # Chunks stream to temp files (one chunk in memory at a time); only once the count is known do
    # they get their final `-of-{n}` names.
    temps: list[tuple[Path, int]] = []
    try:
        for serial, chunk in enumerate(_chunks(rows, settings.shard_max_bytes)):
            temps.append((_write_tmp(folder, chunk, settings.row_group_rows, serial, settings), len(chunk)))
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    names = _names(split, len(temps), settings)
    # Old files out first, then the new ones in: never both at once (see the module docstring).
    for stale in old:
        stale.unlink(missing_ok=True)
    result = GroupWritten(fmt, source, split)
    for name, (tmp, n_rows) in zip(names, temps):
        os.replace(tmp, folder / name)
        result.rows += n_rows
        result.files.append(folder / name)
    _fsync_dir(folder)
    return result
