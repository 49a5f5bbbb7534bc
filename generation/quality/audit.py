"""`mmat audit`: how good a dataset is, per source and subset and in total, from its shards alone.

Guarantee: the report is a function of the parquet shards (a local folder or a Hub repo), read batch by
batch without the images (image bytes are read only for rows whose text repeats another row's, to
confirm an exact duplicate), so the card's Quality section, the numbers in `run.log` and `mmat audit`
agree and describe every worker's rows. Every judgement comes from `generation.quality.definitions`;
dialogues are read by the one strict parser, `generation.dialogue_format`.

Per dialogue (one row of the audited config, `rr` by default): verified, grounded (every question),
leaked (an unrepaired leak in any question), reflections by kind and origin (`check` or `staged`),
whether a dialogue with math questions got a math reflection, operator usage, steps, turns, tokens
and images. Over the dataset: exact and near-duplicate dialogues, the ORR/RR token ratio, the judge
score distribution, and for each failing kind the ids of a few examples (open one with `mmat view
DATASET --config rr` and `#<id>` in the address).
"""
from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from generation.quality.definitions import (
    SIGNATURE_VALUES,
    NearDuplicates,
    QuestionQuality,
    StepView,
    judge_dialogue,
    minhash,
    question_choices,
)
from generation.readings_cache import add_counts, counts_from_json, counts_to_json

log = logging.getLogger("mmat.audit")

FIGURE_PATH = "figures/quality.png"
EXAMPLES_PER_KIND = 5
EXAMPLES_PER_SOURCE = 2
FAILING_KINDS = ("not_verified", "not_grounded", "leaked", "exact_duplicate", "near_duplicate", "unparsable")
_COLUMNS = ["id", "source", "subset", "format", "messages", "steps", "question", "answer", "reflection"]
_OPTIONAL = ["meta"]
_JUDGE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0000001)


# ------------------------------------------------------------------------------------------ rows
@dataclass
class RowQuality:
    id: str
    source: str
    subset: str
    questions: int = 0
    verified: Optional[bool] = None
    grounded: bool = False
    leaked: bool = False
    leaks_repaired: int = 0
    leak_reason: str = ""
    reflection_kind: str = "none"
    reflection_origin: Optional[str] = None
    math_questions: Optional[int] = None
    steps: int = 0
    turns: int = 0
    tokens: int = 0
    images: int = 0
    operators: tuple[str, ...] = ()  # every call (rag: every retrieval)
    judge_score: Optional[float] = None
    parsed: bool = True
    content: str = ""  # the dialogue's questions, thoughts, results and answers (near-duplicates)
    text_key: int = 0  # xxh3-128 of every message text (exact duplicates, with the images)


def _question_views(row: dict[str, Any]) -> list[Any]:
    """The row's questions as `.question/.steps/.answer` objects, through the strict parser."""
    from generation.dialogue_format import parse_orr, parse_rr

    if row["format"] == "orr":
        views = []
        for i, q in enumerate(parse_orr(row["messages"]).questions):
            steps = ([StepView("", "continue", q.api_outputs)] if q.api_outputs else []) + [StepView(q.thought, "end")]
            views.append(_Question(q.question, tuple(steps), q.answer))
        return views
    return list(parse_rr(row["messages"]).questions)


@dataclass(frozen=True)
class _Question:
    question: str
    steps: tuple
    answer: str


def _verified(row: dict[str, Any], questions: list[Any]) -> Optional[bool]:
    """`meta.verified` (the engine's check of every question, against references rows do not keep);
    else the verifier on the first question, whose reference the row keeps."""
    from generation.schema import QA
    from generation.verify import answers_match

    meta = row.get("meta") or {}
    if meta.get("verified") is not None:
        return bool(meta["verified"])
    if not questions or not row.get("answer"):
        return None
    qa = QA(question=row["question"], answer=row["answer"], choices=question_choices(row["question"]))
    return answers_match(questions[0].answer, qa)


def _content(questions: list[Any]) -> str:
    parts = []
    for q in questions:
        parts.append(q.question)
        for step in q.steps:
            parts.append(step.thought)
            parts += [text for _, text in getattr(step, "observations", ())]
        parts.append(q.answer)
    return "\n".join(parts)


def row_quality(row: dict[str, Any], tokens: int = 0) -> RowQuality:
    """The audit's reading of one row (`tokens`: its text tokens, counted per batch by the caller)."""
    import xxhash

    meta = row.get("meta") or {}
    reflection = row.get("reflection") or {}
    operators: list[str] = []
    for step in row.get("steps") or []:
        operators += list(step.get("operators") or [])
        if step.get("rag_query"):
            operators.append("rag")
    out = RowQuality(id=row["id"], source=row["source"], subset=row["subset"], tokens=tokens,
                     reflection_kind=reflection.get("kind") or "none", reflection_origin=reflection.get("origin"),
                     math_questions=meta.get("math_questions"), judge_score=meta.get("judge_score"),
                     operators=tuple(operators))
    texts = [b.get("text") or "" for m in row["messages"] for b in m["content"] if b.get("type") == "text"]
    out.images = sum(1 for m in row["messages"] for b in m["content"] if b.get("type") == "image")
    out.turns = sum(1 for m in row["messages"] if m["role"] == "assistant")
    out.text_key = xxhash.xxh3_128_intdigest("\x00".join(texts).encode("utf-8"))
    try:
        questions = _question_views(row)
    except ValueError:  # FormatError: counted, never fatal
        out.parsed = False
        out.verified = (meta.get("verified") if meta.get("verified") is not None else None)
        return out
    verdicts: list[QuestionQuality] = judge_dialogue(questions)
    out.questions = len(questions)
    out.steps = sum(len(q.steps) for q in questions)
    out.verified = _verified(row, questions)
    out.grounded = all(v.grounded for v in verdicts)
    out.leaked = any(v.leaked for v in verdicts)
    out.leaks_repaired = sum(1 for v in verdicts for leak in v.leaks if leak.repaired)
    reasons = [leak.reason for v in verdicts for leak in v.leaks if not leak.repaired]
    out.leak_reason = reasons[0] if reasons else ""
    out.content = _content(questions)
    return out


# ----------------------------------------------------------------------------------------- groups
@dataclass
class GroupStats:
    """Counts over the dialogues of one source, subset, or the whole dataset."""

    dialogues: int = 0
    questions: int = 0
    verified: int = 0
    verified_known: int = 0
    grounded: int = 0
    leaked: int = 0
    leaks_repaired: int = 0
    unparsable: int = 0
    reflections: Counter = field(default_factory=Counter)  # "kind/origin" -> dialogues
    math_dialogues: int = 0  # dialogues with at least one math question (rows that record it)
    math_reflected: int = 0  # ... of which got a math reflection
    operator_calls: Counter = field(default_factory=Counter)
    operator_dialogues: Counter = field(default_factory=Counter)
    steps: int = 0
    turns: int = 0
    tokens: int = 0
    images: int = 0

    def add(self, q: RowQuality) -> None:
        self.dialogues += 1
        self.questions += q.questions
        self.unparsable += int(not q.parsed)
        if q.verified is not None:
            self.verified_known += 1
            self.verified += int(q.verified)
        self.grounded += int(q.grounded)
        self.leaked += int(q.leaked)
        self.leaks_repaired += q.leaks_repaired
        if q.reflection_kind != "none":
            self.reflections[f"{q.reflection_kind}/{q.reflection_origin or 'unrecorded'}"] += 1
        if q.math_questions:
            self.math_dialogues += 1
            self.math_reflected += int(q.reflection_kind == "math")
        self.operator_calls.update(q.operators)
        self.operator_dialogues.update(dict.fromkeys(q.operators, 1))  # once each, in order (ties list in order)
        self.steps += q.steps
        self.turns += q.turns
        self.tokens += q.tokens
        self.images += q.images

    def rate(self, name: str) -> Optional[float]:
        if name == "verified":
            return self.verified / self.verified_known if self.verified_known else None
        return getattr(self, name) / self.dialogues if self.dialogues else None

    def per_dialogue(self, name: str) -> float:
        return getattr(self, name) / self.dialogues if self.dialogues else 0.0

    def reflection_count(self, kind: str, origin: Optional[str] = None) -> int:
        return sum(n for key, n in self.reflections.items()
                   if key.split("/")[0] == kind and (origin is None or key.split("/")[1] == origin))

    def to_dict(self) -> dict[str, Any]:
        return {
            "dialogues": self.dialogues, "questions": self.questions,
            "verified": self.rate("verified"), "grounded": self.rate("grounded"), "leaked": self.rate("leaked"),
            "counts": {"verified": self.verified, "verified_known": self.verified_known, "grounded": self.grounded,
                       "leaked": self.leaked, "leaks_repaired": self.leaks_repaired, "unparsable": self.unparsable},
            "reflections": dict(sorted(self.reflections.items())),
            "reflection_rate": {k: self.reflection_count(k) / self.dialogues if self.dialogues else None
                                for k in ("general", "math")},
            "math_dialogues": self.math_dialogues, "math_reflected": self.math_reflected,
            "operator_calls": dict(self.operator_calls.most_common()),
            "operator_dialogues": dict(self.operator_dialogues.most_common()),
            "per_dialogue": {k: round(self.per_dialogue(k), 3) for k in ("steps", "turns", "tokens", "images")},
        }


# ----------------------------------------------------------------------------------------- report
@dataclass
class AuditReport:
    dataset: str
    config: str
    groups: dict[str, GroupStats] = field(default_factory=dict)  # "total", "<source>", "<source>/<subset>"
    examples: dict[str, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))
    exact_duplicates: int = 0  # dialogues repeating an earlier one (same text and images)
    near_duplicates: int = 0  # dialogues in a near-duplicate group, beyond its first
    token_ratio: Optional[float] = None  # ORR tokens / RR tokens over the dialogues in both
    judge_scores: list[float] = field(default_factory=list)

    @property
    def total(self) -> GroupStats:
        return self.groups.setdefault("total", GroupStats())

    def sources(self) -> list[str]:
        from mmat_1m import SOURCES

        found = [k for k in self.groups if k != "total" and "/" not in k]
        return [s for s in SOURCES if s in found] + sorted(set(found) - set(SOURCES))

    def subsets(self, source: str) -> list[str]:
        return sorted(k for k in self.groups if k.startswith(source + "/"))

    def judge_histogram(self) -> list[tuple[str, int]]:
        if not self.judge_scores:
            return []
        counts, _ = np.histogram(np.clip(self.judge_scores, 0.0, 1.0), bins=_JUDGE_BINS)
        labels = [f"{lo:.1f}-{min(hi, 1.0):.1f}" for lo, hi in zip(_JUDGE_BINS, _JUDGE_BINS[1:])]
        return list(zip(labels, counts.tolist()))

    def example(self, kind: str, row_id: str, source: str, why: str = "") -> None:
        """Keep a few ids per failing kind, at most `EXAMPLES_PER_SOURCE` per source (so one source does
        not fill the list)."""
        items = self.examples[kind]
        same_source = sum(1 for item in items if item["id"].split("/", 1)[0] == source)
        if len(items) < EXAMPLES_PER_KIND and same_source < EXAMPLES_PER_SOURCE:
            items.append({"id": row_id, "why": why} if why else {"id": row_id})

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "config": self.config,
            "total": self.total.to_dict(),
            "sources": {s: self.groups[s].to_dict() for s in self.sources()},
            "subsets": {k: g.to_dict() for k, g in sorted(self.groups.items()) if "/" in k},
            "exact_duplicates": self.exact_duplicates, "near_duplicates": self.near_duplicates,
            "orr_rr_token_ratio": self.token_ratio,
            "judge_score_histogram": dict(self.judge_histogram()),
            "examples": {k: v for k, v in self.examples.items() if v},
        }

    def summary(self) -> dict[str, Any]:
        """What `run.log` records: rates per source and in total, duplicates, reflections."""
        def rates(g: GroupStats) -> dict[str, Any]:
            return {"dialogues": g.dialogues, **{k: _round(g.rate(k)) for k in ("verified", "grounded", "leaked")},
                    "reflections": dict(sorted(g.reflections.items()))}

        return {"config": self.config, "total": rates(self.total), "sources": {s: rates(self.groups[s]) for s in self.sources()},
                "exact_duplicates": self.exact_duplicates, "near_duplicates": self.near_duplicates,
                "orr_rr_token_ratio": _round(self.token_ratio)}


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)


# ---------------------------------------------------------------------------------------- reading
def _store(dataset: str | Path, revision: Optional[str] = None) -> Any:
    """The dataset's shards, a local folder or a Hub repo (the viewer's reader, which lists files lazily)."""
    from viewer.store import ShardStore, ViewerError

    try:
        return ShardStore.open(str(dataset), revision=revision)
    except ViewerError as exc:
        raise FileNotFoundError(str(exc)) from None


def _batches(parquet: Any, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """`parquet`: what `pq.ParquetFile` reads (a path, or a Hub file opened by the store)."""
    pf = pq.ParquetFile(parquet)
    names = pf.schema_arrow.names
    cols = [c for c in columns if c in names] + [c for c in _OPTIONAL if c in names]
    yield from pf.iter_batches(batch_size=256, columns=cols)


def _tokens_per_row(batch: pa.RecordBatch) -> np.ndarray:
    """Text tokens per row, counted as the card counts them (`publishing.card.TOKEN_PATTERN`)."""
    from publishing.card_stats import TOKEN_PATTERN

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
    shard order (`audit_dataset`) it gives exactly the report of reading the rows one by one, so it can
    be kept per file (`generation.readings_cache`): the audit at the end of a large run then reads
    only the files it has not read before (a rolling run's tail), not every row of the folder.

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

    _ARRAYS = ("judge_scores", "text_keys", "near_rows", "signatures", "id_keys", "tokens")

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able counts and examples, per-row arrays): what `generation.readings_cache` keeps."""
        meta = {"kind": self.kind, "rows": self.rows, "groups": {k: counts_to_json(g) for k, g in self.groups.items()},
                "examples": [list(e) for e in self.examples]}
        return meta, {name: getattr(self, name) for name in self._ARRAYS}

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "ShardAudit":
        out = cls(kind=meta["kind"], rows=int(meta["rows"]),
                  groups={k: counts_from_json(GroupStats, v) for k, v in meta["groups"].items()},
                  examples=[tuple(e) for e in meta["examples"]])
        for name in cls._ARRAYS:
            setattr(out, name, arrays[name])
        return out


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
            for kind, why in _failings(q):
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


def _failings(q: RowQuality) -> list[tuple[str, str]]:
    """(failing kind, why) of one row, for the report's examples."""
    if not q.parsed:
        return [("unparsable", "the dialogue does not parse as its format")]
    out = []
    if q.verified is False:
        out.append(("not_verified", ""))
    if not q.grounded:
        out.append(("not_grounded", ""))
    if q.leaked:
        out.append(("leaked", q.leak_reason))
    return out


def _reader(kind: str) -> Any:
    """What reads a shard for a `kind` of `ShardAudit` ("rows" or "tokens")."""
    return audit_shard if kind == "rows" else shard_tokens


def read_shard(path: Path, kind: str, cache: Any) -> ShardAudit:
    """One local shard's `kind` reading (see `ShardAudit`) through a `generation.readings_cache.ReadingsCache`:
    kept from before when the cache holds this very file's, else read now and kept."""
    return cache.reading(path, f"audit-{kind}", _reader(kind), ShardAudit.from_arrays)


def _read(shard: Any, kind: str, cache: Any) -> ShardAudit:
    if cache is not None:
        return read_shard(Path(shard.path), kind, cache)
    return _reader(kind)(shard.opener(shard.path))


# ------------------------------------------------------------------------------------- the dataset
def audit_dataset(dataset: str | Path, config: str = "rr", revision: Optional[str] = None,
                  cache: Any = None) -> AuditReport:
    """The audit of one format of a dataset (a folder or a Hub repo id). Raises FileNotFoundError when
    it has no shards of that format. `cache`: a `generation.readings_cache.ReadingsCache` of the
    folder's shard readings (a local folder only); the report is the same with or without it."""
    import xxhash

    from mmat_1m import CONFIGS_BY_NAME

    spec = CONFIGS_BY_NAME.get(config)
    if spec is None:
        raise ValueError(f"unknown config {config!r}; one of {', '.join(CONFIGS_BY_NAME)}")
    store = _store(dataset, revision)
    shards = [s for s in store.shards_of(spec.format) if spec.source is None or s.source == spec.source]
    if not shards:
        raise FileNotFoundError(f"no {config} shards in {dataset}")
    report = AuditReport(dataset=str(dataset), config=config)
    # What is kept per row for the whole pass is fixed-size (`_TextKeys`, `_Tokens`, `NearDuplicates`):
    # memory grows by a few hundred bytes a dialogue, never by its rows or texts.
    near = NearDuplicates()
    near_rows: list[np.ndarray] = []  # the audit's number of each row given to `near`, in its order
    text_keys = _TextKeys()
    read = 0  # rows read so far (a row's number)
    tokens = _Tokens()
    for number, shard in enumerate(shards):
        part = _read(shard, "rows", cache)
        for key, stats in part.groups.items():
            add_counts(report.groups.setdefault(key, GroupStats()), stats)  # as adding its dialogues one by one
        for kind, row_id, source, why in part.examples:
            report.example(kind, row_id, source, why)
        report.judge_scores.extend(part.judge_scores.tolist())
        near.add_many(part.signatures)
        near_rows.append(read + part.near_rows)
        text_keys.add(part.text_keys, number)
        tokens.add(part.id_keys, part.tokens)
        read += part.rows
        _give_back_arrow_memory()
    rows = text_keys.rows()
    repeat = _exact_duplicates(report, store, shards, text_keys, rows, xxhash)
    near_numbers = np.concatenate(near_rows) if near_rows else np.zeros(0, np.int64)
    for group in near.groups():
        numbers = near_numbers[group]
        numbers = numbers[~repeat[numbers]]  # an exact duplicate is counted once
        if len(numbers) < 2:
            continue
        report.near_duplicates += len(numbers) - 1
        if len(report.examples["near_duplicate"]) < EXAMPLES_PER_KIND:
            first, second = (_id_of(store, shards, rows[n]) for n in numbers[:2].tolist())
            report.examples["near_duplicate"].append({"id": second, "why": f"near-duplicate of {first}"})
    other = "orr" if spec.format == "rr" else "rr"
    other_tokens = _Tokens()
    for shard in store.shards_of(other):
        if spec.source is None or shard.source == spec.source:
            part = _read(shard, "tokens", cache)
            other_tokens.add(part.id_keys, part.tokens)
    report.token_ratio = _token_ratio(tokens, other_tokens, spec.format)
    return report


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


def _exact_duplicates(report: AuditReport, store: Any, shards: list[Any], text_keys: _TextKeys, rows: np.ndarray,
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


def write_json(report: AuditReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def audit_run(out_dir: str | Path, cache: Any = None) -> Optional[AuditReport]:
    """The end of a generation run: the audit of the folder's RR rows (ORR when it has none), its numbers
    in the run log (one line, all numbers in the record's data); None, with a warning, if it fails.
    `cache`: the run's `ReadingsCache`, so only the shards not read before are read."""
    root = Path(out_dir)
    config = "rr" if any((root / "data" / "rr").glob("*/*.parquet")) else "orr"
    try:
        report = audit_dataset(root, config, cache=cache)
    except Exception as exc:  # the run's shards are written; its audit must not take them down
        log.warning("quality audit failed: %s: %s", type(exc).__name__, exc, exc_info=True)
        return None
    total = report.total
    log.info("quality (%s, %d dialogues): verified %s, grounded %s, leaked %s; %d exact and %d near duplicates",
             config, total.dialogues, *(_percent(total.rate(k)) for k in ("verified", "grounded", "leaked")),
             report.exact_duplicates, report.near_duplicates, extra={"data": report.summary()})
    return report


def _percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1%}"
