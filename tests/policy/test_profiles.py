"""Profiles are data: the built-ins load, the schema names the offending line, ``extends``
merges as documented, and the version hash follows the content and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from phigate.errors import ProfileError
from phigate.policy.plan import compile_profile
from phigate.policy.profile import builtin_names, load_profile, parse_profile_text

BUILT_INS = ["basic", "clinical-trial", "gdpr", "hipaa-safe-harbor", "tcia"]

MINIMAL = """\
schema: 1
name: site-a
# a comment
options: [clean_descriptors]
text:
  replacement: "[X]"
"""


def test_the_five_documented_profiles_are_built_in() -> None:
    assert builtin_names() == BUILT_INS


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_built_in_loads_and_compiles(name: str) -> None:
    profile = load_profile(name)
    plan = compile_profile(profile)
    assert (plan.profile_name, plan.version) == (name, profile.version)
    assert len(profile.version) == 16
    assert plan.method_description == f"phigate {name} {profile.version}"


def test_built_in_versions_differ() -> None:
    versions = {load_profile(name).version for name in BUILT_INS}
    assert len(versions) == len(BUILT_INS)


def test_unknown_profile_name_lists_the_built_ins() -> None:
    with pytest.raises(ProfileError, match=r"unknown profile 'nope'.*basic, clinical-trial"):
        load_profile("nope")


def test_profile_file_loads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "site-a.yaml"
    path.write_text(MINIMAL)
    assert load_profile(str(path)) == parse_profile_text(MINIMAL, source=str(path))


def test_missing_profile_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="not found"):
        load_profile(str(tmp_path / "absent.yaml"))


def test_version_is_stable_for_the_same_content() -> None:
    assert parse_profile_text(MINIMAL).version == parse_profile_text(MINIMAL).version


@pytest.mark.parametrize(
    "same_content",
    [
        MINIMAL.replace("# a comment", "# another comment"),
        MINIMAL.replace("options: [clean_descriptors]", "options:\n  - clean_descriptors"),
        "text: {replacement: '[X]'}\n" + MINIMAL.replace('text:\n  replacement: "[X]"\n', ""),
    ],
    ids=["comment", "block-style", "key-order"],
)
def test_version_ignores_formatting(same_content: str) -> None:
    assert parse_profile_text(same_content).version == parse_profile_text(MINIMAL).version


@pytest.mark.parametrize(
    "changed",
    [
        MINIMAL.replace("[X]", "[Y]"),
        MINIMAL.replace("[clean_descriptors]", "[clean_descriptors, retain_uids]"),
        MINIMAL + "default_unknown: keep\n",
        MINIMAL + "description: same rules, new words\n",
    ],
    ids=["scalar", "option", "new-key", "description"],
)
def test_version_changes_when_the_content_changes(changed: str) -> None:
    assert parse_profile_text(changed).version != parse_profile_text(MINIMAL).version


def test_version_changes_when_the_parent_changes(tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("schema: 1\nname: child\nextends: parent\n")
    (tmp_path / "parent.yaml").write_text("schema: 1\nname: parent\noptions: [retain_uids]\n")
    before = load_profile(str(child)).version
    (tmp_path / "parent.yaml").write_text(
        "schema: 1\nname: parent\noptions: [retain_device_identity]\n"
    )
    assert load_profile(str(child)).version != before


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "schema: 1\nname: x\noverrides:\n  - select: {keyword: PatientName}\n"
            "    action: obliterate\n",
            5,
            "overrides.0.action: 'obliterate' is not one of",
        ),
        (
            "schema: 1\nname: x\noptions:\n  - clean_descriptors\n  - retain_everything\n",
            5,
            "options.1: 'retain_everything' is not one of",
        ),
        (
            "schema: 1\nname: x\ndates:\n  shift_days: [-10, -1]\n  reduce_to_year: maybe\n",
            5,
            "dates.reduce_to_year: 'maybe' is not of type 'boolean'",
        ),
        ("schema: 1\nname: x\nages:\n  aggregate_over: ninety\n", 4, "is not of type 'integer'"),
        (
            "schema: 1\nname: x\nprivate:\n  dictionary:\n    - {creator: ACME, element: '10'}\n",
            5,
            "private.dictionary.0:",
        ),
        ("schema: 1\nname: x\noptions: [clean_descriptors\ntext: {}\n", 4, "not valid YAML"),
        ("schema: 1\nname: x\n  bad: indent\n", 3, "not valid YAML"),
    ],
    ids=[
        "bad-action",
        "unknown-option",
        "wrong-type",
        "wrong-type-age",
        "dictionary-entry-without-vr-or-keyword",
        "bad-yaml",
        "bad-indent",
    ],
)
def test_schema_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile_text(text, source="site.yaml")
    assert str(caught.value).startswith(f"site.yaml line {line}: ")
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("schema: 1\nname: x\ncolour: red\n", 3),
        ("schema: 1\nname: x\ntext:\n  ner: false\n  colour: red\n", 5),
    ],
    ids=["top-level", "nested"],
)
def test_unknown_key_error_names_the_line_of_that_key(text: str, line: int) -> None:
    with pytest.raises(ProfileError, match=f"line {line}: .*'colour' was unexpected"):
        parse_profile_text(text, source="site.yaml")


@pytest.mark.parametrize(
    "text",
    ["- a list\n- not a mapping\n", "schema: 1\n", "name: Upper Case\n", "schema: 2\nname: x\n"],
    ids=["not-a-mapping", "no-name", "bad-name", "future-schema"],
)
def test_malformed_profiles_are_rejected(text: str) -> None:
    with pytest.raises(ProfileError):
        parse_profile_text(text)


def test_both_longitudinal_date_options_are_rejected() -> None:
    text = "name: x\noptions: [retain_long_full_dates, retain_long_modified_dates]\n"
    with pytest.raises(ProfileError, match="exclude each other"):
        parse_profile_text(text)


def test_date_option_added_to_a_parent_with_the_other_is_rejected() -> None:
    with pytest.raises(ProfileError, match="exclude each other"):
        parse_profile_text("name: x\nextends: tcia\noptions: [retain_long_full_dates]\n")


def test_shift_window_must_be_ordered() -> None:
    with pytest.raises(ProfileError, match="shift_days"):
        parse_profile_text("name: x\ndates: {shift_days: [-1, -10]}\n")


def test_override_of_an_unknown_keyword_is_rejected() -> None:
    text = (
        "name: x\nextends: basic\noverrides:\n"
        "  - select: {keyword: PatientsFavouriteColour}\n    action: keep\n"
    )
    with pytest.raises(ProfileError, match="unknown keyword 'PatientsFavouriteColour'"):
        compile_profile(parse_profile_text(text))


def test_profile_without_extends_or_dates_compiles_with_defaults() -> None:
    plan = compile_profile(parse_profile_text("name: bare\n"))
    assert plan.dates.shift_days == (-3650, -365)
    assert plan.age_cap == 89


PARENT = """\
schema: 1
name: parent
options: [retain_uids]
default_unknown: remove
text:
  ner: false
  replacement: "***"
  keep_words: [CHEST]
overrides:
  - select: {keyword: PatientSex}
    action: keep
"""

CHILD = """\
schema: 1
name: child
extends: parent
options: [clean_descriptors, retain_uids]
default_unknown: keep
text:
  replacement: "[X]"
  keep_words: [ABDOMEN]
overrides:
  - select: {keyword: PatientAge}
    action: keep
"""


@pytest.fixture
def child(tmp_path: Path) -> dict[str, object]:
    (tmp_path / "parent.yaml").write_text(PARENT)
    (tmp_path / "child.yaml").write_text(CHILD)
    return load_profile(str(tmp_path / "child.yaml")).document


def test_extends_adds_options_without_duplicates(child: dict[str, object]) -> None:
    assert child["options"] == ["retain_uids", "clean_descriptors"]


def test_extends_adds_list_entries(child: dict[str, object]) -> None:
    overrides = child["overrides"]
    assert isinstance(overrides, list)
    assert [o["select"]["keyword"] for o in overrides] == ["PatientSex", "PatientAge"]


def test_extends_lets_child_scalars_win_and_merges_mappings(child: dict[str, object]) -> None:
    assert child["default_unknown"] == "keep"
    assert child["text"] == {"ner": False, "replacement": "[X]", "keep_words": ["CHEST", "ABDOMEN"]}
    assert (child["name"], child["based_on"]) == ("child", "parent")
    assert "extends" not in child


def test_extends_a_built_in_by_name() -> None:
    profile = parse_profile_text("name: site-b\nextends: tcia\noptions: [retain_uids]\n")
    tcia = load_profile("tcia").document
    assert set(profile.document["options"]) == {*tcia["options"], "retain_uids"}
    assert profile.document["private"] == tcia["private"]
    assert profile.document["based_on"] == "tcia"


def test_extends_cycle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nextends: b\n")
    (tmp_path / "b.yaml").write_text("name: b\nextends: a\n")
    with pytest.raises(ProfileError, match="extends too deeply"):
        load_profile(str(tmp_path / "a.yaml"))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("basic", set()),
        (
            "tcia",
            {
                "retain_long_modified_dates", "retain_patient_characteristics",
                "retain_device_identity", "retain_safe_private", "clean_descriptors",
                "clean_structured_content", "clean_graphics", "clean_pixel_data",
            },
        ),
        ("clinical-trial", {"clean_pixel_data"}),
    ],
)  # fmt: skip
def test_built_in_options_are_those_the_issue_lists(name: str, options: set[str]) -> None:
    assert set(load_profile(name).document.get("options", [])) == options
