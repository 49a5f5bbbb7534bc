"""The one leak definition (`generation.quality.definitions`), measured (issue 29, point 2).

48 hand-made dialogues: half state the answer before any evidence (or name a reference answer), half
only copy the question's own text into the thought: its instructions (the phrases of
`generation.sources.instructions`: "Answer yes or no.", "Yes, no?", "Answer with the letter.", ...), its
option list, its wording. Yes/no, letter and number answers. The definition's precision and recall over
them must both be 1.0, and the reflection check (`generation.reflection.leak_verdict`) and the audit
(`generation.quality.audit.row_quality` on the rendered RR and ORR rows) must read every dialogue the same
way: one definition, three readers.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from generation.integration import build_rows
from generation.quality.audit import row_quality
from generation.quality.definitions import StepView, judge_question, states_answer, answer_target
from generation.reflection import leak_verdict
from generation.schema import QA, Observation, QATrajectory, Sample, Step, Trajectory
from generation.sources.instructions import LETTER_SUFFIXES, MULTIPLE_CHOICE_PROMPT, SHORT_ANSWER_PROMPT
from generation.teachers.base import TeacherContext

CAT = "Is the cat sitting on the red mat?\nAnswer yes or no."
MEME = "Is this meme hateful? Answer yes or no."
RAVEN = "Yes, no? Does the last panel complete the pattern of the rows?"
RAVEN2 = "Yes or No? Is the small square to the left of the large circle?"
RAVEN3 = "Answer by yes or no. Is the triangle inside the square?"
DOG = "Is there a dog in front of the bench? Yes or no."
ANGLE = "Find x.\nChoices:\nA. 50\nB. 55\nC. 60\nD. 65\n" + MULTIPLE_CHOICE_PROMPT
MAMMAL = "Which animal is a mammal?\nA. shark\nB. whale\nC. trout\n" + LETTER_SUFFIXES[1]
MARKED = ("In the figure, choice (B) is the shape marked with a star. Which choice names the marked shape?\n"
          "A. circle\nB. star\nC. square\nAnswer with the letter.")
APPLES = "Tom has 8 apples and eats 3 of them. How many apples are left? " + SHORT_ANSWER_PROMPT
BIGGER = "Which number is larger, 14 or 9? " + SHORT_ANSWER_PROMPT

CAPTION = (("image_caption", "A 320x240 landscape photograph-like image, mostly green, bright."),)


@dataclass(frozen=True)
class Case:
    name: str
    question: str
    answer: str
    thought: str  # the first step's thought (no evidence before it)
    leak: bool


def plan(question: str) -> str:
    return f"The question asks: {question} To answer it I need a description of the image, so I will use image_caption."


QUOTES = [  # text copied from the question, its instructions or its options: no statement of the answer
    Case("yes/no instruction quoted", CAT, "yes", plan(CAT), False),
    Case("yes/no instruction quoted, answer no", CAT, "no", plan(CAT), False),
    Case("meme instruction quoted", MEME, "yes", plan(MEME), False),
    Case("instruction paraphrased", MEME, "yes", "I must answer yes or no, so first I will read the meme's text "
         "with ocr.", False),
    Case("instruction as a colon lead", CAT, "yes", "Answer yes or no: first I need to see the mat, so I will "
         "use image_caption.", False),
    Case("instruction starts the thought", CAT, "yes", "Answer yes or no. The cat and the mat must both be "
         "visible, so I will use image_caption.", False),
    Case("RAVEN 'Yes, no?' copied at the start", RAVEN, "yes", RAVEN + " I will describe the panels with "
         "image_caption.", False),
    Case("RAVEN 'Yes, no?' copied, answer no", RAVEN, "no", RAVEN + " I will describe the panels first.", False),
    Case("RAVEN 'Yes or No?' copied", RAVEN2, "yes", plan(RAVEN2), False),
    Case("RAVEN 'Yes or No?' at the start", RAVEN2, "yes", RAVEN2 + " I will locate both shapes.", False),
    Case("'Answer by yes or no.' copied", RAVEN3, "yes", plan(RAVEN3), False),
    Case("'Yes or no.' at the end copied", DOG, "no", plan(DOG), False),
    Case("so-clause about the instruction", DOG, "yes", "The answer must be yes or no, so yes or no depends on "
         "what image_caption shows.", False),
    Case("letter instruction quoted", ANGLE, "B", plan(ANGLE), False),
    Case("option list paraphrased", ANGLE, "B", "The options are 50, 55, 60 and 65; I will read the angle "
         "labels with ocr.", False),
    Case("letter instruction 'Answer with the letter.'", MAMMAL, "B", plan(MAMMAL), False),
    Case("question naming a choice quoted", MARKED, "B", plan(MARKED), False),
    Case("question naming a choice, answer C", MARKED, "C", plan(MARKED), False),
    Case("letter options copied one per line", MAMMAL, "B", "The question asks: Which animal is a mammal? "
         "A. shark B. whale C. trout. I will caption the image.", False),
    Case("number question quoted", APPLES, "5", plan(APPLES), False),
    Case("number in the question quoted", BIGGER, "14", plan(BIGGER), False),
    Case("number options listed", ANGLE, "C", "The choices are 50, 55, 60 and 65 degrees, so I will read the "
         "diagram's labels.", False),
    Case("short-answer instruction quoted", APPLES, "5", "Answer the question using a single word or phrase: "
         "the count of apples left. I will use image_caption.", False),
    Case("yes/no question, verdict-like words inside the copy", DOG, "yes",
         "The question asks: Is there a dog in front of the bench? Yes or no. I will use image_caption.", False),
]

LEAKS = [  # the answer stated before any evidence, or a reference answer named
    Case("guess yes", CAT, "yes", "Before looking, I would say the answer is yes.", True),
    Case("guess no after the quoted instruction", CAT, "no", plan(CAT) + " Before looking, I would say the "
         "answer is no.", True),
    Case("quote then a verdict", MEME, "yes", plan(MEME) + " The answer is yes.", True),
    Case("so-verdict", CAT, "yes", "So yes, the cat is on the mat.", True),
    Case("verdict at the start", DOG, "yes", "Yes, there is a dog in front of the bench.", True),
    Case("therefore no", DOG, "no", "Therefore no, I will not need the tools.", True),
    Case("RAVEN copied then a verdict", RAVEN, "no", RAVEN + " The answer is no.", True),
    Case("answer: yes", RAVEN2, "yes", "Answer: yes. I will check with image_caption.", True),
    Case("reference answer named", CAT, "yes", "The reference answer is the one to reach, so I will look.", True),
    Case("guess a letter", ANGLE, "B", "Before looking, I would say the answer is B (55).", True),
    Case("option claim", MAMMAL, "B", "Option B is right; I will describe the image to be sure.", True),
    Case("letter after the quoted instruction", MAMMAL, "B", plan(MAMMAL) + " The answer is B.", True),
    Case("answer: (C)", MARKED, "C", "answer: (C), the square, before I look.", True),
    Case("option text stated", MAMMAL, "B", "The whale is the mammal here.", True),
    Case("number stated after listing options", ANGLE, "B", "The options are 50, 55, 60 and 65. The angle x is 55 "
         "degrees.", True),
    Case("guess a number", APPLES, "5", "Before looking, I would say the answer is 5.", True),
    Case("number stated after the quoted question", APPLES, "5", plan(APPLES) + " There are 5 apples left.", True),
    Case("number stated bare", BIGGER, "14", "It is 14 without a doubt.", True),
    Case("expected answer named", APPLES, "5", "The expected answer is a count, so I will count.", True),
    Case("given answer named", ANGLE, "B", "I will use the given answer to pick the option.", True),
    Case("correct answer named, yes/no", MEME, "no", "The correct answer says no hate; I will read the text.", True),
    Case("letter guess after 'Yes, no?' copy", MARKED, "B", "Before looking, I would say the answer is B (star).", True),
    Case("number with unit guessed", ANGLE, "C", "x = 60 degrees, before any measurement.", True),
    Case("yes after a copied question", CAT, "yes", "The question asks: Is the cat sitting on the red mat? So yes.",
         True),
]

CASES = QUOTES + LEAKS


def choices_of(question: str) -> list[str]:
    from generation.quality.definitions import question_choices

    return question_choices(question)


def leaked(case: Case) -> bool:
    steps = [StepView(case.thought, "continue", CAPTION), StepView("I could not see more.", "end")]
    verdict, _ = judge_question(case.question, steps, case.answer, choices_of(case.question))
    return any(leak.step == 0 for leak in verdict.leaks)


def test_the_cases_are_balanced():
    assert len(CASES) >= 40
    assert len(QUOTES) == len(LEAKS)
    for group in (QUOTES, LEAKS):
        kinds = {answer_target(c.answer, choices_of(c.question)).kind if not choices_of(c.question) else "letter"
                 for c in group}
        assert {"yesno", "letter", "number"} <= kinds


def test_precision_and_recall_of_the_leak_definition_are_one():
    found = {c.name: leaked(c) for c in CASES}
    true_pos = sum(1 for c in CASES if c.leak and found[c.name])
    false_pos = [c.name for c in CASES if not c.leak and found[c.name]]
    false_neg = [c.name for c in CASES if c.leak and not found[c.name]]
    precision = true_pos / (true_pos + len(false_pos)) if true_pos + len(false_pos) else 0.0
    recall = true_pos / (true_pos + len(false_neg))
    assert (precision, recall, false_pos, false_neg) == (1.0, 1.0, [], [])


@pytest.mark.parametrize("case", [c for c in QUOTES if c.answer in ("yes", "no")], ids=lambda c: c.name)
def test_a_quoted_yes_no_instruction_states_no_verdict(case):
    target = answer_target(case.answer)
    assert not states_answer(case.thought, target, case.question)


def _context(case: Case) -> TeacherContext:
    sample = Sample(id="leak/" + case.name, source="cauldron", subset="test",
                    qas=[QA(question=case.question, answer=case.answer, choices=choices_of(case.question))])
    steps = [Step(thought=case.thought, operators=["image_caption"], signal="continue",
                  observations=[Observation(operator=o, text=t) for o, t in CAPTION]),
             Step(thought="I could not see more.", signal="end")]
    return TeacherContext(sample=sample, qa_index=0, images=[], operators_available=["image_caption"], steps=steps)


def _rows(case: Case) -> dict:
    ctx = _context(case)
    trajectory = Trajectory(sample_id=ctx.sample.id, qas=[QATrajectory(
        question=case.question, reference_answer=case.answer, steps=ctx.steps, final_answer=case.answer)])
    return build_rows(ctx.sample, trajectory, [])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_reflection_check_and_the_audit_read_the_same_definition(case):
    assert (leak_verdict(_context(case)) is not None) == case.leak
    rows = _rows(case)
    assert row_quality(rows["rr"]).leaked == case.leak
