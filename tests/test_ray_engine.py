"""The Ray engine (`--engine ray`) on a local Ray instance: same output as the local engine, and no lost
or duplicated ids when a generation actor or the whole job is killed mid-run."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.runner_support import (
    FORMATS,
    REPO,
    default_work_dir,
    inspect_folder,
    kill_and_resume,
    mmat_env,
    rows_file_ids,
    source,
    source_ids,
    write_config,
)

ray = pytest.importorskip("ray")  # the `ray` extra; `make test` installs it

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _rows(out: Path, fmt: str) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for path in sorted((out / "data" / fmt).rglob("*.parquet")):
        for row in pq.read_table(path, columns=["id", "messages", "steps", "answer"]).to_pylist():
            assert row["id"] not in rows, f"{row['id']} twice in {fmt}"
            rows[row["id"]] = row
    return rows


def _split_counts(out: Path) -> dict[str, int]:
    """Rows per "format/split" in a dataset folder, as a run summary counts them."""
    counts: Counter = Counter()
    for path in (out / "data").rglob("*.parquet"):
        fmt, split = path.relative_to(out / "data").parts[0], path.name.split("-")[0]
        counts[f"{fmt}/{split}"] += pq.ParquetFile(path).metadata.num_rows
    return dict(counts)


def test_ray_engine_writes_the_same_ids_and_byte_identical_messages_as_the_local_engine(local_ray, demo, tmp_path,
                                                                                       monkeypatch):
    """The local engine's run of the same config is the session's demo dataset (tests/demo_fixtures.py)."""
    from generation.config import load_config
    from publishing.run import run_generation_ray
    from generation.plan import RunOptions

    monkeypatch.chdir(REPO)
    config = load_config(REPO / "configs/demo.yaml")
    on_ray = run_generation_ray(config, RunOptions(out_dir=tmp_path / "ray", quiet=True))
    local_out = demo["root"] / "mmat-1m"

    kept = sum(pq.ParquetFile(path).metadata.num_rows for path in (local_out / "data" / "rr").glob("*/*.parquet"))
    # teacher.require_grounding (auto: on for the offline teacher) quarantines the same samples on both engines
    assert on_ray.exit_code == 0 and on_ray.finished + on_ray.quarantined == 70
    assert on_ray.finished == kept
    assert on_ray.rows == _split_counts(local_out)
    assert on_ray.operator_executions > 0  # the operator actors ran their models
    # every sample went through a generation actor's own checkpoint file, none through the driver's
    work = default_work_dir(tmp_path / "ray")
    assert [p.name for p in work.glob("rows-*.jsonl") if not p.name.startswith("rows-ray-")] == []
    assert sum(rows_file_ids(work).values()) == kept
    for fmt in FORMATS:
        ray_rows, local_rows = _rows(tmp_path / "ray", fmt), _rows(local_out, fmt)
        assert set(ray_rows) == set(local_rows) and len(ray_rows) == kept
        for sample_id, row in local_rows.items():
            assert ray_rows[sample_id] == row, f"{fmt} {sample_id} differs between engines"
    # same card too (from the same shards)
    assert (tmp_path / "ray" / "README.md").read_text().count("\n") > 20


def test_a_generation_actor_killed_mid_run_is_restarted_and_no_id_is_lost_or_duplicated(local_ray, tmp_path):
    from generation.config import load_config
    from publishing.run import run_generation_ray
    from generation.plan import RunOptions

    config_path = write_config(tmp_path / "kill.yaml", [source("tabmwp"), source("visual_cot")],
                               ocr="rapidocr", runner={"max_concurrency": 2, "ray": {"batch_size": 2}})
    expected, _ = source_ids(config_path)
    out = tmp_path / "out"
    work = default_work_dir(out)
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = run_generation_ray(load_config(config_path), RunOptions(out_dir=out, quiet=True))
        except BaseException as exc:  # surfaced by the assertions below
            result["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    killed = None
    deadline = time.monotonic() + 240
    while runner.is_alive() and killed is None and time.monotonic() < deadline:
        for path in work.glob("rows-ray-*.jsonl"):
            if len(path.read_bytes().splitlines()) >= 3:  # a few samples durable, most still to come
                killed = int(path.stem.rsplit("-", 1)[1])
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.05)
    runner.join(timeout=300)

    assert killed is not None, "the run finished before the actor could be killed"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert summary.exit_code == 0
    files = sorted(p.name for p in work.glob("rows-ray-*.jsonl"))
    assert len(files) >= 2, f"no restarted actor wrote rows: {files}"  # Ray restarted the killed actor
    lines = rows_file_ids(work)
    assert set(lines) == expected
    assert [i for i, n in lines.items() if n > 1] == []  # the restarted actor skipped what was durable
    state = inspect_folder(out)
    assert not state.unreadable
    for fmt in FORMATS:
        assert sorted(state.ids[fmt]) == sorted(expected), fmt  # nothing lost, nothing twice


def _orphaned_ray_processes() -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        pid, ppid, args = line.split(None, 2)
        if ppid == "1" and args.startswith("ray::"):
            found.add(int(pid))
    return found


def test_the_whole_job_killed_and_restarted_ends_with_every_id_once(tmp_path):
    config_path = write_config(tmp_path / "job.yaml", [source("tabmwp"), source("llava_cot"), source("cauldron")],
                               ocr="rapidocr", runner={"max_concurrency": 2})
    expected, _ = source_ids(config_path)
    out = tmp_path / "out"
    before = _orphaned_ray_processes()
    try:
        report = kill_and_resume(config_path, out, kills=1, seed=3, min_delay=8.0, max_delay=11.0,
                                 env=mmat_env(), extra_args=("--engine", "ray"))
    finally:
        for pid in _orphaned_ray_processes() - before:  # agents of the killed job's Ray instance
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert report.kills == 1, "the job finished before it could be killed"
    assert report.final_rc == 0, report.final_stderr[-3000:]
    assert report.violations == []
    state = inspect_folder(out)
    assert not state.unreadable
    for fmt in FORMATS:
        assert sorted(state.ids[fmt]) == sorted(expected), fmt


def test_the_plan_streams_to_the_actors_in_a_bounded_window(local_ray):
    from generation.ray_engine import BatchFeed, plan_batches

    class Echo:  # defined here: Ray's workers cannot import this test module, so it travels by value
        def run(self, batch):
            return [{"id": item} for item in batch]

    read = []

    def plan():  # the sources, read lazily: a million-sample plan must not be read ahead
        for i in range(2000):
            read.append(i)
            yield i

    actors = [ray.remote(Echo).options(num_cpus=0, max_concurrency=4).remote() for _ in range(2)]
    depth, batch = 3, 5
    window = len(actors) * depth * batch
    feed = BatchFeed(ray, actors, plan_batches(plan(), batch), depth)
    assert len(read) == window  # only the first window was read before any outcome came back
    seen = []
    for outcome in feed.outcomes():
        seen.append(outcome["id"])
        assert len(read) - len(seen) <= window + batch  # plus the batch whose outcomes are being handed out
    assert sorted(seen) == list(range(2000))
    for actor in actors:
        ray.kill(actor)


def test_a_generation_actor_runs_its_batches_concurrently(local_ray, tmp_path, monkeypatch):
    """Batches of 2 and 16 samples in flight: the teacher sees far more than one batch's calls at once
    (an actor that ran its batches one after another would never exceed 2)."""
    from generation.config import load_config
    from generation.plan import RunOptions
    from publishing.run import run_generation_ray
    from tests.openai_server import OpenAICompatServer

    monkeypatch.setenv("MMAT_RAY_TEST_KEY", "sk-ray-test-key-0000000000")
    with OpenAICompatServer(latency_s=0.3) as server:
        teacher = {"kind": "openai", "model": "local-test-model", "base_url": server.url,
                   "api_key_env": "MMAT_RAY_TEST_KEY", "max_concurrency": 16}
        config_path = write_config(tmp_path / "c.yaml", [source("tabmwp"), source("llava_cot")], teacher=teacher,
                                   runner={"max_concurrency": 16, "ray": {"batch_size": 2}})
        summary = run_generation_ray(load_config(config_path), RunOptions(out_dir=tmp_path / "out", quiet=True))
        assert summary.exit_code == 0 and summary.finished == 24
        assert server.max_in_flight >= 8, server.max_in_flight
