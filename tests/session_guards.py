"""Two guards over the whole test session, installed by `conftest.py` (issue 33).

- **No skip in CI.** With `MMAT_REQUIRE_ALL=1` (`.ci/run` sets it) a test that would skip, at collection
  (`importorskip` of ray, peft, trl, xllamacpp) or at run time (no tmpfs, no browser), fails instead: a
  missing dependency on a fresh machine is a broken build, not a quieter suite. A skip whose reason
  starts with `optional:` stays a skip.
- **No process left behind.** Every process the tests start inherits `MMAT_TEST_SESSION` (a marker with
  this session's id); when the session ends, any live process still carrying it (a server, a worker
  pool, a reading process that outlived its test) is named, killed, and fails the session.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

MARKER = "MMAT_TEST_SESSION"
OPTIONAL = "optional:"


def require_all() -> bool:
    return os.environ.get("MMAT_REQUIRE_ALL") == "1"


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def fail_skip(report) -> None:
    """Turn a skip report into a failure (kept as a skip when its reason says `optional:`)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if OPTIONAL in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under MMAT_REQUIRE_ALL=1 (a dependency every CI machine must have): {reason}"


def start_session_marker() -> str:
    marker = os.environ.get(MARKER) or uuid.uuid4().hex
    os.environ[MARKER] = marker
    return marker


def marked_processes(marker: str) -> dict[int, str]:
    """pid -> command line of every live process (not this one) whose environment carries the marker."""
    needle = f"{MARKER}={marker}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = next((line for line in (entry / "status").read_text().splitlines() if line.startswith("State:")), "")
            if "Z" in state.split()[1:2]:
                continue  # a zombie has ended; its parent has not reaped it yet
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except (OSError, StopIteration):
            continue
    return found


def leftover_processes(marker: str, grace_s: float = 10.0) -> dict[int, str]:
    """The marked processes still alive after `grace_s` (processes ending as the session ends get
    that long); they are killed before returning."""
    deadline = time.monotonic() + grace_s
    left = marked_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = marked_processes(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return left


def report_leftovers(session: pytest.Session, marker: str) -> None:
    if not Path("/proc/self/environ").exists():
        return
    left = leftover_processes(marker)
    if left:
        lines = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items()))
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"ERROR: {len(left)} process(es) started by the tests outlived the session (killed now):\n{lines}",
            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
