"""The ``phigate`` command.

Every failure prints one line (``phigate: error: ...``) to stderr and exits non-zero; no
message quotes an element value or an input file name.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session

from phigate import __version__
from phigate.cli_admin import (
    audit_app,
    db_app,
    job_app,
    print_json,
    register_profile_library,
    site_app,
    token_app,
    user_app,
)
from phigate.errors import PhigateError, UsageError
from phigate.governance import policy_library
from phigate.governance.audit import record_event, require
from phigate.governance.authz import Operation, Resource, Zone
from phigate.governance.database import database_url, open_session
from phigate.governance.guards import authorize_data_read, authorize_reidentification
from phigate.governance.home import Home, init_home, load_keyring, resolve_home
from phigate.governance.identity import bootstrap, resolve_cli_identity
from phigate.governance.jobs import JobStore
from phigate.governance.sites import get_site, recognise_site
from phigate.governance.vault import Vault
from phigate.pipeline.report import RunSummary
from phigate.pipeline.runner import RunRequest, check_folders, discover, run
from phigate.pipeline.subjects import load_subject_map
from phigate.pixels.engines import check_engine
from phigate.pixels.settings import pixel_rules
from phigate.pixels.validation import run_validation
from phigate.policy.annex_e import load_table
from phigate.policy.plan import ActionPlan, compile_profile
from phigate.policy.profile import (
    Profile,
    builtin_names,
    load_profile,
    parse_profile_text,
    with_site_template,
)
from phigate.record import InstanceResult
from phigate.samples import find_planted, make_sample_set

app = typer.Typer(
    name="phigate",
    help="De-identify DICOM studies by versioned policy and share them without letting PHI out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
profile_app = typer.Typer(
    help="De-identification profiles and their versions.", no_args_is_help=True
)
quarantine_app = typer.Typer(
    help="Inputs that could not be processed (raw PHI: stewards and service agents only).",
    no_args_is_help=True,
)
validate_app = typer.Typer(help="Measure phigate on labelled test data.", no_args_is_help=True)
key_app = typer.Typer(help="The installation secret and the vault key.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
app.add_typer(key_app, name="key")
app.add_typer(validate_app, name="validate")
app.add_typer(quarantine_app, name="quarantine")
for _name, _sub_app in (
    ("db", db_app),
    ("user", user_app),
    ("token", token_app),
    ("audit", audit_app),
    ("job", job_app),
    ("site", site_app),
):
    app.add_typer(_sub_app, name=_name)
register_profile_library(profile_app)
RECORD_BATCH = 200

out = Console()
err = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home", help="PHIGATE_HOME (default $PHIGATE_HOME or ./phigate-data)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line to stderr and give the exit to raise."""
    _error_line(message)
    return typer.Exit(code)


def _error_line(message: str) -> None:
    # Plain write, not rich: a terminal-width wrap would break the one-line promise.
    sys.stderr.write(f"phigate: error: {' '.join(message.split())}\n")


@app.callback()
def global_options(
    token: Annotated[
        str | None, typer.Option("--token", help="API token to act as (else PHIGATE_TOKEN).")
    ] = None,
) -> None:
    """Options for every command."""
    if token:
        os.environ["PHIGATE_TOKEN"] = token


@app.command()
def init(home: HomeOption = None) -> None:
    """Create PHIGATE_HOME with a secret key and its database (both kept if they exist)."""
    where = resolve_home(home)
    created = init_home(where)
    os.environ.setdefault("PHIGATE_HOME", str(where.root))
    result = bootstrap(where.root)
    state = "created a new secret" if created else "kept the existing secret"
    out.print(f"phigate home ready at {where.root} ({state}: {where.key_file})", markup=False)
    out.print(f"database {result.database_url} at revision {result.revision}", markup=False)


@app.command()
def deidentify(
    input_dir: Annotated[
        Path, typer.Argument(help="Folder of DICOM files (searched recursively).")
    ],
    output_dir: Annotated[Path, typer.Argument(help="Folder for de-identified files.")],
    profile: Annotated[
        str | None,
        typer.Option(
            help="Approved profile: NAME, NAME@VERSION or an approved YAML file "
            "(default: the site's profile, else basic)."
        ),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option(
            help="The site the files come from (default: the site whose source folders "
            "hold INPUT_DIR, if any)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=0, help="Worker processes (0: one per core).")] = 0,
    home: HomeOption = None,
    key_file: Annotated[Path | None, typer.Option(help="Secret key file.")] = None,
    quarantine: Annotated[Path | None, typer.Option(help="Quarantine folder.")] = None,
    report: Annotated[Path | None, typer.Option(help="Also write the JSON report here.")] = None,
    subject_map: Annotated[
        Path | None, typer.Option(help="Clinical-trial subject map CSV.")
    ] = None,
    max_inflated_mb: Annotated[int, typer.Option(min=1, help="Deflate bomb limit.")] = 1024,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    json_output: JsonOption = False,
) -> None:
    """De-identify every DICOM file under INPUT_DIR into OUTPUT_DIR, as a recorded job."""
    where = resolve_home(home)
    keys = load_keyring(where, key_file)
    check_folders(input_dir, output_dir)
    with open_session(database_url(where.root)) as session:
        principal = resolve_cli_identity(session, os.environ)
        if site is None:
            site = _site_of_folder(session, input_dir)
        template = get_site(session, principal, site).template if site is not None else None
        plan = _job_plan(session, profile, site, template)
        subjects = load_subject_map(subject_map) if subject_map else None
        plans = [plan, *plan.modality_plans.values()]
        if any(p.require_subject_map for p in plans) and subjects is None:
            raise UsageError(f"profile '{plan.profile_name}' needs --subject-map")
        store = JobStore(session, principal)
        job = store.create_job(
            name=f"deidentify with {plan.profile_name}",
            profile_name=plan.profile_name,
            profile_version=plan.version,
            source_ref=keys.instance_ref(str(input_dir.resolve())),
            site=site,
            modality_profiles={
                modality: (p.profile_name, p.version) for modality, p in plan.modality_plans.items()
            },
        )
        session.commit()
        request = RunRequest(
            input_dir=input_dir,
            output_dir=output_dir,
            quarantine_dir=quarantine or where.quarantine,
            plan=plan,
            keys=keys,
            workers=workers or os.cpu_count() or 1,
            subjects=subjects,
            max_inflated_bytes=max_inflated_mb << 20,
        )
        vault = Vault(where.vault_file, keys)
        summary = _run_job(store, job.id, request, vault, progress and not json_output)
    document = summary.to_dict() | {"job_id": job.id}
    if plan.site is not None:
        document["site"] = {"name": plan.site, "template_version": plan.site_version}
    if plan.modality_plans:
        document["modality_profiles"] = {
            modality: {"name": p.profile_name, "version": p.version}
            for modality, p in sorted(plan.modality_plans.items())
        }
    _write_report(where.reports / summary.run_id / "report.json", document)
    if report:
        _write_report(report, document)
    if json_output:
        print_json(document)
    else:
        _print_summary(summary, plan, job.id)
    if not summary.balanced:
        raise fail("counts do not add up; please report this as a bug", 3)


def _site_of_folder(session: Session, folder: Path) -> str | None:
    """The site that claims ``folder`` as a source folder (its deepest claim wins)."""
    found = recognise_site(session, source_folder=str(folder.resolve()))
    if found is not None:
        err.print(f"site {found.name} (it claims the input folder)", markup=False)
    return found.name if found is not None else None


def _job_plan(
    session: Session, profile: str | None, site: str | None, template: dict[str, Any] | None
) -> ActionPlan:
    """The compiled plan of a job: the approved profile, overlaid with the site template,
    with a plan per modality for the site's modality default profiles (approved too)."""
    template = template or {}
    chosen = _approved_profile(session, profile or template.get("profile") or "basic")
    if site is None:
        return compile_profile(chosen)
    plan = compile_profile(with_site_template(chosen, site, template))
    for modality, defaults in sorted(template.get("modality_defaults", {}).items()):
        if "profile" in defaults:
            variant = with_site_template(
                _approved_profile(session, defaults["profile"]), site, template
            )
            plan.modality_plans[modality] = compile_profile(variant)
    return plan


def _approved_profile(session: Session, argument: str) -> Profile:
    """The profile a job may use: an approved version from the policy library.

    ``NAME`` takes the active version, ``NAME@VERSION`` a given one (number or hash prefix);
    a YAML file is accepted only if its content is an approved version of its name.
    """
    path = Path(argument)
    if path.suffix in (".yaml", ".yml"):
        local = load_profile(argument)
        version = policy_library.version_for_job(session, local.name, local.version)
    else:
        name, _, ref = argument.partition("@")
        version = policy_library.version_for_job(session, name, ref or None)
    return parse_profile_text(version.yaml_text, source=f"{version.profile.name} v{version.number}")


def _run_job(
    store: JobStore, job_id: int, request: RunRequest, vault: Vault, progress: bool
) -> RunSummary:
    """Run the job, storing its records in batches; a failure marks the job failed."""
    store.start_job(job_id)
    store.session.commit()
    batch: list[InstanceResult] = []

    def keep(record: InstanceResult) -> None:
        batch.append(record)
        if len(batch) >= RECORD_BATCH:
            store.add_records(job_id, batch)
            store.session.commit()
            batch.clear()

    try:
        summary = _run_with_progress(request, vault, progress, keep)
        store.add_records(job_id, batch)
        store.finish_job(job_id)
    except BaseException as exc:
        store.session.rollback()
        store.finish_job(job_id, error=f"the run stopped ({type(exc).__name__})")
        store.session.commit()
        raise
    store.session.commit()
    return summary


def _run_with_progress(
    request: RunRequest, vault: Vault, show: bool, keep: Callable[[InstanceResult], None]
) -> RunSummary:
    files = discover(request.input_dir)
    pending: dict[tuple[str, str], str] = {}
    columns = (TextColumn("de-identifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=not show, transient=True) as bar:
        task = bar.add_task("files", total=len(files))

        def advance(record: InstanceResult) -> None:
            bar.advance(task)
            keep(record)

        summary = run(
            request,
            on_result=advance,
            on_pseudonyms=pending.update,
            files=files,
        )
    vault.add(pending)
    return summary


def _print_pixel_summary(summary: RunSummary) -> None:
    pixels = summary.pixels.to_dict()
    table = Table(title="burned-in text in pixels")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in (
        "instances_scanned",
        "instances_skipped_by_sampling",
        "instances_with_phi",
        "detection_rate",
        "phi_detected",
        "phi_cleared",
        "phi_pending_review",
    ):
        table.add_row(key.replace("_", " "), str(pixels[key]))
    for kind, count in pixels["phi_by_kind"].items():
        table.add_row(f"  {kind}", str(count))
    out.print(table)


def _write_report(path: Path, document: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def _print_summary(summary: RunSummary, plan: ActionPlan, job_id: int) -> None:
    title = f"phigate deidentify: job {job_id}, profile {plan.profile_name} {plan.version}"
    table = Table(title=title)
    table.add_column("outcome")
    table.add_column("files", justify="right")
    table.add_row("written", str(summary.written))
    table.add_row("filtered by policy", str(summary.filtered))
    for reason, count in sorted(summary.filtered_reasons.items()):
        table.add_row(f"  {reason}", str(count))
    table.add_row("quarantined", str(summary.quarantined))
    for reason, count in sorted(summary.quarantine_reasons.items()):
        table.add_row(f"  {reason}", str(count))
    table.add_row("requiring review", str(summary.requires_review))
    table.add_row("inputs", str(summary.inputs))
    out.print(table)
    if summary.pixels.scanned or summary.pixels.skipped_by_sampling:
        _print_pixel_summary(summary)
    check = "=" if summary.balanced else "!="
    out.print(
        f"inputs {summary.inputs} {check} written {summary.written} + filtered "
        f"{summary.filtered} + quarantined {summary.quarantined}; "
        f"{summary.elapsed_seconds:.2f} s, {summary.files_per_second:.1f} files/s, "
        f"{summary.megabytes_per_second:.1f} MB/s with {summary.workers} worker(s)"
    )


@app.command()
def reidentify(
    value: Annotated[str, typer.Argument(help="A pseudonym phigate made.")],
    reason: Annotated[str, typer.Option(help="Why (an IRB protocol, a request number).")] = "",
    home: HomeOption = None,
    key_file: Annotated[Path | None, typer.Option(help="Secret key file.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Look a pseudonym up in the vault (honest brokers only; every lookup is audited)."""
    where = resolve_home(home)
    keys = load_keyring(where, key_file)
    with open_session(database_url(where.root)) as session:
        principal = resolve_cli_identity(session, os.environ)
        reference = f"pseudonym:{keys.hexdigest('audit/pseudonym', value.strip(), 24)}"
        authorize_reidentification(session, principal, object_ref=reference, reason=reason or None)
    entries = Vault(where.vault_file, keys).lookup(value)
    if not entries:
        raise fail("this value is not a pseudonym recorded in this installation's vault")
    if json_output:
        print_json([dataclasses.asdict(entry) for entry in entries])
        return
    for entry in entries:
        out.print(f"{entry.kind}\t{entry.original}", markup=False, highlight=False)


@key_app.command("rotate")
def key_rotate(home: HomeOption = None) -> None:
    """Re-encrypt the vault under a new key generation; no pseudonym changes."""
    where = resolve_home(home)
    keys = load_keyring(where)
    with open_session(database_url(where.root)) as session:
        principal = resolve_cli_identity(session, os.environ)
        require(session, principal, Operation.VAULT_ROTATE, Resource())
        count = Vault(where.vault_file, keys).rotate()
        record_event(session, actor=principal, operation="vault.rotate", reason=f"entries={count}")
        session.commit()
    out.print(f"vault re-encrypted: {count} entries under a new key generation")


@profile_app.command("list")
def profile_list(json_output: JsonOption = False) -> None:
    """List the built-in profiles with their version hashes."""
    profiles = [load_profile(name) for name in builtin_names()]
    if json_output:
        rows = [{"name": p.name, "version": p.version, "title": p.title} for p in profiles]
        print_json(rows)
        return
    table = Table("name", "version", "title")
    for p in profiles:
        table.add_row(p.name, p.version, p.title)
    out.print(table)


@profile_app.command("show")
def profile_show(name: Annotated[str, typer.Argument(help="Profile name or YAML file.")]) -> None:
    """Print a profile, resolved (after 'extends'), with its version."""
    import yaml

    profile = load_profile(name)
    out.print(f"# {profile.name} version {profile.version}", markup=False)
    out.print(yaml.safe_dump(profile.document, sort_keys=False), markup=False, highlight=False)


@profile_app.command("explain")
def profile_explain(
    name: Annotated[str, typer.Argument(help="Profile name or YAML file.")],
    tag: Annotated[str, typer.Argument(help="Keyword (PatientName) or tag (0010,0010).")],
    vr: Annotated[str | None, typer.Option(help="VR, for tags unknown to the dictionary.")] = None,
    creator: Annotated[str | None, typer.Option(help="Private creator of a private tag.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Say what a profile does to one attribute, and why."""
    plan = compile_profile(load_profile(name))
    number = _parse_tag(tag)
    element_vr = vr or _dictionary_vr(number)
    rule = plan.rule_for(number, element_vr, creator.strip().upper() if creator else None)
    label = keyword_for_tag(number) or f"({number >> 16:04X},{number & 0xFFFF:04X})"
    if json_output:
        document = {
            "attribute": label,
            "vr": element_vr,
            "action": rule.action.value,
            "why": rule.source,
        }
        print_json(document | {"profile": plan.profile_name, "version": plan.version})
        return
    out.print(f"{label} [{element_vr}]: {rule.action.value}  ({rule.source})", markup=False)


@profile_app.command("diff")
def profile_diff(
    first: Annotated[str, typer.Argument(help="Profile A: NAME, NAME@VERSION or a YAML file.")],
    second: Annotated[str, typer.Argument(help="Profile B: NAME, NAME@VERSION or a YAML file.")],
    json_output: JsonOption = False,
) -> None:
    """List attributes whose action differs between two profiles or two library versions."""
    plan_a, plan_b = (compile_profile(_profile_to_compare(n)) for n in (first, second))
    rows = []
    for number in sorted(_compared_tags(plan_a, plan_b)):
        element_vr = _dictionary_vr(number)
        rule_a, rule_b = plan_a.rule_for(number, element_vr), plan_b.rule_for(number, element_vr)
        if rule_a.action is not rule_b.action:
            label = keyword_for_tag(number) or f"({number >> 16:04X},{number & 0xFFFF:04X})"
            rows.append({"attribute": label, "a": rule_a.action.value, "b": rule_b.action.value})
    if json_output:
        print_json({"a": plan_a.version, "b": plan_b.version, "differences": rows})
        return
    table = Table(
        "attribute",
        f"{plan_a.profile_name} {plan_a.version}",
        f"{plan_b.profile_name} {plan_b.version}",
    )
    for row in rows:
        table.add_row(row["attribute"], row["a"], row["b"])
    out.print(table)
    out.print(
        f"{len(rows)} attribute(s) differ; options only in A: "
        f"{sorted(o.value for o in plan_a.options - plan_b.options)}; only in B: "
        f"{sorted(o.value for o in plan_b.options - plan_a.options)}"
    )


def _profile_to_compare(argument: str) -> Profile:
    """A built-in or file profile, or any version (approved or not) from the library."""
    if "@" not in argument:
        return load_profile(argument)
    name, _, ref = argument.partition("@")
    where = resolve_home(None)
    with open_session(database_url(where.root)) as session:
        principal = resolve_cli_identity(session, os.environ)
        require(session, principal, Operation.PROFILE_READ, Resource())
        version = policy_library.find_version(session, name, ref)
        return parse_profile_text(version.yaml_text, source=f"{name} v{version.number}")


def _compared_tags(*plans: ActionPlan) -> set[int]:
    tags = {int(row.pattern, 16) for row in load_table() if not row.is_masked}
    for plan in plans:
        tags.update(plan.exact)
        tags.update(plan.overrides.exact)
    return tags


def _parse_tag(text: str) -> int:
    number = tag_for_keyword(text)
    if number is not None:
        return int(number)
    digits = text.strip().strip("()").replace(",", "").replace(" ", "")
    if len(digits) == 8:
        try:
            return int(digits, 16)
        except ValueError:
            pass
    raise UsageError(f"'{text}' is neither a DICOM keyword nor a tag like (0010,0010)")


def _dictionary_vr(number: int) -> str:
    try:
        return str(dictionary_VR(number)).split(" ")[0]
    except KeyError:
        return "UN"


def _quarantine_notes(where: Home) -> list[dict[str, object]]:
    return [json.loads(path.read_text()) for path in sorted(where.quarantine.glob("*/*.json"))]


@quarantine_app.command("list")
def quarantine_list(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Every quarantined input: run, keyed reference, reason (the read is audited)."""
    where = resolve_home(home)
    with open_session(database_url(where.root)) as session:
        principal = resolve_cli_identity(session, os.environ)
        authorize_data_read(session, principal, zone=Zone.QUARANTINE, objects=["quarantine:all"])
    columns = ("run_id", "source_ref", "reason", "detail")
    rows = [{key: note.get(key) for key in columns} for note in _quarantine_notes(where)]
    if json_output:
        print_json(rows)
        return
    table = Table("run", "reference", "reason", "detail")
    for row in rows:
        table.add_row(*(str(row[key]) for key in columns))
    out.print(table)


@quarantine_app.command("show")
def quarantine_show(
    reference: Annotated[str, typer.Argument(help="The keyed reference of a quarantined input.")],
    home: HomeOption = None,
) -> None:
    """One quarantined input's note, including where its source was (raw; audited)."""
    where = resolve_home(home)
    with open_session(database_url(where.root)) as session:
        principal = resolve_cli_identity(session, os.environ)
        objects = [f"instance:{reference}"]
        authorize_data_read(session, principal, zone=Zone.QUARANTINE, objects=objects)
    notes = [note for note in _quarantine_notes(where) if note.get("source_ref") == reference]
    if not notes:
        raise fail("no quarantined input has this reference")
    print_json(notes)


@app.command()
def demo(
    home: HomeOption = None,
    profile: Annotated[str, typer.Option(help="Approved profile to run.")] = "tcia",
    workers: Annotated[int, typer.Option(min=0, help="Worker processes (0: one per core).")] = 0,
) -> None:
    """Make a sample set with planted PHI, de-identify it, and show that none of it got out."""
    where = resolve_home(home)
    if not where.key_file.exists():
        init(home=where.root)
    folder = where.root / "demo"
    if folder.exists():
        shutil.rmtree(folder)
    manifest = make_sample_set(folder / "input", patients=3, seed=0)
    out.print(
        f"made {len(manifest.instances)} DICOM files for 3 synthetic patients with planted PHI "
        f"(names, IDs, dates, addresses, free text, private tags, file meta) in {folder / 'input'}",
        markup=False,
    )
    deidentify(
        folder / "input",
        folder / "output",
        profile=profile,
        site=None,
        workers=workers,
        home=where.root,
        key_file=None,
        quarantine=None,
        report=folder / "report.json",
        subject_map=None,
        max_inflated_mb=1024,
        progress=True,
        json_output=False,
    )
    hits = find_planted(folder / "output", manifest.planted)
    terms = len(manifest.planted.all_strings())
    if hits:
        raise fail(f"{len(hits)} planted values found in the output; please report this as a bug")
    out.print(
        f"searched every output byte and file name for {terms} planted values: none found. "
        f"Output: {folder / 'output'}; report: {folder / 'report.json'}",
        markup=False,
    )


@validate_app.command("pixels")
def validate_pixels(
    modalities: Annotated[str, typer.Option(help="Comma-separated modalities.")] = (
        "CT,MR,US,MG,CR,SC"
    ),
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the report.")] = Path(
        "pixel-validation"
    ),
    per_modality: Annotated[int, typer.Option(min=1, help="Images per modality.")] = 3,
    profile: Annotated[str, typer.Option(help="Profile whose pixel rules are measured.")] = "tcia",
    seed: Annotated[int, typer.Option(help="Seed of the image generator.")] = 0,
    json_output: JsonOption = False,
) -> None:
    """Generate labelled images with burned-in text, clean them, and report how well it went.

    Writes report.json, report.md and report.html (with a plot) into --out: sensitivity,
    specificity and precision for PHI text per modality, time per image, engine and profile
    versions.
    """
    loaded = load_profile(profile)
    rules = pixel_rules(compile_profile(loaded).pixel_settings)
    check_engine(rules.engine)
    chosen = [m.strip().upper() for m in modalities.split(",") if m.strip()]
    report = run_validation(
        out_dir, chosen, per_modality, seed, rules, profile=f"{loaded.name} {loaded.version}"
    )
    document = report.to_dict() | {"profile": {"name": loaded.name, "version": loaded.version}}
    (out_dir / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    if json_output:
        print_json(document)
        return
    table = Table("modality", "images", "sensitivity", "specificity", "precision", "s/image")
    for row in document["modalities"]:
        table.add_row(
            row["modality"],
            str(row["images"]),
            f"{row['sensitivity']:.3f}",
            f"{row['specificity']:.3f}",
            f"{row['precision']:.3f}",
            f"{row['seconds_per_image']:.2f}",
        )
    out.print(table)
    out.print(f"report written to {out_dir}/report.md and report.html", markup=False)


@app.command()
def version() -> None:
    """Print phigate's version."""
    out.print(__version__)


def main() -> None:
    """Entry point: run the app, turning phigate errors into one line and a non-zero exit.

    Any other exception is a bug: it is named by its type only, since its message may quote
    a value read from an input file.
    """
    try:
        app()
    except PhigateError as exc:
        _error_line(str(exc))
        sys.exit(2)
    except Exception as exc:
        _error_line(f"internal error ({type(exc).__name__}); please report it")
        sys.exit(1)
    finally:
        # The work is done and every file closed; spare the interpreter's last collection
        # over SQLAlchemy's and pydicom's object graphs (about 0.2 s of every command).
        # Exit handlers and finalisers still run.
        gc.freeze()
