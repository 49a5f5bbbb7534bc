"""A rerun with nothing to do keeps the card (no shard is read again); a changed shard, a changed
quarantine or a missing card gets it rewritten."""
from __future__ import annotations

import os

import pytest

import publishing.card as card
from generation.plan import RunOptions
from publishing.run import run_generation
from generation.shards import CARD_STAMP
from tests.runner_support import default_work_dir, source, write_config


def _no_card(*args, **kwargs):
    raise AssertionError("the card was written again")


@pytest.fixture
def finished(tmp_path, monkeypatch):
    from generation.config import load_config

    monkeypatch.chdir(tmp_path)
    config = load_config(write_config(tmp_path / "c.yaml", [source("tabmwp")]))
    out = tmp_path / "out"
    first = run_generation(config, RunOptions(out_dir=out, quiet=True))
    assert first.exit_code == 0 and (out / "README.md").is_file()
    assert (default_work_dir(out) / CARD_STAMP).is_file()
    return config, out


def test_a_rerun_with_nothing_to_do_keeps_the_card(finished, monkeypatch):
    config, out = finished
    before = (out / "README.md").read_bytes()
    monkeypatch.setattr(card, "write_card", _no_card)
    again = run_generation(config, RunOptions(out_dir=out, quiet=True))
    assert again.exit_code == 0 and again.finished == 0
    assert (out / "README.md").read_bytes() == before


def test_a_changed_shard_or_a_missing_card_gets_the_card_rewritten(finished, monkeypatch):
    config, out = finished
    shard = next((out / "data").rglob("*.parquet"))
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))
    monkeypatch.setattr(card, "write_card", _no_card)
    with pytest.raises(AssertionError, match="written again"):
        run_generation(config, RunOptions(out_dir=out, quiet=True))
    monkeypatch.undo()
    (out / "README.md").unlink()
    run_generation(config, RunOptions(out_dir=out, quiet=True))
    assert (out / "README.md").is_file()


def test_the_runs_elapsed_time_includes_its_shards_audit_and_card(tmp_path, monkeypatch):
    """`elapsed_s` in the summary (the CLI's last line) and in run.log's "run finished" is the whole run,
    its end included (shards, audit, card); the card's Generation run table shows the time up to that
    end (`generation_elapsed_s`), which is all it can know while it is being written."""
    import json
    import time

    import generation.runner as runner
    from generation.config import load_config

    monkeypatch.chdir(tmp_path)
    config = load_config(write_config(tmp_path / "c.yaml", [source("tabmwp")]))
    out = tmp_path / "out"
    real_rebuild = runner.rebuild_folder
    before_end: list[float] = []

    def slow_end(checkpoint, config, options, elapsed_s, *rest):
        before_end.append(elapsed_s)
        time.sleep(1.0)
        return real_rebuild(checkpoint, config, options, elapsed_s, *rest)

    monkeypatch.setattr(runner, "rebuild_folder", slow_end)
    summary = run_generation(config, RunOptions(out_dir=out, quiet=True))
    assert summary.exit_code == 0 and summary.finished > 0
    assert summary.elapsed_s >= before_end[0] + 1.0
    logged = [json.loads(line) for line in (default_work_dir(out) / "run.log").read_text().splitlines()
              if '"run finished"' in line]
    assert logged[-1]["data"]["elapsed_s"] == round(summary.elapsed_s, 2)
    assert f"| `generation_elapsed_s` | {round(before_end[0], 2):,.2f} |" in (out / "README.md").read_text()
