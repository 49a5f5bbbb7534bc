"""Shard writer: finished rows → parquet shards in the dataset layout (DESIGN §7).

Rows arrive as plain dicts in the `mmat_1m.FEATURES` schema. Each (format, source, split) group goes to
`data/{format}/{source}/{split}-{i:05d}-of-{n:05d}.parquet`, at most `shard_max_bytes` of encoded row
data per file.

Parquet settings, Hub-ready (what `datasets` writes when it pushes parquet, so the Hub's viewer and
`load_dataset(..., streaming=True)` read our shards the way they read its own):
- row groups capped by rows, `row_group_rows` (64): a streaming reader or the viewer fetches a whole
  row group to show one row, and our rows carry images, so groups stay small;
- and by bytes, `datasets.config.MAX_ROW_GROUP_SIZE` (100 MB; what `get_writer_batch_size_from_data_size`
  aims at), whichever comes first: a handful of huge images never makes a row group past it;
- the page index written (`write_page_index=True`): readers skip pages by their statistics;
- content-defined chunking (`use_content_defined_chunking`, with `datasets.config.DEFAULT_CDC_OPTIONS`)
  where the installed pyarrow has it: pages cut where the content says, so a shard rewritten with a few
  rows more or less dedups against the old one on the Hub's Xet storage and a re-push uploads little.

Rolling shards: while a run goes, a group that has gathered enough finished rows not yet in any of its
files gets them as a new part file, `{split}-part{j:05d}.parquet` (`{split}-{i:05d}-of-{N:05d}-part{j:05d}`
for worker i of N), written like any shard (temp name, fsync, rename), so the folder is loadable with
what is finished; at the end of the run a group that has parts gets only its tail (`append_tail`).
A part holds only ids no file of the group holds, so no row is ever in two files; a group whose files
do not add up (a duplicate id, an unreadable file, rows of ids no longer finished, an old schema) is
rewritten whole, as before.

A group's files belong to the group, not to the run that named them: whatever naming scheme earlier
runs used (one worker, or N workers with another `--num-shards`), after a write each id of the group
is in exactly one of its files. A single worker owns every file of the group and replaces them all.
Worker i of N replaces its own files and takes its ids out of every other file of the group (a file
left with no rows goes; a file of another scheme that shares this worker's names keeps its other
rows under a `-rest` name): rows from a run with a different `--num-shards` are merged, not stacked.

Crash safety (`kill -9` at any moment):
- every file is written to a temp name (`.tmp-w{i}of{n}-…`, named after the worker so concurrent
  workers never touch each other's), fsync'd, and renamed into place: no half-written shard ever has
  a real name, and the loaders' `{split}-*.parquet` globs never see a temp file;
- a group is replaced by first taking this worker's rows out of every old file (deleting its own old
  files, atomically rewriting other files without them), then renaming the new ones in: at no moment
  is a row in two files, so no row is ever in two shards (a kill in between leaves rows missing from
  the folder, never duplicated; they are still in the checkpoint and the rerun writes them);
- a group whose files already hold exactly the rows to write is left alone, so a rerun rewrites
  only what changed;
- `clean_stale_temps` removes the temp files a killed run of this worker left behind.

Workers sharing a folder write under the dataset folder's lock (`generation.folder_lock`), so no two
of them rewrite the same file at once.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from generation.atomic import fsync_dir
from mmat_1m import FEATURES, shard_dir, shard_name

SCHEMA = FEATURES.arrow_schema


def _hub_parquet_options() -> tuple[int, dict]:
    """(row-group byte cap, ParquetWriter options) as `datasets` writes Hub parquet (module docstring)."""
    import inspect

    from datasets import config as ds_config
    from datasets.utils.py_utils import convert_file_size_to_int

    options: dict = {"write_page_index": True}
    if "use_content_defined_chunking" in inspect.signature(pq.ParquetWriter.__init__).parameters:
        options["use_content_defined_chunking"] = dict(getattr(ds_config, "DEFAULT_CDC_OPTIONS", {}) or {}) or True
    return convert_file_size_to_int(ds_config.MAX_ROW_GROUP_SIZE), options


ROW_GROUP_MAX_BYTES, PARQUET_OPTIONS = _hub_parquet_options()


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


def _in_storage_form(row: dict) -> bool:
    """Whether a row's images are already the features' storage dicts (the checkpoint's rows are)."""
    return all(isinstance(img, dict) for img in row.get("images") or [])


def _encoded(rows: Iterable[dict]) -> Iterator[tuple[dict, int]]:
    """Rows in the features' storage format, each with its estimated size (`_row_bytes`). A row whose
    images are storage dicts already goes as it is: `FEATURES.encode_example` per row was two thirds
    of the CPU of writing a shard; `_table` encodes a row group after all if Arrow refuses it."""
    for row in rows:
        encoded = row if _in_storage_form(row) else FEATURES.encode_example(row)
        yield encoded, _row_bytes(encoded)


def _table(group: list[dict]) -> pa.Table:
    """A row group as an Arrow table in `SCHEMA`: straight from the rows, or, when Arrow refuses one
    of their values (a number where text belongs, ...), from `FEATURES.encode_example` of each, which
    coerces as `datasets` does."""
    try:
        return pa.Table.from_pylist(group, schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, KeyError, AttributeError):
        return pa.Table.from_pylist([FEATURES.encode_example(row) for row in group], schema=SCHEMA)


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


def _parquet_writer(path: Path) -> pq.ParquetWriter:
    return pq.ParquetWriter(path, SCHEMA, **PARQUET_OPTIONS)


class _TempFiles:
    """Rows streamed into temp shard files, one row group in memory at a time (memory does not grow
    with the group, whatever `shard_max_bytes` is): a file is cut before `shard_max_bytes` of rows
    (estimated, `_row_bytes`), a row group at `row_group_rows` rows or `ROW_GROUP_MAX_BYTES`, whichever
    comes first. Iterating yields (temp path, ids of its rows) as each file is closed and fsync'd; a
    file being written when an error (or a `close`) stops the stream is removed."""

    def __init__(self, folder: Path, rows: Iterable[dict], settings: WriterSettings, first_serial: int = 0) -> None:
        self.folder = folder
        self.rows = rows
        self.settings = settings
        self.serial = first_serial

    def __iter__(self) -> Iterator[tuple[Path, list[str]]]:
        max_rows = self.settings.row_group_rows
        tmp: Optional[Path] = None
        writer: Optional[pq.ParquetWriter] = None
        ids: list[str] = []
        group: list[dict] = []
        file_bytes = group_bytes = 0
        try:
            for row, nbytes in _encoded(self.rows):
                if ids and file_bytes + nbytes > self.settings.shard_max_bytes:
                    self._flush(writer, group)
                    yield self._close(writer, tmp), ids
                    writer = tmp = None
                    ids, group, file_bytes, group_bytes = [], [], 0, 0
                elif group and (group_bytes + nbytes > ROW_GROUP_MAX_BYTES or len(group) >= max_rows):
                    self._flush(writer, group)
                    group, group_bytes = [], 0
                if writer is None:
                    tmp = self.folder / f"{temp_prefix(self.settings)}{os.getpid()}-{self.serial:05d}.parquet"
                    self.serial += 1
                    writer = _parquet_writer(tmp)
                group.append(row)
                ids.append(row["id"])
                group_bytes += nbytes
                file_bytes += nbytes
            if writer is not None:
                self._flush(writer, group)
                path = self._close(writer, tmp)
                writer = None
                yield path, ids
        finally:
            if writer is not None:  # stopped mid-file (a full disk included): no temp file survives
                try:
                    writer.close()
                except Exception:  # noqa: BLE001 - the error that stopped the stream is the one that goes up
                    pass
                tmp.unlink(missing_ok=True)

    @staticmethod
    def _flush(writer: pq.ParquetWriter, group: list[dict]) -> None:
        if group:
            writer.write_table(_table(group), row_group_size=len(group))

    @staticmethod
    def _close(writer: pq.ParquetWriter, tmp: Path) -> Path:
        try:
            writer.close()
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp


def _names(split: str, count: int, settings: WriterSettings) -> list[str]:
    if settings.num_workers == 1:
        return [shard_name(split, j, count) for j in range(count)]
    stem = f"{split}-{settings.worker_index:05d}-of-{settings.num_workers:05d}"
    if count == 1:
        return [f"{stem}.parquet"]
    return [f"{stem}-{j:03d}.parquet" for j in range(count)]


def _group_files(folder: Path, split: str) -> list[Path]:
    """Every shard of the group, whoever wrote it (temp files start with a dot and are not matched)."""
    return sorted(p for p in folder.glob(f"{split}-*.parquet") if p.is_file())


def _mine(path: Path, split: str, settings: WriterSettings) -> bool:
    """Does this file carry one of this worker's names (so it is replaced, not trimmed)?"""
    if settings.num_workers == 1:
        return True  # a single worker owns the whole group
    stem = re.escape(f"{split}-{settings.worker_index:05d}-of-{settings.num_workers:05d}")
    return re.fullmatch(stem + r"(-\d{3}|-part\d{5})?\.parquet", path.name) is not None


def _part_stem(split: str, settings: WriterSettings) -> str:
    return split if settings.num_workers == 1 else f"{split}-{settings.worker_index:05d}-of-{settings.num_workers:05d}"


def _part_re(split: str, settings: WriterSettings) -> re.Pattern:
    return re.compile(re.escape(_part_stem(split, settings)) + r"-part(\d{5})\.parquet")


def _is_part(path: Path, split: str, settings: WriterSettings) -> bool:
    return _part_re(split, settings).fullmatch(path.name) is not None


def _existing(folder: Path, split: str, settings: WriterSettings) -> list[Path]:
    return [p for p in _group_files(folder, split) if _mine(p, split, settings)]


def _ids(path: Path) -> Optional[list[str]]:
    try:
        return pq.read_table(path, columns=["id"]).column("id").to_pylist()
    except Exception:  # unreadable or foreign file
        return None


def _current_ids(path: Path) -> Optional[list[str]]:
    """The file's ids when it was written with today's features, else None (an older folder lacks fields
    added since: its groups are rewritten even when their rows did not change). One footer read: a
    200k-row shard's footer is large."""
    try:
        pf = pq.ParquetFile(path)
        if not pf.schema_arrow.remove_metadata().equals(SCHEMA.remove_metadata()):
            return None
        return pf.read(columns=["id"]).column("id").to_pylist()
    except Exception:  # unreadable or foreign file
        return None


def _unchanged(files: list[Path], split: str, ids: list[str], settings: WriterSettings) -> bool:
    """Do this worker's current files of the group hold exactly `ids`, in order, under proper names?"""
    if not files or [p.name for p in files] != _names(split, len(files), settings):
        return False
    found: list[str] = []
    for path in files:
        file_ids = _current_ids(path)
        if file_ids is None:  # unreadable, foreign or old: rewrite the group
            return False
        found.extend(file_ids)
    return found == ids


@dataclass
class _Others:
    """What the other files of the group hold of this worker's ids (only for worker i of N > 1)."""

    trim: list[Path] = field(default_factory=list)  # not ours, hold some of our ids: rewrite without them
    rest: list[Path] = field(default_factory=list)  # ours by name, hold rows of other workers: keep those

    def __bool__(self) -> bool:
        return bool(self.trim or self.rest)


def _others(folder: Path, split: str, mine: list[Path], ids: set[str], settings: WriterSettings) -> _Others:
    out = _Others()
    if settings.num_workers == 1:
        return out
    for path in _group_files(folder, split):
        file_ids = _ids(path)
        if file_ids is None:
            continue
        if path in mine:
            if any(i not in ids for i in file_ids):
                out.rest.append(path)
        elif any(i in ids for i in file_ids):
            out.trim.append(path)
    return out


def _rest_name(path: Path, taken: set[str]) -> str:
    for k in range(1, 10_000):
        name = f"{path.stem}-rest{'' if k == 1 else k}.parquet"
        if name not in taken:
            return name
    raise RuntimeError(f"no free name for the rest of {path}")  # pragma: no cover


def _write_without(path: Path, ids: set[str], tmp: Path, row_group_rows: int) -> int:
    """The rows of `path` whose id is not in `ids`, streamed into `tmp` (fsync'd). Returns how many."""
    kept = 0
    value_set = pa.array(sorted(ids), pa.string())
    with _parquet_writer(tmp) as writer:  # the caller removes `tmp` on an error
        for batch in pq.ParquetFile(path).iter_batches(batch_size=row_group_rows):
            table = pa.Table.from_batches([batch])
            keep = pc.invert(pc.is_in(table.column("id"), value_set=value_set))
            table = table.filter(keep)
            if table.num_rows:
                writer.write_table(table.cast(SCHEMA))
                kept += table.num_rows
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    return kept


def _take_out(folder: Path, others: _Others, ids: set[str], settings: WriterSettings) -> None:
    """Remove this worker's ids from the other files of the group (see the module docstring)."""
    taken = {p.name for p in folder.glob("*.parquet")}
    for serial, path in enumerate(others.rest + others.trim, start=100_000):
        tmp = folder / f"{temp_prefix(settings)}{os.getpid()}-{serial:05d}.parquet"
        try:
            kept = _write_without(path, ids, tmp, settings.row_group_rows)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if path in others.rest:  # its name is one this worker writes next: its other rows move aside
            path.unlink()
            if kept:
                name = _rest_name(path, taken)
                taken.add(name)
                os.replace(tmp, folder / name)
            else:
                tmp.unlink()
        elif kept:
            os.replace(tmp, path)  # atomic: our rows leave, the others stay
        else:
            tmp.unlink()
            path.unlink()


def ids_in_files(out_dir: Path, fmt: str, source: str, split: str) -> Optional[set[str]]:
    """Every id the group's files hold (any worker's), or None when they do not add up: an unreadable
    file, a file of an older schema, or an id in two files (then only a whole rewrite is safe)."""
    folder = Path(out_dir) / shard_dir(fmt, source)
    found: set[str] = set()
    count = 0
    for path in _group_files(folder, split) if folder.is_dir() else []:
        file_ids = _current_ids(path)
        if file_ids is None:
            return None
        found.update(file_ids)
        count += len(file_ids)
    return found if count == len(found) else None


def write_part(out_dir: Path, fmt: str, source: str, split: str, rows: Iterable[dict],
               settings: Optional[WriterSettings] = None) -> GroupWritten:
    """Rows that no file of the group holds yet, as new part files (see the module docstring): the
    caller guarantees that (`ids_in_files`), under the folder lock."""
    settings = settings or WriterSettings()
    folder = Path(out_dir) / shard_dir(fmt, source)
    folder.mkdir(parents=True, exist_ok=True)
    pattern = _part_re(split, settings)
    numbers = [int(m.group(1)) for p in _group_files(folder, split) if (m := pattern.fullmatch(p.name))]
    next_part = max(numbers, default=-1) + 1
    result = GroupWritten(fmt, source, split)
    for tmp, ids in _TempFiles(folder, rows, settings, first_serial=200_000):
        target = folder / f"{_part_stem(split, settings)}-part{next_part:05d}.parquet"
        os.replace(tmp, target)  # only ids no file holds: never a row in two files
        next_part += 1
        result.rows += len(ids)
        result.files.append(target)
    fsync_dir(folder)
    return result


def has_parts(out_dir: Path, fmt: str, source: str, split: str, settings: Optional[WriterSettings] = None) -> bool:
    settings = settings or WriterSettings()
    folder = Path(out_dir) / shard_dir(fmt, source)
    return folder.is_dir() and any(_is_part(p, split, settings) for p in _group_files(folder, split))


def write_group(out_dir: Path, fmt: str, source: str, split: str, rows: Iterable[dict],
                settings: Optional[WriterSettings] = None, ids: Optional[list[str]] = None) -> GroupWritten:
    """Write one group's rows (already in final order); replaces this worker's older files of the group.

    With `ids` (the ids of `rows`, in order) a group whose files already hold exactly those rows is not
    rewritten (`rows` is then never consumed)."""
    settings = settings or WriterSettings()
    folder = Path(out_dir) / shard_dir(fmt, source)
    folder.mkdir(parents=True, exist_ok=True)
    old = _existing(folder, split, settings)
    if ids is not None and _unchanged(old, split, ids, settings) \
            and not _others(folder, split, old, set(ids), settings):
        return GroupWritten(fmt, source, split, rows=len(ids), files=old)
    # Rows stream to temp files (one row group in memory at a time); only once the count is known do
    # they get their final `-of-{n}` names.
    temps: list[tuple[Path, int]] = []
    written: set[str] = set()
    try:
        for tmp, ids_in_tmp in _TempFiles(folder, rows, settings):
            written.update(ids_in_tmp)
            temps.append((tmp, len(ids_in_tmp)))
        # Our rows out of every old file first, then the new ones in: never both at once.
        _take_out(folder, _others(folder, split, old, written, settings), written, settings)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    names = _names(split, len(temps), settings)
    for stale in old:
        stale.unlink(missing_ok=True)
    result = GroupWritten(fmt, source, split)
    for name, (tmp, n_rows) in zip(names, temps):
        os.replace(tmp, folder / name)
        result.rows += n_rows
        result.files.append(folder / name)
    fsync_dir(folder)
    return result
