"""Header actions on real data sets, through the per-instance function the CLI, the server
and Spark call: ``process_instance(bytes, ref, Worker(plan, keys))``."""

from __future__ import annotations

import datetime as dt
import io
from functools import cache

import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
)

from phigate.deid.header import TrialSubject, deidentify_header
from phigate.deid.identifiers import collect_identifiers
from phigate.deid.keys import Keyring
from phigate.pipeline.instance import Outcome, Worker, process_instance
from phigate.policy.plan import ActionPlan, compile_profile
from phigate.policy.profile import builtin_names, load_profile, parse_profile_text
from phigate.record import Status

KEYS = Keyring(b"k" * 32)
STUDY, SERIES, FRAME = "1.2.826.0.1.999.1", "1.2.826.0.1.999.1.2", "1.2.826.0.1.999.1.3"
SOP_A, SOP_B = "1.2.826.0.1.999.1.2.1", "1.2.826.0.1.999.1.2.2"
PHI = {
    "PatientName": "DOE^JOHN",
    "PatientID": "MRN-778899",
    "AccessionNumber": "ACC-42",
    "StudyID": "ST-7",
    "PatientBirthDate": "19600315",
    "PatientAddress": "42 Elm Street, Springfield",
    "ReferringPhysicianName": "SMITH^ALICE",
    "InstitutionName": "Springfield General Hospital",
    "StationName": "CT-ROOM-1",
}
SUBJECTS = {
    "MRN-778899": TrialSubject(
        subject_id="SUBJ-001",
        sponsor_name="Acme Pharma",
        protocol_id="ACME-301",
        protocol_name="Acme phase III",
        site_id="S12",
        site_name="North site",
    )
}


def instance(sop: str = SOP_A, **values: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.FrameOfReferenceUID = FRAME
    ds.Modality = "CT"
    ds.SliceThickness = "2.5"
    ds.StudyDate = "20230410"
    ds.StudyTime = "101500"
    for keyword, value in {**PHI, **values}.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def with_pixels(ds: Dataset) -> Dataset:
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 2, 2, 8, 8, 7
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x00\x01\x02\x03"
    return ds


def encode(
    ds: Dataset, preamble: bytes = b"\0" * 128, syntax: str = ExplicitVRLittleEndian
) -> bytes:
    """A Part 10 file whose file meta carries sender PHI (AE title, private information)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.SourceApplicationEntityTitle = "SENDER_AE"
    meta.PrivateInformationCreatorUID = "1.2.826.0.1.999.77"
    meta.PrivateInformation = b"SECRET"
    file_ds = FileDataset("", ds, file_meta=meta, preamble=preamble)
    buffer = io.BytesIO()
    file_ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@cache
def plan(profile: str = "basic") -> ActionPlan:
    if ":" in profile:  # YAML text
        return compile_profile(parse_profile_text(profile))
    return compile_profile(load_profile(profile))


@cache
def worker(profile: str = "basic", mapped: bool = False) -> Worker:
    return Worker(plan(profile), KEYS, subjects=SUBJECTS if mapped else None)


def run(ds: Dataset, profile: str = "basic", mapped: bool = False) -> Outcome:
    return process_instance(encode(ds), "input-ref", worker(profile, mapped))


def output(outcome: Outcome) -> Dataset:
    assert outcome.record.status is Status.WRITTEN, outcome.record.reason_detail
    assert outcome.data is not None
    return pydicom.dcmread(io.BytesIO(outcome.data))


def deid(ds: Dataset, profile: str = "basic", mapped: bool = False) -> Dataset:
    return output(run(ds, profile, mapped))


def all_values(ds: Dataset) -> str:
    """Every value in the data set and its sequences, untruncated, for leak checks."""
    return "\n".join(str(element.value) for element in ds.iterall() if element.VR != "SQ")


def extends(base: str, body: str) -> str:
    return f"name: t\nextends: {base}\n{body}"


def days_between(first: str, second: str) -> int:
    return (dt.date.fromisoformat(_iso(second)) - dt.date.fromisoformat(_iso(first))).days


def _iso(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}"


# --- remove, empty, dummy, keep -----------------------------------------------------------


def test_basic_removes_empties_dummies_and_keeps() -> None:
    out = deid(instance())
    assert "PatientAddress" not in out  # X
    assert out.ReferringPhysicianName == "" and out.StudyDate == ""  # Z: present, empty
    assert out.StationName == "ANONYMOUS"  # X/Z/D: dummy
    assert (out.Modality, out.SliceThickness) == ("CT", 2.5)  # standard, not in the table


@pytest.mark.parametrize(
    ("keyword", "value", "dummy"),
    [
        ("StationName", "CT-ROOM-1", "ANONYMOUS"),
        ("SeriesDate", "20230410", "19000101"),  # X/D on a DA
        ("ContentTime", "101500", "000000"),  # Z/D on a TM
        ("AcquisitionDateTime", "20230410101500", "19000101000000"),  # X/Z/D on a DT
    ],
)
def test_dummy_is_valid_for_the_vr(keyword: str, value: str, dummy: str) -> None:
    out = deid(instance(**{keyword: value}))
    assert str(out[keyword].value) == dummy
    pydicom.valuerep.validate_value(out[keyword].VR, out[keyword].value, pydicom.config.RAISE)


def test_composite_x_z_leaves_the_attribute_present_and_empty() -> None:
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = STUDY
    ds = instance(AcquisitionDate="20230410", RequestedProcedureDescription="CT DOE")
    ds.ReferencedStudySequence = [study]
    out = deid(ds)
    assert (out.AcquisitionDate, out.RequestedProcedureDescription) == ("", "")
    assert len(out.ReferencedStudySequence) == 0


def test_unknown_public_attribute_follows_default_unknown() -> None:
    ds = instance()
    ds.add_new(0x00081999, "LO", "DOE JOHN")
    ds.add_new(0x00142006, "PN", "DOE^JOHN")  # EvaluatorName: PN, not in the table
    assert 0x00081999 not in deid(ds) and 0x00142006 not in deid(ds)
    kept = deid(ds, extends("basic", "default_unknown: keep\n"))
    assert (kept[0x00081999].value, str(kept[0x00142006].value)) == ("DOE JOHN", "DOE^JOHN")


def test_no_planted_value_survives_basic() -> None:
    outcome = run(three_deep())
    assert outcome.data is not None
    leaked = [value for value in PHI.values() if value.encode() in outcome.data]
    assert leaked == []
    assert b"DOE" not in outcome.data and b"778899" not in outcome.data


# --- UIDs ---------------------------------------------------------------------------------


def referencing_instance() -> Dataset:
    """Instance B references instance A at three places, one of them three levels deep."""
    ds = instance(SOP_B)
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = SOP_A
    ds.ReferencedImageSequence = [ref]
    source = Dataset()
    source.ReferencedSOPClassUID = CTImageStorage
    source.ReferencedSOPInstanceUID = SOP_A
    ds.SourceImageSequence = [source]
    series = Dataset()
    series.SeriesInstanceUID = SERIES
    deep = Dataset()
    deep.ReferencedSOPClassUID = CTImageStorage
    deep.ReferencedSOPInstanceUID = SOP_A
    deep.ReferencedFrameOfReferenceUID = FRAME
    series.ReferencedInstanceSequence = [deep]
    study = Dataset()
    study.StudyInstanceUID = STUDY
    study.ReferencedSeriesSequence = [series]
    ds.StudiesContainingOtherReferencedInstancesSequence = [study]
    return ds


def test_uids_are_replaced_and_references_follow_the_referenced_instance() -> None:
    a, b = deid(instance(SOP_A)), deid(referencing_instance())
    assert a.SOPInstanceUID != SOP_A
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    [study] = b.StudiesContainingOtherReferencedInstancesSequence
    [series] = study.ReferencedSeriesSequence
    [deep] = series.ReferencedInstanceSequence
    assert deep.ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert deep.ReferencedFrameOfReferenceUID == a.FrameOfReferenceUID
    assert (study.StudyInstanceUID, series.SeriesInstanceUID) == (
        a.StudyInstanceUID,
        a.SeriesInstanceUID,
    )


def test_study_series_and_frame_uids_are_shared_by_instances_of_a_series() -> None:
    a, b = deid(instance(SOP_A)), deid(instance(SOP_B))
    assert a.SOPInstanceUID != b.SOPInstanceUID
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert a[keyword].value == b[keyword].value
        assert a[keyword].value.startswith("2.25.")
        assert a[keyword].value not in (STUDY, SERIES, FRAME)


def test_well_known_uids_are_untouched() -> None:
    out = deid(referencing_instance())
    assert out.SOPClassUID == CTImageStorage
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    codes = out.DeidentificationMethodCodeSequence
    assert codes[0].CodingSchemeDesignator == "DCM"


def test_new_uids_are_the_same_in_every_run_and_differ_by_key() -> None:
    data = encode(instance())
    first = output(process_instance(data, "a", worker()))
    again = output(process_instance(data, "b", Worker(plan(), Keyring(b"k" * 32))))
    other = output(process_instance(data, "a", Worker(plan(), Keyring(b"x" * 32))))
    assert first.SOPInstanceUID == again.SOPInstanceUID != other.SOPInstanceUID


def test_same_input_gives_byte_identical_output() -> None:
    data = encode(referencing_instance())
    assert process_instance(data, "a", worker()).data == process_instance(data, "a", worker()).data


# --- keyed hash and pseudonyms ------------------------------------------------------------


def test_hash_override_gives_a_keyed_value_valid_for_the_vr() -> None:
    profile = extends("basic", "overrides:\n  - select: {keyword: StationName}\n    action: hash\n")
    first = deid(instance(), profile).StationName
    assert first == deid(instance(SOP_B), profile).StationName
    assert first != deid(instance(StationName="CT-ROOM-2"), profile).StationName
    assert len(first) == 16 and "ROOM" not in first


def test_pseudonyms_are_consistent_across_instances_and_valid_for_the_vr() -> None:
    a, b = deid(instance(SOP_A)), deid(instance(SOP_B))
    for keyword in ("PatientID", "PatientName", "AccessionNumber", "StudyID"):
        assert a[keyword].value == b[keyword].value
        assert str(a[keyword].value) != PHI[keyword]
        element = a[keyword]
        pydicom.valuerep.validate_value(element.VR, element.value, pydicom.config.RAISE)


def test_different_patients_get_different_pseudonyms() -> None:
    a = deid(instance())
    b = deid(instance(PatientID="MRN-000001", PatientName="ROE^JANE"))
    assert (a.PatientID, a.PatientName) != (b.PatientID, b.PatientName)


def test_pseudonyms_are_returned_for_the_vault_and_kept_out_of_the_record() -> None:
    outcome = run(instance())
    out = output(outcome)
    assert outcome.pseudonyms[("PatientID", out.PatientID)] == "MRN-778899"
    assert outcome.pseudonyms[("PatientName", str(out.PatientName))] == "DOE^JOHN"
    assert outcome.pseudonyms[("AccessionNumber", out.AccessionNumber)] == "ACC-42"
    record = str(outcome.record.to_dict())
    assert not [value for value in PHI.values() if value in record]


# --- dates, times, ages -------------------------------------------------------------------

DATES = {
    "StudyDate": "20230410",
    "SeriesDate": "20230411",
    "AcquisitionDate": "20230412",
    "ContentDate": "20220101",
}


def test_dates_shift_by_one_offset_per_patient_so_intervals_survive() -> None:
    out = deid(instance(**DATES), "tcia")
    shifted = {keyword: out[keyword].value for keyword in DATES}
    offsets = {days_between(DATES[k], shifted[k]) for k in DATES}
    assert len(offsets) == 1
    assert -3650 <= offsets.pop() <= -365


def test_same_patient_same_offset_in_every_instance() -> None:
    a = deid(instance(SOP_A, StudyDate="20230410"), "tcia")
    b = deid(instance(SOP_B, StudyDate="20230410"), "tcia")
    assert a.StudyDate == b.StudyDate != "20230410"


def test_an_issuer_given_in_only_some_instances_does_not_split_the_offset() -> None:
    """Senders fill IssuerOfPatientID inconsistently; the patient is the PatientID, as for
    its pseudonym, so the two instances share one offset."""
    a = deid(instance(SOP_A, StudyDate="20230410"), "tcia")
    b = deid(instance(SOP_B, StudyDate="20230410", IssuerOfPatientID="HOSP-A"), "tcia")
    assert a.PatientID == b.PatientID
    assert a.StudyDate == b.StudyDate != "20230410"


def test_different_patients_get_different_offsets() -> None:
    patients = [f"MRN-{n:06d}" for n in range(8)]
    shifted = {deid(instance(PatientID=p), "tcia").StudyDate for p in patients}
    assert len(shifted) > 1


def test_datetime_keeps_time_and_utc_offset_and_time_stays() -> None:
    ds = instance(AcquisitionDateTime="20230410101500.250000+0100", AcquisitionTime="101500")
    out = deid(ds, "tcia")
    assert out.AcquisitionDateTime[:8] == out.StudyDate
    assert out.AcquisitionDateTime[8:] == "101500.250000+0100"
    assert (out.AcquisitionTime, out.StudyTime) == ("101500", "101500")


@pytest.mark.parametrize("partial", ["2023", "202304"])
def test_partial_dates_keep_their_precision(partial: str) -> None:
    out = deid(instance(AcquisitionDate=partial), "tcia")
    assert len(out.AcquisitionDate) == len(partial)
    assert out.AcquisitionDate != partial  # the offset is at least a year


def test_unparseable_date_is_emptied_not_kept() -> None:
    assert deid(instance(AcquisitionDate="10-04-2023"), "tcia").AcquisitionDate == ""


def test_hipaa_reduces_dates_to_the_year() -> None:
    ds = instance(AcquisitionDateTime="20230410101500", PatientBirthDate="19600315")
    out = deid(ds, "hipaa-safe-harbor")
    assert (out.StudyDate, out.AcquisitionDateTime, out.PatientBirthDate) == (
        "20230101",
        "2023",
        "19600101",
    )


OLD = {"PatientAge": "095Y", "PatientBirthDate": "19280301", "StudyDate": "20230410"}


@pytest.mark.parametrize("profile", builtin_names())
def test_ages_over_89_are_aggregated_in_every_built_in_profile(profile: str) -> None:
    out = deid(instance(**OLD), profile, mapped=profile == "clinical-trial")
    assert str(out.get("PatientAge", "") or "") in ("", "090Y")
    birth, study = str(out.get("PatientBirthDate", "") or ""), str(out.get("StudyDate") or "")
    if birth and study:
        assert days_between(birth[:8], study[:8]) / 365.25 <= 91
    assert "19280301" not in all_values(out)


@pytest.mark.parametrize("age", ["095Y", "120Y"])
def test_kept_age_over_89_reads_090y(age: str) -> None:
    assert deid(instance(PatientAge=age), "tcia").PatientAge == "090Y"


@pytest.mark.parametrize("age", ["089Y", "999M", "600W", "030D"])
def test_kept_age_up_to_89_is_unchanged(age: str) -> None:
    assert deid(instance(PatientAge=age), "tcia").PatientAge == age


def test_hipaa_birth_date_showing_over_89_is_moved_to_read_90() -> None:
    out = deid(instance(PatientBirthDate="19280301", StudyDate="20230410"), "hipaa-safe-harbor")
    assert out.PatientBirthDate == "19330101"


def test_hipaa_tells_the_age_by_the_latest_date_of_the_instance() -> None:
    """89 at the study, 91 at the content date: the birth year must not show it."""
    ds = instance(PatientBirthDate="19340301", StudyDate="20230101", ContentDate="20250301")
    out = deid(ds, "hipaa-safe-harbor")
    assert out.PatientBirthDate == "19350101"
    assert out.ContentDate == "20250101"


@pytest.mark.parametrize("born", ["1920.03.15", "1920", "192003", "19200315\\19200316"])
def test_hipaa_birth_date_not_shown_under_the_cap_goes(born: str) -> None:
    """An old ACR-NEMA date, a partial date or two values: the age cannot be told, and a
    real year of 1920 must not pass."""
    out = deid(instance(PatientBirthDate=born, StudyDate="20240115"), "hipaa-safe-harbor")
    assert "1920" not in str(out.get("PatientBirthDate", ""))


@pytest.mark.parametrize(
    ("profile", "expect"), [("tcia", "shifted"), ("hipaa-safe-harbor", "year"), ("basic", "gone")]
)
def test_dates_outside_the_table_go_the_way_the_profiles_dates_go(
    profile: str, expect: str
) -> None:
    """StudyUpdateDateTime is not in Table E.1-1; kept as sent beside a shifted StudyDate it
    would give the patient's offset away."""
    out = deid(instance(StudyUpdateDateTime="20230411120000"), profile)
    value = str(out.get("StudyUpdateDateTime", ""))
    if expect == "gone":
        assert "StudyUpdateDateTime" not in out
    elif expect == "year":
        assert value == "2023"
    else:
        assert value and value != "20230411120000" and value.endswith("120000")


def test_dates_in_an_alternative_calendar_go() -> None:
    out = deid(instance(PatientBirthDateInAlternativeCalendar="19400315"), "tcia")
    assert "PatientBirthDateInAlternativeCalendar" not in out


# --- free text ----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["basic", "tcia", "hipaa-safe-harbor", "gdpr"])
@pytest.mark.parametrize(
    ("keyword", "planted", "gone"),
    [
        ("ManufacturerModelName", "SCANNER FOR DOE JOHN", ("DOE", "JOHN")),
        ("PositionReferenceIndicator", "MRN-778899", ("778899",)),
        ("SoftwareVersions", "V2 2023-04-10", ("2023-04-10",)),
        ("ConvolutionKernel", "B30F DOE", ("DOE",)),
    ],
)
def test_kept_short_strings_holding_the_patients_identifiers_are_cleaned(
    profile: str, keyword: str, planted: str, gone: tuple[str, ...]
) -> None:
    """LO and SH attributes outside Table E.1-1 are kept as sent, unless a person typed the
    instance's own name, ID or date into one."""
    out = deid(instance(**{keyword: planted}), profile)
    kept = str(out.get(keyword, ""))
    assert not any(word in kept for word in gone)


def test_kept_code_meaning_in_a_sequence_holding_the_patients_name_is_cleaned() -> None:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "99X", "99LOCAL"
    code.CodeMeaning = "Follow-up of John Doe"
    out = deid(instance(AnatomicRegionSequence=Sequence([code])))
    meaning = str(out.AnatomicRegionSequence[0].CodeMeaning)
    assert "Doe" not in meaning and "John" not in meaning
    assert out.AnatomicRegionSequence[0].CodeValue == "99X"


def test_kept_short_strings_without_identifiers_are_unchanged() -> None:
    out = deid(instance(ManufacturerModelName="Aquilion ONE", ConvolutionKernel="FC03"))
    assert out.ManufacturerModelName == "Aquilion ONE" and out.ConvolutionKernel == "FC03"


def test_with_full_dates_retained_a_kept_date_in_a_short_string_stays() -> None:
    full = extends("basic", "options: [retain_long_full_dates]\n")
    out = deid(instance(SoftwareVersions="V2 2023-04-10"), full)
    assert out.SoftwareVersions == "V2 2023-04-10"


def test_descriptors_are_cleaned_and_findings_recorded() -> None:
    outcome = run(instance(SeriesDescription="CT CHEST W CONTRAST DOE"), "tcia")
    assert output(outcome).SeriesDescription == "CT CHEST W CONTRAST ***"
    finding = outcome.record.findings[0]
    assert (finding.where, finding.kind, finding.keyword) == ("header", "name", "SeriesDescription")


def test_clinical_descriptor_is_unchanged() -> None:
    assert deid(instance(StudyDescription="CT CHEST W CONTRAST"), "tcia").StudyDescription == (
        "CT CHEST W CONTRAST"
    )


def test_dates_in_text_move_with_the_patients_dates() -> None:
    profile = extends("tcia", "text: {dates_in_text: shift}\n")
    out = deid(instance(ImageComments="COMPARED WITH 2023-04-10"), profile)
    assert out.ImageComments == f"COMPARED WITH {_iso(out.StudyDate)}"


def test_dates_in_text_are_removed_without_shift() -> None:
    out = deid(instance(ImageComments="COMPARED WITH 2023-04-10"), "tcia")
    assert out.ImageComments == "COMPARED WITH ***"


# --- sequences, private tags, graphics ----------------------------------------------------


def three_deep() -> Dataset:
    leaf = Dataset()
    leaf.CodeValue = "T-D3000"
    leaf.PersonName = "DOE^JOHN"
    leaf.OtherPatientIDs = "MRN-778899"
    leaf.ReferencedSOPInstanceUID = SOP_A
    leaf.private_block(0x0011, "ACME", create=True).add_new(0x01, "LO", "DOE JOHN")
    middle = Dataset()
    middle.ConceptNameCodeSequence = [leaf]
    top = Dataset()
    top.DerivationCodeSequence = [middle]
    return instance(AnatomicRegionSequence=Sequence([top]))


def test_sequences_are_walked_three_deep() -> None:
    out = deid(three_deep())
    leaf = out.AnatomicRegionSequence[0].DerivationCodeSequence[0].ConceptNameCodeSequence[0]
    assert leaf.CodeValue == "T-D3000"
    assert leaf.PersonName == "ANONYMOUS"
    assert "OtherPatientIDs" not in leaf
    assert leaf.ReferencedSOPInstanceUID == deid(instance(SOP_A)).SOPInstanceUID
    assert [e.tag for e in leaf if e.tag.is_private] == []


def test_text_in_structured_content_does_not_survive() -> None:
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Patient DOE^JOHN MRN-778899 seen"
    for profile in ("basic", "tcia"):
        text = all_values(deid(instance(ContentSequence=Sequence([item])), profile))
        assert "Patient" in text and "seen" in text, profile
        assert "DOE" not in text and "778899" not in text, profile


def private_instance() -> Dataset:
    ds = instance()
    kept = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    kept.add_new(0x0C, "IS", "1000")  # on tcia's safe list: B value
    kept.add_new(0x08, "LO", "DOE JOHN")
    gone = ds.private_block(0x0029, "ACME NOTES", create=True)
    gone.add_new(0x10, "LT", "DOE JOHN 555-123-4567")
    return ds


def test_private_tags_are_removed_under_basic_creators_too() -> None:
    out = deid(private_instance())
    assert [e.tag for e in out if e.tag.is_private] == []
    assert "DOE JOHN" not in all_values(out)


def test_safe_private_tags_are_kept_and_their_creator_with_them() -> None:
    out = deid(private_instance(), "tcia")
    assert out.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value == "1000"
    private = sorted(e.tag for e in out if e.tag.is_private)
    assert private == [0x00190010, 0x0019100C]


def test_a_safe_entry_for_one_group_keeps_nothing_in_another() -> None:
    """tcia lists SIEMENS MR HEADER (0019,xx0C) as safe; the same creator and element byte
    in group 0051 is another attribute and may hold text."""
    ds = private_instance()
    other = ds.private_block(0x0051, "SIEMENS MR HEADER", create=True)
    other.add_new(0x0C, "LO", "DOE JOHN")
    out = deid(ds, "tcia")
    assert out.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value == "1000"
    assert "DOE JOHN" not in all_values(out)


def test_private_keep_list_keeps_without_the_safe_option() -> None:
    profile = extends("basic", 'private: {keep: [{creator: ACME NOTES, element: "10"}]}\n')
    out = deid(private_instance(), profile)
    assert out.private_block(0x0029, "ACME NOTES")[0x10].value == "DOE JOHN 555-123-4567"
    assert 0x00190010 not in out


def graphics_instance() -> Dataset:
    ds = instance()
    ds.add_new(0x60000010, "US", 2)  # OverlayRows
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 4)  # OverlayData
    ds.add_new(0x50003000, "OW", b"\x02\x00" * 4)  # CurveData
    ds.add_new(0x50000010, "US", 4)  # NumberOfPoints
    return ds


def test_overlay_and_curve_data_are_removed_under_basic() -> None:
    out = deid(graphics_instance())
    assert 0x60003000 not in out and 0x50003000 not in out and 0x50000010 not in out


def test_clean_graphics_without_a_pixel_step_removes_overlay_and_curve_data() -> None:
    """Bits cannot be cleaned in the header: curve data goes, and an overlay plane goes
    whole when no pixel step read its bitmap."""
    out = deid(graphics_instance(), extends("basic", "options: [clean_graphics]\n"))
    assert [e.tag for e in out if e.tag.group in (0x5000, 0x6000) and e.VR in ("OB", "OW")] == []
    assert [e.tag for e in out if e.tag.group == 0x6000] == []


# --- de-identification markers and file meta ----------------------------------------------


def codes(ds: Dataset) -> list[str]:
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


def test_basic_output_says_how_it_was_deidentified() -> None:
    out = deid(instance())
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethod == f"phigate basic {plan().version}"
    assert codes(out) == ["113100"]
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_option_codes_are_listed_but_clean_pixel_data_only_when_pixels_were_cleaned() -> None:
    out = deid(instance(), "tcia")
    assert codes(out) == ["113100", "113103", "113104", "113105", "113107", "113108", "113109",
                          "113111"]  # fmt: skip
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


def test_clean_pixel_data_code_is_written_when_pixels_were_cleaned() -> None:
    ds = FileDataset("", instance(), file_meta=FileMetaDataset())
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    deidentify_header(ds, plan("tcia"), KEYS, None, collect_identifiers(ds), pixels_cleaned=True)
    assert "113101" in codes(ds)


def test_full_dates_say_unmodified() -> None:
    out = deid(instance(), extends("basic", "options: [retain_long_full_dates]\n"))
    assert (out.StudyDate, out.LongitudinalTemporalInformationModified) == (
        "20230410",
        "UNMODIFIED",
    )
    assert codes(out) == ["113100", "113106"]


def test_file_meta_is_rewritten_and_preamble_zeroed() -> None:
    outcome = process_instance(encode(instance(), b"DOE^JOHN".ljust(128, b"!")), "a", worker())
    assert outcome.data is not None and outcome.data[:128] == b"\0" * 128
    out = output(outcome)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != SOP_A
    assert out.file_meta.MediaStorageSOPClassUID == CTImageStorage
    for gone in (
        "SourceApplicationEntityTitle",
        "PrivateInformation",
        "PrivateInformationCreatorUID",
    ):
        assert gone not in out.file_meta
    assert b"SENDER_AE" not in outcome.data and b"SECRET" not in outcome.data


def test_output_reference_is_built_from_new_uids() -> None:
    outcome = run(instance())
    out = output(outcome)
    assert outcome.record.output_ref == (
        f"{out.StudyInstanceUID}/{out.SeriesInstanceUID}/{out.SOPInstanceUID}.dcm"
    )


# --- review, filters, clinical trial ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"BurnedInAnnotation": "YES"}, "burned_in_annotation_yes_pixels_not_cleaned"),
        ({"Modality": "US", "SOPClassUID": UltrasoundImageStorage},
         "modality_at_risk_of_burned_in_text_pixels_not_cleaned"),
        ({"Modality": "CT", "SOPClassUID": SecondaryCaptureImageStorage},
         "sop_class_at_risk_of_burned_in_text_pixels_not_cleaned"),
    ],
)  # fmt: skip
def test_pixels_at_risk_of_burned_in_text_need_review(changes: dict[str, str], reason: str) -> None:
    record = run(with_pixels(instance(**changes))).record
    assert record.status is Status.WRITTEN
    assert (record.requires_review, record.review_reasons) == (True, [reason])


@pytest.mark.parametrize(
    "ds",
    [with_pixels(instance(BurnedInAnnotation="NO")), instance(BurnedInAnnotation="YES")],
    ids=["ct-pixels", "no-pixels"],
)
def test_safe_pixels_need_no_review(ds: Dataset) -> None:
    assert run(ds).record.requires_review is False


def test_encapsulated_pdf_is_filtered_by_basic() -> None:
    record = run(instance(SOPClassUID=EncapsulatedPDFStorage, Modality="DOC")).record
    assert (record.status, record.reason) == (
        Status.FILTERED,
        "encapsulated_document_not_cleanable",
    )


def test_profile_filter_by_modality_and_burned_in_annotation() -> None:
    profile = extends(
        "basic", "filters:\n  - {modalities: [US], burned_in_annotation: 'YES', reason: us_text}\n"
    )
    burned = run(instance(Modality="US", BurnedInAnnotation="YES"), profile).record
    clean = run(instance(Modality="US", BurnedInAnnotation="NO"), profile).record
    assert (burned.status, burned.reason) == (Status.FILTERED, "us_text")
    assert clean.status is Status.WRITTEN


def test_clinical_trial_fills_the_trial_attributes_from_the_subject_map() -> None:
    out = deid(instance(), "clinical-trial", mapped=True)
    assert (out.PatientID, str(out.PatientName), out.ClinicalTrialSubjectID) == ("SUBJ-001",) * 3
    assert (out.ClinicalTrialSponsorName, out.ClinicalTrialProtocolID) == (
        "Acme Pharma",
        "ACME-301",
    )
    assert (out.ClinicalTrialProtocolName, out.ClinicalTrialSiteID) == ("Acme phase III", "S12")
    assert out.ClinicalTrialSiteName == "North site"


def test_clinical_trial_quarantines_a_patient_missing_from_the_map() -> None:
    record = run(instance(PatientID="MRN-NOT-MAPPED"), "clinical-trial", mapped=True).record
    assert (record.status, record.reason) == (Status.QUARANTINED, "subject_not_mapped")
    assert "MRN-NOT-MAPPED" not in str(record.to_dict())


def test_code_values_and_scheme_designators_stay_codes_whatever_they_spell() -> None:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "DOE", "DOE", "Knee"
    out = deid(instance(AnatomicRegionSequence=Sequence([code])))
    item = out.AnatomicRegionSequence[0]
    assert (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning) == ("DOE", "DOE", "Knee")
