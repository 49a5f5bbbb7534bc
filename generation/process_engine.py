"""`runner.processes: N` (N > 1): the local engine over N generation processes on this machine.

Why: one Python process drives a few hundred teacher requests per second at most (the `openai` SDK's
own request path is about 1 ms of CPU per request, `benchmarks/request_floor.py`), so with hundreds of
samples in flight against a fast endpoint the engine's CPU, not the teacher's latency, bounds a run.
N processes use N cores without a Ray cluster.

The same executor shape as the Ray engine (`generation.ray_engine`), with the same worker: the driver
(this process) makes the plan, starts N spawned processes, each a `SampleWorker` (`generation.sample_worker`: its own event
loop, `SampleProcessor`, teacher client and in-process operators, its own
`rows-local-<host>-<pid>.jsonl` in the work folder), and streams samples to them longest first
(`generation.sample_worker.longest_first`), keeping each at its share of `samples_in_flight` plus a few
queued. Each sample's outcome comes back as it finishes and is recorded by the driver (progress, run
log, totals); the driver writes shards and card at the end as always.

Guarantees are the checkpoint's: a sample counts once its line is durable in its process's rows file,
a rerun skips every finished id whichever process wrote it. A generation process that dies stops the
run with one line (the next run redoes only its samples in flight); a killed driver takes its
processes with it (Linux: they are asked to be killed with their parent; elsewhere they exit when the
driver's pipe closes). A run-stopping teacher error (rejected key, quota) in any process stops them all.
Operators that load models (OCR, faces, Grounding DINO) load once per process.
"""
from __future__ import annotations

import logging
import math
import multiprocessing
import os
import threading
from multiprocessing.connection import Connection, wait
from typing import Any, Iterator, Optional

from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig
from generation.errors import MmatError
from generation.orphans import die_with_parent
from generation.plan import Plan, RunOptions
from generation.progress import RunSummary, recording
from generation.schema import Sample
from generation.teachers.base import TeacherFatalError

log = logging.getLogger("mmat.runner")

QUEUED = 8  # samples sent ahead of a process's free slots, so a finished sample's slot never waits


class GenerationProcessDied(MmatError, RuntimeError):
    """A generation process ended without finishing its samples; one line, the rerun resumes."""


def _child(conn: Connection, config_json: str, work_dir: str, concurrency: int, driver: int) -> None:
    """One generation process: samples in from `conn`, one outcome per sample out, as each finishes.
    `None` in: finish what runs, close, report the operator executions, exit."""
    import asyncio

    from generation.sample_worker import OperatorLayout, SampleWorker
    from operators import OPERATOR_NAMES

    die_with_parent(driver)
    actor = SampleWorker(config_json, work_dir, OperatorLayout(in_process=list(OPERATOR_NAMES)), concurrency,
                          engine="local")
    done = threading.Condition()
    unsent = 0  # samples whose outcome is not sent yet

    def report(future) -> None:  # on the actor's loop thread, once per sample
        nonlocal unsent
        try:
            message = future.result()
        except BaseException as exc:  # noqa: BLE001 - the driver stops the run with this line
            message = {"error": f"{type(exc).__name__}: {exc}"}
        with done:
            conn.send(message)
            unsent -= 1
            done.notify_all()

    try:
        while True:
            try:
                samples = conn.recv()
            except EOFError:  # the driver is gone
                os._exit(1)
            if samples is None:
                break
            with done:
                unsent += len(samples)
            for sample in samples:
                asyncio.run_coroutine_threadsafe(actor._one(sample), actor.loop).add_done_callback(report)
        with done:
            done.wait_for(lambda: unsent == 0)
        asyncio.run_coroutine_threadsafe(actor.processor.aclose(), actor.loop).result()
        with done:
            conn.send({"closed": True, "executions": actor.operators.executions})
    finally:
        actor.checkpoint.close()


class _Worker:
    def __init__(self, ctx: Any, config_json: str, work_dir: str, concurrency: int) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(child_conn, config_json, work_dir, concurrency, os.getpid()),
                                   name="mmat-generate", daemon=True)
        self.process.start()
        child_conn.close()
        self.capacity = concurrency + QUEUED
        self.outstanding = 0  # samples sent whose outcome has not come back
        self.closed = False  # sent `None`: nothing more to run
        self.reported = False  # its closing report came back (then its pipe's end is expected)

    def died(self) -> GenerationProcessDied:
        self.process.join(5)
        return GenerationProcessDied(
            f"a generation process (pid {self.process.pid}) ended with exit code {self.process.exitcode} before "
            f"finishing its samples; rerun the same command to resume (finished samples are kept)")


def execute_in_processes(config: PipelineConfig, options: RunOptions, checkpoint: Checkpoint, plan: Plan,
                         summary: RunSummary) -> None:
    """Process `plan` over `runner.processes` generation processes (see the module docstring)."""
    from generation.sample_worker import longest_first, outcome, per_worker_config

    count = config.runner.processes
    per_process = max(1, math.ceil(config.samples_in_flight / count))
    config_json = per_worker_config(config, count).model_dump_json()
    log.info("local engine: %d generation processes, %d samples in flight each", count, per_process)
    ctx = multiprocessing.get_context("spawn")  # never fork a process that runs threads
    workers: list[_Worker] = []
    started: list[_Worker] = []
    try:
        with recording(plan, checkpoint, summary, options.quiet) as on_done:
            workers = [_Worker(ctx, config_json, str(checkpoint.dir), per_process) for _ in range(count)]
            started = list(workers)
            samples: Iterator[Sample] = longest_first(plan.todo, window=config.samples_in_flight)
            executions = 0
            stopping: Optional[BaseException] = None
            exhausted = False
            while workers:
                if stopping is None and not exhausted:
                    exhausted = _feed(workers, samples)
                for worker in workers:
                    if (exhausted or stopping is not None) and not worker.closed and not worker.outstanding:
                        worker.conn.send(None)  # nothing more for it: finish, close, report, exit
                        worker.closed = True
                waiting = {w.conn: w for w in workers if w.outstanding or w.closed}
                if not waiting:  # every live process has work or is closing; never wait on nothing
                    break
                for conn in wait(list(waiting)):
                    worker = waiting[conn]
                    try:
                        message = conn.recv()
                    except EOFError:
                        if not (worker.closed and worker.reported):
                            raise worker.died() from None
                        worker.process.join(10)
                        workers.remove(worker)
                        continue
                    if message.get("closed"):
                        executions += message["executions"]
                        worker.reported = True
                        continue
                    worker.outstanding -= 1
                    if "error" in message:
                        raise GenerationProcessDied(f"a generation process failed: {message['error']}")
                    try:
                        on_done(*outcome(message))
                    except TeacherFatalError as exc:  # the key or quota is refused: start nothing new
                        stopping = stopping or exc
            if stopping is not None:
                raise stopping
            summary.operator_executions = executions
    finally:
        for worker in started:
            if worker.process.is_alive():
                worker.process.kill()
            worker.process.join(10)


def _feed(workers: list[_Worker], samples: Iterator[Sample]) -> bool:
    """Top every process up to its capacity, in batches; True when the plan has run out."""
    for worker in workers:
        room = worker.capacity - worker.outstanding
        if room < min(QUEUED, worker.capacity) and worker.outstanding:
            continue
        batch = []
        for sample in samples:
            batch.append(sample)
            if len(batch) >= room:
                break
        if batch:
            worker.conn.send(batch)
            worker.outstanding += len(batch)
        if len(batch) < room:
            return True
    return False
