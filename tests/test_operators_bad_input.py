"""Bad pixels: each input either works (odd modes, EXIF rotation) or raises one clear OperatorError
that quarantines the sample. Nothing crashes, and a bad image in a batch fails only its own item.
The OCR cases run through both backends (`ocr_ops`, tests/conftest.py: PaddleOCR and rapidocr)."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from operators.base import OperatorError, OperatorResult
from operators.config import OperatorsConfig
from operators.images import ImageDecodeError, LoadedImage, check_decodable, decode_rgb
from operators.registry import build_operators

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
WORDS = "Quarantine 1234"


@pytest.fixture(scope="module")
def ops():
    cfg = OperatorsConfig.model_validate(
        {"ocr": {"backend": "off"}, "label_bbox": {"backend": "off"}, "rag": {"backend": "off"},
         "image_caption": {"backend": "template"}}
    )
    return build_operators(cfg, None)


def text_image(mode_bg="white") -> Image.Image:
    im = Image.new("RGB", (420, 110), mode_bg)
    ImageDraw.Draw(im).text((20, 30), WORDS, font=ImageFont.truetype(FONT, 36), fill="black")
    return im


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: only the header is ever read."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


UNUSABLE = pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "empty image"),
        (b"this is not an image at all", "unreadable image"),
        ("truncated-png", "unreadable image"),
        ("truncated-jpeg", "unreadable image"),
        (png_header_only(9_500, 9_500), "decompression bomb"),  # 90 M pixels: over PIL's 89 M threshold
        (png_header_only(20_000, 20_000), "decompression bomb"),  # over twice the threshold
        ("one-pixel", "too small"),
    ],
    ids=["zero-byte", "garbage", "truncated-png", "truncated-jpeg", "bomb-90M", "bomb-400M", "1x1"],
)


def _unusable(payload) -> bytes:
    if payload == "truncated-png":
        full = encode(text_image(), "PNG")
        return full[: len(full) // 2]
    if payload == "truncated-jpeg":
        full = encode(text_image(), "JPEG", quality=90)
        return full[: len(full) // 2]
    if payload == "one-pixel":
        return encode(Image.new("RGB", (1, 1), "red"), "PNG")
    return payload


def _raises_one_clear_error(ops, operator, payload, reason) -> None:
    with pytest.raises(OperatorError, match=reason) as info:
        ops.run(operator, [_unusable(payload)])
    assert isinstance(info.value, ImageDecodeError)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


@UNUSABLE
@pytest.mark.parametrize("operator", ["face_detection", "image_caption"])
def test_unusable_image_raises_one_clear_operator_error(ops, operator, payload, reason):
    _raises_one_clear_error(ops, operator, payload, reason)


@UNUSABLE
def test_unusable_image_raises_one_clear_operator_error_through_each_ocr_backend(ocr_ops, payload, reason):
    _raises_one_clear_error(ocr_ops, "ocr", payload, reason)


def cmyk_jpeg() -> bytes:
    return encode(text_image().convert("CMYK"), "JPEG", quality=95)


def rgba_png() -> bytes:
    # Transparent background, opaque black text: composited on white it reads like paper.
    im = Image.new("RGBA", (420, 110), (0, 0, 0, 0))
    ImageDraw.Draw(im).text((20, 30), WORDS, font=ImageFont.truetype(FONT, 36), fill=(0, 0, 0, 255))
    return encode(im, "PNG")


def la_png() -> bytes:
    return encode(text_image().convert("LA"), "PNG")


def grey_png() -> bytes:
    return encode(text_image().convert("L"), "PNG")


def sixteen_bit_png() -> bytes:
    grey = np.asarray(text_image().convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    im = Image.fromarray(grey)
    assert im.mode.startswith("I;16")
    return encode(im, "PNG")


def palette_png() -> bytes:
    return encode(text_image().convert("P"), "PNG")


@pytest.mark.parametrize("make", [cmyk_jpeg, rgba_png, la_png, grey_png, sixteen_bit_png, palette_png],
                         ids=["cmyk", "rgba", "la", "grey", "16bit", "palette"])
def test_odd_modes_are_read_correctly(ocr_ops, make):
    assert ocr_ops.run("ocr", [make()]).text == WORDS


def exif_rotated(im: Image.Image) -> bytes:
    """Store the picture turned 90° counter-clockwise with EXIF orientation 6 (display: turn back)."""
    stored = im.rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_rotated_text_is_read_upright(ocr_ops):
    payload = exif_rotated(text_image())
    assert Image.open(io.BytesIO(payload)).size == (110, 420)  # stored sideways
    result = ocr_ops.run("ocr", [payload])
    assert result.text == WORDS
    assert (result.data["images"][0]["width"], result.data["images"][0]["height"]) == (420, 110)


def test_exif_rotated_photo_face_is_found_in_upright_coordinates(ops):
    upright = ops.run("face_detection", [encode(Image.fromarray(data.astronaut()), "JPEG", quality=95)])
    rotated = ops.run("face_detection", [exif_rotated(Image.fromarray(data.astronaut()))])
    (a,), (b,) = upright.data["images"][0]["faces"], rotated.data["images"][0]["faces"]
    assert all(abs(u - r) <= 8 for u, r in zip(a["box"], b["box"]))


def test_bad_image_in_a_batch_fails_only_its_own_item(ocr_ops):
    good = encode(text_image(), "PNG")
    out = ocr_ops.get("ocr").run_batch([([good], {}), ([b""], {}), ([good, b"\x00\x01"], {})])
    assert isinstance(out[0], OperatorResult) and out[0].text == WORDS
    assert isinstance(out[1], OperatorError) and "empty image" in str(out[1])
    assert isinstance(out[2], OperatorError) and str(out[2]).startswith("image 2: unreadable image")


def test_image_operators_need_an_image(ocr_ops):
    with pytest.raises(OperatorError, match="needs at least one image"):
        ocr_ops.run("ocr", [])


# -- the runner's check before the first paid call (`LoadedImage.check`) ------------------------------
@UNUSABLE
def test_the_cheap_check_refuses_what_a_decode_refuses(payload, reason):
    data = _unusable(payload)
    with pytest.raises(ImageDecodeError, match=reason):
        decode_rgb(data)
    with pytest.raises(ImageDecodeError, match=reason) as info:
        LoadedImage(data).check()
    assert "\n" not in str(info.value)


def _flip_in_idat(png: bytes) -> bytes:
    at = png.index(b"IDAT") + 20
    return png[:at] + bytes([png[at] ^ 0xFF]) + png[at + 1:]


@pytest.mark.parametrize("broken", [
    lambda: _flip_in_idat(encode(text_image(), "PNG")),                        # a flipped byte: the CRC fails
    lambda: encode(text_image(), "PNG")[:-12],                                 # cut before IEND
    lambda: encode(text_image(), "JPEG", quality=90)[:-200],                  # the last scan cut
], ids=["png-flipped-byte", "png-no-iend", "jpeg-cut-late"])
def test_the_cheap_check_finds_damage_inside_the_pixel_data(broken):
    with pytest.raises(ImageDecodeError, match="unreadable image"):
        LoadedImage(broken()).check()


@pytest.mark.parametrize("make, cheap", [
    (lambda: encode(text_image(), "PNG"), True), (lambda: encode(text_image(), "JPEG", quality=90), True),
    (cmyk_jpeg, True), (rgba_png, True), (sixteen_bit_png, True), (palette_png, True),
    (lambda: encode(text_image(), "GIF"), False), (lambda: encode(text_image(), "WEBP"), False),
], ids=["png", "jpeg", "cmyk-jpeg", "rgba-png", "16-bit-png", "palette-png", "gif", "webp"])
def test_good_images_pass_the_check_and_still_decode_whole(make, cheap):
    data = make()
    assert check_decodable(data) is cheap
    image = LoadedImage(data)
    image.check()
    assert (image._rgb is None) is cheap  # a format without a cheap check was decoded once, and kept
    assert image.rgb.mode == "RGB" and image.rgb.size == Image.open(io.BytesIO(data)).size  # full size, not 1/8
