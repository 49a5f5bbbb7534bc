"""`mmat audit REPO --revision TAG`: the audit of a pushed revision, read from the project's Hub-compatible
server (tests/hub_server.py) by the command in its own interpreter, equals the audit of the folder that
was pushed; a later revision with fewer rows audits as that revision; an unknown revision is one line.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from generation.quality.audit import audit_dataset, write_json
from publishing.card import write_card
from publishing.push import push_dataset

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "team/mmat-audit"


def _mmat(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmat_cli", *args], env={**env, "PYTHONPATH": str(REPO),
                          "COLUMNS": "200"}, cwd=str(cwd), capture_output=True, text=True, timeout=300)


def _drop_rr_tabmwp_validation(folder: Path) -> int:
    """Remove one shard of RR rows (TabMWP's validation split) from a copied folder; returns its row count."""
    shard = next((folder / "data" / "rr" / "tabmwp").glob("validation-*.parquet"))
    rows = pq.ParquetFile(shard).metadata.num_rows
    shard.unlink()
    return rows


@pytest.mark.slow
def test_audit_of_a_pushed_revision_equals_the_folder_audit(demo, hub_server, tmp_path):
    folder = tmp_path / "mmat-1m"
    shutil.copytree(demo["root"] / "mmat-1m", folder)
    push_dataset(folder, REPO_ID, "v1.0.0")
    local = json.loads(write_json(audit_dataset(folder, "rr"), tmp_path / "local.json").read_text())

    dropped = _drop_rr_tabmwp_validation(folder)
    write_card(folder)
    push_dataset(folder, REPO_ID, "v1.1.0")

    env = hub_server.client_env(tmp_path / "client")
    out = tmp_path / "v1.json"
    proc = _mmat(["audit", REPO_ID, "--revision", "v1.0.0", "--config", "rr", "--json", str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = json.loads(out.read_text())
    assert remote["dataset"] == REPO_ID and local["dataset"] == str(folder)
    for key in ("total", "sources", "subsets", "exact_duplicates", "near_duplicates", "orr_rr_token_ratio", "examples"):
        assert remote[key] == local[key], key
    assert "quality of team/mmat-audit (rr)" in proc.stdout and "total" in proc.stdout

    later = tmp_path / "v11.json"
    proc = _mmat(["audit", REPO_ID, "--revision", "v1.1.0", "--json", str(later)], env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    newer = json.loads(later.read_text())
    assert dropped > 0
    assert newer["total"]["dialogues"] == local["total"]["dialogues"] - dropped
    assert newer["sources"]["tabmwp"]["dialogues"] == local["sources"]["tabmwp"]["dialogues"] - dropped

    proc = _mmat(["audit", REPO_ID, "--revision", "v9.9.9"], env, tmp_path)
    assert proc.returncode == 2
    assert "v9.9.9" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr + proc.stdout
