"""`mmat train` and `mmat export` as a user runs them, on a real dataset folder and a tiny real VLM."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from mmat_cli import app
from tests.dataset_factory import make_dataset_folder
from trainer.tiny_vlm import shared_tiny_vlm

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_dataset_folder(tmp_path_factory.mktemp("ds"), n_rows_per_source=2, card=True)


def test_export_swift_writes_one_line_per_row_with_image_paths(folder, tmp_path):
    out = tmp_path / "swift.jsonl"
    result = runner.invoke(app, ["export", str(folder), "--format", "swift", "--out", str(out), "--config", "orr"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 10  # 2 train rows x 5 sources
    for line in lines:
        user = line["messages"][0]
        assert user["role"] == "user" and user["content"].count("<image>") == len(line["images"])
        assert all((out.parent / p).exists() or __import__("os").path.exists(p) for p in line["images"])
    assert "exported 10 rows" in result.output


def test_export_unknown_format_is_one_line(folder, tmp_path):
    result = runner.invoke(app, ["export", str(folder), "--format", "alpaca", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 2
    assert "alpaca" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_train_two_steps_from_a_folder_writes_an_adapter(folder, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(folder), "--config", "orr", "--model", str(shared_tiny_vlm()),
                                 "--output", str(out), "--max-steps", "2", "--frobenius-lambda", "0.01"])
    assert result.exit_code == 0, result.output
    assert "trained 2 steps" in result.output
    assert any(out.rglob("adapter_model.safetensors"))


def test_train_bad_flag_value_is_one_line(folder, tmp_path):
    result = runner.invoke(app, ["train", "--data", str(folder), "--model", "x", "--output", str(tmp_path),
                                 "--learning-rate", "-1"])
    assert result.exit_code == 2
    assert "learning_rate" in result.output and "Traceback" not in result.output
