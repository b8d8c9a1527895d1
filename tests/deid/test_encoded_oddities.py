"""Inputs whose encoding a sender got wrong, built byte by byte, through ``process_instance``:
file meta and command elements inside the data set, and public attributes sent as UN
(PS3.5 6.2.2), including a sequence whose items are then implicit VR in an explicit file, and
values too large for pydicom to type, and private sequences whose VR an implicit file hides."""

from __future__ import annotations

import io
import struct

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from phigate.deid.keys import Keyring
from phigate.pipeline.instance import Outcome, Worker, process_instance
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile
from phigate.record import Status

_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
ITEM = b"\xfe\xff\x00\xe0"
SEQUENCE_END = b"\xfe\xff\xdd\xe0\0\0\0\0"
UNDEFINED = 0xFFFFFFFF


def explicit(tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    size = len(value) if length is None else length
    if vr in _LONG:
        return struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), size) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), size) + value


def implicit(tag: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def part10(body: bytes, sop_class: bytes = b"1.2.840.10008.5.1.4.1.1.7\0") -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.77"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_file_meta_info(buffer, meta, enforce_standard=True)
    identity = explicit(0x00080016, "UI", sop_class) + explicit(
        0x00080018, "UI", b"1.2.826.0.1.3680043.2.77"
    )
    return b"\0" * 128 + b"DICM" + bytes(buffer.getvalue()) + identity + body


def run(body: bytes) -> Outcome:
    worker = Worker(compile_profile(load_profile("basic")), Keyring(b"e" * 32))
    outcome = process_instance(part10(body), "ref", worker)
    assert outcome.record.status is Status.WRITTEN, outcome.record.reason_detail
    assert outcome.data is not None
    return outcome


def test_file_meta_and_command_elements_inside_the_data_set_are_removed() -> None:
    """Written beside the rebuilt file meta, a reader would take them as the file's own."""
    body = (
        explicit(0x00001030, "AE", b"MOVER_AE")  # Move Originator Application Entity Title
        + explicit(0x00020016, "AE", b"SENDER_AE ")  # Source Application Entity Title
        + explicit(0x00020102, "OB", b"SECRET")  # Private Information
        + explicit(0x00100010, "PN", b"DOE^JOHN")
    )
    outcome = run(body)
    assert outcome.data is not None
    for value in (b"MOVER_AE", b"SENDER_AE", b"SECRET", b"DOE^JOHN"):
        assert value not in outcome.data
    back = pydicom.dcmread(io.BytesIO(outcome.data))
    assert "PrivateInformation" not in back.file_meta
    assert outcome.record.actions["SourceApplicationEntityTitle"] == "remove"


@pytest.mark.parametrize("undefined", [False, True], ids=["defined-length", "undefined-length"])
def test_a_public_sequence_sent_as_un_is_walked(undefined: bool) -> None:
    """CTDIPhantomTypeCodeSequence is not in Table E.1-1 (kept), so only walking its items
    finds the name a sender put there."""
    item = implicit(0x00080104, b"PHANTOM ") + implicit(0x00100010, b"DOE^JOHN")
    items = ITEM + struct.pack("<I", len(item)) + item
    if undefined:
        sequence = explicit(0x00189346, "UN", items + SEQUENCE_END, UNDEFINED)
    else:
        sequence = explicit(0x00189346, "UN", items)
    outcome = run(sequence)
    assert outcome.data is not None and b"DOE^JOHN" not in outcome.data
    back = pydicom.dcmread(io.BytesIO(outcome.data))
    [kept] = back.CTDIPhantomTypeCodeSequence
    assert kept.CodeMeaning == "PHANTOM"


def test_items_read_as_implicit_vr_in_an_explicit_file_are_written() -> None:
    """A referenced-image sequence sent as UN of undefined length: its items come back
    implicit VR, and the kept Referenced Frame Number in them must still be written."""
    item = (
        implicit(0x00081150, b"1.2.840.10008.5.1.4.1.1.2\0")
        + implicit(0x00081155, b"1.2.826.0.1.3680043.2.9\0")
        + implicit(0x00081160, b"1 ")
    )
    body = explicit(0x00081140, "UN", b"", UNDEFINED) + ITEM + struct.pack("<I", len(item))
    body += item + SEQUENCE_END
    outcome = run(body)
    assert outcome.data is not None
    [reference] = pydicom.dcmread(io.BytesIO(outcome.data)).ReferencedImageSequence
    assert reference.ReferencedFrameNumber == 1
    assert reference.ReferencedSOPInstanceUID != "1.2.826.0.1.3680043.2.9"
    assert outcome.record.actions["ReferencedSOPInstanceUID"] == "replace_uid"


def run_with(profile: str, body: bytes) -> Outcome:
    worker = Worker(compile_profile(load_profile(profile)), Keyring(b"e" * 32))
    outcome = process_instance(part10(body), "ref", worker)
    assert outcome.record.status is Status.WRITTEN, outcome.record.reason_detail
    return outcome


def _sequence(tag: int, item: bytes) -> bytes:
    items = ITEM + struct.pack("<I", UNDEFINED) + item + b"\xfe\xff\x0d\xe0\0\0\0\0"
    return explicit(tag, "SQ", items + SEQUENCE_END, UNDEFINED)


@pytest.mark.parametrize(
    ("profile", "body"),
    [
        ("basic", explicit(0x0040A160, "LO", b"ZQX Hospital ZQXSUR ")),  # TextValue as LO
        (
            "basic",
            _sequence(0x0040A730, explicit(0x0040A160, "OB", b"ZQX Hospital ZQXSUR ")),
        ),  # ...as OB, inside Content Sequence
        ("tcia", explicit(0x00080020, "TM", b"19391107")),  # StudyDate as TM: not shifted
        ("basic", explicit(0x00082218, "OB", b"ZQXNAME^ZQXSUR")),  # a sequence as OB
        ("tcia", explicit(0x60004000, "OB", b"ZQXNAME^ZQXSUR")),  # OverlayDescription
        ("hipaa-safe-harbor", explicit(0x00101010, "LO", b"104Y")),  # PatientAge as LO
    ],
    ids=["text-as-LO", "text-as-OB-in-content", "date-as-TM", "sequence-as-OB",
         "overlay-text-as-OB", "age-as-LO"],
)  # fmt: skip
def test_a_public_attribute_written_with_a_wrong_vr_does_not_pass(
    profile: str, body: bytes
) -> None:
    outcome = run_with(profile, body)
    assert outcome.data is not None
    for value in (b"ZQXSUR", b"ZQXNAME", b"19391107", b"104Y"):
        assert value not in outcome.data


def test_a_senders_uid_under_the_dicom_root_is_replaced_and_well_known_ones_kept() -> None:
    outcome = run_with(
        "basic",
        explicit(0x0020000D, "UI", b"1.2.840.10008.19391107.9")
        + _sequence(0x00081140, explicit(0x00081150, "UI", b"1.2.840.10008.5.1.4.1.1.2\0")),
    )
    assert outcome.data is not None and b"19391107" not in outcome.data
    assert "19391107" not in str(outcome.record)
    assert b"1.2.840.10008.5.1.4.1.1.2" in outcome.data  # CT Image Storage, well known


@pytest.mark.parametrize(
    "body",
    [
        explicit(0x00081190, "UR", b"https://pacs/wado?PatientID=ZQX-MRN-991"),  # RetrieveURL
        _sequence(0x04000500, explicit(0x04000520, "OB", b"ZQXNAME^ZQXSUR")),  # Encrypted...
        explicit(0x00686300, "OB", b"IN;LB ZQXNAME ZQXSUR\x03;"),  # HPGL Document, a label
    ],
    ids=["retrieve-url", "encrypted-attributes", "hpgl-document"],
)
def test_attributes_outside_the_table_that_carry_identifiers_are_removed(body: bytes) -> None:
    outcome = run_with("basic", body)
    assert outcome.data is not None
    assert b"ZQX" not in outcome.data


def test_text_in_the_sop_class_or_modality_does_not_reach_the_record() -> None:
    worker = Worker(compile_profile(load_profile("basic")), Keyring(b"e" * 32))
    data = part10(explicit(0x00080060, "CS", b"ZQXSUR"), sop_class=b"ZQXNAME^ZQXSUR.1.2")
    record = process_instance(data, "ref", worker).record
    assert record.status is Status.WRITTEN
    assert "ZQX" not in str(record)


def test_a_birth_date_without_a_date_to_tell_the_age_by_goes_under_hipaa() -> None:
    outcome = run_with("hipaa-safe-harbor", explicit(0x00100030, "DA", b"19190101"))
    assert outcome.data is not None and b"1919" not in outcome.data


def test_a_public_attribute_left_as_un_by_its_size_is_removed() -> None:
    """pydicom types a UN value by its dictionary VR only below 64 KiB: a larger TextValue
    or sequence stays UN, so it cannot be cleaned or walked and must not be kept."""
    text = (b"Seen by Dr DOE^JOHN, MRN 12345. " * 2200)[:70000]
    item = implicit(0x00100010, b"DOE^JOHN") + implicit(0x00081030, b"X" * 70000)
    items = ITEM + struct.pack("<I", len(item)) + item
    outcome = run(explicit(0x00081115, "UN", items) + explicit(0x0040A160, "UN", text))
    assert outcome.data is not None and b"DOE^JOHN" not in outcome.data
    assert outcome.record.actions["TextValue"] == "remove"
    assert outcome.record.actions["ReferencedSeriesSequence"] == "remove"


@pytest.mark.parametrize("undefined", [False, True], ids=["defined-length", "undefined-length"])
def test_a_safe_private_sequence_in_an_implicit_file_never_keeps_a_name(undefined: bool) -> None:
    """tcia keeps (0019,xx0C) of SIEMENS MR HEADER as safe. In implicit VR a private element
    has no VR: of defined length its items are opaque bytes, so it goes; of undefined length
    pydicom reads it as a sequence, and it is kept and walked."""
    item = pydicom.Dataset()
    item.PatientName = "DOE^JOHN"
    item.ImageComments = "PHANTOM"
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.78"
    ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    ds.add_new(0x0019100C, "SQ", pydicom.Sequence([item]))
    ds[0x0019100C].is_undefined_length = undefined
    ds[0x0019100C].value.is_undefined_length = undefined
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True, implicit_vr=True, little_endian=True)
    worker = Worker(compile_profile(load_profile("tcia")), Keyring(b"e" * 32))
    outcome = process_instance(buffer.getvalue(), "ref", worker)
    assert outcome.data is not None, outcome.record.reason_detail
    assert b"DOE^JOHN" not in outcome.data
    assert (b"PHANTOM" in outcome.data) is undefined


def test_text_in_a_safe_private_field_is_cleaned_and_numbers_kept() -> None:
    """tcia's safe list names numeric fields (b values, directions). A sender that writes a
    name into one as text gets it cleaned; the numbers stay as they were."""
    patient = explicit(0x00100010, "PN", b"ZQXSUR^ZQXNAME")
    block = explicit(0x00430010, "LO", b"GEMS_PARM_01")
    slop = explicit(0x00431039, "LO", b"ZQXNAME ZQXSUR")  # the field misused for text
    b_value = explicit(0x00190010, "LO", b"SIEMENS MR HEADER ") + explicit(
        0x0019100C, "IS", b"1000"
    )
    outcome = run_with("tcia", patient + b_value + block + slop)
    assert outcome.data is not None and b"ZQX" not in outcome.data
    back = pydicom.dcmread(io.BytesIO(outcome.data))
    assert back[0x0019100C].value == 1000


@pytest.mark.parametrize("vr", ["UN", "OB"])
def test_a_safe_private_field_sent_as_bytes_that_spell_words_is_removed(vr: str) -> None:
    """Sent as UN or OB, a safe numeric field's value is opaque bytes: kept when they can be
    a number (printable or not), removed when they are printable text with words in it."""
    patient = explicit(0x00100010, "PN", b"ZQXSUR^ZQXNAME")
    siemens = explicit(0x00190010, "LO", b"SIEMENS MR HEADER ")
    gems = explicit(0x00430010, "LO", b"GEMS_PARM_01")
    words = explicit(0x00431039, vr, b"ZQXNAME ZQXSUR")  # on tcia's safe list
    number = explicit(0x0019100C, vr, b"1.5E-3")  # on tcia's safe list: a b value
    outcome = run_with("tcia", patient + siemens + number + gems + words)
    assert outcome.data is not None and b"ZQX" not in outcome.data
    assert b"1.5E-3" in outcome.data


def test_a_number_string_holding_words_is_removed_and_numbers_kept() -> None:
    """InstanceNumber (IS) and SliceThickness (DS) are kept by every profile; a sender that
    writes words there has written free text, which goes."""
    body = (
        explicit(0x00180050, "DS", b"ZQX SMITH ")  # Slice Thickness
        + explicit(0x00200013, "IS", b"ZQXNAME ")  # Instance Number
        + explicit(0x00200032, "DS", b"-12.5\\1e2\\+3 ")  # Image Position (Patient)
    )
    outcome = run(body)
    assert outcome.data is not None and b"ZQX" not in outcome.data
    back = pydicom.dcmread(io.BytesIO(outcome.data))
    assert "SliceThickness" not in back and "InstanceNumber" not in back
    assert [float(v) for v in back.ImagePositionPatient] == [-12.5, 100.0, 3.0]
