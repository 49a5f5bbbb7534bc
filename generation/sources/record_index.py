"""Per-file indexes of record ids, so a rerun skips its finished records without decoding them.

A source file read once is remembered in the work folder (`source-index/`, see `RecordIndex`): for
each record, in native order, where it is in the file and the id the adapter gave it. The next run
reads that instead of the file, and decodes only the records it builds (the ones still to run): a
rerun of a finished 200k-sample run reads 200k ids, not 200k JSON records.

The guarantee: an index is used only when it provably matches its file, and otherwise the file is
read as if there were none (and the index rebuilt from that read). It names the file's resolved
path, size, mtime_ns and inode and the adapter's id scheme (`scheme`, bumped when an adapter's id
rule changes), all compared before use; it ends with a trailer holding its entry count and the
sha256 of everything before it, so a torn or corrupted index is never half-trusted. It is written
only after a complete read of a file that did not change meanwhile, to a temp file renamed over the
old one. A record loaded through it is decoded exactly as the plain reader decodes it (the same
errors, quarantines and repeat detection follow), and must carry the id the index gave it; if not,
the file changed under the run: the index is removed and the run stops with one line.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from generation.atomic import publish
from generation.errors import MmatError
from generation.sources.records import (
    container_member, container_members, jsonl_lines, jsonl_record, parsed, read_container_text,
)

log = logging.getLogger("mmat.sources")

FORMAT = 1
FOLDER = "source-index"  # inside the work folder
Key = Union[str, int]
IdOf = Callable[[Any, Any], str]  # (position, parsed record or None) -> sample id
Load = Callable[[], Any]  # the record (or a RecordError), decoded when called


class SourceChanged(MmatError, RuntimeError):
    """A source file changed under a run that reads it through its index (not a `ValueError`, so no
    record's quarantine swallows it: the run stops with this one line)."""


@dataclass(frozen=True)
class RecordIndex:
    """The folder holding the indexes of a work folder; `writable=False` (a dry run) only reads them."""

    folder: Path
    writable: bool = True
    tmp_prefix: str = ".tmp-"

    def path_for(self, source: Path, scheme: str) -> Path:
        digest = hashlib.sha256(f"{scheme}\0{source}".encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return self.folder / f"{source.name}-{digest}.idx"


def _identity(source: Path, scheme: str) -> dict[str, Any]:
    st = source.stat()
    return {"format": FORMAT, "scheme": scheme, "path": str(source), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _line(value: Any) -> bytes:
    return (json.dumps(value, separators=(",", ":")) + "\n").encode("ascii")


def cached_entries(index: Optional[RecordIndex], source: Path, scheme: str) -> Optional[Iterator[list[Any]]]:
    """The entries of `source`'s index when it exists, is whole and matches the file; else None."""
    if index is None:
        return None
    path = index.path_for(source, scheme)
    try:
        with path.open("rb") as fh:
            digest, count, trailer = hashlib.sha256(), 0, None
            for line in fh:
                if trailer is not None:
                    return None  # a line after the trailer
                if line.startswith(b'{"end":'):
                    trailer = line
                    continue
                digest.update(line)
                count += 1
            if trailer is None or not trailer.endswith(b"\n"):
                return None
            end = json.loads(trailer)
            if end != {"end": count - 1, "sha256": digest.hexdigest()}:
                return None
            fh.seek(0)
            if json.loads(fh.readline()) != _identity(source, scheme):
                return None
    except (OSError, ValueError):
        return None
    return _entries(path)


def _entries(path: Path) -> Iterator[list[Any]]:
    with path.open("rb") as fh:
        next(fh)  # the identity line
        for line in fh:
            if line.startswith(b'{"end":'):
                return
            yield json.loads(line)


class _Writer:
    """Streams a new index to a temp file; `commit` renames it into place only if the source did not change."""

    def __init__(self, index: RecordIndex, source: Path, scheme: str) -> None:
        self.target = index.path_for(source, scheme)
        self.source, self.scheme = source, scheme
        self.identity = _identity(source, scheme)
        index.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=index.folder, prefix=index.tmp_prefix)
        self.tmp = Path(tmp)
        self.fh = os.fdopen(fd, "wb")
        self.digest = hashlib.sha256()
        self.count = 0
        self._write(_line(self.identity))

    def _write(self, data: bytes) -> None:
        self.digest.update(data)
        self.fh.write(data)

    def add(self, entry: list[Any]) -> None:
        self._write(_line(entry))
        self.count += 1

    def commit(self) -> None:
        try:
            self.fh.write(_line({"end": self.count, "sha256": self.digest.hexdigest()}))
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.fh.close()
            if _identity(self.source, self.scheme) != self.identity:
                self.tmp.unlink(missing_ok=True)
                return
        except BaseException:
            self.discard()
            raise
        publish(self.tmp, self.target)  # `generation.atomic`: rename, then the folder fsync'd

    def discard(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)


def _writer(index: Optional[RecordIndex], source: Path, scheme: str) -> Optional[_Writer]:
    if index is None or not index.writable:
        return None
    try:
        return _Writer(index, source, scheme)
    except OSError as exc:  # an index is a speed-up: a folder that cannot hold one costs speed only
        log.warning("cannot write the record index of %s in %s (%s); reruns will read the whole file",
                    source, index.folder, exc)
        return None


def _checked(value: Any, sid: str, expected: str, index: RecordIndex, source: Path, scheme: str) -> Any:
    if sid != expected:
        index.path_for(source, scheme).unlink(missing_ok=True)
        raise SourceChanged(f"{source} changed while the run read it (a record's id is {sid!r}, its index said "
                          f"{expected!r}): rerun when the source files are complete")
    return value


def indexed_jsonl(path: Path, id_of: IdOf, index: Optional[RecordIndex], scheme: str
                  ) -> Iterator[tuple[int, str, Load]]:
    """(line number, id, load) per record of a JSON-lines file (`iter_jsonl`'s records and errors),
    from the index when it matches the file: then a record is decoded only when `load()` is called."""
    source = path.resolve()
    cached = cached_entries(index, source, scheme)
    if cached is not None:
        with source.open("rb") as fh:
            for n, offset, length, sid in cached:
                def load(n: int = n, offset: int = offset, length: int = length, sid: str = sid) -> Any:
                    fh.seek(offset)
                    value = jsonl_record(n, fh.read(length))
                    return _checked(value, id_of(n, parsed(value)), sid, index, source, scheme)  # type: ignore[arg-type]
                yield n, sid, load
        return
    writer = _writer(index, source, scheme)
    try:
        for n, offset, raw in jsonl_lines(source):
            value = jsonl_record(n, raw)
            sid = id_of(n, parsed(value))
            if writer:
                writer.add([n, offset, len(raw), sid])
            yield n, sid, (lambda value=value: value)
        if writer:
            writer.commit()
    finally:
        if writer:
            writer.discard()


def indexed_json_container(path: Path, kind: str, id_of: IdOf, index: Optional[RecordIndex], scheme: str
                           ) -> Iterator[tuple[int, Key, str, Load]]:
    """(position, key or list index, id, load) per member of a JSON object/list file
    (`iter_json_container`'s records and errors), from the index when it matches the file: then the
    file is read only when a record is loaded. `id_of` gets `(position, key)` and the parsed record."""
    source = path.resolve()
    cached = cached_entries(index, source, scheme)
    if cached is not None:
        text: list[str] = []  # read on the first load

        for n, key, pos, sid in cached:
            def load(n: int = n, key: Key = key, pos: int = pos, sid: str = sid) -> Any:
                if not text:
                    text.append(read_container_text(source, kind))
                _, value, _ = container_member(text[0], pos, source, n)
                return _checked(value, id_of((n, key), parsed(value)), sid, index, source, scheme)  # type: ignore[arg-type]
            yield n, key, sid, load
        return
    writer = _writer(index, source, scheme)
    try:
        for n, key, pos, value in container_members(source, kind):
            sid = id_of((n, key), parsed(value))
            if writer:
                writer.add([n, key, pos, sid])
            yield n, key, sid, (lambda value=value: value)
        if writer:
            writer.commit()
    finally:
        if writer:
            writer.discard()
