"""Keyed values derived from the one installation secret (DESIGN.md, "Keys and pseudonyms").

Every derived value is HMAC-SHA-256 under a sub-key for one purpose label, so the same input
gives the same output on every run and every machine with no lookup table, and values made
for one purpose (a UID) can never be matched against values made for another (a patient ID).
A share later derives its own namespace with :meth:`Keyring.for_namespace`.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass, field
from functools import lru_cache

from phigate.errors import KeyFileError

SECRET_BYTES = 32
_LABEL_PREFIX = b"phigate/v1/"
# Crockford-style alphabet without I, L, O, U: pseudonyms stay unambiguous when read aloud.
_PSEUDONYM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def parse_secret(text: str) -> bytes:
    """Decode a secret written as hex (``phigate init`` writes 64 hex digits)."""
    cleaned = text.strip()
    try:
        secret = bytes.fromhex(cleaned)
    except ValueError:
        raise KeyFileError("the key is not hexadecimal; expected 64 hex digits") from None
    if len(secret) < SECRET_BYTES:
        raise KeyFileError(f"the key is too short; expected at least {SECRET_BYTES} bytes")
    return secret


@dataclass(frozen=True)
class Keyring:
    """All keyed derivations used by de-identification. Picklable, so workers get a copy."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) < SECRET_BYTES:
            raise KeyFileError(f"the key is too short; expected at least {SECRET_BYTES} bytes")

    def for_namespace(self, namespace: str) -> Keyring:
        """A keyring whose every value differs from this one's (for example per recipient)."""
        return Keyring(self._subkey(f"namespace/{namespace}"))

    def _subkey(self, purpose: str) -> bytes:
        return _derive_subkey(self.secret, purpose)

    def digest(self, purpose: str, value: str | bytes) -> bytes:
        """The raw 32-byte keyed hash of ``value`` for ``purpose``."""
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        return hmac.digest(self._subkey(purpose), data, "sha256")

    def hexdigest(self, purpose: str, value: str | bytes, length: int = 64) -> str:
        """A keyed hash as lower-case hex, cut to ``length`` characters."""
        return self.digest(purpose, value).hex()[:length]

    def uid(self, original: str) -> str:
        """A replacement UID ``2.25.<decimal of 128 bits>`` (PS3.5 B.2), at most 44 characters."""
        return _uid(self, original.strip("\0 "))

    def pseudonym(self, purpose: str, original: str, length: int) -> str:
        """An upper-case alphanumeric pseudonym of ``length`` characters (at most 51)."""
        raw = self.digest(f"pseudonym/{purpose}", original.strip())
        number = int.from_bytes(raw, "big")
        chars = []
        for _ in range(length):
            number, index = divmod(number, len(_PSEUDONYM_ALPHABET))
            chars.append(_PSEUDONYM_ALPHABET[index])
        return "".join(chars)

    def day_offset(self, patient_key: str, earliest: int, latest: int) -> int:
        """A per-patient whole-day offset in ``[earliest, latest]``: intervals survive."""
        span = latest - earliest + 1
        number = int.from_bytes(self.digest("date-offset", patient_key)[:8], "big")
        return earliest + number % span

    def instance_ref(self, source: str) -> str:
        """The keyed hash that names an input in logs, records and quarantine files."""
        return base64.b32encode(self.digest("instance", source)[:10]).decode().lower()


# Per-process caches: sub-keys are a few per purpose label, and the study, series and frame
# of reference UIDs repeat in every instance of a series.
@lru_cache(maxsize=256)
def _derive_subkey(secret: bytes, purpose: str) -> bytes:
    return hmac.digest(secret, _LABEL_PREFIX + purpose.encode(), "sha256")


@lru_cache(maxsize=65536)
def _uid(keys: Keyring, original: str) -> str:
    return f"2.25.{int.from_bytes(keys.digest('uid', original)[:16], 'big')}"
