"""Jobs name the profile version used for each modality a site gives its own profile.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("modality_profiles", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "modality_profiles")
