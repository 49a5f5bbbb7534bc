"""What a run checks before its first teacher call is paid for.

- The dataset folder (`--out`), the work folder and the operator cache must be folders this process
  can create and write: a file in their place, a read-only mount or a missing permission is one line
  (`UnwritableFolder`, exit 2) naming the folder, before any sample runs, instead of a traceback
  after every teacher call was paid for.
- The teacher checks its endpoint and key (`Teacher.preflight`, one free request; nothing for the
  offline teacher): a key the endpoint rejects stops the run here (`TeacherFatalError`, exit 2) with
  no paid call made; any other failure of the check (an endpoint without `/models`) is a warning and
  the run goes on.
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from generation.config import PipelineConfig
from generation.errors import MmatError
from generation.teachers.base import TeacherError, TeacherFatalError

log = logging.getLogger("mmat.runner")


class UnwritableFolder(MmatError, RuntimeError):
    """A folder the run must write is not a writable folder; one line naming it and the fix."""


def check_writable(path: Path, what: str) -> None:
    """`path` is (or can be made) a folder this process can write; raises `UnwritableFolder`. Leaves no
    trace: a folder it had to create for the check is removed again."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UnwritableFolder(f"{what} {path} is a file, not a folder: pass a folder path (it is created if missing)")
    created = not path.exists()
    probe = path / f".mmat-write-probe-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UnwritableFolder(f"cannot write to {what} {path}: {reason}; choose a writable location "
                               f"(or fix its permissions)") from None
    finally:
        probe.unlink(missing_ok=True)
    if created:
        try:
            path.rmdir()
        except OSError:
            pass


def check_folders(out_dir: Path, work_dir: Path, cache_dir: Path) -> None:
    check_writable(out_dir, "the dataset folder (--out)")
    check_writable(work_dir, "the work folder")
    check_writable(cache_dir, "the operator cache")


async def _preflight(config: PipelineConfig) -> None:
    from generation.teachers.factory import make_teacher

    teacher = make_teacher(config.teacher)
    try:
        await teacher.preflight()
    except TeacherFatalError:
        raise
    except TeacherError as exc:
        log.warning("teacher check before the run failed (%s); going on", exc)
    finally:
        await teacher.aclose()


def check_teacher(config: PipelineConfig) -> None:
    """Build the teacher once and let it check its endpoint and key (see the module docstring)."""
    asyncio.run(_preflight(config))
