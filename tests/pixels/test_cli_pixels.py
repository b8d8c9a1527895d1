"""Burned-in PHI through the command a user runs: ``phigate deidentify IN OUT --profile tcia``.

The inputs are labelled images of the validation generator, a CT series with no text (only
its samples are read) and a CT series with a name burned into every slice (a sample finds
it, so every slice is read). The outputs are matched to the inputs by their new SOP Instance
UIDs, made with the installation's own key.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from phigate.cli import app
from phigate.governance.home import load_keyring, resolve_home
from phigate.pixels.rules import Box
from phigate.pixels.validation import SyntheticCase, generate_cases

from .helpers import blanked, burn, changed_share, pixels4d

NAME = "QUIMBY^ZELDA"
SERIES_SLICES = 7  # sampled as first, middle and last: four slices are never read


@dataclass
class Run:
    report: dict[str, Any]
    cases: list[SyntheticCase]
    before: dict[str, NDArray[Any]]  # input SOP Instance UID -> stored pixels
    after: dict[str, Dataset]  # input SOP Instance UID -> written data set
    raw_outputs: bytes
    text_free: list[str]
    with_text: dict[str, Box]


def _ct_slice(series: str, number: int, text: bool) -> tuple[Dataset, Box | None]:
    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = series + ".1", series
    ds.Modality, ds.InstanceNumber, ds.PatientName, ds.PatientID = "CT", number, NAME, "MRN-4471"
    rng = np.random.default_rng(number)
    arr = rng.normal(-800, 40, (256, 256)).astype(np.int16)
    box = burn(arr, "QUIMBY ZELDA", 10, 220, 14, 2500) if text else None
    ds.set_pixel_data(arr, "MONOCHROME2", 16, generate_instance_uid=False)
    return ds, box


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("cli-pixels")
    inputs, out = root / "in", root / "out"
    inputs.mkdir()
    cases = list(generate_cases(("CT", "US", "SC", "MG"), 1, seed=5))
    before: dict[str, NDArray[Any]] = {}
    for case in cases:
        before[case.dataset.SOPInstanceUID] = pixels4d(case.dataset)
        case.dataset.save_as(inputs / f"{random.Random(case.name).random()}.dcm")
    text_free, with_text = [], {}
    for kind, series in (("free", generate_uid()), ("text", generate_uid())):
        for number in range(1, SERIES_SLICES + 1):
            ds, box = _ct_slice(series, number, text=kind == "text")
            before[ds.SOPInstanceUID] = pixels4d(ds)
            ds.save_as(inputs / f"{kind}-{number}.dcm", enforce_file_format=True)
            if box is None:
                text_free.append(ds.SOPInstanceUID)
            else:
                with_text[ds.SOPInstanceUID] = box
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PHIGATE_HOME", str(root / "home"))
        for name in ("PHIGATE_USER", "PHIGATE_PASSWORD", "PHIGATE_TOKEN", "PHIGATE_KEY"):
            env.delenv(name, raising=False)
        runner = CliRunner()
        assert runner.invoke(app, ["init"]).exit_code == 0
        args = ["deidentify", str(inputs), str(out), "--profile", "tcia", "--workers", "2"]
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, result.output
        keys = load_keyring(resolve_home(None), None)
    written = {p.stem: p for p in out.rglob("*.dcm")}
    after = {uid: pydicom.dcmread(written[keys.uid(uid)]) for uid in before}
    raw = b"".join(p.read_bytes() for p in written.values())
    return Run(json.loads(result.stdout), cases, before, after, raw, text_free, with_text)


def test_every_burned_in_phi_label_is_blanked(run: Run) -> None:
    for case in run.cases:
        uid = case.dataset.SOPInstanceUID
        now = pixels4d(run.after[uid])
        for label in (lb for lb in case.labels if lb.phi):
            assert blanked(run.before[uid], now, label.box, label.frame), (case.name, label)


def test_harmless_text_mostly_survives(run: Run) -> None:
    harmless = []
    for case in run.cases:
        uid = case.dataset.SOPInstanceUID
        now = pixels4d(run.after[uid])
        harmless += [
            changed_share(run.before[uid], now, lb.box, lb.frame)
            for lb in case.labels
            if not lb.phi
        ]
    assert harmless and sum(share < 0.1 for share in harmless) >= 0.9 * len(harmless)


def test_a_series_without_text_is_sampled_and_left_as_it_was(run: Run) -> None:
    for uid in run.text_free:
        assert np.array_equal(pixels4d(run.after[uid]), run.before[uid])
    # Only the samples (first, middle, last) were read, so only they may say NO.
    said_no = [run.after[uid].get("BurnedInAnnotation") == "NO" for uid in run.text_free]
    assert said_no == [True, False, False, True, False, False, True]
    assert run.report["pixels"]["instances_skipped_by_sampling"] == SERIES_SLICES - 3


def test_text_in_a_sample_gets_the_whole_series_read_and_cleaned(run: Run) -> None:
    for uid, box in run.with_text.items():
        assert blanked(run.before[uid], pixels4d(run.after[uid]), box), uid
        assert run.after[uid].BurnedInAnnotation == "NO"


def test_the_run_summary_counts_the_pixel_phi(run: Run) -> None:
    pixels = run.report["pixels"]
    phi_labels = sum(lb.phi for c in run.cases for lb in c.labels)
    assert pixels["phi_detected"] >= phi_labels + SERIES_SLICES
    assert pixels["phi_cleared"] + pixels["phi_pending_review"] == pixels["phi_detected"]
    assert {"name", "id", "date"} <= set(pixels["phi_by_kind"])
    assert run.report["counts"]["balanced"]


def test_no_header_identifier_survives(run: Run) -> None:
    values = {NAME, "MRN-4471"} | {
        v for c in run.cases for v in c.identifiers.values() if len(v) > 4
    }
    assert values and not [v for v in values if v.encode() in run.raw_outputs]
