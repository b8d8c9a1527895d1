"""Change control of profiles: propose, approve by another steward, activate, roll back."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from phigate.errors import ProfileError
from phigate.governance.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PermissionDenied,
    ProfileChangeRefused,
    ProfileNotUsable,
)
from phigate.governance.jobs import JobStore
from phigate.governance.models import AuditEntry
from phigate.governance.policy_library import (
    activate_profile,
    active_version,
    approve_profile,
    clone_profile,
    diff_versions,
    find_version,
    list_profiles,
    profile_history,
    propose_profile,
    rollback_profile,
    seed_builtin_profiles,
    set_profile_disabled,
    version_for_job,
)

from .conftest import People, profile_text


def propose(session: Session, people: People, variant: int, name: str = "demo") -> str:
    version = propose_profile(
        session, people.steward, profile_text(name, variant), note=f"v{variant}"
    )
    session.commit()
    return str(version.number)


def approved_and_active(session: Session, people: People, variant: int) -> str:
    number = propose(session, people, variant)
    approve_profile(session, people.steward2, "demo", number)
    activate_profile(session, people.steward2, "demo", number)
    session.commit()
    return number


def new_job(session: Session, people: People, version: str | None = None) -> str:
    job = JobStore(session, people.agent).create_job(
        name="run", profile_name="demo", profile_version=version, source_ref="src-abc123"
    )
    session.commit()
    return job.profile_version


def test_a_proposal_cannot_be_used_before_approval(session: Session, people: People) -> None:
    number = propose(session, people, 1)
    with pytest.raises(ProfileNotUsable, match="no active version"):
        version_for_job(session, "demo")
    with pytest.raises(ProfileNotUsable, match="not approved"):
        version_for_job(session, "demo", number)
    with pytest.raises(ProfileNotUsable):
        new_job(session, people, number)
    with pytest.raises(ProfileChangeRefused, match="not approved"):
        activate_profile(session, people.steward2, "demo", number)
    assert issubclass(ProfileNotUsable, ProfileError)


def test_the_proposer_cannot_approve(session: Session, people: People) -> None:
    number = propose(session, people, 1)
    with pytest.raises(PermissionDenied, match="own proposal"):
        approve_profile(session, people.steward, "demo", number)
    with pytest.raises(PermissionDenied):
        approve_profile(session, people.researcher, "demo", number)
    last = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert last is not None and (last.operation, last.outcome) == ("profile.approve", "denied")
    approve_profile(session, people.steward2, "demo", number)
    session.commit()
    assert version_for_job(session, "demo", number).number == 1
    with pytest.raises(ProfileChangeRefused, match="already approved"):
        approve_profile(session, people.steward2, "demo", number)


def test_jobs_use_the_active_version_and_rollback_restores_the_previous(
    session: Session, people: People
) -> None:
    first = approved_and_active(session, people, 1)
    first_hash = find_version(session, "demo", first).version
    assert new_job(session, people) == first_hash
    second = approved_and_active(session, people, 2)
    second_hash = find_version(session, "demo", second).version
    assert new_job(session, people) == second_hash
    assert new_job(session, people, first) == first_hash  # an older approved version by name
    restored = rollback_profile(session, people.steward, "demo")
    session.commit()
    assert restored.version == first_hash
    assert new_job(session, people) == first_hash
    with pytest.raises(ProfileChangeRefused, match="no earlier"):
        rollback_profile(session, people.steward, "demo")


def test_rollback_after_three_activations_walks_back_one_at_a_time(
    session: Session, people: People
) -> None:
    versions = [approved_and_active(session, people, variant) for variant in (1, 2, 3)]
    assert rollback_profile(session, people.steward, "demo").number == int(versions[1])
    assert rollback_profile(session, people.steward, "demo").number == int(versions[0])
    activate_profile(session, people.steward, "demo", versions[2])
    assert rollback_profile(session, people.steward, "demo").number == int(versions[0])


def test_history_keeps_every_version_and_marks_the_active_one(
    session: Session, people: People
) -> None:
    approved_and_active(session, people, 1)
    propose(session, people, 2)
    history = profile_history(session, people.researcher, "demo")
    assert [(item.number, item.state, item.active) for item in history] == [
        (1, "approved", True),
        (2, "proposed", False),
    ]
    assert history[0].author == "sam" and history[0].approved_by == "sue"
    assert history[1].change_note == "v2"
    assert "-description: variant 1" in diff_versions(session, people.auditor, "demo", "1", "2")
    assert history[0].to_dict()["version"] == history[0].version


def test_versions_are_immutable_and_content_addressed(session: Session, people: People) -> None:
    number = propose(session, people, 1)
    with pytest.raises(AlreadyExists, match="already has this content"):
        propose_profile(session, people.steward2, profile_text("demo", 1), note="again")
    version = find_version(session, "demo", number)
    assert find_version(session, "demo", version.version[:8]).id == version.id
    with pytest.raises(InvalidInput):
        find_version(session, "demo", "ab")
    with pytest.raises(NotFound):
        find_version(session, "demo", "99")
    with pytest.raises(InvalidInput, match="change note"):
        propose_profile(session, people.steward, profile_text("demo", 5), note=" ")


def test_only_stewards_and_admins_propose_only_stewards_activate(
    session: Session, people: People
) -> None:
    with pytest.raises(PermissionDenied):
        propose_profile(session, people.researcher, profile_text("demo"), note="x")
    number = propose(session, people, 1)
    approve_profile(session, people.steward2, "demo", number)
    with pytest.raises(PermissionDenied):
        activate_profile(session, people.admin, "demo", number)


def test_clone_is_a_new_proposal_under_the_new_name(session: Session, people: People) -> None:
    approved_and_active(session, people, 1)
    clone = clone_profile(session, people.steward, "demo", "demo-site-a")
    session.commit()
    assert clone.profile.name == "demo-site-a" and clone.origin == "clone"
    assert "name: demo-site-a" in clone.yaml_text
    with pytest.raises(ProfileNotUsable):
        version_for_job(session, "demo-site-a")
    with pytest.raises(AlreadyExists):
        clone_profile(session, people.steward, "demo", "demo-site-a")


def test_a_disabled_profile_cannot_be_used_until_enabled(session: Session, people: People) -> None:
    approved_and_active(session, people, 1)
    set_profile_disabled(session, people.steward, "demo", disabled=True, reason="incident-42")
    session.commit()
    with pytest.raises(ProfileNotUsable, match="disabled"):
        new_job(session, people)
    set_profile_disabled(session, people.steward, "demo", disabled=False)
    new_job(session, people)
    summaries = list_profiles(session, people.auditor)
    assert [(s.name, s.active_number, s.disabled, s.versions) for s in summaries] == [
        ("demo", 1, False, 1)
    ]


def test_builtins_are_seeded_as_approved_active_version_one(
    session: Session, people: People
) -> None:
    notes = seed_builtin_profiles(session, [profile_text("basic"), profile_text("tcia")])
    session.commit()
    assert len(notes) == 2
    for name in ("basic", "tcia"):
        version = version_for_job(session, name)
        assert version.number == 1 and version.author_name == "phigate"
    assert seed_builtin_profiles(session, [profile_text("basic")]) == []
    updated = seed_builtin_profiles(session, [profile_text("basic", 2)])
    assert "activate it" in updated[0]
    active = active_version(session, "basic")
    assert active is not None and active.number == 1
    assert version_for_job(session, "basic", "2").number == 2


def test_shipped_builtins_seed_without_error(session: Session) -> None:
    seed_builtin_profiles(session)
    session.commit()


def test_invalid_yaml_names_the_line(session: Session, people: People) -> None:
    with pytest.raises(ProfileError, match="line"):
        propose_profile(session, people.steward, "name: x\n  bad: [\n", note="broken")
