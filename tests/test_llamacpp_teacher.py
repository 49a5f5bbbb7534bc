"""The OpenAI teacher against a real llama.cpp server (SmolLM2-135M, 1 thread, a 1,024-token context),
every request and reply recorded by a proxy at the network edge: a reply cut at `max_tokens` gets one
repair and then quarantines; a prompt over the context is re-sent with the oldest results omitted, or
quarantined with the server's token counts; a text-only model's first refusal of an image switches
the teacher to text-only mode; `make_teacher` with kind llamacpp starts and stops its own server.
"""
from __future__ import annotations

import asyncio
import re

import pytest

from generation.config import TeacherConfig
from generation.schema import QA, Observation, Sample, Step
from generation.teachers.base import TeacherContext, TeacherError
from generation.teachers.factory import make_teacher
from generation.teachers.llamacpp import LlamaCppServer, ServerSettings
from generation.teachers.model_limits import OMITTED_OBSERVATION
from generation.teachers.openai_teacher import OpenAITeacher
from operators.images import LoadedImage
from tests.dataset_factory import png_bytes
from tests.llamacpp_support import (SMOLLM2_NAME, port_refuses, process_gone, require_local_teacher,
                                    run_and_close as run, smollm2_teacher)
from tests.recording_proxy import RecordingProxy

pytestmark = pytest.mark.slow
GGUF = require_local_teacher()
N_CTX = 1024


@pytest.fixture(scope="module")
def proxy():
    settings = ServerSettings(model_path=str(GGUF), alias=SMOLLM2_NAME, n_ctx=N_CTX, threads=1)
    with LlamaCppServer(settings) as server, RecordingProxy(server.url) as recording:
        yield recording


def teacher_on(proxy: RecordingProxy, kind: str = "llamacpp", **overrides) -> OpenAITeacher:
    cfg = TeacherConfig(**smollm2_teacher(GGUF, kind=kind, base_url=f"{proxy.url}/v1", n_ctx=N_CTX,
                                          **({"model_path": None, "model": SMOLLM2_NAME} if kind == "openai" else {}),
                                          **overrides))
    return make_teacher(cfg)


def ctx(question: str = "What is 17 + 25?", steps: list[Step] = (), images: list[LoadedImage] = ()) -> TeacherContext:
    sample = Sample(id="tabmwp/free_text/1", source="tabmwp", subset="free_text",
                    qas=[QA(question=question, answer="42")])
    return TeacherContext(sample=sample, qa_index=0, images=list(images), operators_available=[], steps=list(steps))


def test_a_reply_cut_at_max_tokens_gets_one_repair_then_quarantines(proxy):
    proxy.clear()
    teacher = teacher_on(proxy, max_tokens=4)
    with pytest.raises(TeacherError, match=r"unusable after one repair retry: reply cut off at max_tokens=4"):
        run(teacher, lambda t: t.final_answer(ctx()))
    chats = proxy.chat_exchanges()
    assert [e.reply["choices"][0]["finish_reason"] for e in chats] == ["length", "length"]
    assert all(e.request["max_tokens"] == 4 and e.request["response_format"]["type"] == "json_schema" for e in chats)
    served = sum(e.reply["usage"]["prompt_tokens"] + e.reply["usage"]["completion_tokens"] for e in chats)
    assert teacher.stats.usage.prompt_tokens + teacher.stats.usage.completion_tokens == served
    assert teacher.stats.failures["unparsable"] == 1 and teacher.stats.repairs == 1


def test_a_prompt_over_the_context_is_answered_after_omitting_the_oldest_results(proxy):
    proxy.clear()
    long_result = " ".join(f"row {i}: value {i * 7}." for i in range(400))[:3900]  # ~1,100 tokens
    steps = [Step(thought="Read the table.", operators=["ocr"], observations=[Observation(operator="ocr", text=long_result)]),
             Step(thought="Look again.", operators=["ocr"], observations=[Observation(operator="ocr", text="total: 42")])]
    answer = run(teacher_on(proxy), lambda t: t.final_answer(ctx(steps=steps)))
    assert answer.answer
    chats = proxy.chat_exchanges()
    assert chats[0].status == 400 and chats[0].reply["error"]["type"] == "exceed_context_size_error"
    assert chats[-1].status == 200
    sent = chats[-1].request["messages"][-1]["content"]
    assert OMITTED_OBSERVATION in sent and "total: 42" in sent and "row 399" not in sent  # oldest first


def test_a_prompt_that_cannot_be_shortened_quarantines_with_the_servers_counts(proxy):
    proxy.clear()
    teacher = teacher_on(proxy)
    with pytest.raises(TeacherError) as caught:
        run(teacher, lambda t: t.final_answer(ctx(question="How many? " * 600)))
    assert re.fullmatch(rf"prompt exceeds the model context \((\d+) > {N_CTX} tokens\)", str(caught.value))
    (chat,) = proxy.chat_exchanges()
    assert str(chat.reply["error"]["n_prompt_tokens"]) in str(caught.value)


def test_an_openai_teacher_on_a_text_only_model_switches_once_and_then_sends_no_images(proxy):
    proxy.clear()
    teacher = teacher_on(proxy, kind="openai")  # vision: auto, and no /props probe for kind openai
    assert teacher.mode == "vision"
    image = LoadedImage(png_bytes(4, (32, 32)))
    answer = run(teacher, lambda t: t.final_answer(ctx(images=[image])))
    assert answer.answer and teacher.mode == "text_only"
    first, *rest = proxy.chat_exchanges()
    assert first.status == 500 and "image input is not supported" in first.reply["error"]["message"]
    assert any(b["type"] == "image_url" for b in first.request["messages"][-1]["content"])
    assert rest and all(isinstance(m["content"], str) for e in rest for m in e.request["messages"])


def test_make_teacher_of_kind_llamacpp_starts_its_own_server_and_stops_it_on_close():
    teacher = make_teacher(TeacherConfig(**smollm2_teacher(GGUF, n_ctx=256)))
    server = teacher.owned_server
    pid, url = server.pid, server.url
    assert teacher.model_name == SMOLLM2_NAME and teacher.mode == "text_only" and teacher.caption_client is None
    assert teacher.cfg.prices.prompt_per_1m == 0 and teacher.cfg.max_concurrency == 1
    asyncio.run(teacher.aclose())
    assert process_gone(pid) and port_refuses(url)
