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
        entry = _series_entry(path, strategy_for)
        if entry is not None:
            series_uid, ref, strategy = entry
            series[series_uid].append((index, ref))
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


def _series_entry(
    path: Path, strategy_for: StrategyFor
) -> tuple[str, InstanceRef, ScanStrategy] | None:
    """The series, sampling facts and strategy of an image in a sampled series, else None.

    A header whose values cannot be read (an InstanceNumber that is no number, say) is not
    sampled: its file is read whole in the first pass, which reports what is wrong with it.
    The exception is not passed on, since its message may quote the value.
    """
    header = _header(path)
    if header is None or "Rows" not in header:  # unreadable, or not an image
        return None
    try:
        modality, sop_class = str(header.get("Modality", "")), str(header.get("SOPClassUID", ""))
        strategy = strategy_for(modality, sop_class)
        series_uid = str(header.get("SeriesInstanceUID", ""))
        if strategy is None or strategy.mode != "sample" or not series_uid:
            return None
        return series_uid, InstanceRef.from_dataset(header), strategy
    except Exception:
        return None


def _header(path: Path) -> Dataset | None:
    """The header without Pixel Data; unreadable files are left to the main pass to report."""
    try:
        with path.open("rb") as handle:
            return pydicom.dcmread(handle, stop_before_pixels=True, force=True)
    except Exception:
        return None
