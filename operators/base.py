"""The operator interface shared by the five tools (DESIGN §3).

An operator is a named tool (`ocr`, `face_detection`, ...) with one or more backends. The backend
does the work; the operator wrapper adds the cache, the timing and the image checks, so every
backend is small and only knows its library.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Optional, Sequence

from pydantic import BaseModel, Field

from operators.images import LoadedImage

log = logging.getLogger("mmat.operators")

OPERATOR_NAMES = ("image_caption", "ocr", "label_bbox", "face_detection", "rag")


class OperatorError(Exception):
    """One clear reason why an operator cannot handle this input; quarantines the sample."""


class BackendUnavailable(OperatorError):
    """The backend cannot run on this machine (missing package, weights, key or network).

    The message always says how to fix it."""


class OperatorResult(BaseModel):
    operator: str
    text: str
    data: dict[str, Any] = Field(default_factory=dict)
    backend: str
    version: str
    elapsed_s: float = 0.0
    cached: bool = False


class Backend(ABC):
    """One way to run an operator. Declares what it needs so a missing piece fails at construction."""

    operator: ClassVar[str]
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    # Python modules that must be importable, and the pip command that installs them.
    requires_modules: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""

    def check_available(self) -> None:
        """Raise BackendUnavailable with the fix when this backend cannot run here."""
        missing = [m for m in self.requires_modules if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendUnavailable(
                f"{self.operator}/{self.name} needs {', '.join(missing)}: {self.install_hint or 'pip install ' + ' '.join(missing)}"
            )

    @abstractmethod
    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        """Run on one sample's images. `args` are operator-specific (e.g. `labels` for label_bbox)."""

    def run_batch(self, batch: Sequence[tuple[Sequence[LoadedImage], dict[str, Any]]]) -> list[OperatorResult]:
        """Run on many samples; backends with real batching override this."""
        return [self.run(images, **args) for images, args in batch]

    def cache_key_args(self, args: dict[str, Any]) -> dict[str, Any]:
        return args


class Operator:
    """A backend plus the content-hash cache and timing; what the rationale stage calls."""

    def __init__(self, backend: Backend, cache: Optional["OperatorCache"] = None) -> None:
        self.backend = backend
        self.cache = cache
        self.executions = 0  # backend calls actually made (cache misses); tests count these

    @property
    def name(self) -> str:
        return self.backend.operator

    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        key = None
        if self.cache is not None:
            key = self.cache.key(self.backend, images, self.backend.cache_key_args(args))
            hit = self.cache.get(key)
            if hit is not None:
                return hit.model_copy(update={"cached": True})
        start = time.perf_counter()
        result = self.backend.run(images, **args)
        self.executions += 1
        result = result.model_copy(update={"elapsed_s": time.perf_counter() - start})
        if self.cache is not None and key is not None:
            self.cache.put(key, result)
        return result


from operators.cache import OperatorCache  # noqa: E402  (cycle: the cache stores OperatorResult)
