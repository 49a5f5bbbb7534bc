"""`mmat agent` as a user sees it: the trajectory (rich) or JSON, exit codes, one-line errors; and the
Python API (`from agent import Agent`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from agent import Agent
from generation.dialogue_format import parse_rr
from mmat_cli import app
from tests.agent_support import ScriptedTunedModel, light_operators_yaml
from tests.ocr_support import png, render
from tests.openai_server import OpenAICompatServer

QUESTION = "What is written on the sign? Answer the question using a single word or phrase."


def agent_cli(tmp_path: Path, *args: str):
    image = tmp_path / "sign.png"
    image.write_bytes(png(render([((40, 60), "STOP")])))
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        return CliRunner().invoke(app, ["agent", "--image", str(image), "--question", QUESTION,
                                        "--operators-config", str(light_operators_yaml(tmp_path)), *args],
                                  env={"COLUMNS": "160"})
    finally:
        os.chdir(old)


def test_agent_prints_the_trajectory(tmp_path):
    model = ScriptedTunedModel(answers={QUESTION: "STOP"}, rr_operators=("image_caption",))
    with OpenAICompatServer(default_fn=model) as server:
        result = agent_cli(tmp_path, "--endpoint", server.url, "--model", "tuned")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for text in ("question", "step 1", "THOUGHT", "OPERATOR", "image_caption", "SIGNAL", "continue", "end",
                 "image_caption · template", "answer", "STOP", "status answered", "3 model call(s)"):
        assert text in out, text
    assert "operator-cache" in os.listdir(tmp_path / ".mmat-agent")  # the default cache folder


def test_agent_json_is_the_whole_trajectory(tmp_path):
    model = ScriptedTunedModel(answers={QUESTION: "STOP"}, rr_operators=("image_caption",))
    with OpenAICompatServer(default_fn=model) as server:
        result = agent_cli(tmp_path, "--endpoint", server.url, "--json", "--max-steps", "4")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["status"] == "answered" and data["answer"] == "STOP" and data["model"] == "local-test-model"
    assert (data["turns"], data["tool_calls"], data["tokens"]) == (3, 1, 360)
    assert data["steps"][0]["observations"][0]["operator"] == "image_caption"
    parse_rr(data["messages"])


def test_agent_exit_codes_and_one_line_errors(tmp_path):
    model = ScriptedTunedModel().queue("rr", "no format", "still no format")
    with OpenAICompatServer(default_fn=model) as server:
        unparsable = agent_cli(tmp_path, "--endpoint", server.url, "--model", "tuned")
        orr = agent_cli(tmp_path, "--endpoint", server.url, "--model", "tuned", "--format", "orr",
                        "--operators", "image_caption")
        asked = len(server.requests)
        for args, message in [
            ((), "exactly one of --endpoint URL"),
            (("--endpoint", "http://127.0.0.1:9/v1", "--model", "m"),
             "cannot reach the endpoint http://127.0.0.1:9/v1"),
            (("--endpoint", "http://127.0.0.1:9/v1", "--format", "fast"), "unknown format 'fast'"),
            (("--gguf", str(tmp_path / "missing.gguf")), "--gguf"),
            (("--model-path", str(tmp_path / "nowhere")), "no such folder"),
            (("--endpoint", "http://127.0.0.1:9/v1", "--extra-body", "{oops"), "--extra-body is not JSON"),
            (("--endpoint", server.url, "--image", str(tmp_path / "missing.png")), "missing.png': no such file"),
            (("--endpoint", server.url, "--operators-config", str(tmp_path / "none.yaml")), "no such config file"),
        ]:
            result = agent_cli(tmp_path, *args)
            assert result.exit_code == 2, (args, result.stdout, result.stderr)
            assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert len(server.requests) == asked  # a usage error asks the model nothing
    assert unparsable.exit_code == 3 and "status unparsable" in unparsable.stdout
    assert orr.exit_code == 0 and "image_caption · template" in orr.stdout


def test_python_api(tmp_path):
    model = ScriptedTunedModel(answers={QUESTION: "STOP"}, rr_operators=("image_caption",))
    image = tmp_path / "sign.png"
    image.write_bytes(png(render([((40, 60), "STOP")])))
    with OpenAICompatServer(default_fn=model) as server:
        with Agent.open(endpoint=server.url, model="tuned", operators_config=light_operators_yaml(tmp_path),
                        cache_dir=tmp_path / "cache") as agent:
            rr = agent.run_sync([image], QUESTION)
            plain = agent.run_sync([image], QUESTION, format="plain")
            broken = agent.run_sync([tmp_path / "missing.png"], QUESTION)
    assert (rr.status, rr.answer, rr.format) == ("answered", "STOP", "rr")
    assert (plain.status, plain.answer, plain.turns, plain.tool_calls) == ("answered", "STOP", 1, 0)
    assert broken.status == "error" and "cannot read the image" in broken.error and broken.turns == 0
