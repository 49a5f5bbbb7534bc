"""Operator throughput and our overhead against calling each backend library directly.

For every operator with a backend that runs here, the same images go through
  direct: the library call alone, on pixels decoded with PIL (what any caller must do), and
  ours:   `Operator.run([LoadedImage(bytes)])` without cache: hashing, EXIF/mode handling,
          argument normalisation, locking, reading order / formatting, result model,
in alternating rounds on the same loaded model; the median round per side is reported. A third
column is the cached rerun (every call a cache hit). Goal: overhead <= 5 %.

OCR also runs its two backends side by side (PaddleOCR, the paper's OCR, and rapidocr, its fallback) on
the same rendered images: single lines, multi-line pages, rotated lines and small text, each with its
known text. Per set: images/s of each backend (paired timing, alternating which goes first) and the
exact-match rate (the operator's whole `text` equals the rendered text). Both run with their default
settings; rapidocr's detector scales an image's short side up to 736 px, so short, wide strips (the
single-line and small sets) cost it far more than a page does.

    .venv/bin/python benchmarks/operators.py [--n 8] [--rounds 5] [--only ocr rag]

Offline, label_bbox runs a tiny random Grounding DINO (the real code path; timings say nothing
about the real model) and rag uses the local backend over a small generated corpus.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DEEPFACE_HOME", str(Path(tempfile.gettempdir()) / "mmat-deepface"))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from operators.base import Operator  # noqa: E402
from operators.cache import OperatorCache  # noqa: E402
from operators.images import LoadedImage  # noqa: E402
from tests.tiny_grounding_dino import build_tiny_grounding_dino  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = ["invoice", "total", "river", "summit", "answer", "table", "chart", "label", "green", "seven",
         "market", "engine", "window", "garden", "planet", "signal"]


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def text_pages(n: int) -> list[bytes]:
    font = ImageFont.truetype(FONT, 30)
    out = []
    for i in range(n):
        im = Image.new("RGB", (640, 480), "white")
        draw = ImageDraw.Draw(im)
        for row in range(4):
            words = " ".join(WORDS[(i + row + k) % len(WORDS)] for k in range(3))
            draw.text((30, 40 + row * 100), f"{words} {i * 10 + row}", font=font, fill="black")
        out.append(png(im))
    return out


def photos(n: int) -> list[bytes]:
    from skimage import data

    base = Image.fromarray(data.astronaut())
    out = []
    for i in range(n):  # distinct bytes, same content class: shifted crops, mirrored every other one
        im = base.crop((i * 3, i * 2, 512 - (n - i), 512 - (n - i)))
        out.append(png(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else im))
    return out


def ocr_sets(n: int) -> dict[str, list[tuple[bytes, str]]]:
    """Rendered images with their exact text, per kind: single line, multi-line, rotated, small."""
    def words(i: int, k: int = 3) -> str:
        picked = " ".join(WORDS[(i * 5 + j * 3) % len(WORDS)] for j in range(k))
        return f"{picked.capitalize()} {1000 + 37 * i}"

    def page(lines: list[str], size: tuple[int, int], font_size: int, step: int) -> Image.Image:
        im = Image.new("RGB", size, "white")
        draw, font = ImageDraw.Draw(im), ImageFont.truetype(FONT, font_size)
        for row, text in enumerate(lines):
            draw.text((24, 24 + row * step), text, font=font, fill="black")
        return im

    sets: dict[str, list[tuple[bytes, str]]] = {"single-line": [], "multi-line": [], "rotated": [], "small": []}
    for i in range(n):
        line = words(i)
        sets["single-line"].append((png(page([line], (640, 100), 34, 0)), line))
        lines = [words(i * 4 + r, 2 + r % 2) for r in range(4)]
        sets["multi-line"].append((png(page(lines, (640, 400), 30, 90)), "\n".join(lines)))
        angle = (-10, -5, 5, 10)[i % 4]
        rotated = page([line], (640, 140), 34, 0).rotate(angle, expand=True, fillcolor="white")
        sets["rotated"].append((png(rotated), line))
        sets["small"].append((png(page([line], (360, 60), 13, 0)), line))
    return sets


def ocr_side_by_side(ops: dict[str, Operator], n: int, rounds: int) -> list[dict[str, Any]]:
    """The OCR backends (name -> loaded operator, no cache) on the same images, in one run."""
    rows = []
    for kind, items in ocr_sets(n).items():
        times = {name: [[] for _ in items] for name in ops}
        exact = {name: 0 for name in ops}
        for r in range(rounds):
            for i, (image, truth) in enumerate(items):
                order = list(ops) if (r + i) % 2 else list(ops)[::-1]
                for name in order:
                    start = time.perf_counter()
                    text = ops[name].run([LoadedImage(image)]).text
                    times[name][i].append(time.perf_counter() - start)
                    if r == 0:
                        exact[name] += text == truth
        for name in ops:
            per_image = sum(statistics.median(t) for t in times[name])
            rows.append({"set": kind, "backend": name, "n": len(items), "per_s": len(items) / per_image,
                         "exact": exact[name] / len(items)})
    return rows


def corpus(folder: Path, n: int = 300) -> Path:
    rng = np.random.default_rng(0)
    vocab = WORDS + ["mountain", "tower", "museum", "city", "painter", "bridge", "ocean", "forest", "king", "river"]
    with open(folder / "passages.jsonl", "w") as fh:
        for i in range(n):
            text = " ".join(rng.choice(vocab, 40))
            fh.write(json.dumps({"id": str(i), "title": f"Passage {i}", "text": text}) + "\n")
    return folder


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, op: Operator, items: list[tuple[list[bytes], dict]], direct: Optional[Callable[[list[bytes], dict], Any]],
            rounds: int, cache_root: Path) -> dict[str, Any]:
    """Per item and round, time the direct call and ours back to back (alternating which goes first), so
    load from other processes hits both sides alike; each side's time is the sum of per-item medians."""
    def ours(images, args):
        return op.run([LoadedImage(b) for b in images], **args)

    for images, args in items:  # warm-up: models loaded, caches of the libraries primed
        ours(images, args)
        if direct:
            direct(images, args)
    t_ours = [[] for _ in items]
    t_direct = [[] for _ in items]
    for r in range(rounds):
        for i, (images, args) in enumerate(items):
            sides = [(ours, t_ours)] + ([(direct, t_direct)] if direct else [])
            for fn, sink in (sides if (r + i) % 2 else sides[::-1]):
                sink[i].append(timed(lambda: fn(images, args)))
    cached = Operator(op.backend, OperatorCache(cache_root / name))
    for images, args in items:
        cached.run([LoadedImage(b) for b in images], **args)
    t_cached = statistics.median(timed(lambda: [cached.run([LoadedImage(b) for b in im], **a) for im, a in items])
                                 for _ in range(rounds))
    n = len(items)
    sum_o = sum(statistics.median(t) for t in t_ours)
    sum_d = sum(statistics.median(t) for t in t_direct) if direct else 0.0
    min_o = sum(min(t) for t in t_ours)
    min_d = sum(min(t) for t in t_direct) if direct else 0.0
    return {"operator": name, "backend": op.backend.name, "n": n,
            "direct_per_s": n / sum_d if direct else None, "ours_per_s": n / sum_o, "cached_per_s": n / t_cached,
            "overhead_pct": (sum_o - sum_d) / sum_d * 100 if direct else None,
            "min_overhead_pct": (min_o - min_d) / min_d * 100 if direct else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8, help="images (or queries) per operator")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch/OpenCV threads (0: library default); 1 is steadier on a shared machine")
    parser.add_argument("--only", nargs="*", default=None, help="operators to run (default: all that run here)")
    parser.add_argument("--ocr-rounds", type=int, default=3, help="timed rounds of the OCR side-by-side")
    opts = parser.parse_args()
    t0 = time.perf_counter()
    if opts.threads:
        import cv2
        import torch

        torch.set_num_threads(opts.threads)
        cv2.setNumThreads(opts.threads)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    work = Path(tempfile.mkdtemp(prefix="mmat-bench-"))
    rows = []
    want = set(opts.only or ["ocr", "face_detection", "label_bbox", "image_caption", "rag"])

    ocr_rows, ocr_missing = [], []
    if "ocr" in want:
        from operators.base import BackendUnavailable
        from operators.ocr import PaddleOcrBackend, RapidOcrBackend

        ocr_ops = {}
        for backend in (PaddleOcrBackend(), RapidOcrBackend()):
            try:
                backend.check_available()
            except BackendUnavailable as exc:
                ocr_missing.append(f"{backend.name}: {exc}")
                continue
            op = ocr_ops[backend.name] = Operator(backend)
            op.run([LoadedImage(text_pages(1)[0])])  # load the engine once; the direct side shares it
            if backend.name == "paddle":  # the library call on BGR pixels, as PaddleOCR's docs show
                def direct(ims, a, engine=backend.engine):
                    return engine.predict([np.ascontiguousarray(np.asarray(decode(ims[0]))[:, :, ::-1])])
            else:
                def direct(ims, a, engine=backend.engine):
                    return engine(decode(ims[0]))
            items = [([b], {}) for b in text_pages(opts.n)]
            rows.append(measure("ocr", op, items, direct, opts.rounds, work))
        ocr_rows = ocr_side_by_side(ocr_ops, opts.n, opts.ocr_rounds)

    if "face_detection" in want:
        from deepface import DeepFace

        from operators.face_detection import DeepFaceBackend

        backend = DeepFaceBackend()
        backend.check_available()
        op = Operator(backend)
        items = [([b], {}) for b in photos(opts.n)]

        def direct_face(ims, a):
            bgr = np.ascontiguousarray(np.asarray(decode(ims[0]))[:, :, ::-1])
            return DeepFace.extract_faces(bgr, detector_backend="opencv", enforce_detection=False, align=False)

        rows.append(measure("face_detection", op, items, direct_face, opts.rounds, work))

    if "label_bbox" in want:
        import torch

        from operators.label_bbox import GroundingDinoBackend

        real = GroundingDinoBackend()
        try:
            real.check_available()
            model_id, note = real.model_id, "real weights"
        except Exception:
            (work / "gd").mkdir()
            model_id, note = build_tiny_grounding_dino(work / "gd"), "tiny random model"
        backend = GroundingDinoBackend(model=model_id)
        backend.check_available()
        op = Operator(backend)
        op.run([LoadedImage(photos(1)[0])], labels=["person"])
        labels = ["person", "flag", "helmet"]
        items = [([b], {"labels": labels}) for b in photos(opts.n)]

        def direct_gd(ims, a):  # the model card's recipe
            image = decode(ims[0])
            inputs = backend.processor(images=image, text=". ".join(a["labels"]) + ".", return_tensors="pt")
            with torch.inference_mode():
                out = backend.model(**inputs)
            return backend.processor.post_process_grounded_object_detection(
                out, inputs.input_ids, threshold=backend.box_threshold, text_threshold=backend.text_threshold,
                target_sizes=[image.size[::-1]])

        row = measure("label_bbox", op, items, direct_gd, opts.rounds, work)
        row["note"] = note
        rows.append(row)

    if "image_caption" in want:
        from operators.image_caption import TemplateCaptionBackend

        op = Operator(TemplateCaptionBackend())
        items = [([b], {"context": ["There is one face with a coordinate: [177, 66, 272, 161]"]}) for b in photos(opts.n)]
        row = measure("image_caption", op, items, None, opts.rounds, work)
        row["note"] = "template (no library to compare with)"
        rows.append(row)

    if "rag" in want:
        from operators.rag import LocalRagBackend

        (work / "corpus").mkdir()
        backend = LocalRagBackend(str(corpus(work / "corpus")), index_dir=work / "index")
        backend.check_available()
        op = Operator(backend)
        op.run([], query="warm up")
        queries = [f"which {WORDS[i % len(WORDS)]} is near the {WORDS[(i * 7) % len(WORDS)]} river {i}"
                   for i in range(opts.n * 4)]
        items = [([], {"query": q}) for q in queries]

        def direct_rag(ims, a):
            q = backend.model.encode([a["query"]], normalize_embeddings=True, convert_to_numpy=True,
                                     show_progress_bar=False)
            scores = (q @ backend.embeddings.T)[0]
            return np.argsort(-scores)[:3]

        row = measure("rag", op, items, direct_rag, opts.rounds, work)
        row["note"] = f"local, {len(backend.passages)} passages, queries/s"
        rows.append(row)

    print(f"\n{'operator':<15}{'backend':<16}{'n':>4}{'direct/s':>10}{'ours/s':>10}{'cached/s':>11}"
          f"{'overhead':>10}{'(min)':>8}  note")
    for r in rows:
        direct = f"{r['direct_per_s']:.2f}" if r["direct_per_s"] else "-"
        over = f"{r['overhead_pct']:+.1f}%" if r["overhead_pct"] is not None else "-"
        mino = f"{r['min_overhead_pct']:+.1f}%" if r["min_overhead_pct"] is not None else "-"
        print(f"{r['operator']:<15}{r['backend']:<16}{r['n']:>4}{direct:>10}{r['ours_per_s']:>10.2f}"
              f"{r['cached_per_s']:>11.1f}{over:>10}{mino:>8}  {r.get('note', '')}")
    print(f"\n{time.perf_counter() - t0:.0f} s in all. overhead = (ours - direct) / direct, sums of per-item medians; (min): sums of per-item minima.")
    if ocr_rows or ocr_missing:
        print_ocr_side_by_side(ocr_rows, ocr_missing)


def print_ocr_side_by_side(rows: list[dict[str, Any]], missing: list[str]) -> None:
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    print("\nOCR side by side (same images, one run): images/s and exact-match rate of the whole text")
    print(f"{'set':<13}{'n':>4}" + "".join(f"{b + ' img/s':>16}{b + ' exact':>16}" for b in backends)
          + ("    speed paddle/rapidocr" if {"paddle", "rapidocr"} <= set(backends) else ""))
    for kind in dict.fromkeys(r["set"] for r in rows):
        by = {r["backend"]: r for r in rows if r["set"] == kind}
        line = f"{kind:<13}{next(iter(by.values()))['n']:>4}"
        line += "".join(f"{by[b]['per_s']:>16.2f}{by[b]['exact']:>16.0%}" for b in backends)
        if "paddle" in by and "rapidocr" in by:
            line += f"    {by['paddle']['per_s'] / by['rapidocr']['per_s']:>8.2f}x"
        print(line)
    if "rapidocr" in backends:
        print("(rapidocr's detector scales the short side up to 736 px: short, wide strips are slow for it)")
    for m in missing:
        print(f"not run: {m}")


if __name__ == "__main__":
    main()
