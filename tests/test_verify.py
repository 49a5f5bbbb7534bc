"""The final-answer verifier and the on_mismatch policy."""
from __future__ import annotations

import pytest

from generation.schema import QA, Quarantined, QATrajectory, Sample, Step, Trajectory
from generation.verify import answers_match, choice_index, enforce_policy, normalise, parse_number

CHOICES = ["cat", "dog", "bird"]
INFOSEEK_YEAR = {"answer_eval": [{"wikidata": 1889, "range": [1884, 1894]}]}
INFOSEEK_NAME = {"answer_eval": ["Lake Geneva", "Lac Léman", "Lake Leman"]}


@pytest.mark.parametrize("predicted, reference, kwargs, expected", [
    # normalised text
    ("The answer is: Red.", "red", {}, True),
    ("the Red car", "red car", {}, True),
    ("Answering machine", "answering machine", {}, True),
    ("blue", "red", {}, False),
    ("", "red", {}, False),
    ("café", "cafe", {}, True),
    # yes / no
    ("Yes, it is.", "yes", {}, True),
    ("No.", "yes", {}, False),
    # choice letters and option texts, whichever form the reference uses
    ("B", "dog", {"choices": CHOICES}, True),
    ("(B)", "dog", {"choices": CHOICES}, True),
    ("B. dog", "B", {"choices": CHOICES}, True),
    ("Option B", "B", {"choices": CHOICES}, True),
    ("The answer is C", "bird", {"choices": CHOICES}, True),
    ("dog", "B", {"choices": CHOICES}, True),
    ("A", "dog", {"choices": CHOICES}, False),
    ("D", "D", {"choices": CHOICES}, True),  # not an option index: falls back to plain text
    # a letter reference without the choices (options only in the question): "A" is a letter, not an article
    ("A", "A", {}, True),
    ("(A)", "A", {}, True),
    ("The answer is: A.", "A", {}, True),
    ("B", "A", {}, False),
    ("a dog", "A", {}, False),
    # numbers
    ("1000", "1,000", {}, True),
    ("$5", "5", {}, True),
    ("5 cm", "5", {}, True),
    ("seven", "7", {}, True),
    ("7.0", "7", {}, True),
    ("101", "100", {}, False),  # integers compare exactly
    ("3.1416", "3.14", {}, True),  # decimals within tolerance
    ("3.2", "3.14", {}, False),
    ("0.75", "3/4", {}, True),
    ("45 percent", "45%", {}, True),
    ("5 or 6", "5", {}, False),  # more than one number is no answer
    ("room 5", "room 6", {}, False),
    # InfoSeek answer_eval: ranges and aliases
    ("1890", "1889", {"meta": INFOSEEK_YEAR}, True),
    ("It opened in 1889.", "1889", {"meta": INFOSEEK_YEAR}, True),
    ("1900", "1889", {"meta": INFOSEEK_YEAR}, False),
    ("Lac Leman", "Lake Geneva", {"meta": INFOSEEK_NAME}, True),
    ("Lake Constance", "Lake Geneva", {"meta": INFOSEEK_NAME}, False),
    ("330 metres", "330", {"meta": {"answer_eval": [[320, 340]]}}, True),
])
def test_answers_match(predicted, reference, kwargs, expected):
    assert answers_match(predicted, QA(question="q", answer=reference, **kwargs)) is expected


def test_helpers():
    assert normalise("  The answer is: An Apple!  ") == "apple"
    assert parse_number("about 2,500 people") == 2500.0 and parse_number("3 or 4") is None
    assert choice_index("(c)", CHOICES) == 2 and choice_index("E", CHOICES) is None
    assert choice_index("A. cat", ["A. cat", "B. dog"]) == 0


def _trajectory(answers: list[tuple[str, str, bool]]) -> tuple[Trajectory, Sample]:
    qas = [QATrajectory(question=f"q{i}", reference_answer=ref, steps=[Step(thought="t", signal="end")],
                        final_answer=pred, verified=ok) for i, (pred, ref, ok) in enumerate(answers)]
    sample = Sample(id="s/x/1", source="s", subset="x", qas=[QA(question=f"q{i}", answer=ref)
                                                             for i, (_, ref, _) in enumerate(answers)])
    return Trajectory(sample_id=sample.id, qas=qas), sample


def test_policy_keep_never_raises_and_quarantine_names_the_mismatch():
    trajectory, sample = _trajectory([("cat", "cat", True), ("dog", "cat", False)])
    enforce_policy(trajectory, sample, "keep")
    with pytest.raises(Quarantined) as info:
        enforce_policy(trajectory, sample, "quarantine")
    assert (info.value.stage, info.value.error_type) == ("verification", "AnswerMismatch")
    assert info.value.reason == "final answer 'dog' does not match the reference 'cat' (question 2)"
    good, sample = _trajectory([("cat", "cat", True)])
    enforce_policy(good, sample, "quarantine")


def test_policy_accepts_the_teacher_config_and_verifies_unchecked_answers():
    from generation.config import TeacherConfig

    trajectory, sample = _trajectory([("dog", "cat", None)])
    with pytest.raises(Quarantined):
        enforce_policy(trajectory, sample, TeacherConfig(on_mismatch="quarantine"))
    assert trajectory.qas[0].verified is False
