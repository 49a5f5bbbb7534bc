"""What an operator call returns (DESIGN §3); the cache stores it as it is, one JSON file per result."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class OperatorResult(BaseModel):
    operator: str
    text: str  # what the teacher and the dialogue see
    data: dict[str, Any] = Field(default_factory=dict)  # structured: boxes, strings, scores
    backend: str
    version: str
    elapsed_s: float = 0.0
    cached: bool = False
