"""`face_detection`: deepface with the OpenCV (Haar cascade) detector, pixel boxes as in the paper.

"There is one face with a coordinate: [x1, y1, x2, y2]" / "There are 2 faces with coordinates:
[...], [...]" / "No face detected." Coordinates are integer pixels of the upright image, xyxy.

deepface returns the whole image with confidence 0 when it finds nothing (with
`enforce_detection=False`); those, and anything under `min_confidence`, are dropped so a face-free
image never reports a face.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from operators.base import Backend, BackendUnavailable, OperatorResult, package_version, per_image_text
from operators.images import LoadedImage

NO_FACE = "No face detected."


def face_text(boxes: list[list[int]]) -> str:
    if not boxes:
        return NO_FACE
    coords = ", ".join(str(list(b)) for b in boxes)
    if len(boxes) == 1:
        return f"There is one face with a coordinate: {coords}"
    return f"There are {len(boxes)} faces with coordinates: {coords}"


class DeepFaceBackend(Backend):
    operator = "face_detection"
    name = "deepface"
    requires_modules = ("deepface", "cv2", "werkzeug")
    install_hint = "pip install deepface werkzeug 'opencv-python-headless<5' (or the 'ops' extra)"
    description = "opencv detector, weights ship with OpenCV"

    def __init__(self, detector: str = "opencv", min_confidence: float = 0.5) -> None:
        super().__init__()
        self.detector = detector
        self.min_confidence = float(min_confidence)
        self.version = f"1/deepface-{package_version('deepface')}"
        self._extract = None

    def settings(self) -> dict[str, Any]:
        return {"detector": self.detector, "min_confidence": self.min_confidence}

    def check_available(self) -> None:
        super().check_available()
        if self.detector != "opencv":
            raise BackendUnavailable(
                f"face_detection/deepface detector {self.detector!r} downloads weights at first use; "
                "only 'opencv' runs offline: set operators.face_detection.detector: opencv"
            )
        import cv2

        cascade = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / "haarcascade_frontalface_default.xml"
        if not cascade.is_file():
            raise BackendUnavailable(
                f"face_detection/deepface needs OpenCV's Haar cascades, missing in opencv {cv2.__version__} "
                "(OpenCV 5 dropped them): pip install 'opencv-python-headless<5' 'opencv-contrib-python-headless<5'"
            )

    def load(self) -> None:
        home = os.environ.get("DEEPFACE_HOME")
        if home:
            Path(home).mkdir(parents=True, exist_ok=True)
        from deepface import DeepFace

        self._extract = DeepFace.extract_faces

    def detect(self, image) -> list[dict[str, Any]]:
        """The library call on one upright RGB PIL image → faces above the confidence threshold."""
        bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
        found = self._extract(bgr, detector_backend=self.detector, enforce_detection=False, align=False)
        width, height = image.size
        faces = []
        for face in found:
            conf = float(face.get("confidence") or 0.0)
            area = face.get("facial_area") or {}
            if conf <= 0.0 or conf < self.min_confidence:
                continue
            x, y, w, h = (int(area.get(k, 0)) for k in ("x", "y", "w", "h"))
            if w <= 0 or h <= 0 or (w >= width - 1 and h >= height - 1 and conf == 0.0):
                continue
            box = [max(0, x), max(0, y), min(width, x + w), min(height, y + h)]
            faces.append({"box": box, "confidence": round(conf, 4)})
        faces.sort(key=lambda f: (f["box"][0], f["box"][1]))
        return faces

    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        texts, per_image = [], []
        for im in images:
            faces = self.detect(im.rgb)
            texts.append(face_text([f["box"] for f in faces]))
            per_image.append({"faces": faces, "width": im.size[0], "height": im.size[1]})
        return self.result(per_image_text(texts), {"images": per_image})
