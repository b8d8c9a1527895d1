"""Second looks for the text detector, on small crops where its first pass is weakest.

The detector's first pass over a whole frame finds most text but, on small (8-12 px) or
faint lines, often only part of a line ("David" of "David Johnson"), and on text drawn
over bright anatomy it can return one blob the height of the bone, which is not a line.
A second pass on a crop fixes both at a fraction of a frame's cost: the crop is
contrast-stretched (its own darkest and brightest values become black and white) and
upscaled so small glyphs reach the size the detector was trained on.

* :func:`complete_lines` re-detects a band around each small line, so a partly found line
  is found whole.
* :func:`split_blobs` re-detects inside a detection too tall to be a line.
* :func:`small_text_pass` looks at a frame where text was found at twice the size, for
  small faint lines the first pass missed entirely.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from phigate.pixels.boxes import clip, contains, intersection, merge_touching, touch, union
from phigate.pixels.cues import stroke_clusters
from phigate.pixels.engines import OcrEngine, RgbImage, TextRegion
from phigate.pixels.rules import Box

# Detections at most this tall (pixels) are small lines worth a second look.
SMALL_LINE = 26
# The second look upscales a crop so a line's box is about this tall, at most 3 times.
TARGET_LINE = 36
MAX_UPSCALE = 3.0
# How far beyond a small line the band reaches, in line heights, left and right.
BAND_REACH = 5
# Times a band is moved along a line that runs into its end.
MAX_BAND_STEPS = 3
# Second looks inside one blob at most, and the tallest stroke cluster taken for a line.
MAX_BLOB_LOOKS = 4
MAX_CLUSTER_HEIGHT = 64
LINE_ASPECT = 1.5  # a cluster at least this many times as wide as tall: two glyphs or more
# The pass at twice the size looks this far left and right of a faint trace, and this far
# above and below it (pixels; more for a taller trace), or, when the engine gives no traces,
# it runs on grainy regions up to this many pixels a side. Grain:
# blocks of GRAIN_BLOCK pixels whose mean difference from the 3x3 neighbourhood mean is at
# least GRAIN_LEVEL grey levels, in groups of MIN_GRAINY_BLOCKS blocks or more.
TRACE_REACH = 48
TRACE_MARGIN = 12
SMALL_TEXT_MAX_SIDE = 1024
GRAIN_BLOCK = 16
GRAIN_LEVEL = 6.0
MIN_GRAINY_BLOCKS = 24
# A second look never covers more than this many pixels (after upscaling) at once.
MAX_CROP_PIXELS = 640 * 640


def complete_lines(
    engine: OcrEngine, image: RgbImage, regions: Sequence[TextRegion]
) -> list[TextRegion]:
    """Each small line re-detected in a stretched, upscaled band around it, merged with
    what was found there, so a line found in part is cleared whole."""
    found = list(regions)
    for region in regions:
        if region.box[3] <= SMALL_LINE:
            found += _follow_line(engine, image, region.box)
    return merge_lines(found)


def _follow_line(engine: OcrEngine, image: RgbImage, box: Box) -> list[TextRegion]:
    """Second looks along one line: a band reaching :data:`BAND_REACH` line heights each
    side, moved on while the line found runs into the band's end (a long line)."""
    rows, cols = image.shape[:2]
    _, y, _, h = box
    reach = BAND_REACH * h + 8
    line: Box = box
    found: list[TextRegion] = []
    for _ in range(MAX_BAND_STEPS):
        band = clip((line[0] - reach, y - h // 2, line[2] + 2 * reach, h + h), rows, cols)
        here = [r for r in second_look(engine, image, band) if _same_line(r.box, box)]
        found += here
        grown = line
        for region in here:
            grown = union(grown, region.box) if touch(grown, region.box) else grown
        if grown == line or not _runs_into_edge(grown, band, cols):
            break
        line = grown
    return found


def _runs_into_edge(line: Box, band: Box, columns: int) -> bool:
    """The line reaches a band end that is not the image's edge (it may go on)."""
    left = line[0] <= band[0] + 2 and band[0] > 0
    right = line[0] + line[2] >= band[0] + band[2] - 2 and band[0] + band[2] < columns
    return left or right


def small_text_pass(
    engine: OcrEngine,
    image: RgbImage,
    area: Box,
    known: Sequence[TextRegion],
    traces: Sequence[Box] | None,
) -> list[TextRegion]:
    """Small lines the first pass missed in ``area``, from a pass at twice the size.

    8-10 px text at faint contrast is below what the detector sees at 1:1 and plain at
    2:1. The pass runs only where text was already found (a frame with text tends to carry
    more), and only where such text may be: over the grainy parts of the area
    (:func:`grainy_regions`), where faint text leaves no trace above the noise's own, and
    around the first pass's faint ``traces`` that no known line holds
    (:func:`around_traces`; ``None`` from an engine that gives none), each look at most
    :data:`SMALL_TEXT_MAX_SIDE` a side.
    """
    looks = grainy_regions(image, area)
    if traces is not None:
        near = around_traces(image, area, traces)
        looks += [t for t in near if not any(contains(g, t) for g in looks)]
    found: list[TextRegion] = []
    for rx, ry, rw, rh in looks:
        if max(rw, rh) > SMALL_TEXT_MAX_SIDE:
            continue
        crop = image[ry : ry + rh, rx : rx + rw]
        big = cv2.resize(crop, (2 * rw, 2 * rh), interpolation=cv2.INTER_CUBIC)
        found += [
            TextRegion(_back(r.box, 2.0, rx, ry, image.shape), r.score)
            for r in engine.detect(np.ascontiguousarray(big, dtype=np.uint8))
        ]
    return [
        r
        for r in found
        if 0 < r.box[3] <= SMALL_LINE and not any(_covered(r.box, k.box) for k in known)
    ]


def around_traces(image: RgbImage, area: Box, traces: Sequence[Box]) -> list[Box]:
    """Rectangles of ``area`` around each trace in it, wide and tall enough for the small
    line it may be part of (:data:`TRACE_REACH`, :data:`TRACE_MARGIN`), touching ones
    joined."""
    rows, cols = image.shape[:2]
    looks = []
    for x, y, w, h in traces:
        reach, margin = max(TRACE_REACH, 4 * h), max(TRACE_MARGIN, h)
        look = intersection(
            clip((x - reach, y - margin, w + 2 * reach, h + 2 * margin), rows, cols), area
        )
        if look is not None:
            looks.append(look)
    return merge_touching(looks)


def grainy_regions(image: RgbImage, area: Box) -> list[Box]:
    """Rectangles of ``area`` where the picture is grainy: blocks whose mean pixel-to-
    neighbourhood difference is at least :data:`GRAIN_LEVEL` grey levels, in connected
    groups of at least :data:`MIN_GRAINY_BLOCKS` blocks, four blocks wide and tall (a line
    of text alone is not one)."""
    x, y, w, h = area
    gray = image[y : y + h, x : x + w].max(axis=2).astype(np.float32)
    detail = np.abs(gray - cv2.blur(gray, (3, 3)))
    cols, rows = max(1, w // GRAIN_BLOCK), max(1, h // GRAIN_BLOCK)
    blocks = cv2.resize(detail, (cols, rows), interpolation=cv2.INTER_AREA) >= GRAIN_LEVEL
    count, _, stats, _ = cv2.connectedComponentsWithStats(blocks.astype(np.uint8), connectivity=8)
    regions = []
    for i in range(1, count):
        bx, by, bw, bh, blocks_in = (int(v) for v in stats[i])
        if blocks_in >= MIN_GRAINY_BLOCKS and min(bw, bh) >= 4:  # taller than a line
            box = (
                x + (bx - 1) * w // cols,
                y + (by - 1) * h // rows,
                (bw + 2) * w // cols,
                (bh + 2) * h // rows,
            )
            regions.append(clip(box, *image.shape[:2]))
    return regions


def split_blobs(
    engine: OcrEngine, image: RgbImage, blobs: Sequence[TextRegion]
) -> list[TextRegion]:
    """Lines inside detections too tall to be text (text over bright anatomy that the
    first pass merged with the bone around it).

    Only line-shaped clusters of glyph-sized strokes inside the blob get a second look
    (long edges of bone and organs are left out of the clusters): a blob of noise or
    texture has no such cluster and costs nothing more.
    """
    found: list[TextRegion] = []
    rows, cols = image.shape[:2]
    for blob in blobs:
        x, y, w, h = blob.box
        for cluster in line_clusters(image[y : y + h, x : x + w])[:MAX_BLOB_LOOKS]:
            cx, cy, cw, ch = cluster
            area = clip((x + cx - ch, y + cy - ch // 2, cw + 2 * ch, 2 * ch), rows, cols)
            found += second_look(engine, image, area)
    return found


def line_clusters(image: RgbImage) -> list[Box]:
    """Stroke clusters shaped like a line of text (or a word), largest first."""
    clusters = stroke_clusters(image, glyphs_only=True)
    boxes = [b for b in clusters if b[3] <= MAX_CLUSTER_HEIGHT and b[2] >= LINE_ASPECT * b[3]]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def second_look(engine: OcrEngine, image: RgbImage, area: Box) -> list[TextRegion]:
    """Detect in one crop, stretched and, for small text, upscaled; boxes in frame
    coordinates."""
    x, y, w, h = area
    if w < 4 or h < 4:
        return []
    crop = stretch(image[y : y + h, x : x + w])
    scale = _scale_for(h, w)
    if scale != 1.0:
        size = (round(w * scale), round(h * scale))
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    regions = engine.detect(crop)
    return [
        TextRegion(_back(r.box, scale, x, y, image.shape), r.score)
        for r in regions
        if r.box[2] > 0 and r.box[3] > 0
    ]


def stretch(crop: RgbImage) -> RgbImage:
    """The crop's own value range spread over 0..255 (faint text becomes plain text)."""
    low, high = np.percentile(crop, (0.5, 99.8))
    if high - low < 8:
        return np.ascontiguousarray(crop)
    out = (crop.astype(np.float32) - float(low)) * (255.0 / float(high - low))
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))


def merge_lines(regions: Sequence[TextRegion]) -> list[TextRegion]:
    """Overlapping boxes on one line become one box (the union), keeping the best score."""
    merged = sorted(regions, key=lambda r: (r.box[1], r.box[0]))
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = merged[i], merged[j]
                if touch(a.box, b.box) and _same_line(a.box, b.box):
                    merged[i] = TextRegion(union(a.box, b.box), max(a.score, b.score))
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def _scale_for(h: int, w: int) -> float:
    line = h / 2  # a band is two line heights tall
    scale = min(MAX_UPSCALE, max(1.0, TARGET_LINE / max(line, 1.0)))
    limit = (MAX_CROP_PIXELS / max(1, w * h)) ** 0.5
    return float(max(1.0, min(scale, limit)))


def _back(box: Box, scale: float, ox: int, oy: int, shape: tuple[int, ...]) -> Box:
    bx, by, bw, bh = box
    x0, y0 = ox + int(bx / scale), oy + int(by / scale)
    x1 = min(shape[1], ox + int(np.ceil((bx + bw) / scale)))
    y1 = min(shape[0], oy + int(np.ceil((by + bh) / scale)))
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def _covered(box: Box, by: Box) -> bool:
    """At least half of ``box`` lies inside ``by``."""
    x0, y0 = max(box[0], by[0]), max(box[1], by[1])
    x1, y1 = min(box[0] + box[2], by[0] + by[2]), min(box[1] + box[3], by[1] + by[3])
    inside = max(0, x1 - x0) * max(0, y1 - y0)
    return inside >= 0.5 * box[2] * box[3]


def _same_line(a: Box, b: Box) -> bool:
    """Vertical overlap of at least half the smaller height, and heights alike."""
    top, bottom = max(a[1], b[1]), min(a[1] + a[3], b[1] + b[3])
    small, large = sorted((a[3], b[3]))
    return bottom - top >= 0.5 * small and large <= 2.5 * max(small, 1)
