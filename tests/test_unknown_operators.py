"""Issue 30: an operator name the run did not offer is reported, never dropped in silence.

Before: a step naming `shell` or `OCR` kept its thought and lost the name (the loop ran only available
operators), so the row said it used tools and showed none. Now (`generation.teachers.replies.step_reply`):
a name that differs from an offered operator only in case, spaces or hyphens is that operator; any
other name sends the reply back once, naming it and the offered operators (the chat client's repair
round), and a second such reply quarantines the sample with a reason naming the operator.

Real HTTP to the local OpenAI-compatible server, the real client, loop, operators and checkpoint.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from generation.checkpoint import Checkpoint
from generation.config import PipelineConfig, RationaleConfig, TeacherConfig
from generation.processor import SampleProcessor
from generation.schema import QA, ImageRef, Sample
from generation.teachers.factory import make_teacher
from operators.config import OperatorsConfig
from operators.registry import build_operators
from tests.dataset_factory import png_bytes
from tests.openai_server import OpenAICompatServer, ok


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-unknown-operators-0123")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAICompatServer() as srv:
        yield srv


def step(thought: str, operators=(), action: str = "continue") -> dict:
    return {"thought": thought, "operators": list(operators), "labels": [], "rag": {"needed": False, "query": None},
            "next_action": action}


def run_one(server: OpenAICompatServer, tmp_path: Path):
    """One sample through the runner's per-sample path with the template caption as the one operator.
    Returns (rr row or None, quarantine record or None, teacher stats)."""
    cfg = TeacherConfig(kind="openai", model="gpt-4o", base_url=server.url, backoff_base_s=0.01, backoff_max_s=0.05,
                        timeout_s=3.0, max_retries=1)
    config = PipelineConfig(sources=[], teacher=cfg, rationale=RationaleConfig(max_steps=3, reflection=False))
    sample = Sample(id="cauldron/iconqa/7", source="cauldron", subset="iconqa",
                    images=[ImageRef(data=png_bytes(2, (48, 32)))], qas=[QA(question="What is shown?", answer="cat")])
    off = {"backend": "off"}
    operators = build_operators(OperatorsConfig.model_validate(
        {"ocr": off, "face_detection": off, "label_bbox": off, "image_caption": {"backend": "template"},
         "rag": off}), None)
    assert operators.available == ["image_caption"]

    async def go():
        teacher = make_teacher(cfg)
        try:
            checkpoint = Checkpoint(tmp_path / "work")
            _, record = await SampleProcessor(config, teacher, operators, checkpoint).process(sample)
            finished = [r for r in checkpoint.finished() if r["id"] == sample.id]
            return (checkpoint.materialise(finished[0], "rr") if finished else None), record, teacher.stats
        finally:
            await teacher.aclose()

    return asyncio.run(go())


def test_an_unknown_operator_is_sent_back_once_and_the_repaired_step_runs_what_it_names(server, tmp_path):
    server.script("rationale_step", ok(step("Let me look.", ["image_caption", "shell"])),
                  ok(step("Let me look at the picture.", ["image_caption"])),
                  ok(step("It is a cat.", action="final_answer")))
    rr, record, stats = run_one(server, tmp_path)
    assert record is None and stats.repairs == 1
    first = rr["steps"][0]
    assert first["thought"] == "Let me look at the picture." and first["operators"] == ["image_caption"]
    assert [o["operator"] for o in first["observations"]] == ["image_caption"]
    repair = server.payloads("rationale_step")[1]["messages"][-1]["content"]
    assert "unknown operator 'shell'" in repair and "offered operators (image_caption)" in repair


def test_an_unknown_operator_twice_quarantines_the_sample_naming_it(server, tmp_path):
    server.script("rationale_step", ok(step("Run a command.", ["shell"])), ok(step("Read it.", ["OCR_v2"])))
    rr, record, stats = run_one(server, tmp_path)
    assert rr is None and record is not None
    assert record.message.startswith("teacher reply for rationale_step unusable after one repair retry: "
                                     "operators: ")
    assert "unknown operator 'OCR_v2'" in record.message and "\n" not in record.message
    assert server.count("rationale_step") == 2 and stats.failures["unparsable"] == 1


def test_an_operator_named_in_another_case_or_spacing_is_that_operator(server, tmp_path):
    server.script("rationale_step", ok(step("Describe it first.", ["Image Caption"])),
                  ok(step("It is a cat.", action="final_answer")))
    rr, record, stats = run_one(server, tmp_path)
    assert record is None and stats.repairs == 0
    assert rr["steps"][0]["operators"] == ["image_caption"]
    assert [o["operator"] for o in rr["steps"][0]["observations"]] == ["image_caption"]


def test_the_reply_type_knows_the_offered_names_and_rag():
    from pydantic import ValidationError

    from generation.teachers.replies import StepReply, step_reply

    offered = step_reply(["ocr", "image_caption", "rag"])
    assert step_reply(["ocr", "image_caption"]) is offered  # one type per offered set (cached)
    reply = offered.model_validate({"thought": "x", "operators": "OCR, rag, image-caption"})
    assert reply.operators == ["ocr", "rag", "image_caption"]  # rag has its own field; naming it is no error
    with pytest.raises(ValidationError, match="unknown operator 'face_detection'"):
        offered.model_validate({"thought": "x", "operators": ["face_detection"]})  # known, but not offered here
    with pytest.raises(ValidationError, match=r"offered operators \(none in this run\)"):
        step_reply([]).model_validate({"thought": "x", "operators": ["ocr"]})
    assert StepReply.model_validate({"thought": "x", "operators": ["anything"]}).operators == ["anything"]
