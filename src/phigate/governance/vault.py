"""The vault: the reverse map pseudonym -> original, encrypted at rest (AES-256-GCM).

Each entry is one JSON line: a keyed lookup hash of the pseudonym (so a lookup decrypts only
matching entries), a keyed de-duplication hash, a random nonce and the ciphertext of
``{"kind", "pseudonym", "original"}`` authenticated with the lookup hash. The AES key is
derived from the installation secret, so losing the secret makes the vault unreadable: that
is the point, and the README says how to keep the secret safe.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from phigate.deid.keys import Keyring
from phigate.errors import VaultError

_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class VaultEntry:
    kind: str
    pseudonym: str
    original: str


class Vault:
    """Append-only encrypted store of pseudonyms made by this installation."""

    def __init__(self, path: Path, keys: Keyring) -> None:
        self.path = path
        self._keys = keys
        self._aead = AESGCM(keys.digest("vault/aes-gcm", b"v1"))
        self._known: set[str] | None = None

    def add(self, pseudonyms: Mapping[tuple[str, str], str]) -> int:
        """Store new (kind, pseudonym) -> original pairs; return how many were new."""
        known = self._known_hashes()
        lines = []
        for (kind, pseudonym), original in pseudonyms.items():
            dedupe = self._keys.hexdigest("vault/dedupe", f"{kind}\0{pseudonym}", 32)
            if dedupe in known:
                continue
            known.add(dedupe)
            lines.append(json.dumps(self._seal(kind, pseudonym, original, dedupe)))
        if lines:
            self._append(lines)
        return len(lines)

    def lookup(self, pseudonym: str) -> list[VaultEntry]:
        """Every original recorded for ``pseudonym`` (usually one)."""
        wanted = self._lookup_hash(pseudonym)
        return [self._open(row) for row in self._rows() if row["k"] == wanted]

    def _seal(self, kind: str, pseudonym: str, original: str, dedupe: str) -> dict[str, str]:
        lookup = self._lookup_hash(pseudonym)
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps({"kind": kind, "pseudonym": pseudonym, "original": original}).encode()
        sealed = self._aead.encrypt(nonce, plain, lookup.encode())
        return {"v": "1", "k": lookup, "d": dedupe, "n": _b64(nonce), "c": _b64(sealed)}

    def _open(self, row: dict[str, str]) -> VaultEntry:
        try:
            plain = self._aead.decrypt(_unb64(row["n"]), _unb64(row["c"]), row["k"].encode())
        except (InvalidTag, KeyError, ValueError):
            raise VaultError(
                "a vault entry cannot be decrypted: wrong key or altered vault"
            ) from None
        data = json.loads(plain)
        return VaultEntry(data["kind"], data["pseudonym"], data["original"])

    def _lookup_hash(self, pseudonym: str) -> str:
        return self._keys.hexdigest("vault/lookup", pseudonym.strip(), 32)

    def _known_hashes(self) -> set[str]:
        if self._known is None:
            self._known = {row["d"] for row in self._rows()}
        return self._known

    def _rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        try:
            with self.path.open("r", encoding="ascii") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except (OSError, ValueError) as exc:
            raise VaultError(f"the vault cannot be read ({type(exc).__name__})") from None

    def _append(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="ascii") as handle:
            handle.write("\n".join(lines) + "\n")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))
