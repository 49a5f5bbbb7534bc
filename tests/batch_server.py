"""The OpenAI Files and Batches endpoints on top of the local chat test server (real HTTP, real `openai`).

    with BatchServer() as server:
        server.plan(BatchPlan(states=("validating", "in_progress", "expired"), done=2))
        ... TeacherConfig(kind="openai", base_url=server.url, batch=True, ...)

Serves `POST /v1/files` (multipart upload), `GET /v1/files/{id}/content`, `POST /v1/batches`,
`GET /v1/batches/{id}`, `GET /v1/batches` (newest first, `limit`/`after`), `POST /v1/batches/{id}/cancel`.
Each created batch follows a scripted `BatchPlan` (queued with `plan`, else the default
validating → in_progress → finalizing → completed): every `retrieve` moves it one state on. When it
reaches its last state its lines are answered by the chat server's own reply logic (`script`,
`defaults`, `default_fn` of `OpenAICompatServer`): a 200 reply goes to the output file, any other to
the error file; `expired` and `cancelled` answer only the first `done` lines, `failed` none.

What tests read: `submitted` (every custom_id in every created batch, in order: a request sent twice
shows twice), `batches` (by id), `uploads` (file id → bytes), `creates` (how many `batches.create`).
`create_delay_s` makes `batches.create` record the batch and then wait before answering (a client
killed in that window never learns the id). Also a process: `python tests/batch_server.py` prints its
URL and serves until killed; `--state-file PATH` writes the submitted ids there after every create.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openai_server import OpenAICompatServer, classify  # noqa: E402


@dataclass
class BatchPlan:
    """How one batch goes: the states its `retrieve`s walk through (the last one final), how many of its
    lines are answered when it ends `expired` or `cancelled`, and the errors of a `failed` one."""

    states: tuple[str, ...] = ("validating", "in_progress", "finalizing", "completed")
    done: Optional[int] = None  # expired/cancelled: lines answered (default: none)
    errors: list[dict[str, Any]] = field(default_factory=lambda: [
        {"code": "invalid_json_line", "message": "line 1 is not valid JSON", "line": 1}])


class BatchServer(OpenAICompatServer):
    def __init__(self, *args: Any, create_delay_s: float = 0.0, state_file: Optional[str] = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.create_delay_s = create_delay_s
        self.state_file = state_file
        self.uploads: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.submitted: list[str] = []
        self.creates = 0
        self._plans: list[BatchPlan] = []
        self._steps: dict[str, list[str]] = {}
        self._plan_of: dict[str, BatchPlan] = {}
        self._n = 0

    def plan(self, *plans: BatchPlan) -> "BatchServer":
        with self._lock:
            self._plans.extend(plans)
        return self

    def _new_id(self, prefix: str) -> str:
        with self._lock:
            self._n += 1
            return f"{prefix}-{self._n:05d}"

    def _app(self, fast: bool = False) -> web.Application:
        app = super()._app(fast)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{fid}/content", self._content)
        app.router.add_post("/v1/batches", self._create)
        app.router.add_get("/v1/batches", self._list)
        app.router.add_get("/v1/batches/{bid}", self._retrieve)
        app.router.add_post("/v1/batches/{bid}/cancel", self._cancel)
        return app

    # -- files -----------------------------------------------------------------------------------
    async def _upload(self, request: web.Request) -> web.Response:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        form = await request.post()
        upload = form["file"]
        data = upload.file.read() if hasattr(upload, "file") else bytes(upload)
        fid = self._new_id("file")
        self.uploads[fid] = data
        return web.json_response({"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                  "filename": getattr(upload, "filename", "input.jsonl"),
                                  "purpose": form.get("purpose", ""), "status": "processed"})

    async def _content(self, request: web.Request) -> web.Response:
        data = self.uploads.get(request.match_info["fid"])
        if data is None:
            return web.json_response({"error": {"message": "no such file", "type": "invalid_request_error"}},
                                     status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    # -- batches ---------------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        payload = await request.json()
        data = self.uploads.get(payload["input_file_id"])
        if data is None:
            return web.json_response({"error": {"message": "input file not found", "type": "invalid_request_error"}},
                                     status=400)
        bid = self._new_id("batch")
        with self._lock:
            plan = self._plans.pop(0) if self._plans else BatchPlan()
            self.creates += 1
            lines = [json.loads(raw) for raw in data.splitlines() if raw.strip()]
            self.submitted.extend(line["custom_id"] for line in lines)
        now = int(time.time())
        self.batches[bid] = {
            "id": bid, "object": "batch", "endpoint": payload["endpoint"], "errors": None,
            "input_file_id": payload["input_file_id"], "completion_window": payload["completion_window"],
            "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
            "metadata": payload.get("metadata") or {}, "request_counts": {"total": len(lines), "completed": 0,
                                                                          "failed": 0}}
        self._plan_of[bid] = plan
        self._steps[bid] = list(plan.states)
        self._write_state()
        if self.create_delay_s:
            await asyncio.sleep(self.create_delay_s)
        return web.json_response(self.batches[bid])

    def _write_state(self) -> None:
        if self.state_file:
            tmp = Path(self.state_file + ".tmp")
            tmp.write_text(json.dumps({"submitted": self.submitted, "creates": self.creates}))
            tmp.replace(self.state_file)

    async def _retrieve(self, request: web.Request) -> web.Response:
        bid = request.match_info["bid"]
        batch = self.batches.get(bid)
        if batch is None:
            return web.json_response({"error": {"message": "no such batch", "type": "invalid_request_error"}},
                                     status=404)
        steps = self._steps[bid]
        if steps and batch["status"] not in ("completed", "failed", "expired", "cancelled"):
            batch["status"] = steps.pop(0)
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                self._finish(batch, self._plan_of[bid])
        return web.json_response(batch)

    async def _cancel(self, request: web.Request) -> web.Response:
        bid = request.match_info["bid"]
        batch = self.batches[bid]
        batch["status"] = "cancelling"
        self._steps[bid] = ["cancelled"]
        return web.json_response(batch)

    async def _list(self, request: web.Request) -> web.Response:
        limit = int(request.query.get("limit", 20))
        after = request.query.get("after")
        items = sorted(self.batches.values(), key=lambda b: b["id"], reverse=True)
        if after:
            items = [b for b in items if b["id"] < after]
        page = items[:limit]
        return web.json_response({"object": "list", "data": page, "has_more": len(items) > limit,
                                  "first_id": page[0]["id"] if page else None,
                                  "last_id": page[-1]["id"] if page else None})

    # -- answering the lines ---------------------------------------------------------------------
    def _finish(self, batch: dict[str, Any], plan: BatchPlan) -> None:
        status = batch["status"]
        lines = [json.loads(raw) for raw in self.uploads[batch["input_file_id"]].splitlines() if raw.strip()]
        if status == "failed":
            batch["errors"] = {"object": "list", "data": plan.errors}
            return
        if status in ("expired", "cancelled"):
            lines = lines[:plan.done or 0]
        out, err = [], []
        for line in lines:
            answer = self._answer_line(line)
            (out if answer["response"]["status_code"] == 200 else err).append(answer)
        for key, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = self._new_id("file")
                self.uploads[fid] = "".join(json.dumps(row) + "\n" for row in reversed(rows)).encode()
                batch[key] = fid  # output order does not follow input order, as on OpenAI
        batch["request_counts"].update(completed=len(out), failed=len(err))

    def _answer_line(self, line: dict[str, Any]) -> dict[str, Any]:
        payload = line["body"]
        task = classify(payload)
        reply = self._next_reply(task, payload)
        record = {"task": task, "payload": payload, "status": reply.status, "t": time.monotonic(), "via": "batch"}
        with self._lock:
            self.requests.append(record)
            self._ids += 1
            ident = self._ids
        if reply.status != 200:
            body = {"error": {"message": reply.error_message, "type": "invalid_request_error",
                              "param": None, "code": reply.error_code}}
        else:
            content = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
            body = {"id": f"chatcmpl-{ident}", "object": "chat.completion", "created": int(time.time()),
                    "model": payload.get("model") or self.model,
                    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                 "message": {"role": "assistant", "content": content, "refusal": None}}],
                    "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                              "total_tokens": reply.prompt_tokens + reply.completion_tokens}}
            cache = getattr(self, "prefix_cache", None)  # tests.prefix_cache: tokens counted as OpenAI does
            if cache is not None:
                prompt, cached = cache.account(payload)
                record["prompt_tokens"], record["cached_tokens"] = prompt, cached
                body["usage"] = {"prompt_tokens": prompt, "completion_tokens": reply.completion_tokens,
                                 "total_tokens": prompt + reply.completion_tokens,
                                 "prompt_tokens_details": {"cached_tokens": cached}}
        return {"id": f"batch_req_{ident}", "custom_id": line["custom_id"], "error": None,
                "response": {"status_code": reply.status, "request_id": f"req_{ident}", "body": body}}


def main() -> None:
    parser = argparse.ArgumentParser(description="Local OpenAI chat + Files + Batches server for tests.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", default=None)
    args = parser.parse_args()

    async def run() -> None:
        server = BatchServer(port=args.port, state_file=args.state_file)
        await server._start()
        print(server.url, flush=True)
        await asyncio.Event().wait()

    asyncio.run(run())


if __name__ == "__main__":
    main()
