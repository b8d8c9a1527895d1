"""Find and read the text in a stack of frames, doing as little OCR as the pixels allow.

* The first frame scanned (the reference) is read whole. Every later frame is compared
  with it and with the frame scanned just before: pixels that did not change (within a
  small tolerance, since cines that were once lossy-compressed flicker by a few grey
  levels) carry the same text, so only the changed parts, grown to any text box they
  touch, go to the detector. Against the reference alone, text that left for a frame and
  came back would be on neither list; against the last frame alone, a slow fade would.
* Text read on an earlier frame whose pixels are as they were then keeps that reading,
  and is hidden from the detector: it looks for new text only, and takes no second looks
  (:mod:`phigate.pixels.refine`) for text already read. A cine loop whose annotations stay
  put while the picture moves costs one full detection plus one first pass per frame.
* Frames a sampling strategy does not read still get the reference's text boxes, after a
  check that the pixels under those boxes did not change (else they are read).
* Recognition runs only inside detected boxes, and a box whose pixels were already read
  (in this instance or, through a shared :class:`ReadingMemo`, in the same series) is not
  read again.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from phigate.pixels.boxes import contains, grow, intersection, union
from phigate.pixels.cues import text_areas
from phigate.pixels.engines import OcrEngine, Reading, RgbImage, TextRegion
from phigate.pixels.refine import complete_lines, small_text_pass, split_blobs
from phigate.pixels.rules import Box

# How far around changed pixels the detector looks, so a changed glyph is seen with its word.
CHANGE_MARGIN = 16
# Above this share of the frame, one look over all the changed parts together costs less
# than a look at each.
WHOLE_FRAME_SHARE = 0.5
# Detections taller than this (share of the frame height, or pixels) are not text lines.
TALLEST_LINE_SHARE = 0.25
MIN_TALLEST_LINE = 64
# Pixels around a text box already read that are hidden with it from the detector.
HIDE_MARGIN = 2


@dataclass(frozen=True, slots=True)
class TextPiece:
    """One line of text found on one frame. Holds the reading: internal, never reported."""

    frame: int
    box: Box
    detection_score: float
    reading: Reading


class ReadingMemo:
    """Readings by the digest of the pixels they were read from (bounded, least recent out).

    Identical crops give identical readings, so a layout repeated across frames or across
    the slices of a series is read once. The memo lives in one worker's memory only.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._items: OrderedDict[bytes, Reading] = OrderedDict()
        self._capacity = capacity
        self.hits = 0

    def get(self, key: bytes) -> Reading | None:
        reading = self._items.get(key)
        if reading is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return reading

    def put(self, key: bytes, reading: Reading) -> None:
        self._items[key] = reading
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


@dataclass(slots=True)
class ScanReport:
    """What a scan found and how it went (frames that failed are retried by nobody: they
    send the instance to review)."""

    pieces: list[TextPiece] = field(default_factory=list)
    scanned: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    detect_seconds: float = 0.0
    recognize_seconds: float = 0.0
    detections: int = 0
    recognitions: int = 0
    fresh_pieces: int = 0  # pieces found outside the reference frame's static text
    covered: set[int] = field(default_factory=set)  # frames given the static text unread


Renderer = Callable[[int], RgbImage]


class FrameScanner:
    """Scans frames of one instance, reusing work between frames.

    ``decoded`` are the stored frames (to see which pixels changed; ``tolerance`` is the
    change in stored units that still counts as unchanged), ``render`` gives the 8-bit
    picture OCR reads, ``blocked`` the boxes per frame that are cleared anyway (known
    regions) and so need no reading.
    """

    def __init__(
        self,
        decoded: NDArray[Any],
        render: Renderer,
        engine: OcrEngine,
        memo: ReadingMemo,
        blocked: Callable[[int], Sequence[Box]],
        max_side: int,
        tolerance: float = 0.0,
    ) -> None:
        self._decoded = decoded
        self._tolerance = tolerance
        self._render = render
        self._engine = engine
        self._memo = memo
        self._blocked = blocked
        self._max_side = max_side
        self._ref: int | None = None
        self._ref_pieces: list[TextPiece] = []
        self._last: int | None = None  # the frame ``_known`` describes
        # Text on the last frame scanned, each piece on the frame it was read on.
        self._known: list[TextPiece] = []
        self.report = ScanReport()

    def scan(self, frames: Sequence[int]) -> list[TextPiece]:
        """Scan these frames (those already scanned are skipped); returns the new pieces."""
        found: list[TextPiece] = []
        for index in frames:
            if index in self.report.scanned:
                continue
            try:
                pieces = self._scan_one(index)
            except Exception:  # an engine failure on one frame must not stop the others
                self.report.failed.add(index)
                continue
            self.report.scanned.add(index)
            found.extend(pieces)
        self.report.pieces.extend(found)
        return found

    def cover_static(self, frames: Sequence[int]) -> list[int]:
        """Give unread frames the reference's text where its pixels did not change there;
        returns the frames where they did (those must be read)."""
        if self._ref is None:
            return list(frames)
        must_read = []
        for index in frames:
            if index in self.report.scanned or index == self._ref:
                continue
            changed = self._changed(index)
            if any(changed[y : y + h, x : x + w].any() for x, y, w, h in self._ref_boxes()):
                must_read.append(index)
                continue
            self.report.pieces.extend(replace(p, frame=index) for p in self._ref_pieces)
            self.report.covered.add(index)
        return must_read

    def _scan_one(self, index: int) -> list[TextPiece]:
        image = self._masked_render(index)
        if self._ref is None:
            pieces = self._read(index, image, self._detect(image, (0, 0)))
            self._ref, self._ref_pieces = index, pieces
            self._known, self._last = list(pieces), index
            return pieces
        still: list[TextPiece] = []
        moved: list[TextPiece] = []
        for piece in self._known:
            (still if self._unchanged(index, piece) else moved).append(piece)
        changed = self._changed(index)
        if self._last is not None and self._last != self._ref:
            changed |= self._changed_from(index, self._last)
        areas = _areas_to_rescan(changed, [p.box for p in moved])
        # Text whose pixels did not change since it was read keeps that reading: the
        # detector is shown the frame without it, so it looks for new text only (and takes
        # no second looks for text already read).
        view = _hide(image, [p.box for p in still]) if areas and still else image
        regions = [r for area in areas for r in self._detect(_crop(view, area), area[:2])]
        fresh = self._read(index, image, regions)
        self.report.fresh_pieces += len(fresh)
        self._known, self._last = still + fresh, index  # what moved was read again, or is gone
        return [replace(p, frame=index) for p in still] + fresh

    def _unchanged(self, index: int, piece: TextPiece) -> bool:
        """The pixels under ``piece`` are as they were on the frame it was read on."""
        now = _crop(self._decoded[index], piece.box)
        then = _crop(self._decoded[piece.frame], piece.box)
        return not _changed_mask(now, then, self._tolerance).any()

    def _changed(self, index: int) -> NDArray[np.bool_]:
        """Pixels of frame ``index`` that differ from the reference frame."""
        assert self._ref is not None
        return self._changed_from(index, self._ref)

    def _changed_from(self, index: int, other: int) -> NDArray[np.bool_]:
        return _changed_mask(self._decoded[index], self._decoded[other], self._tolerance)

    def _ref_boxes(self) -> list[Box]:
        return [p.box for p in self._ref_pieces]

    def _masked_render(self, index: int) -> RgbImage:
        image = self._render(index)
        blocked = self._blocked(index)
        if blocked:
            image = image.copy()
            for x, y, w, h in blocked:
                image[y : y + h, x : x + w] = 0
        return image

    def _detect(self, image: RgbImage, offset: tuple[int, int]) -> list[TextRegion]:
        """Text lines in ``image`` (a frame or a crop at ``offset``), in frame coordinates.

        The stroke cues (:mod:`phigate.pixels.cues`) say where text may be; the detector
        looks there (or at the whole image), then takes second looks where it is weakest
        (:mod:`phigate.pixels.refine`).
        """
        start = time.perf_counter()
        areas = text_areas(image)
        if areas is None:
            areas = [(0, 0, image.shape[1], image.shape[0])]
        passes = [self._first_pass(image, area) for area in areas]
        first = [r for regions, _ in passes for r in regions]
        traces = (
            None if any(t is None for _, t in passes) else [b for _, t in passes for b in t or ()]
        )
        tallest = max(MIN_TALLEST_LINE, TALLEST_LINE_SHARE * self._decoded.shape[1])
        lines = [r for r in first if r.box[3] <= tallest]
        blobs = [r for r in first if r.box[3] > tallest]
        if lines:  # text here: small faint lines may be near (refine.small_text_pass)
            lines += [
                r for a in areas for r in small_text_pass(self._engine, image, a, lines, traces)
            ]
        lines += [r for r in split_blobs(self._engine, image, blobs) if r.box[3] <= tallest]
        regions = complete_lines(self._engine, image, lines)
        self.report.detect_seconds += time.perf_counter() - start
        self.report.detections += len(areas)
        ox, oy = offset
        return [replace(r, box=_grow(r.box, ox, oy, image.shape)) for r in regions]

    def _first_pass(self, image: RgbImage, area: Box) -> tuple[list[TextRegion], list[Box] | None]:
        """The detector over one area of ``image`` (shrunk to the rules' largest side): its
        lines and faint traces (:meth:`OcrEngine.detect_with_hints`), in frame coordinates."""
        x, y, w, h = area
        crop = image[y : y + h, x : x + w]
        scale = min(1.0, self._max_side / max(crop.shape[:2]))
        small = crop if scale == 1.0 else _shrink(crop, scale)
        regions, traces = self._engine.detect_with_hints(np.ascontiguousarray(small))
        lines = [replace(r, box=_offset(_unscale(r.box, scale), x, y)) for r in regions]
        if traces is None:
            return lines, None
        return lines, [_offset(_unscale(t, scale), x, y) for t in traces]

    def _read(self, index: int, image: RgbImage, regions: list[TextRegion]) -> list[TextPiece]:
        keys = [_digest(_crop(image, r.box)) for r in regions]
        readings: list[Reading | None] = [self._memo.get(k) for k in keys]
        missing = [i for i, reading in enumerate(readings) if reading is None]
        if missing:
            start = time.perf_counter()
            fresh = self._engine.recognize(image, [regions[i].box for i in missing])
            self.report.recognize_seconds += time.perf_counter() - start
            self.report.recognitions += len(missing)
            for i, reading in zip(missing, fresh, strict=True):
                readings[i] = reading
                self._memo.put(keys[i], reading)
        return [
            TextPiece(frame=index, box=r.box, detection_score=r.score, reading=reading)
            for r, reading in zip(regions, readings, strict=True)
            if reading is not None and reading.text.strip()
        ]


def _changed_mask(frame: NDArray[Any], ref: NDArray[Any], tolerance: float) -> NDArray[np.bool_]:
    if tolerance <= 0:
        diff = frame != ref
    else:
        diff = np.abs(frame.astype(np.int64) - ref.astype(np.int64)) > tolerance
    return np.asarray(diff.any(axis=-1) if diff.ndim == 3 else diff, dtype=np.bool_)


def _areas_to_rescan(changed: NDArray[np.bool_], ref_boxes: list[Box]) -> list[Box]:
    """Rectangles around changed pixels, grown to whole text boxes they touch."""
    if not changed.any():
        return []
    rows, cols = changed.shape
    kernel = np.ones((2 * CHANGE_MARGIN + 1, 2 * CHANGE_MARGIN + 1), np.uint8)
    grown = cv2.dilate(changed.astype(np.uint8), kernel)
    count, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    areas: list[Box] = [tuple(int(v) for v in stats[i, :4]) for i in range(1, count)]  # type: ignore[misc]
    areas = _absorb(areas, ref_boxes)
    if sum(w * h for _, _, w, h in areas) > WHOLE_FRAME_SHARE * rows * cols:
        return [functools.reduce(union, areas)]
    return areas


def _absorb(areas: list[Box], boxes: list[Box]) -> list[Box]:
    """Grow each area until no text box straddles its edge."""
    stable = False
    while not stable:
        stable = True
        for i, area in enumerate(areas):
            for box in boxes:
                if intersection(area, box) is not None and not contains(area, box):
                    areas[i] = area = union(area, box)
                    stable = False
    return areas


def _crop(image: NDArray[Any], box: Box) -> NDArray[Any]:
    x, y, w, h = box
    return image[y : y + h, x : x + w]


def _hide(image: RgbImage, boxes: list[Box]) -> RgbImage:
    """A copy of ``image`` with each box (grown by :data:`HIDE_MARGIN`, for the glyphs'
    soft edges) filled with the median colour of a 2-pixel ring just around it."""
    out = image.copy()
    rows, cols = image.shape[:2]
    for box in boxes:
        inner = grow(box, HIDE_MARGIN, rows, cols)
        outer = grow(box, HIDE_MARGIN + 2, rows, cols)
        ring = np.ones((outer[3], outer[2]), dtype=np.bool_)
        ring[_crop_slices(inner, outer)] = False
        around = _crop(image, outer)[ring]
        out[_crop_slices(inner, (0, 0, cols, rows))] = (
            np.median(around, axis=0).astype(np.uint8) if around.size else 0
        )
    return out


def _crop_slices(box: Box, within: Box) -> tuple[slice, slice]:
    """Index of ``box`` in an array holding the pixels of ``within``."""
    x, y = box[0] - within[0], box[1] - within[1]
    return slice(y, y + box[3]), slice(x, x + box[2])


def _shrink(image: RgbImage, scale: float) -> RgbImage:
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _unscale(box: Box, scale: float) -> Box:
    if scale == 1.0:
        return box
    x, y, w, h = box
    return (int(x / scale), int(y / scale), int(np.ceil(w / scale)), int(np.ceil(h / scale)))


def _offset(box: Box, x: int, y: int) -> Box:
    return (box[0] + x, box[1] + y, box[2], box[3])


def _grow(box: Box, ox: int, oy: int, shape: tuple[int, ...]) -> Box:
    """Offset a box from crop to frame coordinates (``shape`` is the crop's)."""
    x, y, w, h = box
    w, h = min(w, shape[1] - x), min(h, shape[0] - y)
    return (x + ox, y + oy, w, h)


def _digest(crop: RgbImage) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(np.asarray(crop.shape, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(crop).tobytes())
    return digest.digest()
