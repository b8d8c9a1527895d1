"""The control plane as a user meets it through the CLI: jobs, approvals, brokers, keys.

Runs the real Typer app in-process against a real SQLite database in a temporary
PHIGATE_HOME (the database layer itself is tested on SQLite and PostgreSQL in
tests/governance).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest
from click.testing import Result
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from phigate.cli import app
from phigate.governance.users import use_fast_password_hashing

use_fast_password_hashing()
PASSWORD = "correct horse battery staple"
SOURCES = ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "home"
    monkeypatch.setenv("PHIGATE_HOME", str(root))
    for name in ("PHIGATE_USER", "PHIGATE_PASSWORD", "PHIGATE_TOKEN", "PHIGATE_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert invoke("init").exit_code == 0
    return root


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in SOURCES:
        source = get_testdata_file(name)
        assert source is not None
        shutil.copy(source, folder / name)
    return folder


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return str(result.stdout)


def add_user(name: str, role: str) -> None:
    run("user", "add", name, "--role", role, "--password", PASSWORD)


def as_user(monkeypatch: pytest.MonkeyPatch, name: str | None) -> None:
    if name is None:
        monkeypatch.delenv("PHIGATE_USER", raising=False)
        monkeypatch.delenv("PHIGATE_PASSWORD", raising=False)
        return
    monkeypatch.setenv("PHIGATE_USER", name)
    monkeypatch.setenv("PHIGATE_PASSWORD", PASSWORD)


def deidentify(inputs: Path, out: Path, profile: str = "basic") -> dict[str, object]:
    text = run(
        "deidentify", str(inputs), str(out), "--profile", profile, "--workers", "1", "--json"
    )
    document: dict[str, object] = json.loads(text)
    return document


def test_deidentify_records_a_job_whose_statistics_survive(home: Path, inputs: Path) -> None:
    report = deidentify(inputs, home.parent / "out")
    jobs = json.loads(run("job", "list", "--json"))
    assert [job["id"] for job in jobs] == [report["job_id"]]
    shown = json.loads(run("job", "show", str(report["job_id"]), "--json"))
    counts = report["counts"]
    assert isinstance(counts, dict)
    statistics = shown["statistics"]
    assert statistics["inputs"] == counts["inputs"] == len(SOURCES)
    assert statistics["written"] == counts["written"]
    assert shown["job"]["profile_version"] == report["profile"]["version"]  # type: ignore[index]
    assert shown["job"]["status"] in ("completed", "pending_review")


def test_an_unapproved_profile_cannot_be_used_until_a_steward_approves(
    home: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    proposal = tmp_path / "site-a.yaml"
    proposal.write_text(
        "schema: 1\nname: site-a\nextends: tcia\noptions: [retain_institution_identity]\n"
    )
    add_user("stella", "steward")
    add_user("sam", "steward")
    as_user(monkeypatch, "stella")
    run("profile", "propose", str(proposal), "--note", "site A keeps institution names")
    refused = CliRunner().invoke(
        app, ["deidentify", str(inputs), str(tmp_path / "o1"), "--profile", str(proposal)]
    )
    assert refused.exit_code != 0
    assert "approve" in str(refused.exception) + refused.output
    self_approval = CliRunner().invoke(app, ["profile", "approve", "site-a", "1"])
    assert self_approval.exit_code != 0
    as_user(monkeypatch, "sam")
    run("profile", "approve", "site-a", "1")
    run("profile", "activate", "site-a", "1")
    as_user(monkeypatch, None)
    report = deidentify(inputs, tmp_path / "o2", str(proposal))
    assert report["profile"]["name"] == "site-a"  # type: ignore[index]


def test_rollback_restores_the_previous_version_for_new_jobs(
    home: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    add_user("stella", "steward")
    add_user("sam", "steward")
    versions = []
    for variant in ("retain_institution_identity", "retain_device_identity"):
        proposal = tmp_path / "site-b.yaml"
        proposal.write_text(f"schema: 1\nname: site-b\nextends: basic\noptions: [{variant}]\n")
        as_user(monkeypatch, "stella")
        run("profile", "propose", str(proposal), "--note", variant)
        number = str(len(versions) + 1)
        as_user(monkeypatch, "sam")
        run("profile", "approve", "site-b", number)
        run("profile", "activate", "site-b", number)
        as_user(monkeypatch, None)
        versions.append(deidentify(inputs, tmp_path / f"out{number}", "site-b")["profile"])
    assert versions[0] != versions[1]
    diff = json.loads(run("profile", "diff", "site-b@1", "site-b@2", "--json"))
    changed = {row["attribute"]: (row["a"], row["b"]) for row in diff["differences"]}
    assert changed["DeviceSerialNumber"][1] == "keep" != changed["DeviceSerialNumber"][0]
    assert changed["InstitutionName"][0] == "keep" != changed["InstitutionName"][1]
    as_user(monkeypatch, "sam")
    run("profile", "rollback", "site-b")
    as_user(monkeypatch, None)
    after = deidentify(inputs, tmp_path / "out3", "site-b")["profile"]
    assert after == versions[0]


def test_reidentify_needs_a_broker_and_a_reason_and_is_audited(
    home: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    deidentify(inputs, out)
    pseudonym = str(pydicom.dcmread(sorted(out.rglob("*.dcm"))[0]).PatientID)
    refused = CliRunner().invoke(app, ["reidentify", pseudonym, "--reason", "IRB-7"])
    assert refused.exit_code != 0  # the local admin is not an honest broker
    add_user("bea", "honest_broker")
    as_user(monkeypatch, "bea")
    assert CliRunner().invoke(app, ["reidentify", pseudonym]).exit_code != 0  # no reason
    found = run("reidentify", pseudonym, "--reason", "IRB-7", "--json")
    originals = {entry["original"] for entry in json.loads(found)}
    source_ids = {str(pydicom.dcmread(path).PatientID) for path in sorted(inputs.iterdir())}
    assert originals <= source_ids and originals
    as_user(monkeypatch, None)
    exported = tmp_path / "audit.jsonl"
    run("audit", "export", "--out", str(exported))
    entries = [json.loads(line) for line in exported.read_text().splitlines() if line.strip()]
    operations = [str(entry) for entry in entries]
    assert sum("reidentify" in text and "denied" in text for text in operations) >= 2
    assert any("reidentify" in text and "success" in text for text in operations)
    assert pseudonym not in exported.read_text()
    assert "verified" in run("audit", "verify") or "intact" in run("audit", "verify")


def test_key_rotation_keeps_pseudonyms_and_re_encrypts_the_vault(
    home: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    deidentify(inputs, out)
    vault = home / "vault" / "pseudonyms.jsonl"
    before = vault.read_text()
    run("key", "rotate")
    after = vault.read_text()
    assert len(after.splitlines()) == len(before.splitlines())
    assert {json.loads(line)["c"] for line in before.splitlines()}.isdisjoint(
        json.loads(line)["c"] for line in after.splitlines()
    )
    add_user("bea", "honest_broker")
    as_user(monkeypatch, "bea")
    pseudonym = str(pydicom.dcmread(sorted(out.rglob("*.dcm"))[0]).PatientID)
    assert json.loads(run("reidentify", pseudonym, "--reason", "IRB-7", "--json"))
    as_user(monkeypatch, None)
    again = deidentify(inputs, tmp_path / "out-again")
    assert again["counts"] == deidentify(inputs, tmp_path / "out-third")["counts"]
    first = sorted(p.relative_to(out) for p in out.rglob("*.dcm"))
    second = sorted(
        p.relative_to(tmp_path / "out-again") for p in (tmp_path / "out-again").rglob("*.dcm")
    )
    assert first == second  # same UIDs, hence same paths, after rotation


def test_a_site_template_overlays_the_profile_for_its_jobs(
    home: Path, inputs: Path, tmp_path: Path
) -> None:
    """The site's known burned-in region is cleared whatever OCR finds, and outputs name the
    template version next to the profile version."""
    template = tmp_path / "north.yaml"
    template.write_text(
        "name: north\n"
        "recognise: {calling_ae_titles: [NORTH_CT]}\n"
        "burned_in_regions:\n"
        "  - {manufacturer: '.*', boxes: [[0, 0, 16, 8]]}\n"
    )
    run("site", "add", str(template))
    source = inputs / "CT_small.dcm"
    only_ct = tmp_path / "ct"
    only_ct.mkdir()
    shutil.copy(source, only_ct / "ct.dcm")
    text = run(
        "deidentify", str(only_ct), str(tmp_path / "out"), "--profile", "tcia",
        "--site", "north", "--workers", "1", "--json",
    )  # fmt: skip
    report = json.loads(text)
    assert report["site"]["name"] == "north"
    [output] = list((tmp_path / "out").rglob("*.dcm"))
    written = pydicom.dcmread(output)
    assert f"site {report['site']['template_version']}" in str(written.DeidentificationMethod)
    before = pydicom.dcmread(source).pixel_array
    after = written.pixel_array
    region = (slice(0, 8), slice(0, 16))
    assert (after[region] != before[region]).any()
    outside = after.copy()
    outside[region] = before[region]
    assert (outside == before).all()
    job = json.loads(run("job", "show", str(report["job_id"]), "--json"))["job"]
    assert job["site"] == "north"


def test_site_profile_and_modality_defaults_govern_its_jobs(
    home: Path, inputs: Path, tmp_path: Path
) -> None:
    """Without --profile the site's profile runs; MR gets the site's MR profile, CT goes to
    review with its pixels left alone; the job names every profile version it used."""
    template = tmp_path / "north.yaml"
    template.write_text(
        "name: north\n"
        "profile: tcia\n"
        "modality_defaults:\n"
        "  MR: {profile: basic}\n"
        "  CT: {requires_review: true, pixel_cleaning: false}\n"
    )
    run("site", "add", str(template))
    out = tmp_path / "out"
    text = run("deidentify", str(inputs), str(out), "--site", "north", "--workers", "1", "--json")
    report = json.loads(text)
    assert report["profile"]["name"] == "tcia"
    assert report["review_reasons"] == {"profile_reviews_every_instance_of_this_modality": 1}
    assert report["pixels"]["instances_scanned"] == 0
    methods = {
        str(ds.Modality): str(ds.DeidentificationMethod)
        for ds in map(pydicom.dcmread, out.rglob("*.dcm"))
    }
    mr_version = report["modality_profiles"]["MR"]["version"]
    assert methods["MR"].startswith(f"phigate basic {mr_version} site ")
    assert methods["CT"].startswith(f"phigate tcia {report['profile']['version']} site ")
    assert methods["RTPLAN"].startswith("phigate tcia ")
    job = json.loads(run("job", "show", str(report["job_id"]), "--json"))["job"]
    assert job["modality_profiles"] == {"MR": {"name": "basic", "version": mr_version}}
    assert job["status"] == "pending_review"


def test_a_site_that_claims_the_input_folder_is_used_without_site(
    home: Path, inputs: Path, tmp_path: Path
) -> None:
    template = tmp_path / "north.yaml"
    template.write_text(f"name: north\nrecognise: {{source_folders: ['{inputs}']}}\n")
    run("site", "add", str(template))
    report = deidentify(inputs, tmp_path / "out")
    assert report["site"] == {
        "name": "north",
        "template_version": report["site"]["template_version"],
    }
    job = json.loads(run("job", "show", str(report["job_id"]), "--json"))["job"]
    assert job["site"] == "north"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(inputs, elsewhere / "in")
    assert "site" not in deidentify(elsewhere / "in", tmp_path / "out2")


def test_a_site_modality_profile_must_be_approved(home: Path, inputs: Path, tmp_path: Path) -> None:
    template = tmp_path / "north.yaml"
    template.write_text("name: north\nmodality_defaults:\n  MR: {profile: nosuch}\n")
    run("site", "add", str(template))
    result = invoke("deidentify", str(inputs), str(tmp_path / "out"), "--site", "north")
    assert result.exit_code != 0
    assert "no profile named 'nosuch'" in str(result.exception)
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_quarantine_reads_need_a_steward_and_are_audited(
    home: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (inputs / "cut.dcm").write_bytes((inputs / "CT_small.dcm").read_bytes()[:3000])
    report = deidentify(inputs, tmp_path / "out")
    assert report["counts"]["quarantined"] >= 1  # type: ignore[index]
    refused = CliRunner().invoke(app, ["quarantine", "list"])
    assert refused.exit_code != 0  # the local admin sees no patient data
    add_user("stella", "steward")
    as_user(monkeypatch, "stella")
    rows = json.loads(run("quarantine", "list", "--json"))
    assert {row["reason"] for row in rows} >= {"truncated"}
    reference = next(row["source_ref"] for row in rows if row["reason"] == "truncated")
    [note] = json.loads(run("quarantine", "show", reference))
    assert note["source_path"].endswith("cut.dcm")
    as_user(monkeypatch, None)
    exported = tmp_path / "audit.jsonl"
    run("audit", "export", "--out", str(exported))
    text = exported.read_text()
    assert "data.read.quarantine" in text
    assert f"instance:{reference}" in text
    assert "cut.dcm" not in text
