"""The list's filters: one definition of what each one matches, applied to a shard's filter index.

Source and split are the shard's own path (`data/{format}/{source}/{split}-*.parquet`), so they pick
files and read nothing. The others match columns of the filter index (`viewer.store.INDEX_COLUMNS`):

- subset, reflection kind: equal;
- operator: the row's steps called it (`rag`: a step has a retrieval query), as the card counts;
- verified: `yes` (meta.verified true), `no` (false), `unknown` (not checked: null);
- grounded: the same three values over meta.grounded (every answer supported by the evidence shown);
- evidence: meta.evidence equal (what the answers rest on: `tool`, `source_rationale`, `none`);
- origin: the reflection's origin, `check` (found in what the teacher wrote), `staged` (written on
  purpose, then found) or `unknown` (a reflection that does not record it); rows without a reflection
  never match;
- judge score range: `score_min <= meta.judge_score <= score_max`; rows with no score never match a range;
- text: a case-insensitive substring of the id, the question or the reference answer;
- quarantined: list the work folder's quarantine records instead of rows (source and text apply to
  them: the text matches the id, stage, error type or message).

The static export (`viewer/static/app.js`, `matches`) applies the same rules in the browser.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from generation.errors import MmatError

VERIFIED_VALUES = ("yes", "no", "unknown")
GROUNDED_VALUES = VERIFIED_VALUES
ORIGIN_VALUES = ("check", "staged", "unknown")


class FilterError(MmatError, ValueError):
    """A filter value the viewer cannot apply (one line naming the parameter)."""


@dataclass(frozen=True)
class Filter:
    source: str = ""
    split: str = ""
    subset: str = ""
    operator: str = ""
    reflection: str = ""
    verified: str = ""
    grounded: str = ""
    evidence: str = ""
    origin: str = ""
    score_min: Optional[float] = None
    score_max: Optional[float] = None
    text: str = ""
    quarantined: bool = False

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> "Filter":
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = (params.get(f.name) or "").strip()
            if not raw:
                continue
            if f.name in ("score_min", "score_max"):
                try:
                    values[f.name] = float(raw)
                except ValueError:
                    raise FilterError(f"{f.name} must be a number, not {raw!r}") from None
            elif f.name == "quarantined":
                values[f.name] = raw.lower() in ("1", "true", "yes", "only")
            else:
                values[f.name] = raw
        for name, allowed in (("verified", VERIFIED_VALUES), ("grounded", GROUNDED_VALUES), ("origin", ORIGIN_VALUES)):
            if values.get(name) and values[name] not in allowed:
                raise FilterError(f"{name} must be one of {', '.join(allowed)}, not {values[name]!r}")
        return cls(**values)

    @property
    def needs_index(self) -> bool:
        """Does matching read columns (beyond the shard's path)?"""
        return bool(self.subset or self.operator or self.reflection or self.verified or self.text
                    or self.grounded or self.evidence or self.origin
                    or self.score_min is not None or self.score_max is not None)

    def matches_shard(self, source: str, split: str) -> bool:
        return (not self.source or self.source == source) and (not self.split or self.split == split)

    def mask(self, index: pa.Table, operator_bits: Mapping[str, int], text: Optional[pa.Array] = None) -> np.ndarray:
        """Which rows of one shard's filter index match (`text`: the shard's lower-cased search text)."""
        keep = np.ones(index.num_rows, dtype=bool)

        def where(expr) -> np.ndarray:
            return np.asarray(pc.fill_null(expr, False), dtype=bool)

        if self.subset:
            keep &= where(pc.equal(index["subset"], self.subset))
        if self.reflection:
            keep &= where(pc.equal(index["reflection"], self.reflection))
        for name in ("verified", "grounded"):
            value = getattr(self, name)
            if value:
                column = index[name]
                keep &= {"yes": lambda: where(column), "no": lambda: where(pc.invert(column)),
                         "unknown": lambda: where(pc.is_null(column))}[value]()
        if self.evidence:
            keep &= where(pc.equal(index["evidence"], self.evidence))
        if self.origin:
            keep &= where(pc.equal(index["origin"], self.origin))
        if self.score_min is not None:
            keep &= where(pc.greater_equal(index["judge_score"], self.score_min))
        if self.score_max is not None:
            keep &= where(pc.less_equal(index["judge_score"], self.score_max))
        if self.operator:
            bit = operator_bits.get(self.operator)
            ops = np.asarray(index["operators"], dtype=np.int64)
            keep &= (ops & bit) != 0 if bit else np.zeros(index.num_rows, dtype=bool)
        if self.text and text is not None:
            keep &= where(pc.match_substring(text, self.text.lower()))
        return keep

    def matches_quarantine(self, record: Mapping[str, Any]) -> bool:
        if self.source and record.get("source") != self.source:
            return False
        if self.text:
            hay = " ".join(str(record.get(k) or "") for k in ("id", "stage", "error_type", "message")).lower()
            return self.text.lower() in hay
        return True
