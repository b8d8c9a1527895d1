"""Apply a compiled plan to one data set: one visitor over every element, at every depth.

Elements whose rule is *keep* are left as pydicom read them (raw bytes, never decoded), which
is what keeps the header pass close to the cost of reading and writing the file. Sequences
are always walked, whatever their rule, so a kept sequence cannot smuggle a name through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from phigate.deid import values
from phigate.deid.identifiers import InstanceIdentifiers
from phigate.deid.keys import Keyring
from phigate.deid.text import TextCleaner, names_own_identifier
from phigate.policy.annex_e import Option
from phigate.policy.plan import KEEP_STANDARD, SAFE_PRIVATE, Action, ActionPlan
from phigate.record import PHIFinding

DICOM_UID_ROOT = "1.2.840.10008."
# Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.3 C.7.6.3).
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
# Kept elements that still need a look: sequences are walked, ages are capped.
_KEEP_NEEDS_A_LOOK = frozenset({"SQ", "AS"})
# Short strings kept as sent unless they hold the instance's own identifiers; code values and
# scheme designators (PS3.3 8.1, 8.2) name registries, and are codes whatever they spell.
_SHORT_TEXT_VRS = frozenset({"LO", "SH"})
_CODE_KEYS = frozenset({0x00080100, 0x00080102, 0x00080103})
# VRs that say nothing of what the bytes are; printable bytes with a run of letters are text.
_OPAQUE_VRS = frozenset({"UN", "OB"})
_PRINTABLE = re.compile(rb"[\x20-\x7e]+")
_TWO_LETTERS = re.compile(rb"[A-Za-z]{2}")


@dataclass
class HeaderContext:
    """Per-instance state shared by every element the visitor touches."""

    plan: ActionPlan
    keys: Keyring
    cleaner: TextCleaner | None
    identifiers: InstanceIdentifiers
    day_offset: int
    actions: dict[str, str] = field(default_factory=dict)
    findings: list[PHIFinding] = field(default_factory=list)
    pseudonyms: dict[tuple[str, str], str] = field(default_factory=dict)
    dates_changed: bool = False
    # Clean Pixel Data in force: pixel data inside items (thumbnails the pixel step never
    # reads) goes.
    drop_item_pixels: bool = False


class HeaderVisitor:
    """Walks a data set and applies each element's rule (see :mod:`phigate.policy.plan`)."""

    def __init__(self, context: HeaderContext) -> None:
        self.ctx = context
        self._handlers: dict[Action, Callable[[Dataset, int, str, str], None]] = {
            Action.REMOVE: self._remove,
            Action.EMPTY: self._empty,
            Action.DUMMY: self._dummy,
            Action.KEEP: self._keep,
            Action.REPLACE_UID: self._replace_uid,
            Action.HASH: self._hash,
            Action.PSEUDONYMIZE: self._pseudonymize,
            Action.SHIFT_DATE: self._shift_date,
            Action.YEAR_ONLY: self._year_only,
            Action.CLEAN_TEXT: self._clean_text,
        }

    def visit(self, ds: Dataset) -> None:
        """De-identify ``ds`` in place, then drop private creators left without elements."""
        creators: dict[int, str] = {}
        rule_for = self.ctx.plan.rule_for
        for element in list(ds._dict.values()):
            tag = int(element.tag)  # plain ints: BaseTag compares in Python, slowly
            vr = _vr_of(tag, element)
            if vr == "UN" and not (tag >> 16) % 2:
                # A public attribute sent as UN (PS3.5 6.2.2): pydicom reads it with its
                # dictionary VR, so a sequence is walked and free text is cleaned.
                element = ds[element.tag]
                vr = _vr_of(tag, element)
            if vr == "UN" and _readable_when_typed(tag):
                # pydicom leaves a value of 64 KiB or more as UN: text, names, UIDs or items
                # that cannot be cleaned, replaced or walked as they are, so it goes.
                del ds[element.tag]
                self.ctx.actions[_name_of(tag, None)] = Action.REMOVE.value
                continue
            if _conflicts_with_dictionary(tag, vr):
                # Free text sent as LO or OB, a date as TM, a sequence as OB: the rule for
                # the written VR would keep or mishandle it, so the element goes.
                del ds[element.tag]
                self.ctx.actions[_name_of(tag, None)] = Action.REMOVE.value
                continue
            creator = self._creator_of(ds, tag, creators) if (tag >> 16) % 2 else None
            known = self.ctx.plan.private_name(creator, tag) if creator else None
            if known is not None and known.vr and vr == "UN":
                vr = self._declare_vr(ds, tag, element, known.vr)
            rule = rule_for(tag, vr, creator)
            action = rule.action
            if action is Action.KEEP and vr == "UN" and _holds_items(element):
                # A defined-length sequence of unknown VR (a private one in an implicit-VR
                # file): its items are opaque bytes here, and a kept sequence must be walked.
                action = Action.REMOVE
            if rule is SAFE_PRIVATE and vr in _OPAQUE_VRS and _reads_as_words(element.value):
                action = Action.REMOVE  # a safe numeric field sent as bytes that spell words
            if action is Action.KEEP and vr in _NUMBER_STRING_VRS and not _is_number_text(element):
                action = Action.REMOVE  # a number string holding words is free text misplaced
            if (
                rule is KEEP_STANDARD
                and vr in _SHORT_TEXT_VRS
                and tag not in _CODE_KEYS
                and self._names_patient(ds, element)
            ):
                # A standard LO or SH outside the table (a code meaning, a model name) that
                # a person typed the patient's name, ID or date into: cleaned as free text.
                action = Action.CLEAN_TEXT
            if action is Action.KEEP and vr not in _KEEP_NEEDS_A_LOOK:
                continue  # the hot path: most elements stay raw and untouched
            name = f"private:{known.keyword}" if known is not None and known.keyword else None
            name = name or _name_of(tag, creator)
            # The element's own BaseTag for pydicom: an int key costs it a Tag() conversion.
            self._handlers[action](ds, element.tag, vr, name)
            if action is not Action.KEEP:
                self.ctx.actions[name] = action.value
        _drop_orphan_creators(ds)

    def _names_patient(self, ds: Dataset, element: RawDataElement | DataElement) -> bool:
        """Whether a short string holds the instance's own name, ID or (when dates are not
        retained in full) date. ASCII bytes are searched as they are; anything else is first
        decoded in the data set's character set."""
        value = element.value
        if isinstance(value, bytes) and not value.isascii():
            value = ds[element.tag].value
        if isinstance(value, bytes):
            text = value.decode("ascii")
        elif isinstance(value, str):
            text = value
        elif isinstance(value, list | MultiValue):
            text = "\\".join(str(v) for v in value)
        else:
            return False
        dates = Option.RETAIN_LONG_FULL_DATES not in self.ctx.plan.options
        return bool(text.strip()) and names_own_identifier(text, self.ctx.identifiers, dates)

    def _creator_of(self, ds: Dataset, tag: int, cache: dict[int, str]) -> str | None:
        element = tag & 0xFFFF
        if element < 0x1000:
            return None
        creator_tag = (tag & 0xFFFF0000) | (element >> 8)
        if creator_tag not in cache:
            value = ds.get(creator_tag)
            cache[creator_tag] = str(value.value).strip().upper() if value is not None else ""
        return cache[creator_tag] or None

    @staticmethod
    def _declare_vr(ds: Dataset, tag: int, element: RawDataElement | DataElement, vr: str) -> str:
        """Give a private element of unknown VR the VR its dictionary declares.

        Only a still-raw element can take it (its bytes are then decoded, and written, as that
        VR); one pydicom already decoded as UN keeps UN, and its rule is looked up as UN.
        """
        if isinstance(element, RawDataElement) and vr != "SQ":
            ds._dict[BaseTag(tag)] = element._replace(VR=vr)
            return vr
        return "UN"  # items inside UN bytes are implicit VR: not re-encodable as they are

    # The handlers: each takes the data set, tag, VR and the element's display name.

    def _remove(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        del ds[tag]

    def _empty(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        ds[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)

    def _dummy(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        if vr == "SQ":
            self._walk_items(ds, tag)
        elif vr == "UI":
            self._replace_uid(ds, tag, vr, name)
        else:
            ds[tag] = DataElement(tag, vr, values.dummy_value(vr))

    def _keep(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        if vr == "SQ":
            self._walk_items(ds, tag)
        elif vr == "AS" and self.ctx.plan.age_cap is not None:
            self._map_strings(ds, tag, lambda v: values.cap_age(v, self.ctx.plan.age_cap or 0))

    def _replace_uid(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        if vr == "SQ":
            self._walk_items(ds, tag)
        elif vr == "UI":
            self._map_strings(ds, tag, self._new_uid)
        else:
            self._empty(ds, tag, vr, name)

    def _new_uid(self, uid: str) -> str:
        uid = uid.strip("\0 ")
        return uid if not uid or _well_known(uid) else self.ctx.keys.uid(uid)

    def _hash(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        if vr == "SQ":
            self._walk_items(ds, tag)
            return
        keys = self.ctx.keys
        self._map_strings(ds, tag, lambda v: values.keyed_hash_value(keys, name, vr, v))

    def _pseudonymize(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        if vr == "SQ":
            self._walk_items(ds, tag)
            return

        def replace(original: str) -> str:
            if not original.strip():
                return original
            new = values.pseudonym(self.ctx.keys, name, vr, original)
            self.ctx.pseudonyms[(name, new)] = original
            return new

        self._map_strings(ds, tag, replace)

    def _shift_date(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        if vr == "TM":
            return  # whole-day offsets leave the time of day as it was
        shift = values.shift_datetime if vr == "DT" else values.shift_date
        self.ctx.dates_changed = True
        self._map_strings(ds, tag, lambda v: shift(v, self.ctx.day_offset) or "")

    def _year_only(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        self.ctx.dates_changed = True
        if vr in ("DA", "DT"):
            self._map_strings(ds, tag, lambda v: values.year_only(v, vr) or "")
        else:
            self._empty(ds, tag, vr, name)

    def _clean_text(self, ds: Dataset, tag: int, vr: str, name: str) -> None:
        if vr == "SQ":
            self._walk_items(ds, tag)
            return
        if vr == "PN":
            self._pseudonymize(ds, tag, vr, name)
            return
        if self.ctx.cleaner is None:
            self._empty(ds, tag, vr, name)
            return
        self._map_strings(ds, tag, lambda v: self._cleaned(v, name))

    def _cleaned(self, text: str, name: str) -> str:
        assert self.ctx.cleaner is not None
        result = self.ctx.cleaner.clean(text, self.ctx.identifiers, self.ctx.day_offset)
        for kind in result.kinds:
            self.ctx.findings.append(
                PHIFinding(
                    where="header", kind=kind, keyword=name, confidence=1.0, action="removed"
                )
            )
        return result.text

    # Helpers

    def _walk_items(self, ds: Dataset, tag: int) -> None:
        element = ds[tag]
        if element.VR != "SQ":  # an SQ read as UN cannot be walked safely: drop it
            del ds[tag]
            return
        for item in element.value:
            if self.ctx.drop_item_pixels:
                self._drop_pixels(item)
            self.visit(item)

    def _drop_pixels(self, item: Dataset) -> None:
        for tag in _PIXEL_TAGS:
            if tag in item._dict:
                del item[tag]
                self.ctx.actions["PixelData (in a sequence item)"] = Action.REMOVE.value

    def _map_strings(self, ds: Dataset, tag: int, transform: Callable[[str], str]) -> None:
        """Apply ``transform`` to each value of a string element (multi-valued too)."""
        element = ds[tag]
        value = element.value
        if value is None or value == "":
            return
        if isinstance(value, bytes):  # a string VR read as UN or OB: nothing safe to map
            del ds[tag]
            return
        if isinstance(value, str | PersonName):
            element.value = transform(str(value))
        else:
            element.value = [transform(str(v)) for v in value]


def _drop_orphan_creators(ds: Dataset) -> None:
    """Remove private creator elements whose block no longer holds any element."""
    private = [t for t in ds._dict if (t >> 16) % 2]
    used = {(t & 0xFFFF0000) | ((t & 0xFFFF) >> 8) for t in private if t & 0xFFFF >= 0x1000}
    for tag in [t for t in private if 0x10 <= t & 0xFFFF <= 0xFF]:
        if tag not in used:
            del ds[tag]


def _reads_as_words(value: object) -> bool:
    """Bytes that are printable ASCII holding two letters in a row: text, not a number
    (``1.5E-3`` is a number; binary values are seldom printable throughout)."""
    if not isinstance(value, bytes):
        return False
    text = value.rstrip(b"\0 ")
    return bool(_PRINTABLE.fullmatch(text)) and _TWO_LETTERS.search(text) is not None


def _vr_of(tag: int, element: RawDataElement | DataElement) -> str:
    vr = element.VR
    if vr:
        return str(vr)
    try:
        return str(dictionary_VR(tag)).split(" ")[0]
    except KeyError:
        return "UN"


# Dictionary VRs whose values a rule must read (clean, replace, walk): not safe kept as UN.
_TYPED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "SQ", "ST", "TM"}
    | {"UC", "UI", "UR", "UT"}
)
# An item tag (FFFE,E000) as the first bytes of a value (PS3.5 7.5), in either byte order.
_ITEM_STARTS = (b"\xfe\xff\x00\xe0", b"\xff\xfe\xe0\x00")


@lru_cache(maxsize=4096)
def _readable_when_typed(tag: int) -> bool:
    """A public attribute whose dictionary VR holds text, names, UIDs or items."""
    if (tag >> 16) % 2:
        return False
    try:
        expected = str(dictionary_VR(tag))
    except KeyError:
        return False
    return any(option.strip() in _TYPED_VRS for option in expected.split(" or "))


# IS and DS values (PS3.5 Table 6.2-1): digits, signs, a point, an exponent, spaces, and
# backslashes between values.
_NUMBER_STRING_VRS = frozenset({"IS", "DS"})
_NUMBER_TEXT = re.compile(rb"[0-9+\-.eE \\]*")


def _is_number_text(element: RawDataElement | DataElement) -> bool:
    """Whether a kept IS or DS value is made of what numbers are written with."""
    value = element.value
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, list | MultiValue):
        raw = "\\".join(str(v) for v in value).encode("ascii", "replace")
    else:
        raw = str(value if value is not None else "").encode("ascii", "replace")
    return _NUMBER_TEXT.fullmatch(raw.rstrip(b"\0")) is not None


def _holds_items(element: RawDataElement | DataElement) -> bool:
    value = element.value
    return isinstance(value, bytes) and value[:4] in _ITEM_STARTS


@lru_cache(maxsize=4096)
def _well_known(uid: str) -> bool:
    """A UID the standard defines (SOP classes, transfer syntaxes...): kept. A sender's own
    UID under the DICOM root is not well known and is replaced like any other."""
    return uid.startswith(DICOM_UID_ROOT) and UID(uid).name != uid


@lru_cache(maxsize=16384)
def _conflicts_with_dictionary(tag: int, vr: str) -> bool:
    """A public attribute written with a VR its dictionary entry does not allow."""
    if (tag >> 16) % 2 or vr == "UN":
        return False
    try:
        expected = str(dictionary_VR(tag))
    except KeyError:
        return False
    return vr not in {option.strip() for option in expected.split(" or ")}


@lru_cache(maxsize=8192)
def _name_of(tag: int, creator: str | None) -> str:
    """An attribute's display name for records: its keyword, or its tag.

    Private creator strings are not used: they are free text written by the sender.
    """
    keyword = keyword_for_tag(tag)
    if keyword:
        return str(keyword)
    if creator is not None:
        return f"private({tag >> 16:04X},xx{tag & 0xFF:02X})"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
