"""Apply a compiled plan to one dataset: actions, keyed pseudonyms, dates, text cleaning."""
