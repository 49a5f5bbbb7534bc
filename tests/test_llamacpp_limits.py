"""The local-teacher plumbing that needs no model: the `teacher:` config of kind llamacpp and the
command-line overrides, the context rule and the image refusals as OpenAI and vLLM word them (through
the scripted OpenAI-compatible server, real HTTP), and the text-only mode's requests.

The same behaviours against a real llama.cpp server: tests/test_llamacpp_teacher.py (slow).
"""
from __future__ import annotations

import asyncio
import logging

import httpx2
import openai
import pytest

from generation.config import ConfigError, TeacherConfig, parse_config
from generation.schema import QA, Observation, Sample, Step
from generation.teachers.base import TeacherContext, TeacherError
from generation.teachers.factory import apply_teacher_overrides
from generation.teachers.llamacpp import model_alias, settings_for
from generation.teachers.model_limits import (OMITTED_OBSERVATION, ContextOverflow, context_overflow,
                                              more_to_omit, omit_observations, refuses_images, without_images)
from generation.teachers.openai_teacher import OpenAITeacher
from operators.images import LoadedImage
from tests.dataset_factory import png_bytes
from tests.llamacpp_support import run_and_close
from tests.openai_server import OpenAICompatServer, error

SOURCES = [{"kind": "tabmwp", "path": "samples/tabmwp"}]  # any valid source: the config needs one

# Error bodies as the servers send them (the SDK hands our code the inner "error" object).
LLAMACPP_OVERFLOW = {"code": 400, "message": "request (731 tokens) exceeds the available context size (256 tokens), "
                                             "try increasing it", "type": "exceed_context_size_error",
                     "n_prompt_tokens": 731, "n_ctx": 256}
OPENAI_OVERFLOW = {"message": "This model's maximum context length is 4097 tokens. However, your messages resulted in "
                              "6164 tokens. Please reduce the length of the messages.",
                   "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}
VLLM_OVERFLOW = {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
                            "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages "
                            "or completion.", "type": "BadRequestError", "param": None, "code": 400}
LLAMACPP_NO_IMAGES = {"code": 500, "message": "image input is not supported - hint: if this is unexpected, you may "
                                              "need to provide the mmproj", "type": "server_error"}
OPENAI_NO_IMAGES = {"message": "Invalid content type. image_url is only supported by certain models.",
                    "type": "invalid_request_error", "param": "messages.[0].content.[1].type", "code": None}


def status_error(status: int, body: dict) -> openai.APIStatusError:
    response = httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    cls = {400: openai.BadRequestError, 500: openai.InternalServerError}.get(status, openai.APIStatusError)
    return cls(body["message"], response=response, body=body)


# -- config and command line -------------------------------------------------------------------------
def test_llamacpp_kind_needs_a_gguf_and_mmproj_needs_llamacpp():
    with pytest.raises(ConfigError, match="model_path"):
        parse_config({"sources": SOURCES, "teacher": {"kind": "llamacpp"}})
    with pytest.raises(ConfigError, match="mmproj_path"):
        parse_config({"sources": SOURCES, "teacher": {"kind": "openai", "mmproj_path": "x.gguf"}})
    cfg = parse_config({"sources": SOURCES, "teacher": {"kind": "llamacpp", "base_url": "http://127.0.0.1:9/v1"}})
    assert cfg.teacher.model_path is None  # a running llama.cpp server needs no file here
    for value, expected in (("auto", "auto"), (True, True), (False, False)):
        assert TeacherConfig(vision=value).vision == expected


def test_overrides_map_model_to_the_gguf_and_keep_kind_dependent_defaults_unset():
    base = TeacherConfig()  # a YAML without a prices key
    cfg = apply_teacher_overrides(base, teacher="llamacpp", model="models/Qwen2.5-VL-3B.Q4_K_M.gguf",
                                  mmproj="models/mmproj.gguf")
    assert (cfg.kind, cfg.model_path, cfg.mmproj_path) == ("llamacpp", "models/Qwen2.5-VL-3B.Q4_K_M.gguf",
                                                           "models/mmproj.gguf")
    assert cfg.model == "gpt-4o" and "prices" not in cfg.model_fields_set  # zero prices for a local model
    with pytest.raises(ConfigError, match="--mmproj needs --teacher llamacpp"):
        apply_teacher_overrides(base, teacher="openai", mmproj="m.gguf")
    with pytest.raises(ConfigError, match="model_path"):
        apply_teacher_overrides(base, teacher="llamacpp")
    assert apply_teacher_overrides(base, teacher="openai", model="gpt-4o-mini").model == "gpt-4o-mini"


def test_model_name_is_the_gguf_file_name_and_a_non_gguf_file_is_one_clear_error(tmp_path):
    assert model_alias("/m/SmolLM2-135M-Instruct.Q4_1.gguf") == "SmolLM2-135M-Instruct.Q4_1"
    assert model_alias("qwen.GGUF") == "qwen"
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        settings_for(TeacherConfig(kind="llamacpp", model_path=str(not_gguf)))
    with pytest.raises(ConfigError, match="no such GGUF file"):
        settings_for(TeacherConfig(kind="llamacpp", model_path=str(tmp_path / "absent.gguf")))


# -- reading the servers' refusals ------------------------------------------------------------------
def test_context_overflow_reads_llamacpp_openai_and_vllm_wordings():
    llama = context_overflow(status_error(400, LLAMACPP_OVERFLOW))
    assert (llama.prompt_tokens, llama.context, llama.excess) == (731, 256, 475)
    assert str(llama) == "prompt exceeds the model context (731 > 256 tokens)"
    oai = context_overflow(status_error(400, OPENAI_OVERFLOW))
    assert (oai.prompt_tokens, oai.context) == (6164, 4097)
    vllm = context_overflow(status_error(400, VLLM_OVERFLOW))
    assert (vllm.prompt_tokens, vllm.context, vllm.requested, vllm.excess) == (4000, 4096, 5000, 904)
    assert "5000 > 4096 tokens, 1000 of them for the reply" in str(vllm)
    assert context_overflow(status_error(400, {"message": "Invalid 'tools' format", "type": "x"})) is None


def test_image_refusals_are_recognised_and_other_errors_are_not():
    assert refuses_images(status_error(500, LLAMACPP_NO_IMAGES))
    assert refuses_images(status_error(400, OPENAI_NO_IMAGES))
    assert refuses_images(status_error(400, {"message": "Qwen2.5-7B-Instruct is not a multimodal model"}))
    assert not refuses_images(status_error(500, {"message": "CUDA out of memory"}))


# -- the context rule ---------------------------------------------------------------------------------
def _steps() -> list[Step]:
    return [Step(thought="read it", operators=["ocr", "image_caption"],
                 observations=[Observation(operator="ocr", text="A" * 3000),
                               Observation(operator="image_caption", text="B" * 3000)]),
            Step(thought="boxes", operators=["label_bbox"], observations=[Observation(operator="label_bbox",
                                                                                        text="C" * 100)])]


def test_oldest_observations_are_omitted_first_and_about_as_many_as_the_overflow_needs():
    steps = _steps()
    trimmed = omit_observations(steps, 2)
    assert [o.text for s in trimmed for o in s.observations] == [OMITTED_OBSERVATION, OMITTED_OBSERVATION, "C" * 100]
    assert steps[0].observations[0].text == "A" * 3000  # the dialogue keeps its results: only the prompt shrinks
    # 1,000 tokens over at 4 chars/token: the first 3,000-char result is not enough, the first two are
    overflow = ContextOverflow(prompt_tokens=4000, context=3000)
    assert more_to_omit(steps, 0, overflow, prompt_chars=16000, shown_chars=4000) == 2
    assert more_to_omit(steps, 0, ContextOverflow(None, None), 16000, 4000) == 1  # the server did not say
    assert more_to_omit(steps, 3, overflow, 16000, 4000) == 0  # nothing left: quarantine


def _ctx(steps: list[Step], images: list[LoadedImage] = ()) -> TeacherContext:
    sample = Sample(id="t/1", source="tabmwp", subset="free_text", qas=[QA(question="How many?", answer="3")])
    return TeacherContext(sample=sample, qa_index=0, images=list(images), operators_available=["ocr"],
                          steps=list(steps))


def _teacher(server: OpenAICompatServer, **cfg) -> OpenAITeacher:
    return OpenAITeacher(TeacherConfig(kind="openai", base_url=server.url, max_retries=0, **cfg), api_key="sk-test",
                         base_url=server.url)


def _user_text(payload: dict) -> str:
    content = payload["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)


def test_a_prompt_over_the_context_is_resent_without_the_oldest_results_then_answered():
    with OpenAICompatServer() as server:
        server.script("rationale_step", error(400, OPENAI_OVERFLOW["message"], code="context_length_exceeded"))
        teacher = _teacher(server)
        decision = run_and_close(teacher, lambda t: t.next_step(_ctx(_steps())))
        first, second = server.payloads("rationale_step")
    assert decision.thought
    assert "A" * 3000 in _user_text(first) and OMITTED_OBSERVATION not in _user_text(first)
    assert "A" * 3000 not in _user_text(second) and OMITTED_OBSERVATION in _user_text(second)
    assert teacher.stats.context_trims == 1


def test_a_prompt_that_cannot_be_shortened_is_quarantined_with_the_token_counts():
    with OpenAICompatServer() as server:
        server.script("rationale_step", error(400, OPENAI_OVERFLOW["message"], code="context_length_exceeded"))
        teacher = _teacher(server)
        with pytest.raises(TeacherError, match=r"^prompt exceeds the model context \(6164 > 4097 tokens\)$"):
            run_and_close(teacher, lambda t: t.next_step(_ctx([])))
        assert server.count("rationale_step") == 1
    assert teacher.stats.failures["context"] == 1


# -- text-only mode -----------------------------------------------------------------------------------
def test_first_image_refusal_switches_to_text_only_once_and_the_caption_falls_back(caplog):
    from operators.config import OperatorsConfig
    from operators.registry import build_operators

    image = LoadedImage(png_bytes(3, (64, 48)))
    with OpenAICompatServer() as server:
        server.script("rationale_step", error(400, OPENAI_NO_IMAGES["message"]))
        teacher = _teacher(server)  # vision: auto
        assert teacher.mode == "vision" and teacher.caption_client is not None

        async def go():
            operators = build_operators(OperatorsConfig(), None, caption_client=teacher.caption_client)
            try:
                with caplog.at_level(logging.WARNING, logger="mmat"):
                    await teacher.next_step(_ctx([], [image]))
                    await teacher.final_answer(_ctx([], [image]))
                caption = await asyncio.to_thread(operators.run, "image_caption", [image])
            finally:
                await teacher.aclose()
            return caption

        caption = asyncio.run(go())
        payloads = server.payloads()
    kinds = [[b["type"] for b in p["messages"][-1]["content"]] if isinstance(p["messages"][-1]["content"], list)
             else ["text"] for p in payloads]
    # refused, then re-sent and all later text-only (the image, then the question's and the task's parts)
    assert kinds == [["image_url", "text", "text"], ["text"], ["text"]]
    assert teacher.mode == "text_only" and teacher.stats.downgrades == ["vision->text_only"]
    assert caption.backend == "template" and server.count("caption") == 0
    switches = [r for r in caplog.records if r.name == "mmat.teacher" and "text-only mode" in r.getMessage()]
    assert len(switches) == 1


def test_vision_false_sends_no_image_parts_and_offers_no_vlm_caption():
    with OpenAICompatServer() as server:
        teacher = _teacher(server, vision=False)
        run_and_close(teacher, lambda t: t.next_step(_ctx([], [LoadedImage(png_bytes(3, (64, 48)))])))
        (payload,) = server.payloads()
    assert teacher.caption_client is None and teacher.mode == "text_only"
    assert all(isinstance(m["content"], str) for m in payload["messages"])


def test_vision_true_makes_a_refusal_one_clear_error():
    with OpenAICompatServer() as server:
        server.script("rationale_step", error(400, OPENAI_NO_IMAGES["message"]))
        teacher = _teacher(server, vision=True)
        with pytest.raises(TeacherError, match="set teacher.vision: auto or false"):
            run_and_close(teacher, lambda t: t.next_step(_ctx([], [LoadedImage(png_bytes(3, (64, 48)))])))


def test_without_images_keeps_the_text_as_a_plain_string():
    messages = [{"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}},
                                             {"type": "text", "text": "q"}]}]
    assert without_images(messages) == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]


def test_stop_strings_go_with_every_request():
    with OpenAICompatServer() as server:
        teacher = _teacher(server, stop=["\n\n\n"])
        run_and_close(teacher, lambda t: t.final_answer(_ctx([])))
        (payload,) = server.payloads()
    assert payload["stop"] == ["\n\n\n"] and payload["max_tokens"] == 1024


def test_dry_run_names_the_local_model_and_starts_nothing(tmp_path):
    from typer.testing import CliRunner

    from mmat_cli import app
    from tests.runner_support import source, write_config

    config = write_config(tmp_path / "c.yaml", [source("tabmwp", limit=2)])
    result = CliRunner().invoke(app, ["generate", "--config", str(config), "--out", str(tmp_path / "out"), "--dry-run",
                                      "--teacher", "llamacpp", "--model", "models/Qwen2.5-VL-3B-Q4_K_M.gguf"])
    assert result.exit_code == 0, result.output
    assert "llamacpp (Qwen2.5-VL-3B-Q4_K_M, a llama.cpp server the run starts" in result.output
    assert "(local model: free)" in result.output and not (tmp_path / ".mmat-work").exists()
