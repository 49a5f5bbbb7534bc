"""Shard writer and checkpoint store: schema, images, ids, atomic replacement, torn lines."""
from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
from PIL import Image

from generation.checkpoint import Checkpoint, QuarantineRecord
from generation.integration import build_rows
from generation.schema import QA, QATrajectory, Sample, Step, Trajectory
from generation.writer import WriterSettings, write_group
from mmat_1m import FEATURES


def _png(colour: tuple[int, int, int], size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _rows(i: int, n_images: int = 1) -> dict:
    sample = Sample(id=f"tabmwp/free_text/{i:03d}", source="tabmwp", subset="free_text",
                    qas=[QA(question=f"q{i}", answer=str(i))])
    traj = Trajectory(sample_id=sample.id, qas=[QATrajectory(question=f"q{i}", reference_answer=str(i),
                                                              final_answer=str(i), steps=[Step(thought="t", signal="end")])])
    return build_rows(sample, traj, [_png((i % 256, 0, 0)) for _ in range(n_images)])


def test_round_trip_schema_images_and_unique_ids(tmp_path):
    rows = [_rows(i)["orr"] for i in range(10)]
    written = write_group(tmp_path, "orr", "tabmwp", "train", rows, WriterSettings(row_group_rows=4))
    assert written.rows == 10
    [path] = written.files
    assert path.name == "train-00000-of-00001.parquet"
    assert path.parent == tmp_path / "data" / "orr" / "tabmwp"
    pf = pq.ParquetFile(path)
    assert pf.metadata.num_row_groups == 3
    assert pf.schema_arrow.equals(FEATURES.arrow_schema, check_metadata=False)
    # the HF features travel in the schema metadata, so loaders decode `images` as Image
    assert b"huggingface" in pf.schema_arrow.metadata
    table = pf.read()
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 10
    first = table.slice(0, 1).to_pylist()[0]
    decoded = FEATURES.decode_example(first)
    assert decoded["images"][0].size == (32, 24)
    assert decoded["images"][0].getpixel((0, 0)) == (0, 0, 0)
    assert decoded["messages"][0]["content"][0] == {"type": "image", "text": None}


def test_shards_split_by_size_and_stale_files_removed(tmp_path):
    rows = [_rows(i)["rr"] for i in range(6)]
    one_row = len(_png((1, 0, 0))) + 600
    written = write_group(tmp_path, "rr", "tabmwp", "train", rows, WriterSettings(shard_max_bytes=2 * one_row + 2000))
    names = sorted(p.name for p in written.files)
    assert len(names) >= 2 and names[0].endswith(f"-of-{len(names):05d}.parquet")
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in written.files) == 6
    # a rewrite with fewer rows replaces the set: no stale `-of-0000N` file survives
    write_group(tmp_path, "rr", "tabmwp", "train", rows[:1], WriterSettings())
    left = sorted(p.name for p in (tmp_path / "data/rr/tabmwp").glob("*.parquet"))
    assert left == ["train-00000-of-00001.parquet"]
    assert not list((tmp_path / "data/rr/tabmwp").glob(".tmp-*"))


def test_workers_write_disjoint_names(tmp_path):
    for worker in range(2):
        write_group(tmp_path, "orr", "tabmwp", "train", [_rows(worker)["orr"]],
                    WriterSettings(worker_index=worker, num_workers=2))
    names = sorted(p.name for p in (tmp_path / "data/orr/tabmwp").glob("train-*.parquet"))
    assert names == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]


def test_checkpoint_survives_torn_line_and_dedups(tmp_path):
    cp = Checkpoint(tmp_path)
    rows = _rows(1, n_images=2)
    cp.add_finished("tabmwp/free_text/001", "tabmwp", "train", rows)
    cp.add_finished("tabmwp/free_text/001", "tabmwp", "train", rows)  # a duplicate append
    with open(cp.rows_path, "a") as fh:
        fh.write('{"id": "torn", "rows": {')  # the process died mid-line
    cp2 = Checkpoint(tmp_path)
    assert cp2.finished_ids() == {"tabmwp/free_text/001"}
    [record] = list(cp2.finished())
    row = cp2.materialise(record, "orr")
    assert [im["bytes"] for im in row["images"]] == [im["bytes"] for im in rows["orr"]["images"]]
    # identical images are stored once
    assert len(list((tmp_path / "blobs").rglob("*"))) == 2  # one folder + one blob
    cp2.add_finished("tabmwp/free_text/002", "tabmwp", "train", _rows(2))
    assert Checkpoint(tmp_path).finished_ids() == {"tabmwp/free_text/001", "tabmwp/free_text/002"}


def test_quarantine_release(tmp_path):
    cp = Checkpoint(tmp_path)
    cp.quarantine(QuarantineRecord(id="a", stage="rationale", error_type="TeacherError", message="garbage"))
    cp.quarantine(QuarantineRecord(id="b", stage="foundation", error_type="ImageDecodeError", message="0 bytes"))
    assert set(cp.quarantined()) == {"a", "b"}
    cp.release_quarantined({"a"})
    assert set(cp.quarantined()) == {"b"}
    assert json.loads(cp.quarantine_path.read_text().splitlines()[0])["stage"] == "foundation"
