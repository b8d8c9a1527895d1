"""The policy library: de-identification profiles under change control.

A profile version is immutable: its YAML text, content hash, author, time and change note never
change once written, so any output naming a version hash can be traced back to the exact rules
that made it, forever. A version is proposed, approved by a steward other than its author,
then activated; jobs use only approved versions, by default the active one. Rollback returns
to the version that was active before the last activation. Profiles can be cloned (the copy is
a new proposal) and disabled for a while. Built-in profiles are seeded as approved version 1.
Every change is audited.

The active version is not stored as a pointer: it is derived by replaying the activation log
(activate pushes, rollback pops), so history and the current state cannot disagree.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from phigate.governance.audit import record_event, require
from phigate.governance.authz import SYSTEM, Operation, Principal, Resource
from phigate.governance.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    ProfileChangeRefused,
    ProfileNotUsable,
)
from phigate.governance.models import (
    Profile,
    ProfileActivation,
    ProfileApproval,
    ProfileVersion,
)
from phigate.governance.users import check_name

BUILTIN_PACKAGE = "phigate.policy"
BUILTIN_FOLDER = "profiles"
_MIN_HASH_PREFIX = 6
_NAME_LINE = re.compile(r"^name:[^\n]*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ParsedProfile:
    """What the library needs from a profile's text: its name and content hash."""

    name: str
    version: str


def _parse_profile(text: str) -> ParsedProfile:
    """Validate a profile's YAML and get its name and content hash.

    The one place that depends on :mod:`phigate.policy`: once
    ``phigate.policy.profile.parse_profile_text`` exists it is used (it validates against the
    schema and hashes the compiled content). Until then: YAML must be a mapping with a
    ``name``; the hash is SHA-256 of its canonical JSON.
    """
    try:
        module = importlib.import_module("phigate.policy.profile")
    except ModuleNotFoundError as exc:
        if exc.name != "phigate.policy.profile":
            raise
        return _parse_profile_fallback(text)
    profile: Any = module.parse_profile_text(text)
    return ParsedProfile(name=str(profile.name), version=str(profile.version))


def _parse_profile_fallback(text: str) -> ParsedProfile:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"the profile is not valid YAML{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise InvalidInput("a profile must be a YAML mapping with a `name`")
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return ParsedProfile(name=data["name"], version=hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version as history shows it."""

    name: str
    number: int
    version: str
    state: str
    active: bool
    author: str
    created_at: datetime
    change_note: str
    origin: str
    approved_by: str | None
    approved_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        data = {field: getattr(self, field) for field in self.__slots__}
        data["created_at"] = self.created_at.isoformat()
        data["approved_at"] = self.approved_at.isoformat() if self.approved_at else None
        return data


@dataclass(frozen=True, slots=True)
class ProfileSummary:
    """A profile's name, active version and whether it is disabled."""

    name: str
    active_number: int | None
    active_version: str | None
    disabled: bool
    versions: int


# --- lookups ------------------------------------------------------------------------------


def _get_profile(session: Session, name: str) -> Profile:
    profile = session.scalar(select(Profile).where(Profile.name == name))
    if profile is None:
        raise NotFound(f"no profile named {name!r} in the library; see `phigate profile list`")
    return profile


def _versions(session: Session, profile: Profile) -> list[ProfileVersion]:
    query = select(ProfileVersion).where(ProfileVersion.profile_id == profile.id)
    return list(session.scalars(query.order_by(ProfileVersion.number)))


def find_version(session: Session, name: str, ref: str) -> ProfileVersion:
    """A version by number (``3``) or by a unique prefix of its hash (6+ characters)."""
    profile = _get_profile(session, name)
    versions = _versions(session, profile)
    if ref.isdigit():
        matches = [version for version in versions if version.number == int(ref)]
    elif len(ref) >= _MIN_HASH_PREFIX:
        matches = [version for version in versions if version.version.startswith(ref)]
    else:
        raise InvalidInput(f"give a version number or at least {_MIN_HASH_PREFIX} hash characters")
    if len(matches) != 1:
        problem = "matches several versions" if matches else "matches no version"
        raise NotFound(f"version {ref!r} of profile {name!r} {problem}; see `profile history`")
    return matches[0]


def _approval(session: Session, version: ProfileVersion) -> ProfileApproval | None:
    return session.scalar(select(ProfileApproval).where(ProfileApproval.version_id == version.id))


def _activation_stack(session: Session, profile: Profile) -> list[int]:
    """Replay activations: activate pushes a version id, rollback pops one."""
    query = select(ProfileActivation).where(ProfileActivation.profile_id == profile.id)
    stack: list[int] = []
    for activation in session.scalars(query.order_by(ProfileActivation.id)):
        if activation.kind == "rollback":
            stack.pop()
        else:
            stack.append(activation.version_id)
    return stack


def active_version(session: Session, name: str) -> ProfileVersion | None:
    """The active version of ``name``, or None if none was ever activated."""
    stack = _activation_stack(session, _get_profile(session, name))
    return session.get(ProfileVersion, stack[-1]) if stack else None


def version_for_job(session: Session, name: str, ref: str | None = None) -> ProfileVersion:
    """The version a job must use: ``ref`` if given and approved, else the active one.

    Raises :class:`ProfileNotUsable` for a disabled profile, an unapproved version or a
    profile with no active version, so no job ever runs under rules nobody approved.
    """
    profile = _get_profile(session, name)
    if profile.disabled:
        raise ProfileNotUsable(f"profile {name!r} is disabled; a steward can enable it")
    version = find_version(session, name, ref) if ref else active_version(session, name)
    if version is None:
        raise ProfileNotUsable(f"profile {name!r} has no active version; activate one first")
    if _approval(session, version) is None:
        raise ProfileNotUsable(
            f"version {version.number} of profile {name!r} is not approved; a steward must approve"
        )
    return version


def list_profiles(session: Session, actor: Principal) -> list[ProfileSummary]:
    """Every profile in the library with its active version."""
    require(session, actor, Operation.PROFILE_READ, Resource())
    summaries = []
    for profile in session.scalars(select(Profile).order_by(Profile.name)):
        active = active_version(session, profile.name)
        count = session.scalar(select(func.count()).where(ProfileVersion.profile_id == profile.id))
        summaries.append(
            ProfileSummary(
                profile.name,
                active.number if active else None,
                active.version if active else None,
                profile.disabled,
                int(count or 0),
            )
        )
    return summaries


# --- change control -----------------------------------------------------------------------


def _add_version(
    session: Session,
    author: Principal,
    text: str,
    *,
    note: str,
    origin: str,
    parent: ProfileVersion | None = None,
) -> ProfileVersion:
    parsed = _parse_profile(text)
    check_name(parsed.name, "profile name")
    profile = session.scalar(select(Profile).where(Profile.name == parsed.name))
    if profile is None:
        profile = Profile(name=parsed.name, disabled=False)
        session.add(profile)
        session.flush()
    existing = session.scalar(
        select(ProfileVersion).where(
            ProfileVersion.profile_id == profile.id, ProfileVersion.version == parsed.version
        )
    )
    if existing is not None:
        raise AlreadyExists(
            f"profile {parsed.name!r} already has this content as version {existing.number}"
        )
    last = session.scalar(
        select(func.max(ProfileVersion.number)).where(ProfileVersion.profile_id == profile.id)
    )
    version = ProfileVersion(
        profile_id=profile.id,
        number=int(last or 0) + 1,
        version=parsed.version,
        yaml_text=text,
        author_id=author.user_id,
        author_name=author.name,
        change_note=note,
        origin=origin,
        parent_version_id=parent.id if parent else None,
    )
    session.add(version)
    session.flush()
    return version


def _refs(version: ProfileVersion) -> list[str]:
    return [f"profile:{version.profile.name}", f"profile-version:{version.number}"]


def propose_profile(session: Session, actor: Principal, text: str, *, note: str) -> ProfileVersion:
    """Store ``text`` as a new, not yet approved version of the profile it names."""
    require(session, actor, Operation.PROFILE_PROPOSE, Resource())
    if not note.strip():
        raise InvalidInput("say what changed and why with a change note")
    version = _add_version(session, actor, text, note=note, origin="proposal")
    record_event(
        session,
        actor=actor,
        operation="profile.propose",
        objects=_refs(version),
        profile_version=version.version,
        reason=note,
    )
    return version


def approve_profile(
    session: Session, actor: Principal, name: str, ref: str, *, note: str | None = None
) -> ProfileVersion:
    """Approve a proposed version; the authorisation function refuses its own author."""
    version = find_version(session, name, ref)
    owner = version.author_id if version.author_id is not None else -1
    require(
        session, actor, Operation.PROFILE_APPROVE, Resource(owner_id=owner), objects=_refs(version)
    )
    if _approval(session, version) is not None:
        raise ProfileChangeRefused(f"version {version.number} of {name!r} is already approved")
    session.add(
        ProfileApproval(
            version_id=version.id, approved_by_id=actor.user_id, approved_by=actor.name, note=note
        )
    )
    record_event(
        session,
        actor=actor,
        operation="profile.approve",
        objects=_refs(version),
        profile_version=version.version,
        reason=note,
    )
    return version


def _activate(session: Session, actor: Principal, version: ProfileVersion, kind: str) -> None:
    session.add(
        ProfileActivation(
            profile_id=version.profile_id,
            version_id=version.id,
            kind=kind,
            actor_id=actor.user_id,
            actor_name=actor.name,
        )
    )
    session.flush()
    record_event(
        session,
        actor=actor,
        operation=f"profile.{kind}",
        objects=_refs(version),
        profile_version=version.version,
    )


def activate_profile(session: Session, actor: Principal, name: str, ref: str) -> ProfileVersion:
    """Make an approved version the one new jobs use by default."""
    require(session, actor, Operation.PROFILE_ACTIVATE, Resource())
    version = find_version(session, name, ref)
    if _approval(session, version) is None:
        raise ProfileChangeRefused(
            f"version {version.number} of {name!r} is not approved; it cannot be activated"
        )
    current = active_version(session, name)
    if current is not None and current.id == version.id:
        raise ProfileChangeRefused(f"version {version.number} of {name!r} is already active")
    _activate(session, actor, version, "activate")
    return version


def rollback_profile(session: Session, actor: Principal, name: str) -> ProfileVersion:
    """Return to the version that was active before the last activation."""
    require(session, actor, Operation.PROFILE_ACTIVATE, Resource())
    stack = _activation_stack(session, _get_profile(session, name))
    if len(stack) < 2:
        raise ProfileChangeRefused(f"profile {name!r} has no earlier active version to return to")
    previous = session.get(ProfileVersion, stack[-2])
    assert previous is not None
    _activate(session, actor, previous, "rollback")
    return previous


def set_profile_disabled(
    session: Session, actor: Principal, name: str, *, disabled: bool, reason: str | None = None
) -> Profile:
    """Stop (or allow again) every job from using ``name``, keeping all its versions."""
    require(session, actor, Operation.PROFILE_DISABLE, Resource())
    profile = _get_profile(session, name)
    if profile.disabled == disabled:
        state = "disabled" if disabled else "enabled"
        raise ProfileChangeRefused(f"profile {name!r} is already {state}")
    profile.disabled, profile.disabled_reason = disabled, reason if disabled else None
    operation = "profile.disable" if disabled else "profile.enable"
    record_event(
        session, actor=actor, operation=operation, objects=[f"profile:{name}"], reason=reason
    )
    return profile


def _rename(text: str, new_name: str) -> str:
    if _NAME_LINE.search(text):
        return _NAME_LINE.sub(f"name: {new_name}", text, count=1)
    return f"name: {new_name}\n{text}"


def clone_profile(
    session: Session,
    actor: Principal,
    source: str,
    new_name: str,
    *,
    ref: str | None = None,
    note: str | None = None,
) -> ProfileVersion:
    """Copy a version (the active one by default) under a new name, as a new proposal."""
    require(session, actor, Operation.PROFILE_PROPOSE, Resource())
    check_name(new_name, "profile name")
    if session.scalar(select(Profile.id).where(Profile.name == new_name)) is not None:
        raise AlreadyExists(f"a profile named {new_name!r} already exists")
    original = find_version(session, source, ref) if ref else active_version(session, source)
    if original is None:
        raise NotFound(f"profile {source!r} has no active version to clone; name one")
    text = _rename(original.yaml_text, new_name)
    if _parse_profile(text).name != new_name:
        raise InvalidInput("cannot rename the clone: put `name:` on its own top-level line")
    version = _add_version(
        session,
        actor,
        text,
        origin="clone",
        parent=original,
        note=note or f"clone of {source} version {original.number}",
    )
    record_event(
        session,
        actor=actor,
        operation="profile.clone",
        objects=[*_refs(original), *_refs(version)],
        profile_version=version.version,
    )
    return version


def profile_history(session: Session, actor: Principal, name: str) -> list[VersionInfo]:
    """Every version of ``name``, oldest first, with its approval and whether it is active."""
    require(session, actor, Operation.PROFILE_READ, Resource())
    active = active_version(session, name)
    history = []
    for version in _versions(session, _get_profile(session, name)):
        approval = _approval(session, version)
        history.append(
            VersionInfo(
                name=name,
                number=version.number,
                version=version.version,
                state="approved" if approval else "proposed",
                active=active is not None and active.id == version.id,
                author=version.author_name,
                created_at=version.created_at,
                change_note=version.change_note,
                origin=version.origin,
                approved_by=approval.approved_by if approval else None,
                approved_at=approval.approved_at if approval else None,
            )
        )
    return history


def diff_versions(session: Session, actor: Principal, name: str, old: str, new: str) -> str:
    """A unified diff between two versions' YAML texts."""
    require(session, actor, Operation.PROFILE_READ, Resource())
    before, after = find_version(session, name, old), find_version(session, name, new)
    lines = difflib.unified_diff(
        before.yaml_text.splitlines(keepends=True),
        after.yaml_text.splitlines(keepends=True),
        fromfile=f"{name} v{before.number}",
        tofile=f"{name} v{after.number}",
    )
    return "".join(lines)


# --- built-in profiles --------------------------------------------------------------------


def _builtin_texts() -> list[str]:
    folder = resources.files(BUILTIN_PACKAGE) / BUILTIN_FOLDER
    if not folder.is_dir():
        return []
    entries = [entry for entry in folder.iterdir() if entry.name.endswith(".yaml")]
    return [entry.read_text(encoding="utf-8") for entry in sorted(entries, key=lambda e: e.name)]


def seed_builtin_profiles(session: Session, texts: Sequence[str] | None = None) -> list[str]:
    """Add shipped profiles (or ``texts``): a new name becomes approved, active version 1; a
    changed built-in becomes a new approved version that a steward activates. Returns what
    was done, one line per change."""
    notes = []
    for text in _builtin_texts() if texts is None else texts:
        note = _seed_one(session, text)
        if note:
            notes.append(note)
    return notes


def _seed_one(session: Session, text: str) -> str | None:
    parsed = _parse_profile(text)
    profile = session.scalar(select(Profile).where(Profile.name == parsed.name))
    if profile is not None:
        known = session.scalar(
            select(ProfileVersion.id).where(
                ProfileVersion.profile_id == profile.id, ProfileVersion.version == parsed.version
            )
        )
        if known is not None:
            return None
    version = _add_version(session, SYSTEM, text, note="built-in profile", origin="builtin")
    session.add(
        ProfileApproval(version_id=version.id, approved_by=SYSTEM.name, note="shipped with phigate")
    )
    record_event(
        session,
        actor=SYSTEM,
        operation="profile.seed",
        objects=_refs(version),
        profile_version=version.version,
    )
    if version.number == 1:
        _activate(session, SYSTEM, version, "activate")
        return f"{parsed.name}: built-in version 1 approved and active"
    return (
        f"{parsed.name}: new built-in version {version.number} approved; "
        f"activate it with `phigate profile activate {parsed.name} {version.number}`"
    )
