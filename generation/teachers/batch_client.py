"""`teacher.batch: true`: the teacher's chat requests through the OpenAI Batch API, at half the price.

`BatchTransport` is what the chat client sends a request body with (`await transport(body)` → the
chat completion dict, as `POST /chat/completions` would return it). Instead of posting, it gathers the
requests of the samples in flight into JSONL input files (one model per file; at most
`batch_options.max_requests` lines and `max_bytes` bytes, base64 images included), uploads each with
purpose `batch`, creates the batch (`/v1/chat/completions`, 24h window, metadata naming the run),
polls it and hands each sample its answer by `custom_id`. A sample's next call is asked only once its
previous answer is in, so it goes into a later batch: the run proceeds in rounds, and its wall time is
about rounds × the provider's batch time. A batch is sent after `flush_wait_s` without a new request
(at most 10 × that after its first), or as soon as it is full.

What each batch state means here:
- validating, in_progress, finalizing, cancelling: polled again after `poll_s`.
- completed: every output line answers its request; error-file lines fail their request (its sample is
  quarantined with the reason), a 429/5xx line is asked again in a later batch (up to `max_retries`).
- expired: the lines done are kept (and paid), the rest go into a later batch.
- failed (the file was refused): every request of it fails with the provider's reasons.
- cancelled (by someone else): the lines done are kept, the rest fail ("batch ... was cancelled").

A paid batch is never submitted twice: `generation.teachers.batch_store` records each batch in the work
folder before `batches.create` (its uploaded file and request ids) and after it (the batch id), and
stores every answer before the sample sees it. A killed run's successor collects its open batches (one
whose create may or may not have happened is looked up by its metadata first), and a resumed sample
asking the same request (`custom_id` is a hash of the request body) gets the stored answer.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

from generation.config import BatchOptions, PriceTable, TeacherConfig
from generation.teachers.base import TeacherError, TeacherFatalError
from generation.teachers.batch_store import BatchFolderBusy, BatchStore, OpenBatch, open_store
from generation.teachers.http_errors import backoff_seconds, is_retryable

log = logging.getLogger("mmat.teacher")

ENDPOINT = "/v1/chat/completions"
BATCH_DISCOUNT = 0.5  # every token of a batch request is billed at half the synchronous price
PENDING_STATES = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
DONE_STATES = frozenset({"completed", "failed", "expired", "cancelled"})
FOLDER_NAME = "teacher-batches"
_RESUBMIT = object()  # what an expired batch answers for a request it did not reach


class BatchRequestError(TeacherError):
    """One request's answer from a batch was an error (its sample is quarantined with this reason)."""


def custom_id(body: dict[str, Any]) -> str:
    """The request's id in a batch: a hash of its body, so a resumed sample asking the same request finds
    the answer stored for it (identical requests share one answer)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "mmat-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


def batch_line(cid: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def batch_prices(prices: Optional[PriceTable]) -> Optional[PriceTable]:
    """`prices` at the Batch API's discount (every field: prompt, cached prompt, completion)."""
    if prices is None:
        return None
    scaled = {k: (v * BATCH_DISCOUNT if isinstance(v, (int, float)) else v) for k, v in prices.model_dump().items()}
    return type(prices).model_validate(scaled)


def with_batch_folder(cfg: TeacherConfig, work_dir: Path) -> TeacherConfig:
    """`cfg` with `batch_options.folder` set to `<work_dir>/teacher-batches` when batch mode leaves it unset."""
    if not cfg.batch or cfg.batch_options.folder:
        return cfg
    options = cfg.batch_options.model_copy(update={"folder": str(Path(work_dir) / FOLDER_NAME)})
    return cfg.model_copy(update={"batch_options": options})


def http_failure_for(cfg: TeacherConfig, base_url: Optional[str]) -> Callable[[BaseException, str], TeacherError]:
    """What a failed Files/Batches call raises: `generation.teachers.http_errors.classify` as a
    `TeacherError`, a `TeacherFatalError` (with its fix) for what dooms the run (401, 403, quota)."""
    from generation.errors import one_line
    from generation.redact import redact
    from generation.teachers.http_errors import classify

    def failure(exc: BaseException, task: str) -> TeacherError:
        found = classify(exc, task=task, attempts=cfg.max_retries + 1, endpoint=base_url or "api.openai.com",
                         timeout_s=cfg.timeout_s, api_key_env=cfg.api_key_env, model=cfg.model)
        text = redact(one_line(f"{found.message} ({task})", 300))
        return TeacherFatalError(text, found.fix) if found.fix else TeacherError(text)

    return failure


def attach_batch(chat: Any) -> "BatchTransport":
    """Make `chat` (a `ChatClient`) send through the Batch API: its transport, its prices at the batch
    discount, no RPM/TPM limiter (batches have their own pool of enqueued tokens) and no bound on
    requests waiting (every sample in flight has its request in a batch; `runner.max_concurrency`
    bounds them)."""
    from generation.teachers.limiter import RateLimiter

    transport = BatchTransport(chat.client, chat.cfg, http_failure_for(chat.cfg, chat.base_url))
    chat.transport = transport
    chat.prices = batch_prices(chat.prices)
    chat.limiter = RateLimiter(None, None)
    chat._slots = asyncio.Semaphore(1 << 30)
    return transport


def dry_run_line(list_cost: Optional[float], rounds: int, in_flight: int) -> str:
    """What `mmat generate --dry-run` says of `teacher.batch: true`: the batch price and the wall time."""
    price = (f"up to ${list_cost * BATCH_DISCOUNT:,.2f} (50 % of the estimate above)" if list_cost is not None
             else "50 % of the list price")
    return (f"batch: every teacher call goes through the OpenAI Batch API at {price}; a sample's calls go one "
            f"per batch, so the run takes up to {rounds} rounds x the provider's batch time (each up to its 24 h "
            f"completion window); each round holds at most the {in_flight:,} samples in flight "
            f"(runner.max_concurrency: thousands fill the batches)")


def line_error(line: dict[str, Any]) -> Optional[tuple[Optional[int], str]]:
    """(HTTP status or None, reason) when an output/error line is not a successful answer, else None."""
    response = line.get("response") or {}
    status = response.get("status_code")
    error = line.get("error")
    if not error and status == 200 and isinstance(response.get("body"), dict):
        return None
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    detail = error or body.get("error") or {}
    message = detail.get("message") if isinstance(detail, dict) else str(detail)
    code = detail.get("code") if isinstance(detail, dict) else None
    reason = " ".join(str(x) for x in (message or "no answer", f"({code})" if code else "") if x)
    return status, reason


def _transient(status: Optional[int]) -> bool:
    return status is not None and (status in (408, 409, 429) or status >= 500)


class _Pending:
    """Requests gathered for the next batch of one model."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bytes]] = []
        self.size = 0
        self.since = 0.0
        self.timer: Optional[asyncio.TimerHandle] = None


class BatchTransport:
    """`await transport(body)` → the chat completion dict, through the Batch API (see the module docstring)."""

    def __init__(self, client: Any, cfg: TeacherConfig,
                 http_failure: Callable[[BaseException, str], TeacherError]) -> None:
        self.client = client
        self.options: BatchOptions = cfg.batch_options
        # None until a run sets it (`with_batch_folder`): a teacher built only for the preflight sends nothing
        self.folder = Path(self.options.folder) if self.options.folder else None
        self.max_retries = cfg.max_retries
        self.file_timeout_s = max(cfg.timeout_s, 600.0)  # a 200 MB upload takes longer than one chat call
        self.backoff = (cfg.backoff_base_s, cfg.backoff_max_s)
        self.http_failure = http_failure
        self.run_tag = hashlib.sha256(str(self.folder.resolve() if self.folder else "").encode()).hexdigest()[:16]
        self.store: Optional[BatchStore] = None
        self.fatal: Optional[TeacherFatalError] = None
        self.counts: Counter = Counter()  # batches, requests, resubmitted, resumed, stored_answers
        self._waiting: dict[str, asyncio.Future] = {}
        self._open_of: dict[str, str] = {}  # custom_id -> local id of its open batch
        self._pending: dict[str, _Pending] = {}
        self._tries: Counter = Counter()  # custom_id -> transient failures so far
        self._tasks: set[asyncio.Task] = set()

    # -- the send interface ----------------------------------------------------------------------
    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.fatal is not None:
            raise self.fatal
        store = self._start()
        cid = custom_id(body)
        while True:
            stored = store.result(cid)
            outcome = self._answer(cid, stored) if stored is not None else None
            if outcome is None:
                future = self._waiting.get(cid)
                if future is None:
                    future = asyncio.get_running_loop().create_future()
                    self._waiting[cid] = future
                    if cid not in self._open_of:
                        self._enqueue(cid, body)
                outcome = await asyncio.shield(future)
                if isinstance(outcome, dict):
                    outcome = self._answer(cid, outcome)
            if outcome is _RESUBMIT:
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome  # type: ignore[return-value]

    def _answer(self, cid: str, line: dict[str, Any]) -> Any:
        """A line's answer: the reply dict, an error to raise, or `_RESUBMIT` (a transient failure)."""
        problem = line_error(line)
        if problem is None:
            self.counts["answers"] += 1
            return line["response"]["body"]
        status, reason = problem
        if _transient(status) and self._tries[cid] < self.max_retries:
            self._tries[cid] += 1
            self.counts["resubmitted"] += 1
            return _RESUBMIT
        where = f"HTTP {status}" if status else "error"
        return BatchRequestError(f"teacher batch request failed ({where}): {reason}")

    # -- gathering requests into batches ---------------------------------------------------------
    def _enqueue(self, cid: str, body: dict[str, Any]) -> None:
        line = batch_line(cid, body)
        if len(line) > self.options.max_bytes:
            self._resolve(cid, BatchRequestError(
                f"teacher request of {len(line):,} bytes exceeds teacher.batch_options.max_bytes "
                f"({self.options.max_bytes:,}); send smaller images (teacher.image_detail: low)"))
            return
        model = str(body.get("model", ""))
        pending = self._pending.setdefault(model, _Pending())
        if pending.lines and (len(pending.lines) + 1 > self.options.max_requests
                              or pending.size + len(line) > self.options.max_bytes):
            self._flush(model)
            pending = self._pending.setdefault(model, _Pending())
        if not pending.lines:
            pending.since = time.monotonic()
        pending.lines.append((cid, line))
        pending.size += len(line)
        if len(pending.lines) >= self.options.max_requests:
            self._flush(model)
            return
        if pending.timer is not None:
            pending.timer.cancel()
        waited = time.monotonic() - pending.since
        delay = max(0.0, min(self.options.flush_wait_s, 10 * self.options.flush_wait_s - waited))
        pending.timer = asyncio.get_running_loop().call_later(delay, self._flush, model)

    def _flush(self, model: str) -> None:
        pending = self._pending.pop(model, None)
        if pending is None or not pending.lines:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        self._spawn(self._submit(pending.lines))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug, not a provider answer
            exc = task.exception()
            log.error("teacher batch task failed: %s: %s", type(exc).__name__, exc)
            self._fail_everything(exc)  # type: ignore[arg-type]

    async def _submit(self, lines: list[tuple[str, bytes]]) -> None:
        ids = [cid for cid, _ in lines]
        local = uuid.uuid4().hex[:20]
        data = b"".join(line for _, line in lines)
        try:
            uploaded = await self._call("upload", lambda: self.client.files.create(
                file=(f"mmat-{local}.jsonl", data), purpose="batch", timeout=self.file_timeout_s))
        except TeacherError as exc:
            if isinstance(exc, TeacherFatalError):
                self._fail_everything(exc)
            for cid in ids:
                self._resolve(cid, exc)
            return
        del data, lines
        batch = self.store.intent(local, uploaded.id, ids)  # type: ignore[union-attr]
        for cid in ids:
            self._open_of[cid] = local
        self.counts["batches"] += 1
        self.counts["requests"] += len(ids)
        await self._create_and_collect(batch)

    async def _create_and_collect(self, batch: OpenBatch, resumed: bool = False) -> None:
        try:
            if batch.batch_id is None:
                found = await self._find(batch) if resumed else None
                created = found or await self._create(batch)
                self.store.created(batch.local, created.id)  # type: ignore[union-attr]
                log.info("teacher batch %s: %d requests %s", created.id, len(batch.ids),
                         "found again" if found else "submitted")
            done = await self._poll(batch)
        except TeacherError as exc:
            if isinstance(exc, TeacherFatalError) or batch.batch_id is not None:
                self._fail_everything(exc)  # the batch may be running: the rerun collects it
            else:  # refused before it existed: nothing was submitted (a resumed one: its file may be gone)
                self.store.finish(batch.local, "refused")  # type: ignore[union-attr]
                self._settle(batch, {}, _RESUBMIT if resumed else exc)
            return
        await self._collect(batch, done)

    async def _create(self, batch: OpenBatch) -> Any:
        """`batches.create`; when a try fails without an answer, look the batch up before trying again."""
        for attempt in range(1, self.max_retries + 2):
            try:
                return await self.client.batches.create(
                    input_file_id=batch.file_id, endpoint=ENDPOINT, completion_window="24h",
                    metadata={"mmat_run": self.run_tag, "mmat_batch": batch.local,
                              "mmat_requests": str(len(batch.ids))})
            except Exception as exc:  # noqa: BLE001 - every failure becomes one clean line
                if not is_retryable(exc) or attempt > self.max_retries:
                    raise self.http_failure(exc, "batch create") from None
                await asyncio.sleep(backoff_seconds(attempt, *self.backoff))
                found = await self._find(batch)
                if found is not None:
                    return found
        raise AssertionError("unreachable")  # pragma: no cover

    async def _find(self, batch: OpenBatch) -> Any:
        """The provider's batch made from `batch` (by its metadata), or None: newest first, back to
        a few minutes before its intent was recorded."""
        listing = await self._call("list", lambda: self.client.batches.list(limit=100))
        async for item in listing:
            if (item.metadata or {}).get("mmat_batch") == batch.local and item.input_file_id == batch.file_id:
                return item
            if item.created_at and item.created_at < batch.t - 600:
                break
        return None

    async def _poll(self, batch: OpenBatch) -> Any:
        while True:
            current = await self._call("poll", lambda: self.client.batches.retrieve(batch.batch_id),
                                       give_up_fatal=True)
            if current.status in DONE_STATES:
                return current
            if current.status not in PENDING_STATES:
                log.warning("teacher batch %s: unknown status %r; polling on", batch.batch_id, current.status)
            await asyncio.sleep(self.options.poll_s)

    async def _collect(self, batch: OpenBatch, done: Any) -> None:
        lines: list[dict[str, Any]] = []
        for file_id in (done.output_file_id, done.error_file_id):
            if file_id:
                content = await self._call("download", lambda fid=file_id: self.client.files.content(fid, timeout=self.file_timeout_s),
                                           give_up_fatal=True)
                lines.extend(json.loads(raw) for raw in content.text.splitlines() if raw.strip())
        ours = set(batch.ids)
        answered = {line["custom_id"]: line for line in lines if line.get("custom_id") in ours}
        keep = [line for line in answered.values() if not _transient((line_error(line) or (200, ""))[0])]
        self.counts["stored_answers"] += self.store.store_results(keep, done.id)  # type: ignore[union-attr]
        self.store.finish(batch.local, done.status)  # type: ignore[union-attr]
        log.info("teacher batch %s %s: %d of %d requests answered", done.id, done.status, len(answered),
                 len(batch.ids))
        if done.status == "expired":
            missing: Any = _RESUBMIT
        elif done.status == "failed":
            reasons = "; ".join(f"{e.code}: {e.message}" for e in (getattr(done.errors, "data", None) or [])[:3])
            missing = BatchRequestError(f"teacher batch {done.id} failed: {reasons or 'no reason given'}")
        elif done.status == "cancelled":
            missing = BatchRequestError(f"teacher batch {done.id} was cancelled before this request ran")
        else:
            missing = BatchRequestError(f"teacher batch {done.id} completed without an answer to this request")
        self._settle(batch, answered, missing)

    def _settle(self, batch: OpenBatch, answered: dict[str, Any], missing: Any) -> None:
        for cid in batch.ids:
            self._open_of.pop(cid, None)
            self._resolve(cid, answered.get(cid, missing))

    def _resolve(self, cid: str, outcome: Any) -> None:
        future = self._waiting.pop(cid, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    def _fail_everything(self, exc: BaseException) -> None:
        """Stop: every waiting sample gets `exc` (a fatal error stops the run; the rerun collects)."""
        if not isinstance(exc, TeacherFatalError):
            exc = TeacherFatalError(f"teacher batch mode stopped: {exc}", "fix the cause and rerun to collect "
                                                                          "the open batches")
        self.fatal = self.fatal or exc  # type: ignore[assignment]
        for cid in list(self._waiting):
            self._resolve(cid, self.fatal)

    async def _call(self, what: str, make: Callable[[], Any], give_up_fatal: bool = False) -> Any:
        """One Files/Batches API call, retried on a retryable failure; a lasting failure is a
        `TeacherError` (fatal when `give_up_fatal`: a batch that exists must not be given up on)."""
        for attempt in range(1, self.max_retries + 2):
            try:
                return await make()
            except Exception as exc:  # noqa: BLE001 - every failure becomes one clean line
                if is_retryable(exc) and attempt <= self.max_retries:
                    await asyncio.sleep(backoff_seconds(attempt, *self.backoff))
                    continue
                failure = self.http_failure(exc, f"batch {what}")
                if give_up_fatal and not isinstance(failure, TeacherFatalError):
                    failure = TeacherFatalError(f"{failure}", "rerun when the endpoint answers again: the open "
                                                              "batches are collected, none is sent again")
                raise failure from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- lifecycle -------------------------------------------------------------------------------
    def _start(self) -> BatchStore:
        """Open the folder on the first request and collect what a killed run left open."""
        if self.store is None:
            if self.folder is None:
                raise TeacherFatalError("teacher.batch needs teacher.batch_options.folder",
                                        "set it (a run sets <work folder>/teacher-batches itself)")
            try:
                self.store = open_store(self.folder)
            except BatchFolderBusy as exc:  # a second process on the same records: stop, quarantine nothing
                self.fatal = TeacherFatalError(str(exc), "run one process per batch folder (runner.processes: 1; "
                                               "each worker of a sharded run its own teacher.batch_options.folder)")
                raise self.fatal from None
            for batch in list(self.store.open.values()):
                for cid in batch.ids:
                    self._open_of[cid] = batch.local
                self.counts["resumed"] += 1
                self._spawn(self._create_and_collect(batch, resumed=True))
            if self.store.open or self.store.results:
                log.info("teacher batches: %d open batches to collect, %d stored answers (from an earlier run)",
                         len(self.store.open), self.store.results)
        return self.store

    def summary(self) -> str:
        c = self.counts
        return (f"batch API: {c['batches']} batches, {c['requests']} requests submitted, {c['resumed']} resumed, "
                f"{c['resubmitted']} resubmitted, {c['answers']} answers used")

    async def aclose(self) -> None:
        for model in list(self._pending):
            pending = self._pending.pop(model)
            if pending.timer is not None:
                pending.timer.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.store is not None:
            log.info("teacher %s", self.summary())
            if self.store.open:
                log.info("teacher batches: %d still open; the next run over this work folder collects them",
                         len(self.store.open))
            self.store.close()
            self.store = None
