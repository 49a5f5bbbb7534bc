"""Viewer page-open time: the demo dataset (the baseline, measured in this same run) against a synthetic
dataset of 200k rows. Paging is lazy (only parquet footers at open, only the shown page's row groups
after), so the big one should open about as fast as the small one: the goal is a ratio near 1.

Measured per dataset, median of `--repeat` runs:

    server ready   `mmat view` started in a subprocess until it prints its URL (imports + footers)
    open (store)   ViewerApp.open + the first page of 50 rows, in this process, cold
    page open      in headless Chromium: navigation start → the list's first page drawn
                   (`window.MMAT_READY_MS`, the page's own performance.now())
    total shown    navigation start → the total count drawn (asked for after the first page: it reads
                   every shard's footer, which grows with the number of row groups)
    next page      click "next" → the second page drawn
    permalink      a fresh page on `#id` of a row in the last source → the dialogue drawn
    filter         source = tabmwp and reflection = math (cold: reads the filter columns of those
                   shards once; this one grows with the data, it is not part of opening)

The synthetic rows are `tests.dataset_factory.make_dialogue` rows (the row schema, tiny images) written
by the engine's shard writer (`generation.writer.write_group`, 64-row row groups, shards of at most
500 MB), RR only; they are kept in --workdir and reused when the row count matches.

    .venv/bin/python benchmarks/viewer_open.py                       # generates the demo if --demo is absent
    .venv/bin/python benchmarks/viewer_open.py --demo mmat-1m --rows 200000 --repeat 5
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mmat_1m import SOURCES  # noqa: E402
from tests.browser import chromium, missing_reason, start_view, wait_js  # noqa: E402
from tests.runner_support import mmat_cmd, mmat_env  # noqa: E402


def build_synthetic(folder: Path, rows: int) -> Path:
    """`rows` RR rows over the five sources (80 % train), written by the engine's shard writer."""
    import pyarrow.parquet as pq

    from generation.writer import write_group
    from tests.dataset_factory import make_dialogue

    existing = sum(pq.read_metadata(p).num_rows for p in folder.rglob("*.parquet")) if folder.exists() else 0
    if existing == rows:
        return folder
    per_source = rows // len(SOURCES)
    for k, source in enumerate(SOURCES):
        n = per_source + (rows - per_source * len(SOURCES) if k == len(SOURCES) - 1 else 0)
        for split, count in (("train", n - n // 5), ("validation", n // 5)):
            write_group(folder, "rr", source, split, (make_dialogue(source, split, i)["rr"] for i in range(count)))
    return folder


def demo_folder(path: Path | None, workdir: Path) -> Path:
    if path:
        return path
    out = workdir / "demo" / "mmat-1m"
    if not (out / "README.md").exists():
        config = workdir / "demo.yaml"
        config.write_text((REPO / "configs/demo.yaml").read_text().replace("../samples/", f"{REPO}/samples/"))
        print(f"generating the demo dataset in {out} (once) ...", flush=True)
        subprocess.run(mmat_cmd("generate", "--config", config, "--out", out, "--quiet"), env=mmat_env(), check=True)
    return out


def time_store(folder: Path) -> float:
    from viewer.app import ViewerApp

    start = time.perf_counter()
    app = ViewerApp.open(str(folder), config="rr")
    app.rows({"limit": "50"})
    return time.perf_counter() - start


def time_browser(folder: Path, driver, permalink_id: str) -> dict[str, float]:
    start = time.perf_counter()
    proc, url = start_view([folder], mmat_env(), stop_after=900)
    ready = time.perf_counter() - start
    try:
        driver.get("about:blank")
        driver.get(url)
        wait_js(driver, "return document.body.dataset.ready", 300)
        page_open = driver.execute_script("return window.MMAT_READY_MS") / 1000
        counted = wait_js(driver, "return window.MMAT_COUNTED_MS", 300) / 1000
        wait_js(driver, "return document.body.dataset.listVersion === '1'")
        t0 = time.perf_counter()
        driver.execute_script("document.getElementById('next').click()")
        wait_js(driver, "return document.body.dataset.listVersion === '2'", 300)
        next_page = time.perf_counter() - t0
        t0 = time.perf_counter()
        driver.execute_script("""const form = document.getElementById('filter-form');
            form.elements.source.value = 'tabmwp'; form.elements.reflection.value = 'math';
            document.getElementById('f-apply').click();""")
        wait_js(driver, "return document.body.dataset.listVersion === '3'", 300)
        filtered = time.perf_counter() - t0
        t0 = time.perf_counter()
        driver.get("about:blank")
        driver.get(url + "#" + permalink_id)
        wait_js(driver, "return document.body.dataset.detailVersion", 300)
        permalink = time.perf_counter() - t0
        return {"server ready": ready, "page open": page_open, "total shown": counted, "next page": next_page,
                "permalink": permalink, "filter": filtered}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def last_id(folder: Path) -> str:
    import pyarrow.parquet as pq

    path = sorted((folder / "data" / "rr" / SOURCES[-1]).glob("train-*.parquet"))[-1]
    return pq.read_table(path, columns=["id"])["id"][-1].as_py()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=None, help="a generated demo dataset folder (default: generate one)")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic dataset")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "mmat-viewer-bench")
    args = parser.parse_args()
    reason = missing_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    demo = demo_folder(args.demo, args.workdir)
    t0 = time.perf_counter()
    synthetic = build_synthetic(args.workdir / f"synthetic-{args.rows}" / "mmat-1m", args.rows)
    print(f"synthetic dataset: {args.rows:,} rows in {synthetic} ({time.perf_counter() - t0:.0f} s to build or check)")
    datasets = {"demo": demo, f"{args.rows // 1000}k": synthetic}
    results: dict[str, dict[str, list[float]]] = {name: {} for name in datasets}
    driver = chromium(args.workdir)
    try:
        for _ in range(args.repeat):
            for name, folder in datasets.items():  # interleaved, so machine noise hits both alike
                results[name].setdefault("open (store)", []).append(time_store(folder))
                for key, value in time_browser(folder, driver, last_id(folder)).items():
                    results[name].setdefault(key, []).append(value)
    finally:
        driver.quit()
    from viewer.store import ShardStore

    rows = {name: ShardStore.open(str(folder)).total("rr") for name, folder in datasets.items()}
    names = list(datasets)
    print(f"\n{'median of ' + str(args.repeat):<16}" + "".join(f"{n + ' (' + format(rows[n], ',') + ' rows)':>26}" for n in names)
          + f"{'ratio':>10}")
    for key in results[names[0]]:
        values = [statistics.median(results[n][key]) for n in names]
        print(f"{key:<16}" + "".join(f"{v * 1000:>23.0f} ms" for v in values) + f"{values[1] / values[0]:>9.2f}x")
    print("\nopening lists the files; the first page reads its shards' footers and row groups only: 'page open'"
          " should stay near 1x. 'total shown' reads every footer and 'filter' the filter columns once: both grow"
          " with the data.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
