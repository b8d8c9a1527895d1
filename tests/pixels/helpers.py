"""Helpers for the pixel tests: text burned into stored pixel values the way a modality
does it, and pixel comparisons on (frames, rows, columns, samples)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset

from phigate.pixels.rules import Box
from phigate.pixels.validation import _font, _text_mask


def burn(frame: NDArray[Any], text: str, x: int, y: int, size: int, value: Any) -> Box:
    """Draw ``text`` into ``frame`` (rows, columns[, samples]) at ``value``; returns its box."""
    mask = _text_mask(text, _font("DejaVuSans.ttf", size))
    h, w = mask.shape
    frame[y : y + h, x : x + w][mask] = value
    return (x, y, w, h)


def pixels4d(ds: Dataset) -> NDArray[Any]:
    """Decoded stored values as (frames, rows, columns, samples)."""
    arr = np.asarray(ds.pixel_array)
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples == 1:
        arr = arr[..., np.newaxis]
    return arr if arr.ndim == 4 else arr[np.newaxis]


def changed_share(before: NDArray[Any], after: NDArray[Any], box: Box, frame: int = 0) -> float:
    x, y, w, h = box
    was = before[frame, y : y + h, x : x + w]
    now = after[frame, y : y + h, x : x + w]
    return float((was != now).any(axis=-1).mean())


def blanked(before: NDArray[Any], after: NDArray[Any], box: Box, frame: int = 0) -> bool:
    """The text in ``box`` is gone: the box is one flat value now, and it was not before."""
    x, y, w, h = box
    now = after[frame, y : y + h, x : x + w].reshape(-1, after.shape[-1])
    _, counts = np.unique(now, axis=0, return_counts=True)
    return bool(counts.max() >= 0.97 * len(now)) and changed_share(before, after, box, frame) > 0


def same_outside(before: NDArray[Any], after: NDArray[Any], boxes: list[Box]) -> bool:
    """Every pixel outside the union of ``boxes`` is bit-identical, in every frame."""
    keep = np.ones(before.shape[1:3], dtype=bool)
    for x, y, w, h in boxes:
        keep[max(0, y) : y + h, max(0, x) : x + w] = False
    return bool(np.array_equal(before[:, keep], after[:, keep]))


def cleared_boxes(outcome: Any) -> list[Box]:
    return [f.box for f in outcome.findings if f.action == "cleared" and f.box is not None]
