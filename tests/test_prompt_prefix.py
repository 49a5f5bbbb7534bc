"""Issue 31, point 1: a sample's teacher calls are one conversation that only grows, so a provider's
prompt cache reuses it: one system text and one response schema for every task, then the images, the
question, the steps in order, and the task text last. The teacher sees everything the old per-task
prompts showed it (tests/fixtures/prompts_before/ holds those templates), and the offline teacher never
reads a prompt."""
from __future__ import annotations

import asyncio
import json

import jinja2
import pytest

from generation.config import PriceTable, TeacherConfig
from generation.rationale import RationaleSettings, generate_trajectory
from generation.schema import QA, ImageRef, Observation, QATrajectory, Sample, Step
from generation.teachers.factory import make_teacher
from generation.teachers.openai_teacher import OpenAITeacher
from generation.teachers.prompts import TEACHER_TASKS, TOOL_DESCRIPTIONS, _environment, render_turns
from operators.config import OperatorsConfig
from operators.images import LoadedImage
from operators.registry import build_operators
from tests.dataset_factory import png_bytes
from tests.openai_server import OpenAICompatServer, default_reply, ok
from tests.runner_support import REPO

BEFORE = REPO / "tests" / "fixtures" / "prompts_before"
KEY = "sk-test-prefix-0123456789"


def _step(thought, operators=(), action="continue"):
    return {"thought": thought, "operators": list(operators), "labels": [], "rag": {"needed": False, "query": None},
            "next_action": action}


def _sample() -> Sample:
    return Sample(id="tabmwp/tabmwp/9", source="tabmwp", subset="tabmwp", images=[ImageRef(data=png_bytes(4))],
                  meta={"math": True},
                  qas=[QA(question="Each box holds 12 pencils. How many pencils are in 3 boxes?", answer="36",
                          source_rationale="12 x 3 = 36"),
                       QA(question="How many pencils are in 5 boxes?", answer="60")])


def _parts(payload: dict) -> list[str]:
    """The request as the cache sees it, one string per part: schema, then every message's parts."""
    out = [json.dumps(payload.get("response_format"), sort_keys=True)]
    for message in payload["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        out += [f"{message['role']}:{json.dumps(block, sort_keys=True)}" for block in blocks]
    return out


@pytest.fixture(scope="module")
def conversation():
    """Every request of a two-question math sample: step 1 calls image_caption (the VLM operator, through
    the teacher's client), step 2 continues, step 3 answers, both checks, the final answer."""
    def teacher(task, payload):
        if task == "rationale_step":
            n = sum(1 for b in payload["messages"][1]["content"] if b.get("text", "").startswith("Step "))
            return ok(_step(["I need a description of the boxes.", "Each box holds 12 pencils, 3 boxes.",
                             "So 12 x 3 = 36 pencils."][min(n, 2)],
                            ["image_caption"] if n == 0 else [], "final_answer" if n >= 2 else "continue"))
        return default_reply(task, payload)

    with OpenAICompatServer(default_fn=teacher) as server:
        cfg = TeacherConfig(kind="openai", model="gpt-4o", base_url=server.url, max_retries=0,
                            prices=PriceTable(prompt_per_1m=2.5, completion_per_1m=10.0))

        async def run():
            teacher = OpenAITeacher(cfg, api_key=KEY, base_url=server.url)
            off = {"backend": "off"}
            ops = build_operators(OperatorsConfig.model_validate(
                {"ocr": off, "face_detection": off, "label_bbox": off, "image_caption": {"backend": "vlm"},
                 "rag": off}), None, caption_client=teacher.caption_client)
            sample = _sample()
            images = [LoadedImage(ref.read_bytes()) for ref in sample.images]
            try:
                return await generate_trajectory(sample, images, teacher, ops, RationaleSettings(max_steps=5))
            finally:
                await teacher.aclose()

        trajectory = asyncio.run(run())
        return trajectory, [(r["task"], r["payload"]) for r in server.requests]


def _by_question(requests):
    """The requests split at each question's first rationale step."""
    questions, current = [], []
    for task, payload in requests:
        first_step = task == "rationale_step" and not any(
            b.get("text", "").startswith("Step ") for b in payload["messages"][1]["content"])
        if first_step and current:
            questions.append(current)
            current = []
        current.append((task, payload))
    return questions + [current]


def test_each_call_extends_the_previous_one_and_ends_with_its_task(conversation):
    trajectory, requests = conversation
    assert len(trajectory.qas) == 2 and len(trajectory.qas[0].steps) >= 3
    tasks = [task for task, _ in requests]
    assert {"rationale_step", "caption", "reflection_general", "reflection_math", "final_answer"} <= set(tasks)
    questions = _by_question(requests)
    assert len(questions) == 2
    for calls in questions:
        for (task, payload), (next_task, following) in zip(calls, calls[1:]):
            before, after = _parts(payload), _parts(following)
            # the earlier call, less its task text, is where the later one starts: a cacheable prefix
            assert after[:len(before) - 1] == before[:-1], (task, next_task)
            assert len(after) >= len(before)
        for task, payload in calls:
            last = payload["messages"][-1]["content"][-1]["text"]
            assert last.startswith(f"Task: {task}\n"), (task, last[:40])
    # one system text and one schema for every call; the images come right after the system text
    first = requests[0][1]
    for _, payload in requests:
        assert payload["messages"][0] == first["messages"][0]
        assert payload["response_format"] == first["response_format"]
        assert payload["messages"][1]["content"][0] == first["messages"][1]["content"][0]
        assert payload["messages"][1]["content"][0]["type"] == "image_url"


def test_the_second_question_reuses_the_first_questions_prefix(conversation):
    _, requests = conversation
    first, second = (calls[0][1] for calls in _by_question(requests))
    shared = 0
    for a, b in zip(_parts(first), _parts(second)):
        if a != b:
            break
        shared += 1
    assert shared >= 3  # schema, system text, image: the part that is over 1,024 tokens


def _old(task: str, variables: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(BEFORE)), undefined=jinja2.StrictUndefined)
    env.filters["clip"] = _environment().filters["clip"]
    text = env.get_template(f"{task}.j2").render(**variables)
    return text.replace("[system]", "").replace("[user]", "")


# Lines of the old prompts the new layout words differently, and the line that says it now.
REWORDED = {
    "Reasoning:": "Steps so far:",
    "- Call a tool only when its result is needed and not known yet; use only the tools listed above. For "
    "label_bbox, put the names of the objects to find in \"labels\".":
        "- Call a tool only when its result is needed and not known yet; use only the tools listed for the question. "
        "For label_bbox, put the names of the objects to find in \"labels\".",
    "- Set \"rag\" to {\"needed\": true, \"query\": \"<short search query>\"} only when the answer needs knowledge the "
    "image cannot show; otherwise {\"needed\": false, \"query\": null}.":
        "- Set \"rag\" to {\"needed\": true, \"query\": \"<short search query>\"} only when the answer needs knowledge "
        "the image cannot show and rag is listed; otherwise {\"needed\": false, \"query\": null}.",
}


@pytest.mark.parametrize("task", TEACHER_TASKS)
@pytest.mark.parametrize("feedback", [None, "Step 2 guesses the count."])
def test_a_model_teacher_sees_every_line_the_old_prompts_showed_it(task, feedback):
    steps = [Step(thought="Read the table.", operators=["ocr"], observations=[Observation(operator="ocr", text="A" * 5000)]),
             Step(thought="Wait, step 1 skipped a number.", signal="reflection"),
             Step(thought="12 x 3 = 36.", signal="end")]
    variables = dict(question="How many pencils?", choices=["36", "40"], answer="36", source_rationale="12 x 3 = 36",
                     steps=steps, previous=[QATrajectory(question="Q0", reference_answer="r",
                                                         steps=[Step(thought="t0")], final_answer="a0")],
                     operators=["ocr", "image_caption"], rag=True, tool_descriptions=TOOL_DESCRIPTIONS,
                     feedback=feedback)
    old_lines = [line.strip() for line in _old(task, variables).splitlines() if line.strip()]
    turns = render_turns(task, **variables)
    new_text = "\n".join([turns.system, *turns.user_texts()])
    new_lines = {line.strip() for line in new_text.splitlines()}
    missing = [line for line in old_lines if line not in new_lines and REWORDED.get(line) not in new_lines]
    assert missing == []
    # the final answer is still never shown the standard answer; the others still are
    assert ("36" in turns.task) == (task != "final_answer")


def test_every_teacher_task_and_the_judge_render_from_the_templates_the_card_hashes():
    from generation.config_snapshot import prompt_hashes

    hashes = prompt_hashes()
    for name in ("teacher_system.j2", "teacher_context.j2", "teacher_step.j2", "judge.j2", "_dialogue.j2",
                 *(f"task_{task}.j2" for task in TEACHER_TASKS)):
        assert name in hashes, name
    assert "rationale_step.j2" not in hashes  # the per-task prompts are gone, so the hashes show the change


def test_the_offline_teacher_reads_no_prompt(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the offline teacher rendered a model prompt")

    monkeypatch.setattr("generation.teachers.prompts.render_turns", refuse)
    monkeypatch.setattr("generation.teachers.openai_teacher.render_turns", refuse)
    teacher = make_teacher(TeacherConfig(kind="offline"))
    sample = _sample()
    images = [LoadedImage(ref.read_bytes()) for ref in sample.images]
    off = {"backend": "off"}
    ops = build_operators(OperatorsConfig.model_validate(
        {"ocr": off, "face_detection": off, "label_bbox": off, "image_caption": {"backend": "template"}, "rag": off}),
        None)
    trajectory = asyncio.run(generate_trajectory(sample, images, teacher, ops, RationaleSettings(max_steps=5)))
    assert len(trajectory.qas) == 2 and trajectory.usage.cached_tokens == 0 and trajectory.usage.cost_usd == 0.0
