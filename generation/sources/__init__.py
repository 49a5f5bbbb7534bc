"""Source adapters (foundation stage): native upstream layouts in, `Sample`s out.

    from generation.sources import SourceConfig, read_source
    for item in read_source(SourceConfig(kind="tabmwp", path="samples/tabmwp")):
        ...  # a Sample, or a Quarantined for a record that could not be read

One module per source keeps its upstream field names in one visible mapping at its top; the shared
rules (ids, response-style constraint, QA filters, image paths, record decoding, Hub access) live in
`base`, the recognised native instructions in `instructions`.

Repeated ids: the first record with an id is the sample; every later record with the same id is
quarantined under its own id, `{id}#repeat-{n}` (n = 2, 3, ...), with a reason naming where the
first one is. Its own id keeps it visible beside the first occurrence and keeps it from shadowing
or blocking it: the checkpoint keys quarantine records by id and counts an id that is both finished
and quarantined as finished, so a repeat recorded under the first occurrence's id would either
vanish (first finished) or make the next run skip the first occurrence (first not finished yet).
"""
from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Union

from generation.schema import Quarantined, Sample
from generation.sources import cauldron, infoseek, llava_cot, tabmwp, visual_cot
from generation.sources.base import (
    SOURCE_IDS, STAGE, Deferred, Located, RecordIndex, SourceConfig, SourceError, guarded, subset_of,
)
from generation.sources.image_paths import REPEATED_ID, refuse_wholesale

Adapter = Callable[[SourceConfig, Optional[RecordIndex]], Iterator[Located]]

ADAPTERS: dict[str, Adapter] = {
    "visual_cot": visual_cot.read,
    "llava_cot": llava_cot.read,
    "cauldron": cauldron.read,
    "tabmwp": tabmwp.read,
    "infoseek": infoseek.read,
}
REPEAT_SUFFIX = "#repeat-"


class Skipped(NamedTuple):
    """A record `read_source(skip=...)` was asked not to build: just its id (a finished sample on a rerun)."""

    sample_id: str


Item = Union[Sample, Quarantined, Skipped]


def item_id(item: Item) -> str:
    return item.id if isinstance(item, Sample) else item.sample_id


def read_source(cfg: SourceConfig, skip: Optional[Callable[[str], bool]] = None,
                index: Optional[RecordIndex] = None) -> Iterator[Item]:
    """Every record of one source, in native order: a `Sample`, or a `Quarantined` (yielded, not
    raised) for a record that cannot be used or repeats an earlier record's id. `subsets` and `limit`
    apply here, so every adapter honours them the same way; `limit` counts quarantined records too
    (it caps records read).

    `skip(id)` true: the record is yielded as `Skipped(id)` without building its Sample (no field
    decoding, image path resolution or image decode); its id still counts for repeats, so a later
    record with the same id is quarantined as a repeat whether or not the first was skipped.

    `index` (the work folder's, `generation.sources.record_index`): where each source file's ids are
    remembered, so a rerun reads a finished record's id without decoding the record.

    Iterating raises `SourceError` (one line naming the fix) only when the source as a whole is
    unreadable: missing folder, a layout the adapter does not recognise, or a Hub id that cannot be
    reached, raised before any record is yielded; or, after the last record, when every record built
    was refused for an image path leading outside the source folder (`image_paths.refuse_wholesale`:
    the fix is the source's `image_roots`, not a quarantine per record).
    """
    items: Iterator[Item] = without_repeats(ADAPTERS[cfg.kind](cfg, index), skip)
    if cfg.subsets:
        wanted = set(cfg.subsets)
        items = (x for x in items if subset_of(item_id(x)) in wanted)
    if cfg.limit is not None:
        items = islice(items, cfg.limit)
    return refuse_wholesale(cfg.kind, cfg.path or cfg.hub_id, items)


def without_repeats(located: Iterable[Located], skip: Optional[Callable[[str], bool]] = None) -> Iterator[Item]:
    """The items, built (or `Skipped`), with every record whose id was seen before quarantined as
    `{id}#repeat-{n}`."""
    first: dict[str, str] = {}  # id -> where its first record is
    repeats: dict[str, int] = {}
    for where, item in located:
        sid = item.id if isinstance(item, (Sample, Deferred)) else item.sample_id
        if sid not in first:
            first[sid] = where
            if isinstance(item, Deferred):  # built now, before the adapter moves to its next record
                item = Skipped(sid) if skip is not None and skip(sid) else guarded(sid, item.build)
            yield item
            continue
        repeats[sid] = repeats.get(sid, 1) + 1
        yield Quarantined(f"{sid}{REPEAT_SUFFIX}{repeats[sid]}", STAGE,
                          f"repeats the id {sid} of the record at {first[sid]} (this record: {where}); "
                          f"the first record with an id is the one kept", REPEATED_ID)


__all__ = ["ADAPTERS", "REPEAT_SUFFIX", "RecordIndex", "SOURCE_IDS", "Skipped", "SourceConfig", "SourceError", "item_id", "read_source"]
