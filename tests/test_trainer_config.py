"""The training config: paper defaults, strict keys, the shipped YAML files, and the `--config` flag."""
from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import (DEFAULT_MODEL, TrainConfig, TrainConfigError, load_train_config, make_train_config,
                            resolve_config_flag)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_paper():
    cfg = TrainConfig()
    assert cfg.learning_rate == 4e-5
    assert cfg.num_train_epochs == 1
    assert cfg.weight_decay == 0.1
    assert cfg.per_device_train_batch_size == 1
    assert cfg.max_length == 16384
    assert cfg.frobenius_lambda > 0
    assert cfg.gradient_checkpointing
    assert cfg.model == DEFAULT_MODEL == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg.dataset_config == "orr"


def test_unknown_keys_and_bad_values_are_one_line_errors(tmp_path):
    with pytest.raises(TrainConfigError, match="lora_rank"):
        make_train_config(lora_rank=8)
    with pytest.raises(TrainConfigError, match="learning_rate"):
        make_train_config(learning_rate=-1)
    with pytest.raises(TrainConfigError, match="not both"):
        make_train_config(repo="a/b", data="mmat-1m")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset_config: orr\nmax_step: 3\n")
    with pytest.raises(TrainConfigError, match="max_step"):
        load_train_config(bad)


@pytest.mark.parametrize("name,fmt", [("train_orr.yaml", "orr"), ("train_rr.yaml", "rr")])
def test_shipped_configs_load_and_flags_override_them(name, fmt):
    path = REPO / "configs" / name
    cfg = load_train_config(path)
    assert cfg.dataset_config == fmt
    assert cfg.learning_rate == 4e-5 and cfg.weight_decay == 0.1 and cfg.max_length == 16384
    over = load_train_config(path, repo="me/mmat-1m", data=None, revision="v1.0.0", max_steps=10, output="x")
    # the file names a local folder; a --repo flag replaces it rather than clashing with it
    assert over.repo == "me/mmat-1m" and over.data is None
    assert over.revision == "v1.0.0" and over.max_steps == 10 and over.output == "x"
    assert over.dataset_config == fmt
    back = load_train_config(path, data="/tmp/elsewhere")
    assert back.data == "/tmp/elsewhere" and back.repo is None


def test_config_flag_is_a_yaml_file_or_a_dataset_config(tmp_path):
    assert resolve_config_flag("configs/train_orr.yaml") == ("configs/train_orr.yaml", None)
    assert resolve_config_flag("orr") == (None, "orr")
    assert resolve_config_flag("rr-tabmwp") == (None, "rr-tabmwp")
    f = tmp_path / "my-config"
    f.write_text("dataset_config: rr\n")
    assert resolve_config_flag(str(f)) == (str(f), None)
    assert resolve_config_flag(None) == (None, None)


def test_config_round_trips_through_yaml(tmp_path):
    cfg = TrainConfig(repo="me/mmat-1m", revision="v1.0.0", target_modules=["q_proj", "v_proj"], max_steps=5)
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml())
    assert load_train_config(path) == cfg
    assert cfg.dataset_source == "me/mmat-1m" and not cfg.is_local
    assert TrainConfig(data="~/mmat-1m").dataset_source.endswith("/mmat-1m")
