"""Read and write one DICOM instance from and to bytes (PS3.10 files and bare data sets).

pydicom is lenient on purpose: it reads a truncated file without complaint and inflates a
deflated data set without bound. A de-identification gate must not be, so this module adds
the checks that turn such input into an :class:`~phigate.errors.InstanceRejected` with a
stable reason code. Pixel data is never decoded here.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from dataclasses import dataclass

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset, validate_file_meta
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO, DicomIO
from pydicom.filereader import _read_file_meta_info, read_dataset
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian
from pydicom.valuerep import PersonName

from phigate.errors import InstanceFiltered, InstanceRejected

DEFAULT_MAX_INFLATED_BYTES = 1 << 30
_PREAMBLE_LENGTH = 128
_MAGIC = b"DICM"
_UNDEFINED_LENGTH = 0xFFFFFFFF
_TRUNCATION_WARNING = "End of file reached before delimiter"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0, little endian
_PIXEL_DATA = 0x7FE00010
_LONGEST_ELEMENT_HEADER = 12  # explicit VR OB/OW/SQ/UN/UT...: tag 4 + VR 2 + reserved 2 + length 4
_DEFLATED_UID_BYTES = DeflatedExplicitVRLittleEndian.encode("ascii")
# Little-endian element headers (PS3.5 7.1.2, 7.1.3) and item markers (PS3.5 7.5).
_IMPLICIT_HEADER = struct.Struct("<HHI")
_EXPLICIT_SHORT_HEADER = struct.Struct("<HH2sH")
_EXPLICIT_LONG_HEADER = struct.Struct("<HH2s2xI")
_LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
# String VRs whose ASCII values are written as they are (PS3.5 6.2).
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
    | {"UR", "UT"}
)
_ITEM_START = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"  # (FFFE,E000), undefined length
_META_MIRRORS = (
    ("MediaStorageSOPClassUID", "SOPClassUID"),
    ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
)
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"  # (FFFE,E00D), length 0
_META_SEARCH_BYTES = 4096
# A value this long is written as a part of its own (see encode_instance).
_OWN_PART_BYTES = 1 << 16
_META_GROUP_LENGTH = BaseTag(0x00020000)
_GROUP_LENGTH_ELEMENT = 12
_KNOWN_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT"}
    | {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST"}
    | {b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}
)
# Byte size of one value of each fixed-length binary VR (PS3.5 Table 6.2-1).
_FIXED_VR_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "UV": 8, "SV": 8}

# Reason codes, stable for reports and dashboards.
NOT_DICOM = "not_dicom"
TRUNCATED = "truncated"
MALFORMED = "malformed"
DEFLATE_BOMB = "deflate_bomb"
MISSING_IDENTITY = "missing_sop_identity"
DICOMDIR = "dicomdir"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def _configure_pydicom() -> None:
    """The pydicom settings phigate relies on, for the whole process.

    pydicom's validation warnings and log lines quote element values (PHI) verbatim.
    phigate validates what it writes itself, so both are switched off, and pydicom's logger
    is disabled: nothing from a file may reach a log or a terminal. And a public attribute
    sent as UN is read with its dictionary VR, which the header visitor relies on.
    """
    pydicom.config.replace_un_with_known_vr = True
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").disabled = True
    warnings.filterwarnings("ignore", module=r"pydicom(\..*)?")


_configure_pydicom()


@dataclass(slots=True)
class ParsedInstance:
    """A data set read from bytes, with how it was encoded so it can be written back alike."""

    dataset: FileDataset
    transfer_syntax: UID
    is_part10: bool


def sniff_dicom(data: bytes) -> bool:
    """True if ``data`` looks like a PS3.10 file or a bare data set (no preamble)."""
    if (
        len(data) >= _PREAMBLE_LENGTH + 4
        and data[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4] == _MAGIC
    ):
        return True
    if len(data) < 8:
        return False
    # Bare data sets and meta-only starts begin with an element of group 0002 or 0008 (any
    # element: a minimal data set may start at SOP Class UID, a bare meta at its Transfer
    # Syntax UID), followed by an explicit VR or an implicit length that fits in the data.
    little = data[0:2] in (b"\x02\x00", b"\x08\x00")
    if not little and data[0:2] != b"\x00\x08":
        return False
    if data[4:6] in _KNOWN_VRS:
        return True
    length = int.from_bytes(data[4:8], "little" if little else "big")
    return length < len(data) or length == _UNDEFINED_LENGTH


def read_instance(
    data: bytes, max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
) -> ParsedInstance:
    """Parse ``data`` into a data set, or raise :class:`InstanceRejected` saying why not."""
    if not sniff_dicom(data):
        raise InstanceFiltered(NOT_DICOM, "not a DICOM file (no DICM prefix and no data set start)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parsed = _parse(data, max_inflated_bytes)
    except InstanceRejected:
        raise
    except Exception as exc:  # pydicom raises many types on malformed input
        raise _parse_failure(data, exc) from None
    if any(_TRUNCATION_WARNING in str(warning.message) for warning in caught):
        raise InstanceRejected(TRUNCATED, "the file ends before an undefined-length value closes")
    _refuse_media_directory(parsed.dataset)
    _check_structure(parsed.dataset, data, parsed.transfer_syntax)
    _align_encoding(parsed)
    return parsed


def _parse_failure(data: bytes, exc: Exception) -> InstanceRejected:
    """Name the failure: data that ran out is truncation, anything else is malformed."""
    name = type(exc).__name__
    if isinstance(exc, InvalidDicomError | EOFError) or len(data) < _meta_end(data):
        return InstanceRejected(TRUNCATED, f"the file ends inside its header ({name})")
    return InstanceRejected(MALFORMED, f"the file cannot be parsed ({name})")


def _refuse_media_directory(dataset: FileDataset) -> None:
    """A DICOMDIR (PS3.10 8) indexes files and names patients; it is not an instance."""
    if str(dataset.file_meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
        raise InstanceFiltered(DICOMDIR, "a DICOMDIR media directory, not an instance")


def _align_encoding(parsed: ParsedInstance) -> None:
    """Some writers declare explicit VR in the meta but encode implicit VR; pydicom keeps the
    elements raw without a VR and then cannot write them explicitly, so convert them now."""
    if parsed.transfer_syntax.is_implicit_VR:
        return
    raw_elements = parsed.dataset._dict.values()
    if any(isinstance(element, RawDataElement) and not element.VR for element in raw_elements):
        parsed.dataset.walk(lambda _dataset, _element: None)


def _parse(data: bytes, max_inflated_bytes: int) -> ParsedInstance:
    has_magic = data[_PREAMBLE_LENGTH : _PREAMBLE_LENGTH + 4] == _MAGIC
    if _may_be_deflated(data):
        stream = io.BytesIO(data)
        stream.seek(_PREAMBLE_LENGTH + 4 if has_magic else 0)
        meta = _read_file_meta_info(stream)
        if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
            return _parse_deflated(data[stream.tell() :], meta, max_inflated_bytes)
    file_dataset = pydicom.dcmread(io.BytesIO(data), force=not has_magic)
    syntax = UID(file_dataset.file_meta.get("TransferSyntaxUID", ""))
    if not syntax:
        syntax = _guess_bare_syntax(file_dataset)
    return ParsedInstance(file_dataset, syntax, has_magic)


def _may_be_deflated(data: bytes) -> bool:
    """Cheap pre-check: only a file naming the deflated syntax in its file meta can be one."""
    return _DEFLATED_UID_BYTES in data[: _meta_end(data)]


def _meta_end(data: bytes) -> int:
    """Where the file meta group ends, from its group length (PS3.10 7.1), or a safe bound."""
    start = _PREAMBLE_LENGTH + 4
    if data[start : start + 6] == b"\x02\x00\x00\x00UL":
        return start + 12 + int.from_bytes(data[start + 8 : start + 12], "little")
    return _META_SEARCH_BYTES if data[:2] != b"\x02\x00" else len(data)


def _parse_deflated(body: bytes, meta: FileMetaDataset, max_inflated_bytes: int) -> ParsedInstance:
    """pydicom would inflate without bound; inflate here with a limit, then parse."""
    inflated = _inflate(body, max_inflated_bytes)
    dataset = read_dataset(io.BytesIO(inflated), is_implicit_VR=False, is_little_endian=True)
    file_dataset = FileDataset("", dataset, preamble=b"\0" * 128, file_meta=meta)
    file_dataset.set_original_encoding(False, True, dataset._character_set)
    return ParsedInstance(file_dataset, DeflatedExplicitVRLittleEndian, True)


def _guess_bare_syntax(dataset: FileDataset) -> UID:
    """A bare data set carries no transfer syntax: take the encoding pydicom detected."""
    implicit, little = dataset.original_encoding
    if implicit:
        return UID("1.2.840.10008.1.2")
    return ExplicitVRLittleEndian if little else UID("1.2.840.10008.1.2.2")


def _inflate(deflated: bytes, limit: int) -> bytes:
    """Inflate a Deflated Explicit VR Little Endian body (PS3.5 A.5), refusing bombs."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(deflated, limit + 1)
    except zlib.error:
        raise InstanceRejected(MALFORMED, "the deflated data set is corrupt") from None
    if len(body) > limit:
        raise InstanceRejected(
            DEFLATE_BOMB, f"the deflated data set inflates beyond the limit of {limit} bytes"
        )
    if not inflater.eof:
        raise InstanceRejected(TRUNCATED, "the deflated data set ends before its end marker")
    return body


def _check_structure(dataset: FileDataset, data: bytes, syntax: UID) -> None:
    """Find what pydicom forgives: a value cut short, a bad fixed-length VR, no identity."""
    if len(dataset) == 0:
        raise InstanceRejected(TRUNCATED, "the file holds file meta information but no data set")
    deflated = syntax == DeflatedExplicitVRLittleEndian
    for element in dataset._dict.values():
        if isinstance(element, RawDataElement):
            _check_raw_element(element, len(data), deflated)
    if not deflated:
        _check_file_end(dataset, data)
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if not str(dataset.get(keyword, "")).strip("\0 "):
            raise InstanceRejected(MISSING_IDENTITY, f"the data set has no {keyword}")


def _check_file_end(dataset: FileDataset, data: bytes) -> None:
    """The last element must end where the file ends.

    pydicom silently drops an element header cut short at the end of a file, and reads an
    encapsulated Pixel Data whose final delimiter is cut off without a warning.
    """
    last = max(dataset._dict.values(), key=lambda e: getattr(e, "value_tell", -1))
    if not isinstance(last, RawDataElement):
        return
    if last.length == _UNDEFINED_LENGTH:
        if last.tag == _PIXEL_DATA and not data.endswith(_SEQUENCE_DELIMITER):
            raise InstanceRejected(TRUNCATED, "the encapsulated PixelData has no end delimiter")
        return
    trailing = len(data) - (last.value_tell + last.length)
    if 0 < trailing < _LONGEST_ELEMENT_HEADER:
        raise InstanceRejected(TRUNCATED, "the file ends inside an element header")


def _check_raw_element(element: RawDataElement, size: int, deflated: bool) -> None:
    length = element.length
    if length == _UNDEFINED_LENGTH:
        return
    value = element.value or b""
    if len(value) < length or (not deflated and element.value_tell + length > size):
        raise InstanceRejected(TRUNCATED, f"the value of {_keyword(element)} is cut short")
    fixed = _FIXED_VR_SIZES.get(element.VR or "")
    if fixed and length % fixed:
        message = f"{_keyword(element)} has a length that does not fit its VR"
        raise InstanceRejected(MALFORMED, message)


def _keyword(element: RawDataElement) -> str:
    return pydicom.datadict.keyword_for_tag(element.tag) or "a private or unknown element"


def write_instance(dataset: FileDataset, transfer_syntax: UID) -> bytes:
    """Serialise as a PS3.10 file in ``transfer_syntax`` (see :func:`encode_instance`)."""
    return b"".join(encode_instance(dataset, transfer_syntax))


def encode_instance(dataset: FileDataset, transfer_syntax: UID) -> tuple[bytes, ...]:
    """Serialise as a PS3.10 file in ``transfer_syntax`` with a zero preamble (it may hold PHI).

    When the data set is written in the encoding it was read in (the usual case: the
    transfer syntax is kept), elements still raw are copied as read, header and value, and
    sequences are written with undefined lengths (PS3.5 7.5.2); pydicom encodes only what
    changed. Anything else (a new encoding or character set, big endian, deflate) is left
    to pydicom whole.

    The file comes as consecutive parts: values of :data:`_OWN_PART_BYTES` or more (Pixel
    Data, mostly) are parts of their own, the very objects read, so writing the file copies
    them once instead of twice or three times.
    """
    dataset.preamble = b"\0" * _PREAMBLE_LENGTH
    dataset.file_meta.TransferSyntaxUID = transfer_syntax
    encoding = (transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian)
    if not _copyable_encoding(dataset, transfer_syntax, encoding):
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        return (buffer.getvalue(),)
    meta = dataset.file_meta
    for meta_keyword, keyword in _META_MIRRORS:
        if keyword in dataset and meta.get(meta_keyword) != dataset[keyword].value:
            setattr(meta, meta_keyword, dataset[keyword].value)
    parts = _Parts()
    fp = DicomIO(parts)
    fp.is_implicit_VR, fp.is_little_endian = encoding
    fp.write(dataset.preamble + _MAGIC)
    _write_file_meta(fp, dataset.file_meta)
    if _PIXEL_DATA in dataset._dict and not dataset._dict[BaseTag(_PIXEL_DATA)].is_raw:
        dataset[_PIXEL_DATA].is_undefined_length = transfer_syntax.is_compressed
    _write_dataset(fp, dataset, default_encoding)
    return parts.done()


class _Parts:
    """A write-only stream that gathers small writes in one buffer and keeps each large
    ``bytes`` value as a part of its own, uncopied. It can seek only where it already is."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._small = io.BytesIO()
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        size = memoryview(data).nbytes
        if size >= _OWN_PART_BYTES and isinstance(data, bytes):
            self._flush()
            self._parts.append(data)
        else:
            self._small.write(data)
        self._size += size
        return size

    def tell(self) -> int:
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) not in ((self._size, io.SEEK_SET), (0, io.SEEK_CUR), (0, io.SEEK_END)):
            raise io.UnsupportedOperation("an encoded instance is written front to back")
        return self._size

    def done(self) -> tuple[bytes, ...]:
        self._flush()
        return tuple(self._parts)

    def _flush(self) -> None:
        if self._small.tell():
            self._parts.append(self._small.getvalue())
            self._small = io.BytesIO()


def _write_file_meta(fp: DicomIO, meta: FileMetaDataset) -> None:
    """The File Meta Information group (PS3.10 7.1) as pydicom's ``write_file_meta_info``
    writes it with ``enforce_standard``, its elements encoded by :func:`_write_dataset`."""
    validate_file_meta(meta, enforce_standard=True)
    buffer = DicomBytesIO()
    buffer.is_implicit_VR, buffer.is_little_endian = False, True
    meta.FileMetaInformationGroupLength = 0
    _write_dataset(buffer, meta, default_encoding)
    # The group length counts the bytes after its own 12-byte element (explicit VR UL).
    meta.FileMetaInformationGroupLength = buffer.tell() - _GROUP_LENGTH_ELEMENT
    buffer.seek(0)
    write_data_element(buffer, meta[_META_GROUP_LENGTH])
    fp.write(buffer.getvalue())


def _copyable_encoding(dataset: Dataset, syntax: UID, encoding: tuple[bool, bool]) -> bool:
    return (
        syntax != DeflatedExplicitVRLittleEndian
        and encoding[1]
        and tuple(dataset.original_encoding) == encoding
        and dataset.original_character_set == dataset._character_set
    )


def _write_dataset(fp: DicomIO, dataset: Dataset, parent_encoding: str | list[str]) -> None:
    """The elements of ``dataset`` in tag order (PS3.5 7.1), without group lengths."""
    elements = dataset._dict
    encodings = dataset.get("SpecificCharacterSet", parent_encoding)
    implicit = fp.is_implicit_VR
    for tag in sorted(elements):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group length (PS3.5 7.2)
        element: DataElement | RawDataElement = elements[tag]
        if isinstance(element, RawDataElement):
            if _copy_raw(fp, element, implicit):
                continue
            # Deferred values, undefined lengths, and elements of items read as implicit VR
            # inside an explicit-VR file (a sequence sent as UN): pydicom decodes them.
            element = dataset[tag]
        if isinstance(element, DataElement):
            if element.VR == "SQ":
                _write_sequence(fp, element, encodings)
                continue
            if _write_simple(fp, element, implicit):
                continue
        write_data_element(fp, element, encodings)


def _copy_raw(fp: DicomIO, element: RawDataElement, implicit: bool) -> bool:
    """Copy a raw element's value as read, under a new header; False when pydicom must write
    it (undefined length, unknown VR, deferred value)."""
    value = element.value
    if element.is_buffered or not isinstance(value, bytes) or len(value) != element.length:
        return False
    return _write_element(fp, int(element.tag), element.VR, value, implicit)


def _write_simple(fp: DicomIO, element: DataElement, implicit: bool) -> bool:
    """Write an empty element or an ASCII string value (the same bytes in every character
    set DICOM allows, PS3.5 6.1.2.5.3), padded to even length (PS3.5 6.2); False for pydicom
    to encode anything else."""
    value, vr = element.value, element.VR
    if value is None or value == "" or (isinstance(value, list | MultiValue) and not value):
        data = b""
    elif vr not in _STRING_VRS:
        return False
    else:
        text = _joined_text(value)
        if text is None or not text.isascii():
            return False
        data = text.encode("ascii")
        if len(data) % 2:
            data += b"\0" if vr == "UI" else b" "
    return _write_element(fp, int(element.tag), vr, data, implicit)


def _joined_text(value: object) -> str | None:
    if isinstance(value, str | PersonName):
        return str(value)
    if isinstance(value, MultiValue | list) and all(isinstance(v, str) for v in value):
        return "\\".join(value)
    return None


def _write_element(fp: DicomIO, tag: int, vr: str | None, data: bytes, implicit: bool) -> bool:
    """Write tag, VR, length and value (PS3.5 7.1.2, 7.1.3); False when the VR is unknown or
    the value too long for its VR's 16-bit length."""
    group, number, length = tag >> 16, tag & 0xFFFF, len(data)
    if implicit:
        fp.write(_IMPLICIT_HEADER.pack(group, number, length))
    elif not vr or vr.encode() not in _KNOWN_VRS:
        return False
    elif vr in _LONG_LENGTH_VRS:
        fp.write(_EXPLICIT_LONG_HEADER.pack(group, number, vr.encode(), length))
    elif length <= 0xFFFF:
        fp.write(_EXPLICIT_SHORT_HEADER.pack(group, number, vr.encode(), length))
    else:
        return False
    fp.write(data)
    return True


def _write_sequence(fp: DicomIO, element: DataElement, encodings: str | list[str]) -> None:
    """A sequence and its items, all of undefined length with delimiters (PS3.5 7.5.2)."""
    tag = int(element.tag)
    if fp.is_implicit_VR:
        fp.write(_IMPLICIT_HEADER.pack(tag >> 16, tag & 0xFFFF, _UNDEFINED_LENGTH))
    else:
        fp.write(_EXPLICIT_LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, b"SQ", _UNDEFINED_LENGTH))
    for item in element.value:
        fp.write(_ITEM_START)
        _write_dataset(fp, item, encodings)
        fp.write(_ITEM_END)
    fp.write(_SEQUENCE_DELIMITER)
