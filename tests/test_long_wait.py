"""Issue 30: a provider that asks to wait. Longer than `teacher.max_wait_s` (a spent quota window,
`Retry-After: 3600`): the run stops at once, exit 2, one line saying what the provider asked and when to
rerun. Shorter (`Retry-After: 2`): every request pauses once, together, and the run says it is waiting
and why, once, not sample after sample."""
from __future__ import annotations

import asyncio
import time

import pytest

from generation.config import TeacherConfig
from generation.teachers.base import TeacherFatalError
from generation.teachers.chat_client import ChatClient
from generation.teachers.http_errors import requested_wait_s
from generation.teachers.limiter import listen_to_waits
from generation.teachers.replies import SCHEMAS, AnswerReply
from tests.openai_server import OpenAICompatServer, error, ok
from tests.runner_support import mmat, mmat_env, source, write_config

KEY = "sk-test-wait-0123456789"


def _config(tmp_path, server, **teacher):
    return write_config(tmp_path / "cfg.yaml", [source("cauldron")], teacher={
        "kind": "openai", "model": "gpt-4o", "base_url": server.url, "max_retries": 3, "backoff_base_s": 0.05,
        "max_concurrency": 4, **teacher})


def test_a_wait_beyond_max_wait_stops_the_run_at_once_with_when_to_rerun(tmp_path):
    with OpenAICompatServer(defaults={"rationale_step": error(429, "Rate limit reached for requests",
                                                              retry_after="3600")}) as server:
        config = _config(tmp_path, server)
        start = time.monotonic()
        result = mmat("generate", "--config", config, "--out", tmp_path / "out", "--quiet", cwd=tmp_path,
                      env=mmat_env(OPENAI_API_KEY=KEY), timeout=240)
        elapsed = time.monotonic() - start
        sent = server.count()
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "asked to wait" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    line = lines[0]
    assert "60 min" in line and "Retry-After: 3600" in line and "teacher.max_wait_s=300" in line
    assert "wait until 20" in line and "UTC" in line and "rerun the same command" in line
    assert "Traceback" not in result.stderr
    assert sent <= 4  # the requests in flight when the first answer came; nothing sent after it
    assert elapsed < 120  # at once: no waits stacked sample after sample


def test_the_limit_is_the_configured_max_wait(tmp_path):
    with OpenAICompatServer(defaults={"rationale_step": error(429, retry_after="20")}) as server:
        result = mmat("generate", "--config", _config(tmp_path, server, max_wait_s=5), "--out", tmp_path / "out",
                      "--quiet", cwd=tmp_path, env=mmat_env(OPENAI_API_KEY=KEY), timeout=240)
    assert result.returncode == 2 and "asked to wait 20 s" in result.stderr and "max_wait_s=5" in result.stderr


def test_a_short_wait_pauses_every_request_once_and_says_so():
    heard: list[str] = []
    with OpenAICompatServer() as server:
        server.script("final_answer", *[error(429, "slow down", retry_after="2") for _ in range(4)])
        cfg = TeacherConfig(kind="openai", model="gpt-4o", base_url=server.url, max_retries=3, backoff_base_s=0.05)

        async def run():
            chat = ChatClient(cfg, api_key=KEY, base_url=server.url)
            try:
                return await asyncio.gather(*[chat.complete_json("final_answer", "sys", f"question {i}", [],
                                                                 SCHEMAS["final_answer"], AnswerReply)
                                              for i in range(4)])
            finally:
                await chat.aclose()

        with listen_to_waits(heard.append):
            replies = asyncio.run(run())
        first = min(r["t"] for r in server.requests)
        times = sorted(r["t"] for r in server.requests if r["status"] == 200)
        elapsed = times[-1] - first
    assert [reply.answer for reply, _ in replies] == ["yes"] * 4
    waits = [text for text in heard if text]
    assert len(waits) == 1 and "waiting 2 s" in waits[0] and "HTTP 429" in waits[0]
    assert heard[-1] == ""  # the line is cleared when the run goes on
    assert 2.0 <= elapsed < 3.5  # one pause of 2 s for all four, not 4 x 2 s
    assert times[-1] - times[0] < 1.0  # and they went on together


def test_the_wait_a_provider_asks_for_is_read_from_headers_and_messages():
    import httpx
    import openai

    def status_error(headers, message="Rate limit reached", code=None):
        request = httpx.Request("POST", "http://x/v1/chat/completions")
        response = httpx.Response(429, headers=headers, request=request)
        return openai.RateLimitError(message, response=response, body={"error": {"message": message, "code": code}})

    assert requested_wait_s(status_error({"retry-after": "3600"})) == 3600
    assert requested_wait_s(status_error({"retry-after-ms": "1500"})) == 1.5
    assert requested_wait_s(status_error({}, "Limit reached on tokens per day. Please try again in 6m30s.")) == 390
    assert requested_wait_s(status_error({}, "Please try again in 1h2m")) == 3720
    assert requested_wait_s(status_error({}, "Please try again in 120ms")) == pytest.approx(0.12)
    assert requested_wait_s(status_error({}, "no hint")) is None


def test_a_long_wait_is_a_fatal_error_that_sends_nothing_more():
    with OpenAICompatServer() as server:
        server.script("final_answer", error(429, "quota window spent", retry_after="7200"))
        cfg = TeacherConfig(kind="openai", model="gpt-4o", base_url=server.url, max_retries=5, max_wait_s=60)

        async def run():
            chat = ChatClient(cfg, api_key=KEY, base_url=server.url)
            try:
                with pytest.raises(TeacherFatalError) as first:
                    await chat.complete_json("final_answer", "s", "u", [], SCHEMAS["final_answer"], AnswerReply)
                with pytest.raises(TeacherFatalError):
                    await chat.complete_json("final_answer", "s", "u", [], SCHEMAS["final_answer"], AnswerReply)
                return first.value
            finally:
                await chat.aclose()

        fatal = asyncio.run(run())
        assert server.count() == 1
    assert "asked to wait 2.0 h" in str(fatal) and "Retry-After: 7200" in str(fatal) and "UTC" in fatal.fix
