"""What one teacher request costs the engine's process in CPU, layer by layer, against the same local
server (tests/openai_server.py in its own process, L = 0): where the engine's CPU per call comes from,
and the floor no change of ours can go under while the `openai` SDK sends the requests.

    aiohttp      a bare `aiohttp` POST of the same JSON bytes (the transport alone)
    sdk          `AsyncOpenAI.post("/chat/completions", body=dict, cast_to=object)` with the SDK's aiohttp
                 client, as `ChatClient` builds it (what the engine sends through)
    chat_client  `ChatClient.complete_json`: the SDK call plus our slot, limiter, retries, accounting,
                 redaction and the reply parsed into its pydantic model

Each at C requests in flight, N requests, with an image of --image-kb in the body (a data URL: its bytes
travel through the kernel's loopback, whose CPU is charged to the sender). CPU = this process's
user + system seconds ÷ requests, after a warm-up.

    .venv/bin/python benchmarks/request_floor.py                 # C=256, N=4000, 20 KB and 0.2 KB images
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generation.config import TeacherConfig  # noqa: E402
from tests.openai_server import spawn  # noqa: E402

SYSTEM = "You are a careful visual reasoner. " * 40
USER = "Question: what is shown in the image? Think step by step. " * 8


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(kind: str, url: str, image_kb: float, concurrency: int, requests: int) -> tuple[float, float]:
    """(ms CPU per request, requests/s)."""
    from generation.teachers.chat_client import ChatClient
    from generation.teachers.replies import SCHEMAS, AnswerReply
    from operators.images import LoadedImage

    data_url = "data:image/png;base64," + base64.b64encode(os.urandom(int(image_kb * 1024 * 3 / 4))).decode()
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url}},
                                             {"type": "text", "text": USER}]}]
    body = {"model": "local-test-model", "messages": messages, "max_tokens": 512, "temperature": 0.0,
            "response_format": {"type": "json_schema", "json_schema": {"name": "final_answer",
                                                                       "schema": SCHEMAS["final_answer"], "strict": True}}}
    cfg = TeacherConfig(kind="openai", model="local-test-model", base_url=url, max_concurrency=concurrency)
    chat = ChatClient(cfg, api_key="sk-floor-benchmark-key", base_url=url) if kind != "aiohttp" else None
    session = None
    slots = asyncio.Semaphore(concurrency)
    image = LoadedImage(b"\x89PNG\r\n\x1a\n" + b"\x00" * int(image_kb * 1024))  # what the data-URL cache keys on
    if chat is not None:
        chat._urls[image.sha256] = data_url  # the data-URL cache: the same image's URL in every request
    schema = SCHEMAS["final_answer"]  # what the teacher sends for its final answer
    if kind == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 8))
        raw = json.dumps(body).encode()
        headers = {"Authorization": "Bearer sk-floor-benchmark-key", "Content-Type": "application/json"}

    async def one() -> None:
        async with slots:
            if kind == "aiohttp":
                async with session.post(f"{url}/chat/completions", data=raw, headers=headers) as response:
                    await response.json()
            elif kind == "sdk":
                await chat.client.post("/chat/completions", body=dict(body), cast_to=object)
            else:
                await chat.complete_json("final_answer", SYSTEM, USER, [image], schema, AnswerReply)

    await asyncio.gather(*(one() for _ in range(min(400, requests))))  # warm: connections, caches
    cpu0, t0 = _cpu(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
    if session is not None:
        await session.close()
    if chat is not None:
        await chat.aclose()
    return 1000 * cpu / requests, requests / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--concurrency", type=int, default=256)
    parser.add_argument("-n", "--requests", type=int, default=4000)
    parser.add_argument("--image-kb", type=float, nargs="+", default=[20.0, 0.2])
    parser.add_argument("--layers", nargs="+", default=["aiohttp", "sdk", "chat_client"],
                        choices=["aiohttp", "sdk", "chat_client"])
    args = parser.parse_args()
    import logging

    logging.getLogger("mmat").setLevel(logging.ERROR)
    server, url = spawn(0.0)
    try:
        print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} C={args.concurrency} N={args.requests} L=0")
        for kb in args.image_kb:
            for kind in args.layers:
                ms, rate = asyncio.run(_measure(kind, url, kb, args.concurrency, args.requests))
                print(f"image {kb:5.1f} KB  {kind:<12} {ms:6.3f} ms CPU/request  {rate:7.0f} requests/s", flush=True)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
