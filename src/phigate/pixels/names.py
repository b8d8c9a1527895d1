"""Person-name lists for the name recogniser.

The lists are the US Census 1990 given-name and surname frequency files shipped inside the
``names`` package on PyPI (MIT licence); nothing is downloaded. Without that package the
recogniser still works from structure alone (``DOE^JOHN``, ``Doe, John``, ``Dr Doe``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

_GIVEN_FILES = ("dist.male.first", "dist.female.first")
_SURNAME_FILE = "dist.all.last"


@dataclass(frozen=True, slots=True)
class NameLists:
    given: frozenset[str]
    surnames: frozenset[str]

    @property
    def available(self) -> bool:
        return bool(self.given)


@functools.cache
def name_lists() -> NameLists:
    """The census name lists, loaded once per process (empty when not installed)."""
    try:
        root = resources.files("names")
        given = frozenset().union(
            *(_first_column(root.joinpath(f).read_text()) for f in _GIVEN_FILES)
        )
        surnames = _first_column(root.joinpath(_SURNAME_FILE).read_text())
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return NameLists(frozenset(), frozenset())
    return NameLists(given=given, surnames=surnames)


def _first_column(text: str) -> frozenset[str]:
    return frozenset(line.split(maxsplit=1)[0] for line in text.splitlines() if line.strip())
