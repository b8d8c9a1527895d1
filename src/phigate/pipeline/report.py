"""The run summary: a view of the run's records, with the counts that must add up.

Inputs = written + filtered + quarantined, always. The summary holds reason codes, tag
keywords and counts, never an element value or a file name.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from phigate.record import InstanceResult, Status

_SCANNED = ("pixels_redacted", "pixels_scanned_no_phi", "pixels_need_review")
_NOT_PHI = "non_phi"


@dataclass
class PixelSummary:
    """Burned-in text: instances scanned, instances with PHI, PHI boxes by kind and fate."""

    scanned: int = 0
    skipped_by_sampling: int = 0
    with_phi: int = 0
    phi_by_kind: Counter[str] = field(default_factory=Counter)
    phi_by_action: Counter[str] = field(default_factory=Counter)

    def add(self, record: InstanceResult) -> None:
        action = record.actions.get("PixelData")
        if action in _SCANNED:
            self.scanned += 1
        elif action == "pixels_skipped_by_sampling":
            self.skipped_by_sampling += 1
        phi = [f for f in record.findings if f.where == "pixel" and f.kind != _NOT_PHI]
        if phi:
            self.with_phi += 1
        self.phi_by_kind.update(f.kind for f in phi)
        self.phi_by_action.update(f.action for f in phi)

    @property
    def detection_rate(self) -> float:
        """Share of scanned instances in which PHI text was found."""
        return self.with_phi / self.scanned if self.scanned else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "instances_scanned": self.scanned,
            "instances_skipped_by_sampling": self.skipped_by_sampling,
            "instances_with_phi": self.with_phi,
            "detection_rate": round(self.detection_rate, 4),
            "phi_detected": sum(self.phi_by_kind.values()),
            "phi_cleared": self.phi_by_action.get("cleared", 0),
            "phi_pending_review": self.phi_by_action.get("review", 0),
            "phi_by_kind": dict(sorted(self.phi_by_kind.items())),
        }


@dataclass
class RunSummary:
    """Counts over every record of one run."""

    run_id: str
    profile_name: str
    profile_version: str
    workers: int
    inputs: int = 0
    written: int = 0
    filtered: int = 0
    quarantined: int = 0
    requires_review: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    elapsed_seconds: float = 0.0
    filtered_reasons: Counter[str] = field(default_factory=Counter)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    review_reasons: Counter[str] = field(default_factory=Counter)
    # A Counter made per keyword on first sight, not per record and keyword: counting runs in
    # the parent, which shares the cores with the workers.
    actions: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    findings: Counter[str] = field(default_factory=Counter)
    timings: Counter[str] = field(default_factory=Counter)
    pixels: PixelSummary = field(default_factory=lambda: PixelSummary())

    def add(self, record: InstanceResult) -> None:
        """Count one record (call exactly once per input)."""
        self.inputs += 1
        self.bytes_in += record.bytes_in
        if record.status is Status.WRITTEN:
            self.written += 1
            self.bytes_out += record.bytes_out
        elif record.status is Status.FILTERED:
            self.filtered += 1
            self.filtered_reasons[record.reason or "unspecified"] += 1
        else:
            self.quarantined += 1
            self.quarantine_reasons[record.reason or "unspecified"] += 1
        if record.requires_review:
            self.requires_review += 1
            self.review_reasons.update(record.review_reasons)
        for keyword, action in record.actions.items():
            self.actions[keyword][action] += 1
        self.findings.update(f"{f.where}:{f.kind}" for f in record.findings)
        self.timings.update(record.timings)
        self.pixels.add(record)

    @property
    def balanced(self) -> bool:
        """The invariant: nothing silently dropped."""
        return self.inputs == self.written + self.filtered + self.quarantined

    @property
    def files_per_second(self) -> float:
        return self.inputs / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        seconds = self.elapsed_seconds
        return self.bytes_in / 1e6 / seconds if seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable report (also what ``--json`` prints)."""
        return {
            "run_id": self.run_id,
            "profile": {"name": self.profile_name, "version": self.profile_version},
            "workers": self.workers,
            "counts": {
                "inputs": self.inputs,
                "written": self.written,
                "filtered": self.filtered,
                "quarantined": self.quarantined,
                "requires_review": self.requires_review,
                "balanced": self.balanced,
            },
            "filtered_reasons": dict(sorted(self.filtered_reasons.items())),
            "quarantine_reasons": dict(sorted(self.quarantine_reasons.items())),
            "review_reasons": dict(sorted(self.review_reasons.items())),
            "actions": {k: dict(sorted(v.items())) for k, v in sorted(self.actions.items())},
            "findings": dict(sorted(self.findings.items())),
            "pixels": self.pixels.to_dict(),
            "bytes": {"in": self.bytes_in, "out": self.bytes_out},
            "timings": {
                "elapsed_seconds": round(self.elapsed_seconds, 3),
                "files_per_second": round(self.files_per_second, 2),
                "megabytes_per_second": round(self.megabytes_per_second, 2),
                "instance_seconds_total": {k: round(v, 3) for k, v in self.timings.items()},
            },
        }
