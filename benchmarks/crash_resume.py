"""Crash/resume: `mmat generate` SIGKILLed at random points, then rerun; how many samples are lost or duplicated?

One clean run (the baseline, measured in this same invocation) gives the expected ids and the time T of
an uninterrupted run. Then, in rounds over fresh folders, `mmat generate` is started and SIGKILLed after a
seeded random delay in [0.3 s, T] (so kills land in start-up, in the middle of processing, and in the
shard/card phase), `--kills-per-round` times, and each round ends with a rerun to completion. After every
kill the folder is checked (every shard readable, no id twice); at the end of each round:

    lost        expected ids missing from the shards (both formats)
    duplicated  ids present more than once in the shards, plus duplicates seen right after a kill
    redone      finished samples that a resumed run processed again (rows-*.jsonl lines beyond one per id)

Goal: lost 0 / duplicated 0 (redone 0 too). The script also prints the wall time of all the killed +
resumed runs against the clean run.

    .venv/bin/python benchmarks/crash_resume.py                 # 20 kills, all five bundled sources, OCR on
    .venv/bin/python benchmarks/crash_resume.py --kills 8 --kills-per-round 4 --seed 7
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from generation.sources import SOURCE_IDS  # noqa: E402
from tests.runner_support import (  # noqa: E402
    FORMATS,
    default_work_dir,
    inspect_folder,
    kill_and_resume,
    mmat_cmd,
    mmat_env,
    read_quarantine,
    source,
    write_config,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs in all (runs that finish early don't count)")
    parser.add_argument("--kills-per-round", type=int, default=4, help="kills before each rerun to completion")
    parser.add_argument("--seed", type=int, default=20251122)
    parser.add_argument("--ocr", default="rapidocr", help="operators.ocr.backend (off: much shorter runs)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the folders go (default: a temp dir)")
    args = parser.parse_args()

    root = args.workdir or Path(tempfile.mkdtemp(prefix="mmat-crash-"))
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root / "bench.yaml", [source(k) for k in SOURCE_IDS], ocr=args.ocr)
    env = mmat_env()

    start = time.perf_counter()
    clean = subprocess.run(mmat_cmd("generate", "--config", config, "--out", root / "clean", "--quiet"),
                           cwd=root, env=env, capture_output=True, text=True)
    clean_s = time.perf_counter() - start
    if clean.returncode != 0:
        print(clean.stderr[-3000:], file=sys.stderr)
        return 1
    expected = inspect_folder(root / "clean").id_set("orr")
    expected_quarantine = set(read_quarantine(default_work_dir(root / "clean")))
    print(f"clean run: {len(expected)} samples, {len(expected_quarantine)} quarantined, {clean_s:.1f} s", flush=True)

    rng = random.Random(args.seed)
    totals = Counter()
    killed_s = 0.0
    round_no = 0
    attempts = 0
    while totals["kills"] < args.kills and attempts < 5 * args.kills:
        round_no += 1
        out = root / f"round-{round_no:02d}"
        want = min(args.kills_per_round, args.kills - totals["kills"])
        report = kill_and_resume(config, out, kills=want, seed=rng.randrange(2**31), min_delay=0.3,
                                 max_delay=clean_s, cwd=root, env=env)
        attempts += want
        killed_s += report.elapsed_s
        state = inspect_folder(out)
        ids = {fmt: Counter(state.ids[fmt]) for fmt in FORMATS}
        lost = sum(len(expected - set(ids[fmt])) for fmt in FORMATS)
        extra = sum(len(set(ids[fmt]) - expected) for fmt in FORMATS)
        duplicated = sum(n - 1 for fmt in FORMATS for n in ids[fmt].values() if n > 1)
        duplicated += sum(1 for v in report.violations if "duplicates" in v)
        rows = Counter(json.loads(line)["id"] for p in default_work_dir(out).glob("rows-*.jsonl")
                       for line in p.read_text().splitlines())
        redone = sum(n - 1 for n in rows.values() if n > 1)
        quarantine_ok = set(read_quarantine(default_work_dir(out))) == expected_quarantine
        problems = [v for v in report.violations if "duplicates" not in v] + state.unreadable + \
            [f"temp file left: {p}" for p in state.temp_files] + [f"card: {m}" for m in state.card_mismatches]
        if report.final_rc != 0:
            problems.append(f"final rerun exited {report.final_rc}: {report.final_stderr[-500:]}")
        if not quarantine_ok:
            problems.append("quarantine set differs from the clean run's")
        totals.update(kills=report.kills, early=report.completed_early, lost=lost, extra=extra,
                      duplicated=duplicated, redone=redone, problems=len(problems))
        print(f"round {round_no}: kills at {report.delays} s ({report.kills} killed, {report.completed_early} "
              f"finished first): lost {lost}, duplicated {duplicated}, redone {redone}, unexpected {extra}, "
              f"{report.elapsed_s:.1f} s", flush=True)
        for problem in problems:
            print(f"  problem: {problem}", flush=True)

    print(f"\n{totals['kills']} kills ({totals['early']} runs finished before their kill) in {round_no} rounds; "
          f"{len(expected)} samples per round")
    print(f"lost: {totals['lost']}  duplicated: {totals['duplicated']}  redone: {totals['redone']}  "
          f"unexpected ids: {totals['extra']}  other problems: {totals['problems']}")
    print(f"time: clean run {clean_s:.1f} s; killed + resumed runs {killed_s:.1f} s in all, "
          f"{killed_s / round_no:.1f} s per round ({killed_s / round_no / clean_s:.2f}x the clean run)")
    ok = totals["lost"] == totals["duplicated"] == totals["redone"] == totals["extra"] == totals["problems"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
