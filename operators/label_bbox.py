"""`label_bbox`: open-vocabulary detection with Grounding DINO through transformers.

Args: `labels: list[str]` (the teacher's targets; a comma-separated string is accepted) or
`scene_graph: {"objects": [...]}` (from `image_caption`). The prompt is Grounding DINO's
"label one. label two." form. Each query box is assigned to the label whose tokens score highest;
per label, boxes above `box_threshold` go through NMS and the best `max_boxes_per_label` are kept.

`text`: "dog: [0.12, 0.30, 0.55, 0.90]; ball: [..], [..]; cat: not found" — normalised [0,1] xyxy
with 2 decimals (as in the paper's figures). `data` carries 4-decimal boxes, pixel boxes and scores.

Offline with no weights, `backend: auto` falls back to `segments` (`operators.label_bbox_segments`: class-agnostic
objects, no class names), with one log line.
"""
from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from operators.base import (Backend, BackendUnavailable, OperatorError, OperatorResult, package_version,
                            per_image_text)
from operators.images import LoadedImage

MAX_LABELS = 16


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def clean_labels(raw: Any) -> list[str]:
    """Labels as Grounding DINO wants them: lowercase, no periods (they separate labels), unique."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = re.split(r"[,;\n]|\.\s", raw)
    if not isinstance(raw, (list, tuple)):
        raise OperatorError(f"label_bbox labels must be a list of strings, got {type(raw).__name__}")
    out: list[str] = []
    for item in raw:
        if isinstance(item, dict):
            item = item.get("name") or item.get("label") or item.get("object")
        if not isinstance(item, str):
            continue
        label = re.sub(r"\s+", " ", item.replace(".", " ")).strip().lower()
        if label and label not in out:
            out.append(label[:60])
    return out[:MAX_LABELS]


def _nms(boxes: list[list[float]], scores: list[float], iou: float) -> list[int]:
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        ax0, ay0, ax1, ay1 = boxes[i]
        area_a = max(0.0, ax1 - ax0) * max(0.0, ay1 - ay0)
        ok = True
        for j in keep:
            bx0, by0, bx1, by1 = boxes[j]
            inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
            union = area_a + max(0.0, bx1 - bx0) * max(0.0, by1 - by0) - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def bbox_text(labels: list[str], detections: list[dict[str, Any]]) -> str:
    parts = []
    for label in labels:
        boxes = [d["box"] for d in detections if d["label"] == label]
        if boxes:
            parts.append(f"{label}: " + ", ".join("[" + ", ".join(f"{v:.2f}" for v in b) + "]" for b in boxes))
        else:
            parts.append(f"{label}: not found")
    return "; ".join(parts)


class GroundingDinoBackend(Backend):
    operator = "label_bbox"
    name = "grounding_dino"
    requires_modules = ("torch", "transformers")
    install_hint = "pip install torch transformers (or the 'ops' extra)"
    description = "Grounding DINO through transformers"

    def __init__(
        self,
        model: str = "IDEA-Research/grounding-dino-tiny",
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        max_boxes_per_label: int = 3,
        nms_iou: float = 0.5,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.model_id = model
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.max_boxes_per_label = int(max_boxes_per_label)
        self.nms_iou = float(nms_iou)
        self.device = device
        self.version = f"1/transformers-{package_version('transformers').split('.')[0]}"
        self.model = None
        self.processor = None

    def settings(self) -> dict[str, Any]:
        return {
            "model": self._model_fingerprint(),
            "box_threshold": self.box_threshold,
            "text_threshold": self.text_threshold,
            "max_boxes_per_label": self.max_boxes_per_label,
            "nms_iou": self.nms_iou,
        }

    def _model_fingerprint(self) -> str:
        """Hub id, or local folder + weights mtime/size (a re-saved model must not hit old results)."""
        path = Path(self.model_id).expanduser()
        if path.is_dir():
            stats = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in sorted(path.glob("*.safetensors"))]
            return f"{path.resolve()}:{stats}"
        return self.model_id

    def normalize_args(self, args: dict[str, Any]) -> dict[str, Any]:
        labels = clean_labels(args.get("labels"))
        if not labels and isinstance(args.get("scene_graph"), dict):
            labels = clean_labels(args["scene_graph"].get("objects"))
        if not labels:
            raise OperatorError(
                "label_bbox needs labels: pass labels=[...] (object names from the question or the scene graph)"
            )
        return {"labels": labels}

    def check_available(self) -> None:
        super().check_available()
        path = Path(self.model_id).expanduser()
        if path.is_dir() or self.model_id.startswith((".", "/", "~")):
            if not (path / "config.json").is_file():
                raise BackendUnavailable(
                    f"label_bbox/grounding_dino: no config.json in {path}: point operators.label_bbox.model at a "
                    "folder written by save_pretrained (model and processor)"
                )
            return
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(self.model_id, "config.json")
        if isinstance(cached, str):
            return
        fix = (f"download it once with `hf download {self.model_id}` where the Hub is reachable, or set "
               "operators.label_bbox.model to a local folder")
        if _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE"):
            raise BackendUnavailable(
                f"label_bbox/grounding_dino: no weights for {self.model_id} in the Hugging Face cache and "
                f"HF_HUB_OFFLINE is set: {fix}"
            )
        if not any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
            host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
            try:
                socket.getaddrinfo(host, 443)
            except OSError:
                raise BackendUnavailable(
                    f"label_bbox/grounding_dino: no weights for {self.model_id} in the Hugging Face cache and "
                    f"{host} is unreachable: {fix}"
                ) from None

    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        try:
            self.processor = AutoProcessor.from_pretrained(self.model_id)
            self.model = GroundingDinoForObjectDetection.from_pretrained(self.model_id).to(self.device).eval()
        except OSError as exc:
            raise BackendUnavailable(
                f"label_bbox/grounding_dino cannot load {self.model_id}: {' '.join(str(exc).split())[:200]}"
            ) from None
        self._torch = torch

    def detect(self, image, labels: list[str]) -> list[dict[str, Any]]:
        """One upright RGB PIL image and cleaned labels → detections with normalised xyxy boxes."""
        torch = self._torch
        text, spans = "", []
        for label in labels:
            spans.append((len(text), len(text) + len(label)))
            text += label + ". "
        text = text.strip()
        max_len = int(getattr(self.model.config, "max_text_len", 256))
        inputs = self.processor(images=image, text=text, return_tensors="pt")
        ids = inputs["input_ids"]
        if ids.shape[1] > max_len:
            raise OperatorError(f"label_bbox prompt is {ids.shape[1]} tokens, over the model's {max_len}: pass fewer labels")
        enc = self.processor.tokenizer(text, return_offsets_mapping=True)
        if list(enc["input_ids"]) != ids[0].tolist():
            raise OperatorError("label_bbox: tokenizer offsets do not match the processor's input ids")
        label_tokens: list[list[int]] = []
        for start, end in spans:
            label_tokens.append([i for i, (s, e) in enumerate(enc["offset_mapping"]) if e > s and s >= start and e <= end])
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        probs = out.logits[0].sigmoid().float().cpu()  # (queries, max_text_len)
        boxes = out.pred_boxes[0].float().cpu()  # (queries, 4) cx, cy, w, h in [0, 1]
        width, height = image.size
        per_label_scores = torch.stack(
            [probs[:, toks].max(dim=1).values if toks else torch.zeros(probs.shape[0]) for toks in label_tokens], dim=1
        )  # (queries, labels)
        best_score, best_label = per_label_scores.max(dim=1)
        keep = (probs.max(dim=1).values > self.box_threshold) & (best_score > self.text_threshold)
        detections: list[dict[str, Any]] = []
        for li, label in enumerate(labels):
            idx = [int(q) for q in torch.nonzero(keep & (best_label == li)).flatten()]
            cand, scores = [], []
            for q in idx:
                cx, cy, w, h = boxes[q].tolist()
                box = [min(max(v, 0.0), 1.0) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)]
                if box[2] > box[0] and box[3] > box[1]:
                    cand.append(box)
                    scores.append(float(best_score[q]))
            for k in _nms(cand, scores, self.nms_iou)[: self.max_boxes_per_label]:
                b = cand[k]
                detections.append({
                    "label": label,
                    "box": [round(v, 4) for v in b],
                    "box_px": [round(b[0] * width), round(b[1] * height), round(b[2] * width), round(b[3] * height)],
                    "score": round(scores[k], 4),
                })
        return detections

    def run(self, images: Sequence[LoadedImage], labels: list[str] = (), **args: Any) -> OperatorResult:
        texts, per_image = [], []
        for im in images:
            detections = self.detect(im.rgb, list(labels))
            texts.append(bbox_text(list(labels), detections))
            per_image.append({"detections": detections, "width": im.size[0], "height": im.size[1]})
        return self.result(per_image_text(texts), {"labels": list(labels), "images": per_image})
