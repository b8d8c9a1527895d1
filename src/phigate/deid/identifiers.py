"""The instance's own identifiers, read before any action changes them.

Free-text cleaning (and, later, pixel text matching) looks for these values in descriptors
and comments; the per-patient date offset and pseudonyms are keyed on the patient identity.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

_ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "MedicalRecordLocator",
    "PatientTelephoneNumbers", "MilitaryRank", "BranchOfService",
    "PerformedProcedureStepID", "RequestedProcedureID", "ScheduledProcedureStepID",
    "AdmissionID", "ServiceEpisodeID", "IssuerOfPatientID",
)  # fmt: skip
_DATE_KEYWORDS = (
    "PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "InstanceCreationDate", "PerformedProcedureStepStartDate",
)  # fmt: skip
_PLACE_KEYWORDS = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "PatientAddress",
    "StationName", "RegionOfResidence", "CountryOfResidence", "ReferringPhysicianAddress",
)  # fmt: skip


_TAGS = {
    keyword: int(tag_for_keyword(keyword) or 0)
    for keyword in (
        *_ID_KEYWORDS, *_DATE_KEYWORDS, *_PLACE_KEYWORDS,
        "StudyInstanceUID",
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class InstanceIdentifiers:
    """Identifying values of one instance. Hashable: it keys the text-cleaning cache."""

    patient_key: str
    names: tuple[str, ...]
    ids: tuple[str, ...]
    dates: tuple[str, ...]
    places: tuple[str, ...]
    birth_date: str

    def all_values(self) -> tuple[str, ...]:
        """Every identifying string, for matchers that do not care about the kind."""
        return self.names + self.ids + self.dates + self.places


def collect_identifiers(ds: Dataset) -> InstanceIdentifiers:
    """Read the identifiers of ``ds`` (top level: where a PS3.3 module puts them)."""
    patient_id = _text(ds, "PatientID")
    names = _person_names(ds)
    fallback = names[0] if names else _text(ds, "StudyInstanceUID")
    return InstanceIdentifiers(
        # PatientID alone, as for its pseudonym: senders fill IssuerOfPatientID only sometimes,
        # and one patient must keep one date offset.
        patient_key=f"id|{patient_id}" if patient_id else f"name|{fallback}",
        names=names,
        ids=_values(ds, _ID_KEYWORDS),
        dates=_values(ds, _DATE_KEYWORDS),
        places=_values(ds, _PLACE_KEYWORDS),
        birth_date=_text(ds, "PatientBirthDate"),
    )


def _person_names(ds: Dataset) -> tuple[str, ...]:
    found: list[str] = []
    for tag, element in ds._dict.items():
        if _vr_of(tag, element) != "PN":
            continue
        found.extend(_strings(ds[tag].value))
    return tuple(dict.fromkeys(name for name in found if name))


def _vr_of(tag: int, element: object) -> str:
    vr = element.VR if isinstance(element, RawDataElement) else getattr(element, "VR", None)
    if vr:
        return str(vr)
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _values(ds: Dataset, keywords: tuple[str, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for keyword in keywords:
        tag = _TAGS[keyword]
        if tag in ds._dict:
            value = ds[tag].value
            if not isinstance(value, list | tuple) or all(isinstance(v, str) for v in value):
                found.extend(_strings(value))
    return tuple(dict.fromkeys(v for v in found if v))


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return [str(v).strip() for v in value]  # type: ignore[attr-defined]
    return [str(value).strip()]


def _text(ds: Dataset, keyword: str) -> str:
    tag = _TAGS[keyword]
    if tag not in ds._dict:
        return ""
    value = ds[tag].value
    return str(value).strip() if value is not None else ""
