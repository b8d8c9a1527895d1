"""Everything a profile can say about pixels, as plain frozen data.

The profile YAML is mapped onto :class:`PixelRules` by the policy layer; nothing here reads
files or knows YAML. Field names are the profile keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from phigate.pixels.defaults import CLINICAL_WORDS, CT_MR_LIKE_MODALITIES, DEFAULT_KEEP_TEXT
from phigate.pixels.errors import PixelRulesError

Box = tuple[int, int, int, int]
"""A rectangle ``(x, y, width, height)`` in pixels, origin top-left of the frame."""

ScanMode = Literal["all", "sample"]
SamplePosition = Literal["first", "middle", "last", "localizer"]
OverlayAction = Literal["remove", "clean", "keep"]
UnclassifiedAction = Literal["clear_and_review", "clear", "review"]
Reencode = Literal["same_lossless", "uncompressed", "rle", "jpeg_ls", "jpeg2000"]
LosslessTarget = Literal["uncompressed", "rle", "jpeg_ls", "jpeg2000"]


@dataclass(frozen=True, slots=True)
class KnownRegion:
    """A region a device always burns text into; it is cleared whatever OCR finds.

    ``manufacturer`` and ``model`` are case-insensitive regular expressions matched against
    the whole of Manufacturer (0008,0070) and ManufacturerModelName (0008,1090); empty
    matches anything. ``rows``/``columns`` restrict to one image size (PS3.3 C.7.6.3).
    Frames are 0-based and inclusive; ``None`` means from the first / to the last frame.
    """

    boxes: tuple[Box, ...]
    manufacturer: str = ""
    model: str = ""
    rows: int | None = None
    columns: int | None = None
    first_frame: int | None = None
    last_frame: int | None = None
    label: str = ""

    def applies_to(self, manufacturer: str, model: str, rows: int, columns: int) -> bool:
        """Whether this region is declared for an image of that device and size."""
        return (
            _matches(self.manufacturer, manufacturer)
            and _matches(self.model, model)
            and self.rows in (None, rows)
            and self.columns in (None, columns)
        )

    def covers_frame(self, frame: int) -> bool:
        """Whether the region applies to this 0-based frame index."""
        return (self.first_frame is None or frame >= self.first_frame) and (
            self.last_frame is None or frame <= self.last_frame
        )


@dataclass(frozen=True, slots=True)
class ScanStrategy:
    """Which frames (or slices of a series) are read for text.

    ``all`` reads every frame. ``sample`` reads the ``sample`` positions (first, middle and
    last frame of a multi-frame instance, or slice of a series planned through
    :class:`~phigate.pixels.sampling.SeriesScanCache`, plus localisers); any text found in a
    sample turns the instance, or the series, into a full scan. The first strategy whose
    modalities and SOP classes match an instance applies; empty tuples match anything.
    """

    mode: ScanMode = "all"
    modalities: tuple[str, ...] = ()
    sop_classes: tuple[str, ...] = ()
    sample: tuple[SamplePosition, ...] = ("first", "middle", "last", "localizer")

    def applies_to(self, modality: str, sop_class_uid: str) -> bool:
        """Whether this strategy is the one for that Modality and SOP Class UID."""
        return (not self.modalities or modality.upper() in self.modalities) and (
            not self.sop_classes or sop_class_uid in self.sop_classes
        )


DEFAULT_SCAN_STRATEGIES: tuple[ScanStrategy, ...] = (
    ScanStrategy(mode="sample", modalities=CT_MR_LIKE_MODALITIES),
    ScanStrategy(mode="all"),
)


@dataclass(frozen=True, slots=True)
class PixelRules:
    """The pixel part of a compiled profile.

    Thresholds are OCR recognition confidences in [0, 1]: text read below
    ``min_text_confidence`` is unreadable (cleared and sent to review); text read below
    ``review_threshold`` is judged but the instance goes to review.
    """

    engine: str = "rapidocr"
    min_text_confidence: float = 0.5
    review_threshold: float = 0.8
    redact_all_text: bool = False
    unclassified_text: UnclassifiedAction = "clear_and_review"
    keep_text: tuple[str, ...] = DEFAULT_KEEP_TEXT
    harmless_words: tuple[str, ...] = CLINICAL_WORDS
    known_regions: tuple[KnownRegion, ...] = ()
    scan_strategies: tuple[ScanStrategy, ...] = DEFAULT_SCAN_STRATEGIES
    overlays: OverlayAction = "remove"
    reencode: Reencode = "same_lossless"
    lossless_fallback: LosslessTarget = "rle"
    box_margin: int = 2
    max_detection_side: int = 2048
    compiled_keep: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_text_confidence <= self.review_threshold <= 1.0:
            raise PixelRulesError(
                "pixel rules need 0 <= min_text_confidence <= review_threshold <= 1"
            )
        if self.box_margin < 0 or self.max_detection_side < 256:
            raise PixelRulesError("pixel rules need box_margin >= 0 and max_detection_side >= 256")
        try:
            compiled = tuple(re.compile(p, re.IGNORECASE) for p in self.keep_text)
        except re.error as exc:
            raise PixelRulesError(
                f"a pixel keep_text pattern is not a valid regex: {exc.msg}"
            ) from exc
        object.__setattr__(self, "compiled_keep", compiled)

    def strategy_for(self, modality: str, sop_class_uid: str) -> ScanStrategy:
        """The scan strategy for an instance; scanning everything when none matches."""
        for strategy in self.scan_strategies:
            if strategy.applies_to(modality, sop_class_uid):
                return strategy
        return ScanStrategy(mode="all")

    def regions_for(
        self, manufacturer: str, model: str, rows: int, columns: int
    ) -> tuple[KnownRegion, ...]:
        """The known burned-in regions declared for this device and image size."""
        return tuple(
            r for r in self.known_regions if r.applies_to(manufacturer, model, rows, columns)
        )


def _matches(pattern: str, value: str) -> bool:
    return not pattern or re.fullmatch(pattern, value.strip(), re.IGNORECASE) is not None
