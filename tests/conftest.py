"""Shared fixtures: a phigate installation in a temporary PHIGATE_HOME, the PHI-planted
sample set (built once per session) and cached runs of the real ``phigate`` command.

Planted values are synthetic, but tests treat them as PHI all the same: assertions compare
counts, categories and booleans, so a failing test never prints a planted value.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from phigate.deid.keys import Keyring
from phigate.governance.home import load_keyring, resolve_home
from phigate.pipeline.runner import RunRequest
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile
from phigate.samples import SampleManifest, make_sample_set

TIMED_OUT = -999  # return code reported for a run killed at its timeout
PROFILES = ("basic", "tcia", "hipaa-safe-harbor", "gdpr", "clinical-trial")
# A few of pydicom-data's files (enhanced MR, US with JPEG 2000 and RLE, Siemens private
# tags and overlays, JPEG lossless, UN VRs) and one of deid-data's CT heads.
PYDICOM_DATA_FILES = (
    "emri_small.dcm",
    "emri_small_big_endian.dcm",
    "US1_J2KI.dcm",
    "OBXXXX1A_rle.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "explicit_VR-UN.dcm",
)
DEID_DATA_FILES = ("humans/ctbrain1.dcm",)


def phigate_executable() -> str:
    """The installed ``phigate`` console script of the running interpreter."""
    sibling = Path(sys.executable).with_name("phigate")
    if sibling.exists():
        return str(sibling)
    found = shutil.which("phigate")
    assert found, "the phigate command is not installed (pip install -e '.[test]')"
    return found


@dataclass(frozen=True)
class Installation:
    """One PHIGATE_HOME made by ``phigate init``; runs the real command against it."""

    home: Path

    @property
    def keys(self) -> Keyring:
        return load_keyring(resolve_home(self.home))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHIGATE_")}
        env["PHIGATE_HOME"] = str(self.home)
        env["COLUMNS"] = "200"
        return env

    def run(
        self, *args: str | Path, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``phigate ARGS`` (with extra ``env``) and capture its output; never raises.

        A run that outlives ``timeout`` seconds is killed with its whole process group (its
        worker pool included) and reported with return code ``TIMED_OUT``.
        """
        command = [phigate_executable(), *map(str, args)]
        with subprocess.Popen(
            command,
            env=self.env() | dict(env or {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                stdout, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                stdout, stderr = process.communicate()
                return subprocess.CompletedProcess(command, TIMED_OUT, stdout, stderr)
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@dataclass(frozen=True)
class Deidentified:
    """One ``phigate deidentify --json`` run and where it wrote."""

    profile: str
    input_dir: Path
    output_dir: Path
    result: subprocess.CompletedProcess[str]
    summary: dict[str, Any]
    report_file: Path

    def outputs(self) -> list[Path]:
        """Every file under the output folder, sorted."""
        return sorted(p for p in self.output_dir.rglob("*") if p.is_file())


def deidentify(
    installation: Installation,
    input_dir: Path,
    output_dir: Path,
    profile: str,
    *extra: str | Path,
    timeout: float = 300,
) -> Deidentified:
    """Run the real ``phigate deidentify`` and parse its JSON summary."""
    arguments = ("deidentify", input_dir, output_dir, "--profile", profile, "--json", *extra)
    result = installation.run(*arguments, timeout=timeout)
    if result.returncode == TIMED_OUT:
        pytest.fail(f"phigate deidentify did not finish within {timeout:.0f} s (killed)")
    code = result.returncode  # never assert on the result itself: its output may hold PHI
    assert code == 0, f"phigate deidentify exited {code}"
    summary = json.loads(result.stdout)
    report = installation.home / "reports" / summary["run_id"] / "report.json"
    return Deidentified(profile, input_dir, output_dir, result, summary, report)


@pytest.fixture(scope="session")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """A fresh PHIGATE_HOME with a new secret, made by ``phigate init``."""
    made = Installation(tmp_path_factory.mktemp("phigate-home") / "home")
    result = made.run("init")
    code = result.returncode
    assert code == 0, "phigate init failed"
    return made


def _extra_sources() -> list[Path]:
    import data_store
    import deid_data

    pydicom_data = Path(data_store.__file__).parent / "data"
    deid = Path(deid_data.__file__).parent / "data"
    found = [pydicom_data / name for name in PYDICOM_DATA_FILES]
    found += [deid / name for name in DEID_DATA_FILES]
    missing = [p.name for p in found if not p.is_file()]
    assert not missing, f"test data files missing: {missing}"
    return found


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory: pytest.TempPathFactory) -> SampleManifest:
    """The planted sample set: pydicom's bundled files plus a few pydicom-data/deid-data
    files, three patients. Its manifest (PHI) sits next to the folder, not inside it."""
    folder = tmp_path_factory.mktemp("planted") / "in"
    return make_sample_set(folder, sources=_extra_sources(), patients=3, seed=0)


@pytest.fixture(scope="session")
def subject_map(sample_set: SampleManifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clinical-trial subject map for every planted patient (it holds patient IDs: PHI)."""
    path = tmp_path_factory.mktemp("subjects") / "subjects.csv"
    columns = ["patient_id", "subject_id", "sponsor_name", "protocol_id", "protocol_name",
               "site_id", "site_name"]  # fmt: skip
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index, patient_id in enumerate(sample_set.patient_ids):
            writer.writerow([patient_id, subject_id(index), "ACME ONCOLOGY", "PROTO-7",
                             "Lung screening trial", "SITE-01", "Site one"])  # fmt: skip
    return path


def subject_id(index: int) -> str:
    """The trial subject ID the subject map gives planted patient ``index``."""
    return f"SUBJ-{index + 1:03d}"


RunFactory = Callable[..., Deidentified]


@pytest.fixture(scope="session")
def planted_run(
    installation: Installation,
    sample_set: SampleManifest,
    subject_map: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> RunFactory:
    """``planted_run(profile, workers=2, label="")``: the planted set de-identified once per
    (profile, workers, label) in the session, then shared by every test that asks."""
    cache: dict[tuple[str, int, str], Deidentified] = {}

    def get(profile: str, workers: int = 2, label: str = "") -> Deidentified:
        key = (profile, workers, label)
        if key not in cache:
            output = tmp_path_factory.mktemp("out") / f"{profile}-w{workers}{label}"
            extra: list[str | Path] = ["--workers", str(workers)]
            if profile == "clinical-trial":
                extra += ["--subject-map", subject_map]
            cache[key] = deidentify(installation, Path(sample_set.folder), output, profile, *extra)
        return cache[key]

    return get


BROKER = "broker-one"
BROKER_PASSWORD = "correct horse battery staple 1"


@pytest.fixture(scope="session")
def broker_env(installation: Installation) -> dict[str, str]:
    """Environment for running as an honest broker (a user added by the local admin)."""
    result = installation.run(
        "user", "add", BROKER, "--role", "honest_broker", "--password", BROKER_PASSWORD
    )
    code = result.returncode
    assert code == 0, "phigate user add failed"
    return {"PHIGATE_USER": BROKER, "PHIGATE_PASSWORD": BROKER_PASSWORD}


@pytest.fixture(scope="session")
def profile_versions(installation: Installation) -> dict[str, str]:
    """Profile name -> version hash, from ``phigate profile list --json``."""
    result = installation.run("profile", "list", "--json")
    code = result.returncode
    assert code == 0, "phigate profile list failed"
    return {row["name"]: row["version"] for row in json.loads(result.stdout)}


FolderRequest = Callable[..., RunRequest]


@pytest.fixture
def folder_request(tmp_path: Path) -> FolderRequest:
    """Makes the run request for a folder: a built-in profile, a test key, output and
    quarantine under ``tmp_path``."""

    def make(inputs: Path, profile: str, key: bytes, workers: int = 1) -> RunRequest:
        return RunRequest(
            input_dir=inputs,
            output_dir=tmp_path / "out",
            quarantine_dir=tmp_path / "quarantine",
            plan=compile_profile(load_profile(profile)),
            keys=Keyring(key),
            workers=workers,
        )

    return make
