"""Bits the header pass cannot clean and the pixel step did not read never pass through.

Under Clean Graphics an overlay bitmap is read by the pixel step when it runs; where it does
not (a slice left out by series sampling, an instance without Pixel Data) the overlay plane
goes. Under Clean Pixel Data, pixel data inside sequence items (thumbnails the pixel step
never reads) goes, and float pixel data (which it cannot read) sends the instance to review.
Curve and audio data, binary, go under Clean Graphics. The planted text is drawn into the
overlay bitmap's bytes and written as bytes into the other values.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from phigate.deid.keys import Keyring
from phigate.pipeline.instance import Outcome, Worker, process_instance
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile
from phigate.record import Status

MARK = b"DOE^JOHN"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
GRAYSCALE_PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


@pytest.fixture(scope="module")
def tcia() -> Worker:
    return Worker(compile_profile(load_profile("tcia")), Keyring(b"g" * 32))


def instance(sop_class: str, modality: str, pixels: bool = True) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.79.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.79", "1.2.826.0.1.3.2"
    ds.Modality, ds.PatientName, ds.PatientID = modality, "DOE^JOHN", "MRN12345"
    if pixels:
        image(ds, bytes(64 * 64))
    return ds


def image(ds: Dataset, pixels: bytes) -> None:
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = pixels


def with_overlay(ds: Dataset) -> None:
    bits = np.zeros((64, 64), dtype=np.uint8)
    bits[10:20, 5:60] = 1
    ds.add_new(0x60000010, "US", 64)
    ds.add_new(0x60000011, "US", 64)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", MARK + np.packbits(bits, bitorder="little").tobytes()[8:])


def run(worker: Worker, ds: FileDataset, scan_pixels: bool = True) -> Outcome:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    outcome = process_instance(buffer.getvalue(), "ref", worker, scan_pixels)
    assert outcome.record.status is Status.WRITTEN, outcome.record.reason_detail
    assert outcome.data is not None
    return outcome


def overlay_elements(outcome: Outcome) -> list[int]:
    assert outcome.data is not None
    back = pydicom.dcmread(io.BytesIO(outcome.data))
    return [int(e.tag) for e in back if e.tag.group == 0x6000]


def test_an_overlay_on_a_slice_left_out_by_sampling_goes(tcia: Worker) -> None:
    ds = instance(MR_IMAGE, "MR")
    with_overlay(ds)
    outcome = run(tcia, ds, scan_pixels=False)
    assert outcome.data is not None and MARK not in outcome.data
    assert overlay_elements(outcome) == []
    assert outcome.record.actions["OverlayData"] == "remove"


def test_an_overlay_on_an_instance_without_pixel_data_goes(tcia: Worker) -> None:
    ds = instance(GRAYSCALE_PRESENTATION_STATE, "PR", pixels=False)
    with_overlay(ds)
    outcome = run(tcia, ds)
    assert outcome.data is not None and MARK not in outcome.data
    assert overlay_elements(outcome) == []


def test_pixel_data_inside_a_sequence_item_goes_and_the_instances_own_stays(
    tcia: Worker,
) -> None:
    ds = instance(MR_IMAGE, "MR")
    source = Dataset()
    source.ReferencedSOPClassUID = MR_IMAGE
    source.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.79.2"
    image(source, MARK * (64 * 64 // len(MARK)))
    ds.SourceImageSequence = Sequence([source])
    outcome = run(tcia, ds, scan_pixels=False)
    assert outcome.data is not None and MARK not in outcome.data
    back = pydicom.dcmread(io.BytesIO(outcome.data))
    assert "PixelData" not in back.SourceImageSequence[0]
    assert back.PixelData == bytes(64 * 64)


def test_float_pixel_data_that_cannot_be_read_goes_to_review(tcia: Worker) -> None:
    ds = instance(PARAMETRIC_MAP, "MR", pixels=False)
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 1, "MONOCHROME2"
    ds.FloatPixelData = np.arange(64, dtype="<f4").tobytes()
    outcome = run(tcia, ds)
    assert "float_pixel_data_not_scanned_for_burned_in_text" in outcome.record.review_reasons
    assert outcome.record.requires_review


def test_curve_and_audio_data_go_under_clean_graphics(tcia: Worker) -> None:
    ds = instance(GRAYSCALE_PRESENTATION_STATE, "PR", pixels=False)
    ds.add_new(0x50000005, "US", 1)  # Curve Dimensions
    ds.add_new(0x50003000, "OB", MARK)  # Curve Data
    ds.add_new(0x5000200C, "OB", b"VOICE " + MARK)  # Audio Sample Data
    outcome = run(tcia, ds)
    assert outcome.data is not None and MARK not in outcome.data
    assert outcome.record.actions["CurveData"] == "remove"
