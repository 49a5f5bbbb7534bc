"""The base of every config model: an unknown key is an error, never silently ignored.

A typo in a million-sample run's YAML (`max_concurency`) must fail before it starts, naming the key
and the closest key the model accepts there (`allowed_keys` + `generation.errors.did_you_mean`); a
YAML syntax error names its line and column (`yaml_error_message`). The pipeline config, the
operators' config, each source's config and the training config all derive from `StrictModel`, so
none of them can drift into accepting what it does not read.
"""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _models_in(annotation: Any) -> list[Any]:
    """The candidate types an annotation holds at one level: a model, or what Optional/Union wrap."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _step(annotation: Any, part: Union[str, int]) -> Optional[Any]:
    for candidate in _models_in(annotation):
        origin, args = typing.get_origin(candidate), typing.get_args(candidate)
        if isinstance(part, int) and origin in (list, tuple, set) and args:
            return args[0]
        if origin is dict and len(args) == 2:
            return args[1]
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and part in candidate.model_fields:
            return candidate.model_fields[part].annotation
    return None


def allowed_keys(model: type[BaseModel], loc: Sequence[Union[str, int]]) -> list[str]:
    """The keys `model` accepts at `loc` (a pydantic error's location, without the bad key itself):
    `allowed_keys(PipelineConfig, ("teacher",))` → TeacherConfig's fields. [] when `loc` leads nowhere."""
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    for candidate in _models_in(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return list(candidate.model_fields)
    return []


def yaml_error_message(path: Union[str, Path], exc: Exception) -> str:
    """`PATH: not valid YAML at line L, column C: PROBLEM` (1-based, as editors count)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{path}: not valid YAML{where}: {problem}"
