"""DICOM PS3.15 Table E.1-1, the Application Level Confidentiality Profile Attributes.

The table is bundled as data (``data/confidentiality_profile_attributes.json``, extracted by
the innolitics/dicom-standard project, MIT licence, Copyright (c) 2017 Innolitics, LLC; see
``data/ATTRIBUTION.md``). Each row gives the Basic Profile action and, per option
(PS3.15 E.3), the action that takes precedence when that option is in force.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources


class Option(enum.StrEnum):
    """The options of PS3.15 E.3, with their codes from CID 7050 (PS3.16)."""

    CLEAN_PIXEL_DATA = "clean_pixel_data"
    CLEAN_RECOGNIZABLE_VISUAL_FEATURES = "clean_recognizable_visual_features"
    CLEAN_GRAPHICS = "clean_graphics"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    RETAIN_LONG_FULL_DATES = "retain_long_full_dates"
    RETAIN_LONG_MODIFIED_DATES = "retain_long_modified_dates"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_UIDS = "retain_uids"
    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"

    @property
    def code(self) -> tuple[str, str]:
        """(CodeValue, CodeMeaning) in CID 7050, coding scheme DCM."""
        return _OPTION_CODES[self]


BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")

_OPTION_CODES = {
    Option.CLEAN_PIXEL_DATA: ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES: (
        "113102",
        "Clean Recognizable Visual Features Option",
    ),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONG_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONG_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

# Column of Table E.1-1 for each option that acts on attributes (the pixel options have none).
OPTION_COLUMNS: dict[Option, str] = {
    Option.RETAIN_SAFE_PRIVATE: "rtnSafePrivOpt",
    Option.RETAIN_UIDS: "rtnUIDsOpt",
    Option.RETAIN_DEVICE_IDENTITY: "rtnDevIdOpt",
    Option.RETAIN_INSTITUTION_IDENTITY: "rtnInstIdOpt",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "rtnPatCharsOpt",
    Option.RETAIN_LONG_FULL_DATES: "rtnLongFullDatesOpt",
    Option.RETAIN_LONG_MODIFIED_DATES: "rtnLongModifDatesOpt",
    Option.CLEAN_DESCRIPTORS: "cleanDescOpt",
    Option.CLEAN_STRUCTURED_CONTENT: "cleanStructContOpt",
    Option.CLEAN_GRAPHICS: "cleanGraphOpt",
}

MUTUALLY_EXCLUSIVE = frozenset({Option.RETAIN_LONG_FULL_DATES, Option.RETAIN_LONG_MODIFIED_DATES})


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of Table E.1-1.

    ``pattern`` is the tag as eight upper-case hex digits where ``X`` matches any digit
    (``50XXXXXX`` is every curve attribute). ``basic`` is the Basic Profile code (``X``,
    ``Z``, ``D``, ``K``, ``C``, ``U`` or a composite such as ``X/Z/D``); ``options`` maps each
    option that names this row to its code.
    """

    pattern: str
    name: str
    basic: str
    options: tuple[tuple[Option, str], ...]

    @property
    def is_masked(self) -> bool:
        return "X" in self.pattern

    def mask_and_value(self) -> tuple[int, int]:
        """An integer mask and value such that ``tag & mask == value`` selects the row."""
        mask = int("".join("0" if c == "X" else "F" for c in self.pattern), 16)
        value = int(self.pattern.replace("X", "0"), 16)
        return mask, value

    def option_code(self, option: Option) -> str | None:
        return dict(self.options).get(option)


@cache
def load_table() -> tuple[TableRow, ...]:
    """The bundled table, parsed once per process."""
    text = resources.files("phigate.policy").joinpath("data", TABLE_FILE).read_text("utf-8")
    # The "private attributes" row has no hex tag; private rules and the Retain Safe Private
    # option handle it (see phigate.policy.plan).
    return tuple(_row(entry) for entry in json.loads(text) if _HEX_ID.fullmatch(entry["id"]))


TABLE_FILE = "confidentiality_profile_attributes.json"
_HEX_ID = re.compile("[0-9a-fx]{8}")


def table_digest() -> str:
    """A content hash of the bundled table, part of every profile version."""
    data = resources.files("phigate.policy").joinpath("data", TABLE_FILE).read_bytes()
    return hashlib.sha256(data).hexdigest()


def _row(entry: dict[str, str]) -> TableRow:
    options = tuple(
        (option, entry[column]) for option, column in OPTION_COLUMNS.items() if column in entry
    )
    return TableRow(
        pattern=entry["id"].upper(),
        name=entry["name"],
        basic=entry["basicProfile"],
        options=options,
    )
