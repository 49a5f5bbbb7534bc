"""The retry and wait policy of every teacher call (`generation.teachers.chat_client.ChatClient` inherits
it): one attempt through a concurrency slot and the RPM/TPM limiter, retries with exponential backoff and
full jitter on 429/5xx/timeouts, a provider's wait (429 `Retry-After`, or "try again in ...") pausing every
request once, a wait longer than `teacher.max_wait_s` or a failure that dooms the run (401/403/quota)
raised as a `TeacherFatalError`, and every other failure turned into one clean `TeacherError`
(`generation.teachers.http_errors` says what a failure means).

Why apart from the client: it is the part that decides when to send again and how long to wait, read and
changed on its own; the client keeps what goes into a request and what comes out of one.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from generation.teachers.base import TeacherError
from generation.teachers.http_errors import (backoff_seconds, classify, is_retryable, long_wait_failure,
                                             requested_wait_s, status_of)
from generation.teachers.model_limits import refuses_images
from generation.teachers.payloads import usage_tokens

log = logging.getLogger("mmat.teacher")


def _retry_worthy(exc: BaseException) -> bool:
    """Retryable, unless it is a refusal of the images (llama.cpp sends those as HTTP 500)."""
    return is_retryable(exc) and not refuses_images(exc)


class RetryPolicy:
    """When a chat request is sent again and how long it waits. A mixin of `ChatClient`: it reads the
    client's `cfg`, `fatal`, `stats`, `limiter`, `transport`, `_slots`, `_estimate_tokens` and `_error`."""

    async def _with_retries(self, task: str, body: dict[str, Any]) -> Any:
        """The request, retried on a retryable failure. The first attempt runs without tenacity (most
        calls succeed at once, and building its retry machinery per call is measurable CPU at hundreds
        of calls per second); a failed one hands over to the same policy for the remaining attempts."""
        if self.fatal is not None:  # the endpoint already refused this run: send nothing more
            raise self.fatal
        attempts = self.cfg.max_retries + 1
        estimate = self._estimate_tokens(body["messages"])
        try:
            return await self._attempt(body, estimate)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clean line
            if attempts == 1 or not _retry_worthy(exc):
                raise self._final_error(exc, task, attempts) from None
            self.stats.retries += 1
            try:
                delay = self._retry_wait(exc, 1)
            except TeacherError as stop:
                raise stop from None
            log.debug("teacher %s: attempt 1 failed (%s); retrying in %.2f s", task, type(exc).__name__, delay)
        await asyncio.sleep(delay)
        return await self._retry_rest(task, body, attempts, estimate)

    def _retry_wait(self, exc: BaseException, attempt_number: int) -> float:
        """Seconds before the next attempt. A provider's wait (a 429's `Retry-After`, or "try again in
        ...") pauses every request, once, and the progress line says why; one longer than
        `teacher.max_wait_s` raises a `TeacherFatalError` that stops the run with when to rerun."""
        hint = requested_wait_s(exc)
        if hint is not None and hint > self.cfg.max_wait_s:
            failure = long_wait_failure(exc, hint, self.cfg.max_wait_s)
            raise self._error(failure.kind, failure.message, fix=failure.fix)
        if hint is not None and status_of(exc) == 429:
            self.limiter.pause(hint, f"the teacher's provider asked to wait {hint:.0f} s "
                                     f"(HTTP 429 rate limit, Retry-After)")
        return backoff_seconds(attempt_number, self.cfg.backoff_base_s, self.cfg.backoff_max_s, hint,
                               cap_s=self.cfg.max_wait_s)

    def _final_error(self, exc: Exception, task: str, attempts: int) -> Exception:
        """What a failure that is not retried (any more) raises: a 400/422 or an image refusal as it
        is (`_request` steps down on those), anything else as one clean `TeacherError`."""
        import openai

        if isinstance(exc, TeacherError):  # already one clean line (a provider's long wait)
            return exc
        if isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError)) or refuses_images(exc):
            return exc
        return self._http_error(exc, task, attempts)

    async def _retry_rest(self, task: str, body: dict[str, Any], attempts: int, estimate: int) -> Any:
        """Attempts 2..`attempts`, with backoff and full jitter between them (tenacity)."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        def wait(state) -> float:
            return self._retry_wait(state.outcome.exception(), state.attempt_number + 1)

        def before_sleep(state) -> None:
            self.stats.retries += 1
            exc = state.outcome.exception()
            log.debug("teacher %s: attempt %d failed (%s); retrying in %.2f s", task, state.attempt_number + 1,
                      type(exc).__name__, state.next_action.sleep if state.next_action else 0.0)

        try:
            async for attempt in AsyncRetrying(stop=stop_after_attempt(attempts - 1), wait=wait,
                                               retry=retry_if_exception(_retry_worthy), reraise=True,
                                               before_sleep=before_sleep):
                with attempt:
                    return await self._attempt(body, estimate)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one clean line
            raise self._final_error(exc, task, attempts) from None
        raise self._error("internal", f"teacher {task}: no attempt was made")  # pragma: no cover

    async def _attempt(self, body: dict[str, Any], estimate: int) -> Any:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.cfg.max_concurrency)
        async with self._slots:
            await self.limiter.acquire(estimate)
            self.stats.requests += 1
            completion = await self.transport(body)
        prompt, _, done = usage_tokens(completion)
        if prompt or done:
            self.limiter.settle(estimate, prompt + done)
        return completion

    def _http_error(self, exc: BaseException, task: str, attempts: int) -> TeacherError:
        failure = classify(exc, task=task, attempts=attempts, endpoint=self.base_url or "api.openai.com",
                           timeout_s=self.cfg.timeout_s, api_key_env=self.cfg.api_key_env, model=self.model)
        return self._error(failure.kind, failure.message, fix=failure.fix)
