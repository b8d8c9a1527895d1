"""The audit chain: who did what, when, to which objects, under which profile, and why.

Entries are only ever inserted. Each carries ``prev_hash``, the hash of the entry before it, and
its own ``entry_hash`` = SHA-256 of its canonical JSON (sorted keys, no spaces, UTF-8) over
every field except the sequence number, which is positional: moving an entry breaks the links
instead of the entry. A one-row head table names the last entry, so cutting off the tail is
noticed too. :func:`verify_chain` recomputes everything and reports the first altered, removed
or reordered entry. On PostgreSQL, triggers from the migration refuse UPDATE, DELETE and
TRUNCATE of the entries outright; on both backends the application never issues them.

:func:`export_audit` writes a range of entries as JSON Lines next to a checkpoint of the
chain head signed with Ed25519, which anyone holding the public key checks with
:func:`verify_export`. Objects are named by ids and keyed hashes (``job:12``,
``instance:<hash>``), never by PHI; :func:`record_event` refuses anything that looks like
free text in an object reference.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from phigate.governance.authz import Operation, Principal, Resource, authorize
from phigate.governance.errors import (
    AuditChainBroken,
    CheckpointInvalid,
    InvalidInput,
    PermissionDenied,
)
from phigate.governance.models import AuditEntry, AuditHead, utcnow

GENESIS_HASH = "0" * 64
CHECKPOINT_FORMAT = "phigate-audit-checkpoint/1"
_HEAD_ID = 1
_OPERATION_PATTERN = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_OBJECT_REF_PATTERN = re.compile(r"^[A-Za-z0-9_.:@/+=-]{1,200}$")
_MAX_REASON = 2000


class Outcome(enum.StrEnum):
    """How the audited operation ended."""

    SUCCESS = "success"
    DENIED = "denied"
    FAILURE = "failure"


def canonical_json(value: Any) -> bytes:
    """The one byte form that is hashed and signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def format_timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601, so text order is time order on every backend."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _hashed_fields(entry: AuditEntry) -> dict[str, Any]:
    return {
        "occurred_at": entry.occurred_at,
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "operation": entry.operation,
        "objects": list(entry.objects),
        "profile_version": entry.profile_version,
        "outcome": entry.outcome,
        "reason": entry.reason,
        "prev_hash": entry.prev_hash,
    }


def compute_entry_hash(entry: AuditEntry) -> str:
    """SHA-256 of the entry's canonical JSON (all fields but ``seq`` and the hash itself)."""
    return hashlib.sha256(canonical_json(_hashed_fields(entry))).hexdigest()


def entry_to_dict(entry: AuditEntry) -> dict[str, Any]:
    """The exported form of an entry: the hashed fields plus ``seq`` and ``entry_hash``."""
    return {**_hashed_fields(entry), "seq": entry.seq, "entry_hash": entry.entry_hash}


def _validate_event(operation: str, objects: Sequence[str], reason: str | None) -> None:
    if not _OPERATION_PATTERN.match(operation):
        raise InvalidInput(f"audit operation {operation!r} is not a dotted lower-case name")
    for ref in objects:
        if not _OBJECT_REF_PATTERN.match(ref):
            raise InvalidInput("audit object references must be ids or keyed hashes, not text")
    if reason is not None and len(reason) > _MAX_REASON:
        raise InvalidInput(f"the reason is longer than {_MAX_REASON} characters")


def _claim_next_seq(session: Session) -> tuple[int, str]:
    """Take the write lock by moving the head first, then read the new seq and previous hash.

    Writing before reading serialises concurrent appenders on both backends (SQLite's write
    lock, PostgreSQL's row lock), so two processes can never fork the chain.
    """
    moved = session.execute(
        update(AuditHead).where(AuditHead.id == _HEAD_ID).values(seq=AuditHead.seq + 1)
    )
    if getattr(moved, "rowcount", 0) != 1:
        raise AuditChainBroken("the audit head row is missing; run `phigate audit verify`")
    seq, prev_hash = session.execute(
        select(AuditHead.seq, AuditHead.entry_hash).where(AuditHead.id == _HEAD_ID)
    ).one()
    return int(seq), str(prev_hash)


def record_event(
    session: Session,
    *,
    actor: Principal,
    operation: str,
    objects: Sequence[str] = (),
    outcome: Outcome = Outcome.SUCCESS,
    reason: str | None = None,
    profile_version: str | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (the caller commits, so the entry and the
    change it records land together). Call it for every state change and every raw read."""
    _validate_event(operation, objects, reason)
    seq, prev_hash = _claim_next_seq(session)
    entry = AuditEntry(
        seq=seq,
        occurred_at=format_timestamp(utcnow()),
        actor_id=actor.user_id,
        actor_name=actor.name,
        operation=operation,
        objects=list(objects),
        profile_version=profile_version,
        outcome=outcome.value,
        reason=reason,
        prev_hash=prev_hash,
    )
    entry.entry_hash = compute_entry_hash(entry)
    session.add(entry)
    session.flush()
    session.execute(
        update(AuditHead).where(AuditHead.id == _HEAD_ID).values(entry_hash=entry.entry_hash)
    )
    return entry


def require(
    session: Session,
    principal: Principal,
    operation: Operation,
    resource: Resource,
    *,
    objects: Sequence[str] = (),
) -> None:
    """Authorise, and on a denial commit a ``denied`` audit entry before raising.

    The denial is committed at once because the caller's work is about to be abandoned, and
    refused attempts (for example re-identification without the role) must stay on record.
    """
    decision = authorize(principal, operation, resource)
    if decision.allowed:
        return
    session.rollback()
    record_event(
        session,
        actor=principal,
        operation=operation.value,
        objects=objects,
        outcome=Outcome.DENIED,
        reason=decision.reason,
    )
    session.commit()
    raise PermissionDenied(decision)


class ProblemKind(enum.StrEnum):
    """What verification found first."""

    ALTERED = "altered"
    REMOVED = "removed"
    REORDERED = "reordered"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first problem in the chain, at sequence number ``seq``."""

    kind: ProblemKind
    seq: int
    message: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of :func:`verify_chain`."""

    entries: int
    head_seq: int
    head_hash: str
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def _iter_entries(session: Session) -> Iterator[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=1000)
    yield from session.scalars(query)


def _hash_exists(session: Session, entry_hash: str) -> bool:
    found = session.scalar(select(AuditEntry.seq).where(AuditEntry.entry_hash == entry_hash))
    return found is not None


def _check_link(
    session: Session, entry: AuditEntry, expected_seq: int, expected_prev: str
) -> ChainProblem | None:
    """Check one entry against its own hash and its predecessor."""
    if compute_entry_hash(entry) != entry.entry_hash:
        return ChainProblem(ProblemKind.ALTERED, entry.seq, f"entry {entry.seq} was altered")
    if entry.prev_hash != expected_prev:
        if _hash_exists(session, entry.prev_hash):
            message = f"entry {entry.seq} is out of order: it follows another entry"
            return ChainProblem(ProblemKind.REORDERED, entry.seq, message)
        message = f"an entry before entry {entry.seq} was removed"
        return ChainProblem(ProblemKind.REMOVED, entry.seq, message)
    if entry.seq != expected_seq:
        message = f"entry {entry.seq} was renumbered (expected {expected_seq})"
        return ChainProblem(ProblemKind.ALTERED, entry.seq, message)
    return None


def _check_head(session: Session, last_seq: int, last_hash: str) -> ChainProblem | None:
    head = session.get(AuditHead, _HEAD_ID)
    if head is None:
        return ChainProblem(ProblemKind.ALTERED, last_seq, "the audit head row was removed")
    if head.seq > last_seq:
        message = f"entries {last_seq + 1} to {head.seq} were removed from the end"
        return ChainProblem(ProblemKind.TRUNCATED, last_seq + 1, message)
    if head.seq < last_seq:
        message = f"entries after {head.seq} were not written through phigate"
        return ChainProblem(ProblemKind.ALTERED, head.seq + 1, message)
    if head.entry_hash != last_hash:
        return ChainProblem(ProblemKind.ALTERED, last_seq, f"entry {last_seq} was replaced")
    return None


def _check_checkpoint(entry: AuditEntry, checkpoint: tuple[int, str] | None) -> ChainProblem | None:
    if checkpoint is None or entry.seq != checkpoint[0] or entry.entry_hash == checkpoint[1]:
        return None
    message = f"entry {entry.seq} differs from the signed checkpoint"
    return ChainProblem(ProblemKind.ALTERED, entry.seq, message)


def verify_chain(session: Session, checkpoint: tuple[int, str] | None = None) -> ChainReport:
    """Recompute the whole chain; report the first altered, removed or reordered entry.

    ``checkpoint`` (seq, hash), taken from a signed export, also catches a chain that was
    rewritten consistently from some point on by someone who recomputed every hash.
    """
    expected_seq, previous_hash, count = 1, GENESIS_HASH, 0
    for entry in _iter_entries(session):
        problem = _check_link(session, entry, expected_seq, previous_hash)
        problem = problem or _check_checkpoint(entry, checkpoint)
        if problem is not None:
            return ChainReport(count, entry.seq, previous_hash, problem)
        expected_seq, previous_hash, count = entry.seq + 1, entry.entry_hash, count + 1
    last_seq = expected_seq - 1
    problem = _check_head(session, last_seq, previous_hash)
    if problem is None and checkpoint is not None and checkpoint[0] > last_seq:
        message = f"the chain ends before the signed checkpoint at entry {checkpoint[0]}"
        problem = ChainProblem(ProblemKind.TRUNCATED, last_seq + 1, message)
    return ChainReport(count, last_seq, previous_hash, problem)


# --- export and signed checkpoints -------------------------------------------------------


def create_signing_key(path: Path) -> Ed25519PrivateKey:
    """Create an Ed25519 key (PEM, mode 0600) and its public half next to it (``.pub``)."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_key_path(path).write_bytes(public_key_pem(key.public_key()))
    return key


def public_key_path(signing_key_path: Path) -> Path:
    """Where the public half of a signing key is kept."""
    return signing_key_path.with_name(signing_key_path.name + ".pub")


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """The public key as PEM, for handing to auditors."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by :func:`create_signing_key`."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise InvalidInput("cannot read the audit signing key; check its path") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput("the audit signing key is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError, TypeError):
        raise InvalidInput("cannot read the public key; check its path") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput("the public key is not an Ed25519 key")
    return key


def checkpoint_path(export_path: Path) -> Path:
    """Where the signed checkpoint of an export is written."""
    return export_path.with_name(export_path.name + ".checkpoint.json")


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What :func:`export_audit` wrote or :func:`verify_export` checked."""

    entries: int
    first_seq: int | None
    last_seq: int | None
    head_seq: int
    head_hash: str
    export_path: Path
    checkpoint_path: Path


def _select_range(
    session: Session, since: datetime | None, until: datetime | None
) -> Iterator[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.seq)
    if since is not None:
        query = query.where(AuditEntry.occurred_at >= format_timestamp(since))
    if until is not None:
        query = query.where(AuditEntry.occurred_at < format_timestamp(until))
    yield from session.scalars(query.execution_options(yield_per=1000))


def _write_entries(
    destination: Path, entries: Iterator[AuditEntry]
) -> tuple[int, int | None, int | None, str]:
    digest, count, first, last = hashlib.sha256(), 0, None, None
    with destination.open("wb") as handle:
        for entry in entries:
            line = canonical_json(entry_to_dict(entry)) + b"\n"
            handle.write(line)
            digest.update(line)
            count, last = count + 1, entry.seq
            first = entry.seq if first is None else first
    return count, first, last, digest.hexdigest()


def export_audit(
    session: Session,
    destination: Path,
    *,
    signing_key: Ed25519PrivateKey,
    since: datetime | None = None,
    until: datetime | None = None,
) -> ExportSummary:
    """Write entries with ``since <= occurred_at < until`` as JSON Lines, plus a signed
    checkpoint of the chain head. Refuses to sign a chain that does not verify."""
    report = verify_chain(session)
    if not report.ok:
        assert report.problem is not None
        raise AuditChainBroken(f"the audit chain is broken ({report.problem.message}); not signed")
    count, first, last, file_hash = _write_entries(
        destination, _select_range(session, since, until)
    )
    body = {
        "format": CHECKPOINT_FORMAT,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "since": format_timestamp(since) if since else None,
        "until": format_timestamp(until) if until else None,
        "entries": count,
        "first_seq": first,
        "last_seq": last,
        "file_sha256": file_hash,
        "signed_at": format_timestamp(utcnow()),
    }
    signature = signing_key.sign(canonical_json(body)).hex()
    target = checkpoint_path(destination)
    target.write_bytes(canonical_json({"checkpoint": body, "signature": signature}) + b"\n")
    return ExportSummary(count, first, last, report.head_seq, report.head_hash, destination, target)


def _read_checkpoint(path: Path, public_key: Ed25519PublicKey) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
        body, signature = document["checkpoint"], bytes.fromhex(document["signature"])
        public_key.verify(signature, canonical_json(body))
    except InvalidSignature:
        raise CheckpointInvalid("the checkpoint signature does not verify") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointInvalid("the checkpoint file is unreadable or malformed") from None
    if not isinstance(body, dict) or body.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointInvalid("the checkpoint is not a phigate audit checkpoint")
    return body


def _check_exported_lines(lines: list[bytes]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            data = json.loads(line)
        except ValueError:
            raise CheckpointInvalid(f"line {number} of the export is not JSON") from None
        hashed = {key: value for key, value in data.items() if key not in ("seq", "entry_hash")}
        if hashlib.sha256(canonical_json(hashed)).hexdigest() != data.get("entry_hash"):
            raise CheckpointInvalid(f"line {number} of the export was altered")
        if entries and entries[-1]["entry_hash"] != data["prev_hash"]:
            raise CheckpointInvalid(
                f"line {number} of the export does not follow line {number - 1}"
            )
        entries.append(data)
    return entries


def verify_export(
    export_path: Path, public_key: Ed25519PublicKey, checkpoint: Path | None = None
) -> ExportSummary:
    """Check an export against its signed checkpoint; raise :class:`CheckpointInvalid` if not."""
    signed_path = checkpoint or checkpoint_path(export_path)
    body = _read_checkpoint(signed_path, public_key)
    try:
        raw = export_path.read_bytes()
    except OSError:
        raise CheckpointInvalid("the export file cannot be read") from None
    if hashlib.sha256(raw).hexdigest() != body["file_sha256"]:
        raise CheckpointInvalid("the export file differs from the one that was signed")
    entries = _check_exported_lines(raw.splitlines())
    if len(entries) != body["entries"]:
        raise CheckpointInvalid("the export holds a different number of entries than signed")
    last = entries[-1] if entries else None
    if last and last["seq"] == body["head_seq"] and last["entry_hash"] != body["head_hash"]:
        raise CheckpointInvalid("the last exported entry is not the signed chain head")
    return ExportSummary(
        len(entries),
        body["first_seq"],
        body["last_seq"],
        body["head_seq"],
        body["head_hash"],
        export_path,
        signed_path,
    )


def read_checkpoint_head(path: Path, public_key: Ed25519PublicKey) -> tuple[int, str]:
    """The (seq, hash) of the chain head a verified checkpoint vouches for."""
    body = _read_checkpoint(path, public_key)
    return int(body["head_seq"]), str(body["head_hash"])
