"""Visual CoT (deepcs233/Visual-CoT): VQA records whose CoT is a bounding box around the evidence.

Released layout (upstream README at commit 83212ae, `tools/convert_data_to_llava_format.py` at
commit bd7d040, `viscot_benchmark/` at commit 03729c4):
  viscot_363k.json                   the training file: a JSON list of
      {dataset, split, question_id, image: [path, "path###[x1, y1, x2, y2]"],
       conversations: [human question + bbox request, gpt normalised bbox, human "<image>", gpt answer]}
  viscot_dataset/{dataset}_cot_{split}.jsonl   metadata (the GitHub repo's folder; the Hub repo calls it
  metadata/{dataset}_cot_{split}.jsonl         `metadata/`): {dataset, split, image, question, answer,
                                               bboxs, width, height}, one per line
  cot/{dataset}/{image}              images; `textcap` records point into `cot/textvqa/` (the converter
                                     writes `os.path.join('cot', 'textvqa', image)` for them)

Ids are the same whichever files a folder has: the converter numbers records per metadata file
(`question_id` = the 0-based line index in `{dataset}_cot_{split}.jsonl`), so a metadata row and the
training record made from it are both `visual_cot/{dataset}/{question_id}` (`{split}-{question_id}`
for a split other than train, whose numbering restarts: the benchmark files do the same).

The training file is read first; metadata, when present, adds every box (not just the merged one)
and the image size. A folder with metadata only is read from the metadata alone.
"""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Iterator, Optional

from generation.answers import strip_added_period
from generation.schema import QA, Sample
from generation.sources.base import (
    Deferred, ImageFolder, Located, RecordIndex, SourceConfig, SourceError, add_response_constraint, field_text,
    id_text, indexed_json_container, indexed_jsonl, iter_jsonl, is_short_answer, local_root, qa_meta, quarantine,
    require, sample_id, usable,
)
from generation.splits import normalise_native_split

SOURCE = "visual_cot"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
TRAIN_FILE = "viscot_363k.json"
METADATA_DIRS = ("viscot_dataset", "metadata")  # GitHub repo, Hub repo
METADATA_FILE = re.compile(r"^(?P<dataset>.+)_cot_(?P<split>[a-z0-9]+)\.jsonl$")
FIELDS = {"id": "question_id", "image": "image", "conversations": "conversations", "dataset": "dataset",
          "split": "split", "role": "from", "text": "value", "human": "human", "gpt": "gpt"}
META_FIELDS = {"question": "question", "answer": "answer", "image": "image", "width": "width",
               "height": "height", "bboxs": "bboxs", "dataset": "dataset", "split": "split"}
BBOX_SEPARATOR = "###"
IMAGE_ROOT = "cot"
IMAGE_DIR = "cot/{folder}/{image}"  # where metadata-only records find their image
IMAGE_FOLDER = {"textcap": "textvqa"}  # datasets whose images live in another dataset's folder
# The request the converter appends to each question (two variants upstream); removed from our question.
_REQUEST = "provide the bounding box coordinate of the region that can help you answer the question better."
COT_PROMPTS = (" Please " + _REQUEST, " Please think step by step and " + _REQUEST)
HUB_FILES = [TRAIN_FILE, "viscot_dataset/*", "metadata/*"]
ID_SCHEME = "visual_cot-1"  # bump when an id rule changes: record indexes made under the old one are then ignored  # Hub images come as archives: extract them under cot/
# ---------------------------------------------------------------------------------------------------

_BOX = re.compile(r"\[\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\]")


def read(cfg: SourceConfig, index: Optional[RecordIndex] = None) -> Iterator[Located]:
    root = local_root(cfg, HUB_FILES)
    train = root / TRAIN_FILE
    metadata_files = _metadata_files(root)
    if not train.is_file() and not metadata_files:
        raise SourceError(f"{SOURCE}: neither {TRAIN_FILE} nor metadata ({' or '.join(METADATA_DIRS)}/"
                          f"{{dataset}}_cot_{{split}}.jsonl) found under {root}")
    if not (root / IMAGE_ROOT).is_dir():
        raise SourceError(f"{SOURCE}: {IMAGE_ROOT}/ not found under {root}: extract the image archives there "
                          f"({IMAGE_DIR.format(folder='{dataset}', image='{image}')})")
    images = ImageFolder.of(cfg, root)
    if train.is_file():
        boxes = cache(lambda: _metadata_index(metadata_files))  # read when a record is first built
        for n, _, sid, load in indexed_json_container(train, SOURCE, _train_sid, index, ID_SCHEME):
            yield Located(f"{TRAIN_FILE}: record {n}",
                          Deferred(sid, lambda: _from_train_record(usable(load(), sid), sid, images, boxes())))
        return
    for path in metadata_files:
        def sid_of(line: int, row: Any, path: Path = path) -> str:
            dataset, split = _file_dataset_split(path)
            row_dataset = field_text(row, META_FIELDS["dataset"]) or dataset
            row_split = field_text(row, META_FIELDS["split"]) or split
            return sample_id(SOURCE, row_dataset, native_id(row_split, line - 1))  # the converter's question_id

        for line, sid, load in indexed_jsonl(path, sid_of, index, ID_SCHEME):
            yield Located(f"{path.parent.name}/{path.name}: line {line}",
                          Deferred(sid, lambda: _from_metadata(usable(load(), sid), sid, images)))


def native_id(split: Any, question_id: Any) -> str:
    """The id part after the dataset: `question_id`, prefixed by the split unless it is train."""
    return str(question_id) if split in (None, "", "train") else f"{split}-{question_id}"


def _metadata_files(root: Path) -> list[Path]:
    return [p for folder in METADATA_DIRS for p in sorted((root / folder).glob("*.jsonl"))]


def _file_dataset_split(path: Path) -> tuple[str, str]:
    m = METADATA_FILE.match(path.name)
    return (m.group("dataset"), m.group("split")) if m else (path.stem, "train")


def _metadata_index(files: list[Path]) -> dict[tuple[Any, str], list[dict[str, Any]]]:
    """(dataset, image file name) -> metadata rows; unparseable lines are left out here (a training
    record that needed one simply gets no extra boxes)."""
    index: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for path in files:
        for _, row in iter_jsonl(path):
            if isinstance(row, dict):
                key = (row.get(META_FIELDS["dataset"]), Path(str(row.get(META_FIELDS["image"], ""))).name)
                index.setdefault(key, []).append(row)
    return index


def _train_sid(at: tuple[int, Any], rec: Any) -> str:
    """The id, computed defensively so a broken record still gets a stable, traceable id."""
    n = at[0]
    if not isinstance(rec, dict):
        return sample_id(SOURCE, "unknown", f"record-{n}")
    dataset = field_text(rec, FIELDS["dataset"])
    images = rec.get(FIELDS["image"])
    if not dataset and isinstance(images, list) and images and id_text(images[0]):
        parts = Path(images[0]).parts  # cot/<dataset>/<file>
        dataset = parts[1] if len(parts) > 2 else None
    native = field_text(rec, FIELDS["id"])
    if native is None:
        return sample_id(SOURCE, dataset or "unknown", f"record-{n}")
    return sample_id(SOURCE, dataset or "unknown", native_id(field_text(rec, FIELDS["split"]), native))


def _from_train_record(rec: dict[str, Any], sid: str, images: ImageFolder, index: dict) -> Sample:
    require(rec, FIELDS["id"], sid)
    dataset = sid.split("/")[1]
    paths = require(rec, FIELDS["image"], sid)
    if isinstance(paths, str):
        paths = [paths]
    image_path = paths[0].split(BBOX_SEPARATOR)[0]
    box = next((_parse_box(p.split(BBOX_SEPARATOR, 1)[1]) for p in paths if BBOX_SEPARATOR in p), None)
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
    image = images.file(sid, image_path)
    return _sample(sid, dataset, rec.get(FIELDS["split"]) or meta_row.get(META_FIELDS["split"]),
                   image, question, answer, box, bbox_norm, meta_row)


def _from_metadata(row: dict[str, Any], sid: str, images: ImageFolder) -> Sample:
    dataset = sid.split("/")[1]
    question = _clean_question(str(require(row, META_FIELDS["question"], sid)))
    answer = str(require(row, META_FIELDS["answer"], sid)).strip()
    box = _merge(require(row, META_FIELDS["bboxs"], sid))
    rel = IMAGE_DIR.format(folder=IMAGE_FOLDER.get(dataset, dataset), image=require(row, META_FIELDS["image"], sid))
    image = images.file(sid, rel)
    return _sample(sid, dataset, row.get(META_FIELDS["split"]), image, question, answer, box, None, row)


def _sample(sid: str, dataset: str, native_split: Optional[str], image: Any, question: str, answer: str,
            box: Optional[list[float]], bbox_norm: Optional[str], meta_row: dict[str, Any]) -> Sample:
    bboxs = meta_row.get(META_FIELDS["bboxs"]) or ([box] if box else [])
    rationale = (f"The answer is found in the image region [{', '.join(_fmt(v) for v in box)}] "
                 f"(x1, y1, x2, y2 in pixels).") if box else None
    # A short answer asked for as "a single word or phrase" loses the sentence period some subsets write
    # (v7w: "Foliage."); the answer as the upstream wrote it stays in meta.native_answer.
    native_answer = answer
    if is_short_answer(question, answer):
        answer = strip_added_period(answer)
    qa = QA(question=add_response_constraint(question, answer), answer=answer, source_rationale=rationale,
            meta=qa_meta(answer, bbox=box, bboxs=bboxs, bbox_normalised=bbox_norm,
                         native_answer=native_answer if native_answer != answer else None))
    # Every record of the 363k training file says "train" (the split of the image's home dataset),
    # so only a held-out native split is kept; the rest is split by id hash (generation.splits).
    split = normalise_native_split(native_split)
    return Sample(id=sid, source=SOURCE, subset=dataset, split=split if split == "validation" else None,
                  images=[image], qas=[qa],
                  meta={"math": qa.meta["math"], "native_split": native_split, "bbox": box, "bboxs": bboxs,
                        "width": meta_row.get(META_FIELDS["width"]), "height": meta_row.get(META_FIELDS["height"])})


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
