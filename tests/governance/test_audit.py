"""The audit chain: appends, verification against direct-SQL tampering, triggers, exports."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from phigate.governance.audit import (
    GENESIS_HASH,
    Outcome,
    ProblemKind,
    compute_entry_hash,
    create_signing_key,
    export_audit,
    load_public_key,
    load_signing_key,
    public_key_path,
    read_checkpoint_head,
    record_event,
    require,
    verify_chain,
    verify_export,
)
from phigate.governance.authz import SYSTEM, Operation, Resource
from phigate.governance.database import make_engine, session_factory
from phigate.governance.errors import (
    AuditChainBroken,
    CheckpointInvalid,
    InvalidInput,
    PermissionDenied,
)
from phigate.governance.models import AuditEntry, utcnow

from .conftest import People

ENTRIES = 8


def append_events(session: Session, count: int = ENTRIES) -> None:
    for number in range(count):
        record_event(
            session,
            actor=SYSTEM,
            operation="test.event",
            objects=[f"job:{number}"],
            reason=f"event {number}",
        )
    session.commit()


def tamper(engine: Engine, *statements: str) -> None:
    """Run SQL as a privileged attacker would: on PostgreSQL, switch the triggers off first."""
    postgres = engine.dialect.name == "postgresql"
    with engine.begin() as connection:
        if postgres:
            connection.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
            connection.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        for statement in statements:
            connection.execute(text(statement))
        if postgres:
            connection.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
            connection.execute(text("ALTER TABLE audit_head ENABLE TRIGGER USER"))


@pytest.fixture
def chain(session: Session) -> Session:
    append_events(session)
    return session


def fresh_report(engine: Engine, checkpoint: tuple[int, str] | None = None):  # type: ignore[no-untyped-def]
    with session_factory(engine)() as session:
        return verify_chain(session, checkpoint)


def test_empty_chain_verifies(session: Session) -> None:
    report = verify_chain(session)
    assert report.ok and report.entries == 0 and report.head_hash == GENESIS_HASH


def test_entries_link_to_their_predecessor(chain: Session) -> None:
    entries = list(chain.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    assert [entry.seq for entry in entries] == list(range(1, ENTRIES + 1))
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
        assert compute_entry_hash(after) == after.entry_hash
    report = verify_chain(chain)
    assert report.ok and report.entries == ENTRIES and report.head_seq == ENTRIES


def test_untampered_chain_survives_a_new_engine(chain: Session, engine: Engine) -> None:
    assert fresh_report(engine).ok


@pytest.mark.parametrize(
    ("statements", "kind", "seq"),
    [
        (
            ["UPDATE audit_entries SET reason = 'nothing happened' WHERE seq = 3"],
            ProblemKind.ALTERED,
            3,
        ),
        (["UPDATE audit_entries SET actor_name = 'someone' WHERE seq = 1"], ProblemKind.ALTERED, 1),
        (
            ["UPDATE audit_entries SET outcome = 'success', operation = 'x' WHERE seq = 8"],
            ProblemKind.ALTERED,
            8,
        ),
        (["DELETE FROM audit_entries WHERE seq = 4"], ProblemKind.REMOVED, 5),
        (["DELETE FROM audit_entries WHERE seq = 1"], ProblemKind.REMOVED, 2),
        (
            [
                "UPDATE audit_entries SET seq = -3 WHERE seq = 3",
                "UPDATE audit_entries SET seq = 3 WHERE seq = 5",
                "UPDATE audit_entries SET seq = 5 WHERE seq = -3",
            ],
            ProblemKind.REORDERED,
            3,
        ),
        (["DELETE FROM audit_entries WHERE seq > 6"], ProblemKind.TRUNCATED, 7),
        (["DELETE FROM audit_entries"], ProblemKind.TRUNCATED, 1),
    ],
    ids=[
        "edit-reason",
        "edit-actor",
        "edit-last",
        "delete-middle",
        "delete-first",
        "swap",
        "truncate-tail",
        "truncate-all",
    ],
)
def test_direct_sql_tampering_is_caught(
    chain: Session, engine: Engine, statements: list[str], kind: ProblemKind, seq: int
) -> None:
    tamper(engine, *statements)
    report = fresh_report(engine)
    assert not report.ok
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (kind, seq), report.problem.message


def test_swapping_row_contents_is_caught(chain: Session, engine: Engine) -> None:
    columns = (
        "occurred_at, actor_id, actor_name, operation, objects, profile_version, outcome,"
        " reason, prev_hash, entry_hash"
    )
    tamper(
        engine,
        "CREATE TABLE swap_tmp AS SELECT * FROM audit_entries WHERE seq IN (2, 6)",
        *[
            f"UPDATE audit_entries SET ({columns}) = "
            f"(SELECT {columns} FROM swap_tmp WHERE seq = {other}) WHERE seq = {mine}"
            for mine, other in ((2, 6), (6, 2))
        ],
        "DROP TABLE swap_tmp",
    )
    report = fresh_report(engine)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == (ProblemKind.REORDERED, 2)


def test_consistent_rewrite_is_caught_only_by_a_signed_checkpoint(
    chain: Session, engine: Engine
) -> None:
    checkpoint = (verify_chain(chain).head_seq, verify_chain(chain).head_hash)
    _rewrite_history_from(engine, seq=3)
    assert fresh_report(engine).ok  # a forger who recomputes every hash fools the chain alone
    report = fresh_report(engine, checkpoint)
    assert report.problem is not None and report.problem.kind == ProblemKind.ALTERED


def _rewrite_history_from(engine: Engine, seq: int) -> None:
    postgres = engine.dialect.name == "postgresql"
    with session_factory(engine)() as session:
        if postgres:
            session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
            session.execute(text("ALTER TABLE audit_head DISABLE TRIGGER USER"))
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
        previous = entries[seq - 2].entry_hash
        for entry in entries[seq - 1 :]:
            if entry.seq == seq:
                entry.reason = "forged"
            entry.prev_hash = previous
            entry.entry_hash = previous = compute_entry_hash(entry)
        session.flush()
        session.execute(text(f"UPDATE audit_head SET entry_hash = '{previous}'"))
        session.commit()


def test_postgres_trigger_refuses_update_delete_and_truncate(pg_db_url: str) -> None:
    engine = make_engine(pg_db_url)
    try:
        with session_factory(engine)() as session:
            append_events(session)
        for statement in (
            "UPDATE audit_entries SET reason = 'x' WHERE seq = 2",
            "DELETE FROM audit_entries WHERE seq = 2",
            "TRUNCATE audit_entries",
            "DELETE FROM audit_head",
            "UPDATE audit_head SET seq = 1",
        ):
            refused = pytest.raises(DBAPIError, match=r"append-only|only moves forward")
            with refused, engine.begin() as connection:
                connection.execute(text(statement))
        assert fresh_report(engine).ok
    finally:
        engine.dispose()


def test_concurrent_appenders_never_fork_the_chain(engine: Engine) -> None:
    def append(worker: int) -> None:
        with session_factory(engine)() as session:
            for number in range(15):
                record_event(
                    session,
                    actor=SYSTEM,
                    operation="test.concurrent",
                    objects=[f"w{worker}:{number}"],
                )
                session.commit()

    threads = [threading.Thread(target=append, args=(worker,)) for worker in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = fresh_report(engine)
    assert report.ok and report.entries == 45


def test_record_event_refuses_free_text_objects(session: Session) -> None:
    with pytest.raises(InvalidInput, match="keyed hashes"):
        record_event(session, actor=SYSTEM, operation="test.event", objects=["DOE^JOHN 1970"])
    with pytest.raises(InvalidInput, match="dotted"):
        record_event(session, actor=SYSTEM, operation="Read File /patients/doe")


def test_require_audits_a_denial_even_when_the_caller_gives_up(
    session: Session, people: People
) -> None:
    with pytest.raises(PermissionDenied, match="not allowed for researcher"):
        require(
            session,
            people.researcher,
            Operation.REIDENTIFY,
            Resource(),
            objects=["pseudonym:abc123"],
        )
    session.rollback()
    last = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert last is not None
    assert (last.operation, last.outcome, last.actor_name) == ("reidentify", Outcome.DENIED, "rita")
    assert last.objects == ["pseudonym:abc123"]


# --- export ------------------------------------------------------------------------------


@pytest.fixture
def signing_key(tmp_path: Path) -> Ed25519PrivateKey:
    return create_signing_key(tmp_path / "keys" / "audit.pem")


def test_export_verifies_with_the_public_key(
    chain: Session, tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    summary = export_audit(chain, tmp_path / "audit.jsonl", signing_key=signing_key)
    assert summary.entries == ENTRIES and summary.head_seq == ENTRIES
    public = load_public_key(public_key_path(tmp_path / "keys" / "audit.pem"))
    checked = verify_export(tmp_path / "audit.jsonl", public)
    assert checked.entries == ENTRIES and checked.head_hash == summary.head_hash
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, ENTRIES + 1))
    assert read_checkpoint_head(summary.checkpoint_path, public) == (ENTRIES, summary.head_hash)
    assert verify_chain(chain, read_checkpoint_head(summary.checkpoint_path, public)).ok


def test_signing_key_round_trips_through_pem(
    tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    loaded = load_signing_key(tmp_path / "keys" / "audit.pem")
    assert loaded.public_key().public_bytes_raw() == signing_key.public_key().public_bytes_raw()
    assert (tmp_path / "keys" / "audit.pem").stat().st_mode & 0o777 == 0o600


def _edit_line(path: Path, number: int, change: dict[str, object]) -> None:
    lines = path.read_text().splitlines()
    data = json.loads(lines[number])
    data.update(change)
    lines[number] = json.dumps(data, sort_keys=True, separators=(",", ":"))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("attack", ["edit-line", "drop-line", "edit-checkpoint", "other-key"])
def test_export_fails_after_tampering(
    chain: Session, tmp_path: Path, signing_key: Ed25519PrivateKey, attack: str
) -> None:
    export = tmp_path / "audit.jsonl"
    summary = export_audit(chain, export, signing_key=signing_key)
    public = signing_key.public_key()
    if attack == "edit-line":
        _edit_line(export, 2, {"reason": "nothing to see"})
    elif attack == "drop-line":
        lines = export.read_text().splitlines(keepends=True)
        export.write_text("".join(lines[:3] + lines[4:]))
    elif attack == "edit-checkpoint":
        document = json.loads(summary.checkpoint_path.read_text())
        document["checkpoint"]["entries"] = 3
        summary.checkpoint_path.write_text(json.dumps(document))
    else:
        public = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(CheckpointInvalid):
        verify_export(export, public)


def test_export_range_keeps_links_and_signs_the_head(
    chain: Session, tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    export = tmp_path / "range.jsonl"
    summary = export_audit(
        chain, export, signing_key=signing_key, since=utcnow() + timedelta(days=1)
    )
    assert summary.entries == 0 and summary.head_seq == ENTRIES
    assert verify_export(export, signing_key.public_key()).entries == 0
    everything = export_audit(
        chain,
        tmp_path / "all.jsonl",
        signing_key=signing_key,
        since=utcnow() - timedelta(days=1),
        until=utcnow() + timedelta(days=1),
    )
    assert everything.entries == ENTRIES


def test_a_broken_chain_is_not_signed(
    chain: Session, engine: Engine, tmp_path: Path, signing_key: Ed25519PrivateKey
) -> None:
    tamper(engine, "DELETE FROM audit_entries WHERE seq = 2")
    with session_factory(engine)() as session, pytest.raises(AuditChainBroken, match="removed"):
        export_audit(session, tmp_path / "audit.jsonl", signing_key=signing_key)
