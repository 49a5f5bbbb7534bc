"""A card's version and changelog, and its YAML front matter read back.

The card stores the bare version (`1.2.0`; tags carry the `v`). Changelogs merge by version (the local
card's entry wins over the Hub card's, newest version first); a version without given lines gets an
automatic one comparing the row counts with the last released card's.
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Iterable, Optional


from mmat_1m import SPLITS
from publishing.card_stats import CardStats


def normalise_version(version: str) -> str:
    """`v1.2.0` → `1.2.0` (the card stores the bare version; tags carry the `v`)."""
    return version[1:] if version[:1] in ("v", "V") and version[1:2].isdigit() else version


def split_front_matter(text: str) -> tuple[dict, str]:
    """(the YAML front matter of a card's text, or {}; the Markdown body after it), as
    `huggingface_hub.DatasetCard` reads them (YAML that is broken or not a mapping reads as no metadata)."""
    import yaml
    from huggingface_hub import DatasetCard

    try:
        card = DatasetCard(text, ignore_metadata_errors=True)
    except (ValueError, yaml.YAMLError):
        return {}, text
    return card.data.to_dict(), card.text


def read_card_metadata(card_path: str | Path) -> dict:
    """The YAML front matter of an existing card, or {} when there is none."""
    path = Path(card_path)
    return split_front_matter(path.read_text(encoding="utf-8"))[0] if path.is_file() else {}


def split_counts_from_meta(meta: dict) -> dict[str, dict[str, int]]:
    infos = meta.get("dataset_info") or []
    if isinstance(infos, dict):
        infos = [infos]
    return {
        i.get("config_name", "default"): {s["name"]: int(s.get("num_examples", 0)) for s in i.get("splits") or []}
        for i in infos
    }


def auto_changes(previous: dict[str, dict[str, int]], current: dict[str, dict[str, int]], stats: CardStats) -> list[str]:
    """What changed since the last released card, one line per config whose rows changed: rows added or
    removed per split (`rr-tabmwp` rows: train 4 → 8 (+4).), a config new in this version, or gone."""
    if not previous:
        n_sources = len({s for (_, s, _) in stats.rows})
        return [f"First release: {stats.dialogues:,} dialogues from {n_sources} sources, in RR and ORR formats."]
    return row_changes(previous, current) or [UNCHANGED]


UNCHANGED = "Card re-rendered; row counts unchanged."


def _sizes(splits: dict[str, int]) -> str:
    return ", ".join(f"{s} {splits[s]:,}" for s in SPLITS if s in splits)


def row_changes(previous: dict[str, dict[str, int]], current: dict[str, dict[str, int]]) -> list[str]:
    """One line per config whose row counts differ between two cards' `dataset_info` (configs in `mmat_1m`
    order, then any other)."""
    from mmat_1m import CONFIGS

    order = [c.name for c in CONFIGS]
    names = sorted(set(previous) | set(current), key=lambda n: (order.index(n) if n in order else len(order), n))
    out = []
    for name in names:
        before, after = previous.get(name), current.get(name)
        if before is None:
            out.append(f"`{name}`: new config ({_sizes(after)} rows).")
        elif after is None:
            out.append(f"`{name}`: removed (had {_sizes(before)} rows).")
        else:
            diffs = [f"{s} {before.get(s, 0):,} → {after.get(s, 0):,} ({after.get(s, 0) - before.get(s, 0):+,})"
                     for s in SPLITS if before.get(s, 0) != after.get(s, 0)]
            if diffs:
                out.append(f"`{name}` rows: " + ", ".join(diffs) + ".")
    return out


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


def changelog_entry(meta: dict, version: Optional[str], changes: Optional[list[str]], auto: list[str]) -> tuple[Optional[str], list[dict]]:
    log = merge_changelogs(meta.get("changelog") or [])
    previous_version = meta.get("version")
    if version is None:
        return (str(previous_version) if previous_version else None), log
    version = normalise_version(str(version))
    existing = next((e for e in log if str(e["version"]) == version), None)
    entry = {
        "version": version,
        "date": (existing or {}).get("date") or _dt.date.today().isoformat(),
        # Given lines (`mmat push -m`) come first; the row changes since the last release follow them.
        "changes": (list(changes) + [a for a in auto if a != UNCHANGED and not a.startswith("First release")]
                    if changes else ((existing or {}).get("changes") or auto)),
    }
    return version, merge_changelogs([entry], log)
