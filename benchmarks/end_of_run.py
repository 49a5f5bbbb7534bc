"""The end of a run's reading (both formats' audit + the card's numbers) on a folder of N dialogues laid out
as a rolling run leaves it (parts of 5,000 rows and a tail), this tree against the shard-readings cache of
an older commit (issue 33), alternating A/B so the shared machine's load drifts over both alike.

    .venv/bin/python benchmarks/end_of_run.py --rows 20000 --baseline-ref 678005a --repeats 2

Rows: `tests.test_quality_audit.hand_made` replicated with unique ids (text repeats, so the exact-duplicate
check reads every row's images, as in `benchmarks/engine_scale.py`'s workload). "cache" (the baseline's
code only): its `ReadingsCache` warmed with every part but the tail, as its read-ahead process leaves it
while the samples run (not timed), then the end reads through it. Imports are not timed (0.4 s, both)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_MAKE = r'''
import sys, datasets, pyarrow.parquet as pq
from pathlib import Path
from generation.integration import build_rows
from mmat_1m import FEATURES, FORMATS, shard_dir
from tests.test_quality_audit import hand_made
n, root = int(sys.argv[1]), Path(sys.argv[2])
made, rows = hand_made(), {f: [] for f in FORMATS}
for i in range(n):
    sample, traj, images = made[i % len(made)]
    sample = sample.model_copy(update={"id": f"{sample.id}-{i:06d}", "source": "tabmwp", "subset": "tabmwp"})
    built = build_rows(sample, traj.model_copy(update={"sample_id": sample.id}), images)
    for f in FORMATS:
        rows[f].append(built[f])
for f in FORMATS:
    out = root / shard_dir(f, "tabmwp")
    out.mkdir(parents=True, exist_ok=True)
    for j, start in enumerate(range(0, n, 5000)):
        table = datasets.Dataset.from_list(rows[f][start:start + 5000], features=FEATURES).data.table
        pq.write_table(table, out / f"train-part{j:05d}.parquet", row_group_size=64)
'''

_END = r'''
import json, shutil, sys, time
from pathlib import Path
folder, mode = Path(sys.argv[1]), sys.argv[2]
from generation.quality.audit import audit_run
from publishing.card_stats import collect_stats
import matplotlib; matplotlib.use("Agg"); import matplotlib.pyplot
if mode == "cache":
    from generation.readings_cache import ReadingsCache, read_ahead
    work = folder.parent / "work"
    shutil.rmtree(work, ignore_errors=True)
    parts = sorted(folder.glob("data/*/*/*.parquet"))
    tail = max(p.name for p in parts)
    read_ahead(work, folder, [p for p in parts if p.name != tail], "rr")
    cache = ReadingsCache(work / "shard-readings", folder)
    t0 = time.perf_counter(); report = audit_run(folder, cache); collect_stats(folder, cache); cache.prune()
else:
    t0 = time.perf_counter(); report = audit_run(folder); collect_stats(folder)
print(json.dumps({"s": time.perf_counter() - t0, "dialogues": report.total.dialogues}))
'''


def _run(code: str, repo: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=repo, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return done.stdout


def main() -> None:
    from benchmarks.engine_scale import export_ref

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--baseline-ref", required=True, help="a commit with generation/readings_cache.py")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mmat-end-of-run-"))
    baseline = export_ref(args.baseline_ref, tmp / "baseline")
    folder = tmp / "f" / "mmat-1m"
    _run(_MAKE, REPO, str(args.rows), str(folder))
    times: dict[str, list[float]] = {"this tree (reads every shard)": [], f"{args.baseline_ref} (cache warm)": []}
    for _ in range(args.repeats):
        for (label, found), (repo, mode) in zip(times.items(), ((REPO, "plain"), (baseline, "cache"))):
            found.append(json.loads(_run(_END, repo, str(folder), mode).splitlines()[-1])["s"])
    for label, found in times.items():
        print(f"end of run, N={args.rows}: {', '.join(f'{s:.1f}' for s in found)} s  {label}")
    subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    main()
