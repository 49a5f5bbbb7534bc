"""Decoding images safely, once, for every operator.

Bad pixels must quarantine one sample, not crash the run: truncated files, decompression bombs,
odd modes (CMYK, 16-bit, palette with alpha) and EXIF rotation are all handled here so no backend
has to think about them.
"""
from __future__ import annotations

import hashlib
import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional

from PIL import Image, ImageOps

from operators.errors import OperatorError

MAX_PIXELS = 89_478_485  # PIL's own decompression-bomb threshold
MIN_SIDE = 2


class ImageDecodeError(OperatorError):
    """The bytes are not a usable image; the message says why. An `OperatorError`, so the runner
    quarantines the sample like any other operator failure."""


@dataclass
class LoadedImage:
    """Raw bytes (for hashing and for the shard) plus the decoded RGB picture (for the models)."""

    data: bytes
    sha256: str = field(init=False)
    _rgb: Optional[Image.Image] = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sha256 = hashlib.sha256(self.data).hexdigest()

    @property
    def rgb(self) -> Image.Image:
        if self._rgb is None:
            self._rgb = decode_rgb(self.data)
        return self._rgb

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.size

    def check(self) -> None:
        """Raise `ImageDecodeError` now if these bytes would not decode (`check_decodable`), for the
        runner to quarantine the sample before any paid call; formats without a cheap check are
        decoded here once, and the picture kept."""
        if not check_decodable(self.data):
            self.rgb


def _open(data: bytes) -> Image.Image:
    """The image's header read and judged (empty, too large, a decompression bomb, too small); raises
    `ImageDecodeError`. No pixel is decoded."""
    if not data:
        raise ImageDecodeError("empty image (0 bytes)")
    with _decoding():
        im = Image.open(io.BytesIO(data))
    width, height = im.size
    if width * height > MAX_PIXELS:
        raise ImageDecodeError(f"image too large: {width}x{height} pixels exceeds {MAX_PIXELS}")
    if min(im.size) < MIN_SIDE:
        raise ImageDecodeError(f"image too small: {width}x{height}")
    return im


@contextmanager
def _decoding() -> Iterator[None]:
    """PIL's many failures, a decompression-bomb warning included, as one `ImageDecodeError` line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from None
    except Exception as exc:  # PIL raises many types for broken files
        raise ImageDecodeError(f"unreadable image: {type(exc).__name__}: {exc}") from None


def decode_rgb(data: bytes) -> Image.Image:
    """Bytes → upright 8-bit RGB image, or ImageDecodeError with a one-line reason."""
    im = _open(data)
    with _decoding():
        im.load()
    im = ImageOps.exif_transpose(im)
    return to_rgb(im)


def check_decodable(data: bytes) -> bool:
    """Whether `data` was checked cheaply: raises `ImageDecodeError` for what `decode_rgb` would refuse,
    True when checked without a full decode, False when the format has no cheaper check than decoding.
    Why: every sample's images are checked before its first paid call, and a full decode there was
    8 % of a run's CPU when no operator needs the pixels. PNG: every chunk read and its CRC checked
    (a cut or a flipped byte fails; the IDAT stream is not inflated). JPEG: decoded at 1/8 scale
    (libjpeg's DCT scaling still reads every scan, so a cut file fails)."""
    im = _open(data)
    if im.format == "PNG":
        with _decoding():
            im.verify()
        return True
    if im.format == "JPEG":
        im.draft(im.mode, (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
        with _decoding():
            im.load()
        return True
    return False


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode → RGB; alpha is composited on white, 16-bit and float are rescaled."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype="float64")
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else arr * 0
        return Image.fromarray(scaled.astype("uint8"), "L").convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


def crop_region(image: LoadedImage, box, pad: float = 0.1, min_side: int = 64) -> LoadedImage:
    """The part of `image` inside `box` (`[x1, y1, x2, y2]` in pixels of the upright image), widened by
    `pad` of its size on each side and clipped to the image, upscaled so its shorter side is at least
    `min_side` (text models read small crops badly), as PNG bytes: an image like any other for the
    operators and their cache. A box that is not four numbers inside the image is an OperatorError."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise OperatorError(f"region must be [x1, y1, x2, y2] in pixels, got {box!r:.80}") from None
    width, height = image.size
    dx, dy = max(4.0, (x2 - x1) * pad), max(4.0, (y2 - y1) * pad)
    left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    right, bottom = min(width, int(round(x2 + dx))), min(height, int(round(y2 + dy)))
    if right - left < MIN_SIDE or bottom - top < MIN_SIDE:
        raise OperatorError(f"region {box!r:.80} is outside the {width}x{height} image")
    crop = image.rgb.crop((left, top, right, bottom))
    short = min(crop.size)
    if short < min_side:
        scale = min_side / short
        crop = crop.resize((max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))), Image.LANCZOS)
    buffer = io.BytesIO()
    crop.save(buffer, format="PNG")
    return LoadedImage(buffer.getvalue())
