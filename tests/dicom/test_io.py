"""Reading and writing one instance: every file pydicom reads round-trips with its pixel
bytes untouched, and bad input is refused with a stable reason that quotes nothing."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import data_store  # pydicom-data: the larger test files
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from phigate.deid.keys import Keyring
from phigate.dicom.io import (
    DEFLATE_BOMB,
    DICOMDIR,
    MALFORMED,
    MISSING_IDENTITY,
    NOT_DICOM,
    TRUNCATED,
    encode_instance,
    read_instance,
    sniff_dicom,
    write_instance,
)
from phigate.errors import InstanceFiltered, InstanceRejected
from phigate.pipeline.instance import Worker, process_instance
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile
from phigate.record import Status

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
PYDICOM_DATA = Path(data_store.__file__).parent / "data"
SECRET = "ZEBEDEE^QUENTIN"

# Files of pydicom's test set that are not instances: each with the reason phigate gives.
NOT_READABLE = {
    "README.txt": NOT_DICOM,
    "README": NOT_DICOM,
    "crayons.icc": NOT_DICOM,
    "rtplan.dump": NOT_DICOM,
    "rtstruct.dump": NOT_DICOM,
    "test1.json": NOT_DICOM,
    "test_PN.json": NOT_DICOM,
    "zipMR.gz": NOT_DICOM,
    "no_meta.dcm": NOT_DICOM,  # a fragment pydicom reads as one element
    "MR_truncated.dcm": TRUNCATED,
    "rtplan_truncated.dcm": TRUNCATED,
    "emri_small_jpeg_2k_lossless_too_short.dcm": TRUNCATED,
    "UN_sequence.dcm": MISSING_IDENTITY,
    "empty_charset_LEI.dcm": MISSING_IDENTITY,
    "meta_missing_tsyntax.dcm": MISSING_IDENTITY,
    "nested_priv_SQ.dcm": MISSING_IDENTITY,
    "no_meta_group_length.dcm": MISSING_IDENTITY,
    "priv_SQ.dcm": MISSING_IDENTITY,
    "DICOMDIR": DICOMDIR,
    "DICOMDIR-bigEnd": DICOMDIR,
    "DICOMDIR-empty.dcm": DICOMDIR,
    "DICOMDIR-implicit": DICOMDIR,
    "DICOMDIR-nooffset": DICOMDIR,
    "DICOMDIR-nopatient": DICOMDIR,
    "DICOMDIR-reordered": DICOMDIR,
}


def _test_files() -> list[Path]:
    found = [p for folder in (PYDICOM_FILES, PYDICOM_DATA) for p in folder.rglob("*")]
    return sorted(p for p in found if p.is_file() and p.suffix != ".py")


READABLE = [p for p in _test_files() if p.name not in NOT_READABLE]
UNREADABLE = [p for p in _test_files() if p.name in NOT_READABLE]


def _id(path: Path) -> str:
    return str(path.relative_to(path.parents[1]))


def test_the_test_corpus_is_there() -> None:
    assert len(READABLE) > 150
    assert {p.name for p in UNREADABLE} == set(NOT_READABLE)


@pytest.mark.parametrize("path", READABLE, ids=_id)
def test_every_readable_test_file_round_trips(path: Path) -> None:
    original = read_instance(path.read_bytes())
    expected = read_instance(path.read_bytes()).dataset
    again = read_instance(write_instance(original.dataset, original.transfer_syntax))
    assert again.transfer_syntax == original.transfer_syntax
    if "PixelData" in expected:
        assert again.dataset["PixelData"].value == expected["PixelData"].value
    changed = [
        tag
        for tag in {*expected.keys(), *again.dataset.keys()}
        if tag.element != 0 and expected.get(tag) != again.dataset.get(tag)
    ]
    assert changed == []


@pytest.mark.parametrize("path", UNREADABLE, ids=_id)
def test_files_that_are_not_instances_get_their_reason(path: Path) -> None:
    error = rejection(path.read_bytes())
    assert error.code == NOT_READABLE[path.name]
    assert isinstance(error, InstanceFiltered) is (error.code in (NOT_DICOM, DICOMDIR))


@pytest.mark.parametrize(
    ("name", "syntax", "part10"),
    [
        ("MR_small_bigendian.dcm", ExplicitVRBigEndian, True),
        ("MR_small_implicit.dcm", ImplicitVRLittleEndian, True),
        ("image_dfl.dcm", DeflatedExplicitVRLittleEndian, True),
        ("ExplVR_LitEndNoMeta.dcm", ExplicitVRLittleEndian, False),
        ("ExplVR_BigEndNoMeta.dcm", ExplicitVRBigEndian, False),
        ("rtstruct.dcm", ImplicitVRLittleEndian, False),
    ],
)
def test_encodings_are_read_and_kept(name: str, syntax: str, part10: bool) -> None:
    parsed = read_instance((PYDICOM_FILES / name).read_bytes())
    assert (parsed.transfer_syntax, parsed.is_part10) == (syntax, part10)
    reference = pydicom.dcmread(PYDICOM_FILES / name, force=True)
    assert parsed.dataset.SOPInstanceUID == reference.SOPInstanceUID
    assert Dataset(parsed.dataset) == Dataset(reference)


def test_file_meta_without_preamble_is_read() -> None:
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    parsed = read_instance(data[132:])
    assert (
        parsed.dataset.SOPInstanceUID
        == pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm").SOPInstanceUID
    )


@pytest.mark.parametrize(
    "name", ["MR_small_bigendian.dcm", "image_dfl.dcm", "ExplVR_BigEndNoMeta.dcm", "JPEG2000.dcm"]
)
def test_deidentified_output_keeps_the_transfer_syntax(name: str) -> None:
    data = (PYDICOM_FILES / name).read_bytes()
    worker = Worker(compile_profile(load_profile("basic")), Keyring(b"k" * 32))
    outcome = process_instance(data, "ref", worker)
    assert outcome.data is not None, outcome.record.reason_detail
    out, source = read_instance(outcome.data).dataset, read_instance(data).dataset
    assert out.file_meta.TransferSyntaxUID == read_instance(data).transfer_syntax
    assert out.get("PixelData") == source.get("PixelData")


def test_pixel_data_is_not_decoded_on_read() -> None:
    parsed = read_instance((PYDICOM_FILES / "CT_small.dcm").read_bytes())
    assert isinstance(parsed.dataset._dict[0x7FE00010], RawDataElement)


def test_output_has_a_zero_preamble_and_dicm() -> None:
    parsed = read_instance((PYDICOM_FILES / "ExplVR_LitEndNoMeta.dcm").read_bytes())
    parsed.dataset.file_meta = FileMetaDataset()
    parsed.dataset.file_meta.MediaStorageSOPClassUID = parsed.dataset.SOPClassUID
    parsed.dataset.file_meta.MediaStorageSOPInstanceUID = parsed.dataset.SOPInstanceUID
    data = write_instance(parsed.dataset, parsed.transfer_syntax)
    assert data[:132] == b"\0" * 128 + b"DICM"


# --- bad input ----------------------------------------------------------------------------


def planted(syntax: str = ExplicitVRLittleEndian, pixels: bytes = b"\x00\x01" * 512) -> bytes:
    """A small CT instance with a patient name that must never appear in a message."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.826.0.1.999.5.1"
    ds.PatientName = SECRET
    ds.PatientID = "ID-31337"
    ds.Rows, ds.Columns, ds.BitsAllocated = 32, 16, 16
    ds.PixelData = pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    FileDataset("", ds, file_meta=meta, preamble=b"\0" * 128).save_as(
        buffer, enforce_file_format=True
    )
    return buffer.getvalue()


def values_in(data: bytes) -> set[str]:
    """The text values of a file (as far as it parses): none may appear in a message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            found = {str(e.value) for e in ds.iterall() if e.VR not in ("SQ", "OB", "OW", "UN")}
    except Exception:  # a cut file may not parse at all: fall back to the planted values
        found = set()
    return {value for value in found | {SECRET, "31337"} if len(value) >= 4}


def rejection(data: bytes, **limits: int) -> InstanceRejected:
    with pytest.raises(InstanceRejected) as caught:
        read_instance(data, **limits)
    message = str(caught.value)
    assert [value for value in values_in(data) if value in message] == []
    return caught.value


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 7, b"hello, world\n" * 20, b"\x89PNG\r\n\x1a\n" + b"\0" * 300, b"\0" * 131],
    ids=["zero-bytes", "seven-bytes", "text", "png", "preamble-only"],
)
def test_not_dicom_is_filtered(data: bytes) -> None:
    error = rejection(data)
    assert isinstance(error, InstanceFiltered) and error.code == NOT_DICOM
    assert sniff_dicom(data) is False


def _offset_of(data: bytes, marker: bytes) -> int:
    return data.index(marker)


@pytest.mark.parametrize(
    "where",
    [
        "inside-file-meta-value",
        "inside-file-meta-header",
        "inside-a-value",
        "inside-an-element-header",
        "inside-pixel-data",
        "one-byte-short",
    ],
)
def test_truncated_file_is_rejected_as_truncated(where: str) -> None:
    data = planted()
    name_at = _offset_of(data, SECRET.encode())
    cut = {
        "inside-file-meta-value": 150,
        "inside-file-meta-header": 141,
        "inside-a-value": name_at + 3,
        "inside-an-element-header": name_at - 5,
        "inside-pixel-data": len(data) - 300,
        "one-byte-short": len(data) - 1,
    }[where]
    assert rejection(data[:cut]).code == TRUNCATED


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "rtplan.dcm"])
@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.99])
def test_pydicom_files_cut_anywhere_are_truncated(name: str, fraction: float) -> None:
    data = (PYDICOM_FILES / name).read_bytes()
    assert rejection(data[: int(len(data) * fraction)]).code == TRUNCATED


def test_cut_inside_encapsulated_pixel_data_delimiter_is_truncated() -> None:
    data = (PYDICOM_FILES / "JPEG2000.dcm").read_bytes()
    assert rejection(data[:-2]).code == TRUNCATED


def test_fixed_length_vr_with_a_bad_length_is_malformed() -> None:
    data = planted()
    rows = b"\x28\x00\x10\x00US\x02\x00\x20\x00"
    assert data.count(rows) == 1
    bad = data.replace(rows, b"\x28\x00\x10\x00US\x03\x00\x20\x00\x00")
    assert rejection(bad).code == MALFORMED


def test_missing_sop_instance_uid_is_rejected() -> None:
    ds = read_instance(planted()).dataset
    del ds.SOPInstanceUID
    data = write_instance(ds, ExplicitVRLittleEndian)
    assert rejection(data).code == MISSING_IDENTITY


def test_deflated_file_within_the_limit_is_read() -> None:
    data = planted(DeflatedExplicitVRLittleEndian, pixels=b"\0" * 200_000)
    parsed = read_instance(data, max_inflated_bytes=1_000_000)
    assert len(data) < 10_000
    assert parsed.dataset.PatientName == SECRET


def test_deflate_bomb_is_refused_at_the_limit() -> None:
    data = planted(DeflatedExplicitVRLittleEndian, pixels=b"\0" * 2_000_000)
    assert len(data) < 10_000
    error = rejection(data, max_inflated_bytes=100_000)
    assert error.code == DEFLATE_BOMB


@pytest.mark.parametrize(
    ("damage", "code"),
    [("cut", TRUNCATED), ("corrupt", MALFORMED)],
)
def test_damaged_deflate_stream_is_rejected(damage: str, code: str) -> None:
    data = planted(DeflatedExplicitVRLittleEndian)
    meta_end = _offset_of(data, b"1.2.840.10008.1.2.1.99") + 22
    body = data[meta_end:]
    damaged = body[: len(body) // 2] if damage == "cut" else b"\xff" * 8 + body[8:]
    assert rejection(data[:meta_end] + damaged).code == code


def test_deflate_bomb_through_the_pipeline_is_quarantined_without_values() -> None:
    data = planted(DeflatedExplicitVRLittleEndian, pixels=b"\0" * 2_000_000)
    worker = Worker(
        compile_profile(load_profile("basic")), Keyring(b"k" * 32), max_inflated_bytes=100_000
    )
    record = process_instance(data, "ref", worker).record
    assert (record.status, record.reason) == (Status.QUARANTINED, DEFLATE_BOMB)
    assert SECRET not in str(record.to_dict())


def test_dicomdir_is_filtered_not_quarantined() -> None:
    data = (PYDICOM_FILES / "dicomdirtests" / "DICOMDIR").read_bytes()
    worker = Worker(compile_profile(load_profile("basic")), Keyring(b"k" * 32))
    record = process_instance(data, "ref", worker).record
    assert (record.status, record.reason) == (Status.FILTERED, "dicomdir")


# --- writing: raw elements copied, simple values encoded by phigate, the rest by pydicom ---


def _edited(syntax: str, charset: str | None) -> FileDataset:
    """An instance read back from bytes (so its elements are raw), then edited as the
    visitor edits: UIDs replaced, values emptied, names and codes rewritten."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1"
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "ID1"
    ds.StudyDate = "20200101"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows = 2
    ds.StudyDescription = "Head"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        ds.SOPClassUID,
        ds.SOPInstanceUID,
    )
    meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    FileDataset("", ds, file_meta=meta, preamble=b"\0" * 128).save_as(
        buffer, enforce_file_format=True
    )
    edited = read_instance(buffer.getvalue()).dataset
    edited.SOPInstanceUID = "2.25.123"  # odd length: NUL padding
    edited.PatientName = "ABCDE"  # odd length: space padding
    edited.PatientID = ""
    edited.StudyDate = None
    edited.ImageType = ["DERIVED", "SECONDARY", "X"]
    edited.StudyDescription = "Tête"  # not ASCII: pydicom encodes it in the character set
    edited.Rows = 3  # not a string: pydicom encodes it
    return edited


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("charset", [None, "ISO_IR 100", "ISO_IR 192"])
def test_written_bytes_are_pydicoms_for_a_flat_data_set(syntax: str, charset: str | None) -> None:
    """Without sequences (where phigate always writes undefined lengths) the bytes are
    exactly those pydicom writes for the same edited data set."""
    ours = write_instance(_edited(syntax, charset), UID(syntax))
    theirs = io.BytesIO()
    _edited(syntax, charset).save_as(theirs, enforce_file_format=True)
    assert ours == theirs.getvalue()
    again = pydicom.dcmread(io.BytesIO(ours))
    assert str(again.StudyDescription) == "Tête" and again.SOPInstanceUID == "2.25.123"


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("with_meta", [False, True], ids=["bare", "meta-first"])
def test_a_stream_without_preamble_starting_at_any_element_is_dicom(
    implicit: bool, with_meta: bool
) -> None:
    """A minimal data set starts at SOP Class UID (0008,0016); a meta group written without
    preamble may start at Transfer Syntax UID (0002,0010). Neither is "not DICOM"."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, "1.2.826.0.1.3680043.2.9"
    if with_meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        )
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True)
    data = buffer.getvalue()
    assert data[:4] == (b"\x02\x00\x10\x00" if with_meta else b"\x08\x00\x16\x00")
    assert sniff_dicom(data)
    assert str(read_instance(data).dataset.SOPInstanceUID) == "1.2.826.0.1.3680043.2.9"


def test_a_bare_implicit_data_set_may_start_with_an_undefined_length_sequence() -> None:
    item = b"\x08\x00\x00\x01\x02\x00\x00\x00en"  # (0008,0100) CodeValue "en"
    sequence = b"\x08\x00\x06\x00\xff\xff\xff\xff"  # (0008,0006), undefined length
    sequence += b"\xfe\xff\x00\xe0" + len(item).to_bytes(4, "little") + item
    sequence += b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    identity = b"\x08\x00\x16\x00\x1a\x00\x00\x00" + CTImageStorage.encode() + b"\x00"
    identity += b"\x08\x00\x18\x00\x08\x00\x00\x001.2.3.4\x00"
    data = sequence + identity
    assert sniff_dicom(data)
    assert str(read_instance(data).dataset.SOPInstanceUID) == "1.2.3.4"


def test_large_values_are_output_parts_of_their_own_uncopied() -> None:
    parsed = read_instance((PYDICOM_DATA / "SC_rgb_32bit.dcm").read_bytes())
    pixels = parsed.dataset._dict[0x7FE00010].value
    assert len(pixels) >= 1 << 16
    parts = encode_instance(parsed.dataset, parsed.transfer_syntax)
    assert any(part is pixels for part in parts)
    assert b"".join(parts) == write_instance(parsed.dataset, parsed.transfer_syntax)
    written = read_instance(b"".join(parts)).dataset
    assert written.PixelData == pixels
    assert written.SOPInstanceUID == parsed.dataset.SOPInstanceUID
