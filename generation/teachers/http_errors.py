"""What a failed HTTP request to the teacher's endpoint means, and how long to wait before the next try.

`classify` turns an exception of the `openai` SDK into a kind (`auth`, `quota`, `rate_limit`, `server`,
`timeout`, `connection`, `http`, ...), one line of message and, for what dooms the whole run (a key
the endpoint rejects, a model it refuses, an exhausted quota), the fix the user must make. A 429 for
`insufficient_quota` is billing, not load: it is not retried. Backoff is full jitter over an
exponential window, or the server's `Retry-After` (capped) plus a little jitter.

`requested_wait_s` reads how long a provider asked to wait (`Retry-After`, `retry-after-ms`, or a
429's "try again in 6m0s"); the chat client stops the run with `long_wait_failure` when that is more
than `teacher.max_wait_s` (a spent quota window: waiting sample after sample would only stall).
"""
from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Optional

MAX_RETRY_AFTER_S = 120.0      # a provider asking for longer than this is treated as down
_RETRYABLE_STATUS = {408, 409, 429}


def retry_after_seconds(headers: Any) -> Optional[float]:
    """`retry-after-ms`, then `retry-after` (seconds or an HTTP date); None when absent or unreadable."""
    if headers is None:
        return None
    try:
        value = headers.get("retry-after-ms")
        if value is not None:
            return max(0.0, float(value) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def backoff_seconds(attempt: int, base_s: float, max_s: float, retry_after: Optional[float] = None,
                    rng: Optional[random.Random] = None, cap_s: float = MAX_RETRY_AFTER_S) -> float:
    """How long to wait before retry number `attempt` (1-based).

    Without a hint: full jitter over an exponentially growing window, `uniform(0, min(max, base·2^(n-1)))`.
    With `Retry-After`: that long (capped at `cap_s`, the chat client's `teacher.max_wait_s`) plus up to
    `base_s` of jitter, so clients told the same time do not come back in the same instant."""
    uniform = (rng or random).uniform
    if retry_after is not None:
        return min(retry_after, cap_s) + uniform(0, base_s)
    return uniform(0, min(max_s, base_s * (2 ** (attempt - 1))))


_TRY_AGAIN = re.compile(r"(?:try again|retry) in\s+((?:\d+(?:\.\d+)?\s*(?:ms|h|m|s)\s*)+)", re.I)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)", re.I)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def requested_wait_s(exc: BaseException) -> Optional[float]:
    """How long the provider asked to wait before the next request: the reply's `Retry-After` /
    `retry-after-ms` header, else a 429's "Please try again in 6m0s" (OpenAI's wording); None if it
    said nothing."""
    response = getattr(exc, "response", None)
    hint = retry_after_seconds(getattr(response, "headers", None)) if response is not None else None
    if hint is not None or status_of(exc) != 429:
        return hint
    match = _TRY_AGAIN.search(error_message(exc))
    if not match:
        return None
    return sum(float(n) * _UNIT_S[unit.lower()] for n, unit in _DURATION.findall(match.group(1)))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def long_wait_failure(exc: BaseException, wait_s: float, max_wait_s: float, now: Optional[float] = None) -> Failure:
    """The run-stopping failure of a provider that asked to wait `wait_s`, more than `max_wait_s`: what it
    asked, and when to rerun (UTC)."""
    status = status_of(exc)
    asked = f"HTTP {status}" if status else type(exc).__name__
    code = error_code(exc)
    if code:
        asked += f" {code}"
    header = getattr(getattr(exc, "response", None), "headers", None)
    if header is not None and header.get("retry-after") is not None:
        asked += f", Retry-After: {header.get('retry-after')}"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((now or time.time()) + wait_s + 59))
    return Failure("long_wait",
                   f"the teacher's provider asked to wait {_duration(wait_s)} ({asked}: {error_message(exc)}), "
                   f"longer than teacher.max_wait_s={max_wait_s:g} s",
                   fix=f"wait until {when} (or raise teacher.max_wait_s above {wait_s:.0f})")


def status_of(exc: BaseException) -> Optional[int]:
    return getattr(exc, "status_code", None)


def error_body(exc: BaseException) -> dict[str, Any]:
    """The `error` object of the reply's JSON body (or the body itself), {} when there is none."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def error_message(exc: BaseException) -> str:
    """What the server said went wrong: its JSON error message, else the exception's."""
    inner = error_body(exc)
    if inner.get("message"):
        return str(inner["message"])
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(getattr(exc, "message", None) or exc)


def is_retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    status = status_of(exc)
    if status is None:
        return False
    if status == 429 and error_code(exc) == "insufficient_quota":
        return False  # billing, not load: waiting will not help
    return status in _RETRYABLE_STATUS or status >= 500


def error_code(exc: BaseException) -> Optional[str]:
    code = getattr(exc, "code", None) or error_body(exc).get("code")
    return str(code) if code else None


def connect_failure(exc: BaseException) -> Optional[str]:
    """The root cause when a request failed to connect at all (refused, DNS, unreachable), else None.

    The SDK's aiohttp transport reports a refused connection as a connect *timeout*; the cause chain
    tells them apart."""
    import openai

    if not isinstance(exc, openai.APIConnectionError):
        return None
    chain, seen = [], set()
    cause: Optional[BaseException] = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for item in chain:
        if isinstance(item, (ConnectionRefusedError, ConnectionResetError)) or \
                type(item).__name__ in ("ClientConnectorError", "ClientConnectorDNSError", "ConnectError"):
            return str(chain[-1]) or type(chain[-1]).__name__
    return None


def unsupported_param(exc: BaseException) -> Optional[str]:
    """Which request feature a 400/422 refused: `response_format`, `max_tokens` or `temperature`."""
    if status_of(exc) not in (400, 422):
        return None
    message = error_message(exc).lower()
    param = str(getattr(exc, "param", None) or "").lower()
    if param == "response_format" or any(k in message for k in ("response_format", "json_schema", "json_object",
                                                                 "structured output", "guided_json")):
        return "response_format"
    if "max_tokens" in (param, message) or ("max_tokens" in message and "max_completion_tokens" in message):
        return "max_tokens"
    if param == "temperature" or ("temperature" in message and ("unsupported" in message or "not support" in message)):
        return "temperature"
    return None


@dataclass(frozen=True)
class Failure:
    """What a request that failed for good means: `kind` (counted in the teacher's stats), one line of
    `message`, and `fix` when the failure dooms the whole run (the user must act before a rerun)."""

    kind: str
    message: str
    fix: Optional[str] = None


def classify(exc: BaseException, *, task: str, attempts: int, endpoint: str, timeout_s: float,
             api_key_env: str, model: str) -> Failure:
    """`exc` (after `attempts` tries of `task`) as a `Failure`."""
    import openai

    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    status = status_of(exc)
    refused = connect_failure(exc)
    if refused is not None:
        return Failure("connection", f"cannot reach the teacher at {endpoint} {tries}: {refused}")
    if isinstance(exc, openai.APITimeoutError):
        return Failure("timeout", f"teacher request timed out {tries} (timeout_s={timeout_s}, {task})")
    if isinstance(exc, openai.APIConnectionError):
        return Failure("connection", f"teacher connection failed {tries}: {error_message(exc)}")
    if status == 401:
        return Failure("auth", f"teacher rejected the API key (HTTP 401); check the environment variable {api_key_env}",
                       fix=f"set {api_key_env} to a valid key")
    if status == 403:
        return Failure("auth", f"teacher refused access (HTTP 403): {error_message(exc)}",
                       fix=f"use a key (${api_key_env}) that may call model {model}")
    if status == 429 and error_code(exc) == "insufficient_quota":
        return Failure("quota", f"teacher quota exhausted (HTTP 429 insufficient_quota): {error_message(exc)}",
                       fix="add credit to the account or use another key")
    if status == 429:
        return Failure("rate_limit", f"teacher rate-limited (HTTP 429) {tries}: {error_message(exc)}")
    if status is not None and status >= 500:
        return Failure("server", f"teacher server error (HTTP {status}) {tries}: {error_message(exc)}")
    if status is not None:
        return Failure("http", f"teacher request failed (HTTP {status}): {error_message(exc)}")
    return Failure("internal", f"teacher request failed: {type(exc).__name__}: {exc}")
