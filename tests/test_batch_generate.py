"""`teacher.batch: true` through the real `mmat generate` against a loopback Files + Batches server: the
run proceeds in rounds at the batch price, and `kill -9` at the worst moments (between `batches.create`
reaching the provider and its answer, and with one round answered and the next open) loses no result
and submits no request twice."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from batch_server import BatchPlan, BatchServer
from tests.runner_support import (default_work_dir, inspect_folder, mmat, mmat_cmd, mmat_env, rows_file_ids, source,
                                  source_ids, write_config)

PRICES = {"prompt_per_1m": 2.5, "completion_per_1m": 10.0}  # gpt-4o's list price


def _config(tmp_path: Path, server: BatchServer, limit: int = 6) -> Path:
    teacher = {"kind": "openai", "model": "local-test-model", "base_url": server.url, "max_retries": 1,
               "prices": PRICES, "batch": True,
               "batch_options": {"poll_s": 0.02, "flush_wait_s": 0.15}}
    return write_config(tmp_path / "batch.yaml", [source("tabmwp", limit=limit)], teacher=teacher,
                        runner={"max_concurrency": 16})


def _run(config: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    result = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=cwd,
                  env=mmat_env(OPENAI_API_KEY="sk-test"), timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _assert_once(out: Path, samples: set[str], server: BatchServer) -> None:
    """Every sample exactly once in the shards and in the work folder; every request submitted once."""
    state = inspect_folder(out)
    for fmt in ("rr", "orr"):
        assert state.duplicates(fmt) == [] and state.id_set(fmt) == samples, fmt
    assert all(n == 1 for n in rows_file_ids(default_work_dir(out)).values())
    twice = {cid: n for cid, n in Counter(server.submitted).items() if n > 1}
    assert twice == {}, f"requests submitted more than once: {twice}"


def test_a_batch_run_goes_in_rounds_at_half_price(tmp_path):
    with BatchServer() as server:
        config = _config(tmp_path, server)
        out = tmp_path / "out"
        _run(config, out, tmp_path)
    samples, _ = source_ids(config)
    _assert_once(out, samples, server)
    calls = len(server.submitted)
    assert calls >= 2 * len(samples) and all(r.get("via") == "batch" for r in server.requests)  # no direct call
    # a sample's calls are asked one after another: at least as many batches as the most calls of a sample
    assert server.creates >= 2 and server.creates < calls
    rows = [json.loads(x) for x in (default_work_dir(out) / "rows-0.jsonl").read_text().splitlines()]
    cost = sum(_cost_of(row) for row in rows)
    per_call_list_price = (100 * PRICES["prompt_per_1m"] + 20 * PRICES["completion_per_1m"]) / 1e6
    assert cost == pytest.approx(calls * per_call_list_price * 0.5, rel=1e-6)
    journal = [json.loads(x) for x in (default_work_dir(out) / "teacher-batches" / "batches.jsonl").read_text()
               .splitlines()]
    assert Counter(e["event"] for e in journal) == {"intent": server.creates, "created": server.creates,
                                                    "done": server.creates}


def _cost_of(row: dict) -> float:
    """The teacher cost a checkpoint line records for its sample (summed over its rows' teacher usage)."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "cost_usd" in node and "prompt_tokens" in node:
                found.append(node["cost_usd"])
                return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(row.get("orr") or row)
    return max(found) if found else 0.0


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the run ended before the moment to kill it"
        assert time.monotonic() < deadline, "the moment to kill never came"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.mark.parametrize("moment", ["create_answer_lost", "round_two_open"])
def test_kill_9_during_a_batch_run_loses_nothing_and_submits_nothing_twice(tmp_path, moment):
    with BatchServer() as server:
        config = _config(tmp_path, server)
        out = tmp_path / "out"
        if moment == "create_answer_lost":
            # the first batch is made on the server, then its answer is held back: the run dies before it
            # learns the batch id, so only its intent is in the journal
            server.create_delay_s = 8.0
            ready = lambda: server.creates >= 1  # noqa: E731
        else:
            # round one answered and stored, round two's batch open (it stays in_progress for a while)
            server.plan(BatchPlan(), BatchPlan(states=("validating",) + ("in_progress",) * 60 + ("completed",)))
            journal_path = default_work_dir(out) / "teacher-batches" / "batches.jsonl"
            ready = lambda: journal_path.exists() and journal_path.read_text().count('"created"') >= 2  # noqa: E731
        proc = subprocess.Popen(mmat_cmd("generate", "--config", config, "--out", out, "--quiet"), cwd=tmp_path,
                                env=mmat_env(OPENAI_API_KEY="sk-test"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _kill_when(proc, ready)
        finally:
            if proc.poll() is None:
                proc.kill()
        journal = (default_work_dir(out) / "teacher-batches" / "batches.jsonl").read_text()
        events = [json.loads(x)["event"] for x in journal.splitlines()]
        if moment == "create_answer_lost":
            assert events == ["intent"]  # the run died between the create reaching the server and its answer
        else:
            assert events.count("done") == 1 and events.count("created") == 2
        server.create_delay_s = 0.0
        creates_before = server.creates
        _run(config, out, tmp_path)
    samples, _ = source_ids(config)
    _assert_once(out, samples, server)
    if moment == "create_answer_lost":
        first = server.batches[min(server.batches)]  # the batch whose create answer the killed run lost
        assert first["metadata"]["mmat_batch"] and first["status"] == "completed" and creates_before == 1


def test_dry_run_states_the_batch_price_and_the_rounds(tmp_path):
    with BatchServer() as server:
        config = _config(tmp_path, server)
        result = mmat("generate", "--config", config, "--out", tmp_path / "out", "--dry-run", cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY="sk-test"))
    assert result.returncode == 0, result.stderr
    text = result.stdout + result.stderr
    listed = float(text.split("estimated cost: up to $", 1)[1].split()[0].replace(",", ""))
    line = next(x for x in text.splitlines() if x.startswith("batch:"))
    batch = float(line.split("up to $", 1)[1].split()[0].replace(",", ""))
    assert "(50 % of the estimate above)" in line
    assert abs(batch - listed * 0.5) <= 0.0051  # half of the unrounded estimate; the line above shows it rounded
    assert "rounds x the provider's batch time" in line and "24 h" in line
    assert server.creates == 0 and server.count() == 0  # a dry run sends nothing


@pytest.mark.slow
def test_random_kill_9s_during_a_batch_run_then_rerun(tmp_path):
    """Killed four times at seeded random moments after its first new batch (any step of any round:
    uploading, creating, polling, storing answers, writing rows), then run to the end."""
    import random

    rng = random.Random(31)
    kills = 0
    with BatchServer() as server:
        config = _config(tmp_path, server, limit=8)
        out = tmp_path / "out"
        for _ in range(4):
            before = server.creates
            proc = subprocess.Popen(mmat_cmd("generate", "--config", config, "--out", out, "--quiet"),
                                    cwd=tmp_path, env=mmat_env(OPENAI_API_KEY="sk-test"),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 90
            while server.creates == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 2.0))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(10)
        _run(config, out, tmp_path)
    samples, _ = source_ids(config)
    _assert_once(out, samples, server)
    assert kills >= 3 and server.creates >= 4
