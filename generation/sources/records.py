"""Reading native record files so that a bad byte costs one record, never the whole source.

`iter_jsonl` and `iter_json_container` decode each record on its own: invalid UTF-8, a line that is
not a JSON object, or a file cut off mid-record becomes one `RecordError` for that record (keeping
what could be parsed of it, so its id stays the same), never an exception for the whole source. Only
a file whose layout is wrong (not a JSON object or list at all) raises `SourceError`, which stops the
run with one line. `generation.sources.base` re-exports all of this for the adapters.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from generation.errors import MmatError

log = logging.getLogger("mmat.sources")

class SourceError(MmatError, ValueError):
    """The source as a whole cannot be read (missing folder, unrecognised layout, Hub unreachable).

    Unlike a bad record, this stops the run: the message is one line that names the fix.
    """


def json_kind(value: Any) -> str:
    """How JSON names a parsed value's type: 'an array', 'a string', ..."""
    for kind, name in ((dict, "an object"), (list, "an array"), (str, "a string"), (bool, "a boolean"),
                       ((int, float), "a number"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


_SURROGATE = re.compile(r"[\udc80-\udcff]")


class RecordError(ValueError):
    """One native record that cannot be used as it is (invalid UTF-8, not JSON, not an object, cut off).

    `value` is what could still be parsed (bad bytes as lone surrogates), so the record keeps the id
    it would have had: fixing the bytes and running `mmat retry` then finds the same id."""

    def __init__(self, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.value = value


def parsed(record: Any) -> Any:
    """The record, or what could be parsed of a `RecordError` (for its id)."""
    return record.value if isinstance(record, RecordError) else record


def id_text(value: Any) -> Optional[str]:
    """`value` as part of an id: a non-empty string or integer with no undecodable bytes, else None."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text if text and not _SURROGATE.search(text) else None


def field_text(record: Any, field: str) -> Optional[str]:
    """`id_text` of `record[field]`, for building ids defensively from any (parsed) record."""
    return id_text(record.get(field)) if isinstance(record, dict) else None


def _decode_record(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        try:
            value = json.loads(raw.decode("utf-8", errors="surrogateescape"))
        except ValueError:
            value = None
        raise RecordError(f"invalid UTF-8 at byte {exc.start}", value) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RecordError(f"not valid JSON ({exc})") from None


def jsonl_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw bytes) per non-blank line of a JSON-lines file."""
    with path.open("rb") as fh:
        offset = 0
        for n, raw in enumerate(fh, 1):
            if raw.strip():
                yield n, offset, raw
            offset += len(raw)


def jsonl_record(n: int, raw: bytes) -> Any:
    """Line `n` decoded: its JSON object, or a `RecordError` for that line alone."""
    try:
        value = _decode_record(raw)
    except RecordError as exc:
        truncated = " (the file ends inside it: truncated?)" if not raw.endswith(b"\n") else ""
        return RecordError(f"line {n}: {exc}{truncated}", exc.value if isinstance(exc.value, dict) else None)
    return value if isinstance(value, dict) else RecordError(f"line {n} is {json_kind(value)}, not a JSON object")


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object or a `RecordError`) per non-blank line: one bad line is one record.

    Lines are read as bytes and decoded one by one, so invalid UTF-8, a line that is not JSON, a JSON
    value that is not an object, or a last line cut off by a truncated download costs that line only.
    """
    for n, _, raw in jsonl_lines(path):
        yield n, jsonl_record(n, raw)


def _has_bad_bytes(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_SURROGATE.search(value))
    if isinstance(value, dict):
        return any(_has_bad_bytes(k) or _has_bad_bytes(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_bad_bytes(v) for v in value)
    return False


def iter_json_container(path: Path, kind: str) -> Iterator[tuple[Union[str, int], Any]]:
    """The members of a JSON file holding one object `{key: record}` or one list `[record, ...]`, one
    at a time: (key or index, record or `RecordError`).

    A record with invalid UTF-8 is an error for that record; a file cut off mid-record (a truncated
    download) ends with one error for the record it cuts, after every complete record before it.
    Only a file that is not a JSON object or list at all raises `SourceError` (the layout is wrong).
    """
    for _, key, _, value in container_members(path, kind):
        yield key, value


def read_container_text(path: Path, kind: str) -> str:
    """A JSON container file as text (bad bytes kept as lone surrogates), or `SourceError`."""
    try:
        return path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    except FileNotFoundError:
        raise SourceError(f"{kind}: file not found: {path}") from None
    except OSError as exc:
        raise SourceError(f"{kind}: cannot read {path}: {exc}") from None


def container_members(path: Path, kind: str) -> Iterator[tuple[int, Union[str, int], int, Any]]:
    """`iter_json_container`'s members as (position, key or index, char offset of the member, record
    or `RecordError`): the offset lets `container_member` decode that member again on its own."""
    text = read_container_text(path, kind)
    pos = _skip_ws(text, 0)
    opener = text[pos:pos + 1]
    if opener not in ("{", "["):
        raise SourceError(f"{kind}: {path.name} must hold one JSON object or list, found "
                          f"{repr(text[pos:pos + 20]) if text[pos:].strip() else 'nothing'}")
    closer = "}" if opener == "{" else "]"
    pos = _skip_ws(text, pos + 1)
    index = 0
    while pos < len(text) and text[pos] != closer:
        key, value, end = container_member(text, pos, path, index)
        yield index, key, pos, value
        if end is None:
            return
        index += 1
        pos = _skip_ws(text, end)
        if text[pos:pos + 1] == ",":
            pos = _skip_ws(text, pos + 1)
    if pos >= len(text):
        log.warning("%s: %s ends before its closing '%s' (truncated download?); every complete record was read",
                    kind, path, closer)


def container_member(text: str, pos: int, path: Path, index: int) -> tuple[Union[str, int], Any, Optional[int]]:
    """The member starting at `pos` of a container's text: (key or `index`, record or `RecordError`,
    where it ends; None when it cannot be decoded, which ends the container)."""
    is_object = text[_skip_ws(text, 0)] == "{"
    key: Union[str, int] = index
    try:
        if is_object:
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if text[pos:pos + 1] != ":":
                raise ValueError(f"expected ':' after key at char {pos}")
            pos = _skip_ws(text, pos + 1)
        value, pos = _DECODER.raw_decode(text, pos)
    except ValueError as exc:
        cut = "the file ends inside this record (truncated?)" if _ends_inside(text, pos) else str(exc)
        return key, RecordError(f"{path.name}: {cut}"), None
    return key, (RecordError(f"{path.name}: invalid UTF-8 in this record", value) if _has_bad_bytes(value)
                 else value), pos


_DECODER = json.JSONDecoder()


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _ends_inside(text: str, pos: int) -> bool:
    """Whether a parse error at `pos` is the end of the file (a cut-off record), not bad syntax."""
    depth, in_string, escaped = 0, False, False
    for ch in text[pos:]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth < 0:
                return False
    return depth > 0 or in_string
