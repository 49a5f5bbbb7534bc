"""Visual CoT (deepcs233/Visual-CoT): VQA records whose CoT is a bounding box around the evidence.

Native layout (upstream README and `tools/convert_data_to_llava_format.py`):
  viscot_363k.json                          list of training records:
      {dataset, split, question_id, image: [path, "path###[x1, y1, x2, y2]"],
       conversations: [human question + bbox request, gpt normalised bbox, human "<image>", gpt answer]}
  viscot_dataset/{dataset}_cot_train.jsonl  metadata: {dataset, split, image, question, answer, bboxs, width, height}
  cot/{dataset}/{image}                     images (textcap records point into cot/textvqa/)

The training file is read first; metadata, when present, adds every box (not just the merged one)
and the image size. A folder with metadata only is read from the metadata alone.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Optional

from generation.schema import QA, Quarantined, Sample
from generation.sources.base import (
    SourceConfig,
    SourceError,
    add_response_constraint,
    guarded,
    image_from_file,
    iter_jsonl,
    local_root,
    qa_meta,
    quarantine,
    read_json,
    require,
    sample_id,
)
from generation.splits import normalise_native_split

SOURCE = "visual_cot"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
TRAIN_FILE = "viscot_363k.json"
METADATA_GLOB = "viscot_dataset/*.jsonl"
FIELDS = {"id": "question_id", "image": "image", "conversations": "conversations", "dataset": "dataset",
          "split": "split", "role": "from", "text": "value", "human": "human", "gpt": "gpt"}
META_FIELDS = {"question": "question", "answer": "answer", "image": "image", "width": "width",
               "height": "height", "bboxs": "bboxs", "dataset": "dataset", "split": "split"}
BBOX_SEPARATOR = "###"
IMAGE_DIR = "cot/{dataset}/{image}"  # where metadata-only records find their image
# The request the converter appends to each question (two variants upstream); removed from our question.
_REQUEST = "provide the bounding box coordinate of the region that can help you answer the question better."
COT_PROMPTS = (" Please " + _REQUEST, " Please think step by step and " + _REQUEST)
HUB_FILES = [TRAIN_FILE, "viscot_dataset/*"]  # Hub images come as archives: extract them under cot/ yourself
# ---------------------------------------------------------------------------------------------------

_BOX = re.compile(r"\[\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\]")


def read(cfg: SourceConfig) -> Iterator[Sample | Quarantined]:
    root = local_root(cfg, HUB_FILES)
    metadata = _load_metadata(root)
    index: dict[tuple[Any, str], list[dict[str, Any]]] = {}  # (dataset, image file name) -> rows
    for row in metadata:
        key = (row.get(META_FIELDS["dataset"]), Path(str(row.get(META_FIELDS["image"], ""))).name)
        index.setdefault(key, []).append(row)
    train = root / TRAIN_FILE
    if train.is_file():
        records = read_json(train, SOURCE)
        if not isinstance(records, list):
            raise SourceError(f"{SOURCE}: {train} must hold a JSON list of records")
        for n, rec in enumerate(records):
            sid = _train_sid(rec, n)
            yield guarded(sid, lambda: _from_train_record(rec, sid, root, index, cfg.validate_images))
    elif metadata:
        for row in metadata:
            native = f"{Path(row['_file']).stem}-{row['_line']}"  # no id in metadata: file and line
            sid = sample_id(SOURCE, row.get(META_FIELDS["dataset"]) or "unknown", native)
            yield guarded(sid, lambda: _from_metadata(row, sid, root, cfg.validate_images))
    else:
        raise SourceError(f"{SOURCE}: neither {TRAIN_FILE} nor {METADATA_GLOB} found under {root}")


def _train_sid(rec: Any, n: int) -> str:
    """The id, computed defensively so a broken record still gets a stable, traceable id."""
    if not isinstance(rec, dict):
        return sample_id(SOURCE, "unknown", f"record-{n}")
    dataset = rec.get(FIELDS["dataset"])
    images = rec.get(FIELDS["image"])
    if not dataset and isinstance(images, list) and images and isinstance(images[0], str):
        parts = Path(images[0]).parts  # cot/<dataset>/<file>
        dataset = parts[1] if len(parts) > 2 else None
    native = rec.get(FIELDS["id"])
    return sample_id(SOURCE, dataset or "unknown", native if native is not None else f"record-{n}")


def _from_train_record(rec: dict[str, Any], sid: str, root: Path, index: dict, validate: bool) -> Sample:
    require(rec, FIELDS["id"], sid)
    dataset = sid.split("/")[1]
    images = require(rec, FIELDS["image"], sid)
    if isinstance(images, str):
        images = [images]
    image_path = images[0].split(BBOX_SEPARATOR)[0]
    box = next((_parse_box(p.split(BBOX_SEPARATOR, 1)[1]) for p in images if BBOX_SEPARATOR in p), None)
    turns = require(rec, FIELDS["conversations"], sid)
    humans = [t[FIELDS["text"]] for t in turns if t.get(FIELDS["role"]) == FIELDS["human"]]
    gpts = [t[FIELDS["text"]] for t in turns if t.get(FIELDS["role"]) == FIELDS["gpt"]]
    if not humans or not gpts:
        raise quarantine(sid, "conversations need a human question and a gpt answer")
    question = _clean_question(humans[0])
    answer = str(gpts[-1]).strip()
    if not question or not answer:
        raise quarantine(sid, "empty question or answer in conversations")
    bbox_norm = gpts[0].strip() if len(gpts) > 1 else None
    candidates = index.get((dataset, Path(image_path).name), [])
    meta_row = next((r for r in candidates if str(r.get(META_FIELDS["question"], "")).strip() == question), {})
    image = image_from_file(sid, root, image_path, validate)
    return _sample(sid, dataset, rec.get(FIELDS["split"]) or meta_row.get(META_FIELDS["split"]),
                   image, question, answer, box, bbox_norm, meta_row)


def _from_metadata(row: dict[str, Any], sid: str, root: Path, validate: bool) -> Sample:
    dataset = sid.split("/")[1]
    question = _clean_question(str(require(row, META_FIELDS["question"], sid)))
    answer = str(require(row, META_FIELDS["answer"], sid)).strip()
    box = _merge(require(row, META_FIELDS["bboxs"], sid))
    rel = IMAGE_DIR.format(dataset=dataset, image=require(row, META_FIELDS["image"], sid))
    image = image_from_file(sid, root, rel, validate)
    return _sample(sid, dataset, row.get(META_FIELDS["split"]), image, question, answer, box, None, row)


def _sample(sid: str, dataset: str, native_split: Optional[str], image: Any, question: str, answer: str,
            box: Optional[list[float]], bbox_norm: Optional[str], meta_row: dict[str, Any]) -> Sample:
    bboxs = meta_row.get(META_FIELDS["bboxs"]) or ([box] if box else [])
    rationale = (f"The answer is found in the image region [{', '.join(_fmt(v) for v in box)}] "
                 f"(x1, y1, x2, y2 in pixels).") if box else None
    qa = QA(question=add_response_constraint(question, answer), answer=answer, source_rationale=rationale,
            meta=qa_meta(answer, bbox=box, bboxs=bboxs, bbox_normalised=bbox_norm))
    # Every record of the 363k training file says "train" (the split of the image's home dataset),
    # so only a held-out native split is kept; the rest is split by id hash (generation.splits).
    split = normalise_native_split(native_split)
    return Sample(id=sid, source=SOURCE, subset=dataset, split=split if split == "validation" else None,
                  images=[image], qas=[qa],
                  meta={"math": qa.meta["math"], "native_split": native_split, "bbox": box, "bboxs": bboxs,
                        "width": meta_row.get(META_FIELDS["width"]), "height": meta_row.get(META_FIELDS["height"])})


def _load_metadata(root: Path) -> list[dict[str, Any]]:
    """Metadata rows in file order, tagged with file and line; unparseable lines are left out here
    (a training record that needed one simply gets no extra boxes)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(root.glob(METADATA_GLOB)):
        for line, row in iter_jsonl(path):
            if isinstance(row, dict):
                rows.append({**row, "_file": path.name, "_line": line})
    return rows


def _clean_question(value: str) -> str:
    q = str(value).replace("<image>", "").strip()
    for prompt in COT_PROMPTS:
        if q.endswith(prompt.strip()):
            q = q[: -len(prompt.strip())].rstrip()
    return q


def _parse_box(s: str) -> list[float]:
    m = _BOX.search(s)
    if not m:
        raise ValueError(f"cannot parse bbox from {s!r}")
    return [float(v) if "." in v else int(v) for v in m.groups()]


def _merge(boxes: list[list[float]]) -> Optional[list[float]]:
    """Upstream's rule for several boxes: the smallest box around all of them."""
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"
