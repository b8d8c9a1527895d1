"""Alembic migrations of the control-plane schema, run in code by ``upgrade_database``."""
