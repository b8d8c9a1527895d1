"""Clean free text (descriptors, comments): remove identifiers, keep clinical words.

Three passes, each adding spans to remove:

1. the instance's own identifiers (every name part, so ``DOE^JOHN``, ``John Doe``,
   ``Doe, John`` and the surname alone all go; IDs with or without separators; its dates in
   common formats; institution and address words);
2. pattern recognisers: dates, phone numbers, e-mail, SSN-like and MRN-like digit runs,
   street addresses, ZIP codes, and a title followed by a name (``DR SMITH``);
3. person names found by the offline NER model (:mod:`phigate.deid.ner`).

The same descriptor repeats across a series, so results are cached per patient and text.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from phigate.deid.identifiers import InstanceIdentifiers
from phigate.deid.ner import NameFinder, check_name_finder, clinical_words, load_name_finder
from phigate.deid.values import shift_date
from phigate.policy.plan import TextSettings

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
RECOGNIZERS: dict[str, re.Pattern[str]] = {
    "date": re.compile(
        r"\b(?:\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|\d{4}[/.-]\d{1,2}[/.-]\d{1,2}"
        rf"|(?:19|20)\d{{2}}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
        rf"|\d{{1,2}}[\s./-]*{_MONTHS}[\s./-]*\d{{2,4}}"
        rf"|{_MONTHS}[\s./-]*\d{{1,2}}(?:st|nd|rd|th)?,?[\s./-]*\d{{2,4}})\b",
        re.IGNORECASE,
    ),
    "phone": re.compile(
        r"(?<!\w)(?:\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b"
        r"|(?<![\w.-])\d{3}[.-]\d{4}(?![\w.-])"  # a local number, without its area code
    ),
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "ssn": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "mrn": re.compile(r"\b[A-Z]{0,3}\d{6,}[A-Z]?\b", re.IGNORECASE),
    "address": re.compile(
        r"\b\d{1,6}\s+(?:[A-Za-z]+\.?\s+){1,4}(?:st|street|ave|avenue|rd|road|blvd|boulevard|ln"
        r"|lane|dr|drive|ct|court|way|pl|place|terrace|ter|hwy|highway|pkwy|parkway)\b\.?",
        re.IGNORECASE,
    ),
    "zip": re.compile(r"\b\d{5}(?:-\d{4})?\b"),
    "titled_name": re.compile(
        r"\b(?:dr|mr|mrs|ms|prof|doctor)\.?\s+([A-Za-z][A-Za-z'-]+)(?:[\s,]+([A-Za-z][A-Za-z'-]+))?",
        re.IGNORECASE,
    ),
}
_RECOGNIZER_KIND = {"titled_name": "name", "ssn": "id", "mrn": "id", "zip": "address"}
_DATE_FORMATS = (
    *("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y", "%d/%m/%Y"),
    *("%d-%b-%Y", "%d-%b-%y", "%d%b%Y"),  # 07-NOV-1939, as scanner consoles print dates
)
_NAME_SPLIT = re.compile(r"[\^,\s=]+")
_MIN_TOKEN = 2


@dataclass(frozen=True, slots=True)
class CleanedText:
    """Cleaned text and the kinds of what was removed (never the removed text itself)."""

    text: str
    kinds: tuple[str, ...]


class TextCleaner:
    """Cleans text for one plan; one per worker process, sharing the NER model and a cache."""

    def __init__(self, settings: TextSettings, name_finder: NameFinder | None = None) -> None:
        self.settings = settings
        self._name_finder = name_finder
        if settings.ner and name_finder is None:
            check_name_finder()  # fail at start-up, not on the first descriptor
        self._cached = lru_cache(maxsize=8192)(self._clean_uncached)

    def load_model(self) -> None:
        """Load the NER model now rather than on the first text that needs it."""
        self._finder()

    def _finder(self) -> NameFinder | None:
        """The NER model, loaded on first use unless :meth:`load_model` came first."""
        if self._name_finder is None and self.settings.ner:
            self._name_finder = load_name_finder()
        return self._name_finder

    def clean(self, text: str, identifiers: InstanceIdentifiers, day_offset: int) -> CleanedText:
        """Clean ``text`` for the instance whose identifiers are given."""
        if not text.strip():
            return CleanedText(text, ())
        return self._cached(text, identifiers, day_offset)

    def _clean_uncached(
        self, text: str, identifiers: InstanceIdentifiers, day_offset: int
    ) -> CleanedText:
        spans = list(_identifier_spans(text, identifiers))
        spans.extend(self._recognizer_spans(text))
        if self.settings.ner and _may_hold_a_name(text):
            finder = self._finder()
            if finder is not None:
                spans.extend((s.start, s.end, "name") for s in finder.find_names(text))
        if not spans:
            return CleanedText(text, ())
        merged = _merge(spans)
        return CleanedText(self._rewrite(text, merged, day_offset), tuple(k for _, _, k in merged))

    def _recognizer_spans(self, text: str) -> Iterable[tuple[int, int, str]]:
        for name in self.settings.recognizers:
            kind = _RECOGNIZER_KIND.get(name, name)
            for match in RECOGNIZERS[name].finditer(text):
                if self._is_kept(match.group()):
                    continue
                if name == "titled_name":
                    span = _titled_name_span(match)
                    if span is not None:
                        yield span[0], span[1], kind
                    continue
                if name == "address":
                    yield match.start(), _town_end(text, match.end()), kind
                    continue
                yield match.start(), match.end(), kind

    def _is_kept(self, found: str) -> bool:
        return found.strip().upper() in self.settings.keep_words

    def _rewrite(self, text: str, spans: list[tuple[int, int, str]], day_offset: int) -> str:
        pieces: list[str] = []
        cursor = 0
        for start, end, kind in spans:
            pieces.append(text[cursor:start])
            pieces.append(self._replacement(text[start:end], kind, day_offset))
            cursor = end
        pieces.append(text[cursor:])
        return re.sub(r"\s{2,}", " ", "".join(pieces)).strip()

    def _replacement(self, found: str, kind: str, day_offset: int) -> str:
        if kind == "date" and self.settings.shift_dates_in_text:
            shifted = _shift_text_date(found, day_offset)
            if shifted is not None:
                return shifted
        return self.settings.replacement


_WORDS = re.compile(r"[^\W\d_]{2,}")


def _may_hold_a_name(text: str) -> bool:
    """Whether any word could be a name: text made only of clinical words skips the model."""
    vocabulary = clinical_words()
    return any(word.lower() not in vocabulary for word in _WORDS.findall(text))


def _titled_name_span(match: re.Match[str]) -> tuple[int, int] | None:
    """The name after a title, unless the "title" is a modality and the words are clinical.

    In capitals, MR, MS and DR are also magnetic resonance, multiple sclerosis and digital
    radiography: "MR KNEE LEFT" has no name in it. The span stops at the first clinical word.
    """
    words = clinical_words()
    first, second = match.group(1), match.group(2)
    if first.lower() in words:
        return None
    end = match.end(2) if second and second.lower() not in words else match.end(1)
    return match.start(), end


_TOWN_WORD = re.compile(r",?\s+([A-Z][A-Za-z'-]+)")
_MAX_TOWN_WORDS = 2


def _town_end(text: str, end: int) -> int:
    """Where an address ends: after the street, the capitalised words of a town that follow
    it (up to two, never a clinical word)."""
    words = clinical_words()
    for _ in range(_MAX_TOWN_WORDS):
        match = _TOWN_WORD.match(text, end)
        if match is None or match.group(1).lower() in words:
            break
        end = match.end()
    return end


def _shift_text_date(found: str, day_offset: int) -> str | None:
    for fmt in _DATE_FORMATS:
        try:
            parsed = dt.datetime.strptime(found.strip(), fmt)
        except ValueError:
            continue
        moved = shift_date(parsed.strftime("%Y%m%d"), day_offset)
        if moved is not None:
            return dt.datetime.strptime(moved, "%Y%m%d").strftime(fmt)
    return None


def names_own_identifier(text: str, identifiers: InstanceIdentifiers, dates: bool) -> bool:
    """Whether ``text`` holds one of the instance's own names or IDs (or, with ``dates``, its
    dates): the check a kept short value (a code meaning, a model name) gets before it is
    written as it came.

    Stricter than descriptor cleaning, since such values are mostly codes: name parts of
    three letters or more that are not clinical words, IDs of four characters or more with a
    digit, whole words only (``_`` joins words: SIEMENS_RIS is one).
    """
    pattern = _kept_value_pattern(identifiers, dates)
    return pattern is not None and pattern.search(text) is not None


@lru_cache(maxsize=1024)
def _kept_value_pattern(identifiers: InstanceIdentifiers, dates: bool) -> re.Pattern[str] | None:
    words = clinical_words()
    names = {t for t in _name_tokens(identifiers.names) if len(t) >= 3 and t.lower() not in words}
    ids = {v for v in _id_variants(identifiers.ids) if len(v) >= 4 and any(c.isdigit() for c in v)}
    values = names | ids | (_date_variants(identifiers.dates) if dates else set())
    if not values:
        return None
    alternation = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9_])(?:{alternation})(?![A-Za-z0-9_])", re.IGNORECASE)


def _identifier_spans(
    text: str, identifiers: InstanceIdentifiers
) -> Iterable[tuple[int, int, str]]:
    for kind, pattern in _identifier_patterns(identifiers):
        for match in pattern.finditer(text):
            yield match.start(), match.end(), kind


@lru_cache(maxsize=1024)
def _identifier_patterns(
    identifiers: InstanceIdentifiers,
) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """One compiled alternation per kind; cached because a series shares its identifiers."""
    groups = {
        "name": _name_tokens(identifiers.names),
        "id": _id_variants(identifiers.ids),
        "date": _date_variants(identifiers.dates),
        "institution": _place_tokens(identifiers.places),
    }
    compiled = []
    for kind, values in groups.items():
        if values:
            alternation = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
            compiled.append(
                (kind, re.compile(rf"(?<![A-Za-z0-9])(?:{alternation})(?![A-Za-z0-9])", re.I))
            )
    return tuple(compiled)


def _name_tokens(names: tuple[str, ...]) -> set[str]:
    """The parts of the instance's names worth matching, in their other spellings too: not
    Latin initials, but a one-character ideographic surname (王) is a whole name part."""
    tokens: set[str] = set()
    for name in names:
        parts = (t.strip(".") for t in _NAME_SPLIT.split(name))
        kept = (t for t in parts if len(t) >= _MIN_TOKEN or (t.isalpha() and not t.isascii()))
        tokens.update(spelling for t in kept for spelling in _spellings(t))
    return tokens


# German letters and their ASCII spellings (MÜLLER is MUELLER in an ASCII-only system).
_UMLAUTS = (("Ä", "AE"), ("Ö", "OE"), ("Ü", "UE"), ("ß", "SS"))


def _spellings(token: str) -> set[str]:
    """A name part as written, without its accents (MÜLLER, MULLER), and with umlauts spelled
    out or put back (MUELLER); matching is case-insensitive, so upper case serves."""
    upper = token.upper()
    bare = "".join(c for c in unicodedata.normalize("NFKD", upper) if not unicodedata.combining(c))
    spelled_out, put_back = upper, upper
    for letter, ascii_form in _UMLAUTS:
        spelled_out = spelled_out.replace(letter.upper(), ascii_form)
        put_back = put_back.replace(ascii_form, letter.upper())
    return {token, bare, spelled_out, put_back}


def _id_variants(ids: tuple[str, ...]) -> set[str]:
    variants = set()
    for value in ids:
        if len(value) >= 3:
            variants.add(value)
            variants.add(re.sub(r"[\s./-]", "", value))
    return {v for v in variants if len(v) >= 3}


def _date_variants(dates: tuple[str, ...]) -> set[str]:
    variants = set()
    for value in dates:
        try:
            parsed = dt.datetime.strptime(value[:8], "%Y%m%d")
        except ValueError:
            continue
        for fmt in (*_DATE_FORMATS, "%d %b %Y", "%b %d, %Y", "%B %d, %Y", "%d %B %Y", "%m/%d/%y"):
            variants.add(parsed.strftime(fmt))
        variants.add(f"{parsed.month}/{parsed.day}/{parsed.year}")
    return variants


def _place_tokens(places: tuple[str, ...]) -> set[str]:
    tokens = set()
    for place in places:
        tokens.add(place)
        tokens.update(word for word in re.split(r"[\s,^]+", place) if len(word) >= 4)
    return {t for t in tokens if t.strip()}


def _merge(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Sort spans and merge overlaps; a date wins, so it can be shifted rather than removed."""
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(spans, key=lambda s: (s[0], -s[1])):
        if merged and start < merged[-1][1]:
            last_start, last_end, last_kind = merged[-1]
            winner = "date" if "date" in (kind, last_kind) else last_kind
            merged[-1] = (last_start, max(last_end, end), winner)
        else:
            merged.append((start, end, kind))
    return merged
