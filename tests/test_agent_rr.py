"""The RR loop against a scripted OpenAI-compatible server (real HTTP, real `openai` client) and real
operators (rapidocr, the template caption, local RAG over the bundled corpus): it calls exactly the
operators the model names, answers in the rows' wording, honours <RAG>, stops at `end`, respects
max_steps, and recovers once from a reply that does not parse."""
from __future__ import annotations

import pytest

from agent import Agent, AgentSettings, OpenAIChat
from agent.tools import AgentTools, bbox_labels
from generation.dialogue_format import (
    NO_RESULTS_TURN,
    REFLECTION_TURN,
    STEP_FORMAT_REMINDER,
    message_text,
    parse_rr,
    render_first_turn,
    render_results_turn,
    render_step,
    render_summary_turn,
)
from generation.integration import rr_system_prompt
from operators.config import OperatorsConfig
from operators.registry import build_operators
from tests.agent_support import ScriptedTunedModel
from tests.ocr_support import png, render
from tests.openai_server import OpenAICompatServer

QUESTION = "What is not allowed here? Answer the question using a single word or phrase."
IMAGE = png(render([((40, 60), "NO PARKING"), ((40, 130), "8AM - 6PM")]))


@pytest.fixture(scope="module")
def tools(repo_root) -> AgentTools:
    """Real backends, no result cache: every call the agent makes is a counted execution."""
    cfg = OperatorsConfig.model_validate({
        "ocr": {"backend": "rapidocr"}, "image_caption": {"backend": "template"},
        "face_detection": {"backend": "off"}, "label_bbox": {"backend": "off"},
        "rag": {"backend": "local", "corpus": str(repo_root / "samples/infoseek/corpus")},
    })
    return AgentTools(build_operators(cfg, None))


def executions(tools: AgentTools) -> dict[str, int]:
    return {name: tools.operators.get(name).executions for name in tools.available}


def run_agent(tools: AgentTools, model: ScriptedTunedModel, **settings) -> tuple:
    with OpenAICompatServer(default_fn=model) as server:
        with Agent(OpenAIChat(server.url, "tuned-rr"), tools, AgentSettings(**settings)) as agent:
            result = agent.run_sync([IMAGE], QUESTION)
        return result, server.payloads()


def user_turns(payload: dict) -> list[str]:
    return [message_text(m) for m in payload["messages"] if m["role"] == "user"]


@pytest.mark.slow  # OCR on a busy 2-core machine
def test_calls_exactly_the_named_operators_and_answers_in_the_rows_wording(tools):
    before = executions(tools)
    model = ScriptedTunedModel(answers={QUESTION: "Parking"}, rr_operators=("ocr", "image_caption"))
    result, payloads = run_agent(tools, model)
    after = executions(tools)

    assert {name: after[name] - before[name] for name in after} == {"image_caption": 1, "ocr": 1, "rag": 0}
    assert result.status == "answered" and result.answer == "Parking"
    assert len(payloads) == 3 and result.turns == 3 and result.tool_calls == 2
    first = payloads[0]["messages"]
    assert first[0] == {"role": "system", "content": rr_system_prompt()}
    assert [p["type"] for p in first[1]["content"]] == ["image_url", "text"]
    assert first[1]["content"][1]["text"] == render_first_turn(QUESTION)
    # the results come back as the next user turn, in the paper's wording, OCR first as named
    ocr, caption = result.steps[0].observations
    assert (ocr.operator, caption.operator) == ("ocr", "image_caption")
    assert "NO PARKING" in ocr.text
    turn = user_turns(payloads[1])[-1]
    assert turn == render_results_turn([("ocr", ocr.text), ("image_caption", caption.text)])
    assert turn.startswith("Here are ocr, image_caption results from the previous step:-ocr information: NO PARKING")
    assert turn.endswith(" Please continue your reasoning.")
    # the template caption reports only what it computed (issue 29): the OCR's words are not quoted in it
    assert "NO PARKING" not in caption.text and caption.backend == "template"
    # the summary question after `end`, then the answer; the whole dialogue is an RR row's
    assert user_turns(payloads[2])[-1] == render_summary_turn(QUESTION)
    dialogue = parse_rr(result.messages)
    (q,) = dialogue.questions
    assert q.question == QUESTION and q.answer == "Parking" and q.n_images == 1
    assert [s.signal for s in q.steps] == ["continue", "end"]
    assert q.steps[0].observations == (("ocr", ocr.text), ("image_caption", caption.text))


@pytest.mark.slow  # loads the sentence-transformer and indexes the corpus
def test_honours_rag(tools):
    before = executions(tools)
    model = ScriptedTunedModel(answers={QUESTION: "330"}, rr_operators=(), rag_query="Eiffel Tower height")
    result, payloads = run_agent(tools, model)
    after = executions(tools)
    assert {name: after[name] - before[name] for name in after} == {"image_caption": 0, "ocr": 0, "rag": 1}
    (rag,) = result.steps[0].observations
    assert rag.operator == "rag" and rag.backend == "local" and "330 metres" in rag.text
    assert result.steps[0].rag_query == "Eiffel Tower height"
    assert user_turns(payloads[1])[-1].startswith("Here are rag results from the previous step:-rag information: ")
    assert parse_rr(result.messages).questions[0].steps[0].rag_query == "Eiffel Tower height"


def test_stops_at_end_without_tools(tools):
    model = ScriptedTunedModel(answers={QUESTION: "Parking"})
    model.queue("rr", render_step("The sign is readable in the image.", signal="end"))
    result, payloads = run_agent(tools, model)
    assert len(payloads) == 2 and result.answer == "Parking" and result.tool_calls == 0
    assert user_turns(payloads[1])[-1] == render_summary_turn(QUESTION)


def test_no_results_unknown_operator_and_reflection_turns(tools):
    before = executions(tools)
    model = ScriptedTunedModel(answers={QUESTION: "Parking"})
    model.queue("rr", render_step("Let me zoom in.", ["zoom_in"]),
              render_step("I may have misread it.", signal="reflection"),
              render_step("It says no parking.", signal="end"))
    result, payloads = run_agent(tools, model)
    assert executions(tools) == before
    assert result.steps[0].skipped == {"zoom_in": "unknown operator"}
    assert user_turns(payloads[1])[-1] == NO_RESULTS_TURN
    assert user_turns(payloads[2])[-1] == REFLECTION_TURN
    assert [s.signal for s in parse_rr(result.messages).questions[0].steps] == ["continue", "reflection", "end"]


def test_respects_max_steps(tools):
    before = executions(tools)
    endless = render_step("Let me look again.", ["image_caption"])
    model = ScriptedTunedModel(answers={QUESTION: "Parking"})
    model.queue("rr", *[endless] * 3)  # it would go on: the runtime stops it after max_steps
    result, payloads = run_agent(tools, model, max_steps=3)
    assert result.status == "max_steps" and result.answer == "Parking"
    assert len(payloads) == 4  # three steps, then the summary question
    assert len(result.steps) == 3
    # the operators of the last step do not run: the summary question follows it
    assert executions(tools)["image_caption"] - before["image_caption"] == 2
    assert user_turns(payloads[3])[-1] == render_summary_turn(QUESTION)


def test_recovers_once_from_an_unparsable_reply(tools):
    model = ScriptedTunedModel(answers={QUESTION: "Parking"}, rr_operators=("image_caption",))
    model.queue("rr", "I think I should use OCR here.")
    result, payloads = run_agent(tools, model)
    assert result.status == "answered" and result.answer == "Parking"
    assert len(payloads) == 4 and [c.parsed for c in result.calls] == [False, True, True, True]
    assert result.calls[1].retry
    retry = payloads[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think I should use OCR here."}
    assert retry[-1] == {"role": "user", "content": STEP_FORMAT_REMINDER}
    # the bad reply and the reminder are not part of the dialogue that goes on
    assert "I think I should use OCR here." not in str(payloads[2]["messages"])
    parse_rr(result.messages)


def test_unparsable_twice_ends_the_question(tools):
    model = ScriptedTunedModel(answers={QUESTION: "Parking"})
    model.queue("rr", "no tags at all", "<THOUGHT>still no signal</THOUGHT>")
    result, payloads = run_agent(tools, model)
    assert result.status == "unparsable" and result.answer is None
    assert len(payloads) == 2 and result.turns == 2


def test_text_only_model_gets_no_image_parts(tools):
    model = ScriptedTunedModel(answers={QUESTION: "Parking"}, rr_operators=("image_caption",))
    with OpenAICompatServer(default_fn=model) as server:
        with Agent(OpenAIChat(server.url, "tuned-rr", vision=False), tools, AgentSettings()) as agent:
            result = agent.run_sync([IMAGE], QUESTION)
        first_user = server.payloads()[0]["messages"][1]
    assert first_user["content"] == render_first_turn(QUESTION)  # a plain string: no image part
    assert result.status == "answered" and not result.images_sent and result.n_images == 1


def test_bbox_labels_come_from_the_scene_graph_or_the_question():
    assert bbox_labels("How many dogs are there?", {"objects": ["cat", "sofa"]}) == ["cat", "sofa"]
    assert bbox_labels("How many dogs are there? Answer the question using a single word or phrase.", None) == ["dogs"]
    assert bbox_labels("What is this?", None) == ["object"]
