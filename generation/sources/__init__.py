"""Source adapters (foundation stage): native upstream layouts in, `Sample`s out.

    from generation.sources import SourceConfig, read_source
    for item in read_source(SourceConfig(kind="tabmwp", path="samples/tabmwp")):
        ...  # a Sample, or a Quarantined for a record that could not be read

One module per source keeps its upstream field names in one visible mapping at its top; the shared
rules (ids, response-style constraint, image checks, Hub access) live in `base`.
"""
from __future__ import annotations

from itertools import islice
from typing import Callable, Iterator

from generation.schema import Quarantined, Sample
from generation.sources import cauldron, infoseek, llava_cot, tabmwp, visual_cot
from generation.sources.base import SOURCE_IDS, SourceConfig, SourceError, subset_of

Adapter = Callable[[SourceConfig], Iterator["Sample | Quarantined"]]

ADAPTERS: dict[str, Adapter] = {
    "visual_cot": visual_cot.read,
    "llava_cot": llava_cot.read,
    "cauldron": cauldron.read,
    "tabmwp": tabmwp.read,
    "infoseek": infoseek.read,
}


def read_source(cfg: SourceConfig) -> Iterator[Sample | Quarantined]:
    """Every record of one source, in native order: a `Sample`, or a `Quarantined` (yielded, not
    raised) for a record that cannot be used. `subsets` and `limit` apply here, so every adapter
    honours them the same way; `limit` counts quarantined records too (it caps records read).

    Iterating raises `SourceError` (one line naming the fix) only when the source as a whole is
    unreadable: missing folder or index file, or a Hub id that cannot be reached.
    """
    items: Iterator[Sample | Quarantined] = ADAPTERS[cfg.kind](cfg)
    if cfg.subsets:
        wanted = set(cfg.subsets)
        items = (x for x in items if (x.subset if isinstance(x, Sample) else subset_of(x.sample_id)) in wanted)
    if cfg.limit is not None:
        items = islice(items, cfg.limit)
    return items


__all__ = ["ADAPTERS", "SOURCE_IDS", "SourceConfig", "SourceError", "read_source"]
