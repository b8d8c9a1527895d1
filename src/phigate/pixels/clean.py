"""Clean burned-in PHI from one instance: :func:`clean_pixels`.

The steps, each in its own module: overlays (:mod:`.overlays`), decode
(:mod:`.pixeldata`), find and read text (:mod:`.scan`), judge it (:mod:`.classify`),
redact the stored values and write them back losslessly (:mod:`.pixeldata`), and set
Burned In Annotation (0028,0301; PS3.3 C.7.6.1 General Image module) to ``NO`` only when
every frame was read and nothing is left for review.

Nothing here logs, raises or returns recognised text: findings carry a kind, a box, a
frame and a confidence, and review reasons are fixed codes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

from phigate.pixels.classify import LABEL_ALONE, TextClassifier, Verdict, label_kind
from phigate.pixels.cues import line_extent
from phigate.pixels.engines import OcrEngine, RgbImage, load_engine
from phigate.pixels.overlays import clear_overlay_boxes, handle_overlays
from phigate.pixels.pixeldata import (
    PixelDataUnsupported,
    PixelImage,
    change_tolerance,
    display_window,
    load_pixels,
    redact,
    render_frame,
    write_back,
)
from phigate.pixels.rules import Box, KnownRegion, PixelRules
from phigate.pixels.sampling import SeriesScanCache, sample_frames
from phigate.pixels.scan import FrameScanner, ReadingMemo, TextPiece
from phigate.record import PHIFinding

# Review reasons: fixed codes, safe to show anywhere.
LOW_CONFIDENCE = "pixel_text_low_confidence"
UNREADABLE = "pixel_text_unreadable"
UNCLASSIFIED = "pixel_text_unclassified"
OCR_FAILED = "pixel_ocr_failed_on_frame"
OVERLAY_FAILED = "overlay_unreadable"
# A value may sit this many line heights after its label (aligned on a tab stop).
LABEL_REACH = 6

Identifiers = Sequence[str] | Mapping[str, str | Sequence[str]]


@dataclass(frozen=True, slots=True)
class PixelOutcome:
    """What :func:`clean_pixels` did to one instance (no PHI in any field).

    A finding's ``frame`` is ``None`` when the same text sat at the same place on several
    frames (a static annotation of a cine loop); its box then applies to each of them.
    ``detector_passes`` counts the detector's first passes (second looks on crops are not
    counted) and ``recognitions`` the boxes read: both 0 when the stroke cues found nothing
    text-like, for throughput reports and tests.
    """

    findings: tuple[PHIFinding, ...] = ()
    fully_scanned: bool = False
    modified: bool = False
    review_reasons: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    frames_total: int = 0
    frames_scanned: int = 0
    skipped_by_sampling: bool = False
    text_found: bool = False
    transfer_syntax_uid: str = ""
    engine: str = ""
    detector_passes: int = 0
    recognitions: int = 0

    @property
    def requires_review(self) -> bool:
        return bool(self.review_reasons)


@dataclass(frozen=True, slots=True)
class _PixelPart:
    """How far the Pixel Data scan got (the overlay part needs no such account)."""

    fully_scanned: bool
    frames_total: int = 0
    frames_scanned: int = 0
    skipped_by_sampling: bool = False


@dataclass(frozen=True, slots=True)
class _Decision:
    """What to do with one piece; ``box`` is the area cleared (the piece's box plus the
    rules' margin) or, when kept, the piece's own box."""

    piece: TextPiece
    box: Box
    verdict: Verdict
    action: str
    kind: str
    confidence: float
    reasons: tuple[str, ...]


def clean_pixels(
    ds: Dataset,
    rules: PixelRules,
    identifiers: Identifiers,
    *,
    cache: SeriesScanCache | None = None,
    engine: OcrEngine | None = None,
) -> PixelOutcome:
    """Find, judge and remove burned-in PHI in ``ds`` (changed in place).

    ``identifiers`` are the instance's own header values collected before header
    de-identification (PN values like ``DOE^JOHN``, IDs, accession, DA dates, institution),
    either as plain strings or by keyword. ``cache`` shares series sampling state and
    readings between instances handled by the same worker.
    """
    run = _Run(ds, rules, identifiers, cache, engine)
    return run.execute()


class _Run:
    """The state of one :func:`clean_pixels` call."""

    def __init__(
        self,
        ds: Dataset,
        rules: PixelRules,
        identifiers: Identifiers,
        cache: SeriesScanCache | None,
        engine: OcrEngine | None,
    ) -> None:
        self.ds, self.rules, self.cache = ds, rules, cache
        self._engine = engine
        self.memo = cache.memo if cache is not None else ReadingMemo()
        self.classifier = TextClassifier(
            rules,
            identifiers,
            (str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", ""))),
        )
        self.timings: dict[str, float] = {}
        self.findings: list[PHIFinding] = []
        self.reasons: list[str] = []
        self.modified = False
        self.text_found = False
        self.work = {"detector_passes": 0, "recognitions": 0}

    def engine(self) -> OcrEngine:
        if self._engine is None:
            self._engine = load_engine(self.rules.engine)
        return self._engine

    def execute(self) -> PixelOutcome:
        start = time.perf_counter()
        self._clean_overlays()
        part = self._clean_pixel_data()
        self.timings["total"] = time.perf_counter() - start
        return PixelOutcome(
            findings=tuple(self.findings),
            fully_scanned=part.fully_scanned,
            frames_total=part.frames_total,
            frames_scanned=part.frames_scanned,
            skipped_by_sampling=part.skipped_by_sampling,
            review_reasons=tuple(dict.fromkeys(self.reasons)),
            modified=self.modified,
            timings={k: round(v, 4) for k, v in self.timings.items()},
            text_found=self.text_found,
            transfer_syntax_uid=str(self.ds.file_meta.get("TransferSyntaxUID", ""))
            if hasattr(self.ds, "file_meta")
            else "",
            engine=self._engine.version if self._engine is not None else "",
            **self.work,
        )

    # --- overlays -------------------------------------------------------------------

    def _clean_overlays(self) -> None:
        start = time.perf_counter()
        result = handle_overlays(
            self.ds, self.rules.overlays, self.engine, self.memo, self.rules.max_detection_side
        )
        self.modified = self.modified or result.removed > 0
        if result.failed:
            self.reasons.append(OVERLAY_FAILED)
        for group, pieces in result.pieces.items():
            decisions = [d for d in map(self._decide, pieces) if d is not None]
            boxes = self._boxes_to_clear(decisions)
            if boxes:
                clear_overlay_boxes(self.ds, group, boxes)
                self.modified = True
            self._record(decisions, keyword="OverlayData", frames=None)
        self.timings["overlays"] = time.perf_counter() - start

    # --- pixel data -----------------------------------------------------------------

    def _clean_pixel_data(self) -> _PixelPart:
        if "PixelData" not in self.ds:
            return _PixelPart(fully_scanned=True)
        modality = str(self.ds.get("Modality", ""))
        strategy = self.rules.strategy_for(modality, str(self.ds.get("SOPClassUID", "")))
        series = str(self.ds.get("SeriesInstanceUID", ""))
        sop = str(self.ds.get("SOPInstanceUID", ""))
        regions = self._known_regions()
        if strategy.mode == "sample" and self.cache and not self.cache.should_scan(series, sop):
            return self._apply_regions_only(regions)
        start = time.perf_counter()
        try:
            image = load_pixels(self.ds)
        except PixelDataUnsupported as exc:
            self.reasons.append(exc.code)
            return _PixelPart(fully_scanned=False)
        self.timings["decode"] = time.perf_counter() - start
        window = display_window(image)
        scanner = self._scan(image, window, regions, sample_frames(image.count, strategy))
        if self.text_found and self.cache is not None:
            self.cache.record_text(series)
        decisions = [d for d in map(self._decide, scanner.report.pieces) if d is not None]
        labels = _labels_by_frame(decisions)
        decisions = [self._value_after_label(d, labels) for d in decisions]
        decisions = [self._label_next_to_phi(d, decisions) for d in decisions]
        decisions = self._whole_lines(decisions, lambda i: render_frame(self.ds, image, i, window))
        decisions += _repeated_on_other_frames(decisions, image)
        boxes = self._boxes_to_clear(decisions)
        self._add_region_boxes(boxes, regions, image.count)
        self._write(image, boxes)
        self._record(decisions, keyword="", frames=image.count)
        self._record_regions(regions, image.count)
        report = scanner.report
        fully = len(report.scanned) == image.count and not report.failed
        if report.failed:
            self.reasons.append(OCR_FAILED)
        self._set_burned_in_annotation(fully, decisions)
        return _PixelPart(fully, image.count, len(report.scanned))

    def _scan(
        self,
        image: PixelImage,
        window: tuple[float, float],
        regions: Sequence[KnownRegion],
        first: list[int],
    ) -> FrameScanner:
        scanner = FrameScanner(
            image.frames,
            lambda i: render_frame(self.ds, image, i, window),
            self.engine(),
            self.memo,
            lambda i: [b for r in regions if r.covers_frame(i) for b in r.boxes],
            self.rules.max_detection_side,
            change_tolerance(image, window),
        )
        scanner.scan(first)
        rest = [i for i in range(image.count) if i not in scanner.report.scanned]
        if rest and (self._any_text(scanner) or scanner.report.failed):
            # As text in a sampled series makes the series read: the device burns text in,
            # and a frame between the samples may carry more. Reading reuses the samples'.
            scanner.scan(rest)
        elif rest:
            scanner.scan(scanner.cover_static(rest))
        self.text_found = self._any_text(scanner)
        report = scanner.report
        self.timings["detect"] = report.detect_seconds
        self.timings["recognize"] = report.recognize_seconds
        self.work = {"detector_passes": report.detections, "recognitions": report.recognitions}
        return scanner

    def _write(self, image: PixelImage, boxes: dict[int, list[Box]]) -> None:
        start = time.perf_counter()
        if boxes and redact(self.ds, image, boxes) > 0:
            write_back(self.ds, image, self.rules)
            self.modified = True
        self.timings["redact_encode"] = time.perf_counter() - start

    def _apply_regions_only(self, regions: Sequence[KnownRegion]) -> _PixelPart:
        """A slice skipped by series sampling still loses its known burned-in regions."""
        if regions:
            try:
                image = load_pixels(self.ds)
            except PixelDataUnsupported as exc:
                self.reasons.append(exc.code)
                return _PixelPart(fully_scanned=False, skipped_by_sampling=True)
            boxes: dict[int, list[Box]] = {}
            self._add_region_boxes(boxes, regions, image.count)
            self._write(image, boxes)
            self._record_regions(regions, image.count)
        return _PixelPart(fully_scanned=False, skipped_by_sampling=True)

    # --- judging and recording ------------------------------------------------------

    def _decide(self, piece: TextPiece) -> _Decision | None:
        """What to do with one piece; ``None`` for detector noise (no letters to speak of,
        read with low confidence: a speck of anatomy, not text)."""
        rules, reading = self.rules, piece.reading
        if self._is_noise(piece):
            return None
        verdict = self.classifier.classify(reading.text)
        reasons: list[str] = []
        kind = verdict.kind if verdict.is_phi else "other_phi"
        if reading.confidence < rules.min_text_confidence:
            action, reasons = "cleared", [UNREADABLE]
        elif verdict.is_phi or rules.redact_all_text:
            action = "cleared"
            kind = verdict.kind if verdict.kind != "unclassified" else "other_phi"
        elif verdict.kind == "non_phi":
            action, kind = "kept_non_phi", "non_phi"
        else:
            action = "review" if rules.unclassified_text == "review" else "cleared"
            if rules.unclassified_text != "clear":
                reasons.append(UNCLASSIFIED)
        if rules.min_text_confidence <= reading.confidence < rules.review_threshold:
            reasons.append(LOW_CONFIDENCE)
        confidence = round(min(reading.confidence, verdict.confidence), 3)
        box = self._grown(piece.box) if action == "cleared" else piece.box
        return _Decision(piece, box, verdict, action, kind, confidence, tuple(reasons))

    def _any_text(self, scanner: FrameScanner) -> bool:
        return any(not self._is_noise(p) for p in scanner.report.pieces)

    def _is_noise(self, piece: TextPiece) -> bool:
        """Detector noise: at most one letter or digit, read with low confidence (a speck
        of anatomy). It is neither judged nor counted as text found."""
        reading = piece.reading
        return reading.confidence < self.rules.min_text_confidence and _is_speck(reading.text)

    def _value_after_label(
        self, d: _Decision, labels: Mapping[int, Sequence[_Decision]]
    ) -> _Decision:
        """A value read apart from the PHI label before it on the same line is judged with
        that label: "0042" alone looks like a count, "MRN: 0042" and "Patient ID: 0042"
        are IDs. (On a cine the label may have been read on an earlier frame, the value on
        this one.)"""
        if d.action == "cleared" or d.verdict.basis == LABEL_ALONE:
            return d
        for label in labels.get(d.piece.frame, ()):
            if not _next_on_line(label.piece.box, d.piece.box):
                continue
            line = f"{label.piece.reading.text} {d.piece.reading.text}"
            verdict = self.classifier.classify(line)
            if verdict.is_phi:
                box = self._grown(d.piece.box)
                return replace(d, box=box, verdict=verdict, action="cleared", kind=verdict.kind)
        return d

    def _label_next_to_phi(self, d: _Decision, decisions: Sequence[_Decision]) -> _Decision:
        """A bare PHI label (``MRN:``, ``DOB``) read apart from the value right after it on
        the same line goes with that value: the line is cleared whole."""
        if d.verdict.basis != LABEL_ALONE or d.action == "cleared":
            return d
        for other in decisions:
            same_frame = other.piece.frame == d.piece.frame
            if other.action == "cleared" and same_frame and _next_on_line(d.box, other.box):
                return replace(d, box=self._grown(d.box), action="cleared", kind=other.kind)
        return d

    @staticmethod
    def _whole_lines(
        decisions: Sequence[_Decision], render: Callable[[int], RgbImage]
    ) -> list[_Decision]:
        """Each cleared box grown along its line's strokes (:func:`cues.line_extent`), up
        to the text kept beside it: what the detector found of a line may be only part."""
        kept: dict[int, list[Box]] = {}
        for d in decisions:
            if d.action != "cleared":
                kept.setdefault(d.piece.frame, []).append(d.box)
        frames: dict[int, RgbImage] = {}
        out = []
        for d in decisions:
            if d.action == "cleared":
                frame = d.piece.frame
                if frame not in frames:
                    frames[frame] = render(frame)
                d = replace(d, box=line_extent(frames[frame], d.box, kept.get(frame, ())))
            out.append(d)
        return out

    def _grown(self, box: Box) -> Box:
        margin = self.rules.box_margin
        x, y, w, h = box
        x0, y0 = max(0, x - margin), max(0, y - margin)
        return (x0, y0, x + w + margin - x0, y + h + margin - y0)

    def _boxes_to_clear(self, decisions: Sequence[_Decision]) -> dict[int, list[Box]]:
        boxes: dict[int, list[Box]] = {}
        for d in decisions:
            if d.action == "cleared":
                boxes.setdefault(d.piece.frame, []).append(d.box)
        return boxes

    def _record(self, decisions: Sequence[_Decision], keyword: str, frames: int | None) -> None:
        """One finding per text box and verdict; repeated frames collapse to ``frame=None``."""
        seen: dict[tuple[object, ...], list[int]] = {}
        for d in decisions:
            self.reasons.extend(d.reasons)
            key = (d.box, d.kind, d.verdict.keyword or keyword, d.action, d.confidence)
            seen.setdefault(key, []).append(d.piece.frame)
        for (box, kind, kw, action, confidence), on in seen.items():
            frame = on[0] if len(on) == 1 else None
            self.findings.append(
                PHIFinding("pixel", str(kind), str(kw), float(confidence),  # type: ignore[arg-type]
                           str(action), frame, box)  # type: ignore[arg-type]
            )  # fmt: skip

    def _known_regions(self) -> tuple[KnownRegion, ...]:
        ds = self.ds
        return self.rules.regions_for(
            str(ds.get("Manufacturer", "")),
            str(ds.get("ManufacturerModelName", "")),
            int(ds.get("Rows", 0) or 0),
            int(ds.get("Columns", 0) or 0),
        )

    @staticmethod
    def _add_region_boxes(
        boxes: dict[int, list[Box]], regions: Sequence[KnownRegion], count: int
    ) -> None:
        for region in regions:
            for index in range(count):
                if region.covers_frame(index):
                    boxes.setdefault(index, []).extend(region.boxes)

    def _record_regions(self, regions: Sequence[KnownRegion], count: int) -> None:
        for region in regions:
            frames = [i for i in range(count) if region.covers_frame(i)]
            for box in region.boxes if frames else ():
                frame = frames[0] if len(frames) == 1 else None
                self.findings.append(
                    PHIFinding("pixel", "other_phi", "", 1.0, "cleared", frame, box)
                )

    def _set_burned_in_annotation(
        self, fully_scanned: bool, decisions: Sequence[_Decision]
    ) -> None:
        """Burned In Annotation (PS3.3 C.7.6.1): only a full, clean scan earns ``NO``."""
        left_behind = any(d.action == "review" for d in decisions)
        if fully_scanned and not self.reasons:
            self.ds.BurnedInAnnotation = "NO"
        elif left_behind:
            self.ds.BurnedInAnnotation = "YES"


def _repeated_on_other_frames(decisions: Sequence[_Decision], image: PixelImage) -> list[_Decision]:
    """Text judged PHI on one frame, also cleared on every other frame that shows the same
    glyphs at the same place.

    Faint small text over a moving cine background can be found on one frame and missed on
    the next; its ink (the pixels of the box that stand out from the box's median) is
    stored the same on every frame where the annotation sits, so those frames get the
    same box without another OCR pass.
    """
    if image.count < 2:
        return []
    cleared = [d for d in decisions if d.action == "cleared"]
    have = {(d.piece.frame, d.box) for d in cleared}
    cleared = [d for d in cleared if d.verdict.is_phi]  # not text merely unreadable
    extra: list[_Decision] = []
    for d in cleared:
        ink = _ink(image.frames[d.piece.frame], d.piece.box)
        if ink is None:
            continue
        for frame in range(image.count):
            if (frame, d.box) not in have and _same_ink(image.frames[frame], d.piece.box, ink):
                have.add((frame, d.box))
                extra.append(replace(d, piece=replace(d.piece, frame=frame)))
    return extra


_INK_SHARE = 0.85  # share of the ink pixels that must be stored identically
_INK_LEVEL = 0.6  # ink: at least this share of the box's largest departure from its median


def _ink(frame: NDArray[Any], box: Box) -> tuple[NDArray[np.bool_], NDArray[Any]] | None:
    """The pixels of ``box`` that stand out from its median, and their stored values."""
    x, y, w, h = box
    crop = frame[y : y + h, x : x + w]
    flat = crop.reshape(h, w, -1).astype(np.float64)
    distance = np.abs(flat - np.median(flat, axis=(0, 1))).max(axis=-1)
    spread = float(distance.max())
    if spread <= 0:
        return None
    mask = distance >= _INK_LEVEL * spread
    return (mask, crop[mask]) if int(mask.sum()) >= 4 else None


def _same_ink(frame: NDArray[Any], box: Box, ink: tuple[NDArray[np.bool_], NDArray[Any]]) -> bool:
    x, y, w, h = box
    mask, values = ink
    here = frame[y : y + h, x : x + w][mask]
    same = here == values
    share = same.all(axis=-1).mean() if same.ndim > 1 else same.mean()
    return bool(share >= _INK_SHARE)


def _labels_by_frame(decisions: Sequence[_Decision]) -> dict[int, list[_Decision]]:
    """The pieces that end in a PHI label (``MRN:``, ``Patient ID:``), by frame."""
    labels: dict[int, list[_Decision]] = {}
    for d in decisions:
        words = d.piece.reading.text.split()
        if d.verdict.basis == LABEL_ALONE or (words and label_kind(words[-1])):
            labels.setdefault(d.piece.frame, []).append(d)
    return labels


def _next_on_line(label: Box, value: Box) -> bool:
    """``value`` starts within :data:`LABEL_REACH` line heights after ``label`` ends, on
    the same line."""
    height = max(label[3], value[3])
    top, bottom = max(label[1], value[1]), min(label[1] + label[3], value[1] + value[3])
    gap = value[0] - (label[0] + label[2])
    return bottom - top >= 0.5 * min(label[3], value[3]) and -label[2] < gap <= LABEL_REACH * height


def _is_speck(text: str) -> bool:
    return sum(c.isascii() and c.isalnum() for c in text) <= 1
