"""Who the CLI runs as, and the first setup of an installation's control plane.

The CLI acts as a named user too, so the same authorisation function and the same audit
trail cover commands and API calls alike. In order: a token (``--token`` or
``PHIGATE_TOKEN``), a user name and password (``PHIGATE_USER`` and ``PHIGATE_PASSWORD``),
else the local admin that ``phigate init`` creates. The local admin stands for whoever can
read PHIGATE_HOME (and so the database and the key): it holds the admin role only, which
runs the installation but never reads patient data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from phigate.governance.audit import record_event
from phigate.governance.authz import SYSTEM, Principal, Role
from phigate.governance.database import database_url, open_session, upgrade_database
from phigate.governance.errors import AuthenticationFailed
from phigate.governance.models import User
from phigate.governance.policy_library import seed_builtin_profiles
from phigate.governance.users import (
    authenticate_password,
    authenticate_token,
    create_system_user,
    principal_for,
)

LOCAL_ADMIN_NAME = "local-admin"
TOKEN_ENV = "PHIGATE_TOKEN"
USER_ENV = "PHIGATE_USER"
PASSWORD_ENV = "PHIGATE_PASSWORD"


def resolve_cli_identity(
    session: Session, env: Mapping[str, str], token: str | None = None
) -> Principal:
    """The principal a command runs as; sign-ins and token uses are audited (and committed)."""
    secret = (token or env.get(TOKEN_ENV, "")).strip()
    if secret:
        return authenticate_token(session, secret)
    user_name = env.get(USER_ENV, "").strip()
    if user_name:
        password = env.get(PASSWORD_ENV, "")
        if not password:
            raise AuthenticationFailed(f"{USER_ENV} is set but {PASSWORD_ENV} is not")
        return authenticate_password(session, user_name, password)
    return local_admin(session)


def local_admin(session: Session) -> Principal:
    """The installation's local admin, as created by :func:`bootstrap`."""
    user = session.scalar(select(User).where(User.name == LOCAL_ADMIN_NAME))
    if user is None:
        raise AuthenticationFailed(
            f"no identity: run `phigate init`, or set {TOKEN_ENV} or {USER_ENV}/{PASSWORD_ENV}"
        )
    if not user.active:
        raise AuthenticationFailed(f"the local admin is disabled; set {TOKEN_ENV} or {USER_ENV}")
    return principal_for(user, via="local")


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What :func:`bootstrap` did; running it again changes nothing and says so."""

    database_url: str
    revision: str
    admin_created: bool
    profile_notes: list[str] = field(default_factory=list)


def bootstrap(home: Path, env: Mapping[str, str] | None = None) -> BootstrapResult:
    """Migrate the database, create the local admin and seed the built-in profiles.

    ``phigate init`` calls this; it is idempotent, so ``init`` can be run again after an
    upgrade to apply new migrations and pick up new built-in profile versions.
    """
    environment = os.environ if env is None else env
    url = database_url(home, environment)
    if url.startswith("sqlite"):
        home.mkdir(parents=True, exist_ok=True)
    revision = upgrade_database(url)
    with open_session(url) as session:
        admin_created = _ensure_local_admin(session)
        notes = seed_builtin_profiles(session)
        session.commit()
    return BootstrapResult(_redacted(url), revision, admin_created, notes)


def _ensure_local_admin(session: Session) -> bool:
    if session.scalar(select(User.id).where(User.name == LOCAL_ADMIN_NAME)) is not None:
        return False
    user = create_system_user(session, LOCAL_ADMIN_NAME, frozenset({Role.ADMIN}))
    record_event(
        session,
        actor=SYSTEM,
        operation="user.add",
        objects=[f"user:{user.id}"],
        reason="roles=admin; local admin",
    )
    return True


def _redacted(url: str) -> str:
    """The URL without a password, so it can be printed."""
    return make_url(url).render_as_string(hide_password=True)
