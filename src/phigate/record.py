"""The one record: every input instance yields exactly one :class:`InstanceResult`.

The CLI summary, the run report and (later) job statistics, lineage and the audit trail are
views of these records, so the record must never hold PHI: tags are named by keyword, the
source by a keyed hash, and findings carry a kind and a confidence, never the text found.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """Where an instance ended. Inputs = written + filtered + quarantined, always."""

    WRITTEN = "written"
    FILTERED = "filtered"
    QUARANTINED = "quarantined"


@dataclass(frozen=True, slots=True)
class PHIFinding:
    """Something identifying that was found, and what was done with it.

    ``where`` is ``header`` or ``pixel``. Header findings name the attribute by keyword;
    pixel findings (a later issue) add a frame and a box ``(x, y, width, height)``.
    """

    where: str
    kind: str
    keyword: str
    confidence: float
    action: str
    frame: int | None = None
    box: tuple[int, int, int, int] | None = None


@dataclass(slots=True)
class InstanceResult:
    """What happened to one input instance, without any PHI.

    ``source_ref`` is a keyed hash of the source path relative to the input root; the
    ``output_ref`` is built from replacement UIDs only. ``actions`` counts header actions
    by attribute keyword (``PatientName: pseudonymize``); private attributes are named
    ``private:<creator>:<element>`` or by tag.
    """

    source_ref: str
    status: Status = Status.QUARANTINED
    reason: str | None = None
    reason_detail: str | None = None
    output_ref: str | None = None
    profile_name: str = ""
    profile_version: str = ""
    study_uid: str | None = None
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    modality: str | None = None
    transfer_syntax_uid: str | None = None
    actions: dict[str, str] = field(default_factory=dict)
    findings: list[PHIFinding] = field(default_factory=list)
    requires_review: bool = False
    review_reasons: list[str] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def flag_for_review(self, why: str) -> None:
        """Mark the instance as needing a human look, and say why (no PHI in ``why``)."""
        self.requires_review = True
        if why not in self.review_reasons:
            self.review_reasons.append(why)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (status as its string value, boxes as lists)."""
        data = asdict(self)
        data["status"] = self.status.value
        return data
