"""The operator interface shared by the five tools (DESIGN §3), and how the engine calls it.

An operator is a named tool (`ocr`, `face_detection`, ...) with one or more backends. The backend
does the work; the operator wrapper (`Operator`) adds the cache, the timing, the image checks and
the fallback to the next backend, so every backend is small and only knows its library. Two kinds:

- `Backend`: a local model or library, run synchronously under its lock. The engine awaits it on the
  operator's own thread (one per operator name and process, `max_parallel_calls` wide): queueing
  there, rather than in a shared pool, keeps calls waiting for a busy operator (say OCR) from taking
  every thread while the others sit idle.
- `EndpointBackend`: waits on an endpoint (the VLM caption, through the teacher's client). Its
  `arun` is awaited on the engine's own event loop, as many calls at once as the endpoint's client
  allows: no thread, no lock.

Life of a call: `await Operator.call(images, **args)` (the engine) or `Operator.run(...)` (plain code)
→ the backend normalises the args (unknown keys are dropped, so a teacher's stray argument never
quarantines a sample) → cache lookup by (operator, backend, version, image hashes, args, backend
settings) → on a miss: decode the images (bad pixels raise `ImageDecodeError`, an `OperatorError`),
load the model once, run, store the result.

`OperatorRunner` is what the rationale loop needs from a set of operators: `operators.registry.OperatorSet`
in one process, `generation.sample_worker.PooledOperators` on Ray.
"""
from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import importlib.util
import logging
import threading
import time
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Protocol, Sequence, Union

from generation.errors import one_line
from generation.sanitize import quote_data  # the one sanitiser, shared with the integration stage
from operators import OPERATOR_NAMES
from operators.cache import OperatorCache
from operators.errors import BackendUnavailable, OperatorError
from operators.images import ImageDecodeError, LoadedImage
from operators.result import OperatorResult

log = logging.getLogger("mmat.operators")

__all__ = [
    "OPERATOR_NAMES",
    "Backend",
    "BackendUnavailable",
    "EndpointBackend",
    "ImageDecodeError",
    "Operator",
    "OperatorError",
    "OperatorResult",
    "OperatorRunner",
    "package_version",
    "per_image_text",
    "quote_data",
]


class OperatorRunner(Protocol):
    """What the engine needs from the operators of a run."""

    available: list[str]  # names that can run here, in `OPERATOR_NAMES` order (what the teacher is offered)
    unavailable: dict[str, str]  # name -> one-line reason with the fix

    @property
    def executions(self) -> int:
        """Backend calls made so far (cache hits excluded)."""

    async def call(self, name: str, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        """Run operator `name` from the engine's event loop; raises `OperatorError` for this input."""

    def run(self, name: str, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        """The same from plain (non-async) code."""


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
    # How many calls may run at once: the width of the operator's thread. 1 for local models (one at a
    # time per process, as the lock enforces).
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
                    f"{self.operator}/{self.name} failed to load: {type(exc).__name__}: {one_line(exc, 300)}"
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


class EndpointBackend(Backend):
    """A backend that waits on an endpoint: subclasses implement `arun`, which the operator awaits on
    the caller's event loop (many calls at once, no thread, no lock); `run` is not theirs to have."""

    @abstractmethod
    async def arun(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        """Run on one sample's images with normalised args, every image already decoded."""

    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        raise TypeError(f"{self!r} is awaited (Operator.call), not run")


def package_version(dist: str) -> str:
    """The installed version of a distribution, "0" when it is not installed (part of cache keys)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "0"


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


# One thread pool per (operator name, width) and process, shared by every `OperatorSet` in it.
_THREADS: dict[tuple[str, int], ThreadPoolExecutor] = {}
_THREADS_LOCK = threading.Lock()


def _threads(name: str, width: int) -> ThreadPoolExecutor:
    with _THREADS_LOCK:
        pool = _THREADS.get((name, width))
        if pool is None:
            pool = _THREADS[(name, width)] = ThreadPoolExecutor(max_workers=width, thread_name_prefix=f"op-{name}")
        return pool


class Operator:
    """A backend plus the content-hash cache, timing and locking; what the rationale stage calls.

    Thread-safe: several samples call it at once, from the event loop (`call`) or from threads (`run`).
    Cache reads run in parallel; a local backend's execution is serialised by its lock (the models
    are not all thread-safe and the machine has few cores anyway).

    `fallbacks` are tried in order when the backend passes `check_available` but then fails to load,
    or finds out on a call that it cannot run (`auto` mode only); the switch is logged once. `loop`
    is the event loop an endpoint backend's client belongs to (where `run` sends its calls).
    """

    def __init__(
        self,
        backend: Backend,
        cache: Optional[OperatorCache] = None,
        fallbacks: Sequence[Backend] = (),
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.fallbacks = list(fallbacks)
        self.loop = loop
        self.executions = 0  # backend calls actually made (cache misses); tests count these
        self._count_lock = threading.Lock()
        self._switch_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.backend.operator

    # -- the steps of a call ------------------------------------------------------------------
    def _key(self, backend: Backend, images: Sequence[LoadedImage], args: dict[str, Any]) -> Optional[str]:
        if self.cache is None:
            return None
        return self.cache.key(backend.operator, backend.name, backend.version, images, backend.cache_key_args(args))

    def _lookup(self, backend: Backend, images: ImagesArg, args: dict[str, Any]
                ) -> tuple[list[LoadedImage], dict[str, Any], Optional[str], Optional[OperatorResult]]:
        """(images, normalised args, cache key, cached result or None)."""
        loaded = self._prepare(images)
        norm = backend.normalize_args(dict(args))
        key = self._key(backend, loaded, norm)
        hit = self.cache.get(key) if key is not None else None  # type: ignore[union-attr]
        return loaded, norm, key, (hit.model_copy(update={"cached": True}) if hit is not None else None)

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

    def _fall_back(self, backend: Backend, exc: BackendUnavailable) -> None:
        """`backend` found out on a call that it cannot run (the teacher turned out text-only): the next one."""
        with self._switch_lock:  # calls in flight on the same backend switch once
            if self.backend is backend:
                if not self.fallbacks:
                    raise exc
                self.backend = self.fallbacks.pop(0)
                log.warning("%s: %s is unavailable (%s); using %s", self.name, backend.name, exc, self.backend.name)

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

    def _failed(self, backend: Backend, exc: Exception) -> OperatorError:
        """A library error on one input quarantines that sample only."""
        return OperatorError(f"{self.name}/{backend.name} failed: {type(exc).__name__}: {one_line(exc, 300)}")

    def _store(self, result: OperatorResult, key: Optional[str], elapsed_s: float, calls: int = 1) -> OperatorResult:
        with self._count_lock:
            self.executions += calls
        result = result.model_copy(update={"elapsed_s": elapsed_s})
        if key is not None:
            self.cache.put(key, result)  # type: ignore[union-attr]
        return result

    # -- calls ------------------------------------------------------------------------------------
    async def call(self, images: ImagesArg, **args: Any) -> OperatorResult:
        """The engine's way in: an endpoint backend is awaited right here, a local one on the
        operator's thread (see the module docstring)."""
        backend = self.backend
        if not isinstance(backend, EndpointBackend):
            pool = _threads(self.name, max(1, backend.max_parallel_calls))
            return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(self.run, images, **args))
        loaded, norm, key, hit = self._lookup(backend, images, args)
        if hit is not None:
            return hit
        self._decode(loaded)
        start = time.perf_counter()
        if self._loaded_backend() is not backend:
            return await self.call(images, **args)
        try:
            result = await backend.arun(loaded, **norm)
        except BackendUnavailable as exc:
            self._fall_back(backend, exc)
            return await self.call(images, **args)  # another backend: other args and cache key
        except OperatorError:
            raise
        except Exception as exc:
            raise self._failed(backend, exc) from None
        return self._store(result, key, time.perf_counter() - start)

    def run(self, images: ImagesArg, **args: Any) -> OperatorResult:
        """The same as `call`, from plain (non-async) code."""
        backend = self.backend
        if isinstance(backend, EndpointBackend):
            return self._run_awaited(images, args)
        loaded, norm, key, hit = self._lookup(backend, images, args)
        if hit is not None:
            return hit
        self._decode(loaded)
        start = time.perf_counter()
        with backend.lock:
            switched = self._loaded_backend() is not backend
            if not switched:
                try:
                    result = backend.run(loaded, **norm)
                except BackendUnavailable as exc:
                    self._fall_back(backend, exc)
                    switched = True
                except OperatorError:
                    raise
                except Exception as exc:
                    raise self._failed(backend, exc) from None
        if switched:  # fell back to another backend: different args and cache key
            return self.run(images, **args)
        return self._store(result, key, time.perf_counter() - start)

    def _run_awaited(self, images: ImagesArg, args: dict[str, Any]) -> OperatorResult:
        """An endpoint backend called from plain code: on the loop its client belongs to when that
        loop runs in another thread, else on a loop of its own."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self.loop is not None and self.loop.is_running():
                return asyncio.run_coroutine_threadsafe(self.call(images, **args), self.loop).result()
            return asyncio.run(self.call(images, **args))
        raise OperatorError(f"{self.name}/{self.backend.name} waits on an endpoint: await Operator.call from the "
                            f"event loop instead of calling run on it")

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
                loaded, norm, key, hit = self._lookup(backend, images, args)
                if hit is not None:
                    out[i] = hit
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
                    out[i] = self._store(result, key, each, calls=0)
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
