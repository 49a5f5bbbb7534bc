"""`mmat generate` as a whole: the engine's run (`generation.runner`) with the dataset card written at
its end by `publishing.card`.

The engine sits below what publishes its output and does not import it (issue 33); this module, above
both, hands the card's writer to the run. Use these two functions wherever a run should leave a
loadable dataset folder (the CLI, tests, benchmarks); `generation.runner.run_generation` alone writes the
shards and leaves the card as it is.
"""
from __future__ import annotations

from typing import Any, Optional

from generation.plan import RunOptions
from generation.progress import RunSummary
from generation.config import PipelineConfig


def run_generation(config: PipelineConfig, options: RunOptions, execute: Optional[Any] = None) -> RunSummary:
    """The run on the local engine (or `execute`), shards, audit and card."""
    from generation import runner
    from publishing.card import write_card

    return runner.run_generation(config, options, execute=execute, write_card=write_card)


def run_generation_ray(config: PipelineConfig, options: RunOptions, address: Optional[str] = None) -> RunSummary:
    """The same on Ray (`generation.ray_engine`)."""
    from generation.ray_engine import run_generation_ray as run_on_ray
    from publishing.card import write_card

    return run_on_ray(config, options, address=address, write_card=write_card)
