"""A full disk is one line and exit 1 whatever was being written, and the rerun recovers (issue 30).

`mmat generate` runs in a subprocess whose `os.fsync` fails with ENOSPC for the files of one kind
(every durable write fsyncs: `generation.atomic`, the checkpoint's append), the way a disk that fills
up while that file is written fails it: the checkpoint's rows, an image blob, an operator cache entry,
a shard, the card. Each must end the run with one line on stderr naming the full disk and how to
resume, exit 1, no traceback, no "Task exception was never retrieved", no "--- Logging error ---", no
temp file left; the rerun with space back writes every id once.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.runner_support import FORMATS, default_work_dir, inspect_folder, mmat_cmd, mmat_env, source, source_ids, \
    write_config

_ENOSPC = r'''
import errno, os, re, sys
pattern, after = re.compile(os.environ["ENOSPC_PATH"]), int(os.environ["ENOSPC_AFTER"])
real_fsync, seen = os.fsync, [0]

def fsync(fd):
    if pattern.search(os.readlink(f"/proc/self/fd/{fd}")):
        seen[0] += 1
        if seen[0] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
    return real_fsync(fd)

os.fsync = fsync
sys.argv = ["mmat", *sys.argv[1:]]
from mmat_cli import app
app()
'''

# what fills up -> (path pattern of the fsync'd file, fsyncs that still succeed: past the preflight probes)
CASES = {
    "checkpoint rows": (r"/rows-0\.jsonl$", 0),
    "image blob": (r"/blobs/", 2),
    "operator cache": (r"/operator-cache/results/", 1),
    "shard": (r"/data/.*\.parquet$", 1),
    "card": (r"/out/\.tmp-", 0),
}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    # OCR on: the operator cache is written inside a sample (an error there used to quarantine it)
    path = write_config(root / "c.yaml", [source("tabmwp", limit=6), source("infoseek", limit=6)], ocr="rapidocr")
    return path, source_ids(path)[0]


def _temps(*folders: Path) -> list[str]:
    return sorted(str(p) for f in folders if f.exists() for p in f.rglob("*") if p.name.startswith(".tmp-")
                  or p.name.endswith(".tmp"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_full_disk_is_one_line_exit_1_and_the_rerun_recovers(config, tmp_path, case):
    path, expected = config
    pattern, after = CASES[case]
    out = tmp_path / "out"
    full = subprocess.run([mmat_cmd()[0], "-c", _ENOSPC, "generate", "--config", str(path), "--out", str(out)],
                          cwd=tmp_path, env=mmat_env(ENOSPC_PATH=pattern, ENOSPC_AFTER=str(after)),
                          capture_output=True, text=True, timeout=600)

    assert full.returncode == 1, full.stderr[-3000:]
    for noise in ("Traceback", "Task exception was never retrieved", "Logging error", "internal error"):
        assert noise not in full.stderr, full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "rerun the same command" in errors[0]
    assert _temps(out, default_work_dir(out)) == []
    assert "OSError" not in (default_work_dir(out) / "quarantine.jsonl").read_text() \
        if (default_work_dir(out) / "quarantine.jsonl").exists() else True  # nobody blamed a sample

    again = subprocess.run(mmat_cmd("generate", "--config", path, "--out", out, "--quiet"), cwd=tmp_path,
                           env=mmat_env(), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    state = inspect_folder(out)
    assert state.unreadable == [] and state.temp_files == [] and state.card_mismatches == []
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [] and state.id_set(fmt) == expected, fmt
