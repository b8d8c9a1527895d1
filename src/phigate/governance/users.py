"""Users, their roles and attributes, argon2 passwords and API tokens.

Passwords are stored only as argon2id hashes. API tokens are random (256 bits), shown once,
stored only as their SHA-256 (a fast hash is right here: the token is already high-entropy),
expire, and can be revoked. Every change and every sign-in is written to the audit chain.
Names are short slugs so they are safe in logs, audit entries and error messages.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from phigate.governance.audit import Outcome, record_event, require
from phigate.governance.authz import Operation, Principal, Resource, Role
from phigate.governance.errors import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidInput,
    NotFound,
)
from phigate.governance.models import ApiToken, User, UserRole, utcnow

TOKEN_PREFIX = "phg_"
DEFAULT_TOKEN_DAYS = 90
MAX_TOKEN_DAYS = 3650
MIN_PASSWORD_LENGTH = 12
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ATTRIBUTE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_hasher = PasswordHasher()


def use_fast_password_hashing() -> None:
    """Cheapest argon2 parameters: for test suites only, never in a deployment.

    Hashes record their own parameters, so hashes made either way still verify, and a user
    whose hash is weaker than the current setting is re-hashed at the next sign-in.
    """
    global _hasher
    _hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``, refusing passwords too short to be worth hashing."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"passwords must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def check_name(name: str, what: str = "user name") -> str:
    """A lower-case slug (letters, digits, ``.``, ``_``, ``-``; at most 64 characters)."""
    if not _NAME_PATTERN.match(name):
        raise InvalidInput(f"{what} must be a lower-case slug of at most 64 characters")
    return name


def _check_attributes(values: Iterable[str], what: str) -> list[str]:
    cleaned = sorted(set(values))
    for value in cleaned:
        if not _ATTRIBUTE_PATTERN.match(value):
            raise InvalidInput(f"each {what} must be a short name without spaces")
    return cleaned


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Role names to roles, with a clear error naming the valid ones."""
    roles: set[Role] = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            valid = ", ".join(role.value for role in Role)
            raise InvalidInput(f"unknown role {name!r}; use one of: {valid}") from None
    if not roles:
        raise InvalidInput("a user needs at least one role")
    return frozenset(roles)


def principal_for(user: User, *, via: str, token_id: int | None = None) -> Principal:
    """The authorisation view of a user."""
    return Principal(
        user_id=user.id,
        name=user.name,
        roles=frozenset(Role(name) for name in user.role_names),
        sites=None if user.sites is None else frozenset(user.sites),
        purposes=frozenset(user.purposes),
        active=user.active,
        via=via,
        token_id=token_id,
    )


def get_user(session: Session, name: str) -> User:
    """The user called ``name``, or :class:`NotFound`."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise NotFound(f"no user named {name!r}; see `phigate user list`")
    return user


@dataclass(frozen=True, slots=True)
class NewUser:
    """What :func:`create_user` needs; ``sites`` None means every site."""

    name: str
    roles: frozenset[Role]
    password: str | None = None
    sites: Sequence[str] | None = None
    purposes: Sequence[str] = ()


def create_user(session: Session, actor: Principal, new: NewUser) -> User:
    """Add a user (admins only). Without a password the user can sign in by token only."""
    require(session, actor, Operation.USER_MANAGE, Resource())
    name = check_name(new.name)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise AlreadyExists(f"a user named {name!r} already exists")
    user = _build_user(name, new)
    session.add(user)
    session.flush()
    roles = ",".join(sorted(role.value for role in new.roles))
    record_event(
        session,
        actor=actor,
        operation="user.add",
        objects=[f"user:{user.id}"],
        reason=f"roles={roles}",
    )
    return user


def _build_user(name: str, new: NewUser) -> User:
    sites = None if new.sites is None else _check_attributes(new.sites, "site")
    return User(
        name=name,
        password_hash=None if new.password is None else hash_password(new.password),
        active=True,
        sites=sites,
        purposes=_check_attributes(new.purposes, "purpose of use"),
        roles=[UserRole(role=role.value) for role in sorted(new.roles)],
    )


def create_system_user(session: Session, name: str, roles: frozenset[Role]) -> User:
    """Add a user without an acting principal: only :func:`bootstrap` calls this."""
    user = _build_user(check_name(name), NewUser(name=name, roles=roles))
    session.add(user)
    session.flush()
    return user


def list_users(session: Session, actor: Principal) -> list[User]:
    """Every user, by name (admins and auditors)."""
    require(session, actor, Operation.USER_READ, Resource())
    return list(session.scalars(select(User).order_by(User.name)))


def disable_user(session: Session, actor: Principal, name: str) -> User:
    """Disable a user and revoke all their tokens; the row stays for the audit trail."""
    require(session, actor, Operation.USER_MANAGE, Resource())
    user = get_user(session, name)
    if user.id == actor.user_id:
        raise InvalidInput("you cannot disable yourself; ask another admin")
    now = utcnow()
    user.active, user.disabled_at = False, now
    for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)):
        token.revoked_at = token.revoked_at or now
    record_event(session, actor=actor, operation="user.disable", objects=[f"user:{user.id}"])
    return user


def authenticate_password(session: Session, name: str, password: str) -> Principal:
    """Sign in with a password; audit the attempt; raise one vague error for every failure."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None or user.password_hash is None or not user.active:
        _refuse_login(session, "password")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        _refuse_login(session, "password", user)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    principal = principal_for(user, via="password")
    record_event(session, actor=principal, operation="login", reason="password")
    session.commit()
    return principal


def _refuse_login(session: Session, method: str, user: User | None = None) -> NoReturn:
    actor = Principal(
        user_id=None if user is None else user.id, name="anonymous", roles=frozenset(), via=method
    )
    record_event(session, actor=actor, operation="login", outcome=Outcome.FAILURE, reason=method)
    session.commit()
    raise AuthenticationFailed("sign-in failed: unknown user, wrong password or disabled user")


# --- API tokens ---------------------------------------------------------------------------


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: ``secret`` is shown once and never stored."""

    id: int
    secret: str
    user_name: str
    label: str
    expires_at: datetime


def create_token(
    session: Session,
    actor: Principal,
    user_name: str,
    *,
    label: str = "cli",
    days: int = DEFAULT_TOKEN_DAYS,
) -> IssuedToken:
    """Issue a token for ``user_name`` (one's own, or anyone's for an admin)."""
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise InvalidInput(f"token lifetime must be 1 to {MAX_TOKEN_DAYS} days")
    user = get_user(session, user_name)
    require(session, actor, Operation.TOKEN_MANAGE, Resource(owner_id=user.id))
    if not user.active:
        raise InvalidInput(f"user {user.name!r} is disabled; enable a user before issuing tokens")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        label=check_name(label, "token label"),
        token_hash=hash_token(secret),
        prefix=secret[: len(TOKEN_PREFIX) + 6],
        expires_at=utcnow() + timedelta(days=days),
    )
    session.add(token)
    session.flush()
    record_event(
        session,
        actor=actor,
        operation="token.create",
        objects=[f"token:{token.id}", f"user:{user.id}"],
    )
    return IssuedToken(token.id, secret, user.name, token.label, token.expires_at)


def list_tokens(session: Session, actor: Principal, user_name: str) -> list[ApiToken]:
    """The tokens of one user (their own, or anyone's for an admin), newest first."""
    user = get_user(session, user_name)
    require(session, actor, Operation.TOKEN_MANAGE, Resource(owner_id=user.id))
    query = select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc())
    return list(session.scalars(query))


def revoke_token(session: Session, actor: Principal, token_id: int) -> ApiToken:
    """Revoke a token at once; revoking twice is harmless."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no token with id {token_id}; see `phigate token list`")
    require(session, actor, Operation.TOKEN_MANAGE, Resource(owner_id=token.user_id))
    token.revoked_at = token.revoked_at or utcnow()
    record_event(session, actor=actor, operation="token.revoke", objects=[f"token:{token.id}"])
    return token


def authenticate_token(session: Session, secret: str) -> Principal:
    """Sign in with a token; audit the use; refuse expired, revoked or unknown tokens alike."""
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    now = utcnow()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        _refuse_login(session, "token")
    if not token.user.active:
        _refuse_login(session, "token", token.user)
    token.last_used_at = now
    principal = principal_for(token.user, via="token", token_id=token.id)
    record_event(session, actor=principal, operation="token.use", objects=[f"token:{token.id}"])
    session.commit()
    return principal
