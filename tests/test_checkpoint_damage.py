"""The checkpoint's contracts, in process and fast (the CLI-level fuzz test is test_workfolder_fuzz.py):
a damaged rows or quarantine line is skipped with one warning naming the file and line, the index
never vouches for a damaged line, the check stamp lets a clean folder resume without reading its rows
and never hides a change, the first durable copy of an id wins, and a finished id is not quarantined."""
from __future__ import annotations

import json
import logging

import pytest

from generation.checkpoint import Checkpoint, QuarantineRecord, index_path
from generation.checkpoint_index import stamp_matches, stamp_path


def _rows(n: int) -> dict:
    return {fmt: {"images": [{"bytes": f"img-{n}".encode(), "path": None}], "text": f"{fmt} {n}"}
            for fmt in ("rr", "orr")}


def _fill(work, count: int = 6) -> Checkpoint:
    cp = Checkpoint(work, lock=True)
    cp.add_finished_many([(f"s/{i}", "s", "train", _rows(i)) for i in range(count)])
    return cp


def _damage_line(path, number: int, new: bytes) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[number - 1] = new
    path.write_bytes(b"".join(lines))


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _flip(line: bytes) -> bytes:
    return line[:20] + b"\xff" + line[21:]


@pytest.mark.parametrize("damage", ["flip", "null", "extra", "missing", "cut", "no_orr", "bad_image"])
def test_a_damaged_rows_line_is_skipped_with_one_warning_and_redone(tmp_path, caplog, damage):
    cp = _fill(tmp_path)
    cp.close()
    line = cp.rows_path.read_bytes().splitlines(keepends=True)[2]
    record = json.loads(line)
    if damage == "flip":
        new = _flip(line)
    elif damage == "null":
        new = b"null\n"
    elif damage == "extra":
        new = json.dumps({**record, "x": 1}).encode() + b"\n"
    elif damage == "missing":
        new = json.dumps({k: v for k, v in record.items() if k != "split"}).encode() + b"\n"
    elif damage == "cut":
        new = line[: len(line) // 2]  # runs into the next line: both are damaged
    elif damage == "no_orr":
        new = json.dumps({**record, "rows": {"rr": record["rows"]["rr"]}}).encode() + b"\n"
    else:
        new = json.dumps({**record, "images": ["not-a-sha"]}).encode() + b"\n"
    _damage_line(cp.rows_path, 3, new)

    with caplog.at_level(logging.WARNING), Checkpoint(tmp_path, lock=True) as again:
        ids = again.finished_ids()
        assert again.finished_ids() == ids  # a second read warns no more
    lost = {"s/2", "s/3"} if damage == "cut" else {"s/2"}
    assert ids == {f"s/{i}" for i in range(6)} - lost
    [warning] = [w for w in _warnings(caplog) if "rows-0.jsonl" in w]
    assert "line 3" in warning and "redone" in warning
    # the index no longer vouches for the damaged line: a resume from it alone gives the same ids
    entries = [json.loads(x) for x in index_path(cp.rows_path).read_text().splitlines()]
    assert {e[2] for e in entries} == ids


def test_the_stamp_lets_a_clean_resume_skip_reading_rows_but_not_a_changed_file(tmp_path, caplog, monkeypatch):
    import generation.checkpoint_index as ci

    cp = _fill(tmp_path)
    cp.finished_ids()
    cp.close()
    assert stamp_path(cp.rows_path).is_file() and stamp_matches(cp.rows_path)
    scans = []
    real_scan = ci.scan_rows
    monkeypatch.setattr(ci, "scan_rows", lambda path, offset=0, damage=None: scans.append(offset)
                        or real_scan(path, offset, damage))
    with Checkpoint(tmp_path, lock=True) as again:
        assert len(again.finished_ids()) == 6
    assert scans == []  # the index alone: the resume stays instant
    _damage_line(cp.rows_path, 4, _flip(cp.rows_path.read_bytes().splitlines(keepends=True)[3]))
    assert not stamp_matches(cp.rows_path)
    with caplog.at_level(logging.WARNING), Checkpoint(tmp_path, lock=True) as again:
        assert "s/3" not in again.finished_ids()
    assert scans == [0] and any("line 4" in w for w in _warnings(caplog))


@pytest.mark.parametrize("damaged", ["stamp", "index", "both"])
def test_a_damaged_stamp_or_index_means_reading_the_rows(tmp_path, damaged):
    cp = _fill(tmp_path)
    cp.finished_ids()
    cp.close()
    if damaged in ("stamp", "both"):
        stamp_path(cp.rows_path).write_bytes(b"\xff{")
    if damaged in ("index", "both"):  # the rows file untouched: the stamp must still see the index change
        line = index_path(cp.rows_path).read_bytes().splitlines(keepends=True)[2]
        _damage_line(index_path(cp.rows_path), 3, line.replace(b'"s/2"', b'"s/9"'))  # an id the rows lack
    assert not stamp_matches(cp.rows_path)
    with Checkpoint(tmp_path, lock=True) as again:
        assert again.finished_ids() == {f"s/{i}" for i in range(6)}


def test_a_stamp_in_the_same_clock_tick_as_its_files_is_not_trusted(tmp_path):
    """A stamp written in the clock tick of the last change could not tell a later change in that tick."""
    import os

    from generation.checkpoint_index import _file_state

    cp = _fill(tmp_path)
    cp.close()
    rows, idx = _file_state(cp.rows_path), _file_state(index_path(cp.rows_path))
    stamp = stamp_path(cp.rows_path)
    stamp.write_text(json.dumps({"rows": rows, "idx": idx}))  # exactly the files as they are
    tick = max(rows[3], idx[3])
    os.utime(stamp, ns=(tick, tick))  # ... but stamped in the same tick as their last change
    assert not stamp_matches(cp.rows_path)
    os.utime(stamp, ns=(tick + 10**9, tick + 10**9))  # a tick later: trusted
    assert stamp_matches(cp.rows_path)


@pytest.mark.parametrize("line", [b"null\n", b"[1, 2]\n", b'"str"\n', b"\xff\xfe\n", b'{"id": "q/1"}\n',
                                  b'{"id":"q/1","stage":"s","error_type":"E","message":"m","extra":"x"}\n',
                                  b'{"id":"q/1","stage":"s","error_type":"E","message":7}\n'])
def test_a_damaged_quarantine_line_is_skipped_and_its_sample_tried_again(tmp_path, caplog, line):
    cp = Checkpoint(tmp_path, lock=True)
    cp.quarantine_many([QuarantineRecord(id=f"q/{i}", stage="s", error_type="E", message="m") for i in range(3)])
    _damage_line(cp.quarantine_path, 2, line)
    with caplog.at_level(logging.WARNING):
        assert set(cp.quarantined()) == {"q/0", "q/2"}
        assert set(cp.quarantined()) == {"q/0", "q/2"}  # the plan and the end both read it: one warning
    [warning] = [w for w in _warnings(caplog) if "quarantine.jsonl" in w]
    assert "line 2" in warning
    cp.release_quarantined({"q/0"})  # a rewrite drops the damaged line
    assert [json.loads(x)["id"] for x in cp.quarantine_path.read_text().splitlines()] == ["q/2"]
    cp.close()


def test_the_first_durable_copy_wins_and_a_finished_id_is_not_quarantined(tmp_path):
    cp = _fill(tmp_path, 2)
    first = {r.id: r.offset for r in cp.finished_refs()}
    cp.add_finished("s/0", "s", "train", _rows(100))  # a redone sample (another worker, a retry)
    refs = {r.id: r.offset for r in cp.finished_refs()}
    assert refs == first
    assert cp.load(cp.finished_refs()[0])["rows"]["rr"]["text"] == "rr 0"
    cp.quarantine(QuarantineRecord(id="s/1", stage="s", error_type="E", message="m"))
    cp.quarantine(QuarantineRecord(id="q", stage="s", error_type="E", message="m"))
    assert set(cp.quarantined()) == {"q"}
    cp.close()


def test_a_torn_tail_is_cut_when_the_writer_reopens(tmp_path):
    cp = _fill(tmp_path, 2)
    cp.close()
    whole = cp.rows_path.read_bytes()
    with open(cp.rows_path, "ab") as fh:
        fh.write(b'{"id":"s/9","sou')
    with Checkpoint(tmp_path, lock=True) as again:
        assert again.rows_path.read_bytes() == whole
        again.add_finished("s/9", "s", "train", _rows(9))
        assert again.finished_ids() == {"s/0", "s/1", "s/9"}


def test_a_fresh_run_stamps_its_rows_so_the_next_resume_reads_only_the_index(tmp_path, monkeypatch):
    import generation.checkpoint_index as ci

    cp = Checkpoint(tmp_path, lock=True)  # no rows file yet: every line will be this run's own
    cp.add_finished("s/0", "s", "train", _rows(0))
    cp.close()
    assert stamp_matches(cp.rows_path)
    scans = []
    real_scan = ci.scan_rows
    monkeypatch.setattr(ci, "scan_rows", lambda path, offset=0, damage=None: scans.append(offset)
                        or real_scan(path, offset, damage))
    with Checkpoint(tmp_path, lock=True) as again:
        assert again.finished_ids() == {"s/0"}
    assert scans == []
