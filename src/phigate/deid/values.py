"""Replacement values that stay valid for their VR (PS3.5 Table 6.2-1).

Dates move by whole days so a patient's intervals survive and a DA/TM pair stays coherent;
pseudonyms are keyed and fit the VR's length and character repertoire.
"""

from __future__ import annotations

import datetime as dt
import re

from phigate.deid.keys import Keyring

MAX_LENGTHS = {
    "AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64,
    "PN": 64, "SH": 16, "TM": 14, "UI": 64, "ST": 1024, "LT": 10240,
}  # fmt: skip
_TEXT_DUMMY = "ANONYMOUS"
_DUMMIES: dict[str, str | int | float | bytes] = {
    "AE": _TEXT_DUMMY, "AS": "000Y", "CS": _TEXT_DUMMY, "DA": "19000101", "DT": "19000101000000",
    "TM": "000000", "DS": "0", "IS": "0", "LO": _TEXT_DUMMY, "LT": _TEXT_DUMMY, "PN": _TEXT_DUMMY,
    "SH": _TEXT_DUMMY, "ST": _TEXT_DUMMY, "UC": _TEXT_DUMMY, "UT": _TEXT_DUMMY, "UR": "urn:x:anon",
    "US": 0, "UL": 0, "SS": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0,
}  # fmt: skip
_DATE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?$")
_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2}\d{0,4}(?:\.\d{1,6})?)?([+-]\d{4})?$")
_LOOSE_AGE = re.compile(r"^(\d{1,3})\s*([DWMYdwmy])?$")
_UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}
# Pseudonym purposes shared by attributes that hold the same kind of identifier.
_PURPOSE_ALIASES = {"OtherPatientIDs": "PatientID"}


_BULK_DUMMY = b"\0\0"  # PS3.15 E.1.1: a dummy is never zero length; OB/OW/UN need even length


def dummy_value(vr: str) -> str | int | float | bytes:
    """A fixed, non-empty value valid for ``vr`` (numbers get zero, bulk VRs two zero bytes)."""
    return _DUMMIES.get(vr, _BULK_DUMMY)


def pseudonym(keys: Keyring, keyword: str, vr: str, original: str) -> str:
    """A keyed pseudonym for an identifier, valid for its VR."""
    purpose = _PURPOSE_ALIASES.get(keyword, keyword)
    if vr == "PN":
        return "ANON^" + keys.pseudonym(purpose, original, 10)
    length = min(MAX_LENGTHS.get(vr, 16), 16)
    return "PG" + keys.pseudonym(purpose, original, length - 2)


def keyed_hash_value(keys: Keyring, keyword: str, vr: str, original: str) -> str:
    """The ``hash`` action: a keyed hex digest cut to the VR's maximum length."""
    if vr == "UI":
        return keys.uid(original)
    value = keys.hexdigest(f"hash/{keyword}", original, MAX_LENGTHS.get(vr, 64))
    return value.upper() if vr in ("CS", "AE") else value


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value (full or partial precision) by ``days``; ``None`` if unparseable."""
    text = value.strip().replace(".", "")
    match = _DATE.match(text)
    if not match:
        return None
    year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
    try:
        moved = dt.date(int(year), int(month), int(day)) + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    if moved.year < 1:
        return None
    # Formatted by hand: strftime's %Y does not pad years below 1000 on every platform.
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}"[: len(text)]


def shift_datetime(value: str, days: int) -> str | None:
    """Shift a DT value's date part by ``days``, keeping time, precision and UTC offset."""
    match = _DT.match(value.strip())
    if not match:
        return None
    date_part = "".join(g for g in match.groups()[:3] if g)
    shifted = shift_date(date_part, days)
    if shifted is None:
        return None
    return shifted + (match.group(4) or "") + (match.group(5) or "")


def year_only(value: str, vr: str) -> str | None:
    """Reduce a DA to ``YYYY0101`` or a DT to ``YYYY`` (HIPAA: all date elements but the year)."""
    text = value.strip()
    if len(text) < 4 or not text[:4].isdigit():
        return None
    return text[:4] + "0101" if vr == "DA" else text[:4]


def cap_age(value: str, cap: int) -> str:
    """Aggregate an AS value above ``cap`` years to ``cap + 1`` years (HIPAA: over 89 → 90).

    Senders write ages loosely ("104y", "104 Y", "104"), so any number with an optional
    unit is read and written back as valid AS; a value that cannot be read as an age at
    all is emptied, since it cannot be shown to be under the cap.
    """
    text = value.strip()
    if not text:
        return value
    match = _LOOSE_AGE.match(text)
    if not match:
        return ""
    number, unit = int(match.group(1)), (match.group(2) or "Y").upper()
    if number * _UNIT_DAYS[unit] / _UNIT_DAYS["Y"] > cap:
        return f"{cap + 1:03d}Y"
    return f"{number:03d}{unit}"  # valid AS (PS3.5 6.2)


def years_between(earlier: str, later: str) -> float | None:
    """Years from one DA to another (the old ``YYYY.MM.DD`` form too), or ``None`` if
    either is not a full date."""
    start, end = parse_date(earlier), parse_date(later)
    if start is None or end is None:
        return None
    return (end - start).days / 365.25


def parse_date(value: str) -> dt.date | None:
    """A full DA value (``YYYYMMDD``, or ACR-NEMA's ``YYYY.MM.DD``) as a date, else None."""
    text = value.strip().replace(".", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None
