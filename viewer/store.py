"""The viewer's access to a dataset's parquet shards (a local folder or a Hub repo), read lazily.

Guarantee (what keeps a 1M-row dataset as quick to open as a 1K-row one):
- opening lists the shard files and reads nothing from them;
- a page of the unfiltered list reads the footers of the shards up to it (their row groups) and then
  only the row groups that hold its rows, only the columns the list shows (`LIST_COLUMNS`: no image
  bytes, no messages); the total count, which needs every footer (with 64-row row groups a footer is
  a sizeable part of a shard), is a separate call (`count`) the page makes after drawing the rows;
- source and split filters select shards by their path; the other filters read a few small columns
  per shard once (`INDEX_COLUMNS`, kept in memory) and the text search reads question and answer;
- a dialogue, or an image, reads the one row group that holds it (a few recent ones are kept).

Shards are `data/{format}/{source}/{split}-*.parquet` (DESIGN §7), ordered by source (SOURCES order,
then any other), split (train, validation) and file name: the list's order.

A bad shard is named and left out, never a 500 for every page: a file whose footer cannot be read (a
truncated or half-copied file), or a parquet file that is not an mmat-1m shard (columns the viewer reads
are missing), is found when its footer is first read; one warning names the file and what is wrong, and
every list, count, facet, search and lookup goes on without it. `shards_of` (what the audit, the card's
examples and the export iterate) reads the footers of the shards it returns, so they never meet one.

    store = ShardStore.open("mmat-1m")                 # or ("NS/NAME", revision="v1.0.0") for a Hub repo
    page = store.page("rr", Filter(source="tabmwp"), offset=0, limit=50)
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmat_1m import FORMATS, SOURCES, SPLITS
from viewer.filters import Filter
from viewer.shard import _READ_ERRORS, BadShard, NotFound, Shard, ViewerError  # noqa: F401 (the store's names)

# What a list item shows: no image bytes (only the list's length, through `path`), no messages.
LIST_COLUMNS = ["id", "source", "subset", "format", "question", "answer", "reflection", "meta", "teacher",
                "steps.list.element.operators", "steps.list.element.rag_query", "images.list.element.path"]
INDEX_COLUMNS = ["id", "subset", "reflection.kind", "meta.verified", "meta.judge_score",
                 "steps.list.element.operators", "steps.list.element.rag_query"]
# Read when the shard's schema has them (rows from before a field existed have none: null in the index).
OPTIONAL_INDEX_COLUMNS = ["meta.grounded", "meta.evidence", "reflection.origin"]
TEXT_COLUMNS = ["id", "question", "answer"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CACHED_ROW_GROUPS = 16
_CACHED_SELECTIONS = 16
_OPEN_FILES = 32
@dataclass
class Page:
    total: Optional[int]  # None: not known without reading more footers (see `ShardStore.count`)
    rows: list[tuple[Shard, int, dict[str, Any]]]  # (shard, row in shard, list columns)


def _source_order(source: str) -> tuple[int, str]:
    return (SOURCES.index(source) if source in SOURCES else len(SOURCES), source)


class ShardStore:
    """The shards of one dataset; thread-safe (the HTTP server reads from several threads)."""

    def __init__(self, name: str, shards: list[Shard], opener: Callable[[str], Any]) -> None:
        self.name = name
        self.shards = shards
        self._open = opener
        self._files: OrderedDict = OrderedDict()
        self._index: dict[int, pa.Table] = {}
        self._row_groups: OrderedDict = OrderedDict()
        self._selections: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.operator_bits: dict[str, int] = {}

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, dataset: str, revision: Optional[str] = None) -> "ShardStore":
        """A local dataset folder, or a Hub dataset repo `NS/NAME` (at `revision`)."""
        if Path(dataset).is_dir():
            if revision:
                raise ViewerError(f"--revision applies to a Hub repo; {dataset} is a local folder")
            return cls.from_folder(Path(dataset))
        if _HUB_ID.match(dataset) and not Path(dataset).exists():
            return cls.from_hub(dataset, revision)
        raise ViewerError(f"{dataset} is neither a dataset folder nor a Hub repo id (NS/NAME)")

    @classmethod
    def from_folder(cls, folder: Path, opener: Callable[[str], Any] = str) -> "ShardStore":
        """`opener(path)` gives what pyarrow reads (default: the path itself, read natively)."""
        found = []
        for fmt in FORMATS:
            for path in (folder / "data" / fmt).glob("*/*.parquet"):
                found.append((fmt, path.parent.name, path.name, str(path)))
        return cls._from_files(folder.resolve().name, found, opener, f"under {folder / 'data'}")

    @classmethod
    def from_hub(cls, repo_id: str, revision: Optional[str]) -> "ShardStore":
        from huggingface_hub import HfApi, HfFileSystem
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError

        try:
            # Pin the revision to its commit, so every later read sees the same files.
            sha = HfApi().dataset_info(repo_id, revision=revision).sha
        except RevisionNotFoundError:
            raise ViewerError(f"{repo_id} has no revision {revision!r} (see its tags on the Hub)") from None
        except RepositoryNotFoundError:
            raise ViewerError(f"no dataset repo {repo_id} on the Hub (or no access: set HF_TOKEN)") from None
        except OfflineModeIsEnabled:
            raise ViewerError(f"HF_HUB_OFFLINE is set: unset it to view the Hub repo {repo_id}, or view a local "
                              f"folder") from None
        except (HfHubHTTPError, OSError) as exc:
            raise ViewerError(f"cannot reach the Hub for {repo_id}: {exc}") from None
        fs = HfFileSystem()
        root = f"datasets/{repo_id}@{quote(sha or revision or 'main', safe='')}"
        found = []
        for fmt in FORMATS:
            for path in fs.glob(f"{root}/data/{fmt}/*/*.parquet"):
                parts = path.split("/")
                found.append((fmt, parts[-2], parts[-1], path))
        label = repo_id + (f"@{revision}" if revision else "")
        return cls._from_files(label, found, lambda p: fs.open(p, "rb"), f"in {label}")

    @classmethod
    def _from_files(cls, name: str, found: Iterable[tuple[str, str, str, str]], opener, where: str) -> "ShardStore":
        keyed = []
        for fmt, source, filename, path in found:
            split = filename.split("-", 1)[0]
            if split in SPLITS and not filename.startswith("."):
                keyed.append(((FORMATS.index(fmt), _source_order(source), SPLITS.index(split), filename),
                              fmt, source, split, path))
        keyed.sort(key=lambda k: k[0])
        if not keyed:
            raise ViewerError(f"no parquet shards {where} (data/{{rr,orr}}/{{source}}/{{split}}-*.parquet); "
                              f"run `mmat generate` first")
        shards = [Shard(i, fmt, source, split, path, opener) for i, (_, fmt, source, split, path) in enumerate(keyed)]
        return cls(name, shards, opener)

    # -- facts --------------------------------------------------------------------------------------
    def formats(self) -> list[str]:
        return [f for f in FORMATS if any(s.format == f for s in self.shards)]

    def sources(self, fmt: Optional[str] = None) -> list[str]:
        return list(dict.fromkeys(s.source for s in self.shards if fmt is None or s.format == fmt))

    def splits(self, fmt: Optional[str] = None) -> list[str]:
        return [sp for sp in SPLITS if any(s.split == sp for s in self.shards if fmt is None or s.format == fmt)]

    def shards_of(self, fmt: str, flt: Filter = Filter(), check: bool = True) -> list[Shard]:
        """The format's shards the filter's source and split select, without bad ones: `check` reads the
        footers not read yet (False: only those already known bad are left out, nothing is read)."""
        return [s for s in self.shards if s.format == fmt and flt.matches_shard(s.source, s.split)
                and not s.error and (not check or s.usable)]

    def bad_shards(self) -> list[str]:
        """What is wrong with each shard found bad so far (file and reason)."""
        return [s.error for s in self.shards if s.error]

    def total(self, fmt: str) -> int:
        return self.count(fmt, Filter())

    def count(self, fmt: str, flt: Filter) -> int:
        """Matching rows; reads the footers of the selected shards not read yet (a Hub repo's in parallel)."""
        shards = [s for s, rows in self.selection(fmt, flt) if rows is None and not s.footer_read]
        if len(shards) > 1:
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda s: s.usable, shards))
        return sum((s.num_rows if rows is None else len(rows)) if s.usable else 0 for s, rows in self.selection(fmt, flt))

    # -- reading ------------------------------------------------------------------------------------
    def _file(self, shard: Shard) -> pq.ParquetFile:
        """An open file for the shard (its footer is known: no re-read); the most recent few stay open."""
        metadata = shard.metadata
        with self._lock:
            pf = self._files.get(shard.index)
            if pf is not None:
                self._files.move_to_end(shard.index)
                return pf
            pf = self._files[shard.index] = pq.ParquetFile(self._open(shard.path), metadata=metadata)
            while len(self._files) > _OPEN_FILES:  # closed when its last reader lets go of it
                self._files.popitem(last=False)
            return pf

    def _read(self, shard: Shard, columns: Optional[Sequence[str]], row_groups: Optional[Sequence[int]] = None) -> pa.Table:
        """Columns of the shard (some row groups, or all). A file whose data cannot be read (a footer that
        reads but pages that do not) raises `BadShard`, and is left out from then on."""
        try:
            pf = self._file(shard)
            with shard.lock:  # one reader per file object (a Hub file is a stateful HTTP stream)
                if row_groups is None:
                    return pf.read(columns=list(columns) if columns else None)
                return pf.read_row_groups(list(row_groups), columns=list(columns) if columns else None)
        except _READ_ERRORS as exc:
            with self._lock:
                self._files.pop(shard.index, None)
            raise shard.bad(f"cannot read its rows ({type(exc).__name__}: {exc})") from None

    def _row_group(self, shard: Shard, rg: int, columns: Optional[tuple[str, ...]]) -> pa.Table:
        key = (shard.index, rg, columns)
        with self._lock:
            if key in self._row_groups:
                self._row_groups.move_to_end(key)
                return self._row_groups[key]
        table = self._read(shard, columns, [rg])
        with self._lock:
            self._row_groups[key] = table
            while len(self._row_groups) > _CACHED_ROW_GROUPS:
                self._row_groups.popitem(last=False)
        return table

    def rows(self, shard: Shard, rows: Sequence[int], columns: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
        """Rows of one shard (indexes in the shard, any order), reading only their row groups."""
        if not len(rows):
            return []
        return self.take(shard, rows, columns).to_pylist()

    def take(self, shard: Shard, rows: Sequence[int], columns: Optional[Sequence[str]] = None) -> pa.Table:
        """`rows` as an Arrow table, in their order: for a reader that works on buffers (the audit hashes
        image bytes in place) rather than on one Python object per value."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = shard.starts
        rgs = np.searchsorted(starts, rows, side="right") - 1
        wanted = sorted(set(rgs.tolist()))
        table = self._read(shard, columns, wanted)
        # positions in the concatenation of the wanted row groups
        sizes = np.diff(starts)
        offsets = {rg: int(sizes[wanted[:k]].sum()) for k, rg in enumerate(wanted)}
        take = [offsets[int(rg)] + int(row - starts[rg]) for row, rg in zip(rows, rgs)]
        return table.take(pa.array(take, pa.int64()))

    def row(self, shard: Shard, row: int, columns: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """One full row (all columns unless `columns`), from a cached row group."""
        rg, at = shard.row_group_of(row)
        return self._row_group(shard, rg, tuple(columns) if columns else None).slice(at, 1).to_pylist()[0]

    def image(self, shard: Shard, row: int, index: int) -> bytes:
        images = self.row(shard, row, ["images"])["images"]
        if not 0 <= index < len(images):
            raise NotFound(f"row {row} of {shard.path} has {len(images)} image(s), not #{index}")
        return images[index]["bytes"]

    # -- filter index -------------------------------------------------------------------------------
    def _operator_bit(self, name: str) -> int:
        with self._lock:
            if name not in self.operator_bits:
                self.operator_bits[name] = 1 << len(self.operator_bits)
            return self.operator_bits[name]

    def index(self, shard: Shard) -> pa.Table:
        """The shard's filter index: id, subset, reflection, verified, judge_score, operators (bit mask)."""
        with self._lock:
            cached = self._index.get(shard.index)
        if cached is not None:
            return cached
        optional = [c for c in OPTIONAL_INDEX_COLUMNS if _has_field(shard.metadata.schema.to_arrow_schema(), c)]
        t = self._read(shard, INDEX_COLUMNS + optional)
        n = t.num_rows
        steps = t["steps"].combine_chunks() if t.num_rows else pa.array([], t.schema.field("steps").type)
        step_row = np.asarray(pc.list_parent_indices(steps), dtype=np.int64)
        flat = pc.list_flatten(steps)
        ops_lists = pc.struct_field(flat, "operators")
        op_names = pc.list_flatten(ops_lists)
        op_row = step_row[np.asarray(pc.list_parent_indices(ops_lists), dtype=np.int64)] if len(op_names) else step_row[:0]
        bits = np.zeros(n, dtype=np.int64)
        for name in pc.unique(op_names).to_pylist():
            if name:
                rows = op_row[np.asarray(pc.fill_null(pc.equal(op_names, name), False), dtype=bool)]
                bits[np.unique(rows)] |= self._operator_bit(name)
        rag = np.asarray(pc.fill_null(pc.greater(pc.utf8_length(pc.struct_field(flat, "rag_query")), 0), False), dtype=bool)
        if rag.any():
            bits[np.unique(step_row[rag])] |= self._operator_bit("rag")
        def nested(column: str, name: str, kind: pa.DataType) -> pa.Array:
            if f"{column}.{name}" in optional:
                return pc.struct_field(t[column], name)
            return pa.nulls(n, kind)

        kind = pc.struct_field(t["reflection"], "kind")
        reflected = pc.fill_null(pc.not_equal(kind, "none"), False)
        origin = pc.if_else(reflected, pc.fill_null(nested("reflection", "origin", pa.string()), "unknown"),
                            pa.nulls(n, pa.string()))
        table = pa.table({
            "id": t["id"], "subset": t["subset"],
            "reflection": kind,
            "verified": pc.struct_field(t["meta"], "verified"),
            "judge_score": pc.struct_field(t["meta"], "judge_score"),
            "grounded": nested("meta", "grounded", pa.bool_()),
            "evidence": nested("meta", "evidence", pa.string()),
            "origin": origin,
            "operators": pa.array(bits),
        })
        with self._lock:
            self._index[shard.index] = table
        return table

    def _search_text(self, shard: Shard) -> pa.Array:
        t = self._read(shard, TEXT_COLUMNS)
        joined = pc.binary_join_element_wise(*(pc.fill_null(t[c], "") for c in TEXT_COLUMNS), "\n")
        return pc.utf8_lower(joined)

    def selection(self, fmt: str, flt: Filter) -> list[tuple[Shard, Optional[np.ndarray]]]:
        """The matching rows per shard (None: every row of that shard), in list order; recent ones cached."""
        key = (fmt, flt)
        with self._lock:
            if key in self._selections:
                self._selections.move_to_end(key)
                return self._selections[key]
        out: list[tuple[Shard, Optional[np.ndarray]]] = []
        for shard in self.shards_of(fmt, flt, check=False):  # footers are read as the list needs them
            if not flt.needs_index:
                out.append((shard, None))
                continue
            try:
                mask = flt.mask(self.index(shard), self.operator_bits, self._search_text(shard) if flt.text else None)
            except BadShard:
                continue
            out.append((shard, np.nonzero(mask)[0]))
        with self._lock:
            self._selections[key] = out
            while len(self._selections) > _CACHED_SELECTIONS:
                self._selections.popitem(last=False)
        return out

    def page(self, fmt: str, flt: Filter, offset: int, limit: int, columns: Sequence[str] = LIST_COLUMNS) -> Page:
        """Rows `offset…offset+limit` of the selection. Reads the footers of the shards up to the page only, so
        `total` is None when shards after it have footers not read yet (`count` reads them)."""
        selection = self.selection(fmt, flt)
        out: list[tuple[Shard, int, dict[str, Any]]] = []
        skip, need = max(0, offset), max(0, limit)
        for shard, rows in selection:
            if not shard.usable:
                continue
            count = shard.num_rows if rows is None else len(rows)
            if skip >= count:
                skip -= count
                continue
            picked = np.arange(skip, min(count, skip + need)) if rows is None else rows[skip: skip + need]
            try:
                data = self.rows(shard, picked, columns)
            except BadShard:
                continue
            skip = 0
            out.extend((shard, int(r), d) for r, d in zip(picked, data))
            need -= len(picked)
            if need <= 0:
                break
        known = all(rows is not None or s.footer_read or s.error for s, rows in selection)
        if not known:
            return Page(None, out)
        return Page(sum((s.num_rows if rows is None else len(rows)) for s, rows in selection if not s.error), out)

    # -- lookups by id ------------------------------------------------------------------------------
    def _candidates(self, fmt: str, sample_id: str) -> list[Shard]:
        """Shards that can hold an id: those of its source (ids are `{source}/{subset}/{native}`) first."""
        source = sample_id.split("/", 1)[0]
        mine = [s for s in self.shards if s.format == fmt and s.source == source and not s.error]
        return mine or [s for s in self.shards if s.format == fmt and not s.error]

    def find(self, fmt: str, sample_id: str) -> tuple[Shard, int]:
        for shard in self._candidates(fmt, sample_id):
            try:
                at = pc.index(self.index(shard)["id"], sample_id).as_py()
            except BadShard:
                continue
            if at is not None and at >= 0:
                return shard, at
        raise NotFound(f"no {fmt} row with id {sample_id!r}")

    def present(self, ids: Iterable[str]) -> set[str]:
        """Which of `ids` have a row (in any format)."""
        wanted = pa.array(sorted(set(ids)), pa.string())
        found: set[str] = set()
        sources = {i.split("/", 1)[0] for i in wanted.to_pylist()}
        for shard in self.shards:
            if len(wanted) and (shard.source in sources or not any(s.source in sources for s in self.shards)):
                try:
                    hit = pc.is_in(wanted, value_set=self.index(shard)["id"])
                except BadShard:
                    continue
                found.update(wanted.filter(hit).to_pylist())
        return found

    def evidence_kinds(self, fmt: str) -> list[str]:
        """The evidence kinds the rows record (`meta.evidence`), for the filter."""
        return self._distinct(fmt, "evidence")

    def subsets(self, fmt: str) -> list[str]:
        return self._distinct(fmt, "subset")

    def _distinct(self, fmt: str, column: str) -> list[str]:
        """The sorted non-empty values of an index column over a format's readable shards (a bad shard skipped)."""
        values: set[str] = set()
        for shard in self.shards_of(fmt, check=False):
            try:
                values.update(v for v in pc.unique(self.index(shard)[column]).to_pylist() if v)
            except BadShard:
                continue
        return sorted(values)


def _has_field(schema: pa.Schema, dotted: str) -> bool:
    """Does the schema have the struct field `column.name`?"""
    column, name = dotted.split(".", 1)
    if column not in schema.names:
        return False
    kind = schema.field(column).type
    return pa.types.is_struct(kind) and kind.get_field_index(name) >= 0
