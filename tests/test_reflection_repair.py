"""A repair is verified (issue 29, point 1): hand-made dialogues through `generation.reflection`.

A scripted teacher (the `Teacher` protocol, no network) plays a model: its check and its repairs are
given per case. Cases: a repair that copies the step it replaces, one after which the check still
fires, a copy then a real repair (accepted on the second attempt), a math repair that copies the old
end, and the offline teacher on a staged guess (whatever it writes, no copy is kept). A rejected repair
is retried once, then the sample is quarantined with stage `reflection` and "reflection did not
repair: …"; every verdict is counted and reaches the run log.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable, Optional

import pytest

from generation import reflection
from generation.processor import quarantine_record
from generation.reflection import RepairRejected, leak_verdict, near_copy, run_reflection
from generation.schema import QA, Observation, Sample, Step, TeacherUsage
from generation.teachers.base import FinalAnswer, ReflectionVerdict, StepDecision, TeacherContext
from generation.teachers.offline import OfflineTeacher

APPLES = "Tom has 8 apples and eats 3 of them. How many apples are left?"
OCR_TEXT = "Apples left: 5"
GUESS = "I will read the note with ocr. Before looking, I would say the answer is 5."
OLD_END = 'The ocr result says "Apples left: 5". So the answer is 5.'
REAL_REPAIR = "Step 1 guessed before any tool ran. Reading the note instead: it gives 5 apples left, which is the count."


class ScriptedTeacher:
    """The Teacher protocol with scripted repairs (`repairs`, in order) and a scripted check: `check(ctx, kind)`
    returns a reason or None. Records the feedback each repair was asked with."""

    model_name = "scripted"
    mode = None
    caption_client = None
    stats = None

    def __init__(self, repairs: list[str], check: Callable[[TeacherContext, str], Optional[str]],
                 math_thought: Optional[str] = None) -> None:
        self.repairs = list(repairs)
        self.check = check
        self.math_thought = math_thought
        self.feedback: list[str] = []
        self.checked: list[list[str]] = []

    async def next_step(self, ctx: TeacherContext) -> StepDecision:
        assert ctx.reflection_feedback, "only repairs are asked in these tests"
        self.feedback.append(ctx.reflection_feedback)
        return StepDecision(thought=self.repairs.pop(0), next_action="final_answer")

    async def reflect(self, ctx: TeacherContext, kind):
        self.checked.append([s.thought for s in ctx.steps])
        reason = self.check(ctx, kind)
        if reason is None:
            return None, TeacherUsage()
        return ReflectionVerdict(kind=kind, reason=reason, thought=self.math_thought if kind == "math" else None), \
            TeacherUsage()

    async def final_answer(self, ctx):
        return FinalAnswer(answer=ctx.qa.answer)

    async def judge(self, trajectory, sample):
        return None

    async def preflight(self):
        return None

    async def aclose(self):
        return None


def rule_check(ctx: TeacherContext, kind: str) -> Optional[str]:
    """The offline teacher's general check: the shared leak rule."""
    verdict = leak_verdict(ctx) if kind == "general" else None
    return verdict.reason if verdict else None


def context(math: bool = False, steps: Optional[list[Step]] = None) -> TeacherContext:
    sample = Sample(id="repair/0", source="tabmwp", subset="test", meta={"math": math},
                    qas=[QA(question=APPLES, answer="5")])
    steps = steps if steps is not None else [
        Step(thought=GUESS, operators=["ocr"], observations=[Observation(operator="ocr", text=OCR_TEXT)]),
        Step(thought=OLD_END, signal="end")]
    return TeacherContext(sample=sample, qa_index=0, images=[], operators_available=["ocr"], steps=steps)


@pytest.fixture(autouse=True)
def fresh_counts():
    reflection.repair_counts.clear()
    yield


def test_near_copy_is_jaccard_of_normalised_words():
    assert near_copy(OLD_END, OLD_END.upper() + " ")
    assert near_copy("None of these results shows the answer, so I cannot confirm it.",
                     "None of these results shows the answer so I cannot confirm it")
    assert not near_copy(REAL_REPAIR, OLD_END)


def test_a_repair_that_copies_the_step_it_replaces_is_retried_then_quarantined(caplog):
    ctx = context()
    teacher = ScriptedTeacher([OLD_END, OLD_END + " "], rule_check)
    caplog.set_level(logging.INFO, logger="mmat.samples")
    with pytest.raises(RepairRejected) as raised:
        asyncio.run(run_reflection(ctx, teacher))
    record = quarantine_record(ctx.sample, raised.value)
    assert record.stage == "reflection" and record.error_type == "RepairRejected"
    assert record.message.startswith("reflection did not repair: ")
    assert "same as step 2" in record.message
    assert len(teacher.feedback) == 2 and "rejected" in teacher.feedback[1]
    assert dict(reflection.repair_counts) == {"rejected": 2, "quarantined": 1}
    verdicts = [r.data["repair"] for r in caplog.records if getattr(r, "data", None) and "repair" in r.data]
    assert verdicts == ["rejected", "rejected"]


def test_a_repair_after_which_the_check_still_fires_is_not_accepted():
    ctx = context()
    still = "The expected answer is 5, so I write 5."  # names a reference answer: the leak check fires again
    teacher = ScriptedTeacher([still, still.replace("write", "give")], rule_check)
    with pytest.raises(RepairRejected) as raised:
        asyncio.run(run_reflection(ctx, teacher))
    assert "still fires" in raised.value.reason
    assert reflection.repair_counts["rejected"] == 2


def test_a_copy_then_a_real_repair_is_accepted_on_the_second_attempt():
    ctx = context()
    teacher = ScriptedTeacher([OLD_END, REAL_REPAIR], rule_check)
    found, _ = asyncio.run(run_reflection(ctx, teacher))
    assert found is not None and found.kind == "general"
    assert [s.signal for s in ctx.steps] == ["continue", "continue", "reflection", "end"]
    assert ctx.steps[-1].thought == REAL_REPAIR
    assert "step 1" in ctx.steps[2].thought  # the reflection names the step it replaces
    assert dict(reflection.repair_counts) == {"rejected": 1, "accepted": 1}
    # the re-check ran on the final trajectory: no guess, no old end, no reflection; the tool call kept
    assert teacher.checked[-1] == ["", REAL_REPAIR]


def test_a_model_check_that_still_fires_on_the_final_trajectory_rejects_the_repair():
    """A model's own general check (not the rule) fires, fires again on the first repaired dialogue, and
    passes on the second: one rejected, one accepted, and each re-check saw the final trajectory."""
    verdicts = iter(["Step 1 states the answer before any tool ran.", "The repair still assumes the answer.", None])
    ctx = context()
    teacher = ScriptedTeacher([REAL_REPAIR, "The note reads 5 apples left, so 5 are left."],
                              lambda ctx, kind: next(verdicts) if kind == "general" else None)
    found, _ = asyncio.run(run_reflection(ctx, teacher))
    assert found is not None and found.reason.startswith("Step 1")
    assert dict(reflection.repair_counts) == {"rejected": 1, "accepted": 1}
    assert teacher.checked[1] == ["", REAL_REPAIR]
    assert teacher.checked[2] == ["", "The note reads 5 apples left, so 5 are left."]
    assert "still assumes" in teacher.feedback[1]


def test_a_math_repair_that_copies_the_old_end_is_retried():
    method_only = "Subtract to find how many are left."
    ctx = context(math=True, steps=[
        Step(thought="I will read the note with ocr.", operators=["ocr"],
             observations=[Observation(operator="ocr", text="Tom has 8 apples and eats 3.")]),
        Step(thought=method_only, signal="end")])

    def math_check(ctx, kind):
        if kind != "math":
            return None
        written = any("8 - 3 = 5" in s.thought for s in ctx.steps if s.signal != "reflection")
        return None if written else "Wait, the reasoning skips a calculation it needs: 8 - 3 = 5."

    teacher = ScriptedTeacher(["He had 8 and ate 3: 8 - 3 = 5 apples are left."], math_check,
                              math_thought=method_only + " ")
    found, _ = asyncio.run(run_reflection(ctx, teacher))
    assert found.kind == "math"
    assert ctx.steps[-1].thought.startswith("He had 8")
    assert dict(reflection.repair_counts) == {"rejected": 1, "accepted": 1}


def test_the_offline_teacher_never_keeps_a_copy_repair():
    """The offline teacher's repair of a staged guess: accepted only when it is no copy of what it
    replaces; otherwise retried, then quarantined (today's offline repair repeats the old end)."""
    sample = Sample(id="cauldron/test/0", source="cauldron", subset="st_vqa",
                    qas=[QA(question="What does the sign say? Answer the question using a single word or phrase.",
                            answer="STOP")])
    teacher = OfflineTeacher()
    steps = [Step(thought="The question asks: What does the sign say? I will read it with ocr. Before looking, I "
                          "would say the answer is STOP.", operators=["ocr"],
                  observations=[Observation(operator="ocr", text="STOP")])]
    ctx = TeacherContext(sample=sample, qa_index=0, images=[], operators_available=["ocr"], steps=steps)
    ctx.steps.append(Step(thought=asyncio.run(teacher.next_step(ctx)).thought, signal="end"))
    try:
        found, _ = asyncio.run(run_reflection(ctx, teacher))
    except RepairRejected as rejected:
        assert rejected.reason.startswith("reflection did not repair: ")
        assert reflection.repair_counts["quarantined"] == 1
        return
    assert found is not None and found.kind == "general"
    replaced = [ctx.steps[0].thought, ctx.steps[1].thought]
    assert not any(near_copy(ctx.steps[-1].thought, old) for old in replaced)
    assert reflection.repair_counts["accepted"] == 1


def test_a_repair_that_restates_the_old_end_with_a_preface_is_a_copy():
    """'<preface>. <the old end, word for word>': the replaced step is still said (in RR and in ORR)."""
    from generation.reflection import restates

    prefaced = "Leaving aside the answer named before the evidence, I work from what the tools returned. " + OLD_END
    assert not near_copy(prefaced, OLD_END) and restates(prefaced, OLD_END)
    assert not restates(REAL_REPAIR, OLD_END)
    ctx = context()
    teacher = ScriptedTeacher([prefaced, REAL_REPAIR], rule_check)
    asyncio.run(run_reflection(ctx, teacher))
    assert ctx.steps[-1].thought == REAL_REPAIR
    assert dict(reflection.repair_counts) == {"rejected": 1, "accepted": 1}


def test_the_model_teachers_copy_repair_over_http_is_quarantined(tmp_path, monkeypatch):
    """The real chat path (local OpenAI-compatible server, the `openai` client, the runner's per-sample
    path): the model's check fires, its repair twice repeats the step it replaces -> quarantined."""
    from tests.openai_server import OpenAICompatServer, ok
    from tests.test_teacher import KEY, plain_sample, process, step, teacher_config

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with OpenAICompatServer() as server:
        server.script("rationale_step", ok(step("The animal is a cat.", action="final_answer")),
                      ok(step("The animal is a cat.", action="final_answer")),
                      ok(step("The animal is a cat!", action="final_answer")))
        server.script("reflection_general", ok({"reason": "Step 1 names the animal without looking."}))
        server.script("final_answer", ok({"answer": "cat"}))
        rr, orr, record, _ = asyncio.run(process(plain_sample(), teacher_config(server), tmp_path))
        assert rr is None and orr is None
        assert record.stage == "reflection" and record.error_type == "RepairRejected"
        assert record.message.startswith("reflection did not repair: general reflection, 2 attempts; the repaired "
                                         "step is the same as step 1")
        assert server.count("rationale_step") == 3  # the first step and two repairs


def test_a_one_sentence_claim_said_again_with_its_source_is_a_repair():
    from generation.reflection import restates

    claim = "The tower is 330 metres tall."
    assert not restates("The retrieved passage says the Eiffel Tower is 330 metres tall including antennas.", claim)
    assert restates("Let me redo it. " + OLD_END, OLD_END)  # two sentences said again whole: a copy
