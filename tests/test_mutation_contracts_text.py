"""Issue 33: the text contracts the README promises, each pinned so that breaking it fails a test.

Found by hand-made mutants (`benchmarks/mutants_text.py`) that survived every existing test: a Hugging
Face token recognised only at 40 characters (real ones are 37), `*_api_key` fields masked only when the
name starts with the secret word, secrets not masked longest first, DEL kept by the sanitiser,
`quote_data` one character over its limit, `45%` equal to `45`, InfoSeek's `[v, v]` range never
matching, "the first word decides" for yes/no, and the TabMWP adapter's answer parsing.
"""
from __future__ import annotations

import logging
import random
import string

import pytest

from generation import redact as redact_module
from generation.answers import normalise_answer, strip_added_period
from generation.redact import MASK, mask_known, redact, redact_fields, register_secret, scrub_record
from generation.sanitize import as_data, find_markup, quote_data
from generation.schema import QA, Quarantined
from generation.sources.base import ImageFolder, SourceConfig, choice_letter, format_choices
from generation.sources.tabmwp import _to_sample
from generation.verify import answers_match
from tests.dataset_factory import png_bytes


@pytest.fixture(autouse=True)
def no_ambient_secrets(monkeypatch):
    for name in redact_module.SECRET_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(redact_module, "_registered", set())


# --- redact -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [11, 37, 38, 40, 64])  # 37: the length of the tokens the Hub issues
def test_a_hugging_face_token_is_masked_at_its_real_lengths(length):
    rng = random.Random(length)
    token = "hf_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length - 3))
    assert len(token) == length
    assert redact(f"Authorization failed for {token}, retry") == f"Authorization failed for {MASK}, retry"


@pytest.mark.parametrize("name", ["api_key", "openai_api_key", "azure_api_key", "MY_API_KEY", "apiKey",
                                  "hf_token", "token", "password", "client_secret"])
def test_secret_named_fields_are_masked_whatever_their_prefix_and_value(name):
    stats = {"teacher": {name: "plain-value-no-shape", "model": "gpt-4o"}, "rows": 3}
    assert redact_fields(stats) == {"teacher": {name: MASK, "model": "gpt-4o"}, "rows": 3}


def test_fields_in_lists_are_redacted_too():
    key = "sk-proj-" + "A1b2C3d4E5" * 3
    assert redact_fields({"errors": [f"bad key {key}", {"api_key": "x"}]}) == {"errors": [f"bad key {MASK}",
                                                                                         {"api_key": MASK}]}


def test_secrets_are_masked_longest_first():
    short, long = "abcdef123", "abcdef123-and-more"
    assert mask_known(f"{long} / {short}", [short, long]) == f"{MASK} / {MASK}"
    assert redact(f"{long}!", [short, long]) == f"{MASK}!"


def test_short_placeholders_are_not_secrets():
    register_secret("EMPTY")  # vLLM's keyless placeholder: masking it would shred ordinary text
    assert redact("EMPTY fields stay EMPTY", ["EMPTY", "abc"]) == "EMPTY fields stay EMPTY"
    register_secret("s3cr3t")  # six characters: the shortest value that counts
    assert redact("the s3cr3t leaks") == f"the {MASK} leaks"


def test_url_credentials_and_environment_secrets_are_masked(monkeypatch):
    assert redact("GET http://user:pa55@host:8000/v1 failed") == f"GET http://{MASK}@host:8000/v1 failed"
    monkeypatch.setenv("HF_TOKEN", "plain-token-without-shape")
    assert redact("push with plain-token-without-shape") == f"push with {MASK}"


def test_a_log_records_stack_is_scrubbed():
    record = logging.LogRecord("mmat", logging.ERROR, __file__, 1, "boom", None, None)
    record.stack_info = "Stack (most recent call last):\n  key=sk-proj-" + "Z9" * 12
    assert "sk-proj" not in scrub_record(record).stack_info


# --- sanitize -----------------------------------------------------------------------------------------
def test_control_characters_del_and_lone_surrogates_become_spaces():
    assert as_data("a\x7fb\x00c\x1bd") == "a b c d"
    assert as_data("low\udc80high\ud800end") == "low high end"


def test_markup_is_removed_in_any_case_and_the_llama2_system_block_too():
    assert as_data("<thought>x</Thought> <<SYS>>sys<</SYS>>") == "x   sys"
    assert not find_markup(as_data("<</SYS>>"))


def test_ends_are_stripped():
    assert as_data("  \n x \t ") == "x"


_ALPHABET = list(string.printable) + ["<", "|", ">", "[", "]", "\u202e", "\ufeff", "\x7f", "\x00", "é", "猫", "…"]
_PIECES = ["<THOUGHT>", "<|im_start|>", "[INST]", "<</SYS>>", "-ocr information:", "   ", "\n\n"]


def _random_text(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 12)):
        parts.append(rng.choice(_PIECES) if rng.random() < 0.2 else
                     "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12))))
    return "".join(parts)


def test_quote_data_never_exceeds_its_limit_property():
    """A property test (a seeded random loop: hypothesis is not installed): for any text and limit,
    `len(quote_data(x, n)) <= n`, the result is one clean line, and a text that fits is not cut."""
    rng = random.Random(20261207)
    for _ in range(3000):
        text, limit = _random_text(rng), rng.randint(0, 60)
        quoted = quote_data(text, limit)
        assert len(quoted) <= limit, (text, limit, quoted)
        assert "\n" not in quoted and not find_markup(quoted) and quoted == quoted.strip()
        whole = quote_data(text)
        if len(whole) <= limit:
            assert quoted == whole
        elif limit == 0:
            assert quoted == ""
        else:
            assert quoted.endswith("…") and whole.startswith(quoted[:-1])


# --- answers ------------------------------------------------------------------------------------------
def test_a_percentage_is_not_the_bare_number():
    assert normalise_answer("45%") != normalise_answer("45")
    assert choice_letter("45", ["45%", "45"]) == "B" and choice_letter("45%", ["45", "45%"]) == "B"


def test_lead_ins_periods_and_abbreviations():
    assert normalise_answer("Final answer: 42") == normalise_answer("42")
    assert normalise_answer("v.2") == "v2"  # a period that is no decimal point goes
    assert strip_added_period("Wait...") == "Wait..."  # an ellipsis is not an added period
    assert strip_added_period("U.S.") == "U.S." and strip_added_period("Paris.") == "Paris"


# --- verify: InfoSeek's ranges and yes/no -------------------------------------------------------------
def _infoseek(answer_eval) -> QA:
    # a reference the text comparison cannot match, so only the range decides
    return QA(question="How tall is it?", answer="about 330 metres", meta={"answer_eval": answer_eval})


def test_a_wikidata_value_is_the_range_v_v_and_its_one_value_matches():
    for answer_eval in ([{"wikidata": 330}], [330, 330], [{"range": [330, 330]}]):
        assert answers_match("330", _infoseek(answer_eval)), answer_eval
        assert answers_match("It is 330 m.", _infoseek(answer_eval))
        assert not answers_match("331", _infoseek(answer_eval)) and not answers_match("329.5", _infoseek(answer_eval))


def test_range_endpoints_are_inside_and_a_bare_pair_is_one_range():
    for answer_eval in ([{"range": [320, 340]}], [320, 340]):
        assert answers_match("320", _infoseek(answer_eval)) and answers_match("340", _infoseek(answer_eval))
        assert answers_match("335", _infoseek(answer_eval))
        assert not answers_match("319", _infoseek(answer_eval)) and not answers_match("341", _infoseek(answer_eval))


@pytest.mark.parametrize("predicted, reference, expected", [
    ("Yes, it is.", "yes", True), ("yes", "Yes", True), ("No.", "no", True),
    ("It is yes", "yes", False),          # the first word decides, not any word
    ("No, not yes", "yes", False),
    ("yesterday", "yes", False),          # a word, not a prefix
    ("Nope", "no", False),
])
def test_yes_no_the_first_word_decides(predicted, reference, expected):
    assert answers_match(predicted, QA(question="Is it a cat?", answer=reference)) is expected


# --- the TabMWP adapter's answer parsing --------------------------------------------------------------
@pytest.fixture
def tables(tmp_path) -> ImageFolder:
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "7.png").write_bytes(png_bytes(7))
    return ImageFolder.of(SourceConfig(kind="tabmwp", path=tmp_path), tmp_path)


def _record(answer, choices=None):
    return {"question": "How many?", "answer": answer, "choices": choices, "solution": "Count them.",
            "ques_type": "multi_choice" if choices else "free_text", "split": "dev"}


def test_tabmwp_free_text_answers_are_stripped_and_carry_no_answer_text(tables):
    qa = _to_sample(_record("  42 "), "tabmwp/free_text/7", "7", "dev", tables).qas[0]
    assert qa.answer == "42" and "answer_text" not in qa.meta and qa.choices == []


def test_tabmwp_choices_give_a_letter_and_keep_the_text(tables):
    qa = _to_sample(_record(" 2:10 P.M.", ["1:55 P.M.", "2:10 P.M."]), "tabmwp/multi_choice/7", "7", "dev",
                    tables).qas[0]
    assert qa.answer == "B" and qa.meta["answer_text"] == "2:10 P.M."
    assert "A. 1:55 P.M.\nB. 2:10 P.M." in qa.question


def test_tabmwp_numeric_choices_become_text(tables):
    qa = _to_sample(_record("3", [2, 3, 4]), "tabmwp/multi_choice/7", "7", "dev", tables).qas[0]
    assert qa.choices == ["2", "3", "4"] and qa.answer == "B"


def test_tabmwp_an_answer_outside_the_choices_is_quarantined_naming_both(tables):
    with pytest.raises(Quarantined) as err:
        _to_sample(_record("5:00 P.M.", ["1:55 P.M.", "2:10 P.M."]), "tabmwp/multi_choice/7", "7", "dev", tables)
    assert err.value.reason == "answer '5:00 P.M.' is not one of the choices ['1:55 P.M.', '2:10 P.M.']"


def test_choice_letters_stay_within_the_choices_and_an_empty_key_matches_nothing():
    assert choice_letter("C", ["x", "y", "z"]) == "C" and choice_letter("(b)", ["x", "y"]) == "B"
    assert choice_letter("D", ["x", "y", "z"]) is None
    assert choice_letter("?", ["!", "x"]) is None  # both normalise to "": not a match
    assert format_choices(["x", "y"]) == "A. x\nB. y"
