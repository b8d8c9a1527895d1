"""Read a clinical-trial subject map (CSV) for the clinical-trial profile.

Columns: ``patient_id`` and ``subject_id`` (required), ``sponsor_name``, ``protocol_id``,
``protocol_name``, ``site_id``, ``site_name``. The file holds PHI (patient IDs): it is read
into memory and errors name line numbers and columns, never values.
"""

from __future__ import annotations

import csv
from pathlib import Path

from phigate.deid.header import TrialSubject
from phigate.errors import UsageError

REQUIRED = ("patient_id", "subject_id", "sponsor_name", "protocol_id")
_LIMITS = {"subject_id": 64, "sponsor_name": 64, "protocol_id": 64, "protocol_name": 64,
           "site_id": 64, "site_name": 64}  # fmt: skip


def load_subject_map(path: Path) -> dict[str, TrialSubject]:
    """Patient ID -> trial subject; one row per patient."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"the subject map cannot be read ({type(exc).__name__})") from None
    if not rows:
        raise UsageError("the subject map has no rows")
    missing = [column for column in REQUIRED if column not in rows[0]]
    if missing:
        raise UsageError(f"the subject map lacks the column(s): {', '.join(missing)}")
    subjects: dict[str, TrialSubject] = {}
    for line, row in enumerate(rows, start=2):
        subjects[_patient_id(row, line, subjects)] = _subject(row, line)
    return subjects


def _patient_id(row: dict[str, str], line: int, seen: dict[str, TrialSubject]) -> str:
    patient_id = (row.get("patient_id") or "").strip()
    if not patient_id:
        raise UsageError(f"subject map line {line}: patient_id is empty")
    if patient_id in seen:
        raise UsageError(f"subject map line {line}: the patient appears on an earlier line too")
    return patient_id


def _subject(row: dict[str, str], line: int) -> TrialSubject:
    values = {column: (row.get(column) or "").strip() for column in _LIMITS}
    for column, limit in _LIMITS.items():
        if len(values[column]) > limit:
            raise UsageError(f"subject map line {line}: {column} is longer than {limit} characters")
    if not values["subject_id"]:
        raise UsageError(f"subject map line {line}: subject_id is empty")
    return TrialSubject(**values)
