"""The agent against a real llama.cpp server (SmolLM2-135M through the local teacher's launcher, one
thread): plumbing, not quality. Whatever the 135M model writes, the loop ends and reports (answered,
unparsable after the one retry, or out of steps), the server goes away with the agent, and `mmat
eval` prints its report with the latency ratios."""
from __future__ import annotations

import json
import os

import pytest

from agent import Agent, SamplingSettings
from agent.trajectory import STATUSES
from tests.agent_support import light_operators_yaml
from tests.demo_fixtures import mmat_subprocess
from tests.llamacpp_support import SMOLLM2_NAME, process_gone, require_local_teacher, server_children
from tests.ocr_support import png, render

pytestmark = pytest.mark.slow
GGUF = require_local_teacher()
SMOLLM2_SAMPLING = {"repeat_penalty": 1.15, "seed": 7}  # as the teacher tests: no loops on one token


@pytest.mark.parametrize("fmt", ["rr", "orr"])
def test_the_loop_terminates_and_reports(tmp_path, fmt):
    image = png(render([((40, 60), "NO PARKING")]))
    question = "What is not allowed here? Answer the question using a single word or phrase."
    with Agent.open(gguf=str(GGUF), threads=1, n_ctx=2048, format=fmt, max_steps=2,
                    sampling=SamplingSettings(max_tokens=48, extra_body=SMOLLM2_SAMPLING),
                    operators_config=light_operators_yaml(tmp_path), cache_dir=tmp_path / "cache") as agent:
        (server_pid,) = server_children(os.getpid())
        result = agent.run_sync([image], question)
    assert process_gone(server_pid)
    assert result.status in STATUSES and result.status != "error", result.error
    assert result.model == SMOLLM2_NAME and not result.images_sent  # llama.cpp says: no vision
    assert 1 <= result.turns <= (2 + 1) * 2  # at most two steps and the summary, each retried once
    assert all(call.completion_tokens > 0 and call.prompt_tokens > 0 for call in result.calls)
    if fmt == "orr":
        assert [o.operator for o in result.api_outputs] == ["image_caption", "ocr"]
    if result.status == "answered":
        assert result.answer


def test_eval_reports_with_the_small_model(demo, tmp_path):
    result = mmat_subprocess(
        "eval", "--dataset", str(demo["root"] / "mmat-1m"), "--config", "orr", "--split", "validation",
        "--limit", "2", "--format", "all", "--gguf", str(GGUF), "--threads", "1", "--n-ctx", "2048",
        "--max-tokens", "48", "--max-steps", "2", "--concurrency", "1", "--extra-body", json.dumps(SMOLLM2_SAMPLING),
        "--operators-config", str(light_operators_yaml(tmp_path)), "--work-dir", str(tmp_path / "eval"),
        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"mmat eval: {SMOLLM2_NAME}" in result.stdout
    assert "orr / plain =" in result.stdout and "rr / plain =" in result.stdout
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert {fmt: s["questions"] for fmt, s in report["formats"].items()} == {"plain": 2, "orr": 2, "rr": 2}
