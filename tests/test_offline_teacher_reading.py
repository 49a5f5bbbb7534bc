"""InfoSeek through the offline teacher: the image's subject is named before any passage is read, so the
passage a thought quotes is the one about what the image shows, not the one that happens to hold the answer
(three towers come back for "this tower"; before, the last step picked the Eiffel Tower's passage because it
held "Paris", with nothing said about which tower the image shows). And a passage is quoted by its sentence,
small numbers too: "about 11 months", never the whole block of retrieved passages. And a plan quotes the
question without The Cauldron's "Question:" label and the options block."""
from __future__ import annotations

import json

import pytest

from tests.test_offline_teacher_grounding import drawn_scene, reason, sample

PASSAGES = [
    ("tokyo", "Tokyo Tower", "Tokyo Tower is a communications and observation tower in Minato, Tokyo."),
    ("eiffel", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris."),
    ("blackpool", "Blackpool Tower", "Blackpool Tower is a tourist attraction in Blackpool, opened in 1894."),
    ("horse", "Horse", "A mare carries her foal for about 11 months: gestation in horses lasts 320 to 370 days."),
    ("donkey", "Donkey", "The donkey (Equus asinus) is a domesticated equine. Its pregnancy lasts about 12 months."),
]


@pytest.fixture(scope="module")
def rag_operators(tmp_path_factory):
    from operators.config import OperatorsConfig
    from operators.registry import build_operators

    folder = tmp_path_factory.mktemp("corpus")
    (folder / "passages.jsonl").write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n"
                                                   for i, t, x in PASSAGES))
    cfg = {name: {"backend": "off"} for name in ("ocr", "label_bbox", "face_detection", "image_caption")}
    cfg["rag"] = {"backend": "local", "corpus": str(folder)}
    return build_operators(OperatorsConfig.model_validate(cfg), tmp_path_factory.mktemp("cache"))


def _infoseek(question: str, answer: str, entity: str):
    return sample("infoseek", "val", [{"question": f"{question}\nAnswer the question using a single word or phrase.",
                                       "answer": answer}], entity_id="Q1", entity_text=entity)


def test_the_subject_is_named_before_the_passages_and_the_quote_is_about_it(rag_operators):
    qa = reason(_infoseek("In which city is this tower located?", "Paris", "Eiffel Tower"), drawn_scene(),
                rag_operators).qas[0]
    first, last = qa.steps[0], qa.steps[-1]
    assert "The subject of the image is Eiffel Tower." in first.thought   # said before any result came back
    assert "Eiffel Tower" in (first.rag_query or "")                       # and asked about
    assert last.thought.startswith('The retrieved passage on Eiffel Tower says "'), last.thought
    assert qa.final_answer == "Paris" and qa.grounded


def test_a_subject_that_is_the_answer_is_not_named_before_the_evidence(rag_operators):
    qa = reason(_infoseek("What is the name of this tower?", "Eiffel Tower", "Eiffel Tower"), drawn_scene(),
                rag_operators).qas[0]
    assert "subject of the image" not in qa.steps[0].thought                # that would state the answer unseen
    assert "Eiffel Tower" not in (qa.steps[0].rag_query or "")


def test_a_small_number_in_a_passage_is_quoted_by_its_sentence(rag_operators):
    qa = reason(_infoseek("How many months does the pregnancy of this animal typically last?", "11", "Horse"),
                drawn_scene(), rag_operators).qas[0]
    last = qa.steps[-1].thought
    assert last.startswith('The retrieved passage on Horse says "A mare carries her foal for about 11 months'), last
    assert "Retrieved passages" not in last and "Donkey" not in last


@pytest.mark.parametrize("question, plan", [
    ("Question: How many stars are there?\nChoices:\nA. 6\nB. 7\nC. 8", "How many stars are there?"),
    ("Which organism in the diagram is a producer?\nA. fox\nB. rabbit\nC. grass", "Which organism in the diagram "
                                                                                 "is a producer?"),
    ("Look at the schedule. When does the bus leave Oak Street?\nA. 1:55 P.M.\nB. 2:10 P.M.",
     "Look at the schedule. When does the bus leave Oak Street?"),
    ("Name the colour of the bus", "Name the colour of the bus."),
    ("A. Lincoln was president in which year?", "A. Lincoln was president in which year?"),
    ("What is the measure of angle C?\nChoices:\nA:60°\nB:70°", "What is the measure of angle C?"),  # geoqa+
    ("Will these magnets attract or repel each other? Context: Two magnets. Options: (A) attract (B) repel",
     "Will these magnets attract or repel each other? Context: Two magnets."),                      # ScienceQA
])
def test_a_plan_quotes_the_question_without_its_label_and_options(question, plan):
    from generation.teachers.offline import asked

    # what rows taught before: "The question asks: Question: How many stars are there? Choices: A. 6 B. 7 C. 8 To ..."
    assert asked(question + "\nAnswer with the option's letter from the given choices directly.") == plan
