"""The operator interface shared by the five tools (DESIGN §3).

An operator is a named tool (`ocr`, `face_detection`, ...) with one or more backends. The backend
does the work; the operator wrapper adds the cache, the timing, the image checks and a lock, so every
backend is small and only knows its library.

Life of a call: `Operator.run(images, **args)` → the backend normalises the args (unknown keys are
dropped, so a teacher's stray argument never quarantines a sample) → cache lookup by
(operator, backend, version, image hashes, args, backend settings) → on a miss: decode the images
(bad pixels raise `ImageDecodeError`, an `OperatorError`), load the model once, run under the
backend's lock, store the result.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, Optional, Sequence, Union

from pydantic import BaseModel, Field

from generation.sanitize import quote_data  # the one sanitiser, shared with the integration stage
from operators.errors import BackendUnavailable, OperatorError
from operators.images import ImageDecodeError, LoadedImage

log = logging.getLogger("mmat.operators")

OPERATOR_NAMES = ("image_caption", "ocr", "label_bbox", "face_detection", "rag")

__all__ = [
    "OPERATOR_NAMES",
    "Backend",
    "BackendUnavailable",
    "ImageDecodeError",
    "Operator",
    "OperatorError",
    "OperatorResult",
    "per_image_text",
    "quote_data",
]


class OperatorResult(BaseModel):
    operator: str
    text: str
    data: dict[str, Any] = Field(default_factory=dict)
    backend: str
    version: str
    elapsed_s: float = 0.0
    cached: bool = False


class Backend(ABC):
    """One way to run an operator. Declares what it needs so a missing piece fails at construction.

    Subclasses set `operator`, `name`, `version` (bump it when the output for the same input changes:
    it is part of the cache key), `requires_modules` and `install_hint`; they may override `load`
    (heavy model loading, called once, lazily, under the lock), `normalize_args` and `settings`.
    """

    operator: str
    name: str
    version: str = "1"
    needs_images: bool = True
    # Python modules that must be importable, and the pip command that installs them.
    requires_modules: tuple[str, ...] = ()
    install_hint: str = ""
    # One short phrase for the log line ("offline default", "PP-OCR ONNX models bundled in the wheel").
    description: str = ""
    # How many calls may run at once. 1 for local models (one at a time per process, as the lock
    # enforces); I/O-bound backends that wait on an endpoint (a VLM caption) set more.
    max_parallel_calls: int = 1

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._loaded = False

    # -- availability and loading -------------------------------------------------------------
    def check_available(self) -> None:
        """Raise BackendUnavailable with the fix when this backend cannot run here. Cheap: no model
        loading; subclasses add their own checks (files, network) after calling this."""
        missing = [m for m in self.requires_modules if importlib.util.find_spec(m) is None]
        if missing:
            raise BackendUnavailable(
                f"{self.operator}/{self.name} needs {', '.join(missing)}: "
                f"{self.install_hint or 'pip install ' + ' '.join(missing)}"
            )

    def load(self) -> None:
        """Load models or open clients. Called once per backend instance, under `lock`."""

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self.lock:
            if self._loaded:
                return
            try:
                self.load()
            except OperatorError:
                raise
            except Exception as exc:  # a library failing to load is an availability problem
                raise BackendUnavailable(
                    f"{self.operator}/{self.name} failed to load: {type(exc).__name__}: {_one_line(exc)}"
                ) from None
            self._loaded = True

    # -- arguments and cache key -----------------------------------------------------------------
    def normalize_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """The arguments this backend understands, in canonical form. Unknown keys are dropped (and
        logged at debug level); wrong types raise OperatorError."""
        if args:
            log.debug("%s/%s ignores arguments %s", self.operator, self.name, sorted(args))
        return {}

    def settings(self) -> dict[str, Any]:
        """Backend settings that change the output (thresholds, model name); part of the cache key."""
        return {}

    def cache_key_args(self, args: dict[str, Any]) -> dict[str, Any]:
        settings = self.settings()
        return {"args": args, "settings": settings} if settings else args

    # -- running -------------------------------------------------------------------------------
    @abstractmethod
    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        """Run on one sample's images with normalised args. Called with the model loaded, under
        the lock, with every image already decoded (`im.rgb` is ready)."""

    def run_batch(self, batch: Sequence[tuple[Sequence[LoadedImage], dict[str, Any]]]) -> list[OperatorResult]:
        """Run on many samples; backends with real batching override this."""
        return [self.run(images, **args) for images, args in batch]

    def result(self, text: str, data: dict[str, Any]) -> OperatorResult:
        return OperatorResult(operator=self.operator, text=text, data=data, backend=self.name, version=self.version)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.operator}/{self.name} v{self.version}>"


ImagesArg = Sequence[Union[LoadedImage, bytes]]


def _as_loaded(images: ImagesArg) -> list[LoadedImage]:
    out = []
    for im in images:
        if isinstance(im, LoadedImage):
            out.append(im)
        elif isinstance(im, (bytes, bytearray, memoryview)):
            out.append(LoadedImage(bytes(im)))
        else:
            raise OperatorError(f"expected image bytes or LoadedImage, got {type(im).__name__}")
    return out


class Operator:
    """A backend plus the content-hash cache, timing and locking; what the rationale stage calls.

    Thread-safe: the rationale loop calls operators from `asyncio.to_thread`, several samples at
    once. Cache reads run in parallel; backend execution is serialised per backend (the models are
    not all thread-safe and the machine has few cores anyway).

    `fallbacks` are tried in order when the backend passes `check_available` but then fails to load
    (`auto` mode only); the switch is logged once.
    """

    def __init__(
        self,
        backend: Backend,
        cache: Optional["OperatorCache"] = None,
        fallbacks: Sequence[Backend] = (),
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.fallbacks = list(fallbacks)
        self.executions = 0  # backend calls actually made (cache misses); tests count these
        self._count_lock = threading.Lock()
        self._switch_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.backend.operator

    def _key(self, backend: Backend, images: Sequence[LoadedImage], args: dict[str, Any]) -> Optional[str]:
        if self.cache is None:
            return None
        return self.cache.key(backend, images, backend.cache_key_args(args))

    def _loaded_backend(self) -> Backend:
        while True:
            try:
                self.backend.ensure_loaded()
                return self.backend
            except BackendUnavailable as exc:
                if not self.fallbacks:
                    raise
                nxt = self.fallbacks.pop(0)
                log.warning("%s: %s failed to load (%s); using %s", self.name, self.backend.name, exc, nxt.name)
                self.backend = nxt

    def _prepare(self, images: ImagesArg) -> list[LoadedImage]:
        loaded = _as_loaded(images)
        if self.backend.needs_images and not loaded:
            raise OperatorError(f"{self.name} needs at least one image")
        if not self.backend.needs_images and loaded:
            loaded = []  # text-to-text operators (rag) ignore images
        return loaded

    @staticmethod
    def _decode(images: Sequence[LoadedImage]) -> None:
        for index, im in enumerate(images, 1):
            try:
                im.rgb
            except ImageDecodeError as exc:
                where = f"image {index}: " if len(images) > 1 else ""
                raise ImageDecodeError(f"{where}{exc}") from None

    def run(self, images: ImagesArg, **args: Any) -> OperatorResult:
        loaded = self._prepare(images)
        backend = self.backend
        norm = backend.normalize_args(dict(args))
        key = self._key(backend, loaded, norm)
        if key is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit.model_copy(update={"cached": True})
        self._decode(loaded)
        start = time.perf_counter()
        with backend.lock:
            switched = self._loaded_backend() is not backend
            if not switched:
                try:
                    result = backend.run(loaded, **norm)
                except BackendUnavailable as exc:  # found out on a call (the teacher turned out text-only)
                    with self._switch_lock:  # calls in flight on the same backend switch once
                        if self.backend is backend:
                            if not self.fallbacks:
                                raise
                            self.backend = self.fallbacks.pop(0)
                            log.warning("%s: %s is unavailable (%s); using %s", self.name, backend.name, exc,
                                        self.backend.name)
                    switched = True
                except OperatorError:
                    raise
                except Exception as exc:  # a library error on one input quarantines that sample only
                    raise OperatorError(
                        f"{self.name}/{backend.name} failed: {type(exc).__name__}: {_one_line(exc)}"
                    ) from None
        if switched:  # fell back to another backend: different args and cache key
            return self.run(images, **args)
        with self._count_lock:
            self.executions += 1
        result = result.model_copy(update={"elapsed_s": time.perf_counter() - start})
        if key is not None:
            self.cache.put(key, result)
        return result

    def run_batch(
        self, batch: Sequence[tuple[ImagesArg, dict[str, Any]]]
    ) -> list[Union[OperatorResult, OperatorError]]:
        """Run many samples; cached ones are not recomputed. Per item: a result, or the OperatorError
        that quarantines that one sample (a bad image never fails the whole batch)."""
        out: list[Union[OperatorResult, OperatorError, None]] = [None] * len(batch)
        todo: list[tuple[int, list[LoadedImage], dict[str, Any], Optional[str]]] = []
        backend = self.backend
        for i, (images, args) in enumerate(batch):
            try:
                loaded = self._prepare(images)
                norm = backend.normalize_args(dict(args))
                key = self._key(backend, loaded, norm)
                hit = self.cache.get(key) if key is not None else None
                if hit is not None:
                    out[i] = hit.model_copy(update={"cached": True})
                    continue
                self._decode(loaded)
                todo.append((i, loaded, norm, key))
            except OperatorError as exc:
                out[i] = exc
        if todo:
            start = time.perf_counter()
            with backend.lock:
                switched = self._loaded_backend() is not backend
                results = None
                if not switched:
                    try:
                        results = backend.run_batch([(loaded, norm) for _, loaded, norm, _ in todo])
                    except Exception:
                        results = None  # one item broke the batch: run items alone to find it
            if switched:
                return [self._safe_run(images, args) for images, args in batch]
            if results is None:
                for i, loaded, norm, _ in todo:
                    out[i] = self._safe_run(loaded, norm)
            else:
                each = (time.perf_counter() - start) / len(todo)
                with self._count_lock:
                    self.executions += len(todo)
                for (i, _, _, key), result in zip(todo, results):
                    result = result.model_copy(update={"elapsed_s": each})
                    if key is not None:
                        self.cache.put(key, result)
                    out[i] = result
        return out  # type: ignore[return-value]

    def _safe_run(self, images: ImagesArg, args: dict[str, Any]) -> Union[OperatorResult, OperatorError]:
        try:
            return self.run(images, **args)
        except OperatorError as exc:
            return exc


# -- text helpers shared by the backends --------------------------------------------------------

def per_image_text(parts: Sequence[str]) -> str:
    """One text per image; prefixed "Image 1: …" only when there is more than one image."""
    if len(parts) == 1:
        return parts[0]
    return "\n".join(f"Image {i}: {part}" for i, part in enumerate(parts, 1))


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


from operators.cache import OperatorCache  # noqa: E402  (cycle: the cache stores OperatorResult)
