"""pytest fixtures around `tests/hub_server.py` (loaded from conftest via `pytest_plugins`).

`hub_server` starts the Hub-compatible server on 127.0.0.1 (free port, repos persisted under the
test's tmp folder) and points this process's `huggingface_hub` at it: it sets `HF_ENDPOINT`,
`HF_TOKEN`, `HF_HUB_DISABLE_XET=1` and `HF_HUB_OFFLINE=0` in the environment AND patches the values
`huggingface_hub.constants` read from them at import time (ENDPOINT, the resolve URL template,
HF_HUB_OFFLINE, HF_HUB_DISABLE_XET), so `HfApi()` and `hf_hub_download` in the test reach the server.

`datasets` caches more import-time state (config.HF_ENDPOINT, HfFileSystem instances), so reads
through `datasets` run in a fresh interpreter: `hub_client(script)` runs Python code in a subprocess
with `hub_server.client_env(...)` and returns its parsed JSON stdout.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.hub_server import HubServer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub_server(tmp_path, monkeypatch):
    from huggingface_hub import constants

    server = HubServer(tmp_path / "hub").start()
    env = server.client_env(tmp_path / "client")
    for key in [k for k in list(__import__("os").environ) if k.startswith("HF_") and k not in env]:
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        if key.startswith("HF_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    try:
        yield server
    finally:
        errors = list(server.errors) if server.httpd else []
        server.stop()
    assert not errors, f"the test hub hit internal errors: {errors}"


@pytest.fixture
def hub_client(hub_server, tmp_path) -> Callable[..., Any]:
    """Run a Python snippet in a fresh interpreter wired to the server; it prints one JSON value last."""

    def run(code: str, *, timeout: float = 120, check: bool = True) -> Any:
        env = hub_server.client_env(tmp_path / "client")
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=str(REPO),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"client failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        lines = [l for l in proc.stdout.splitlines() if l.strip()]
        return json.loads(lines[-1]) if lines and check else proc

    return run
