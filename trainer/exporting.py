"""`mmat export`: the rows as jsonl for trainers that read `<image>` placeholders and image paths.

    export("mmat-1m", "swift", "out/orr_swift.jsonl", config="orr")          # ms-swift
    export("NS/mmat-1m", "sharegpt", "out/orr.jsonl", config="rr", revision="v1.0.0")  # LLaMA-Factory

Both formats replace every image block by the text `<image>` (at the block's place, so one per
image, in order) and list the images as files written next to the jsonl (`images_dir`, named by the
SHA-256 of their bytes, original encoding kept). Every assistant turn stays a target in both
trainers' default multi-turn settings.

- `swift` (ms-swift "messages" format, `swift sft --dataset out.jsonl`):
  `{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}], "images": ["/abs/a.png"]}`
- `sharegpt` (LLaMA-Factory's sharegpt format):
  `{"conversations": [{"from": "human"|"gpt", "value": "..."}], "system": "...", "images": [...]}`,
  plus a `dataset_info.json` entry (named after the jsonl file) in the same folder, so
  `llamafactory-cli train --dataset_dir out --dataset orr ...` finds it.

Rows whose text already contains a literal `<image>` (the placeholder count would no longer match the
images) or whose turns do not alternate user/assistant are skipped and counted.

What each tool needs, read from their loaders (tests/test_export_real_tools.py runs them):
- ms-swift (`swift.dataset.load_dataset` + its template's `encode`) takes every message's `content`
  as a string and pairs `images` with `<image>` tags in order; a list of content blocks (the RR
  parquet's system turn) makes its encoder drop the row, which is why RR goes through this export.
- LLaMA-Factory's `SharegptDatasetConverter` reads `example[column]` for every column that
  `dataset_info.json` maps, so the entry maps exactly the columns the rows have (`system` only when a
  row has a system prompt: RR has one, ORR does not; mapping it for ORR was a `KeyError: 'system'`).
- Relative paths (`relative_paths=True`): every image the rows point at lies under the jsonl's folder
  (`<out stem>_images/`, hard-linked from `images_dir` when that is elsewhere, copied where a link is
  impossible), so the folder moves between machines as one. LLaMA-Factory resolves them against its
  `media_dir` (default: `dataset_dir`, the jsonl's folder); ms-swift against the working folder or
  `ROOT_IMAGE_DIR`.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from generation.dialogue_format import FormatError, message_text, parse_messages

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("swift", "sharegpt")
IMAGE_PLACEHOLDER = "<image>"
_SHAREGPT_ROLES = {"user": "human", "assistant": "gpt"}


@dataclass
class ExportResult:
    format: str
    out_path: str
    images_dir: str  # the folder the rows' image paths point into
    rows: int = 0
    images: int = 0
    images_linked: int = 0  # relative export: images linked (or copied) from `images_store` beside the jsonl
    images_store: Optional[str] = None
    skipped: int = 0
    skipped_ids: list[str] = field(default_factory=list)
    dataset_info_path: Optional[str] = None


def _load(dataset_or_dir: Any, config: str, split: str, revision: Optional[str], max_rows: Optional[int]) -> Iterable[dict]:
    """Rows from a datasets object, an iterable of dicts, a local folder or a Hub repo id.

    Images come back undecoded (`{"bytes", "path"}`) when the source is a `datasets` object, so the
    original encoding is written as is.
    """
    import datasets

    if isinstance(dataset_or_dir, (str, os.PathLike)):
        from trainer.config import TrainConfig
        from trainer.data import load_rows

        src = str(dataset_or_dir)
        local = Path(src).expanduser().exists()
        cfg = TrainConfig(
            data=src if local else None,
            repo=None if local else src,
            dataset_config=config,
            split=split,
            revision=revision,
            streaming=True,
            shuffle_buffer=0,
            max_samples=max_rows,
        )
        ds = load_rows(cfg)
    else:
        ds = dataset_or_dir
        if max_rows is not None and isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
            ds = ds.take(max_rows) if isinstance(ds, datasets.IterableDataset) else ds.select(range(min(max_rows, len(ds))))
    if isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
        features = ds.features
        if features is not None and "images" in features:
            ds = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
    return ds


def _image_bytes(image: Any) -> bytes:
    from PIL import Image

    if isinstance(image, dict):
        if image.get("bytes") is not None:
            return image["bytes"]
        if image.get("path"):
            return Path(image["path"]).read_bytes()
        raise ValueError("image with neither bytes nor path")
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    raise TypeError(f"unsupported image value: {type(image).__name__}")


def _extension(data: bytes) -> str:
    from PIL import Image

    try:
        fmt = (Image.open(io.BytesIO(data)).format or "png").lower()
    except Exception:
        return "bin"
    return {"jpeg": "jpg", "tiff": "tif"}.get(fmt, fmt)


def _write_image(data: bytes, images_dir: Path) -> Path:
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{_extension(data)}"
    path = images_dir / name
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _place_beside(stored: Path, local_dir: Path) -> Path:
    """`stored` (in a shared image folder) made available in `local_dir`: a hard link, else a copy."""
    local = local_dir / stored.name
    if not local.exists():
        tmp = local.with_suffix(local.suffix + ".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(stored, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(stored, tmp)
        tmp.replace(local)
    return local


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def flatten_content(content: Any) -> str:
    """Content blocks → one string: image blocks become `<image>`, text blocks their text, in order."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if block.get("type") == "image":
            parts.append(IMAGE_PLACEHOLDER)
        elif block.get("type") == "text":
            parts.append(block.get("text") or "")
    return "".join(parts)


def _check(messages: list[dict], n_images: int, fmt: str) -> Optional[str]:
    """Why this row can't be exported faithfully (None when it can): its messages must be the `fmt`
    layout as the project's one parser reads rows as written (`generation.dialogue_format`,
    `strict=False`, as `mmat view` does), with one image block per image."""
    try:
        dialogue = parse_messages(messages, fmt, strict=False)
    except FormatError as exc:
        return f"not the {fmt} layout: {exc}"
    n_blocks = sum(q.n_images for q in dialogue.questions)
    if n_blocks != n_images:
        return f"{n_blocks} image blocks for {n_images} images"
    for m in messages:
        if IMAGE_PLACEHOLDER in message_text(m):
            return f"a {m['role']} turn already contains the text {IMAGE_PLACEHOLDER}"
    return None


def to_swift(messages: list[dict], image_paths: list[str]) -> dict:
    out: dict[str, Any] = {"messages": [{"role": m["role"], "content": flatten_content(m["content"])} for m in messages]}
    if image_paths:
        out["images"] = image_paths
    return out


def to_sharegpt(messages: list[dict], image_paths: list[str]) -> dict:
    system = ""
    turns = list(messages)
    if turns and turns[0]["role"] == "system":
        system = flatten_content(turns[0]["content"])
        turns = turns[1:]
    expected = ["user", "assistant"]
    for i, m in enumerate(turns):
        if m["role"] != expected[i % 2]:
            raise ValueError(f"turn {i} is {m['role']!r}, sharegpt needs user/assistant alternating")
    if len(turns) % 2:
        raise ValueError("sharegpt needs the dialogue to end with an assistant turn")
    out: dict[str, Any] = {
        "conversations": [{"from": _SHAREGPT_ROLES[m["role"]], "value": flatten_content(m["content"])} for m in turns]
    }
    if system:
        out["system"] = system
    if image_paths:
        out["images"] = image_paths
    return out


def _dataset_info_entry(file_name: str, row_keys: set[str]) -> dict:
    """LLaMA-Factory's entry for the file: it maps only the columns that the rows have."""
    columns = {"messages": "conversations"}
    columns.update({key: key for key in ("system", "images") if key in row_keys})
    return {"file_name": file_name, "formatting": "sharegpt", "columns": columns}


def export(
    dataset_or_dir: Union[str, os.PathLike, Any],
    format: str,
    out_path: Union[str, os.PathLike],
    *,
    config: str = "orr",
    split: str = "train",
    revision: Optional[str] = None,
    images_dir: Optional[Union[str, os.PathLike]] = None,
    relative_paths: bool = False,
    max_rows: Optional[int] = None,
) -> ExportResult:
    """Write `dataset_or_dir`'s rows (a folder, a Hub repo id, a `datasets` object or dicts) as jsonl.

    `format`: `swift` (ms-swift) or `sharegpt` (LLaMA-Factory). Images go to `images_dir` (default:
    `<out stem>_images/` beside the jsonl); paths in the rows are absolute unless `relative_paths`:
    then they are relative to the jsonl's folder (LLaMA-Factory's `dataset_dir`) and every image lies
    under it, linked or copied from an `images_dir` outside it, so the folder can be moved as a whole.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out_path).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    img_dir = Path(images_dir).expanduser().resolve() if images_dir else out.parent / f"{out.stem}_images"
    img_dir.mkdir(parents=True, exist_ok=True)
    local_dir = img_dir
    if relative_paths and not _is_inside(img_dir, out.parent):
        local_dir = out.parent / f"{out.stem}_images"
        local_dir.mkdir(parents=True, exist_ok=True)
    result = ExportResult(format=format, out_path=str(out), images_dir=str(local_dir),
                          images_store=str(img_dir) if local_dir != img_dir else None)
    convert = to_swift if format == "swift" else to_sharegpt
    written: set[str] = set()
    linked: set[str] = set()
    row_keys: set[str] = set()

    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in _load(dataset_or_dir, config, split, revision, max_rows):
            messages = list(row["messages"])
            images = list(row.get("images") or [])
            why = _check(messages, len(images), row.get("format") or config.split("-")[0])
            record = None
            if why is None:
                paths = []
                for image in images:
                    p = _write_image(_image_bytes(image), img_dir)
                    written.add(p.name)
                    if local_dir != img_dir:
                        p = _place_beside(p, local_dir)
                        linked.add(p.name)
                    paths.append(os.path.relpath(p, out.parent) if relative_paths else str(p))
                try:
                    record = convert(messages, paths)
                except ValueError as e:
                    why = str(e)
            if record is None:
                result.skipped += 1
                if len(result.skipped_ids) < 100:
                    result.skipped_ids.append(str(row.get("id")))
                log.warning("export: skipping %s: %s", row.get("id"), why)
                continue
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            row_keys.update(record)
            result.rows += 1
    tmp.replace(out)
    result.images = len(written)
    result.images_linked = len(linked)

    if format == "sharegpt":
        info_path = out.parent / "dataset_info.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
        info[out.stem] = _dataset_info_entry(out.name, row_keys)
        info_path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        result.dataset_info_path = str(info_path)
    return result
