"""OCR and face detection on real pixels: rendered text read exactly, a real photo's face found,
no face on a text-only image, reading order, per-image prefixes, concurrent calls. The OCR tests run
through both backends (`ocr_ops`, tests/conftest.py): PaddleOCR and rapidocr answer alike."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from skimage import data

from operators.config import OperatorsConfig
from operators.ocr import reading_order
from operators.registry import build_operators
from tests.ocr_support import png, render


@pytest.fixture(scope="module")
def ops():
    cfg = OperatorsConfig.model_validate(
        {"ocr": {"backend": "off"}, "label_bbox": {"backend": "off"}, "rag": {"backend": "off"},
         "image_caption": {"backend": "off"}}
    )
    return build_operators(cfg, None)  # no cache: every call runs the model


@pytest.fixture(scope="module")
def astronaut() -> bytes:
    return png(Image.fromarray(data.astronaut()))


def test_ocr_reads_rendered_lines_exactly_in_reading_order(ocr_ops):
    # Drawn bottom line first: the output must still be top to bottom.
    image = render([((20, 120), "Second line: MMAT-1M"), ((20, 30), "Hello World 2025")])
    result = ocr_ops.run("ocr", [png(image)])
    assert result.backend == ocr_ops.backends["ocr"]
    assert result.text == "Hello World 2025\nSecond line: MMAT-1M"
    lines = result.data["images"][0]["lines"]
    assert [line["text"] for line in lines] == ["Hello World 2025", "Second line: MMAT-1M"]
    for line in lines:
        assert len(line["box"]) == 4 and 0 < line["score"] <= 1
        xs = [p[0] for p in line["box"]]
        assert 0 <= min(xs) < max(xs) <= 640


def test_ocr_on_blank_image_says_no_text(ocr_ops):
    result = ocr_ops.run("ocr", [png(Image.new("RGB", (300, 200), "white"))])
    assert result.text == "No text detected."
    assert result.data["images"][0]["lines"] == []


def test_reading_order_joins_a_row_and_sorts_left_to_right():
    def box(x0, y0, x1, y1):
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]

    lines = [
        {"text": "right", "box": box(300, 12, 400, 40)},
        {"text": "below", "box": box(10, 80, 100, 110)},
        {"text": "left", "box": box(10, 10, 100, 38)},
    ]
    rows = reading_order(lines)
    assert [[seg["text"] for seg in row] for row in rows] == [["left", "right"], ["below"]]


def test_face_found_in_real_photo_with_pixel_box(ops, astronaut):
    result = ops.run("face_detection", [astronaut])
    assert result.backend == "deepface"
    faces = result.data["images"][0]["faces"]
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0]["box"]
    # Eileen Collins' face in skimage's astronaut (512x512): eyes near (200-250, 100).
    assert x1 < 200 < 250 < x2 and y1 < 100 < y2
    assert 40 < x2 - x1 < 200 and 40 < y2 - y1 < 200
    assert result.text == f"There is one face with a coordinate: [{x1}, {y1}, {x2}, {y2}]"


def test_no_face_on_text_only_image(ops):
    result = ops.run("face_detection", [png(render([((20, 40), "No faces here, only words 42")]))])
    assert result.text == "No face detected."
    assert result.data["images"][0]["faces"] == []


def test_several_images_are_prefixed_and_two_faces_are_plural(ops, astronaut):
    text_only = png(render([((20, 40), "Plain text")]))
    result = ops.run("face_detection", [astronaut, text_only])
    first, second = result.text.split("\n")
    assert first.startswith("Image 1: There is one face with a coordinate: [")
    assert second == "Image 2: No face detected."

    # Two astronauts side by side: two faces, sorted left to right, second about 512 px to the right.
    pair = Image.new("RGB", (1024, 512))
    photo = Image.fromarray(data.astronaut())
    pair.paste(photo, (0, 0))
    pair.paste(photo, (512, 0))
    result = ops.run("face_detection", [png(pair)])
    faces = result.data["images"][0]["faces"]
    assert len(faces) == 2 and abs(faces[1]["box"][0] - faces[0]["box"][0] - 512) <= 8
    assert result.text.startswith("There are 2 faces with coordinates: [")


def test_concurrent_calls_from_threads_give_each_its_own_answer(ocr_ops):
    words = ["alpha 101", "bravo 202", "charlie 303", "delta 404"]
    images = [png(render([((20, 40), w)], size=(400, 120))) for w in words]
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda b: ocr_ops.run("ocr", [b]).text, images))
    assert texts == words
