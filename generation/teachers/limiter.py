"""Requests-per-minute and tokens-per-minute limits for the teacher, shared by every sample in flight.

Two token buckets (requests, tokens) that refill continuously. A bucket holds `burst_s` seconds of its
rate, so a fresh run does not fire a whole minute's budget in its first second (providers enforce
limits at a finer grain than the minute they quote). A request that needs more tokens than the bucket
holds waits for a full bucket and then runs into debt, so big prompts are slowed, never starved.
Token costs are estimated before a call and settled with the real usage after it.

A 429 pauses everybody: `pause(seconds, why)` holds every later `acquire` until the provider's
`Retry-After` has passed, instead of letting a thousand samples hammer a limit one by one.
Waiters are served in arrival order. A pause is announced once to the wait listeners (the run's
progress line: `listen_to_waits`) with why, and cleared when it is over.
"""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import contextmanager
from typing import Awaitable, Callable, Iterator, Optional

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
log = logging.getLogger("mmat.teacher")
_WAIT_LISTENERS: list[Callable[[str], None]] = []


@contextmanager
def listen_to_waits(listener: Callable[[str], None]) -> Iterator[None]:
    """Call `listener(text)` when a provider pauses the run (text says why and how long) and
    `listener("")` when the run goes on; the runner's progress line listens while a run lasts."""
    _WAIT_LISTENERS.append(listener)
    try:
        yield
    finally:
        _WAIT_LISTENERS.remove(listener)


def announce_wait(text: str) -> None:
    for listener in list(_WAIT_LISTENERS):
        try:
            listener(text)
        except Exception:  # noqa: BLE001 - a display must never fail a request
            log.debug("wait listener failed", exc_info=True)


class TokenBucket:
    def __init__(self, per_minute: float, burst_s: float = 5.0, clock: Clock = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0  # units per second
        self.capacity = max(1.0, self.rate * burst_s)
        self.level = self.capacity
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` (capped at the capacity) is available; 0 when it is now."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """`await acquire(tokens)` before a request; `settle(estimated, actual)` after it."""

    def __init__(self, requests_per_minute: Optional[float] = None, tokens_per_minute: Optional[float] = None,
                 burst_s: float = 5.0, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.requests = TokenBucket(requests_per_minute, burst_s, clock) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute, burst_s, clock) if tokens_per_minute else None
        self._clock = clock
        self._sleep = sleep
        self._resume_at = 0.0
        self._announced = False
        self._lock: Optional[asyncio.Lock] = None
        self.waited_s = 0.0  # total time callers spent waiting here (for the run's stats)

    @property
    def active(self) -> bool:
        return self.requests is not None or self.tokens is not None

    def pause(self, seconds: float, why: str = "") -> None:
        """Hold every later acquire for `seconds` (a provider asked us to back off). The first of a run of
        overlapping pauses is announced (`why`) and logged once, not once per sample that got the 429."""
        if seconds <= 0:
            return
        now = self._clock()
        if self._resume_at <= now and why:
            log.warning("%s: every request waits", why)
            announce_wait(f"waiting {seconds:.0f} s: {why}")
            self._announced = True
        self._resume_at = max(self._resume_at, now + seconds)

    def _resumed(self) -> None:
        if self._announced and self._resume_at <= self._clock():
            self._announced = False
            announce_wait("")

    async def acquire(self, tokens: float = 0.0) -> None:
        if not self.active and self._resume_at <= self._clock():
            self._resumed()
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # FIFO: asyncio.Lock wakes waiters in order
            while True:
                delay = max(0.0, self._resume_at - self._clock())
                if self.requests is not None:
                    delay = max(delay, self.requests.wait_time(1))
                if self.tokens is not None:
                    delay = max(delay, self.tokens.wait_time(tokens))
                if delay <= 0:
                    break
                self.waited_s += delay
                await self._sleep(delay)
            self._resumed()
            if self.requests is not None:
                self.requests.take(1)
            if self.tokens is not None:
                self.tokens.take(tokens)

    def settle(self, estimated: float, actual: float) -> None:
        """Correct the token bucket once the real usage is known."""
        if self.tokens is None or actual == estimated:
            return
        if actual > estimated:
            self.tokens.take(actual - estimated)
        else:
            self.tokens.give_back(estimated - actual)
