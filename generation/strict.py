"""The base of every config model: an unknown key is an error, never silently ignored.

A typo in a million-sample run's YAML (`max_concurency`) must fail before it starts, naming the key;
the pipeline config, the operators' config, each source's config and the training config all derive
from `StrictModel`, so none of them can drift into accepting what it does not read.
"""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
