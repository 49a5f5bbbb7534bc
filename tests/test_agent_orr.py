"""The ORR one-shot: the prompt it builds is the ORR row's own user turn (string-equal), on the demo
dataset made by the project's engine, with the same operator backends and the same cache (so not one
operator executes); the reply is parsed with the project's parser, with one retry."""
from __future__ import annotations

import datasets
import pytest

from agent import Agent, AgentSettings, OpenAIChat
from agent.eval_data import load_eval_set
from agent.tools import AgentTools, build_tools
from generation.dialogue_format import ORR_FORMAT_REMINDER, message_text, parse_row, render_orr_question
from operators.config import OperatorsConfig
from operators.registry import build_operators
from tests.agent_support import ScriptedTunedModel
from tests.ocr_support import png, render
from tests.openai_server import OpenAICompatServer

pytestmark = pytest.mark.slow  # reads the session's demo dataset (built once for the whole suite)


def test_orr_prompt_is_the_orr_rows_user_turn(demo):
    folder = demo["root"] / "mmat-1m"
    rows = {row["id"]: row for row in datasets.load_dataset(str(folder), "orr", split="validation")}
    evalset = load_eval_set(str(folder), "orr", "validation")
    tools = build_tools(demo["config"], demo["root"] / ".mmat-work" / "mmat-1m" / "operator-cache")
    compared = 0
    with OpenAICompatServer(default_fn=ScriptedTunedModel()) as server:
        with Agent(OpenAIChat(server.url, "tuned-orr"), tools, AgentSettings(format="orr")) as agent:
            for item in evalset.items:
                row = rows[item.id]
                dialogue = parse_row(row)
                if len(dialogue.questions) > 1:
                    continue  # its API outputs include the later questions' calls
                if row["source"] == "visual_cot":
                    continue  # the offline teacher ran its operators on the annotated box's crop (issue 19),
                    # which a question at inference does not come with
                # the operators the row's teacher called, in its order
                agent.settings.orr_operators = [name for name, _ in dialogue.questions[0].api_outputs]
                result = agent.run_sync(evalset.images(item), item.question)
                sent = server.payloads()[-1]["messages"]
                assert len(sent) == 1 and sent[0]["role"] == "user"
                expected = row["messages"][0]["content"]
                assert message_text(sent[0]) == expected[-1]["text"], item.id
                assert [p["type"] for p in sent[0]["content"]] == ["image_url"] * (len(expected) - 1) + ["text"]
                assert result.status == "answered" and result.turns == 1
                compared += 1
    assert compared >= 12  # the single-question, non-Visual-CoT validation rows the demo keeps (14 under require_grounding: auto)
    assert tools.operators.executions == 0  # every result came from generation's cache


def test_orr_runs_every_available_non_rag_operator_and_retries_once(repo_root):
    cfg = OperatorsConfig.model_validate({
        "ocr": {"backend": "rapidocr"}, "image_caption": {"backend": "template"},
        "face_detection": {"backend": "deepface"}, "label_bbox": {"backend": "off"},
        "rag": {"backend": "local", "corpus": str(repo_root / "samples/infoseek/corpus")},
    })
    tools = AgentTools(build_operators(cfg, None))
    question = "What does the sign say? Answer the question using a single word or phrase."
    image = png(render([((40, 60), "STOP")]))
    model = ScriptedTunedModel(answers={question: "STOP"}).queue("orr", "The answer is STOP.")
    with OpenAICompatServer(default_fn=model) as server:
        with Agent(OpenAIChat(server.url, "tuned-orr"), tools, AgentSettings(format="orr")) as agent:
            result = agent.run_sync([image], question)
        payloads = server.payloads()
    assert [o.operator for o in result.api_outputs] == ["image_caption", "ocr", "face_detection"]  # no rag
    assert {name: tools.operators.get(name).executions for name in tools.available} == {
        "image_caption": 1, "ocr": 1, "face_detection": 1, "rag": 0}
    assert result.status == "answered" and result.answer == "STOP" and result.thought
    assert message_text(payloads[0]["messages"][0]) == render_orr_question(
        question, [(o.operator, o.text) for o in result.api_outputs])
    assert payloads[1]["messages"][-1] == {"role": "user", "content": ORR_FORMAT_REMINDER}
    assert [c.parsed for c in result.calls] == [False, True]
