"""Plan which slices of a series get their pixels read (issue: most CT/MR slices carry no text).

Before the run, each file's header is read (no pixels). For series whose profile strategy is
``sample``, only the sample slices (first, middle, last, localisers) go in the first pass;
the other slices wait for a second pass, where their pixels are read only if text was found
anywhere in their series. Which slice lands in which pass depends on the inputs alone, so
the output is the same on every run and with any number of workers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from phigate.pixels.rules import ScanStrategy
from phigate.pixels.sampling import InstanceRef, pick_samples


@dataclass(frozen=True)
class SamplingPlan:
    """Indices of the inputs deferred to the second pass, with their original series UID."""

    deferred: dict[int, str]

    def first_pass(self, count: int) -> list[int]:
        return [index for index in range(count) if index not in self.deferred]

    def second_pass(self) -> list[int]:
        return sorted(self.deferred)


StrategyFor = Callable[[str, str], ScanStrategy | None]


def plan_sampling(paths: list[Path], strategy_for: StrategyFor) -> SamplingPlan:
    """Read every header and defer the non-sample slices of sampled series.

    ``strategy_for(modality, sop_class)`` is the scan strategy for such instances, or None
    where their pixels are not cleaned at all.
    """
    series: dict[str, list[tuple[int, InstanceRef]]] = defaultdict(list)
    strategies: dict[str, ScanStrategy] = {}
    for index, path in enumerate(paths):
        header = _header(path)
        if header is None or "Rows" not in header:  # unreadable, or not an image
            continue
        modality, sop_class = str(header.get("Modality", "")), str(header.get("SOPClassUID", ""))
        strategy = strategy_for(modality, sop_class)
        series_uid = str(header.get("SeriesInstanceUID", ""))
        if strategy is not None and strategy.mode == "sample" and series_uid:
            series[series_uid].append((index, InstanceRef.from_dataset(header)))
            strategies.setdefault(series_uid, strategy)
    deferred: dict[int, str] = {}
    for series_uid, members in series.items():
        ordered = sorted(
            (ref for _, ref in members),
            key=lambda r: (r.instance_number is None, r.instance_number or 0),
        )
        samples = set(pick_samples(ordered, strategies[series_uid]))
        deferred.update(
            (i, series_uid) for i, ref in members if ref.sop_instance_uid not in samples
        )
    return SamplingPlan(deferred)


def _header(path: Path) -> Dataset | None:
    """The header without Pixel Data; unreadable files are left to the main pass to report."""
    try:
        with path.open("rb") as handle:
            return pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    except Exception:
        return None
