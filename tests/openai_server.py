"""A local OpenAI-compatible chat server for tests and benchmarks (real HTTP, real `openai` client).

    with OpenAICompatServer(latency_s=0.0) as server:
        server.script("rationale_step", ok({"thought": ..., ...}), error(429, retry_after="1"))
        teacher = OpenAITeacher(TeacherConfig(kind="openai", base_url=server.url), api_key="sk-test")

Every POST to `/v1/chat/completions` is classified into a *task* (the `json_schema` name of its
`response_format`, else the `"title"` of the JSON schema the prompt quotes). Scripted replies are queued
per task and popped one per request; when a task's queue is empty the default reply for that task
answers (`default_reply`, or the `defaults` you pass). A reply can be a JSON object (sent as the message
content), raw text (malformed JSON), an HTTP error with headers (429 + `Retry-After`, 500, 401 that
echoes the key it got), a delay (slower than the client's timeout), or a refusal of `response_format`.

The server records every request (`requests`, `count(task)`) and the most requests it ever had in
flight at once (`max_in_flight`). It runs in a background thread with its own event loop, or as a
process: `python tests/openai_server.py --latency 0.5 --port 0` prints its URL and serves until killed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from aiohttp import web

_TITLE = re.compile(r'"title":\s*"([a-z_]+)"')
_FAST_NAME = re.compile(rb'"json_schema":\s*\{"name":\s*"([a-z_]+)"')
_FAST_TITLE = re.compile(rb'\\?"title\\?":\s*\\?"([a-z_]+)')
# The teacher's one schema for every task (generation/teachers/reply_schema.py): the task is the last
# "Task: <name>" line of the prompt (generation/prompts/task_*.j2).
_SHARED_SCHEMA = "teacher_reply"
_TASK_LINE = re.compile(r"Task: ([a-z_]+)")
_FAST_TASK_LINE = re.compile(rb"Task: ([a-z_]+)")


def _message_texts(payload: dict[str, Any]):
    """(message, text) for each text of each message: a string content, or each text block of a list."""
    for message in payload.get("messages", []):
        content = message.get("content")
        texts = [content] if isinstance(content, str) else [
            block.get("text", "") for block in content or [] if isinstance(block, dict)]
        for text in texts:
            yield message, text or ""


def _task_of_shared(payload: dict[str, Any]) -> str:
    found = "unknown"
    for message, text in _message_texts(payload):
        matches = _TASK_LINE.findall(text)
        if matches and message.get("role") == "user":
            found = matches[-1]
    return found


@dataclass
class Reply:
    """One scripted answer to one request."""

    content: Union[str, dict, None] = None  # dict → JSON text; str → sent as is (may be malformed)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    error_message: str = ""
    delay_s: float = 0.0  # on top of the server's latency
    prompt_tokens: int = 100
    completion_tokens: int = 20
    echo_key: bool = False  # error body quotes the Authorization header (like a careless proxy)
    error_code: Optional[str] = None  # the error body's "code", e.g. "insufficient_quota"
    refusal: Optional[str] = None  # a structured-output refusal: content null, message.refusal set


def ok(content: Union[str, dict], prompt_tokens: int = 100, completion_tokens: int = 20,
       delay_s: float = 0.0) -> Reply:
    return Reply(content=content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                 delay_s=delay_s)


def error(status: int, message: str = "", retry_after: Optional[str] = None, echo_key: bool = False,
          code: Optional[str] = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status=status, error_message=message or f"scripted HTTP {status}", headers=headers,
                 echo_key=echo_key, error_code=code)


def slow(delay_s: float, content: Union[str, dict, None] = None) -> Reply:
    return Reply(content=content if content is not None else {}, delay_s=delay_s)


def classify(payload: dict[str, Any]) -> str:
    """The task of a chat request: its json_schema name, else the schema title quoted in the prompt."""
    fmt = payload.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        name = str(fmt.get("json_schema", {}).get("name", "unknown"))
        return _task_of_shared(payload) if name == _SHARED_SCHEMA else name
    task = _task_of_shared(payload)  # the teacher's conversation without a server-side schema
    if task != "unknown":
        return task
    for _, text in _message_texts(payload):
        match = _TITLE.search(text)
        if match:
            return _task_of_shared(payload) if match.group(1) == _SHARED_SCHEMA else match.group(1)
        if "scene graph" in text.lower():
            return "caption"  # operators' image_caption/vlm prompt (generation/prompts/caption_scene_graph.txt)
    return "unknown"


def default_reply(task: str, payload: dict[str, Any]) -> Reply:
    """A valid reply for every task the teacher asks, so unscripted calls succeed."""
    content: dict[str, Any]
    if task == "rationale_step":
        content = {"thought": "The image shows what the question asks about.", "operators": [], "labels": [],
                   "rag": {"needed": False, "query": None}, "next_action": "final_answer"}
    elif task == "reflection_general":
        content = {"reason": None}
    elif task == "reflection_math":
        content = {"reason": None, "thought": None}
    elif task == "final_answer":
        content = {"answer": "yes"}
    elif task == "caption":
        content = {"scene_graph": {"objects": ["tower", "sky"], "attributes": {"tower": ["tall", "iron"]},
                                   "relationships": [["tower", "under", "sky"]]},
                   "caption": "A tall iron tower stands under a clear sky."}
    elif task == "judge":
        content = {"coherence": 1.0, "relevance": 1.0, "accuracy": 1.0}
    else:
        content = {}
    return ok(content)


class OpenAICompatServer:
    def __init__(self, latency_s: float = 0.0, host: str = "127.0.0.1", port: int = 0,
                 defaults: Optional[dict[str, Reply]] = None,
                 default_fn: Callable[[str, dict], Reply] = default_reply,
                 json_schema: bool = True, json_object: bool = True,
                 expected_key: Optional[str] = None, model: str = "local-test-model",
                 reject_params: tuple[str, ...] = (), prefix_cache: Any = None) -> None:
        self.latency_s = latency_s
        self.host, self.port = host, port
        self.defaults = dict(defaults or {})
        self.default_fn = default_fn
        self.json_schema = json_schema  # False: 400 for response_format json_schema (old vLLM / Ollama)
        self.json_object = json_object
        self.expected_key = expected_key  # set: 401 unless `Authorization: Bearer <expected_key>`
        self.model = model
        self.reject_params = reject_params  # e.g. ("max_tokens",): 400 like OpenAI's reasoning models
        # A tests.prefix_cache.PrefixCache: usage counts the prompt's tokens and reports the cached ones
        # (`prompt_tokens_details.cached_tokens`) the way OpenAI does, instead of the scripted counts.
        self.prefix_cache = prefix_cache
        self.requests: list[dict[str, Any]] = []  # {"task", "payload", "status", "t"}
        self.in_flight = 0
        self.max_in_flight = 0
        self._queues: dict[str, deque[Reply]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self._ids = 0
        self._fast_cache: dict[str, bytes] = {}

    # -- scripting -------------------------------------------------------------------------------
    def script(self, task: str, *replies: Reply) -> "OpenAICompatServer":
        with self._lock:
            self._queues[task].extend(replies)
        return self

    def count(self, task: Optional[str] = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if task is None or r["task"] == task)

    def payloads(self, task: Optional[str] = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r["payload"] for r in self.requests if task is None or r["task"] == task]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def _next_reply(self, task: str, payload: dict) -> Reply:
        with self._lock:
            queue = self._queues.get(task)
            if queue:
                return queue.popleft()
        if task in self.defaults:
            return self.defaults[task]
        return self.default_fn(task, payload)

    # -- HTTP ------------------------------------------------------------------------------------
    def _app(self, fast: bool = False) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat_fast if fast else self._chat)
        app.router.add_get("/v1/models", self._models)
        return app

    def _auth_error(self, request: web.Request) -> Optional[web.Response]:
        if self.expected_key is None:
            return None
        got = request.headers.get("Authorization", "")
        if got == f"Bearer {self.expected_key}":
            return None
        # Like OpenAI, quote (part of) the key it got: the client must redact it.
        body = {"error": {"message": f"Incorrect API key provided: {got.removeprefix('Bearer ')}.",
                          "type": "invalid_request_error", "code": "invalid_api_key", "param": None}}
        return web.json_response(body, status=401)

    async def _models(self, request: web.Request) -> web.Response:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "tests"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        task = classify(payload)
        record = {"task": task, "payload": payload, "status": 0, "t": time.monotonic()}
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, payload, task, record)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _chat_fast(self, request: web.Request) -> web.Response:
        """Benchmark mode: default replies only, no parsing beyond a regex, no recording, bytes prebuilt."""
        body = await request.read()
        match = _FAST_NAME.search(body) or _FAST_TITLE.search(body)
        task = match.group(1).decode() if match else "unknown"
        if task == _SHARED_SCHEMA:
            lines = _FAST_TASK_LINE.findall(body)
            task = lines[-1].decode() if lines else "unknown"
        cached = self._fast_cache.get(task)
        if cached is None:
            reply = self.defaults.get(task) or self.default_fn(task, {})
            content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
            cached = json.dumps({
                "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": self.model,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": content, "refusal": None}}],
                "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                          "total_tokens": reply.prompt_tokens + reply.completion_tokens},
            }).encode()
            self._fast_cache[task] = cached
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        return web.Response(body=cached, content_type="application/json")

    async def _answer(self, request: web.Request, payload: dict, task: str, record: dict) -> web.StreamResponse:
        denied = self._auth_error(request)
        if denied is not None:
            record["status"] = 401
            return denied
        fmt = (payload.get("response_format") or {}).get("type")
        if (fmt == "json_schema" and not self.json_schema) or (fmt == "json_object" and not self.json_object):
            record["status"] = 400
            return web.json_response({"error": {
                "message": f"response_format type '{fmt}' is not supported by this server",
                "type": "invalid_request_error", "param": "response_format", "code": None}}, status=400)
        for param in self.reject_params:
            if param in payload:
                record["status"] = 400
                hint = " Use 'max_completion_tokens' instead." if param == "max_tokens" else ""
                return web.json_response({"error": {
                    "message": f"Unsupported parameter: '{param}' is not supported with this model.{hint}",
                    "type": "invalid_request_error", "param": param, "code": "unsupported_parameter"}}, status=400)
        reply = self._next_reply(task, payload)
        delay = self.latency_s + reply.delay_s
        if delay > 0:
            await asyncio.sleep(delay)
        record["status"] = reply.status
        if reply.status != 200:
            message = reply.error_message
            if reply.echo_key:
                message += f" (got Authorization: {request.headers.get('Authorization', '')})"
            body = {"error": {"message": message, "type": "server_error" if reply.status >= 500 else
                              "invalid_request_error", "param": None, "code": reply.error_code}}
            return web.json_response(body, status=reply.status, headers=reply.headers)
        content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
        if reply.refusal is not None or reply.content is None:
            content = None
        with self._lock:
            self._ids += 1
            ident = self._ids
        usage: dict[str, Any] = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                                 "total_tokens": reply.prompt_tokens + reply.completion_tokens}
        if self.prefix_cache is not None:
            prompt, cached = self.prefix_cache.account(payload)
            record["prompt_tokens"], record["cached_tokens"] = prompt, cached
            usage = {"prompt_tokens": prompt, "completion_tokens": reply.completion_tokens,
                     "total_tokens": prompt + reply.completion_tokens,
                     "prompt_tokens_details": {"cached_tokens": cached}}
        return web.json_response({
            "id": f"chatcmpl-{ident}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model") or self.model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": reply.refusal}}],
            "usage": usage,
        }, headers=reply.headers)

    # -- lifecycle -------------------------------------------------------------------------------
    async def _start(self, fast: bool = False) -> None:
        self._runner = web.AppRunner(self._app(fast), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=4096)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> "OpenAICompatServer":
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            loop.close()

        self._thread = threading.Thread(target=serve, name="openai-compat-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> "OpenAICompatServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def spawn(latency: float, step_action: str = "continue") -> tuple[Any, str]:
    """This server in its own process (benchmarks: its CPU is not the client's); returns (process, URL).
    The caller terminates the process."""
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--latency", str(latency),
                             "--step-action", step_action], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if not url.startswith("http"):
        proc.kill()
        raise RuntimeError("the OpenAI-compatible test server did not start")
    return proc, url


def main() -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI-compatible server: every call answers after a fixed latency.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds before every reply")
    parser.add_argument("--step-action", choices=("continue", "final_answer"), default="final_answer",
                        help="next_action of every rationale step (continue: the step limit ends the reasoning)")
    parser.add_argument("--record", action="store_true",
                        help="parse and record every request (slower); default: benchmark mode, default replies only")
    args = parser.parse_args()
    step = default_reply("rationale_step", {})
    step.content = {**step.content, "next_action": args.step_action}  # type: ignore[dict-item]

    async def run() -> None:
        server = OpenAICompatServer(latency_s=args.latency, host=args.host, port=args.port,
                                    defaults={"rationale_step": step})
        await server._start(fast=not args.record)
        print(server.url, flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop  # type: ignore[import-not-found]
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run())


if __name__ == "__main__":
    main()
