"""One atomic write (`generation.atomic`) for every file the project writes durably (issue 33).

Counted at the OS edge (`os.fsync`, `os.replace`): each writer fsyncs a temp file in the target's
folder, renames it onto the target, then fsyncs the folder; with `os.fsync` failing as on a full disk,
the writer raises, the target keeps its old content and no temp file is left. `kill -9` cannot observe
a missing fsync, so these counts are what keeps one from being dropped.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from generation.atomic import atomic_file, write_atomic


class Edge:
    """What reached the OS: ("fsync", path, is_dir) and ("replace", src, dst), in order."""

    def __init__(self, monkeypatch, fail_file_fsync: bool = False) -> None:
        self.events: list[tuple] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            path = os.readlink(f"/proc/self/fd/{fd}")
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            self.events.append(("fsync", path, is_dir))
            if fail_file_fsync and not is_dir:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_fsync(fd)

        def replace(src, dst, **kwargs):
            self.events.append(("replace", str(Path(src).resolve()), str(Path(dst).resolve())))
            return real_replace(src, dst, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def assert_durable(self, target: Path) -> None:
        """temp fsync'd -> renamed onto `target` -> `target`'s folder fsync'd, in that order."""
        target = Path(target).resolve()
        renames = [i for i, e in enumerate(self.events) if e[0] == "replace" and e[2] == str(target)]
        assert renames, f"{target} was not renamed into place: {self.events}"
        at = renames[-1]
        tmp = self.events[at][1]
        assert Path(tmp).parent == target.parent and Path(tmp).name.startswith("."), tmp  # hidden, same folder
        assert ("fsync", tmp, False) in self.events[:at], f"temp not fsync'd before the rename: {self.events}"
        assert ("fsync", str(target.parent), True) in self.events[at:], f"folder not fsync'd after: {self.events}"


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob("*") if ".tmp" in p.name)


# ---------------------------------------------------------------------------------- the primitive
def test_write_atomic_order_and_content(tmp_path, monkeypatch):
    edge = Edge(monkeypatch)
    write_atomic(tmp_path / "f.json", '{"a": "é"}')
    assert (tmp_path / "f.json").read_text(encoding="utf-8") == '{"a": "é"}'
    edge.assert_durable(tmp_path / "f.json")
    assert _leftovers(tmp_path) == []


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    (tmp_path / "f").write_bytes(b"old")
    Edge(monkeypatch, fail_file_fsync=True)
    with pytest.raises(OSError) as err:
        write_atomic(tmp_path / "f", b"new")
    assert err.value.errno == errno.ENOSPC
    assert (tmp_path / "f").read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_atomic_file_error_inside_the_block_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "x.npy", suffix=".npy") as fh:
            fh.write(b"half")
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- every writer
def _checkpoint_index(tmp: Path) -> Path:
    from generation.checkpoint import Checkpoint, index_path, load_index

    cp = Checkpoint(tmp / "work", lock=True)
    cp.add_finished("s/1", "s", "train", {f: {"images": [], "t": f} for f in ("rr", "orr")})
    index_path(cp.rows_path).unlink()
    load_index(cp.rows_path, repair=True)
    cp.close()
    return index_path(cp.rows_path)


def _blob(tmp: Path) -> Path:
    from generation.checkpoint import BlobStore

    store = BlobStore(tmp / "blobs")
    return store.path(store.put(b"image bytes"))


def _quarantine_rewrite(tmp: Path) -> Path:
    from generation.checkpoint import Checkpoint, QuarantineRecord

    cp = Checkpoint(tmp / "work")
    for i in "ab":
        cp.quarantine(QuarantineRecord(id=i, stage="s", error_type="E", message="m"))
    cp.release_quarantined({"a"})
    return cp.quarantine_path


def _check_stamp(tmp: Path) -> Path:
    from generation.checkpoint import Checkpoint
    from generation.checkpoint_index import stamp_path

    cp = Checkpoint(tmp / "work", lock=True)
    cp.add_finished("s/1", "s", "train", {f: {"images": [], "t": f} for f in ("rr", "orr")})
    cp.finished_ids()
    cp.close()
    return stamp_path(cp.rows_path)


def _operator_cache(tmp: Path) -> Path:
    from operators.cache import OperatorCache
    from operators.result import OperatorResult

    cache = OperatorCache(tmp / "cache")
    cache.put("ab" * 32, OperatorResult(operator="ocr", text="t", backend="b", version="1"))
    return cache._path("ab" * 32)


def _shard(tmp: Path) -> Path:
    from generation.writer import WriterSettings, write_group
    from tests.test_writer import _rows

    written = write_group(tmp, "rr", "tabmwp", "train", [_rows(1)["rr"]], WriterSettings())
    return written.files[0]


def _record_index(tmp: Path) -> Path:
    from generation.sources.record_index import RecordIndex, _Writer

    source = tmp / "src.jsonl"
    source.write_text('{"id": 1}\n')
    writer = _Writer(RecordIndex(tmp / "index"), source, "jsonl")
    writer.add(["1", 0, 10])
    writer.commit()
    return writer.target


def _card_file(tmp: Path) -> Path:
    from publishing.card import _write_atomically

    _write_atomically(tmp / "README.md", "# card\n")
    return tmp / "README.md"


def _config_snapshot(tmp: Path) -> Path:
    from generation.config import PipelineConfig
    from generation.config_snapshot import write_config_snapshot

    return write_config_snapshot(PipelineConfig.model_validate({"sources": [{"kind": "tabmwp", "path": str(tmp)}]}),
                                 tmp)


def _viewer_export(tmp: Path) -> Path:
    from viewer.export import _write

    _write(tmp / "export" / "index.html", "<html></html>")
    return tmp / "export" / "index.html"


WRITERS = {"checkpoint index": _checkpoint_index, "blob": _blob, "quarantine rewrite": _quarantine_rewrite,
           "check stamp": _check_stamp, "operator cache": _operator_cache, "shard": _shard,
           "record index": _record_index, "card": _card_file,
           "config snapshot": _config_snapshot, "viewer export": _viewer_export}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_every_durable_writer_fsyncs_renames_and_fsyncs_the_folder(tmp_path, monkeypatch, name):
    edge = Edge(monkeypatch)
    target = WRITERS[name](tmp_path)
    assert target.is_file()
    edge.assert_durable(target)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", sorted(set(WRITERS) - {"check stamp"}))
def test_every_durable_writer_on_a_full_disk_raises_and_leaves_no_temp(tmp_path, monkeypatch, name):
    Edge(monkeypatch, fail_file_fsync=True)
    with pytest.raises(OSError):
        WRITERS[name](tmp_path)
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------- the append
def test_a_finished_sample_is_fsynced_before_add_finished_returns(tmp_path, monkeypatch):
    from generation.checkpoint import Checkpoint, index_path

    cp = Checkpoint(tmp_path / "work", lock=True)
    edge = Edge(monkeypatch)
    cp.add_finished_many([(f"s/{i}", "s", "train", {f: {"images": [], "t": f} for f in ("rr", "orr")})
                          for i in range(3)])
    rows = str(cp.rows_path.resolve())
    fsyncs = [e for e in edge.events if e[0] == "fsync" and e[1] == rows]
    assert len(fsyncs) == 1  # one group commit: one fsync for the three samples
    assert [json.loads(line)["id"] for line in cp.rows_path.read_text().splitlines()] == ["s/0", "s/1", "s/2"]
    assert len(index_path(cp.rows_path).read_text().splitlines()) == 3
    cp.close()


def test_a_quarantine_record_is_fsynced_before_it_counts(tmp_path, monkeypatch):
    from generation.checkpoint import Checkpoint, QuarantineRecord

    cp = Checkpoint(tmp_path / "work")
    edge = Edge(monkeypatch)
    cp.quarantine_many([QuarantineRecord(id="a", stage="s", error_type="E", message="m")])
    assert ("fsync", str(cp.quarantine_path.resolve()), False) in edge.events


def test_an_append_on_a_full_disk_leaves_no_part_of_a_line(tmp_path, monkeypatch):
    from generation.checkpoint import Checkpoint

    cp = Checkpoint(tmp_path / "work", lock=True)
    cp.add_finished("s/0", "s", "train", {f: {"images": [], "t": f} for f in ("rr", "orr")})
    before = cp.rows_path.read_bytes()
    Edge(monkeypatch, fail_file_fsync=True)
    with pytest.raises(OSError):
        cp.add_finished("s/1", "s", "train", {f: {"images": [], "t": f} for f in ("rr", "orr")})
    assert cp.rows_path.read_bytes() == before
    cp.close()
