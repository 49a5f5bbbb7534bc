"""The finished-id index beside the rows files (`rows-{worker}.idx`): a cache the rows file confirms.

A resume reads ids from the index instead of the rows (fast at 200k samples); whatever happened to the
index (deleted, torn by a kill mid-append, stale after the rows file was cut back, garbage), the ids
and offsets it yields are the rows file's own, and the writer rewrites it."""
from __future__ import annotations

import json

import pytest

from generation.checkpoint import Checkpoint, index_path, load_index


def _rows(n: int) -> dict:
    return {fmt: {"images": [{"bytes": f"img-{n}".encode(), "path": None}], "text": f"{fmt} {n} " * 20}
            for fmt in ("rr", "orr")}


def _fill(work, count: int) -> Checkpoint:
    checkpoint = Checkpoint(work, lock=True)
    checkpoint.add_finished_many([(f"src/a/{i:03d}", "src", "train", _rows(i)) for i in range(count // 2)])
    for i in range(count // 2, count):
        checkpoint.add_finished(f"src/a/{i:03d}", "src", "train", _rows(i))
    return checkpoint


def _truth(checkpoint: Checkpoint) -> list[tuple[str, int]]:
    """(id, offset) of every line, straight from the rows file."""
    out, offset = [], 0
    for raw in checkpoint.rows_path.read_bytes().splitlines(keepends=True):
        if raw.endswith(b"\n"):
            out.append((json.loads(raw)["id"], offset))
        offset += len(raw)
    return out


def _refs(checkpoint: Checkpoint) -> list[tuple[str, int]]:
    return [(r.id, r.offset) for r in checkpoint.finished_refs()]


def test_index_is_written_with_the_rows_and_matches_them(tmp_path):
    checkpoint = _fill(tmp_path, 10)
    idx = index_path(checkpoint.rows_path)
    assert len(idx.read_text().splitlines()) == 10
    assert _refs(checkpoint) == _truth(checkpoint)
    record = checkpoint.load(checkpoint.finished_refs()[7])
    assert record["id"] == "src/a/007" and record["rows"]["rr"]["text"].startswith("rr 7 ")
    checkpoint.close()


@pytest.mark.parametrize("damage", ["deleted", "torn", "garbage", "stale", "foreign"])
def test_index_rebuilt_after_damage(tmp_path, damage):
    checkpoint = _fill(tmp_path, 12)
    truth = _truth(checkpoint)
    idx = index_path(checkpoint.rows_path)
    text = idx.read_bytes()
    if damage == "deleted":
        idx.unlink()
    elif damage == "torn":  # a kill in the middle of an index append: half a line at the end
        idx.write_bytes(text[: len(text) - 17])
    elif damage == "garbage":
        idx.write_bytes(text[:40] + b"\x00\x00not json\n" + text[40:])
    elif damage == "stale":  # the index of a longer rows file (the rows file was cut back since)
        cut = truth[9][1]
        with open(checkpoint.rows_path, "rb+") as fh:
            fh.truncate(cut)
        truth = truth[:9]
    elif damage == "foreign":  # offsets fit, ids do not (an index copied from another run)
        idx.write_bytes(text.replace(b"src/a/011", b"src/a/999"))
    checkpoint.close()

    reopened = Checkpoint(tmp_path, lock=True)
    assert _refs(reopened) == truth  # the rows file's ids, whatever the index said
    rebuilt = idx.read_text().splitlines()
    assert [json.loads(line)[2] for line in rebuilt] == [i for i, _ in truth]  # and the index is whole again
    reopened.add_finished("src/a/100", "src", "train", _rows(100))
    assert _refs(reopened) == _truth(reopened)
    reopened.close()


def test_rows_appended_past_the_index_are_read_from_the_rows_file(tmp_path):
    """Rows written by a writer whose index append failed (or an older version without an index)."""
    checkpoint = _fill(tmp_path, 6)
    idx = index_path(checkpoint.rows_path)
    idx.write_text("".join(idx.read_text().splitlines(keepends=True)[:2]))
    readonly = Checkpoint(tmp_path, readonly=True)
    assert _refs(readonly) == _truth(checkpoint)
    assert len(idx.read_text().splitlines()) == 2  # a reader never writes
    assert load_index(checkpoint.rows_path, repair=True) and len(idx.read_text().splitlines()) == 6
    checkpoint.close()


def test_finished_refs_follow_every_workers_appends_after_a_first_read(tmp_path):
    """A run reads the finished refs more than once (plan, shards); what another worker (or this one)
    appended in between, a new worker's file and a rows file cut back by a repair all show."""
    mine = _fill(tmp_path, 4)
    assert [i for i, _ in _refs(mine)] == [f"src/a/{i:03d}" for i in range(4)]
    other = Checkpoint(tmp_path, worker="00001-of-00002", lock=True)
    other.add_finished("src/a/050", "src", "train", _rows(50))
    assert [i for i, _ in _refs(mine)][-1] == "src/a/050"
    mine.add_finished("src/a/060", "src", "train", _rows(60))
    assert [i for i, _ in _refs(mine)] == [f"src/a/{i:03d}" for i in (0, 1, 2, 3, 60, 50)]
    with open(other.rows_path, "rb+") as fh:  # cut back (a repair of a torn line leaves the file shorter)
        fh.truncate(0)
    assert "src/a/050" not in [i for i, _ in _refs(mine)]
    refs = mine.finished_refs()
    refs.clear()  # a caller's copy: the next read is whole
    assert len(mine.finished_refs()) == 5
    other.close()
    mine.close()
