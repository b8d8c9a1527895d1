"""Replacement values: valid for their VR, keyed, and dates that keep their intervals."""

from __future__ import annotations

import datetime as dt
import itertools

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.valuerep import validate_value

from phigate.deid import values
from phigate.deid.keys import Keyring
from phigate.policy.annex_e import load_table

KEYS = Keyring(b"k" * 32)
OTHER_KEYS = Keyring(b"o" * 32)


def _dummy_vrs() -> list[str]:
    """The VRs of every Table E.1-1 row whose Basic Profile code allows a dummy (D)."""
    found = set()
    for row in load_table():
        if row.basic.endswith("D"):
            vr = str(dictionary_VR(int(row.pattern.replace("X", "0"), 16))).split(" ")[0]
            found.add(vr)
    return sorted(found - {"SQ", "UI"})  # sequences are walked, UIDs replaced


@pytest.mark.parametrize("vr", _dummy_vrs())
def test_dummy_is_a_non_empty_value_valid_for_its_vr(vr: str) -> None:
    dummy = values.dummy_value(vr)
    validate_value(vr, dummy, pydicom.config.RAISE)
    assert dummy not in ("", b"")  # PS3.15 E.1.1: D is a non-zero length value


@pytest.mark.parametrize("vr", ["SH", "LO", "CS", "AE", "PN", "UC"])
def test_pseudonym_is_valid_for_its_vr(vr: str) -> None:
    pseudonym = values.pseudonym(KEYS, "PatientID", vr, "MRN-0001234")
    validate_value(vr, pseudonym, pydicom.config.RAISE)
    assert len(pseudonym) <= values.MAX_LENGTHS.get(vr, 64)
    assert "MRN" not in pseudonym and "1234" not in pseudonym


def test_pseudonym_is_keyed_and_consistent() -> None:
    first = values.pseudonym(KEYS, "PatientID", "LO", "MRN-0001234")
    assert values.pseudonym(KEYS, "PatientID", "LO", " MRN-0001234 ") == first
    assert values.pseudonym(KEYS, "PatientID", "LO", "MRN-0001235") != first
    assert values.pseudonym(OTHER_KEYS, "PatientID", "LO", "MRN-0001234") != first


def test_pseudonym_purpose_separates_attributes_but_links_other_patient_ids() -> None:
    as_patient_id = values.pseudonym(KEYS, "PatientID", "LO", "12345")
    assert values.pseudonym(KEYS, "AccessionNumber", "LO", "12345") != as_patient_id
    assert values.pseudonym(KEYS, "OtherPatientIDs", "LO", "12345") == as_patient_id


def test_person_name_pseudonym_has_name_components() -> None:
    name = values.pseudonym(KEYS, "PatientName", "PN", "DOE^JOHN")
    assert name.startswith("ANON^") and len(name) == 15


@pytest.mark.parametrize(
    ("vr", "length"), [("LO", 64), ("SH", 16), ("CS", 16), ("AE", 16), ("ST", 64)]
)
def test_keyed_hash_fits_the_vr(vr: str, length: int) -> None:
    hashed = values.keyed_hash_value(KEYS, "StationName", vr, "CT-ROOM-1")
    validate_value(vr, hashed, pydicom.config.RAISE)
    assert len(hashed) == length
    assert hashed == values.keyed_hash_value(KEYS, "StationName", vr, "CT-ROOM-1")
    assert hashed != values.keyed_hash_value(KEYS, "StationName", vr, "CT-ROOM-2")


def test_keyed_hash_of_a_uid_is_a_uid() -> None:
    assert values.keyed_hash_value(KEYS, "X", "UI", "1.2.3") == KEYS.uid("1.2.3")


@pytest.mark.parametrize(
    ("original", "days", "shifted"),
    [
        ("20230410", -10, "20230331"),
        ("20240301", -1, "20240229"),
        ("20230101", -1, "20221231"),
        ("2023.04.10", 1, "20230411"),  # ACR-NEMA style
        ("202304", -10, "202303"),  # partial: year and month
        ("2023", -10, "2022"),  # partial: year only
        (" 20230410 ", 0, "20230410"),
    ],
)
def test_shift_date(original: str, days: int, shifted: str) -> None:
    assert values.shift_date(original, days) == shifted


@pytest.mark.parametrize("garbage", ["", "2023-04-10", "20231340", "yesterday", "00000000"])
def test_unparseable_date_gives_none(garbage: str) -> None:
    assert values.shift_date(garbage, -1) is None


def test_shift_preserves_intervals() -> None:
    dates = ["19600315", "20200229", "20230410", "20230411"]
    days = -1234
    moved = [values.shift_date(d, days) or "" for d in dates]
    parse = [dt.datetime.strptime(d, "%Y%m%d") for d in dates]
    parse_moved = [dt.datetime.strptime(d, "%Y%m%d") for d in moved]
    gaps = [(b - a).days for a, b in itertools.pairwise(parse)]
    assert [(b - a).days for a, b in itertools.pairwise(parse_moved)] == gaps


@pytest.mark.parametrize(
    ("original", "shifted"),
    [
        ("20230410101500.25+0100", "20230409101500.25+0100"),
        ("20230410101500", "20230409101500"),
        ("202304101015-0500", "202304091015-0500"),
        ("20230410", "20230409"),
        ("2023", "2022"),
    ],
)
def test_shift_datetime_keeps_time_precision_and_utc_offset(original: str, shifted: str) -> None:
    assert values.shift_datetime(original, -1) == shifted


@pytest.mark.parametrize(
    ("value", "vr", "expected"),
    [("20230410", "DA", "20230101"), ("20230410101500", "DT", "2023"), ("x", "DA", None)],
)
def test_year_only(value: str, vr: str, expected: str | None) -> None:
    assert values.year_only(value, vr) == expected


@pytest.mark.parametrize(
    ("age", "capped"),
    [
        ("095Y", "090Y"),
        ("090Y", "090Y"),
        ("120Y", "090Y"),
        ("089Y", "089Y"),
        ("045Y", "045Y"),
        ("999M", "999M"),  # 83 years: months are not years
        ("095M", "095M"),
        ("999W", "999W"),
        ("095D", "095D"),
        ("104y", "090Y"),  # senders write ages loosely: still read, still capped
        ("104 Y", "090Y"),
        ("104", "090Y"),
        ("45y", "045Y"),  # loose and under the cap: written as valid AS
        ("bad", ""),  # cannot be shown to be under the cap
        ("", ""),
    ],
)
def test_cap_age_aggregates_over_89_in_every_unit(age: str, capped: str) -> None:
    assert values.cap_age(age, 89) == capped


@pytest.mark.parametrize(
    ("earlier", "later", "years"),
    [("19300101", "20230101", 93.0), ("20230410", "20230410", 0.0), ("bad", "20230101", None)],
)
def test_years_between(earlier: str, later: str, years: float | None) -> None:
    expected = None if years is None else pytest.approx(years, abs=0.01)
    assert values.years_between(earlier, later) == expected


def test_a_shifted_year_below_1000_keeps_four_digits() -> None:
    """Placeholder dates (00500101) must come out as valid DA, eight digits."""
    assert values.shift_date("00500101", -3650) == "00400104"
    assert values.shift_date("10000101", -3650) == "09900103"
