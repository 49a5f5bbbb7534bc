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
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from generation.errors import MmatError
from generation.counts import add_counts
from mmat_1m import CONFIGS, FORMATS, SPLITS

# A tokenizer-free token count: words and single punctuation marks (RE2 syntax, ASCII \w).
from generation.text_tokens import TOKEN_PATTERN  # noqa: E402,F401 - one definition, the audit's too
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
    origins: Counter = field(default_factory=Counter)  # reflection.origin (check / staged) of reflected rows


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
    # (evidence kind or "", "yes" | "no" | "unknown") -> dialogues: `meta.grounded` by `meta.evidence`
    grounded: Counter = field(default_factory=Counter)
    teacher_modes: Counter = field(default_factory=Counter)  # `meta.teacher_mode` ("" : none, the offline teacher)

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


@dataclass
class ShardStats:
    """The card's numbers of one shard file: its format's counts, and per row what is counted once per
    dialogue (a dialogue's RR and ORR rows share it: `add_shard` counts it at the first row of its id,
    in the folder's shard order); merged, it gives exactly the numbers of reading the rows one by one."""

    format: FormatStats = field(default_factory=FormatStats)
    ids: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    subsets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    completion_tokens: list[int] = field(default_factory=list)
    cost_usd: list[float] = field(default_factory=list)
    dropped_qas: list[Optional[int]] = field(default_factory=list)
    grounded: list[Optional[bool]] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    teacher_modes: list[str] = field(default_factory=list)
    # (row, operator, backend) of every operator result with both named (`observations.backend`)
    backends: list[tuple[int, str, str]] = field(default_factory=list)


def _scan_batch(batch: pa.RecordBatch, out: ShardStats) -> None:
    fs = out.format
    n = batch.num_rows
    first_row = fs.rows
    fs.rows += n
    # Turns (assistant messages) and text tokens per row.
    messages = batch.column("messages")
    msg = pc.list_flatten(messages)
    msg_row = np.asarray(pc.list_parent_indices(messages))
    roles = np.asarray(pc.fill_null(pc.struct_field(msg, "role"), ""), dtype=object)
    turns = _per_row_sum(msg_row[roles == "assistant"], None, n).astype(np.int64)
    content = pc.struct_field(msg, "content")
    blocks = pc.list_flatten(content)
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
    fs.operator_dialogues.update(name for _, name in dict.fromkeys(zip(op_row.tolist(), op_names.tolist())))
    out.backends += [(first_row + row, name, backend) for row, name, backend in _backends(flat_steps, step_row)]
    # Reflection kinds.
    reflection = batch.column("reflection")
    kinds = pc.fill_null(pc.struct_field(reflection, "kind"), "none").to_pylist()
    fs.reflections.update(kinds)
    if reflection.type.get_field_index("origin") >= 0:
        origins = pc.struct_field(reflection, "origin").to_pylist()
        fs.origins.update(o or "unknown" for k, o in zip(kinds, origins) if k not in ("", "none"))
    # Per row, what the card counts once per dialogue (`add_shard`).
    teacher = batch.column("teacher")
    out.ids += batch.column("id").to_pylist()
    out.sources += batch.column("source").to_pylist()
    out.subsets += batch.column("subset").to_pylist()
    for name, key, default in (("models", "model", ""), ("prompt_tokens", "prompt_tokens", 0),
                               ("completion_tokens", "completion_tokens", 0), ("cost_usd", "cost_usd", 0.0)):
        getattr(out, name).extend(pc.fill_null(pc.struct_field(teacher, key), default).to_pylist())
    out.dropped_qas += _meta_field(batch, "dropped_qas")
    out.grounded += _meta_field(batch, "grounded")
    out.evidence += [_evidence_kind(e) for e in _meta_field(batch, "evidence")]
    out.teacher_modes += [m or "" for m in _meta_field(batch, "teacher_mode")]


def _evidence_kind(value: Any) -> str:
    """`meta.evidence` as one name: a string as it is, a struct's `kind`, a list's kinds joined; "" when none."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return str(value.get("kind") or "")
    if isinstance(value, (list, tuple)):
        return "+".join(sorted({_evidence_kind(v) for v in value} - {""}))
    return ""


def _meta_field(batch: pa.RecordBatch, name: str) -> list:
    """`meta.{name}` of every row, None where a row (or the whole shard's schema) lacks it."""
    if "meta" not in batch.schema.names or batch.schema.field("meta").type.get_field_index(name) < 0:
        return [None] * batch.num_rows
    return pc.struct_field(batch.column("meta"), name).to_pylist()


def _backends(flat_steps: pa.Array, step_row: np.ndarray) -> list[tuple[int, str, str]]:
    """(row in the batch, operator, backend) of each operator result that names both (shards older than
    the `observations.backend` field have none)."""
    obs = pc.struct_field(flat_steps, "observations")
    flat = pc.list_flatten(obs)
    if not len(flat) or "backend" not in {f.name for f in flat.type}:
        return []
    obs_row = step_row[np.asarray(pc.list_parent_indices(obs))]
    names = pc.struct_field(flat, "operator").to_pylist()
    backends = pc.struct_field(flat, "backend").to_pylist()
    return [(row, name, backend) for row, name, backend in zip(obs_row.tolist(), names, backends) if name and backend]


def scan_shard(path: str | Path) -> ShardStats:
    """The card's numbers of one shard file (all columns but `images`)."""
    pf = pq.ParquetFile(path)
    columns = [c for c in _STAT_COLUMNS if c in pf.schema_arrow.names]
    if len(columns) < len(_STAT_COLUMNS):
        missing = sorted(set(_STAT_COLUMNS) - set(columns))
        raise ValueError(f"{path}: shard lacks columns {missing}; not an mmat-1m shard")
    columns += [c for c in _OPTIONAL_STAT_COLUMNS if c in pf.schema_arrow.names]
    out = ShardStats()
    for batch in pf.iter_batches(batch_size=4096, columns=columns):
        _scan_batch(batch, out)
    return out


def add_shard(stats: CardStats, fmt: str, shard: ShardStats, seen: set[str]) -> None:
    """Add one shard's numbers; what is counted once per dialogue is counted at the first row of each id
    (`seen`: the ids met so far, over every format)."""
    add_counts(stats.formats[fmt], shard.format)
    first: set[int] = set()
    for row, (row_id, source, subset, model, pt, ct, cost, dropped, grounded, evidence, mode) in enumerate(zip(
            shard.ids, shard.sources, shard.subsets, shard.models, shard.prompt_tokens, shard.completion_tokens,
            shard.cost_usd, shard.dropped_qas, shard.grounded, shard.evidence, shard.teacher_modes)):
        if row_id in seen:
            continue
        seen.add(row_id)
        first.add(row)
        if dropped is not None:
            stats.dropped_qas = (stats.dropped_qas or 0) + int(dropped)
        stats.dialogues += 1
        stats.subsets[source][subset] += 1
        if model:
            stats.teacher_models[model] += 1
        stats.prompt_tokens += int(pt)
        stats.completion_tokens += int(ct)
        stats.cost_usd += float(cost)
        stats.grounded[(evidence, {True: "yes", False: "no"}.get(grounded, "unknown"))] += 1
        stats.teacher_modes[mode] += 1
    for row, name, backend in shard.backends:
        if row in first:
            stats.operator_backends[name][backend] += 1


def collect_stats(dataset_dir: str | Path) -> CardStats:
    """Read every shard of the folder (metadata, and all columns but `images`) into `CardStats`."""
    root = Path(dataset_dir)
    stats = CardStats()
    seen: set[str] = set()
    for fmt, source, split, path in _shard_files(root):
        try:
            md = pq.ParquetFile(path).metadata
            shard = scan_shard(path)
        except (OSError, ValueError, pa.ArrowException) as exc:
            why = str(exc).replace(f"{path}: ", "") if isinstance(exc, ValueError) and "mmat-1m shard" in str(exc) \
                else f"not a readable parquet file ({type(exc).__name__}: {exc})"
            raise BadShardFile(f"{path}: {why}; a card cannot describe it (remove the file, or rerun "
                               f"`mmat generate` to rewrite it)") from None
        key = (fmt, source, split)
        stats.rows[key] += md.num_rows
        stats.num_bytes[key] += sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
        stats.download_bytes[key] += path.stat().st_size
        add_shard(stats, fmt, shard, seen)
    return stats


class BadShardFile(MmatError, ValueError):
    """A shard of the folder that cannot be read or is not an mmat-1m shard (one line naming the file):
    the card refuses to describe a folder `load_dataset` would fail on."""


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
