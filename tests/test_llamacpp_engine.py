"""The whole loop against a real model: three demo samples (a TabMWP math question with the reflection
checks on; a LLaVA-CoT multiple choice and a Visual CoT text question with them off) through `run_generation` with `teacher.kind: llamacpp`
on SmolLM2-135M (1 thread), every request and reply recorded by a proxy between the engine and the
real llama.cpp server. Nothing about the replies is scripted: the model is weak and answers wrong.

Checked: every sample ends as a row or a quarantine record with a reason; structured output goes as
`json_schema`; the rationale steps, both reflections and the final answer are asked; the teacher is
text-only (no image part in any request) so the caption is the template's; rows name the GGUF's
model, record `teacher_mode: text_only`, carry the token usage the server reported for their requests,
and a wrong final answer is flagged `verified: false`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from generation.config import parse_config
from generation.dialogue_format import parse_row
from generation.plan import RunOptions
from publishing.run import run_generation
from generation.teachers.llamacpp import LlamaCppServer, ServerSettings
from tests.llamacpp_support import SMOLLM2_NAME, require_local_teacher, smollm2_teacher
from tests.recording_proxy import Exchange, RecordingProxy
from tests.runner_support import SAMPLES, read_quarantine

pytestmark = pytest.mark.slow
GGUF = require_local_teacher()
SOURCES = [("tabmwp", 1), ("llava_cot", 1), ("visual_cot", 1)]  # math (both checks), a choice, a text question


@dataclass
class LocalRun:
    summary: Any
    planned: set[str]
    rows: dict[str, list[dict]]  # format -> rows
    quarantine: dict[str, dict]
    chats: list[Exchange]
    log: str


def _read_rows(out: Path) -> dict[str, list[dict]]:
    import pyarrow.parquet as pq

    return {fmt: [row for path in sorted((out / "data" / fmt).glob("*/*.parquet"))
                  for row in pq.read_table(path).to_pylist()] for fmt in ("rr", "orr")}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> LocalRun:
    """Two short runs on one server. With the reflection checks on, SmolLM2's general check flags every
    dialogue with a reason of its own ("This task requires a lot of work.") that no repair can answer, so
    its samples end quarantined ("reflection did not repair"): that run covers the checks' requests and the
    quarantine; the run with the checks off is where rows come from."""
    from types import SimpleNamespace

    from generation.sources import read_source

    tmp = tmp_path_factory.mktemp("llamacpp-engine")
    settings = ServerSettings(model_path=str(GGUF), alias=SMOLLM2_NAME, n_ctx=4096, threads=2)  # the run waits on it: both cores
    planned: set[str] = set()
    rows: dict[str, list[dict]] = {"rr": [], "orr": []}
    quarantine: dict[str, dict] = {}
    finished = quarantined = 0
    log = ""
    with LlamaCppServer(settings) as server, RecordingProxy(server.url) as proxy:
        for name, sources, reflection in (("checked", SOURCES[:1], True), ("rows", SOURCES[1:], False)):
            config = parse_config({
                "name": f"local-teacher-{name}",
                "sources": [{"kind": kind, "path": str(SAMPLES / kind), "limit": n} for kind, n in sources],
                "teacher": smollm2_teacher(GGUF, base_url=f"{proxy.url}/v1", max_concurrency=1),
                "operators": {"ocr": {"backend": "rapidocr"}, "face_detection": {"backend": "off"},
                              "label_bbox": {"backend": "off"}, "image_caption": {"backend": "auto"},
                              "rag": {"backend": "off"}},
                "rationale": {"max_steps": 2, "reflection": reflection},
                "output": {"validation_fraction": 0.0},
            })
            planned |= {s.id for source in config.sources for s in read_source(source) if hasattr(s, "qas")}
            out = tmp / name
            summary = run_generation(config, RunOptions(out_dir=out, quiet=True))
            finished, quarantined = finished + summary.finished, quarantined + summary.quarantined
            for fmt, found in _read_rows(out).items():
                rows[fmt] += found
            work = tmp / ".mmat-work" / name
            quarantine.update(read_quarantine(work))
            log += (work / "run.log").read_text()
        chats = proxy.chat_exchanges()
    return LocalRun(SimpleNamespace(finished=finished, quarantined=quarantined), planned, rows, quarantine, chats, log)


def _task(exchange: Exchange) -> str:
    """The task a request asks for: its last message's "Task: <name>" line (issue 31's layout: one shared
    system text and schema for every task, the task's own text last)."""
    last = exchange.request["messages"][-1]["content"]
    text = last if isinstance(last, str) else " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    found = re.findall(r"^Task: (\w+)$", text, re.M)
    return found[-1] if found else "?"


def _final_answer(orr_row: dict) -> str:
    text = orr_row["messages"][-1]["content"][0]["text"]
    return re.search(r"<ANSWER>The answer is: (.*)</ANSWER>$", text, re.S).group(1)


def test_every_sample_ends_as_a_row_or_a_quarantine_record_with_a_reason(local_run):
    rows = {row["id"] for row in local_run.rows["orr"]}
    assert rows == {row["id"] for row in local_run.rows["rr"]}
    assert rows | set(local_run.quarantine) == local_run.planned and not rows & set(local_run.quarantine)
    assert all(record["message"].strip() and record["stage"] for record in local_run.quarantine.values())
    assert local_run.summary.finished + local_run.summary.quarantined == len(local_run.planned)
    assert rows, "SmolLM2 produced no row at all; the row checks below would be empty"


def test_requests_are_json_schema_text_only_and_cover_the_whole_loop(local_run):
    assert local_run.chats and all(e.request["response_format"]["type"] == "json_schema" for e in local_run.chats)
    assert not any(isinstance(m["content"], list) for e in local_run.chats for m in e.request["messages"])
    assert not any("image_url" in str(e.request) for e in local_run.chats)
    tasks = {_task(e) for e in local_run.chats}
    assert {"rationale_step", "reflection_general", "final_answer"} <= tasks
    # the math check comes after the general one: asked unless the math sample's general repair was rejected
    math_stopped = any(r["id"].startswith("tabmwp/") and r["error_type"] == "RepairRejected"
                       and "general reflection" in r["message"] for r in local_run.quarantine.values())
    assert "reflection_math" in tasks or math_stopped
    assert "takes no images" in local_run.log and "text-only mode" in local_run.log
    assert re.search(r"image_caption: vlm unavailable .*using template", local_run.log)
    captions = [o["text"] for row in local_run.rows["rr"] for s in row["steps"] for o in s["observations"]
                if o["operator"] == "image_caption"]
    assert all("image" in text for text in captions)  # the template describes the picture's facts


def test_rows_name_the_gguf_model_and_record_text_only_mode(local_run):
    for row in local_run.rows["rr"] + local_run.rows["orr"]:
        assert row["teacher"]["model"] == SMOLLM2_NAME
        assert row["teacher"]["cost_usd"] == 0.0
        assert row["meta"]["teacher_mode"] == "text_only"


def test_row_token_usage_is_what_the_server_reported_for_that_samples_requests(local_run):
    for row in local_run.rows["orr"]:
        mine = [e for e in local_run.chats if e.status == 200  # a repair request repeats the question too
                and any(f"Question: {row['question']}" in m["content"] for m in e.request["messages"])]
        assert mine
        assert row["teacher"]["prompt_tokens"] == sum(e.reply["usage"]["prompt_tokens"] for e in mine)
        assert row["teacher"]["completion_tokens"] == sum(e.reply["usage"]["completion_tokens"] for e in mine)


def _same_answer(final: str, reference: str) -> bool:
    def words(text: str) -> str:
        return " ".join(re.sub(r"[^\w.]+", " ", text.lower()).split()).strip(".")

    return words(final) == words(reference) or (words(final).startswith(words(reference) + " ")
                                                and len(reference) > 1)


def test_wrong_answers_are_flagged_by_verification(local_run):
    by_id = {row["id"]: row for row in local_run.rows["orr"]}
    flagged = 0
    for row in by_id.values():
        final, reference = _final_answer(row), row["answer"]
        if row["meta"]["verified"]:
            options = dict(re.findall(r"\(([A-Z])\) ([^()\n]+?)(?= \(|\n|$)", row["question"]))
            accepted = [reference] + ([options[reference]] if reference in options else [])
            assert any(a.lower() in final.lower() for a in accepted), (final, reference)
        elif row["meta"]["verified"] is False:
            flagged += 1
            assert not _same_answer(final, reference), (final, reference)
    assert flagged, "SmolLM2-135M got every answer right; the wrong-answer check saw nothing"


STEP = re.compile(r"<THOUGHT>.*</THOUGHT>(<OPERATOR>[a-z_, ]+</OPERATOR>)?(<RAG>.*</RAG>)?"
                  r"<SIGNAL>(continue|reflection|end)</SIGNAL>", re.S)


def test_rows_have_the_rr_and_orr_layouts(local_run):
    for row in local_run.rows["rr"] + local_run.rows["orr"]:  # the strict RR/ORR parser reads every row back
        dialogue = parse_row(row)
        if row["format"] == "rr":
            assert [s.signal for q in dialogue.questions for s in q.steps] == [s["signal"] for s in row["steps"]]
        else:
            assert dialogue.questions[-1].answer == _final_answer(row)
    for row in local_run.rows["rr"]:
        messages = row["messages"]
        roles = [m["role"] for m in messages]
        assert roles[0] == "system" and roles[1:] == ["user", "assistant"] * ((len(roles) - 1) // 2)
        assert [b["type"] for b in messages[1]["content"]] == ["image"] * len(row["images"]) + ["text"]
        assistant = [m["content"][0]["text"] for m in messages if m["role"] == "assistant"]
        assert all(STEP.fullmatch(text) for text in assistant[:-1]), assistant
        assert len(assistant) - 1 == len(row["steps"]) and row["steps"][-1]["signal"] == "end"
    for row in local_run.rows["orr"]:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert re.fullmatch(r"<THOUGHT>.*</THOUGHT><ANSWER>The answer is: .*</ANSWER>",
                            row["messages"][1]["content"][0]["text"], re.S)
