"""Alembic environment: runs on the connection ``upgrade_database`` hands over.

No ``alembic.ini`` is read; a developer generating a new revision passes the URL with
``alembic -x url=... revision --autogenerate`` through a throwaway config.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from phigate.governance.models import Base

TARGET_METADATA = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=TARGET_METADATA,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("pass the database URL with -x url=...")
    engine = create_engine(url)
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()


_run_online()
