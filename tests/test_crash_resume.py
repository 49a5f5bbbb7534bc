"""`kill -9` at any moment loses at most the samples in flight and never leaves a duplicate or a corrupt shard.

Two kinds of test, both on the real CLI in a subprocess:
- random kills: `mmat generate` SIGKILLed after seeded random delays, several times, then rerun to
  completion; the folder is checked after every kill and at the end;
- kills at exact points where a crash hurts most (between shard renames, before the card, in the middle
  of a checkpoint line), injected by wrapping one function in the child process.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.runner_support import (
    error_output,
    FORMATS,
    copy_source,
    default_work_dir,
    inspect_folder,
    kill_and_resume,
    load_ids,
    mmat_cmd,
    mmat_env,
    read_quarantine,
    source,
    source_ids,
    write_config,
)


def _assert_complete(out: Path, expected: set[str], quarantined: set[str] = frozenset()) -> None:
    """The finished folder: exactly the expected ids once per format, every shard readable, no temp
    file, the card's split sizes equal to the shards, `load_dataset` returns the same ids."""
    state = inspect_folder(out)
    assert state.unreadable == []
    assert state.temp_files == []
    assert state.card_mismatches == []
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [], fmt
        assert state.id_set(fmt) == expected, fmt
        assert sorted(load_ids(out, fmt)) == sorted(expected), fmt
    assert set(read_quarantine(default_work_dir(out))) == set(quarantined)
    # every finished sample was processed exactly once: a resumed run never redid a finished one
    rows = [json.loads(line)["id"] for line in (default_work_dir(out) / "rows-0.jsonl").read_text().splitlines()]
    assert len(rows) == len(set(rows)) == len(expected)


@pytest.mark.slow
def test_random_sigkills_then_rerun_leave_exactly_the_expected_ids(tmp_path):
    tabmwp = copy_source("tabmwp", tmp_path)
    (tabmwp / "tables" / "137.png").write_bytes(b"")  # one bad record: quarantined, not lost, not retried
    config = write_config(tmp_path / "ocr.yaml", [source("tabmwp", tabmwp), source("infoseek", limit=8),
                                                  source("cauldron", limit=8)], ocr="rapidocr")
    expected, bad = source_ids(config)
    assert len(expected) >= 20 and len(bad) == 1
    out = tmp_path / "out"

    report = kill_and_resume(config, out, kills=4, seed=20251122, min_delay=1.0, max_delay=7.0, cwd=tmp_path)

    assert report.final_rc == 0, report.final_stderr[-3000:]
    assert report.violations == []
    assert report.kills >= 1, report
    _assert_complete(out, expected, bad)


# --------------------------------------------------------------------------------------------------
# Kills at exact points
# --------------------------------------------------------------------------------------------------
_KILLER = r'''
import os, signal, sys
point, n = os.environ["KILL_POINT"], int(os.environ["KILL_AT"])
count = [0]

def hit():
    count[0] += 1
    if count[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)

if point == "shard_rename":  # the n-th rename of a finished temp shard onto its real name
    import os as real_os
    import generation.writer as writer

    class _Os:
        def __getattr__(self, name):
            return getattr(real_os, name)

        def replace(self, src, dst):
            hit()
            return real_os.replace(src, dst)

    writer.os = _Os()
elif point == "card":  # shards written, card not yet
    import publishing.card as card
    real_write_card = card.write_card

    def write_card(*args, **kwargs):
        hit()
        return real_write_card(*args, **kwargs)

    card.write_card = write_card
elif point == "row_append":  # half of the n-th checkpoint write (one group commit) on disk
    import generation.checkpoint as checkpoint
    real_append = checkpoint._append_bytes

    def append(path, data, sync=True):
        if path.name.startswith("rows-") and path.suffix == ".jsonl":
            if count[0] + 1 == n:
                with open(path, "ab") as fh:
                    fh.write(data[: max(1, len(data) // 2)])
                    fh.flush()
            hit()
        return real_append(path, data, sync)

    checkpoint._append_bytes = append
sys.argv = ["mmat", *sys.argv[1:]]
from mmat_cli import app
app()
'''


@pytest.fixture(scope="module")
def half_done(tmp_path_factory):
    """A folder from a run stopped by `--limit`: shards exist, most samples still to do. Small shards
    (a few rows each) so a group's file count changes between runs: infoseek/train has 2 files after
    this run and 3 after the full one, so a kill between its renames is where old and new files
    would sit side by side (renames 7-12 of the full run: cauldron's 6 files come first)."""
    root = tmp_path_factory.mktemp("half")
    config = write_config(root / "small.yaml", [source("infoseek", limit=8), source("tabmwp"),
                                                source("cauldron", limit=8)], output={"shard_max_bytes": 60_000})
    result = subprocess.run(mmat_cmd("generate", "--config", config, "--out", root / "out", "--quiet",
                                     "--limit", "5"), cwd=root, env=mmat_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected, _ = source_ids(config)
    return root, expected


@pytest.mark.parametrize("point,at", [("shard_rename", 1), ("shard_rename", 7), ("shard_rename", 8),
                                      ("card", 1), ("row_append", 1)])
def test_kill_at_a_precise_point_then_rerun(half_done, tmp_path, point, at):
    root = tmp_path / "run"
    shutil.copytree(half_done[0], root)
    expected = half_done[1]
    config, out = root / "small.yaml", root / "out"
    before = inspect_folder(out)
    assert before.id_set() and before.id_set() < expected
    assert len(list((out / "data/rr/infoseek").glob("train-*.parquet"))) == 2

    killed = subprocess.run([mmat_cmd()[0], "-c", _KILLER, "generate", "--config", str(config), "--out", str(out),
                             "--quiet"], cwd=root, env=mmat_env(KILL_POINT=point, KILL_AT=str(at)),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]

    # right after the kill: no id twice, every shard readable (rows may be missing until the rerun)
    state = inspect_folder(out, check_card=False)
    assert state.unreadable == []
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [], fmt
        assert state.id_set(fmt) <= expected
    if point == "row_append":
        rows_file = default_work_dir(out) / "rows-0.jsonl"
        assert not rows_file.read_text().endswith("\n")  # a torn line is on disk

    rerun = subprocess.run(mmat_cmd("generate", "--config", config, "--out", out, "--quiet"), cwd=root,
                           env=mmat_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    _assert_complete(out, expected)
    assert len(list((out / "data/rr/infoseek").glob("train-*.parquet"))) == 3  # the file count did change


def test_stale_temp_files_of_a_killed_run_are_removed(half_done, tmp_path):
    root = tmp_path / "run"
    shutil.copytree(half_done[0], root)
    out, work = root / "out", default_work_dir(root / "out")
    litter = [out / "data/orr/tabmwp/.tmp-w0of1-4242-00000.parquet", out / "README.md.tmp",
              work / "blobs/ab/.tmp-0-deadbeef", work / ".tmp-0-quarantine"]
    for path in litter:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    result = subprocess.run(mmat_cmd("generate", "--config", root / "small.yaml", "--out", out, "--quiet"),
                            cwd=root, env=mmat_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert [p for p in litter if p.exists()] == []
    _assert_complete(out, half_done[1])


def test_a_second_run_of_the_same_worker_is_refused_while_the_first_lives(half_done, tmp_path):
    import fcntl

    root = tmp_path / "run"
    shutil.copytree(half_done[0], root)
    lock = default_work_dir(root / "out") / ".lock-0"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a live run holds
        result = subprocess.run(mmat_cmd("generate", "--config", root / "small.yaml", "--out", root / "out"),
                                cwd=root, env=mmat_env(), capture_output=True, text=True, timeout=120)
    finally:
        os.close(fd)
    assert result.returncode == 2
    lines = error_output(result.stderr)
    assert len(lines) == 1 and "another run of worker 0" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
