"""A child process that must not outlive its parent (the llama.cpp server, the generation processes)."""
from __future__ import annotations

import os
import signal
import sys
from typing import Optional

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: Optional[int], arm: bool = True) -> None:
    """Linux (`arm`): SIGKILL this process when its parent dies, `kill -9` included; then exit at once if
    the parent `parent_pid` died before the signal was armed."""
    if arm and sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent_pid and os.getppid() != parent_pid:
        os._exit(1)
