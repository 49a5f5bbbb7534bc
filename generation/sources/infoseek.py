"""InfoSeek: info-seeking questions about the entity in an image, answerable only with knowledge.

Released layout (the InfoSeek release as fetched by `download_infoseek_jsonl.sh`, described in
edchengg/infoseek_eval `infoseek/README.md` at commit c8ef023 and read by its `run_blip2_infoseek.py`):
`infoseek_{train,val}.jsonl` with `data_id, image_id, question, answer, answer_eval, data_split`,
and `infoseek_{train,val}_withkb.jsonl` with `data_id, entity_id, entity_text` (the Wikidata entity
the question is about; joined into `meta`). The files may sit in the source folder or in its
`infoseek_data/` subfolder. `answer` and `answer_eval` are lists: strings (aliases), or for numeric
questions `[{"wikidata": value, "range": [low, high]}]`. The test and human splits carry no answers
and are not read.

InfoSeek ships no images. They are found, per `image_id`, in this order:
1. `id2image.jsonl` (`image_id`, `image_path`): the user's mapping the official scripts read; a path
   is relative to the source folder (an absolute one needs `allow_outside_paths: true`);
2. the OVEN image snapshot, `oven_images/{shard}/{image_id}{ext}` with `shard` = the first two digits
   of the id's number (`oven_04011235` -> `oven_images/04/`), the rule of edchengg/oven_eval
   `image_downloads/merge_oven_images.py` (commit 9c1670b), which keeps each file's extension;
3. `images/{image_id}.jpg`.
A folder with none of them is not an InfoSeek layout: one SourceError at the start.

The knowledge the questions need is not in the record; the RAG operator retrieves it (the bundled
sample adds `corpus/passages.jsonl` for that).
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from generation.schema import QA, ImageRef, Sample
from generation.sources.base import (
    Deferred, ImageFolder, Located, RecordIndex, SourceConfig, SourceError, add_response_constraint, field_text,
    indexed_jsonl, iter_jsonl, local_root, qa_meta, quarantine, require, sample_id, usable,
)
from generation.splits import normalise_native_split

SOURCE = "infoseek"
SUBSET = "infoseek"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
# `answer` as a list of strings and the `answer_eval` shapes follow the official evaluation code.
ANNOTATION_FILES = ("infoseek_train.jsonl", "infoseek_val.jsonl")
ANNOTATION_DIRS = (".", "infoseek_data")
WITHKB_FILE = "{stem}_withkb.jsonl"
WITHKB_FIELDS = {"id": "data_id", "entity_id": "entity_id", "entity_text": "entity_text"}
ID2IMAGE_FILE = "id2image.jsonl"
ID2IMAGE_FIELDS = {"image_id": "image_id", "path": "image_path"}
OVEN_DIR = "oven_images"
OVEN_IMAGE = "oven_images/{shard}/{image_id}{ext}"
OVEN_EXTENSIONS = (".jpg", ".JPEG", ".jpeg", ".JPG", ".png", ".PNG")
LOOSE_IMAGE = "images/{image_id}.jpg"
FIELDS = {"id": "data_id", "image_id": "image_id", "question": "question", "answer": "answer",
          "answer_eval": "answer_eval", "split": "data_split"}
# corpus/passages.jsonl ({"id", "title", "text"}) is read by the RAG operator, not here
HUB_FILES = [*ANNOTATION_FILES, "*_withkb.jsonl", ID2IMAGE_FILE, "oven_images/*", "images/*", "corpus/*"]
ID_SCHEME = "infoseek-1"  # bump when the id rule in `read` changes: record indexes made under the old one are ignored
# ---------------------------------------------------------------------------------------------------


def read(cfg: SourceConfig, index: Optional[RecordIndex] = None) -> Iterator[Located]:
    root = local_root(cfg, HUB_FILES)
    files = [root / d / f for d in ANNOTATION_DIRS for f in ANNOTATION_FILES if (root / d / f).is_file()]
    if not files:
        raise SourceError(f"{SOURCE}: none of {list(ANNOTATION_FILES)} found under {root} or {root / 'infoseek_data'}")
    has_id2image = (root / ID2IMAGE_FILE).is_file()
    if not (has_id2image or (root / OVEN_DIR).is_dir() or (root / "images").is_dir()):
        raise SourceError(f"{SOURCE}: no images under {root}: expected {ID2IMAGE_FILE} (image_id -> image_path) or "
                          f"the OVEN snapshot {OVEN_IMAGE.format(shard='{shard}', image_id='{image_id}', ext='.jpg')}")
    images = ImageFolder.of(cfg, root)
    locate = ImageLocator(images, cache(lambda: _id2image(root) if has_id2image else {}))
    prefix = sample_id(SOURCE, SUBSET, "")
    for path in files:
        entities = cache(lambda path=path: _withkb(path.with_name(WITHKB_FILE.format(stem=path.stem))))

        def sid_of(line: int, rec: Any, path: Path = path) -> str:
            return sample_id(SOURCE, SUBSET, field_text(rec, FIELDS["id"]) or f"{path.stem}-line-{line}")

        for line, sid, load in indexed_jsonl(path, sid_of, index, ID_SCHEME):
            yield Located(f"{path.name}: line {line}", Deferred(sid, lambda: _to_sample(
                usable(load(), sid), sid, locate, entities().get(sid.removeprefix(prefix)))))


class ImageLocator:
    """image_id -> the image's path, by the three rules of the module docstring."""

    def __init__(self, images: ImageFolder, id2image: Callable[[], dict[str, str]]) -> None:
        self.images = images
        self.id2image = id2image  # read when the first sample is built: a rerun with nothing to do never reads it

    def candidate(self, image_id: str) -> str:
        if image_id in self.id2image():
            return self.id2image()[image_id]
        shard = image_id.rsplit("_", 1)[-1][:2]
        for ext in OVEN_EXTENSIONS:
            rel = OVEN_IMAGE.format(shard=shard, image_id=image_id, ext=ext)
            if self.images.exists(rel):
                return rel
        return LOOSE_IMAGE.format(image_id=image_id)

    def file(self, sid: str, image_id: str) -> ImageRef:
        return self.images.file(sid, self.candidate(image_id))


def _id2image(root: Path) -> dict[str, str]:
    out = {}
    for _, row in iter_jsonl(root / ID2IMAGE_FILE):
        if isinstance(row, dict) and row.get(ID2IMAGE_FIELDS["image_id"]) and row.get(ID2IMAGE_FIELDS["path"]):
            out[str(row[ID2IMAGE_FIELDS["image_id"]])] = str(row[ID2IMAGE_FIELDS["path"]])
    return out


def _withkb(path: Path) -> dict[str, dict[str, Any]]:
    """data_id -> {entity_id, entity_text} from the with-KB file beside an annotation file, if any."""
    if not path.is_file():
        return {}
    out = {}
    for _, row in iter_jsonl(path):
        if isinstance(row, dict) and row.get(WITHKB_FIELDS["id"]) is not None:
            out[str(row[WITHKB_FIELDS["id"]])] = {k: row.get(v) for k, v in WITHKB_FIELDS.items() if k != "id"}
    return out


def _to_sample(rec: dict[str, Any], sid: str, locate: ImageLocator, entity: Optional[dict[str, Any]]) -> Sample:
    require(rec, FIELDS["id"], sid)
    question = str(require(rec, FIELDS["question"], sid)).strip()
    answers = require(rec, FIELDS["answer"], sid)
    answers = [str(a) for a in answers] if isinstance(answers, list) else [str(answers)]
    answer = answers[0].strip()
    if not answer:
        raise quarantine(sid, "empty answer", KeyError(FIELDS["answer"]))
    image_id = str(require(rec, FIELDS["image_id"], sid))
    image = locate.file(sid, image_id)
    answer_eval = rec.get(FIELDS["answer_eval"])
    rng = _numeric_range(answer_eval)
    qa = QA(question=add_response_constraint(question, answer), answer=answer,
            meta=qa_meta(answer, math=rng is not None, answers=answers, answer_eval=answer_eval, answer_range=rng,
                         answer_aliases=_aliases(answer_eval) or None))
    native_split = rec.get(FIELDS["split"])
    return Sample(id=sid, source=SOURCE, subset=SUBSET, split=normalise_native_split(native_split), images=[image],
                  qas=[qa], meta={"math": qa.meta["math"], "image_id": image_id, "native_split": native_split,
                                  **(entity or {})})


def _numeric_range(answer_eval: Any) -> Optional[list[float]]:
    """`[{"wikidata": 70.0, "range": [63.0, 77.0]}]` (or the bare dict) -> [63.0, 77.0]."""
    item = answer_eval[0] if isinstance(answer_eval, list) and answer_eval else answer_eval
    if isinstance(item, dict) and isinstance(item.get("range"), list) and len(item["range"]) >= 2:
        return [float(item["range"][0]), float(item["range"][1])]
    return None


def _aliases(answer_eval: Any) -> list[str]:
    if isinstance(answer_eval, list):
        return [str(a) for a in answer_eval if isinstance(a, (str, int, float)) and not isinstance(a, bool)]
    return []
