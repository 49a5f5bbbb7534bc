"""The one way the project writes a file durably: write -> flush -> fsync -> rename -> fsync the folder.

Why one module: a file that is read back after a crash (a checkpoint index, a blob, an operator cache
entry, a shard, the card) must be either its old self or its whole new self, and after the call returns
it must survive a power cut. That takes five steps in this order, and a temp file that never outlives
an error (a full disk would otherwise fill up with `.tmp-*` files one failed write at a time). Seven
hand-made copies of these steps gave seven different guarantees; now every durable write goes through
`write_atomic` (bytes or text in memory), `atomic_file` (a file object to stream into, e.g. for
`np.save`) or `publish` (a temp file some library wrote, e.g. a parquet writer).

The temp file sits in the target's folder (a rename is atomic only within one file system) and its
name starts with `tmp_prefix` (default `.tmp-`: hidden, so a push or a glob of `*.parquet` never
picks one up; a crashed writer's leftovers are removed by whoever owns the folder).
"""
from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Union

TMP_PREFIX = ".tmp-"
# A disk that filled up (or turned read-only): the environment's problem, never one sample's.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def disk_error(exc: BaseException) -> bool:
    """Is `exc` (or an error it was raised from or while handling) a full or read-only disk? Such an
    error stops the run with one line (exit 1) wherever it happened: quarantining the sample would
    blame it, and every later sample would fail the same way."""
    seen: set[int] = set()
    current: "BaseException | None" = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno in DISK_ERRNOS:
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def fsync_dir(folder: Union[str, Path]) -> None:
    """Make a rename (or create/unlink) in `folder` durable. Best effort on systems without directory
    fds (the rename itself has happened either way)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (e.g. a few network ones) refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def publish(tmp: Union[str, Path], target: Union[str, Path]) -> None:
    """Rename a written and fsync'd temp file onto `target`, then fsync the folder; the temp file is
    removed when the rename fails."""
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(Path(target).parent)


@contextmanager
def atomic_file(path: Union[str, Path], *, tmp_prefix: str = TMP_PREFIX, suffix: str = "") -> Iterator[BinaryIO]:
    """`with atomic_file(p) as fh: fh.write(...)`: `p` holds what was written once the block ends
    (flushed, fsync'd, renamed, folder fsync'd), or is left as it was when the block or any step
    raises; the temp file never survives."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=tmp_prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Union[str, Path], data: Union[bytes, str], *, tmp_prefix: str = TMP_PREFIX,
                 suffix: str = "") -> None:
    """`path` holds `data` (text is written as UTF-8), durably, or is left as it was (see `atomic_file`)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, tmp_prefix=tmp_prefix, suffix=suffix) as fh:
        view = memoryview(payload)
        while view:  # os-level writes: a short write is continued, never silently dropped
            view = view[fh.write(view):]


__all__ = ["DISK_ERRNOS", "TMP_PREFIX", "atomic_file", "disk_error", "fsync_dir", "publish", "write_atomic"]
