"""The offline teacher grounds its answers in real tool evidence where a real tool can give it (issue 19), on
hand-made samples run through the real rationale loop and real operators: a TabMWP choice decided by a
calculation and a comparison written out, a table's superlative, count and total read off the OCR text,
objects counted from the `segments` backend of `label_bbox` on a drawn image with a known number of
shapes. And where the evidence does not give the answer, the row says so: `grounded` false, the answer
never stated in the reasoning, and quarantined under `teacher.require_grounding`."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.ocr_support import FONT, png

SHAPES = [("red", "circle", 40, 40), ("red", "square", 140, 50), ("blue", "circle", 250, 45),
          ("red", "triangle", 60, 150), ("green", "square", 170, 160), ("blue", "triangle", 260, 150)]


def drawn_scene(shapes=SHAPES, size=(320, 220)) -> bytes:
    """Filled shapes (radius 22) on a lit grey floor (a vertical gradient), like a CLEVR render."""
    w, h = size
    floor = np.linspace(170, 120, h)[:, None, None] * np.ones((1, w, 3))
    im = Image.fromarray(floor.astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for colour, shape, x, y in shapes:
        box = (x - 22, y - 22, x + 22, y + 22)
        if shape == "circle":
            draw.ellipse(box, fill=colour, outline="black")
        elif shape == "square":
            draw.rectangle(box, fill=colour, outline="black")
        else:
            draw.polygon([(x, y - 22), (x - 22, y + 22), (x + 22, y + 22)], fill=colour, outline="black")
    return png(im)


def drawn_table(title: str, header: list[str], rows: list[list[str]]) -> bytes:
    from PIL import ImageFont

    font = ImageFont.truetype(FONT, 22)
    im = Image.new("RGB", (200 * len(header), 60 + 44 * (len(rows) + 1)), "white")
    draw = ImageDraw.Draw(im)
    draw.text((14, 10), title, font=font, fill="black")
    for r, cells in enumerate([header] + rows):
        for c, cell in enumerate(cells):
            draw.text((14 + 200 * c, 56 + 44 * r), cell, font=font, fill="black")
    return png(im)


def operators(**on):
    from operators.config import OperatorsConfig
    from operators.registry import build_operators

    cfg = {name: {"backend": "off"} for name in ("ocr", "label_bbox", "face_detection", "image_caption", "rag")}
    cfg.update({name: {"backend": backend} for name, backend in on.items()})
    return build_operators(OperatorsConfig.model_validate(cfg), None)


def reason(sample, image: bytes, ops):
    from generation.rationale import RationaleSettings, generate_trajectory
    from generation.teachers.offline import OfflineTeacher
    from operators.images import LoadedImage

    return asyncio.run(generate_trajectory(sample, [LoadedImage(image)], OfflineTeacher(), ops, RationaleSettings()))


def sample(source: str, subset: str, qas: list[dict], **meta):
    from generation.schema import QA, Sample

    return Sample(id=f"{source}/{subset}/test", source=source, subset=subset, qas=[QA(**qa) for qa in qas], meta=meta)


def last_thought(qa) -> str:
    return qa.steps[-1].thought


# ------------------------------------------------------------------------------ counting (segments)
def test_the_segments_backend_counts_drawn_shapes_and_names_colours_not_classes():
    from operators.label_bbox_segments import read_segments_text

    ops = operators(label_bbox="segments")
    assert ops.backends == {"label_bbox": "segments"}
    result = ops.run("label_bbox", [drawn_scene()], labels=["circle"])
    assert result.backend == "segments" and "no class names" in result.text
    assert read_segments_text(result.text) == (6, {"red": 3, "blue": 2, "green": 1})
    objects = result.data["images"][0]["objects"]
    assert all(0 <= v <= 1 for o in objects for v in o["box"]) and "circle" not in result.text
    nine = [("blue", "circle", 30 + 65 * (i % 5), 40 + 90 * (i // 5)) for i in range(9)]
    assert read_segments_text(ops.run("label_bbox", [drawn_scene(nine)]).text) == (9, {"blue": 9})
    blank = ops.run("label_bbox", [drawn_scene([])]).text
    assert blank.startswith("No separate objects found")


def test_auto_uses_grounding_dino_weights_when_present_else_segments_with_one_log_line(caplog, monkeypatch):
    import logging

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.INFO, logger="mmat.operators"):
        ops = operators(label_bbox="auto")
    assert ops.backends == {"label_bbox": "segments"}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("label_bbox:")]
    assert len(lines) == 1 and "grounding_dino unavailable" in lines[0]
    assert lines[0].endswith("using segments (classical connected components; no class names)")


def test_a_counting_question_is_answered_from_the_objects_the_tool_found():
    ops = operators(label_bbox="segments", image_caption="template")
    choice = sample("cauldron", "iconqa", [
        {"question": "Question: How many shapes are there?\nChoices:\nA. 5\nB. 6\nC. 7", "answer": "B",
         "choices": ["5", "6", "7"]},
        {"question": "How many red objects are there?", "answer": "3"}])
    trajectory = reason(choice, drawn_scene(), ops)
    first, red = trajectory.qas
    assert "label_bbox" in first.steps[0].operators
    assert first.grounded and first.final_answer == "B"
    assert "6 separate objects" in last_thought(first) and "cannot name them" in last_thought(first)
    assert "option B (6)" in last_thought(first)
    assert red.grounded and red.final_answer == "3"
    assert "The question counts the red ones: 3." in last_thought(red)


def test_a_count_the_tool_does_not_find_stays_ungrounded_and_is_quarantined_under_require_grounding():
    from generation.config import TeacherConfig
    from generation.quality.definitions import judge_question
    from generation.schema import Quarantined
    from generation.verify import GROUNDING_REASON, enforce_policy

    ops = operators(label_bbox="segments", image_caption="template")
    # seven shapes asked for, six drawn: the tool's count does not give the reference
    wrong = sample("cauldron", "iconqa", [{"question": "How many shapes are there?", "answer": "7"}])
    trajectory = reason(wrong, drawn_scene(), ops)
    qa = trajectory.qas[0]
    assert qa.grounded is False and qa.final_answer == "7"
    thought = last_thought(qa)
    assert "cannot confirm" in thought and "there are 7" not in thought
    verdict, _ = judge_question(wrong.qas[0].question, qa.steps, qa.final_answer)
    assert not verdict.leaked and not verdict.grounded  # the audit agrees with the engine
    enforce_policy(trajectory, wrong, TeacherConfig(require_grounding=False))  # off: kept, marked
    enforce_policy(trajectory, wrong, TeacherConfig(kind="openai"))  # auto, a model teacher: kept
    for config in (TeacherConfig(), TeacherConfig(require_grounding=True)):  # auto for the offline teacher; on
        with pytest.raises(Quarantined) as caught:
            enforce_policy(trajectory, wrong, config)
        assert str(GROUNDING_REASON) in str(caught.value)


# ---------------------------------------------------------------------------------- tables (OCR)
@pytest.mark.slow
def test_a_tables_superlative_count_and_total_are_read_off_the_ocr_text():
    ops = operators(ocr="rapidocr")
    image = drawn_table("Rainfall", ["City", "Rain (mm)", "Days", "Season"],
                        [["Millbrook", "82", "11", "wet"], ["Stonefield", "64", "9", "dry"],
                         ["Ashford", "95", "14", "wet"], ["Dunmore", "51", "7", "dry"]])
    table = sample("cauldron", "robut_wtq", [
        {"question": "Which city had the most rain?", "answer": "Ashford"},
        {"question": "How many cities are marked wet?", "answer": "2"},
        {"question": "What is the total number of days of the first two cities?", "answer": "20"},
        {"question": "Which city had the fewest days?", "answer": "Dunmore"}])
    most, wet, total, fewest = reason(table, image, ops).qas
    assert all(qa.grounded for qa in (most, wet, total, fewest)), [last_thought(q) for q in (most, wet, total, fewest)]
    assert "Rain: Millbrook 82, Stonefield 64, Ashford 95, Dunmore 51. The largest is 95, Ashford." in last_thought(most)
    assert "Rows marked wet: Millbrook, Ashford. Counting them: 1 + 1 = 2." in last_thought(wet)
    assert "11 + 9 = 20." in last_thought(total)
    assert "The smallest is 7, Dunmore." in last_thought(fewest)


@pytest.mark.slow
def test_a_tabmwp_choice_is_decided_by_the_calculation_and_comparison_written_out():
    ops = operators(ocr="rapidocr")
    image = drawn_table("Toys", ["Toy", "Price"], [["kite", "$6.75"], ["yo-yo", "$2.20"], ["puzzle", "$8.40"]])
    meta = {"table_for_pd": {"Toy": ["kite", "yo-yo", "puzzle"], "Price": ["$6.75", "$2.20", "$8.40"]}}
    solution = ("Add the price of a kite and the price of a yo-yo:\n$6.75 + $2.20 = $8.95\n"
                "$8.95 is less than $12.00. Nina does have enough money.")
    enough = sample("tabmwp", "multi_choice", [
        {"question": "Nina has $12.00. Does she have enough to buy a kite and a yo-yo?\nA. yes\nB. no",
         "answer": "yes", "choices": ["yes", "no"], "source_rationale": solution}], **meta)
    qa = reason(enough, image, ops).qas[0]
    assert qa.grounded and qa.verified
    assert "$6.75 + $2.20 = $8.95" in last_thought(qa) and "$8.95 is less than $12.00" in last_thought(qa)
    assert "This matches option A (yes)" in last_thought(qa)
