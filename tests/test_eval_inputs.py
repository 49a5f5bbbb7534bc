"""`mmat eval`'s inputs (issue 30): a damaged answers.jsonl costs its lines, not the eval; an empty or
non-JSON dataset file is one line and exit 2."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from agent.eval_store import ANSWERS_FILE, AnswerStore


def _answer(i: int) -> dict:
    return {"model": "m", "format": "orr", "id": f"q{i}", "answer": str(i), "correct": True}


def test_damaged_answer_lines_are_skipped_with_one_warning_and_asked_again(tmp_path, caplog):
    work = tmp_path / "eval"
    work.mkdir()
    good = [_answer(i) for i in range(3)]
    lines = [json.dumps(good[0]).encode(), b"null", b"[1,2,3]", b'"str"', json.dumps(good[1]).encode(),
             json.dumps(_answer(9)).encode().replace(b"q9", b"q\xff9"), b'{"model": "m", "form', json.dumps(good[2]).encode()]
    (work / ANSWERS_FILE).write_bytes(b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING, logger="mmat.checkpoint"):
        with AnswerStore(work) as store:
            assert [r["id"] for r in store.records()] == ["q0", "q1", "q2"]
            assert store.answered("m") == {("orr", "q0"), ("orr", "q1"), ("orr", "q2")}  # q9 is asked again
            store.add(_answer(9))
            assert ("orr", "q9") in store.answered("m")
    warnings = [r.getMessage() for r in caplog.records if ANSWERS_FILE in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "5 damaged lines" in warnings[0] and "line 2" in warnings[0] and "invalid UTF-8" in warnings[0]


def _eval(dataset) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmat_cli", "eval", "--dataset", str(dataset),
                           "--endpoint", "http://127.0.0.1:9/v1", "--model", "x"],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("content, says", [(b"", "the file is empty"), (b"not json\n", "not a readable .jsonl"),
                                           (b"\xff\xfe\x00garbage\n", "not a readable .jsonl")])
def test_an_unreadable_eval_file_is_one_line_and_exit_2(tmp_path, content, says):
    data = tmp_path / "questions.jsonl"
    data.write_bytes(content)
    result = _eval(data)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert says in lines[0] and str(data) in lines[0]
