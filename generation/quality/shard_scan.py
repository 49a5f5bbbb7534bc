"""The audit's shard scan: each shard of a dataset read batch by batch without its images, every row
judged (`generation.quality.row_judgement`) and signed (`generation.quality.near_duplicates`), into a
`ShardAudit` that merges exactly; then the exact-duplicate check, which reads image bytes only for rows
whose text repeats another row's.

Shards come from a store passed in: `LocalShards` (a dataset folder, here) or any object with the same
four members (`shards_of`, `rows`, `take`, and shards with `path`, `source`, `opener`), such as the
viewer's `ShardStore` for a Hub repo. `generation/` never imports `viewer/` or `publishing/`: the caller
that has a Hub store passes it in.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from generation.quality.near_duplicates import SIGNATURE_VALUES, minhash
from generation.quality.row_judgement import GroupStats, failings, row_quality
from generation.text_tokens import TOKEN_PATTERN

EXAMPLES_PER_KIND = 5
EXAMPLES_PER_SOURCE = 2
_COLUMNS = ["id", "source", "subset", "format", "messages", "steps", "question", "answer", "reflection"]
_OPTIONAL = ["meta"]


# ----------------------------------------------------------------------------------------- stores
@dataclass
class LocalShard:
    """One parquet file of a dataset folder: `data/{format}/{source}/{split}-*.parquet`."""

    format: str
    source: str
    split: str
    path: str
    opener: Callable[[str], Any] = str


class LocalShards:
    """The shards of a local dataset folder, in the viewer's order (format, source as `mmat_1m.SOURCES`
    lists them, split, file name): the order the audit reads rows in, so its examples are stable."""

    def __init__(self, folder: str | Path) -> None:
        from mmat_1m import FORMATS, SOURCES, SPLITS

        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a dataset folder (a Hub repo needs a store passed in)")
        found = []
        for fmt in FORMATS:
            for path in (folder / "data" / fmt).glob("*/*.parquet"):
                split, source = path.name.split("-", 1)[0], path.parent.name
                if split in SPLITS and not path.name.startswith("."):
                    order = SOURCES.index(source) if source in SOURCES else len(SOURCES)
                    found.append(((FORMATS.index(fmt), order, source, SPLITS.index(split), path.name),
                                  LocalShard(fmt, source, split, str(path))))
        self.shards = [shard for _, shard in sorted(found, key=lambda item: item[0])]

    def shards_of(self, fmt: str) -> list[LocalShard]:
        return [s for s in self.shards if s.format == fmt]

    def take(self, shard: LocalShard, rows: list[int], columns: Optional[list[str]] = None) -> pa.Table:
        """`rows` of one shard as an Arrow table, in their order, reading only their row groups."""
        pf = pq.ParquetFile(shard.path)
        sizes = np.array([pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(sizes)))
        rows_np = np.asarray(rows, dtype=np.int64)
        groups = np.searchsorted(starts, rows_np, side="right") - 1
        wanted = sorted(set(groups.tolist()))
        table = pf.read_row_groups(wanted, columns=columns)
        offsets = {rg: int(sizes[wanted[:k]].sum()) for k, rg in enumerate(wanted)}
        return table.take(pa.array([offsets[int(g)] + int(r - starts[g]) for r, g in zip(rows_np, groups)], pa.int64()))

    def rows(self, shard: LocalShard, rows: list[int], columns: Optional[list[str]] = None) -> list[dict[str, Any]]:
        return self.take(shard, rows, columns).to_pylist() if len(rows) else []


# ---------------------------------------------------------------------------------------- reading
def _batches(parquet: Any, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """`parquet`: what `pq.ParquetFile` reads (a path, or a Hub file opened by the store)."""
    pf = pq.ParquetFile(parquet)
    names = pf.schema_arrow.names
    cols = [c for c in columns if c in names] + [c for c in _OPTIONAL if c in names]
    yield from pf.iter_batches(batch_size=256, columns=cols)


def _tokens_per_row(batch: pa.RecordBatch) -> np.ndarray:
    """Text tokens per row, counted as the card counts them (`generation.text_tokens.TOKEN_PATTERN`)."""
    messages = batch.column("messages")
    msg = pc.list_flatten(messages)
    msg_row = np.asarray(pc.list_parent_indices(messages))
    content = pc.struct_field(msg, "content")
    blocks = pc.list_flatten(content)
    if not len(blocks):
        return np.zeros(batch.num_rows, dtype=np.int64)
    block_row = msg_row[np.asarray(pc.list_parent_indices(content))]
    tok = np.asarray(pc.fill_null(pc.count_substring_regex(pc.struct_field(blocks, "text"), TOKEN_PATTERN), 0))
    return np.bincount(block_row, weights=tok, minlength=batch.num_rows)[: batch.num_rows].astype(np.int64)


def _id_keys(ids: list[str]) -> np.ndarray:
    """64-bit keys of ids (xxh3): what the token ratio matches the two formats' rows by, 8 bytes a row
    instead of a dict of id strings."""
    import xxhash

    return np.fromiter((xxhash.xxh3_64_intdigest(i.encode("utf-8")) for i in ids), dtype=np.uint64, count=len(ids))


class _Tokens:
    """Text tokens per id of one format, as (id key, tokens) arrays grown shard by shard."""

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []

    def add(self, keys: np.ndarray, tokens: np.ndarray) -> None:
        self.keys.append(np.asarray(keys, dtype=np.uint64))
        self.counts.append(np.asarray(tokens, dtype=np.int64))

    def per_id(self, repeated: str) -> tuple[np.ndarray, np.ndarray]:
        """(sorted distinct keys, tokens); an id met twice keeps its `last` count or their `sum`."""
        keys = np.concatenate(self.keys) if self.keys else np.zeros(0, np.uint64)
        counts = np.concatenate(self.counts) if self.counts else np.zeros(0, np.int64)
        if repeated == "last":
            distinct, last = np.unique(keys[::-1], return_index=True)
            return distinct, counts[::-1][last]
        distinct, inverse = np.unique(keys, return_inverse=True)
        return distinct, np.bincount(inverse.ravel(), weights=counts, minlength=len(distinct)).astype(np.int64)


def _token_ratio(audited: _Tokens, other: _Tokens, audited_format: str) -> Optional[float]:
    """ORR tokens / RR tokens over the ids both formats have (None when none, or no RR token)."""
    keys, counts = audited.per_id("last")
    other_keys, other_counts = other.per_id("sum")
    _, mine, theirs = np.intersect1d(keys, other_keys, assume_unique=True, return_indices=True)
    if not len(mine):
        return None
    ours, others = int(counts[mine].sum()), int(other_counts[theirs].sum())
    rr, orr = (ours, others) if audited_format == "rr" else (others, ours)
    return orr / rr if rr else None


class _TextKeys:
    """Per row read, in order: the key of its texts and where it is (shard number, row in the shard),
    as arrays (24 bytes a row), so the exact-duplicate check holds no per-row Python object."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []

    def add(self, keys: np.ndarray, shard: int) -> None:
        """`keys`: (rows, 2) hi and lo halves of the shard's rows' text keys, in row order."""
        part = np.zeros(len(keys), dtype=_TEXT_KEY)
        part["hi"], part["lo"] = keys[:, 0], keys[:, 1]
        part["shard"] = shard
        part["row"] = np.arange(len(keys))
        self.parts.append(part)

    def rows(self) -> np.ndarray:
        """Every row read, in reading order (a row's number in the audit is its position here)."""
        return np.concatenate(self.parts) if self.parts else np.zeros(0, dtype=_TEXT_KEY)

    def repeated(self, rows: np.ndarray) -> Iterator[np.ndarray]:
        """The numbers of the rows of each text met more than once (in reading order), texts in order
        of first meeting."""
        if not len(rows):
            return
        keys = np.stack([rows["hi"], rows["lo"]], axis=1).view(np.dtype((np.void, 16))).ravel()
        _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        again = np.flatnonzero(counts[inverse] > 1)
        if not len(again):
            return
        order = again[np.lexsort((again, first[inverse[again]]))]
        groups = inverse[order]
        bounds = np.concatenate(([0], np.flatnonzero(groups[1:] != groups[:-1]) + 1, [len(order)]))
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            yield order[a:b]


_TEXT_KEY = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("shard", "<i4"), ("row", "<i8")])


# ------------------------------------------------------------------------------------- per shard
@dataclass
class ShardAudit:
    """The audit's reading of one shard file: everything the dataset-wide report is made of. Merged in
    shard order (`audit_dataset`) it gives exactly the report of reading the rows one by one.

    `kind` "rows": the audited format's reading; "tokens": only `id_keys` and `tokens` (the other
    format, for the ORR/RR token ratio)."""

    kind: str = "rows"
    rows: int = 0
    groups: dict[str, GroupStats] = field(default_factory=dict)
    # (kind, id, source, why) in reading order: the first `EXAMPLES_PER_SOURCE` per kind and source,
    # all that `AuditReport.example` could keep from this shard whatever came before it
    examples: list[tuple[str, str, str, str]] = field(default_factory=list)
    judge_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    text_keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.uint64))  # per row: hi, lo
    near_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows with content
    signatures: np.ndarray = field(default_factory=lambda: np.zeros((0, SIGNATURE_VALUES), np.uint64))  # per near row
    id_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))  # per row (`_id_keys`)
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per row


def audit_shard(parquet: Any) -> ShardAudit:
    """The audit's reading of every row of one shard (`parquet`: what `pq.ParquetFile` reads)."""
    out = ShardAudit("rows")
    examples: Counter = Counter()
    judge: list[float] = []
    text_keys: list[int] = []
    near_rows: list[int] = []
    signatures: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    tokens: list[np.ndarray] = []
    for batch in _batches(parquet, _COLUMNS):
        counts = _tokens_per_row(batch)
        for i, row in enumerate(batch.to_pylist()):
            q = row_quality(row, int(counts[i]))
            for key in ("total", q.source, f"{q.source}/{q.subset}"):
                out.groups.setdefault(key, GroupStats()).add(q)
            for kind, why in failings(q):
                if examples[kind, q.source] < EXAMPLES_PER_SOURCE:
                    examples[kind, q.source] += 1
                    out.examples.append((kind, q.id, q.source, why))
            if q.judge_score is not None:
                judge.append(float(q.judge_score))
            text_keys.append(q.text_key)
            if q.content:
                signatures.append(minhash(q.content))
                near_rows.append(out.rows + i)
        ids.append(_id_keys(batch.column("id").to_pylist()))
        tokens.append(counts)
        out.rows += batch.num_rows
    out.judge_scores = np.asarray(judge, dtype=np.float64)
    out.text_keys = np.array([(k >> 64, k & 0xFFFFFFFFFFFFFFFF) for k in text_keys], dtype=np.uint64).reshape(-1, 2)
    out.near_rows = np.asarray(near_rows, dtype=np.int64)
    if signatures:
        out.signatures = np.stack(signatures).astype(np.uint64)
    if ids:
        out.id_keys, out.tokens = np.concatenate(ids), np.concatenate(tokens).astype(np.int64)
    return out


def shard_tokens(parquet: Any) -> ShardAudit:
    """Only the text tokens per id of one shard (the other format's side of the token ratio)."""
    ids, tokens, rows = [], [], 0
    for batch in _batches(parquet, ["id", "messages"]):
        ids.append(_id_keys(batch.column("id").to_pylist()))
        tokens.append(_tokens_per_row(batch))
        rows += batch.num_rows
    out = ShardAudit("tokens", rows=rows)
    if ids:
        out.id_keys, out.tokens = np.concatenate(ids), np.concatenate(tokens).astype(np.int64)
    return out


def _reader(kind: str) -> Any:
    """What reads a shard for a `kind` of `ShardAudit` ("rows" or "tokens")."""
    return audit_shard if kind == "rows" else shard_tokens


def _read(shard: Any, kind: str) -> ShardAudit:
    return _reader(kind)(shard.opener(shard.path))


def _id_of(store: Any, shards: list[Any], row: np.void) -> str:
    """A row's id, read back from its shard (the audit keeps where rows are, not their ids)."""
    return store.rows(shards[int(row["shard"])], [int(row["row"])], columns=["id"])[0]["id"]


_IMAGE_READ_ROWS = 64  # rows whose images are read at once for the exact-duplicate check (one row group of ours)


def _image_digests(images: pa.Array | pa.ChunkedArray, xxhash: Any) -> list[bytes]:
    """Per row of an `images` column, the xxh3-128 digest of its images' bytes joined by NUL (no image, a
    null list, a null image: empty bytes), hashed in the Arrow buffers. Turning the rows into Python
    dicts kept hundreds of MB alive after a 200k-row audit (the allocator could not give back memory
    the surviving digests were scattered through)."""
    lists = images.combine_chunks() if isinstance(images, pa.ChunkedArray) else images
    listed = lists.is_valid().to_numpy(zero_copy_only=False)
    bounds = lists.offsets.to_numpy()  # into `lists.values`, the whole child array
    data = pc.struct_field(lists.values, "bytes")
    present = data.is_valid().to_numpy(zero_copy_only=False)
    width = np.int64 if pa.types.is_large_binary(data.type) else np.int32
    _, offsets, blob = data.buffers()
    ends = np.frombuffer(offsets, dtype=width)[data.offset: data.offset + len(data) + 1].tolist() if len(data) else []
    view = memoryview(blob) if blob is not None else memoryview(b"")
    out = []
    for row in range(len(lists)):
        digest = xxhash.xxh3_128()
        if listed[row]:
            for k in range(int(bounds[row]), int(bounds[row + 1])):
                if k > bounds[row]:
                    digest.update(b"\x00")
                if present[k]:
                    digest.update(view[ends[k]:ends[k + 1]])
        out.append(digest.digest())
    return out


def _image_keys(store: Any, shards: list[Any], rows: np.ndarray, numbers: np.ndarray, xxhash: Any) -> np.ndarray:
    """The digest (`_image_digests`) of each numbered row's images, in the order of `numbers`, reading
    each shard's rows in sorted batches (a row group is read once per batch, not once per row: with
    many repeated texts, e.g. templated replies, per-row reads were most of the audit)."""
    keys = np.zeros(len(numbers), dtype="V16")
    shard_of = rows["shard"][numbers]
    for shard in np.unique(shard_of).tolist():
        mine = np.flatnonzero(shard_of == shard)  # positions in `numbers`
        mine = mine[np.argsort(rows["row"][numbers[mine]], kind="stable")]
        for start in range(0, len(mine), _IMAGE_READ_ROWS):
            batch = mine[start:start + _IMAGE_READ_ROWS]
            table = store.take(shards[shard], rows["row"][numbers[batch]].tolist(), columns=["images"])
            keys[batch] = np.frombuffer(b"".join(_image_digests(table.column("images"), xxhash)), dtype="V16")
        _give_back_arrow_memory()
    return keys


def _give_back_arrow_memory() -> None:
    """Return the pages Arrow's allocator keeps after a shard's batches are freed: without it a 200k-row
    audit kept 300 MB more than it ever used at once."""
    pa.default_memory_pool().release_unused()


def _exact_duplicates(report: Any, store: Any, shards: list[Any], text_keys: _TextKeys, rows: np.ndarray,
                      xxhash: Any) -> np.ndarray:
    """Rows with the same text are exact duplicates when their image bytes match too (read only for them).
    Returns, per row number, whether the row repeats an earlier one."""
    repeats = np.zeros(len(rows), dtype=bool)
    groups = list(text_keys.repeated(rows))
    if not groups:
        return repeats
    numbers = np.concatenate(groups)  # group by group, each in reading order
    # (text group, image digest) per row: a row repeats the first row read with the same pair
    pairs = np.zeros(len(numbers), dtype=[("group", "<i8"), ("images", "V16")])
    pairs["group"] = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    pairs["images"] = _image_keys(store, shards, rows, numbers, xxhash)
    _, first, inverse = np.unique(pairs.view(np.dtype((np.void, pairs.itemsize))), return_index=True,
                                  return_inverse=True)
    original = numbers[first[inverse.ravel()]]
    again = original != numbers
    report.exact_duplicates += int(again.sum())
    repeats[numbers[again]] = True
    for n, o in zip(numbers[again].tolist(), original[again].tolist()):
        if len(report.examples["exact_duplicate"]) >= EXAMPLES_PER_KIND:
            break
        report.examples["exact_duplicate"].append({"id": _id_of(store, shards, rows[n]),
                                                   "why": f"same as {_id_of(store, shards, rows[o])}"})
    return repeats
