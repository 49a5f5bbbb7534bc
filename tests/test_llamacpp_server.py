"""The llama.cpp server's life (real xllamacpp, real SmolLM2-135M GGUF): it listens on 127.0.0.1 on a
free port, is healthy before the first request, and is gone after a run that finishes, after an
exception, after Ctrl-C, and after the engine is SIGKILLed — whichever of its two links to the parent
(the stdin pipe, PR_SET_PDEATHSIG) is armed. A run through `mmat generate --teacher llamacpp --model`
with a context too small for any prompt quarantines every sample with the token counts.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from generation.config import ConfigError
from generation.teachers.llamacpp import LlamaCppError, LlamaCppServer, ServerSettings, probe_server
from tests.llamacpp_support import (SMOLLM2_NAME, port_refuses, process_gone, require_local_teacher,
                                    server_children, smollm2_teacher)
from tests.runner_support import REPO, mmat, mmat_cmd, mmat_env, read_quarantine, source, write_config

pytestmark = pytest.mark.slow
GGUF = require_local_teacher()
SERVER_LINE = re.compile(r"llama\.cpp server: (\S+) on (http://127\.0\.0\.1:\d+) \(pid (\d+);")


def settings(**extra) -> ServerSettings:
    return ServerSettings(**{"model_path": str(GGUF), "alias": SMOLLM2_NAME, "n_ctx": 512, "threads": 1, **extra})


def test_server_is_healthy_on_loopback_reports_the_model_and_is_gone_after_stop():
    with LlamaCppServer(settings(parallel=2)) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.alive()
        info = probe_server(server.base_url)
        pid, url = server.pid, server.url
    assert (info.model, info.vision, info.n_ctx) == (SMOLLM2_NAME, False, 512)  # n_ctx is per request
    assert process_gone(pid) and port_refuses(url)
    assert server_children(os.getpid()) == []


def test_server_is_gone_after_an_exception_in_the_block():
    with pytest.raises(RuntimeError, match="boom"):
        with LlamaCppServer(settings()) as server:
            pid, url = server.pid, server.url
            raise RuntimeError("boom")
    assert process_gone(pid) and port_refuses(url)


def test_a_model_that_fails_to_load_is_one_error_with_the_servers_reason_and_leaves_no_process(tmp_path):
    broken = tmp_path / "truncated.gguf"
    with GGUF.open("rb") as handle:
        broken.write_bytes(handle.read(1_000_000))  # a real GGUF header, the tensors cut off
    with pytest.raises(LlamaCppError, match="exited with code"):
        LlamaCppServer(settings(model_path=str(broken)), startup_timeout_s=120).start()
    assert server_children(os.getpid()) == []
    with pytest.raises(ConfigError, match="no such GGUF file"):
        from generation.teachers.llamacpp import settings_for
        from generation.config import TeacherConfig

        settings_for(TeacherConfig(kind="llamacpp", model_path=str(tmp_path / "nope.gguf")))


PARENT = textwrap.dedent("""
    import json, sys, threading, time
    from generation.teachers.llamacpp import LlamaCppServer, ServerSettings
    server = LlamaCppServer(ServerSettings(**json.loads(sys.argv[1])))
    # Started from a thread that then ends: PR_SET_PDEATHSIG is not armed, only the stdin pipe links them.
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join()
    print(json.dumps({"pid": server.pid, "url": server.url}), flush=True)
    time.sleep(600)
""")


def test_server_dies_with_a_sigkilled_parent_through_the_stdin_pipe_alone():
    parent = subprocess.Popen([sys.executable, "-c", PARENT, json.dumps(settings().__dict__)], cwd=REPO,
                              env=mmat_env(), stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line, "the parent did not report its server"
        child = json.loads(line)
        assert not port_refuses(child["url"], timeout_s=0)  # it accepts now (one try, not 30 s of them)
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        assert process_gone(child["pid"]), "the llama.cpp server outlived its SIGKILLed parent"
        assert port_refuses(child["url"])
    finally:
        if parent.poll() is None:
            parent.kill()


def _server_line(log: Path, timeout_s: float = 240) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists():
            match = SERVER_LINE.search(log.read_text(errors="replace"))
            if match:
                return match
        time.sleep(0.2)
    raise AssertionError(f"no llama.cpp server line in {log}")


@pytest.fixture()
def tabmwp_config(tmp_path):
    return write_config(tmp_path / "local.yaml", [source("tabmwp", limit=2)],
                        teacher=smollm2_teacher(GGUF, model_path=None, kind="offline"))


def test_sigkill_of_mmat_generate_leaves_no_server(tabmwp_config, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(mmat_cmd("generate", "--config", tabmwp_config, "--out", out, "--quiet",
                                     "--teacher", "llamacpp", "--model", GGUF),
                            cwd=REPO, env=mmat_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        match = _server_line(tmp_path / ".mmat-work" / "out" / "run.log")
        pid, url = int(match.group(3)), match.group(2)
        assert server_children(proc.pid) == [pid]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert process_gone(pid), "the llama.cpp server outlived the SIGKILLed engine"
        assert port_refuses(url)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_during_a_run_stops_the_server(tabmwp_config, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import generation.runner
    from mmat_cli import app

    async def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generation.runner, "process_all", interrupted)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", "--config", str(tabmwp_config), "--out", str(out), "--quiet",
                                      "--teacher", "llamacpp", "--model", str(GGUF)])
    assert result.exit_code == 130, result.output
    match = _server_line(tmp_path / ".mmat-work" / "out" / "run.log", timeout_s=1)
    assert process_gone(int(match.group(3))) and port_refuses(match.group(2))
    assert server_children(os.getpid()) == []


def test_a_context_too_small_for_any_prompt_quarantines_with_the_counts_and_the_server_stops(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", [source("tabmwp", limit=2)],
                          teacher=smollm2_teacher(GGUF, n_ctx=256))
    out = tmp_path / "out"
    result = mmat("generate", "--config", config, "--out", out, "--quiet", cwd=tmp_path, timeout=600)
    # every sample failed: exit 3 with one line that gives the counts (README, exit codes)
    assert result.returncode == 3, result.stderr
    assert "every sample failed (2 of 2 quarantined)" in result.stderr
    records = read_quarantine(tmp_path / ".mmat-work" / "out")
    assert len(records) == 2
    for record in records.values():
        assert record["stage"] == "rationale"
        assert re.fullmatch(r"prompt exceeds the model context \(\d+ > 256 tokens\)", record["message"]), record
    match = _server_line(tmp_path / ".mmat-work" / "out" / "run.log", timeout_s=1)
    assert match.group(1) == SMOLLM2_NAME
    assert process_gone(int(match.group(3))) and port_refuses(match.group(2))
