"""The Cauldron (HuggingFaceM4/the_cauldron): 50 vision-language subsets in one shape.

Released layout, one Hub config per subset: `<subset>/train-*.parquet` with columns
`images: list<Image>` and `texts: list<{user, assistant, source}>`; every `texts` entry is a QA about
the same images, so a row is one multi-QA Sample. There are no ids: the native id is the row's
position in its subset (files in name order), stable for a fixed revision.

What the upstream build script (the m4 fine-tuning builder that made the_cauldron) adds, and what
this adapter does about it:
- `correct_casing` capitalises answers and appends a period (`Starbucks.`, `42.`, `No.`): the period
  is removed from short answers (`generation.answers.strip_added_period`; `P.M.`, `U.S.` keep
  theirs), so it never reaches a final answer and `42` stays numeric. Long answers are prose and
  keep it. The same decoration on listed options (TQA's `A. evaporation.`) is removed from `choices`.
- Multiple-choice answers are written `Answer: B`; the prefix is dropped.
- Brevity, letter and yes/no instructions are appended to questions (`PROMPTS_ANSWER_SHORTLY`,
  `QUESTION_BRIEVETY_HINT`, "Answer with the letter.", "Answer yes or no."): all are recognised, see
  `generation.sources.instructions`, so the paper's constraint ends up there once.
- RAVEN's "Which figure should complete the logical sequence?" draws its eight options A-H into the
  image and answers with a letter: such a row is a letter question with choices A-H.
- ROBUT/HiTab rows sometimes carry a "Parse the full table." turn whose answer is `str(table)`, a dict
  dump: dropped by the `table_dump` filter (`SourceConfig.drop_qas`), like empty answers.

Local folders are read with pyarrow (no cache writes); Hub ids stream through `datasets.load_dataset`
so `limit` reads only what it needs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from generation.answers import strip_added_period
from generation.schema import QA, Sample
from generation.sources.base import (
    Deferred, LETTERS, Located, RecordIndex, SourceConfig, SourceError, add_response_constraint, all_dropped,
    choice_letter, degenerate_reason, dropped_meta, hub_error, image_from_bytes, is_short_answer,
    parse_listed_choices, qa_meta, quarantine, require, sample_id,
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
# Subsets whose options are drawn in the image (letters A.. only): RAVEN's "choose the figure" task.
IMAGE_OPTION_SUBSETS = {"raven": 8}
# The builder writes multiple-choice answers as "Answer: B"; the prefix is dropped from our answer.
ANSWER_PREFIX = re.compile(r"^\s*answer\s*:\s*", re.I)
# ---------------------------------------------------------------------------------------------------


def read(cfg: SourceConfig, index: Optional[RecordIndex] = None) -> Iterator[Located]:
    """The rows of every subset (ids are row positions: no record index is needed for them)."""
    validate = cfg.validate_images
    for subset, rows in (_hub_rows(cfg) if cfg.hub_id else _local_rows(cfg)):
        for index, (where, row) in enumerate(rows):
            sid = sample_id(SOURCE, subset, index)
            yield Located(where, Deferred(sid, lambda: _to_sample(row, sid, subset, validate, cfg.drop_qas)))


def _local_rows(cfg: SourceConfig) -> Iterator[tuple[str, Iterable[tuple[str, dict[str, Any]]]]]:
    import pyarrow.parquet as pq

    root = Path(cfg.path).expanduser()  # type: ignore[arg-type]
    if not root.is_dir():
        raise SourceError(f"{SOURCE}: source folder not found: {root} "
                          "(set `path:` to a folder with <subset>/*.parquet)")
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob(PARQUET_GLOB)))
    if not present:
        loose = " (it holds parquet files itself: point `path:` at its parent)" if any(root.glob(PARQUET_GLOB)) else ""
        raise SourceError(f"{SOURCE}: no <subset>/{PARQUET_GLOB} folders under {root}{loose}; "
                          f"expected HuggingFaceM4/the_cauldron's layout, e.g. st_vqa/train-00000-of-00001.parquet")
    wanted = cfg.subsets or present
    missing = [s for s in wanted if s not in present]
    if missing:
        raise SourceError(f"{SOURCE}: subsets {missing} not found under {root} (present: {present})")
    files: dict[str, list[tuple[Path, Any]]] = {}
    for subset in wanted:  # every footer is read now: an unreadable file stops the run before any row
        files[subset] = []
        for path in sorted((root / subset).glob(PARQUET_GLOB)):
            try:
                files[subset].append((path, pq.ParquetFile(path)))
            except Exception as exc:
                raise SourceError(f"{SOURCE}: cannot read {path}: {type(exc).__name__}: {exc} (the ids of every "
                                  f"later row depend on its row count: replace the file)") from None
    for subset in wanted:
        yield subset, _parquet_rows(subset, files[subset])


def _parquet_rows(subset: str, files: list[tuple[Path, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, pf in files:
        name = path.name
        row = 0
        for batch in pf.iter_batches(batch_size=64, columns=[FIELDS["images"], FIELDS["texts"]]):
            for record in batch.to_pylist():
                yield f"{subset}/{name}: row {row}", record
                row += 1


def _hub_rows(cfg: SourceConfig) -> Iterator[tuple[str, Iterable[tuple[str, dict[str, Any]]]]]:
    subsets = cfg.subsets or ([cfg.hub_config] if cfg.hub_config else list(MMAT_SUBSETS))
    for subset in subsets:
        yield subset, ((f"{cfg.hub_id} {subset}: row {i}", row) for i, row in enumerate(_stream(cfg, subset)))


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


def _to_sample(row: dict[str, Any], sid: str, subset: str, validate: bool, filters: list[str]) -> Sample:
    images = require(row, FIELDS["images"], sid)
    texts = require(row, FIELDS["texts"], sid)
    refs = []
    for k, im in enumerate(images):
        data = im.get(FIELDS["bytes"]) if isinstance(im, dict) else im
        refs.append(image_from_bytes(sid, data, validate, what=f"images[{k}]"))
    qas: list[QA] = []
    dropped: list[str] = []
    for k, t in enumerate(texts):
        user = str(require(t, FIELDS["user"], sid, f"texts[{k}]")).strip()
        raw = t.get(FIELDS["assistant"])
        if raw is None or (not str(raw).strip() and "empty_answer" not in filters):
            require(t, FIELDS["assistant"], sid, f"texts[{k}]")  # raises: a malformed row, not a degenerate pair
        native_answer = str(raw).strip()
        answer, choices, in_image = _answer_and_choices(user, native_answer, subset)
        reason = degenerate_reason(user, answer, filters)
        if reason:
            dropped.append(reason)
            continue
        qas.append(QA(question=add_response_constraint(user, answer, choices), answer=answer, choices=choices,
                      meta=qa_meta(answer, math=subset in MATH_SUBSETS, cauldron_source=t.get(FIELDS["source"]),
                                   native_answer=native_answer if native_answer != answer else None,
                                   choices_in_image=True if in_image else None)))
    if not qas:
        raise all_dropped(sid, dropped) if dropped else quarantine(sid, "row has no texts")
    return Sample(id=sid, source=SOURCE, subset=subset, split=None, images=refs, qas=qas,
                  meta={"math": any(q.meta["math"] for q in qas), **dropped_meta(dropped)})


def _answer_and_choices(user: str, native_answer: str, subset: str) -> tuple[str, list[str], bool]:
    """(answer without the builder's decorations, option texts, whether the options are only in the image)."""
    answer = ANSWER_PREFIX.sub("", native_answer).strip()
    if is_short_answer(user, answer):
        answer = strip_added_period(answer)
    choices = [strip_added_period(c) for c in parse_listed_choices(user)]
    if choices:
        return choice_letter(answer, choices) or answer, choices, False
    n_options = IMAGE_OPTION_SUBSETS.get(subset)
    if n_options and re.fullmatch(f"[A-{LETTERS[n_options - 1]}]", answer):
        return answer, list(LETTERS[:n_options]), True
    return answer, [], False
