"""Re-identification is refused without the role and audited with it; raw reads are audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from phigate.governance.audit import verify_chain
from phigate.governance.authz import Zone
from phigate.governance.errors import PermissionDenied
from phigate.governance.guards import authorize_data_read, authorize_reidentification
from phigate.governance.models import AuditEntry

from .conftest import People


def last_entry(session: Session) -> AuditEntry:
    entry = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert entry is not None
    return entry


@pytest.mark.parametrize("who", ["admin", "steward", "researcher", "auditor", "agent", "partner"])
def test_reidentification_is_refused_without_the_role_and_audited(
    session: Session, people: People, who: str
) -> None:
    principal = getattr(people, who)
    with pytest.raises(PermissionDenied):
        authorize_reidentification(session, principal, object_ref="pseudonym:k3y3d", reason="IRB-7")
    entry = last_entry(session)
    assert (entry.operation, entry.outcome, entry.actor_name) == (
        "reidentify",
        "denied",
        principal.name,
    )


def test_reidentification_needs_a_reason_even_for_a_broker(
    session: Session, people: People
) -> None:
    with pytest.raises(PermissionDenied, match="reason"):
        authorize_reidentification(session, people.broker, object_ref="pseudonym:k3y3d", reason=" ")
    assert last_entry(session).outcome == "denied"


def test_a_brokers_lookup_is_audited_with_the_reason(session: Session, people: People) -> None:
    authorize_reidentification(
        session, people.broker, object_ref="pseudonym:k3y3d", reason="IRB 2024-17 recontact"
    )
    entry = last_entry(session)
    assert (entry.operation, entry.outcome, entry.actor_name) == ("reidentify", "success", "hob")
    assert entry.reason == "IRB 2024-17 recontact" and entry.objects == ["pseudonym:k3y3d"]
    assert verify_chain(session).ok


def test_raw_and_quarantine_reads_are_audited_deid_reads_are_not(
    session: Session, people: People
) -> None:
    for zone in (Zone.RAW, Zone.QUARANTINE):
        authorize_data_read(session, people.steward, zone=zone, objects=["instance:abc"])
        assert last_entry(session).operation == f"data.read.{zone.value}"
    before = last_entry(session).seq
    authorize_data_read(session, people.researcher, zone=Zone.DEID, objects=["instance:abc"])
    assert last_entry(session).seq == before
    with pytest.raises(PermissionDenied):
        authorize_data_read(session, people.researcher, zone=Zone.RAW, objects=["instance:abc"])
    assert (last_entry(session).operation, last_entry(session).outcome) == ("data.read", "denied")
