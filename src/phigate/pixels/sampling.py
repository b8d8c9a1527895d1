"""Series-level reuse: sample slices of CT/MR-like series, share readings between slices.

One worker process handles a whole series through one :class:`SeriesScanCache`:

1. ``order = cache.plan_series(series_uid, refs, strategy)`` before the series starts; the
   returned SOP Instance UIDs put the samples (first, middle, last slice and localisers,
   as the strategy says) first.
2. ``clean_pixels(ds, rules, ids, cache=cache)`` for each instance in that order. A sample
   is always scanned; another slice is scanned only once text was found in the series.
3. ``cache.instances_to_rescan(series_uid)`` lists slices skipped before text turned up
   (empty when instances came in the planned order); run them again.

A series that was never planned is scanned whole, so forgetting step 1 costs time, not
safety.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from phigate.pixels.rules import ScanStrategy
from phigate.pixels.scan import ReadingMemo

_LOCALIZER_WORDS = frozenset(("LOCALIZER", "LOCALISER", "SCOUT", "TOPOGRAM", "SURVIEW"))


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """What sampling needs to know about an instance before reading its pixels."""

    sop_instance_uid: str
    instance_number: int | None = None
    is_localizer: bool = False

    @classmethod
    def from_dataset(cls, ds: Any) -> InstanceRef:
        """From a dataset read without pixels (ImageType value 3, PS3.3 C.8.2.1.1.1)."""
        number = ds.get("InstanceNumber")
        image_type = {str(v).upper() for v in (ds.get("ImageType") or ())}
        return cls(
            sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
            instance_number=int(number) if number not in (None, "") else None,
            is_localizer=bool(image_type & _LOCALIZER_WORDS),
        )


@dataclass(slots=True)
class _SeriesState:
    samples: frozenset[str]
    text_found: bool = False
    skipped: list[str] = field(default_factory=list)


class SeriesScanCache:
    """Per-worker memory of series plans, text found, and readings of repeated layouts."""

    def __init__(self, memo_capacity: int = 4096, max_series: int = 256) -> None:
        self.memo = ReadingMemo(memo_capacity)
        self._series: OrderedDict[str, _SeriesState] = OrderedDict()
        self._max_series = max_series

    def plan_series(
        self, series_uid: str, instances: Sequence[InstanceRef], strategy: ScanStrategy
    ) -> list[str]:
        """Choose the sample slices; returns SOP Instance UIDs, samples first."""
        ordered = sorted(
            instances, key=lambda r: (r.instance_number is None, r.instance_number or 0)
        )
        if strategy.mode == "all":
            samples = frozenset(r.sop_instance_uid for r in ordered)
        else:
            samples = frozenset(pick_samples(ordered, strategy))
        self._series[series_uid] = _SeriesState(samples=samples)
        self._series.move_to_end(series_uid)
        while len(self._series) > self._max_series:
            self._series.popitem(last=False)
        first = [r.sop_instance_uid for r in ordered if r.sop_instance_uid in samples]
        return first + [r.sop_instance_uid for r in ordered if r.sop_instance_uid not in samples]

    def should_scan(self, series_uid: str, sop_instance_uid: str) -> bool:
        """Whether this instance must be scanned; records it as skipped when not."""
        state = self._series.get(series_uid)
        if state is None or state.text_found or sop_instance_uid in state.samples:
            return True
        state.skipped.append(sop_instance_uid)
        return False

    def record_text(self, series_uid: str) -> None:
        """Text was found in this series: every later slice gets a full scan."""
        state = self._series.get(series_uid)
        if state is not None:
            state.text_found = True

    def text_found(self, series_uid: str) -> bool:
        state = self._series.get(series_uid)
        return state is not None and state.text_found

    def instances_to_rescan(self, series_uid: str) -> tuple[str, ...]:
        """Slices skipped by sampling in a series where text was later found."""
        state = self._series.get(series_uid)
        if state is None or not state.text_found:
            return ()
        return tuple(state.skipped)


def pick_samples(ordered: Sequence[InstanceRef], strategy: ScanStrategy) -> list[str]:
    """The sample positions of a series sorted by Instance Number."""
    if not ordered:
        return []
    by_position = {
        "first": [ordered[0]],
        "middle": [ordered[len(ordered) // 2]],
        "last": [ordered[-1]],
        "localizer": [r for r in ordered if r.is_localizer],
    }
    chosen: list[str] = []
    for position in strategy.sample:
        chosen += [r.sop_instance_uid for r in by_position[position]]
    return chosen


def sample_frames(count: int, strategy: ScanStrategy) -> list[int]:
    """Frames of one multi-frame instance read first under a sampling strategy."""
    if strategy.mode == "all" or count <= 3:
        return list(range(count))
    positions = {"first": 0, "middle": count // 2, "last": count - 1}
    return sorted({positions[p] for p in strategy.sample if p in positions})
