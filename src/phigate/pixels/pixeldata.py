"""Stored pixel values: decode, render for OCR, redact in place, write back losslessly.

Redaction works on the stored values (PS3.3 C.7.6.3 Image Pixel module), never on a
rendered copy: for native (uncompressed) transfer syntaxes the boxes are written straight
into the Pixel Data bytes, so every byte outside them, unused high bits included, stays as
it was. Encapsulated data (PS3.5 section 8.2 and Annex A.4) is decoded, redacted and
re-encoded with a lossless transfer syntax, or written native; no lossy step is ever added
and the Lossy Image Compression history (PS3.3 C.7.6.1.1.5) is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, convert_color_space
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from pydicom.valuerep import VR

from phigate.pixels.engines import RgbImage
from phigate.pixels.rules import Box, PixelRules

# PS3.3 C.7.6.1.1.5.1: the Lossy Image Compression Method defined term per transfer syntax.
LOSSY_METHODS: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.93": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
    "1.2.840.10008.1.2.4.100": "ISO_13818_2",
    "1.2.840.10008.1.2.4.101": "ISO_13818_2",
    "1.2.840.10008.1.2.4.102": "ISO_14496_10",
    "1.2.840.10008.1.2.4.103": "ISO_14496_10",
    "1.2.840.10008.1.2.4.104": "ISO_14496_10",
    "1.2.840.10008.1.2.4.105": "ISO_14496_10",
    "1.2.840.10008.1.2.4.106": "ISO_14496_10",
    "1.2.840.10008.1.2.4.107": "ISO_23008_2",
    "1.2.840.10008.1.2.4.108": "ISO_23008_2",
    "1.2.840.10008.1.2.4.112": "ISO_18181_1",
}

# PS3.5 A.4: MPEG-2/4 and HEVC video; these cannot be redacted frame by frame losslessly.
VIDEO_SYNTAXES = frozenset(
    ("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102",
     "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105",
     "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108")
)  # fmt: skip

REENCODE_TARGETS: dict[str, UID] = {
    "rle": RLELossless,
    "jpeg_ls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
    "uncompressed": ExplicitVRLittleEndian,
}

# Lossless syntaxes pydicom can encode; "same_lossless" keeps these as they came.
ENCODABLE_LOSSLESS = frozenset((RLELossless, JPEGLSLossless, JPEG2000Lossless))

_GRAY = ("MONOCHROME1", "MONOCHROME2")
# Grey-level change on the 8-bit display scale up to which a pixel counts as unchanged:
# above a once-lossy cine's flicker, and well under the faintest stroke the cues look for
# (cues.MIN_STROKE_CONTRAST), so text that appears is always a change.
DISPLAY_TOLERANCE = 10
_YBR = ("YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_422", "YBR_PARTIAL_420")


class PixelDataUnsupported(Exception):
    """Pixel data this engine cannot redact safely; ``code`` becomes a review reason."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(slots=True)
class PixelImage:
    """The decoded frames of one instance and how to put them back.

    ``frames`` is ``(frames, rows, columns)`` or ``(frames, rows, columns, samples)`` in the
    decoded photometric interpretation. ``raw`` is a writable view of native Pixel Data in
    its stored layout (``None`` for encapsulated or 1-bit data).
    """

    frames: NDArray[Any]
    photometric: str
    bits_stored: int
    transfer_syntax: UID
    raw: NDArray[Any] | None = None
    raw_buffer: bytearray | None = None
    raw_layout: str = ""  # "gray", "interleaved", "planar" or "422"
    redacted: bool = field(default=False)

    @property
    def count(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    @property
    def rows(self) -> int:
        return int(self.frames.shape[1])

    @property
    def columns(self) -> int:
        return int(self.frames.shape[2])


def load_pixels(ds: Dataset) -> PixelImage:
    """Decode the Pixel Data of ``ds`` (all frames) without changing the dataset."""
    if "PixelData" not in ds:
        raise PixelDataUnsupported("no_pixel_data")
    ts = _transfer_syntax(ds)
    if ts in VIDEO_SYNTAXES:
        raise PixelDataUnsupported("video_transfer_syntax")
    try:
        arr, meta = get_decoder(ts).as_array(ds, as_rgb=False)  # type: ignore[arg-type]
    except Exception as exc:  # decoders raise many types; the code is enough to act on
        raise PixelDataUnsupported("pixel_data_undecodable") from exc
    samples = int(meta.get("samples_per_pixel", 1))
    frames = arr if arr.ndim == (3 if samples == 1 else 4) else arr[np.newaxis]
    photometric = str(meta.get("photometric_interpretation", ds.PhotometricInterpretation))
    if photometric == "YBR_FULL_422":  # decoders return full-resolution samples
        photometric = "YBR_FULL"
    image = PixelImage(
        frames=np.array(frames, copy=True),
        photometric=photometric,
        bits_stored=int(meta.get("bits_stored", ds.BitsStored)),
        transfer_syntax=ts,
    )
    if not ts.is_compressed and int(ds.BitsAllocated) > 1:
        _attach_raw_view(ds, image)
    return image


def render_frame(
    ds: Dataset, image: PixelImage, index: int, window: tuple[float, float]
) -> RgbImage:
    """An 8-bit RGB picture of one frame as a viewer would show it, for OCR only."""
    frame = image.frames[index]
    if image.photometric == "PALETTE COLOR":
        rgb = apply_color_lut(frame, ds)
        return _to_uint8(rgb, 0.0, 255.0 if rgb.max() <= 255 else 65535.0)
    if image.photometric in _YBR:
        frame = convert_color_space(frame, "YBR_FULL", "RGB")
    if frame.ndim == 3:
        return _to_uint8(frame, 0.0, float(2**image.bits_stored - 1))
    gray = _to_uint8(frame, *window)
    if image.photometric == "MONOCHROME1":
        gray = 255 - gray
    return np.repeat(gray[..., None], 3, axis=2)


def display_window(image: PixelImage) -> tuple[float, float]:
    """Grey-level range mapped to black..white for OCR, the same for every frame.

    8-bit grey data is shown as stored. Deeper data is stretched between the 0.1 and 99.95
    percentiles of a sample of frames, so one hot pixel cannot make text faint while text at
    the top of the range still comes out white.
    """
    if image.frames.ndim != 3 or image.photometric not in _GRAY:
        return (0.0, 255.0)
    if image.frames.dtype == np.uint8 or image.bits_stored == 1:
        return (0.0, 1.0) if image.bits_stored == 1 else (0.0, 255.0)
    picks = sorted({0, image.count // 2, image.count - 1})
    sample = image.frames[picks][:, ::2, ::2]
    low, high = np.percentile(sample, (0.1, 99.95))
    if high <= low:
        low, high = float(sample.min()), float(sample.max()) or 1.0
    return (float(low), float(high))


def change_tolerance(image: PixelImage, window: tuple[float, float]) -> float:
    """How far a stored value may move and still count as unchanged between frames: a
    fixed step of the 8-bit display scale, converted to stored units."""
    if image.frames.ndim == 4 or image.photometric == "PALETTE COLOR":
        full = float(2**image.bits_stored - 1)
        return 0.0 if image.photometric == "PALETTE COLOR" else DISPLAY_TOLERANCE * full / 255.0
    return DISPLAY_TOLERANCE * (window[1] - window[0]) / 255.0


def fill_value(ds: Dataset, image: PixelImage) -> NDArray[Any]:
    """The stored value(s) that display as black: what redacted pixels are set to."""
    dtype = image.frames.dtype
    if image.photometric == "MONOCHROME2":
        return np.array(image.frames.min(), dtype=dtype)
    if image.photometric == "MONOCHROME1":
        return np.array(image.frames.max(), dtype=dtype)
    if image.photometric == "PALETTE COLOR":
        return np.array(_darkest_palette_index(ds, image), dtype=dtype)
    if image.photometric in _YBR:
        mid = 1 << (image.bits_stored - 1)
        return np.array((0, mid, mid), dtype=dtype)
    return np.zeros(image.frames.shape[-1], dtype=dtype)


def align_boxes(image: PixelImage, boxes: Iterable[Box]) -> list[Box]:
    """Boxes clipped to the frame; widened to whole pixel pairs for stored YBR_FULL_422."""
    out = []
    for x, y, w, h in boxes:
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(image.columns, x + w), min(image.rows, y + h)
        if image.raw_layout == "422":
            x0, x1 = x0 - x0 % 2, min(image.columns, x1 + x1 % 2)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1 - x0, y1 - y0))
    return out


def redact(ds: Dataset, image: PixelImage, boxes_by_frame: dict[int, list[Box]]) -> int:
    """Set every pixel inside the boxes to black, in the decoded frames and in the stored
    bytes alike. Returns the number of pixels changed in value."""
    fill = fill_value(ds, image)
    changed = 0
    for index, boxes in boxes_by_frame.items():
        for x, y, w, h in align_boxes(image, boxes):
            region = image.frames[index, y : y + h, x : x + w]
            differs = region != fill
            changed += int(differs.any(axis=-1).sum() if region.ndim == 3 else differs.sum())
            region[...] = fill
            if image.raw is not None:
                _redact_raw(ds, image, index, (x, y, w, h), fill)
    image.redacted = image.redacted or changed > 0
    return changed


def write_back(ds: Dataset, image: PixelImage, rules: PixelRules) -> UID:
    """Store the redacted frames in ``ds``; returns the transfer syntax now in use."""
    if image.raw_buffer is not None:
        ds.PixelData = bytes(image.raw_buffer)
        return image.transfer_syntax
    if not image.transfer_syntax.is_compressed:  # native 1-bit data (PS3.5 8.1.1)
        packed = pack_bits(image.frames)
        ds.PixelData = packed + b"\x00" * (len(packed) % 2)
        return image.transfer_syntax
    _keep_lossy_history(ds, image.transfer_syntax)
    target = choose_target(image.transfer_syntax, rules)
    if target != ExplicitVRLittleEndian and _try_encode(ds, image, target):
        return target
    _write_native(ds, image)
    return ExplicitVRLittleEndian


def choose_target(source: UID, rules: PixelRules) -> UID:
    """The lossless transfer syntax the redacted pixels are written in."""
    if rules.reencode != "same_lossless":
        return REENCODE_TARGETS[rules.reencode]
    if source in ENCODABLE_LOSSLESS:
        return source
    return REENCODE_TARGETS[rules.lossless_fallback]


def _try_encode(ds: Dataset, image: PixelImage, target: UID) -> bool:
    """Encode with ``target``; False when the encoder cannot take this data (then native)."""
    saved = {k: ds[k] for k in ("PhotometricInterpretation", "PlanarConfiguration",
                                "BitsStored", "HighBit") if k in ds}  # fmt: skip
    _set_image_pixel_attributes(ds, image)
    try:
        ds.compress(target, _frames_for_pydicom(image), generate_instance_uid=False)
    except Exception:  # missing plugin or unsupported sample layout: fall back to native
        for keyword, elem in saved.items():
            ds[keyword] = elem
        return False
    return True


def _write_native(ds: Dataset, image: PixelImage) -> None:
    """Explicit VR Little Endian, interleaved samples (PS3.5 A.2, PS3.3 C.7.6.3.1.3)."""
    _set_image_pixel_attributes(ds, image)
    data = image.frames.astype(image.frames.dtype.newbyteorder("<"), copy=False).tobytes()
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            del ds[keyword]
    ds.PixelData = data + b"\x00" * (len(data) % 2)
    elem = ds["PixelData"]
    elem.VR = VR.OB if image.frames.dtype.itemsize == 1 else VR.OW
    elem.is_undefined_length = False
    _file_meta(ds).TransferSyntaxUID = ExplicitVRLittleEndian


def _set_image_pixel_attributes(ds: Dataset, image: PixelImage) -> None:
    ds.PhotometricInterpretation = image.photometric
    ds.BitsStored = image.bits_stored
    ds.HighBit = image.bits_stored - 1
    if image.frames.ndim == 4:
        ds.PlanarConfiguration = 0


def _frames_for_pydicom(image: PixelImage) -> NDArray[Any]:
    return image.frames[0] if image.count == 1 else image.frames


def _keep_lossy_history(ds: Dataset, source: UID) -> None:
    """Once lossy, always lossy (PS3.3 C.7.6.1.1.5): record it before writing losslessly."""
    method = LOSSY_METHODS.get(source)
    if method is None and ds.get("LossyImageCompression") != "01":
        return
    ds.LossyImageCompression = "01"
    if method and "LossyImageCompressionMethod" not in ds:
        ds.LossyImageCompressionMethod = method


def _attach_raw_view(ds: Dataset, image: PixelImage) -> None:
    """A writable view of native Pixel Data in its stored layout (PS3.5 8.1.1, 8.2)."""
    bits = int(ds.BitsAllocated)
    samples = int(ds.get("SamplesPerPixel", 1))
    count, rows, cols = image.count, image.rows, image.columns
    order: Literal["<", ">"] = "<" if _transfer_syntax(ds).is_little_endian else ">"
    dtype = np.dtype(f"u{bits // 8}").newbyteorder(order)
    layout, shape = _raw_layout(ds, samples, count, rows, cols)
    buffer = bytearray(ds.PixelData)
    needed = int(np.prod(shape)) * dtype.itemsize
    if len(buffer) < needed:
        raise PixelDataUnsupported("pixel_data_truncated")
    image.raw = np.frombuffer(buffer, dtype=dtype, count=int(np.prod(shape))).reshape(shape)
    image.raw_buffer = buffer
    image.raw_layout = layout


def _raw_layout(
    ds: Dataset, samples: int, count: int, rows: int, cols: int
) -> tuple[str, tuple[int, ...]]:
    """How native samples are laid out (PS3.3 C.7.6.3.1.3 and C.7.6.3.1.2 for 4:2:2)."""
    if samples == 1:
        return "gray", (count, rows, cols)
    if ds.PhotometricInterpretation == "YBR_FULL_422":
        return "422", (count, rows, cols // 2, 4)  # Y1 Y2 Cb Cr per pixel pair
    if int(ds.get("PlanarConfiguration", 0)) == 1:
        return "planar", (count, samples, rows, cols)
    return "interleaved", (count, rows, cols, samples)


def _redact_raw(ds: Dataset, image: PixelImage, index: int, box: Box, fill: NDArray[Any]) -> None:
    assert image.raw is not None
    x, y, w, h = box
    modulus = 1 << (8 * image.raw.dtype.itemsize)
    raw_fill = np.mod(fill.astype(np.int64), modulus).astype(image.raw.dtype)
    if image.raw_layout == "422":
        pairs = image.raw[index, y : y + h, x // 2 : (x + w) // 2]
        pairs[..., 0:2] = raw_fill[0]
        pairs[..., 2], pairs[..., 3] = raw_fill[1], raw_fill[2]
    elif image.raw_layout == "planar":
        for sample in range(fill.size):
            image.raw[index, sample, y : y + h, x : x + w] = raw_fill[sample]
    else:
        image.raw[index, y : y + h, x : x + w] = raw_fill


def _darkest_palette_index(ds: Dataset, image: PixelImage) -> int:
    """The palette entry closest to black (PS3.3 C.7.6.3.1.5), searched over used values."""
    used = np.unique(image.frames)
    colours = apply_color_lut(used, ds).astype(np.int64).reshape(len(used), 3)
    return int(used[int(np.argmin(colours.sum(axis=1)))])


def _to_uint8(values: NDArray[Any], low: float, high: float) -> NDArray[np.uint8]:
    if values.dtype == np.uint8 and low == 0.0 and high == 255.0:
        return np.asarray(values, dtype=np.uint8)
    scaled = (values.astype(np.float32) - low) * (255.0 / max(high - low, 1e-6))
    return np.asarray(np.clip(scaled, 0, 255), dtype=np.uint8)


def _transfer_syntax(ds: Dataset) -> UID:
    meta = _file_meta(ds)
    return UID(meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))


def _file_meta(ds: Dataset) -> FileMetaDataset:
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    meta: FileMetaDataset = ds.file_meta
    return meta
