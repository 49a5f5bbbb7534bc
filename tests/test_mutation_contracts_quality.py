"""Issue 33: the leak and grounding definitions, each rule pinned so that breaking it fails a test.

Found by hand-made mutants (`benchmarks/mutants_quality.py`) that survived the module's own tests: a
reference phrase the question itself uses, a yes/no said in passing, instruction phrases and short quotes
of the question read as the thought's own words, a target next to one other option taken for a list, a
declared source-rationale quote, a repaired reference-answer step, a reflection's results, the ORR split;
and in grounding: the long-answer word count and recall, the constants' edges, the yes/no half, a bare
option letter, the rounding tolerance, a chain using its own results, hours, and a.m./p.m. spacing.
"""
from __future__ import annotations

import pytest

from generation.quality.definitions import (CONSTANTS, Evidence, StepView, answer_target, judge_question,
                                            mentions_reference_answer, orr_views, states_answer)
from generation.quality.evidence_kinds import SOURCE_RATIONALE_LEAD
from generation.quality.grounding import LONG_ANSWER_RECALL, LONG_ANSWER_WORDS, elapsed_times, same_number


# --- the leak judgement --------------------------------------------------------------------------------
def test_a_reference_answer_is_named_in_any_case_unless_the_question_names_it():
    assert mentions_reference_answer("The Reference Answer says 5.", "How many cats?") == "Reference Answer"
    assert mentions_reference_answer("Check whether the given answer holds.", "Is the given answer right?") is None


def test_a_yes_no_is_stated_by_a_verdict_not_by_the_word_in_passing():
    yes_no = answer_target("no")
    assert not states_answer("There is no dog near the bench, let me zoom in.", yes_no, "Is there a cat?")
    assert not states_answer("The sign says no, parking is fine here.", yes_no, "Is there a sign?")
    assert states_answer("No, there is no cat.", yes_no, "Is there a cat?")


def test_the_yes_no_instruction_copied_into_a_thought_is_no_verdict():
    assert not states_answer("Yes, no? I need to read the sign first.", answer_target("yes"), "Is the sign red?")
    assert states_answer("Yes, the sign is red.", answer_target("yes"), "Is the sign red?")


def test_a_short_quote_of_the_question_is_cut_before_a_letter_claim_is_read():
    question = "Which shape is larger? Choose option A or option B."
    assert not states_answer("It says choose option A or option B, so I measure both.", answer_target("A", ["circle", "square"]),
                             question)
    assert states_answer("The answer is option A.", answer_target("A", ["circle", "square"]), question)


def test_the_target_quoted_with_the_question_words_around_it_is_not_stated():
    question = "Which animal, cat or dog, sleeps on the sofa?"
    assert not states_answer("I must tell cat or dog apart first.", answer_target("cat"), question)
    assert states_answer("I see a cat there.", answer_target("cat"), question)


def test_the_target_next_to_one_other_option_is_stated_and_between_two_is_a_list():
    question = "How long is the rope?\nA. 50\nB. 55\nC. 60\nD. 65"
    target = answer_target("55", ["50", "55", "60", "65"])
    assert states_answer("Probably 55 or 60 by the look of it.", target, question)
    assert not states_answer("The options are 50, 55, 60 and 65.", target, question)


def test_a_declared_source_rationale_quote_is_not_a_leak():
    steps = [StepView(f"{SOURCE_RATIONALE_LEAD} the cat sleeps on the sofa.", "end")]
    verdict, _ = judge_question("Which animal sleeps on the sofa?", steps, "cat", choices=())
    assert verdict.leaks == []
    quoted, _ = judge_question("Which animal sleeps on the sofa?", [StepView("It is a cat.", "end")], "cat",
                               choices=())
    assert quoted.leaked


def test_a_reference_answer_step_a_reflection_replaced_is_repaired():
    steps = [StepView("The reference answer is 5, I will say that."),
             StepView("That step read the reference answer; count instead.", "reflection"),
             StepView("Count them with the tool.", "end", (("count", "5 apples"),))]
    verdict, _ = judge_question("How many apples?", steps, "5", choices=())
    assert verdict.leaks and verdict.leaks[0].step == 0 and verdict.leaks[0].repaired
    assert not verdict.leaked


def test_results_shown_in_a_reflection_step_are_evidence():
    steps = [StepView("Read the label."), StepView("Try OCR instead.", "reflection", (("ocr", "label: walnut"),)),
             StepView("Done.", "end")]
    verdict, _ = judge_question("What does the label say?", steps, "walnut", choices=())
    assert verdict.grounded


def test_an_orr_turn_is_its_api_outputs_then_the_thought_then_the_quote():
    views = orr_views(f"I read the chart. {SOURCE_RATIONALE_LEAD} the bars add to 9.", [("ocr", "bars 4 and 5")])
    assert [v.signal for v in views] == ["continue", "continue", "end"]
    assert views[0].observations == (("ocr", "bars 4 and 5"),)
    assert views[1].thought == "I read the chart." and views[2].thought.startswith(SOURCE_RATIONALE_LEAD)
    assert [v.thought for v in orr_views("Just this.")] == ["Just this."]


# --- grounding -----------------------------------------------------------------------------------------
def test_an_answer_is_long_only_past_the_word_limit():
    words = "red green blue black white brown pink olive".split()
    assert LONG_ANSWER_WORDS == 6
    assert answer_target(" ".join(words[:LONG_ANSWER_WORDS])).kind == "text"
    assert answer_target(" ".join(words[:LONG_ANSWER_WORDS + 1])).kind == "long"


@pytest.mark.parametrize("shown, supported", [(5, False), (6, True)])
def test_a_long_answer_needs_its_recall_of_content_words(shown, supported):
    words = "apple banana cherry grape lemon mango olive peach plum walnut".split()
    assert LONG_ANSWER_RECALL == 0.6
    evidence = Evidence("What is in the bowl?")
    evidence.add_result(" ".join(words[:shown]))
    assert evidence.supports(answer_target(" ".join(words))) is supported


def test_the_constants_edges():
    evidence = Evidence()
    assert all(evidence.known(v) for v in (0.0, 12.0, 24.0, 60.0, 90.0))
    assert not any(evidence.known(v) for v in (13.0, 59.0, 61.0)) and 13.0 not in CONSTANTS


def test_a_yes_no_is_supported_when_exactly_half_of_the_question_words_are_shown():
    evidence = Evidence("Is the zebra eating grass near the river fence?")  # zebra eating grass river fence
    evidence.add_result("zebra grass")
    assert not evidence.supports(answer_target("yes"))
    evidence.add_result("river")
    assert evidence.supports(answer_target("yes"))


def test_a_bare_option_letter_is_never_supported_by_text():
    evidence = Evidence("Which figure completes the pattern?")
    evidence.add_result("figure B has three dots, option B")
    assert not evidence.supports(answer_target("B"))


def test_the_rounding_tolerance_is_half_a_unit_of_the_last_written_place():
    assert same_number(8.334, 8.33, 2) and same_number(8.3349, 8.33, 2)
    assert not same_number(8.338, 8.33, 2) and not same_number(8.3, 8.33, 2)


def test_a_chain_may_use_the_results_it_derived_earlier():
    evidence = Evidence("Ann has 45 marbles and Bob has 52.")
    assert evidence.derivations("45 + 52 = 97, then 97 + 45 = 142") == [97.0, 97.0, 142.0, 142.0]
    evidence.add_thought("45 + 52 = 97, then 97 + 45 = 142")
    assert evidence.supports(answer_target("142"))


def test_an_elapsed_time_in_hours_is_read_as_hours():
    text = "From 7:00 to 9:00 is 2 hours, and from 9:00 to 9:30 is 30 minutes."
    assert elapsed_times(text, lambda written: True) == [2.0, 30.0]
    assert elapsed_times("From 7:00 to 9:00 is 2 minutes.", lambda written: True) == []


def test_a_time_is_found_in_the_evidence_whatever_its_am_pm_spacing():
    evidence = Evidence()
    evidence.add_result("The bus leaves at 2:10 P.M.")
    assert evidence.contains("2h10pm") and evidence.contains("2h10 pm")
