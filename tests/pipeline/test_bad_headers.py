"""A header value that cannot be read stops neither the batch nor reaches the terminal.

The series-sampling pre-pass reads every header in the parent process before the workers
start; a value there that is not what its VR says (an InstanceNumber holding a name) must
leave that file to the main pass, which reports it, and must not end the run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from phigate import cli
from phigate.pipeline.runner import RunRequest, run


def ct_slice(folder: Path, number: int, instance_number: bytes) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.2.80.{number}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.80", "1.2.826.0.1.4.1"
    ds.Modality, ds.PatientName = "CT", "ZQXSUR^ZQXNAME"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(16 * 16 * 2)
    ds.add_new(0x00200013, "IS", "1")
    ds[0x00200013] = pydicom.dataelem.RawDataElement(
        pydicom.tag.Tag(0x00200013), "IS", len(instance_number), instance_number, 0, False, True
    )
    ds.save_as(folder / f"slice-{number}.dcm", enforce_file_format=True)


def test_an_unreadable_instance_number_leaves_the_batch_whole(
    tmp_path: Path, folder_request: Callable[..., RunRequest]
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for number, value in enumerate((b"1 ", b"ZQX SMITH ", b"3 ")):
        ct_slice(inputs, number, value)
    summary = run(folder_request(inputs, "tcia", b"h" * 32))
    assert summary.inputs == 3 and summary.balanced
    assert summary.written == 3
    written = b"".join(p.read_bytes() for p in (tmp_path / "out").rglob("*.dcm"))
    assert b"ZQX" not in written


def test_an_unexpected_error_prints_one_line_without_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise ValueError("invalid literal for int(): 'ZQX SMITH'")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["phigate: error: internal error (ValueError); please report it"]
