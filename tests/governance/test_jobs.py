"""Jobs and their InstanceResult records survive a restart, with statistics to match."""

from __future__ import annotations

from dataclasses import fields

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.orm import Session

from phigate.governance.authz import Principal, Role
from phigate.governance.database import make_engine, session_factory
from phigate.governance.errors import InvalidInput, NotFound, PermissionDenied
from phigate.governance.jobs import RECORD_FIELDS, JobStore, job_to_dict
from phigate.governance.models import InstanceRecord
from phigate.governance.policy_library import seed_builtin_profiles, version_for_job
from phigate.governance.sites import add_site
from phigate.record import InstanceResult, PHIFinding, Status

from .conftest import People, make_user, profile_text


@pytest.fixture
def version(session: Session) -> str:
    seed_builtin_profiles(session, [profile_text("tcia")])
    session.commit()
    return version_for_job(session, "tcia").version


def result(number: int, version: str, status: Status, review: bool = False) -> InstanceResult:
    record = InstanceResult(
        source_ref=f"ref{number:04d}",
        status=status,
        reason=None
        if status is Status.WRITTEN
        else ("truncated" if status is Status.QUARANTINED else "policy"),
        reason_detail=None if status is Status.WRITTEN else "stopped at byte offset 12",
        output_ref=f"2.25.1/2.25.2/2.25.{number}.dcm" if status is Status.WRITTEN else None,
        profile_name="tcia",
        profile_version=version,
        study_uid="2.25.1",
        series_uid="2.25.2",
        sop_instance_uid=f"2.25.{number}",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        modality="CT" if number % 2 else "US",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        actions={"PatientName": "pseudonymize", "StudyDate": "shift"},
        findings=[
            PHIFinding(
                where="pixel",
                kind="name",
                keyword="PixelData",
                confidence=0.9,
                action="redact",
                frame=0,
                box=(1, 2, 30, 40),
            )
        ],
        bytes_in=1000,
        bytes_out=900 if status is Status.WRITTEN else 0,
        timings={"total": 0.01},
    )
    if review:
        record.flag_for_review("burned-in annotation not pixel-cleaned")
    return record


def batch(version: str) -> list[InstanceResult]:
    return (
        [result(n, version, Status.WRITTEN) for n in range(6)]
        + [result(6, version, Status.WRITTEN, review=True)]
        + [result(7, version, Status.FILTERED), result(8, version, Status.QUARANTINED)]
    )


def test_every_record_field_has_a_column(engine: Engine) -> None:
    columns = {column["name"] for column in inspect(engine).get_columns("instance_records")}
    assert set(RECORD_FIELDS) == {item.name for item in fields(InstanceResult)}
    assert set(RECORD_FIELDS) <= columns
    assert columns - set(RECORD_FIELDS) == {"id", "job_id"}


def test_a_job_and_its_records_survive_a_restart(
    db_url: str, session: Session, people: People, version: str
) -> None:
    store = JobStore(session, people.agent)
    job = store.create_job(name="nightly", profile_name="tcia", source_ref="src-7f3a")
    assert job.status == "queued" and job.profile_version == version
    store.start_job(job.id)
    assert store.add_records(job.id, batch(version)[:5]) == 5
    store.add_records(job.id, batch(version)[5:])
    store.finish_job(job.id)
    session.commit()
    job_id, original = job.id, batch(version)
    session.close()

    restarted = make_engine(db_url)
    try:
        with session_factory(restarted)() as fresh:
            reader = JobStore(fresh, people.auditor)
            stats = reader.job_statistics(job_id)
            assert (stats.inputs, stats.written, stats.filtered, stats.quarantined) == (9, 7, 1, 1)
            assert stats.inputs == stats.written + stats.filtered + stats.quarantined
            assert stats.requires_review == 1 and stats.status == "pending_review"
            assert stats.reasons == {"policy": 1, "truncated": 1}
            assert stats.modalities == {"CT": 4, "US": 5}
            assert stats.actions == {"PatientName": {"pseudonymize": 9}, "StudyDate": {"shift": 9}}
            assert (stats.bytes_in, stats.bytes_out) == (9000, 6300)
            assert stats.elapsed_seconds is not None and stats.elapsed_seconds >= 0
            assert list(reader.records(job_id)) == original
            flagged = list(reader.records(job_id, requires_review=True))
            assert [record.source_ref for record in flagged] == ["ref0006"]
            shown = job_to_dict(reader.get_job(job_id))
            assert shown["status"] == "pending_review" and shown["created_by"] == "bot"
            assert [listed.id for listed in reader.list_jobs()] == [job_id]
    finally:
        restarted.dispose()


def test_job_status_ends_completed_or_failed(
    session: Session, people: People, version: str
) -> None:
    store = JobStore(session, people.agent)
    clean = store.create_job(name="a", profile_name="tcia", source_ref="src1")
    store.add_records(clean.id, [result(1, version, Status.WRITTEN)])
    assert store.finish_job(clean.id).status == "completed"
    broken = store.create_job(name="b", profile_name="tcia", source_ref="src2")
    assert store.finish_job(broken.id, error="output folder is not writable").status == "failed"
    with pytest.raises(InvalidInput, match="already failed"):
        store.add_records(broken.id, [result(2, version, Status.WRITTEN)])
    assert [job.name for job in store.list_jobs(status="failed")] == ["b"]


def test_records_must_name_the_jobs_profile_version(
    session: Session, people: People, version: str
) -> None:
    store = JobStore(session, people.agent)
    job = store.create_job(name="a", profile_name="tcia", source_ref="src1")
    with pytest.raises(InvalidInput, match="profile version"):
        store.add_records(job.id, [result(1, "f" * 64, Status.WRITTEN)])


def test_records_may_name_the_profile_a_site_gives_their_modality(
    session: Session, people: People, version: str
) -> None:
    seed_builtin_profiles(session, [profile_text("basic")])
    basic = version_for_job(session, "basic").version
    store = JobStore(session, people.agent)
    job = store.create_job(
        name="a", profile_name="tcia", source_ref="src1", modality_profiles={"US": ("basic", "")}
    )
    assert job_to_dict(job)["modality_profiles"] == {"US": {"name": "basic", "version": basic}}
    assert store.add_records(job.id, [result(1, version, Status.WRITTEN)]) == 1
    assert store.add_records(job.id, [result(2, basic, Status.WRITTEN)]) == 1
    with pytest.raises(InvalidInput, match="profile version"):
        store.add_records(job.id, [result(3, "f" * 64, Status.WRITTEN)])
    with pytest.raises(NotFound):
        store.create_job(
            name="b", profile_name="tcia", source_ref="src2", modality_profiles={"MR": ("no", "")}
        )


def test_job_sources_are_keyed_hashes_not_paths(
    session: Session, people: People, version: str
) -> None:
    with pytest.raises(InvalidInput, match="keyed hash"):
        JobStore(session, people.agent).create_job(
            name="a", profile_name="tcia", source_ref="/data/DOE^JOHN/study"
        )


def test_who_may_run_and_read_jobs(session: Session, people: People, version: str) -> None:
    with pytest.raises(PermissionDenied):
        JobStore(session, people.researcher).create_job(
            name="a", profile_name="tcia", source_ref="s1"
        )
    add_site(session, people.admin, {"name": "north"})
    add_site(session, people.admin, {"name": "south"})
    agent = JobStore(session, people.agent)
    north = agent.create_job(name="n", profile_name="tcia", source_ref="s1", site="north")
    south = agent.create_job(name="s", profile_name="tcia", source_ref="s2", site="south")
    session.commit()
    local: Principal = make_user(session, "nora", Role.RESEARCHER)
    from dataclasses import replace

    local = replace(local, sites=frozenset({"north"}))
    reader = JobStore(session, local)
    assert [job.id for job in reader.list_jobs()] == [north.id]
    with pytest.raises(PermissionDenied):
        reader.get_job(south.id)
    with pytest.raises(PermissionDenied):
        JobStore(session, people.partner).list_jobs()
    with pytest.raises(NotFound, match="site add"):
        agent.create_job(name="x", profile_name="tcia", source_ref="s3", site="east")
    with pytest.raises(NotFound, match="job list"):
        agent.get_job(999)


def test_findings_are_stored_as_json_without_values(
    session: Session, people: People, version: str
) -> None:
    store = JobStore(session, people.agent)
    job = store.create_job(name="a", profile_name="tcia", source_ref="src1")
    store.add_records(job.id, [result(1, version, Status.WRITTEN)])
    session.commit()
    row = session.query(InstanceRecord).one()
    assert row.findings == [
        {
            "where": "pixel",
            "kind": "name",
            "keyword": "PixelData",
            "confidence": 0.9,
            "action": "redact",
            "frame": 0,
            "box": [1, 2, 30, 40],
        }
    ]
