"""What `mmat eval` reports, computed from the durable answers alone (so resumed runs add up).

Per format: questions, accuracy (overall and per source), and per question the means of tool calls
(operator and RAG results obtained), turns (model calls, retries included), tokens (prompt +
completion) and latency (wall seconds from the question's start to its answer, operators included:
what a user waits). `latency_vs_plain` divides each format's mean latency by the plain baseline's,
the ratios the paper reports (ORR ≈ 2×, RR 3–4× the baseline). Answers that did not parse or could
not run count as wrong; their numbers are in `statuses`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Optional

BASELINE = "plain"


@dataclass
class FormatStats:
    format: str
    questions: int = 0
    correct: int = 0
    by_source: dict[str, list[int]] = field(default_factory=dict)  # source → [questions, correct]
    tool_calls: float = 0.0  # means per question, from here on
    turns: float = 0.0
    tokens: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    latency_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.questions if self.questions else 0.0

    def source_accuracy(self, source: str) -> Optional[float]:
        n, correct = self.by_source.get(source, (0, 0))
        return correct / n if n else None


@dataclass
class EvalReport:
    model: str
    dataset: str
    formats: dict[str, FormatStats]
    sources: list[str]
    latency_vs_plain: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "dataset": self.dataset, "sources": self.sources,
            "latency_vs_plain": self.latency_vs_plain,
            "formats": {fmt: {**asdict(stats), "accuracy": stats.accuracy,
                              "accuracy_by_source": {s: stats.source_accuracy(s) for s in stats.by_source}}
                        for fmt, stats in self.formats.items()},
        }


def summarise(records: Iterable[dict[str, Any]], formats: Iterable[str], model: str, dataset: str,
              ids: Optional[set[str]] = None) -> EvalReport:
    """The report over `records` of `model` in `formats` (and, with `ids`, of those questions only)."""
    formats = list(formats)
    stats = {fmt: FormatStats(fmt) for fmt in formats}
    sums: dict[str, Counter] = {fmt: Counter() for fmt in formats}
    sources: dict[str, None] = {}
    for record in records:
        fmt = record.get("format")
        if record.get("model") != model or fmt not in stats or (ids is not None and str(record.get("id")) not in ids):
            continue
        s = stats[fmt]
        source = str(record.get("source"))
        sources.setdefault(source, None)
        s.questions += 1
        s.correct += bool(record.get("correct"))
        per = s.by_source.setdefault(source, [0, 0])
        per[0] += 1
        per[1] += bool(record.get("correct"))
        s.statuses[record.get("status", "?")] = s.statuses.get(record.get("status", "?"), 0) + 1
        for key in ("tool_calls", "turns", "prompt_tokens", "completion_tokens", "latency_s"):
            sums[fmt][key] += float(record.get(key) or 0)
    for fmt, s in stats.items():
        if s.questions:
            total = sums[fmt]
            s.tool_calls, s.turns = total["tool_calls"] / s.questions, total["turns"] / s.questions
            s.prompt_tokens = total["prompt_tokens"] / s.questions
            s.completion_tokens = total["completion_tokens"] / s.questions
            s.tokens = s.prompt_tokens + s.completion_tokens
            s.latency_s = total["latency_s"] / s.questions
    ratios: dict[str, float] = {}
    base = stats.get(BASELINE)
    if base is not None and base.questions and base.latency_s > 0:
        ratios = {fmt: s.latency_s / base.latency_s for fmt, s in stats.items() if fmt != BASELINE and s.questions}
    return EvalReport(model=model, dataset=dataset, formats=stats, sources=sorted(sources), latency_vs_plain=ratios)
