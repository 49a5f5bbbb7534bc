"""Hub-ready parquet (generation.writer's docstring): row groups capped by rows and by bytes, the page
index written, content-defined chunking where pyarrow has it; and a group whose shard was written with
an older schema is rewritten even when its rows did not change."""
from __future__ import annotations

import inspect

import pyarrow as pa
import pyarrow.parquet as pq

import generation.writer as writer
from generation.writer import WriterSettings, write_group
from mmat_1m import FEATURES
from tests.test_writer import _rows


def _group(tmp_path, n, settings):
    rows = [_rows(i)["orr"] for i in range(n)]
    return write_group(tmp_path, "orr", "tabmwp", "train", rows, settings, ids=[r["id"] for r in rows])


def test_row_groups_capped_by_rows_and_page_index_written(tmp_path):
    written = _group(tmp_path, 10, WriterSettings(row_group_rows=4))
    meta = pq.ParquetFile(written.files[0]).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 2]
    chunk = meta.row_group(0).column(0)
    assert chunk.has_offset_index and chunk.has_column_index  # write_page_index=True
    assert writer.PARQUET_OPTIONS["write_page_index"] is True
    if "use_content_defined_chunking" in inspect.signature(pq.ParquetWriter.__init__).parameters:
        assert writer.PARQUET_OPTIONS["use_content_defined_chunking"]


def test_row_groups_capped_by_bytes(tmp_path, monkeypatch):
    from datasets import config as ds_config
    from datasets.utils.py_utils import convert_file_size_to_int

    assert writer.ROW_GROUP_MAX_BYTES == convert_file_size_to_int(ds_config.MAX_ROW_GROUP_SIZE)
    row = writer._row_bytes(FEATURES.encode_example(_rows(0)["orr"]))  # the writer's own size estimate
    monkeypatch.setattr(writer, "ROW_GROUP_MAX_BYTES", 3 * row + row // 2)  # three rows' worth
    written = _group(tmp_path, 10, WriterSettings(row_group_rows=64))
    meta = pq.ParquetFile(written.files[0]).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(sizes) == 10 and max(sizes) < 10 and meta.num_row_groups >= 3


def test_group_with_an_old_schema_is_rewritten_though_its_rows_did_not_change(tmp_path):
    settings = WriterSettings()
    written = _group(tmp_path, 3, settings)
    path = written.files[0]
    table = pq.read_table(path)
    dropped = table.schema.names[-1]  # a folder from before this field existed
    pq.write_table(table.drop_columns([dropped]), path)
    assert dropped not in pq.read_schema(path).names

    again = _group(tmp_path, 3, settings)
    schema = pq.read_schema(again.files[0])
    assert schema.remove_metadata().equals(FEATURES.arrow_schema.remove_metadata())
    assert pq.read_table(again.files[0]).num_rows == 3
    assert isinstance(schema, pa.Schema)


def _cut_rows(n):
    rows = [_rows(i)["orr"] for i in range(100, 100 + n)]
    image = rows[0]["images"]
    rows = [{**row, "images": image} for row in rows]
    sizes = {writer._row_bytes(FEATURES.encode_example(r)) for r in rows}
    assert len(sizes) == 1, "the hand-computed cuts below assume rows of one size"
    return rows, sizes.pop()


def test_files_and_row_groups_cut_where_the_sizes_say(tmp_path, monkeypatch):
    """17 rows of size r, files of at most 7.5 r, row groups of 3 rows or 2.5 r: by hand, three files
    of 7, 7 and 3 rows, row groups of 2, 2, 2, 1 / 2, 2, 2, 1 / 2, 1, every row once, in order."""
    rows, r = _cut_rows(17)
    monkeypatch.setattr(writer, "ROW_GROUP_MAX_BYTES", 2 * r + r // 2)
    written = write_group(tmp_path, "orr", "tabmwp", "train", rows,
                          WriterSettings(shard_max_bytes=7 * r + r // 2, row_group_rows=3))
    metas = [pq.ParquetFile(p).metadata for p in written.files]
    assert [[m.row_group(i).num_rows for i in range(m.num_row_groups)] for m in metas] == \
        [[2, 2, 2, 1], [2, 2, 2, 1], [2, 1]]
    assert [p.name for p in written.files] == [f"train-{j:05d}-of-00003.parquet" for j in range(3)]
    ids = [i for p in written.files for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
    assert ids == [r["id"] for r in rows] and written.rows == 17
    assert not list(written.files[0].parent.glob(".tmp-*"))


def test_rows_stream_one_row_group_at_a_time(tmp_path, monkeypatch):
    """A group of any size is written with one row group of rows in memory: each row group reaches the
    file before the rows after it are read (memory stays flat however large `shard_max_bytes` is)."""
    rows, _ = _cut_rows(20)
    consumed = []
    flushed = []

    def source():
        for row in rows:
            consumed.append(row["id"])
            yield row

    real_flush = writer._TempFiles._flush

    def flush(w, group):
        flushed.append((len(consumed), len(group)))
        real_flush(w, group)

    monkeypatch.setattr(writer._TempFiles, "_flush", staticmethod(flush))
    written = write_group(tmp_path, "orr", "tabmwp", "train", source(), WriterSettings(row_group_rows=4))
    assert written.rows == 20 and len(written.files) == 1
    # a group of 4 is flushed when the 5th row arrives (or at the end): never more than 5 rows read ahead
    assert flushed == [(5, 4), (9, 4), (13, 4), (17, 4), (20, 4)]


def test_a_failing_row_source_leaves_no_temp_file_and_the_old_shards(tmp_path):
    rows, _ = _cut_rows(6)
    first = write_group(tmp_path, "orr", "tabmwp", "train", rows[:3], WriterSettings(row_group_rows=2))

    def broken():
        yield from rows[:5]
        raise OSError("checkpoint unreadable")

    try:
        write_group(tmp_path, "orr", "tabmwp", "train", broken(), WriterSettings(row_group_rows=2))
    except OSError:
        pass
    else:
        raise AssertionError("the error must reach the caller")
    folder = first.files[0].parent
    assert sorted(p.name for p in folder.iterdir()) == ["train-00000-of-00001.parquet"]
    assert pq.read_table(first.files[0]).num_rows == 3


def test_rows_written_as_they_are_equal_rows_encoded_by_datasets_and_odd_values_are_still_coerced(tmp_path):
    """The writer sends rows whose images are storage dicts (the checkpoint's) straight to Arrow, without
    `FEATURES.encode_example` per row; the shard must not change, and a value Arrow refuses still goes
    through `datasets`' coercion (a number where text belongs becomes its text)."""
    rows = [_rows(i)["orr"] for i in range(6)]
    assert all(isinstance(img, dict) for r in rows for img in r["images"])

    def written(folder, group):
        [path] = write_group(tmp_path / folder, "orr", "tabmwp", "train", group, WriterSettings(row_group_rows=4),
                             ids=[r["id"] for r in group]).files
        return pq.read_table(path)

    straight = written("straight", rows)
    assert straight.equals(written("encoded", [FEATURES.encode_example(r) for r in rows]))
    odd = [dict(r) for r in rows]
    odd[2]["question"] = 12345  # Arrow refuses an int for a string
    odd[3]["teacher"] = {**odd[3]["teacher"], "prompt_tokens": 7.0, "latency_s": 2}  # Arrow takes these as datasets does
    odd[4]["images"] = [r for r in (odd[4]["images"][0]["bytes"],)]  # raw bytes: not a storage dict
    table = written("odd", odd)
    assert table.column("question").to_pylist()[2] == "12345"
    assert table.column("teacher").to_pylist()[3]["prompt_tokens"] == 7
    assert table.column("teacher").to_pylist()[3]["latency_s"] == 2.0
    assert table.column("images").to_pylist()[4] == straight.column("images").to_pylist()[4]
    assert table.column("id").to_pylist() == straight.column("id").to_pylist()
