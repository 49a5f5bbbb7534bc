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

    # Different args, images or settings are different keys; args a backend does not read are not
    # (the template caption reports only what it computed: another context gives the same caption).
    assert again.run("image_caption", [images["photo"]], context=["Two faces"]).cached
    again.run("image_caption", [images["page"]])
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


# ---------------------------------------------------------------------------------- the cache's contract
def _key(**over):
    from operators.cache import OperatorCache

    fields = {"operator": "ocr", "backend": "rapidocr", "version": "1.4.4", "images": [_image("a" * 64)],
              "args": {"lang": "en", "min_score": 0.5}}
    fields.update(over)
    return OperatorCache.key(**fields)


def _image(sha: str):
    from operators.images import LoadedImage

    image = LoadedImage.__new__(LoadedImage)
    try:
        image.sha256 = sha
    except Exception:  # noqa: BLE001
        object.__setattr__(image, "sha256", sha)
    return image


@pytest.mark.parametrize("change", [{"operator": "label_bbox"}, {"backend": "paddleocr"}, {"version": "1.4.5"},
                                    {"args": {"lang": "ch", "min_score": 0.5}}, {"images": "other"},
                                    {"images": "two"}])
def test_the_key_changes_with_everything_that_changes_a_result(change):
    """A backend upgrade (version), another backend, operator, argument or image must never reuse a result."""
    base = _key(images=[_image("a" * 64)])
    if change.get("images") == "other":
        change = {"images": [_image("b" * 64)]}
    elif change.get("images") == "two":
        change = {"images": [_image("a" * 64), _image("a" * 64)]}
    assert _key(**{"images": [_image("a" * 64)], **change}) != base


def test_the_key_ignores_argument_order_only():
    a = _key(images=[_image("a" * 64)], args={"lang": "en", "min_score": 0.5})
    b = _key(images=[_image("a" * 64)], args={"min_score": 0.5, "lang": "en"})
    assert a == b and len(a) == 64


@pytest.mark.parametrize("damage", [b"", b"{", b"null", b"[1, 2]", b'{"operator": "ocr"}', b"\xff\xfe garbage"])
def test_a_corrupt_entry_is_a_miss_and_is_rewritten(tmp_path, damage):
    from operators.cache import OperatorCache
    from operators.result import OperatorResult

    cache = OperatorCache(tmp_path)
    result = OperatorResult(operator="ocr", text="77", backend="rapidocr", version="1")
    cache.put("cd" * 32, result)
    assert cache.get("cd" * 32) == result
    cache._path("cd" * 32).write_bytes(damage)
    assert cache.get("cd" * 32) is None  # a miss: the operator runs again
    cache.put("cd" * 32, result)
    assert cache.get("cd" * 32) == result


def test_put_publishes_through_a_temp_file_and_leaves_none(tmp_path, monkeypatch):
    import os

    from operators.cache import OperatorCache
    from operators.result import OperatorResult

    cache = OperatorCache(tmp_path)
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: replaced.append((str(src), str(dst))) or real_replace(src, dst))
    cache.put("ef" * 32, OperatorResult(operator="ocr", text="t", backend="b", version="1"))
    [(src, dst)] = replaced
    assert dst == str(cache._path("ef" * 32)) and os.path.basename(src).startswith(".tmp-")
    assert sorted(p.name for p in cache._path("ef" * 32).parent.iterdir()) == [f"{'ef' * 32}.json"]
