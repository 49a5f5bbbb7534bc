"""The checkpoint's line files read back: which lines count, and one warning for those that do not.

Every line of a rows file (`rows-*.jsonl`) and a quarantine file (`quarantine*.jsonl`) was written
whole by `generation.checkpoint` from `json.dumps` of a known record shape. Anything else found there
later (a byte flipped on disk, a line cut by an editor, `null`, a key added or removed by hand) is not
a record: the line is skipped, the file and line are named in one warning per file, and the sample it
stood for is simply redone (a rows line) or tried again (a quarantine line). Why so strict: a line
that decodes but does not fit (a rows line without its `orr` row, a quarantine line with a field the
record type lacks) used to count as done and then fail the end of the run, after every paid call.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator, Optional

log = logging.getLogger("mmat.checkpoint")

FORMATS = ("rr", "orr")  # as `mmat_1m.FORMATS` (not imported: the checkpoint stays below the dataset module)
ROW_KEYS = frozenset({"id", "source", "split", "images", "rows"})
_SHA = re.compile(r"^[0-9a-f]{64}$")
_SHOWN = 5  # damaged lines named in a warning; the count says how many more


@dataclass
class QuarantineRecord:
    id: str
    stage: str
    error_type: str
    message: str
    source: str = ""


_Q_REQUIRED = frozenset(f.name for f in fields(QuarantineRecord) if f.name != "source")
_Q_FIELDS = frozenset(f.name for f in fields(QuarantineRecord))


def decode_line(raw: bytes) -> tuple[Any, Optional[str]]:
    """(value, None), or (None, what is wrong) for a line that is not UTF-8 JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at byte {exc.start}"
    try:
        return json.loads(text), None
    except ValueError:
        return None, "not JSON (cut or garbled)"


def rows_problem(value: Any) -> Optional[str]:
    """What keeps a decoded rows line from being a finished sample; None when it is one."""
    if not isinstance(value, dict):
        return f"{type(value).__name__}, not a record"
    if set(value) != ROW_KEYS:
        missing, extra = sorted(ROW_KEYS - set(value)), sorted(set(value) - ROW_KEYS)
        return "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                       extra and f"unexpected {', '.join(map(str, extra))}"]))
    if not all(isinstance(value[k], str) and value[k] for k in ("id", "source", "split")):
        return "id, source or split is not text"
    images = value["images"]
    if not isinstance(images, list) or not all(isinstance(s, str) and _SHA.match(s) for s in images):
        return "images is not a list of blob hashes"
    rows = value["rows"]
    if not isinstance(rows, dict) or set(rows) != set(FORMATS) or not all(isinstance(r, dict) for r in rows.values()):
        return f"rows is not one object per format ({', '.join(FORMATS)})"
    return None


def quarantine_record(value: Any) -> tuple[Optional[QuarantineRecord], Optional[str]]:
    """(record, None), or (None, what is wrong) for a decoded quarantine line."""
    if not isinstance(value, dict):
        return None, f"{type(value).__name__}, not a record"
    missing, extra = sorted(_Q_REQUIRED - set(value)), sorted(set(value) - _Q_FIELDS)
    if missing or extra:
        return None, "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                             extra and f"unexpected {', '.join(map(str, extra))}"]))
    if not all(isinstance(v, str) for v in value.values()) or not value["id"]:
        return None, "a field is not text"
    return QuarantineRecord(**value), None


def complete_lines(path: Path, offset: int = 0) -> Iterator[tuple[int, bytes]]:
    """(start offset, raw line) of every complete line from `offset`; a torn tail (a crash mid-write)
    ends the file."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        fh.seek(offset)
        for raw in fh:
            if not raw.endswith(b"\n"):
                return
            yield offset, raw
            offset += len(raw)


class Damage:
    """Damaged lines of one file read once; `report` logs one warning naming the file and its lines.

    A process warns once per file and line (`_warned`), so the plan and the end of the same run that
    both read a file say it once."""

    _warned: set[tuple[str, int]] = set()

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = Path(path), what
        self.lines: list[tuple[str, str]] = []  # (where, why)
        self._new = 0

    def add(self, where: str, offset: int, why: str) -> None:
        key = (str(self.path), offset)
        self.lines.append((where, why))
        if key not in Damage._warned:
            Damage._warned.add(key)
            self._new += 1

    def report(self) -> None:
        if not self._new:
            return
        shown = "; ".join(f"{where}: {why}" for where, why in self.lines[:_SHOWN])
        more = f" and {len(self.lines) - _SHOWN} more" if len(self.lines) > _SHOWN else ""
        log.warning("%s: %d damaged line%s skipped (%s%s); %s", self.path, len(self.lines),
                    "" if len(self.lines) == 1 else "s", shown, more, self.what)
        self._new = 0


def read_jsonl(path: Path, what: str = "the line is ignored") -> Iterator[dict[str, Any]]:
    """Every complete line that decodes to a JSON object; a torn tail is skipped silently (a crash),
    any other line with one warning for the file (see `Damage`)."""
    damage = Damage(path, what)
    try:
        for number, (offset, raw) in enumerate(complete_lines(path), 1):
            value, problem = decode_line(raw)
            if problem is None and not isinstance(value, dict):
                problem = f"{type(value).__name__}, not a record"
            if problem is not None:
                damage.add(f"line {number}", offset, problem)
                continue
            yield value
    finally:
        damage.report()


def read_quarantine(path: Path) -> Iterator[QuarantineRecord]:
    """Every whole, well-formed quarantine record of one file, in order (see the module docstring)."""
    damage = Damage(path, "those samples are tried again")
    try:
        for number, (offset, raw) in enumerate(complete_lines(path), 1):
            value, problem = decode_line(raw)
            record = None
            if problem is None:
                record, problem = quarantine_record(value)
            if record is None:
                damage.add(f"line {number}", offset, problem or "not a record")
                continue
            yield record
    finally:
        damage.report()
