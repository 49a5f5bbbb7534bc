"""Sentence ends (generation/sentences.py): a title, abbreviation or initial does not end a sentence, so
ORR keeps "So the answer is Dr. Helen Ortiz." whole (it was cut to "So the answer is Dr.")."""
from __future__ import annotations

from generation.quality.row_judgement import repeated_sentence
from generation.schema import QATrajectory, Step
from generation.sentences import split_sentences


def test_titles_abbreviations_and_initials_do_not_end_a_sentence():
    text = ('The ocr result says "To: Dr. Helen Ortiz". So the answer is Dr. Helen Ortiz. '
            "J. Smith, e.g. the author, lives on Elm St. in Springfield! Is it so? Yes.")
    assert split_sentences(text) == ['The ocr result says "To: Dr. Helen Ortiz".', "So the answer is Dr. Helen Ortiz.",
                                     "J. Smith, e.g. the author, lives on Elm St. in Springfield!", "Is it so?", "Yes."]
    assert split_sentences("") == [] and split_sentences("No end mark") == ["No end mark"]


def test_orr_keeps_an_answer_after_a_title_whole():
    from generation.integration import orr_thought

    qa = QATrajectory(question="To whom is the memo addressed?", reference_answer="Dr. Helen Ortiz",
                      final_answer="Dr. Helen Ortiz", steps=[
                          Step(thought="I will read the text with ocr.", operators=["ocr"]),
                          Step(thought='The ocr result says "To: Dr. Helen Ortiz". So the answer is Dr. Helen Ortiz.',
                               signal="end")])
    thought = orr_thought(qa, api_outputs=[("ocr", "To: Dr. Helen Ortiz")])
    assert thought.endswith("So the answer is Dr. Helen Ortiz."), thought


def test_a_sentence_with_a_title_is_one_sentence_for_the_repeat_check():
    assert repeated_sentence("The memo is for Dr. Helen Ortiz today. Helen Ortiz today is busy.") == ""
    assert repeated_sentence("The memo is for Dr. Ortiz. The memo is for Dr. Ortiz.") == "The memo is for Dr. Ortiz."
