"""TabMWP (lupantech/PromptPG `data/tabmwp/`): grade-school math word problems over a table image.

Native layout: `problems_{train,dev,test}.json`, each a JSON object `{pid: record}` with
`question, choices, answer, unit, table_title, table, table_for_pd, row_num, column_num, solution,
ques_type, ans_type, grade, split`, and `tables/{pid}.png` (the table rendered as an image; the
model sees the table only there). `problems_dev1k.json` / `problems_test1k.json` are subsets of
dev/test and are not read, so no problem appears twice.

Multiple-choice problems get their options listed as `A. …` lines and a letter answer (the
option text stays in `meta.answer_text`); the native `solution` is the rationale. Every problem
is math (`math: true`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from generation.schema import QA, Quarantined, Sample
from generation.sources.base import (
    SourceConfig,
    SourceError,
    add_response_constraint,
    choice_letter,
    format_choices,
    guarded,
    image_from_file,
    local_root,
    qa_meta,
    quarantine,
    read_json,
    require,
    sample_id,
)
from generation.splits import normalise_native_split

SOURCE = "tabmwp"
# --- field mapping: every upstream name this adapter reads ----------------------------------------
PROBLEM_FILES = {"train": "problems_train.json", "dev": "problems_dev.json", "test": "problems_test.json"}
TABLE_IMAGE = "tables/{pid}.png"
FIELDS = {"question": "question", "choices": "choices", "answer": "answer", "unit": "unit",
          "table_title": "table_title", "table": "table", "table_for_pd": "table_for_pd", "row_num": "row_num",
          "column_num": "column_num", "solution": "solution", "ques_type": "ques_type", "ans_type": "ans_type",
          "grade": "grade", "split": "split"}
MULTI_CHOICE = "multi_choice"
HUB_FILES = [*PROBLEM_FILES.values(), "tables/*"]
# ---------------------------------------------------------------------------------------------------


def read(cfg: SourceConfig) -> Iterator[Sample | Quarantined]:
    root = local_root(cfg, HUB_FILES)
    found = [(split, root / name) for split, name in PROBLEM_FILES.items() if (root / name).is_file()]
    if not found:
        raise SourceError(f"{SOURCE}: none of {sorted(PROBLEM_FILES.values())} found under {root}")
    seen: set[str] = set()
    for file_split, path in found:
        problems = read_json(path, SOURCE)
        if not isinstance(problems, dict):
            raise SourceError(f"{SOURCE}: {path} must hold a JSON object {{pid: problem}}")
        for pid, rec in problems.items():
            if pid in seen:
                continue
            seen.add(pid)
            subset = rec.get(FIELDS["ques_type"]) if isinstance(rec, dict) else None
            sid = sample_id(SOURCE, subset or SOURCE, pid)
            yield guarded(sid, lambda: _to_sample(rec, sid, pid, file_split, root, cfg.validate_images))


def _to_sample(rec: dict[str, Any], sid: str, pid: str, file_split: str, root: Path, validate: bool) -> Sample:
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
    image = image_from_file(sid, root, TABLE_IMAGE.format(pid=pid), validate)
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
