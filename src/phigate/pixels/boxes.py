"""Small geometry on :data:`~phigate.pixels.rules.Box` rectangles ``(x, y, width, height)``."""

from __future__ import annotations

from phigate.pixels.rules import Box


def union(a: Box, b: Box) -> Box:
    """The smallest box holding both."""
    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0)


def touch(a: Box, b: Box) -> bool:
    """The boxes overlap or share an edge."""
    return (
        a[0] <= b[0] + b[2] and b[0] <= a[0] + a[2] and a[1] <= b[1] + b[3] and b[1] <= a[1] + a[3]
    )


def intersection(a: Box, b: Box) -> Box | None:
    """The part the boxes share, or None when they share no pixel."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def contains(outer: Box, inner: Box) -> bool:
    """Every pixel of ``inner`` is in ``outer``."""
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def clip(box: Box, rows: int, columns: int) -> Box:
    """The part of ``box`` inside an image of that size."""
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(columns, x + w), min(rows, y + h)
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def grow(box: Box, margin: int, rows: int, columns: int) -> Box:
    """``box`` widened by ``margin`` on every side, clipped to the image."""
    x, y, w, h = box
    return clip((x - margin, y - margin, w + 2 * margin, h + 2 * margin), rows, columns)


def merge_touching(boxes: list[Box]) -> list[Box]:
    """Touching boxes joined until none touch."""
    merged = list(boxes)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                if touch(merged[i], merged[j]):
                    merged[i] = union(merged[i], merged.pop(j))
                    changed = True
                    break
            if changed:
                break
    return merged
