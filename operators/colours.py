"""Naming the colour of pixels: one list of colour words and one rule set (simple HSV bins), shared by
the template caption ("mostly white and blue") and the segments backend of `label_bbox` ("3 red"), so
a colour the caption calls red is red for the counts too."""
from __future__ import annotations

import numpy as np

COLOUR_NAMES = ("black", "white", "grey", "red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "brown")


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """Per-pixel colour-name index into `COLOUR_NAMES` (rgb float array in [0, 1], shape (n, 3))."""
    mx, mn = rgb.max(axis=1), rgb.min(axis=1)
    v, s = mx, np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    delta = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / delta) % 6, np.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4)) * 60
    names = np.full(len(rgb), 2)  # grey
    chromatic = (s >= 0.25) & (v >= 0.2)
    hue_bins = [(15, 3), (40, 4), (70, 5), (165, 6), (195, 7), (255, 8), (290, 9), (335, 10), (360, 3)]
    lower = 0
    for upper, idx in hue_bins:
        names = np.where(chromatic & (h >= lower) & (h < upper), idx, names)
        lower = upper
    names = np.where(chromatic & (names == 4) & (v < 0.6), 11, names)  # dark orange → brown
    names = np.where(~chromatic & (v < 0.2), 0, names)
    names = np.where(~chromatic & (v >= 0.2) & (v > 0.85) & (s < 0.25), 1, names)
    return names
