"""Fast resume: a record whose id the run does not want (finished, quarantined, another worker's) is
yielded as `Skipped(id)` without building its Sample, for every adapter; repeats are still caught."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import generation.sources as sources
from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig
from generation.plan import RunOptions, make_plan
from generation.schema import Quarantined, Sample
from generation.sources import SOURCE_IDS, Skipped, SourceConfig, item_id, read_source

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _no_build(sid, build):
    raise AssertionError(f"{sid}: a skipped record was built")


@pytest.mark.parametrize("kind", SOURCE_IDS)
def test_skipped_records_come_as_ids_in_native_order_and_are_never_built(kind, monkeypatch):
    cfg = SourceConfig(kind=kind, path=SAMPLES / kind)
    built = [item_id(x) for x in read_source(cfg)]
    monkeypatch.setattr(sources, "guarded", _no_build)
    skipped = list(read_source(cfg, skip=lambda sid: True))
    assert [item_id(x) for x in skipped] == built
    assert all(isinstance(x, (Skipped, Quarantined)) for x in skipped)
    assert sum(isinstance(x, Skipped) for x in skipped) >= len(built) - 1


def test_only_the_wanted_records_are_built(monkeypatch):
    cfg = SourceConfig(kind="tabmwp", path=SAMPLES / "tabmwp")
    ids = [item_id(x) for x in read_source(cfg)]
    wanted = set(ids[::3])
    items = list(read_source(cfg, skip=lambda sid: sid not in wanted))
    assert {x.id for x in items if isinstance(x, Sample)} == wanted
    assert {x.sample_id for x in items if isinstance(x, Skipped)} == set(ids) - wanted


def test_a_repeat_of_a_skipped_record_is_still_quarantined_as_a_repeat(tmp_path, monkeypatch):
    root = Path(shutil.copytree(SAMPLES / "llava_cot", tmp_path / "llava_cot"))
    lines = (root / "train.jsonl").read_text().splitlines()
    (root / "train.jsonl").write_text("\n".join(lines + [lines[0]]) + "\n")
    cfg = SourceConfig(kind="llava_cot", path=root)
    first = item_id(next(iter(read_source(cfg))))
    monkeypatch.setattr(sources, "guarded", _no_build)
    items = list(read_source(cfg, skip=lambda sid: True))
    assert items[0] == Skipped(first)
    repeat = items[-1]
    assert isinstance(repeat, Quarantined) and repeat.sample_id == f"{first}#repeat-2"
    assert repeat.error_type == "RepeatedId"


def test_the_plan_of_a_finished_run_builds_no_sample(tmp_path, monkeypatch):
    config = PipelineConfig.model_validate({"sources": [{"kind": "tabmwp", "path": str(SAMPLES / "tabmwp")},
                                                        {"kind": "llava_cot", "path": str(SAMPLES / "llava_cot")}]})
    ids = [item_id(x) for s in config.sources for x in read_source(s)]
    with Checkpoint(tmp_path / "work", lock=True) as checkpoint:
        for sid in ids[:-1]:
            checkpoint.add_finished(sid, sid.split("/")[0], "train", {"rr": {"id": sid, "images": []}, "orr": {"id": sid, "images": []}})
        built: list[str] = []
        real = sources.guarded
        monkeypatch.setattr(sources, "guarded", lambda sid, build: built.append(sid) or real(sid, build))
        plan = make_plan(config, RunOptions(out_dir=tmp_path / "out"), checkpoint)
        assert (plan.total, plan.skipped, len(plan.todo)) == (len(ids), len(ids) - 1, 1)
        assert built == [ids[-1]]  # the planning pass built only the sample left to run
        assert [s.id for s in plan.todo] == [ids[-1]]
        assert built == [ids[-1]] * 2  # and streaming the plan built it once more, nothing else
