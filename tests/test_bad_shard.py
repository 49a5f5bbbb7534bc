"""A truncated or foreign `.parquet` in `data/` (a half-finished copy, a stray file) is named and left out
(issue 30): the viewer's lists, counts, facets, search and dialogues keep working over the other shards
(every list/facet/search answered 500 before), the export and the audit skip it with one line naming
it, and the card refuses it with one line naming it."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.browser import start_view
from tests.dataset_factory import make_dataset_folder

REPO = Path(__file__).resolve().parents[1]
TRUNCATED = "data/rr/tabmwp/train-00001-of-00002.parquet"
FOREIGN = "data/rr/cauldron/train-00001-of-00002.parquet"


def damage(folder: Path) -> None:
    """A truncated copy of a real shard beside it, and a valid parquet file of another schema."""
    good = (folder / "data/rr/tabmwp/train-00000-of-00001.parquet").read_bytes()
    (folder / TRUNCATED).write_bytes(good[: len(good) // 2])
    pq.write_table(pa.table({"text": ["a row of some other dataset"], "label": [1]}), folder / FOREIGN)


@pytest.fixture
def folder(tmp_path):
    folder = make_dataset_folder(tmp_path, n_rows_per_source=3, sources=["cauldron", "tabmwp"])
    damage(folder)
    return folder


def test_the_store_leaves_bad_shards_out_and_names_each_once(folder, caplog):
    from viewer.app import ViewerApp

    caplog.set_level(logging.WARNING, logger="mmat.viewer")
    app = ViewerApp.open(str(folder), config="rr")
    page = app.rows({})
    assert page["total"] == 8 and len(page["rows"]) == 8  # 2 sources x (3 train + 1 validation): the good rows
    assert app.count({})["total"] == 8
    for params in ({"subset": "tabmwp"}, {"text": "region"}, {"operator": "ocr"}, {"reflection": "math"}):
        assert app.rows(params)["rows"], params  # filters read the index of every shard: the bad ones are skipped
    assert app.facets()["subsets"]
    assert app.dialogue("rr", "tabmwp/tabmwp/train-000001")["id"] == "tabmwp/tabmwp/train-000001"
    named = [r.getMessage() for r in caplog.records]
    assert sum(TRUNCATED.split("/")[-1] in m and "tabmwp" in m for m in named) == 1, named
    assert any("cauldron/train-00001" in m and "not an mmat-1m shard (no id" in m for m in named), named
    assert sorted(e.split(": ", 1)[0].split("data/", 1)[1] for e in app.store.bad_shards()) == \
        sorted(p.split("data/", 1)[1] for p in (TRUNCATED, FOREIGN))


def test_the_served_viewer_answers_every_page(folder):
    proc, url = start_view([folder])
    try:
        for path in ("api/info", "api/facets", "api/rows?format=rr", "api/count?format=rr",
                     "api/rows?format=rr&text=region", "api/rows?format=rr&subset=tabmwp", "api/rows?format=orr",
                     "api/dialogue?format=rr&id=cauldron/st_vqa/train-000000"):
            with urllib.request.urlopen(url + path, timeout=60) as resp:
                assert resp.status == 200, path
                json.loads(resp.read())
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert TRUNCATED.split("/", 1)[1] in err.replace("\\", "/"), err[-2000:]  # named once, on stderr


def test_export_and_audit_skip_it_with_one_line(folder, tmp_path):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "mmat_cli", "view", str(folder), "--export", str(tmp_path / "x")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "exported 8 dialogues" in out.stdout  # every good row: 2 sources x (3 train + 1 validation)
    audit = subprocess.run([sys.executable, "-m", "mmat_cli", "audit", str(folder), "--config", "rr"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert audit.returncode == 0, audit.stderr[-3000:]
    assert "Traceback" not in audit.stderr
    for name in (TRUNCATED, FOREIGN):  # one line each, naming the file and what is wrong
        [line] = [l for l in audit.stderr.splitlines() if name in l]
        assert line.endswith("; left out") and ("not a readable parquet file" in line or "not an mmat-1m shard" in line)


def test_the_card_refuses_a_bad_shard_naming_it(folder):
    from generation.errors import MmatError
    from publishing.card import write_card

    with pytest.raises(MmatError, match=r"cauldron/train-00001-of-00002\.parquet: shard lacks columns \['id'"):
        write_card(folder)
    (folder / FOREIGN).unlink()
    with pytest.raises(MmatError, match=r"tabmwp/train-00001-of-00002\.parquet: not a readable parquet file"):
        write_card(folder)


def test_push_refuses_a_bad_shard_naming_it(folder):
    from publishing.push import PushError, push_dataset

    (folder / FOREIGN).unlink()
    from publishing.card import write_card

    good = (folder / TRUNCATED).read_bytes()
    (folder / TRUNCATED).unlink()
    write_card(folder)  # a card of the good shards, then a half-copied shard appears
    (folder / TRUNCATED).write_bytes(good)
    with pytest.raises(PushError, match=r"tabmwp/train-00001-of-00002\.parquet: not a readable parquet file"):
        push_dataset(folder, "tester/mmat-1m", "v1.0.0", token="hf_x" + "y" * 30, endpoint="http://127.0.0.1:9")


def test_show_refuses_a_bad_shard_with_one_line(folder):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "mmat_cli", "show", str(folder), "--config", "rr"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    lines = [l for l in out.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "cauldron/train-00001-of-00002.parquet: not an mmat-1m shard" in lines[0], out.stderr
