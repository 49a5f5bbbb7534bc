"""TabMWP (lupantech/PromptPG `data/tabmwp/`): grade-school math word problems over a table image.

Released layout (PromptPG README and `data/tabmwp/` at commit 869bae8; the same names are read by
the repo's `run_gpt3`/`run_t5` loaders): `problems_{train,dev,test}.json` and the 1,000-problem
evaluation subsets `problems_dev1k.json` / `problems_test1k.json`, each one JSON object
`{pid: record}` with `question, choices, answer, unit, table_title, table, table_for_pd, row_num,
column_num, solution, ques_type, ans_type, grade, split`; `tables/{pid}.png` (the table rendered as
an image; the model sees the table only there); `splits.json` (not needed). A `*1k` subset is read
only when its full file is absent (the subsets repeat problems of dev/test), so a folder with just
the evaluation subsets is read too and no problem is read twice.

Answers are kept as written, periods included (`2:10 P.M.`: PromptPG's own `extract_prediction`
keeps the `.M.` too); they are matched to the choices in the one normal form of
`generation.answers`. Multiple-choice problems get their options listed as `A. …` lines and a letter
answer (the option text stays in `meta.answer_text`); the native `solution` is the rationale. Every
problem is math (`math: true`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

from generation.schema import QA, Sample
from generation.sources.base import (
    Deferred, ImageFolder, Located, RecordIndex, SourceConfig, SourceError, add_response_constraint, choice_letter,
    format_choices, field_text, id_text, indexed_json_container, local_root, qa_meta, quarantine, require,
    sample_id, usable,
)
from generation.splits import normalise_native_split

SOURCE = "tabmwp"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
PROBLEM_FILES = {"train": "problems_train.json", "dev": "problems_dev.json", "test": "problems_test.json"}
SUBSET_FILES = {"dev": "problems_dev1k.json", "test": "problems_test1k.json"}  # read when the full file is absent
TABLES_DIR = "tables"
TABLE_IMAGE = "tables/{pid}.png"
FIELDS = {"question": "question", "choices": "choices", "answer": "answer", "unit": "unit",
          "table_title": "table_title", "table": "table", "table_for_pd": "table_for_pd", "row_num": "row_num",
          "column_num": "column_num", "solution": "solution", "ques_type": "ques_type", "ans_type": "ans_type",
          "grade": "grade", "split": "split"}
MULTI_CHOICE = "multi_choice"
HUB_FILES = [*PROBLEM_FILES.values(), *SUBSET_FILES.values(), "tables/*"]
ID_SCHEME = "tabmwp-1"  # bump when the id rule in `read` changes: record indexes made under the old one are ignored
# ---------------------------------------------------------------------------------------------------


def problem_files(root: Path) -> list[tuple[str, Path]]:
    """(native split, file) to read, in split order; SourceError when the folder is not TabMWP's layout."""
    found = []
    for split, name in PROBLEM_FILES.items():
        subset = SUBSET_FILES.get(split)
        if (root / name).is_file():
            found.append((split, root / name))
        elif subset and (root / subset).is_file():
            found.append((split, root / subset))
    if not found:
        expected = sorted({*PROBLEM_FILES.values(), *SUBSET_FILES.values()})
        raise SourceError(f"{SOURCE}: none of {expected} found under {root} (PromptPG's data/tabmwp layout)")
    if not (root / TABLES_DIR).is_dir():
        raise SourceError(f"{SOURCE}: {TABLES_DIR}/ not found under {root}: the table images "
                          f"({TABLE_IMAGE}) must sit beside the problems files")
    return found


def read(cfg: SourceConfig, index: Optional[RecordIndex] = None) -> Iterator[Located]:
    root = local_root(cfg, HUB_FILES)
    files = problem_files(root)
    images = ImageFolder.of(cfg, root)
    for file_split, path in files:
        def sid_of(at: tuple[int, Any], rec: Any, path: Path = path) -> str:
            return sample_id(SOURCE, field_text(rec, FIELDS["ques_type"]) or SOURCE, _pid(path, *at))

        for n, key, sid, load in indexed_json_container(path, SOURCE, sid_of, index, ID_SCHEME):
            pid = _pid(path, n, key)
            yield Located(f"{path.name}: pid {pid}",
                          Deferred(sid, lambda: _to_sample(usable(load(), sid), sid, pid, file_split, images)))


def _pid(path: Path, n: int, key: Any) -> str:
    return id_text(key) or f"{path.stem}-record-{n}"


def _to_sample(rec: dict[str, Any], sid: str, pid: str, file_split: str, images: ImageFolder) -> Sample:
    question = str(require(rec, FIELDS["question"], sid)).strip()
    native_answer = str(require(rec, FIELDS["answer"], sid)).strip()
    solution = require(rec, FIELDS["solution"], sid)
    choices = [str(c) for c in (rec.get(FIELDS["choices"]) or [])]
    answer = native_answer
    if choices:
        letter = choice_letter(native_answer, choices)
        if letter is None:
            raise quarantine(sid, f"answer {native_answer!r} is not one of the choices {choices}")
        question, answer = f"{question}\n{format_choices(choices)}", letter
    image = images.file(sid, TABLE_IMAGE.format(pid=pid))
    ques_type = rec.get(FIELDS["ques_type"]) or (MULTI_CHOICE if choices else "free_text")
    qa = QA(question=add_response_constraint(question, answer, choices), answer=answer, choices=choices,
            source_rationale=str(solution).strip(),
            meta=qa_meta(answer, math=True, answer_text=native_answer if choices else None,
                         unit=rec.get(FIELDS["unit"]), ques_type=ques_type, ans_type=rec.get(FIELDS["ans_type"]),
                         grade=rec.get(FIELDS["grade"])))
    native_split = rec.get(FIELDS["split"]) or file_split
    return Sample(id=sid, source=SOURCE, subset=sid.split("/")[1], split=normalise_native_split(native_split),
                  images=[image], qas=[qa],
                  meta={"math": True, "native_split": native_split, "table_title": rec.get(FIELDS["table_title"]),
                        "table": rec.get(FIELDS["table"]), "table_for_pd": rec.get(FIELDS["table_for_pd"]),
                        "row_num": rec.get(FIELDS["row_num"]), "column_num": rec.get(FIELDS["column_num"])})
