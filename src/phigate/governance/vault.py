"""The vault: the reverse map pseudonym -> original, encrypted at rest (AES-256-GCM).

Each entry is one JSON line: a keyed lookup hash of the pseudonym (so a lookup decrypts only
matching entries), a keyed de-duplication hash, the key generation, a random nonce and the
ciphertext of ``{"kind", "pseudonym", "original"}`` authenticated with the lookup hash.

The AES key of a generation is derived from the installation secret and a random salt kept
in a small key file next to the vault, with a check value that tells a wrong secret from an
altered vault. :meth:`Vault.rotate` re-encrypts every entry under a new salt without
changing any pseudonym (pseudonyms derive from the secret, not from the vault key). Losing
the secret makes the vault unreadable: that is the point, and the README says how to keep
the secret safe.
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
        self.key_path = path.with_suffix(".keys.json")
        self._keys = keys
        self._known: set[str] | None = None
        self._generations: dict[str, AESGCM] | None = None

    def rotate(self) -> int:
        """Re-encrypt every entry under a new generation key; return how many entries."""
        entries = [self._open(row) for row in self._rows()]
        old = self._key_file()
        generation = str(max((int(g) for g in old), default=0) + 1)
        salt = os.urandom(16)
        self._write_key_file({**old, generation: self._key_record(salt)})
        self._generations = None
        sealed = [
            json.dumps(self._seal(e.kind, e.pseudonym, e.original, self._dedupe(e), generation))
            for e in entries
        ]
        staging = self.path.with_suffix(".rotating")
        _write_private(staging, "".join(line + "\n" for line in sealed), append=False)
        os.replace(staging, self.path)
        self._write_key_file({generation: self._key_record(salt)})
        self._generations = None
        return len(entries)

    def add(self, pseudonyms: Mapping[tuple[str, str], str]) -> int:
        """Store new (kind, pseudonym) -> original pairs; return how many were new."""
        known = self._known_hashes()
        generation = self._current_generation()
        lines = []
        for (kind, pseudonym), original in pseudonyms.items():
            dedupe = self._dedupe(VaultEntry(kind, pseudonym, original))
            if dedupe in known:
                continue
            known.add(dedupe)
            lines.append(json.dumps(self._seal(kind, pseudonym, original, dedupe, generation)))
        if lines:
            _write_private(self.path, "\n".join(lines) + "\n", append=True)
        return len(lines)

    def lookup(self, pseudonym: str) -> list[VaultEntry]:
        """Every original recorded for ``pseudonym`` (usually one)."""
        self._checked_key_file()  # a wrong secret must say so, not find nothing
        wanted = self._lookup_hash(pseudonym)
        return [self._open(row) for row in self._rows() if row["k"] == wanted]

    def _dedupe(self, entry: VaultEntry) -> str:
        return self._keys.hexdigest("vault/dedupe", f"{entry.kind}\0{entry.pseudonym}", 32)

    def _seal(
        self, kind: str, pseudonym: str, original: str, dedupe: str, generation: str
    ) -> dict[str, str]:
        lookup = self._lookup_hash(pseudonym)
        nonce = os.urandom(_NONCE_BYTES)
        plain = json.dumps({"kind": kind, "pseudonym": pseudonym, "original": original}).encode()
        sealed = self._cipher(generation).encrypt(nonce, plain, lookup.encode())
        row = {"v": "1", "g": generation, "k": lookup, "d": dedupe}
        return row | {"n": _b64(nonce), "c": _b64(sealed)}

    def _open(self, row: dict[str, str]) -> VaultEntry:
        try:
            cipher = self._cipher(row.get("g", "1"))
            plain = cipher.decrypt(_unb64(row["n"]), _unb64(row["c"]), row["k"].encode())
        except (InvalidTag, KeyError, ValueError):
            raise VaultError(
                "a vault entry cannot be decrypted: wrong key or altered vault"
            ) from None
        data = json.loads(plain)
        return VaultEntry(data["kind"], data["pseudonym"], data["original"])

    # Generations: one salt per key generation, checked against the secret before use.

    def _cipher(self, generation: str) -> AESGCM:
        if self._generations is None:
            self._generations = {
                number: AESGCM(self._aes_key(_unb64(record["salt"])))
                for number, record in self._checked_key_file().items()
            }
        try:
            return self._generations[generation]
        except KeyError:
            raise VaultError("a vault entry names an unknown key generation") from None

    def _current_generation(self) -> str:
        generations = self._checked_key_file()
        if not generations:
            self._write_key_file({"1": self._key_record(os.urandom(16))})
            self._generations = None
            return "1"
        return max(generations, key=int)

    def _checked_key_file(self) -> dict[str, dict[str, str]]:
        generations = self._key_file()
        if not generations and self.path.exists() and self.path.stat().st_size:
            raise VaultError("the vault's key file is missing; the vault cannot be read")
        for record in generations.values():
            if record.get("check") != self._check_value(_unb64(record["salt"])):
                raise VaultError(
                    "the vault was written under another secret; use that key "
                    "(--key-file or PHIGATE_KEY)"
                )
        return generations

    def _key_record(self, salt: bytes) -> dict[str, str]:
        return {"salt": _b64(salt), "check": self._check_value(salt)}

    def _aes_key(self, salt: bytes) -> bytes:
        return self._keys.digest("vault/aes-gcm", salt)

    def _check_value(self, salt: bytes) -> str:
        return self._keys.hexdigest("vault/check", salt, 32)

    def _key_file(self) -> dict[str, dict[str, str]]:
        if not self.key_path.exists():
            return {}
        try:
            data: dict[str, dict[str, str]] = json.loads(self.key_path.read_text("ascii"))
        except (OSError, ValueError) as exc:
            raise VaultError(
                f"the vault's key file cannot be read ({type(exc).__name__})"
            ) from None
        return data

    def _write_key_file(self, generations: dict[str, dict[str, str]]) -> None:
        staging = self.key_path.with_suffix(".tmp")
        _write_private(staging, json.dumps(generations, indent=2) + "\n", append=False)
        os.replace(staging, self.key_path)

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


def _write_private(path: Path, text: str, *, append: bool) -> None:
    """Write a file only its owner can read, in a folder only its owner can enter."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "a" if append else "w", encoding="ascii") as handle:
        handle.write(text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))
