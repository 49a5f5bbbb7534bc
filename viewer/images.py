"""Image bytes for the page: the original as stored, or a downsized JPEG (list thumbnails, exports)."""
from __future__ import annotations

import io

THUMB_SIDE = 240
EXPORT_SIDE = 1024
_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif"), (b"BM", "image/bmp"))


def mime_of(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _MAGIC if data.startswith(magic)), "application/octet-stream")


def downsized(data: bytes, max_side: int) -> bytes:
    """A JPEG no larger than `max_side` on its longer side (transparent parts on white)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
        else:
            flat = img.convert("RGB")
    flat.thumbnail((max_side, max_side))
    out = io.BytesIO()
    flat.save(out, format="JPEG", quality=85)
    return out.getvalue()
