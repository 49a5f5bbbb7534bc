"""The dataset card: `README.md` of the dataset folder, rendered from `cards/dataset_card.md.j2`.

The card is a pure function of the parquet shards in the folder (plus the optional `run_stats` of the
generation run, and the version/changelog already in an existing card): row counts per config, split
and source come from parquet metadata, everything else (operator usage, reflections, turns, tokens,
teacher cost) from the non-image columns of `mmat_1m.FEATURES`. Its YAML front matter carries the
`configs:` list from `mmat_1m.card_configs` (what makes `load_dataset(folder_or_repo, "orr")` work)
and `dataset_info` in the form `datasets` itself writes (features from `FEATURES`, split sizes), so
`load_dataset` checks the split sizes it reads against the card.

    write_card(Path("mmat-1m"), version="1.0.0", changelog=["First release."], run_stats={...})
"""
from __future__ import annotations

import datetime as _dt
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from mmat_1m import CONFIGS, FEATURES, FORMATS, SOURCES, SPLITS, card_configs

CARD_FILENAME = "README.md"
FIGURE_PATH = "figures/stats.png"
QUALITY_FIGURE_PATH = "figures/quality.png"
TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "cards"
TEMPLATE_NAME = "dataset_card.md.j2"
OPERATORS = ("image_caption", "ocr", "label_bbox", "face_detection", "rag")
# A tokenizer-free token count: words and single punctuation marks (RE2 syntax, ASCII \w).
TOKEN_PATTERN = r"\w+|[^\w\s]"
_STAT_COLUMNS = ["id", "source", "subset", "messages", "steps", "reflection", "teacher"]
_OPTIONAL_STAT_COLUMNS = ["meta"]  # shards written before a `meta` field existed still get a card


@dataclass(frozen=True)
class SourceLicense:
    name: str
    upstream: str
    url: str
    license_id: str  # Hub license identifier
    license: str  # human-readable
    note: str = ""


SOURCE_LICENSES: dict[str, SourceLicense] = {
    "visual_cot": SourceLicense("Visual CoT", "deepcs233/Visual-CoT", "https://huggingface.co/datasets/deepcs233/Visual-CoT",
                                "apache-2.0", "Apache 2.0", "images keep the licenses of the datasets Visual CoT draws on"),
    "llava_cot": SourceLicense("LLaVA-CoT", "Xkev/LLaVA-CoT-100k", "https://huggingface.co/datasets/Xkev/LLaVA-CoT-100k",
                               "apache-2.0", "Apache 2.0", "images keep the licenses of the datasets LLaVA-CoT draws on"),
    "cauldron": SourceLicense("The Cauldron", "HuggingFaceM4/the_cauldron", "https://huggingface.co/datasets/HuggingFaceM4/the_cauldron",
                              "cc-by-4.0", "CC BY 4.0 (prompts)", "each sub-dataset keeps its own, often more restrictive, license"),
    "tabmwp": SourceLicense("TabMWP", "lupantech/PromptPG", "https://github.com/lupantech/PromptPG",
                            "cc-by-nc-sa-4.0", "CC BY-NC-SA 4.0", "non-commercial, share-alike: rows from this source inherit it"),
    "infoseek": SourceLicense("InfoSeek", "open-vision-language/infoseek", "https://github.com/open-vision-language/infoseek",
                              "apache-2.0", "Apache 2.0", "images come from OVEN / Wikipedia and keep their licenses"),
}

_SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|authori[sz]ation|credential|^token$|_token$|hf_token|bearer)", re.I)
_SECRET_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_\-]{8,}|api_[A-Za-z0-9]{16,})\b")


class _NoAliasDumper(yaml.SafeDumper):
    """Writes the (shared) features list in full under every config, as `datasets` does: no &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# --------------------------------------------------------------------------------------- statistics
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


def _config_split_counts(root: Path, stats: CardStats) -> dict[str, dict[str, tuple[int, int, int]]]:
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


def dataset_info_yaml(config_counts: dict[str, dict[str, tuple[int, int, int]]]) -> list[dict]:
    """The card's `dataset_info:` list, as `datasets.DatasetInfosDict.to_dataset_card_data` writes it."""
    features = FEATURES._to_yaml_list()
    infos = []
    for name in sorted(config_counts):
        splits = config_counts[name]
        infos.append({
            "config_name": name,
            "features": features,
            "splits": [{"name": s, "num_bytes": b, "num_examples": r} for s, (r, b, _) in splits.items()],
            "download_size": sum(d for _, _, d in splits.values()),
            "dataset_size": sum(b for _, b, _ in splits.values()),
        })
    return infos


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "100M<n<1B"


# ---------------------------------------------------------------------------------- version / log
def normalise_version(version: str) -> str:
    """`v1.2.0` → `1.2.0` (the card stores the bare version; tags carry the `v`)."""
    return version[1:] if version[:1] in ("v", "V") and version[1:2].isdigit() else version


def read_card_metadata(card_path: str | Path) -> dict:
    """The YAML front matter of an existing card, or {} when there is none."""
    path = Path(card_path)
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return {}
    data = yaml.safe_load(match.group(1))
    return data if isinstance(data, dict) else {}


def _split_counts_from_meta(meta: dict) -> dict[str, dict[str, int]]:
    infos = meta.get("dataset_info") or []
    if isinstance(infos, dict):
        infos = [infos]
    return {
        i.get("config_name", "default"): {s["name"]: int(s.get("num_examples", 0)) for s in i.get("splits") or []}
        for i in infos
    }


def _auto_changes(previous: dict[str, dict[str, int]], current: dict[str, dict[str, int]], stats: CardStats) -> list[str]:
    if not previous:
        n_sources = len({s for (_, s, _) in stats.rows})
        return [f"First release: {stats.dialogues:,} dialogues from {n_sources} sources, in RR and ORR formats."]
    changes = []
    for name in ("rr", "orr"):
        before, after = previous.get(name, {}), current.get(name, {})
        diffs = [f"{s} {before.get(s, 0):,} → {after.get(s, 0):,}" for s in SPLITS if before.get(s, 0) != after.get(s, 0)]
        if diffs:
            changes.append(f"`{name}` rows: " + ", ".join(diffs) + ".")
    return changes or ["Card re-rendered; row counts unchanged."]


def _version_key(version: str) -> tuple:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+]", str(version)))


def merge_changelogs(*logs: Iterable[dict]) -> list[dict]:
    """One changelog from several (the local card's, the Hub card's): one entry per version, the first
    log's entry winning, newest version first."""
    merged: dict[str, dict] = {}
    for log in logs:
        for entry in log or []:
            if isinstance(entry, dict) and entry.get("version") and str(entry["version"]) not in merged:
                merged[str(entry["version"])] = dict(entry, version=str(entry["version"]))
    return sorted(merged.values(), key=lambda e: _version_key(e["version"]), reverse=True)


def _changelog(meta: dict, version: Optional[str], changes: Optional[list[str]], auto: list[str]) -> tuple[Optional[str], list[dict]]:
    log = merge_changelogs(meta.get("changelog") or [])
    previous_version = meta.get("version")
    if version is None:
        return (str(previous_version) if previous_version else None), log
    version = normalise_version(str(version))
    existing = next((e for e in log if str(e["version"]) == version), None)
    entry = {
        "version": version,
        "date": (existing or {}).get("date") or _dt.date.today().isoformat(),
        "changes": list(changes) if changes else ((existing or {}).get("changes") or auto),
    }
    return version, merge_changelogs([entry], log)


# ---------------------------------------------------------------------------------------- figure
def render_figure(stats: CardStats, path: str | Path) -> Path:
    """Operator usage (calls per operator, RR and ORR) and turns per dialogue, as one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    names = [op for op in OPERATORS] + sorted(
        {op for f in FORMATS for op in stats.formats[f].operator_calls} - set(OPERATORS))
    y = np.arange(len(names))
    for k, fmt in enumerate(FORMATS):
        calls = [stats.formats[fmt].operator_calls.get(op, 0) for op in names]
        ax1.barh(y + (k - 0.5) * 0.4, calls, height=0.4, label=fmt.upper())
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_xlabel("calls")
    ax1.set_title("Operator usage")
    ax1.legend()
    for k, fmt in enumerate(FORMATS):
        hist = stats.formats[fmt].turn_hist
        if hist:
            xs = sorted(hist)
            ax2.bar(np.array(xs) + (k - 0.5) * 0.4, [hist[x] for x in xs], width=0.4, label=fmt.upper())
    ax2.set_xlabel("assistant turns per dialogue")
    ax2.set_ylabel("dialogues")
    ax2.set_title("Turns per dialogue")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ rendering
def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("***" if _SECRET_KEY.search(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub("***", value)
    return value


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt_value(v)}" for k, v in value.items()) or "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt_value(v) for v in value) or "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v: f"{v:,}"
    env.filters["cell"] = _fmt_value
    return env.get_template(TEMPLATE_NAME)


def render_card(
    dataset_dir: str | Path,
    *,
    version: Optional[str] = None,
    changelog: Optional[list[str]] = None,
    run_stats: Optional[dict] = None,
    repo_id: Optional[str] = None,
    figure: Optional[str] = FIGURE_PATH,
    stats: Optional[CardStats] = None,
    previous_card: str | Path | None = None,
    examples: Optional[list[dict]] = None,
    quality: Optional[str] = None,
) -> str:
    """The card text for the folder. `figure` is the PNG's path relative to the folder (None: no figure);
    `examples` the example dialogues (default: `publishing.examples.example_dialogues`, linking the
    example images already in the folder); `quality` the Quality section's body (default: the audit of
    the folder's shards, `quality_section`)."""
    from publishing.examples import example_dialogues

    root = Path(dataset_dir)
    stats = stats or collect_stats(root)
    configs = card_configs(root)
    if not configs:
        raise FileNotFoundError(f"no parquet shards under {root / 'data'}; nothing to describe")
    counts = _config_split_counts(root, stats)
    current = {name: {s: r for s, (r, _, _) in splits.items()} for name, splits in counts.items()}
    meta = read_card_metadata(root / CARD_FILENAME)
    # The row counts of the last released card are what an automatic changelog line compares against:
    # the local card's when it was released (it has a version), else none (a first release).
    released = meta if meta.get("version") else {}
    if previous_card is not None:
        # Another copy of this card (the one on the Hub) is the latest release: its changelog joins the
        # history and its split sizes are the baseline.
        other = read_card_metadata(previous_card)
        meta = {**meta, "changelog": merge_changelogs(meta.get("changelog") or [], other.get("changelog") or []),
                "version": meta.get("version") or other.get("version")}
        released = other if other.get("dataset_info") else released
    auto = _auto_changes(_split_counts_from_meta(released), current, stats)
    card_version, log = _changelog(meta, version, changelog, auto)

    present_sources = [s for s in SOURCES if any(k[1] == s for k in stats.rows)] + sorted(
        {k[1] for k in stats.rows} - set(SOURCES))
    licenses = [(s, SOURCE_LICENSES.get(s)) for s in present_sources]
    metadata: dict[str, Any] = {
        "pretty_name": "MMAT-1M (open reimplementation)",
        "language": ["en"],
        "license": "other",
        "license_name": "mixed-per-source",
        "license_details": "Each row keeps the license of its source dataset; see the Licenses section.",
        "source_licenses": {s: (lic.license_id if lic else "unknown") for s, lic in licenses},
        "task_categories": ["image-text-to-text", "visual-question-answering"],
        "tags": ["multimodal", "agent", "tool-use", "chain-of-thought", "reflection", "rag", "synthetic", "mmat-1m"],
        "size_categories": [size_category(max(stats.formats[f].rows for f in FORMATS))],
        "source_datasets": [SOURCE_LICENSES[s].upstream for s in present_sources if s in SOURCE_LICENSES],
        "configs": configs,
        "dataset_info": dataset_info_yaml(counts),
    }
    if card_version:
        metadata["version"] = card_version
    if log:
        metadata["changelog"] = log
    front = yaml.dump(metadata, Dumper=_NoAliasDumper, sort_keys=False, allow_unicode=True, width=120)

    fmt_rows = {}
    for fmt in FORMATS:
        fs = stats.formats[fmt]
        fmt_rows[fmt] = {
            "rows": fs.rows,
            "avg_turns": fs.turns / fs.rows if fs.rows else 0.0,
            "avg_tokens": fs.tokens / fs.rows if fs.rows else 0.0,
            "avg_images": fs.images / fs.rows if fs.rows else 0.0,
            "tokens": fs.tokens,
        }
    operators = [op for op in OPERATORS] + sorted(
        {op for f in FORMATS for op in stats.formats[f].operator_calls} - set(OPERATORS))
    operator_rows = [
        {"name": op, **{f"{fmt}_calls": stats.formats[fmt].operator_calls.get(op, 0) for fmt in FORMATS},
         **{f"{fmt}_dialogues": stats.formats[fmt].operator_dialogues.get(op, 0) for fmt in FORMATS},
         "backends": ", ".join(f"`{b}` ({n:,})" for b, n in stats.operator_backends[op].most_common()) or "-"}
        for op in operators
    ]
    reflection_kinds = ["none", "general", "math"] + sorted(
        {k for f in FORMATS for k in stats.formats[f].reflections} - {"none", "general", "math"})
    source_rows = [
        {
            "source": s,
            "name": SOURCE_LICENSES[s].name if s in SOURCE_LICENSES else s,
            "subsets": ", ".join(f"{sub} ({n:,})" for sub, n in sorted(stats.subsets[s].items())),
            **{f"{fmt}_{split}": stats.rows.get((fmt, s, split), 0) for fmt in FORMATS for split in SPLITS},
            **{fmt: sum(stats.rows.get((fmt, s, split), 0) for split in SPLITS) for fmt in FORMATS},
        }
        for s in present_sources
    ]
    config_rows = [
        {"name": spec.name, "description": spec.description,
         **{split: counts[spec.name].get(split, (0, 0, 0))[0] for split in SPLITS},
         "total": sum(r for r, _, _ in counts[spec.name].values())}
        for spec in CONFIGS if spec.name in counts
    ]
    total_tokens = stats.prompt_tokens + stats.completion_tokens
    run = _redact(dict(run_stats or {}))
    return _template().render(
        front_matter=front,
        version=card_version,
        changelog=log,
        repo_id=repo_id or "path/to/mmat-1m",
        revision=f"v{card_version}" if card_version else None,
        figure=figure,
        stats=stats,
        formats=FORMATS,
        splits=SPLITS,
        fmt_rows=fmt_rows,
        operator_rows=operator_rows,
        reflection_kinds=reflection_kinds,
        reflections={f: stats.formats[f].reflections for f in FORMATS},
        source_rows=source_rows,
        config_rows=config_rows,
        licenses=licenses,
        teacher_models=stats.teacher_models.most_common(),
        total_tokens=total_tokens,
        cost_usd=stats.cost_usd,
        cost_per_dialogue=(stats.cost_usd / stats.dialogues) if stats.dialogues else 0.0,
        tokens_per_dialogue=(total_tokens / stats.dialogues) if stats.dialogues else 0.0,
        run_stats=run,
        quarantine=_quarantine_line(run),
        token_pattern=TOKEN_PATTERN,
        has_tabmwp="tabmwp" in present_sources,
        examples=examples if examples is not None else example_dialogues(root),
        source_names={s: SOURCE_LICENSES[s].name for s in SOURCE_LICENSES},
        quality=quality if quality is not None else quality_section(root),
    )


def quality_section(root: Path, report: Any = None, write_figure: bool = False) -> str:
    """The Quality section (`generation.quality`): the audit of the folder's RR rows (ORR when it has none)
    as a table, with `figures/quality.png` (written with `write_figure`, else linked when present). An audit
    that fails leaves the card without the section, with a warning, rather than without a card."""
    from generation.quality.audit import audit_dataset
    from generation.quality.report import render_figure as render_quality_figure

    try:
        if report is None:
            report = audit_dataset(root, "rr" if any((root / "data" / "rr").glob("*/*.parquet")) else "orr")
        if write_figure:
            render_quality_figure(report, root / QUALITY_FIGURE_PATH)
        return report.markdown(figure=QUALITY_FIGURE_PATH if (root / QUALITY_FIGURE_PATH).is_file() else None)
    except Exception as exc:  # the card matters more than its Quality section
        logging.getLogger(__name__).warning("no Quality section in the card: %s: %s", type(exc).__name__, exc,
                                            exc_info=True)
        return ""


def _quarantine_line(run: dict) -> Optional[str]:
    """"3 (foundation 2, rationale 1)" from the run's quarantine counts, or None when the card was
    written without a generation run."""
    if "quarantined_total" not in run:
        return None
    by_stage = run.get("quarantine_by_stage") or {}
    detail = ", ".join(f"{stage} {n:,}" for stage, n in sorted(by_stage.items()) if isinstance(n, int))
    total = run["quarantined_total"]
    return f"{total:,}" + (f" ({detail})" if detail and isinstance(total, int) and total else "")


def write_card(
    dataset_dir: Path,
    *,
    version: str | None = None,
    changelog: list[str] | None = None,
    run_stats: dict | None = None,
    repo_id: str | None = None,
    previous_card: str | Path | None = None,
    quality_report: Any = None,
) -> Path:
    """Render `dataset_dir/README.md` (with `figures/stats.png` and the example dialogues' images under
    `figures/examples/`) from the shards in the folder.

    `version` (e.g. "1.1.0" or "v1.1.0") adds or replaces that version's changelog entry, whose lines are
    `changelog` (default: a summary of the row-count changes since the previous card); earlier entries
    of an existing card are kept. Without `version` the existing version and changelog are kept as they
    are. `run_stats` (quarantine counts, wall time, ...) is shown as given, with secret-looking keys and
    values redacted. `repo_id` goes into the card's loading example; `previous_card` (a path to another
    copy of the card, e.g. the one on the Hub) adds its changelog to the history; `quality_report` an
    `AuditReport` of the folder already computed (default: audited here). Returns the card's path.
    """
    root = Path(dataset_dir)
    if not card_configs(root):
        raise FileNotFoundError(f"no parquet shards under {root / 'data'}; nothing to describe")
    stats = collect_stats(root)
    try:
        render_figure(stats, root / FIGURE_PATH)
        figure: Optional[str] = FIGURE_PATH
    except ImportError as exc:  # matplotlib is a core dependency; a broken install still gets a card
        logging.getLogger(__name__).warning("no card figure (%s); pip install matplotlib", exc)
        figure = None
    from publishing.examples import example_dialogues

    examples = example_dialogues(root, write_images=True)
    text = render_card(root, version=version, changelog=changelog, run_stats=run_stats, repo_id=repo_id,
                       figure=figure, stats=stats, previous_card=previous_card, examples=examples,
                       quality=quality_section(root, quality_report, write_figure=True))
    out = root / CARD_FILENAME
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


# ------------------------------------------------------------------------------------- terminal
def split_front_matter(text: str) -> tuple[dict, str]:
    match = re.match(r"^---\s*\n(.*?)\n---\s*\n?", text, re.S)
    if not match:
        return {}, text
    data = yaml.safe_load(match.group(1)) or {}
    return (data if isinstance(data, dict) else {}), text[match.end():]


def render_card_terminal(
    text: str,
    *,
    console: Any = None,
    width: int | None = None,
    color: bool | None = None,
    echo: bool = True,
) -> str:
    """Show the card in a terminal with rich: a metadata panel (version, licenses, configs, size), then
    the Markdown body. Prints it (to `console`, default a rich Console on stdout) unless `echo=False`,
    and returns the rendered text (ANSI colours only when `color`; default: when stdout is a terminal)."""
    import io
    import sys

    from rich.console import Console
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.table import Table

    meta, body = split_front_matter(text)
    if color is None:
        color = sys.stdout.isatty()
    buf = io.StringIO()
    out = Console(file=buf, width=width or 100, force_terminal=color, color_system="standard" if color else None,
                  highlight=False)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    for key in ("pretty_name", "version", "license", "size_categories", "task_categories"):
        if key in meta:
            value = meta[key]
            facts.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    if meta.get("source_licenses"):
        facts.add_row("source licenses", ", ".join(f"{k}: {v}" for k, v in meta["source_licenses"].items()))
    if meta.get("configs"):
        facts.add_row("configs", ", ".join(c.get("config_name", "?") for c in meta["configs"]))
    if meta:
        out.print(Panel(facts, title="card metadata", expand=False))
    out.print(Markdown(body))
    rendered = buf.getvalue()
    if echo:
        target = console if console is not None else Console(width=width)
        if meta:
            target.print(Panel(facts, title="card metadata", expand=False))
        target.print(Markdown(body))
    return rendered
