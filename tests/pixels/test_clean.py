"""clean_pixels on real pydicom test images with text drawn into the stored values, run
through the real OCR engine: PHI gone, harmless text kept, the rest bit-identical."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from phigate.pixels import KnownRegion, OcrEngine, PixelRules, clean_pixels

from .helpers import (
    blanked,
    burn,
    changed_share,
    cleared_boxes,
    pixels4d,
    same_outside,
)

RULES = PixelRules()
IDS = {"PatientName": "DOE^JOHN", "PatientID": "12345678", "StudyDate": "20210304"}


def _ct_with_text() -> tuple[Dataset, dict[str, Any]]:
    """CT 512x512, signed 16-bit, with PHI and harmless text burned in at max value."""
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    arr = ds.pixel_array.copy()
    top = int(arr.max())
    boxes = {
        "name": burn(arr, "DOE^JOHN", 20, 20, 16, top),
        "id": burn(arr, "ID 12345678", 20, 48, 14, top),
        "date": burn(arr, "2021-03-04", 330, 20, 16, top),
        "L": burn(arr, "L", 30, 240, 20, top),
        "scale": burn(arr, "5 cm", 420, 470, 14, top),
    }
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    return ds, boxes


def _roundtrip(ds: Dataset) -> Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_planted_phi_is_removed_and_everything_else_kept(engine: OcrEngine) -> None:
    ds, boxes = _ct_with_text()
    before = pixels4d(ds)
    outcome = clean_pixels(ds, RULES, IDS, engine=engine)
    after = pixels4d(_roundtrip(ds))

    for key in ("name", "id", "date"):
        assert blanked(before, after, boxes[key]), key
    for key in ("L", "scale"):
        assert changed_share(before, after, boxes[key]) == 0.0, key
    assert same_outside(before, after, cleared_boxes(outcome))
    kinds = {(f.kind, f.action) for f in outcome.findings}
    assert {("name", "cleared"), ("id", "cleared"), ("date", "cleared")} <= kinds
    assert ("non_phi", "kept_non_phi") in kinds
    assert outcome.fully_scanned and outcome.modified and not outcome.review_reasons
    assert ds.BurnedInAnnotation == "NO"
    assert "DOE" not in repr(outcome) and "12345678" not in repr(outcome)


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless])
def test_compressed_input_is_reencoded_losslessly(engine: OcrEngine, syntax: str) -> None:
    ds, boxes = _ct_with_text()
    ds.compress(syntax, generate_instance_uid=False)
    before = pixels4d(ds)
    outcome = clean_pixels(ds, RULES, IDS, engine=engine)
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == syntax
    after = pixels4d(out)
    assert blanked(before, after, boxes["name"])
    assert changed_share(before, after, boxes["L"]) == 0.0
    assert same_outside(before, after, cleared_boxes(outcome))
    assert "LossyImageCompression" not in out or out.LossyImageCompression == "00"


def test_lossy_input_is_written_lossless_and_keeps_its_history(engine: OcrEngine) -> None:
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))  # JPEG baseline
    region = KnownRegion(boxes=((10, 10, 40, 20),), rows=100, columns=100)
    rules = PixelRules(known_regions=(region,))
    before = pixels4d(ds)
    outcome = clean_pixels(ds, rules, [], engine=engine)
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_10918_1"
    after = pixels4d(out)
    assert same_outside(before, after, [(10, 10, 40, 20)])
    assert (after[0, 10:30, 10:50] == after[0, 10, 10]).all()
    assert any(f.kind == "other_phi" and f.action == "cleared" for f in outcome.findings)


def test_palette_colour_multiframe(engine: OcrEngine) -> None:
    ds = pydicom.dcmread(get_testdata_file("OBXXXX1A_2frame.dcm"))
    arr = ds.pixel_array.copy()
    colours = apply_color_lut(np.arange(256, dtype=np.uint8), ds).astype(float).sum(axis=1)
    background = colours[int(arr[0, 20, 470])]
    ink = int(np.argmax(np.abs(colours - background)))  # the index that stands out most
    boxes = [burn(arr[f], "SMITH^ANNA 1987-05-06", 470, 20, 16, ink) for f in (0, 1)]
    ds.PixelData = arr.tobytes()
    before = pixels4d(ds)
    outcome = clean_pixels(ds, RULES, {"PatientName": "SMITH^ANNA"}, engine=engine)
    after = pixels4d(_roundtrip(ds))
    for frame, box in enumerate(boxes):
        assert blanked(before, after, box, frame)
    assert same_outside(before, after, cleared_boxes(outcome))
    assert outcome.frames_total == outcome.frames_scanned == 2


def test_monochrome1_is_filled_with_its_black(engine: OcrEngine) -> None:
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    arr = ds.pixel_array.copy()
    arr = (int(arr.max()) + int(arr.min()) - arr.astype(np.int32)).astype(arr.dtype)
    ds.PhotometricInterpretation = "MONOCHROME1"  # inverted: air is high, displays black
    box = burn(arr, "MRN 55512345", 40, 40, 18, int(arr.min()))
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    before = pixels4d(ds)
    outcome = clean_pixels(ds, RULES, [], engine=engine)
    after = pixels4d(ds)
    x, y, w, h = box
    assert (after[0, y : y + h, x : x + w] == before.max()).all()
    assert same_outside(before, after, cleared_boxes(outcome))


def test_rgb_big_endian_multiframe_known_region(engine: OcrEngine) -> None:
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_expb_2frame.dcm"))
    region = KnownRegion(boxes=((0, 0, 30, 10),), first_frame=1)
    before = pixels4d(ds)
    clean_pixels(ds, PixelRules(known_regions=(region,)), [], engine=engine)
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID
    after = pixels4d(out)
    assert np.array_equal(before[0], after[0])  # frame 0 is outside the frame range
    assert (after[1, 0:10, 0:30] == 0).all()
    assert same_outside(before, after, [(0, 0, 30, 10)])


def test_ybr_full_422_native_redaction_keeps_pixel_pairs(engine: OcrEngine) -> None:
    ds = pydicom.dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))
    region = KnownRegion(boxes=((11, 20, 9, 9),))
    before = pixels4d(ds)
    clean_pixels(ds, PixelRules(known_regions=(region,)), [], engine=engine)
    after = pixels4d(_roundtrip(ds))
    assert same_outside(before, after, [(10, 20, 10, 9)])  # widened to whole pixel pairs
    assert (after[0, 20:29, 10:20, 0] == 0).all()


def test_overlays_removed_or_cleaned(engine: OcrEngine) -> None:
    ds = pydicom.dcmread(get_testdata_file("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    clean_pixels(ds, PixelRules(overlays="remove"), [], engine=engine)
    assert not any(0x6000 <= elem.tag.group <= 0x601E for elem in ds)

    ds = pydicom.dcmread(get_testdata_file("MR-SIEMENS-DICOM-WithOverlays.dcm"))
    bits = np.zeros((ds[0x6000, 0x0010].value, ds[0x6000, 0x0011].value), dtype=np.uint8)
    box = burn(bits, "DOE^JOHN", 30, 30, 20, 1)
    from pydicom.pixels.utils import pack_bits

    ds[0x6000, 0x3000].value = pack_bits(bits)
    outcome = clean_pixels(ds, PixelRules(overlays="clean"), IDS, engine=engine)
    x, y, w, h = box
    assert not ds.overlay_array(0x6000)[y : y + h, x : x + w].any()
    assert any(f.kind == "name" and f.action == "cleared" for f in outcome.findings)


def test_unknown_text_is_cleared_and_flagged(engine: OcrEngine) -> None:
    ds, _ = _ct_with_text()
    arr = ds.pixel_array.copy()
    box = burn(arr, "Zqxv Plorb", 300, 470, 18, int(arr.max()))
    ds.PixelData = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    before = pixels4d(ds)
    outcome = clean_pixels(ds, RULES, IDS, engine=engine)
    assert blanked(before, pixels4d(ds), box)
    assert "pixel_text_unclassified" in outcome.review_reasons
    assert ds.get("BurnedInAnnotation") != "NO"


def test_uncompressed_output_for_explicit_choice(engine: OcrEngine) -> None:
    ds, _ = _ct_with_text()
    ds.compress(RLELossless, generate_instance_uid=False)
    clean_pixels(ds, PixelRules(reencode="uncompressed"), IDS, engine=engine)
    out = _roundtrip(ds)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.pixel_array.shape == (512, 512)
