"""A rerun with nothing to do keeps the card (no shard is read again); a changed shard, a changed
quarantine or a missing card gets it rewritten."""
from __future__ import annotations

import os

import pytest

import publishing.card as card
from generation.plan import RunOptions
from generation.runner import run_generation
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
