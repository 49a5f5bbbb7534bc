"""The grounding metric's edges (issue 29 point 7), each a loophole or a miss of the code before:
a clock time is one value whatever its spacing, its digits are not numbers of their own, and a fraction
is not grounded by being small."""
from generation.quality.definitions import Evidence, answer_target, judge_question


def _evidence(*results: str, question: str = "What does the schedule show?") -> Evidence:
    evidence = Evidence(question)
    for text in results:
        evidence.add_result(text)
    return evidence


def _grounds(result: str, thought: str, answer: str) -> bool:
    """Does a tool result, then a thought that writes something out, ground `answer`?"""
    evidence = _evidence(result)
    evidence.add_thought(thought)
    return evidence.supports(answer_target(answer))


# ------------------------------------------------------------------------------ time normalisation
def test_a_time_the_ocr_reads_without_a_space_grounds_the_spaced_answer():
    assert _evidence("Bus 12 departs 2:10P.M. from Elm St").supports(answer_target("2:10 P.M."))


def test_a_spaced_time_grounds_an_answer_written_without_the_space():
    assert _evidence("Bus 12 departs 2:10 p.m. from Elm St").supports(answer_target("2:10P.M."))


def test_a_time_is_not_grounded_by_another_time_with_the_same_digits():
    assert not _evidence("Bus 12 departs 2:10 A.M.; bus 13 at 12:10 P.M.").supports(answer_target("2:10 P.M."))


# ----------------------------------------------------------------- digit runs inside times or numbers
def test_minutes_are_not_grounded_by_the_digits_of_a_clock_time():
    assert not _evidence("Starts 7:00 A.M., ends 7:15 A.M.").supports(answer_target("15 minutes"))


def test_a_bare_number_is_not_grounded_by_the_minutes_of_a_time():
    assert not _evidence("Recess ends at 10:45").supports(answer_target("45"))


def test_a_number_is_not_grounded_by_a_digit_run_inside_a_longer_number():
    assert not _evidence("Population: 2,150 people; code 7150").supports(answer_target("15"))
    assert not _evidence("Total weight 3.15 kg").supports(answer_target("15"))


def test_an_elapsed_time_written_out_from_two_shown_times_is_grounded():
    assert _grounds("Starts 7:00 A.M., ends 7:15 A.M.", "From 7:00 A.M. to 7:15 A.M. is 15 minutes.", "15 minutes")


def test_an_elapsed_time_stated_wrongly_is_not_grounded():
    assert not _grounds("Starts 7:00 A.M., ends 7:15 A.M.", "From 7:00 A.M. to 7:15 A.M. is 20 minutes.", "20 minutes")


def test_a_time_in_a_dialogue_grounds_the_answer_end_to_end():
    steps = [{"thought": "I will read the schedule.", "observations": [("ocr", "Oak St 2:10P.M.")]}]

    class Step:  # a parsed step's shape: thought, signal, (operator, text) observations
        def __init__(self, thought, observations):
            self.thought, self.signal, self.observations = thought, "continue", observations

    verdict, _ = judge_question("When does the bus leave Oak St?", [Step(**s) for s in steps], "2:10 P.M.")
    assert verdict.grounded


# ------------------------------------------------------------------------------------- fractions
def test_a_small_fraction_is_not_grounded_by_its_parts_being_small_constants():
    assert not _evidence("red 5, blue 8, green 9").supports(answer_target("4/11"))


def test_a_fraction_whose_parts_the_evidence_shows_is_grounded():
    assert _grounds("red 4, blue 7, green 9", "4 + 7 = 11 marbles are red or blue.", "4/11")


def test_a_fraction_whose_value_is_derived_is_grounded():
    assert _grounds("red 4, blue 7", "4 / 8 = 0.5", "1/2")


# ------------------------------------------------------------------------ arithmetic after a label
def test_a_chain_after_a_closing_parenthesis_is_read():
    """TabMWP's probability solutions write "P(A and B) = 3/12 = 1/4": the ")" of the label is no side."""
    from generation.quality.definitions import equations

    assert equations("P(A and B) = 3/12 = 1/4.") == [([3.0, 12.0], [0.25, 0.25])]
    assert _grounds("red 3, blue 9", "3 + 9 = 12 marbles. P(red) = 3/12 = 1/4.", "1/4")
