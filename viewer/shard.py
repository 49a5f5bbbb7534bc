"""One parquet shard of a dataset as the viewer reads it, and the errors the viewer reports as one line.

A shard's footer is read on first need and checked: a file that cannot be read (truncated, half copied)
or that is not an mmat-1m shard (`REQUIRED_COLUMNS` missing) is marked bad once, with one warning naming
the file and what is wrong, and raises `BadShard` from then on; `viewer.store.ShardStore` leaves it out.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from generation.errors import MmatError

# Columns every mmat-1m shard has that the viewer reads (a parquet file without them is foreign).
REQUIRED_COLUMNS = ("id", "subset", "question", "answer", "reflection", "meta", "steps", "messages", "images")
_READ_ERRORS = (OSError, ValueError, pa.ArrowException)  # ArrowInvalid is a ValueError too
log = logging.getLogger("mmat.viewer")


def read_footer(path: str, opener: Callable[[str], Any] = str) -> tuple[Optional[pq.FileMetaData], Optional[str]]:
    """(the file's footer, None), or (None, what is wrong with it): not a readable parquet file, or not an
    mmat-1m shard (a column the viewer reads is missing)."""
    try:
        handle = opener(path)
        try:
            metadata = pq.read_metadata(handle)
        finally:
            if hasattr(handle, "close"):
                handle.close()
        names = set(metadata.schema.to_arrow_schema().names)
    except _READ_ERRORS as exc:
        return None, f"not a readable parquet file ({type(exc).__name__}: {exc})"
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        return None, f"not an mmat-1m shard (no {', '.join(missing)} column{'s' if len(missing) > 1 else ''})"
    return metadata, None


def folder_problems(folder: Path) -> list[str]:
    """`file: what is wrong` for each shard of a dataset folder that cannot be read (every footer read)."""
    return [f"{p}: {why}" for p in sorted(Path(folder).glob("data/*/*/*.parquet"))
            if not p.name.startswith(".") and (why := read_footer(str(p))[1])]


class ViewerError(MmatError):
    """What `mmat view` reports as one line: a missing folder or repo, no shards, a bad request."""


class NotFound(ViewerError):
    pass


class BadShard(ViewerError):
    """A shard file that cannot be read or is not an mmat-1m shard; the message names it."""


@dataclass
class Shard:
    """One parquet file; its footer (row groups and their sizes) is read on first need, then kept."""

    index: int
    format: str
    source: str
    split: str
    path: str
    opener: Callable[[str], Any] = field(repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one reader of the file at a time
    _footer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _metadata: Optional[pq.FileMetaData] = field(default=None, repr=False)
    _starts: Optional[np.ndarray] = field(default=None, repr=False)
    error: Optional[str] = None  # why the file cannot be used (then it is left out), once known

    @property
    def footer_read(self) -> bool:
        return self._metadata is not None

    @property
    def metadata(self) -> pq.FileMetaData:
        """The footer (read once). Raises `BadShard` for a file that cannot be read or is not a shard."""
        if self.error:
            raise BadShard(self.error)
        if self._metadata is None:
            with self._footer_lock:
                if self.error:
                    raise BadShard(self.error)
                if self._metadata is None:
                    metadata, why = read_footer(self.path, self.opener)
                    if why:
                        raise self.bad(why)
                    rows = [metadata.row_group(k).num_rows for k in range(metadata.num_row_groups)]
                    self._starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)]).astype(np.int64)
                    self._metadata = metadata
        return self._metadata

    @property
    def starts(self) -> np.ndarray:
        """First row of each row group, and the row count last."""
        self.metadata
        return self._starts

    @property
    def num_rows(self) -> int:
        return int(self.starts[-1])

    def bad(self, why: str) -> BadShard:
        """Mark the file unusable (one warning naming it) and return the error to raise."""
        first = self.error is None
        self.error = f"{self.path}: {why}"
        if first:
            log.warning("%s; left out", self.error)
        return BadShard(self.error)

    @property
    def usable(self) -> bool:
        """Can the file be read (its footer read and checked now if not yet)?"""
        try:
            self.metadata
        except BadShard:
            return False
        return True

    def row_group_of(self, row: int) -> tuple[int, int]:
        rg = int(np.searchsorted(self.starts, row, side="right") - 1)
        return rg, row - int(self.starts[rg])
