"""Operator calls from the rationale loop: local models one at a time, endpoint-bound captions in parallel."""
from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from types import SimpleNamespace

from PIL import Image

from generation.rationale import _call
from operators.config import OperatorsConfig
from operators.images import LoadedImage
from operators.registry import build_operators

REPLY = {"scene_graph": {"objects": ["square"], "attributes": {"square": ["red"]}, "relationships": []},
         "caption": "A red square."}


class SlowEndpoint:
    """A caption endpoint that takes 0.2 s per request and records how many were in flight at once."""

    def __init__(self) -> None:
        self.model_name = "vlm"
        self.in_flight = 0
        self.peak = 0
        self.lock = threading.Lock()

    async def __call__(self, messages, model=None, **params):
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.2)
        with self.lock:
            self.in_flight -= 1
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=json.dumps(REPLY)))])


def _png(colour) -> LoadedImage:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="PNG")
    return LoadedImage(buf.getvalue())


def test_vlm_caption_calls_overlap_but_each_image_gets_its_own_answer():
    endpoint = SlowEndpoint()
    cfg = OperatorsConfig.model_validate({"ocr": {"backend": "off"}, "face_detection": {"backend": "off"},
                                          "label_bbox": {"backend": "off"}, "rag": {"backend": "off"},
                                          "image_caption": {"backend": "vlm"}})

    async def main():
        ops = build_operators(cfg, None, caption_client=endpoint)
        images = [_png((i * 30, 0, 0)) for i in range(6)]
        return await asyncio.gather(*[_call(ops, "image_caption", [im]) for im in images])

    results = asyncio.run(main())
    assert [r.text for r in results] == ["A red square."] * 6
    assert endpoint.peak > 1  # one thread per operator would have made this exactly 1


def test_local_model_operator_runs_one_call_at_a_time():
    cfg = OperatorsConfig.model_validate({"ocr": {"backend": "off"}, "face_detection": {"backend": "off"},
                                          "label_bbox": {"backend": "off"}, "rag": {"backend": "off"},
                                          "image_caption": {"backend": "template"}})
    active, peak = [0], [0]
    guard = threading.Lock()

    async def main():
        ops = build_operators(cfg, None)
        backend = ops.get("image_caption").backend
        original = backend.run

        def counting_run(images, **args):
            with guard:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with guard:
                active[0] -= 1
            return original(images, **args)

        backend.run = counting_run
        try:
            await asyncio.gather(*[_call(ops, "image_caption", [_png((0, i * 40, 0))]) for i in range(5)])
        finally:
            backend.run = original

    asyncio.run(main())
    assert peak[0] == 1
