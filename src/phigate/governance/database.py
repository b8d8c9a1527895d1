"""Where the control-plane database is, how to connect, and how to bring its schema up to date.

SQLite in PHIGATE_HOME is the default so a laptop needs no service;
``PHIGATE_DATABASE_URL=postgresql+psycopg://...`` points every command at PostgreSQL instead.
Migrations ship inside the package and run in code, so no ``alembic.ini`` is needed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from phigate.governance.errors import DatabaseNotReady

DATABASE_URL_ENV = "PHIGATE_DATABASE_URL"
DATABASE_FILE = "phigate.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The newest migration in MIGRATIONS_DIR (tests/governance/test_migrations.py checks it), so
# that opening a session needs no Alembic: importing it costs a third of a second per command.
HEAD_REVISION = "0002"
_SQLITE_BUSY_SECONDS = 30


def database_url(home: Path, env: Mapping[str, str] | None = None) -> str:
    """The database URL: ``PHIGATE_DATABASE_URL`` if set, else SQLite in ``home``."""
    environment = os.environ if env is None else env
    override = environment.get(DATABASE_URL_ENV, "").strip()
    if override:
        return override
    return f"sqlite:///{home.resolve() / DATABASE_FILE}"


def make_engine(url: str) -> Engine:
    """An engine with the settings phigate relies on (SQLite: foreign keys, WAL, waits on locks)."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_SECONDS})
            event.listen(engine, "connect", _configure_sqlite)
            return engine
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise DatabaseNotReady(
            f"cannot use the database URL ({type(exc).__name__}); check {DATABASE_URL_ENV}"
        ) from None


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (the CLI prints them afterwards)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def open_session(url: str, *, require_current: bool = True) -> Iterator[Session]:
    """A session on ``url``; refuses to run on a schema older than the code's."""
    engine = make_engine(url)
    try:
        if require_current:
            ensure_current(engine)
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest migration shipped with this version of phigate, as Alembic finds it."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise DatabaseNotReady("no migrations are shipped with this phigate; reinstall it")
    return str(head)


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (Alembic's version table), or None if empty."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return None if found is None else str(found)
    except SQLAlchemyError as exc:
        raise DatabaseNotReady(
            f"cannot reach the database ({type(exc).__name__}); check {DATABASE_URL_ENV}"
        ) from None


def ensure_current(engine: Engine) -> None:
    """Raise a clear error unless the schema is exactly the one this code expects."""
    if current_revision(engine) != HEAD_REVISION:
        raise DatabaseNotReady(
            "the database schema is not current; run `phigate db upgrade` (or `phigate init`)"
        )


def upgrade_database(url: str) -> str:
    """Apply every pending migration to the database at ``url``; return the new revision."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        revision = current_revision(engine)
    except SQLAlchemyError as exc:
        raise DatabaseNotReady(
            f"cannot migrate the database ({type(exc).__name__}); check {DATABASE_URL_ENV}"
        ) from None
    finally:
        engine.dispose()
    return revision or ""
