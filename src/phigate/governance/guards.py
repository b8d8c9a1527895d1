"""Audited checks for the two kinds of access the audit trail must always show.

Re-identification and reads of the raw zone or quarantine (where PHI lives) are authorised by
:func:`phigate.governance.authz.authorize` and written to the audit chain *before* the data
is touched, and committed at once: if the process dies after reading, the read is still on
record. A refusal is audited too (by :func:`phigate.governance.audit.require`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from phigate.governance.audit import record_event, require
from phigate.governance.authz import Operation, Principal, Resource, Zone

AUDITED_READ_ZONES = frozenset({Zone.RAW, Zone.QUARANTINE})


def authorize_reidentification(
    session: Session, principal: Principal, *, object_ref: str, reason: str | None
) -> None:
    """Allow a vault lookup only for an honest broker with a stated reason; audit it.

    ``object_ref`` names what is looked up by a keyed hash (never the original value).
    Raises :class:`phigate.governance.errors.PermissionDenied` after auditing a refusal.
    """
    require(session, principal, Operation.REIDENTIFY, Resource(reason=reason), objects=[object_ref])
    record_event(
        session, actor=principal, operation="reidentify", objects=[object_ref], reason=reason
    )
    session.commit()


def authorize_data_read(
    session: Session,
    principal: Principal,
    *,
    zone: Zone,
    objects: Sequence[str],
    site: str | None = None,
    purpose: str | None = None,
) -> None:
    """Allow reading data in ``zone``; reads of raw data and quarantine are audited."""
    resource = Resource(zone=zone, site=site, purpose=purpose)
    require(session, principal, Operation.DATA_READ, resource, objects=objects)
    if zone in AUDITED_READ_ZONES:
        record_event(session, actor=principal, operation=f"data.read.{zone.value}", objects=objects)
        session.commit()
