"""`mmat audit`: how good a dataset is, per source and subset and in total, from its shards alone.

Guarantee: the report is a function of the parquet shards (a local folder, or any store passed in, such
as the viewer's reader of a Hub repo), so the card's Quality section, the numbers in `run.log` and `mmat
audit` agree and describe every worker's rows. The work is split by job: `row_judgement` (one row, and the
counts over rows), `shard_scan` (reading shards, exact duplicates), `near_duplicates` (MinHash/LSH), and
this module, which merges the shards' readings into an `AuditReport` and runs the audit at the end of a
generation run, RR and ORR side by side.

Per dialogue (one row of the audited config, `rr` by default): verified, grounded by tool evidence, grounded
only by the source's own rationale, admits no evidence, leaked (an unrepaired leak in any question),
reflections by kind and origin (every reflection in a row is an accepted repair), ORR defects (a repeated
sentence, a replaced step still said), operator usage, steps, turns, tokens and images. Over the dataset:
exact and near-duplicate dialogues, the ORR/RR token ratio, the judge score distribution, and for each
failing kind the ids of a few examples (open one with `mmat view DATASET --config rr` and `#<id>`).
"""
from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from generation.quality.near_duplicates import NearDuplicates
from generation.quality.row_judgement import (  # noqa: F401 - re-exported: callers import them from here
    FAILING_KINDS,
    GroupStats,
    RowQuality,
    failings,
    row_quality,
)
from generation.quality.shard_scan import (  # noqa: F401 - re-exported: callers import them from here
    EXAMPLES_PER_KIND,
    EXAMPLES_PER_SOURCE,
    LocalShards,
    ShardAudit,
    _exact_duplicates,
    _give_back_arrow_memory,
    _id_of,
    _image_digests,
    _read,
    _TextKeys,
    _token_ratio,
    _Tokens,
    audit_shard,
    shard_tokens,
)

_failings = failings  # the name tests and older callers use

log = logging.getLogger("mmat.audit")

FIGURE_PATH = "figures/quality.png"
_JUDGE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0000001)
REPAIR_REJECTED = "RepairRejected"  # the quarantine error type of a reflection that did not repair


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
    # The end of a run: the other format's report (RR's carries ORR's), and what its quarantine says
    # about the rows that are not here (None: not known, e.g. `mmat audit` on a published folder).
    paired: Optional["AuditReport"] = None
    quarantined: Optional[dict[str, int]] = None  # "stage/error type" -> samples

    @property
    def total(self) -> GroupStats:
        return self.groups.setdefault("total", GroupStats())

    @property
    def repairs_rejected(self) -> Optional[int]:
        """Samples quarantined because a reflection did not repair (None when the quarantine is not known)."""
        if self.quarantined is None:
            return None
        return sum(n for key, n in self.quarantined.items() if key.endswith("/" + REPAIR_REJECTED))

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
        out = {
            "dataset": self.dataset, "config": self.config,
            "total": self.total.to_dict(),
            "sources": {s: self.groups[s].to_dict() for s in self.sources()},
            "subsets": {k: g.to_dict() for k, g in sorted(self.groups.items()) if "/" in k},
            "exact_duplicates": self.exact_duplicates, "near_duplicates": self.near_duplicates,
            "orr_rr_token_ratio": self.token_ratio,
            "judge_score_histogram": dict(self.judge_histogram()),
            "examples": {k: v for k, v in self.examples.items() if v},
        }
        if self.quarantined is not None:
            out["quarantined"] = dict(sorted(self.quarantined.items()))
            out["repairs_rejected"] = self.repairs_rejected
        if self.paired is not None:
            out["paired"] = self.paired.to_dict()
        return out

    def summary(self) -> dict[str, Any]:
        """What `run.log` records: rates per source and in total, duplicates, reflections (and the paired
        format's summary, and the repairs rejected, at the end of a run)."""
        measures = ("verified", "grounded", "grounded_rationale", "admits_no_evidence", "leaked",
                    "repeated_sentence", "replaced_in_orr")

        def rates(g: GroupStats) -> dict[str, Any]:
            return {"dialogues": g.dialogues, **{k: _round(g.rate(k)) for k in measures},
                    "repairs_accepted": g.repairs, "reflections": dict(sorted(g.reflections.items()))}

        out = {"config": self.config, "total": rates(self.total),
               "sources": {s: rates(self.groups[s]) for s in self.sources()},
               "exact_duplicates": self.exact_duplicates, "near_duplicates": self.near_duplicates,
               "orr_rr_token_ratio": _round(self.token_ratio)}
        if self.quarantined is not None:
            out["repairs_rejected"] = self.repairs_rejected
        if self.paired is not None:
            out["paired"] = self.paired.summary()
        return out


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 4)


# ------------------------------------------------------------------------------------- the dataset
def audit_dataset(dataset: str | Path, config: str = "rr", revision: Optional[str] = None,
                  store: Any = None) -> AuditReport:
    """The audit of one format of a dataset. Raises FileNotFoundError when it has no shards of that format.
    `store`: where the shards come from (see `generation.quality.shard_scan`); default: the local folder
    `dataset` (`LocalShards`). A Hub repo is read through a store its caller passes (`mmat audit` passes the
    viewer's; `revision` is the caller's to apply)."""
    import xxhash

    from mmat_1m import CONFIGS_BY_NAME

    spec = CONFIGS_BY_NAME.get(config)
    if spec is None:
        raise ValueError(f"unknown config {config!r}; one of {', '.join(CONFIGS_BY_NAME)}")
    if store is None:
        if revision:
            raise ValueError(f"--revision applies to a Hub repo; {dataset} is read as a local folder")
        store = LocalShards(dataset)
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
        part = _read(shard, "rows")
        for key, stats in part.groups.items():
            report.groups.setdefault(key, GroupStats()).merge(stats)  # as adding its dialogues one by one
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
            part = _read(shard, "tokens")
            other_tokens.add(part.id_keys, part.tokens)
    report.token_ratio = _token_ratio(tokens, other_tokens, spec.format)
    return report


def write_json(report: AuditReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def quarantine_counts(records: Iterable[Any]) -> dict[str, int]:
    """"stage/error type" -> samples, from quarantine records (`.stage`, `.error_type`)."""
    return dict(Counter(f"{r.stage}/{r.error_type}" for r in records))


def audit_run(out_dir: str | Path, quarantined: Optional[Iterable[Any]] = None) -> Optional[AuditReport]:
    """The end of a generation run: the audit of the folder's RR rows (ORR when it has none) with the
    ORR rows' audit paired to it, their numbers in the run log (one line per format, all numbers in the
    record's data); None, with a warning, if it fails. `quarantined`: the run's quarantine records
    (repairs rejected)."""
    root = Path(out_dir)
    formats = [f for f in ("rr", "orr") if any((root / "data" / f).glob("*/*.parquet"))] or ["rr"]
    try:
        reports = [audit_dataset(root, fmt) for fmt in formats]
    except Exception as exc:  # the run's shards are written; its audit must not take them down
        log.warning("quality audit failed: %s: %s", type(exc).__name__, exc, exc_info=True)
        return None
    report = reports[0]
    report.paired = reports[1] if len(reports) > 1 else None
    if quarantined is not None:
        report.quarantined = quarantine_counts(quarantined)
    for each in reports:
        total = each.total
        log.info("quality (%s, %d dialogues): verified %s, grounded %s (tool) + %s (source rationale), "
                 "admits no evidence %s, leaked %s; repairs accepted %d%s; %d exact and %d near duplicates",
                 each.config, total.dialogues,
                 *(_percent(total.rate(k)) for k in ("verified", "grounded", "grounded_rationale",
                                                     "admits_no_evidence", "leaked")),
                 total.repairs, f", rejected {report.repairs_rejected}" if report.repairs_rejected is not None else "",
                 each.exact_duplicates, each.near_duplicates,
                 extra={"data": report.summary() if each is report else {"config": each.config}})
    return report


def _percent(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1%}"
