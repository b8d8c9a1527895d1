"""The JSON Schema every profile YAML must satisfy (draft 2020-12).

A profile is data: the base table (PS3.15 Table E.1-1), the options in force, overrides by
keyword / tag / tag range / private creator and element / VR, private-tag rules, text
cleaning, dates, ages, review and pixel settings, and policy filters. ``docs/profiles.md``
explains each field; this schema is what enforces them.
"""

from __future__ import annotations

from typing import Any

from pydicom.valuerep import VR

from phigate.policy.annex_e import Option

ACTIONS = (
    "remove",
    "empty",
    "dummy",
    "keep",
    "replace_uid",
    "hash",
    "pseudonymize",
    "shift_date",
    "year_only",
    "clean_text",
)

RECOGNIZERS = ("date", "phone", "email", "ssn", "mrn", "address", "zip", "titled_name")

_TAG = r"^\(?[0-9A-Fa-f]{4},?[0-9A-Fa-f]{4}\)?$"
_TAG_RANGE = r"^\(?[0-9A-Fa-fXx]{4},?[0-9A-Fa-fXx]{4}\)?$"
_STRINGS: dict[str, Any] = {"type": "array", "items": {"type": "string", "minLength": 1}}

_VR: dict[str, Any] = {"type": "string", "pattern": "^[A-Z]{2}$"}
# The VRs a private dictionary may declare (PS3.5 Table 6.2-1). Not SQ: the items of a
# sequence read as UN are implicit VR and cannot be re-encoded as they are.
PRIVATE_VRS: tuple[str, ...] = tuple(
    sorted(vr.value for vr in VR if len(vr.value) == 2 and vr.value not in ("SQ", "UN"))
)


def _private_attribute(**more: Any) -> dict[str, Any]:
    """A private attribute by creator, element byte and optional group, plus ``more``."""
    return {
        "type": "object",
        "required": ["creator", "element"],
        "additionalProperties": False,
        "properties": {
            "creator": {"type": "string", "minLength": 1},
            "group": {"type": "string", "pattern": "^[0-9A-Fa-f]{4}$"},
            "element": {"type": "string", "pattern": "^(0x)?[0-9A-Fa-f]{2}$"},
            **more,
        },
    }


_SELECT: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "keyword": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9]*$"},
        "tag": {"type": "string", "pattern": _TAG},
        "range": {"type": "string", "pattern": _TAG_RANGE},
        "vr": _VR,
        "private": _private_attribute(),
    },
}

_PRIVATE_ENTRY = _private_attribute(note={"type": "string"})

# A private dictionary entry names a private attribute and gives its VR, so records say
# what it is and an implicit-VR input (where private VRs are unknown) is handled and written
# with the right VR instead of UN.
_PRIVATE_NAME = _private_attribute(
    vr={"enum": list(PRIVATE_VRS)},
    keyword={"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]{0,63}$"},
) | {"anyOf": [{"required": ["vr"]}, {"required": ["keyword"]}]}

_BOX: dict[str, Any] = {
    "type": "array",
    "items": {"type": "integer", "minimum": 0},
    "minItems": 4,
    "maxItems": 4,
}

_PIXELS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "engine": {"enum": ["rapidocr", "tesseract"]},
        "min_text_confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "review_threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "redact_all_text": {"type": "boolean"},
        "unclassified_text": {"enum": ["clear_and_review", "clear", "review"]},
        "keep_text": _STRINGS,
        "harmless_words": _STRINGS,
        "overlays": {"enum": ["remove", "clean", "keep"]},
        "reencode": {"enum": ["same_lossless", "uncompressed", "rle", "jpeg_ls", "jpeg2000"]},
        "skip_modalities": _STRINGS,
        "clean_modalities": _STRINGS,
        "known_regions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["boxes"],
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "string"},
                    "manufacturer": {"type": "string"},
                    "model": {"type": "string"},
                    "rows": {"type": "integer", "minimum": 1},
                    "columns": {"type": "integer", "minimum": 1},
                    "first_frame": {"type": "integer", "minimum": 0},
                    "last_frame": {"type": "integer", "minimum": 0},
                    "boxes": {"type": "array", "items": _BOX, "minItems": 1},
                },
            },
        },
        "scan": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["mode"],
                "additionalProperties": False,
                "properties": {
                    "mode": {"enum": ["all", "sample"]},
                    "modalities": _STRINGS,
                    "sop_classes": _STRINGS,
                    "sample": {
                        "type": "array",
                        "items": {"enum": ["first", "middle", "last", "localizer"]},
                    },
                },
            },
        },
    },
}

PROFILE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": 1},
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$", "maxLength": 40},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "extends": {"type": "string"},
        "options": {"type": "array", "items": {"enum": [o.value for o in Option]}},
        "default_unknown": {"enum": ["remove", "keep"]},
        "overrides": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["select", "action"],
                "additionalProperties": False,
                "properties": {
                    "select": _SELECT,
                    "action": {"enum": list(ACTIONS)},
                    "note": {"type": "string"},
                },
            },
        },
        "private": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "safe": {"type": "array", "items": _PRIVATE_ENTRY},
                "keep": {"type": "array", "items": _PRIVATE_ENTRY},
                "dictionary": {"type": "array", "items": _PRIVATE_NAME},
            },
        },
        "dates": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "shift_days": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "minItems": 2,
                    "maxItems": 2,
                },
                "reduce_to_year": {"type": "boolean"},
            },
        },
        "ages": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"aggregate_over": {"type": ["integer", "null"], "minimum": 1}},
        },
        "text": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ner": {"type": "boolean"},
                "recognizers": {"type": "array", "items": {"enum": list(RECOGNIZERS)}},
                "replacement": {"type": "string", "maxLength": 16},
                "dates_in_text": {"enum": ["remove", "shift"]},
                "keep_words": _STRINGS,
            },
        },
        "review": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "burned_in_modalities": _STRINGS,
                "burned_in_sop_classes": _STRINGS,
                "modalities": _STRINGS,
                "ner_min_score": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
        "filters": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["reason"],
                "minProperties": 2,
                "additionalProperties": False,
                "properties": {
                    "modalities": _STRINGS,
                    "sop_classes": _STRINGS,
                    "burned_in_annotation": {"enum": ["YES", "NO"]},
                    "reason": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                },
            },
        },
        "pixels": _PIXELS,
        "clinical_trial": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"require_subject_map": {"type": "boolean"}},
        },
    },
}
