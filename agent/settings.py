"""What an `Agent` is asked to do: the format it was tuned on and its step budget.

Its own module so that the format runners (`agent.rr`, `agent.orr`, `agent.plain`) can name it without
importing `agent.core`, which imports them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from agent.errors import AgentError

FORMATS = ("rr", "orr", "plain")


@dataclass
class AgentSettings:
    format: str = "rr"
    max_steps: int = 8  # RR: assistant steps before the summary question is asked anyway
    orr_operators: Optional[list[str]] = None  # ORR: which operators to run first (None: every non-RAG one here)

    def __post_init__(self) -> None:
        check_format(self.format)
        if self.max_steps < 1:
            raise AgentError(f"max_steps must be 1 or more, not {self.max_steps}")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise AgentError(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    return fmt
