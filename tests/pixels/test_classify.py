"""Judging recognised text: header identifiers (OCR-tolerant), keep-list, recognisers."""

from __future__ import annotations

import pytest

from phigate.pixels import PixelRules, PixelRulesError
from phigate.pixels.classify import TextClassifier
from phigate.pixels.identifiers import date_forms, fold

IDS = {
    "PatientName": "DOE^JOHN^Q",
    "PatientID": "00012345678",
    "PatientBirthDate": "19510829",
    "InstitutionName": "CCHS CLEVELAND CLINIC",
}


@pytest.fixture(scope="module")
def classifier() -> TextClassifier:
    return TextClassifier(PixelRules(), IDS)


@pytest.mark.parametrize(
    ("text", "kind", "keyword"),
    [
        ("DOE^JOHN", "name", "PatientName"),
        ("John Doe", "name", "PatientName"),
        ("Doe, John Q", "name", "PatientName"),
        ("D0E JOHN", "name", "PatientName"),  # O read as zero
        ("JOHNDOE", "name", "PatientName"),  # space lost
        ("ID: 0OO12345678", "id", "PatientID"),
        ("12345678", "id", "PatientID"),  # leading zeros dropped on screen
        ("DOB: 08/29/1951", "date", ""),
        ("29-AUG-1951", "date", "PatientBirthDate"),
        ("CCHS CLEVELAN...", "institution", "InstitutionName"),  # truncated on screen
    ],
)
def test_own_identifiers_are_found_despite_ocr_slips(
    classifier: TextClassifier, text: str, kind: str, keyword: str
) -> None:
    verdict = classifier.classify(text)
    assert verdict.kind == kind
    if keyword:
        assert verdict.keyword == keyword


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("MRN: 99887766", "id"),
        ("Tel 555-123-4567", "other_phi"),
        ("2019-11-03", "date"),
        ("7-OCT-2016", "date"),
        ("05:24:57PM", "date"),
        ("Smith^Anna", "name"),
        ("Dr. Hartmann", "name"),
        ("Mary Johnson", "name"),
        ("St Mary Hospital", "institution"),
        ("AGMC Sports Medicine", "institution"),
        ("45 YRS", "other_phi"),
    ],
)
def test_recognisers_catch_phi_not_in_the_header(
    classifier: TextClassifier, text: str, kind: str
) -> None:
    assert classifier.classify(text).kind == kind


@pytest.mark.parametrize(
    "text",
    ["L", "R", "5 cm", "4.0cm", "3.5 MHz", "W 400 L 40", "IM 12/40", "HFS", "Adv Breast",
     "L12-5", "TIS0.0 MI 0.6", "Dyn R 58", "rt hip inj Right Supraspinatus Transverse",
     "RMLO", "SIEMENS", "x3", "60%", "OM/C/3/H/TV3"],
)  # fmt: skip
def test_harmless_annotation_is_kept(classifier: TextClassifier, text: str) -> None:
    assert classifier.classify(text).kind == "non_phi"


def test_unknown_words_are_unclassified(classifier: TextClassifier) -> None:
    assert classifier.classify("Zqxv Plorb").kind == "unclassified"


def test_fold_maps_ocr_confusions_and_separators() -> None:
    assert fold("D0E^JOHN") == fold("DOE, JOHN") == fold("doe john")


def test_date_forms_cover_common_layouts() -> None:
    forms = date_forms("20170302")
    assert {"20170302", "03022017", "02032017", "02MAR2017"} <= set(forms)


def test_rules_reject_inverted_thresholds() -> None:
    with pytest.raises(PixelRulesError):
        PixelRules(min_text_confidence=0.9, review_threshold=0.5)
    with pytest.raises(PixelRulesError, match="regex"):
        PixelRules(keep_text=("(",))


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("D0B 18/3a/2886", "date"),  # label read with a zero, date garbled
        ("87-N0V-222", "date"),
        ("2A21-18-54", "date"),
        ("Tel 845 -86 7-8532", "other_phi"),  # spaces inside the number
        ("MedicalCenter", "institution"),  # words run together
    ],
)
def test_garbled_phi_is_still_phi(classifier: TextClassifier, text: str, kind: str) -> None:
    assert classifier.classify(text).kind == kind


@pytest.mark.parametrize(
    "text", ["SEFIES 3", "AZIAL", "R MLD", "PORTAB LE", "SAGR", "LVER", "THII"]
)
def test_misread_harmless_words_stay_harmless(classifier: TextClassifier, text: str) -> None:
    verdict = classifier.classify(text)
    assert verdict.kind == "non_phi" and verdict.basis == "harmless_misread"


@pytest.mark.parametrize("text", ["Dean", "Okafor", "Lisa"])
def test_listed_names_win_over_near_harmless_words(classifier: TextClassifier, text: str) -> None:
    assert classifier.classify(text).kind == "name"


def test_a_bare_label_is_marked_for_its_neighbour(classifier: TextClassifier) -> None:
    verdict = classifier.classify("MRN:")
    assert verdict.kind == "non_phi" and verdict.basis == "phi_label_alone"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("DOB: 08.29", "date"),  # a label with a value shaped like "TR 500"
        ("MRN 4821", "id"),
        ("ACC 7781", "id"),
        ("TEL 555", "other_phi"),
        ("AGE 92", "other_phi"),
        ("F 92", "other_phi"),  # sex and an age over 89
        ("555 0142", "other_phi"),  # a local phone number
        ("JOHN 1961", "name"),  # a listed given name before a number
        ("Dr Li", "name"),  # a title before a short surname
        ("08/29", "date"),  # the patient's own day and month, no year
        ("29.8", "date"),
        ("AUG 29", "date"),
    ],
)
def test_phi_shaped_like_annotation_is_not_kept(
    classifier: TextClassifier, text: str, kind: str
) -> None:
    verdict = classifier.classify(text)
    assert verdict.kind == kind, verdict.basis


@pytest.mark.parametrize(
    "text", ["AGE 63", "MR KNEE", "IM 12/40", "TR 500", "W 400 L 40", "kV 120"]
)
def test_annotation_near_those_cues_is_still_kept(classifier: TextClassifier, text: str) -> None:
    assert classifier.classify(text).kind == "non_phi"


CLIPPED = {"PatientName": "KOWALSKI^ANNA", "ReferringPhysicianName": "HEADLEY^TOM"}


@pytest.mark.parametrize("text", ["KOW", "KOW...", "KOWA", "Kow An", "HEA", "K0W", "K0WA A"])
def test_an_own_name_clipped_to_a_few_letters_is_a_name(text: str) -> None:
    """Devices cut names to fit a field; "KOW" is one slip from harmless "LOW"."""
    verdict = TextClassifier(PixelRules(), CLIPPED).classify(text)
    assert verdict.kind == "name", verdict.basis


@pytest.mark.parametrize("text", ["HEAD", "LOW", "KO", "AX 3", "KOW 3"])
def test_harmless_words_that_start_an_own_name_stay_harmless(text: str) -> None:
    assert TextClassifier(PixelRules(), CLIPPED).classify(text).kind == "non_phi"


GARBLED = {"PatientID": "94079941", "AccessionNumber": "A5566989"}


@pytest.mark.parametrize(
    "text",
    ["D107DD11", "9A07S9G1", "A5S6G9B8", "D107D11", "D107DD111", "D107 DD11", "D107DB11"],
)
def test_a_small_own_id_misread_character_by_character_is_an_id(text: str) -> None:
    """Read at 10 px, 94079941 came out as "D107DD11", which the keep-list took for two
    acquisition values ("D 107", "DD 11")."""
    verdict = TextClassifier(PixelRules(), GARBLED).classify(text)
    assert verdict.kind == "id", verdict.basis


@pytest.mark.parametrize("text", ["W1500L450", "D10DD1", "kVp 120 mAs 250", "12345678"])
def test_values_not_shaped_like_an_own_id_are_not_taken_for_one(text: str) -> None:
    verdict = TextClassifier(PixelRules(), GARBLED).classify(text)
    assert verdict.basis != "garbled_id"


@pytest.mark.parametrize(
    ("identifiers", "text", "rule"),
    [
        ({"PatientName": "PARKER^ANN"}, "PAR 2", "clipped_name"),  # a parameter
        ({"PatientName": "LEGGETT^ANN"}, "LT LEG", "clipped_name"),
        ({"PatientName": "TRAN^MAI"}, "t2_tse_tra", "clipped_name"),  # a sequence name
        ({"PatientID": "81504321"}, "W1500L40", "garbled_id"),  # window and level
        ({"PatientID": "12385517"}, "1234.5mGy", "garbled_id"),
        ({"PatientID": "1230999"}, "123.45mm", "garbled_id"),
    ],
)
def test_annotation_that_lines_up_with_an_own_identifier_is_not_taken_for_it(
    identifiers: dict[str, str], text: str, rule: str
) -> None:
    """A clipped name is a piece made of name starts alone; a measurement is not an ID."""
    verdict = TextClassifier(PixelRules(), identifiers).classify(text)
    assert verdict.basis != rule
