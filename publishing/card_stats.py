"""The dataset card's numbers, read from the shards alone (never from a run's memory).

Row counts per config, split and source come from parquet metadata; everything else (turns, text
tokens, images, operator calls and the dialogues that made them, the backends behind the results,
reflections, teacher models, tokens and cost, dropped QA pairs) from the non-image columns of
`mmat_1m.FEATURES`, scanned in batches with pyarrow compute. Teacher usage is counted once per
dialogue: its RR and ORR rows share it. Shards written before a column existed (`meta`,
`observations.backend`) still get their numbers, without that column's.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmat_1m import CONFIGS, FORMATS, SPLITS

# A tokenizer-free token count: words and single punctuation marks (RE2 syntax, ASCII \w).
TOKEN_PATTERN = r"\w+|[^\w\s]"
_STAT_COLUMNS = ["id", "source", "subset", "messages", "steps", "reflection", "teacher"]
_OPTIONAL_STAT_COLUMNS = ["meta"]  # shards written before a `meta` field existed still get a card


@dataclass
class FormatStats:
    rows: int = 0
    turns: int = 0  # assistant messages
    tokens: int = 0
    images: int = 0
    turn_hist: Counter = field(default_factory=Counter)
    operator_calls: Counter = field(default_factory=Counter)
    operator_dialogues: Counter = field(default_factory=Counter)
    reflections: Counter = field(default_factory=Counter)


@dataclass
class CardStats:
    # (format, source, split) -> rows / parquet bytes
    rows: dict = field(default_factory=lambda: defaultdict(int))
    num_bytes: dict = field(default_factory=lambda: defaultdict(int))
    download_bytes: dict = field(default_factory=lambda: defaultdict(int))
    subsets: dict = field(default_factory=lambda: defaultdict(Counter))  # source -> subset -> dialogues
    formats: dict = field(default_factory=lambda: {f: FormatStats() for f in FORMATS})
    teacher_models: Counter = field(default_factory=Counter)  # dialogues per model
    # operator -> backend -> results in dialogues (steps[*].observations[*].backend), counted once per dialogue
    operator_backends: dict = field(default_factory=lambda: defaultdict(Counter))
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    dialogues: int = 0  # distinct ids over all formats
    # QA pairs the foundation's `drop_qas` filters removed (row `meta.dropped_qas`, once per dialogue);
    # None when no row records it (shards from an engine that did not count them)
    dropped_qas: Optional[int] = None

    def shards(self) -> int:
        return len(self.rows)


def _shard_files(dataset_dir: Path) -> list[tuple[str, str, str, Path]]:
    out = []
    for fmt in FORMATS:
        base = dataset_dir / "data" / fmt
        if not base.is_dir():
            continue
        for source_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            for split in SPLITS:
                for path in sorted(source_dir.glob(f"{split}-*.parquet")):
                    out.append((fmt, source_dir.name, split, path))
    return out


def _per_row_sum(parents: np.ndarray, weights: Optional[np.ndarray], n: int) -> np.ndarray:
    if len(parents) == 0:
        return np.zeros(n, dtype=np.int64)
    return np.bincount(parents, weights=weights, minlength=n)[:n]


def _scan_batch(batch: pa.RecordBatch, fs: FormatStats, stats: CardStats, seen: dict[str, None]) -> None:
    n = batch.num_rows
    fs.rows += n
    # Turns (assistant messages) and text tokens per row.
    messages = batch.column("messages")
    msg = pc.list_flatten(messages)
    msg_row = np.asarray(pc.list_parent_indices(messages))
    roles = np.asarray(pc.fill_null(pc.struct_field(msg, "role"), ""), dtype=object)
    turns = _per_row_sum(msg_row[roles == "assistant"], None, n).astype(np.int64)
    content = pc.struct_field(msg, "content")
    blocks = pc.list_flatten(content)
    block_row = msg_row[np.asarray(pc.list_parent_indices(content))] if len(blocks) else np.zeros(0, np.int64)
    texts = pc.struct_field(blocks, "text")
    kinds = np.asarray(pc.fill_null(pc.struct_field(blocks, "type"), ""), dtype=object)
    fs.images += int((kinds == "image").sum())
    tok = np.asarray(pc.fill_null(pc.count_substring_regex(texts, TOKEN_PATTERN), 0), dtype=np.float64)
    fs.tokens += int(tok.sum())
    fs.turns += int(turns.sum())
    fs.turn_hist.update(turns.tolist())
    # Operator usage: steps[*].operators, and steps[*].rag_query as `rag`.
    steps = batch.column("steps")
    flat_steps = pc.list_flatten(steps)
    step_row = np.asarray(pc.list_parent_indices(steps))
    ops = pc.struct_field(flat_steps, "operators")
    op_names = np.asarray(pc.list_flatten(ops).to_pylist(), dtype=object)
    op_row = step_row[np.asarray(pc.list_parent_indices(ops))] if len(op_names) else np.zeros(0, np.int64)
    rag = np.asarray(pc.fill_null(pc.utf8_length(pc.struct_field(flat_steps, "rag_query")), 0)) > 0
    if rag.any():
        op_names = np.concatenate([op_names, np.array(["rag"] * int(rag.sum()), dtype=object)])
        op_row = np.concatenate([op_row, step_row[rag]])
    fs.operator_calls.update(op_names.tolist())
    fs.operator_dialogues.update(name for _, name in set(zip(op_row.tolist(), op_names.tolist())))
    _count_backends(batch, flat_steps, step_row, stats, seen)
    # Reflection kinds.
    fs.reflections.update(pc.fill_null(pc.struct_field(batch.column("reflection"), "kind"), "none").to_pylist())
    # Teacher usage, counted once per dialogue (the RR and ORR rows of a dialogue share it).
    teacher = batch.column("teacher")
    ids = batch.column("id").to_pylist()
    sources = batch.column("source").to_pylist()
    subsets = batch.column("subset").to_pylist()
    cols = [pc.fill_null(pc.struct_field(teacher, k), d).to_pylist()
            for k, d in (("model", ""), ("prompt_tokens", 0), ("completion_tokens", 0), ("cost_usd", 0.0))]
    dropped = _meta_field(batch, "dropped_qas")
    for row_id, source, subset, model, pt, ct, cost, n_dropped in zip(ids, sources, subsets, *cols, dropped):
        if row_id in seen:
            continue
        seen[row_id] = None
        if n_dropped is not None:
            stats.dropped_qas = (stats.dropped_qas or 0) + int(n_dropped)
        stats.dialogues += 1
        stats.subsets[source][subset] += 1
        if model:
            stats.teacher_models[model] += 1
        stats.prompt_tokens += int(pt)
        stats.completion_tokens += int(ct)
        stats.cost_usd += float(cost)


def _meta_field(batch: pa.RecordBatch, name: str) -> list:
    """`meta.{name}` of every row, None where a row (or the whole shard's schema) lacks it."""
    if "meta" not in batch.schema.names or batch.schema.field("meta").type.get_field_index(name) < 0:
        return [None] * batch.num_rows
    return pc.struct_field(batch.column("meta"), name).to_pylist()

def _count_backends(batch: pa.RecordBatch, flat_steps: pa.Array, step_row: np.ndarray, stats: CardStats,
                    seen: dict[str, None]) -> None:
    """Which backend produced each operator result, once per dialogue (shards older than the
    `observations.backend` field have none to count)."""
    obs = pc.struct_field(flat_steps, "observations")
    flat = pc.list_flatten(obs)
    if not len(flat) or "backend" not in {f.name for f in flat.type}:
        return
    obs_row = step_row[np.asarray(pc.list_parent_indices(obs))]
    ids = batch.column("id").to_pylist()
    new = {i for i, row_id in enumerate(ids) if row_id not in seen}
    names = pc.struct_field(flat, "operator").to_pylist()
    backends = pc.struct_field(flat, "backend").to_pylist()
    for row, name, backend in zip(obs_row.tolist(), names, backends):
        if row in new and name and backend:
            stats.operator_backends[name][backend] += 1


def collect_stats(dataset_dir: str | Path) -> CardStats:
    """Read every shard of the folder (metadata, and all columns but `images`) into `CardStats`."""
    root = Path(dataset_dir)
    stats = CardStats()
    seen: dict[str, None] = {}
    for fmt, source, split, path in _shard_files(root):
        pf = pq.ParquetFile(path)
        md = pf.metadata
        key = (fmt, source, split)
        stats.rows[key] += md.num_rows
        stats.num_bytes[key] += sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
        stats.download_bytes[key] += path.stat().st_size
        columns = [c for c in _STAT_COLUMNS if c in pf.schema_arrow.names]
        if len(columns) < len(_STAT_COLUMNS):
            missing = sorted(set(_STAT_COLUMNS) - set(columns))
            raise ValueError(f"{path}: shard lacks columns {missing}; not an mmat-1m shard")
        columns += [c for c in _OPTIONAL_STAT_COLUMNS if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=4096, columns=columns):
            _scan_batch(batch, stats.formats[fmt], stats, seen)
    return stats


def config_split_counts(root: Path, stats: CardStats) -> dict[str, dict[str, tuple[int, int, int]]]:
    """config -> split -> (rows, num_bytes, download_bytes), only for splits with shards."""
    out: dict[str, dict[str, tuple[int, int, int]]] = {}
    for spec in CONFIGS:
        for split in SPLITS:
            files = list(root.glob(spec.shard_glob(split)))
            if not files:
                continue
            keys = {(spec.format, f.parent.name, split) for f in files}
            out.setdefault(spec.name, {})[split] = (
                sum(stats.rows[k] for k in keys),
                sum(stats.num_bytes[k] for k in keys),
                sum(stats.download_bytes[k] for k in keys),
            )
    return out
