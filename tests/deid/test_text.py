"""Free-text cleaning: the instance's own identifiers, pattern recognisers and names go;
clinical words stay; dates move by the patient's offset when the profile says so."""

from __future__ import annotations

import dataclasses

import pytest
from pydicom.dataset import Dataset

from phigate.deid.identifiers import InstanceIdentifiers, collect_identifiers
from phigate.deid.text import TextCleaner
from phigate.policy.plan import TextSettings, compile_profile
from phigate.policy.profile import load_profile

BASIC_TEXT = compile_profile(load_profile("basic")).text
OFFSET = -100  # 2023-04-10 - 100 days = 2022-12-31


def identifiers(name: str = "DOE^JOHN") -> InstanceIdentifiers:
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = "MRN-778899"
    ds.AccessionNumber = "A20230410-7"
    ds.StudyDate = "20230410"
    ds.PatientBirthDate = "19600315"
    ds.InstitutionName = "Springfield General Hospital"
    ds.ReferringPhysicianName = "SMITH^ALICE"
    ds.PerformingPhysicianName = "NGUYEN^BAO"
    return collect_identifiers(ds)


@pytest.fixture(scope="module")
def cleaner() -> TextCleaner:
    return TextCleaner(BASIC_TEXT)


@pytest.fixture(scope="module")
def shifting_cleaner() -> TextCleaner:
    return TextCleaner(dataclasses.replace(BASIC_TEXT, shift_dates_in_text=True))


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("DOE^JOHN", "DOE"),
        ("DOE^JOHN", "JOHN"),
        ("Patient John Doe seen", "Doe"),
        ("Patient John Doe seen", "John"),
        ("Doe, John follow up", "Doe"),
        ("Doe, John follow up", "John"),
        ("FOLLOW-UP FOR DOE", "DOE"),
        ("ID MRN-778899", "778899"),
        ("ID MRN778899", "778899"),
        ("ACC A20230410-7 RECALL", "A20230410"),
        ("SCANNED 04/10/2023", "2023"),
        ("SCANNED 2023-04-10", "2023"),
        ("SCANNED 10.04.2023", "2023"),
        ("SCANNED 20230410", "20230410"),
        ("BORN 15 Mar 1960", "1960"),
        ("BORN March 15, 1960", "1960"),
        ("DOB 15-MAR-1960", "1960"),  # as scanner consoles print dates
        ("DOB 15MAR1960", "1960"),
        ("SEEN 02-JAN-2021", "2021"),  # not the patient's: the recogniser
        ("AT Springfield General Hospital", "Springfield"),
        ("AT SPRINGFIELD ER", "SPRINGFIELD"),
        ("REF SMITH^ALICE", "SMITH"),
        ("REF Dr. Alice Smith", "Smith"),
        ("READ BY Nguyen", "Nguyen"),
        ("CALL 555-123-4567", "4567"),
        ("CALL (555) 123-4567", "4567"),
        ("MAIL jdoe@example.org", "jdoe"),
        ("SSN 123-45-6789", "6789"),
        ("MRN 00123456", "00123456"),
        ("LIVES 42 Elm Street", "Elm"),
        ("LIVES 42 Elm Street Shelbyville, Kent", "Shelbyville"),  # the town after it
        ("LIVES 42 Elm Street Shelbyville, Kent", "Kent"),
        ("CALL 555-0142", "0142"),  # a local number, no area code
        ("ZIP 02139", "02139"),
        ("Seen by Dr Maria Garcia today", "Garcia"),
    ],
)
def test_identifying_text_is_removed(cleaner: TextCleaner, text: str, secret: str) -> None:
    cleaned = cleaner.clean(text, identifiers(), OFFSET)
    assert secret.lower() not in cleaned.text.lower()
    assert cleaned.kinds


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("FOR DOE", "name"),
        ("ID MRN-778899", "id"),
        ("ON 04/10/2023", "date"),
        ("AT SPRINGFIELD", "institution"),
        ("CALL 555-123-4567", "phone"),
        ("MAIL jdoe@example.org", "email"),
        ("LIVES 42 Elm Street", "address"),
    ],
)
def test_cleaning_reports_the_kind_never_the_text(
    cleaner: TextCleaner, text: str, kind: str
) -> None:
    cleaned = cleaner.clean(text, identifiers(), OFFSET)
    assert cleaned.kinds == (kind,)
    assert cleaned.text.endswith("***")


def test_replacement_keeps_surrounding_words(cleaner: TextCleaner) -> None:
    assert cleaner.clean("FOLLOW-UP FOR DOE TODAY", identifiers(), OFFSET).text == (
        "FOLLOW-UP FOR *** TODAY"
    )


@pytest.mark.parametrize(
    "text",
    [
        "CT CHEST W CONTRAST",
        "CT ABD/PELVIS W CONTRAST",
        "PA AND LATERAL",
        "LEFT KNEE 3 VIEWS",
        "AX T2 FLAIR",
        "SAG T1 POST GAD",
        "CTA HEAD AND NECK",
        "PET/CT WHOLE BODY",
        "HEAD W/O CONTRAST 5MM",
        "Axial T1 post contrast",
        "Thorax 1.0 B31f",
        "MR BRAIN WO/W CONTRAST",
        "MR KNEE LEFT",
        "DR CHEST PA",
        "MS PROTOCOL BRAIN",
    ],
)
def test_clinical_words_are_kept(cleaner: TextCleaner, text: str) -> None:
    assert cleaner.clean(text, identifiers(), OFFSET).text == text


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_text_is_untouched(cleaner: TextCleaner, blank: str) -> None:
    assert cleaner.clean(blank, identifiers(), OFFSET).text == blank


def test_own_identifiers_are_matched_per_instance() -> None:
    only_own = TextCleaner(TextSettings(ner=False, recognizers=frozenset()))
    assert only_own.clean("FOR DOE", identifiers("DOE^JOHN"), 0).text == "FOR ***"
    assert only_own.clean("FOR DOE", identifiers("ROE^JANE"), 0).text == "FOR DOE"


def test_keep_words_protect_recogniser_matches() -> None:
    settings = TextSettings(
        ner=False, recognizers=frozenset({"zip"}), keep_words=frozenset({"10001"})
    )
    cleaned = TextCleaner(settings).clean("PROTOCOL 10001 VS 10002", identifiers(), 0)
    assert cleaned.text == "PROTOCOL 10001 VS ***"


def test_replacement_string_follows_the_profile() -> None:
    settings = TextSettings(ner=False, recognizers=frozenset({"phone"}), replacement="[X]")
    cleaned = TextCleaner(settings).clean("CALL 555-123-4567", identifiers(), 0)
    assert cleaned.text == "CALL [X]"


@pytest.mark.parametrize(
    ("text", "shifted"),
    [
        ("PRIOR 04/10/2023 COMPARED", "PRIOR 12/31/2022 COMPARED"),
        ("PRIOR 2023-04-10 COMPARED", "PRIOR 2022-12-31 COMPARED"),
        ("PRIOR 2023/04/10 COMPARED", "PRIOR 2022/12/31 COMPARED"),
        ("PRIOR 10.04.2023 COMPARED", "PRIOR 31.12.2022 COMPARED"),
        ("PRIOR 2021-03-04 COMPARED", "PRIOR 2020-11-24 COMPARED"),
        ("PRIOR 20230410 COMPARED", "PRIOR 20221231 COMPARED"),
    ],
)
def test_dates_in_text_shift_by_the_patient_offset(
    shifting_cleaner: TextCleaner, text: str, shifted: str
) -> None:
    assert shifting_cleaner.clean(text, identifiers(), OFFSET).text == shifted


@pytest.mark.parametrize(
    ("text", "removed"),
    [
        ("PRIOR 2021-03-04 COMPARED", "PRIOR *** COMPARED"),
        ("PRIOR 20230410 COMPARED", "PRIOR *** COMPARED"),
        ("PRIOR 20211231 COMPARED", "PRIOR *** COMPARED"),
    ],
)
def test_dates_in_text_are_removed_by_default(
    cleaner: TextCleaner, text: str, removed: str
) -> None:
    assert cleaner.clean(text, identifiers(), OFFSET).text == removed


def test_unshiftable_date_in_text_is_removed(shifting_cleaner: TextCleaner) -> None:
    cleaned = shifting_cleaner.clean("PRIOR April 10, 2023 COMPARED", identifiers(), OFFSET)
    assert "2023" not in cleaned.text and "April" not in cleaned.text


def test_a_one_character_ideographic_surname_is_removed(cleaner: TextCleaner) -> None:
    ids = identifiers("ZHANG^XIAOMING=王^小明")
    cleaned = cleaner.clean("患者 王 小明 复查", ids, OFFSET)
    assert "王" not in cleaned.text and "小明" not in cleaned.text
    assert cleaner.clean("J SMITH", identifiers("SMITH^J"), OFFSET).text.startswith("J ")


@pytest.mark.parametrize(
    ("name", "text", "secret"),
    [
        ("MUELLER^ANNA", "f/u MÜLLER", "MÜLLER"),  # umlaut put back
        ("MUELLER^ANNA", "f/u Müller", "Müller"),
        ("MÜLLER^ANNA", "f/u MUELLER", "MUELLER"),  # umlaut spelled out
        ("MÜLLER^ANNA", "f/u MULLER", "MULLER"),  # accent dropped
        ("JOSÉ^GARCÍA", "f/u Jose Garcia", "Garcia"),
    ],
)
def test_a_name_is_found_in_its_other_spellings(
    cleaner: TextCleaner, name: str, text: str, secret: str
) -> None:
    cleaned = cleaner.clean(text, identifiers(name), OFFSET)
    assert secret.lower() not in cleaned.text.lower()
    assert cleaned.text.startswith("f/u ")


def test_the_town_after_an_address_stops_at_a_clinical_word(cleaner: TextCleaner) -> None:
    cleaned = cleaner.clean("42 Elm Street CT HEAD", identifiers(), OFFSET)
    assert cleaned.text.endswith("HEAD") and "Elm" not in cleaned.text
