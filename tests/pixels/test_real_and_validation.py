"""deid-data's real burned-in ultrasound images, series sampling, and the validation
generator with bounds on sensitivity and specificity."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from phigate.pixels import (
    InstanceRef,
    OcrEngine,
    PixelRules,
    ScanStrategy,
    SeriesScanCache,
    clean_pixels,
)
from phigate.pixels.pixeldata import display_window, load_pixels, render_frame
from phigate.pixels.validation import generate_cases, run_validation

from .helpers import burn, cleared_boxes, pixels4d, same_outside

deid_data = pytest.importorskip("deid_data")
US_DIR = Path(deid_data.__file__).parent / "data" / "ultrasounds"
HEADER_IDS = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "InstitutionName")


def _read_all_text(ds: Dataset, engine: OcrEngine) -> list[str]:
    image = load_pixels(ds)
    frame = render_frame(ds, image, 0, display_window(image))
    return [r.text for r in engine.recognize(frame, [g.box for g in engine.detect(frame)])]


@pytest.mark.parametrize("name", ["GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm"])
def test_real_ultrasound_burned_in_phi_is_removed(engine: OcrEngine, name: str) -> None:
    ds = pydicom.dcmread(US_DIR / name)
    ids = {k: str(ds.get(k, "")) for k in HEADER_IDS}
    before = pixels4d(ds)
    outcome = clean_pixels(ds, PixelRules(), ids, engine=engine)
    after_text = " ".join(_read_all_text(ds, engine)).upper()

    assert {"name", "date"} <= {f.kind for f in outcome.findings if f.action == "cleared"}
    assert not re.search(r"\d{7,}", after_text)  # no MRN-like digit run left
    assert not re.search(r"\d{1,2}/\d{1,2}/\d{4}", after_text)  # no date left
    assert "CLEVELAN" not in after_text and "DOWNTIME" not in after_text
    assert "PATIENTF" not in after_text
    assert re.search(r"\dCM", after_text.replace(" ", ""))  # the depth scale is still there
    assert same_outside(before, pixels4d(ds), cleared_boxes(outcome))


def _blank_ct(number: int, series: str, text: str = "") -> Dataset:
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.SeriesInstanceUID, ds.SOPInstanceUID = "CT", series, generate_uid()
    ds.SOPClassUID, ds.InstanceNumber = "1.2.840.10008.5.1.4.1.1.2", number
    arr = np.full((128, 128), -1000, dtype=np.int16)
    if text:
        burn(arr, text, 4, 4, 14, 3000)
    ds.set_pixel_data(arr, "MONOCHROME2", 16, generate_instance_uid=False)
    return ds


def test_series_sampling_scans_samples_and_escalates_on_text(engine: OcrEngine) -> None:
    series = generate_uid()
    slices = [_blank_ct(n, series, "DOE^JOHN" if n == 4 else "") for n in range(1, 8)]
    cache = SeriesScanCache()
    refs = [InstanceRef.from_dataset(ds) for ds in slices]
    order = cache.plan_series(series, refs, ScanStrategy(mode="sample"))
    by_uid = {ds.SOPInstanceUID: ds for ds in slices}
    assert order[:3] == [
        slices[0].SOPInstanceUID,
        slices[3].SOPInstanceUID,
        slices[6].SOPInstanceUID,
    ]

    rules = PixelRules()
    first = clean_pixels(by_uid[order[0]], rules, ["DOE^JOHN"], cache=cache, engine=engine)
    assert first.fully_scanned and not first.text_found
    skipped = clean_pixels(by_uid[order[3]], rules, ["DOE^JOHN"], cache=cache, engine=engine)
    assert skipped.skipped_by_sampling and not skipped.fully_scanned
    middle = clean_pixels(by_uid[order[1]], rules, ["DOE^JOHN"], cache=cache, engine=engine)
    assert middle.text_found and cache.text_found(series)
    assert cache.instances_to_rescan(series) == (order[3],)
    later = clean_pixels(by_uid[order[4]], rules, ["DOE^JOHN"], cache=cache, engine=engine)
    assert later.fully_scanned and not later.skipped_by_sampling


def test_validation_meets_the_issue_bounds_on_a_small_set(
    engine: OcrEngine, tmp_path: Path
) -> None:
    """Two images per modality (seed 0): 10-25 PHI and 8-20 harmless labels per modality.

    On so few labels one miss drops sensitivity to 90-96 %, so the bounds of the issue
    (>= 99 % and >= 95 % per modality) mean here: no PHI label missed and at most one
    harmless label lost. The engine is deterministic for a given seed, so this is a
    regression check; the statistically meaningful figures are the committed report in
    docs/pixel-validation (40 images per modality).
    """
    report = run_validation(tmp_path, per_modality=2, engine=engine, profile="tcia (test)")
    assert set(report.per_modality) == {"CT", "MR", "US", "MG", "CR", "SC"}
    for score in report.per_modality.values():
        assert score.phi_total >= 10 and score.non_phi_total >= 8
        assert score.sensitivity >= 0.99, score.summary()
        assert score.specificity >= 0.95, score.summary()
    assert {"CT", "MR"} == set(report.text_free)
    assert all(free.changed == 0 for free in report.text_free.values())


def test_validation_report_files_hold_labels_never_text(engine: OcrEngine, tmp_path: Path) -> None:
    report = run_validation(tmp_path, ["CT", "US"], per_modality=1, engine=engine, profile="p 1")
    texts = {
        name: (tmp_path / name).read_text() for name in ("report.json", "report.md", "report.html")
    }
    assert (tmp_path / "report.png").stat().st_size > 0
    data = json.loads(texts["report.json"])
    assert {m["modality"] for m in data["modalities"]} == set(report.per_modality)
    for key in ("phigate", "engine", "rules_version", "profile_label"):
        assert data[key]
    for page in (texts["report.md"], texts["report.html"]):
        assert report.engine in page and report.rules_version in page and "p 1" in page
    drawn = set()
    for case in generate_cases(["CT", "US"], per_modality=1, seed=0):
        for value in case.identifiers.values():
            drawn |= {part for part in re.split(r"[\^ ]", value) if len(part) >= 4}
    for name, text in texts.items():
        assert not [value for value in drawn if value.upper() in text.upper()], name
