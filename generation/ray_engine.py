"""`mmat generate --engine ray`: the same engine, executed on Ray Data, for runs that outgrow one machine.

This is an executor for `generation.runner.run_generation`, not a second implementation: the driver
makes the same plan (sources read through the same adapters, finished ids skipped), and at the end
writes the same shards and card from the same checkpoint. What changes is where samples run:

- the plan's samples stream from the driver in batches (`runner.ray.batch_size` samples) to a pool of
  **generation actors** (`runner.ray.generate_actors`), at most a few batches in flight per actor, so
  the driver and the object store hold a bounded window of the plan, never the whole of it (a
  million-sample plan is read from the sources as it goes). Each actor runs
  `generation.processor.SampleProcessor` — rationale, reflection, integration, checkpoint — on its own
  event loop, with `max_concurrency / generate_actors` samples in flight and the teacher's RPM/TPM
  budgets divided the same way, so the cluster as a whole keeps the limits the config states;
- each model-bearing operator (OCR, face detection, Grounding DINO, local RAG) is a **pool of
  operator actors** that load the model once per actor, with `num_cpus`/`num_gpus` per operator from
  `runner.ray.operators` (GPUs only requested when the cluster has some). The rationale loop calls
  them through `PooledOperators`, an `operators.base.OperatorRunner` like the local
  `operators.registry.OperatorSet`: a call to a pool is an awaited Ray task, at most as many in
  flight as the pool's actors can serve; `runner.ray.operators.<name>.resources` places a pool on the
  nodes that declare those custom resources (an actor whose node dies restarts on another such node,
  and its calls are retried). The caption operator runs inside the generation actors by default: its
  VLM backend talks to the teacher's endpoint through the teacher's client, and its template backend
  is cheap;
- each generation actor appends to its own `rows-ray-<host>-<pid>.jsonl` in the shared work folder
  (the checkpoint reads every worker's file), so a killed actor, which Ray restarts and whose batches
  Ray retries, loses only samples in flight, and a restarted actor skips ids already durable.

On a multi-node cluster the dataset folder, the work folder and the operator cache must be on a
filesystem every node sees, and the project must be installed on every node. The local engine
stays the default and does not import Ray.
"""
from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig
from generation.errors import MmatError
from generation.plan import Plan, RunOptions, operator_cache_dir
from generation.progress import RunSummary, recording
from generation.runner import run_generation
from generation.sample_worker import (  # noqa: F401  (PooledOperators, only_operators: named by tests and docs)
    OperatorLayout, PooledOperators, SampleWorker, only_operators, outcome, per_worker_config,
)
from generation.schema import Sample
from operators.base import OperatorResult
from operators.config import OperatorsConfig
from operators.images import LoadedImage

log = logging.getLogger("mmat.ray")

RAY_EXTRA_HINT = "the Ray engine needs Ray: pip install -e '.[ray]' (or run without --engine ray)"


class RayEngineError(MmatError, RuntimeError):
    """The Ray engine cannot start here (Ray missing, cluster unreachable); one line with the fix."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayEngineError(RAY_EXTRA_HINT) from None
    return ray


def require_ray() -> None:
    """Raise `RayEngineError` (the install line) when Ray is missing: before the config is even read."""
    _import_ray()


# -- operator actors -----------------------------------------------------------------------------

class OperatorActor:
    """One operator's backend, loaded once in this actor, behind the same content-hash cache."""

    def __init__(self, name: str, operators_json: str, cache_dir: str) -> None:
        from generation.redact import install_redaction
        from operators.registry import build_operators

        install_redaction()
        self.name = name
        cfg = only_operators(OperatorsConfig.model_validate_json(operators_json), [name])
        self.operators = build_operators(cfg, Path(cache_dir))

    def info(self) -> dict[str, Any]:
        if self.name not in self.operators.available:
            return {"available": False, "reason": self.operators.unavailable.get(self.name, "unavailable")}
        backend = self.operators.get(self.name).backend
        return {"available": True, "backend": backend.name, "max_parallel_calls": max(1, backend.max_parallel_calls)}

    def run(self, images: list[bytes], args: dict[str, Any]) -> OperatorResult | Exception:
        """The result, or the exception (returned, not raised, so the caller re-raises the very same
        `OperatorError` the local engine would see and quarantines the sample the same way)."""
        try:
            return self.operators.run(self.name, [LoadedImage(data) for data in images], **args)
        except Exception as exc:  # noqa: BLE001 - handed to the caller as is
            return exc

    def executions(self) -> int:
        return self.operators.executions


# -- the driver ----------------------------------------------------------------------------------

def _connect(ray: Any, address: Optional[str], quiet: bool) -> bool:
    """Join the cluster at `address` (or the one this process already joined, or start a local one).
    Returns whether we started the connection (and so should shut it down)."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                 logging_level=logging.WARNING, configure_logging=True)
    except ConnectionError as exc:
        raise RayEngineError(f"cannot reach the Ray cluster at {address!r}: {exc}; start it with `ray start "
                             f"--head` or pass --ray-address auto|ray://HOST:10001") from None
    log.info("ray: connected (%s), resources %s", address or "local instance", ray.cluster_resources())
    return True


def _require_resources(cluster: dict[str, float], wanted: dict[str, float], key: str) -> None:
    """An actor asking for a resource no node declares would wait forever: one line naming it instead."""
    missing = [f"{r}={n:g}" for r, n in wanted.items() if cluster.get(r, 0) < n]
    if missing:
        raise RayEngineError(f"{key} asks for {', '.join(missing)}, which no node of the cluster declares; start "
                             f"a node with `ray start --address ... --resources ...` that has it, or change {key}")


def _start_operator_pools(ray: Any, config: PipelineConfig, work_dir: Path) -> OperatorLayout:
    """One pool per model-bearing operator that is available here (probed once, as the dry run does)."""
    from operators.registry import build_operators

    probe = build_operators(config.operators, None)
    unavailable = dict(probe.unavailable)
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    placements = config.runner.ray
    actor_cls = ray.remote(OperatorActor)
    pools: dict[str, list[Any]] = {}
    in_process: list[str] = []
    cluster = ray.cluster_resources()
    for name in probe.available:
        place = placements.placement(name)
        if place.actors == 0:
            in_process.append(name)
            continue
        _require_resources(cluster, place.resources, f"runner.ray.operators.{name}.resources")
        if place.num_gpus and not has_gpus:
            log.info("%s: the cluster has no GPUs; its actors run on CPU", name)
        options = dict(num_cpus=place.num_cpus, num_gpus=place.num_gpus if has_gpus else 0,
                       max_concurrency=place.max_concurrency, max_restarts=-1, max_task_retries=-1,
                       **({"resources": dict(place.resources)} if place.resources else {}))
        pools[name] = [actor_cls.options(**options).remote(name, config.operators.model_dump_json(),
                                                           str(operator_cache_dir(config, work_dir)))
                       for _ in range(place.actors)]
    info: dict[str, dict[str, Any]] = {}
    for name, handles in list(pools.items()):
        answers = ray.get([h.info.remote() for h in handles])
        if not all(a["available"] for a in answers):
            unavailable[name] = next(a["reason"] for a in answers if not a["available"])
            log.warning("%s: unavailable in its Ray actors (%s)", name, unavailable[name])
            for h in handles:
                ray.kill(h)
            del pools[name]
            continue
        width = sum(a["max_parallel_calls"] * placements.placement(name).max_concurrency for a in answers)
        info[name] = {"backend": answers[0]["backend"], "width": width}
        log.info("%s: %d Ray actor(s), backend %s", name, len(handles), answers[0]["backend"])
    return OperatorLayout(pools, info, in_process, unavailable)


def plan_batches(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    """The plan in batches of `size`, read from the sources as they are asked for."""
    it = iter(samples)
    while batch := list(itertools.islice(it, size)):
        yield batch


class BatchFeed:
    """Streams batches to the generation actors: each actor keeps `depth` batches in flight, the next
    one is read from the plan only when one of them comes back (the driver's memory is bounded by
    actors × depth × batch_size samples, whatever the plan's size)."""

    def __init__(self, ray: Any, actors: Sequence[Any], batches: Iterator[list[Sample]], depth: int) -> None:
        self.ray = ray
        self.actors = list(actors)
        self.batches = batches
        self.pending: dict[Any, int] = {}  # ObjectRef of a batch's outcomes -> the actor running it
        for index in range(len(self.actors)):
            for _ in range(depth):
                self._send(index)

    def _send(self, index: int) -> None:
        batch = next(self.batches, None)
        if batch is not None:
            self.pending[self.actors[index].run.remote(batch)] = index

    def outcomes(self) -> Iterator[dict[str, Any]]:
        """Each sample's outcome as its batch comes back (Ray retries a batch whose actor died)."""
        while self.pending:
            ready, _ = self.ray.wait(list(self.pending), num_returns=1)
            index = self.pending.pop(ready[0])
            self._send(index)
            yield from self.ray.get(ready[0])


def execute_on_ray(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint, plan: Plan,
                   summary: RunSummary, *, address: Optional[str] = None) -> None:
    """Process `plan` on the cluster (see the module docstring); outcomes are recorded as they come back."""
    ray = _import_ray()  # the teacher was built and checked on the driver (`run_generation`'s preflight)
    started = _connect(ray, address, options.quiet)
    layout = OperatorLayout()
    actors: list[Any] = []
    try:
        settings = config.runner.ray
        layout = _start_operator_pools(ray, config, checkpoint.dir)
        _require_resources(ray.cluster_resources(), settings.generate_resources, "runner.ray.generate_resources")
        per_actor = max(1, math.ceil(config.samples_in_flight / settings.generate_actors))
        # Twice the batches the semaphore can run: a batch returns only when its slowest sample does, so
        # queued samples must be ready to take each slot it frees (once: 0.54 of the bound, twice: 0.80).
        depth = 2 * math.ceil(per_actor / settings.batch_size) + 1
        with recording(plan, checkpoint, summary, options.quiet) as on_done:
            if plan.todo:
                actor_cls = ray.remote(SampleWorker).options(
                    num_cpus=settings.generate_num_cpus, max_concurrency=depth + 1,  # + the final close()
                    max_restarts=-1, max_task_retries=-1, **({"resources": dict(settings.generate_resources)}
                                                             if settings.generate_resources else {}))
                per_actor_json = per_worker_config(config, settings.generate_actors).model_dump_json()
                actors = [actor_cls.remote(per_actor_json, str(checkpoint.dir), layout, per_actor)
                          for _ in range(settings.generate_actors)]
                feed = BatchFeed(ray, actors, plan_batches(plan.todo, settings.batch_size), depth)
                for result in feed.outcomes():
                    on_done(*outcome(result))
                ray.get([actor.close.remote() for actor in actors])
        summary.operator_executions = sum(ray.get([h.executions.remote() for hs in layout.pools.values() for h in hs]))
    finally:
        for actor in actors:
            ray.kill(actor)
        layout.kill(ray)
        if started:
            ray.shutdown()


def run_generation_ray(config: PipelineConfig, options: RunOptions, address: Optional[str] = None,
                       write_card: Optional[Any] = None) -> RunSummary:
    """`run_generation` with the Ray executor: same plan, checkpoints, shards, card and exit code
    (`write_card` as `run_generation` takes it; `publishing.run.run_generation_ray` passes the card's)."""
    _import_ray()  # fail before touching the work folder when Ray is missing

    def execute(cfg: PipelineConfig, opts: RunOptions, checkpoint: Checkpoint, plan: Plan, summary: RunSummary) -> None:
        execute_on_ray(cfg, opts, checkpoint, plan, summary, address=address)

    return run_generation(config, options, execute=execute, write_card=write_card)
