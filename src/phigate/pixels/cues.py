"""A cheap look for anything text could be made of, before the text detector runs.

Most CT and MR slices carry no text, and the detector's pass over a 512 x 512 frame costs
about 0.1 s on one core. Text, whatever its font or size, is made of thin strokes that
stand out from what is right around them; flat air and smooth anatomy at display contrast
have none. Morphological top-hat (bright strokes) and black-hat (dark strokes) with a
kernel wider than any stroke, thresholded at the faintest contrast text is drawn with,
find every such stroke in a few milliseconds.

:func:`text_areas` turns the strokes into the places the detector must look: nowhere
(nothing stroke-like: the detector is skipped), a few padded rectangles (the detector runs
on those crops only), or the whole frame when strokes are everywhere (noise, busy
anatomy). It errs towards looking: every stroke is inside an area, so narrowing the
detector's view never hides text it could have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from phigate.pixels.boxes import grow, merge_touching
from phigate.pixels.engines import RgbImage
from phigate.pixels.rules import Box

# Strokes are thinner than this (pixels): 24 px bold type has 4-5 px stems.
STROKE_KERNEL = 9
# Faintest stroke contrast on the 8-bit display (grey levels) that counts as possible text.
MIN_STROKE_CONTRAST = 20
# A cluster of strokes at least this tall, with at least this many stroke pixels, may be text.
MIN_CLUSTER_HEIGHT = 5
MIN_STROKE_PIXELS = 6
# A stroke taller than this is an edge of anatomy, not part of a glyph.
MAX_GLYPH_HEIGHT = 48
# Context the detector gets around a cluster (pixels), and the share of the frame above
# which one pass over the whole frame is cheaper than passes over crops.
AREA_PADDING = 24
WHOLE_FRAME_SHARE = 0.4
# More clusters than this: strokes are everywhere (noise), look at the whole frame.
MAX_CLUSTERS = 48
# A line read in part grows along its strokes up to this many line heights each way, and
# stops at a stroke-free gap this many line heights wide (a word space is about 0.3).
LINE_REACH = 6.0
LINE_GAP = 0.8
GLYPH_SHARE = 0.25


def text_areas(image: RgbImage) -> list[Box] | None:
    """Where text may be: ``[]`` for nowhere, ``None`` for the whole image, else padded
    rectangles that hold every stroke-like cluster."""
    clusters = stroke_clusters(image)
    if not clusters:
        return []
    if len(clusters) > MAX_CLUSTERS:
        return None
    rows, cols = image.shape[:2]
    areas = merge_touching([grow(box, AREA_PADDING, rows, cols) for box in clusters])
    if sum(w * h for _, _, w, h in areas) > WHOLE_FRAME_SHARE * rows * cols:
        return None
    return areas


def line_extent(image: RgbImage, box: Box, stops: Sequence[Box] = ()) -> Box:
    """``box`` grown left and right along its line while strokes go on: a line read only in
    part ("Tel 617-555-" of "Tel 617-555-0142") is cleared whole.

    The growth ends at a gap wider than :data:`LINE_GAP` line heights with no stroke in the
    line's band, at :data:`LINE_REACH` line heights, or at one of ``stops`` (text judged
    harmless, kept as it is).
    """
    x, y, w, h = box
    cols = image.shape[1]
    if w <= 0 or h <= 0:
        return box
    reach = round(LINE_REACH * h)
    left, right = max(0, x - reach), min(cols, x + w + reach)
    for sx, sy, sw, sh in stops:
        if sy < y + h and y < sy + sh:  # on the line
            if sx + sw <= x:
                left = max(left, sx + sw)
            elif sx >= x + w:
                right = min(right, sx)
    band = _line_ink(image, (left, y, right - left, h))
    gap = max(2, round(LINE_GAP * h))
    end = _last_ink(band[x + w - left :], gap)
    start = _last_ink(band[: x - left][::-1], gap)
    return (x - start, y, w + start + end, h)


def _line_ink(image: RgbImage, band: Box) -> NDArray[np.bool_]:
    """Columns of ``band`` (one line tall) with glyph strokes in the line and none in the
    line's height just above or below it: on noise or texture, where strokes are
    everywhere, no column counts, and a line is not grown into the picture. A glyph's
    stroke is taller than a scale bar or a thin vessel: a column counts when at least
    :data:`GLYPH_SHARE` of the line height is stroke."""
    x, y, w, h = band
    rows = image.shape[0]
    top, bottom = max(0, y - h - STROKE_KERNEL), min(rows, y + 2 * h + STROKE_KERNEL)
    strokes = stroke_mask(np.ascontiguousarray(image[top:bottom, x : x + w])).astype(bool)
    tall = max(2, round(GLYPH_SHARE * h))
    line = strokes[y - top : y - top + h].sum(axis=0) >= tall
    above = strokes[max(0, y - h - top) : max(0, y - top - 1)].any(axis=0)
    below = strokes[y - top + h + 1 : y - top + 2 * h].any(axis=0)
    return np.asarray(line & ~above & ~below, dtype=np.bool_)


def _last_ink(columns: NDArray[np.bool_], gap: int) -> int:
    """How many of ``columns`` (walking away from a line's end) still belong to it: up to
    the last inked column before the first run of ``gap`` empty ones."""
    last, empty = 0, 0
    for i, inked in enumerate(columns, start=1):
        if inked:
            last, empty = i, 0
        else:
            empty += 1
            if empty >= gap:
                break
    return last


def stroke_clusters(image: RgbImage, glyphs_only: bool = False) -> list[Box]:
    """Bounding boxes of clusters of strokes big enough to be part of a glyph or more;
    ``glyphs_only`` leaves out strokes taller than a glyph (edges of bone and organs)."""
    strokes = stroke_mask(image)
    if glyphs_only:
        strokes = _drop_tall(strokes)
    if not strokes.any():
        return []
    grown = cv2.dilate(strokes, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 3)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    ink = np.bincount(labels[strokes > 0], minlength=count)
    keep = (stats[:, cv2.CC_STAT_HEIGHT] >= MIN_CLUSTER_HEIGHT) & (ink >= MIN_STROKE_PIXELS)
    return [_box(stats[i]) for i in range(1, count) if keep[i]]


def stroke_mask(image: RgbImage) -> NDArray[np.uint8]:
    """Pixels brighter or darker than everything in a stroke-wide neighbourhood by at least
    :data:`MIN_STROKE_CONTRAST` grey levels, in any channel (coloured text counts)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (STROKE_KERNEL, STROKE_KERNEL))
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    for plane in _planes(image):
        for operation in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
            response = cv2.morphologyEx(plane, operation, kernel)
            mask |= (response >= MIN_STROKE_CONTRAST).astype(np.uint8)
    return mask


def _drop_tall(strokes: NDArray[np.uint8]) -> NDArray[np.uint8]:
    _, labels, stats, _ = cv2.connectedComponentsWithStats(strokes, connectivity=8)
    short = stats[:, cv2.CC_STAT_HEIGHT] <= MAX_GLYPH_HEIGHT
    short[0] = False
    return np.asarray(short[labels], dtype=np.uint8)


def _planes(image: RgbImage) -> list[NDArray[np.uint8]]:
    """One plane for a grey rendering, each channel for a coloured one."""
    first = np.ascontiguousarray(image[..., 0])
    if np.array_equal(first, image[..., 1]) and np.array_equal(first, image[..., 2]):
        return [first]
    return [np.ascontiguousarray(image[..., c]) for c in range(3)]


def _box(stat: NDArray[Any]) -> Box:
    return (int(stat[0]), int(stat[1]), int(stat[2]), int(stat[3]))
