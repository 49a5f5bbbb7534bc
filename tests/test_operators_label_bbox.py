"""label_bbox through the real transformers code path, on a tiny randomly initialised Grounding DINO
built from a config (its boxes mean nothing; their form is what is checked), and its offline
unavailability when no weights exist."""
from __future__ import annotations

import io
import logging
import re

import pytest
from PIL import Image
from skimage import data

from operators.base import BackendUnavailable, OperatorError
from operators.config import OperatorsConfig
from operators.registry import build_operators
from tests.tiny_grounding_dino import build_tiny_grounding_dino

ONLY_BBOX = {"ocr": {"backend": "off"}, "face_detection": {"backend": "off"}, "rag": {"backend": "off"},
             "image_caption": {"backend": "off"}}


@pytest.fixture(scope="module")
def tiny_grounding_dino(tmp_path_factory) -> str:
    return build_tiny_grounding_dino(tmp_path_factory.mktemp("tiny-grounding-dino"))


@pytest.fixture(scope="module")
def photo() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


def build(model: str, **bbox):
    cfg = OperatorsConfig.model_validate({**ONLY_BBOX, "label_bbox": {"model": model, **bbox}})
    return build_operators(cfg, None)


BOX = r"\[(\d\.\d\d), (\d\.\d\d), (\d\.\d\d), (\d\.\d\d)\]"


def test_tiny_model_returns_well_formed_normalised_boxes_per_label(tiny_grounding_dino, photo):
    ops = build(tiny_grounding_dino, box_threshold=0.0, text_threshold=0.0, max_boxes_per_label=2)
    assert ops.available == ["label_bbox"] and ops.backends == {"label_bbox": "grounding_dino"}
    result = ops.run("label_bbox", [photo], labels=["Person", "american flag.", "helmet", "person"])
    assert result.data["labels"] == ["person", "american flag", "helmet"]  # cleaned, deduplicated
    detections = result.data["images"][0]["detections"]
    assert detections, "threshold 0 keeps every query: there must be boxes"
    for det in detections:
        x1, y1, x2, y2 = det["box"]
        assert 0.0 <= x1 < x2 <= 1.0 and 0.0 <= y1 < y2 <= 1.0
        px = det["box_px"]
        assert 0 <= px[0] <= px[2] <= 512 and 0 <= px[1] <= px[3] <= 512
        assert det["label"] in result.data["labels"] and 0.0 <= det["score"] <= 1.0
    for label in result.data["labels"]:
        assert sum(d["label"] == label for d in detections) <= 2
    # Text: "label: [x1, y1, x2, y2], ...; label: ..." in label order, 2 decimals, or "not found".
    parts = result.text.split("; ")
    assert [p.split(":")[0] for p in parts] == result.data["labels"]
    for part in parts:
        body = part.split(": ", 1)[1]
        assert body == "not found" or re.fullmatch(f"{BOX}(, {BOX})*", body)


def test_nothing_above_threshold_reads_not_found_and_scene_graph_gives_labels(tiny_grounding_dino, photo):
    ops = build(tiny_grounding_dino, box_threshold=1.0)
    result = ops.run("label_bbox", [photo], scene_graph={"objects": ["dog", {"name": "red ball"}]})
    assert result.text == "dog: not found; red ball: not found"
    two = ops.run("label_bbox", [photo, photo], labels="dog, red ball")
    assert two.text == "Image 1: dog: not found; red ball: not found\nImage 2: dog: not found; red ball: not found"


def test_labels_are_required(tiny_grounding_dino, photo):
    ops = build(tiny_grounding_dino)
    with pytest.raises(OperatorError, match="label_bbox needs labels"):
        ops.run("label_bbox", [photo])
    with pytest.raises(OperatorError, match="label_bbox needs labels"):
        ops.run("label_bbox", [photo], labels=[" ", "."])


def test_offline_without_weights_is_unavailable_with_the_fix(caplog):
    # named, not auto: auto falls back to `segments` (tests/test_offline_teacher_grounding.py)
    with caplog.at_level(logging.INFO, logger="mmat.operators"):
        ops = build("IDEA-Research/grounding-dino-tiny", backend="grounding_dino")
    assert ops.available == []
    reason = ops.unavailable["label_bbox"]
    assert "IDEA-Research/grounding-dino-tiny" in reason and "HF_HUB_OFFLINE" in reason
    assert "operators.label_bbox.model" in reason
    assert ops.describe()["unavailable"]["label_bbox"] == reason
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("label_bbox:")] == [
        f"label_bbox: unavailable ({reason})"
    ]
    with pytest.raises(BackendUnavailable, match="label_bbox is unavailable here"):
        ops.run("label_bbox", [], labels=["dog"])


def test_local_folder_without_config_is_unavailable(tmp_path):
    ops = build(str(tmp_path), backend="grounding_dino")
    assert "no config.json" in ops.unavailable["label_bbox"]
