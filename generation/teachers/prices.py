"""What a teacher's tokens cost: `teacher.prices` when the config sets them, else this table by model.

A local model (llama.cpp) and the offline teacher are free. A hosted model not in the table has no
known price: its cost is "unknown" (the dry run says so and how to set `teacher.prices`), and the rows
record 0.0 USD for it, with one warning when the run starts, rather than another model's price.

USD per million tokens, standard tier, from OpenAI's pricing page (2025). A dated snapshot name
(`gpt-4o-2024-08-06`) and a provider prefix (`openai/gpt-4o`) read as the base model.
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
FREE = PriceTable(prompt_per_1m=0.0, completion_per_1m=0.0)
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price_of(model: str) -> Optional[PriceTable]:
    """The table's price of `model`, or None when it is not in the table."""
    name = model.strip().lower().rsplit("/", 1)[-1]
    for candidate in (name, _DATED.sub("", name)):
        if candidate in MODEL_PRICES:
            prompt, completion = MODEL_PRICES[candidate]
            return PriceTable(prompt_per_1m=prompt, completion_per_1m=completion)
    return None


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
            f"completion_per_1m: USD}} in the config (known: {', '.join(MODEL_PRICES)})")
