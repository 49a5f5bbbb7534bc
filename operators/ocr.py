"""`ocr`: text in reading order, with boxes.

Backends: `paddle` (PaddleOCR 3.x, the paper's choice; extra `paddle`, needs its model files) and
`rapidocr` (offline default: the same PP-OCR model family as ONNX files bundled in the wheel).

`text` is the recognised lines in reading order (top to bottom, left to right; segments on one
visual row joined by a space), or "No text detected."; `data["lines"]` holds every segment with its
score and its quadrilateral box in pixels of the upright image.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from operators.base import Backend, BackendUnavailable, OperatorResult, per_image_text, quote_data
from operators.images import LoadedImage

log = logging.getLogger("mmat.operators")

NO_TEXT = "No text detected."


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "0"


def reading_order(lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group segments into visual rows (vertical centres within half a line height of the row) and
    sort rows top to bottom, segments left to right. Each line has `box` = 4 [x, y] points."""
    items = []
    for line in lines:
        pts = np.asarray(line["box"], dtype=float)
        y0, y1 = pts[:, 1].min(), pts[:, 1].max()
        items.append(((y0 + y1) / 2, max(y1 - y0, 1.0), pts[:, 0].min(), line))
    items.sort(key=lambda it: (it[0], it[2]))
    rows: list[list[tuple]] = []
    for item in items:
        if rows:
            row = rows[-1]
            centre = sum(it[0] for it in row) / len(row)
            height = sum(it[1] for it in row) / len(row)
            if abs(item[0] - centre) <= 0.5 * min(height, item[1]):
                row.append(item)
                continue
        rows.append([item])
    return [[it[3] for it in sorted(row, key=lambda it: it[2])] for row in rows]


def _format(lines: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    rows = reading_order(lines)
    ordered = [line for row in rows for line in row]
    text = "\n".join(" ".join(line["text"] for line in row) for row in rows)
    return (text or NO_TEXT), ordered


class RapidOcrBackend(Backend):
    operator = "ocr"
    name = "rapidocr"
    requires_modules = ("rapidocr", "onnxruntime")
    install_hint = "pip install 'rapidocr>=3' onnxruntime (or the 'ops' extra)"
    description = "offline default, PP-OCR ONNX models bundled in the wheel"

    def __init__(self, min_score: float = 0.5) -> None:
        super().__init__()
        self.min_score = float(min_score)
        self.version = f"1/rapidocr-{_version('rapidocr')}"
        self.engine = None

    def settings(self) -> dict[str, Any]:
        return {"min_score": self.min_score}

    def check_available(self) -> None:
        super().check_available()
        import importlib.util

        spec = importlib.util.find_spec("rapidocr")
        models = Path(spec.origin).parent / "models" if spec and spec.origin else None
        found = sorted(p.name for p in models.glob("*.onnx")) if models and models.is_dir() else []
        if not any("det" in n for n in found) or not any("rec" in n for n in found):
            raise BackendUnavailable(
                f"ocr/rapidocr has no bundled ONNX models under {models}: reinstall rapidocr>=3 "
                "(its wheel ships the PP-OCR det/rec/cls models)"
            )

    def load(self) -> None:
        from rapidocr import RapidOCR

        self.engine = RapidOCR(params={"Global.log_level": "warning", "Global.text_score": self.min_score})

    def recognise(self, image) -> list[dict[str, Any]]:
        """The library call on one upright RGB PIL image → segments (unsorted)."""
        out = self.engine(image)
        if out is None or out.txts is None or out.boxes is None:
            return []
        lines = []
        for text, score, box in zip(out.txts, out.scores, out.boxes):
            text = quote_data(text)
            if text and float(score) >= self.min_score:
                lines.append({"text": text, "score": round(float(score), 4),
                              "box": [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(box)]})
        return lines

    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        texts, per_image = [], []
        for im in images:
            text, ordered = _format(self.recognise(im.rgb))
            texts.append(text)
            per_image.append({"lines": ordered, "width": im.size[0], "height": im.size[1]})
        return self.result(per_image_text(texts), {"images": per_image})


class PaddleOcrBackend(Backend):
    """PaddleOCR 3.x (`PaddleOCR(...).predict(array)` → `rec_texts`, `rec_scores`, `rec_polys`)."""

    operator = "ocr"
    name = "paddle"
    requires_modules = ("paddleocr", "paddle")
    install_hint = "pip install 'mmat-1m[paddle]' (paddleocr>=3 and paddlepaddle>=3)"
    description = "PaddleOCR, the paper's OCR"

    def __init__(self, model_dir: Optional[str] = None, min_score: float = 0.5) -> None:
        super().__init__()
        self.model_dir = model_dir
        self.min_score = float(min_score)
        self.version = f"1/paddleocr-{_version('paddleocr')}"
        self.engine = None
        self._models: dict[str, Path] = {}

    def settings(self) -> dict[str, Any]:
        return {"min_score": self.min_score, "models": sorted(p.name for p in self._models.values())}

    def _find_models(self) -> dict[str, Path]:
        roots = [Path(self.model_dir).expanduser()] if self.model_dir else [
            Path(os.environ.get("PADDLE_PDX_CACHE_HOME", Path.home() / ".paddlex")) / "official_models"
        ]
        found: dict[str, Path] = {}
        for root in roots:
            if not root.is_dir():
                continue
            for sub in sorted(root.iterdir()):
                if not sub.is_dir() or not any(sub.glob("inference.*")):
                    continue
                for kind in ("det", "rec"):
                    if sub.name == kind or sub.name.endswith(f"_{kind}"):
                        found.setdefault(kind, sub)
        return found

    def check_available(self) -> None:
        super().check_available()
        self._models = self._find_models()
        if set(self._models) != {"det", "rec"}:
            where = self.model_dir or "~/.paddlex/official_models"
            raise BackendUnavailable(
                f"PaddleOCR needs its model files (no *_det and *_rec inference models in {where}): "
                "set operators.ocr.paddle_model_dir to a folder holding e.g. PP-OCRv5_server_det/ and "
                "PP-OCRv5_server_rec/, or run PaddleOCR once with network so it downloads them"
            )

    def load(self) -> None:
        if not self._models:
            self.check_available()
        from paddleocr import PaddleOCR

        det, rec = self._models["det"], self._models["rec"]
        kwargs: dict[str, Any] = {
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": False,
            "text_detection_model_dir": str(det),
            "text_recognition_model_dir": str(rec),
        }
        if det.name not in ("det",):
            kwargs["text_detection_model_name"] = det.name
        if rec.name not in ("rec",):
            kwargs["text_recognition_model_name"] = rec.name
        self.engine = PaddleOCR(**kwargs)

    def recognise(self, image) -> list[dict[str, Any]]:
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        lines = []
        for res in self.engine.predict(bgr):
            texts, scores, polys = res["rec_texts"], res["rec_scores"], res["rec_polys"]
            for text, score, poly in zip(texts, scores, polys):
                text = quote_data(text)
                if text and float(score) >= self.min_score:
                    lines.append({"text": text, "score": round(float(score), 4),
                                  "box": [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(poly)]})
        return lines

    run = RapidOcrBackend.run
