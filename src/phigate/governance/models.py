"""The control plane's tables, as typed SQLAlchemy 2 models.

The same models run on SQLite (one laptop) and PostgreSQL (production); the schema itself is
created only by the Alembic migrations in :mod:`phigate.governance.migrations`, and a test
checks that the migrations and these models agree. No column holds PHI: instances are named by
keyed hashes and replacement UIDs, tags by keyword, people by their phigate user name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ROLE_NAMES = (
    "admin",
    "steward",
    "researcher",
    "partner",
    "auditor",
    "honest_broker",
    "service_agent",
)
JOB_STATUSES = ("queued", "running", "pending_review", "completed", "failed")
RECORD_STATUSES = ("written", "filtered", "quarantined")

# Stable constraint names, so migrations (and SQLite batch migrations) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: the only clock the control plane uses."""
    return datetime.now(UTC)


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        aware = value.astimezone(UTC)
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention and JSON/time type map."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        list[dict[str, Any]]: JSON(),
    }


class User(Base):
    """A person or agent. ``sites`` None means every site; ``purposes`` lists purposes of use."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]
    sites: Mapped[list[str] | None] = mapped_column(JSON())
    purposes: Mapped[list[str]] = mapped_column(JSON(), default=list)

    roles: Mapped[list[UserRole]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def role_names(self) -> frozenset[str]:
        """The user's roles as plain names."""
        return frozenset(role.role for role in self.roles)


class UserRole(Base):
    """One role held by one user; the database refuses unknown role names."""

    __tablename__ = "user_roles"
    __table_args__ = (CheckConstraint(f"role IN ({_quoted(ROLE_NAMES)})", name="known_role"),)

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)

    user: Mapped[User] = relationship(back_populates="roles")


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; ``prefix`` lets people tell tokens apart."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="joined")


class Job(Base):
    """One de-identification run. ``source_ref`` is a keyed hash of the source, never a path."""

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(f"status IN ({_quoted(JOB_STATUSES)})", name="known_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    profile_name: Mapped[str] = mapped_column(String(64))
    profile_version: Mapped[str] = mapped_column(String(128))
    source_ref: Mapped[str] = mapped_column(String(128))
    site: Mapped[str | None] = mapped_column(String(64))
    # Modality -> {"name", "version"} where a site gives a modality its own profile.
    modality_profiles: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(500))


class InstanceRecord(Base):
    """A stored :class:`phigate.record.InstanceResult`; findings and actions as JSON."""

    __tablename__ = "instance_records"
    __table_args__ = (
        CheckConstraint(f"status IN ({_quoted(RECORD_STATUSES)})", name="known_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    source_ref: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    reason_detail: Mapped[str | None] = mapped_column(Text)
    output_ref: Mapped[str | None] = mapped_column(Text)
    profile_name: Mapped[str] = mapped_column(String(64))
    profile_version: Mapped[str] = mapped_column(String(128))
    study_uid: Mapped[str | None] = mapped_column(String(128))
    series_uid: Mapped[str | None] = mapped_column(String(128))
    sop_instance_uid: Mapped[str | None] = mapped_column(String(128))
    sop_class_uid: Mapped[str | None] = mapped_column(String(128))
    modality: Mapped[str | None] = mapped_column(String(16))
    transfer_syntax_uid: Mapped[str | None] = mapped_column(String(128))
    actions: Mapped[dict[str, Any]] = mapped_column(JSON())
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON())
    requires_review: Mapped[bool] = mapped_column(Boolean)
    review_reasons: Mapped[list[str]] = mapped_column(JSON())
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON())


class AuditEntry(Base):
    """One link of the append-only audit chain (see :mod:`phigate.governance.audit`).

    ``occurred_at`` is stored as fixed-format ISO text so the hashed form is byte-identical
    on every backend.
    """

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[str] = mapped_column(String(32), index=True)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str] = mapped_column(String(64))
    operation: Mapped[str] = mapped_column(String(64))
    objects: Mapped[list[str]] = mapped_column(JSON())
    profile_version: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The single row naming the chain's last entry, so a cut-off tail is noticed."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    entry_hash: Mapped[str] = mapped_column(String(64))


class Profile(Base):
    """A named profile in the library; its versions are immutable rows of ProfileVersion."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProfileVersion(Base):
    """One immutable version: YAML text, content hash, author, time and change note."""

    __tablename__ = "profile_versions"
    __table_args__ = (
        UniqueConstraint("profile_id", "number", name="uq_profile_versions_number"),
        UniqueConstraint("profile_id", "version", name="uq_profile_versions_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(128))
    yaml_text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(Integer)
    author_name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    change_note: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(16))
    parent_version_id: Mapped[int | None] = mapped_column(Integer)

    profile: Mapped[Profile] = relationship(lazy="joined")


class ProfileApproval(Base):
    """The approval of one version, by someone other than its author."""

    __tablename__ = "profile_approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("profile_versions.id", ondelete="CASCADE"), unique=True
    )
    approved_by_id: Mapped[int | None] = mapped_column(Integer)
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str | None] = mapped_column(Text)


class ProfileActivation(Base):
    """An activation or rollback; replaying these gives the active version and its history."""

    __tablename__ = "profile_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), index=True
    )
    version_id: Mapped[int] = mapped_column(ForeignKey("profile_versions.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor_name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class Site(Base):
    """An imaging site and its validated template (see :mod:`phigate.governance.sites`)."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    template: Mapped[dict[str, Any]] = mapped_column(JSON())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
