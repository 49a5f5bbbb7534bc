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
