"""The shipped migrations build, from an empty database, exactly the schema the models expect."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text

from phigate.governance.audit import GENESIS_HASH
from phigate.governance.database import (
    HEAD_REVISION,
    current_revision,
    ensure_current,
    head_revision,
    make_engine,
    upgrade_database,
)
from phigate.governance.errors import DatabaseNotReady
from phigate.governance.models import AuditHead, Base

EXPECTED_TABLES = {
    "alembic_version",
    "users",
    "user_roles",
    "api_tokens",
    "jobs",
    "instance_records",
    "audit_entries",
    "audit_head",
    "profiles",
    "profile_versions",
    "profile_approvals",
    "profile_activations",
    "sites",
}


def test_empty_database_is_refused_until_migrated(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        with pytest.raises(DatabaseNotReady, match="phigate db upgrade"):
            ensure_current(engine)
    finally:
        engine.dispose()


def test_the_code_names_the_newest_shipped_migration() -> None:
    assert head_revision() == HEAD_REVISION


def test_upgrade_from_empty_matches_the_models(empty_db_url: str) -> None:
    assert upgrade_database(empty_db_url) == HEAD_REVISION
    engine = make_engine(empty_db_url)
    try:
        assert (
            current_revision(engine)
            == MigrationContext.configure(engine.connect()).get_current_revision()
        )
    finally:
        engine.dispose()
    engine = make_engine(empty_db_url)
    try:
        assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
            head = connection.execute(select(AuditHead.seq, AuditHead.entry_hash)).one()
        assert tuple(head) == (0, GENESIS_HASH)
        ensure_current(engine)
    finally:
        engine.dispose()


def test_upgrade_twice_is_harmless(empty_db_url: str) -> None:
    first = upgrade_database(empty_db_url)
    assert upgrade_database(empty_db_url) == first


def test_postgres_migration_installs_append_only_triggers(pg_empty_db_url: str) -> None:
    upgrade_database(pg_empty_db_url)
    engine = make_engine(pg_empty_db_url)
    try:
        with engine.connect() as connection:
            query = text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            names = set(connection.scalars(query))
        assert {
            "audit_entries_append_only",
            "audit_entries_no_truncate",
            "audit_head_forward_only",
        } <= names
    finally:
        engine.dispose()


def test_unreachable_database_gives_a_one_line_error() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseNotReady, match="PHIGATE_DATABASE_URL"):
            current_revision(engine)
    finally:
        engine.dispose()
