"""RR and ORR layouts pinned by golden strings (DESIGN §5) and the row schema (DESIGN §6)."""
from __future__ import annotations

import pytest

from generation.integration import build_rows, orr_messages, render_step, rr_messages, rr_system_prompt
from generation.schema import QA, Observation, QATrajectory, Reflection, Sample, Step, TeacherUsage, Trajectory
from mmat_1m import FEATURES


def _trajectory() -> Trajectory:
    q1 = QATrajectory(
        question="What does the sign say? Answer the question using a single word or phrase.",
        reference_answer="STOP",
        steps=[
            Step(thought="I need to read the sign.", operators=["ocr"], rag_query=None, signal="continue",
                 observations=[Observation(operator="ocr", text="STOP", backend="paddle")]),
            Step(thought="Who made signs like this?", operators=[], rag_query="octagonal stop sign history",
                 signal="continue", observations=[Observation(operator="rag", text="[1] Stop sign: red octagon.")]),
            Step(thought="Nothing else is needed.", signal="continue"),
            Step(thought="I used the answer before reading.", signal="reflection"),
            Step(thought="The OCR result reads STOP.", signal="end"),
        ],
        final_answer="STOP",
        reflection=Reflection(kind="general", reason="I used the answer before reading."),
        verified=True,
    )
    q2 = QATrajectory(
        question="What colour is it?",
        reference_answer="red",
        steps=[Step(thought="Stop signs are red.", signal="end")],
        final_answer="red",
        verified=True,
    )
    return Trajectory(sample_id="cauldron/st_vqa/1", qas=[q1, q2],
                      usage=TeacherUsage(model="m", prompt_tokens=10, completion_tokens=5, latency_s=0.5, cost_usd=0.01),
                      operators_available=["ocr", "rag"])


def test_render_step_omits_unused_tags():
    assert render_step(Step(thought="t", signal="end")) == "<THOUGHT>t</THOUGHT><SIGNAL>end</SIGNAL>"
    assert render_step(Step(thought="t", operators=["ocr", "face_detection"], rag_query="q", signal="continue")) == (
        "<THOUGHT>t</THOUGHT><OPERATOR>ocr, face_detection</OPERATOR><RAG>q</RAG><SIGNAL>continue</SIGNAL>"
    )


def _texts(messages):
    return [(m["role"], [b["text"] for b in m["content"]]) for m in messages]


def test_rr_golden_layout():
    got = _texts(rr_messages(_trajectory(), n_images=2))
    q1 = "What does the sign say? Answer the question using a single word or phrase."
    assert got == [
        ("system", [rr_system_prompt()]),
        ("user", [None, None, f"{q1} Please start your reasoning."]),
        ("assistant", ["<THOUGHT>I need to read the sign.</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>"]),
        ("user", ["Here are ocr results from the previous step:-ocr information: STOP Please continue your reasoning."]),
        ("assistant", ["<THOUGHT>Who made signs like this?</THOUGHT><RAG>octagonal stop sign history</RAG>"
                       "<SIGNAL>continue</SIGNAL>"]),
        ("user", ["Here are rag results from the previous step:-rag information: [1] Stop sign: red octagon. "
                  "Please continue your reasoning."]),
        ("assistant", ["<THOUGHT>Nothing else is needed.</THOUGHT><SIGNAL>continue</SIGNAL>"]),
        ("user", ["No additional operator or rag results were selected in the previous step. "
                  "Please continue your reasoning."]),
        ("assistant", ["<THOUGHT>I used the answer before reading.</THOUGHT><SIGNAL>reflection</SIGNAL>"]),
        ("user", ["No additional operator or rag results were selected in the previous step. "
                  "Please make a reflection."]),
        ("assistant", ["<THOUGHT>The OCR result reads STOP.</THOUGHT><SIGNAL>end</SIGNAL>"]),
        ("user", [f"Based on the above information, please summarize and give the answer to the initial question: {q1}"]),
        ("assistant", ["STOP"]),
        ("user", ["What colour is it? Please start your reasoning."]),
        ("assistant", ["<THOUGHT>Stop signs are red.</THOUGHT><SIGNAL>end</SIGNAL>"]),
        ("user", ["Based on the above information, please summarize and give the answer to the initial question: "
                  "What colour is it?"]),
        ("assistant", ["red"]),
    ]


def test_orr_golden_layout_has_no_rag_and_api_outputs_only_first():
    got = _texts(orr_messages(_trajectory(), n_images=1))
    assert got == [
        ("user", [None, "What does the sign say? Answer the question using a single word or phrase.\n"
                        "Use the following API outputs to help answer the question:\n"
                        "<|begin_api_invoke|>ocr<|end_api_invoke|><|begin_result_of_api|>STOP<|end_result_of_api|>"]),
        # "Nothing else is needed." ended the reasoning before the reflection; the repair replaced it (issue 29)
        ("assistant", ["<THOUGHT>I need to read the sign. Who made signs like this? "
                       "The OCR result reads STOP.</THOUGHT><ANSWER>The answer is: STOP</ANSWER>"]),
        ("user", ["What colour is it?"]),
        # "Stop signs are red." rests on the RAG passage, which ORR does not show: a leak there, left out
        ("assistant", ["<THOUGHT></THOUGHT><ANSWER>The answer is: red</ANSWER>"]),
    ]


def test_orr_without_operator_calls_is_just_the_question():
    traj = Trajectory(sample_id="x", qas=[QATrajectory(question="Q?", reference_answer="a", final_answer="a",
                                                      steps=[Step(thought="T.", signal="end")])])
    assert _texts(orr_messages(traj, n_images=0)) == [
        ("user", ["Q?"]), ("assistant", ["<THOUGHT>T.</THOUGHT><ANSWER>The answer is: a</ANSWER>"])]


def test_build_rows_match_features_and_block_form():
    sample = Sample(id="cauldron/st_vqa/1", source="cauldron", subset="st_vqa",
                    qas=[QA(question="q1", answer="STOP"), QA(question="q2", answer="red")])
    rows = build_rows(sample, _trajectory(), [b"img-a", b"img-b"])
    assert set(rows) == {"rr", "orr"}
    for fmt, row in rows.items():
        assert row["format"] == fmt
        assert set(row) == set(FEATURES)
        FEATURES.encode_example(row)  # raises on any schema mismatch
        for msg in row["messages"]:
            assert isinstance(msg["content"], list)
            assert all(block["type"] in ("text", "image") for block in msg["content"])
        first_user = next(m for m in row["messages"] if m["role"] == "user")
        assert [b["type"] for b in first_user["content"]] == ["image", "image", "text"]
        assert sum(b["type"] == "image" for m in row["messages"] for b in m["content"]) == 2
    rr = rows["rr"]
    assert [s["signal"] for s in rr["steps"]] == ["continue", "continue", "continue", "reflection", "end", "end"]
    assert rr["reflection"] == {"kind": "general", "reason": "I used the answer before reading.", "origin": None}
    assert rr["teacher"]["prompt_tokens"] == 10 and rr["teacher"]["cost_usd"] == pytest.approx(0.01)
    assert rr["meta"] == {"operators_available": ["ocr", "rag"], "verified": True, "judge_score": None,
                          "teacher_mode": None, "dropped_qas": 0, "grounded": None, "math_questions": 0,
                          "evidence": "tool"}  # the OCR shows "STOP"
    # each result records the backend that produced it (the dialogue text does not depend on it)
    assert rr["steps"][0]["observations"] == [{"operator": "ocr", "text": "STOP", "backend": "paddle"}]
