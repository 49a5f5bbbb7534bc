"""The index of a rows file (`rows-{worker}.idx`) and the stamp that says when it may be trusted.

The index holds one `[start, end, id, source, split]` line per finished line of the rows file, so a
resume or a shard write reads ids without reading rows. A cache, never the truth: written after the
rows, not fsync'd, checked against the rows file on every read (entries in order, within the file, the
last entry's id at its offset), extended from the rows file's tail, or rebuilt from the rows file when
missing, torn or stale.

The check stamp (`rows-{worker}.checked`) is what makes damage found before a run spends anything:
a rows line that was whole when written may be damaged later (a byte flipped, a line cut or edited).
The writer reads every line of its rows file in full once (`scan_rows`: a line that is not a whole,
well-formed record is skipped with one warning and its sample is redone) unless the stamp, written when
the writer last closed the folder, names exactly the rows and index files found now (inode, size,
mtime, ctime, both older than the stamp itself, so a change in the same clock tick as the stamp never
passes for unchanged). So a resume after a clean end stays instant (the index alone), and a resume
after a crash or after anyone touched a file reads the rows once (about 10 s per 200k samples).
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Iterator, Optional

from generation.atomic import write_atomic
from generation.checkpoint_lines import Damage, complete_lines, decode_line, rows_problem

IndexEntry = tuple[int, int, str, str, str]  # start, end, id, source, split
_ID_PREFIX = re.compile(r'^\{"id":("(?:[^"\\]|\\.)*")')


def index_path(rows_path: Path) -> Path:
    """`rows-{worker}.idx` beside `rows-{worker}.jsonl`."""
    return rows_path.with_suffix(".idx")


def stamp_path(rows_path: Path) -> Path:
    """`rows-{worker}.checked` beside `rows-{worker}.jsonl` (see the module docstring)."""
    return rows_path.with_suffix(".checked")


def index_line(entry: IndexEntry) -> str:
    return json.dumps(list(entry), ensure_ascii=False, separators=(",", ":")) + "\n"


def _entry(value: object, end: int, size: int) -> Optional[IndexEntry]:
    """An index line's entry when it follows byte `end` within a rows file of `size` bytes."""
    if type(value) is not list or len(value) != 5:
        return None
    start, stop, sample_id, source, split = value
    if not all(type(x) is int for x in (start, stop)) or start < end or stop <= start or stop > size:
        return None
    if not all(isinstance(x, str) for x in (sample_id, source, split)):
        return None
    return start, stop, sample_id, source, split


def parse_index(data: bytes, size: int, end: int = 0) -> tuple[list[IndexEntry], int]:
    """The entries of an index's complete lines, in order within a rows file of `size` bytes, the first
    at or after byte `end`, and the index bytes they take; reading stops at the first line that is not
    such an entry (a torn or garbled tail: the caller reads the rows file past the last good entry)."""
    complete = data[: data.rfind(b"\n") + 1]
    entries: list[IndexEntry] = []
    try:  # one parse for a million lines (a resume), checked entry by entry below
        values = json.loads(b"[" + complete[:-1].replace(b"\n", b",") + b"]") if complete else []
        used = len(complete)
    except ValueError:
        values, used = None, 0
    if values is not None:
        for value in values:
            entry = _entry(value, end, size)
            if entry is None:
                break
            entries.append(entry)
            end = entry[1]
        else:
            return entries, used
    entries, used = [], 0  # line by line, to find where the good ones end
    for line in complete.splitlines(keepends=True):
        value, problem = decode_line(line)
        entry = None if problem else _entry(value, end, size)
        if entry is None:
            break
        entries.append(entry)
        end = entry[1]
        used += len(line)
    return entries, used


def index_tail(rows_path: Path, read: int, end: int) -> tuple[list[IndexEntry], int]:
    """The entries a rows file's index gained after its first `read` bytes (the first at or after byte
    `end` of the rows file) and the index bytes they take; complete lines only, so a half-written last
    entry waits for the next call."""
    try:
        with open(index_path(rows_path), "rb") as fh:
            fh.seek(read)
            data = fh.read()
    except FileNotFoundError:
        return [], 0
    return parse_index(data, rows_path.stat().st_size, end)


def _last_entry_confirmed(rows_path: Path, entries: list[IndexEntry]) -> bool:
    """Is the index's last entry a whole line of the rows file, of its id (or is the index empty)?"""
    if not entries:
        return True
    start, stop, sample_id = entries[-1][:3]
    with open(rows_path, "rb") as fh:
        fh.seek(start)
        line = fh.read(stop - start)
    match = _ID_PREFIX.match(line.decode("utf-8", "replace"))
    try:
        return line.endswith(b"\n") and match is not None and json.loads(match.group(1)) == sample_id
    except ValueError:
        return False


def scan_rows(path: Path, offset: int = 0, damage: Optional[Damage] = None) -> Iterator[IndexEntry]:
    """Index entries of a rows file's complete lines from `offset` on, each line read in full: a line
    that is not a whole, well-formed record is skipped (and noted in `damage`); a torn tail ends it."""
    number_base = 1 if offset == 0 else None
    for number, (start, raw) in enumerate(complete_lines(path, offset)):
        value, problem = decode_line(raw)
        if problem is None:
            problem = rows_problem(value)
        if problem is not None:
            if damage is not None:
                where = f"line {number + number_base}" if number_base else f"byte {start}"
                damage.add(where, start, problem)
            continue
        yield start, start + len(raw), value["id"], value["source"], value["split"]


def _file_state(path: Path) -> list[int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def stamp_matches(rows_path: Path) -> bool:
    """Is the check stamp of this rows file exactly the rows and index files as they are now?"""
    stamp = stamp_path(rows_path)
    try:
        value = json.loads(stamp.read_bytes())
        stamp_time = stamp.stat().st_mtime_ns
    except (OSError, ValueError):
        return False
    rows, idx = _file_state(rows_path), _file_state(index_path(rows_path))
    if not rows or not idx or not isinstance(value, dict):
        return False
    older = rows[2] < stamp_time and idx[2] < stamp_time and rows[3] < stamp_time and idx[3] < stamp_time
    return older and value.get("rows") == rows and value.get("idx") == idx


def write_stamp(rows_path: Path, tmp_prefix: str) -> None:
    """Stamp the rows and index files as checked (their writer, after checking them and appending only
    whole records since). A stamp in the same clock tick as the files is written again a tick later."""
    rows, idx = _file_state(rows_path), _file_state(index_path(rows_path))
    if not rows or not idx:
        stamp_path(rows_path).unlink(missing_ok=True)
        return
    data = json.dumps({"rows": rows, "idx": idx})
    for _ in range(3):
        write_atomic(stamp_path(rows_path), data, tmp_prefix=tmp_prefix)
        if stamp_matches(rows_path):
            return
        time.sleep(0.02)


def load_index(rows_path: Path, repair: bool = False, checked: bool = True,
               damage: Optional[Damage] = None) -> list[IndexEntry]:
    """Every finished line of a rows file as an index entry.

    `checked` (the rows file was read in full by this process, or its stamp matches): from the index
    where the rows file confirms it, and from the rows file past that. Otherwise every line is read
    (`scan_rows`, damaged lines noted in `damage`). With `repair` (the file's own writer), an index that
    differs from the entries is rewritten atomically."""
    if not rows_path.exists():
        return []
    size = rows_path.stat().st_size
    idx = index_path(rows_path)
    try:
        data = idx.read_bytes()
    except FileNotFoundError:
        data = b""
    if checked:
        entries, used = parse_index(data, size)
        if not _last_entry_confirmed(rows_path, entries):
            entries, used = [], 0
        covered = entries[-1][1] if entries else 0
        tail = list(scan_rows(rows_path, covered, damage)) if covered < size else []
        entries += tail
        stale = bool(tail) or used != len(data)
    else:
        entries = list(scan_rows(rows_path, 0, damage))
        stale = None
    rebuild = not checked or (repair and stale)  # (an index the rows confirm whole is not written again)
    text = "".join(index_line(e) for e in entries).encode("utf-8") if rebuild else b""
    if not checked and data and text != data:
        _note_index_damage(idx, data, text)
    if repair and rebuild:
        if stale or (stale is None and text != data):
            write_atomic(idx, text, tmp_prefix=f".tmp-{rows_path.stem.removeprefix('rows-')}-")
    return entries


def _note_index_damage(idx: Path, data: bytes, text: bytes) -> None:
    """Warn about the first index line that is not what the rows file says (an index that only lacks
    its last entries is a crash between the two appends, not damage)."""
    found, wanted = data[: data.rfind(b"\n") + 1].splitlines(keepends=True), text.splitlines(keepends=True)
    for number, (line, right) in enumerate(zip(found, wanted), 1):
        if line != right:
            break
    else:
        if len(found) <= len(wanted):
            return
        number = len(wanted) + 1
    damage = Damage(idx, "the index is rebuilt from the rows file")
    damage.add(f"line {number}", number, "does not match the rows file")
    damage.report()
