"""LoRA fine-tuning with the paper's Frobenius regulariser, on `transformers.Trainer` + `peft`.

    from trainer import TrainConfig, train
    result = train(TrainConfig(repo="NS/mmat-1m", dataset_config="orr", revision="v1.0.0",
                               model="Qwen/Qwen2.5-VL-3B-Instruct", output="runs/orr", max_steps=1000))

The only change to the training loop is in `compute_loss`: L = L_CE + λ Σ_i ‖B_i A_i s_i‖²_F, with
`loss_ce`, `loss_frob` (= λ·Σ‖ΔW‖²) and `frob_norm_sq` (= Σ‖ΔW‖²) logged next to Trainer's `loss`.
Checkpoints (adapter, optimizer, scheduler, RNG, trainer state) and resume are Trainer's own.
"""
from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from transformers import Trainer

from trainer.config import TrainConfig, TrainConfigError
from trainer.frobenius import lora_frobenius_sq

log = logging.getLogger(__name__)

CONFIG_COPY = "mmat_train_config.yaml"


class FrobeniusLoraTrainer(Trainer):
    """`Trainer` whose training loss adds λ·Σ‖B·A·scaling‖²_F over the model's LoRA layers."""

    def __init__(self, *args: Any, frobenius_lambda: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frobenius_lambda = float(frobenius_lambda)
        self._reg_reset()

    def _reg_reset(self) -> None:
        self._reg_micro = 0
        self._reg_ce = 0.0
        self._reg_frob = 0.0
        self._reg_last_sq: Optional[torch.Tensor] = None
        self._reg_ce_t: Optional[torch.Tensor] = None
        self._reg_frob_t: Optional[torch.Tensor] = None

    def _ce_is_scaled_for_ga(self, num_items_in_batch: Any) -> bool:
        """Mirror of Trainer.training_step: was the CE already normalised over the accumulated batch?"""
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool(
            (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None
        )

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        ce, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if not model.training:  # evaluation reports the cross-entropy alone
            return (ce, outputs) if return_outputs else ce

        ga = max(1, int(getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)))
        scaled = self._ce_is_scaled_for_ga(num_items_in_batch)
        if self.frobenius_lambda > 0:
            frob_sq = lora_frobenius_sq(model)
        else:
            with torch.no_grad():
                frob_sq = lora_frobenius_sq(model)
        reg = self.frobenius_lambda * frob_sq.to(ce.device)
        # Trainer divides an unscaled loss by the accumulation steps itself; a scaled CE is summed as is
        # over the micro-batches, so the regulariser is divided here to count once per optimizer step.
        loss = ce + (reg / ga if scaled else reg).to(ce.dtype)

        # per-optimizer-step contributions, for logging
        ce_part = (ce if scaled else ce / ga).detach().float()
        frob_part = (reg / ga).detach().float()
        self._reg_ce_t = ce_part if self._reg_ce_t is None else self._reg_ce_t + ce_part
        self._reg_frob_t = frob_part if self._reg_frob_t is None else self._reg_frob_t + frob_part
        self._reg_last_sq = frob_sq.detach()
        self._reg_micro += 1
        self._reg_ga = ga
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        if "loss" in logs and self._reg_micro > 0 and self._reg_ce_t is not None:
            steps = max(1.0, self._reg_micro / max(1, getattr(self, "_reg_ga", 1)))
            logs["loss_ce"] = round(float(self._reg_ce_t.item()) / steps, 6)
            logs["loss_frob"] = float(self._reg_frob_t.item()) / steps
            logs["frob_norm_sq"] = float(self._reg_last_sq.item())
            logs["frobenius_lambda"] = self.frobenius_lambda
            self._reg_reset()
        super().log(logs, start_time)


@dataclass
class TrainResult:
    output_dir: str
    global_step: int
    train_loss: float  # the mean training loss over the run (Trainer's training_loss)
    final_loss: Optional[float]  # the last logged step's loss: final_loss_ce + final_loss_frob
    final_loss_ce: Optional[float]
    final_loss_frob: Optional[float]
    final_frob_norm_sq: Optional[float]
    tokens_seen: int  # non-padding tokens through the collator (evaluation batches included)
    target_tokens: int  # of which assistant tokens (labels)
    train_runtime_s: float
    tokens_per_second: float
    log_history: list[dict] = field(default_factory=list)
    trainer: Any = field(default=None, repr=False, compare=False)  # the FrobeniusLoraTrainer (trained model: .model)


def _use_bf16(cfg: TrainConfig) -> bool:
    if cfg.bf16 is not None:
        return cfg.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _no_cache(config: Any) -> None:
    """`use_cache=False` on the model's config and its sub-configs (a VLM's text_config is the one its
    language model reads): a KV cache is for generation, and with gradient checkpointing transformers
    warns on every run that it turns it off itself."""
    from transformers import PretrainedConfig

    config.use_cache = False
    for value in vars(config).values():
        if isinstance(value, PretrainedConfig) and hasattr(value, "use_cache"):
            value.use_cache = False


class ModelNotLoadable(TrainConfigError):
    """The model named by `model:` / `--model` cannot be loaded here (offline, a typo, not a VLM)."""


@contextmanager
def model_loading(model: str) -> Iterator[None]:
    """transformers' many ways of failing to find or read a model (OSError offline, ValueError for an
    unknown architecture, a missing file) become one line naming the fix, not a 69-line traceback."""
    try:
        yield
    except (OSError, ValueError, KeyError, ImportError) as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ModelNotLoadable(
            f"cannot load the model {model!r}: {first[:300]}. Pass --model a local save_pretrained folder of a "
            "vision-language model, or make one to try the trainer on a CPU: "
            "`python -m trainer.tiny_vlm tiny-vlm` then `--model tiny-vlm`") from None


def load_processor(cfg: TrainConfig):
    from transformers import AutoProcessor

    with model_loading(cfg.model):
        processor = AutoProcessor.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code,
                                                  **cfg.processor_kwargs)
    tok = processor.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return processor


def load_model(cfg: TrainConfig):
    """The base model with LoRA adapters attached (peft), ready for Trainer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if _use_bf16(cfg) else torch.float32}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    with model_loading(cfg.model):
        model = AutoModelForImageTextToText.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code,
                                                            **kwargs)
    _no_cache(model.config)
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
        use_rslora=cfg.use_rslora,
    )
    model = get_peft_model(model, lora)
    if cfg.gradient_checkpointing:
        # LoRA leaves the embeddings frozen: checkpointed blocks need inputs that require grad.
        model.enable_input_require_grads()
    return model


def training_arguments(cfg: TrainConfig, max_steps: int):
    from transformers import TrainingArguments

    args: dict[str, Any] = dict(
        output_dir=cfg.output,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.num_train_epochs,
        max_steps=max_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        max_grad_norm=cfg.max_grad_norm,
        bf16=_use_bf16(cfg),
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=cfg.report_to,
        remove_unused_columns=False,  # the collator reads `messages` and `images`
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinned memory only helps a copy to a GPU
        seed=cfg.seed,
        data_seed=cfg.seed,
        # accelerate's batch dispatcher (its default for iterable datasets) slices every tensor of a batch
        # to the batch size along dim 0, which drops images from `pixel_values` (n_images × …) of a
        # multi-image row; each process reads the stream itself instead
        accelerator_config={"dispatch_batches": False},
    )
    if cfg.eval_split:
        args.update(eval_strategy="steps", eval_steps=cfg.eval_steps, per_device_eval_batch_size=cfg.per_device_train_batch_size)
    args.update(cfg.training_args)
    return TrainingArguments(**args)


def resolve_max_steps(cfg: TrainConfig) -> int:
    """`cfg.max_steps`, or the steps of `num_train_epochs` over the split (streamed rows are counted
    from the parquet footers); -1 lets Trainer count a non-streamed dataset itself."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    if not cfg.streaming:
        return -1
    from trainer.data import count_rows, steps_for_epochs

    n = count_rows(cfg)
    if not n:
        raise ValueError(
            f"cannot count the rows of {cfg.dataset_config}/{cfg.split} to run {cfg.num_train_epochs} epoch(s) "
            "over a stream; set max_steps"
        )
    return steps_for_epochs(n, cfg, world_size=int(os.environ.get("WORLD_SIZE", "1")))


def _resume_arg(cfg: TrainConfig):
    from transformers.trainer_utils import get_last_checkpoint

    r = cfg.resume_from_checkpoint
    if r is True:
        last = get_last_checkpoint(cfg.output) if Path(cfg.output).is_dir() else None
        if last is None:
            log.info("no checkpoint in %s: starting from scratch", cfg.output)
        return last
    return r or None


def load_eval_rows(cfg: TrainConfig):
    """The first `eval_max_samples` rows of `eval_split` (unshuffled, one pass), or None."""
    from trainer.data import load_rows

    if not cfg.eval_split:
        return None
    eval_cfg = cfg.model_copy(update={"max_samples": cfg.eval_max_samples, "shuffle_buffer": 0})
    return load_rows(eval_cfg, split=cfg.eval_split)


def build_trainer(cfg: TrainConfig, *, model=None, processor=None, train_dataset=None) -> FrobeniusLoraTrainer:
    """Everything `train` wires together, exposed for tests and for callers that want the Trainer."""
    from trainer.data import MmatCollator, load_rows

    processor = processor if processor is not None else load_processor(cfg)
    model = model if model is not None else load_model(cfg)
    train_dataset = train_dataset if train_dataset is not None else load_rows(cfg)
    import datasets

    if isinstance(train_dataset, datasets.IterableDataset):
        # One endless pass instead of Trainer restarting the stream per epoch: Trainer resumes by skipping
        # `global_step` batches from the start of the current epoch, which is only the right position
        # when the stream is a single epoch (max_steps ends the run).
        train_dataset = train_dataset.repeat(None)
    collator = MmatCollator(
        processor=processor, max_length=cfg.max_length, chat_template=cfg.chat_template, mask_strategy=cfg.mask_strategy
    )
    args = training_arguments(cfg, resolve_max_steps(cfg))
    return FrobeniusLoraTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=load_eval_rows(cfg),
        data_collator=collator,
        processing_class=processor,
        frobenius_lambda=cfg.frobenius_lambda,
    )


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune `cfg.model` with LoRA on `cfg`'s rows; the adapter and processor land in `cfg.output`."""
    import warnings

    # transformers' Trainer calls its own deprecated name: nothing a user can act on, printed every run
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
    trainer = build_trainer(cfg)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_COPY).write_text(cfg.to_yaml(), encoding="utf-8")

    t0 = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=_resume_arg(cfg))
    runtime = time.perf_counter() - t0
    trainer.save_model(cfg.output)  # adapter (adapter_config.json + adapter_model.safetensors) + processor
    trainer.save_state()

    history = list(trainer.state.log_history)
    last = next((h for h in reversed(history) if "loss_ce" in h), {})
    stats = trainer.data_collator.stats
    result = TrainResult(
        output_dir=str(out),
        global_step=int(trainer.state.global_step),
        train_loss=float(output.training_loss),
        final_loss=last.get("loss"),
        final_loss_ce=last.get("loss_ce"),
        final_loss_frob=last.get("loss_frob"),
        final_frob_norm_sq=last.get("frob_norm_sq"),
        tokens_seen=int(stats["tokens"]),
        target_tokens=int(stats["target_tokens"]),
        train_runtime_s=runtime,
        tokens_per_second=stats["tokens"] / runtime if runtime > 0 else math.nan,
        log_history=history,
        trainer=trainer,
    )
    log.info(
        "trained %d steps: loss %.4f (ce %s, frob %s), %.1f tokens/s",
        result.global_step, result.train_loss, result.final_loss_ce, result.final_loss_frob, result.tokens_per_second,
    )
    return result
