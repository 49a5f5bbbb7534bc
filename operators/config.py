"""Configuration of the five operators (the `operators:` section of a pipeline YAML).

`backend: auto` tries the real backend first and falls back to the offline default with one log line.
Unknown keys are errors, so a typo never silently turns a feature off.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OcrConfig(_Strict):
    backend: Literal["auto", "paddle", "rapidocr", "off"] = "auto"
    paddle_model_dir: Optional[str] = None
    min_score: float = 0.5


class FaceConfig(_Strict):
    backend: Literal["auto", "deepface", "off"] = "auto"
    min_confidence: float = 0.5


class LabelBboxConfig(_Strict):
    backend: Literal["auto", "grounding_dino", "off"] = "auto"
    model: str = "IDEA-Research/grounding-dino-tiny"
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    device: str = "cpu"


class CaptionConfig(_Strict):
    backend: Literal["auto", "vlm", "template", "off"] = "auto"
    model: Optional[str] = None  # defaults to the teacher's model when the teacher is a VLM endpoint


class RagConfig(_Strict):
    backend: Literal["auto", "web", "local", "off"] = "auto"
    corpus: Optional[str] = None  # folder of *.jsonl passages ({"id", "title", "text"}) for `local`
    top_k: int = 3
    web_engine: str = "duckduckgo"
    timeout_s: float = 5.0


class OperatorsConfig(_Strict):
    cache_dir: Optional[str] = None  # default: <work_dir>/operator-cache
    ocr: OcrConfig = OcrConfig()
    face_detection: FaceConfig = FaceConfig()
    label_bbox: LabelBboxConfig = LabelBboxConfig()
    image_caption: CaptionConfig = CaptionConfig()
    rag: RagConfig = RagConfig()
