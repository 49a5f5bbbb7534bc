"""How close does the OpenAI teacher get to the concurrency bound?

A local OpenAI-compatible server (tests/openai_server.py, in its own process) answers every call after a
fixed latency L. N samples, each needing k teacher calls (k-2 rationale steps, the general reflection,
the final answer), run through the real loop (`generate_trajectory`) and the real `OpenAITeacher`
(real HTTP, the real `openai` client, prompts rendered, JSON parsed, images sent as data URLs) with C
samples in flight. A sample's calls are sequential, so no engine can beat C/(k·L) samples/s: the
script prints samples/s and the ratio to that bound, measured in the same run, plus the CPU share of
the client (this process) and of the server process. One warm-up round of C samples opens the
connections first. With a fixed L the C samples move in lock-step, so every per-request CPU cost on the
client is paid C times per round: that, not the network, is what separates the ratio from 1 at high C.

    .venv/bin/python benchmarks/teacher_throughput.py --concurrency 64 --latency 0.5
    .venv/bin/python benchmarks/teacher_throughput.py --concurrency 256 --latency 0.5
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from generation.config import TeacherConfig  # noqa: E402
from generation.rationale import RationaleSettings, generate_trajectory  # noqa: E402
from generation.schema import QA, ImageRef, Sample  # noqa: E402
from generation.teachers.openai_teacher import OpenAITeacher  # noqa: E402
from operators.images import LoadedImage  # noqa: E402
from tests.openai_server import spawn  # noqa: E402


class NoOperators:
    """The loop's operator runner with nothing available: this benchmark measures the teacher only."""

    available: list[str] = []

    def run(self, name, images, **args):  # pragma: no cover - never called
        raise KeyError(name)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc), 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def make_samples(n: int) -> list[tuple[Sample, list[LoadedImage]]]:
    out = []
    for i in range(n):
        picture = Image.new("RGB", (96, 64), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        data = buffer.getvalue()
        sample = Sample(id=f"bench/bench/{i}", source="bench", subset="bench", images=[ImageRef(data=data)],
                        qas=[QA(question=f"What colour is image {i}? Answer the question using a single word or "
                                         f"phrase.", answer="yes")])
        out.append((sample, [LoadedImage(data)]))
    return out


async def run(url: str, n: int, k: int, concurrency: int, warmup: int, server_pid: int = 0) -> dict[str, float]:
    cfg = TeacherConfig(kind="openai", model="bench-model", base_url=url, max_concurrency=concurrency,
                        timeout_s=60, max_retries=2)
    teacher = OpenAITeacher(cfg, api_key="sk-benchmark-not-a-key", base_url=url)
    reflection = k >= 3
    settings = RationaleSettings(max_steps=k - 2 if reflection else k - 1, reflection=reflection)
    operators = NoOperators()
    semaphore = asyncio.Semaphore(concurrency)

    async def one(item) -> None:
        sample, images = item
        async with semaphore:
            await generate_trajectory(sample, images, teacher, operators, settings)

    try:
        await asyncio.gather(*(one(item) for item in make_samples(warmup)))  # connections, caches
        samples = make_samples(n)
        requests_before = teacher.stats.requests
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        server0 = process_cpu_s(server_pid) if server_pid else 0.0
        start = time.perf_counter()
        await asyncio.gather(*(one(item) for item in samples))
        elapsed = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        server1 = process_cpu_s(server_pid) if server_pid else 0.0
        requests = teacher.stats.requests - requests_before
    finally:
        await teacher.aclose()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"elapsed_s": elapsed, "requests": requests, "client_cpu_s": cpu, "server_cpu_s": server1 - server0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", "-c", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--latency", "-l", type=float, default=0.5, help="server latency per call, seconds")
    parser.add_argument("--calls", "-k", type=int, default=4, help="teacher calls per sample (>= 2)")
    parser.add_argument("--rounds", type=float, default=8.0,
                        help="N = rounds x concurrency samples (each round is k·L seconds at the bound)")
    args = parser.parse_args()
    if args.calls < 2:
        raise SystemExit("--calls must be at least 2 (one step and the final answer)")

    proc, url = spawn(args.latency)
    try:
        print(f"server {url}, latency L={args.latency}s, k={args.calls} calls/sample, cpus={os.cpu_count()}")
        print(f"{'C':>6} {'N':>7} {'elapsed_s':>10} {'samples/s':>10} {'bound':>8} {'ratio':>6} {'req/s':>8} "
              f"{'client_cpu':>10} {'server_cpu':>10}")
        for c in args.concurrency:
            n = int(args.rounds * c)
            result = asyncio.run(run(url, n, args.calls, c, warmup=c, server_pid=proc.pid))
            rate = n / result["elapsed_s"]
            bound = c / (args.calls * args.latency)
            print(f"{c:>6} {n:>7} {result['elapsed_s']:>10.2f} {rate:>10.2f} {bound:>8.2f} {rate / bound:>6.3f} "
                  f"{result['requests'] / result['elapsed_s']:>8.1f} "
                  f"{result['client_cpu_s'] / result['elapsed_s']:>10.0%} "
                  f"{result['server_cpu_s'] / result['elapsed_s']:>10.0%}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
