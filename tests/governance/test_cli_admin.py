"""The control-plane commands, through Typer's CliRunner on the sub-apps, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from phigate.cli_admin import (
    audit_app,
    db_app,
    job_app,
    register_profile_library,
    site_app,
    token_app,
    user_app,
)
from phigate.governance.database import open_session
from phigate.governance.identity import bootstrap
from phigate.governance.jobs import JobStore
from phigate.governance.users import authenticate_password
from phigate.record import InstanceResult, Status

from .conftest import profile_text

PASSWORD = "a long enough password"


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    environment = {"PHIGATE_HOME": str(tmp_path / "home"), "PHIGATE_DATABASE_URL": db_url}
    bootstrap(tmp_path / "home", environment)
    return environment


@pytest.fixture
def profile_app() -> typer.Typer:
    app = typer.Typer()
    register_profile_library(app)
    return app


def run(app: typer.Typer, env: dict[str, str], *args: str, **as_user: str) -> Result:
    environment = {**env, "PHIGATE_TOKEN": "", "PHIGATE_USER": "", "PHIGATE_PASSWORD": ""}
    if "user" in as_user:
        environment |= {"PHIGATE_USER": as_user["user"], "PHIGATE_PASSWORD": PASSWORD}
    if "token" in as_user:
        environment["PHIGATE_TOKEN"] = as_user["token"]
    return CliRunner(env=environment).invoke(app, list(args))


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def add_user(env: dict[str, str], name: str, *roles: str) -> None:
    role_args = [arg for role in roles for arg in ("--role", role)]
    ok(run(user_app, env, "add", name, *role_args, "--password", PASSWORD))


def test_db_upgrade_from_empty(empty_db_url: str, tmp_path: Path) -> None:
    env = {"PHIGATE_HOME": str(tmp_path), "PHIGATE_DATABASE_URL": empty_db_url}
    assert "revision 0002" in ok(run(db_app, env, "upgrade")).stdout
    assert "revision 0002" in ok(run(db_app, env, "upgrade")).stdout


def test_commands_on_an_uninitialised_database_fail_in_one_line(
    empty_db_url: str, tmp_path: Path
) -> None:
    env = {"PHIGATE_HOME": str(tmp_path), "PHIGATE_DATABASE_URL": empty_db_url}
    result = run(user_app, env, "list")
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "phigate db upgrade" in result.stderr


def test_users_and_tokens(env: dict[str, str]) -> None:
    add_user(env, "sam", "steward")
    listed = json.loads(ok(run(user_app, env, "list", "--json")).stdout)
    assert {(row["name"], tuple(row["roles"])) for row in listed} == {
        ("local-admin", ("admin",)),
        ("sam", ("steward",)),
    }
    assert "sam" in ok(run(user_app, env, "list")).stdout

    created = json.loads(ok(run(token_app, env, "create", "--json", user="sam")).stdout)
    assert created["token"].startswith("phg_") and created["user"] == "sam"
    tokens = json.loads(ok(run(token_app, env, "list", "--json", token=created["token"])).stdout)
    assert [row["id"] for row in tokens] == [created["id"]] and "token" not in tokens[0]
    ok(run(token_app, env, "revoke", str(created["id"])))
    refused = run(token_app, env, "list", token=created["token"])
    assert refused.exit_code == 3 and "sign-in failed" in refused.stderr

    denied = run(user_app, env, "add", "eve", "--role", "admin", user="sam")
    assert denied.exit_code == 3 and denied.stderr.startswith("phigate: error: permission denied")
    bad_role = run(user_app, env, "add", "eve", "--role", "wizard")
    assert bad_role.exit_code == 1 and "unknown role 'wizard'" in bad_role.stderr
    ok(run(user_app, env, "disable", "sam"))
    with (
        open_session(env["PHIGATE_DATABASE_URL"]) as session,
        pytest.raises(Exception, match="sign-in"),
    ):
        authenticate_password(session, "sam", PASSWORD)


def test_profile_change_control_through_the_cli(
    env: dict[str, str], profile_app: typer.Typer, tmp_path: Path
) -> None:
    add_user(env, "sam", "steward")
    add_user(env, "sue", "steward")
    first, second = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    first.write_text(profile_text("demo", 1))
    second.write_text(profile_text("demo", 2))
    assert (
        "another steward"
        in ok(run(profile_app, env, "propose", str(first), "-m", "first", user="sam")).stdout
    )
    selfish = run(profile_app, env, "approve", "demo", "1", user="sam")
    assert selfish.exit_code == 3 and "own proposal" in selfish.stderr
    ok(run(profile_app, env, "approve", "demo", "1", user="sue"))
    ok(run(profile_app, env, "activate", "demo", "1", user="sue"))
    ok(run(profile_app, env, "propose", str(second), "-m", "second", user="sue"))
    ok(run(profile_app, env, "approve", "demo", "2", user="sam"))
    ok(run(profile_app, env, "activate", "demo", "2", user="sam"))
    assert "version 1" in ok(run(profile_app, env, "rollback", "demo", user="sam")).stdout
    history = json.loads(ok(run(profile_app, env, "history", "demo", "--json")).stdout)
    assert [(row["number"], row["active"]) for row in history] == [(1, True), (2, False)]
    assert "change_note" in ok(run(profile_app, env, "history", "demo")).stdout.lower()
    ok(run(profile_app, env, "clone", "demo", "demo-b", user="sam"))
    ok(run(profile_app, env, "disable", "demo", "--reason", "incident", user="sam"))
    again = run(profile_app, env, "disable", "demo", user="sam")
    assert again.exit_code == 1 and "already disabled" in again.stderr
    ok(run(profile_app, env, "enable", "demo", user="sam"))
    missing = run(profile_app, env, "propose", str(tmp_path / "nope.yaml"), "-m", "x", user="sam")
    assert missing.exit_code == 1 and "cannot read" in missing.stderr


def test_sites(env: dict[str, str], tmp_path: Path) -> None:
    template = tmp_path / "north.yaml"
    template.write_text(
        "name: north\ndescription: North PACS\nrecognise: {calling_ae_titles: [NPACS]}\n"
    )
    ok(run(site_app, env, "add", str(template)))
    assert json.loads(ok(run(site_app, env, "list", "--json")).stdout)[0]["name"] == "north"
    assert "NPACS" in ok(run(site_app, env, "show", "north")).stdout
    assert json.loads(ok(run(site_app, env, "show", "north", "--json")).stdout)["name"] == "north"
    again = run(site_app, env, "add", str(template))
    assert again.exit_code == 1 and "--replace" in again.stderr
    ok(run(site_app, env, "add", str(template), "--replace"))
    template.write_text("name: North")
    invalid = run(site_app, env, "add", str(template))
    assert invalid.exit_code == 1 and "site template, name" in invalid.stderr


def test_jobs(env: dict[str, str]) -> None:
    add_user(env, "bot", "service_agent")
    with open_session(env["PHIGATE_DATABASE_URL"]) as session:
        from phigate.governance.policy_library import seed_builtin_profiles, version_for_job

        seed_builtin_profiles(session, [profile_text("tcia")])
        agent = authenticate_password(session, "bot", PASSWORD)
        store = JobStore(session, agent)
        job = store.create_job(name="nightly", profile_name="tcia", source_ref="src-1")
        version = version_for_job(session, "tcia").version
        store.add_records(
            job.id,
            [
                InstanceResult(
                    source_ref="a",
                    status=Status.WRITTEN,
                    profile_name="tcia",
                    profile_version=version,
                ),
                InstanceResult(
                    source_ref="b",
                    status=Status.QUARANTINED,
                    reason="truncated",
                    profile_name="tcia",
                    profile_version=version,
                ),
            ],
        )
        store.finish_job(job.id)
        session.commit()
    listed = json.loads(ok(run(job_app, env, "list", "--json")).stdout)
    assert [(row["id"], row["status"]) for row in listed] == [(job.id, "completed")]
    assert "nightly" in ok(run(job_app, env, "list")).stdout
    shown = ok(run(job_app, env, "show", str(job.id))).stdout
    assert "inputs           2 = 1 written + 0 filtered + 1 quarantined" in shown
    stats = json.loads(ok(run(job_app, env, "show", str(job.id), "--json")).stdout)["statistics"]
    assert stats["reasons"] == {"truncated": 1}
    assert run(job_app, env, "show", "999").exit_code == 1


def test_audit_verify_and_export(env: dict[str, str], tmp_path: Path) -> None:
    assert "audit chain intact" in ok(run(audit_app, env, "verify")).stdout
    assert json.loads(ok(run(audit_app, env, "verify", "--json")).stdout)["ok"] is True
    out = tmp_path / "audit.jsonl"
    exported = json.loads(ok(run(audit_app, env, "export", "--out", str(out), "--json")).stdout)
    key = Path(env["PHIGATE_HOME"]) / "keys" / "audit-signing-key.pem.pub"
    assert key.read_text() == exported["public_key"]
    assert (
        "export verified"
        in ok(run(audit_app, env, "verify-export", str(out), "--public-key", str(key))).stdout
    )
    checkpoint = str(out) + ".checkpoint.json"
    ok(run(audit_app, env, "verify", "--checkpoint", checkpoint, "--public-key", str(key)))
    out.write_text(out.read_text().replace("local-admin", "local-admon", 1))
    broken = run(audit_app, env, "verify-export", str(out), "--public-key", str(key))
    assert broken.exit_code == 1 and "differs from the one that was signed" in broken.stderr
    bad_date = run(audit_app, env, "export", "--out", str(out), "--since", "yesterday")
    assert bad_date.exit_code == 1 and "ISO 8601" in bad_date.stderr


def test_audit_verify_reports_tampering(env: dict[str, str]) -> None:
    from sqlalchemy import text

    from phigate.governance.database import make_engine

    engine = make_engine(env["PHIGATE_DATABASE_URL"])
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        connection.execute(text("UPDATE audit_entries SET reason = 'x' WHERE seq = 1"))
    engine.dispose()
    result = run(audit_app, env, "verify")
    assert (
        result.exit_code == 1
        and result.stderr == "phigate: error: audit chain broken: entry 1 was altered\n"
    )


def test_auditors_verify_researchers_do_not(env: dict[str, str]) -> None:
    add_user(env, "rita", "researcher")
    add_user(env, "aud", "auditor")
    ok(run(audit_app, env, "verify", user="aud"))
    assert run(audit_app, env, "verify", user="rita").exit_code == 3
