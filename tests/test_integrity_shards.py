"""No id in two shards, whatever the sharding history, and no sample generated twice.

`mmat generate` over one folder with 1, then 2, then 1 workers: after every run each id is in exactly
one shard of each format, the card counts the unique ids and `load_dataset` returns each id once. A
single-worker run and a sharded run on the same work folder never both generate a sample: the one
that starts second is refused while the other lives.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from generation.checkpoint import Checkpoint, CheckpointLocked
from publishing.changelog import read_card_metadata
from tests.runner_support import (error_output, FORMATS, default_work_dir, inspect_folder, mmat, mmat_cmd,
                                  mmat_env, source, source_ids, write_config)


def _loaded_ids(out: Path, cache: Path) -> list[str]:
    import datasets

    ds = datasets.load_dataset(str(out), "orr", cache_dir=str(cache))
    return [i for split in ds.values() for i in split["id"]]


def _assert_one_row_per_id(out: Path, expected: set[str]) -> None:
    state = inspect_folder(out)
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [], fmt
        assert len(state.ids[fmt]) == len(expected) and state.id_set(fmt) == expected, fmt
    assert state.card_mismatches == []
    meta = read_card_metadata(out / "README.md")
    card = {i["config_name"]: sum(s["num_examples"] for s in i["splits"]) for i in meta["dataset_info"]}
    assert card["orr"] == card["rr"] == len(expected)


@pytest.mark.slow
def test_resharding_one_two_one_leaves_exactly_one_row_per_id(tmp_path):
    config = write_config(tmp_path / "small.yaml", [source("tabmwp"), source("infoseek", limit=6),
                                                    source("cauldron", limit=6)],
                          output={"shard_max_bytes": 60_000})  # several files per group, so names collide
    out = tmp_path / "out"
    expected, _ = source_ids(config)
    two = [("--num-shards", "2", "--shard-index", "0"), ("--num-shards", "2", "--shard-index", "1")]
    for phase, runs in enumerate([[()], two, [()]]):
        for args in runs:
            result = mmat("generate", "--config", config, "--out", out, "--quiet", *args, cwd=tmp_path)
            assert result.returncode == 0, result.stderr[-2000:]
            _assert_one_row_per_id(out, expected)  # after every worker, not only after the last
        assert sorted(_loaded_ids(out, tmp_path / f"hf-cache-{phase}")) == sorted(expected)
    names = {p.name for p in (out / "data/orr/tabmwp").glob("*.parquet")}
    assert all("-of-00001" in name for name in names), names  # the single worker owns every file again


def _wait_for_rows(path: Path, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= 1:
            return
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        time.sleep(0.1)
    raise AssertionError("the first run never finished a sample")


@pytest.mark.slow
def test_a_single_worker_run_and_a_sharded_run_never_generate_a_sample_twice(tmp_path):
    from tests.openai_server import OpenAICompatServer

    with OpenAICompatServer(latency_s=0.15) as server:
        config = write_config(tmp_path / "slow.yaml", [source("tabmwp")],
                              teacher={"kind": "openai", "model": "local-test-model", "base_url": server.url},
                              runner={"max_concurrency": 1})
        out = tmp_path / "out"
        work = default_work_dir(out)
        env = mmat_env(OPENAI_API_KEY="sk-test-local-server-000")
        first = subprocess.Popen(mmat_cmd("generate", "--config", config, "--out", out, "--quiet"), cwd=tmp_path,
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_rows(work / "rows-0.jsonl", first)
            second = mmat("generate", "--config", config, "--out", out, "--quiet", "--num-shards", "2",
                          "--shard-index", "0", cwd=tmp_path, env=env)
            assert first.poll() is None  # the refusal happened while the first run was alive
        finally:
            _, first_err = first.communicate(timeout=300)
        assert first.returncode == 0, first_err[-2000:]
        lines = error_output(second.stderr)
        assert second.returncode == 2 and len(lines) == 1, second.stderr
        assert "a single-worker run is using the work folder" in lines[0]
        # once it is done, the sharded run may use the folder: everything is finished already
        later = mmat("generate", "--config", config, "--out", out, "--quiet", "--num-shards", "2",
                     "--shard-index", "0", cwd=tmp_path, env=env)
        assert later.returncode == 0, later.stderr[-2000:]
        samples, _ = source_ids(config)
        assert server.count("final_answer") == len(samples)  # every sample paid for exactly once
    ids_per_file = {p.name: [json.loads(line)["id"] for line in p.read_text().splitlines()]
                    for p in work.glob("rows-*.jsonl")}
    every = [i for ids in ids_per_file.values() for i in ids]
    assert sorted(every) == sorted(samples), ids_per_file


def test_the_layout_lock_admits_workers_of_one_num_shards_and_refuses_another(tmp_path):
    w0 = Checkpoint(tmp_path, worker="00000-of-00002", lock=True, num_shards=2)
    w1 = Checkpoint(tmp_path, worker="00001-of-00002", lock=True, num_shards=2)  # same N: fine
    with pytest.raises(CheckpointLocked, match="a run with --num-shards 2 is using the work folder"):
        Checkpoint(tmp_path, worker="0", lock=True, num_shards=1)
    with pytest.raises(CheckpointLocked, match="--num-shards 2 is using"):
        Checkpoint(tmp_path, worker="00000-of-00003", lock=True, num_shards=3)
    w0.close()
    w1.close()
    single = Checkpoint(tmp_path, worker="0", lock=True, num_shards=1)  # nobody else lives: allowed
    with pytest.raises(CheckpointLocked, match="a single-worker run is using the work folder"):
        Checkpoint(tmp_path, worker="00000-of-00002", lock=True, num_shards=2)
    single.close()
    Checkpoint(tmp_path, worker="00000-of-00002", lock=True, num_shards=2).close()
