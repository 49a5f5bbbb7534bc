"""InfoSeek: info-seeking questions about the entity in an image, answerable only with knowledge.

Native layout: `infoseek_{train,val}.jsonl` with `data_id, image_id, question, answer, answer_eval,
data_split`, and `id2image.jsonl` mapping `image_id` to `image_path` (InfoSeek ships no images; the
OVEN images are fetched separately and the mapping file is the user's, as in the official
evaluation scripts). `answer` and `answer_eval` are lists: strings (aliases), or for numeric
questions `[{"wikidata": value, "range": [low, high]}]`. The test and human splits carry no
answers and are not read.

The knowledge the questions need is not in the record; the RAG operator retrieves it (the bundled
sample adds `corpus/passages.jsonl` for that).
"""
from __future__ import annotations

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
    require,
    sample_id,
)
from generation.splits import normalise_native_split

SOURCE = "infoseek"
SUBSET = "infoseek"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
# `answer` as a list of strings and the `answer_eval` shapes follow the official evaluation code;
# they are not confirmed against every release of the files.
ANNOTATION_FILES = ("infoseek_train.jsonl", "infoseek_val.jsonl")
ID2IMAGE_FILE = "id2image.jsonl"
ID2IMAGE_FIELDS = {"image_id": "image_id", "path": "image_path"}
FALLBACK_IMAGE = "images/{image_id}.jpg"  # used when id2image.jsonl has no entry
FIELDS = {"id": "data_id", "image_id": "image_id", "question": "question", "answer": "answer",
          "answer_eval": "answer_eval", "split": "data_split"}
CORPUS_FILE = "corpus/passages.jsonl"  # {"id", "title", "text"}; read by the RAG operator, not here
HUB_FILES = [*ANNOTATION_FILES, ID2IMAGE_FILE, "images/*", "corpus/*"]
# ---------------------------------------------------------------------------------------------------


def read(cfg: SourceConfig) -> Iterator[Sample | Quarantined]:
    root = local_root(cfg, HUB_FILES)
    files = [root / f for f in ANNOTATION_FILES if (root / f).is_file()]
    if not files:
        raise SourceError(f"{SOURCE}: none of {list(ANNOTATION_FILES)} found under {root}")
    id2image = _id2image(root)
    for path in files:
        for line, rec in iter_jsonl(path):
            native = rec.get(FIELDS["id"]) if isinstance(rec, dict) else None
            sid = sample_id(SOURCE, SUBSET, native or f"{path.stem}-line-{line}")
            if isinstance(rec, Exception):
                yield quarantine(sid, f"line {line} is not valid JSON: {rec}", rec)
                continue
            yield guarded(sid, lambda: _to_sample(rec, sid, root, id2image, cfg.validate_images))


def _id2image(root: Path) -> dict[str, str]:
    path = root / ID2IMAGE_FILE
    if not path.is_file():
        return {}
    out = {}
    for _, row in iter_jsonl(path):
        if isinstance(row, dict) and row.get(ID2IMAGE_FIELDS["image_id"]) and row.get(ID2IMAGE_FIELDS["path"]):
            out[str(row[ID2IMAGE_FIELDS["image_id"]])] = str(row[ID2IMAGE_FIELDS["path"]])
    return out


def _to_sample(rec: dict[str, Any], sid: str, root: Path, id2image: dict[str, str], validate: bool) -> Sample:
    require(rec, FIELDS["id"], sid)
    question = str(require(rec, FIELDS["question"], sid)).strip()
    answers = require(rec, FIELDS["answer"], sid)
    answers = [str(a) for a in answers] if isinstance(answers, list) else [str(answers)]
    answer = answers[0].strip()
    if not answer:
        raise quarantine(sid, "empty answer", KeyError(FIELDS["answer"]))
    image_id = str(require(rec, FIELDS["image_id"], sid))
    rel = id2image.get(image_id, FALLBACK_IMAGE.format(image_id=image_id))
    image = image_from_file(sid, root, rel, validate)
    answer_eval = rec.get(FIELDS["answer_eval"])
    rng = _numeric_range(answer_eval)
    qa = QA(question=add_response_constraint(question, answer), answer=answer,
            meta=qa_meta(answer, math=rng is not None, answers=answers, answer_eval=answer_eval, answer_range=rng,
                         answer_aliases=_aliases(answer_eval) or None))
    native_split = rec.get(FIELDS["split"])
    return Sample(id=sid, source=SOURCE, subset=SUBSET, split=normalise_native_split(native_split), images=[image],
                  qas=[qa], meta={"math": qa.meta["math"], "image_id": image_id, "native_split": native_split})


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
