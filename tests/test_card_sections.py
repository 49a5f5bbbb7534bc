"""The card's judgement sections, each checked against numbers counted from the rows here: limitations
(grounded share by evidence kind, template captions, offline vs model teacher, staged reflections,
sensitive subsets), "how it was made" naming the teacher, the staged label in the examples, citations,
and every name the card prints escaped (a hostile subset name was raw HTML in the per-source table).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from mmat_1m import FEATURES
from publishing.card import write_card
from tests.dataset_factory import make_dataset_folder

HOSTILE = '<img src=x onerror=alert(1)>|`x'


def restyle(folder: Path, change: Callable[[dict, int], None]) -> None:
    """Rewrite every shard with `change(row, index in its shard)` applied."""
    schema = FEATURES.arrow_schema
    for path in sorted(folder.glob("data/*/*/*.parquet")):
        rows = pq.read_table(path).to_pylist()
        for i, row in enumerate(rows):
            row["meta"].setdefault("evidence", None)
            change(row, i)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def _section(card: str, title: str) -> str:
    return card.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _measured(row: dict, i: int) -> None:
    """Rows 0, 1 grounded (evidence `tool`, `source_rationale`), row 2 not (`none`), row 3 unrecorded;
    the offline teacher wrote the TabMWP rows; reflections of rows 2 are staged."""
    row["meta"]["grounded"] = {0: True, 1: True, 2: False}.get(i)
    row["meta"]["evidence"] = {0: "tool", 1: "source_rationale", 2: "none"}.get(i)
    if row["source"] == "tabmwp":
        row["teacher"]["model"] = "offline-annotations"
    else:
        row["meta"]["teacher_mode"] = "vision"
    if row["reflection"]["kind"] != "none":
        row["reflection"]["origin"] = "staged"
    if row["source"] == "cauldron" and i == 0:
        row["subset"] = "hateful_memes"
    if row["source"] == "visual_cot" and i == 1:
        row["subset"] = HOSTILE


def test_limitations_how_made_and_examples_state_measured_numbers(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=4, n_validation_per_source=0,
                                 sources=["visual_cot", "cauldron", "tabmwp", "llava_cot"])
    restyle(folder, _measured)
    write_card(folder)
    card = (folder / "README.md").read_text()
    limits = _section(card, "Limitations and intended use")
    # 4 sources x (2 grounded, 1 not, 1 unrecorded): per kind, and the share of recorded answers
    assert "**Answers not grounded in tool evidence.** 4 of 12" in limits and "(33.3%)" in limits
    table = {r[0]: r[1:] for r in ([c.strip() for c in l.strip().strip("|").split("|")]
                                    for l in limits.splitlines() if l.strip().startswith("| ") and "evidence kind" not in l)}
    assert table["`tool`"] == ["4", "4", "0", "0", "100.0%"]
    assert table["`source_rationale`"] == ["4", "4", "0", "0", "100.0%"]
    assert table["`none`"] == ["4", "0", "4", "0", "0.0%"]
    assert table["not recorded"] == ["4", "0", "0", "4", "–"]
    # offline teacher: the 4 TabMWP dialogues of 16
    assert "25.0% of the dialogues come from the offline teacher" in limits and "75.0% from a teacher model" in limits
    # one staged reflection per source (row 2), 4 of 4; the hateful_memes subset named with its count
    assert "4 of 4 RR reflections" in limits and "(100.0%)" in limits
    assert "`hateful_memes` (1 dialogues)" in limits
    assert "English only" in limits
    # llava_cot's captions come from the template backend in the factory? only when it says so
    how = _section(card, "How it was built: the four-stage pipeline")
    assert "the offline teacher (`offline-annotations`, 4 dialogues)" in how
    assert "`gpt-4o-2024-08-06` (12 dialogues)" in how
    # the example of a staged reflection says so
    examples = _section(card, "Example dialogues")
    assert examples.count("asks for a reflection (**staged**") == 4


def test_every_name_the_card_prints_is_escaped(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=2, sources=["visual_cot"])
    restyle(folder, lambda row, i: row.update(subset=HOSTILE, teacher={**row["teacher"], "model": HOSTILE}))
    write_card(folder, run_stats={HOSTILE: HOSTILE, "stages": {HOSTILE: 1}})
    card = (folder / "README.md").read_text()
    assert "<img src=x" not in card  # the hostile name as HTML
    assert "&lt;img src=x onerror=alert(1)&gt;" in _section(card, "Statistics")  # shown as text, in the table
    [row] = [l for l in _section(card, "Statistics").splitlines() if l.startswith("| Visual CoT")]
    assert len(re.findall(r"(?<!\\)\|", row)) == 7, row  # six cells: the name's `|` does not split one


def test_citations_name_the_paper_each_source_present_and_the_engine(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=1, sources=["tabmwp", "infoseek"])
    write_card(folder)
    citation = _section((folder / "README.md").read_text(), "Citation")
    keys = re.findall(r"@\w+\{(\w+),", citation)
    assert keys == ["gao2025mmat1m", "lu2023dynamic", "chen2023infoseek", "mmat1m_engine"]
