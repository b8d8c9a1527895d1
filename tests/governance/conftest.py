"""Fixtures: every database test runs on SQLite and on a throwaway PostgreSQL 15 cluster.

The cluster is created with ``initdb -A trust`` in a temporary folder, listens on a free
loopback port and is stopped when the session ends. When the tests run as root (as in CI),
the server runs as the ``postgres`` system user, because PostgreSQL refuses to run as root.
Each test gets a fresh database copied from one migrated template, which keeps the suite fast;
``test_migrations.py`` migrates empty databases itself.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from phigate.governance.authz import Principal, Role
from phigate.governance.database import make_engine, session_factory, upgrade_database
from phigate.governance.models import User
from phigate.governance.users import create_system_user, principal_for, use_fast_password_hashing

BACKENDS = ["sqlite", "postgresql"]
PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql/15/bin")]
_counter = itertools.count()

use_fast_password_hashing()


def _pg_bindir() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("pg_config")
    if found:
        bindir = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout
        if (Path(bindir.strip()) / "initdb").exists():
            return Path(bindir.strip())
    pytest.fail("PostgreSQL 15 is needed for these tests: apt-get install postgresql-15")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresCluster:
    """A running throwaway cluster; ``url(db)`` gives a psycopg SQLAlchemy URL."""

    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, statement: str) -> None:
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(statement)  # type: ignore[arg-type]


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; run its tools as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    bindir = _pg_bindir()
    running_as_root = os.geteuid() == 0
    # As root the server runs as `postgres`, which must reach the folder: keep it in /tmp.
    root = Path(tempfile.mkdtemp(prefix="phigate-pg-", dir="/tmp" if running_as_root else None))
    if running_as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("no `postgres` system user to run PostgreSQL as; install postgresql-15")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    data, port = root / "data", _free_port()
    subprocess.run(
        _as_server_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    pg_ctl = str(bindir / "pg_ctl")
    subprocess.run(
        _as_server_user(
            [pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o", options, "start"]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield PostgresCluster(port)
    finally:
        subprocess.run(
            _as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "phigate.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresCluster) -> str:
    postgres.admin("CREATE DATABASE phigate_template")
    upgrade_database(postgres.url("phigate_template"))
    return "phigate_template"


def _fresh_database(request: pytest.FixtureRequest, backend: str, migrated: bool) -> Iterator[str]:
    name = f"t{next(_counter)}"
    if backend == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="phigate-db-"))
        if migrated:
            shutil.copy(request.getfixturevalue("sqlite_template"), folder / "phigate.db")
        yield f"sqlite:///{folder / 'phigate.db'}"
        shutil.rmtree(folder, ignore_errors=True)
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    template = request.getfixturevalue("postgres_template") if migrated else "template0"
    cluster.admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield cluster.url(name)
    cluster.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database on each backend."""
    yield from _fresh_database(request, request.param, migrated=True)


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    yield from _fresh_database(request, request.param, migrated=False)


@pytest.fixture
def pg_db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, for what only PostgreSQL has (triggers)."""
    yield from _fresh_database(request, "postgresql", migrated=True)


@pytest.fixture
def pg_empty_db_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty PostgreSQL database."""
    yield from _fresh_database(request, "postgresql", migrated=False)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with session_factory(engine)() as session:
        yield session


@dataclass
class People:
    """One user per role, plus a second steward for approvals."""

    admin: Principal
    steward: Principal
    steward2: Principal
    researcher: Principal
    partner: Principal
    auditor: Principal
    broker: Principal
    agent: Principal


def make_user(session: Session, name: str, *roles: Role) -> Principal:
    user: User = create_system_user(session, name, frozenset(roles))
    return principal_for(user, via="test")


@pytest.fixture
def people(session: Session) -> People:
    crew = People(
        admin=make_user(session, "ada", Role.ADMIN),
        steward=make_user(session, "sam", Role.STEWARD),
        steward2=make_user(session, "sue", Role.STEWARD),
        researcher=make_user(session, "rita", Role.RESEARCHER),
        partner=make_user(session, "pat", Role.PARTNER),
        auditor=make_user(session, "aud", Role.AUDITOR),
        broker=make_user(session, "hob", Role.HONEST_BROKER),
        agent=make_user(session, "bot", Role.SERVICE_AGENT),
    )
    session.commit()
    return crew


def profile_text(name: str, variant: int = 1) -> str:
    """A valid profile named ``name``; different variants have different content hashes.

    The one place tests build profile YAML, so it follows the profile schema when
    ``phigate.policy.profile.parse_profile_text`` takes over validation.
    """
    return (
        f"# test profile\nschema: 1\nname: {name}\nextends: basic\ndescription: variant {variant}\n"
    )
