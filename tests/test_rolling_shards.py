"""Rolling shards: part files written while the run goes, the folder loadable mid-run, kill -9 safe.

The run is the real CLI in a subprocess; each sample is slowed down (a sleep around the processor) so
the rolling thread certainly seals parts mid-run, and the child SIGKILLs itself right after its second
part is renamed into place. Then: a snapshot of the folder loads with `datasets.load_dataset` (the
card's own globs) and holds no id twice; the rerun finishes with every id exactly once, and the parts
written before the kill are still there, untouched (the end wrote only the tail)."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.runner_support import (FORMATS, default_work_dir, inspect_folder, load_ids, mmat_cmd, mmat_env, source,
                                  source_ids, write_config)

_SLOW_AND_KILL = r'''
import asyncio, os, signal, sys
import generation.processor as processor
import generation.shards as shards

real_process = processor.SampleProcessor.process

async def slow_process(self, sample):
    await asyncio.sleep(0.4)
    return await real_process(self, sample)

processor.SampleProcessor.process = slow_process
real_part = shards.write_part
parts = [0]

def write_part(*args, **kwargs):
    result = real_part(*args, **kwargs)
    parts[0] += 1
    if parts[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return result

shards.write_part = write_part
sys.argv = ["mmat", *sys.argv[1:]]
from mmat_cli import app
app()
'''


def _load_snapshot(snapshot: Path, fmt: str) -> list[str]:
    """`load_dataset("parquet")` over the card's glob for one format: what a user loads mid-run."""
    import datasets

    files = sorted(str(p) for p in snapshot.glob(f"data/{fmt}/*/*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(snapshot.parent / ".hf"))
    return list(ds["id"])


@pytest.mark.slow
def test_run_killed_after_rolling_parts_resumes_exactly_once(tmp_path):
    config = write_config(tmp_path / "roll.yaml", [source("tabmwp"), source("cauldron", limit=8)],
                          output={"rolling_shard_rows": 3, "rolling_check_s": 0.2, "validation_fraction": 0.0},
                          runner={"max_concurrency": 2})
    expected, _ = source_ids(config)
    out = tmp_path / "out"
    killed = subprocess.run([mmat_cmd()[0], "-c", _SLOW_AND_KILL, "generate", "--config", str(config), "--out",
                             str(out), "--quiet"], cwd=tmp_path, env=mmat_env(), capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]

    parts = sorted(out.glob("data/*/*/*-part*.parquet"))
    assert parts, "no part file was written mid-run"
    snapshot = tmp_path / "snapshot"
    shutil.copytree(out, snapshot)
    for fmt in FORMATS:
        ids = _load_snapshot(snapshot, fmt)
        assert ids and len(ids) == len(set(ids)) and set(ids) < expected, fmt
    state = inspect_folder(out, check_card=False)
    assert state.unreadable == []
    inodes = {p: p.stat().st_ino for p in parts}

    rerun = subprocess.run(mmat_cmd("generate", "--config", config, "--out", out, "--quiet"), cwd=tmp_path,
                           env=mmat_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    state = inspect_folder(out)
    assert state.unreadable == [] and state.temp_files == [] and state.card_mismatches == []
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [], fmt
        assert state.id_set(fmt) == expected, fmt
        assert sorted(load_ids(out, fmt)) == sorted(expected), fmt
    assert {p: p.stat().st_ino for p in parts if p.exists()} == inodes  # parts kept as written: only the tail
    rows = (default_work_dir(out) / "rows-0.jsonl").read_text().splitlines()
    assert len(rows) == len(expected)  # no finished sample was redone


def _config(rows: int):
    from generation.config import PipelineConfig

    return PipelineConfig.model_validate({"sources": [{"kind": "tabmwp", "path": "unused"}],
                                          "output": {"rolling_shard_rows": rows}})


def _finish(checkpoint, numbers):
    from tests.test_writer import _rows

    checkpoint.add_finished_many([(f"tabmwp/free_text/{i:03d}", "tabmwp", "train", _rows(i)) for i in numbers])


def _part_ids(out: Path, fmt: str) -> list[list[str]]:
    import pyarrow.parquet as pq

    return [pq.read_table(p, columns=["id"]).column("id").to_pylist()
            for p in sorted(out.glob(f"data/{fmt}/tabmwp/*-part*.parquet"))]


def test_each_pass_reads_only_what_the_indexes_gained_and_writes_each_id_once(tmp_path):
    """A pass parses the index lines appended since the last one (a torn last line waits for its end);
    a sample another worker's file also holds goes into one part (the first copy wins)."""
    from generation.checkpoint import Checkpoint, index_path
    from generation.plan import RunOptions
    from generation.shards import RollingShards

    checkpoint = Checkpoint(tmp_path / "work", lock=True)
    out = tmp_path / "out"
    rolling = RollingShards(checkpoint, out, _config(3), RunOptions(out_dir=out))
    _finish(checkpoint, range(0, 4))
    assert rolling.roll() == 2  # one part per format: ids 0-3
    idx = index_path(checkpoint.rows_path)
    after_first = rolling._read[idx]
    assert after_first == idx.stat().st_size
    _finish(Checkpoint(tmp_path / "work", worker="00001-of-00002"), [3, 4])  # 3 again, in another worker's file
    _finish(checkpoint, [5])
    complete = idx.stat().st_size
    _finish(checkpoint, [6])
    whole = idx.read_bytes()
    idx.write_bytes(whole[:-5])  # 6's entry half written
    assert rolling.roll() == 0  # pending 4 and 5 (3 is in the parts already; 6 not readable yet): under 3 rows
    assert rolling._read[idx] == complete  # read from where the last pass stopped, up to the torn line
    idx.write_bytes(whole)
    _finish(checkpoint, [7])
    assert rolling.roll() == 2  # 4, 5, 6, 7
    for fmt in FORMATS:
        assert _part_ids(out, fmt) == [[f"tabmwp/free_text/{i:03d}" for i in range(0, 4)],
                                       [f"tabmwp/free_text/{i:03d}" for i in range(4, 8)]], fmt


def _children() -> list[int]:
    """Pids of this process's live children (every thread's)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            found += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def test_the_thread_writes_parts_and_starts_no_process(tmp_path):
    """The rolling thread writes its parts and nothing else: no process of its own (the shard-readings
    read-ahead is gone, issue 33), no file in the work folder but the checkpoint's."""
    from generation.checkpoint import Checkpoint
    from generation.plan import RunOptions
    from generation.shards import RollingShards

    before = set(_children())
    config = _config(3)
    config.output.rolling_check_s = 0.05
    checkpoint = Checkpoint(tmp_path / "work", lock=True)
    out = tmp_path / "out"
    started: set[int] = set()
    with RollingShards(checkpoint, out, config, RunOptions(out_dir=out)) as rolling:
        _finish(checkpoint, range(0, 4))
        deadline = time.monotonic() + 20
        while rolling.parts_written < 2 and time.monotonic() < deadline:
            started |= set(_children()) - before
            time.sleep(0.05)
        started |= set(_children()) - before
    assert rolling.error is None and rolling.parts_written == 2
    for fmt in FORMATS:
        assert _part_ids(out, fmt) == [[f"tabmwp/free_text/{i:03d}" for i in range(0, 4)]], fmt
    assert started == set()
    assert not (tmp_path / "work" / "shard-readings").exists()


def test_the_end_reads_every_shard_and_its_numbers_are_the_folders(tmp_path, monkeypatch):
    """The end of the run (`rebuild_folder`) reads every shard file of the folder, the rolling parts and
    the tail alike, each once for the card and once for each format's audit (its rows, or its tokens for
    the other format's token ratio); its report is `mmat audit`'s of the folder, and nothing is kept in
    the work folder for a later run."""
    import generation.quality.audit as audit
    import generation.quality.shard_scan as shard_scan
    import publishing.card as card
    import publishing.card_stats as card_stats
    from generation.checkpoint import Checkpoint
    from generation.plan import RunOptions
    from generation.shards import RollingShards, rebuild_folder

    checkpoint = Checkpoint(tmp_path / "work", lock=True)
    out = tmp_path / "out"
    config = _config(3)
    rolling = RollingShards(checkpoint, out, config, RunOptions(out_dir=out))
    _finish(checkpoint, range(0, 4))
    assert rolling.roll() == 2
    parts = sorted(out.glob("data/*/tabmwp/*-part*.parquet"))
    assert len(parts) == 2

    read: list[str] = []
    reports: list = []
    for module, name in ((shard_scan, "audit_shard"), (shard_scan, "shard_tokens"), (card_stats, "scan_shard")):
        def recording(path, real=getattr(module, name), kind=name):
            read.append(f"{kind}:{Path(path).relative_to(out)}")
            return real(path)
        monkeypatch.setattr(module, name, recording)
    real_audit_run = audit.audit_run
    monkeypatch.setattr(audit, "audit_run", lambda *a, **k: reports.append(real_audit_run(*a, **k)) or reports[-1])
    _finish(checkpoint, range(4, 6))
    rebuild_folder(checkpoint, config, RunOptions(out_dir=out), 1.0, write_card=card.write_card)
    files = sorted(out.glob("data/*/tabmwp/*.parquet"))
    assert len(files) == 4 and set(parts) < set(files)  # two parts and two tails
    assert sorted(read) == sorted(f"{kind}:{f.relative_to(out)}" for f in files
                                  for kind in ("audit_shard", "shard_tokens", "scan_shard"))
    monkeypatch.undo()
    report = reports[0].to_dict()
    assert report.pop("paired") == audit.audit_dataset(out, "orr").to_dict()
    report.pop("quarantined"), report.pop("repairs_rejected")
    assert report == audit.audit_dataset(out, "rr").to_dict()
    assert reports[0].total.dialogues == 6
    assert not (tmp_path / "work" / "shard-readings").exists() and not list((tmp_path / "work").rglob("*.npz"))
