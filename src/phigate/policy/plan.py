"""Compile a profile into an :class:`ActionPlan`: for any attribute, the one action to take.

Precedence, highest first (``phigate profile explain`` prints which one decided):

1. profile overrides: by keyword or tag, then private creator + element, then tag range, then VR;
2. private attributes: the profile's ``private.keep`` list, then its ``private.safe`` list
   when Retain Safe Private is in force (PS3.15 E.3.10), else removed;
3. PS3.15 Table E.1-1: the Basic Profile action, or the action of an option in force
   (a retaining ``K`` wins over a cleaning ``C`` when two options name the same row);
4. UIDs (VR UI) not in the table: replaced, unless they are DICOM-defined or UIDs are retained;
5. free text (LT, ST, UT, UC) not in the table is cleaned: the table omits attributes such as
   TextValue (0040,A160) and UnformattedTextValue (0070,0006) that live inside sequences it
   keeps or dummies (Content Sequence, Graphic Annotation Sequence), and text can hold names;
6. other attributes of the DICOM dictionary are standard and kept, except person names (PN),
   which, like attributes unknown to the dictionary, follow ``default_unknown``.

Composite Basic Profile codes depend on the attribute's type in its IOD (PS3.15 E.1.1):
without IOD tables here, the code valid for every type is taken (``X/Z`` -> ``Z``, anything
ending in ``D`` -> ``D``, ``X/Z/U*`` -> ``U``), so outputs stay valid: type 2 attributes
stay present and empty, type 1 get a dummy of the right VR.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from phigate.errors import ProfileError
from phigate.policy.annex_e import Option, TableRow, load_table
from phigate.policy.profile import Profile

T = TypeVar("T")

TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UT", "UC", "UR", "PN"})
FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})
DATE_VRS = frozenset({"DA", "DT", "TM"})


class Action(enum.StrEnum):
    REMOVE = "remove"
    EMPTY = "empty"
    DUMMY = "dummy"
    KEEP = "keep"
    REPLACE_UID = "replace_uid"
    HASH = "hash"
    PSEUDONYMIZE = "pseudonymize"
    SHIFT_DATE = "shift_date"
    YEAR_ONLY = "year_only"
    CLEAN_TEXT = "clean_text"


@dataclass(frozen=True, slots=True)
class Rule:
    """An action and the reason it applies (shown by ``phigate profile explain``).

    ``clean_by_vr`` marks a "C" that covers a whole tag range (curves, overlay planes): what
    cleaning means is decided per element, from its VR.
    """

    action: Action
    source: str
    clean_by_vr: bool = False


Masked = tuple[int, int, Rule]  # (mask, value, rule): the rule applies when tag & mask == value


@dataclass(frozen=True)
class Overrides:
    """The profile's own rules, which beat everything else, most specific first."""

    exact: dict[int, Rule] = field(default_factory=dict)
    private: dict[PrivateKey, Rule] = field(default_factory=dict)
    ranges: list[Masked] = field(default_factory=list)
    vrs: dict[str, Rule] = field(default_factory=dict)

    def find(self, tag: int, vr: str, creator: str | None) -> Rule | None:
        if tag in self.exact:
            return self.exact[tag]
        if creator is not None and self.private:
            rule = private_lookup(self.private, creator, tag)
            if rule is not None:
                return rule
        for mask, value, rule in self.ranges:
            if tag & mask == value:
                return rule
        return self.vrs.get(vr)


@dataclass(frozen=True, slots=True)
class TextSettings:
    ner: bool = True
    recognizers: frozenset[str] = frozenset()
    replacement: str = "***"
    shift_dates_in_text: bool = False
    keep_words: frozenset[str] = frozenset()


DEFAULT_SHIFT_DAYS = (-3650, -365)


@dataclass(frozen=True, slots=True)
class DateSettings:
    shift_days: tuple[int, int] = DEFAULT_SHIFT_DAYS
    reduce_to_year: bool = False


@dataclass(frozen=True, slots=True)
class ReviewSettings:
    burned_in_modalities: frozenset[str] = frozenset()
    burned_in_sop_classes: frozenset[str] = frozenset()
    ner_min_score: float = 0.5
    modalities: frozenset[str] = frozenset()  # every instance of these goes to review


@dataclass(frozen=True, slots=True)
class Filter:
    """Instances matching every given criterion are filtered out with ``reason``."""

    reason: str
    modalities: frozenset[str] = frozenset()
    sop_classes: frozenset[str] = frozenset()
    burned_in_annotation: str | None = None


# A private attribute as profiles name it: (creator, group or None for any group, element
# byte). A creator may use its block in several groups for other attributes (Siemens does),
# so an entry that gives a group applies to that group only.
PrivateKey = tuple[str, int | None, int]


def private_lookup(table: dict[PrivateKey, T], creator: str, tag: int) -> T | None:
    """The entry for a private attribute: one for its group first, else one for any group."""
    found = table.get((creator, tag >> 16, tag & 0xFF))
    return found if found is not None else table.get((creator, None, tag & 0xFF))


@dataclass(frozen=True, slots=True)
class PrivateName:
    """What a private dictionary (profile or site template) says of one private attribute."""

    keyword: str | None
    vr: str | None


_REMOVE_PRIVATE = Rule(Action.REMOVE, "private attribute not on a keep or safe list")
SAFE_PRIVATE = Rule(Action.KEEP, "safe private attribute (Retain Safe Private)")
# Standard attributes outside the table: kept, short strings checked for the instance's own
# identifiers (phigate.deid.visitor).
KEEP_STANDARD = Rule(Action.KEEP, "standard attribute not in Table E.1-1")
_CLEAN_FREE_TEXT = Rule(Action.CLEAN_TEXT, "free text not in Table E.1-1 (cleaned)")
_GROUP_LENGTH = Rule(Action.REMOVE, "group length (retired; recomputed on write)")
_URL = Rule(Action.REMOVE, "URL not in Table E.1-1 (query strings carry identifiers)")
# Standard attributes Table E.1-1 leaves out that hold originals of other attributes.
_REMOVED_OUTSIDE_THE_TABLE = {
    0x04000500: Rule(Action.REMOVE, "Encrypted Attributes Sequence: originals of attributes"),
    0x00686300: Rule(Action.REMOVE, "HPGL Document: drawing whose labels are text"),
    0x00100033: Rule(Action.REMOVE, "Patient's Birth Date in Alternative Calendar"),
    0x00100034: Rule(Action.REMOVE, "Patient's Death Date in Alternative Calendar"),
}
# Command (0000) and file meta (0002) elements have no place in a data set (PS3.5 7.1); a
# writer would put them beside the rebuilt file meta, where a reader takes them as its own.
_NOT_A_DATA_SET_ELEMENT = Rule(Action.REMOVE, "command or file meta element inside the data set")


@dataclass
class ActionPlan:
    """The compiled form of one profile version. Built once, then read by every worker."""

    profile_name: str
    version: str
    options: frozenset[Option]
    overrides: Overrides
    exact: dict[int, Rule]
    masked: list[Masked]
    private_rules: dict[PrivateKey, Rule]
    uid_rule: Rule
    unknown_rule: Rule
    text: TextSettings
    dates: DateSettings
    age_cap: int | None
    review: ReviewSettings
    filters: tuple[Filter, ...]
    clean_pixels: bool
    require_subject_map: bool
    pixel_settings: dict[str, Any] = field(default_factory=dict)
    pixel_skip_modalities: frozenset[str] = frozenset()
    pixel_clean_modalities: frozenset[str] = frozenset()
    private_names: dict[PrivateKey, PrivateName] = field(default_factory=dict)
    site: str | None = None
    site_version: str | None = None
    # Plans for instances of one modality (a site's modality default profile), by modality.
    modality_plans: dict[str, ActionPlan] = field(default_factory=dict)
    _cache: dict[tuple[int, str, str | None], Rule] = field(default_factory=dict, repr=False)

    @property
    def method_description(self) -> str:
        """The DeidentificationMethod value (LO, at most 64 characters)."""
        site = f" site {self.site_version}" if self.site_version else ""
        return f"phigate {self.profile_name} {self.version}{site}"[:64]

    @property
    def uses_pixels(self) -> bool:
        """Whether any instance may get its pixels cleaned under this plan or its variants."""
        return (
            self.clean_pixels
            or bool(self.pixel_clean_modalities)
            or any(plan.uses_pixels for plan in self.modality_plans.values())
        )

    def cleans_pixels_for(self, modality: str | None) -> bool:
        """Clean Pixel Data in force for this modality, after the modality exceptions."""
        if modality in self.pixel_clean_modalities:
            return True
        return self.clean_pixels and modality not in self.pixel_skip_modalities

    def for_modality(self, modality: str | None) -> ActionPlan:
        """The plan that governs an instance of this modality."""
        if modality is None:
            return self
        return self.modality_plans.get(modality, self)

    def private_name(self, creator: str, tag: int) -> PrivateName | None:
        """The private dictionary entry for a private attribute: one for its group first
        (a creator may use a block in several groups, with other VRs), else one for any."""
        return private_lookup(self.private_names, creator, tag) if self.private_names else None

    @property
    def dates_modified(self) -> bool:
        return Option.RETAIN_LONG_MODIFIED_DATES in self.options

    def rule_for(self, tag: int, vr: str, creator: str | None = None) -> Rule:
        """The rule for an attribute; ``creator`` is the private creator of a private tag."""
        key = (tag, vr, creator)
        rule = self._cache.get(key)
        if rule is None:
            rule = self._decide(tag, vr, creator)
            self._cache[key] = rule
        return rule

    def _decide(self, tag: int, vr: str, creator: str | None) -> Rule:
        if tag & 0xFFFF == 0:
            return _GROUP_LENGTH
        if tag >> 16 < 0x0008:
            return _NOT_A_DATA_SET_ELEMENT
        override = self.overrides.find(tag, vr, creator)
        if override is not None:
            return override
        if (tag >> 16) % 2:
            return self._private_rule(tag, vr, creator)
        if tag in self.exact:
            return self.exact[tag]
        for mask, value, rule in self.masked:
            if tag & mask == value:
                if rule.clean_by_vr:
                    # An overlay bitmap is read and cleaned by the pixel step (the pipeline
                    # removes the planes where that step did not run); curve and audio data
                    # cannot be cleaned at all.
                    overlay = tag & _OVERLAY_GROUPS[0] == _OVERLAY_GROUPS[1]
                    binary = Action.KEEP if overlay else Action.REMOVE
                    return Rule(_clean_action(vr, None, self.dates, binary), rule.source)
                return rule
        if vr == "UI":
            return self.uid_rule
        if not keyword_for_tag(tag):
            return self.unknown_rule
        if vr in FREE_TEXT_VRS:
            return _CLEAN_FREE_TEXT
        if tag in _REMOVED_OUTSIDE_THE_TABLE:
            return _REMOVED_OUTSIDE_THE_TABLE[tag]
        if vr in DATE_VRS:
            return self._date_outside_the_table(vr)
        if vr == "UR":
            return _URL
        if vr != "PN":
            return KEEP_STANDARD
        return Rule(self.unknown_rule.action, "person name not in Table E.1-1: default_unknown")

    def _date_outside_the_table(self, vr: str) -> Rule:
        """A date or time the table does not list (StudyUpdateDateTime, dates in an
        alternative calendar...) goes the way the profile's own dates go: kept with full
        dates, modified like them with modified dates, else removed. Kept as sent, it would
        show the offset of every shifted date."""
        if Option.RETAIN_LONG_FULL_DATES in self.options:
            return Rule(Action.KEEP, "date not in Table E.1-1: full dates retained")
        if Option.RETAIN_LONG_MODIFIED_DATES in self.options:
            action = _clean_action(vr, Option.RETAIN_LONG_MODIFIED_DATES, self.dates)
            return Rule(action, "date not in Table E.1-1: modified as the profile's dates are")
        return Rule(Action.REMOVE, "date not in Table E.1-1: removed")

    def _private_rule(self, tag: int, vr: str, creator: str | None) -> Rule:
        element = tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:
            return Rule(Action.KEEP, "private creator (removed when its block is empty)")
        if creator is not None:
            rule = private_lookup(self.private_rules, creator, tag)
            if rule is SAFE_PRIVATE and vr in TEXT_VRS | DATE_VRS:
                # Safe lists name numeric fields; text or a date there is a sender's misuse
                # of the field, and is treated as what it is.
                action = _clean_action(vr, None, self.dates, Action.KEEP)
                return Rule(action, "safe private attribute holding text or a date: cleaned")
            if rule is not None:
                return rule
        return _REMOVE_PRIVATE


def compile_profile(profile: Profile) -> ActionPlan:
    """Turn a resolved profile into the plan workers execute."""
    doc = profile.document
    options = frozenset(Option(o) for o in doc.get("options", []))
    dates = _date_settings(doc)
    exact, masked = _table_rules(options, dates)
    overrides = Overrides()
    for override in doc.get("overrides", []):
        _apply_override(override, overrides)
    unknown = Action.KEEP if doc.get("default_unknown") == "keep" else Action.REMOVE
    retain_uids = Option.RETAIN_UIDS in options
    return ActionPlan(
        profile_name=profile.name,
        version=profile.version,
        options=options,
        overrides=overrides,
        exact=exact,
        masked=masked,
        private_rules=_private_rules(doc, options),
        uid_rule=Rule(
            Action.KEEP if retain_uids else Action.REPLACE_UID,
            "UID not in Table E.1-1" + (" (Retain UIDs)" if retain_uids else ""),
        ),
        unknown_rule=Rule(unknown, f"not a standard attribute: default_unknown {unknown}"),
        text=_text_settings(doc),
        dates=dates,
        age_cap=doc.get("ages", {}).get("aggregate_over", 89),
        review=_review_settings(doc),
        filters=tuple(_filter(f) for f in doc.get("filters", [])),
        clean_pixels=Option.CLEAN_PIXEL_DATA in options,
        pixel_settings=dict(doc.get("pixels", {})),
        pixel_skip_modalities=frozenset(doc.get("pixels", {}).get("skip_modalities", [])),
        pixel_clean_modalities=frozenset(doc.get("pixels", {}).get("clean_modalities", [])),
        private_names=_private_names(doc),
        site=profile.site,
        site_version=profile.site_version,
        require_subject_map=bool(doc.get("clinical_trial", {}).get("require_subject_map")),
    )


# Overlay planes use the even groups 6000-601E (PS3.3 C.9.2). The table lists only Overlay
# Data and Overlay Comments; the plane's other attributes follow Overlay Data, so a plane
# is never left half removed.
_OVERLAY_GROUPS: Masked = (0xFFE10000, 0x60000000, Rule(Action.KEEP, ""))
_OVERLAY_DATA = "60XX3000"


def _table_rules(
    options: frozenset[Option], dates: DateSettings
) -> tuple[dict[int, Rule], list[Masked]]:
    exact: dict[int, Rule] = {}
    masked: list[Masked] = []
    overlay_plane = Rule(Action.REMOVE, "overlay plane")
    for row in load_table():
        rule = _row_rule(row, options, dates)
        if row.is_masked:
            mask, value = row.mask_and_value()
            masked.append((mask, value, rule))
            if row.pattern == _OVERLAY_DATA:
                overlay_plane = Rule(
                    rule.action,
                    rule.source.replace("Overlay Data", "Overlay plane"),
                    rule.clean_by_vr,
                )
        else:
            exact[int(row.pattern, 16)] = rule
    masked.append((_OVERLAY_GROUPS[0], _OVERLAY_GROUPS[1], overlay_plane))
    return exact, masked


def _row_rule(row: TableRow, options: frozenset[Option], dates: DateSettings) -> Rule:
    where = f"Table E.1-1 '{row.name}'"
    in_force = [(option, code) for option, code in row.options if option in options]
    for wanted in ("K", "C"):
        for option, code in in_force:
            if code == wanted:
                action = _code_action(code, row, option, dates)
                by_vr = code == "C" and row.is_masked
                return Rule(action, f"{where}: option {option.value} ({code})", by_vr)
    return Rule(_code_action(row.basic, row, None, dates), f"{where}: basic {row.basic}")


def _code_action(code: str, row: TableRow, option: Option | None, dates: DateSettings) -> Action:
    strictest = code.split("/")[-1].rstrip("*")
    simple = {"X": Action.REMOVE, "Z": Action.EMPTY, "D": Action.DUMMY, "K": Action.KEEP}
    if strictest in simple:
        return simple[strictest]
    if strictest == "U":
        return Action.REPLACE_UID
    return _clean_action(_row_vr(row), option, dates)


def _clean_action(
    vr: str, option: Option | None, dates: DateSettings, binary: Action = Action.REMOVE
) -> Action:
    """What "C" (clean: replace with values of similar meaning, PS3.15 E.1.1) means for a VR;
    a binary value (OB, OW, numbers) cannot be cleaned, so ``binary`` is done with it: it is
    removed, but for overlay planes, whose bitmaps the pixel step reads."""
    if vr in DATE_VRS:
        if option is Option.RETAIN_LONG_MODIFIED_DATES and dates.reduce_to_year:
            return Action.YEAR_ONLY
        return Action.SHIFT_DATE
    if vr in TEXT_VRS:
        return Action.PSEUDONYMIZE if vr == "PN" else Action.CLEAN_TEXT
    if vr == "SQ":
        return Action.KEEP  # walked item by item with the same plan
    return binary


def _row_vr(row: TableRow) -> str:
    try:
        return str(dictionary_VR(int(row.pattern.replace("X", "0"), 16))).split(" ")[0]
    except KeyError:
        return "UN"


def _private_rules(doc: dict[str, Any], options: frozenset[Option]) -> dict[PrivateKey, Rule]:
    private = doc.get("private", {})
    rules: dict[PrivateKey, Rule] = {}
    if Option.RETAIN_SAFE_PRIVATE in options:
        for entry in private.get("safe", []):
            rules[_private_key(entry)] = SAFE_PRIVATE
    for entry in private.get("keep", []):
        rules[_private_key(entry)] = Rule(
            Action.KEEP, "private attribute on the profile's keep list"
        )
    return rules


def _private_names(doc: dict[str, Any]) -> dict[PrivateKey, PrivateName]:
    return {
        _private_key(entry): PrivateName(entry.get("keyword"), entry.get("vr"))
        for entry in doc.get("private", {}).get("dictionary", [])
    }


def _private_key(entry: dict[str, str]) -> PrivateKey:
    group = int(entry["group"], 16) if "group" in entry else None
    return (entry["creator"].strip().upper(), group, int(entry["element"], 16))


def _apply_override(override: dict[str, Any], overrides: Overrides) -> None:
    """Add one override; a later override for the same selector replaces an earlier one."""
    select = override["select"]
    kind, value = next(iter(select.items()))
    rule = Rule(Action(override["action"]), f"profile override ({kind} {_describe(value)})")
    if kind == "keyword":
        tag = tag_for_keyword(value)
        if tag is None:
            raise ProfileError(f"override selects unknown keyword '{value}'")
        overrides.exact[int(tag)] = rule
    elif kind == "tag":
        overrides.exact[int(_hex(value), 16)] = rule
    elif kind == "range":
        digits = _hex(value).upper()
        mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
        overrides.ranges.insert(0, (mask, int(digits.replace("X", "0"), 16), rule))
    elif kind == "private":
        overrides.private[_private_key(value)] = rule
    else:
        overrides.vrs[value] = rule


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value['creator']}:{value['element']}"
    return str(value)


def _hex(tag_text: str) -> str:
    return tag_text.strip("()").replace(",", "")


def _date_settings(doc: dict[str, Any]) -> DateSettings:
    dates = doc.get("dates", {})
    earliest, latest = dates.get("shift_days", DEFAULT_SHIFT_DAYS)
    return DateSettings(
        shift_days=(int(earliest), int(latest)), reduce_to_year=bool(dates.get("reduce_to_year"))
    )


def _text_settings(doc: dict[str, Any]) -> TextSettings:
    text = doc.get("text", {})
    return TextSettings(
        ner=bool(text.get("ner", True)),
        recognizers=frozenset(text.get("recognizers", [])),
        replacement=str(text.get("replacement", "***")),
        shift_dates_in_text=text.get("dates_in_text") == "shift",
        keep_words=frozenset(word.upper() for word in text.get("keep_words", [])),
    )


def _review_settings(doc: dict[str, Any]) -> ReviewSettings:
    review = doc.get("review", {})
    return ReviewSettings(
        burned_in_modalities=frozenset(review.get("burned_in_modalities", [])),
        burned_in_sop_classes=frozenset(review.get("burned_in_sop_classes", [])),
        ner_min_score=float(review.get("ner_min_score", 0.5)),
        modalities=frozenset(review.get("modalities", [])),
    )


def _filter(entry: dict[str, Any]) -> Filter:
    return Filter(
        reason=entry["reason"],
        modalities=frozenset(entry.get("modalities", [])),
        sop_classes=frozenset(entry.get("sop_classes", [])),
        burned_in_annotation=entry.get("burned_in_annotation"),
    )
