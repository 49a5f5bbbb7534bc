"""`mmat push` and `mmat generate` on the same folder coordinate (issue 30): a pushed tag is always a
finished state of the folder.

A real `mmat generate` runs in a subprocess, slowed per sample and writing rolling parts, so the
folder holds a partial run while it lives. A push started then (against the test Hub server) waits,
saying so, and tags the finished folder; with a short timeout it stops with one line and pushes
nothing; a generation started while a push holds the folder waits for it.
"""
from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from generation.folder_lock import run_lock
from publishing.push import PushError, push_dataset
from tests.runner_support import FORMATS, inspect_folder, mmat_env, source, source_ids, write_config

REPO_ID = "tester/live-run"
_SLOW = r'''
import asyncio, os, sys
import generation.processor as processor
real = processor.SampleProcessor.process

async def slow(self, sample):
    await asyncio.sleep(float(os.environ["SAMPLE_DELAY_S"]))
    return await real(self, sample)

processor.SampleProcessor.process = slow
sys.argv = ["mmat", *sys.argv[1:]]
from mmat_cli import app
app()
'''


def _config(root: Path) -> Path:
    path = write_config(root / "c.yaml", [source("tabmwp", limit=6), source("infoseek", limit=6)],
                        output={"rolling_shard_rows": 2, "rolling_check_s": 0.2, "validation_fraction": 0.0},
                        runner={"max_concurrency": 1})
    return path


def _start(root: Path, config: Path, delay_s: float) -> subprocess.Popen:
    import sys

    return subprocess.Popen([sys.executable, "-c", _SLOW, "generate", "--config", str(config), "--out",
                             str(root / "out")], cwd=root, env=mmat_env(SAMPLE_DELAY_S=str(delay_s)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_parts(out: Path, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Until the live run has put a rolling part (a partial state) in the folder."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if list((out / "data").glob("*/*/*-part*.parquet")):
            return
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError("the run wrote no rolling part in time")


def _pushed_ids(tag: str, fmt: str) -> list[str]:
    from huggingface_hub import HfApi, hf_hub_download

    ids: list[str] = []
    for path in HfApi().list_repo_files(REPO_ID, repo_type="dataset", revision=tag):
        if path.startswith(f"data/{fmt}/") and path.endswith(".parquet"):
            local = hf_hub_download(REPO_ID, path, repo_type="dataset", revision=tag)
            ids += pq.read_table(local, columns=["id"]).column("id").to_pylist()
    return ids


def test_push_during_a_live_run_waits_and_tags_the_finished_folder(hub_server, tmp_path, caplog):
    config = _config(tmp_path)
    expected, _ = source_ids(config)
    proc = _start(tmp_path, config, delay_s=0.4)
    try:
        _wait_for_parts(tmp_path / "out", proc)
        partial = inspect_folder(tmp_path / "out", check_card=False).id_set()
        assert partial and partial < expected  # the folder is mid-run right now
        with caplog.at_level(logging.WARNING, logger="publishing.push"):
            push_dataset(tmp_path / "out", REPO_ID, "v1.0.0", lock_timeout_s=300)
        assert proc.poll() is not None, "the push must not finish before the run does"
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert any("running `mmat generate`" in r.getMessage() and "waiting" in r.getMessage() for r in caplog.records)
    for fmt in FORMATS:
        ids = _pushed_ids("v1.0.0", fmt)
        assert sorted(ids) == sorted(expected), fmt  # every row of the finished run, once


def test_push_gives_up_after_its_timeout_with_one_line_and_pushes_nothing(hub_server, tmp_path):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    config = _config(tmp_path)
    proc = _start(tmp_path, config, delay_s=1.0)
    try:
        _wait_for_parts(tmp_path / "out", proc)
        started = time.monotonic()
        with pytest.raises(PushError) as err:
            push_dataset(tmp_path / "out", REPO_ID, "v1.0.0", lock_timeout_s=1.0)
        assert time.monotonic() - started < 30
    finally:
        proc.kill()
        proc.communicate()
    message = str(err.value)
    assert "\n" not in message and "running `mmat generate`" in message and "--lock-timeout" in message
    with pytest.raises(RepositoryNotFoundError):
        HfApi().list_repo_refs(REPO_ID, repo_type="dataset")


def test_a_run_started_during_a_push_waits_for_it(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "out"
    with run_lock(out, shared=False):  # what a push holds
        proc = _start(tmp_path, config, delay_s=0.0)
        run_log = tmp_path / ".mmat-work" / "out" / "run.log"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "waiting for it" not in (run_log.read_text() if run_log.exists() else ""):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        time.sleep(1)
        assert proc.poll() is None and not (out / "data").exists()  # waiting, nothing written
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "a `mmat push` of" in " ".join((stdout + err).split())  # the console says why it waits
    assert all(inspect_folder(out).id_set(fmt) == source_ids(config)[0] for fmt in FORMATS)


def test_the_cli_has_the_timeout(tmp_path):
    from typer.testing import CliRunner

    from mmat_cli import app

    result = CliRunner().invoke(app, ["push", "--help"], env={"COLUMNS": "200"})
    assert "--lock-timeout" in result.output


