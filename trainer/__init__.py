"""LoRA fine-tuning on mmat-1m rows (with the paper's Frobenius regulariser) and jsonl export.

Public API (heavy modules load lazily, so `from trainer import TrainConfig` stays cheap):

    TrainConfig, load_train_config, make_train_config, resolve_config_flag   (trainer.config)
    train(cfg) -> TrainResult                                                (trainer.lora)
    export(dataset_or_dir, format, out_path, ...) -> ExportResult             (trainer.exporting)
    lora_frobenius_sq(model)                                                 (trainer.frobenius)
"""
from __future__ import annotations

from typing import Any

from trainer.config import (
    DEFAULT_MODEL,
    TrainConfig,
    TrainConfigError,
    load_train_config,
    make_train_config,
    resolve_config_flag,
)

_LAZY = {
    "train": "trainer.lora",
    "TrainResult": "trainer.lora",
    "FrobeniusLoraTrainer": "trainer.lora",
    "build_trainer": "trainer.lora",
    "export": "trainer.exporting",
    "ExportResult": "trainer.exporting",
    "EXPORT_FORMATS": "trainer.exporting",
    "lora_frobenius_sq": "trainer.frobenius",
    "MmatCollator": "trainer.data",
}

__all__ = [
    "DEFAULT_MODEL",
    "TrainConfig",
    "TrainConfigError",
    "load_train_config",
    "make_train_config",
    "resolve_config_flag",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
