"""Match recognised text against the instance's own header identifiers, forgiving OCR.

Both sides are folded to a skeleton before comparing: upper case, letters OCR confuses with
digits mapped to the digit (O→0, I/L→1, S→5, B→8, Z→2, G→6), and everything that is not a
letter or digit dropped, so ``DOE^JOHN``, ``Doe, John`` and ``D0E JOHN`` meet. Names are
tried in every order; dates (DICOM DA, ``YYYYMMDD``) in the formats devices print them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from phigate.pixels.defaults import GENERIC_INSTITUTION_WORDS, INSTITUTION_WORDS, UNITS

_FOLD = str.maketrans("OQILSBZG|", "001158261")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTH_NAMES = ("JANUARY", "FEBRUARY", "MARCH", "APRIL", "MAY", "JUNE", "JULY", "AUGUST",
                "SEPTEMBER", "OCTOBER", "NOVEMBER", "DECEMBER")  # fmt: skip

MIN_CLIPPED_NAME = 3  # letters: fewer start too many words to mean a name
CLIPPED_NAME_CONFIDENCE = 0.75
# A small ID misread character by character still has the ID's length and some of its
# digits in place: "D107DD11" for 94079941. Shorter tokens match harmless values by chance.
MIN_GARBLED_ID = 7
GARBLED_ID_SHARE_IN_PLACE = 1 / 3
GARBLED_ID_CONFIDENCE = 0.6
# A number with a decimal part, or a number and a unit, is a measurement, not an ID. Units
# of one letter ("s", "t") are left out: a garbled ID may well end in one.
_UNITS_AFTER_NUMBER = "|".join(
    re.escape(u) for u in sorted(UNITS, key=len, reverse=True) if len(u) > 1 or u == "%"
)
_MEASUREMENT = re.compile(
    rf"\d[.,]\d|\d\s*(?:{_UNITS_AFTER_NUMBER})(?![a-z0-9])"
    r"|^(?:W|WW|WL|C|L)\d{1,5}(?:W|WW|WL|C|L)-?\d{1,5}$",  # a window and level run together
    re.I,
)

# Header keywords the caller may name identifiers by, and the finding kind each one gives.
KEYWORD_KINDS: dict[str, str] = {
    "PatientName": "name", "OtherPatientNames": "name", "PatientBirthName": "name",
    "PatientMotherBirthName": "name", "ReferringPhysicianName": "name",
    "PerformingPhysicianName": "name", "OperatorsName": "name",
    "NameOfPhysiciansReadingStudy": "name",
    "PhysiciansOfRecord": "name", "RequestingPhysician": "name",
    "PatientID": "id", "OtherPatientIDs": "id", "IssuerOfPatientID": "id",
    "AccessionNumber": "id", "StudyID": "id", "MedicalRecordLocator": "id",
    "PatientBirthDate": "date", "StudyDate": "date", "SeriesDate": "date",
    "AcquisitionDate": "date", "ContentDate": "date", "InstanceCreationDate": "date",
    "InstitutionName": "institution", "InstitutionAddress": "institution",
    "InstitutionalDepartmentName": "institution", "StationName": "other_phi",
    "PatientAddress": "other_phi", "PatientTelephoneNumbers": "other_phi",
}  # fmt: skip


def fold(text: str) -> str:
    """The OCR-tolerant skeleton of a text: upper case, confusable letters as digits,
    letters and digits only."""
    return re.sub(r"[^0-9A-Z]", "", text.upper().translate(_FOLD))


@dataclass(frozen=True, slots=True)
class Needle:
    """One folded form of one identifier. ``whole`` needles must match a whole piece."""

    skeleton: str
    kind: str
    keyword: str
    whole: bool = False


@dataclass(frozen=True, slots=True)
class IdentifierMatch:
    kind: str
    keyword: str
    confidence: float


class IdentifierMatcher:
    """All folded forms of an instance's identifiers, ready to test pieces of text."""

    def __init__(self, identifiers: Sequence[str] | Mapping[str, str | Sequence[str]]) -> None:
        self.needles: list[Needle] = []
        for keyword, value in _pairs(identifiers):
            kind = KEYWORD_KINDS.get(keyword) or guess_kind(value)
            self.needles.extend(needles_for(value, kind, keyword))
        self.needles = sorted(set(self.needles), key=lambda n: -len(n.skeleton))

    def match(self, text: str) -> IdentifierMatch | None:
        """The best identifier this text contains (or is a truncation of), if any."""
        piece = fold(text)
        tokens = [fold(t) for t in re.split(r"[\s,;:^/|()\[\]]+", text) if fold(t)]
        if not piece:
            return None
        letters = Counter(piece)
        for needle in self.needles:
            confidence = _needle_score(needle, piece, tokens, letters)
            if confidence:
                return IdentifierMatch(needle.kind, needle.keyword, confidence)
        return None

    def clipped_name(self, token: str, shortest: int = MIN_CLIPPED_NAME) -> IdentifierMatch | None:
        """The own name that ``token`` (``shortest`` letters or more) is the cut-off
        start of.

        Devices clip names to fit a field ("KOW" for KOWALSKI); pieces of five letters or
        more are caught by :meth:`match`. The caller rules out harmless words first.
        """
        start = fold(token)
        if len(start) < shortest:
            return None
        for needle in self.needles:
            longer = len(needle.skeleton) > len(start)
            if needle.kind == "name" and longer and needle.skeleton.startswith(start):
                return IdentifierMatch("name", needle.keyword, CLIPPED_NAME_CONFIDENCE)
        return None

    def garbled_id(self, token: str) -> IdentifierMatch | None:
        """The own ID that ``token`` may be a misreading of: as long (one character more or
        less), at least half digits, and a third or more of its characters equal to the
        ID's in the same place (after one character dropped from the longer of the two).
        Measurements ("1234.5mGy", "123.45mm") are not IDs."""
        if _MEASUREMENT.search(token):
            return None
        shape = fold(token)
        if len(shape) < MIN_GARBLED_ID or 2 * sum(c.isdigit() for c in shape) < len(shape):
            return None
        for needle in self.needles:
            if needle.kind == "id" and abs(len(needle.skeleton) - len(shape)) <= 1:
                in_place = _best_in_place(shape, needle.skeleton)
                if in_place >= GARBLED_ID_SHARE_IN_PLACE * len(needle.skeleton):
                    return IdentifierMatch("id", needle.keyword, GARBLED_ID_CONFIDENCE)
        return None


def guess_kind(value: str) -> str:
    """The kind of an identifier given without its keyword."""
    text = value.strip()
    if re.fullmatch(r"\d{8}", text) and _as_date(text) is not None:
        return "date"
    if any(w in text.upper().split() for w in INSTITUTION_WORDS):
        return "institution"
    if "^" in text or re.fullmatch(r"[A-Za-z][A-Za-z .,'-]*", text):
        return "name"
    return "id"


def needles_for(value: str, kind: str, keyword: str = "") -> list[Needle]:
    """Every folded form of one identifier worth looking for."""
    forms: Iterable[tuple[str, bool]]
    if kind == "name":
        forms = _name_forms(value)
    elif kind == "date":
        forms = ((f, False) for f in date_forms(value))
    elif kind == "institution":
        forms = _institution_forms(value)
    else:
        forms = _id_forms(value)
    needles = []
    for form, whole in forms:
        skeleton = fold(form)
        if len(skeleton) >= 2:
            needles.append(Needle(skeleton, kind, keyword, whole or len(skeleton) < 4))
    return needles


def date_forms(value: str) -> list[str]:
    """A DICOM date in the ways devices print it (ISO, US, European, with month names)."""
    when = _as_date(value.strip()[:8])
    if when is None:
        return [value] if value.strip() else []
    y, m, d = when.year, when.month, when.day
    yy, mon, month = f"{y % 100:02d}", _MONTHS[m - 1], _MONTH_NAMES[m - 1]
    return [
        f"{y}{m:02d}{d:02d}", f"{m:02d}{d:02d}{y}", f"{d:02d}{m:02d}{y}",
        f"{m}/{d}/{y}", f"{d}/{m}/{y}", f"{m:02d}{d:02d}{yy}", f"{d:02d}{m:02d}{yy}",
        f"{yy}{m:02d}{d:02d}", f"{d:02d}{mon}{y}", f"{d}{mon}{y}", f"{mon}{d:02d}{y}",
        f"{mon}{d}{y}", f"{d}{month}{y}", f"{month}{d}{y}", f"{d:02d}{mon}{yy}",
    ]  # fmt: skip


def _pairs(
    identifiers: Sequence[str] | Mapping[str, str | Sequence[str]],
) -> Iterable[tuple[str, str]]:
    if isinstance(identifiers, Mapping):
        for keyword, values in identifiers.items():
            for value in [values] if isinstance(values, str) else values:
                if str(value).strip():
                    yield keyword, str(value)
    else:
        yield from (("", str(v)) for v in identifiers if str(v).strip())


def _name_forms(value: str) -> list[tuple[str, bool]]:
    """Full names in every order, each part alone, and initials (whole pieces only)."""
    parts = [p for p in re.split(r"[\^,]+|\s+", value.strip()) if p.strip(" .")]
    if not parts:
        return []
    forms: list[tuple[str, bool]] = [("".join(parts), False)]
    if len(parts) >= 2:
        family, given = parts[0], parts[1]
        forms += [(given + family, False), (family + given, False)]
        forms += [(given[0] + family, True), (family + given[0], True)]
        forms += [(given[0] + family[0], True), (family[0] + given[0], True)]
        forms += [(" ".join(parts[1:]) + family, False)]
    forms += [(p, len(fold(p)) < 3) for p in parts]
    return forms


def _institution_forms(value: str) -> list[tuple[str, bool]]:
    words = [w for w in re.split(r"[\s,;^/-]+", value.strip()) if w]
    distinctive = [w for w in words if w.upper().strip(".") not in GENERIC_INSTITUTION_WORDS]
    return [(value, False)] + [(w, len(fold(w)) < 4) for w in distinctive]


def _id_forms(value: str) -> list[tuple[str, bool]]:
    text = value.strip()
    forms = [(text, False)]
    stripped = text.lstrip("0")
    if stripped != text and len(stripped) >= 5:
        forms.append((stripped, False))
    return forms


def _needle_score(needle: Needle, piece: str, tokens: list[str], letters: Counter[str]) -> float:
    """1.0 for an exact hit, 0.9 for a near one, 0.0 for none."""
    target = needle.skeleton
    if needle.whole:
        return 1.0 if piece == target or (len(target) >= 3 and target in tokens) else 0.0
    if target in piece:
        return 1.0
    if any(len(t) >= 5 and target.startswith(t) for t in tokens):
        return 0.9  # truncated on screen ("CLEVELAN...")
    if needle.kind not in ("name", "institution"):
        return 0.0  # digits are read reliably; a near miss on a number is another number
    errors = 1 if len(target) < 9 else 2
    if len(target) < 5 or _shared(target, letters) < len(target) - errors:
        return 0.0  # cannot be within the allowed edits: skip the quadratic search
    if approximate_find(target, piece) <= errors:
        return 0.9
    return 0.0


def _best_in_place(a: str, b: str) -> int:
    """Characters equal in place, the longer string first losing the one character whose
    loss lines most up (OCR drops or adds one)."""
    if len(a) == len(b):
        return sum(x == y for x, y in zip(a, b, strict=True))
    long, short = (a, b) if len(a) > len(b) else (b, a)
    return max(_best_in_place(long[:i] + long[i + 1 :], short) for i in range(len(long)))


def _shared(target: str, letters: Counter[str]) -> int:
    return sum(min(count, letters[char]) for char, count in Counter(target).items())


def approximate_find(needle: str, haystack: str) -> int:
    """Fewest edits turning ``needle`` into some substring of ``haystack`` (Sellers, 1980)."""
    previous = [0] * (len(haystack) + 1)
    for i, char in enumerate(needle, start=1):
        current = [i] + [0] * len(haystack)
        for j, other in enumerate(haystack, start=1):
            current[j] = min(previous[j - 1] + (char != other), previous[j] + 1, current[j - 1] + 1)
        previous = current
    return min(previous)


def _as_date(text: str) -> date | None:
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None
