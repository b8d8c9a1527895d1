"""The run summary counts every record once, by status, reason and action per keyword."""

from __future__ import annotations

import json

from phigate.pipeline.report import RunSummary
from phigate.record import InstanceResult, Status


def _record(status: Status, actions: dict[str, str], reason: str | None = None) -> InstanceResult:
    record = InstanceResult("ref", status=status, reason=reason, bytes_in=10)
    record.actions = actions
    return record


def test_actions_are_counted_per_keyword_and_action_across_records() -> None:
    summary = RunSummary("run", "basic", "v1", workers=1)
    summary.add(_record(Status.WRITTEN, {"PatientName": "pseudonymize", "StudyDate": "shift"}))
    summary.add(_record(Status.WRITTEN, {"PatientName": "pseudonymize", "StudyDate": "remove"}))
    summary.add(_record(Status.QUARANTINED, {}, reason="truncated"))
    document = json.loads(json.dumps(summary.to_dict()))
    assert document["actions"] == {
        "PatientName": {"pseudonymize": 2},
        "StudyDate": {"remove": 1, "shift": 1},
    }
    assert document["counts"]["inputs"] == 3
    assert document["counts"]["balanced"] is True
    assert document["quarantine_reasons"] == {"truncated": 1}


def test_a_keyword_never_seen_is_not_in_the_report() -> None:
    summary = RunSummary("run", "basic", "v1", workers=1)
    summary.add(_record(Status.WRITTEN, {"PatientName": "pseudonymize"}))
    assert "PatientID" not in summary.to_dict()["actions"]
    assert list(summary.to_dict()["actions"]) == ["PatientName"]
