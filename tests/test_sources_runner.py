"""The foundation's records through the real runner (`mmat generate` / `mmat retry` in a subprocess) and
the card: a repeated id is its own visible quarantine record that never shadows or blocks the first
record with that id; the card shows the quarantine count and sums the QA pairs the filters dropped.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.runner_support import FORMATS, default_work_dir, inspect_folder, mmat, read_quarantine, source, write_config

UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "upstream"


@pytest.fixture(scope="module")
def repeated(tmp_path_factory):
    """The LLaVA-CoT fixture with two repeated ids: line 4 repeats line 2 (a good record), line 5 repeats
    line 1, whose image is broken, so the first record with that id is itself quarantined."""
    root = tmp_path_factory.mktemp("repeated")
    llava = Path(shutil.copytree(UPSTREAM / "llava_cot", root / "llava_cot"))
    lines = (llava / "train.jsonl").read_text().splitlines()
    (llava / "train.jsonl").write_text("\n".join(lines + [lines[1], lines[0]]) + "\n")
    image = llava / "sqa/train/101/image.png"
    pristine = image.read_bytes()
    image.write_bytes(b"not an image")
    recs = [json.loads(line) for line in lines]
    ids = {name: f"llava_cot/{rec['image'].split('/')[0]}/{rec['id']}"
           for name, rec in zip(("sqa", "chart", "coco"), recs)}
    config = write_config(root / "repeated.yaml", [source("llava_cot", llava)])
    out = root / "out"
    first = mmat("generate", "--config", config, "--out", out, cwd=root)
    return {"root": root, "config": config, "out": out, "first": first, "ids": ids, "image": image,
            "pristine": pristine}


def test_a_repeat_is_its_own_quarantine_record_and_the_first_record_is_generated(repeated):
    ids, first = repeated["ids"], repeated["first"]
    assert first.returncode == 0, first.stderr
    quarantine = read_quarantine(default_work_dir(repeated["out"]))
    assert set(quarantine) == {ids["sqa"], ids["sqa"] + "#repeat-2", ids["chart"] + "#repeat-2"}
    assert all(r["stage"] == "foundation" and r["source"] == "llava_cot" for r in quarantine.values())
    assert "image" in quarantine[ids["sqa"]]["message"]  # the first record's own reason, not shadowed
    assert quarantine[ids["chart"] + "#repeat-2"]["message"].startswith(
        f"repeats the id {ids['chart']} of the record at train.jsonl: line 2 (this record: train.jsonl: line 4)")
    assert quarantine[ids["sqa"] + "#repeat-2"]["error_type"] == "RepeatedId"
    state = inspect_folder(repeated["out"])
    assert state.card_mismatches == []
    for fmt in FORMATS:
        assert state.id_set(fmt) == {ids["chart"], ids["coco"]} and not state.duplicates(fmt)
    card = (repeated["out"] / "README.md").read_text()
    assert "each with a reason in the run's work folder): **3 (foundation 3)**." in card


def test_retry_finishes_the_fixed_first_record_and_the_repeats_stay_visible(repeated, tmp_path):
    root = tmp_path / "fix"
    shutil.copytree(repeated["root"], root, symlinks=True)
    config, out, ids = root / "repeated.yaml", root / "out", repeated["ids"]
    config.write_text(config.read_text().replace(str(repeated["root"]), str(root)))
    work = default_work_dir(out)
    rows_before = (work / "rows-0.jsonl").read_text().splitlines()
    (root / "llava_cot/sqa/train/101/image.png").write_bytes(repeated["pristine"])

    retried = mmat("retry", "--config", config, "--out", out, cwd=root)
    assert retried.returncode == 0, retried.stderr
    rows_after = (work / "rows-0.jsonl").read_text().splitlines()
    assert rows_after[: len(rows_before)] == rows_before  # the chart record was not redone
    assert [json.loads(line)["id"] for line in rows_after[len(rows_before):]] == [ids["sqa"]]
    # both repeats are still there, beside first records that are now finished
    assert set(read_quarantine(work)) == {ids["sqa"] + "#repeat-2", ids["chart"] + "#repeat-2"}
    assert inspect_folder(out).id_set() == {ids["sqa"], ids["chart"], ids["coco"]}

    again = mmat("generate", "--config", config, "--out", out, cwd=root)
    assert again.returncode == 0, again.stderr
    assert "samples: 0 finished, 0 quarantined" in again.stdout
    assert inspect_folder(out).id_set() == {ids["sqa"], ids["chart"], ids["coco"]}


def test_the_card_sums_dropped_qa_pairs_once_per_dialogue(tmp_path):
    from generation.writer import write_group
    from publishing.card import write_card
    from tests.dataset_factory import make_dialogue

    out = tmp_path / "mmat-1m"
    dialogues = [make_dialogue("cauldron", "train", i) for i in range(4)]
    for i, rows in enumerate(dialogues):
        for row in rows.values():
            row["meta"]["dropped_qas"] = i  # 0 + 1 + 2 + 3, in both the RR and the ORR row
    for fmt in FORMATS:
        write_group(out, fmt, "cauldron", "train", [d[fmt] for d in dialogues])
    card = write_card(out, run_stats={"quarantined_total": 2, "quarantine_by_stage": {"foundation": 2}}).read_text()
    assert "those dialogues kept their other pairs): **6**." in card
    assert "work folder): **2 (foundation 2)**." in card
    again = write_card(out).read_text()  # the run's facts are kept beside the data: the same card again
    assert "work folder): **2 (foundation 2)**." in again
