"""Record indexes (generation/sources/record_index.py): a rerun reads a finished record's id from the
work folder's index instead of decoding the record; an index that is missing, torn or made for an
older version of the file is never trusted (the file is read again and the index rebuilt), and reading
through an index gives exactly what reading the file gives (samples, quarantines, repeats)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import generation.sources.records as records
from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig
from generation.plan import RunOptions, make_plan
from generation.sources import SOURCE_IDS, RecordIndex, SourceConfig, item_id, read_source
from generation.sources.record_index import SourceChanged

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts records decoded from source files: JSON lines and JSON container members."""
    calls: list[int] = []
    real_line, real_member = records._decode_record, records.container_member
    monkeypatch.setattr(records, "_decode_record", lambda raw: calls.append(1) or real_line(raw))
    import generation.sources.record_index as record_index

    def member(*args):
        calls.append(1)
        return real_member(*args)

    monkeypatch.setattr(records, "container_member", member)
    monkeypatch.setattr(record_index, "container_member", member)
    return calls


def _llava_copy(tmp_path: Path, extra: list[bytes] = ()) -> Path:
    root = Path(shutil.copytree(SAMPLES / "llava_cot", tmp_path / "llava_cot"))
    if extra:
        with (root / "train.jsonl").open("ab") as fh:
            fh.write(b"".join(extra))
    return root


def _dump(items) -> list[str]:
    return [x.model_dump_json() if hasattr(x, "model_dump_json") else repr(x) for x in items]


@pytest.mark.parametrize("kind", [k for k in SOURCE_IDS if k != "cauldron"])  # cauldron's ids are row positions
def test_reading_through_an_index_gives_what_reading_the_file_gives(kind, tmp_path, decodes):
    cfg = SourceConfig(kind=kind, path=SAMPLES / kind)
    index = RecordIndex(tmp_path / "idx")
    plain = _dump(read_source(cfg))
    assert _dump(read_source(cfg, index=index)) == plain  # builds the index
    assert list((tmp_path / "idx").glob("*.idx"))
    assert _dump(read_source(cfg, index=index)) == plain  # reads through it
    decodes.clear()
    skipped = [item_id(x) for x in read_source(cfg, skip=lambda sid: True, index=index)]
    assert decodes == []  # no record read: every id came from the index
    assert skipped == [item_id(x) for x in read_source(cfg)]


def test_bad_lines_and_repeats_quarantine_the_same_through_the_index(tmp_path):
    first = (SAMPLES / "llava_cot" / "train.jsonl").read_bytes().splitlines(keepends=True)[0]
    root = _llava_copy(tmp_path, [b'{"id": "bad-\xff", "image": "x"}\n', b"not json\n", first, b'{"id": "cut'])
    cfg = SourceConfig(kind="llava_cot", path=root)
    index = RecordIndex(tmp_path / "idx")
    plain = _dump(read_source(cfg))
    assert "#repeat-2" in plain[-2] and "invalid UTF-8" in plain[-4] and "truncated" in plain[-1]
    read_source_twice = [_dump(read_source(cfg, index=index)) for _ in range(2)]
    assert read_source_twice == [plain, plain]


def test_a_rerun_with_an_index_decodes_no_finished_record(tmp_path, decodes):
    cfg = SourceConfig(kind="llava_cot", path=_llava_copy(tmp_path))
    index = RecordIndex(tmp_path / "idx")
    ids = [item_id(x) for x in read_source(cfg, index=index)]
    assert len(decodes) == len(ids)
    decodes.clear()
    assert [item_id(x) for x in read_source(cfg, skip=lambda sid: True, index=index)] == ids
    assert decodes == []


def test_a_deleted_index_is_rebuilt(tmp_path, decodes):
    cfg = SourceConfig(kind="tabmwp", path=SAMPLES / "tabmwp")
    index = RecordIndex(tmp_path / "idx")
    ids = [item_id(x) for x in read_source(cfg, skip=lambda sid: True, index=index)]
    shutil.rmtree(tmp_path / "idx")
    decodes.clear()
    assert [item_id(x) for x in read_source(cfg, skip=lambda sid: True, index=index)] == ids
    assert len(decodes) == len(ids)  # read from the files again
    decodes.clear()
    assert [item_id(x) for x in read_source(cfg, skip=lambda sid: True, index=index)] == ids
    assert decodes == []  # and the index is back


@pytest.mark.parametrize("damage", ["cut", "flip", "after"])
def test_a_torn_or_damaged_index_is_never_trusted_and_is_rebuilt(damage, tmp_path, decodes):
    cfg = SourceConfig(kind="llava_cot", path=_llava_copy(tmp_path))
    index = RecordIndex(tmp_path / "idx")
    ids = [item_id(x) for x in read_source(cfg, index=index)]
    (path,) = (tmp_path / "idx").glob("*.idx")
    data = path.read_bytes()
    if damage == "cut":  # a torn write: the file ends mid-entry
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # an entry changed (its id): the checksum no longer matches
        path.write_bytes(data.replace(ids[1].encode(), ids[1].encode()[:-1] + b"#", 1))
    else:  # an entry after the trailer
        path.write_bytes(data + data.splitlines(keepends=True)[1])
    decodes.clear()
    assert [item_id(x) for x in read_source(cfg, skip=lambda sid: True, index=index)] == ids
    assert len(decodes) == len(ids)
    decodes.clear()
    assert [item_id(x) for x in read_source(cfg, skip=lambda sid: True, index=index)] == ids
    assert decodes == []


def test_an_interrupted_read_leaves_no_index_and_no_temp_file(tmp_path):
    cfg = SourceConfig(kind="llava_cot", path=_llava_copy(tmp_path))
    items = read_source(cfg, index=RecordIndex(tmp_path / "idx"))
    next(items)
    items.close()
    assert list((tmp_path / "idx").iterdir()) == []


def test_a_record_appended_to_a_finished_source_is_planned(tmp_path, decodes):
    root = _llava_copy(tmp_path)
    config = PipelineConfig.model_validate({"sources": [{"kind": "llava_cot", "path": str(root)}]})
    options = RunOptions(out_dir=tmp_path / "out")
    with Checkpoint(tmp_path / "work", lock=True) as checkpoint:
        for sid in [item_id(x) for x in read_source(config.sources[0])]:
            checkpoint.add_finished(sid, "llava_cot", "train", {"rr": {"id": sid, "images": []},
                                                                 "orr": {"id": sid, "images": []}})
        assert len(make_plan(config, options, checkpoint).todo) == 0  # builds the index
        assert list((tmp_path / "work" / "source-index").glob("*.idx"))
        decodes.clear()
        assert len(make_plan(config, options, checkpoint).todo) == 0
        assert decodes == []
        record = json.loads((root / "train.jsonl").read_text().splitlines()[0])
        record["id"] = "appended-later"
        with (root / "train.jsonl").open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        plan = make_plan(config, options, checkpoint)
        assert [s.id for s in plan.todo] == [f"llava_cot/{record['image'].split('/')[0]}/appended-later"]
        assert plan.skipped == plan.total - 1


def test_a_file_changed_in_place_under_a_matching_index_stops_the_run(tmp_path):
    """Same size, same mtime, same inode (a rewrite that restored the time): the record loaded
    through the index no longer has the index's id, so the run stops instead of mislabelling it."""
    root = _llava_copy(tmp_path)
    train = root / "train.jsonl"
    cfg = SourceConfig(kind="llava_cot", path=root)
    index = RecordIndex(tmp_path / "idx")
    ids = [item_id(x) for x in read_source(cfg, index=index)]
    st = train.stat()
    native = ids[0].rsplit("/", 1)[1]
    with train.open("r+b") as fh:  # the same bytes count, one id changed
        data = fh.read()
        fh.seek(0)
        fh.write(data.replace(native.encode(), native[:-1].encode() + b"x", 1))
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(SourceChanged, match="changed while the run read it"):
        list(read_source(cfg, index=index))
    assert list((tmp_path / "idx").glob("*.idx")) == []  # the index is gone: the next run reads the file
    assert [item_id(x) for x in read_source(cfg, index=index)][0].endswith(native[:-1] + "x")
