"""Users, argon2 passwords, API tokens and the CLI identity, on both backends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from phigate.governance.audit import verify_chain
from phigate.governance.authz import Role
from phigate.governance.database import session_factory
from phigate.governance.errors import (
    AlreadyExists,
    AuthenticationFailed,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from phigate.governance.identity import (
    LOCAL_ADMIN_NAME,
    bootstrap,
    local_admin,
    resolve_cli_identity,
)
from phigate.governance.models import ApiToken, AuditEntry, User, utcnow
from phigate.governance.users import (
    NewUser,
    authenticate_password,
    authenticate_token,
    create_token,
    create_user,
    disable_user,
    hash_token,
    list_tokens,
    list_users,
    revoke_token,
)

from .conftest import People, profile_text

PASSWORD = "correct horse battery staple"


def operations(session: Session) -> list[tuple[str, str]]:
    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
    return [(entry.operation, entry.outcome) for entry in entries]


def add_carol(
    session: Session, people: People, *roles: Role, password: str | None = PASSWORD
) -> User:
    user = create_user(
        session,
        people.admin,
        NewUser(
            name="carol",
            roles=frozenset(roles or {Role.RESEARCHER}),
            password=password,
            sites=["north"],
            purposes=["research"],
        ),
    )
    session.commit()
    return user


def test_admin_adds_a_user_with_an_argon2_hash(session: Session, people: People) -> None:
    user = add_carol(session, people)
    assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    assert user.role_names == {"researcher"} and user.sites == ["north"]
    assert ("user.add", "success") in operations(session)


def test_only_admins_add_users_and_refusals_are_audited(session: Session, people: People) -> None:
    with pytest.raises(PermissionDenied):
        create_user(session, people.steward, NewUser(name="eve", roles=frozenset({Role.ADMIN})))
    assert operations(session)[-1] == ("user.manage", "denied")
    assert session.scalar(select(User).where(User.name == "eve")) is None


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (NewUser(name="Bad Name", roles=frozenset({Role.AUDITOR})), "slug"),
        (NewUser(name="shorty", roles=frozenset({Role.AUDITOR}), password="short"), "at least"),
        (NewUser(name="ada", roles=frozenset({Role.AUDITOR})), "already exists"),
        (NewUser(name="odd", roles=frozenset({Role.AUDITOR}), sites=["two words"]), "site"),
    ],
)
def test_bad_users_are_refused(
    session: Session, people: People, new: NewUser, message: str
) -> None:
    with pytest.raises((InvalidInput, AlreadyExists), match=message):
        create_user(session, people.admin, new)


def test_password_sign_in(session: Session, people: People) -> None:
    add_carol(session, people)
    principal = authenticate_password(session, "carol", PASSWORD)
    assert principal.roles == {Role.RESEARCHER} and principal.sites == {"north"}
    assert principal.purposes == {"research"} and principal.via == "password"
    for name, password in (("carol", "wrong password!!"), ("nobody", PASSWORD)):
        with pytest.raises(AuthenticationFailed, match="sign-in failed"):
            authenticate_password(session, name, password)
    assert operations(session)[-3:] == [
        ("login", "success"),
        ("login", "failure"),
        ("login", "failure"),
    ]


def test_weak_hashes_are_upgraded_at_sign_in(session: Session, people: People) -> None:
    from argon2 import PasswordHasher

    user = add_carol(session, people)
    weaker = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=16).hash(PASSWORD)
    session.execute(update(User).where(User.id == user.id).values(password_hash=weaker))
    session.commit()
    authenticate_password(session, "carol", PASSWORD)
    session.refresh(user)
    assert user.password_hash != weaker


def test_tokens_are_hashed_at_rest_and_sign_in(session: Session, people: People) -> None:
    add_carol(session, people)
    issued = create_token(session, people.admin, "carol", label="laptop", days=30)
    session.commit()
    stored = session.get(ApiToken, issued.id)
    assert stored is not None and stored.token_hash == hash_token(issued.secret)
    assert issued.secret not in {stored.token_hash, stored.prefix}
    principal = authenticate_token(session, issued.secret)
    assert (
        principal.name == "carol" and principal.via == "token" and principal.token_id == issued.id
    )
    assert operations(session)[-1] == ("token.use", "success")


def test_revoked_and_expired_tokens_are_refused(session: Session, people: People) -> None:
    add_carol(session, people)
    revoked = create_token(session, people.admin, "carol")
    expired = create_token(session, people.admin, "carol", days=1)
    past = utcnow() - timedelta(seconds=1)
    session.execute(update(ApiToken).where(ApiToken.id == expired.id).values(expires_at=past))
    revoke_token(session, people.admin, revoked.id)
    session.commit()
    for secret in (revoked.secret, expired.secret, "phg_not-a-token"):
        with pytest.raises(AuthenticationFailed):
            authenticate_token(session, secret)


def test_users_manage_only_their_own_tokens(session: Session, people: People) -> None:
    mine = create_token(session, people.researcher, "rita")
    assert [token.id for token in list_tokens(session, people.researcher, "rita")] == [mine.id]
    with pytest.raises(PermissionDenied):
        create_token(session, people.researcher, "sam")
    theirs = create_token(session, people.admin, "sam")
    with pytest.raises(PermissionDenied):
        revoke_token(session, people.researcher, theirs.id)
    with pytest.raises(NotFound):
        revoke_token(session, people.admin, 9999)


def test_disabling_a_user_revokes_tokens_and_sign_in(session: Session, people: People) -> None:
    add_carol(session, people)
    issued = create_token(session, people.admin, "carol")
    disable_user(session, people.admin, "carol")
    session.commit()
    with pytest.raises(AuthenticationFailed):
        authenticate_token(session, issued.secret)
    with pytest.raises(AuthenticationFailed):
        authenticate_password(session, "carol", PASSWORD)
    with pytest.raises(InvalidInput, match="yourself"):
        disable_user(session, people.admin, "ada")
    assert [user.name for user in list_users(session, people.auditor)][:2] == ["ada", "aud"]


def test_cli_identity_order(session: Session, people: People) -> None:
    add_carol(session, people)
    issued = create_token(session, people.admin, "sam")
    session.commit()
    by_token = resolve_cli_identity(
        session, {"PHIGATE_TOKEN": issued.secret, "PHIGATE_USER": "carol"}
    )
    assert by_token.name == "sam"
    by_flag = resolve_cli_identity(session, {"PHIGATE_USER": "x"}, token=issued.secret)
    assert by_flag.name == "sam"
    by_password = resolve_cli_identity(
        session, {"PHIGATE_USER": "carol", "PHIGATE_PASSWORD": PASSWORD}
    )
    assert by_password.name == "carol"
    with pytest.raises(AuthenticationFailed, match="PHIGATE_PASSWORD"):
        resolve_cli_identity(session, {"PHIGATE_USER": "carol"})
    with pytest.raises(AuthenticationFailed, match="phigate init"):
        resolve_cli_identity(session, {})


def test_bootstrap_is_idempotent_and_creates_the_local_admin(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    env = {"PHIGATE_DATABASE_URL": db_url}
    from phigate.governance import policy_library

    first = bootstrap(tmp_path / "home", env)
    second = bootstrap(tmp_path / "home", env)
    assert first.admin_created and not second.admin_created
    assert second.profile_notes == []
    with session_factory(engine)() as session:
        admin = resolve_cli_identity(session, {})
        assert (
            admin.name == LOCAL_ADMIN_NAME and admin.roles == {Role.ADMIN} and admin.via == "local"
        )
        assert local_admin(session) == admin
        assert verify_chain(session).ok
        seeded = policy_library.seed_builtin_profiles(session, [profile_text("demo")])
        assert seeded == ["demo: built-in version 1 approved and active"]


def test_bootstrap_on_sqlite_home_creates_the_database(tmp_path: Path) -> None:
    result = bootstrap(tmp_path / "home", env={})
    assert (tmp_path / "home" / "phigate.db").exists()
    assert result.database_url.startswith("sqlite:///") and result.admin_created
