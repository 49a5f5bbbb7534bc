"""Merging dataclasses of counts (int and `Counter` fields only, such as `publishing.card_stats.FormatStats`):
per-shard results that add up to the numbers of reading every row at once."""
from __future__ import annotations

from collections import Counter
from typing import Any


def add_counts(into: Any, other: Any) -> None:
    """Add the counts of one dataclass of counts to another of the same type, field by field."""
    for name, value in vars(other).items():
        if isinstance(value, Counter):
            getattr(into, name).update(value)
        else:
            setattr(into, name, getattr(into, name) + value)


__all__ = ["add_counts"]
