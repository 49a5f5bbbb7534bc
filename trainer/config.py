"""The training config: one flat pydantic model, the single source of truth for `mmat train` flags.

Every field is a flag of the same name with `_` → `-` (`max_steps` ↔ `--max-steps`), with two
spellings kept from the paper-style command line:

| field            | flag          | meaning                                                          |
|------------------|---------------|------------------------------------------------------------------|
| `repo`           | `--repo`      | Hub dataset repo `NS/NAME` (streams from `HF_ENDPOINT`)          |
| `data`           | `--data`      | local dataset folder (`mmat-1m/`), instead of `repo`             |
| `dataset_config` | `--config`    | dataset config: `orr`, `rr`, `orr-tabmwp`, …                     |
| `output`         | `--output`    | run folder: checkpoints, final adapter, processor, config copy   |

`--config` is overloaded on purpose (`mmat train --config configs/train_orr.yaml` and
`mmat train --config orr`): `resolve_config_flag` tells the two apart (a path ending in
`.yaml`/`.yml`, or an existing file, is a config file; anything else is a dataset config name).
Flags given next to a YAML file override the file's keys (`load_train_config(path, **flags)`).

Defaults follow the paper where it says something (LoRA, lr 4e-5, 1 epoch, weight decay 0.1, bf16,
batch 1, max length 16384); the rest (rank, alpha, λ, schedule) are our choices, marked below.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import ConfigDict, Field, ValidationError, model_validator

from generation.errors import MmatError, did_you_mean
from generation.strict import StrictModel, allowed_keys, yaml_error_message

DEFAULT_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
# LoRA on the language model's attention and MLP projections only (the vision tower and projector stay
# frozen, as in the paper's LoRA setting). A regex string is matched by peft against full module
# names; `language_model` is in the module path of every transformers 5 VLM (LLaVA, Qwen2/2.5/3-VL,
# InternVL-hf, Idefics3, Gemma3, ...).
DEFAULT_TARGET_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


class TrainConfigError(MmatError, ValueError):
    """A bad training config, in one line that names the key."""


class TrainConfig(StrictModel):
    """Everything `train(cfg)` needs. Unknown keys are errors (a `StrictModel`)."""

    model_config = ConfigDict(validate_assignment=True)

    # ---- data -------------------------------------------------------------------------------------
    repo: Optional[str] = Field(None, description="Hub dataset repo id NS/NAME (uses HF_ENDPOINT / HF_TOKEN)")
    data: Optional[str] = Field(None, description="local dataset folder (e.g. mmat-1m/) instead of --repo")
    dataset_config: str = Field("orr", description="dataset config name: orr, rr, orr-<source>, rr-<source> (flag --config)")
    revision: Optional[str] = Field(None, description="dataset revision: tag (v1.0.0), branch or commit")
    split: str = "train"
    streaming: bool = Field(True, description="stream rows (load_dataset(..., streaming=True)); False downloads/prepares first")
    max_samples: Optional[int] = Field(None, ge=1, description="use only the first N rows of the split")
    shuffle_buffer: int = Field(1000, ge=0, description="streaming shuffle buffer (0: keep file order)")
    seed: int = 42

    # ---- model and inputs -------------------------------------------------------------------------
    model: str = Field(DEFAULT_MODEL, description="Hub model id or local save_pretrained folder (processor + model)")
    trust_remote_code: bool = False
    attn_implementation: Optional[str] = Field(None, description="sdpa, flash_attention_2, eager; None: transformers' default")
    chat_template: Optional[str] = Field(None, description="path to a .jinja file (or the template text) replacing the processor's")
    mask_strategy: Literal["auto", "generation", "prefix"] = Field(
        "auto",
        description="how assistant tokens are found: 'generation' uses {% generation %} markers, 'prefix' renders "
        "message prefixes, 'auto' uses markers when the template has them and prefixes otherwise",
    )
    max_length: int = Field(16384, ge=8, description="tokens per sequence (paper: 16384); longer rows are cut at the end")
    processor_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra AutoProcessor.from_pretrained kwargs, e.g. {max_pixels: 1003520}"
    )

    # ---- LoRA (rank/alpha/dropout: our defaults; the paper does not state them) -------------------
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: Union[str, list[str]] = Field(
        DEFAULT_TARGET_MODULES, description="peft target_modules: a regex string, a list of names, or 'all-linear'"
    )
    use_rslora: bool = False

    # ---- the paper's regulariser: L = L_CE + λ Σ_i ‖B_i A_i · scaling_i‖²_F ------------------------
    frobenius_lambda: float = Field(1e-4, ge=0.0, description="λ of the Frobenius term (0 disables it); our default")

    # ---- optimisation (paper: lr 4e-5, 1 epoch, weight decay 0.1, bf16, batch 1) -----------------
    learning_rate: float = Field(4e-5, gt=0)
    num_train_epochs: float = Field(1.0, gt=0)
    max_steps: Optional[int] = Field(None, ge=1, description="optimizer steps; overrides num_train_epochs")
    weight_decay: float = Field(0.1, ge=0)
    per_device_train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    lr_scheduler_type: str = Field("cosine", description="our choice (InternVL's fine-tuning recipe); paper: unstated")
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    max_grad_norm: float = Field(1.0, ge=0)
    bf16: Optional[bool] = Field(None, description="None: bf16 when a CUDA GPU supports it, fp32 otherwise")
    gradient_checkpointing: bool = True

    # ---- evaluation (cross-entropy only) ------------------------------------------------------------
    eval_split: Optional[str] = Field(None, description="e.g. validation: evaluate on this split every eval_steps")
    eval_steps: int = Field(500, ge=1)
    eval_max_samples: Optional[int] = Field(256, ge=1, description="rows of eval_split used per evaluation")

    # ---- output, logging, checkpoints -------------------------------------------------------------
    output: str = Field("outputs/mmat-lora", description="run folder (flag --output)")
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    save_total_limit: Optional[int] = Field(2, ge=1)
    resume_from_checkpoint: Optional[Union[bool, str]] = Field(
        None, description="True: latest checkpoint in output; a path: that checkpoint"
    )
    report_to: Union[str, list[str]] = "none"
    dataloader_num_workers: int = Field(0, ge=0)
    training_args: dict[str, Any] = Field(
        default_factory=dict, description="any other transformers.TrainingArguments field, passed through as is"
    )

    @model_validator(mode="after")
    def _one_source(self) -> "TrainConfig":
        if self.repo and self.data:
            raise ValueError("give either repo (a Hub dataset) or data (a local folder), not both")
        return self

    # ---- helpers ----------------------------------------------------------------------------------
    @property
    def dataset_source(self) -> str:
        """What `load_dataset` gets as its path: the local folder, the Hub repo, or ./mmat-1m."""
        if self.data:
            return str(Path(self.data).expanduser())
        if self.repo:
            return self.repo
        return "mmat-1m"

    @property
    def is_local(self) -> bool:
        return self.repo is None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def _describe_errors(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(config)"
        hint = did_you_mean(e["loc"][-1], allowed_keys(TrainConfig, e["loc"][:-1])) if e["type"] == "extra_forbidden" else ""
        parts.append(f"{where}: {e['msg']}{hint}")
    return "; ".join(parts)


def make_train_config(**fields: Any) -> TrainConfig:
    """`TrainConfig(**fields)` with None values dropped (unset CLI flags) and a one-line error."""
    fields = {k: v for k, v in fields.items() if v is not None}
    try:
        return TrainConfig(**fields)
    except ValidationError as e:
        raise TrainConfigError(_describe_errors(e)) from None


def load_train_config(path: Optional[Union[str, Path]] = None, **overrides: Any) -> TrainConfig:
    """Read a YAML config (flat keys = TrainConfig fields) and apply `overrides` (None values ignored).

    A `repo` override replaces the file's `data` and a `data` override its `repo`.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise TrainConfigError(f"{path}: no such training config file") from None
        except yaml.YAMLError as exc:
            raise TrainConfigError(yaml_error_message(path, exc)) from None
        if not isinstance(loaded, dict):
            raise TrainConfigError(f"{path}: expected a mapping of TrainConfig fields, got {type(loaded).__name__}")
        data.update(loaded)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    # the data source is one choice: a --repo flag replaces the file's `data`, a --data flag its `repo`
    if "repo" in overrides:
        data.pop("data", None)
    if "data" in overrides:
        data.pop("repo", None)
    data.update(overrides)
    return make_train_config(**data)


def resolve_config_flag(value: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """Split the overloaded `--config` flag into `(yaml_path, dataset_config)`; one of them is None."""
    if value is None:
        return None, None
    if value.endswith((".yaml", ".yml")) or Path(value).is_file():
        return value, None
    return None, value
