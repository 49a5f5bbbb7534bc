"""A recording HTTP proxy at the network edge: the engine talks to it, it forwards every request
unchanged to a real server (llama.cpp) and keeps a copy of each request and reply.

    with RecordingProxy(server.url) as proxy:        # server.url: http://127.0.0.1:PORT
        teacher_cfg = {..., "base_url": proxy.url + "/v1"}
        ...
        chats = proxy.chat_exchanges()              # [(request body, status, reply body), ...]

Nothing is scripted: the replies are the real server's. Runs in a background thread with its own
event loop, on 127.0.0.1 and a free port.
"""
from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any, Optional

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@dataclass
class Exchange:
    method: str
    path: str
    request: Any  # parsed JSON body, or None
    status: int
    reply: Any  # parsed JSON body, or the raw text


class RecordingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._session: Optional[aiohttp.ClientSession] = None
        self._thread: Optional[threading.Thread] = None
        self.url = ""

    # -- recorded traffic --------------------------------------------------------------------------
    def chat_exchanges(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.path.endswith("/chat/completions")]

    def clear(self) -> None:
        with self._lock:
            self.exchanges.clear()

    # -- server ------------------------------------------------------------------------------------
    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        assert self._session is not None
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body or None,
                                         headers=headers) as reply:
            payload = await reply.read()
            status = reply.status
            content_type = reply.headers.get("Content-Type", "application/json")
        try:
            parsed_request = json.loads(body) if body else None
        except ValueError:
            parsed_request = None
        try:
            parsed_reply = json.loads(payload)
        except ValueError:
            parsed_reply = payload.decode("utf-8", "replace")
        with self._lock:
            self.exchanges.append(Exchange(request.method, request.path, parsed_request, status, parsed_reply))
        return web.Response(body=payload, status=status, content_type=content_type.split(";")[0])

    def __enter__(self) -> "RecordingProxy":
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)

            async def start() -> None:
                self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
                app = web.Application(client_max_size=64 * 1024 * 1024)
                app.router.add_route("*", "/{tail:.*}", self._forward)
                self._runner = web.AppRunner(app, access_log=None)
                await self._runner.setup()
                site = web.TCPSite(self._runner, "127.0.0.1", 0)
                await site.start()
                port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                self.url = f"http://127.0.0.1:{port}"

            loop.run_until_complete(start())
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="recording-proxy")
        self._thread.start()
        ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        loop = self._loop
        if loop is None:
            return

        async def stop() -> None:
            if self._session is not None:
                await self._session.close()
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
