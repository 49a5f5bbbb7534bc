"""ORR is the compression of the final trajectory (issue 29, point 3), on hand-made dialogues.

A step a reflection replaced (the defective step it names, the old end the repair took over, the
reflection itself) never reaches ORR; no sentence repeats within an ORR turn; ORR passes the leak
definition the audit applies (`generation.quality.audit.row_quality` on the ORR row); RR keeps its
layout: the defect, the reflection and the repair, every step in order (DESIGN §5).
"""
from __future__ import annotations

import re

from generation.answers import normalise_answer
from generation.final_trajectory import final_steps, named_steps, replaced_steps
from generation.integration import build_rows, orr_leaks, orr_thoughts
from generation.quality.audit import row_quality
from generation.schema import QA, Observation, QATrajectory, Reflection, Sample, Step, Trajectory

APPLES = "Tom has 8 apples and eats 3 of them. How many apples are left?"
GUESS = "I will read the note with ocr. Before looking, I would say the answer is 5."
OLD_END = 'The ocr result says "Apples left: 5". So the answer is 5.'
REFLECTION = "Wait, step 1 states the answer '5' before any evidence supports it: I used the answer instead of deriving it."
REPAIR = "Step 1 guessed. The note reads 5 apples left, so 5 are left."


def ocr_step(thought: str, text: str = "Apples left: 5") -> Step:
    return Step(thought=thought, operators=["ocr"], observations=[Observation(operator="ocr", text=text)])


def rows_of(steps: list[Step], question: str = APPLES, answer: str = "5", source: str = "tabmwp") -> dict:
    reflected = next((s for s in steps if s.signal == "reflection"), None)
    reflection = Reflection(kind="general", reason=reflected.thought, origin="staged") if reflected else Reflection()
    qa = QATrajectory(question=question, reference_answer=answer, steps=steps, final_answer=answer,
                      reflection=reflection)
    sample = Sample(id=f"{source}/test/0", source=source, subset="test", qas=[QA(question=question, answer=answer)])
    return build_rows(sample, Trajectory(sample_id=sample.id, qas=[qa]), [])


def orr_text(rows: dict) -> str:
    reply = rows["orr"]["messages"][-1]["content"][0]["text"]
    return re.search(r"<THOUGHT>(.*)</THOUGHT>", reply, re.S).group(1)


def sentences(text: str) -> list[str]:
    return [normalise_answer(s) for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


STAGED = [ocr_step(GUESS), Step(thought=OLD_END, signal="continue"), Step(thought=REFLECTION, signal="reflection"),
          Step(thought=REPAIR, signal="end")]


def test_replaced_steps_are_the_reflection_the_old_end_and_the_named_step():
    column = [{"thought": s.thought, "signal": s.signal} for s in STAGED]
    assert named_steps(REFLECTION) == {1}
    assert replaced_steps(column) == {0, 1, 2}
    assert [s["thought"] for s in final_steps(column)] == [REPAIR]
    # questions are told apart by their end steps: a second question's "step 1" is its own
    two = column + [{"thought": "Step 1 of this one.", "signal": "continue"},
                    {"thought": "Step 1 was wrong.", "signal": "reflection"}, {"thought": "Fixed.", "signal": "end"}]
    assert replaced_steps(two) == {0, 1, 2, 4, 5}
    assert named_steps("steps 2 and 3 guess; the first step too") == {1, 2, 3}


def test_a_step_a_reflection_replaced_never_appears_in_orr():
    rows = rows_of(list(STAGED))
    thought = orr_text(rows)
    assert "Before looking" not in thought
    assert "So the answer is 5" not in thought and "Wait" not in thought
    assert thought == REPAIR
    # RR keeps the layout: the defect, the old end, the reflection and the repair, in order
    rr = [s["signal"] for s in rows["rr"]["steps"]]
    assert rr == ["continue", "continue", "reflection", "end"]
    rr_text = " ".join(b["text"] or "" for m in rows["rr"]["messages"] for b in m["content"])
    assert "Before looking" in rr_text and "<SIGNAL>reflection</SIGNAL>" in rr_text
    # the guess's tool result is still shown in ORR's API outputs
    assert "Apples left: 5" in rows["orr"]["messages"][0]["content"][-1]["text"]


def test_no_sentence_repeats_within_an_orr_turn():
    quote = 'The ocr result says "Apples left: 5".'
    steps = [ocr_step("I will read the note with ocr."), Step(thought=quote + " I will check the count again."),
             Step(thought=quote + " So 5 apples are left.", signal="end")]
    thought = orr_text(rows_of(steps))
    assert len(sentences(thought)) == len(set(sentences(thought)))
    assert thought.count(quote) == 1 and thought.endswith("So 5 apples are left.")


def test_a_math_repair_after_the_old_end_keeps_orr_free_of_the_skipped_step():
    steps = [ocr_step("I will read the note with ocr.", "Tom had 8 apples and ate 3."),
             Step(thought="Subtract to find how many are left.", signal="continue"),
             Step(thought="Wait, the reasoning skips a calculation: 8 - 3 = 5.", signal="reflection"),
             Step(thought="He had 8 and ate 3, so 8 - 3 = 5 apples are left.", signal="end")]
    thought = orr_text(rows_of(steps))
    assert "Subtract to find" not in thought and thought.endswith("8 - 3 = 5 apples are left.")


def test_orr_passes_the_leak_definition_the_audit_applies_to_rr():
    """The passage a sentence drew on is RAG, which ORR does not show: the sentence that quotes it goes,
    and so does the conclusion it supported; the audit reads the ORR row as not leaked, like the RR row."""
    question = "Which company manufactures this rocket? Answer the question using a single word or phrase."
    passage = ("[1] Falcon 9 is a partially reusable two-stage medium-lift launch vehicle designed and manufactured "
               "in the United States by SpaceX.")
    steps = [Step(thought="I will describe the image and search for the rocket.", operators=["image_caption"],
                  rag_query="rocket manufacturer",
                  observations=[Observation(operator="image_caption", text="A rocket on a launch pad."),
                                Observation(operator="rag", text=passage)]),
             Step(thought='The retrieved passage says "Falcon 9 is a partially reusable two-stage medium-lift launch '
                          'vehicle designed and manufactured in the United States by SpaceX". So the answer is SpaceX.',
                  signal="end")]
    rows = rows_of(steps, question=question, answer="SpaceX", source="infoseek")
    assert not row_quality(rows["rr"]).leaked
    assert not row_quality(rows["orr"]).leaked
    assert "SpaceX" not in orr_text(rows)


def test_orr_of_a_staged_guess_passes_the_audit_where_the_old_orr_leaked():
    """A guess the evidence never supports ('E' for a RAVEN panel): the old ORR kept it and leaked."""
    question = "Which figure should complete the logical sequence?\nA. 1\nB. 2\nC. 3\nD. 4\nE. 5"
    guess = "I will describe the image. Before looking, I would say the answer is E (5)."
    describe = "None of these results shows which option is right, so I cannot confirm it from the tool evidence."
    steps = [Step(thought=guess, operators=["image_caption"],
                  observations=[Observation(operator="image_caption", text="A grey drawing of shapes.")]),
             Step(thought=describe, signal="continue"),
             Step(thought="Wait, step 1 states the answer 'E' before any evidence supports it.", signal="reflection"),
             Step(thought="Step 1 guessed E; the caption shows only grey shapes, which do not settle the option.",
                  signal="end")]
    rows = rows_of(steps, question=question, answer="E", source="cauldron")
    assert not row_quality(rows["orr"]).leaked and not row_quality(rows["rr"]).leaked
    trajectory_thoughts = orr_thoughts(Trajectory(sample_id="x", qas=[QATrajectory(
        question=question, reference_answer="E", steps=steps, final_answer="E")]))
    assert orr_leaks(Trajectory(sample_id="x", qas=[QATrajectory(question=question, reference_answer="E",
                                                                 steps=steps, final_answer="E")]),
                     trajectory_thoughts) == []
    assert "Before looking" not in trajectory_thoughts[0]


def test_a_question_whose_rr_leaks_keeps_its_orr_sentences():
    """A model's visual reading ("The sign is red.") is no evidence the definition sees: RR leaks, and ORR
    shows the same reasoning rather than an empty thought (the audit counts it in both)."""
    steps = [Step(thought="I will describe the image.", operators=["image_caption"],
                  observations=[Observation(operator="image_caption", text="A street corner.")]),
             Step(thought="The sign is red.", signal="end")]
    rows = rows_of(steps, question="What colour is the sign?", answer="red", source="cauldron")
    assert row_quality(rows["rr"]).leaked and row_quality(rows["orr"]).leaked
    assert orr_text(rows) == "I will describe the image. The sign is red."


def test_a_source_rationale_quote_in_orr_is_read_as_the_declared_quote():
    from generation.quality.definitions import orr_views
    from generation.quality.evidence_kinds import SOURCE_RATIONALE_LEAD

    marked = f"{SOURCE_RATIONALE_LEAD} the object is a rocket, so the answer is rocket."
    steps = [Step(thought="I will describe the image.", operators=["image_caption"],
                  observations=[Observation(operator="image_caption", text="A tall white shape.")]),
             Step(thought="The caption does not show it, so I will use the source's own rationale.", signal="continue"),
             Step(thought=marked, signal="end")]
    rows = rows_of(steps, question="What is this?", answer="rocket", source="llava_cot")
    assert orr_text(rows).endswith(marked)
    views = orr_views(orr_text(rows), [("image_caption", "A tall white shape.")])
    assert [v.thought for v in views][-1] == marked and len(views) == 3
    assert orr_views("no marker here") == (orr_views("no marker here")[0],)
