"""Overlay planes (PS3.3 C.9 Overlay Plane module, groups 6000-601E).

Overlays carry graphics and text drawn over the image by the modality or a viewer. The
profile either removes every overlay group, keeps them, or cleans them: each overlay bitmap
(60xx,3000) is read for text like a frame and the bits under PHI boxes are cleared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.pixels.utils import pack_bits

from phigate.pixels.engines import OcrEngine, RgbImage
from phigate.pixels.rules import Box, OverlayAction
from phigate.pixels.scan import FrameScanner, ReadingMemo, TextPiece

OVERLAY_GROUPS = tuple(range(0x6000, 0x6020, 2))
OVERLAY_DATA = 0x3000


@dataclass(slots=True)
class OverlayResult:
    """Pieces of text found in each cleaned overlay, and what happened to the groups."""

    pieces: dict[int, list[TextPiece]] = field(default_factory=dict)
    removed: int = 0
    failed: bool = False


def overlay_groups(ds: Dataset) -> list[int]:
    """The overlay groups present in ``ds``."""
    present = {tag >> 16 for tag in ds._dict if 0x6000 <= tag >> 16 <= 0x601E}  # raw stays raw
    return [g for g in OVERLAY_GROUPS if g in present]


def remove_overlays(ds: Dataset) -> int:
    """Delete every overlay group of ``ds``; returns how many there were."""
    groups = overlay_groups(ds)
    for tag in [t for t in ds._dict if t >> 16 in groups]:
        del ds[tag]
    return len(groups)


def handle_overlays(
    ds: Dataset,
    action: OverlayAction,
    engine: Callable[[], OcrEngine],
    memo: ReadingMemo,
    max_side: int,
) -> OverlayResult:
    """Remove overlay groups, or read the bitmaps so the caller can judge the text."""
    result = OverlayResult()
    groups = overlay_groups(ds)
    if action == "keep" or not groups:
        return result
    if action == "remove":
        result.removed = remove_overlays(ds)
        return result
    for group in groups:
        if (group, OVERLAY_DATA) not in ds:
            continue  # embedded (retired) overlays have no bitmap of their own
        try:
            bits = _overlay_frames(ds, group)
        except Exception:  # malformed overlay: cannot be read, so cannot be judged
            result.failed = True
            continue
        scanner = FrameScanner(bits, _renderer(bits), engine(), memo, _nothing_blocked, max_side)
        scanner.scan(range(bits.shape[0]))
        result.failed = result.failed or bool(scanner.report.failed)
        result.pieces[group] = scanner.report.pieces
    return result


def clear_overlay_boxes(ds: Dataset, group: int, boxes_by_frame: dict[int, list[Box]]) -> None:
    """Clear the overlay bits inside the boxes and store the bitmap again (C.9.2.1.3)."""
    bits = _overlay_frames(ds, group)
    for index, boxes in boxes_by_frame.items():
        for x, y, w, h in boxes:
            bits[index, max(0, y) : y + h, max(0, x) : x + w] = 0
    packed = pack_bits(bits)
    ds[group, OVERLAY_DATA].value = packed + b"\x00" * (len(packed) % 2)


def _overlay_frames(ds: Dataset, group: int) -> NDArray[Any]:
    arr = np.asarray(ds.overlay_array(group), dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[np.newaxis]


def _renderer(frames: NDArray[Any]) -> Callable[[int], RgbImage]:
    """Overlay bits as white on black, frame by frame."""

    def render(index: int) -> RgbImage:
        gray = (frames[index] > 0).astype(np.uint8) * 255
        return np.repeat(gray[..., None], 3, axis=2)

    return render


def _nothing_blocked(_index: int) -> list[Box]:
    return []
