"""The paper's regulariser: Σ_i ‖ΔW_i‖²_F over the LoRA updates ΔW_i = B_i · A_i · scaling_i.

For a LoRA pair with A ∈ R^{r×n} (lora_A weight) and B ∈ R^{m×r} (lora_B weight),

    ‖s·B A‖²_F = s² · trace((BᵀB)(A Aᵀ)) = s² · Σ_jk (BᵀB)_jk (A Aᵀ)_jk

(both Gram matrices are symmetric), which costs O(r²(m+n)) instead of the O(m·n·r) of forming B·A.
`explicit=True` forms B·A instead; the tests check the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import torch
from torch import nn


@dataclass
class LoraPair:
    """One adapter's A and B of one peft LoRA layer, flattened to matrices (A: r×n, B: m×r)."""

    module_name: str
    adapter: str
    A: torch.Tensor
    B: torch.Tensor
    scaling: float


def _matrices(a: torch.Tensor, b: torch.Tensor, embedding: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if embedding:  # lora_embedding_A: (r, num_embeddings), lora_embedding_B: (dim, r); ΔW = (B A)ᵀ
        return a, b
    r = a.shape[0]
    # Linear: (r, in), (out, r). Conv: (r, in, *k), (out, r, 1, ...): ΔW flattened = B A.
    return a.reshape(r, -1), b.reshape(b.shape[0], r)


def iter_lora_pairs(model: nn.Module, adapter_names: Optional[Iterable[str]] = None) -> Iterator[LoraPair]:
    """Every (A, B, scaling) of every peft LoRA layer in `model`, for the given adapters.

    `adapter_names=None` takes each layer's active adapters. DoRA and other LoRA variants are refused:
    their update is not B·A·scaling.
    """
    from peft.tuners.lora import LoraLayer

    wanted = None if adapter_names is None else set(adapter_names)
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if wanted is None:
            adapters = list(module.active_adapters)
        else:
            known = list(module.lora_A.keys()) + [k for k in module.lora_embedding_A.keys() if k not in module.lora_A]
            adapters = [a for a in known if a in wanted]
        for adapter in adapters:
            variant = getattr(module, "lora_variant", {}).get(adapter)
            if getattr(module, "use_dora", {}).get(adapter, False) or variant is not None:
                kind = type(variant).__name__ if variant is not None else "DoRA"
                raise NotImplementedError(f"{name}: the Frobenius regulariser is defined for plain LoRA, not {kind}")
            scaling = float(module.scaling[adapter]) if adapter in module.scaling else 1.0
            if adapter in module.lora_A:
                A, B = _matrices(module.lora_A[adapter].weight, module.lora_B[adapter].weight, embedding=False)
            elif adapter in getattr(module, "lora_embedding_A", {}):
                A, B = _matrices(module.lora_embedding_A[adapter], module.lora_embedding_B[adapter], embedding=True)
            else:
                continue
            yield LoraPair(name, adapter, A, B, scaling)


def pair_frobenius_sq(pair: LoraPair, explicit: bool = False) -> torch.Tensor:
    """‖B·A·scaling‖²_F of one pair, in float32."""
    A = pair.A.float()
    B = pair.B.float()
    if explicit:
        return ((B @ A) * pair.scaling).pow(2).sum()
    gram_a = A @ A.T  # r×r
    gram_b = B.T @ B  # r×r
    return (gram_a * gram_b).sum() * (pair.scaling**2)


def lora_frobenius_sq(
    model: nn.Module, adapter_names: Optional[Iterable[str]] = None, explicit: bool = False
) -> torch.Tensor:
    """Σ_i ‖B_i A_i scaling_i‖²_F over every LoRA layer (differentiable, float32 scalar).

    Returns a zero tensor on the model's device when the model has no LoRA layer.
    """
    total: Optional[torch.Tensor] = None
    for pair in iter_lora_pairs(model, adapter_names):
        term = pair_frobenius_sq(pair, explicit=explicit)
        total = term if total is None else total + term.to(total.device)
    if total is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return torch.zeros((), dtype=torch.float32, device=device)
    return total
