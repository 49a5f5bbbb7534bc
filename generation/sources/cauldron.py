"""The Cauldron (HuggingFaceM4/the_cauldron): 50 vision-language subsets in one shape.

Native layout, one Hub config per subset: `<subset>/train-*.parquet` with columns
`images: list<Image>` and `texts: list<{user, assistant, source}>`; every `texts` entry is a QA about
the same images, so a row is one multi-QA Sample. There are no ids: the native id is the row's
position in its subset (files in name order), stable for a fixed revision.

Local folders are read with pyarrow (no cache writes); Hub ids stream through `datasets.load_dataset`
so `limit` reads only what it needs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from generation.schema import QA, Quarantined, Sample
from generation.sources.base import (
    SourceConfig,
    SourceError,
    add_response_constraint,
    choice_letter,
    guarded,
    hub_error,
    image_from_bytes,
    parse_listed_choices,
    qa_meta,
    quarantine,
    require,
    sample_id,
)

SOURCE = "cauldron"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
FIELDS = {"images": "images", "texts": "texts", "user": "user", "assistant": "assistant", "source": "source",
          "bytes": "bytes"}
PARQUET_GLOB = "*.parquet"  # inside <root>/<subset>/ (the Hub repo's own layout)
# The subsets MMAT-1M drew from (paper); the default when reading from the Hub without `subsets`.
MMAT_SUBSETS = ("hateful_memes", "screen2words", "st_vqa", "vistext", "robut_wikisql", "robut_wtq", "iconqa",
                "raven", "intergps", "tqa")
MATH_SUBSETS = {"iconqa", "raven", "intergps", "tabmwp", "geomverse", "clevr_math", "mathqa"}
# Many subsets write multiple-choice answers as "Answer: B"; the prefix is dropped from our answer.
# Exact per-subset prompt and answer conventions are not confirmed beyond public examples.
ANSWER_PREFIX = re.compile(r"^\s*answer\s*:\s*", re.I)
# ---------------------------------------------------------------------------------------------------


def read(cfg: SourceConfig) -> Iterator[Sample | Quarantined]:
    validate = cfg.validate_images
    for subset, rows in (_hub_rows(cfg) if cfg.hub_id else _local_rows(cfg)):
        for index, row in enumerate(rows):
            sid = sample_id(SOURCE, subset, index)
            yield guarded(sid, lambda: _to_sample(row, sid, subset, validate))


def _local_rows(cfg: SourceConfig) -> Iterator[tuple[str, Iterable[dict[str, Any]]]]:
    root = Path(cfg.path).expanduser()  # type: ignore[arg-type]
    if not root.is_dir():
        raise SourceError(f"{SOURCE}: source folder not found: {root} "
                          "(set `path:` to a folder with <subset>/*.parquet)")
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob(PARQUET_GLOB)))
    wanted = cfg.subsets or present
    missing = [s for s in wanted if s not in present]
    if missing:
        raise SourceError(f"{SOURCE}: subsets {missing} not found under {root} (present: {present})")
    for subset in wanted:
        yield subset, _parquet_rows(sorted((root / subset).glob(PARQUET_GLOB)))


def _parquet_rows(files: list[Path]) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for path in files:
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise SourceError(f"{SOURCE}: cannot read {path}: {type(exc).__name__}: {exc}") from None
        for batch in pf.iter_batches(batch_size=64, columns=[FIELDS["images"], FIELDS["texts"]]):
            yield from batch.to_pylist()


def _hub_rows(cfg: SourceConfig) -> Iterator[tuple[str, Iterable[dict[str, Any]]]]:
    subsets = cfg.subsets or ([cfg.hub_config] if cfg.hub_config else list(MMAT_SUBSETS))
    for subset in subsets:
        yield subset, _stream(cfg, subset)


def _stream(cfg: SourceConfig, subset: str) -> Iterator[dict[str, Any]]:
    try:
        from datasets import Image, List, load_dataset

        ds = load_dataset(cfg.hub_id, subset, split=cfg.hub_split or "train", streaming=True, revision=cfg.revision)
        ds = ds.cast_column(FIELDS["images"], List(Image(decode=False)))  # keep the encoded bytes
        rows = iter(ds)
        first = next(rows, None)  # network errors surface on the first row, report them here
    except Exception as exc:
        raise hub_error(cfg, exc) from None
    if first is not None:
        yield first
        yield from rows


def _to_sample(row: dict[str, Any], sid: str, subset: str, validate: bool) -> Sample:
    images = require(row, FIELDS["images"], sid)
    texts = require(row, FIELDS["texts"], sid)
    refs = []
    for k, im in enumerate(images):
        data = im.get(FIELDS["bytes"]) if isinstance(im, dict) else im
        refs.append(image_from_bytes(sid, data, validate, what=f"images[{k}]"))
    qas = []
    for k, t in enumerate(texts):
        user = str(require(t, FIELDS["user"], sid, f"texts[{k}]"))
        native_answer = str(require(t, FIELDS["assistant"], sid, f"texts[{k}]")).strip()
        choices = parse_listed_choices(user)
        answer = ANSWER_PREFIX.sub("", native_answer).strip()
        if choices:
            answer = choice_letter(answer, choices) or answer
        qas.append(QA(question=add_response_constraint(user.strip(), answer, choices), answer=answer, choices=choices,
                      meta=qa_meta(answer, math=subset in MATH_SUBSETS, cauldron_source=t.get(FIELDS["source"]),
                                   native_answer=native_answer if native_answer != answer else None)))
    if not qas:
        raise quarantine(sid, "row has no texts")
    return Sample(id=sid, source=SOURCE, subset=subset, split=None, images=refs, qas=qas,
                  meta={"math": any(q.meta["math"] for q in qas)})
