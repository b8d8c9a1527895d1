"""The authorisation matrix, walked cell by cell exactly as the module docstring documents it.

The expected cells are read from the docstring itself (not from the code's table), so the
documentation is the specification: a cell changed in code but not in the docs fails here.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from phigate.governance import authz
from phigate.governance.authz import (
    Decision,
    Operation,
    Principal,
    Resource,
    Role,
    Zone,
    authorize,
    ensure_allowed,
    render_rule_table,
)
from phigate.governance.errors import PermissionDenied

ME, SOMEONE_ELSE = 7, 8
MY_SITE, OTHER_SITE = "north", "south"
MY_PURPOSE, OTHER_PURPOSE = "research", "marketing"


def documented_table() -> dict[tuple[str, str], str]:
    """(row label, role) -> cell, parsed from the Markdown table in authz's docstring."""
    assert authz.__doc__ is not None
    lines = [line for line in authz.__doc__.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[0] == "operation"
    cells = {}
    for line in lines[2:]:
        row = [cell.strip() for cell in line.strip("|").split("|")]
        for role, cell in zip(header[1:], row[1:], strict=True):
            cells[(row[0], role)] = cell
    return cells


DOCUMENTED = documented_table()


def all_rows() -> list[tuple[Operation, Zone | None]]:
    rows: list[tuple[Operation, Zone | None]] = []
    for operation in Operation:
        zones: list[Zone | None] = list(Zone) if operation.zoned else [None]
        rows.extend((operation, zone) for zone in zones)
    return rows


def label(operation: Operation, zone: Zone | None) -> str:
    return f"{operation.value} ({zone.value})" if zone else operation.value


def satisfying(role: Role, cell: str) -> tuple[Principal, Resource]:
    """A principal with only ``role`` and a resource that meets every condition in ``cell``."""
    principal = Principal(
        user_id=ME,
        name="tester",
        roles=frozenset({role}),
        sites=frozenset({MY_SITE}),
        purposes=frozenset({MY_PURPOSE}),
    )
    resource = Resource(
        site=MY_SITE,
        purpose=MY_PURPOSE,
        reason="IRB 2024-17 approved follow-up",
        owner_id=ME if "M" in cell else SOMEONE_ELSE,
    )
    return principal, resource


def violations(
    cell: str, principal: Principal, resource: Resource
) -> list[tuple[str, Principal, Resource]]:
    """For each condition letter, a request that breaks only that condition."""
    broken = {
        "S": [
            (principal, replace(resource, site=OTHER_SITE)),
            (principal, replace(resource, site=None)),
        ],
        "P": [
            (principal, replace(resource, purpose=OTHER_PURPOSE)),
            (principal, replace(resource, purpose=None)),
        ],
        "R": [
            (principal, replace(resource, reason=None)),
            (principal, replace(resource, reason="   ")),
        ],
        "O": [
            (principal, replace(resource, owner_id=ME)),
            (principal, replace(resource, owner_id=None)),
        ],
        "M": [
            (principal, replace(resource, owner_id=SOMEONE_ELSE)),
            (principal, replace(resource, owner_id=None)),
        ],
    }
    return [(letter, *case) for letter in cell for case in broken[letter]]


def test_docstring_table_is_the_code_table() -> None:
    assert authz.__doc__ is not None
    assert render_rule_table() in authz.__doc__


def test_docstring_covers_every_operation_zone_and_role() -> None:
    expected = {(label(op, zone), role.value) for (op, zone) in all_rows() for role in Role}
    assert set(DOCUMENTED) == expected


@pytest.mark.parametrize(
    ("operation", "zone", "role"),
    [(op, zone, role) for (op, zone), role in itertools.product(all_rows(), Role)],
    ids=lambda value: getattr(value, "value", str(value)),
)
def test_matrix_cell(operation: Operation, zone: Zone | None, role: Role) -> None:
    cell = DOCUMENTED[(label(operation, zone), role.value)]
    principal, resource = satisfying(role, cell)
    resource = replace(resource, zone=zone)
    decision = authorize(principal, operation, resource)
    if cell == "-":
        assert not decision.allowed, decision.reason
        return
    assert decision.allowed, decision.reason
    for letter, bad_principal, bad_resource in violations(
        cell.replace("A", ""), principal, resource
    ):
        refused = authorize(bad_principal, operation, bad_resource)
        assert not refused.allowed, f"condition {letter} not enforced"


@pytest.mark.parametrize(
    ("operation", "zone", "role"),
    [
        (op, zone, role)
        for (op, zone), role in itertools.product(all_rows(), Role)
        if DOCUMENTED[(label(op, zone), role.value)] != "-"
    ],
)
def test_disabled_user_is_always_denied(
    operation: Operation, zone: Zone | None, role: Role
) -> None:
    principal, resource = satisfying(role, DOCUMENTED[(label(operation, zone), role.value)])
    disabled = replace(principal, active=False)
    assert not authorize(disabled, operation, replace(resource, zone=zone)).allowed


def test_unrestricted_principal_passes_site_rule_without_a_site() -> None:
    steward = Principal(user_id=1, name="s", roles=frozenset({Role.STEWARD}), sites=None)
    assert authorize(steward, Operation.DATA_READ, Resource(zone=Zone.RAW)).allowed
    restricted = replace(steward, sites=frozenset({"north"}))
    assert not authorize(restricted, Operation.DATA_READ, Resource(zone=Zone.RAW)).allowed


def test_data_operation_without_zone_is_denied() -> None:
    agent = Principal(user_id=1, name="a", roles=frozenset(Role), sites=None)
    decision = authorize(agent, Operation.DATA_READ, Resource())
    assert not decision.allowed
    assert "zone" in decision.reason


def test_no_role_means_no_access() -> None:
    nobody = Principal(user_id=1, name="n", roles=frozenset())
    for operation, zone in all_rows():
        assert not authorize(nobody, operation, Resource(zone=zone, reason="x")).allowed


def test_any_role_of_several_may_allow() -> None:
    both = Principal(user_id=1, name="b", roles=frozenset({Role.AUDITOR, Role.HONEST_BROKER}))
    assert authorize(both, Operation.REIDENTIFY, Resource(reason="IRB")).allowed
    assert authorize(both, Operation.AUDIT_EXPORT, Resource()).allowed
    assert not authorize(both, Operation.DATA_READ, Resource(zone=Zone.RAW)).allowed


def test_only_stewards_and_agents_read_raw_and_quarantine() -> None:
    for zone in (Zone.RAW, Zone.QUARANTINE):
        readers = {
            role
            for role in Role
            if authorize(
                Principal(1, "x", frozenset({role})), Operation.DATA_READ, Resource(zone=zone)
            )
        }
        assert readers == {Role.STEWARD, Role.SERVICE_AGENT}


def test_only_honest_brokers_reidentify_and_only_with_a_reason() -> None:
    allowed = {
        role
        for role in Role
        if authorize(
            Principal(1, "x", frozenset({role})), Operation.REIDENTIFY, Resource(reason="IRB")
        )
    }
    assert allowed == {Role.HONEST_BROKER}
    broker = Principal(1, "x", frozenset({Role.HONEST_BROKER}))
    decision = authorize(broker, Operation.REIDENTIFY, Resource())
    assert not decision.allowed
    assert "reason" in decision.reason


def test_ensure_allowed_raises_a_typed_error() -> None:
    with pytest.raises(PermissionDenied, match="permission denied"):
        ensure_allowed(Principal(1, "x", frozenset()), Operation.DB_UPGRADE, Resource())
    decision = ensure_allowed(
        Principal(1, "x", frozenset({Role.ADMIN})), Operation.DB_UPGRADE, Resource()
    )
    assert isinstance(decision, Decision) and decision
