"""Issue 30: an API key with a control or non-ASCII character is one line and exit 2, before any request.

Before: `mmat generate` with such a key exited 1 with "unexpected ValueError: Forbidden control character"
from inside the HTTP client. The key never appears in the message (only the variable, the character's
kind, code point and position).
"""
from __future__ import annotations

import pytest

from generation.config import ConfigError, TeacherConfig
from generation.teachers.factory import make_teacher, malformed_key
from tests.openai_server import OpenAICompatServer
from tests.runner_support import mmat, mmat_env, source, write_config

SECRET = "sk-proj-SECRETPART0123456789"


@pytest.mark.parametrize("bad, kind, position", [
    (SECRET[:8] + "\n" + SECRET[8:], "a control character (U+000A)", 9),  # a pasted line break inside
    (SECRET + "\x7f", "a control character (U+007F)", len(SECRET) + 1),  # DEL
    ("\u201c" + SECRET + "\u201d", "a non-ASCII character (U+201C)", 1),  # typographic quotes
    (SECRET[:4] + "\t" + SECRET[4:], "a control character (U+0009)", 5),
    (SECRET[:3] + "é" + SECRET[3:], "a non-ASCII character (U+00E9)", 4),
])
def test_a_malformed_key_is_named_by_variable_and_position_never_by_its_text(monkeypatch, bad, kind, position):
    message = malformed_key(bad, "MY_KEY")
    assert message is not None and f"{kind} at position {position} of {len(bad)}" in message
    assert message.startswith("the environment variable MY_KEY holds a malformed API key")
    assert "SECRET" not in message and "\n" not in message

    monkeypatch.setenv("MY_KEY", bad)
    for cfg in (TeacherConfig(kind="openai", api_key_env="MY_KEY", base_url="http://127.0.0.1:9/v1"),
                TeacherConfig(kind="llamacpp", api_key_env="MY_KEY", base_url="http://127.0.0.1:9/v1")):
        with pytest.raises(ConfigError, match="MY_KEY holds a malformed API key"):
            make_teacher(cfg)


def test_well_formed_keys_pass(monkeypatch):
    assert malformed_key(SECRET, "K") is None and malformed_key("", "K") is None
    assert malformed_key("a b~!", "K") is None  # printable ASCII, the space included
    monkeypatch.setenv("MY_KEY", "  " + SECRET + "\n")  # surrounding whitespace (echo > file) is stripped
    teacher = make_teacher(TeacherConfig(kind="openai", api_key_env="MY_KEY", base_url="http://127.0.0.1:9/v1"))
    assert teacher.chat is not None


@pytest.mark.parametrize("bad", [SECRET[:8] + "\x1b[2J" + SECRET[8:], SECRET + "\u00a0x"])
def test_generate_with_a_malformed_key_exits_2_with_one_line_and_sends_nothing(tmp_path, bad):
    with OpenAICompatServer() as server:
        cfg = write_config(tmp_path / "c.yaml", [source("tabmwp", limit=1)],
                           teacher={"kind": "openai", "model": "gpt-4o", "base_url": server.url})
        result = mmat("generate", "--config", cfg, "--out", tmp_path / "out",
                      env=mmat_env(OPENAI_API_KEY=bad))
        assert result.returncode == 2, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "OPENAI_API_KEY holds a malformed API key" in errors[0], result.stderr
        assert "Traceback" not in result.stderr and "SECRET" not in result.stderr + result.stdout
        assert server.count() == 0  # stopped before the preflight request


def test_mmat_agent_with_a_malformed_key_exits_2_with_one_line(tmp_path, monkeypatch):
    """The agent's endpoint (also `mmat eval`'s) reads its key through the same check."""
    from typer.testing import CliRunner

    from agent.endpoint import api_key_from_env
    from mmat_cli import app
    from tests.dataset_factory import png_bytes

    monkeypatch.setenv("MY_KEY", SECRET + "\r\n" + SECRET)
    with pytest.raises(ConfigError, match="MY_KEY holds a malformed API key: a control character"):
        api_key_from_env("MY_KEY")
    image = tmp_path / "x.png"
    image.write_bytes(png_bytes(1))
    with OpenAICompatServer() as server:
        result = CliRunner().invoke(app, ["agent", "--image", str(image), "--question", "What is it?",
                                          "--endpoint", server.url, "--api-key-env", "MY_KEY"],
                                    env={"COLUMNS": "200"})
        assert result.exit_code == 2, result.output
        assert "MY_KEY holds a malformed API key" in result.stderr and "SECRET" not in result.output
        assert server.count() == 0
