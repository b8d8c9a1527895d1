"""Person-name finding with the real packaged spaCy model (no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from phigate.deid.ner import (
    DEFAULT_MODEL,
    NameFinder,
    NameSpan,
    NerUnavailable,
    SpacyNameFinder,
    clinical_words,
    load_name_finder,
    model_text,
)


@pytest.fixture(scope="module")
def finder() -> NameFinder:
    return load_name_finder()  # fails, not skips, when the model package is missing


_PIPES = ["tagger", "parser", "senter", "attribute_ruler", "lemmatizer"]


def names(finder: NameFinder, text: str) -> list[str]:
    return [text[span.start : span.end] for span in finder.find_names(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Patient John Smith seen for follow up", ["John Smith"]),
        ("SEEN BY DR ALICE WONG", ["ALICE WONG"]),
        ("SEEN BY DR JOHN SMITH FOR FOLLOW UP", ["JOHN SMITH"]),
        ("Comparison with prior read by Dr. Maria Garcia", ["Maria Garcia"]),
        ("Referred by Robert Johnson MD", ["Robert Johnson"]),
        ("REFERRED BY ROBERT JOHNSON MD", ["ROBERT JOHNSON"]),
        ("Read by Sarah O'Connor, MD", ["Sarah O'Connor"]),
    ],
)
def test_finds_names(finder: NameFinder, text: str, expected: list[str]) -> None:
    assert names(finder, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "CT CHEST W CONTRAST",
        "MR BRAIN WO/W GAD",
        "AXIAL T2 FLAIR",
        "PA AND LATERAL",
        "LEFT KNEE 3 VIEWS",
        "ABDOMEN PELVIS",
        "Thorax^1HEAD_NECK_PETCT",
        "CTA HEAD AND NECK",
        "PET/CT SKULL BASE TO MID THIGH",
        "Chest PA and lateral",
        "Low dose CT lung screening",
        "",
        "   ",
        "12345",
    ],
)
def test_clinical_text_has_no_names(finder: NameFinder, text: str) -> None:
    assert finder.find_names(text) == []


def test_offsets_index_the_original_text(finder: NameFinder) -> None:
    text = "SEEN BY DR JOHN SMITH FOR FOLLOW UP"
    spans = finder.find_names(text)
    assert spans == [NameSpan(start=11, end=21, score=spans[0].score)]
    assert text[11:21] == "JOHN SMITH"
    assert 0.0 < spans[0].score <= 1.0


def test_repeated_text_gives_equal_independent_results(finder: NameFinder) -> None:
    text = "Patient John Smith seen for follow up"
    first = finder.find_names(text)
    first.clear()
    assert names(finder, text) == ["John Smith"]


def test_model_text_keeps_length_and_recases_caps() -> None:
    text = "SEEN BY DR JOHN SMITH^JR MR BRAIN"
    seen, normalised = model_text(text)
    assert normalised
    assert len(seen) == len(text)
    assert seen == "seen by Dr John Smith Jr Mr brain"


def test_model_text_leaves_mixed_case_alone() -> None:
    assert model_text("Read by Dr. Maria Garcia") == ("Read by Dr. Maria Garcia", False)


def test_allow_list_is_lower_case_words() -> None:
    words = clinical_words()
    assert {"chest", "axial", "flair", "lateral"} <= words
    assert all(word.isalnum() and word == word.lower() for word in words)


def test_finder_is_loaded_once() -> None:
    assert load_name_finder() is load_name_finder()


def test_missing_model_raises_actionable_error() -> None:
    with pytest.raises(NerUnavailable, match=r"pip install no-such-model-xyz"):
        load_name_finder("no_such_model_xyz")


def test_the_default_tokenizer_used_is_the_one_the_model_saved(finder: NameFinder) -> None:
    """The finder skips reading the model's tokenizer from disk (it is slow); that is only
    right while spaCy's English default splits text exactly as the saved one does."""
    assert isinstance(finder, SpacyNameFinder)
    used = finder._nlp.tokenizer
    saved = spacy.load(DEFAULT_MODEL, exclude=["tok2vec", "ner", *_PIPES]).tokenizer
    assert used.rules == saved.rules
    for part in ("prefix_search", "suffix_search", "infix_finditer"):
        assert getattr(used, part).__self__.pattern == getattr(saved, part).__self__.pattern
    assert (used.token_match, used.url_match) == (saved.token_match, saved.url_match)


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose path holds a package registering a spaCy pipeline component."""
    (tmp_path / "phigate_probe_plugin.py").write_text("def make(nlp, name):\n    return None\n")
    dist = tmp_path / "phigate_probe_plugin-1.0.dist-info"
    dist.mkdir()
    metadata = "Metadata-Version: 2.1\nName: phigate-probe-plugin\nVersion: 1.0\n"
    (dist / "METADATA").write_text(metadata)
    (dist / "entry_points.txt").write_text("[spacy_factories]\nprobe = phigate_probe_plugin:make\n")
    return os.environ | {"PYTHONPATH": str(tmp_path)}


def _stdout_of(code: str, env: dict[str, str]) -> list[str]:
    """Run ``code`` in a fresh interpreter (imports and the loaded model are per process)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip().splitlines()


_LOAD_AND_REPORT = """
import sys
from spacy.util import registry
from phigate.deid.ner import load_name_finder

finder = load_name_finder()
print("phigate_probe_plugin" in sys.modules, registry._entry_point_factories.entry_points)
print([span.start for span in finder.find_names("Referred by Robert Johnson MD")])
"""


def test_loading_the_model_imports_no_installed_spacy_plugin(plugin_env: dict[str, str]) -> None:
    """spaCy imports every package that registers a pipeline component whenever it builds a
    pipeline (presidio-analyzer's costs about 1.2 s). The finder's load imports none, still
    finds names, and leaves spaCy's own setting as it was."""
    imported, found = _stdout_of(_LOAD_AND_REPORT, plugin_env)
    assert imported == "False True"
    assert found == "[12]"


def test_spacy_itself_imports_the_probe_plugin(plugin_env: dict[str, str]) -> None:
    """The check above could pass for want of a plug-in spaCy sees: a pipeline built the
    ordinary way does import the probe."""
    code = "import sys, spacy; spacy.blank('en'); print('phigate_probe_plugin' in sys.modules)"
    assert _stdout_of(code, plugin_env) == ["True"]
