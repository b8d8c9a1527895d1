"""De-identify the header of one instance and mark it as de-identified (PS3.15 E.1, PS3.3 C.12.1).

Pure: a data set, a plan, keys and (for clinical trials) a subject map in; the same data set
changed in place and a :class:`HeaderOutcome` out. No I/O, no logging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence

from phigate import __version__
from phigate.deid import values
from phigate.deid.identifiers import InstanceIdentifiers
from phigate.deid.keys import Keyring
from phigate.deid.text import TextCleaner
from phigate.deid.visitor import HeaderContext, HeaderVisitor
from phigate.errors import InstanceRejected
from phigate.policy.annex_e import BASIC_PROFILE_CODE, Option
from phigate.policy.plan import Action, ActionPlan
from phigate.record import PHIFinding

# phigate's Implementation Class UID (PS3.7 D.3.3.2): 2.25 form of a name-based UUID.
IMPLEMENTATION_CLASS_UID = "2.25.153581838473424917716424612003398893466"
IMPLEMENTATION_VERSION_NAME = f"PHIGATE_{__version__}"[:16]
SUBJECT_NOT_MAPPED = "subject_not_mapped"
# Options whose code is written only when the pixel step actually did the work.
_PIXEL_OPTIONS = frozenset({Option.CLEAN_PIXEL_DATA, Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES})


@dataclass(frozen=True, slots=True)
class TrialSubject:
    """One row of a clinical-trial subject map (PS3.3 C.7.1.3 Clinical Trial Subject)."""

    subject_id: str
    sponsor_name: str
    protocol_id: str
    protocol_name: str = ""
    site_id: str = ""
    site_name: str = ""


@dataclass
class HeaderOutcome:
    """What the header pass did: actions by keyword, findings, and pseudonyms made."""

    actions: dict[str, str] = field(default_factory=dict)
    findings: list[PHIFinding] = field(default_factory=list)
    pseudonyms: dict[tuple[str, str], str] = field(default_factory=dict)


def deidentify_header(
    ds: FileDataset,
    plan: ActionPlan,
    keys: Keyring,
    cleaner: TextCleaner | None,
    identifiers: InstanceIdentifiers,
    subjects: Mapping[str, TrialSubject] | None = None,
    pixels_cleaned: bool = False,
    drop_item_pixels: bool = False,
) -> HeaderOutcome:
    """Apply ``plan`` to ``ds`` in place; ``identifiers`` were read before any change.
    ``drop_item_pixels``: remove pixel data found inside sequence items."""
    subject = _trial_subject(ds, plan, subjects)
    earliest, latest = plan.dates.shift_days
    context = HeaderContext(
        plan=plan,
        keys=keys,
        cleaner=cleaner,
        identifiers=identifiers,
        day_offset=keys.day_offset(identifiers.patient_key, earliest, latest),
        drop_item_pixels=drop_item_pixels,
    )
    HeaderVisitor(context).visit(ds)
    _aggregate_old_birth_date(ds, context)
    if subject is not None:
        _fill_trial_attributes(ds, subject, context)
    _mark_deidentified(ds, plan, context.dates_changed, pixels_cleaned)
    _rewrite_file_meta(ds)
    return HeaderOutcome(context.actions, context.findings, context.pseudonyms)


def _trial_subject(
    ds: Dataset, plan: ActionPlan, subjects: Mapping[str, TrialSubject] | None
) -> TrialSubject | None:
    if not plan.require_subject_map:
        return None
    subject = (subjects or {}).get(str(ds.get("PatientID", "")).strip())
    if subject is None:
        raise InstanceRejected(SUBJECT_NOT_MAPPED, "the patient is not in the subject map")
    return subject


def _aggregate_old_birth_date(ds: Dataset, context: HeaderContext) -> None:
    """HIPAA: a birth date showing an age over the cap moves so the age reads cap + 1.

    The age is told by the latest full date of the instance (study, series, acquisition,
    content...). A birth date that cannot be shown to be under the cap goes: one that is
    not a full date, or one with no full date to tell the age by ("today" would not be
    deterministic).
    """
    cap = context.plan.age_cap
    ids = context.identifiers
    if cap is None or not str(ds.get("PatientBirthDate", "") or ""):
        return
    born = values.parse_date(ids.birth_date)
    others = list(ids.dates)
    if ids.birth_date in others:
        others.remove(ids.birth_date)
    dated = [d for d in map(values.parse_date, others) if d is not None]
    if born is None or not dated:
        ds.PatientBirthDate = ""
        context.actions["PatientBirthDate"] = "aggregate_age"
        return
    reference = max(dated)
    if (reference - born).days / 365.25 <= cap:
        return
    stand_in = reference.replace(year=reference.year - (cap + 1), day=1).strftime("%Y%m%d")
    rule = context.plan.rule_for(0x00100030, "DA")
    if rule.action is Action.SHIFT_DATE:
        stand_in = values.shift_date(stand_in, context.day_offset) or ""
    elif rule.action is Action.YEAR_ONLY:
        stand_in = values.year_only(stand_in, "DA") or ""
    ds.PatientBirthDate = stand_in
    context.actions["PatientBirthDate"] = "aggregate_age"


def _fill_trial_attributes(ds: Dataset, subject: TrialSubject, context: HeaderContext) -> None:
    ds.PatientID = subject.subject_id
    ds.PatientName = subject.subject_id
    ds.ClinicalTrialSponsorName = subject.sponsor_name
    ds.ClinicalTrialProtocolID = subject.protocol_id
    ds.ClinicalTrialProtocolName = subject.protocol_name
    ds.ClinicalTrialSiteID = subject.site_id
    ds.ClinicalTrialSiteName = subject.site_name
    ds.ClinicalTrialSubjectID = subject.subject_id
    for keyword in ("PatientID", "PatientName", "ClinicalTrialSubjectID"):
        context.actions[keyword] = "subject_map"


def _mark_deidentified(
    ds: Dataset, plan: ActionPlan, dates_changed: bool, pixels_cleaned: bool
) -> None:
    """PS3.15 E.1.1 (11): say that, how and by which profile version it was de-identified."""
    codes = [BASIC_PROFILE_CODE]
    options = plan.options | ({Option.CLEAN_PIXEL_DATA} if pixels_cleaned else set())
    for option in sorted(options, key=lambda o: o.code[0]):
        if option not in _PIXEL_OPTIONS or pixels_cleaned:
            codes.append(option.code)
    if Option.RETAIN_LONG_FULL_DATES in plan.options:
        temporal = "UNMODIFIED"
    else:
        temporal = "MODIFIED" if dates_changed else "REMOVED"
    # Tags, not keywords: this runs once per instance and keyword lookups are slow.
    ds[0x00120062] = DataElement(0x00120062, "CS", "YES")  # PatientIdentityRemoved
    ds[0x00120063] = DataElement(0x00120063, "LO", plan.method_description)
    items = [_code_item(value, meaning) for value, meaning in codes]
    ds[0x00120064] = DataElement(0x00120064, "SQ", Sequence(items))
    ds[0x00280303] = DataElement(0x00280303, "CS", temporal)


def _code_item(value: str, meaning: str) -> Dataset:
    """A CID 7050 code (PS3.16), coding scheme DCM."""
    elements = (
        DataElement(0x00080100, "SH", value),  # CodeValue
        DataElement(0x00080102, "SH", "DCM"),  # CodingSchemeDesignator
        DataElement(0x00080104, "LO", meaning),  # CodeMeaning
    )
    return Dataset({element.tag: element for element in elements})  # no per-element checks


def _rewrite_file_meta(ds: FileDataset) -> None:
    """A fresh file meta group: nothing the sender wrote (AE titles, private info) survives."""
    # Tags, not keywords, as in _mark_deidentified.
    elements = [
        DataElement(0x00020002, "UI", ds[0x00080016].value),  # MediaStorageSOPClassUID
        DataElement(0x00020003, "UI", ds[0x00080018].value),  # MediaStorageSOPInstanceUID
    ]
    syntax = ds.file_meta.get(0x00020010)
    if syntax is not None:
        elements.append(DataElement(0x00020010, "UI", syntax.value))  # TransferSyntaxUID
    elements.append(DataElement(0x00020012, "UI", IMPLEMENTATION_CLASS_UID))
    elements.append(DataElement(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME))
    ds.file_meta = FileMetaDataset({element.tag: element for element in elements})
