"""Local engine vs Ray engine on the same workload: samples/s and the ratio to the latency bound.

The bundled LLaVA-CoT sample is replicated to N records (default 2,000; same images, distinct ids) and
run through `mmat generate`'s code path with the real OpenAI teacher against the local
latency-simulating server (tests/openai_server.py in its own process: every call answers after L
seconds). With `max_steps` rationale steps that all say "continue", the general reflection and the
final answer, each question needs max_steps + 2 sequential calls (+1 for the math reflection of a
math question), so a sample needs k calls on average (computed from the sources, printed) and no
engine beats C/(k·L) samples/s at C samples in flight. Operators are the template caption only (the server never asks for
one), so the numbers measure the engines, not OCR on two cores.

Runs, each on a fresh dataset folder:
    local        the default engine (one process, one event loop)
    ray-1cpu     Ray Data on a local instance with num_cpus=1, one generation actor
    ray-2cpu     num_cpus=2, two generation actors (C split between them)

"generate" is reading the plan plus processing (for Ray also starting the actors); "total" adds
writing the parquet shards and the card.

    .venv/bin/python benchmarks/engine_scaling.py                       # N=2000, C=64, L=0.5, 2 steps
    .venv/bin/python benchmarks/engine_scaling.py -n 500 --engines local ray-2cpu
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generation.config import PipelineConfig  # noqa: E402
from tests.openai_server import spawn  # noqa: E402

ENGINES = ("local", "ray-1cpu", "ray-2cpu")


def replicate_llava_cot(dest: Path, n: int) -> Path:
    """A LLaVA-CoT folder with `n` records cycling over the bundled ones (ids made unique)."""
    src = REPO / "samples" / "llava_cot"
    dest.mkdir(parents=True)
    for child in src.iterdir():
        if child.is_dir():  # copied: a symlink out of the source folder is refused as a path escape
            shutil.copytree(child, dest / child.name)
    records = [json.loads(line) for line in (src / "train.jsonl").read_text().splitlines() if line.strip()]
    with open(dest / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            record = dict(records[i % len(records)])
            record["id"] = f"{record['id']}-r{i:06d}"
            fh.write(json.dumps(record) + "\n")
    return dest


def pipeline(source: Path, url: str, concurrency: int, steps: int, generate_actors: int,
             processes: int = 1) -> PipelineConfig:
    return PipelineConfig.model_validate({
        "name": "engine-scaling",
        "sources": [{"kind": "llava_cot", "path": str(source)}],
        "teacher": {"kind": "openai", "model": "bench-model", "base_url": url, "api_key_env": "MMAT_BENCH_KEY",
                    "max_concurrency": concurrency, "timeout_s": 60, "max_retries": 2, "on_mismatch": "keep"},
        "operators": {"ocr": {"backend": "off"}, "face_detection": {"backend": "off"},
                      "label_bbox": {"backend": "off"}, "image_caption": {"backend": "template"},
                      "rag": {"backend": "off"}},
        "rationale": {"max_steps": steps, "reflection": True},
        "runner": {"ray": {"generate_actors": generate_actors}, "processes": processes},
    })


def calls_per_sample(config: PipelineConfig) -> float:
    """Mean sequential teacher calls per sample for this config (the k of the bound)."""
    from generation.sources import read_source

    steps = config.rationale.max_steps
    calls = samples = 0
    for source_cfg in config.sources:
        for sample in read_source(source_cfg):
            samples += 1
            for qa in sample.qas:
                calls += steps + 2 + int(bool(qa.meta.get("math") or sample.meta.get("math")))
    return calls / samples


def run_engine(engine: str, config: PipelineConfig, out: Path) -> dict[str, float]:
    from generation.plan import RunOptions
    from publishing.run import run_generation

    options = RunOptions(out_dir=out, quiet=True)
    start = time.perf_counter()
    if engine == "local":
        summary = run_generation(config, options)
    else:
        import ray

        from publishing.run import run_generation_ray

        ray.init(num_cpus=int(engine.split("-")[1][0]), include_dashboard=False, log_to_driver=False)
        try:
            summary = run_generation_ray(config, options)
        finally:
            ray.shutdown()
    total = time.perf_counter() - start
    return {"finished": summary.finished, "quarantined": summary.quarantined, "generate_s": summary.elapsed_s,
            "total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--samples", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=64)
    parser.add_argument("-l", "--latency", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=2, help="rationale steps per sample (k = steps + 2)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    args = parser.parse_args()
    os.environ["MMAT_BENCH_KEY"] = "sk-benchmark-not-a-key"
    logging.getLogger("mmat").setLevel(logging.WARNING)
    proc, url = spawn(args.latency)
    tmp = Path(tempfile.mkdtemp(prefix="mmat-engine-scaling-"))
    try:
        source = replicate_llava_cot(tmp / "llava_cot", args.samples)
        k = calls_per_sample(pipeline(source, url, args.concurrency, args.steps, 1))
        bound = args.concurrency / (k * args.latency)
        print(f"N={args.samples} samples, C={args.concurrency}, L={args.latency}s, k={k:.2f} calls/sample, "
              f"bound C/(k·L)={bound:.1f} samples/s, cpus={os.cpu_count()}")
        print(f"{'engine':>9} {'finished':>8} {'generate_s':>10} {'samples/s':>9} {'ratio':>6} {'total_s':>8}")
        for engine in args.engines:
            actors = int(engine.split("-")[1][0]) if engine != "local" else 1
            config = pipeline(source, url, args.concurrency, args.steps, actors)
            result = run_engine(engine, config, tmp / f"out-{engine}")
            rate = result["finished"] / result["generate_s"]
            print(f"{engine:>9} {result['finished']:>8.0f} {result['generate_s']:>10.2f} {rate:>9.2f} "
                  f"{rate / bound:>6.3f} {result['total_s']:>8.2f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
