"""The result cache (a rerun of the same config executes nothing) and the registry's choices."""
from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from operators.base import OPERATOR_NAMES, BackendUnavailable
from operators.config import OperatorsConfig
from operators.registry import build_operators

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def images():
    page = Image.new("RGB", (420, 110), "white")
    ImageDraw.Draw(page).text((20, 30), "Cache me 77", font=ImageFont.truetype(FONT, 36), fill="black")
    return {"page": png(page), "photo": png(Image.fromarray(data.astronaut()))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "p.jsonl").write_text(
        json.dumps({"id": "1", "title": "Everest", "text": "Mount Everest is the highest mountain."}) + "\n"
        + json.dumps({"id": "2", "title": "Nile", "text": "The Nile is a long river in Africa."}) + "\n"
    )
    return folder


def config(corpus, **over):
    base = {"label_bbox": {"backend": "off"}, "rag": {"corpus": str(corpus)}}
    base.update(over)
    return OperatorsConfig.model_validate(base)


def run_all(ops, images):
    return [
        ops.run("ocr", [images["page"]]),
        ops.run("face_detection", [images["photo"]]),
        ops.run("image_caption", [images["photo"]], context=["There is one face"]),
        ops.run("rag", [], query="highest mountain"),
    ]


def test_second_run_of_same_config_performs_zero_executions(tmp_path, images, corpus):
    first = build_operators(config(corpus), tmp_path)
    results = run_all(first, images)
    assert first.executions == 4 and not any(r.cached for r in results)

    again = build_operators(config(corpus), tmp_path)  # a new process would build exactly this
    cached = run_all(again, images)
    assert again.executions == 0
    assert all(r.cached for r in cached)
    assert [r.text for r in cached] == [r.text for r in results]
    assert [r.data for r in cached] == [r.data for r in results]

    # Different args, images or settings are different keys.
    again.run("image_caption", [images["photo"]], context=["Two faces"])
    again.run("rag", [], query="longest river")
    again.run("ocr", [images["page"], images["page"]])
    assert again.executions == 3
    stricter = build_operators(config(corpus, ocr={"min_score": 0.9}), tmp_path)
    assert not stricter.run("ocr", [images["page"]]).cached and stricter.executions == 1
    # Stray arguments a teacher adds do not change the key (and do not fail the call).
    assert again.run("ocr", [images["page"]], language="en").cached


def test_no_cache_dir_executes_every_time(images, corpus):
    ops = build_operators(config(corpus), None)
    ops.run("ocr", [images["page"]])
    ops.run("ocr", [images["page"]])
    assert ops.executions == 2


@pytest.fixture()
def without_paddle(monkeypatch):
    """PaddleOCR made unimportable (as on a machine without it): `auto` must fall back to rapidocr."""
    monkeypatch.setitem(sys.modules, "paddleocr", None)


def test_available_in_canonical_order_with_one_log_line_each(tmp_path, corpus, caplog, without_paddle):
    with caplog.at_level(logging.INFO, logger="mmat.operators"):
        ops = build_operators(config(corpus), tmp_path)
    assert ops.available == ["image_caption", "ocr", "face_detection", "rag"]
    assert ops.backends == {"image_caption": "template", "ocr": "rapidocr", "face_detection": "deepface",
                            "rag": "local"}
    assert ops.unavailable == {"label_bbox": "disabled in config (operators.label_bbox.backend: off)"}
    lines = [r.getMessage() for r in caplog.records if r.name == "mmat.operators"]
    assert [line.split(":")[0] for line in lines] == list(OPERATOR_NAMES)
    ocr_line = next(line for line in lines if line.startswith("ocr:"))
    assert ocr_line.startswith("ocr: paddle unavailable (ocr/paddle needs paddleocr") and "make install" in ocr_line
    assert ocr_line.endswith("; using rapidocr (offline default, PP-OCR ONNX models bundled in the wheel)")
    assert ops.describe() == {"available": ops.available, "backends": ops.backends, "unavailable": ops.unavailable}


def test_explicit_backend_that_cannot_run_is_unavailable_with_its_fix(tmp_path, corpus, without_paddle):
    ops = build_operators(config(corpus, ocr={"backend": "paddle"}), tmp_path)
    assert "ocr" not in ops.available
    assert "requirements/paddle-nodeps.txt" in ops.unavailable["ocr"]
    with pytest.raises(BackendUnavailable, match="ocr is unavailable here"):
        ops.get("ocr")
    with pytest.raises(KeyError, match="unknown operator"):
        ops.get("sketch")


def test_unknown_config_key_is_rejected():
    with pytest.raises(ValueError):
        OperatorsConfig.model_validate({"ocr": {"backnd": "paddle"}})
