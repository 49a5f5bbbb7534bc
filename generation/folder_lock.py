"""One lock per dataset folder: whoever rewrites or publishes the folder holds it.

`mmat generate` writes shards and the card under it (the workers of a sharded run take turns), and
`mmat push` holds it from its first look at the folder to the tag, so a push never publishes a folder
that a running generation is halfway through rewriting. The lock file sits beside the folder, in
`<parent>/.mmat-work/<name>.lock` (not in it, so it is never published); an flock, so the kernel
drops it when its holder dies, `kill -9` included.
"""
from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from generation.errors import MmatError


class FolderBusy(MmatError, RuntimeError):
    """Another process held the dataset folder's lock for longer than we were willing to wait."""


def out_lock_path(out_dir: Path) -> Path:
    out_dir = Path(out_dir).resolve()
    return out_dir.parent / ".mmat-work" / f"{out_dir.name}.lock"


@contextmanager
def out_folder_lock(out_dir: Path, timeout_s: Optional[float] = None,
                    on_wait: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Hold the folder's lock. Blocks until it is free; with `timeout_s`, raises `FolderBusy` after that
    long. `on_wait` is called once when the lock is busy (to say what we are waiting for)."""
    import fcntl

    path = out_lock_path(out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if timeout_s is None and on_wait is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            told = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                if not told and on_wait is not None:
                    on_wait()
                    told = True
                if deadline is not None and time.monotonic() >= deadline:
                    raise FolderBusy(f"{Path(out_dir)} is being written by another mmat process (a running "
                                     f"`mmat generate`?); try again when it has finished")
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing drops the lock
