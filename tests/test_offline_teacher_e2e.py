"""End to end on upstream-format records (issue 29): `mmat generate` with the offline teacher and real OCR over
TabMWP problems in PromptPG's released schema with rendered table images (`tests/fixtures/upstream/
tabmwp_synthetic.py`) and the Cauldron fixtures built with the upstream build templates. Among the rows kept:
no underived answer, no row that admits the tools cannot confirm its answer and answers all the same, and at
least 95 % of the TabMWP rows grounded by tool evidence (`tests/offline_teacher_measure.py` counts)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.runner_support import default_work_dir, mmat, source, write_config

UPSTREAM = Path(__file__).resolve().parent / "fixtures" / "upstream"


@pytest.mark.slow
def test_kept_rows_derive_their_answers_and_tabmwp_is_grounded_by_its_tools(tmp_path):
    from tests.fixtures.upstream.tabmwp_synthetic import build
    from tests.offline_teacher_measure import measure

    build(tmp_path / "tabmwp", 30, seed=2029)
    cfg = write_config(tmp_path / "run.yaml", [source("tabmwp", tmp_path / "tabmwp"),
                                                source("cauldron", UPSTREAM / "cauldron")], ocr="rapidocr",
                       teacher={"kind": "offline"})  # require_grounding: auto
    out = tmp_path / "out"
    result = mmat("generate", "--config", cfg, "--out", out, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = measure(out, default_work_dir(out))
    every, tabmwp = counts["all"], counts["tabmwp"]
    assert every.get("underived", 0) == 0, counts
    assert every.get("admit_then_answer", 0) == 0, counts
    assert tabmwp["kept"] >= 28 and tabmwp.get("tool", 0) >= 0.95 * tabmwp["kept"], counts
    assert every.get("none", 0) == 0, counts  # require_grounding: auto (the offline teacher) kept no ungrounded row
