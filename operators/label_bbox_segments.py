"""`label_bbox`'s offline default: class-agnostic object proposals by classical segmentation.

Guarantee: it never names a class. No detector weights exist offline (Grounding DINO, OWL-ViT, YOLO-World:
none reachable here), so this backend says what pixels alone can say: the separate objects that stand out
from the background, their boxes and each one's dominant colour. Its `backend` is `segments` and every
result says "no class names", so neither a teacher nor a reader takes a blob for a named object. It serves
counting questions on drawn scenes and simple photos ("How many stars?", "How many red objects?"); it
cannot tell a star from a circle, nor separate touching objects, nor see an object the colour of its
background (CLEVR's grey cylinder on the grey floor).

How: the background is a plane per colour channel (a + b·x + c·y, which follows a lit floor's gradient)
fitted to the image's border pixels, refitted twice without the outliers; a pixel is foreground when its
colour is further from that plane than Otsu's threshold of the distances (at least `min_contrast`);
the mask is opened once (specks, thin lines), its holes filled (an outlined shape is one object), and
split into 8-connected components (`scipy.ndimage.label`); components under `min_area` of the image are
dropped. A component's colour is the most common `operators.colours` name of its pixels.

Args: `labels` / `scene_graph` are accepted and ignored (it cannot look for a named thing).
`text`: "7 separate objects (segmentation; no class names): 7 yellow. Boxes: yellow [0.04, 0.13, 0.21,
0.35]; …" — boxes normalised [0,1] xyxy with 2 decimals, as the Grounding DINO backend writes them.
`data` carries the pixel boxes, areas and colours.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Optional, Sequence

import numpy as np

from operators.base import Backend, OperatorResult, package_version, per_image_text
from operators.colours import COLOUR_NAMES, colour_names
from operators.images import LoadedImage

MAX_LISTED = 40  # boxes written into the text; `data` keeps them all
NO_CLASS_NAMES = "segmentation; no class names"


def _background(rgb: np.ndarray) -> np.ndarray:
    """A plane per channel fitted to the border pixels, with outliers (objects touching the border) dropped."""
    height, width, _ = rgb.shape
    yy, xx = np.mgrid[0:height, 0:width]
    band = max(2, min(height, width) // 50)
    border = np.zeros((height, width), bool)
    border[:band], border[-band:], border[:, :band], border[:, -band:] = True, True, True, True
    design = np.stack([np.ones(height * width), xx.ravel() / width, yy.ravel() / height], axis=1)
    on_border = border.ravel()
    plane = np.empty((height * width, 3))
    for channel in range(3):
        values = rgb[..., channel].ravel()
        used = on_border.copy()
        for _ in range(3):
            coef, *_ = np.linalg.lstsq(design[used], values[used], rcond=None)
            residual = np.abs(design @ coef - values)
            used = on_border & (residual <= max(3 * float(np.median(residual[on_border])), 0.02))
        plane[:, channel] = design @ coef
    return plane.reshape(height, width, 3)


def segment(image, min_area: float = 0.002, min_contrast: float = 0.08) -> list[dict[str, Any]]:
    """Objects in one upright RGB PIL image, in reading order (top to bottom, then left to right)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    rgb = np.asarray(image, dtype=np.float64) / 255.0
    height, width, _ = rgb.shape
    distance = np.sqrt(((rgb - _background(rgb)) ** 2).sum(axis=2))
    threshold = max(float(threshold_otsu(distance)) if np.ptp(distance) > 0 else 1.0, min_contrast)
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(distance > threshold))
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    names = colour_names(rgb.reshape(-1, 3)).reshape(height, width)
    smallest = max(20.0, min_area * height * width)
    objects = []
    for index, window in enumerate(ndimage.find_objects(labels), 1):
        inside = labels[window] == index
        area = int(inside.sum())
        if area < smallest:
            continue
        colour = COLOUR_NAMES[int(np.bincount(names[window][inside], minlength=len(COLOUR_NAMES)).argmax())]
        y0, y1, x0, x1 = window[0].start, window[0].stop, window[1].start, window[1].stop
        objects.append({"box": [round(x0 / width, 4), round(y0 / height, 4), round(x1 / width, 4), round(y1 / height, 4)],
                        "box_px": [x0, y0, x1, y1], "area_px": area, "colour": colour})
    rows = max(1, height // 8)  # reading order: rows of an eighth of the image, then left to right
    objects.sort(key=lambda o: ((o["box_px"][1] + o["box_px"][3]) // 2 // rows, o["box_px"][0]))
    return objects


def segments_text(objects: list[dict[str, Any]]) -> str:
    if not objects:
        return f"No separate objects found ({NO_CLASS_NAMES})."
    colours = Counter(o["colour"] for o in objects)
    tally = ", ".join(f"{n} {colour}" for colour, n in sorted(colours.items(), key=lambda kv: (-kv[1], kv[0])))
    noun = "object" if len(objects) == 1 else "objects"
    boxes = "; ".join(f"{o['colour']} [" + ", ".join(f"{v:.2f}" for v in o["box"]) + "]" for o in objects[:MAX_LISTED])
    more = f"; and {len(objects) - MAX_LISTED} more" if len(objects) > MAX_LISTED else ""
    return f"{len(objects)} separate {noun} ({NO_CLASS_NAMES}): {tally}. Boxes: {boxes}{more}."


_TALLY = re.compile(r"^(?P<total>\d+) separate objects? \(" + re.escape(NO_CLASS_NAMES) + r"\): (?P<tally>[^.]*)\.")


def read_segments_text(text: str) -> Optional[tuple[int, dict[str, int]]]:
    """(objects, colour -> objects) from one image's `segments_text`, or None for any other text."""
    match = _TALLY.match(text.strip())
    if match is None:
        return None
    tally = {}
    for part in match.group("tally").split(", "):
        n, _, colour = part.partition(" ")
        if n.isdigit() and colour in COLOUR_NAMES:
            tally[colour] = int(n)
    return int(match.group("total")), tally


class SegmentsBackend(Backend):
    operator = "label_bbox"
    name = "segments"
    requires_modules = ("scipy", "skimage")
    install_hint = "pip install scikit-image scipy (or the 'ops' extra)"
    description = "classical connected components; no class names"

    def __init__(self, min_area: float = 0.002, min_contrast: float = 0.08) -> None:
        super().__init__()
        self.min_area = float(min_area)
        self.min_contrast = float(min_contrast)
        self.version = f"1/scikit-image-{package_version('scikit-image')}"

    def settings(self) -> dict[str, Any]:
        return {"min_area": self.min_area, "min_contrast": self.min_contrast}

    def normalize_args(self, args: dict[str, Any]) -> dict[str, Any]:
        return {}  # labels name what to find; a class-agnostic segmentation finds the same either way

    def run(self, images: Sequence[LoadedImage], **args: Any) -> OperatorResult:
        texts, per_image = [], []
        for im in images:
            objects = segment(im.rgb, self.min_area, self.min_contrast)
            texts.append(segments_text(objects))
            per_image.append({"objects": objects, "width": im.size[0], "height": im.size[1]})
        return self.result(per_image_text(texts), {"kind": "segments", "images": per_image})
