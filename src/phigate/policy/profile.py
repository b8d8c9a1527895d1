"""Load, validate and resolve profiles (YAML data, never code).

A profile may ``extend`` another: the child's ``options`` and list entries are added to the
parent's, its mappings are merged key by key and its scalars win. The resolved document,
together with the bundled Annex E table, is hashed; that hash is the profile *version*,
written into every output and every record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from phigate.errors import ProfileError
from phigate.policy.annex_e import MUTUALLY_EXCLUSIVE, table_digest
from phigate.policy.schema import PROFILE_SCHEMA

FORMAT_VERSION = 1
_MAX_EXTENDS_DEPTH = 8


@dataclass(frozen=True)
class Profile:
    """A validated, resolved profile. ``document`` is plain data ready to compile."""

    name: str
    version: str
    document: dict[str, Any]
    source: str
    site: str | None = None
    site_version: str | None = None

    @property
    def title(self) -> str:
        return str(self.document.get("title", self.name))


def with_site_template(profile: Profile, site: str, template: Mapping[str, Any]) -> Profile:
    """The profile overlaid with a site template's PACS quirks.

    The site's private tag dictionary joins the profile's (names and VRs of private
    attributes), its safe private tags join the safe list (kept under Retain Safe Private),
    its known burned-in regions join the pixel rules, and its modality defaults say which
    modalities always go to review and which have their pixels cleaned or not. (A modality
    default *profile* is resolved by the caller, which holds the policy library.) The
    profile version stays the approved one; the template gets its own content hash, and
    outputs name both.
    """
    document = json.loads(json.dumps(profile.document))
    private = document.setdefault("private", {})
    tags = template.get("private_tags", [])
    private.setdefault("safe", []).extend(
        _pick(entry, "creator", "group", "element") for entry in tags if entry.get("safe")
    )
    private.setdefault("dictionary", []).extend(
        _pick(entry, "creator", "group", "element", "vr", "keyword")
        for entry in tags
        if "vr" in entry or "keyword" in entry
    )
    _apply_modality_defaults(document, template.get("modality_defaults", {}))
    regions = [
        {key: region[key] for key in ("manufacturer", "model", "boxes") if key in region}
        for region in template.get("burned_in_regions", [])
    ]
    document.setdefault("pixels", {}).setdefault("known_regions", []).extend(regions)
    canonical = json.dumps(dict(template), sort_keys=True, separators=(",", ":"))
    site_version = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    return dataclasses.replace(profile, document=document, site=site, site_version=site_version)


def _pick(entry: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: entry[key] for key in keys if key in entry}


def _apply_modality_defaults(document: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """Write a site's per-modality review and pixel-cleaning choices into the profile."""
    review = [m for m, d in sorted(defaults.items()) if d.get("requires_review")]
    clean = [m for m, d in sorted(defaults.items()) if d.get("pixel_cleaning") is True]
    skip = [m for m, d in sorted(defaults.items()) if d.get("pixel_cleaning") is False]
    if review:
        document.setdefault("review", {}).setdefault("modalities", []).extend(review)
    pixels = document.setdefault("pixels", {})
    if clean:
        pixels.setdefault("clean_modalities", []).extend(clean)
        pixels["skip_modalities"] = [m for m in pixels.get("skip_modalities", []) if m not in clean]
    if skip:
        pixels.setdefault("skip_modalities", []).extend(skip)
        pixels["clean_modalities"] = [
            m for m in pixels.get("clean_modalities", []) if m not in skip
        ]


def builtin_names() -> list[str]:
    """Names of the profiles shipped in the package, sorted."""
    folder = resources.files("phigate.policy").joinpath("profiles")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def builtin_text(name: str) -> str:
    """The YAML text of a built-in profile."""
    if name not in builtin_names():
        known = ", ".join(builtin_names())
        raise ProfileError(f"unknown profile '{name}'; built-in profiles are: {known}")
    return resources.files("phigate.policy").joinpath("profiles", f"{name}.yaml").read_text()


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name, or a profile YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ProfileError(f"profile file not found: {path}")
        return parse_profile_text(path.read_text("utf-8"), source=str(path), folder=path.parent)
    return _load_builtin(name_or_path)


@cache
def _load_builtin(name: str) -> Profile:
    return parse_profile_text(builtin_text(name), source=f"{name}.yaml")


def parse_profile_text(text: str, source: str = "<profile>", folder: Path | None = None) -> Profile:
    """Parse, validate and resolve a profile given as YAML text."""
    document = _validated(text, source)
    resolved = _resolve(document, folder, depth=0)
    _check_semantics(resolved, source)
    return Profile(
        name=str(resolved["name"]), version=_version_of(resolved), document=resolved, source=source
    )


def _validated(text: str, source: str) -> dict[str, Any]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(
            f"{source}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    if not isinstance(document, dict):
        raise ProfileError(f"{source}: a profile must be a YAML mapping")
    validator = jsonschema.Draft202012Validator(PROFILE_SCHEMA)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        path = list(first.absolute_path)
        line = _line_of(root, path + _unexpected_key(first))
        where = ".".join(str(p) for p in path) or "top level"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ProfileError(f"{source} line {line}: {where}: {first.message}{more}")
    return document


def _unexpected_key(error: jsonschema.ValidationError) -> list[Any]:
    """For an unknown key, the key itself: its line is where the mistake is."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return []
    allowed = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    unexpected = sorted(key for key in error.instance if key not in allowed)
    return unexpected[:1]


def _line_of(node: yaml.Node | None, path: list[Any]) -> int:
    """The 1-based line of the key or item at ``path`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for step in path:
        located = _step(node, step)
        if located is None:
            break
        line, node = located
    return line


def _step(node: yaml.Node | None, step: Any) -> tuple[int, yaml.Node] | None:
    """One step down a composed YAML tree: (line of the key or item, the value node)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == step:
                return key.start_mark.line + 1, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        item = node.value[step]
        return item.start_mark.line + 1, item
    return None


def _resolve(document: dict[str, Any], folder: Path | None, depth: int) -> dict[str, Any]:
    parent_name = document.get("extends")
    if parent_name is None:
        return document
    if depth >= _MAX_EXTENDS_DEPTH:
        raise ProfileError(f"profile '{document['name']}' extends too deeply (a cycle?)")
    candidate = folder / f"{parent_name}.yaml" if folder is not None else None
    if candidate is not None and candidate.is_file():
        parent_text, parent_folder = candidate.read_text("utf-8"), folder
    else:
        parent_text, parent_folder = builtin_text(parent_name), None
    parent = _resolve(_validated(parent_text, f"{parent_name}.yaml"), parent_folder, depth + 1)
    merged: dict[str, Any] = _merge(parent, document)
    merged.pop("extends", None)
    merged["based_on"] = parent_name
    return merged


def _merge(parent: Any, child: Any) -> Any:
    if isinstance(parent, dict) and isinstance(child, dict):
        merged = dict(parent)
        for key, value in child.items():
            merged[key] = _merge(parent[key], value) if key in parent else value
        return merged
    if isinstance(parent, list) and isinstance(child, list):
        return parent + [item for item in child if item not in parent]
    return child


def _check_semantics(document: dict[str, Any], source: str) -> None:
    options = set(document.get("options", []))
    if options >= MUTUALLY_EXCLUSIVE:
        raise ProfileError(
            f"{source}: options retain_long_full_dates and retain_long_modified_dates "
            "exclude each other"
        )
    shift = document.get("dates", {}).get("shift_days")
    if shift and shift[0] > shift[1]:
        raise ProfileError(f"{source}: dates.shift_days must be [earliest, latest]")


def _version_of(document: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"format": FORMAT_VERSION, "annex_e": table_digest(), "profile": document},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
