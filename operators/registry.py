"""Choosing a backend per operator from the config, once per process (DESIGN §3).

`build_operators(cfg, cache_dir, caption_client)` → `OperatorSet`:
- `available`: operator names that can run here, in the canonical `OPERATOR_NAMES` order (this is
  what the teacher is offered and what a row's meta records);
- `unavailable`: name → one-line reason with the fix;
- `await call(name, images, **args)` (the engine), `run(name, images, **args)` (plain code), `get(name)`,
  `executions` (backend calls made, summed over operators): an `operators.base.OperatorRunner`.

`backend: auto` tries the real backend first and falls back to the offline default with one INFO
line, e.g. `ocr: paddle unavailable (ocr/paddle needs paddleocr, …); using rapidocr (offline default, …)`.
Availability checks are cheap (imports, files, a DNS/probe for network backends); models load lazily
on first use and are shared by every `OperatorSet` of the process with the same settings.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from operators import OPERATOR_NAMES
from operators.base import Backend, BackendUnavailable, Operator, OperatorResult
from operators.cache import OperatorCache
from operators.config import OperatorsConfig

log = logging.getLogger("mmat.operators")

# (backend class name, settings JSON, client id) → backend instance: models load once per process.
_BACKENDS: dict[tuple[str, str, int], Backend] = {}
_BACKENDS_LOCK = threading.Lock()


def _shared(cls: type[Backend], client: Any = None, **kwargs: Any) -> Backend:
    key = (cls.__qualname__, json.dumps(kwargs, sort_keys=True, default=str), id(client) if client is not None else 0)
    with _BACKENDS_LOCK:
        backend = _BACKENDS.get(key)
        if backend is None:
            backend = cls(client=client, **kwargs) if client is not None else cls(**kwargs)
            _BACKENDS[key] = backend
        return backend


def _candidates(name: str, cfg: OperatorsConfig, cache_dir: Optional[Path], caption_client: Any,
                caption_model: Optional[str]) -> list[tuple[str, Callable[[], Backend]]]:
    """(backend name, factory) in `auto` preference order: real backend first, offline default last."""
    if name == "ocr":
        from operators.ocr import PaddleOcrBackend, RapidOcrBackend

        c = cfg.ocr
        return [
            ("paddle", lambda: _shared(
                PaddleOcrBackend, model_dir=c.paddle_model_dir, det_model=c.paddle_det_model, rec_model=c.paddle_rec_model,
                det_model_dir=c.paddle_det_model_dir, rec_model_dir=c.paddle_rec_model_dir,
                cpu_threads=c.paddle_cpu_threads, min_score=c.min_score).use_cache_dir(cache_dir)),
            ("rapidocr", lambda: _shared(RapidOcrBackend, min_score=c.min_score)),
        ]
    if name == "face_detection":
        from operators.face_detection import DeepFaceBackend

        c = cfg.face_detection
        return [("deepface", lambda: _shared(DeepFaceBackend, detector=c.detector, min_confidence=c.min_confidence))]
    if name == "label_bbox":
        from operators.label_bbox import GroundingDinoBackend
        from operators.label_bbox_segments import SegmentsBackend

        c = cfg.label_bbox
        return [
            ("grounding_dino", lambda: _shared(
                GroundingDinoBackend, model=c.model, box_threshold=c.box_threshold, text_threshold=c.text_threshold,
                max_boxes_per_label=c.max_boxes_per_label, nms_iou=c.nms_iou, device=c.device)),
            ("segments", lambda: _shared(SegmentsBackend, min_area=c.segments_min_area,
                                         min_contrast=c.segments_min_contrast)),
        ]
    if name == "image_caption":
        from operators.image_caption import TemplateCaptionBackend, VlmCaptionBackend

        c = cfg.image_caption
        model = c.model or caption_model or getattr(caption_client, "model_name", None) or getattr(caption_client, "model", None)
        model = model if isinstance(model, str) else None
        return [
            ("vlm", lambda: VlmCaptionBackend(client=caption_client, model=model, max_tokens=c.max_tokens,
                                              temperature=c.temperature, max_image_side=c.max_image_side)),
            ("template", lambda: _shared(TemplateCaptionBackend)),
        ]
    if name == "rag":
        from operators.rag import LocalRagBackend, WebRagBackend

        c = cfg.rag
        index_dir = (cache_dir / "rag-index") if cache_dir else None
        return [
            ("web", lambda: _shared(WebRagBackend, engine=c.web_engine, top_k=c.top_k, timeout_s=c.timeout_s,
                                    max_passage_chars=c.max_passage_chars)),
            ("local", lambda: _shared(LocalRagBackend, corpus=c.corpus, top_k=c.top_k, index_dir=index_dir,
                                      max_passage_chars=c.max_passage_chars)),
        ]
    raise KeyError(name)


class OperatorSet:
    """The operators this run can use (an `OperatorRunner`). Safe to call from several threads and
    coroutines at once."""

    def __init__(self, operators: dict[str, Operator], unavailable: dict[str, str]) -> None:
        self._operators = operators
        self.available: list[str] = [n for n in OPERATOR_NAMES if n in operators]
        self.unavailable: dict[str, str] = {n: unavailable[n] for n in OPERATOR_NAMES if n in unavailable}

    @property
    def backends(self) -> dict[str, str]:
        """name → backend name actually used (for the row's meta and the card)."""
        return {n: self._operators[n].backend.name for n in self.available}

    @property
    def executions(self) -> int:
        return sum(op.executions for op in self._operators.values())

    def describe(self) -> dict[str, Any]:
        """What a row's meta records: which operators were offered, through which backend, and why not."""
        return {"available": list(self.available), "backends": self.backends, "unavailable": dict(self.unavailable)}

    def get(self, name: str) -> Operator:
        if name in self._operators:
            return self._operators[name]
        if name in self.unavailable:
            raise BackendUnavailable(f"{name} is unavailable here: {self.unavailable[name]}")
        raise KeyError(f"unknown operator {name!r}; operators are {', '.join(OPERATOR_NAMES)}")

    async def call(self, name: str, images: Sequence[Any], **args: Any) -> OperatorResult:
        return await self.get(name).call(images, **args)

    def run(self, name: str, images: Sequence[Any], **args: Any) -> OperatorResult:
        return self.get(name).run(images, **args)

    def __contains__(self, name: object) -> bool:
        return name in self._operators


def build_operators(
    cfg: OperatorsConfig,
    cache_dir: Optional[Path],
    caption_client: Any = None,
    *,
    caption_model: Optional[str] = None,
) -> OperatorSet:
    """Pick one backend per operator (see the module docstring). `cache_dir=None` disables the result
    cache (every call executes). `caption_model` names the VLM for `image_caption`/`vlm` when the
    config does not (the teacher's model); a client with `model_name`/`model` works too."""
    cache = None
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache = OperatorCache(cache_dir / "results")
    try:
        loop: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    operators: dict[str, Operator] = {}
    unavailable: dict[str, str] = {}
    for name in OPERATOR_NAMES:
        choice = getattr(cfg, name).backend
        if choice == "off":
            unavailable[name] = f"disabled in config (operators.{name}.backend: off)"
            log.info("%s: off (disabled in config)", name)
            continue
        candidates = _candidates(name, cfg, cache_dir, caption_client, caption_model)
        if choice != "auto":
            candidates = [c for c in candidates if c[0] == choice]
        usable: list[Backend] = []
        reasons: list[tuple[str, str]] = []
        for backend_name, factory in candidates:
            try:
                backend = factory()
                backend.check_available()
            except BackendUnavailable as exc:
                reasons.append((backend_name, str(exc)))
                continue
            usable.append(backend)
        if not usable:
            reason = "; ".join(r for _, r in reasons) or "no backend"
            unavailable[name] = reason
            log.info("%s: unavailable (%s)", name, reason)
            continue
        chosen = usable[0]
        operators[name] = Operator(chosen, cache, fallbacks=usable[1:] if choice == "auto" else (), loop=loop)
        what = f"{chosen.name} ({chosen.description})" if chosen.description else chosen.name
        if reasons:
            skipped = "; ".join(f"{b} unavailable ({r})" for b, r in reasons)
            log.info("%s: %s; using %s", name, skipped, what)
        else:
            log.info("%s: using %s", name, what)
    return OperatorSet(operators, unavailable)
