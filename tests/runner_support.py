"""Shared by the runner tests and `benchmarks/crash_resume.py`: small configs over the bundled samples,
`mmat` in a subprocess, and the checks a finished (or freshly killed) dataset folder must pass.

    cfg = write_config(tmp / "small.yaml", [source("tabmwp"), source("infoseek", limit=6)])
    result = mmat("generate", "--config", cfg, "--out", tmp / "out")
    state = inspect_folder(tmp / "out")   # ids per format, duplicates, unreadable shards, card sizes
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
FORMATS = ("rr", "orr")


def source(kind: str, path: Optional[Path] = None, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "path": str(path or SAMPLES / kind), **extra}


def write_config(path: Path, sources: list[dict[str, Any]], *, ocr: str = "off", caption: str = "template",
                 rag: str = "off", face: str = "off", teacher: Optional[dict[str, Any]] = None,
                 runner: Optional[dict[str, Any]] = None, output: Optional[dict[str, Any]] = None) -> Path:
    """A pipeline YAML over `sources`, cheap operators by default (no face/RAG/OCR model loads)."""
    config = {
        "name": "runner-test",
        "sources": sources,
        # runner tests count every sample; the offline teacher's default `require_grounding: auto` would
        # quarantine the ones cheap operators cannot ground (tests of grounding pass a teacher of their own)
        "teacher": teacher or {"kind": "offline", "require_grounding": False},
        "operators": {"ocr": {"backend": ocr}, "face_detection": {"backend": face},
                      "label_bbox": {"backend": "off"}, "image_caption": {"backend": caption},
                      "rag": {"backend": rag, **({"corpus": str(SAMPLES / "infoseek/corpus")} if rag != "off" else {})}},
        "rationale": {"max_steps": 5, "reflection": True},
        "output": {"validation_fraction": 0.25, **(output or {})},
        "runner": runner or {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def copy_source(kind: str, dest_root: Path) -> Path:
    """A private copy of one bundled source, to break records in."""
    dest = dest_root / kind
    shutil.copytree(SAMPLES / kind, dest)
    return dest


def mmat_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("DEEPFACE_HOME", "/tmp/mmat-test-cache/deepface")
    env.update(extra)
    return env


def mmat_cmd(*args: Any) -> list[str]:
    return [sys.executable, "-m", "mmat_cli", *map(str, args)]


def mmat(*args: Any, cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(mmat_cmd(*args), cwd=cwd or REPO, env=env or mmat_env(), capture_output=True, text=True,
                          timeout=timeout)


def source_ids(config_path: Path) -> tuple[set[str], set[str]]:
    """(ids the sources yield as samples, ids they yield as foundation-stage quarantines)."""
    from generation.config import load_config
    from generation.schema import Quarantined
    from generation.sources import read_source

    config = load_config(config_path)
    good: set[str] = set()
    bad: set[str] = set()
    for source_cfg in config.sources:
        for item in read_source(source_cfg):
            if isinstance(item, Quarantined):
                bad.add(item.sample_id)
            else:
                good.add(item.id)
    return good, bad


def default_work_dir(out: Path) -> Path:
    out = Path(out).resolve()
    return out.parent / ".mmat-work" / out.name


def rows_file_ids(work_dir: Path) -> Counter:
    """How many rows-*.jsonl lines each id has over every worker's file (a redone sample counts twice)."""
    from generation.checkpoint import load_index

    return Counter(i for path in Path(work_dir).glob("rows-*.jsonl") for (_, _, i, _, _) in load_index(path))


def read_quarantine(work_dir: Path) -> dict[str, dict]:
    """Latest quarantine record per id over every worker's file (ids that finished since excluded)."""
    from generation.checkpoint import Checkpoint

    return {k: v.__dict__ for k, v in Checkpoint(work_dir, readonly=True).quarantined().items()}


@dataclass
class FolderState:
    ids: dict[str, list[str]] = field(default_factory=dict)  # format -> every id in every shard
    shards: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    temp_files: list[Path] = field(default_factory=list)
    card_mismatches: list[str] = field(default_factory=list)

    def duplicates(self, fmt: str) -> list[str]:
        return sorted(i for i, n in Counter(self.ids.get(fmt, [])).items() if n > 1)

    def id_set(self, fmt: str = "orr") -> set[str]:
        return set(self.ids.get(fmt, []))


def inspect_folder(out: Path, check_card: bool = True) -> FolderState:
    """Every shard read with pyarrow; ids per format; temp files; card split sizes vs the shards."""
    import pyarrow.parquet as pq

    state = FolderState(ids={fmt: [] for fmt in FORMATS})
    data = Path(out) / "data"
    if data.is_dir():
        for path in sorted(data.rglob("*")):
            if path.is_file() and path.name.startswith("."):
                state.temp_files.append(path)
        for fmt in FORMATS:
            for path in sorted((data / fmt).glob("*/*.parquet")):
                state.shards.append(path)
                try:
                    table = pq.read_table(path)
                    state.ids[fmt].extend(table.column("id").to_pylist())
                except Exception as exc:  # noqa: BLE001 - recorded, asserted by the caller
                    state.unreadable.append(f"{path}: {type(exc).__name__}: {exc}")
    if check_card and state.shards:
        state.card_mismatches = card_mismatches(Path(out))
    return state


def card_mismatches(out: Path) -> list[str]:
    """Where the card's `dataset_info` split sizes differ from the rows in the shards its configs name."""
    import pyarrow.parquet as pq

    from publishing.changelog import read_card_metadata

    meta = read_card_metadata(Path(out) / "README.md")
    if not meta:
        return ["no card"]
    globs = {c["config_name"]: {f["split"]: f["path"] for f in c["data_files"]} for c in meta.get("configs", [])}
    problems = []
    for info in meta.get("dataset_info") or []:
        name = info["config_name"]
        for split in info.get("splits") or []:
            pattern = globs.get(name, {}).get(split["name"])
            if pattern is None:
                problems.append(f"{name}/{split['name']}: no data_files")
                continue
            rows = sum(pq.ParquetFile(p).metadata.num_rows for p in Path(out).glob(pattern))
            if rows != split["num_examples"]:
                problems.append(f"{name}/{split['name']}: card {split['num_examples']} != shards {rows}")
    return problems


def load_ids(out: Path, config: str = "orr") -> list[str]:
    """Every id `datasets.load_dataset(folder, config)` returns (all splits), the way users load it."""
    import datasets

    ds = datasets.load_dataset(str(out), config, cache_dir=str(Path(out).parent / ".hf-cache"))
    return [i for split in ds.values() for i in split["id"]]


@dataclass
class KillReport:
    kills: int = 0
    completed_early: int = 0  # runs that finished before their kill time
    delays: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # invariants broken right after a kill
    final_rc: Optional[int] = None
    final_stderr: str = ""
    elapsed_s: float = 0.0


def kill_and_resume(config: Path, out: Path, *, kills: int, seed: int, min_delay: float, max_delay: float,
                    cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None,
                    extra_args: tuple[str, ...] = ()) -> KillReport:
    """Start `mmat generate`, SIGKILL it after a seeded random delay, `kills` times; check the folder
    after each kill (every shard readable, no id twice); then rerun to completion."""
    rng = random.Random(seed)
    report = KillReport()
    start = time.perf_counter()
    for _ in range(kills):
        delay = rng.uniform(min_delay, max_delay)
        report.delays.append(round(delay, 2))
        proc = subprocess.Popen(mmat_cmd("generate", "--config", config, "--out", out, "--quiet", *extra_args),
                                cwd=cwd or REPO, env=env or mmat_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=delay)
            report.completed_early += 1
            if proc.returncode != 0:
                report.violations.append(f"run exited {proc.returncode} before its kill: {err[-2000:]}")
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            report.kills += 1
        state = inspect_folder(out, check_card=False)
        report.violations += [f"after kill {len(report.delays)}: unreadable {u}" for u in state.unreadable]
        for fmt in FORMATS:
            if state.duplicates(fmt):
                report.violations.append(f"after kill {len(report.delays)}: {fmt} duplicates {state.duplicates(fmt)}")
    final = subprocess.run(mmat_cmd("generate", "--config", config, "--out", out, "--quiet", *extra_args),
                           cwd=cwd or REPO, env=env or mmat_env(), capture_output=True, text=True, timeout=600)
    report.final_rc, report.final_stderr = final.returncode, final.stderr
    report.elapsed_s = time.perf_counter() - start
    return report


def error_output(text: str) -> list[str]:
    """The non-empty lines of a command's stderr less its INFO and WARNING log records (and their
    wrapped lines).

    Log records go to stderr with the progress bar (stdout is for data: issue 32), so a run that stops
    shows its log ("plan: ...", "no price known for ...") above the one line that says why; tests of
    that one line read the rest. ERROR records and anything else stay."""
    kept: list[str] = []
    in_info = False
    for line in text.splitlines():
        if line.startswith(("INFO ", "WARNING ")):
            in_info = True
            continue
        if in_info and line.startswith(" "):
            continue  # a wrapped INFO record
        in_info = False
        if line.strip():
            kept.append(line)
    return kept
