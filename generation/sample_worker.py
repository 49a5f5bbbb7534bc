"""The engine-neutral generation worker, shared by the Ray engine and the local multi-process engine.

`SampleWorker` takes batches of samples and runs each through `generation.processor.SampleProcessor` on
an event loop of its own, with its own checkpoint file; `outcome` turns what it reports back into the
(usage, quarantine record) pair every executor's `recording` takes; `per_worker_config` divides the
teacher's concurrency and RPM/TPM budgets between workers. `PooledOperators` is the worker's operator
runner: operators placed in pools of Ray actors are called there, the others run in the worker
(the process engine has no pools). `longest_first` orders a plan's samples for every executor.

Why its own module: the process engine was built from the Ray module's private parts, and the Ray module
imported the runner, which imports the process engine: a cycle. Now the engines import this module and
it imports neither of them.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence

from generation.checkpoint import Checkpoint, QuarantineRecord
from generation.config import PipelineConfig
from generation.processor import SampleProcessor, build_engine_parts, is_fatal, run_stopped
from generation.schema import Sample, TeacherUsage
from generation.teachers.base import TeacherFatalError
from operators import OPERATOR_NAMES
from operators.base import OperatorResult
from operators.config import OperatorsConfig
from operators.images import LoadedImage


def expected_calls(sample: Sample) -> int:
    """How long a sample will take, in sequential teacher calls up to a constant: one round per question,
    and the math reflection of a math question is one more."""
    return sum(2 + bool(qa.meta.get("math") or sample.meta.get("math")) for qa in sample.qas)


def longest_first(samples: Iterable[Sample], window: int, cost: Callable[[Sample], int] = expected_calls
                  ) -> Iterator[Sample]:
    """Every sample once, the costliest of the next `window` first. Why: the run ends when its slowest
    sample does; started last, a long sample keeps the run going seconds after every slot but one has
    emptied (at 64 in flight that tail was 5 % of a 2,000-sample run). Held back this way, the short
    ones are what remains when the plan runs out. Memory: `window` samples (no image bytes)."""
    heap: list[tuple[int, int, Sample]] = []
    for order, sample in enumerate(samples):
        heapq.heappush(heap, (-cost(sample), order, sample))
        if len(heap) > window:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


def only_operators(cfg: OperatorsConfig, names: Sequence[str]) -> OperatorsConfig:
    """The same operator settings with every operator not in `names` switched off."""
    off = {n: getattr(cfg, n).model_copy(update={"backend": "off"}) for n in OPERATOR_NAMES if n not in names}
    return cfg.model_copy(update=off)



def _returned(out: OperatorResult | Exception) -> OperatorResult:
    if isinstance(out, BaseException):
        raise out
    return out


class PoolBackend(NamedTuple):
    """What a generation actor knows of a pool's backend, as `Operator.backend` tells of a local one."""

    name: str
    max_parallel_calls: int  # calls the pool's actors serve at once: the bound on calls in flight to it


class RemotePool:
    """One operator's pool of actors, seen from a generation actor: calls go round robin, at most
    `backend.max_parallel_calls` in flight (the others wait here, not in the actors' queues)."""

    def __init__(self, handles: Sequence[Any], backend: str, width: int) -> None:
        self.handles = list(handles)
        self.backend = PoolBackend(backend, width)
        self._turn = itertools.cycle(range(len(self.handles)))
        self._lock = threading.Lock()
        self._slots: Optional[asyncio.Semaphore] = None

    def _next(self) -> Any:
        with self._lock:
            return self.handles[next(self._turn)]

    async def call(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.backend.max_parallel_calls)
        async with self._slots:
            return _returned(await self._next().run.remote([im.data for im in images], args))

    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        import ray

        return _returned(ray.get(self._next().run.remote([im.data for im in images], args)))


class PooledOperators:
    """The `OperatorRunner` of a generation actor: pooled operators go to their actors, the others run
    in this process (`local`, an `OperatorSet`)."""

    def __init__(self, local: Any, pools: dict[str, list[Any]], pool_info: dict[str, dict[str, Any]],
                 unavailable: dict[str, str]) -> None:
        self.local = local
        self.pools = {n: RemotePool(handles, pool_info[n]["backend"], pool_info[n]["width"])
                      for n, handles in pools.items()}
        self.available = [n for n in OPERATOR_NAMES if n in pools or n in local.available]
        self.unavailable = {n: why for n, why in unavailable.items() if n not in self.available}

    def get(self, name: str) -> Any:
        return self.pools[name] if name in self.pools else self.local.get(name)

    async def call(self, name: str, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        if name in self.pools:
            return await self.pools[name].call(images, **args)
        return await self.local.call(name, images, **args)

    def run(self, name: str, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        if name in self.pools:
            return self.pools[name].run(images, **args)
        return self.local.run(name, images, **args)

    @property
    def executions(self) -> int:
        return self.local.executions


@dataclass
class OperatorLayout:
    """Which operator runs where, decided once on the driver and handed to every generation actor."""

    pools: dict[str, list[Any]] = field(default_factory=dict)  # name -> actor handles
    pool_info: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> backend, width
    in_process: list[str] = field(default_factory=list)  # run inside the generation actors
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> why

    def kill(self, ray: Any) -> None:
        for handles in self.pools.values():
            for handle in handles:
                ray.kill(handle)


# -- the generation worker -------------------------------------------------------------------------

def checkpoint_worker_name(engine: str = "ray") -> str:
    """One rows/quarantine file per generation process (a restarted actor gets a new one)."""
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname()) or "host"
    return f"{engine}-{host}-{os.getpid()}"


class SampleWorker:
    """A generation worker (a Ray actor, or a process of the local multi-process engine): batches of
    samples in, one outcome per sample out.

    Batches run concurrently (up to the actor's `max_concurrency` calls of `run` at once) on one event
    loop that the actor owns (the teacher's client and the operators are bound to it), sharing one
    semaphore of `concurrency` samples in flight."""

    def __init__(self, config_json: str, work_dir: str, layout: OperatorLayout, concurrency: int,
                 engine: str = "ray") -> None:
        from generation.logs import setup_console_logging

        setup_console_logging(quiet=True)  # warnings and redaction in the actor's log too
        self.config = PipelineConfig.model_validate_json(config_json)
        self.checkpoint = Checkpoint(Path(work_dir), worker=checkpoint_worker_name(engine), lock=True)
        self.done = self.checkpoint.finished_ids()  # durable before this actor started (a killed one's too)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="mmat-generate-loop", daemon=True).start()
        asyncio.run_coroutine_threadsafe(
            self._build(work_dir, layout, concurrency), self.loop).result()

    async def _build(self, work_dir: str, layout: OperatorLayout, concurrency: int) -> None:
        # Built on the actor's loop: the teacher's client and the VLM caption backend bind to it.
        cfg = self.config
        teacher, local = build_engine_parts(cfg, Path(work_dir), only_operators(cfg.operators, layout.in_process))
        self.operators = PooledOperators(local, layout.pools, layout.pool_info, layout.unavailable)
        self.processor = SampleProcessor(cfg, teacher, self.operators, self.checkpoint)
        self.semaphore = asyncio.Semaphore(concurrency)

    def _fatal(self, sample: Sample) -> dict[str, Any]:
        fatal = self.processor.fatal
        return {"id": sample.id, "fatal": str(fatal), "fix": fatal.fix if fatal is not None else ""}

    async def _one(self, sample: Sample) -> dict[str, Any]:
        if sample.id in self.done:  # finished by an actor that died before its batch was reported
            return {"id": sample.id, "skipped": True}
        async with self.semaphore:
            if self.processor.fatal is not None:  # the run is stopping: start nothing new
                return self._fatal(sample)
            usage, record = await self.processor.process(sample)
        if is_fatal(record):
            return self._fatal(sample)
        if usage is not None:
            self.done.add(sample.id)
        return {"id": sample.id, "usage": usage.model_dump() if usage is not None else None,
                "record": dict(record.__dict__) if record is not None else None}

    async def _batch(self, samples: list[Sample]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._one(s) for s in samples)))

    # Ray sees the async methods and makes this an async actor: `run` and `close` are awaited on Ray's
    # own loop (several batches at once) and wait for this actor's loop without blocking Ray's.
    async def run(self, samples: list[Sample]) -> list[dict[str, Any]]:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._batch(samples), self.loop))

    async def close(self) -> None:
        """Pending checkpoint writes, the teacher's client, its totals (the driver calls it at the end)."""
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.processor.aclose(), self.loop))


def per_worker_config(config: PipelineConfig, actors: int) -> PipelineConfig:
    """The config each generation worker runs: the teacher's concurrency and RPM/TPM budgets divided
    between the workers, so the cluster as a whole keeps the limits the config states."""
    teacher = config.teacher
    split = {"max_concurrency": max(1, math.ceil(teacher.max_concurrency / actors))}
    if teacher.requests_per_minute:
        split["requests_per_minute"] = teacher.requests_per_minute / actors
    if teacher.tokens_per_minute:
        split["tokens_per_minute"] = teacher.tokens_per_minute / actors
    return config.model_copy(update={"teacher": teacher.model_copy(update=split)})


def outcome(data: dict[str, Any]) -> tuple[Optional[TeacherUsage], Optional[QuarantineRecord]]:
    """One sample's outcome; raises (the run stops) when an actor met a run-stopping teacher error."""
    if data.get("fatal") is not None:
        raise run_stopped(TeacherFatalError(data["fatal"], data.get("fix") or ""))
    if data.get("skipped"):
        return TeacherUsage(), None
    if data.get("record") is not None:
        return None, QuarantineRecord(**data["record"])
    return TeacherUsage(**data["usage"]), None


