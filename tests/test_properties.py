"""Property-based tests of the per-instance function on generated data sets.

Hypothesis generates data sets with random person names, IDs, institutions and dates, free
text built from them, sequences nested up to three deep, random private blocks and
cross-referencing UIDs; each goes through :func:`phigate.pipeline.instance.process_instance`
in-process, under the built-in profiles. Identifying values are tokens that start with
``ZQ`` so a byte search cannot match by chance; failures name where a value was planted,
never the value.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from collections.abc import Iterator
from functools import cache

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian

from phigate.deid.keys import Keyring
from phigate.pipeline.instance import Outcome, Worker, process_instance
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile
from phigate.record import Status

KEYS = Keyring(b"k" * 32)
PROFILES = ("basic", "tcia", "hipaa-safe-harbor", "gdpr")
SHIFTING = ("tcia", "gdpr")
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DICOM_ROOT = "1.2.840.10008."
UID_ROOT = "1.3.6.1.4.1.99999."
DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Identifying attributes (keyword, VR); every built-in profile removes, empties, dummies or
# pseudonymizes them, at any depth.
IDENTIFYING = (
    ("PatientName", "PN"), ("OtherPatientNames", "PN"), ("ReferringPhysicianName", "PN"),
    ("PerformingPhysicianName", "PN"), ("OperatorsName", "PN"), ("PersonName", "PN"),
    ("VerifyingObserverName", "PN"), ("PatientID", "LO"), ("OtherPatientIDs", "LO"),
    ("AccessionNumber", "SH"), ("StudyID", "SH"), ("InstitutionName", "LO"),
    ("PatientAddress", "LO"), ("MedicalRecordLocator", "LO"), ("RequestedProcedureID", "SH"),
    ("IssuerOfPatientID", "LO"), ("PatientTelephoneNumbers", "SH"),
)  # fmt: skip
SEQUENCES = (
    "ReferencedStudySequence", "RequestAttributesSequence", "SourceImageSequence",
    "ReferencedImageSequence", "PurposeOfReferenceCodeSequence", "VerifyingObserverSequence",
    "AnatomicRegionSequence", "ContentSequence", "OtherPatientIDsSequence",
)  # fmt: skip
TEXT_DATE_FORMATS = ("%m/%d/%Y", "%d.%m.%Y", "%B %d, %Y", "%Y-%m-%d", "%d %b %Y")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"


@cache
def worker(profile: str, copy: int = 0) -> Worker:
    """One worker per profile (``copy`` gives an independent second one)."""
    del copy
    return Worker(compile_profile(load_profile(profile)), KEYS)


# Strategies


def token(alphabet: str = LETTERS, min_size: int = 6, max_size: int = 10) -> st.SearchStrategy[str]:
    """A distinctive identifying token: ``ZQ`` and random characters."""
    return st.text(alphabet=alphabet, min_size=min_size, max_size=max_size).map(lambda s: "ZQ" + s)


def value_for(vr: str) -> st.SearchStrategy[str]:
    if vr == "PN":
        return st.builds(lambda s, g: f"{s}^{g}", token(), token())
    if vr == "SH":
        return token(LETTERS + DIGITS, 6, 12)
    return st.builds(lambda a, b: f"{a} {b}", token(), token(LETTERS + DIGITS))


def uids() -> st.SearchStrategy[str]:
    return st.integers(10**12, 10**20).map(lambda n: f"{UID_ROOT}{n}")


def dates(start: int = 1990, end: int = 2020) -> st.SearchStrategy[str]:
    return st.dates(dt.date(start, 1, 1), dt.date(end, 12, 31)).map(lambda d: d.strftime("%Y%m%d"))


class Case:
    """A generated instance and what was planted where (labels are safe to print).

    A plain class, not a dataclass, so that Hypothesis reports a falsifying example by
    this ``__repr__`` (counts only) rather than field by field.
    """

    def __init__(self) -> None:
        self.data = b""
        self.planted: list[tuple[str, str]] = []  # (label, token)
        self.uids: dict[str, str] = {}  # label -> original UID
        self.dates: dict[str, str] = {}
        self.nested_dates: list[str] = []  # InstanceCreationDate values inside sequences

    def __repr__(self) -> str:
        return f"Case({len(self.planted)} planted values, {len(self.data)} bytes)"


@st.composite
def instances(draw: st.DrawFn) -> Case:
    """A CT header with identifiers at the top, nested up to three deep and in private tags."""
    case = Case()
    ds = Dataset()
    _top(draw, ds, case)
    for depth_one in draw(st.lists(st.sampled_from(SEQUENCES), max_size=3, unique=True)):
        setattr(ds, depth_one, [_item(draw, case, depth=1)])
    _private(draw, ds, case, "top")
    case.data = _encode(ds)
    return case


def _top(draw: st.DrawFn, ds: Dataset, case: Case) -> None:
    ds.SOPClassUID = CT_IMAGE
    ds.Modality = "CT"
    for keyword in (
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "FrameOfReferenceUID",
    ):
        uid = draw(uids())
        setattr(ds, keyword, uid)
        case.uids[keyword] = uid
    surname, given = draw(token()), draw(token())
    patient_id = draw(token(LETTERS + DIGITS, 6, 12))
    ds.PatientName = f"{surname}^{given}"
    ds.PatientID = patient_id
    case.planted += [("PatientName", surname), ("PatientName", given), ("PatientID", patient_id)]
    others = [(k, vr) for k, vr in IDENTIFYING if k not in ("PatientName", "PatientID")]
    for keyword, vr in draw(st.lists(st.sampled_from(others), max_size=6, unique=True)):
        values = draw(st.lists(value_for(vr), min_size=1, max_size=2))
        setattr(ds, keyword, values if len(values) > 1 else values[0])
        case.planted += [(keyword, part) for v in values for part in _tokens(v)]
    _dates(draw, ds, case)
    _free_text(draw, ds, case, surname, given, patient_id)


def _free_text(
    draw: st.DrawFn, ds: Dataset, case: Case, surname: str, given: str, patient_id: str
) -> None:
    """Comments naming the patient in three forms, with the ID, dates, phone and e-mail."""
    birth = to_date(str(ds.PatientBirthDate)).strftime(draw(st.sampled_from(TEXT_DATE_FORMATS)))
    study = to_date(str(ds.StudyDate)).strftime(draw(st.sampled_from(TEXT_DATE_FORMATS)))
    phone = f"{draw(st.integers(201, 989))}-555-{draw(st.integers(100, 9999)):04d}"
    email = f"{given.lower()}.{surname.lower()}@example.org"
    ds.ImageComments = (
        f"Seen {given.title()} {surname.title()} ({surname}, {given}) id {patient_id}, "
        f"born {birth}, scanned {study}; call {phone} or write to {email}"
    )
    ds.StudyDescription = f"CT CHEST {surname} {patient_id}"
    case.planted += [("text:name", surname), ("text:name", given), ("text:id", patient_id)]
    case.planted += [("text:date", birth), ("text:date", study), ("text:phone", phone)]
    case.planted += [("text:email", email)]


def _dates(draw: st.DrawFn, ds: Dataset, case: Case) -> None:
    ds.PatientBirthDate = draw(dates(1930, 1980))
    for keyword in DATE_KEYWORDS:
        value = draw(dates())
        setattr(ds, keyword, value)
        case.dates[keyword] = value


def _item(draw: st.DrawFn, case: Case, depth: int) -> Dataset:
    item = Dataset()
    label = f"depth{depth}"
    for keyword, vr in draw(
        st.lists(st.sampled_from(IDENTIFYING), min_size=1, max_size=3, unique=True)
    ):
        value = draw(value_for(vr))
        setattr(item, keyword, value)
        case.planted += [(f"{label}:{keyword}", part) for part in _tokens(value)]
    target = draw(st.sampled_from(["SOPInstanceUID", "StudyInstanceUID", "other"]))
    uid = case.uids.get(target) or draw(uids())
    item.ReferencedSOPClassUID = CT_IMAGE
    item.ReferencedSOPInstanceUID = uid
    case.uids[f"{label}:{target}:{len(case.uids)}"] = uid
    if draw(st.booleans()):
        item.InstanceCreationDate = draw(dates())
        case.nested_dates.append(str(item.InstanceCreationDate))
    if depth < 3 and draw(st.booleans()):
        setattr(item, draw(st.sampled_from(SEQUENCES)), [_item(draw, case, depth + 1)])
    if draw(st.booleans()):
        _private(draw, item, case, label)
    return item


def _private(draw: st.DrawFn, ds: Dataset, case: Case, label: str) -> None:
    for _ in range(draw(st.integers(0, 2))):
        group = draw(st.sampled_from([0x0009, 0x0011, 0x0019, 0x0029, 0x0041]))
        creator = f"ACME VENDOR {draw(st.integers(1, 9))}"
        block = ds.private_block(group, creator, create=True)
        for offset in draw(st.lists(st.integers(0, 0x20), min_size=1, max_size=3, unique=True)):
            vr = draw(st.sampled_from(["LO", "SH", "PN", "LT", "UT"]))
            value = draw(value_for(vr))
            block.add_new(offset, vr, value)
            case.planted += [(f"{label}:private:{vr}", part) for part in _tokens(value)]


def _tokens(value: str) -> list[str]:
    return [part for part in value.replace("^", " ").split() if part.startswith("ZQ")]


def _encode(ds: Dataset) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    file_ds = FileDataset("", ds, file_meta=meta, preamble=b"\0" * 128)
    buffer = io.BytesIO()
    file_ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# Helpers


def run(profile: str, case: Case, copy: int = 0) -> Outcome:
    outcome = process_instance(case.data, "generated", worker(profile, copy))
    assert outcome.record.status is Status.WRITTEN, outcome.record.reason
    assert outcome.data is not None
    return outcome


def leaks(data: bytes, case: Case) -> list[str]:
    """Labels of planted values found in ``data`` (case-insensitive)."""
    lowered = data.lower()
    return sorted({label for label, value in case.planted if value.lower().encode() in lowered})


def read(data: bytes) -> FileDataset:
    return pydicom.dcmread(io.BytesIO(data))


def uid_values(ds: Dataset) -> Iterator[str]:
    for element in ds.iterall():
        if element.VR == "UI" and element.value:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            yield from (str(v) for v in values)


def to_date(value: str) -> dt.date:
    return dt.datetime.strptime(value[:8], "%Y%m%d").date()


# Properties


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(case=instances())
def test_no_identifying_value_survives(profile: str, case: Case) -> None:
    outcome = run(profile, case)
    assert outcome.data is not None
    in_output = leaks(outcome.data, case)  # labels only: never show the bytes searched
    assert in_output == []
    record = json.dumps(outcome.record.to_dict()).encode()
    in_record = leaks(record, case)
    assert in_record == []


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(case=instances())
def test_same_input_gives_same_output(profile: str, case: Case) -> None:
    first, again, other_worker = run(profile, case), run(profile, case), run(profile, case, 1)
    same = first.data == again.data == other_worker.data
    assert same, "the same input gave different bytes"
    same_pseudonyms = first.pseudonyms == other_worker.pseudonyms
    assert same_pseudonyms, "the same input gave different pseudonyms"


@pytest.mark.parametrize("profile", PROFILES)
@SETTINGS
@given(case=instances())
def test_uids_map_consistently(profile: str, case: Case) -> None:
    outcome = run(profile, case)
    assert outcome.data is not None
    ds = read(outcome.data)
    originals = set(case.uids.values())
    expected = {KEYS.uid(uid) for uid in originals}
    wrong = Counter(
        "original" if u in originals else "unexpected"
        for u in uid_values(ds)
        if not u.startswith(DICOM_ROOT) and u not in expected
    )
    assert wrong == Counter()
    assert str(ds.SOPInstanceUID) == KEYS.uid(case.uids["SOPInstanceUID"])
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    survivors = sum(uid.encode() in outcome.data for uid in originals)
    assert survivors == 0


@pytest.mark.parametrize("profile", SHIFTING)
@SETTINGS
@given(case=instances())
def test_date_intervals_survive(profile: str, case: Case) -> None:
    outcome = run(profile, case)
    assert outcome.data is not None
    ds = read(outcome.data)
    offsets = {
        (to_date(str(ds[keyword].value)) - to_date(original)).days
        for keyword, original in case.dates.items()
    }
    assert len(offsets) == 1
    offset = offsets.pop()
    assert -3650 <= offset <= -365
    expected = {to_date(v) + dt.timedelta(days=offset) for v in case.nested_dates}
    nested = [e.value for e in ds.iterall() if e.keyword == "InstanceCreationDate" and e.value]
    wrong = sum(to_date(str(v)) not in expected for v in nested)
    assert wrong == 0


@SETTINGS
@given(case=instances())
def test_hipaa_keeps_only_the_year(case: Case) -> None:
    outcome = run("hipaa-safe-harbor", case)
    assert outcome.data is not None
    ds = read(outcome.data)
    wrong = [k for k, v in case.dates.items() if str(ds[k].value) != v[:4] + "0101"]
    assert wrong == []
