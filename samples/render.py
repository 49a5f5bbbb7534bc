"""Drawing helpers for `build_samples.py`: fonts, rendered text with exact boxes, charts, tables,
diagrams, and the scikit-image photos that load offline.

Kept apart from the per-source content so each file reads in one sitting. Everything is
deterministic: fixed seeds, no timestamps in the encoded files.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")

Box = list[int]  # [x1, y1, x2, y2] in pixels


# ----------------------------------------------------------------------------------------------
# Rendering helpers
# ----------------------------------------------------------------------------------------------
def font(size: int, bold: bool = False, family: str = "Sans") -> ImageFont.FreeTypeFont:
    name = f"DejaVu{family}{'-Bold' if bold else ''}.ttf"
    return ImageFont.truetype(str(FONT_DIR / name), size)


def text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], s: str, fnt: ImageFont.FreeTypeFont,
         fill: Any = "black", anchor: str = "la") -> Box:
    """Draw `s` and return its pixel box, so Visual CoT boxes are exact, not guessed."""
    draw.text(xy, s, font=fnt, fill=fill, anchor=anchor)
    return [int(v) for v in draw.textbbox(xy, s, font=fnt, anchor=anchor)]


def union(*boxes: Box, pad: int = 0) -> Box:
    return [min(b[0] for b in boxes) - pad, min(b[1] for b in boxes) - pad,
            max(b[2] for b in boxes) + pad, max(b[3] for b in boxes) + pad]


def canvas(w: int, h: int, color: Any = "white") -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("RGB", (w, h), color)
    return im, ImageDraw.Draw(im)


def vgradient(w: int, h: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    arr = (np.array(top)[None, None, :] * (1 - t) + np.array(bottom)[None, None, :] * t)
    return Image.fromarray(np.repeat(arr, w, axis=1).astype("uint8"), "RGB")


def noisy(im: Image.Image, seed: int, amount: float = 6.0) -> Image.Image:
    """A little sensor-like noise so rendered 'photos' are not flat colour fields."""
    rng = np.random.RandomState(seed)
    arr = np.asarray(im, dtype="float32") + rng.normal(0.0, amount, size=(im.height, im.width, 1))
    return Image.fromarray(np.clip(arr, 0, 255).astype("uint8"), "RGB")


def save(im: Image.Image, path: Path, quality: int = 82) -> tuple[int, int]:
    """JPEG for photos, optimised PNG for everything drawn; returns (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = im.convert("RGB")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, "JPEG", quality=quality, optimize=True)
    else:
        im.save(path, "PNG", optimize=True)
    return im.size


def encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.convert("RGB").save(buf, "JPEG", quality=82, optimize=True)
    else:
        im.convert("RGB").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def photo(name: str, max_side: int = 384) -> Image.Image:
    """A scikit-image bundled photo (only ones verified to load offline), downscaled."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.dtype == bool:
        arr = np.where(arr, 255, 0).astype("uint8")  # horse: black silhouette (False) on white
    im = Image.fromarray(arr)
    im = im.convert("RGB")
    im.thumbnail((max_side, max_side), Image.LANCZOS)
    return im


def figure_to_image(fig: Any) -> Image.Image:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float], ylabel: str,
              color: str = "#3b6ea8", size: tuple[float, float] = (3.8, 2.7)) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    bars = ax.bar(list(labels), list(values), color=color)
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:g}", ha="center", va="bottom", fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return figure_to_image(fig)


def line_chart(title: str, x: Sequence[Any], series: dict[str, Sequence[float]], ylabel: str,
               size: tuple[float, float] = (3.8, 2.7)) -> Image.Image:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    for name, ys in series.items():
        ax.plot(list(x), list(ys), marker="o", markersize=3, label=name)
        for xi, yi in zip(x, ys):
            ax.annotate(f"{yi:g}", (xi, yi), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=6)
    ax.set_title(title, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=7)
    if len(series) > 1:
        ax.legend(fontsize=6, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return figure_to_image(fig)


def table_image(title: str | None, header: Sequence[str], rows: Sequence[Sequence[str]], size: int = 13) -> Image.Image:
    """A table drawn like TabMWP's PNGs: a title band, a bold header row, grid lines."""
    f, fb = font(size), font(size, bold=True)
    pad_x, row_h = 12, size + 14
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = []
    for c in range(len(header)):
        cells = [header[c]] + [r[c] for r in rows]
        widths.append(max(int(probe.textlength(s, font=fb)) for s in cells) + 2 * pad_x)
    w = max(sum(widths), int(probe.textlength(title or "", font=fb)) + 2 * pad_x)
    if sum(widths) < w:
        widths[-1] += w - sum(widths)
    top = row_h if title else 0  # TabMWP tables without a title have no title band
    h = top + row_h * (len(rows) + 1)
    im, d = canvas(w + 1, h + 1)
    if title:
        d.rectangle([0, 0, w, row_h], fill="#dde6f0")
        text(d, (w / 2, row_h / 2), title, fb, anchor="mm")
    for r, cells in enumerate([list(header)] + [list(x) for x in rows]):
        y = top + row_h * r
        x = 0
        for c, s in enumerate(cells):
            text(d, (x + pad_x, y + row_h / 2), s, fb if r == 0 else f, anchor="lm")
            x += widths[c]
    for r in range(len(rows) + 2):
        d.line([0, top + r * row_h, w, top + r * row_h], fill="#8a8a8a")
    if title:
        d.line([0, 0, w, 0], fill="#8a8a8a")
    x = 0
    for c in range(len(widths) + 1):
        y0 = top if 0 < c < len(widths) else 0
        d.line([x, y0, x, h], fill="#8a8a8a")
        x += widths[c] if c < len(widths) else 0
    return im


def arrow(d: ImageDraw.ImageDraw, a: tuple[float, float], b: tuple[float, float], fill: str = "black", width: int = 3) -> None:
    d.line([a, b], fill=fill, width=width)
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    for side in (-1, 1):
        tip = (b[0] - 10 * math.cos(ang + side * 0.45), b[1] - 10 * math.sin(ang + side * 0.45))
        d.line([b, tip], fill=fill, width=width)


# ----------------------------------------------------------------------------------------------
# Scenes that several sources share (rendered text, documents, drawings)
# ----------------------------------------------------------------------------------------------
def storefront(name: str, sub: str, seed: int, board: str = "#1f3f73") -> tuple[Image.Image, dict[str, Box]]:
    im = noisy(vgradient(384, 288, (182, 120, 96), (140, 88, 70)), seed, 8)
    d = ImageDraw.Draw(im)
    for y in range(0, 288, 16):  # brick courses
        d.line([0, y, 384, y], fill=(120, 76, 60), width=1)
    d.rectangle([24, 18, 360, 78], fill=board, outline="#e8e8e8", width=3)
    boxes = {"name": text(d, (192, 48), name, font(26, bold=True), fill="white", anchor="mm")}
    d.rectangle([40, 104, 200, 270], fill="#9cc3d8", outline="#3b3b3b", width=4)  # window
    d.rectangle([230, 110, 330, 288], fill="#5a3b2a", outline="#2b2b2b", width=4)  # door
    lines = [text(d, (120, 150 + 22 * i), s, font(14, bold=True), fill="#b3121f", anchor="mm")
             for i, s in enumerate(sub.split("\n"))]
    boxes["sub"] = union(*lines)
    return im, boxes


def street_signs(top: str, bottom: str, seed: int) -> tuple[Image.Image, dict[str, Box]]:
    im = noisy(vgradient(288, 384, (120, 170, 225), (205, 225, 240)), seed, 4)
    d = ImageDraw.Draw(im)
    d.rectangle([138, 60, 150, 384], fill="#6b6b6b")
    d.rectangle([48, 70, 240, 112], fill="#0d6b3a", outline="white", width=3)
    d.rectangle([60, 128, 228, 170], fill="#0d6b3a", outline="white", width=3)
    boxes = {"top": text(d, (144, 91), top, font(24, bold=True), fill="white", anchor="mm"),
             "bottom": text(d, (144, 149), bottom, font(24, bold=True), fill="white", anchor="mm")}
    d.rectangle([0, 330, 288, 384], fill="#4d5a3a")
    return im, boxes


def memo() -> tuple[Image.Image, dict[str, Box]]:
    im, d = canvas(384, 480, "#fbfbf6")
    b: dict[str, Box] = {}
    text(d, (192, 36), "MEMORANDUM", font(22, bold=True, family="Serif"), anchor="mm")
    d.line([30, 58, 354, 58], fill="black", width=2)
    f, fb = font(13, family="Serif"), font(13, bold=True, family="Serif")
    rows = [("To:", "Dr. Helen Ortiz", "to"), ("From:", "Facilities Office", "from"),
            ("Date:", "March 3, 1998", "date"), ("Subject:", "Laboratory renovation schedule", "subject")]
    for i, (k, v, key) in enumerate(rows):
        y = 76 + i * 24
        kb = text(d, (30, y), k, fb)
        b[key] = union(kb, text(d, (100, y), v, f))
    d.line([30, 178, 354, 178], fill="black", width=1)
    body = ["The renovation of laboratories 2B and 2C will",
            "begin on Monday, March 16. Please move all",
            "glassware and samples to room 4A before then.",
            "Work is expected to last three weeks. Contact",
            "extension 4417 with any questions."]
    for i, line in enumerate(body):
        text(d, (30, 196 + i * 22), line, f)
    text(d, (30, 330), "cc: Department heads", font(11, family="Serif"), fill="#333333")
    return im, b


def receipt() -> tuple[Image.Image, dict[str, Box], str]:
    im, d = canvas(256, 480, "#fdfdfb")
    f, fb, fm = font(11, family="SansMono"), font(12, bold=True, family="SansMono"), font(11, family="SansMono")
    b: dict[str, Box] = {}
    b["company"] = text(d, (128, 24), "GREEN LEAF GROCERS SDN BHD", fb, anchor="mm")
    text(d, (128, 42), "(CO. REG. 123456-A)", f, anchor="mm")
    b["address"] = union(text(d, (128, 60), "NO 12, JALAN MAWAR 3,", f, anchor="mm"),
                         text(d, (128, 76), "53100 KUALA LUMPUR", f, anchor="mm"))
    b["date"] = text(d, (14, 100), "DATE: 14/02/2018  10:42", fm)
    d.line([10, 122, 246, 122], fill="black")
    items = [("RICE 5KG", 18.90), ("EGGS 10PCS", 4.20), ("COOKING OIL 1L", 6.40), ("BREAD", 3.10)]
    for i, (name, price) in enumerate(items):
        y = 132 + i * 20
        text(d, (14, y), name, fm)
        text(d, (242, y), f"{price:.2f}", fm, anchor="ra")
    total = sum(p for _, p in items)
    d.line([10, 218, 246, 218], fill="black")
    b["total"] = union(text(d, (14, 228), "TOTAL", fb), text(d, (242, 228), f"{total:.2f}", fb, anchor="ra"))
    text(d, (14, 250), "CASH", fm)
    text(d, (242, 250), "50.00", fm, anchor="ra")
    text(d, (14, 270), "CHANGE", fm)
    text(d, (242, 270), f"{50 - total:.2f}", fm, anchor="ra")
    text(d, (128, 320), "THANK YOU, PLEASE COME AGAIN", f, anchor="mm")
    return im, b, f"{total:.2f}"


def infographic() -> tuple[Image.Image, dict[str, Box]]:
    im, d = canvas(320, 480, "#f3f7f2")
    b: dict[str, Box] = {}
    d.rectangle([0, 0, 320, 64], fill="#2e7d4f")
    text(d, (160, 32), "HOW OUR CITY COMMUTES", font(18, bold=True), fill="white", anchor="mm")
    d.ellipse([30, 96, 110, 176], outline="#2e7d4f", width=6)  # bicycle wheels
    d.ellipse([120, 96, 200, 176], outline="#2e7d4f", width=6)
    d.line([70, 136, 110, 100, 160, 136, 70, 136], fill="#2e7d4f", width=5)
    b["cycle"] = union(text(d, (214, 108), "68%", font(36, bold=True), fill="#2e7d4f"),
                       text(d, (30, 190), "of commuters cycle at least", font(15)),
                       text(d, (30, 210), "once a week", font(15)))
    d.rounded_rectangle([30, 262, 150, 322], radius=8, fill="#c0392b")  # bus
    d.ellipse([44, 314, 64, 334], fill="#333333")
    d.ellipse([116, 314, 136, 334], fill="#333333")
    b["bus"] = union(text(d, (166, 268), "2.4 million", font(22, bold=True), fill="#c0392b"),
                     text(d, (166, 298), "bus trips", font(15)),
                     text(d, (166, 318), "each month", font(15)))
    text(d, (160, 440), "Source: City transport survey", font(11), fill="#555555", anchor="mm")
    return im, b


def invoice() -> tuple[Image.Image, dict[str, Box]]:
    im, d = canvas(384, 480, "white")
    b: dict[str, Box] = {}
    text(d, (28, 26), "Northwind Office Supply", font(16, bold=True))
    text(d, (28, 48), "48 Harbor Road, Portsmouth", font(11), fill="#444444")
    text(d, (356, 26), "INVOICE", font(22, bold=True), fill="#1f3f73", anchor="ra")
    f, fb = font(12), font(12, bold=True)
    b["number"] = union(text(d, (28, 92), "Invoice No:", fb), text(d, (130, 92), "INV-20417", f))
    b["date"] = union(text(d, (28, 112), "Date:", fb), text(d, (130, 112), "2021-06-30", f))
    b["bill_to"] = union(text(d, (28, 132), "Bill to:", fb), text(d, (130, 132), "Lakeside Dental Clinic", f))
    d.rectangle([28, 170, 356, 192], fill="#e9eef5")
    text(d, (36, 174), "Item", fb)
    text(d, (348, 174), "Amount", fb, anchor="ra")
    items = [("Printer paper, 10 reams", 62.50), ("Toner cartridge x2", 118.00), ("Desk lamp", 34.50)]
    for i, (name, amount) in enumerate(items):
        y = 200 + i * 22
        text(d, (36, y), name, f)
        text(d, (348, y), f"${amount:,.2f}", f, anchor="ra")
    d.line([28, 272, 356, 272], fill="#888888")
    total = sum(a for _, a in items)
    b["total"] = union(text(d, (200, 282), "Amount due:", fb), text(d, (348, 282), f"${total:,.2f}", fb, anchor="ra"))
    text(d, (28, 420), "Payment within 30 days. Thank you for your business.", font(10), fill="#555555")
    return im, b


def phone_screen(title: str, lines: Sequence[str], button: str | None, seed: int,
                 accent: str = "#3367d6") -> Image.Image:
    im, d = canvas(216, 384, "#fafafa")
    d.rectangle([0, 0, 216, 20], fill="#202020")
    text(d, (8, 4), "9:41", font(10), fill="white")
    text(d, (208, 4), "100%", font(10), fill="white", anchor="ra")
    d.rectangle([0, 20, 216, 64], fill=accent)
    text(d, (14, 42), title, font(16, bold=True), fill="white", anchor="lm")
    y = 80
    for line in lines:
        if line.startswith("[") and line.endswith("]"):
            d.rounded_rectangle([14, y, 202, y + 32], radius=4, outline="#9e9e9e", width=1, fill="white")
            text(d, (22, y + 16), line[1:-1], font(12), fill="#757575", anchor="lm")
            y += 44
        else:
            text(d, (14, y), line, font(13))
            d.line([14, y + 24, 202, y + 24], fill="#e0e0e0")
            y += 32
    if button:
        d.rounded_rectangle([14, y + 6, 202, y + 42], radius=6, fill=accent)
        text(d, (108, y + 24), button, font(13, bold=True), fill="white", anchor="mm")
    return noisy(im, seed, 1.5)


def meme(base: Image.Image, top: str, bottom: str) -> Image.Image:
    im = base.copy()
    d = ImageDraw.Draw(im)
    f = font(19, bold=True)
    for s, y in ((top, 18), (bottom, im.height - 20)):
        d.text((im.width / 2, y), s, font=f, fill="white", anchor="mm", stroke_width=2, stroke_fill="black")
    return im


def shapes_scene(objects: Sequence[tuple[str, str, int, int, int]], seed: int, w: int = 320, h: int = 240) -> Image.Image:
    """CLEVR-like objects: (shape, colour, x, y, size) drawn with simple shading on a grey floor."""
    palette = {"red": (200, 50, 45), "blue": (45, 85, 200), "green": (40, 150, 70),
               "yellow": (220, 190, 40), "gray": (130, 130, 130), "purple": (120, 60, 170)}
    im = noisy(vgradient(w, h, (150, 150, 150), (105, 105, 105)), seed, 3)
    d = ImageDraw.Draw(im)
    for shape, colour, x, y, s in sorted(objects, key=lambda o: o[3]):
        c = palette[colour]
        dark = tuple(int(v * 0.65) for v in c)
        d.ellipse([x - s, y + s - 6, x + s, y + s + 6], fill=(80, 80, 80))  # shadow
        if shape == "sphere":
            d.ellipse([x - s, y - s, x + s, y + s], fill=dark)
            d.ellipse([x - s + 3, y - s + 2, x + s - 5, y + s - 6], fill=c)
            d.ellipse([x - s // 3, y - s // 2, x, y - s // 5], fill=(245, 245, 245))
        elif shape == "cube":
            d.polygon([(x - s, y - s // 2), (x - s // 2, y - s), (x + s, y - s), (x + s // 2, y - s // 2)], fill=c)
            d.rectangle([x - s, y - s // 2, x + s // 2, y + s], fill=dark)
            d.polygon([(x + s // 2, y - s // 2), (x + s, y - s), (x + s, y + s // 2), (x + s // 2, y + s)], fill=c)
        else:  # cylinder
            d.rectangle([x - s, y - s // 2, x + s, y + s], fill=dark)
            d.ellipse([x - s, y + s - s // 3, x + s, y + s + s // 3], fill=dark)
            d.ellipse([x - s, y - s // 2 - s // 3, x + s, y - s // 2 + s // 3], fill=c)
    return im


def icon_grid(kind: str, n: int, cols: int, color: str, w: int = 300, h: int = 200) -> Image.Image:
    im, d = canvas(w, h, "white")
    rows = math.ceil(n / cols)
    cw, ch = w / cols, h / max(rows, 1)
    for i in range(n):
        cx, cy = cw * (i % cols + 0.5), ch * (i // cols + 0.5)
        r = min(cw, ch) * 0.32
        if kind == "star":
            pts = [(cx + (r if k % 2 == 0 else r * 0.45) * math.sin(k * math.pi / 5),
                    cy - (r if k % 2 == 0 else r * 0.45) * math.cos(k * math.pi / 5)) for k in range(10)]
            d.polygon(pts, fill=color, outline="black")
        else:
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color, outline="black", width=2)
    return im


def draw_panel_shapes(d: ImageDraw.ImageDraw, box: Box, shape: str, count: int, fill: str) -> None:
    x1, y1, x2, y2 = box
    s = min(x2 - x1, y2 - y1) * 0.16
    xs = [x1 + (x2 - x1) * (k + 1) / (count + 1) for k in range(count)]
    cy = (y1 + y2) / 2
    for cx in xs:
        if shape == "circle":
            d.ellipse([cx - s, cy - s, cx + s, cy + s], fill=fill, outline="black", width=2)
        elif shape == "square":
            d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill, outline="black", width=2)
        else:
            d.polygon([(cx, cy - s), (cx - s, cy + s), (cx + s, cy + s)], fill=fill, outline="black")


def raven_puzzle(grid: list[list[tuple[str, int, str]]], options: list[tuple[str, int, str]]) -> Image.Image:
    """A 3x3 progressive matrix (bottom-right missing) over eight lettered answer panels."""
    cell, gap = 70, 4
    w = 8 * 48 + 20
    im, d = canvas(max(w, 3 * cell + 40), 3 * cell + 150, "white")
    ox = (im.width - 3 * cell) // 2
    for r in range(3):
        for c in range(3):
            box = [ox + c * cell + gap, 10 + r * cell + gap, ox + (c + 1) * cell - gap, 10 + (r + 1) * cell - gap]
            d.rectangle(box, outline="black", width=2)
            if (r, c) == (2, 2):
                text(d, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), "?", font(28, bold=True), anchor="mm")
            else:
                draw_panel_shapes(d, box, *grid[r][c])
    y0 = 10 + 3 * cell + 20
    for k, opt in enumerate(options):
        box = [10 + k * 48, y0, 10 + k * 48 + 44, y0 + 70]
        d.rectangle(box, outline="#555555", width=1)
        draw_panel_shapes(d, [box[0], box[1], box[2], box[3] - 16], *opt)
        text(d, ((box[0] + box[2]) / 2, box[3] - 8), "ABCDEFGH"[k], font(11, bold=True), anchor="mm")
    return im


def triangle_figure(a_deg: int, b_deg: int, label_c: str) -> Image.Image:
    im, d = canvas(320, 240, "white")
    A, B = (40, 200), (280, 200)
    # Place C from the two base angles so the drawing matches the numbers.
    ta, tb = math.radians(a_deg), math.radians(b_deg)
    base = B[0] - A[0]
    t = base * math.tan(tb) / (math.tan(ta) + math.tan(tb))
    C = (A[0] + t, A[1] - t * math.tan(ta))
    d.polygon([A, B, C], outline="black", width=3)
    f = font(15)
    text(d, (A[0] - 16, A[1] + 4), "A", f)
    text(d, (B[0] + 6, B[1] + 4), "B", f)
    text(d, (C[0] - 5, C[1] - 22), "C", f)
    text(d, (A[0] + 28, A[1] - 20), f"{a_deg}°", font(13))
    text(d, (B[0] - 50, B[1] - 20), f"{b_deg}°", font(13))
    text(d, (C[0] - 8, C[1] + 18), label_c, font(13))
    return im


def rectangle_figure(w_units: int, h_units: int, unit: str) -> Image.Image:
    im, d = canvas(320, 220, "white")
    d.rectangle([50, 40, 270, 170], outline="black", width=3)
    text(d, (160, 180), f"{w_units} {unit}", font(14), anchor="ma")
    text(d, (280, 105), f"{h_units} {unit}", font(14), anchor="lm")
    return im


def food_chain() -> Image.Image:
    im, d = canvas(384, 200, "#fffdf5")
    items = [("Grass", (60, 100), "#4caf50"), ("Rabbit", (190, 100), "#a1887f"), ("Fox", (320, 100), "#ef6c00")]
    for name, (x, y), c in items:
        d.ellipse([x - 38, y - 38, x + 38, y + 38], fill=c, outline="black", width=2)
        text(d, (x, y + 52), name, font(14, bold=True), anchor="mm")
    arrow(d, (100, 100), (148, 100))
    arrow(d, (230, 100), (278, 100))
    d.ellipse([8, 8, 44, 44], fill="#ffd54f")
    text(d, (192, 18), "A simple food chain", font(13), anchor="mm")
    return im


def magnets() -> Image.Image:
    im, d = canvas(384, 140, "white")
    f = font(22, bold=True)
    for x0 in (20, 204):
        d.rectangle([x0, 45, x0 + 80, 95], fill="#e57373", outline="black", width=2)
        d.rectangle([x0 + 80, 45, x0 + 160, 95], fill="#64b5f6", outline="black", width=2)
        text(d, (x0 + 40, 70), "N", f, anchor="mm")
        text(d, (x0 + 120, 70), "S", f, anchor="mm")
    return im


def water_cycle() -> Image.Image:
    im = vgradient(384, 288, (170, 210, 245), (235, 245, 252))
    d = ImageDraw.Draw(im)
    d.ellipse([12, 12, 62, 62], fill="#ffca28")
    d.rectangle([0, 220, 384, 288], fill="#1e88e5")
    d.polygon([(250, 220), (330, 120), (384, 160), (384, 220)], fill="#6d8b3a")
    for cx in (180, 215, 250):
        d.ellipse([cx - 30, 40, cx + 30, 80], fill="white", outline="#b0bec5")
    f = font(12, bold=True)
    arrow(d, (90, 210), (150, 95), fill="#c62828")
    text(d, (20, 150), "evaporation", f)
    text(d, (160, 22), "condensation", f)
    for x in (200, 225, 250):
        d.line([x, 90, x - 8, 130], fill="#1565c0", width=2)
    text(d, (262, 100), "precipitation", f)
    arrow(d, (330, 200), (260, 228), fill="#1565c0")
    text(d, (150, 250), "collection", font(13, bold=True), fill="white")
    return im


def life_cycle() -> Image.Image:
    im, d = canvas(320, 320, "#fbfff5")
    stages = [("egg", (160, 50)), ("larva", (270, 160)), ("pupa", (160, 270)), ("adult", (50, 160))]
    for name, (x, y) in stages:
        d.ellipse([x - 30, y - 24, x + 30, y + 24], fill="#c5e1a5", outline="black", width=2)
        text(d, (x, y), name, font(13, bold=True), anchor="mm")
    for i in range(4):
        (_, a), (_, b) = stages[i], stages[(i + 1) % 4]
        mx, my = a[0] + (b[0] - a[0]) * 0.3, a[1] + (b[1] - a[1]) * 0.3
        nx, ny = a[0] + (b[0] - a[0]) * 0.7, a[1] + (b[1] - a[1]) * 0.7
        arrow(d, (mx, my), (nx, ny), width=2)
    text(d, (160, 160), "Butterfly", font(14), anchor="mm")
    return im


def moon_disk(seed: int) -> Image.Image:
    rng = np.random.RandomState(seed)
    size = 320
    yy, xx = np.mgrid[0:size, 0:size]
    r = np.hypot(xx - size / 2, yy - size / 2)
    shade = np.clip(1.0 - ((xx - size * 0.35) ** 2 + (yy - size * 0.35) ** 2) / (2.2 * (size / 2) ** 2), 0.45, 1.0)
    base = 185 * shade + rng.normal(0, 6, size=(size, size))
    for _ in range(60):  # craters and maria
        cx, cy, cr = rng.uniform(40, 280), rng.uniform(40, 280), rng.uniform(4, 28)
        base -= 28 * np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * cr**2)))
    arr = np.where(r < 140, np.clip(base, 0, 255), 5.0)
    return Image.fromarray(np.repeat(arr[:, :, None], 3, axis=2).astype("uint8"), "RGB")


def eiffel_tower(seed: int) -> Image.Image:
    im = noisy(vgradient(288, 384, (140, 185, 230), (225, 235, 245)), seed, 3)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 350, 288, 384], fill="#7a9a4a")
    brown = "#5d4a36"
    top, lft, rgt = (144, 30), (52, 352), (236, 352)
    d.line([top, lft], fill=brown, width=5)
    d.line([top, rgt], fill=brown, width=5)
    for k in range(1, 12):  # lattice
        t = k / 12
        xl, xr = top[0] + (lft[0] - top[0]) * t, top[0] + (rgt[0] - top[0]) * t
        y = top[1] + (lft[1] - top[1]) * t
        d.line([xl, y, xr, y], fill=brown, width=2)
        if k < 11:
            t2 = (k + 1) / 12
            y2 = top[1] + (lft[1] - top[1]) * t2
            d.line([xl, y, top[0] + (rgt[0] - top[0]) * t2, y2], fill=brown, width=1)
            d.line([xr, y, top[0] + (lft[0] - top[0]) * t2, y2], fill=brown, width=1)
    d.rectangle([96, 226, 192, 236], fill=brown)  # first platform
    d.pieslice([100, 300, 188, 400], 180, 360, fill=(140, 185, 230))  # arch between the legs
    d.line([144, 10, 144, 30], fill=brown, width=3)
    return im


def pyramid(seed: int) -> Image.Image:
    im = noisy(vgradient(384, 256, (120, 175, 225), (235, 225, 200)), seed, 3)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 200, 384, 256], fill="#d8b878")
    d.polygon([(70, 200), (190, 40), (260, 200)], fill="#d9b26b")
    d.polygon([(190, 40), (260, 200), (330, 200)], fill="#a9844a")
    d.polygon([(290, 200), (340, 130), (384, 200)], fill="#c9a262")
    d.polygon([(10, 200), (45, 160), (80, 200)], fill="#c9a262")
    return im


def golden_gate(seed: int) -> Image.Image:
    im = noisy(vgradient(384, 256, (150, 190, 225), (215, 225, 235)), seed, 3)
    d = ImageDraw.Draw(im)
    d.rectangle([0, 190, 384, 256], fill="#2f6f96")
    red = "#c0362c"
    for x in (110, 274):
        d.rectangle([x - 7, 40, x + 7, 210], fill=red)
        for y in (60, 100, 140):
            d.rectangle([x - 12, y, x + 12, y + 6], fill=red)
    d.rectangle([0, 168, 384, 176], fill=red)  # deck
    xs = np.linspace(110, 274, 40)
    cable = [(float(x), 150 - 0.016 * (x - 192) ** 2) for x in xs]  # sags between the tower tops
    d.line(cable, fill=red, width=3)
    d.line([(0, 150), (110, 42)], fill=red, width=3)
    d.line([(274, 42), (384, 150)], fill=red, width=3)
    for x, y in cable[::3]:
        d.line([x, y, x, 168], fill=red, width=1)
    return im
