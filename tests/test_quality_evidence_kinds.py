"""Evidence kinds (issue 29 points 5 and 6) on hand-made dialogues: an answer grounded by a tool, by the
source's own rationale (a thought marked with `SOURCE_RATIONALE_LEAD`), or by nothing; a reasoning that
admits it could not confirm the answer; and `teacher.require_grounding` (`auto`: on for the offline
teacher, off for a model teacher) quarantining what no evidence supports."""
from __future__ import annotations

import pytest

from generation.config import TeacherConfig
from generation.quality.evidence_judgement import question_evidence, row_kind, trajectory_evidence
from generation.quality.evidence_kinds import SOURCE_RATIONALE_LEAD, admits_no_evidence, is_source_rationale, rationale_text
from generation.schema import QA, Observation, QATrajectory, Quarantined, Sample, Step, Trajectory
from generation.verify import GROUNDING_REASON, enforce_policy, requires_grounding

QUESTION = "What is the capital of Alaska? Answer the question using a single word or phrase."


def _qa(steps: list[Step], answer: str = "Juneau", question: str = QUESTION, grounded=None) -> QATrajectory:
    return QATrajectory(question=question, reference_answer=answer, steps=steps, final_answer=answer,
                        verified=True, grounded=grounded)


def _kinds(*qas: QATrajectory) -> list[str]:
    return [q.kind for q in question_evidence([(qa.question, qa.steps, qa.final_answer, None) for qa in qas])]


TOOL = [Step(thought="I will look the state up.", rag_query="Alaska capital", signal="continue",
             observations=[Observation(operator="rag", text="[1] Juneau is the capital city of Alaska.")]),
        Step(thought="The passage names the capital.", signal="end")]
RATIONALE = [Step(thought=f"{SOURCE_RATIONALE_LEAD} Alaska's capital is Juneau, in the state's panhandle.",
                  signal="end")]
UNMARKED = [Step(thought="Alaska's capital is Juneau, in the state's panhandle.", signal="end")]
NOTHING = [Step(thought="I will read the map.", operators=["ocr"], signal="continue",
                observations=[Observation(operator="ocr", text="ALASKA 1959")]),
           Step(thought="None of these results shows the answer, so I cannot confirm it.", signal="end")]


def test_the_marker_is_one_sentence_the_row_shows():
    assert SOURCE_RATIONALE_LEAD.endswith(":") and is_source_rationale(RATIONALE[0].thought)
    assert rationale_text(RATIONALE[0].thought).startswith("Alaska's capital")
    assert not is_source_rationale(UNMARKED[0].thought) and rationale_text(UNMARKED[0].thought) == ""


def test_tool_rationale_and_nothing_are_told_apart():
    assert _kinds(_qa(TOOL)) == ["tool"]
    assert _kinds(_qa(RATIONALE)) == ["source_rationale"]
    assert _kinds(_qa(UNMARKED)) == ["none"]  # the same words, not said to come from the source
    assert _kinds(_qa(NOTHING)) == ["none"]


def test_a_rationale_that_does_not_state_the_answer_grounds_nothing():
    other = [Step(thought=f"{SOURCE_RATIONALE_LEAD} The map shows the state's largest cities.", signal="end")]
    assert _kinds(_qa(other)) == ["none"]


def test_tool_evidence_wins_over_a_rationale_that_says_the_same():
    assert _kinds(_qa(TOOL + RATIONALE)) == ["tool"]


def test_a_later_question_sees_the_earlier_questions_rationale():
    second = _qa([Step(thought="As before.", signal="end")], question="Which city is the capital?")
    assert _kinds(_qa(RATIONALE), second) == ["source_rationale", "source_rationale"]


def test_a_dialogue_has_its_weakest_questions_kind():
    assert row_kind(["tool", "source_rationale"]) == "source_rationale"
    assert row_kind(["tool", "none", "source_rationale"]) == "none"
    assert row_kind(["tool"]) == "tool" and row_kind([]) is None


@pytest.mark.parametrize("thought", [
    "None of these results shows the answer, so I cannot confirm it.",
    "I am unable to verify the species from the caption.",
    "The OCR text could not confirm the price.",
    "No tool result supports a particular option.",
])
def test_a_thought_that_admits_no_evidence_is_recognised(thought):
    assert admits_no_evidence(thought)


@pytest.mark.parametrize("thought", [
    "The OCR result confirms the price is $4.",
    "The caption names a heron, which answers the question.",
    "I will check the table to confirm the total.",
])
def test_a_thought_that_reasons_from_evidence_is_no_admission(thought):
    assert not admits_no_evidence(thought)


# ------------------------------------------------------------------------------ require_grounding
def _sample(answer: str = "Juneau") -> Sample:
    return Sample(id="llava_cot/sqa/1", source="llava_cot", subset="sqa", qas=[QA(question=QUESTION, answer=answer)])


def _trajectory(steps: list[Step], grounded: bool) -> Trajectory:
    return Trajectory(sample_id="llava_cot/sqa/1", qas=[_qa(steps, grounded=grounded)])


def test_require_grounding_auto_is_on_for_the_offline_teacher_only():
    assert TeacherConfig().require_grounding == "auto"
    assert requires_grounding(TeacherConfig()) is True  # kind: offline
    assert requires_grounding(TeacherConfig(kind="openai")) is False
    assert requires_grounding(TeacherConfig(kind="openai", require_grounding=True)) is True
    assert requires_grounding(TeacherConfig(require_grounding=False)) is False


def test_the_offline_teacher_quarantines_an_answer_no_tool_supports_by_default():
    with pytest.raises(Quarantined) as caught:
        enforce_policy(_trajectory(NOTHING, grounded=False), _sample(), TeacherConfig())
    assert GROUNDING_REASON in str(caught.value) and caught.value.stage == "verification"


def test_an_answer_grounded_by_the_sources_rationale_is_kept():
    enforce_policy(_trajectory(RATIONALE, grounded=False), _sample(), TeacherConfig())
    with pytest.raises(Quarantined):
        enforce_policy(_trajectory(UNMARKED, grounded=False), _sample(), TeacherConfig())


def test_a_model_teacher_keeps_admit_then_answer_by_default_and_quarantines_it_when_required():
    # a model's visual reading is evidence the audit cannot see: its row is grounded by the yes/no proxy
    # here, but its own last thought says it could not confirm the answer
    steps = [Step(thought="I looked at the bird in the picture.", signal="continue"),
             Step(thought="I cannot confirm the species from what I see.", signal="end")]
    trajectory = _trajectory(steps, grounded=True)
    enforce_policy(trajectory, _sample(), TeacherConfig(kind="openai"))  # auto: off for a model teacher
    with pytest.raises(Quarantined) as caught:
        enforce_policy(trajectory, _sample(), TeacherConfig(kind="openai", require_grounding=True))
    assert "could not confirm" in str(caught.value)


def test_trajectory_evidence_reads_the_engines_trajectory():
    kinds = trajectory_evidence(_trajectory(NOTHING, grounded=False), _sample())
    assert [k.kind for k in kinds] == ["none"] and kinds[0].admits_no_evidence
