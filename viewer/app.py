"""The viewer's answers, independent of how they travel: the HTTP server (`viewer.server`) sends them as
JSON, the static export (`viewer.export`) writes them into files.

    app = ViewerApp.open("mmat-1m", fmt="rr")            # work folder: the run's default, if it exists
    app.info(); app.rows({"source": "tabmwp"}); app.dialogue("rr", "tabmwp/free_text/137")
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from mmat_1m import CONFIGS_BY_NAME, FORMATS
from viewer.filters import GROUNDED_VALUES, ORIGIN_VALUES, VERIFIED_VALUES, Filter, FilterError
from viewer.store import NotFound, Shard, ShardStore, ViewerError
from viewer.view import dialogue_view, summary
from viewer.workfolder import WorkFolder

REFLECTION_KINDS = ("none", "general", "math")
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# (format, shard, row in shard, image index, "thumb" | "full") -> URL the page loads the image from
ImageUrls = Callable[[str, Shard, int, int, str], str]


def server_image_url(fmt: str, shard: Shard, row: int, index: int, size: str) -> str:
    return f"/api/image?format={fmt}&shard={shard.index}&row={row}&i={index}&size={size}"


def parse_config(config: str) -> tuple[str, Optional[str]]:
    """`rr`, `orr`, or a per-source config such as `orr-tabmwp` → (format, fixed source or None)."""
    spec = CONFIGS_BY_NAME.get(config)
    if spec is None:
        raise ViewerError(f"--config must be one of {', '.join(CONFIGS_BY_NAME)}, not {config!r}")
    return spec.format, spec.source


def default_work_folder(dataset: str) -> Optional[Path]:
    """The work folder `mmat generate` used for a local dataset folder (None for a Hub repo)."""
    if not Path(dataset).is_dir():
        return None
    from generation.plan import default_work_dir

    return default_work_dir(Path(dataset))


class ViewerApp:
    def __init__(self, store: ShardStore, fmt: str, work: WorkFolder, fixed_source: Optional[str] = None,
                 image_urls: ImageUrls = server_image_url) -> None:
        if fmt not in store.formats():
            raise ViewerError(f"{store.name} has no {fmt} shards (it has: {', '.join(store.formats())})")
        self.store = store
        self.format = fmt
        self.work = work
        self.fixed_source = fixed_source
        self.image_urls = image_urls
        self._quarantine: Optional[list[dict[str, Any]]] = None

    @classmethod
    def open(cls, dataset: str, *, config: str = "rr", revision: Optional[str] = None,
             work_dir: Optional[Path] = None) -> "ViewerApp":
        fmt, source = parse_config(config)
        store = ShardStore.open(dataset, revision)
        work = WorkFolder(work_dir if work_dir is not None else default_work_folder(dataset))
        return cls(store, fmt, work, source)

    # -- answers ------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return {
            "dataset": self.store.name, "format": self.format, "formats": self.store.formats(),
            "sources": [self.fixed_source] if self.fixed_source else self.store.sources(self.format),
            "splits": self.store.splits(self.format), "reflection_kinds": list(REFLECTION_KINDS),
            "operators": _operator_names(), "verified_values": list(VERIFIED_VALUES),
            "grounded_values": list(GROUNDED_VALUES), "origin_values": list(ORIGIN_VALUES),
            "work_folder": str(self.work.path) if self.work.exists else None, "page_size": PAGE_SIZE,
        }

    def facets(self) -> dict[str, Any]:
        """What needs a pass over the filter index: subsets, evidence kinds, operators seen, quarantined count."""
        subsets = self.store.subsets(self.format)
        seen = sorted(self.store.operator_bits)
        return {"subsets": subsets, "operators": sorted(set(_operator_names()) | set(seen)),
                "evidence": self.store.evidence_kinds(self.format), "quarantined": len(self.quarantine())}

    def quarantine(self) -> list[dict[str, Any]]:
        if self._quarantine is None:
            self._quarantine = self.work.quarantined(self.store.present)
        return self._quarantine

    def _filter(self, params: Mapping[str, str]) -> Filter:
        flt = Filter.from_query(params)
        if self.fixed_source:
            if flt.source and flt.source != self.fixed_source:
                raise FilterError(f"this view shows {self.fixed_source} only")
            flt = Filter(**{**flt.__dict__, "source": self.fixed_source})
        return flt

    def rows(self, params: Mapping[str, str], fmt: Optional[str] = None) -> dict[str, Any]:
        """One page of the list (`offset`, `limit` and the filters of `viewer.filters.Filter`)."""
        fmt = fmt or params.get("format") or self.format
        if fmt not in FORMATS:
            raise FilterError(f"format must be rr or orr, not {fmt!r}")
        flt = self._filter(params)
        offset = _int(params, "offset", 0)
        limit = min(_int(params, "limit", PAGE_SIZE), MAX_PAGE_SIZE)
        if flt.quarantined:
            matching = [r for r in self.quarantine() if flt.matches_quarantine(r)]
            return {"total": len(matching), "offset": offset, "quarantined": True,
                    "rows": matching[offset: offset + limit]}
        page = self.store.page(fmt, flt, offset, limit)
        rows = [summary(data, shard.split, self._urls(fmt, shard, row)) for shard, row, data in page.rows]
        return {"total": page.total, "offset": offset, "quarantined": False, "rows": rows}

    def count(self, params: Mapping[str, str]) -> dict[str, Any]:
        """The list's total for these filters, when `rows` could not tell it without reading more footers."""
        flt = self._filter(params)
        if flt.quarantined:
            return {"total": sum(1 for r in self.quarantine() if flt.matches_quarantine(r))}
        return {"total": self.store.count(params.get("format") or self.format, flt)}

    def dialogue(self, fmt: str, sample_id: str) -> dict[str, Any]:
        shard, row = self.store.find(fmt, sample_id)
        return self.dialogue_at(fmt, shard, row)

    def dialogue_at(self, fmt: str, shard: Shard, row: int,
                    image_url: Optional[Callable[[int, str], str]] = None) -> dict[str, Any]:
        data = self.store.row(shard, row)
        return dialogue_view(data, shard.split, backend_of=self.work.backend_of,
                             image_url=image_url or self._urls(fmt, shard, row))

    def image(self, params: Mapping[str, str]) -> tuple[bytes, str]:
        from viewer.images import THUMB_SIDE, downsized, mime_of

        fmt = params.get("format") or self.format
        shard_index = _int(params, "shard", -1)
        shards = [s for s in self.store.shards if s.index == shard_index and s.format == fmt]
        if not shards:
            raise NotFound(f"no {fmt} shard #{shard_index}")
        row = _int(params, "row", -1)
        if not 0 <= row < shards[0].num_rows:
            raise NotFound(f"no row {row} in {shards[0].path}")
        data = self.store.image(shards[0], row, _int(params, "i", 0))
        if params.get("size") == "thumb":
            return downsized(data, THUMB_SIDE), "image/jpeg"
        return data, mime_of(data)

    def _urls(self, fmt: str, shard: Shard, row: int) -> Callable[[int, str], str]:
        return lambda index, size: self.image_urls(fmt, shard, row, index, size)


def _operator_names() -> list[str]:
    from operators.base import OPERATOR_NAMES

    return list(OPERATOR_NAMES)


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise FilterError(f"{name} must be an integer, not {raw!r}") from None
