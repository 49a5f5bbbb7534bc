"""No answer without a derivation (issue 29, points 4 and 6): hand-made samples through the real rationale loop
and real operators (OCR on drawn tables, the template caption), each a defect today's teacher had:

- an OCR misread cited as the clean value without a word: the thought must quote the OCR, then say what it
  takes it to mean ('"$2/1b", i.e. $2/lb');
- an underived math answer: a value the OCR does not show was cited from the source's table, and the last
  thought stopped at "Subtract to find the difference." before an answer that appears nowhere;
- admit, then answer: "None of these results shows the answer, so I cannot confirm it" and a confident answer
  all the same, where the source ships a rationale that does show it (LLaVA-CoT).
"""
from __future__ import annotations

import re

import pytest

from tests.offline_teacher_measure import admits, evidence_kind, underived
from tests.test_offline_teacher_grounding import drawn_table, operators, reason, sample


def _kind(qa) -> str:
    return evidence_kind(qa.question, qa.steps, qa.final_answer)[0]


def _policy(qa_sample, trajectory):
    from generation.config import TeacherConfig
    from generation.verify import enforce_policy

    enforce_policy(trajectory, qa_sample, TeacherConfig())  # require_grounding: auto (on for this teacher)


@pytest.mark.slow
def test_an_ocr_misread_is_quoted_then_read_as_the_value_it_stands_for():
    ops = operators(ocr="rapidocr")
    # The image shows what an OCR misreads in TabMWP's real images ("$2/1b"); the source's table says "$2/lb".
    image = drawn_table("Bulk foods", ["Item", "Price"], [["rye", "$2/1b"], ["oats", "$3/kg"]])
    meta = {"table_for_pd": {"Item": ["rye", "oats"], "Price": ["$2/lb", "$3/kg"]}, "table_title": "Bulk foods"}
    solution = "Find the cost of the rye. Multiply the price per pound by the number of pounds.\n$2 × 3 = $6\nKim spends $6."
    rye = sample("tabmwp", "free_text", [{"question": "Kim buys 3 pounds of rye. How much does Kim spend?",
                                          "answer": "6", "source_rationale": solution}], **meta)
    qa = reason(rye, image, ops).qas[0]
    last = qa.steps[-1].thought
    assert 'rye: "$2/1b", i.e. $2/lb' in last, last
    assert "$2 × 3 = $6" in last and last.endswith("So the answer is 6.")
    assert qa.grounded and _kind(qa) == "tool"


@pytest.mark.slow
def test_a_value_no_tool_returned_is_never_cited_as_the_tools_and_the_answer_is_derived_or_quoted():
    ops = operators(ocr="rapidocr")
    # Raj's cell is blank in the image: no tool returns 12, which the source's table and solution hold.
    image = drawn_table("Books", ["Name", "Number of books"], [["Ann", "54"], ["Raj", ""], ["Lena", "63"]])
    meta = {"table_for_pd": {"Name": ["Ann", "Raj", "Lena"], "Number of books": ["54", "12", "63"]},
            "table_title": "Books"}
    solution = ("Find the numbers in the table.\nAnn: 54\nRaj: 12\nSubtract to find the difference.\n54 - 12 = 42\n"
                "Ann had 42 more books than Raj.")
    books = sample("tabmwp", "free_text", [{"question": "How many more books did Ann have than Raj?", "answer": "42",
                                            "source_rationale": solution}], **meta)
    trajectory = reason(books, image, ops)
    qa = trajectory.qas[0]
    thoughts = [s.thought for s in qa.steps]
    assert not underived(qa.question, qa.steps, qa.final_answer), thoughts
    assert not admits(qa.steps), thoughts
    from generation.quality.evidence_kinds import is_source_rationale, rationale_text

    marked = [t for t in thoughts if is_source_rationale(t)]
    assert marked and rationale_text(marked[-1]) == " ".join(solution.split()), thoughts  # the source's, unchanged
    for thought in thoughts:
        if is_source_rationale(thought):
            continue
        # 12 appears only where a step says it is the source's (the bridge), never as the OCR's value
        for match in re.finditer(r"\b12\b", thought):
            assert "source's solution uses" in thought[:match.start()], thought
    # supported (the audit may also count the quoted "54 - 12 = 42" as arithmetic: 12 is one of its constants)
    assert _kind(qa) in ("source_rationale", "tool")
    _policy(books, trajectory)  # kept: its answer rests on the source's rationale, said to be that


@pytest.mark.slow
def test_no_confident_answer_after_admitting_the_tools_do_not_show_it():
    from generation.schema import Quarantined

    ops = operators(image_caption="template")
    image = drawn_table("", ["x"], [["y"]])  # the template caption tells size and colours, not the capital
    question = "What is the capital of Alaska?\nContext: N/A\nOptions: (A) Juneau (B) Anchorage (C) Fairbanks"
    llava = sample("llava_cot", "sqa", [{
        "question": question, "answer": "A", "choices": ["Juneau", "Anchorage", "Fairbanks"],
        "source_rationale": "Juneau is the capital of Alaska; Anchorage is its largest city.",
        "meta": {"caption": "A map of Alaska with its cities marked.", "conclusion": "The answer is A."}}])
    trajectory = reason(llava, image, ops)
    qa = trajectory.qas[0]
    thoughts = [s.thought for s in qa.steps]
    assert not admits(qa.steps), thoughts  # today: "... so I cannot confirm it" and the answer all the same
    assert thoughts[-1] == ("The source's own rationale says: Caption: A map of Alaska with its cities marked. "
                            "Reasoning: Juneau is the capital of Alaska; Anchorage is its largest city. "
                            "Conclusion: The answer is A.")
    assert _kind(qa) == "source_rationale" and not underived(qa.question, qa.steps, qa.final_answer)
    _policy(llava, trajectory)
    # Without a rationale (a Cauldron row) the row says it cannot confirm, and require_grounding (auto) drops it.
    cauldron = sample("cauldron", "st_vqa", [{"question": "What is the capital of Alaska?", "answer": "Juneau"}])
    bare = reason(cauldron, image, ops)
    assert admits(bare.qas[0].steps) and "Juneau" not in bare.qas[0].steps[-1].thought
    with pytest.raises(Quarantined):
        _policy(cauldron, bare)


def test_the_rag_query_is_the_questions_content_not_its_boilerplate():
    from generation.teachers.base import TeacherContext
    from generation.teachers.offline import OfflineTeacher

    question = ("Which country is this building in?\nContext: N/A\nOptions: (A) France (B) Italy\n"
                "Answer with the option's letter from the given choices directly.")
    infoseek = sample("infoseek", "infoseek", [{"question": question, "answer": "A", "choices": ["France", "Italy"]}])
    ctx = TeacherContext(sample=infoseek, qa_index=0, images=[], operators_available=["image_caption", "rag"])
    _, _, query = OfflineTeacher().choose_operators(ctx)
    assert query == "Which country is this building in?"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["general", "math"])
def test_a_staged_defect_is_repaired_by_a_rewrite_not_a_copy_of_the_step_it_replaces(kind):
    import asyncio

    from generation.final_trajectory import replaced_in_question
    from generation.rationale import RationaleSettings, generate_trajectory
    from generation.reflection import near_copy, restates
    from generation.teachers.offline import OfflineTeacher
    from operators.images import LoadedImage

    ops = operators(ocr="rapidocr")
    if kind == "math":  # a solution with a calculation stages "math": the step names the method, not the sum
        image = drawn_table("Bulk foods", ["Item", "Price"], [["rye", "$2/lb"], ["oats", "$3/kg"]])
        meta = {"table_for_pd": {"Item": ["rye", "oats"], "Price": ["$2/lb", "$3/kg"]}, "table_title": "Bulk foods"}
        solution = ("Find the cost of the rye. Multiply the price per pound by the number of pounds.\n$2 × 3 = $6\n"
                    "Kim spends $6.")
        qa = {"question": "Kim buys 3 pounds of rye. How much does Kim spend?", "answer": "6", "meta": {"math": True}}
        shown = "$2 × 3 = $6"
    else:  # none: "general", the answer named in the first step before any tool ran
        image = drawn_table("Museum visitors", ["Day", "Visitors"], [["Thursday", "310"], ["Friday", "285"],
                                                                    ["Saturday", "472"]])
        meta = {"table_for_pd": {"Day": ["Thursday", "Friday", "Saturday"], "Visitors": ["310", "285", "472"]},
                "table_title": "Museum visitors"}
        solution = ("Find the greatest number in the table. The greatest number is 472.\nNow find the corresponding "
                    "day. Saturday corresponds to 472.")
        qa = {"question": "On which day were there the most visitors?\nA. Thursday\nB. Friday\nC. Saturday",
              "answer": "C", "choices": ["Thursday", "Friday", "Saturday"]}
        shown = "Saturday corresponds to 472."
    rye = sample("tabmwp", "free_text", [{**qa, "source_rationale": solution}], **meta)
    settings = RationaleSettings(staged_rate=1.0)  # every question stages its defect
    qa = asyncio.run(generate_trajectory(rye, [LoadedImage(image)], OfflineTeacher(), ops, settings)).qas[0]
    assert qa.reflection is not None and qa.reflection.kind == kind and qa.reflection.origin == "staged"
    replaced = [qa.steps[i].thought for i in replaced_in_question(qa.steps) if qa.steps[i].signal != "reflection"]
    repair = qa.steps[-1].thought
    assert replaced and not any(near_copy(repair, old) or restates(repair, old) for old in replaced), qa.steps
    assert shown in repair and qa.grounded and "Leaving aside" not in repair
