"""The audit's ORR side and the end of a run (issue 29 point 3): an ORR row that repeats a sentence in one
turn, or still says a step a reflection replaced, is counted and named; `audit_run` audits RR and ORR, logs
both, and counts the repairs its quarantine rejected; the card's Quality section shows them side by side."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from generation.integration import build_rows
from generation.quality.audit import audit_run
from generation.quality.row_judgement import failings, replaced_step_in, repeated_sentence, row_quality
from generation.schema import Reflection, Step
from tests.test_quality_audit import SAUCER, dialogue, folder  # noqa: F401 - `folder` is a fixture

CUP = "What is the cup sitting on? Answer the question using a single word or phrase."
STAGED = "Before looking, I would say the answer is saucer."
STEPS = [
    {"thought": STAGED, "signal": "continue"},
    {"thought": "I will look at the image.", "signal": "continue"},
    {"thought": "Step 1 names the answer before any evidence; I look first.", "signal": "reflection"},
    {"thought": 'The caption says "a white cup on a small saucer". So the answer is saucer.', "signal": "end"},
]


def test_a_sentence_said_twice_in_one_turn_is_found():
    text = "The caption shows a white cup. It sits on a small saucer. The caption shows a white cup."
    assert repeated_sentence(text) == "The caption shows a white cup."
    assert repeated_sentence("The caption shows a cup. It sits on a small saucer.") == ""
    assert repeated_sentence("Yes. Yes. It is red.") == ""  # a short sentence is no repetition worth a flag


def test_a_replaced_step_still_said_in_orr_is_found():
    assert replaced_step_in(f"{STAGED} The caption says so.", STEPS) == STAGED
    assert replaced_step_in('The caption says "a white cup on a small saucer". So the answer is saucer.', STEPS) == ""
    no_reflection = [s for s in STEPS if s["signal"] != "reflection"]
    assert replaced_step_in(f"{STAGED} The caption says so.", no_reflection) == ""  # nothing was replaced


def _orr_row_saying(extra: str) -> dict:
    steps = [Step(thought=STAGED, signal="continue"), SAUCER,
             Step(thought="Step 1 names the answer before any evidence; I look first.", signal="reflection"),
             Step(thought='The caption says "a white cup on a small saucer". So the answer is saucer.', signal="end")]
    sample, trajectory, images = dialogue("visual_cot/gqa/staged", CUP, "saucer", steps, "saucer",
                                          reflection=Reflection(kind="general", reason="named early", origin="staged"))
    row = build_rows(sample, trajectory, images)["orr"]
    reply = row["messages"][-1]["content"][0]
    reply["text"] = reply["text"].replace("<THOUGHT>", "<THOUGHT>" + extra, 1)
    return row


def test_an_orr_row_with_both_defects_is_counted_and_named():
    quality = row_quality(_orr_row_saying(f"{STAGED} The caption shows a white cup on a saucer. "
                                          "The caption shows a white cup on a saucer. "))
    assert quality.format == "orr" and quality.replaced_in_orr == STAGED
    assert quality.repeated_sentence == "The caption shows a white cup on a saucer."
    kinds = [kind for kind, _ in failings(quality)]
    assert "replaced_step_in_orr" in kinds and "repeated_sentence" in kinds


def test_a_clean_orr_row_has_neither_defect():
    quality = row_quality(_orr_row_saying(""))
    assert quality.replaced_in_orr == "" and quality.repeated_sentence == ""
    assert quality.grounded and quality.evidence == "tool"


@dataclass
class Record:  # a quarantine record's shape (generation.checkpoint_lines.QuarantineRecord)
    id: str
    stage: str
    error_type: str
    message: str


def test_the_end_of_a_run_audits_rr_and_orr_and_counts_rejected_repairs(folder, caplog):  # noqa: F811
    quarantined = [Record("a", "reflection", "RepairRejected", "reflection did not repair: the step is a copy"),
                   Record("b", "reflection", "RepairRejected", "reflection did not repair: the check still fires"),
                   Record("c", "verification", "NotGrounded", "answer not supported by tool evidence")]
    with caplog.at_level(logging.INFO, logger="mmat.audit"):
        report = audit_run(folder, quarantined=quarantined)
    assert report.config == "rr" and report.paired is not None and report.paired.config == "orr"
    assert report.repairs_rejected == 2 and report.total.repairs == 1
    assert report.quarantined == {"reflection/RepairRejected": 2, "verification/NotGrounded": 1}
    lines = [r for r in caplog.records if r.getMessage().startswith("quality (")]
    assert [r.getMessage().split(",")[0] for r in lines] == ["quality (rr", "quality (orr"]
    assert "rejected 2" in lines[0].getMessage()
    data = lines[0].data
    assert data["repairs_rejected"] == 2 and data["paired"]["config"] == "orr"
    assert data["total"]["repairs_accepted"] == 1 and "grounded_rationale" in data["total"]


def test_the_card_section_reports_rejected_repairs_when_the_run_knows_them(folder):  # noqa: F811
    from publishing.quality_section import report_markdown

    report = audit_run(folder, quarantined=[Record("a", "reflection", "RepairRejected", "copy")])
    text = report_markdown(report)
    assert "RR and ORR side by side" in text and "**1** rejected" in text
    assert "| total | 8 / 8 |" in text


def test_a_folder_without_orr_rows_is_audited_alone(tmp_path, folder):  # noqa: F811
    import shutil

    only_rr = tmp_path / "rr-only"
    shutil.copytree(folder, only_rr)
    shutil.rmtree(only_rr / "data" / "orr")
    report = audit_run(only_rr)
    assert report.config == "rr" and report.paired is None and report.repairs_rejected is None


def test_rejected_repairs_are_read_from_the_error_type_not_the_stage():
    from generation.quality.audit import AuditReport

    report = AuditReport("x", "rr", quarantined={"reflection/RepairRejected": 3, "reflection/Other": 4})
    assert report.repairs_rejected == 3


def test_the_audit_reads_inline_options_followed_by_an_instruction_line():
    """LLaVA-CoT's ScienceQA questions end with the options, then "Answer with the option's letter …": the
    audit reads the choices from the question text, as the engine had them (else a letter answer is a label
    no text supports, and the audit disagrees with the row's meta.evidence)."""
    from generation.quality.definitions import answer_target, question_choices

    question = ("Will these magnets attract or repel each other?\nContext: Two magnets are placed as shown.\n"
                "Options: (A) attract (B) repel\nAnswer with the option's letter from the given choices directly.")
    assert question_choices(question) == ["attract", "repel"]
    assert answer_target("A", question_choices(question)).text == "attract"
