"""`mmat view DATASET --export DIR`: the same browser as static files that open from disk (`file://`).

Browsers refuse `fetch` from `file://`, but load scripts and images by relative path, so the data
travel as scripts: `data/index.js` sets `window.MMAT_EXPORT` (info, facets, list items per format,
quarantine records) and each dialogue is `data/d/{format}-{key}.js`, calling
`window.MMAT_DIALOGUE(format, key, view)`. Images are downsized JPEGs (`img/{key}-{i}.jpg`, at most
`EXPORT_SIDE` px, and `img/{key}-{i}-t.jpg` thumbnails), written once per dialogue for both formats.
The JSON inside the scripts has `<`, U+2028 and U+2029 escaped, so no row text can end a script.

The sample: at most `limit` dialogues, taken from the sources in turn (so every source shows), in the
list order within each source; RR and ORR rows of the same ids.
"""
from __future__ import annotations

import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.atomic import write_atomic
from viewer.app import ViewerApp
from viewer.filters import Filter
from viewer.images import EXPORT_SIDE, THUMB_SIDE, downsized
from viewer.server import page_html, static_text
from viewer.store import NotFound


@dataclass
class ExportResult:
    folder: Path
    index: Path
    dialogues: int
    images: int


def _js_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)  # `generation.atomic`: fsync'd, renamed, no temp left on an error


def _sample_ids(app: ViewerApp, limit: int) -> list[str]:
    """Up to `limit` ids, from each source in turn."""
    fmt = app.format
    per_source = []
    for source in app.info()["sources"]:
        page = app.store.page(fmt, Filter(source=source), 0, limit, columns=["id"])
        per_source.append([data["id"] for _, _, data in page.rows])
    ids = [i for group in itertools.zip_longest(*per_source) for i in group if i is not None]
    return ids[:limit]


def export_static(app: ViewerApp, folder: Path, limit: int = 200) -> ExportResult:
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not (folder / "data" / "index.js").exists():
        raise FileExistsError(f"{folder} is not empty and is not an earlier export; choose an empty folder")
    for stale in ("data", "img"):
        shutil.rmtree(folder / stale, ignore_errors=True)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    ids = _sample_ids(app, limit)
    keys = {sample_id: k for k, sample_id in enumerate(ids)}
    formats = app.store.formats()
    rows: dict[str, list[dict]] = {f: [] for f in formats}
    key_maps: dict[str, dict[str, int]] = {f: {} for f in formats}
    images = 0
    written: set[int] = set()
    for sample_id, key in keys.items():
        for fmt in formats:
            try:
                shard, row = app.store.find(fmt, sample_id)
            except NotFound:
                continue
            full = app.store.row(shard, row)
            if key not in written:
                for i, img in enumerate(full.get("images") or ()):
                    (folder / "img" / f"{key}-{i}.jpg").write_bytes(downsized(img["bytes"], EXPORT_SIDE))
                    (folder / "img" / f"{key}-{i}-t.jpg").write_bytes(downsized(img["bytes"], THUMB_SIDE))
                    images += 1
                written.add(key)

            def url(index: int, size: str, key: int = key) -> str:
                return f"img/{key}-{index}{'-t' if size == 'thumb' else ''}.jpg"

            view = app.dialogue_at(fmt, shard, row, image_url=url)
            list_item = {k: view[k] for k in ("id", "source", "subset", "split", "format", "question", "answer",
                                               "reflection", "verified", "judge_score", "grounded", "evidence",
                                               "origin", "operators", "model", "n_images", "thumb")}
            rows[fmt].append(list_item)
            key_maps[fmt][sample_id] = key
            _write(folder / "data" / "d" / f"{fmt}-{key}.js",
                   f"window.MMAT_DIALOGUE({_js_json(fmt)},{key},{_js_json(view)});\n")
    info = {**app.info(), "dataset": f"{app.store.name} (export of {len(ids)} dialogues)", "page_size": 50}
    info["sources"] = [s for s in info["sources"] if any(r["source"] == s for r in rows[app.format])]
    info["work_folder"] = info["work_folder"] and "exported"
    quarantine = [r for r in app.quarantine()]
    subsets = sorted({r["subset"] for f in formats for r in rows[f] if r["subset"]})
    operators = sorted(set(info["operators"]) | {op for f in formats for r in rows[f] for op in r["operators"]})
    evidence = sorted({r["evidence"] for f in formats for r in rows[f] if r["evidence"]})
    payload = {"info": info, "facets": {"subsets": subsets, "operators": operators, "evidence": evidence,
                                        "quarantined": len(quarantine)},
               "rows": rows, "keys": key_maps, "quarantine": quarantine}
    _write(folder / "data" / "index.js", f"window.MMAT_EXPORT = {_js_json(payload)};\n")
    _write(folder / "app.js", static_text("app.js"))
    _write(folder / "app.css", static_text("app.css"))
    index = folder / "index.html"
    _write(index, page_html('<script src="data/index.js"></script>'))
    return ExportResult(folder.resolve(), index.resolve(), len(ids), images)
