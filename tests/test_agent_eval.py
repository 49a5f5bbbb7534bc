"""`mmat eval` on the demo validation split (made by the project's engine) against the scripted
server: accuracy per format and source equals the hand-computed value, the per-question numbers are
the scripted ones, the latency ratios are printed, concurrency is bounded, and a killed eval resumes
without asking an answered question again. Plus any dataset through column flags."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from generation.checkpoint import read_jsonl
from tests.agent_support import ScriptedTunedModel, demo_questions, demo_script, request_format, request_question
from tests.demo_fixtures import mmat_subprocess
from tests.ocr_support import png, render
from tests.openai_server import OpenAICompatServer


def mmat_here(*args: str, cwd: Path):
    """`mmat ARGS` in this process (no interpreter start-up): returncode, stdout, stderr."""
    from typer.testing import CliRunner

    from mmat_cli import app

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        os.chdir(old)


def eval_cmd(demo, server, work: Path, *extra: str) -> list[str]:
    return ["eval", "--dataset", str(demo["root"] / "mmat-1m"), "--config", "orr", "--split", "validation",
            "--endpoint", server.url, "--model", "tuned", "--operators-config", str(demo["config"]),
            "--cache-dir", str(demo["root"] / ".mmat-work" / "mmat-1m" / "operator-cache"),
            "--work-dir", str(work), *extra]


@pytest.mark.slow
def test_eval_on_the_demo_split_matches_the_hand_computed_accuracy(demo, tmp_path):
    rows = demo_questions(demo["root"] / "mmat-1m")
    n = len(rows)
    per_source = Counter(r["source"] for r in rows)
    # hand-computed from the script above
    expected = {"plain": per_source["tabmwp"] / n, "orr": (per_source["tabmwp"] + per_source["cauldron"]) / n,
                "rr": 1.0}
    with OpenAICompatServer(default_fn=demo_script(rows), latency_s=0.02) as server:
        shown = mmat_subprocess(*eval_cmd(demo, server, tmp_path / "eval", "--format", "all", "--concurrency", "3"),
                                cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr[-3000:]
        asked = len(server.requests)
        assert server.max_in_flight <= 3
        # a rerun of the same command asks nothing: every answer is in the work folder
        again = mmat_subprocess(*eval_cmd(demo, server, tmp_path / "eval", "--format", "all", "--json"), cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(server.requests) == asked
    assert asked == n * (1 + 1 + 3)  # plain 1, ORR 1, RR 3 calls per question
    assert "orr / plain =" in shown.stdout and "rr / plain =" in shown.stdout
    assert "latency vs plain" in shown.stdout

    report = json.loads(again.stdout)
    formats = report["formats"]
    for fmt, accuracy in expected.items():
        assert formats[fmt]["questions"] == n
        assert formats[fmt]["accuracy"] == pytest.approx(accuracy), fmt
    assert formats["plain"]["accuracy_by_source"]["tabmwp"] == 1.0
    assert formats["plain"]["accuracy_by_source"]["cauldron"] == 0.0
    assert formats["orr"]["accuracy_by_source"]["cauldron"] == 1.0
    assert formats["orr"]["accuracy_by_source"]["infoseek"] == 0.0
    # per question: the scripted usage (100 + 20 tokens a call) and the tools each format runs
    assert (formats["plain"]["turns"], formats["plain"]["tool_calls"], formats["plain"]["tokens"]) == (1, 0, 120)
    # ORR runs every non-RAG operator available offline: ocr, image_caption, face_detection and label_bbox
    # (its `segments` backend since issue 19)
    assert (formats["orr"]["turns"], formats["orr"]["tool_calls"], formats["orr"]["tokens"]) == (1, 4, 120)
    assert (formats["rr"]["turns"], formats["rr"]["tool_calls"], formats["rr"]["tokens"]) == (3, 1, 360)
    assert set(report["latency_vs_plain"]) == {"orr", "rr"}
    answers = list(read_jsonl(tmp_path / "eval" / "answers.jsonl"))
    assert len(answers) == 3 * n and len({(a["format"], a["id"]) for a in answers}) == 3 * n
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["formats"]["rr"]["accuracy"] == 1.0


@pytest.mark.slow
def test_a_killed_eval_resumes_without_asking_answered_questions(demo, tmp_path):
    rows = demo_questions(demo["root"] / "mmat-1m")
    work = tmp_path / "eval"
    answers_file = work / "answers.jsonl"
    env = {**os.environ, "COLUMNS": "200"}
    with OpenAICompatServer(default_fn=demo_script(rows), latency_s=0.4) as server:
        cmd = [sys.executable, "-m", "mmat_cli", *eval_cmd(demo, server, work, "--format", "plain",
                                                           "--concurrency", "2", "--quiet")]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(list(read_jsonl(answers_file))) < 4:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = {a["id"] for a in read_jsonl(answers_file)}
        assert 4 <= len(before) < len(rows)
        with answers_file.open("a") as fh:
            fh.write('{"id": "torn by the kill", "form')  # what a write cut by the kill leaves
        asked_before = len(server.requests)
        done = mmat_subprocess(*eval_cmd(demo, server, work, "--format", "plain", "--json"), cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        asked_after = [request_question(p) for p in server.payloads()[asked_before:]]
    by_question = {r["question"]: r["id"] for r in rows}
    assert sorted(by_question[q] for q in asked_after) == sorted({r["id"] for r in rows} - before)
    answers = list(read_jsonl(answers_file))
    assert sorted(a["id"] for a in answers) == sorted(r["id"] for r in rows)  # each once, nothing torn
    assert json.loads(done.stdout)["formats"]["plain"]["questions"] == len(rows)


def test_any_dataset_through_column_flags(tmp_path):
    """A jsonl with its own column names, image paths beside it, choices and InfoSeek-style aliases."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "sign.png").write_bytes(png(render([((40, 60), "STOP")])))
    records = [
        {"qid": "q1", "picture": "img/sign.png", "prompt": "Which shape is the sign? Answer with the option's "
         "letter from the given choices directly.", "gold": "octagon", "options": ["circle", "octagon"],
         "domain": "signs", "accepted": None},
        {"qid": "q2", "picture": "img/sign.png", "prompt": "When was the first stop sign put up?",
         "gold": "1915", "options": [], "domain": "history", "accepted": [{"range": [1914, 1916]}]},
        {"qid": "q3", "picture": "img/sign.png", "prompt": "What colour is the sign?", "gold": "red",
         "options": [], "domain": "signs", "accepted": None},
    ]
    data = tmp_path / "signs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    model = ScriptedTunedModel(answers={records[0]["prompt"]: "B", records[1]["prompt"]: "in 1914",
                                        records[2]["prompt"]: "blue"})
    with OpenAICompatServer(default_fn=model) as server:
        result = mmat_here(
            "eval", "--dataset", str(data), "--endpoint", server.url, "--model", "tuned", "--format", "plain",
            "--image-column", "picture", "--question-column", "prompt", "--answer-column", "gold",
            "--id-column", "qid", "--source-column", "domain", "--choices-column", "options",
            "--aliases-column", "accepted", "--work-dir", str(tmp_path / "eval"), "--json", cwd=tmp_path)
        assert result.exit_code == 0, result.stderr[-3000:]
        images_sent = [part for p in server.payloads() for part in p["messages"][0]["content"]
                       if isinstance(part, dict) and part.get("type") == "image_url"]
        assert {request_format(p) for p in server.payloads()} == {"plain"}
    report = json.loads(result.stdout)["formats"]["plain"]
    assert report["accuracy_by_source"] == {"signs": 0.5, "history": 1.0}
    assert report["questions"] == 3 and len(images_sent) == 3


UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


def one_line_error(result, message: str) -> None:
    """Exit 2, the message on the one `error:` line, no traceback."""
    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


@pytest.mark.parametrize("args, message", [
    (("--dataset", "d.jsonl", "--endpoint", UNREACHABLE), "has no column 'images'"),
    (("--dataset", "d.jsonl", "--endpoint", UNREACHABLE), "--image-column"),
    (("--dataset", "nowhere/at-all", "--endpoint", UNREACHABLE), "cannot load 'nowhere/at-all'"),
    (("--dataset", "missing-folder/", "--endpoint", UNREACHABLE), "cannot load 'missing-folder/'"),
    (("--dataset", "ds", "--split", "test", "--endpoint", UNREACHABLE), 'Unknown split "test"'),
    (("--dataset", "d.jsonl", "--image-column", "image", "--format", "rr,fast", "--endpoint", UNREACHABLE),
     "--format 'rr,fast'"),
    (("--dataset", "d.jsonl", "--image-column", "image"), "exactly one of --endpoint URL"),
    (("--dataset", "d.jsonl", "--image-column", "image", "--endpoint", UNREACHABLE, "--gguf", "x.gguf"),
     "got --endpoint, --gguf"),
    (("--dataset", "d.jsonl", "--image-column", "image", "--gguf", "missing.gguf"), "no such GGUF file"),
    (("--dataset", "d.jsonl", "--image-column", "image", "--model-path", "nowhere"), "no such folder"),
    (("--dataset", "d.jsonl", "--image-column", "image", "--endpoint", UNREACHABLE, "--vision", "maybe"),
     "--vision must be auto, on or off"),
    (("--dataset", "d.jsonl", "--image-column", "image", "--endpoint", UNREACHABLE, "--extra-body", "[1]"),
     "--extra-body must be a JSON object"),
    (("--dataset", "d.jsonl", "--image-column", "image", "--endpoint", UNREACHABLE, "--operators-config",
      "missing.yaml", "--format", "plain"), "missing.yaml: no such config file"),
    (("--dataset", "d.jsonl", "--image-column", "image", "--endpoint", UNREACHABLE, "--model", "m",
      "--format", "plain"), f"cannot reach the endpoint {UNREACHABLE}"),
])
def test_eval_usage_errors_are_one_line(tmp_path, args, message):
    (tmp_path / "x.png").write_bytes(png(render([((40, 60), "STOP")])))
    (tmp_path / "d.jsonl").write_text(json.dumps({"image": "x.png", "question": "q", "answer": "a"}) + "\n")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.jsonl").write_text((tmp_path / "d.jsonl").read_text())  # a folder with a train split
    result = mmat_here("eval", *args, "--work-dir", str(tmp_path / "e"), cwd=tmp_path)
    one_line_error(result, message)
    assert not list(read_jsonl(tmp_path / "e" / "answers.jsonl"))  # nothing recorded for a doomed run


def test_bad_option_values_are_usage_errors(tmp_path):
    for args in (("--limit", "0"), ("--concurrency", "0"), ("--max-steps", "0"), ("--bogus",)):
        result = mmat_here("eval", "--dataset", "d.jsonl", "--endpoint", UNREACHABLE, *args, cwd=tmp_path)
        assert result.exit_code == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        assert args[0] in result.stderr, (args, result.stderr)


def test_a_second_eval_on_the_same_work_folder_is_refused(tmp_path):
    from agent.eval_store import AnswerStore

    (tmp_path / "x.png").write_bytes(png(render([((40, 60), "STOP")])))
    (tmp_path / "d.jsonl").write_text(json.dumps({"images": "x.png", "question": "q", "answer": "a"}) + "\n")
    model = ScriptedTunedModel(answers={"q": "a"})
    with OpenAICompatServer(default_fn=model) as server:
        with AnswerStore(tmp_path / "e"):  # an eval still running there
            busy = mmat_here("eval", "--dataset", "d.jsonl", "--endpoint", server.url, "--format", "plain",
                             "--work-dir", str(tmp_path / "e"), cwd=tmp_path)
            asked_while_busy = len(server.requests)
        done = mmat_here("eval", "--dataset", "d.jsonl", "--endpoint", server.url, "--format", "plain",
                         "--work-dir", str(tmp_path / "e"), "--json", cwd=tmp_path)
    one_line_error(busy, "another mmat eval is using")
    assert asked_while_busy == 0
    assert done.exit_code == 0 and json.loads(done.stdout)["formats"]["plain"]["accuracy"] == 1.0
