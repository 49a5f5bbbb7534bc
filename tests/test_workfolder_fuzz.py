"""Every file the engine wrote in the work folder can be damaged and a rerun still recovers (issue 30).

A small offline run (12 samples, one quarantined by a broken image) is copied, then one line of one
work-folder file is damaged at a seeded random offset: a byte flipped to one that is not UTF-8, a line
cut in the middle (it runs into the next one), `null`, an extra key, a missing field. The rerun
(`mmat generate`, the real CLI in a subprocess) must exit 0, name the damaged file and line in one
warning before it plans (so before any teacher call), redo what the line stood for, and leave every
id in the shards exactly once per format.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.runner_support import (FORMATS, copy_source, default_work_dir, inspect_folder, mmat_cmd, mmat_env,
                                  read_quarantine, source, source_ids, write_config)

DAMAGES = ("flip", "cut", "null", "extra_key", "missing_field")
FILES = ("rows-0.jsonl", "rows-0.idx", "quarantine.jsonl")


def _generate(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(mmat_cmd("generate", "--config", root / "small.yaml", "--out", root / "out"), cwd=root,
                          env=mmat_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    tabmwp = copy_source("tabmwp", root)
    (tabmwp / "tables" / "137.png").write_bytes(b"")  # one record quarantined: quarantine.jsonl has a line
    write_config(root / "small.yaml", [source("tabmwp", tabmwp, limit=7), source("infoseek", limit=6)],
                 runner={"max_quarantine_rate": 0.5})
    result = _generate(root)
    assert result.returncode == 0, result.stderr[-3000:]
    expected, bad = source_ids(root / "small.yaml")
    state = inspect_folder(root / "out")
    assert all(state.id_set(fmt) == expected for fmt in FORMATS) and len(expected) >= 10
    assert set(read_quarantine(default_work_dir(root / "out"))) == bad and len(bad) == 1
    return root, expected, bad


def damage_line(path: Path, kind: str, rng: random.Random) -> int:
    """Damage one line of `path` (not its last, so a cut runs into the next line); returns its number."""
    lines = path.read_bytes().splitlines(keepends=True)
    number = rng.randrange(max(1, len(lines) - 1))
    line = lines[number]
    if kind == "flip":
        at = rng.randrange(1, len(line) - 1)
        lines[number] = line[:at] + bytes([rng.choice([0xFF, 0xC0, 0x80, 0xFE])]) + line[at + 1:]
    elif kind == "cut":
        lines[number] = line[: rng.randrange(1, len(line) - 1)]  # no newline: it runs into the next line
    elif kind == "null":
        lines[number] = b"null\n"
    else:
        value = json.loads(line)
        if kind == "extra_key":
            if isinstance(value, dict):
                value["unexpected"] = rng.randrange(100)
            else:  # an index entry is a list
                value.append("unexpected")
        elif isinstance(value, dict):
            del value[rng.choice(sorted(k for k in value if k != "source"))]
        else:
            value.pop(rng.randrange(len(value)))
        lines[number] = (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    path.write_bytes(b"".join(lines))
    return number + 1


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("kind", DAMAGES)
def test_a_damaged_work_folder_line_is_named_and_its_sample_redone(finished, tmp_path, name, kind):
    base, expected, bad = finished
    root = tmp_path / "run"
    shutil.copytree(base, root)
    work = default_work_dir(root / "out")
    rng = random.Random(f"{name}-{kind}-20261207")
    if name == "quarantine.jsonl":  # one line only: give it a neighbour to damage before
        records = (work / name).read_bytes()
        (work / name).write_bytes(records + records)
    number = damage_line(work / name, kind, rng)

    result = _generate(root)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    state = inspect_folder(root / "out")
    assert state.unreadable == [] and state.temp_files == [] and state.card_mismatches == []
    for fmt in FORMATS:
        assert state.duplicates(fmt) == [], fmt
        assert state.id_set(fmt) == expected, fmt
    assert set(read_quarantine(work)) == bad
    out = " ".join(result.stderr.split())  # rich wraps long log lines
    if name != "rows-0.idx":  # a damaged index is rebuilt from the rows (warned when it is not a prefix)
        warnings = [w for w in out.split("WARNING")[1:] if name in w]
        assert len(warnings) == 1, result.stderr
        assert f"line {number}" in warnings[0], (number, result.stderr)
        assert out.index(name) < out.index("plan:"), "damage must be found before the plan (and any paid call)"


def test_a_damaged_line_is_warned_once_then_the_folder_is_quiet(finished, tmp_path):
    base, expected, _ = finished
    root = tmp_path / "run"
    shutil.copytree(base, root)
    rows = default_work_dir(root / "out") / "rows-0.jsonl"
    damage_line(rows, "flip", random.Random(7))

    first, second = _generate(root), _generate(root)

    assert first.returncode == second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert "rows-0.jsonl" in first.stderr and "1 to run" in " ".join(first.stderr.split())
    assert "WARNING" not in second.stderr and "0 to run" in " ".join(second.stderr.split()), second.stderr
    assert all(inspect_folder(root / "out").id_set(fmt) == expected for fmt in FORMATS)
