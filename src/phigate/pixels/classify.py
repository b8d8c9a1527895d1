"""Judge each piece of recognised text: PHI of some kind, harmless, or unknown.

Order matters and goes from the most to the least specific evidence:

1. the instance's own header identifiers (fuzzy, :mod:`phigate.pixels.identifiers`);
2. the profile keep-list (whole-piece patterns for known harmless text);
3. recognisers for dates and times, phone numbers, e-mail, ID-like digit runs, ages,
   institutions, labelled values (``MRN: ...``) and person names;
4. text made only of harmless tokens (clinical vocabulary, numbers, units, device codes);
5. text whose unknown words are one OCR slip from harmless vocabulary (``AXlAL``,
   ``SEFIES``, ``SAGR`` for ``SAG R``), after the name lists had their say;
6. anything else is *unclassified*: the profile decides whether it is cleared, reviewed or
   both.

Many digits in one run (six or more: ``18/3a/2886``, ``2A21-18-54``) mean a date or an ID
even when OCR garbled the separators, so they are PHI before any harmless-token check.

The verdict never carries the text, only its kind and how sure the judgement is.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from phigate.pixels.defaults import HONORIFICS, INSTITUTION_WORDS, PHI_LABELS, UNITS
from phigate.pixels.identifiers import IdentifierMatcher, approximate_find, guess_kind
from phigate.pixels.names import name_lists
from phigate.pixels.rules import PixelRules

PHI_KINDS = ("name", "id", "date", "institution", "other_phi")
NON_PHI = "non_phi"
UNCLASSIFIED = "unclassified"
LABEL_ALONE = "phi_label_alone"  # basis of a bare label (``MRN:``): harmless unless next to PHI

_MONTH = r"(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC)[A-Z]*\.?"
_RECOGNISERS: tuple[tuple[str, re.Pattern[str], float], ...] = tuple(
    (kind, re.compile(pattern, re.IGNORECASE), confidence)
    for kind, pattern, confidence in (
        ("date", r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b", 0.95),
        ("date", r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b", 0.95),
        ("date", rf"\b\d{{1,2}}[-\s.]*{_MONTH}[-\s.,]*\d{{2,4}}\b", 0.95),
        ("date", rf"\b{_MONTH}\s*\d{{1,2}}(?:ST|ND|RD|TH)?,?\s*\d{{4}}\b", 0.95),
        ("date", r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\b", 0.9),
        ("date", r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AP]\.?M\.?)?\b", 0.85),  # times of day
        ("id", r"\b\d{3}-\d{2}-\d{4}\b", 0.95),  # SSN-like
        ("other_phi", r"[\w.+-]+@[\w-]+\.[\w.]+", 0.95),  # e-mail
        ("other_phi", r"(?:\+\d{1,3}[\s.-]?)?\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b", 0.9),  # phone
        ("id", r"\b[A-Z]{0,4}[-#]?\d{5,}[A-Z\d]*\b", 0.85),  # MRN / accession digit runs
        ("id", r"\b(?=[A-Z\d-]*\d{4})(?=[A-Z\d-]*[A-Z])[A-Z\d-]{6,}\b", 0.7),  # A12B3456
        ("other_phi", r"^\s*\d{1,3}\s*(?:Y|YO|YR|YRS|YEARS?(?:\s+OLD)?)\b", 0.8),  # age
        ("other_phi", r"^\s*\d{1,3}\s+[MF]\b", 0.7),  # "30 M": age and sex
    )
)

_UNIT_SET = frozenset(u.upper() for u in UNITS)
_NUMBER_UNIT = re.compile(r"[-+]?\d{1,4}(?:[.,]\d+)?(?:%|°|[A-Z/*.]{0,6})", re.IGNORECASE)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9.%°'+-]*")
_CLEAN = re.compile(r"[^A-Za-z0-9 .,:;/%°^*#+\-()@'&_]")
_CARET_NAME = re.compile(r"[A-Za-z][A-Za-z'-]+\^+[A-Za-z]")
_COMMA_NAME = re.compile(r"^\s*([A-Za-z][A-Za-z'-]+)\s*,\s*([A-Za-z][A-Za-z'-]+)")
_HONORIFIC = re.compile(rf"\b(?:{'|'.join(HONORIFICS)})\.?\s+[A-Za-z][A-Za-z'-]+", re.IGNORECASE)
_LABEL_KINDS = dict(PHI_LABELS)
_INSTITUTION_SET = frozenset(INSTITUTION_WORDS)
_ORIENTATION = frozenset("LRAPHFSI")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNFOLD = str.maketrans("0158", "OISB")
_DECIMAL = re.compile(r"[-+]?\d{1,4}[.,]\d+[A-Z%]*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a piece of text is. ``basis`` says which rule decided (for reports and tests)."""

    kind: str
    confidence: float
    keyword: str = ""
    basis: str = ""

    @property
    def is_phi(self) -> bool:
        return self.kind in PHI_KINDS


class TextClassifier:
    """Classifies text for one instance: its identifiers plus the profile's word lists."""

    def __init__(
        self,
        rules: PixelRules,
        identifiers: Sequence[str] | Mapping[str, str | Sequence[str]],
        extra_harmless: Iterable[str] = (),
    ) -> None:
        self._rules = rules
        self._identifiers = IdentifierMatcher(identifiers)
        words = {w.upper() for w in rules.harmless_words}
        words |= {t.upper() for phrase in extra_harmless for t in _TOKEN.findall(phrase)}
        self._harmless = frozenset(words)
        days = sorted(_day_and_month_forms(identifiers), key=len, reverse=True)
        alternation = "|".join(map(re.escape, days))
        self._own_days = re.compile(rf"(?<![\w.])(?:{alternation})(?![\w.])") if days else None

    def classify(self, text: str) -> Verdict:
        """The verdict for one piece of recognised text."""
        norm = " ".join(_CLEAN.sub("", text).split())
        if not _TOKEN.search(norm):
            return Verdict(NON_PHI, 1.0, basis="no_text")
        found = self._identifiers.match(norm)
        if found is not None:
            return Verdict(found.kind, found.confidence, found.keyword, "identifier")
        cue = self._phi_cue(norm)
        if cue is not None:
            return cue
        if any(p.fullmatch(norm) for p in self._rules.compiled_keep):
            return Verdict(NON_PHI, 1.0, basis="keep_list")
        return self._recognise(norm)

    def _phi_cue(self, norm: str) -> Verdict | None:
        """What makes text PHI even when it is shaped like annotation ("DOB: 04.03" looks
        like "TR 500"), checked before the keep-list and the harmless-word shortcuts."""
        upper = [t.strip(".-':#").upper() for t in _TOKEN.findall(norm)]
        upper = [t for t in upper if t]
        found = _labelled_value(upper) or self._named(upper) or self._clipped_own_name(upper)
        found = found or self._garbled_own_id(upper)
        if found is not None:
            return found
        if _SEX_AND_OLD_AGE.search(norm) or _LOCAL_PHONE.search(norm):
            return Verdict("other_phi", 0.8, basis="pattern")
        spaced = " ".join(norm.upper().split())
        if self._own_days is not None and self._own_days.search(spaced):
            return Verdict("date", 0.8, basis="own_day_and_month")
        return None

    def _named(self, upper: list[str]) -> Verdict | None:
        """A title before a word that is not clinical vocabulary (``DR LI``), or a word of
        three letters or more from the name lists that is not clinical vocabulary either."""
        for token, after in itertools.pairwise(upper):
            if token in HONORIFICS and after.isalpha() and after not in self._harmless:
                return Verdict("name", 0.85, basis="honorific")
        if _INSTITUTION_SET.intersection(upper):
            return None  # "St Mary Hospital": the institution recogniser names it
        lists = name_lists()
        for token in upper:
            listed = token in lists.given or token in lists.surnames
            plain = token not in self._harmless and token not in _LABEL_KINDS
            if listed and plain and len(token) >= 3 and token.isalpha():
                return Verdict("name", 0.7, basis="name_list")
        return None

    def _clipped_own_name(self, upper: list[str]) -> Verdict | None:
        """A piece made only of words that start own names ("KOW", "K0W AN"), none of them
        harmless vocabulary: a name cut to fit a field. Beside other words or numbers such
        a word is more likely an annotation that happens to start the name ("PAR 2")."""
        words = [_unfold(t) for t in upper]
        if not words or not all(w.isalpha() for w in words):
            return None
        found = None
        for word in words:
            if len(word) <= 2:  # an initial: it must start an own name too
                if self._identifiers.clipped_name(word, shortest=1) is None:
                    return None
                continue
            if self.is_harmless(word) or word in _LABEL_KINDS:
                return None
            found = self._identifiers.clipped_name(word)
            if found is None:
                return None
        if found is None:
            return None
        return Verdict(found.kind, found.confidence, found.keyword, "clipped_name")

    def _garbled_own_id(self, upper: list[str]) -> Verdict | None:
        """A token, or the piece with its spaces dropped, shaped like a misreading of an own
        ID (small IDs garble: "D107DD11", "D107 DD11")."""
        for token in [*upper, "".join(upper)] if len(upper) > 1 else upper:
            found = self._identifiers.garbled_id(token)
            if found is not None:
                return Verdict(found.kind, found.confidence, found.keyword, "garbled_id")
        return None

    def _recognise(self, norm: str) -> Verdict:
        for kind, pattern, confidence in _RECOGNISERS:
            if pattern.search(norm):
                return Verdict(kind, confidence, basis="pattern")
        digits = _digit_run(norm)
        if digits is not None:
            return digits
        tokens = [t.strip(".-'") for t in _TOKEN.findall(norm)]
        unknown = [t for t in tokens if t and not self.is_harmless(t)]
        labelled = _labelled(tokens, unknown)
        if labelled is not None:
            return labelled
        if len(tokens) == 1 and label_kind(tokens[0]):
            return Verdict(NON_PHI, 0.9, basis=LABEL_ALONE)
        if not unknown:
            return Verdict(NON_PHI, 0.9, basis="harmless_tokens")
        return (
            _institution(tokens)
            or _person_name(norm, unknown)
            or self._misread_harmless(tokens, unknown)
            or Verdict(UNCLASSIFIED, 0.3, basis="unknown_words")
        )

    def _misread_harmless(self, tokens: list[str], unknown: list[str]) -> Verdict | None:
        """Harmless vocabulary read with one OCR slip, split or run together. Reached only
        after the identifier, pattern and name checks found nothing."""
        if self.is_known_word("".join(tokens).upper()):
            return Verdict(NON_PHI, 0.7, basis="harmless_misread")
        if all(self._near_known(t.upper()) for t in unknown):
            return Verdict(NON_PHI, 0.7, basis="harmless_misread")
        return None

    def _near_known(self, token: str) -> bool:
        if not token.isalpha() or len(token) < 3:
            return False
        if _splits_into(token, self.is_known_word):
            return True
        edits = _substitutions(token) if len(token) == 3 else _single_edits(token)
        return any(self.is_known_word(e) for e in edits if len(e) >= 3)

    def is_known_word(self, word: str) -> bool:
        """A word of the harmless vocabulary, possibly with a laterality prefix (``RMLO``)."""
        return word in self._harmless or (word[:1] in "LR" and word[1:] in self._harmless)

    def is_harmless(self, token: str) -> bool:
        """A token that is clinical vocabulary, a number, a measurement or a device code."""
        upper = token.upper()
        if upper in self._harmless or upper in _UNIT_SET or len(upper) <= 2:
            return True
        if _NUMBER_UNIT.fullmatch(upper) and _small_number(upper):
            return True
        if "-" in upper and all(self.is_harmless(p) for p in upper.split("-") if p):
            return True
        if upper[0] in "LR" and upper[1:] in self._harmless:
            return True  # laterality prefixed to a view or structure: LCC, RMLO, LKIDNEY
        digits = sum(c.isdigit() for c in upper)
        return 0 < digits <= 3 and len(upper) <= 7  # device/probe codes: L12-5, TAC1, DR60


# Labels whose value is PHI whatever it looks like (names, IDs, dates, ages over 89, contact).
_VALUE_LABELS = {
    label: kind
    for label, kind in PHI_LABELS
    if label
    in {"NAME", "PATIENT", "ID", "MRN", "PID", "ACC", "ACCESSION", "ACCN", "SSN", "NHS"}
    | {"MEDICARE", "RECORD", "DOB", "BIRTH", "BORN", "BIRTHDATE", "DATE", "AGE", "PHONE"}
    | {"TEL", "ADDRESS", "EMAIL"}
}
_SEX_AND_OLD_AGE = re.compile(r"(?<![A-Za-z])[FM]\s*:?\s*(?:9\d|1[0-4]\d)\s*Y?(?![\w.])", re.I)
_LOCAL_PHONE = re.compile(r"(?<![\w.])(?:\(\d{3}\)\s*)?\d{3}\s\d{4}(?![\w.])")
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _labelled_value(upper: list[str]) -> Verdict | None:
    """A label whose value is PHI, followed by anything (an age only when over 89)."""
    for token, after in itertools.pairwise(upper):
        kind = _VALUE_LABELS.get(token) or _VALUE_LABELS.get(_unfold(token))
        if kind is not None and (token != "AGE" or _old_age(after)):
            return Verdict(kind, 0.8, basis="label_with_value")
    return None


def _old_age(value: str) -> bool:
    """An age over 89 (HIPAA aggregates those), as ``92``, ``92Y``, ``092Y``."""
    digits = value.rstrip("Y")
    return digits.isdigit() and int(digits) >= 90


def _day_and_month_forms(
    identifiers: Sequence[str] | Mapping[str, str | Sequence[str]],
) -> frozenset[str]:
    """The instance's own dates as a display shows them without a year (``04/03``,
    ``4.3``, ``MAR 4``, ``4 MAR``), in upper case with single spaces."""
    values = identifiers.values() if isinstance(identifiers, Mapping) else identifiers
    flat = [v for value in values for v in ([value] if isinstance(value, str) else value)]
    forms: set[str] = set()
    for value in flat:
        text = str(value).strip()
        if not re.fullmatch(r"\d{8}", text) or guess_kind(text) != "date":
            continue
        month, day = int(text[4:6]), int(text[6:8])
        for a, b in ((day, month), (month, day)):
            for sep in ("/", ".", "-"):
                forms.update({f"{a}{sep}{b}", f"{a:02d}{sep}{b:02d}"})
        name = _MONTH_NAMES[month - 1]
        forms.update({f"{name} {day}", f"{name} {day:02d}", f"{day} {name}", f"{day:02d} {name}"})
    return frozenset(forms)


def _digit_run(norm: str) -> Verdict | None:
    """Six or more digits in one run of text without spaces (or five in a run of seven
    characters or more, half of them digits: ``D107DD11``): a date or an identifier, however
    OCR garbled it. Decimal measurements (``1234.56``) are not."""
    for chunk in norm.split():
        digits = sum(c.isdigit() for c in chunk)
        mostly_digits = digits >= 5 and len(chunk) >= 7 and 2 * digits >= len(chunk)
        if (digits < 6 and not mostly_digits) or _DECIMAL.fullmatch(chunk):
            continue
        dated = re.search(r"\w[-/.]\w+[-/.]\w", chunk) is not None
        return Verdict("date" if dated else "id", 0.75, basis="digit_run")
    return None


def _splits_into(token: str, known: Callable[[str], bool]) -> bool:
    """The token is two harmless words run together (``SAGR``: ``SAG`` and ``R``); one of
    them has three letters at least."""
    for cut in range(1, len(token)):
        head, tail = token[:cut], token[cut:]
        if max(len(head), len(tail)) < 3:
            continue
        if all(known(p) or p in _ORIENTATION for p in (head, tail)):
            return True
    return False


def _substitutions(token: str) -> Iterator[str]:
    for i in range(len(token)):
        for char in _LETTERS:
            yield token[:i] + char + token[i + 1 :]


def _single_edits(token: str) -> Iterator[str]:
    """Every word one deletion, substitution or insertion away (Damerau's OCR slips)."""
    for i in range(len(token)):
        yield token[:i] + token[i + 1 :]
    yield from _substitutions(token)
    for i in range(len(token) + 1):
        for char in _LETTERS:
            yield token[:i] + char + token[i:]


def _small_number(token: str) -> bool:
    """Measurements and counters have at most four digits before the decimal point."""
    integer = re.match(r"[-+]?(\d+)", token)
    return integer is not None and len(integer.group(1)) <= 4


def _institution(tokens: list[str]) -> Verdict | None:
    if any(t.upper() in INSTITUTION_WORDS for t in tokens):
        return Verdict("institution", 0.8, basis="institution_word")
    if any(_splits_into(t.upper(), _INSTITUTION_SET.__contains__) for t in tokens if len(t) >= 8):
        return Verdict("institution", 0.75, basis="institution_words_joined")
    if any(_near_institution_word(t.upper()) for t in tokens if len(t) >= 6):
        return Verdict("institution", 0.7, basis="institution_word_misread")
    return None


def _near_institution_word(token: str) -> bool:
    """One OCR slip away from an institution word (``MEDlCAL``, ``CENBER``)."""
    return any(
        abs(len(word) - len(token)) <= 1 and approximate_find(word, token) <= 1
        for word in INSTITUTION_WORDS
        if len(word) >= 6
    )


def _labelled(tokens: list[str], unknown: list[str]) -> Verdict | None:
    """``MRN: X12``, ``Name: Smith``, ``Tel 845 -86 7-8532``: a PHI label followed by a
    value that is not harmless, or by four digits or more however they are spaced."""
    for token in tokens:
        kind = label_kind(token)
        if not kind:
            continue
        digits = sum(c.isdigit() for t in tokens if t != token for c in t)
        if digits >= 4 or any(u.upper() != token.upper() for u in unknown):
            return Verdict(kind, 0.8, basis="label")
    return None


def label_kind(token: str) -> str | None:
    """The PHI kind a label word announces (``DOB``, ``MRN``, ``D0B``), if it is one."""
    upper = token.upper().strip(":#.")
    return _LABEL_KINDS.get(upper) or _LABEL_KINDS.get(_unfold(upper))


def _unfold(token: str) -> str:
    """Digits OCR reads for letters, back as letters (``D0B`` is ``DOB``)."""
    if not any(c.isalpha() for c in token):
        return token
    return token.translate(_UNFOLD)


def _person_name(norm: str, unknown: list[str]) -> Verdict | None:
    if _CARET_NAME.search(norm):
        return Verdict("name", 0.9, basis="dicom_person_name")
    if _HONORIFIC.search(norm):
        return Verdict("name", 0.85, basis="honorific")
    if _COMMA_NAME.search(norm):
        return Verdict("name", 0.8, basis="surname_comma_given")
    lists = name_lists()
    hits = sum(1 for u in unknown if u.upper() in lists.given or u.upper() in lists.surnames)
    if hits:
        return Verdict("name", 0.8 if hits > 1 else 0.7, basis="name_list")
    return None
