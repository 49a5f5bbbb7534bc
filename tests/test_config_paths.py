"""Input paths in a pipeline config resolve against the config file's folder, not the current folder:
`mmat generate --config /abs/configs/demo.yaml` works from any folder, and a same-named folder in the
current folder is not picked up instead."""
from __future__ import annotations

import shutil
from pathlib import Path

from generation.config import load_config
from tests.runner_support import REPO, SAMPLES, mmat


def test_the_demo_config_runs_from_another_folder(tmp_path):
    result = mmat("generate", "--config", REPO / "configs/demo.yaml", "--out", tmp_path / "out", "--dry-run",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"tabmwp ({SAMPLES / 'tabmwp'})" in result.stdout
    assert "samples: 70 in this slice" in result.stdout, result.stdout


def test_relative_paths_mean_the_config_files_folder_even_when_the_current_folder_has_them(tmp_path, monkeypatch):
    project = tmp_path / "project"
    shutil.copytree(SAMPLES / "tabmwp", project / "data" / "tabmwp")
    shutil.copytree(SAMPLES / "infoseek" / "corpus", project / "data" / "corpus")
    (project / "configs").mkdir()
    config = project / "configs" / "run.yaml"
    config.write_text("sources:\n  - {kind: tabmwp, path: ../data/tabmwp}\n"
                      "operators:\n  rag: {backend: local, corpus: ../data/corpus}\n"
                      "teacher: {kind: llamacpp, model_path: ~/models/m.gguf}\n")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data" / "tabmwp").mkdir(parents=True)  # a decoy at the same path from the current folder
    monkeypatch.chdir(elsewhere / "data")
    cfg = load_config(Path("..") / ".." / "project" / "configs" / "run.yaml")
    assert cfg.sources[0].path == project / "data" / "tabmwp"
    assert cfg.operators.rag.corpus == str(project / "data" / "corpus")
    assert cfg.teacher.model_path == str(Path.home() / "models" / "m.gguf")
