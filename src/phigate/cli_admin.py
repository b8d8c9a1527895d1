"""Control-plane commands: ``phigate db | user | token | audit | job | site`` and the profile
library commands added to ``phigate profile``.

Each command runs as the identity :func:`resolve_cli_identity` finds (``PHIGATE_TOKEN``, or
``PHIGATE_USER`` with ``PHIGATE_PASSWORD``, else the local admin), so the authorisation
function and the audit chain cover the CLI exactly as they cover the API. Failures print one
line to stderr and exit non-zero: 1 for an error, 3 when authentication or authorisation
refused. Tabular output takes ``--json`` for machines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from sqlalchemy.orm import Session

from phigate.errors import PhigateError
from phigate.governance import audit as audit_chain
from phigate.governance import policy_library as library
from phigate.governance.audit import record_event, require
from phigate.governance.authz import SYSTEM, Operation, Principal, Resource
from phigate.governance.database import database_url, open_session, upgrade_database
from phigate.governance.errors import AuthenticationFailed, InvalidInput, PermissionDenied
from phigate.governance.home import resolve_home
from phigate.governance.identity import resolve_cli_identity
from phigate.governance.jobs import JobStore, job_to_dict
from phigate.governance.sites import add_site, get_site, list_sites, parse_template
from phigate.governance.users import (
    NewUser,
    create_token,
    create_user,
    disable_user,
    list_tokens,
    list_users,
    parse_roles,
    revoke_token,
)

SIGNING_KEY_FILE = Path("keys") / "audit-signing-key.pem"
EXIT_ERROR = 1
EXIT_REFUSED = 3

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

db_app = typer.Typer(help="The control-plane database.", no_args_is_help=True)
user_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (shown once, stored hashed).", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
job_app = typer.Typer(help="De-identification jobs and their statistics.", no_args_is_help=True)
site_app = typer.Typer(help="Imaging sites and their templates.", no_args_is_help=True)


@db_app.callback()
def _db_group() -> None:
    """Keep ``db`` a command group even while it has a single command."""


# --- plumbing -----------------------------------------------------------------------------


def _home() -> Path:
    """PHIGATE_HOME, resolved as every other command resolves it."""
    return resolve_home().root


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.echo(f"phigate: error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


@contextmanager
def _reported() -> Iterator[None]:
    """Turn phigate's typed errors into one line on stderr and an exit code."""
    try:
        yield
    except (PermissionDenied, AuthenticationFailed) as exc:
        _fail(str(exc), EXIT_REFUSED)
    except PhigateError as exc:
        _fail(str(exc))


@contextmanager
def _acting() -> Iterator[tuple[Session, Principal]]:
    """A session on the installation's database and the principal the command runs as."""
    with _reported(), open_session(database_url(_home())) as session:
        principal = resolve_cli_identity(session, os.environ)
        yield session, principal
        session.commit()


def print_json(value: Any) -> None:
    """JSON for machines, plainly: rich's highlighter costs 0.1 s on a run summary."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)
    ]
    typer.echo(
        "  ".join(
            column.upper().ljust(width) for column, width in zip(columns, widths, strict=True)
        ).rstrip()
    )
    for line in cells:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(sorted(str(item) for item in value)) or "-"
    return str(value)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InvalidInput(f"cannot read the {what} file {path.name!r}") from None


def _parse_moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{option} must be an ISO 8601 date or time, like 2025-01-31") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- db -----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations (``phigate init`` does this too)."""
    with _reported():
        url = database_url(_home())
        if url.startswith("sqlite"):
            _home().mkdir(parents=True, exist_ok=True)
        revision = upgrade_database(url)
        with open_session(url) as session:
            record_event(
                session, actor=SYSTEM, operation="db.upgrade", objects=[f"revision:{revision}"]
            )
            session.commit()
    typer.echo(f"database at revision {revision}")


# --- users and tokens ---------------------------------------------------------------------


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[list[str], typer.Option("--role", "-r", help="Repeat for several roles.")],
    password: Annotated[str | None, typer.Option(help="Omit for a token-only user.")] = None,
    site: Annotated[list[str] | None, typer.Option(help="Limit to these sites (repeat).")] = None,
    purpose: Annotated[list[str] | None, typer.Option(help="Purposes of use (repeat).")] = None,
) -> None:
    """Add a user with one or more roles."""
    with _acting() as (session, actor):
        new = NewUser(
            name=name,
            roles=parse_roles(role),
            password=password,
            sites=site or None,
            purposes=purpose or (),
        )
        user = create_user(session, actor, new)
    typer.echo(f"user {user.name} added with roles {','.join(sorted(user.role_names))}")


@user_app.command("list")
def user_list(as_json: JsonOption = False) -> None:
    """Every user with roles, sites, purposes and whether active."""
    with _acting() as (session, actor):
        rows = [
            {
                "name": user.name,
                "roles": sorted(user.role_names),
                "active": user.active,
                "sites": user.sites if user.sites is not None else ["*"],
                "purposes": user.purposes,
                "created_at": user.created_at,
            }
            for user in list_users(session, actor)
        ]
    if as_json:
        print_json(rows)
    else:
        _print_table(rows, ["name", "roles", "active", "sites", "purposes", "created_at"])


@user_app.command("disable")
def user_disable(name: str) -> None:
    """Disable a user and revoke their tokens (the user stays in the audit trail)."""
    with _acting() as (session, actor):
        disable_user(session, actor, name)
    typer.echo(f"user {name} disabled")


@token_app.command("create")
def token_create(
    user: Annotated[str | None, typer.Option(help="Whose token (default: yourself).")] = None,
    label: Annotated[str, typer.Option(help="A name to tell tokens apart.")] = "cli",
    days: Annotated[int, typer.Option(help="Lifetime in days.")] = 90,
    as_json: JsonOption = False,
) -> None:
    """Issue an API token; it is printed once and stored only as a hash."""
    with _acting() as (session, actor):
        issued = create_token(session, actor, user or actor.name, label=label, days=days)
    if as_json:
        print_json(
            {
                "id": issued.id,
                "token": issued.secret,
                "user": issued.user_name,
                "label": issued.label,
                "expires_at": issued.expires_at.isoformat(),
            }
        )
        return
    typer.echo(issued.secret)
    typer.echo(
        f"token {issued.id} for {issued.user_name} expires {_cell(issued.expires_at)}; "
        "it will not be shown again",
        err=True,
    )


@token_app.command("list")
def token_list(
    user: Annotated[str | None, typer.Option(help="Whose tokens (default: yours).")] = None,
    as_json: JsonOption = False,
) -> None:
    """A user's tokens (never the secrets)."""
    with _acting() as (session, actor):
        rows = [
            {
                "id": token.id,
                "label": token.label,
                "prefix": token.prefix,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "revoked_at": token.revoked_at,
                "last_used_at": token.last_used_at,
            }
            for token in list_tokens(session, actor, user or actor.name)
        ]
    if as_json:
        print_json(rows)
    else:
        _print_table(rows, ["id", "label", "prefix", "expires_at", "revoked_at", "last_used_at"])


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token at once."""
    with _acting() as (session, actor):
        revoke_token(session, actor, token_id)
    typer.echo(f"token {token_id} revoked")


# --- audit --------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    checkpoint: Annotated[
        Path | None, typer.Option(help="A signed checkpoint to hold the chain to.")
    ] = None,
    public_key: Annotated[
        Path | None, typer.Option(help="Public key that signed the checkpoint.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the chain; report the first altered, removed or reordered entry."""
    with _acting() as (session, actor):
        require(session, actor, Operation.AUDIT_VERIFY, Resource())
        head = None
        if checkpoint is not None:
            if public_key is None:
                raise InvalidInput("--checkpoint needs --public-key")
            head = audit_chain.read_checkpoint_head(
                checkpoint, audit_chain.load_public_key(public_key)
            )
        report = audit_chain.verify_chain(session, head)
        record_event(
            session,
            actor=actor,
            operation="audit.verify",
            outcome=audit_chain.Outcome.SUCCESS if report.ok else audit_chain.Outcome.FAILURE,
        )
    if as_json:
        print_json(report.to_dict())
    if report.problem is not None:
        _fail(f"audit chain broken: {report.problem.message}")
    if not as_json:
        typer.echo(f"audit chain intact: {report.entries} entries, head {report.head_hash[:16]}")


def _signing_key(path: Path | None) -> Any:
    key_path = path or _home() / SIGNING_KEY_FILE
    if key_path.exists():
        return audit_chain.load_signing_key(key_path)
    if path is not None:
        raise InvalidInput("the signing key file does not exist")
    return audit_chain.create_signing_key(key_path)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON Lines file to write.")],
    since: Annotated[str | None, typer.Option(help="ISO date/time, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO date/time, exclusive.")] = None,
    signing_key: Annotated[
        Path | None, typer.Option(help="Ed25519 key (default: in PHIGATE_HOME).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write entries as JSON Lines with an Ed25519-signed checkpoint of the chain head."""
    with _acting() as (session, actor):
        require(session, actor, Operation.AUDIT_EXPORT, Resource())
        key = _signing_key(signing_key)
        summary = audit_chain.export_audit(
            session,
            out,
            signing_key=key,
            since=_parse_moment(since, "--since"),
            until=_parse_moment(until, "--until"),
        )
        record_event(
            session,
            actor=actor,
            operation="audit.export",
            objects=[f"audit-head:{summary.head_seq}"],
        )
    public = audit_chain.public_key_pem(key.public_key()).decode()
    if as_json:
        print_json(
            {
                "entries": summary.entries,
                "head_seq": summary.head_seq,
                "head_hash": summary.head_hash,
                "export": str(summary.export_path),
                "checkpoint": str(summary.checkpoint_path),
                "public_key": public,
            }
        )
        return
    typer.echo(
        f"{summary.entries} entries written; checkpoint {summary.checkpoint_path.name} "
        f"signs head {summary.head_seq}"
    )


@audit_app.command("verify-export")
def audit_verify_export(
    export: Path,
    public_key: Annotated[Path, typer.Option(help="The signer's Ed25519 public key (PEM).")],
    checkpoint: Annotated[Path | None, typer.Option(help="Default: EXPORT.checkpoint.json")] = None,
) -> None:
    """Check an export against its signed checkpoint; needs no database."""
    with _reported():
        summary = audit_chain.verify_export(
            export, audit_chain.load_public_key(public_key), checkpoint
        )
    typer.echo(f"export verified: {summary.entries} entries, signed head {summary.head_seq}")


# --- jobs ---------------------------------------------------------------------------------


@job_app.command("list")
def job_list(
    status: Annotated[str | None, typer.Option(help="Only jobs with this status.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Recent jobs you may see."""
    with _acting() as (session, actor):
        rows = [
            job_to_dict(job)
            for job in JobStore(session, actor).list_jobs(status=status, limit=limit)
        ]
    if as_json:
        print_json(rows)
    else:
        _print_table(
            rows, ["id", "name", "status", "profile_name", "site", "created_by", "created_at"]
        )


@job_app.command("show")
def job_show(job_id: int, as_json: JsonOption = False) -> None:
    """One job and its statistics."""
    with _acting() as (session, actor):
        store = JobStore(session, actor)
        job = job_to_dict(store.get_job(job_id))
        stats = store.job_statistics(job_id).to_dict()
    if as_json:
        print_json({"job": job, "statistics": stats})
        return
    for key in (
        "id",
        "name",
        "status",
        "profile_name",
        "profile_version",
        "site",
        "created_by",
        "started_at",
        "finished_at",
        "error",
    ):
        typer.echo(f"{key:16} {_cell(job[key])}")
    typer.echo(
        f"{'inputs':16} {stats['inputs']} = {stats['written']} written + "
        f"{stats['filtered']} filtered + {stats['quarantined']} quarantined"
    )
    typer.echo(f"{'review':16} {stats['requires_review']}")
    for reason, count in sorted(stats["reasons"].items()):
        typer.echo(f"{'reason':16} {reason}: {count}")


# --- sites --------------------------------------------------------------------------------


@site_app.command("add")
def site_add(
    template: Annotated[Path, typer.Argument(help="YAML or JSON site template.")],
    replace: Annotated[bool, typer.Option(help="Replace an existing site's template.")] = False,
) -> None:
    """Add a site from its template (validated against the site schema)."""
    with _acting() as (session, actor):
        site = add_site(
            session, actor, parse_template(_read_text(template, "site template")), replace=replace
        )
    typer.echo(f"site {site.name} {'replaced' if replace else 'added'}")


@site_app.command("list")
def site_list(as_json: JsonOption = False) -> None:
    """Every site."""
    with _acting() as (session, actor):
        rows = [
            {
                "name": site.name,
                "description": site.template.get("description"),
                "profile": site.template.get("profile"),
                "updated_at": site.updated_at,
            }
            for site in list_sites(session, actor)
        ]
    if as_json:
        print_json(rows)
    else:
        _print_table(rows, ["name", "profile", "updated_at", "description"])


@site_app.command("show")
def site_show(name: str, as_json: JsonOption = False) -> None:
    """One site's template."""
    with _acting() as (session, actor):
        template = get_site(session, actor, name).template
    if as_json:
        print_json(template)
    else:
        typer.echo(yaml.safe_dump(template, sort_keys=False).rstrip())


# --- profile library ----------------------------------------------------------------------


def _version_label(version: Any) -> str:
    return f"{version.profile.name} version {version.number} ({version.version[:12]})"


def profile_propose(
    file: Annotated[Path, typer.Argument(help="The profile YAML.")],
    note: Annotated[str, typer.Option("--note", "-m", help="What changed and why.")],
) -> None:
    """Propose a new version of the profile the file names; a steward must approve it."""
    with _acting() as (session, actor):
        version = library.propose_profile(session, actor, _read_text(file, "profile"), note=note)
    typer.echo(f"proposed {_version_label(version)}; another steward must approve it")


def profile_approve(
    name: str,
    version: Annotated[str, typer.Argument(help="Version number or hash prefix.")],
    note: Annotated[str | None, typer.Option("--note", "-m")] = None,
) -> None:
    """Approve a proposed version (not your own)."""
    with _acting() as (session, actor):
        approved = library.approve_profile(session, actor, name, version, note=note)
    typer.echo(f"approved {_version_label(approved)}")


def profile_activate(name: str, version: str) -> None:
    """Make an approved version the default for new jobs."""
    with _acting() as (session, actor):
        active = library.activate_profile(session, actor, name, version)
    typer.echo(f"active: {_version_label(active)}")


def profile_rollback(name: str) -> None:
    """Return to the version that was active before the last activation."""
    with _acting() as (session, actor):
        active = library.rollback_profile(session, actor, name)
    typer.echo(f"rolled back; active: {_version_label(active)}")


def profile_history(name: str, as_json: JsonOption = False) -> None:
    """Every version of a profile, its approval, and which one is active."""
    with _acting() as (session, actor):
        history = library.profile_history(session, actor, name)
    if as_json:
        print_json([item.to_dict() for item in history])
        return
    rows = [{field: getattr(item, field) for field in item.__slots__} for item in history]
    for row in rows:
        row["version"] = row["version"][:12]
        row["active"] = "*" if row["active"] else ""
    _print_table(
        rows,
        [
            "number",
            "active",
            "state",
            "version",
            "author",
            "approved_by",
            "created_at",
            "change_note",
        ],
    )


def profile_clone(
    name: str,
    new_name: str,
    version: Annotated[str | None, typer.Option(help="Version to copy (default: active).")] = None,
    note: Annotated[str | None, typer.Option("--note", "-m")] = None,
) -> None:
    """Copy a profile under a new name, as a proposal to edit and approve."""
    with _acting() as (session, actor):
        clone = library.clone_profile(session, actor, name, new_name, ref=version, note=note)
    typer.echo(f"proposed {_version_label(clone)}")


def profile_disable(
    name: str, reason: Annotated[str | None, typer.Option(help="Why, for the audit trail.")] = None
) -> None:
    """Stop every new job from using a profile until it is enabled again."""
    with _acting() as (session, actor):
        library.set_profile_disabled(session, actor, name, disabled=True, reason=reason)
    typer.echo(f"profile {name} disabled")


def profile_enable(name: str) -> None:
    """Allow a disabled profile again."""
    with _acting() as (session, actor):
        library.set_profile_disabled(session, actor, name, disabled=False)
    typer.echo(f"profile {name} enabled")


def register_profile_library(profile_app: typer.Typer) -> None:
    """Add the change-control commands to the ``phigate profile`` app."""
    for name, function in (
        ("propose", profile_propose),
        ("approve", profile_approve),
        ("activate", profile_activate),
        ("rollback", profile_rollback),
        ("history", profile_history),
        ("clone", profile_clone),
        ("disable", profile_disable),
        ("enable", profile_enable),
    ):
        profile_app.command(name)(function)
