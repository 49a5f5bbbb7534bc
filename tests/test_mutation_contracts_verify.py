"""Issue 33: the verifier's rules, each pinned so that breaking it fails a test (found by the hand-made
mutants of `benchmarks/mutants_quality.py` that survived `tests/test_verify.py`): InfoSeek ranges and
values, the first-word rule for yes/no, the reference's precision, an empty normal form, a reference whose
number is not its whole text, and the policy's use of a verdict already given."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from generation.schema import QA, QATrajectory, Quarantined, Sample, Step, Trajectory
from generation.verify import answers_match, enforce_policy, numbers_match, requires_grounding


def _qa(answer: str, answer_eval=None) -> QA:
    return QA(question="q", answer=answer, meta={} if answer_eval is None else {"answer_eval": answer_eval})


@pytest.mark.parametrize("answer_eval, predicted, expected", [
    ([{"range": [1889, 1889]}], "1889", True),   # [v, v]: the endpoints count
    ([{"range": [1884, 1894]}], "1894", True),
    ([{"range": [1884, 1894]}], "1895", False),
    ([{"wikidata": 1969}], "1969", True),
    ([1884, 1894], "1890", True),                 # a bare [lo, hi] is one range, not two values
    ([1969], "1969", True),                       # a bare number
    (["Lake Geneva"], "lake geneva", True),
])
def test_infoseek_answer_eval(answer_eval, predicted, expected):
    assert answers_match(predicted, _qa("unknown", answer_eval)) is expected


@pytest.mark.parametrize("predicted, expected", [("Yes, it is.", True), ("No, yes it would be.", False),
                                                 ("Yesterday it was.", False), ("It is yes.", False)])
def test_the_first_word_decides_a_yes_no(predicted, expected):
    assert answers_match(predicted, _qa("yes")) is expected


def test_a_decimal_matches_at_the_references_precision_beyond_the_tolerance():
    assert numbers_match(0.104, 0.1, "0.1") and answers_match("0.104", _qa("0.1"))
    assert not numbers_match(0.16, 0.1, "0.1")


def test_an_answer_whose_normal_form_is_empty_matches_nothing():
    assert not answers_match("An.", _qa("the"))


def test_a_reference_with_words_before_its_number_is_compared_as_text():
    assert not answers_match("66", _qa("route 66"))
    assert answers_match("Route 66", _qa("route 66"))


def test_auto_grounding_is_required_of_the_offline_teacher_only():
    assert requires_grounding(SimpleNamespace(require_grounding="auto", kind="offline"))
    assert not requires_grounding(SimpleNamespace(require_grounding="auto", kind="openai"))
    assert requires_grounding(SimpleNamespace(require_grounding=True)) and not requires_grounding("quarantine")


def _dialogue(final: str, verified, references: list[str]) -> tuple[Trajectory, Sample]:
    qas = [QATrajectory(question="q0", reference_answer=references[0], steps=[Step(thought="t", signal="end")],
                        final_answer=final, verified=verified),
           QATrajectory(question="q1", reference_answer="", steps=[Step(thought="t", signal="end")],
                        final_answer="x", verified=None)]
    sample = Sample(id="s/x/1", source="s", subset="x", qas=[QA(question="q0", answer=r) for r in references])
    return Trajectory(sample_id=sample.id, qas=qas), sample


def test_a_verdict_already_given_is_kept_and_a_question_without_reference_is_not_quarantined():
    trajectory, sample = _dialogue("dog", True, ["cat"])  # verified upstream (e.g. by a judge): kept
    enforce_policy(trajectory, sample, "quarantine")
    assert trajectory.qas[0].verified is True and trajectory.qas[1].verified is None
    trajectory, sample = _dialogue("dog", None, ["cat"])
    with pytest.raises(Quarantined):
        enforce_policy(trajectory, sample, "quarantine")
