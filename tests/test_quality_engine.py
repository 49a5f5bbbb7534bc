"""The engine's side of data quality: the offline teacher grounded in tool evidence (on the demo, per
source), `meta.grounded` agreeing with the audit, honest reflections (found by a check, or staged at
`reflection.staged_rate` for exactly the questions the id hash picks), the numbers in `run.log` and the
card's Quality section; `teacher.require_grounding` keeping or quarantining ungrounded samples."""
from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest

from tests.runner_support import default_work_dir, mmat, read_quarantine, source, write_config


def rr_rows(folder) -> list[dict]:
    return [r for path in sorted((folder / "data" / "rr").glob("*/*.parquet")) for r in pq.read_table(path).to_pylist()]


@pytest.fixture(scope="module")
def demo_report(demo):
    from generation.quality.audit import audit_dataset

    return audit_dataset(demo["root"] / "mmat-1m", "rr")


# --------------------------------------------------------------------------- the offline teacher
def test_offline_teacher_is_grounded_where_a_tool_can_show_the_answer(demo_report):
    groups = demo_report.groups
    # the passage that holds the answer, quoted; the table read with OCR and each calculation written out
    assert groups["infoseek"].rate("grounded") == 1.0
    assert groups["tabmwp/free_text"].rate("grounded") == 1.0
    # Visual CoT's annotated box read with OCR for the text subsets
    for subset in ("docvqa", "dude", "infographicsvqa", "sroie", "textcap", "textvqa"):
        assert groups[f"visual_cot/{subset}"].rate("grounded") == 1.0, subset
    assert demo_report.total.leaked <= 0.01 * demo_report.total.dialogues
    assert demo_report.total.rate("verified") == 1.0


def test_every_kept_row_rests_on_evidence_and_the_engine_and_audit_agree(demo):
    """`teacher.require_grounding: auto` (on for the offline teacher): a kept demo row's answer rests on tool
    evidence or on the source's own rationale, never on nothing, and no kept row admits it could not confirm
    its answer; what the engine wrote in meta is what the audit reads; the rest is in the quarantine."""
    from generation.quality.audit import row_quality

    folder = demo["root"] / "mmat-1m"
    rows = rr_rows(folder)
    for row in rows:
        quality = row_quality(row)
        assert row["meta"]["grounded"] is quality.grounded, row["id"]  # the engine and the audit agree
        assert row["meta"]["evidence"] == quality.evidence in ("tool", "source_rationale"), row["id"]
        assert not quality.admits_no_evidence and not quality.leaked, row["id"]
    quarantine = read_quarantine(default_work_dir(folder))
    not_grounded = {k for k, q in quarantine.items() if q["error_type"] == "NotGrounded"}
    assert not_grounded and not not_grounded & {r["id"] for r in rows}
    assert len(rows) + len(quarantine) == 70


def test_visual_cot_crops_the_annotated_box(demo):
    """Visual CoT's box is the source's own rationale, quoted as such; the first tool reads that region."""
    from generation.quality.evidence_kinds import is_source_rationale

    rows = {r["id"]: r for r in rr_rows(demo["root"] / "mmat-1m")}
    steps = rows["visual_cot/textvqa/0"]["steps"]
    box = next(s for s in steps if "[46, 38, 337, 57]" in s["thought"])
    assert is_source_rationale(box["thought"]) and not box["operators"]
    read = next(s for s in steps if s["operators"])
    assert read["operators"] == ["ocr"] and "[46, 38, 337, 57]" in read["thought"]


def test_reflections_are_found_by_checks_or_staged_for_the_hashed_ids(demo, demo_report):
    from generation.config import load_config
    from generation.rationale import staged_defect
    from generation.sources import read_source

    config = load_config(demo["config"])
    rate = config.reflection.staged_rate
    samples = {s.id: s for cfg in config.sources for s in read_source(cfg) if hasattr(s, "qas")}
    rows = rr_rows(demo["root"] / "mmat-1m")
    staged = Counter()
    for row in rows:
        reflection = row["reflection"]
        sample = samples[row["id"]]
        picked = [staged_defect(sample, i, rate) for i in range(len(sample.qas))]
        if reflection["kind"] == "none":
            assert reflection["origin"] is None
            continue
        assert reflection["origin"] in ("check", "staged"), row["id"]
        if reflection["origin"] == "staged":
            assert reflection["kind"] in picked, row["id"]
            staged[reflection["kind"]] += 1
    # no manufactured repairs: TabMWP math reflections only where the hash staged one (main: 93 % of TabMWP)
    tabmwp = demo_report.groups["tabmwp"]
    assert tabmwp.reflection_count("math", "check") == 0
    assert 0 < tabmwp.reflection_count("math") <= 0.2 * tabmwp.dialogues
    assert staged["math"] >= 1 and staged["general"] >= 1  # the demo shows both repairs


def test_run_log_and_card_carry_the_audit(demo, demo_report):
    folder = demo["root"] / "mmat-1m"
    log = default_work_dir(folder) if (default_work_dir(folder) / "run.log").exists() else \
        demo["root"] / ".mmat-work" / "mmat-1m"
    records = [json.loads(line) for line in (log / "run.log").read_text().splitlines()]
    total = demo_report.total
    n = total.dialogues  # the demo's kept samples (teacher.require_grounding: auto quarantines the rest)
    quality = [r for r in records if r["message"].startswith(f"quality (rr, {n} dialogues)")]
    assert quality and quality[-1]["data"]["total"]["grounded"] == round(total.rate("grounded"), 4)
    assert set(quality[-1]["data"]["sources"]) == {"visual_cot", "llava_cot", "cauldron", "tabmwp", "infoseek"}
    assert quality[-1]["data"]["paired"]["config"] == "orr"  # RR and ORR side by side
    assert [r for r in records if r["message"].startswith(f"quality (orr, {n} dialogues)")]
    card = (folder / "README.md").read_text()
    section = card.split("## Quality", 1)[1].split("\n## ", 1)[0]
    assert f"| total | {n} | 1.00 ({n}/{n}) | {total.rate('grounded'):.2f} ({total.grounded}/{n}) |" in section
    assert "RR and ORR side by side" in section and f"| total | {n} / {n} |" in section
    assert "](figures/quality.png)" in section and (folder / "figures" / "quality.png").is_file()


# --------------------------------------------------------------------------- require_grounding
@pytest.mark.slow
def test_require_grounding_quarantines_what_no_evidence_supports(tmp_path):
    """OCR off, template captions: no Cauldron answer is supported by tool evidence, and the Cauldron ships
    no rationale; TabMWP's answers rest on its own solution (the source's rationale)."""
    from generation.verify import GROUNDING_REASON

    kept_cfg = write_config(tmp_path / "keep.yaml", [source("cauldron", limit=6)],
                            teacher={"kind": "offline", "require_grounding": False})
    kept = mmat("generate", "--config", kept_cfg, "--out", tmp_path / "kept", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    rows = rr_rows(tmp_path / "kept")
    assert len(rows) == 6 and all(r["meta"]["grounded"] is False and r["meta"]["evidence"] == "none" for r in rows)

    # the default, `auto`, is on for the offline teacher
    strict_cfg = write_config(tmp_path / "strict.yaml", [source("cauldron", limit=6), source("tabmwp", limit=3)],
                              teacher={"kind": "offline"})
    strict = mmat("generate", "--config", strict_cfg, "--out", tmp_path / "strict", cwd=tmp_path)
    quarantine = read_quarantine(default_work_dir(tmp_path / "strict"))
    assert sorted(quarantine) == sorted(r["id"] for r in rows), strict.stderr
    for record in quarantine.values():
        assert (record["stage"], record["error_type"]) == ("verification", "NotGrounded")
        assert record["message"].startswith(GROUNDING_REASON)
    tabmwp = rr_rows(tmp_path / "strict")
    assert len(tabmwp) == 3 and {r["source"] for r in tabmwp} == {"tabmwp"}
    assert all(r["meta"]["evidence"] == "source_rationale" and r["meta"]["grounded"] is False for r in tabmwp)
