"""The engine at scale, in one run: ratio to the latency bound, CPU per call, peak RSS, resume and shard
time, and distilabel 1.5.3's ratio on the same server.

Workload: `benchmarks/engine_scaling.py`'s (the bundled LLaVA-CoT sample replicated to N records, the
real OpenAI teacher against the latency-simulating server in its own process, k calls per sample,
operators off but the template caption). Every measurement runs in its own child process, so its peak
RSS is its own:

    ratio        samples/s ÷ C/(k·L) at each C (L = --latency), N = max(--samples, 4·C); the time is the
                 whole run (planning, samples, then shards, audit and card), and also shown without its end
    cpu/call     the run's process CPU seconds ÷ teacher requests, at L = 0 and C = --cpu-concurrency
    full         a real run of N samples at L = 0 (C = --cpu-concurrency): its peak RSS, the time spent
                 writing shards (rolling parts during the run, the tail + card at its end), then a rerun
                 of that finished run: the time to decide nothing is left
    resume       a finished run of N samples (its checkpoint synthesised from one real run's rows,
                 re-keyed, WITHOUT image bytes) rerun: the time to decide nothing is left, the run's
                 peak RSS, and the first run's shard-writing time (all N rows → parquet + card;
                 image-less rows, so a lower bound of the real time)
    distilabel   N rows through 5 chained calls (`benchmarks/distilabel_chain.py`, run in the
                 `--distilabel-venv`: python3 -m venv /tmp/distilabel && /tmp/distilabel/bin/pip
                 install distilabel==1.5.3 openai requests) and our run on N samples, at each
                 --distilabel-concurrency, same server and L; ratio = rows/s ÷ C/(k·L) for both
                 (distilabel's wall time includes its pipeline start-up, ours its planning)

The machine is shared: absolute numbers are noisy; compare ratios within one run.

    .venv/bin/python benchmarks/engine_scale.py                      # C=64/256/1024, N resume 20k/200k
    .venv/bin/python benchmarks/engine_scale.py --only full --full-sizes 200000     # the 200k real run
    .venv/bin/python benchmarks/engine_scale.py --concurrency 64 --resume-sizes 2000 --samples 500
    .venv/bin/python benchmarks/engine_scale.py --only ratio cpu --processes 1 2 --baseline-ref HEAD~5
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python benchmarks/engine_scale.py` from anywhere

_CHILD = textwrap.dedent(r'''
    import json, logging, os, resource, sys, time
    from pathlib import Path
    sys.path.insert(0, os.environ["MMAT_REPO"])
    from benchmarks.engine_scaling import pipeline
    from generation.plan import RunOptions
    try:  # the card written at the end, as `mmat generate` does (older code: the runner wrote it itself)
        from publishing.run import run_generation
    except ImportError:
        from generation.runner import run_generation
    import generation.teachers.chat_client as chat_client

    args = json.loads(sys.argv[1])
    os.environ["MMAT_BENCH_KEY"] = "sk-benchmark-not-a-key"
    logging.getLogger("mmat").setLevel(logging.WARNING)
    clients = []
    real_init = chat_client.ChatClient.__init__
    def init(self, *a, **k):
        real_init(self, *a, **k)
        clients.append(self)
    chat_client.ChatClient.__init__ = init
    import generation.runner as runner
    import generation.shards as shards
    shard_s = {"rolling_s": 0.0, "end_s": 0.0}
    def timed(fn, key):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                shard_s[key] += time.perf_counter() - t0
        return wrapper
    shards.RollingShards.roll = timed(shards.RollingShards.roll, "rolling_s")  # parts written while the run goes
    runner.rebuild_folder = timed(runner.rebuild_folder, "end_s")  # the tail's parts and the card
    config = pipeline(Path(args["source"]), args["url"], args["concurrency"], args["steps"], 1,
                      **({"processes": args["processes"]} if args.get("processes", 1) > 1 else {}))
    if args.get("synthesise"):
        from benchmarks.engine_scale import synthesise_checkpoint
        synthesise_checkpoint(config, Path(args["out"]))
    def cpu():  # this process and its generation processes (`runner.processes`), once joined
        return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF,
                                                                               resource.RUSAGE_CHILDREN)))
    before = cpu()
    start = time.perf_counter()
    summary = run_generation(config, RunOptions(out_dir=Path(args["out"]), quiet=True))
    wall = time.perf_counter() - start
    cpu_s = cpu() - before
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"finished": summary.finished, "skipped": summary.skipped, "elapsed_s": summary.elapsed_s,
                      "wall_s": wall, "cpu_s": cpu_s,
                      # the generation processes' clients are not in this process: k × samples (exact for
                      # the benchmark server's replies, which every question answers in the same calls)
                      "requests": sum(c.stats.requests for c in clients) if args.get("processes", 1) == 1
                                  else round(args["k"] * summary.finished), "peak_rss_mb": after.ru_maxrss / 1024,
                      **shard_s}))
''')


def synthesise_checkpoint(config, out: Path) -> None:
    """A finished run's checkpoint for every sample of `config`: one real run's rows, re-keyed."""
    from generation.checkpoint import Checkpoint
    from generation.plan import default_work_dir, iter_samples
    from generation.schema import Sample

    checkpoint = Checkpoint(default_work_dir(out))
    template = next(iter(checkpoint.finished()), None)
    assert template is not None, "run a few samples into this folder first"
    batch = []
    for item in iter_samples(config, validate_images=False):
        if not isinstance(item, Sample) or item.id == template["id"]:
            continue
        rows = {fmt: {**row, "id": item.id, "images": []} for fmt, row in template["rows"].items()}
        batch.append((item.id, item.source, "train", rows))
        if len(batch) == 2000:
            checkpoint.add_finished_many(batch)
            batch = []
    checkpoint.add_finished_many(batch)


def child(args: dict, repo: Path = REPO) -> dict:
    """One measurement in its own process, on the code at `repo` (this tree, or `--baseline-ref`'s)."""
    env = {**os.environ, "MMAT_REPO": str(repo), "PYTHONPATH": str(repo)}
    result = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], env=env, capture_output=True,
                            text=True, cwd=repo)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise RuntimeError(f"benchmark child failed: {result.stderr[-2000:]}")
    return json.loads(lines[-1])


SECTIONS = ("ratio", "cpu", "full", "resume", "distilabel")


def export_ref(ref: str, dest: Path) -> Path:
    """The tree of `ref` in `dest` (git archive: no worktree, no change to the repository)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


DISTILABEL_CHAIN = 5  # calls per row of benchmarks/distilabel_chain.py


def distilabel_run(python: Path, url: str, rows: int, concurrency: int) -> dict:
    """`benchmarks/distilabel_chain.py` in distilabel's own venv (it imports nothing of ours)."""
    result = subprocess.run([str(python), str(REPO / "benchmarks" / "distilabel_chain.py"), "--url", url,
                             "-n", str(rows), "-c", str(concurrency)], capture_output=True, text=True,
                            cwd=tempfile.gettempdir())
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode or not lines:
        raise RuntimeError(f"distilabel run failed: {result.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    from benchmarks.engine_scaling import calls_per_sample, pipeline, replicate_llava_cot
    from tests.openai_server import spawn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000, help="N for the ratio runs (at least 4·C)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--cpu-samples", type=int, default=2000)
    parser.add_argument("--cpu-concurrency", type=int, default=256)
    parser.add_argument("--full-sizes", type=int, nargs="*", default=[20_000],
                        help="N of real runs (L=0, C=--cpu-concurrency): peak RSS, shard time, nothing-left rerun")
    parser.add_argument("--resume-sizes", type=int, nargs="*", default=[20_000, 200_000])
    parser.add_argument("--distilabel-venv", type=Path, default=Path("/tmp/distilabel"))
    parser.add_argument("--distilabel-concurrency", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--distilabel-samples", type=int, default=1000, help="N for the distilabel comparison")
    parser.add_argument("--baseline-ref", help="git ref whose code runs the same ratio, cpu and resume measurements "
                        "too, right after this tree's (before/after in one run)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1],
                        help="also measure ratio and cpu with runner.processes at each of these (> 1)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="measure only these")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmat-engine-scale-"))
    baseline = export_ref(args.baseline_ref, tmp / "baseline") if args.baseline_ref else None
    codes = [("", REPO, 1)] + ([(f" [{args.baseline_ref}]", baseline, 1)] if baseline else [])  # (label, tree, processes)
    codes += [(f" [runner.processes: {p}]", REPO, p) for p in args.processes if p > 1]
    servers = []
    try:
        proc, url = spawn(args.latency)
        servers.append(proc)
        zero, zero_url = spawn(0.0)
        servers.append(zero)
        print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f} (shared machine: compare ratios, not seconds)")
        for c in args.concurrency if "ratio" in args.only else ():
            n = max(args.samples, 4 * c)
            source = replicate_llava_cot(tmp / f"llava-{c}", n)
            k = calls_per_sample(pipeline(source, url, c, args.steps, 1))
            bound = c / (k * args.latency)
            for i, (label, repo, processes) in enumerate(codes):
                r = child({"source": str(source), "url": url, "concurrency": c, "steps": args.steps, "k": k,
                           "processes": processes, "out": str(tmp / f"out-{c}-{i}")}, repo)
                # the whole run (`run_generation`: planning, samples, shards, audit and card), timed the same
                # way for every code version; "without its end" is what notes before 2026-11-30 called ratio
                rate = r["finished"] / r["wall_s"]
                before_end = r["finished"] / (r["wall_s"] - r.get("end_s", 0))
                print(f"ratio    C={c:<5} N={n:<6} k={k:.2f} L={args.latency}s bound={bound:7.1f}/s rate={rate:7.1f}/s "
                      f"ratio={rate / bound:.3f} (without its end: {before_end / bound:.3f}) "
                      f"peak_rss={r['peak_rss_mb']:.0f} MB end={r.get('end_s', 0):.1f} s{label}", flush=True)
        if "cpu" in args.only:
            source = replicate_llava_cot(tmp / "llava-cpu", args.cpu_samples)
            k = calls_per_sample(pipeline(source, zero_url, args.cpu_concurrency, args.steps, 1))
            for i, (label, repo, processes) in enumerate(codes):
                r = child({"source": str(source), "url": zero_url, "concurrency": args.cpu_concurrency, "k": k,
                           "processes": processes, "steps": args.steps, "out": str(tmp / f"out-cpu-{i}")}, repo)
                print(f"cpu/call L=0 C={args.cpu_concurrency} N={args.cpu_samples}: {1000 * r['cpu_s'] / r['requests']:.2f} "
                      f"ms ({r['cpu_s']:.1f} s CPU / {r['requests']} requests, imports and shards included){label}",
                      flush=True)
        for n in args.full_sizes if "full" in args.only else ():
            source = replicate_llava_cot(tmp / f"llava-f{n}", n)
            k = calls_per_sample(pipeline(source, zero_url, args.cpu_concurrency, args.steps, 1))
            for label, repo, _ in codes[:1 + bool(baseline)]:  # this tree, and the baseline's code
                out = tmp / f"out-f{n}"
                run = {"source": str(source), "url": zero_url, "concurrency": args.cpu_concurrency, "steps": args.steps,
                       "out": str(out), "k": k}
                first = child(run, repo)
                again = child(run, repo)
                print(f"full     N={n:<7} L=0 C={args.cpu_concurrency}: {first['finished']} samples in {first['wall_s']:.1f} s, "
                      f"peak RSS {first['peak_rss_mb']:.0f} MB, {1000 * first['cpu_s'] / max(first['requests'], 1):.2f} ms "
                      f"CPU/call; shards: {first['rolling_s']:.1f} s rolling (in a thread, during the run) + "
                      f"{first['end_s']:.1f} s at the end (tail + card); nothing-left rerun {again['wall_s']:.1f} s "
                      f"(skipped {again['skipped']}, shards+card {again['end_s']:.1f} s, peak RSS "
                      f"{again['peak_rss_mb']:.0f} MB){label}", flush=True)
                shutil.rmtree(out.parent / ".mmat-work" / out.name, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
        for n in args.resume_sizes if "resume" in args.only else ():
            source = replicate_llava_cot(tmp / f"llava-r{n}", n)
            out = tmp / f"out-r{n}"
            small = replicate_llava_cot(tmp / f"llava-r{n}-seed", 1)
            child({"source": str(small), "url": zero_url, "concurrency": 8, "steps": args.steps, "out": str(out)})
            first = child({"source": str(source), "url": zero_url, "concurrency": 8, "steps": args.steps,
                           "out": str(out), "synthesise": True})
            rerun = {"source": str(source), "url": zero_url, "concurrency": 8, "steps": args.steps, "out": str(out)}
            again = child(rerun)
            print(f"resume   N={n:<7} nothing-left rerun {again['wall_s']:6.1f} s (skipped {again['skipped']}), "
                  f"peak RSS {again['peak_rss_mb']:.0f} MB; shards+card of all N rows {first['wall_s']:6.1f} s, "
                  f"peak RSS {first['peak_rss_mb']:.0f} MB", flush=True)
            if baseline is not None:
                before = child(rerun, baseline)
                print(f"resume   N={n:<7} the same rerun on {args.baseline_ref}: {before['wall_s']:6.1f} s (skipped "
                      f"{before['skipped']}), peak RSS {before['peak_rss_mb']:.0f} MB; this tree / baseline = "
                      f"{again['wall_s'] / before['wall_s']:.3f}", flush=True)
            shutil.rmtree(out.parent / ".mmat-work" / out.name, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
        python = args.distilabel_venv / "bin" / "python"
        if "distilabel" not in args.only:
            pass
        elif not python.exists():
            print(f"distilabel: skipped, no venv at {args.distilabel_venv} (python3 -m venv {args.distilabel_venv} && "
                  f"{args.distilabel_venv}/bin/pip install distilabel==1.5.3 openai requests)")
        else:
            for c in args.distilabel_concurrency:
                n = max(args.distilabel_samples, 4 * c)
                source = replicate_llava_cot(tmp / f"llava-d{c}", n)
                k = calls_per_sample(pipeline(source, url, c, args.steps, 1))
                ours = child({"source": str(source), "url": url, "concurrency": c, "steps": args.steps,
                              "out": str(tmp / f"out-d{c}")})
                theirs = distilabel_run(python, url, n, c)
                ours_ratio = ours["finished"] / ours["elapsed_s"] / (c / (k * args.latency))
                theirs_ratio = theirs["answered"] / theirs["wall_s"] / (c / (DISTILABEL_CHAIN * args.latency))
                print(f"distilabel C={c:<5} N={n:<6} distilabel 1.5.3 ({DISTILABEL_CHAIN} chained calls): "
                      f"{theirs['answered']}/{theirs['rows']} rows in {theirs['wall_s']:.1f} s, ratio {theirs_ratio:.3f}; "
                      f"ours (k={k:.2f}): {ours['finished']} in {ours['elapsed_s']:.1f} s, ratio {ours_ratio:.3f}; "
                      f"ours / distilabel = {ours_ratio / theirs_ratio:.1f}", flush=True)
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
