"""The one authorisation function: ``authorize(principal, operation, resource) -> Decision``.

Every command, API call and library method that changes state or reads data asks this
function first. Anything not granted below is denied (deny by default), and so is everything
asked by a disabled user. A principal holding several roles is allowed when any one of its
roles allows. Data operations name the zone of the data they touch in ``Resource.zone``; a
data operation without a zone is denied.

Cells: ``-`` denied; ``A`` allowed; otherwise allowed only when every condition letter holds:

- ``S`` site: the resource's site is one of the principal's sites (a principal without a site
  list may act on every site; a restricted principal is refused when the site is unknown);
- ``P`` purpose: the resource's purpose of use is one of the principal's purposes;
- ``R`` reason: the request states a non-blank reason;
- ``O`` other: the resource's owner (a proposer or requester) is not the principal, so nobody
  approves their own change;
- ``M`` mine: the resource's owner is the principal (a user's own tokens).

| operation | admin | steward | researcher | partner | auditor | honest_broker | service_agent |
| --- | --- | --- | --- | --- | --- | --- | --- |
| data.read (raw) | - | S | - | - | - | - | S |
| data.read (quarantine) | - | S | - | - | - | - | S |
| data.read (deid) | - | S | S | - | - | - | S |
| data.read (curated) | - | S | S | P | - | - | S |
| data.write (raw) | - | - | - | - | - | - | S |
| data.write (quarantine) | - | - | - | - | - | - | S |
| data.write (deid) | - | - | - | - | - | - | S |
| data.write (curated) | - | S | S | - | - | - | S |
| job.run | S | S | - | - | - | - | S |
| job.read | A | S | S | - | A | - | S |
| review.decide | - | S | - | - | - | - | - |
| profile.read | A | A | A | - | A | A | A |
| profile.propose | A | A | - | - | - | - | - |
| profile.approve | - | O | - | - | - | - | - |
| profile.activate | - | A | - | - | - | - | - |
| profile.disable | A | A | - | - | - | - | - |
| site.read | A | A | A | - | A | - | A |
| site.manage | A | A | - | - | - | - | - |
| user.read | A | - | - | - | A | - | - |
| user.manage | A | - | - | - | - | - | - |
| token.manage | A | M | M | M | M | M | M |
| audit.read | A | A | - | - | A | - | - |
| audit.verify | A | A | - | - | A | - | - |
| audit.export | A | - | - | - | A | - | - |
| share.request | - | S | S | - | - | - | - |
| share.approve | - | O | - | - | - | - | - |
| reidentify | - | - | - | - | - | R | - |
| vault.rotate | A | - | - | - | - | - | - |
| db.upgrade | A | - | - | - | - | - | - |

Why these cells: only service agents and stewards touch the raw zone and quarantine, where
PHI lives; only honest brokers re-identify, and only with a stated reason; approvals are
separated from proposals; admins run the installation but see no patient data; auditors read
the trail and the users, and change nothing. ``tests/governance/test_authz.py`` walks every
cell of this table as written here, and checks that the table in code renders to it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from phigate.governance.errors import PermissionDenied


class Role(enum.StrEnum):
    """What a user may do is the union of what their roles allow."""

    ADMIN = "admin"
    STEWARD = "steward"
    RESEARCHER = "researcher"
    PARTNER = "partner"
    AUDITOR = "auditor"
    HONEST_BROKER = "honest_broker"
    SERVICE_AGENT = "service_agent"


class Zone(enum.StrEnum):
    """Where data lives; PHI is in ``raw`` and ``quarantine`` only."""

    RAW = "raw"
    QUARANTINE = "quarantine"
    DEID = "deid"
    CURATED = "curated"


class Operation(enum.StrEnum):
    """Everything the control plane can be asked to allow."""

    DATA_READ = "data.read"
    DATA_WRITE = "data.write"
    JOB_RUN = "job.run"
    JOB_READ = "job.read"
    REVIEW_DECIDE = "review.decide"
    PROFILE_READ = "profile.read"
    PROFILE_PROPOSE = "profile.propose"
    PROFILE_APPROVE = "profile.approve"
    PROFILE_ACTIVATE = "profile.activate"
    PROFILE_DISABLE = "profile.disable"
    SITE_READ = "site.read"
    SITE_MANAGE = "site.manage"
    USER_READ = "user.read"
    USER_MANAGE = "user.manage"
    TOKEN_MANAGE = "token.manage"
    AUDIT_READ = "audit.read"
    AUDIT_VERIFY = "audit.verify"
    AUDIT_EXPORT = "audit.export"
    SHARE_REQUEST = "share.request"
    SHARE_APPROVE = "share.approve"
    REIDENTIFY = "reidentify"
    VAULT_ROTATE = "vault.rotate"
    DB_UPGRADE = "db.upgrade"

    @property
    def zoned(self) -> bool:
        """Data operations are decided per zone."""
        return self in (Operation.DATA_READ, Operation.DATA_WRITE)


class Condition(enum.StrEnum):
    """An attribute rule a cell may add on top of the role (letters as in the table)."""

    SITE = "S"
    PURPOSE = "P"
    REASON = "R"
    OTHER = "O"
    MINE = "M"


ROLE_ORDER: tuple[Role, ...] = tuple(Role)
RuleKey = tuple[Operation, Zone | None]

_O, _Z = Operation, Zone
# One row per operation (and zone), one cell per role in ROLE_ORDER; see the module docstring.
RULE_TABLE: Mapping[RuleKey, tuple[str, ...]] = {
    (_O.DATA_READ, _Z.RAW): ("-", "S", "-", "-", "-", "-", "S"),
    (_O.DATA_READ, _Z.QUARANTINE): ("-", "S", "-", "-", "-", "-", "S"),
    (_O.DATA_READ, _Z.DEID): ("-", "S", "S", "-", "-", "-", "S"),
    (_O.DATA_READ, _Z.CURATED): ("-", "S", "S", "P", "-", "-", "S"),
    (_O.DATA_WRITE, _Z.RAW): ("-", "-", "-", "-", "-", "-", "S"),
    (_O.DATA_WRITE, _Z.QUARANTINE): ("-", "-", "-", "-", "-", "-", "S"),
    (_O.DATA_WRITE, _Z.DEID): ("-", "-", "-", "-", "-", "-", "S"),
    (_O.DATA_WRITE, _Z.CURATED): ("-", "S", "S", "-", "-", "-", "S"),
    (_O.JOB_RUN, None): ("S", "S", "-", "-", "-", "-", "S"),
    (_O.JOB_READ, None): ("A", "S", "S", "-", "A", "-", "S"),
    (_O.REVIEW_DECIDE, None): ("-", "S", "-", "-", "-", "-", "-"),
    (_O.PROFILE_READ, None): ("A", "A", "A", "-", "A", "A", "A"),
    (_O.PROFILE_PROPOSE, None): ("A", "A", "-", "-", "-", "-", "-"),
    (_O.PROFILE_APPROVE, None): ("-", "O", "-", "-", "-", "-", "-"),
    (_O.PROFILE_ACTIVATE, None): ("-", "A", "-", "-", "-", "-", "-"),
    (_O.PROFILE_DISABLE, None): ("A", "A", "-", "-", "-", "-", "-"),
    (_O.SITE_READ, None): ("A", "A", "A", "-", "A", "-", "A"),
    (_O.SITE_MANAGE, None): ("A", "A", "-", "-", "-", "-", "-"),
    (_O.USER_READ, None): ("A", "-", "-", "-", "A", "-", "-"),
    (_O.USER_MANAGE, None): ("A", "-", "-", "-", "-", "-", "-"),
    (_O.TOKEN_MANAGE, None): ("A", "M", "M", "M", "M", "M", "M"),
    (_O.AUDIT_READ, None): ("A", "A", "-", "-", "A", "-", "-"),
    (_O.AUDIT_VERIFY, None): ("A", "A", "-", "-", "A", "-", "-"),
    (_O.AUDIT_EXPORT, None): ("A", "-", "-", "-", "A", "-", "-"),
    (_O.SHARE_REQUEST, None): ("-", "S", "S", "-", "-", "-", "-"),
    (_O.SHARE_APPROVE, None): ("-", "O", "-", "-", "-", "-", "-"),
    (_O.REIDENTIFY, None): ("-", "-", "-", "-", "-", "R", "-"),
    (_O.VAULT_ROTATE, None): ("A", "-", "-", "-", "-", "-", "-"),
    (_O.DB_UPGRADE, None): ("A", "-", "-", "-", "-", "-", "-"),
}


def _cell_conditions(cell: str) -> frozenset[Condition] | None:
    """None for a denied cell, else the conditions that must all hold (empty for ``A``)."""
    if cell == "-":
        return None
    if cell == "A":
        return frozenset()
    return frozenset(Condition(letter) for letter in cell)


GRANTS: Mapping[RuleKey, Mapping[Role, frozenset[Condition]]] = {
    key: {
        role: conditions
        for role, cell in zip(ROLE_ORDER, cells, strict=True)
        if (conditions := _cell_conditions(cell)) is not None
    }
    for key, cells in RULE_TABLE.items()
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a user (through a password, a token or the local admin) and their attributes.

    ``sites`` None means every site; ``purposes`` are the purposes of use the user may serve.
    ``user_id`` None is phigate itself (bootstrap, seeding), which holds no roles.
    """

    user_id: int | None
    name: str
    roles: frozenset[Role]
    sites: frozenset[str] | None = None
    purposes: frozenset[str] = frozenset()
    active: bool = True
    via: str = "local"
    token_id: int | None = None


SYSTEM = Principal(user_id=None, name="phigate", roles=frozenset(), via="system")


@dataclass(frozen=True, slots=True)
class Resource:
    """What the operation touches and the request's context: zone, site, purpose, owner, reason."""

    zone: Zone | None = None
    site: str | None = None
    purpose: str | None = None
    owner_id: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer, with a one-line reason that is safe to show and to audit."""

    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _label(operation: Operation, zone: Zone | None) -> str:
    return f"{operation.value} ({zone.value})" if zone else operation.value


def _unmet(
    conditions: frozenset[Condition], principal: Principal, resource: Resource
) -> str | None:
    """The first condition that does not hold, described, or None when all hold."""
    for condition in sorted(conditions):
        problem = _CHECKS[condition](principal, resource)
        if problem is not None:
            return problem
    return None


def _check_site(principal: Principal, resource: Resource) -> str | None:
    if principal.sites is None:
        return None
    if resource.site is None:
        return "the site is unknown and the user is limited to named sites"
    if resource.site not in principal.sites:
        return f"site {resource.site!r} is not one of the user's sites"
    return None


def _check_purpose(principal: Principal, resource: Resource) -> str | None:
    if resource.purpose is None:
        return "no purpose of use was stated"
    if resource.purpose not in principal.purposes:
        return f"purpose {resource.purpose!r} is not one of the user's purposes"
    return None


def _check_reason(_principal: Principal, resource: Resource) -> str | None:
    if resource.reason is None or not resource.reason.strip():
        return "a reason must be stated"
    return None


def _check_other(principal: Principal, resource: Resource) -> str | None:
    if resource.owner_id is None or principal.user_id is None:
        return "the owner of the change is unknown"
    if resource.owner_id == principal.user_id:
        return "nobody may approve their own proposal or request"
    return None


def _check_mine(principal: Principal, resource: Resource) -> str | None:
    if resource.owner_id is None or resource.owner_id != principal.user_id:
        return "only the owner may do this"
    return None


_CHECKS = {
    Condition.SITE: _check_site,
    Condition.PURPOSE: _check_purpose,
    Condition.REASON: _check_reason,
    Condition.OTHER: _check_other,
    Condition.MINE: _check_mine,
}


def authorize(principal: Principal, operation: Operation, resource: Resource) -> Decision:
    """Allow or deny ``operation`` on ``resource`` for ``principal``; deny unless granted."""
    zone = resource.zone if operation.zoned else None
    label = _label(operation, zone)
    if not principal.active:
        return Decision(False, f"user {principal.name!r} is disabled")
    if operation.zoned and zone is None:
        return Decision(False, f"{label} needs the zone of the data")
    grants = GRANTS.get((operation, zone), {})
    problems: list[str] = []
    for role in sorted(principal.roles):
        conditions = grants.get(role)
        if conditions is None:
            continue
        problem = _unmet(conditions, principal, resource)
        if problem is None:
            return Decision(True, f"role {role.value} may {label}")
        problems.append(problem)
    if problems:
        return Decision(False, f"{label}: {problems[0]}")
    roles = ", ".join(sorted(role.value for role in principal.roles)) or "no role"
    return Decision(False, f"{label} is not allowed for {roles}")


def ensure_allowed(principal: Principal, operation: Operation, resource: Resource) -> Decision:
    """Like :func:`authorize`, but raise :class:`PermissionDenied` on a denial."""
    decision = authorize(principal, operation, resource)
    if not decision.allowed:
        raise PermissionDenied(decision)
    return decision


def render_rule_table() -> str:
    """The rule table as the Markdown table of this module's docstring."""
    header = "| operation | " + " | ".join(role.value for role in ROLE_ORDER) + " |"
    divider = "| --- |" + " --- |" * len(ROLE_ORDER)
    rows = [
        f"| {_label(operation, zone)} | " + " | ".join(cells) + " |"
        for (operation, zone), cells in RULE_TABLE.items()
    ]
    return "\n".join([header, divider, *rows])
