"""Training throughput of the LoRA trainer (`trainer.train`): tokens/s, and MFU on a GPU.

Runs the real trainer (Trainer + peft LoRA + the Frobenius term + our collator) for `--warmup` +
`--steps` optimizer steps and times the last `--steps`. Baselines measured in the same run:

- the same steps with λ = 0 (what the regulariser costs per step),
- the regulariser alone, Gram-matrix form vs forming every B·A (forward + backward).

MFU = 6 · N_params · tokens/s / peak bf16 FLOP/s (the usual dense-transformer estimate; N counts all
parameters, frozen ones included, since their activations are still back-propagated). On a CPU it
prints tokens/s and "MFU: n/a".

    .venv/bin/python benchmarks/train_throughput.py                  # tiny VLM + synthetic rows, CPU
    python benchmarks/train_throughput.py --model Qwen/Qwen2.5-VL-3B-Instruct --data mmat-1m --steps 50
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402
from trainer.frobenius import lora_frobenius_sq  # noqa: E402
from trainer.lora import build_trainer  # noqa: E402

# dense bf16 tensor-core peaks (FLOP/s), by substring of torch.cuda.get_device_name()
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is ~756e12: pass --peak-tflops
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
}


class StepTimer(TrainerCallback):
    def __init__(self, collator, warmup: int) -> None:
        self.collator = collator
        self.warmup = warmup
        self.t0 = self.t1 = None
        self.tok0 = self.tok1 = 0
        self.target0 = self.target1 = 0

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_step_end(self, args, state, control, **kwargs):
        self._sync()
        now = time.perf_counter()
        if state.global_step == self.warmup:
            self.t0, self.tok0, self.target0 = now, self.collator.stats["tokens"], self.collator.stats["target_tokens"]
        self.t1, self.tok1, self.target1 = now, self.collator.stats["tokens"], self.collator.stats["target_tokens"]


def measure(cfg: TrainConfig, warmup: int) -> dict:
    trainer = build_trainer(cfg)
    timer = StepTimer(trainer.data_collator, warmup)
    trainer.add_callback(timer)
    trainer.train()
    seconds = timer.t1 - timer.t0
    tokens = timer.tok1 - timer.tok0
    n_params = sum(p.numel() for p in trainer.model.parameters())
    n_trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return {
        "steps": cfg.max_steps - warmup,
        "seconds": seconds,
        "tokens": tokens,
        "target_tokens": timer.target1 - timer.target0,
        "tokens_per_s": tokens / seconds,
        "steps_per_s": (cfg.max_steps - warmup) / seconds,
        "n_params": n_params,
        "n_trainable": n_trainable,
        "model": trainer.model,
    }


def time_regulariser(model, reps: int) -> dict:
    out = {}
    params = [p for p in model.parameters() if p.requires_grad]
    for name, explicit in (("gram", False), ("explicit", True)):
        for _ in range(2):
            torch.autograd.grad(lora_frobenius_sq(model, explicit=explicit), params)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            torch.autograd.grad(lora_frobenius_sq(model, explicit=explicit), params)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        out[name] = (time.perf_counter() - t) / reps
    return out


def time_synthetic_pair(out_features: int, in_features: int, r: int, reps: int) -> dict:
    """The regulariser for one LoRA pair of a real model's size (default: Qwen2.5-3B's MLP, r=16)."""
    from trainer.frobenius import LoraPair, pair_frobenius_sq

    device = "cuda" if torch.cuda.is_available() else "cpu"
    A = torch.randn(r, in_features, device=device, requires_grad=True)
    B = torch.randn(out_features, r, device=device, requires_grad=True)
    pair = LoraPair("synthetic", "default", A, B, 2.0)
    out = {}
    for name, explicit in (("gram", False), ("explicit", True)):
        torch.autograd.grad(pair_frobenius_sq(pair, explicit=explicit), [A, B])
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            torch.autograd.grad(pair_frobenius_sq(pair, explicit=explicit), [A, B])
        if device == "cuda":
            torch.cuda.synchronize()
        out[name] = (time.perf_counter() - t) / reps
    return out


def peak_flops(override_tflops: float | None) -> tuple[float | None, str]:
    if not torch.cuda.is_available():
        return None, "cpu"
    name = torch.cuda.get_device_name()
    if override_tflops:
        return override_tflops * 1e12, name
    for key, value in PEAK_BF16.items():
        if key in name:
            return value, name
    return None, name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="Hub id or local folder (default: a tiny random VLM built here)")
    ap.add_argument("--data", help="local dataset folder (default: synthetic rows)")
    ap.add_argument("--repo", help="Hub dataset repo instead of --data")
    ap.add_argument("--revision")
    ap.add_argument("--config", default="rr", help="dataset config (default rr: long multi-turn rows)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--max-length", type=int, default=16384)
    ap.add_argument("--frobenius-lambda", type=float, default=1e-4)
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--attn-implementation")
    ap.add_argument("--peak-tflops", type=float, help="override the GPU's bf16 peak")
    ap.add_argument("--reg-reps", type=int, default=20)
    ap.add_argument("--pair-shape", default="11008,2048,16", help="out,in,r of the synthetic LoRA pair")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (CPU)")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(tempfile.mkdtemp(prefix="train-bench-"))
    model = args.model
    if model is None:
        from trainer.tiny_vlm import build_tiny_vlm

        model = str(build_tiny_vlm(work / "tiny-vlm"))
    data = args.data
    if data is None and args.repo is None:
        from tests.dataset_factory import make_dataset_folder

        data = str(make_dataset_folder(work, n_rows_per_source=8, card=True))

    base = dict(
        repo=args.repo, data=data, revision=args.revision, dataset_config=args.config, model=model,
        max_steps=args.warmup + args.steps, per_device_train_batch_size=args.batch_size, max_length=args.max_length,
        gradient_checkpointing=not args.no_gradient_checkpointing, attn_implementation=args.attn_implementation,
        shuffle_buffer=0, logging_steps=10**6, save_steps=10**6, report_to="none",
    )
    base = {k: v for k, v in base.items() if v is not None}
    with_reg = measure(TrainConfig(output=str(work / "reg"), frobenius_lambda=args.frobenius_lambda, **base), args.warmup)
    without = measure(TrainConfig(output=str(work / "noreg"), frobenius_lambda=0.0, **base), args.warmup)
    reg_times = time_regulariser(with_reg["model"], args.reg_reps)
    out_f, in_f, rank = (int(x) for x in args.pair_shape.split(","))
    pair_times = time_synthetic_pair(out_f, in_f, rank, max(3, args.reg_reps // 4))

    peak, device = peak_flops(args.peak_tflops)
    flops_per_token = 6 * with_reg["n_params"]
    mfu = flops_per_token * with_reg["tokens_per_s"] / peak if peak else None

    print(f"device: {device}   model: {model}   params: {with_reg['n_params']:,} (LoRA trainable {with_reg['n_trainable']:,})")
    print(f"timed {with_reg['steps']} steps after {args.warmup} warm-up steps, batch {args.batch_size}, "
          f"gradient checkpointing {'off' if args.no_gradient_checkpointing else 'on'}")
    print(f"tokens/s (λ={args.frobenius_lambda:g}): {with_reg['tokens_per_s']:,.1f}   "
          f"({with_reg['tokens'] / with_reg['steps']:.0f} tokens/step, {with_reg['steps_per_s']:.2f} steps/s)")
    print(f"tokens/s (λ=0, baseline): {without['tokens_per_s']:,.1f}   "
          f"ratio with/without regulariser: {with_reg['tokens_per_s'] / without['tokens_per_s']:.3f}")
    print(f"regulariser fwd+bwd: Gram form {reg_times['gram'] * 1e3:.3f} ms, explicit B·A {reg_times['explicit'] * 1e3:.3f} ms "
          f"(speed-up {reg_times['explicit'] / reg_times['gram']:.2f}x)")
    print(f"one {out_f}x{in_f} pair, r={rank}: Gram form {pair_times['gram'] * 1e3:.3f} ms, "
          f"explicit B·A {pair_times['explicit'] * 1e3:.3f} ms (speed-up {pair_times['explicit'] / pair_times['gram']:.1f}x)")
    if mfu is None:
        print("MFU: n/a (no GPU)" if device == "cpu" else f"MFU: n/a (unknown peak for {device}; pass --peak-tflops)")
    else:
        print(f"MFU: {100 * mfu:.1f}% (6·N·tokens/s over {peak / 1e12:.0f} TFLOP/s bf16)")

    if args.json:
        report = {
            "device": device, "model": model, "n_params": with_reg["n_params"], "n_trainable": with_reg["n_trainable"],
            "tokens_per_s": with_reg["tokens_per_s"], "tokens_per_s_no_reg": without["tokens_per_s"],
            "reg_ms_gram": reg_times["gram"] * 1e3, "reg_ms_explicit": reg_times["explicit"] * 1e3, "mfu": mfu,
            "pair_shape": [out_f, in_f, rank], "pair_ms_gram": pair_times["gram"] * 1e3,
            "pair_ms_explicit": pair_times["explicit"] * 1e3,
            "steps": with_reg["steps"], "batch_size": args.batch_size, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        }
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
