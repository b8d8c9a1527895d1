"""The compiled plan: Table E.1-1, every option column, composite codes, the rules for
attributes outside the table, and the precedence of overrides (see plan.py's docstring)."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from phigate.deid.keys import Keyring
from phigate.pipeline.instance import Worker, process_instance
from phigate.policy.plan import Action, ActionPlan, compile_profile
from phigate.policy.profile import load_profile, parse_profile_text
from phigate.record import Status

KEYS = Keyring(b"k" * 32)
SAFE_LIST = 'private: {safe: [{creator: ACME 1.1, group: "0019", element: "10"}]}\n'


def plan_of(extra: str = "", extends: str = "basic") -> ActionPlan:
    return compile_profile(parse_profile_text(f"name: t\nextends: {extends}\n{extra}"))


def with_option(option: str) -> ActionPlan:
    return plan_of(f"options: [{option}]\n{SAFE_LIST}")


def action(plan: ActionPlan, keyword: str | int) -> Action:
    """The action for a keyword, or for a tag (repeating groups have no keyword lookup)."""
    tag = keyword if isinstance(keyword, int) else tag_for_keyword(keyword)
    assert tag is not None, keyword
    return plan.rule_for(int(tag), str(dictionary_VR(tag)).split(" ")[0]).action


BASIC = plan_of(SAFE_LIST)

# --- Table E.1-1 and its option columns ---------------------------------------------------


@pytest.mark.parametrize(
    ("option", "keyword", "basic", "optioned"),
    [
        ("retain_uids", "SOPInstanceUID", Action.REPLACE_UID, Action.KEEP),
        ("retain_uids", "ReferencedImageSequence", Action.REPLACE_UID, Action.KEEP),
        ("retain_device_identity", "DeviceSerialNumber", Action.DUMMY, Action.KEEP),
        ("retain_device_identity", "StationAETitle", Action.REMOVE, Action.CLEAN_TEXT),
        ("retain_institution_identity", "InstitutionName", Action.DUMMY, Action.KEEP),
        ("retain_patient_characteristics", "PatientWeight", Action.REMOVE, Action.KEEP),
        ("retain_patient_characteristics", "Allergies", Action.REMOVE, Action.CLEAN_TEXT),
        ("retain_long_full_dates", "StudyDate", Action.EMPTY, Action.KEEP),
        ("retain_long_modified_dates", "StudyDate", Action.EMPTY, Action.SHIFT_DATE),
        ("retain_long_modified_dates", "AcquisitionDateTime", Action.DUMMY, Action.SHIFT_DATE),
        ("clean_descriptors", "SeriesDescription", Action.REMOVE, Action.CLEAN_TEXT),
        ("clean_descriptors", "RequestAttributesSequence", Action.REMOVE, Action.KEEP),
        ("clean_structured_content", "AcquisitionContextSequence", Action.EMPTY, Action.KEEP),
        ("clean_structured_content", "ContentSequence", Action.DUMMY, Action.KEEP),
        ("clean_graphics", "GraphicAnnotationSequence", Action.DUMMY, Action.KEEP),
        ("clean_graphics", 0x60003000, Action.REMOVE, Action.KEEP),  # Overlay Data
        # Curve Data: binary, so Clean Graphics cannot clean it either
        ("clean_graphics", 0x50003000, Action.REMOVE, Action.REMOVE),
        ("clean_descriptors", "MakerNote", Action.REMOVE, Action.REMOVE),  # binary too
    ],
)
def test_option_column_changes_the_basic_action(
    option: str, keyword: str | int, basic: Action, optioned: Action
) -> None:
    assert (action(BASIC, keyword), action(with_option(option), keyword)) == (basic, optioned)


def test_retain_safe_private_keeps_listed_private_attributes_only_with_the_option() -> None:
    optioned = with_option("retain_safe_private")
    assert BASIC.rule_for(0x00191010, "DS", "ACME 1.1").action is Action.REMOVE
    assert optioned.rule_for(0x00191010, "DS", "ACME 1.1").action is Action.KEEP
    assert optioned.rule_for(0x00191011, "DS", "ACME 1.1").action is Action.REMOVE
    assert optioned.rule_for(0x00191010, "DS", "OTHER").action is Action.REMOVE


def test_reduce_to_year_turns_modified_dates_into_year_only() -> None:
    plan = plan_of("options: [retain_long_modified_dates]\ndates: {reduce_to_year: true}\n")
    assert action(plan, "StudyDate") is Action.YEAR_ONLY


def test_retaining_option_wins_over_cleaning_option_on_the_same_row() -> None:
    both = plan_of("options: [retain_device_identity, retain_long_modified_dates]\n")
    assert action(both, "DateOfLastCalibration") is Action.KEEP
    assert action(with_option("retain_long_modified_dates"), "DateOfLastCalibration") is (
        Action.SHIFT_DATE
    )


@pytest.mark.parametrize(
    ("keyword", "code", "expected"),
    [
        ("AcquisitionDate", "X/Z", Action.EMPTY),
        ("RequestedProcedureDescription", "X/Z", Action.EMPTY),
        ("SeriesDate", "X/D", Action.DUMMY),
        ("ContentDate", "Z/D", Action.DUMMY),
        ("StationName", "X/Z/D", Action.DUMMY),
        ("InstitutionName", "X/Z/D", Action.DUMMY),
        ("ReferencedImageSequence", "X/Z/U*", Action.REPLACE_UID),
        ("SourceImageSequence", "X/Z/U*", Action.REPLACE_UID),
        ("PatientAddress", "X", Action.REMOVE),
        ("ReferringPhysicianName", "Z", Action.EMPTY),
        ("SOPInstanceUID", "U", Action.REPLACE_UID),
    ],
)
def test_basic_codes_resolve_to_the_action_valid_for_every_type(
    keyword: str, code: str, expected: Action
) -> None:
    rule = compile_profile(load_profile("basic")).rule_for(
        int(tag_for_keyword(keyword) or 0), str(dictionary_VR(keyword))
    )
    assert rule.action is expected
    assert rule.source.endswith(f"basic {code}")


# --- attributes outside the table ---------------------------------------------------------


@pytest.mark.parametrize("keyword", ["Modality", "SliceThickness", "Rows", "ImageType"])
def test_standard_attributes_not_in_the_table_are_kept(keyword: str) -> None:
    assert action(BASIC, keyword) is Action.KEEP


@pytest.mark.parametrize(
    ("default", "expected"), [("remove", Action.REMOVE), ("keep", Action.KEEP)]
)
def test_unknown_and_unlisted_person_names_follow_default_unknown(
    default: str, expected: Action
) -> None:
    plan = plan_of(f"default_unknown: {default}\n")
    unknown_public = plan.rule_for(0x00081999, "LO")
    unlisted_name = plan.rule_for(0x00142006, "PN")  # EvaluatorName: PN, not in the table
    assert (unknown_public.action, unlisted_name.action) == (expected, expected)


@pytest.mark.parametrize("keyword", ["TextValue", "UnformattedTextValue", "ImageComments"])
def test_free_text_is_cleaned_or_removed_never_kept_by_basic(keyword: str) -> None:
    assert action(BASIC, keyword) in (Action.CLEAN_TEXT, Action.REMOVE)


def test_uids_outside_the_table_are_replaced_unless_uids_are_retained() -> None:
    assert action(BASIC, "CodingSchemeUID") is Action.REPLACE_UID
    assert action(with_option("retain_uids"), "CodingSchemeUID") is Action.KEEP


def test_group_lengths_are_removed_and_private_creators_kept() -> None:
    assert BASIC.rule_for(0x00080000, "UL").action is Action.REMOVE
    assert BASIC.rule_for(0x00190010, "LO").action is Action.KEEP


def test_private_attribute_without_a_rule_is_removed() -> None:
    assert BASIC.rule_for(0x00191010, "LO", "SOMEONE").action is Action.REMOVE
    assert BASIC.rule_for(0x00191010, "LO", None).action is Action.REMOVE


def test_private_keep_list_applies_without_retain_safe_private() -> None:
    plan = plan_of('private: {keep: [{creator: acme 1.1 , element: "0x10"}]}\n')
    assert plan.rule_for(0x00191010, "DS", "ACME 1.1").action is Action.KEEP
    assert plan.rule_for(0x00291010, "DS", "ACME 1.1").action is Action.KEEP


# --- overrides and their precedence -------------------------------------------------------


def overrides(*entries: tuple[str, str]) -> ActionPlan:
    lines = "".join(f"  - select: {{{select}}}\n    action: {act}\n" for select, act in entries)
    return plan_of(f"options: [retain_safe_private]\n{SAFE_LIST}overrides:\n{lines}")


@pytest.mark.parametrize(
    ("entries", "tag", "vr", "creator", "expected"),
    [
        ([("keyword: SeriesDescription", "keep")], 0x0008103E, "LO", None, Action.KEEP),
        ([('tag: "(0008,103E)"', "hash")], 0x0008103E, "LO", None, Action.HASH),
        ([('tag: "0008103e"', "keep")], 0x0008103E, "LO", None, Action.KEEP),
        ([('range: "(0019,10XX)"', "keep")], 0x00191022, "LO", "ANY", Action.KEEP),
        ([('range: "(0018,005X)"', "hash")], 0x00180050, "DS", None, Action.HASH),
        ([("private: {creator: Vendor X, element: '22'}", "keep")], 0x00291022, "SH", "VENDOR X",
         Action.KEEP),
        ([("private: {creator: Vendor X, element: '22'}", "keep")], 0x00291023, "SH", "VENDOR X",
         Action.REMOVE),
        ([("vr: CS", "remove")], int(tag_for_keyword("Modality") or 0), "CS", None, Action.REMOVE),
        ([("vr: UN", "keep")], 0x00081999, "UN", None, Action.KEEP),
    ],
    ids=[
        "keyword", "tag", "tag-bare", "range-private", "range-public", "private-listed",
        "private-other-element", "vr", "vr-unknown",
    ],
)  # fmt: skip
def test_override_kinds_take_effect(
    entries: list[tuple[str, str]], tag: int, vr: str, creator: str | None, expected: Action
) -> None:
    assert overrides(*entries).rule_for(tag, vr, creator).action is expected


@pytest.mark.parametrize(
    ("entries", "tag", "vr", "creator", "expected"),
    [
        # 1. overrides beat the table, whatever their kind
        ([('range: "(0008,103X)"', "keep")], 0x0008103E, "LO", None, Action.KEEP),
        ([("vr: DA", "keep")], 0x00080020, "DA", None, Action.KEEP),
        ([("vr: UI", "keep")], 0x00080018, "UI", None, Action.KEEP),
        # ... and the private keep / safe lists (level 2)
        ([('range: "(0019,10XX)"', "hash")], 0x00191010, "DS", "ACME 1.1", Action.HASH),
        ([("vr: DS", "keep")], 0x00291010, "DS", "SOMEONE", Action.KEEP),
        # within overrides: keyword or tag, then private, then range, then VR
        ([('range: "(0008,103X)"', "hash"), ("keyword: SeriesDescription", "keep")],
         0x0008103E, "LO", None, Action.KEEP),
        ([("keyword: StudyDate", "keep"), ("vr: DA", "remove")], 0x00080020, "DA", None,
         Action.KEEP),
        ([('range: "(0019,10XX)"', "hash"), ("private: {creator: ACME 1.1, element: '11'}",
          "keep")], 0x00191011, "DS", "ACME 1.1", Action.KEEP),
        ([('range: "(0018,005X)"', "keep"), ("vr: DS", "remove")], 0x00180050, "DS", None,
         Action.KEEP),
    ],
    ids=[
        "range-over-table", "vr-over-table", "vr-over-table-uid", "range-over-safe-list",
        "vr-over-private-default", "keyword-over-range", "keyword-over-vr",
        "private-over-range", "range-over-vr",
    ],
)  # fmt: skip
def test_override_precedence_follows_the_documented_order(
    entries: list[tuple[str, str]], tag: int, vr: str, creator: str | None, expected: Action
) -> None:
    assert overrides(*entries).rule_for(tag, vr, creator).action is expected


def test_rule_source_explains_the_decision() -> None:
    plan = overrides(("keyword: SeriesDescription", "keep"))
    assert plan.rule_for(0x0008103E, "LO").source == "profile override (keyword SeriesDescription)"


# --- the option columns on a real data set ------------------------------------------------

ORIGINAL = {
    "StudyDate": "20230410",
    "AcquisitionDateTime": "20230410101500.25+0100",
    "DeviceSerialNumber": "SN-4711",
    "InstitutionName": "Springfield General",
    "PatientWeight": "81",
    "SeriesDescription": "CT CHEST W CONTRAST DOE",
}


def dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.999.1.1"
    ds.StudyInstanceUID = "1.2.826.0.1.999.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.999.1.2"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "P-100"
    ds.Modality = "CT"
    for keyword, value in ORIGINAL.items():
        setattr(ds, keyword, value)
    ds.private_block(0x0019, "ACME 1.1", create=True).add_new(0x10, "DS", "12.5")
    context = Dataset()
    context.ValueType = "CODE"
    context.PersonName = "DOE^JOHN"
    ds.AcquisitionContextSequence = [context]
    ds.add_new(0x60003000, "OW", b"\x01\x00" * 8)
    ds.add_new(0x60000010, "US", 4)
    return ds


def deidentified(plan: ActionPlan) -> Dataset:
    ds = dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    outcome = process_instance(buffer.getvalue(), "src", Worker(plan, KEYS))
    assert outcome.record.status is Status.WRITTEN, outcome.record.reason_detail
    assert outcome.data is not None
    return pydicom.dcmread(io.BytesIO(outcome.data))


@pytest.fixture(scope="module")
def basic_output() -> Dataset:
    return deidentified(BASIC)


@pytest.mark.parametrize(
    ("option", "keyword"),
    [
        ("retain_device_identity", "DeviceSerialNumber"),
        ("retain_institution_identity", "InstitutionName"),
        ("retain_patient_characteristics", "PatientWeight"),
        ("retain_long_full_dates", "StudyDate"),
        ("retain_long_full_dates", "AcquisitionDateTime"),
    ],
)
def test_k_option_keeps_what_basic_does_not(
    option: str, keyword: str, basic_output: Dataset
) -> None:
    assert str(basic_output.get(keyword, "")) != ORIGINAL[keyword]
    assert str(deidentified(with_option(option))[keyword].value) == ORIGINAL[keyword]


def test_retain_uids_keeps_instance_uids(basic_output: Dataset) -> None:
    kept = deidentified(with_option("retain_uids"))
    assert kept.SOPInstanceUID == "1.2.826.0.1.999.1.1"
    assert basic_output.SOPInstanceUID != "1.2.826.0.1.999.1.1"


def test_retain_safe_private_keeps_the_listed_element(basic_output: Dataset) -> None:
    kept = deidentified(with_option("retain_safe_private"))
    assert kept.private_block(0x0019, "ACME 1.1")[0x10].value == "12.5"
    assert 0x00191010 not in basic_output and 0x00190010 not in basic_output


def test_modified_dates_shift_dates_and_datetimes(basic_output: Dataset) -> None:
    shifted = deidentified(with_option("retain_long_modified_dates"))
    assert basic_output.StudyDate == ""
    assert len(shifted.StudyDate) == 8 and shifted.StudyDate != ORIGINAL["StudyDate"]
    assert shifted.AcquisitionDateTime[:8] == shifted.StudyDate
    assert shifted.AcquisitionDateTime[8:] == "101500.25+0100"


def test_clean_descriptors_cleans_instead_of_removing(basic_output: Dataset) -> None:
    cleaned = deidentified(with_option("clean_descriptors"))
    assert "SeriesDescription" not in basic_output
    assert cleaned.SeriesDescription == "CT CHEST W CONTRAST ***"


def test_clean_structured_content_walks_instead_of_emptying(basic_output: Dataset) -> None:
    walked = deidentified(with_option("clean_structured_content"))
    assert len(basic_output.AcquisitionContextSequence) == 0
    [item] = walked.AcquisitionContextSequence
    assert item.ValueType == "CODE"
    assert item.PersonName != "DOE^JOHN"


def test_clean_graphics_keeps_overlays_only_for_the_pixel_step_to_read() -> None:
    """The plan keeps an overlay bitmap under Clean Graphics for the pixel step; with no pixel
    step to read it (this profile has no Clean Pixel Data), the whole plane goes."""
    plan = with_option("clean_graphics")
    assert plan.rule_for(0x60003000, "OW").action is Action.KEEP
    out = deidentified(plan)
    assert [e.tag for e in out if e.tag.group == 0x6000] == []


def test_basic_leaves_no_overlay_plane_without_its_data(basic_output: Dataset) -> None:
    assert [e.tag for e in basic_output if e.tag.group == 0x6000] == []
