"""Shard writer: finished rows → parquet shards in the dataset layout (DESIGN §7).

Rows arrive as plain dicts in the `mmat_1m.FEATURES` schema. Each (format, source, split) group goes to
`data/{format}/{source}/{split}-{i:05d}-of-{n:05d}.parquet`, at most `shard_max_bytes` of encoded row
data per file, row groups of `row_group_rows` rows so streaming reads stay small. Every file is written
to a temp name and renamed into place, so a crash never leaves a half-written shard under a real name.
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


def _write_tmp(folder: Path, encoded_rows: list[dict], row_group_rows: int, serial: int) -> Path:
    tmp = folder / f".tmp-{os.getpid()}-{serial:05d}.parquet"
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


def write_group(out_dir: Path, fmt: str, source: str, split: str, rows: Iterable[dict],
                settings: Optional[WriterSettings] = None) -> GroupWritten:
    """Write one group's rows (already in final order); replaces this worker's older files of the group."""
    settings = settings or WriterSettings()
    folder = Path(out_dir) / shard_dir(fmt, source)
    folder.mkdir(parents=True, exist_ok=True)
    # Chunks stream to temp files (one chunk in memory at a time); only once the count is known do
    # they get their final `-of-{n}` names.
    temps: list[tuple[Path, int]] = []
    for serial, chunk in enumerate(_chunks(rows, settings.shard_max_bytes)):
        temps.append((_write_tmp(folder, chunk, settings.row_group_rows, serial), len(chunk)))
    names = _names(split, len(temps), settings)
    result = GroupWritten(fmt, source, split)
    for name, (tmp, n_rows) in zip(names, temps):
        os.replace(tmp, folder / name)
        result.rows += n_rows
        result.files.append(folder / name)
    for stale in folder.glob(f"{split}-*.parquet"):
        if stale.name not in names and _mine(stale, split, settings):
            stale.unlink()
    return result
