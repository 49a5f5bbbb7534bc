"""`runner.processes: 2`: the local engine over two generation processes, on the real CLI.

- the dataset equals the one-process run's, row for row (offline teacher: deterministic);
- `kill -9` of the driver takes its generation processes with it, and the rerun finishes each id once;
- a key refused mid-run stops every process with the one-line error, nothing quarantined (the rerun after
  a fatal error is tests/test_integrity_failfast.py's; a rerun of a processes run, the kill test's).
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from tests.llamacpp_support import process_gone
from tests.openai_server import OpenAICompatServer, error
from tests.runner_support import (error_output, FORMATS, default_work_dir, inspect_folder, mmat, mmat_cmd,
                                  mmat_env, read_quarantine, rows_file_ids, source, source_ids, write_config)

KEY = "sk-test-process-engine-000000"


def _rows(out: Path, fmt: str) -> list[dict]:
    rows = [r for path in sorted((out / "data" / fmt).glob("*/*.parquet")) for r in pq.read_table(path).to_pylist()]
    for row in rows:
        row["teacher"]["latency_s"] = 0.0  # wall time: the one field that differs run to run
    return sorted(rows, key=lambda r: r["id"])


def test_two_processes_write_the_same_dataset_as_one(tmp_path):
    sources = [source("tabmwp"), source("llava_cot", limit=6)]
    one = write_config(tmp_path / "one.yaml", sources, runner={"max_concurrency": 4})
    two = write_config(tmp_path / "two.yaml", sources, runner={"max_concurrency": 4, "processes": 2})
    first = mmat("generate", "--config", one, "--out", tmp_path / "one")
    second = mmat("generate", "--config", two, "--out", tmp_path / "two")
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "2 generation processes" in second.stdout + second.stderr
    expected, _ = source_ids(one)
    work = default_work_dir(tmp_path / "two")
    assert sorted(p.name.split("-")[0] for p in work.glob("rows-*.jsonl")) == ["rows", "rows"]
    assert len(list(work.glob("rows-local-*.jsonl"))) == 2  # one rows file per generation process
    assert rows_file_ids(work) == Counter(expected)  # each sample ran once, in one of them
    for fmt in FORMATS:
        assert _rows(tmp_path / "two", fmt) == _rows(tmp_path / "one", fmt), fmt
    assert inspect_folder(tmp_path / "two").card_mismatches == []


def test_killing_the_driver_takes_its_processes_and_the_rerun_finishes_each_id_once(tmp_path):
    with OpenAICompatServer(latency_s=0.15) as server:
        config = write_config(
            tmp_path / "c.yaml", [source("tabmwp"), source("llava_cot")],
            teacher={"kind": "openai", "model": "local-test-model", "base_url": server.url, "max_retries": 0},
            runner={"max_concurrency": 4, "processes": 2})
        out = tmp_path / "out"
        work = default_work_dir(out)
        driver = subprocess.Popen(mmat_cmd("generate", "--config", config, "--out", out, "--quiet"), cwd=tmp_path,
                                  env=mmat_env(OPENAI_API_KEY=KEY), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while (sum(rows_file_ids(work).values()) < 4 or len(list(work.glob("rows-local-*.jsonl"))) < 2) \
                and time.time() < deadline and driver.poll() is None:
            time.sleep(0.05)  # both processes have made samples durable
        children = [int(p.stem.rsplit("-", 1)[1]) for p in work.glob("rows-local-*.jsonl")]
        assert driver.poll() is None and len(children) == 2, "the run finished before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        assert all(process_gone(pid, timeout_s=15) for pid in children), \
            "a generation process outlived its killed driver"
        killed_at = sum(rows_file_ids(work).values())
        again = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path,
                     env=mmat_env(OPENAI_API_KEY=KEY))
    assert again.returncode == 0, again.stderr
    expected, _ = source_ids(config)
    assert killed_at < len(expected)
    durable = rows_file_ids(work)
    assert set(durable.values()) == {1} and set(durable) == expected  # none lost, none done twice
    state = inspect_folder(out)
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [] and state.id_set(fmt) == expected, fmt
    assert state.temp_files == [] and state.card_mismatches == []


def test_a_key_refused_mid_run_stops_every_process_with_one_line(tmp_path):
    with OpenAICompatServer() as server:
        server.defaults["rationale_step"] = error(401, "Incorrect API key provided")  # /models still answers
        config = write_config(
            tmp_path / "c.yaml", [source("tabmwp")],
            teacher={"kind": "openai", "model": "local-test-model", "base_url": server.url, "max_retries": 0},
            runner={"max_concurrency": 2, "processes": 2})
        out = tmp_path / "out"
        result = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY=KEY))
        assert server.count() <= 4  # each process stops at its first refusal (one request per sample slot)
        assert result.returncode == 2, result.stderr
        lines = error_output(result.stderr)
        assert len(lines) == 1 and "HTTP 401" in lines[0] and "The run stopped at the first such error" in lines[0]
        assert "Traceback" not in result.stderr and KEY not in result.stderr
        assert read_quarantine(default_work_dir(out)) == {}  # not the samples' fault: the rerun runs them
