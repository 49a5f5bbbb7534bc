"""What a teacher's tokens cost: `teacher.prices` when the config sets them, else this table by model.

A local model (llama.cpp) and the offline teacher are free. A hosted model not in the table has no
known price: its cost is "unknown" (the dry run says so and how to set `teacher.prices`), and the rows
record 0.0 USD for it, with one warning when the run starts, rather than another model's price.

USD per million tokens, standard tier, from OpenAI's pricing page (2025). A dated snapshot name
(`gpt-4o-2024-08-06`) and a provider prefix (`openai/gpt-4o`) read as the base model.

Cached input (issue 31): prompt tokens the provider served from its prompt cache
(`usage.prompt_tokens_details.cached_tokens`) cost a share of the input price: 50 % for the gpt-4o
family, 25 % for gpt-4.1, 10 % for gpt-5 (and 25 % for o3 / o4-mini), per /work/shared/PROVIDERS.md.
A `teacher.prices` without `cached_prompt_per_1m` bills cached tokens at the full prompt price.
"""
from __future__ import annotations

import re
from typing import Optional

from generation.config import PriceTable, TeacherConfig

MODEL_PRICES: dict[str, tuple[float, float]] = {  # model: (prompt, completion) USD per 1M tokens
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
}
# The share of the prompt price a cached prompt token costs, by model family (longest prefix wins).
CACHED_SHARE: dict[str, float] = {"gpt-4o": 0.50, "gpt-4.1": 0.25, "gpt-5": 0.10, "o4-mini": 0.25, "o3": 0.25}
FREE = PriceTable(prompt_per_1m=0.0, completion_per_1m=0.0, cached_prompt_per_1m=0.0)
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def cached_share(model: str) -> float:
    """What a cached prompt token costs as a share of an uncached one (1.0 when no discount is known)."""
    family = max((name for name in CACHED_SHARE if model == name or model.startswith(name + "-")), key=len,
                 default=None)
    return CACHED_SHARE[family] if family else 1.0


def price_of(model: str) -> Optional[PriceTable]:
    """The table's price of `model`, or None when it is not in the table."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    for candidate in (name, _DATED.sub("", name)):
        if candidate in MODEL_PRICES:
            prompt, completion = MODEL_PRICES[candidate]
            return PriceTable(prompt_per_1m=prompt, completion_per_1m=completion,
                              cached_prompt_per_1m=round(prompt * cached_share(candidate), 6))
    return None


def cached_price(prices: PriceTable) -> float:
    """USD per 1M cached prompt tokens of `prices` (the prompt price when the table has none)."""
    return prices.prompt_per_1m if prices.cached_prompt_per_1m is None else prices.cached_prompt_per_1m


def cost_usd(prices: PriceTable, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> float:
    """USD of one call: uncached prompt tokens, cached ones (part of `prompt_tokens`), completion tokens."""
    cached = min(max(cached_tokens, 0), prompt_tokens)
    return ((prompt_tokens - cached) * prices.prompt_per_1m + cached * cached_price(prices)
            + completion_tokens * prices.completion_per_1m) / 1e6


def scaled(prices: PriceTable, factor: float) -> PriceTable:
    """Every price of `prices` times `factor` (the Batch API bills 0.5)."""
    return PriceTable(prompt_per_1m=prices.prompt_per_1m * factor, completion_per_1m=prices.completion_per_1m * factor,
                      cached_prompt_per_1m=None if prices.cached_prompt_per_1m is None
                      else prices.cached_prompt_per_1m * factor)


def teacher_prices(cfg: TeacherConfig) -> Optional[PriceTable]:
    """What `cfg`'s tokens cost: `teacher.prices` if set, free for a local or offline teacher, else the
    table's price of `teacher.model`; None when unknown."""
    if cfg.prices is not None:
        return cfg.prices
    if cfg.kind in ("offline", "llamacpp"):
        return FREE
    return price_of(cfg.model)


def how_to_set_prices(cfg: TeacherConfig) -> str:
    return (f"no price known for model {cfg.model!r}; set teacher.prices: {{prompt_per_1m: USD, "
            f"cached_prompt_per_1m: USD, completion_per_1m: USD}} in the config (known: {', '.join(MODEL_PRICES)})")


# The share of prompt tokens a provider's prompt cache serves for this engine's conversations, as
# benchmarks/teacher_cost.py measures it on the demo (README "What a run costs"); the dry run's estimate.
EST_CACHED_SHARE = 0.72  # measured: 7,117 of 9,884 prompt tokens per demo sample


def usage_costs(prices: Optional[PriceTable], prompt_tokens: int, cached_tokens: int,
                completion_tokens: int) -> dict[str, float]:
    """USD of each part of a run's tokens at `prices` (run.log): uncached prompt, cached prompt, completion."""
    prices = prices or FREE
    cached = min(max(cached_tokens, 0), prompt_tokens)
    return {"prompt_usd": round((prompt_tokens - cached) * prices.prompt_per_1m / 1e6, 6),
            "cached_usd": round(cached * cached_price(prices) / 1e6, 6),
            "completion_usd": round(completion_tokens * prices.completion_per_1m / 1e6, 6)}


def cached_estimate(prices: PriceTable, calls: int, prompt_per_call: int, completion_per_call: int) -> str:
    """The dry run's estimate with the prompt cache: prompt, cached and completion tokens and their cost."""
    prompt = calls * prompt_per_call
    cached = int(prompt * EST_CACHED_SHARE)
    parts = usage_costs(prices, prompt, cached, calls * completion_per_call)
    total = sum(parts.values())
    return (f"with the provider's prompt cache (~{EST_CACHED_SHARE:.0%} of prompt tokens cached at "
            f"${cached_price(prices):g} per 1M): about ${total:,.2f} = {prompt - cached:,} prompt tokens "
            f"${parts['prompt_usd']:,.2f} + {cached:,} cached ${parts['cached_usd']:,.2f} + "
            f"{calls * completion_per_call:,} completion ${parts['completion_usd']:,.2f}")
