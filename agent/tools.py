"""The operators and RAG, run for a tuned model the way generation ran them for the teacher.

Same backends and same cache: `build_tools` calls `operators.registry.build_operators` with the
pipeline's `operators:` section and an operator-cache folder (pass the generation run's
`<work>/operator-cache` and every result the teacher saw is reused). Same arguments: `image_caption`
gets the results seen so far as its `context` (as `generation.rationale` passes them). Same sanitiser:
every result passes `generation.sanitize.as_data`, as `generation.integration` does for rows, so a
result can never carry a tag that would change the dialogue's structure.

The RR format names operators without arguments; `label_bbox` needs object names, so the runtime
takes them from the scene graph of an earlier caption, else the question's "how many X", else
"object" (as the offline teacher does), and says so in the trajectory (`skipped` holds the reason
when an operator could not run).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from agent.errors import QuestionFailed
from agent.trajectory import Observation
from generation.sanitize import as_data
from operators.base import OPERATOR_NAMES, OperatorError
from operators.errors import BackendUnavailable
from operators.images import ImageDecodeError, LoadedImage

log = logging.getLogger("mmat.agent")

IMAGE_OPERATORS = tuple(name for name in OPERATOR_NAMES if name != "rag")


def operators_settings(operators_config: Any = None) -> Any:
    """`operators_config` as an `operators.config.OperatorsConfig`: one already, a pipeline YAML path (its
    `operators:` section, paths resolved as generation resolves them), or None for the defaults (every
    backend `auto`). A YAML that is missing or invalid raises `ConfigError` (one line)."""
    from operators.config import OperatorsConfig

    if operators_config is None:
        return OperatorsConfig()
    if isinstance(operators_config, (str, Path)):
        from generation.config import load_config

        return load_config(operators_config).operators
    return operators_config


def build_tools(operators_config: Any = None, cache_dir: Optional[Path] = None) -> "AgentTools":
    """The operators `operators_config` names (see `operators_settings`). `cache_dir`: the operator-cache
    folder; None caches nothing."""
    from operators.registry import build_operators

    operators_config = operators_settings(operators_config)
    if cache_dir is None and operators_config.cache_dir:
        cache_dir = Path(operators_config.cache_dir)
    return AgentTools(build_operators(operators_config, Path(cache_dir) if cache_dir else None))


def bbox_labels(question: str, scene_graph: Optional[dict[str, Any]]) -> list[str]:
    """Object names for `label_bbox` (see the module docstring)."""
    from generation.teachers.offline import _count_target, bare_question

    objects = [o for o in (scene_graph or {}).get("objects") or [] if isinstance(o, str) and o.strip()]
    return objects[:8] or _count_target(bare_question(question)) or ["object"]


class AgentTools:
    """An `OperatorSet` seen from the agent. Thread-safe like the set; one `ToolSession` per question."""

    def __init__(self, operators: Any) -> None:
        self.operators = operators

    @property
    def available(self) -> list[str]:
        return list(self.operators.available)

    @property
    def image_operators(self) -> list[str]:
        """The non-RAG operators that can run here, in the canonical order."""
        return [name for name in IMAGE_OPERATORS if name in self.operators.available]

    def session(self, images: Sequence[LoadedImage], question: str) -> "ToolSession":
        return ToolSession(self, list(images), question)


@dataclass
class ToolSession:
    """The operator calls of one question: what was seen so far feeds the caption's context."""

    tools: AgentTools
    images: list[LoadedImage]
    question: str
    seen: list[Observation] = field(default_factory=list)
    scene_graph: Optional[dict[str, Any]] = None

    def _args(self, name: str) -> dict[str, Any]:
        if name == "image_caption":
            return {"context": [o.text for o in self.seen]}
        if name == "label_bbox":
            return {"labels": bbox_labels(self.question, self.scene_graph)}
        return {}

    async def _run(self, name: str, **args: Any) -> Observation:
        images = [] if name == "rag" else self.images
        try:
            result = await self.tools.operators.call(name, images, **args)
        except ImageDecodeError as exc:
            raise QuestionFailed(f"the image cannot be read: {exc}") from None
        if name == "image_caption" and isinstance(result.data.get("scene_graph"), dict):
            self.scene_graph = result.data["scene_graph"]
        observation = Observation(operator=name, text=as_data(result.text), backend=result.backend,
                                  cached=result.cached, elapsed_s=result.elapsed_s)
        self.seen.append(observation)
        return observation

    async def call(self, names: Sequence[str], rag_query: Optional[str] = None
                   ) -> tuple[list[Observation], dict[str, str]]:
        """Run the named operators (each once, in the order named), then RAG with `rag_query`.
        Returns (observations, skipped: name → why it did not run)."""
        observations: list[Observation] = []
        skipped: dict[str, str] = {}
        available = self.tools.available
        for name in dict.fromkeys(names):
            if name == "rag":
                skipped[name] = "rag runs on a <RAG> query, not as an <OPERATOR>"
            elif name not in OPERATOR_NAMES:
                skipped[name] = "unknown operator"
            elif name not in available:
                skipped[name] = "unavailable here: " + self.tools.operators.unavailable.get(name, "not configured")
            else:
                await self._try(name, observations, skipped)
        if rag_query:
            if "rag" in available:
                await self._try("rag", observations, skipped, query=rag_query)
            else:
                skipped["rag"] = "unavailable here: " + self.tools.operators.unavailable.get("rag", "not configured")
        return observations, skipped

    async def _try(self, name: str, observations: list[Observation], skipped: dict[str, str], **args: Any) -> None:
        try:
            observations.append(await self._run(name, **{**self._args(name), **args}))
        except (OperatorError, BackendUnavailable) as exc:  # that operator only; the question goes on
            skipped[name] = f"failed: {exc}"
            log.warning("%s failed: %s", name, exc)
