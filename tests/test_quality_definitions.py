"""The quality definitions (`generation.quality.definitions`) on hand-made dialogues, one kind at a time:
grounded, leaked (and repaired), verified through the audit, duplicates; and the staged-reflection
rate. Each case is a dialogue a broken definition would misjudge."""
from __future__ import annotations

import numpy as np
import pytest

from generation.quality.definitions import (
    LEAK_DEFINITION,
    NearDuplicates,
    StepView,
    answer_target,
    equations,
    judge_dialogue,
    judge_question,
    minhash,
)

CUP = "What is the cup sitting on? Answer the question using a single word or phrase."
TQA = "Which label shows the roots?\nA. stem\nB. root\nC. leaf"


def ocr(thought: str, text: str) -> StepView:
    return StepView(thought, "continue", (("ocr", text),))


def end(thought: str) -> StepView:
    return StepView(thought, "end")


# ------------------------------------------------------------------------------------ grounded
def test_an_answer_in_a_tool_result_is_grounded_and_one_in_none_is_not():
    caption = StepView("I will describe the image.", "continue",
                       (("image_caption", "A 384x256 landscape photograph-like image, mostly orange and red"),))
    # the example: a caption that says nothing about saucers, then the answer
    bad, _ = judge_question(CUP, [caption, end("The region that answers it is around [40, 92, 330, 252].")], "saucer")
    assert not bad.grounded and not bad.leaked
    crop = StepView("I will caption the box.", "continue", (("image_caption", "a white cup on a saucer"),))
    good, _ = judge_question(CUP, [crop, end('The image_caption result says "a white cup on a saucer". So the answer '
                                             'is saucer.')], "saucer")
    assert good.grounded and not good.leaked


def test_a_choice_answer_is_grounded_by_the_chosen_options_text_not_its_letter():
    assert answer_target("B", ["stem", "root", "leaf"]).text == "root"
    read = ocr("I will read the labels.", "stem\nroot\nleaf")
    verdict, _ = judge_question(TQA, [read, end("The ocr result shows root. This matches option B (root).")], "B")
    assert verdict.grounded and not verdict.leaked
    unread = ocr("I will read the labels.", "stem\nleaf")
    verdict, _ = judge_question(TQA, [unread, end("The labels are stem and leaf.")], "B")
    assert not verdict.grounded


def test_arithmetic_written_out_from_the_evidence_grounds_a_number():
    table = ocr("I will read the table.", "Day | Visitors\nMonday | 45\nTuesday | 52")
    question = "How many visitors came on Monday and Tuesday in all?"
    written, _ = judge_question(question, [table, end("45 + 52 = 97. So the answer is 97.")], "97")
    assert written.grounded and not written.leaked
    assert equations("$6.20 × 3 = $18.60") == [([6.2, 3.0], [18.6, 18.6])]
    wrong, _ = judge_question(question, [table, end("45 + 50 = 97. So the answer is 97.")], "97")
    assert not wrong.grounded and wrong.leaked  # wrong arithmetic derives nothing
    unknown, _ = judge_question(question, [table, end("40 + 57 = 97. So the answer is 97.")], "97")
    assert not unknown.grounded  # operands the evidence never showed
    stated, _ = judge_question(question, [table, end("So the answer is 97.")], "97")
    assert not stated.grounded and stated.leaked


def test_a_fraction_is_grounded_when_its_numerator_and_denominator_are_shown():
    # TabMWP's probabilities: the part from the table, the whole summed out, the answer in lowest terms
    table = ocr("I will read the table.", "Velvet Suede\nFoam 6 6\nBeads 2 5")
    question = "What is the probability that a beanbag chair is filled with beads and made from suede?"
    summed, _ = judge_question(question, [table, end("6 + 6 + 2 + 5 = 19. P = \\frac{5}{19}.")], "5/19")
    assert summed.grounded and not summed.leaked
    unsummed, _ = judge_question(question, [table, end("P = \\frac{5}{19}.")], "5/19")
    assert not unsummed.grounded  # 19 was never shown nor derived
    wrong_sum, _ = judge_question(question, [table, end("6 + 6 + 2 + 4 = 19. P = \\frac{5}{19}.")], "5/19")
    assert not wrong_sum.grounded  # wrong arithmetic derives nothing


NINA = "Nina has $12.00. Does she have enough to buy a kite and a yo-yo?\nA. yes\nB. no"
MARBLES = "Is the total number of marbles even or odd?\nA. even\nB. odd"


PRICES = ("I will read the table.", "Toy Price\nkite $6.75\nyo-yo $2.20\npuzzle $8.40")
COUNTS = ("I will read the table.", "Marbles in a jar\nColor Number\nred 13\nblue 8\ngreen 6")


@pytest.mark.parametrize("question, table, last, answer, grounded, leaked", [
    pytest.param(NINA, PRICES, "$6.75 + $2.20 = $8.95. $8.95 is less than $12.00. This matches option A (yes), so the "
                 "answer is A.", "A", True, False, id="comparison-written-out"),
    # a false comparison decides nothing, and naming the option then leaks
    pytest.param(NINA, PRICES, "$6.75 + $2.20 = $8.95. $8.95 is more than $12.00. This matches option A (yes), so the "
                 "answer is A.", "A", False, True, id="false-comparison"),
    # numbers the evidence never showed decide nothing either
    pytest.param(NINA, PRICES, "$7.10 is less than $12.00. So the answer is A.", "A", False, True, id="unknown-numbers"),
    pytest.param(MARBLES, COUNTS, "13 + 8 + 6 = 27. 27 ends in 7, so it is odd. This matches option B (odd), so the "
                 "answer is B.", "B", True, False, id="parity-stated-rightly"),
    pytest.param(MARBLES, COUNTS, "13 + 8 + 6 = 27. 27 is even. This matches option A (even), so the answer is A.",
                 "A", False, True, id="parity-stated-wrongly"),
    pytest.param(MARBLES, COUNTS, "This matches option B (odd), so the answer is B.", "B", False, True,
                 id="parity-not-stated"),
])
def test_a_yes_no_or_parity_choice_is_grounded_by_a_true_statement_of_known_numbers(question, table, last, answer,
                                                                                     grounded, leaked):
    verdict, _ = judge_question(question, [ocr(*table), end(last)], answer)
    assert (verdict.grounded, verdict.leaked) == (grounded, leaked)


def test_later_questions_of_a_dialogue_use_the_earlier_questions_evidence():
    from dataclasses import dataclass

    @dataclass
    class Q:
        question: str
        steps: list
        answer: str

    first = Q("What does the sign say?", [ocr("I will read it.", "STOP\nMain Street"), end("It says STOP.")], "STOP")
    second = Q("Which street is it?", [end('The ocr result said "Main Street". So the answer is Main Street.')],
               "Main Street")
    verdicts = judge_dialogue([first, second])
    assert [v.grounded for v in verdicts] == [True, True] and not any(v.leaked for v in verdicts)
    alone = judge_dialogue([second])
    assert not alone[0].grounded and alone[0].leaked


# ------------------------------------------------------------------------------------- leaked
def test_a_step_that_names_the_answer_before_any_evidence_leaks():
    guess = StepView("The cup is on a saucer, I will check with image_caption.", "continue",
                     (("image_caption", "a white cup on a saucer"),))
    verdict, _ = judge_question(CUP, [guess, end("So the answer is saucer.")], "saucer")
    assert verdict.grounded and verdict.leaked  # supported in the end, but named before the evidence
    assert verdict.leaks[0].step == 0 and "before any evidence" in verdict.leaks[0].reason


def test_mentioning_a_reference_answer_leaks_even_with_evidence():
    read = ocr("I will read the sign.", "STOP")
    verdict, _ = judge_question("What does the sign say?", [read, end("The standard answer is STOP, which the ocr "
                                                                        "result shows.")], "STOP")
    assert verdict.leaked and "standard answer" in verdict.leaks[0].reason
    asked, _ = judge_question("What is the expected answer format?", [read, end("It says STOP.")], "STOP")
    assert not asked.leaked  # the question's own words are not a leak


def test_quoting_the_question_and_its_options_is_not_stating_the_answer():
    plan = StepView("The question asks: Which label shows the roots? A. stem B. root C. leaf. I will read the labels.",
                    "continue", (("ocr", "root"),))
    verdict, _ = judge_question(TQA, [plan, end("The ocr result says root, option B.")], "B")
    assert not verdict.leaked and verdict.grounded


def test_a_leak_followed_by_a_reflection_is_repaired_not_leaked():
    steps = [StepView("Before looking, I would say the answer is saucer.", "continue",
                      (("image_caption", "a white cup on a saucer"),)),
             StepView("Wait, I named the answer before any tool showed it.", "reflection"),
             end('The image_caption result says "a white cup on a saucer". So the answer is saucer.')]
    verdict, _ = judge_question(CUP, steps, "saucer")
    assert not verdict.leaked and [leak.repaired for leak in verdict.leaks] == [True]


def test_yes_no_answers_need_evidence_about_what_is_asked():
    question = "Is there a dog on the sofa?"
    about = StepView("I will describe it.", "continue", (("image_caption", "a brown dog lying on a grey sofa"),))
    verdict, _ = judge_question(question, [about, end("The caption shows a dog on the sofa, so yes.")], "Yes")
    assert verdict.grounded and not verdict.leaked
    unrelated = StepView("I will describe it.", "continue", (("image_caption", "a kitchen with a window"),))
    early = StepView("Yes, I think so.", "continue")
    verdict, _ = judge_question(question, [early, unrelated, end("So yes.")], "Yes")
    assert not verdict.grounded and verdict.leaked


def test_the_reflection_prompt_shows_the_same_leak_definition():
    from generation.schema import Step
    from generation.teachers.prompts import render_prompt

    system, user = render_prompt("reflection_general", question="Q?", choices=[], answer="a", source_rationale=None,
                                 steps=[Step(thought="t", signal="end")], previous=[])
    # the check's own rules come last in its call (issue 31's layout), after the shared system text
    assert LEAK_DEFINITION in user
    assert user.index(LEAK_DEFINITION) > user.index("Q?")
    assert "reference" in LEAK_DEFINITION and "Quoting the question" in LEAK_DEFINITION


# ---------------------------------------------------------------------------------- duplicates
def test_near_duplicates_group_texts_that_differ_by_a_word_and_not_different_ones():
    rows = " ".join(f"On day {d} the shop sold {d * 7 + 3} apples and {d * 11 + 5} pears." for d in range(1, 31))
    base = f"The question asks how many fruits the shop sold in the month. The table lists: {rows} So I add them up."
    near = NearDuplicates()
    for text in (base, base.replace("Thursday", "Friday", 1), "A completely different dialogue about a red bus "
                 "parked beside a station in the rain while people wait under umbrellas for the next train."):
        near.add(minhash(text))
    assert near.groups() == [[0, 1]]


def test_copies_of_a_text_join_its_group_without_comparing_the_copies():
    """N copies of one text cost N, not N² (only distinct signatures are compared), and the groups
    are what pairwise comparison of every signature gives."""
    words = "the shop sold apples and pears on every day of the month while the bus waited in the rain".split()
    texts = [" ".join(words[k:] + words[:k]) for k in range(0, 12, 3)]  # 4 distinct, partly overlapping texts
    texts += [" ".join(words[:8] + ["bananas"] + words[9:])]  # a near-duplicate of texts[0]
    order = [i % len(texts) for i in range(200)]
    near = NearDuplicates()
    signatures = [minhash(texts[i]) for i in order]
    for signature in signatures:
        near.add(signature)
    parent = list(range(len(order)))  # the reference: union every pair at or above the threshold

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(len(order)):
        for j in range(i):
            if float(np.mean(signatures[i] == signatures[j])) >= near.threshold:
                parent[root(i)] = root(j)
    reference: dict[int, list[int]] = {}
    for i in range(len(order)):
        reference.setdefault(root(i), []).append(i)
    assert sorted(near.groups()) == sorted(g for g in reference.values() if len(g) > 1)
    # only distinct signatures are compared: at most each pair of the 5 texts once per band, not 200²/2
    assert near.compared <= 16 * (len(texts) * (len(texts) - 1) // 2)


# ------------------------------------------------------------------------------- staged rate
def test_staged_defects_are_chosen_by_id_at_the_configured_rate():
    from generation.rationale import staged_defect
    from generation.schema import QA, ImageRef, Sample

    def sample(i: int, math: bool) -> Sample:
        qa = QA(question="How many in all?", answer="97", source_rationale="45 + 52 = 97.", meta={"math": math})
        return Sample(id=f"tabmwp/tabmwp/{i}", source="tabmwp", subset="tabmwp", images=[ImageRef(data=b"x")],
                      qas=[qa], meta={"math": math})

    samples = [sample(i, math=i % 2 == 0) for i in range(4000)]
    assert all(staged_defect(s, 0, 0.0) is None for s in samples)
    chosen = [staged_defect(s, 0, 0.05) for s in samples]
    share = sum(c is not None for c in chosen) / len(samples)
    assert 0.035 <= share <= 0.065
    assert all(c == ("math" if s.meta["math"] else "general") for s, c in zip(samples, chosen) if c)
    assert chosen == [staged_defect(s, 0, 0.05) for s in samples]  # the same on every rerun


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_staged_rate_is_a_fraction(rate):
    from pydantic import ValidationError

    from generation.config import ReflectionConfig

    with pytest.raises(ValidationError):
        ReflectionConfig(staged_rate=rate)
    assert ReflectionConfig().staged_rate <= 57_647 / 1_090_263  # at or below the paper's repair rate


@pytest.mark.parametrize("collide", [False, True])
def test_distinct_signatures_are_found_exactly_even_when_their_digests_collide(monkeypatch, collide):
    """Distinct signatures are found by a digest of each row; what `np.unique` over the rows gives, also
    when every row gets the same digest (a collision must not merge two different signatures)."""
    import xxhash

    from generation.quality.definitions import _distinct_rows

    rng = np.random.default_rng(7)
    distinct = rng.integers(0, 1 << 61, (40, 64), dtype=np.uint64)
    signatures = distinct[rng.integers(0, 40, 5000)]
    if collide:
        monkeypatch.setattr(xxhash, "xxh3_128_digest", lambda data: b"\x00" * 16)
    _, first, inverse = np.unique(signatures.view(np.dtype((np.void, 512))).ravel(), return_index=True,
                                  return_inverse=True)
    got_first, got_inverse = _distinct_rows(signatures)  # distinct rows numbered in another order
    assert len(got_first) == 40 and np.array_equal(got_first[got_inverse], first[inverse.ravel()])
