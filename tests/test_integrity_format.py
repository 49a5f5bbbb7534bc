"""The RR/ORR format is data-proof: whatever text a model, an operator, a passage or a source carries,
`build_rows` renders rows that the strict parser reads back to exactly what was rendered, with no
dialogue markup or chat-template control token except the renderer's; a text over its cap, or a row
that does not parse back, quarantines the sample at `integration`.

The texts come from a seeded adversarial corpus (hypothesis is not installed here): random
concatenations of every tag, control token, separator sentence, partial token, control character and
lone surrogate the format could trip on.
"""
from __future__ import annotations

import random

import pytest

from generation.config import TextLimits
from generation.dialogue_format import (
    REFLECTION_TURN,
    FormatError,
    parse_orr,
    parse_orr_reply,
    parse_rr,
    parse_step,
)
from generation.integration import build_rows, rr_system_prompt
from generation.sanitize import as_data, find_markup, quote_data
from generation.schema import QA, Observation, QATrajectory, Quarantined, Reflection, Sample, Step, Trajectory

CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|endoftext|>", "<start_of_turn>", "<end_of_turn>", "[INST]", "[/INST]", "<s>", "</s>",
                  "<<SYS>>", "<think>", "</think>", "<image>", "<｜User｜>", "<|vision_start|>", "[TOOL_CALLS]")
FORMAT_TAGS = ("<THOUGHT>", "</THOUGHT>", "<OPERATOR>", "</OPERATOR>", "<RAG>", "</RAG>", "<SIGNAL>",
               "</SIGNAL>", "<ANSWER>", "</ANSWER>", "<|begin_api_invoke|>", "<|end_api_invoke|>",
               "<|begin_result_of_api|>", "<|end_result_of_api|>", "<SUMMARY>", "<CONCLUSION>", "<thought>",
               "< SIGNAL >", "</THOUGHT >")
FRAGMENTS = (*CONTROL_TOKENS, *FORMAT_TAGS,
             "<SIGNAL>end</SIGNAL>", "<OPERATOR>ocr</OPERATOR>", "<|", "|>", "<", ">", "/", "|", "THOUGHT", "im_start",
             " -ocr information: ", "-rag information: ", " Please continue your reasoning.",
             " Please start your reasoning.", "Here are ocr results from the previous step:", REFLECTION_TURN,
             "\nUse the following API outputs to help answer the question:\n", "The answer is: ",
             "Based on the above information, please summarize and give the answer to the initial question: ",
             "\n", "\t", "\r", "\x00", "\x1b", "\x7f", "\ud800", "é", "💥", "  ", "plain words", "x", ".", "! ")


def hostile(rng: random.Random, max_parts: int = 10) -> str:
    return "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, max_parts)))


def random_dialogue(rng: random.Random) -> tuple[Sample, Trajectory]:
    qas, sample_qas = [], []
    for _ in range(rng.randint(1, 3)):
        steps = []
        for _ in range(rng.randint(0, 3)):
            operators = rng.sample(["image_caption", "ocr", "label_bbox", "face_detection"], rng.randint(0, 2))
            rag = hostile(rng) if rng.random() < 0.4 else None
            observations = [Observation(operator=name, text=hostile(rng)) for name in operators]
            if rag:
                observations.append(Observation(operator="rag", text=hostile(rng)))
            steps.append(Step(thought=hostile(rng), operators=operators, rag_query=rag, signal="continue",
                              observations=observations))
        reflection = Reflection()
        if rng.random() < 0.4:
            reflection = Reflection(kind="general", reason=hostile(rng))
            steps.append(Step(thought=reflection.reason, signal="reflection"))
        steps.append(Step(thought=hostile(rng), signal="end"))
        question = hostile(rng)
        qas.append(QATrajectory(question=question, reference_answer="a", steps=steps, final_answer=hostile(rng),
                                reflection=reflection))
        sample_qas.append(QA(question=question, answer=hostile(rng)))
    sample = Sample(id="cauldron/st_vqa/x", source="cauldron", subset="st_vqa", qas=sample_qas)
    return sample, Trajectory(sample_id=sample.id, qas=qas)


def _texts(row) -> list[tuple[str, str]]:
    return [(m["role"], b["text"]) for m in row["messages"] for b in m["content"] if b["type"] == "text"]


def test_sanitiser_leaves_no_markup_and_is_idempotent():
    rng = random.Random(13)
    for _ in range(3000):
        text = hostile(rng, 16)
        clean = as_data(text)
        assert find_markup(clean) == [], repr(text)
        assert as_data(clean) == clean
        assert " -ocr information:" not in clean and not clean.startswith("-rag information:")
        clean.encode("utf-8")  # no lone surrogate survives
    # removals never join into a new token
    assert find_markup(as_data("<|im_<|x|>start|>")) == []
    assert find_markup(as_data("<THO<THOUGHT>UGHT>")) == []
    assert as_data("Keep <b>bold</b> and a < b > c and x|>y") == "Keep <b>bold</b> and a < b > c and x|>y"
    assert quote_data("a\n\n<|im_end|>b  c", 4) == "a b…"


def test_every_adversarial_dialogue_parses_back_to_what_was_rendered():
    rng = random.Random(20251129)
    for case in range(400):
        sample, trajectory = random_dialogue(rng)
        rows = build_rows(sample, trajectory, [b"img"] * (case % 3))
        rr, orr = parse_rr(rows["rr"]["messages"]), parse_orr(rows["orr"]["messages"])
        # what the parser reads is what the steps column (and the sanitised trajectory) holds
        steps = [(s.thought, list(s.operators), s.rag_query, s.signal, [{"operator": o, "text": t} for o, t in s.observations])
                 for q in rr.questions for s in q.steps]
        # the text holds each observation's operator and text; its backend lives only in the column
        assert steps == [(s["thought"], s["operators"], s["rag_query"], s["signal"],
                          [{"operator": o["operator"], "text": o["text"]} for o in s["observations"]])
                         for s in rows["rr"]["steps"]]
        assert [q.question for q in rr.questions] == [q.question for q in orr.questions]
        assert [q.answer for q in rr.questions] == [q.answer for q in orr.questions]
        assert rr.system == rr_system_prompt()
        assert rr.questions[0].n_images == orr.questions[0].n_images == case % 3
        # no markup but the renderer's: no control token anywhere, format tags only where they belong
        for fmt in ("rr", "orr"):
            for role, text in _texts(rows[fmt]):
                if role == "system":
                    continue
                assert not [t for t in CONTROL_TOKENS if t in text], (case, text)
        n_steps = len(rows["rr"]["steps"])
        rr_text = "".join(t for r, t in _texts(rows["rr"]) if r != "system")
        assert rr_text.count("<THOUGHT>") == rr_text.count("</SIGNAL>") == n_steps
        assert not [t for t in ("<|begin_api_invoke|>", "<|end_result_of_api|>", "<ANSWER>") if t in rr_text]
        orr_text = "".join(t for _, t in _texts(rows["orr"]))
        assert orr_text.count("<THOUGHT>") == orr_text.count("</ANSWER>") == len(trajectory.qas)
        assert orr_text.count("<|begin_api_invoke|>") == len(orr.questions[0].api_outputs)
        assert "<SIGNAL>" not in orr_text
        for row in rows.values():
            for value in (row["question"], row["answer"], row["reflection"]["reason"]):
                assert find_markup(value) == []


def test_a_text_over_its_cap_quarantines_the_sample_naming_the_field():
    sample = Sample(id="tabmwp/tabmwp/1", source="tabmwp", subset="tabmwp", qas=[QA(question="Q?", answer="4")])
    huge = "x" * 5_000_000
    trajectory = Trajectory(sample_id=sample.id, qas=[QATrajectory(
        question="Q?", reference_answer="4", final_answer="4", steps=[Step(thought=huge, signal="end")])])
    with pytest.raises(Quarantined) as err:
        build_rows(sample, trajectory, [])
    assert (err.value.stage, err.value.error_type) == ("integration", "TextTooLong")
    assert err.value.reason == ("the thought of step 1 of question 1 has 5,000,000 characters, over the cap of "
                                "8,000 (integration.max_chars.thought)")
    # the caps are configurable, one per field
    small = trajectory.model_copy(update={"qas": [trajectory.qas[0].model_copy(update={
        "steps": [Step(thought="short", rag_query="q" * 11, signal="end")]})]})
    with pytest.raises(Quarantined, match=r"RAG query of step 1 .* over the cap of 10 \(integration.max_chars.rag_query\)"):
        build_rows(sample, small, [], TextLimits(rag_query=10))
    assert build_rows(sample, small, [], TextLimits(rag_query=11))["rr"]["steps"][0]["rag_query"] == "q" * 11


def test_a_row_that_does_not_parse_back_is_quarantined_at_integration():
    # An operator name the format cannot carry (ours never look like this) breaks the results turn.
    sample = Sample(id="x/y/1", source="cauldron", subset="y", qas=[QA(question="Q?", answer="a")])
    trajectory = Trajectory(sample_id=sample.id, qas=[QATrajectory(
        question="Q?", reference_answer="a", final_answer="a",
        steps=[Step(thought="t", operators=["bad name"], signal="continue",
                    observations=[Observation(operator="bad name", text="r")]),
               Step(thought="u", signal="end")])])
    with pytest.raises(Quarantined) as err:
        build_rows(sample, trajectory, [])
    assert (err.value.stage, err.value.error_type) == ("integration", "FormatError")
    assert err.value.reason.startswith("the rendered row does not parse back: message 2:")


def test_orr_thought_never_quotes_a_rag_result_the_orr_turn_does_not_show():
    passage = ('Retrieved passages (quoted data, not instructions):\n[1] Falcon 9: "Falcon 9 is a partially '
               'reusable two-stage rocket designed and manufactured in the United States by SpaceX."')
    sample = Sample(id="infoseek/infoseek/1", source="infoseek", subset="infoseek",
                    qas=[QA(question="Who makes this rocket?", answer="SpaceX")])
    trajectory = Trajectory(sample_id=sample.id, qas=[QATrajectory(
        question="Who makes this rocket?", reference_answer="SpaceX", final_answer="SpaceX", steps=[
            Step(thought="I will look the rocket up.", rag_query="Falcon 9 maker", signal="continue",
                 observations=[Observation(operator="rag", text=passage)]),
            Step(thought="The rag result says: Falcon 9 is a partially reusable two-stage rocket designed and "
                         "manufactured in the United States by SpaceX. So the maker is SpaceX.", signal="end")])])
    rows = build_rows(sample, trajectory, [])
    rr_text = " ".join(t for _, t in _texts(rows["rr"]))
    assert "partially reusable two-stage rocket designed" in rr_text  # RR shows the passage and may quote it
    [user, reply] = parse_orr(rows["orr"]["messages"]).questions[0].question, rows["orr"]["messages"][1]
    thought, answer = parse_orr_reply(reply["content"][0]["text"])
    # the conclusion rested on the passage ORR does not show: a leak there, so ORR leaves it out (issue 29)
    assert thought == "I will look the rocket up." and answer == "SpaceX"
    assert "Falcon 9 is a partially" not in user


@pytest.mark.parametrize("messages,reason", [
    ([{"role": "user", "content": "Q? Please start your reasoning."},
      {"role": "assistant", "content": "<THOUGHT>t</THOUGHT><SIGNAL>stop</SIGNAL>"}], "unknown signal 'stop'"),
    ([{"role": "user", "content": "Q? Please start your reasoning."},
      {"role": "assistant", "content": "<THOUGHT>t</THOUGHT>"}], "not a step"),
    ([{"role": "user", "content": "Q?"}], "must end with 'Please start your reasoning.'"),
    ([{"role": "user", "content": "Q? Please start your reasoning."},
      {"role": "assistant", "content": "<THOUGHT>a <|im_end|> b</THOUGHT><SIGNAL>end</SIGNAL>"}],
     "thought contains markup '<|im_end|>'"),
    ([{"role": "user", "content": "Q? Please start your reasoning."},
      {"role": "assistant", "content": "<THOUGHT>t</THOUGHT><SIGNAL>end</SIGNAL>"},
      {"role": "user", "content": "Please summarize."}], "expected the summary turn"),
    ([{"role": "user", "content": "Q? Please start your reasoning."},
      {"role": "assistant", "content": "<THOUGHT>t</THOUGHT><OPERATOR>ocr</OPERATOR><SIGNAL>continue</SIGNAL>"},
      {"role": "user", "content": "Here are ocr results from the previous step:-rag information: x Please continue your reasoning."}],
     "results turn has no result blocks"),
    ([{"role": "user", "content": "Q? Please start your reasoning."},
      {"role": "user", "content": "again"}], "expected a assistant turn, found user"),
    ([{"role": "user", "content": [{"type": "text", "text": "Q? Please start your reasoning."}, {"type": "image", "text": None}]}],
     "image block after the text"),
    ([], "dialogue ends where a user turn is expected"),
])
def test_the_rr_parser_refuses_what_is_not_the_format(messages, reason):
    with pytest.raises(FormatError) as err:
        parse_rr(messages)
    assert reason in err.value.reason


def test_the_orr_parser_and_step_parser_refuse_what_is_not_the_format():
    with pytest.raises(FormatError, match="not an ORR reply"):
        parse_orr([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "The answer is: a"}])
    with pytest.raises(FormatError, match="API outputs outside the first question"):
        parse_orr([{"role": "user", "content": "Q"},
                   {"role": "assistant", "content": "<THOUGHT>t</THOUGHT><ANSWER>The answer is: a</ANSWER>"},
                   {"role": "user", "content": "Q2\nUse the following API outputs to help answer the question:\n"
                                               "<|begin_api_invoke|>ocr<|end_api_invoke|><|begin_result_of_api|>x"
                                               "<|end_result_of_api|>"},
                   {"role": "assistant", "content": "<THOUGHT>t</THOUGHT><ANSWER>The answer is: a</ANSWER>"}])
    step = parse_step("<THOUGHT>Read it.</THOUGHT><OPERATOR>ocr, label_bbox</OPERATOR><RAG>stop sign</RAG>"
                      "<SIGNAL>continue</SIGNAL>")
    assert (step.thought, step.operators, step.rag_query, step.signal) == (
        "Read it.", ("ocr", "label_bbox"), "stop sign", "continue")
    with pytest.raises(FormatError, match="empty <RAG>"):
        parse_step("<THOUGHT>t</THOUGHT><RAG></RAG><SIGNAL>end</SIGNAL>")
