"""Typed exceptions. Every message is safe to show: it never carries an element value,
OCR text or a source file name, only tag keywords, codes and keyed hashes."""

from __future__ import annotations


class PhigateError(Exception):
    """Base of every error phigate raises on purpose; its message is one actionable line."""


class ProfileError(PhigateError):
    """A profile cannot be found, parsed or validated."""


class KeyFileError(PhigateError):
    """The installation secret is missing, unreadable or malformed."""


class VaultError(PhigateError):
    """The pseudonym vault cannot be read or written."""


class UsageError(PhigateError):
    """The command was called in a way that cannot work (for example OUT inside IN)."""


class InstanceRejected(PhigateError):
    """One input instance cannot be de-identified; the batch goes on.

    ``code`` is a stable machine-readable reason (``truncated``, ``deflate_bomb``...) and the
    message explains it without quoting anything from the file.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InstanceFiltered(InstanceRejected):
    """An input that policy leaves out on purpose (not DICOM, a DICOMDIR, a profile filter).

    It is counted as *filtered*, not quarantined: nothing is wrong with it.
    """
