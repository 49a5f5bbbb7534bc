"""The demo dataset, generated once per test session and shared by every test that reads it (loaded
from conftest): `mmat generate` on the bundled demo config, run twice (the second run must skip
everything), in a temp folder. It is the slowest thing in the suite, so no test builds a second one.

    def test_x(demo):  demo["root"] / "mmat-1m"   # the dataset folder; its work folder is beside it
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def mmat_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "mmat_cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="session")
def demo(tmp_path_factory, repo_root):
    root = tmp_path_factory.mktemp("demo")
    config = root / "demo.yaml"
    # the same config as `make demo`, with the bundled paths made absolute so it runs from anywhere
    text = (repo_root / "configs/demo.yaml").read_text().replace("../samples/", f"{repo_root}/samples/")
    config.write_text(text)
    env_path = os.pathsep.join([str(repo_root), os.environ.get("PYTHONPATH", "")])
    os.environ["PYTHONPATH"] = env_path
    first = mmat_subprocess("generate", "--config", str(config), "--out", "mmat-1m", cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    second = mmat_subprocess("generate", "--config", str(config), "--out", "mmat-1m", cwd=root)
    assert second.returncode == 0, second.stderr[-3000:]
    return {"root": root, "config": config, "first": first, "second": second}
