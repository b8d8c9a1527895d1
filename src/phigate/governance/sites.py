"""Imaging sites and their templates: each PACS's quirks, kept as validated data.

A template overlays a profile with what is known about one site: its private tag dictionary
and which private tags are safe to keep, where its devices burn text into pixels, defaults per
modality, and how to tell that an incoming study comes from it (calling AE title, source
folder, InstitutionName). Templates are YAML or JSON checked against :data:`SITE_SCHEMA`, and
no two sites may claim the same AE title, folder or institution, so recognition is never a
guess.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import jsonschema
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from phigate.governance.audit import record_event, require
from phigate.governance.authz import Operation, Principal, Resource
from phigate.governance.errors import AlreadyExists, NotFound, SiteTemplateInvalid
from phigate.governance.models import Site, utcnow
from phigate.policy.schema import PRIVATE_VRS

_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
_TEXT_LIST = {"type": "array", "items": _TEXT, "uniqueItems": True}
_PRIVATE_TAG = {
    "type": "object",
    "additionalProperties": False,
    "required": ["creator", "element"],
    "properties": {
        "creator": {"type": "string", "minLength": 1, "maxLength": 64},
        "group": {"type": "string", "pattern": "^(0x)?[0-9A-Fa-f]{4}$"},
        "element": {"type": "string", "pattern": "^(0x)?[0-9A-Fa-f]{2}$"},
        "vr": {"enum": list(PRIVATE_VRS)},
        "keyword": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"},
        "safe": {"type": "boolean"},
    },
}
_BOX = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0},
    "minItems": 4,
    "maxItems": 4,
}
_BURNED_IN_REGION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["boxes"],
    "properties": {
        "manufacturer": _TEXT,
        "model": _TEXT,
        "modality": {"type": "string", "pattern": "^[A-Z]{2,16}$"},
        "boxes": {"type": "array", "minItems": 1, "items": _BOX},
    },
}
_MODALITY_DEFAULT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "profile": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
        "requires_review": {"type": "boolean"},
        "pixel_cleaning": {"type": "boolean"},
    },
}
SITE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
        "description": {"type": "string", "maxLength": 500},
        "profile": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$"},
        "recognise": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "calling_ae_titles": {
                    "type": "array",
                    "uniqueItems": True,
                    "items": {"type": "string", "pattern": "^[ -\\[\\]-~]{1,16}$"},
                },
                "source_folders": _TEXT_LIST,
                "institution_names": _TEXT_LIST,
            },
        },
        "private_tags": {"type": "array", "items": _PRIVATE_TAG},
        "burned_in_regions": {"type": "array", "items": _BURNED_IN_REGION},
        "modality_defaults": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Z]{2,16}$"},
            "additionalProperties": _MODALITY_DEFAULT,
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SITE_SCHEMA)


def validate_template(template: Any) -> dict[str, Any]:
    """Check a template against the schema; the error names the first bad field by path."""
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(template))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
        raise SiteTemplateInvalid(f"site template, {where}: {error.message[:200]}")
    assert isinstance(template, dict)
    return template


def parse_template(text: str) -> dict[str, Any]:
    """Read a YAML or JSON template and validate it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SiteTemplateInvalid(f"the site template is not valid YAML or JSON{where}") from None
    return validate_template(data)


def _claims(template: dict[str, Any]) -> set[tuple[str, str]]:
    """What a template claims for recognition, normalised for comparison."""
    recognise = template.get("recognise", {})
    claims = {("calling AE title", ae.strip()) for ae in recognise.get("calling_ae_titles", [])}
    claims |= {("source folder", _folder(path)) for path in recognise.get("source_folders", [])}
    claims |= {
        ("InstitutionName", name.strip().casefold())
        for name in recognise.get("institution_names", [])
    }
    return claims


def _folder(path: str) -> str:
    return PurePath(path).as_posix().rstrip("/") or "/"


def _check_unclaimed(session: Session, template: dict[str, Any]) -> None:
    wanted = _claims(template)
    for other in session.scalars(select(Site).where(Site.name != template["name"])):
        clash = wanted & _claims(other.template)
        if clash:
            kind = sorted(clash)[0][0]
            raise SiteTemplateInvalid(f"site {other.name!r} already claims that {kind}")


def add_site(
    session: Session, actor: Principal, template: dict[str, Any], *, replace: bool = False
) -> Site:
    """Store a site (or, with ``replace``, a new template for an existing one)."""
    require(session, actor, Operation.SITE_MANAGE, Resource(site=template.get("name")))
    template = validate_template(template)
    _check_unclaimed(session, template)
    site = session.scalar(select(Site).where(Site.name == template["name"]))
    if site is not None and not replace:
        raise AlreadyExists(f"site {site.name!r} exists; use --replace to change its template")
    if site is None:
        site = Site(name=template["name"], template=template, created_by=actor.name)
        session.add(site)
    else:
        site.template, site.updated_at = template, utcnow()
    session.flush()
    operation = "site.replace" if replace else "site.add"
    record_event(session, actor=actor, operation=operation, objects=[f"site:{site.name}"])
    return site


def list_sites(session: Session, actor: Principal) -> list[Site]:
    """Every site, by name."""
    require(session, actor, Operation.SITE_READ, Resource())
    return list(session.scalars(select(Site).order_by(Site.name)))


def get_site(session: Session, actor: Principal, name: str) -> Site:
    """One site by name."""
    require(session, actor, Operation.SITE_READ, Resource(site=name))
    site = session.scalar(select(Site).where(Site.name == name))
    if site is None:
        raise NotFound(f"no site named {name!r}; see `phigate site list`")
    return site


def _folder_match(site: Site, folder: str) -> int:
    """Length of the longest configured folder containing ``folder`` (0 for none)."""
    target = PurePath(_folder(folder))
    best = 0
    for claimed in site.template.get("recognise", {}).get("source_folders", []):
        root = PurePath(_folder(claimed))
        if target == root or root in target.parents:
            best = max(best, len(root.parts))
    return best


def recognise_site(
    session: Session,
    *,
    calling_ae: str | None = None,
    source_folder: str | None = None,
    institution_name: str | None = None,
) -> Site | None:
    """The site an input comes from: by calling AE title, else by the deepest configured
    source folder containing it, else by InstitutionName (case-insensitive); None if unknown.

    The values compared may come from a DICOM file; they are never logged or returned.
    """
    sites = list(session.scalars(select(Site).order_by(Site.name)))
    tests: list[Callable[[Site], int]] = []
    if calling_ae:
        tests.append(
            lambda site: int(("calling AE title", calling_ae.strip()) in _claims(site.template))
        )
    if source_folder:
        tests.append(lambda site: _folder_match(site, source_folder))
    if institution_name:
        key = ("InstitutionName", institution_name.strip().casefold())
        tests.append(lambda site: int(key in _claims(site.template)))
    for test in tests:
        scored = [(test(site), site) for site in sites]
        best = max((score for score, _ in scored), default=0)
        if best > 0:
            return next(site for score, site in scored if score == best)
    return None
