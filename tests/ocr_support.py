"""OCR test helpers: rendered text, an OCR-only registry per backend, and the PaddleOCR requirement.

PaddleOCR (the paper's OCR) is installed by `make install`; `make test` sets MMAT_REQUIRE_PADDLE=1, so its
tests fail there, instead of skipping, when the install went wrong.
"""
from __future__ import annotations

import importlib.util
import io
import os

import pytest
from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PADDLE_INSTALLED = importlib.util.find_spec("paddleocr") is not None


def require_paddle() -> None:
    if PADDLE_INSTALLED:
        return
    why = "PaddleOCR is not installed here (make install installs it)"
    if os.environ.get("MMAT_REQUIRE_PADDLE") == "1":
        pytest.fail(why)
    pytest.skip(why)


def ocr_only(backend: str, **ocr):
    """A registry with only OCR on, through `backend`, without result cache (every call runs the model)."""
    from operators.config import OperatorsConfig
    from operators.registry import build_operators

    off = {"backend": "off"}
    cfg = OperatorsConfig.model_validate({"ocr": {"backend": backend, **ocr}, "face_detection": off,
                                          "label_bbox": off, "image_caption": off, "rag": off})
    return build_operators(cfg, None)


def render(lines: list[tuple[tuple[int, int], str]], size=(640, 220), font_size=34) -> Image.Image:
    """Black DejaVu text drawn on white at the given (x, y) positions."""
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    font = ImageFont.truetype(FONT, font_size)
    for xy, text in lines:
        draw.text(xy, text, font=font, fill="black")
    return im


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
