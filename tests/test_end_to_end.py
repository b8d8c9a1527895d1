"""End to end: the real ``phigate`` command on the PHI-planted sample set.

Every built-in profile de-identifies the planted set (pydicom's test files, a few of
pydicom-data's and one of deid-data's) and the tests check that no planted value leaves by
any door (output bytes, output names, stdout, stderr, reports, vault), that the counts add
up, that research-critical attributes and pixel data survive unchanged, that UIDs and
cross-references map consistently across files, runs and worker counts, that dates keep
their intervals (or are reduced to the year under HIPAA) and that bad input is counted
with a reason without stopping the batch. Assertions never quote a planted value.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, generate_uid
from tests.conftest import (
    PROFILES,
    Deidentified,
    Installation,
    RunFactory,
    deidentify,
    subject_id,
)

from phigate.deid.keys import Keyring
from phigate.samples import (
    DATE_KEYWORDS,
    SAFE_PRIVATE_CREATOR,
    SAFE_PRIVATE_ELEMENT,
    SAFE_PRIVATE_GROUP,
    SAFE_PRIVATE_VALUE,
    SampleInstance,
    SampleManifest,
    canonical,
    find_in_text,
    find_planted,
    make_sample_set,
    research_values,
    searchable_bytes,
)

pytestmark = pytest.mark.slow

SHIFTING = ("tcia", "gdpr")
AGE_KEEPING = ("tcia", "hipaa-safe-harbor", "gdpr")
BASIC_PROFILE_CODE = "113100"
# Redacted pixels written back losslessly in another transfer syntax may change colour space.
RECODING_MAY_CHANGE = frozenset({"PhotometricInterpretation"})
NEW_UID = re.compile(r"^2\.25\.\d{1,39}$")
OVER_89 = 0  # the planted patient born in 1923
# Implicit, explicit, big endian, deflated, RLE, JPEG baseline, JPEG-LS, JPEG 2000 (two).
SYNTAX_SUFFIXES = ("", ".1", ".2", ".1.99", ".5", ".4.50", ".4.80", ".4.90", ".4.91")


# Helpers


@cache
def _read(path: Path) -> FileDataset:
    return pydicom.dcmread(path)


def output_datasets(run: Deidentified) -> dict[str, tuple[Path, FileDataset]]:
    """Output SOP Instance UID -> (path, data set), for every output of a run."""
    found: dict[str, tuple[Path, FileDataset]] = {}
    for path in run.outputs():
        ds = _read(path)
        found[str(ds.SOPInstanceUID)] = (path, ds)
    return found


def matched(
    run: Deidentified, sample_set: SampleManifest, keys: Keyring
) -> Iterator[tuple[SampleInstance, FileDataset]]:
    """Each planted instance with its output (found by the keyed replacement of its UID)."""
    outputs = output_datasets(run)
    for instance in sample_set.instances:
        found = outputs.get(keys.uid(instance.sop_uid))
        assert found is not None, f"no output for a planted {instance.source}"
        yield instance, found[1]


def input_dataset(sample_set: SampleManifest, instance: SampleInstance) -> FileDataset:
    return pydicom.dcmread(Path(sample_set.folder) / instance.file, force=True)


def to_date(value: str) -> dt.date:
    return dt.datetime.strptime(value[:8], "%Y%m%d").date()


def all_values(ds: Dataset, vr: str) -> Iterator[str]:
    """Every non-empty value of the given VR anywhere in ``ds`` (multi-values split)."""
    for element in ds.iterall():
        if vr != element.VR or element.value is None:
            continue
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        yield from (text for text in (str(v).strip("\0 ") for v in values) if text)


def files_by_relpath(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_error_line(stderr: str) -> bool:
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("phigate: error:")


# The sample set itself (controls: the search must find what was planted)


def test_sample_set_has_phi_everywhere_it_should(sample_set: SampleManifest) -> None:
    folder = Path(sample_set.folder)
    hits = find_planted(folder, sample_set.planted)
    categories = Counter(category for _, category in hits)
    files = len(sample_set.instances)
    part10 = sum(1 for i in sample_set.instances if i.transfer_syntax)
    expected = ["names", "ids", "accession", "dates", "addresses", "phone", "email", "ssn",
                "institution", "physicians", "private", "nested"]  # fmt: skip
    assert {c: categories[c] for c in expected} == dict.fromkeys(expected, files)
    assert categories["file_meta"] == part10 and categories["preamble"] == part10
    assert categories["path:names"] == files + len(sample_set.patients)  # files and folders
    assert not sample_set.skipped, "some source files could not be planted"
    assert not Path(sample_set.manifest_path).is_relative_to(folder), "manifest inside the set"


def test_sample_set_is_varied(sample_set: SampleManifest) -> None:
    syntaxes = {i.transfer_syntax for i in sample_set.instances}
    wanted = {None} | {f"1.2.840.10008.1.2{suffix}" for suffix in SYNTAX_SUFFIXES}
    assert wanted <= syntaxes
    modalities = {i.research.get("Modality") for i in sample_set.instances}
    assert {"CT", "MR", "US", "OT", "SR", "RTPLAN", "RTDOSE", "SEG", "ECG"} <= modalities
    assert any(int(i.research.get("NumberOfFrames", "1") or 1) > 1 for i in sample_set.instances)


def test_sample_set_is_deterministic(tmp_path: Path) -> None:
    first = make_sample_set(tmp_path / "a", patients=2, seed=5)
    second = make_sample_set(tmp_path / "b", patients=2, seed=5)
    same_files = files_by_relpath(tmp_path / "a") == files_by_relpath(tmp_path / "b")
    assert same_files, "two sample sets made with one seed differ"
    unplaced = {"folder": "", "manifest_path": ""}
    same_manifest = first.to_dict() | unplaced == second.to_dict() | unplaced
    assert same_manifest, "two manifests made with one seed differ"
    assert Path(first.manifest_path).is_file() and Path(first.manifest_path).parent == tmp_path


# Every profile: nothing leaks, counts add up, research data survives


@pytest.mark.parametrize("profile", PROFILES)
def test_no_planted_value_in_outputs(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest
) -> None:
    run = planted_run(profile)
    assert find_planted(run.output_dir, sample_set.planted) == []


@pytest.mark.parametrize("profile", PROFILES)
def test_no_planted_value_in_console_reports_or_vault(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    run = planted_run(profile)
    planted = sample_set.planted
    assert run.report_file.is_file()
    leaked = {
        "stdout": find_in_text(run.result.stdout, planted),
        "stderr": find_in_text(run.result.stderr, planted),
        "report": find_in_text(run.report_file.read_bytes(), planted),
    }
    assert leaked == {"stdout": [], "stderr": [], "report": []}
    # Everything in PHIGATE_HOME but the quarantine (the raw zone, PHI by design): reports,
    # the encrypted vault, the control-plane database and its audit trail.
    for part in sorted(installation.home.iterdir()):
        if part.name == "quarantine":
            continue
        found = (
            find_planted(part, planted)
            if part.is_dir()
            else find_in_text(part.read_bytes(), planted)
        )
        assert found == [], part.name
    names = [Path(i.file).name for i in sample_set.instances]
    report = run.report_file.read_text() + run.result.stdout + run.result.stderr
    printed = sum(name in report for name in names)
    assert printed == 0, "an input file name was printed"


@pytest.mark.parametrize("profile", PROFILES)
def test_counts_add_up(profile: str, planted_run: RunFactory, sample_set: SampleManifest) -> None:
    run = planted_run(profile)
    counts = run.summary["counts"]
    inputs = len(sample_set.instances)
    assert counts["inputs"] == inputs
    assert counts["written"] + counts["filtered"] + counts["quarantined"] == inputs
    assert counts["balanced"] is True
    assert counts["written"] == inputs, (run.summary["quarantine_reasons"], counts)
    assert len(run.outputs()) == counts["written"]
    assert json.loads(run.report_file.read_text())["counts"] == counts


@pytest.mark.parametrize("profile", PROFILES)
def test_research_attributes_survive(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    changed: Counter[str] = Counter()
    for instance, ds in matched(planted_run(profile), sample_set, installation.keys):
        now = research_values(ds)
        recoded = pixels_changed(ds, instance) and _syntax(ds) != instance.transfer_syntax
        for keyword, value in instance.research.items():
            if now.get(keyword) != value and not (recoded and keyword in RECODING_MAY_CHANGE):
                changed[keyword] += 1
    assert changed == Counter()


@pytest.mark.parametrize("profile", PROFILES)
def test_pixel_data_changes_only_where_the_pixel_step_says(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    """Pixel data passes through unless the profile cleans pixels and the pixel step
    reports redacting them (``pixels_redacted``) or handing them to review."""
    run = planted_run(profile)
    changed = sum(pixels_changed(ds, i) for i, ds in matched(run, sample_set, installation.keys))
    actions = run.summary["actions"].get("PixelData", {})
    reported = actions.get("pixels_redacted", 0) + actions.get("pixels_need_review", 0)
    assert changed <= reported
    if profile == "basic":
        assert changed == 0


def pixels_changed(ds: Dataset, instance: SampleInstance) -> bool:
    if instance.pixel_sha256 is None:
        return False
    pixels = ds.get("PixelData")
    return not isinstance(pixels, bytes) or _sha(pixels) != instance.pixel_sha256


def _syntax(ds: FileDataset) -> str | None:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    return str(syntax) if syntax else None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("profile", PROFILES)
def test_safe_private_attribute_follows_profile(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    kept = []
    for instance, ds in matched(planted_run(profile), sample_set, installation.keys):
        if instance.safe_private:
            kept.append(_safe_private_value(ds) == SAFE_PRIVATE_VALUE)
    assert kept, "no planted instance carries the safe private attribute"
    assert kept == [profile == "tcia"] * len(kept)


def _safe_private_value(ds: Dataset) -> str | None:
    try:
        block = ds.private_block(SAFE_PRIVATE_GROUP, SAFE_PRIVATE_CREATOR)
        return canonical(block[SAFE_PRIVATE_ELEMENT].value)
    except KeyError:
        return None


@pytest.mark.parametrize("profile", PROFILES)
def test_outputs_say_how_they_were_deidentified(
    profile: str, planted_run: RunFactory, profile_versions: dict[str, str]
) -> None:
    run = planted_run(profile)
    version = profile_versions[profile]
    assert run.summary["profile"] == {"name": profile, "version": version}
    problems: Counter[str] = Counter()
    for _path, ds in output_datasets(run).values():
        problems["PatientIdentityRemoved"] += ds.get("PatientIdentityRemoved") != "YES"
        problems["DeidentificationMethod"] += version not in str(ds.get("DeidentificationMethod"))
        codes = [str(item.CodeValue) for item in ds.get("DeidentificationMethodCodeSequence", [])]
        problems["DeidentificationMethodCodeSequence"] += BASIC_PROFILE_CODE not in codes
        meta = ds.file_meta
        problems["MediaStorageSOPInstanceUID"] += (
            meta.MediaStorageSOPInstanceUID != ds.SOPInstanceUID
        )
        problems["MediaStorageSOPClassUID"] += meta.MediaStorageSOPClassUID != ds.SOPClassUID
        problems["preamble"] += ds.preamble != b"\0" * 128
    assert +problems == Counter()


@pytest.mark.parametrize("profile", PROFILES)
def test_output_paths_come_from_new_uids(profile: str, planted_run: RunFactory) -> None:
    run = planted_run(profile)
    wrong = 0
    for path, ds in output_datasets(run).values():
        parts = path.relative_to(run.output_dir).parts
        expected = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), f"{ds.SOPInstanceUID}.dcm")
        wrong += parts != expected or not all(NEW_UID.match(p) for p in expected[:2])
    assert wrong == 0
    leftovers = [p for p in run.output_dir.rglob("*") if p.is_dir() and p.name.startswith(".")]
    assert leftovers == []


# UIDs


@pytest.mark.parametrize("profile", PROFILES)
def test_uids_map_consistently(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    keys = installation.keys
    wrong: Counter[str] = Counter()
    for instance, ds in matched(planted_run(profile), sample_set, keys):
        wrong["study"] += str(ds.StudyInstanceUID) != keys.uid(instance.study_uid)
        wrong["series"] += str(ds.SeriesInstanceUID) != keys.uid(instance.series_uid)
        wrong["class"] += str(ds.SOPClassUID) != instance.sop_class_uid
        frame = instance.frame_of_reference_uid
        if frame is not None:
            wrong["frame"] += str(ds.get("FrameOfReferenceUID")) != keys.uid(frame)
    assert +wrong == Counter()


@pytest.mark.parametrize("profile", PROFILES)
def test_patient_study_and_frame_uids_shared(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    studies: dict[int, set[str]] = defaultdict(set)
    frames: dict[int, set[str]] = defaultdict(set)
    for instance, ds in matched(planted_run(profile), sample_set, installation.keys):
        studies[instance.patient].add(str(ds.StudyInstanceUID))
        if "FrameOfReferenceUID" in ds:
            frames[instance.patient].add(str(ds.FrameOfReferenceUID))
    patients = len(sample_set.patients)
    assert [len(studies[p]) for p in range(patients)] == [1] * patients
    assert [len(frames[p]) for p in range(patients)] == [1] * patients
    assert len(set().union(*studies.values())) == patients


@pytest.mark.parametrize("profile", PROFILES)
def test_cross_references_resolve_to_the_right_instance(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    run = planted_run(profile)
    outputs = output_datasets(run)
    by_sop = {i.sop_uid: i for i in sample_set.instances}
    checked, wrong = 0, 0
    for instance, ds in matched(run, sample_set, installation.keys):
        if not instance.references:
            continue
        pointers = [
            ds.SourceImageSequence[0].ReferencedSOPInstanceUID,
            ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID,
        ]
        for pointer, original in zip(pointers, instance.references, strict=True):
            target = outputs.get(str(pointer))
            target_ok = (
                str(pointer) == installation.keys.uid(original)
                and target is not None
                and _same_instance(target[1], by_sop[original])
            )
            wrong += not target_ok
            checked += 1
    assert checked >= len(sample_set.instances)
    assert wrong == 0


def _same_instance(ds: FileDataset, instance: SampleInstance) -> bool:
    """The referenced output is the referenced input: same class and research data."""
    now = research_values(ds)
    wanted = {k: v for k, v in instance.research.items() if k not in RECODING_MAY_CHANGE}
    return str(ds.SOPClassUID) == instance.sop_class_uid and all(
        now.get(k) == v for k, v in wanted.items()
    )


@pytest.mark.parametrize("profile", PROFILES)
def test_no_original_uid_survives(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest
) -> None:
    originals = {u.encode() for i in sample_set.instances for u in i.uids if len(u) >= 10}
    count, instances = len(originals), len(sample_set.instances)
    assert count > instances
    survivors = 0
    for path in planted_run(profile).outputs():
        content = searchable_bytes(path.read_bytes())
        survivors += sum(uid in content for uid in originals)
    assert survivors == 0
    bad = 0
    for _path, ds in output_datasets(planted_run(profile)).values():
        bad += sum(
            not (u.startswith("1.2.840.10008.") or NEW_UID.match(u)) for u in all_values(ds, "UI")
        )
    assert bad == 0


def test_uids_same_under_every_profile(planted_run: RunFactory) -> None:
    sops = {p: set(output_datasets(planted_run(p))) for p in PROFILES}
    assert all(found == sops["tcia"] for found in sops.values())


# Runs repeat exactly


def test_second_run_is_byte_identical(planted_run: RunFactory) -> None:
    first = files_by_relpath(planted_run("tcia").output_dir)
    second = files_by_relpath(planted_run("tcia", label="-again").output_dir)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_one_and_two_workers_give_identical_output(planted_run: RunFactory) -> None:
    two = files_by_relpath(planted_run("tcia", workers=2).output_dir)
    one = files_by_relpath(planted_run("tcia", workers=1).output_dir)
    assert sorted(one) == sorted(two)
    assert [name for name in one if one[name] != two[name]] == []


# Dates and ages


@pytest.mark.parametrize("profile", SHIFTING)
def test_shifted_dates_keep_their_intervals(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    offsets: dict[int, set[int]] = defaultdict(set)
    for instance, ds in matched(planted_run(profile), sample_set, installation.keys):
        for keyword in DATE_KEYWORDS:
            shifted = str(ds.get(keyword, ""))
            assert shifted, f"{keyword} missing after shifting"
            offsets[instance.patient].add(
                (to_date(shifted) - to_date(instance.dates[keyword])).days
            )
        moved = to_date(str(ds.AcquisitionDateTime)) - to_date(instance.dates["AcquisitionDate"])
        offsets[instance.patient].add(moved.days)
    assert [len(days) for days in offsets.values()] == [1] * len(sample_set.patients)
    assert all(-3650 <= next(iter(days)) <= -365 for days in offsets.values())


def test_hipaa_reduces_every_date_to_the_year(
    planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    wrong: Counter[str] = Counter()
    for instance, ds in matched(planted_run("hipaa-safe-harbor"), sample_set, installation.keys):
        for keyword in DATE_KEYWORDS:
            wrong[keyword] += str(ds.get(keyword, "")) != instance.dates[keyword][:4] + "0101"
        wrong["other DA"] += sum(not re.fullmatch(r"\d{4}0101", v) for v in all_values(ds, "DA"))
        wrong["other DT"] += sum(not re.fullmatch(r"\d{4}", v) for v in all_values(ds, "DT"))
    assert +wrong == Counter()


def test_hipaa_aggregates_old_birth_dates(
    planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    wrong = 0
    for instance, ds in matched(planted_run("hipaa-safe-harbor"), sample_set, installation.keys):
        birth = sample_set.birth_dates[instance.patient]
        study_year = int(instance.dates["StudyDate"][:4])
        year = study_year - 90 if instance.patient == OVER_89 else int(birth[:4])
        wrong += str(ds.get("PatientBirthDate", "")) != f"{year}0101"
    assert wrong == 0


@pytest.mark.parametrize("profile", AGE_KEEPING)
def test_ages_over_89_aggregated(
    profile: str, planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    wrong = 0
    for instance, ds in matched(planted_run(profile), sample_set, installation.keys):
        planted_age = str(input_dataset(sample_set, instance).PatientAge)
        expected = "090Y" if instance.patient == OVER_89 else planted_age
        wrong += str(ds.get("PatientAge", "")) != expected
    assert wrong == 0


# Profile specifics


def test_clinical_trial_attributes_come_from_the_subject_map(
    planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    wrong: Counter[str] = Counter()
    for instance, ds in matched(planted_run("clinical-trial"), sample_set, installation.keys):
        subject = subject_id(instance.patient)
        wrong["PatientID"] += str(ds.PatientID) != subject
        wrong["ClinicalTrialSubjectID"] += str(ds.get("ClinicalTrialSubjectID")) != subject
        wrong["ClinicalTrialSponsorName"] += ds.get("ClinicalTrialSponsorName") != "ACME ONCOLOGY"
        wrong["ClinicalTrialProtocolID"] += ds.get("ClinicalTrialProtocolID") != "PROTO-7"
        wrong["ClinicalTrialSiteID"] += ds.get("ClinicalTrialSiteID") != "SITE-01"
    assert +wrong == Counter()


def test_pseudonyms_are_consistent_per_patient(
    planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    ids: dict[int, set[str]] = defaultdict(set)
    for instance, ds in matched(planted_run("tcia"), sample_set, installation.keys):
        ids[instance.patient].add(str(ds.PatientID))
    assert [len(v) for v in ids.values()] == [1] * len(sample_set.patients)
    assert len(set().union(*ids.values())) == len(sample_set.patients)


def test_reidentify_returns_the_original_patient_id(
    planted_run: RunFactory,
    sample_set: SampleManifest,
    installation: Installation,
    broker_env: dict[str, str],
) -> None:
    instance, ds = next(matched(planted_run("tcia"), sample_set, installation.keys))
    pseudonym = str(ds.PatientID)
    result = installation.run(
        "reidentify", pseudonym, "--reason", "IRB-2024-017", "--json", env=broker_env
    )
    code = result.returncode
    assert code == 0, "reidentify failed"
    entries = json.loads(result.stdout)
    originals = [e["original"] for e in entries if e["kind"] == "PatientID"]
    found = len(originals)
    assert found == 1
    restored = originals[0] == instance.patient_id
    assert restored, "reidentify did not give back the planted PatientID"


def test_reidentify_needs_an_honest_broker(
    planted_run: RunFactory, sample_set: SampleManifest, installation: Installation
) -> None:
    _instance, ds = next(matched(planted_run("tcia"), sample_set, installation.keys))
    result = installation.run("reidentify", str(ds.PatientID), "--reason", "curious")
    assert_clean_failure(result, sample_set)


def test_reidentify_unknown_value_fails_in_one_line(
    installation: Installation, broker_env: dict[str, str]
) -> None:
    result = installation.run("reidentify", "PGNOTAPSEUDONYM0", "--reason", "IRB", env=broker_env)
    code, single_line = result.returncode, one_error_line(result.stderr)
    assert code != 0
    assert single_line, "not a one-line error"


# Bad input in one batch


@dataclass(frozen=True)
class BadBatch:
    run: Deidentified
    names: dict[str, str]  # file name (PHI) -> what it is
    sops: dict[str, str]  # file name -> original SOP Instance UID (DICOM inputs)

    def __repr__(self) -> str:  # the file names hold PHI
        return f"BadBatch({len(self.names)} inputs)"


GOOD_SOURCES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "image_dfl.dcm")


def _planted(sample_set: SampleManifest, source: str) -> SampleInstance:
    return next(i for i in sample_set.instances if i.source == source)


def _with_new_uid(path: Path, tag: str) -> tuple[FileDataset, str]:
    ds = pydicom.dcmread(path)
    uid = generate_uid(entropy_srcs=["phigate-bad-input", tag])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds, str(uid)


def _save(ds: FileDataset, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)


def _build_bad_batch(
    sample_set: SampleManifest, folder: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """Good planted files and every kind of bad input, named with PHI like the inputs.

    Returns (file name -> kind, file name -> original SOP Instance UID).
    """
    folder.mkdir(parents=True)
    names: dict[str, str] = {}
    sops: dict[str, str] = {}
    _add_good_files(sample_set, folder, names, sops)
    _add_non_instances(sample_set, folder, names)
    _add_broken_instances(sample_set, folder, names, sops)
    return names, sops


def _surname_and_mrn(sample_set: SampleManifest) -> tuple[str, str]:
    first = sample_set.patients[0]
    return first.terms["names"][0], first.terms["ids"][0]


def _add_good_files(
    sample_set: SampleManifest, folder: Path, names: dict[str, str], sops: dict[str, str]
) -> None:
    surname, _ = _surname_and_mrn(sample_set)
    for name in GOOD_SOURCES:
        instance = _planted(sample_set, name)
        target = f"{surname}_good_{Path(name).stem}.dcm"
        shutil.copyfile(Path(sample_set.folder) / instance.file, folder / target)
        names[target], sops[target] = "good", instance.sop_uid
    duplicate = f"zz_copy_{surname}.dcm"  # sorts after the original, which is written first
    shutil.copyfile(_planted_path(sample_set, "MR_small.dcm"), folder / duplicate)
    names[duplicate] = "duplicate"


def _add_non_instances(sample_set: SampleManifest, folder: Path, names: dict[str, str]) -> None:
    surname, mrn = _surname_and_mrn(sample_set)
    first = sample_set.patients[0]
    (folder / f"{surname}_empty.dcm").write_bytes(b"")
    names[f"{surname}_empty.dcm"] = "empty"
    note = f"Patient {first.names[0]} {mrn} {first.phones[0]} {first.addresses[0]}\n"
    (folder / f"{surname}_{mrn}_notes.txt").write_text(note)
    names[f"{surname}_{mrn}_notes.txt"] = "text"
    dicomdir = get_testdata_file("DICOMDIR")
    assert isinstance(dicomdir, str), "pydicom's test DICOMDIR is missing"
    shutil.copyfile(dicomdir, folder / "DICOMDIR")
    names["DICOMDIR"] = "dicomdir"


def _add_broken_instances(
    sample_set: SampleManifest, folder: Path, names: dict[str, str], sops: dict[str, str]
) -> None:
    surname, mrn = _surname_and_mrn(sample_set)
    ct = _planted_path(sample_set, "CT_small.dcm")
    mr = _planted_path(sample_set, "MR_small.dcm")
    builders: dict[str, Callable[[Path], str]] = {
        "truncated_header": lambda p: _truncated_in_header(ct, p),
        "truncated_pixels": lambda p: _truncated_in_pixels(ct, p),
        "bad_vr_length": lambda p: _bad_vr_length(mr, p),
        "huge_private": lambda p: _huge_private(ct, p, surname, mrn),
        "deflate_bomb": lambda p: _deflate_bomb(p, sample_set.patients[0].names[0]),
    }
    for kind, build in builders.items():
        target = f"{surname}_{mrn}_{kind}.dcm"
        sops[target] = build(folder / target)
        names[target] = kind


def _planted_path(sample_set: SampleManifest, source: str) -> Path:
    return Path(sample_set.folder) / _planted(sample_set, source).file


def _truncated_in_header(path: Path, target: Path) -> str:
    ds, uid = _with_new_uid(path, "truncated-header")
    _save(ds, target)
    data = target.read_bytes()
    start = data.index(b"\x10\x00\x10\x00PN")  # PatientName, explicit VR little endian
    target.write_bytes(data[: start + 8 + 5])
    return uid


def _truncated_in_pixels(path: Path, target: Path) -> str:
    ds, uid = _with_new_uid(path, "truncated-pixels")
    _save(ds, target)
    data = target.read_bytes()
    start = data.rindex(b"\xe0\x7f\x10\x00")
    target.write_bytes(data[: start + 12 + (len(data) - start) // 2])
    return uid


def _bad_vr_length(path: Path, target: Path) -> str:
    ds, uid = _with_new_uid(path, "bad-vr-length")
    _save(ds, target)
    data = target.read_bytes()
    rows = data.index(b"\x28\x00\x10\x00US\x02\x00")
    value = data[rows + 8 : rows + 10]
    edited = data[:rows] + b"\x28\x00\x10\x00US\x03\x00" + value + b"\x00" + data[rows + 10 :]
    target.write_bytes(edited)
    return uid


def _huge_private(path: Path, target: Path, surname: str, mrn: str) -> str:
    ds, uid = _with_new_uid(path, "huge-private")
    block = ds.private_block(0x0041, "HUGE PRIVATE BLOCK", create=True)
    chunk = f"{surname}^{mrn} ".encode()
    block.add_new(0x10, "OB", chunk * ((32 << 20) // len(chunk)))  # 32 MiB
    _save(ds, target)
    return uid


def _deflate_bomb(target: Path, name: str) -> str:
    uid = generate_uid(entropy_srcs=["phigate-bad-input", "deflate-bomb"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds = FileDataset(str(target), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = uid
    ds.PatientName = name
    block = ds.private_block(0x0041, "BOMB", create=True)
    block.add_new(0x10, "OB", b"\0" * (8 << 20))  # inflates to 8 MiB, limit is 1 MiB
    _save(ds, target)
    assert target.stat().st_size < 200_000, "the bomb did not compress"
    return str(uid)


def _corrupt_pixels(path: Path, target: Path) -> str:
    ds, uid = _with_new_uid(path, "corrupt-pixels")
    garbage = bytes((i * 37 + 11) % 251 for i in range(4000))
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + garbage])
    _save(ds, target)
    return uid


@pytest.fixture(scope="module")
def bad_batch(
    installation: Installation, sample_set: SampleManifest, tmp_path_factory: pytest.TempPathFactory
) -> BadBatch:
    root = tmp_path_factory.mktemp("bad")
    names, sops = _build_bad_batch(sample_set, root / "in")
    options = ("--workers", "2", "--max-inflated-mb", "1")
    run = deidentify(installation, root / "in", root / "out", "tcia", *options, timeout=120)
    return BadBatch(run, names, sops)


def _outcomes(batch: BadBatch, installation: Installation) -> dict[str, str]:
    """File name -> 'written', 'filtered' or 'quarantined:<reason>'."""
    keys = installation.keys
    notes = installation.home / "quarantine" / batch.run.summary["run_id"]
    written = set(output_datasets(batch.run))
    outcomes = {}
    for name in batch.names:
        note = notes / f"{keys.instance_ref(name)}.json"
        if note.is_file():
            outcomes[name] = "quarantined:" + json.loads(note.read_text())["reason"]
        elif name in batch.sops and keys.uid(batch.sops[name]) in written:
            outcomes[name] = "written"
        else:
            outcomes[name] = "filtered"
    return outcomes


def test_bad_batch_completes_and_counts_every_input(bad_batch: BadBatch) -> None:
    counts = bad_batch.run.summary["counts"]
    code = bad_batch.run.result.returncode
    assert code == 0
    assert counts["inputs"] == len(bad_batch.names)
    assert counts["written"] + counts["filtered"] + counts["quarantined"] == counts["inputs"]
    assert bad_batch.run.summary["filtered_reasons"] == {"dicomdir": 1, "not_dicom": 2}


def test_each_bad_input_gets_its_reason(bad_batch: BadBatch, installation: Installation) -> None:
    allowed = {
        "good": {"written"},
        "empty": {"filtered"},
        "text": {"filtered"},
        "dicomdir": {"filtered"},
        "duplicate": {"quarantined:duplicate_sop_instance_uid"},
        "truncated_header": {"quarantined:truncated", "quarantined:malformed"},
        "truncated_pixels": {"quarantined:truncated"},
        "bad_vr_length": {"quarantined:malformed"},
        "deflate_bomb": {"quarantined:deflate_bomb"},
    }
    outcomes = _outcomes(bad_batch, installation)
    wrong = {
        kind: outcomes[name]
        for name, kind in bad_batch.names.items()
        if kind in allowed and outcomes[name] not in allowed[kind]
    }
    assert wrong == {}
    # Written without the element, or quarantined with a stated reason; never a crash.
    outcome = next(outcomes[n] for n, k in bad_batch.names.items() if k == "huge_private")
    assert outcome == "written" or outcome.startswith("quarantined:")
    assert outcome != "quarantined:unexpected_error"


def test_bad_batch_leaks_nothing(bad_batch: BadBatch, sample_set: SampleManifest) -> None:
    run = bad_batch.run
    planted = sample_set.planted
    console = run.result.stdout + run.result.stderr + run.report_file.read_text()
    leaked = find_in_text(console, planted)
    assert leaked == []
    printed = sum(name in console for name in bad_batch.names if name != "DICOMDIR")
    assert printed == 0, "an input file name was printed"
    assert find_planted(run.output_dir, planted) == []
    assert all(p.stat().st_size < (4 << 20) for p in run.outputs()), "a huge element survived"


def test_bad_batch_quarantine_has_reasons(bad_batch: BadBatch, installation: Installation) -> None:
    notes = installation.home / "quarantine" / bad_batch.run.summary["run_id"]
    reasons = Counter(json.loads(p.read_text())["reason"] for p in notes.glob("*.json"))
    assert sum(reasons.values()) == bad_batch.run.summary["counts"]["quarantined"]
    assert reasons == Counter(bad_batch.run.summary["quarantine_reasons"])


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_compressed_pixels_do_not_stop_the_batch(
    workers: int, installation: Installation, sample_set: SampleManifest, tmp_path: Path
) -> None:
    """JPEG 2000 pixel data that no decoder can read: the file is written (pixels passed
    through) or quarantined with a reason, and the good file next to it is written."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = _planted(sample_set, "CT_small.dcm")
    shutil.copyfile(Path(sample_set.folder) / good.file, folder / "a_good.dcm")
    corrupt_sop = _corrupt_pixels(_planted_path(sample_set, "JPEG2000.dcm"), folder / "b.dcm")
    options = ("--workers", str(workers))
    run = deidentify(installation, folder, tmp_path / "out", "tcia", *options, timeout=60)
    counts = run.summary["counts"]
    assert counts["inputs"] == 2 and counts["balanced"] is True
    written = set(output_datasets(run))
    assert installation.keys.uid(good.sop_uid) in written
    corrupt_written = installation.keys.uid(corrupt_sop) in written
    reasons = run.summary["quarantine_reasons"]
    assert corrupt_written or (counts["quarantined"] == 1 and "unexpected_error" not in reasons)


# One-line errors


@pytest.fixture
def small_input(sample_set: SampleManifest, tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for instance in sample_set.instances[:2]:
        shutil.copyfile(Path(sample_set.folder) / instance.file, folder / Path(instance.file).name)
    return folder


def assert_clean_failure(
    result: subprocess.CompletedProcess[str], sample_set: SampleManifest
) -> None:
    """Non-zero exit, one ``phigate: error:`` line, nothing planted in the output."""
    code, single_line = result.returncode, one_error_line(result.stderr)
    leaked = find_in_text(result.stdout + result.stderr, sample_set.planted)
    assert code != 0
    assert single_line, "not a one-line error"
    assert leaked == []


def test_unknown_profile_is_a_one_line_error(
    installation: Installation, small_input: Path, sample_set: SampleManifest, tmp_path: Path
) -> None:
    result = installation.run("deidentify", small_input, tmp_path / "out", "--profile", "nope")
    assert_clean_failure(result, sample_set)
    assert not (tmp_path / "out").exists()


def test_unreadable_key_is_a_one_line_error(
    installation: Installation, small_input: Path, sample_set: SampleManifest, tmp_path: Path
) -> None:
    key = tmp_path / "garbage.key"
    key.write_bytes(b"\x00\xff\xfe this is not a key \x81\n")
    result = installation.run(
        "deidentify", small_input, tmp_path / "out", "--profile", "tcia", "--key-file", key
    )
    assert_clean_failure(result, sample_set)
    assert not (tmp_path / "out").exists()


def test_output_inside_input_is_a_one_line_error(
    installation: Installation, small_input: Path, sample_set: SampleManifest
) -> None:
    inside = small_input / "deidentified"
    result = installation.run("deidentify", small_input, inside, "--profile", "tcia")
    assert_clean_failure(result, sample_set)
    assert not inside.exists()


def test_clinical_trial_without_subject_map_is_a_one_line_error(
    installation: Installation, small_input: Path, sample_set: SampleManifest, tmp_path: Path
) -> None:
    result = installation.run(
        "deidentify", small_input, tmp_path / "out", "--profile", "clinical-trial"
    )
    assert_clean_failure(result, sample_set)
