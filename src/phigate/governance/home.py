"""PHIGATE_HOME: where one installation keeps its secret, quarantine, reports and vault.

Layout (DESIGN.md, "Storage")::

    PHIGATE_HOME/            default ./phigate-data
      keys/secret.key        the installation secret, 64 hex digits, mode 0600
      quarantine/<run>/      raw copies of inputs that could not be processed, with reasons
      reports/<run>/         run reports (no PHI)
      vault/pseudonyms.jsonl the encrypted reverse map of pseudonyms
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from phigate.deid.keys import SECRET_BYTES, Keyring, parse_secret
from phigate.errors import KeyFileError

HOME_ENV = "PHIGATE_HOME"
KEY_ENV = "PHIGATE_KEY"
DEFAULT_HOME = Path("phigate-data")


@dataclass(frozen=True)
class Home:
    """The folders and files of one installation."""

    root: Path

    @property
    def key_file(self) -> Path:
        return self.root / "keys" / "secret.key"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def vault_file(self) -> Path:
        return self.root / "vault" / "pseudonyms.jsonl"


def resolve_home(explicit: Path | None = None) -> Home:
    """``explicit``, else ``$PHIGATE_HOME``, else ``./phigate-data``."""
    root = explicit or Path(os.environ.get(HOME_ENV) or DEFAULT_HOME)
    return Home(root)


def init_home(home: Home) -> bool:
    """Create the folders and a new secret; never overwrite one. True if a key was made."""
    for folder in (home.root, home.key_file.parent, home.quarantine, home.reports):
        folder.mkdir(parents=True, exist_ok=True)
    home.key_file.parent.chmod(0o700)
    home.quarantine.chmod(0o700)
    if home.key_file.exists():
        return False
    descriptor = os.open(home.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(SECRET_BYTES) + "\n")
    return True


def load_keyring(home: Home, key_file: Path | None = None) -> Keyring:
    """The secret from ``$PHIGATE_KEY``, else ``key_file``, else the home's key file."""
    from_env = os.environ.get(KEY_ENV)
    if from_env:
        return Keyring(parse_secret(from_env))
    path = key_file or home.key_file
    try:
        text = path.read_text("ascii")
    except FileNotFoundError:
        hint = "" if key_file else "; run 'phigate init' first or set PHIGATE_KEY"
        raise KeyFileError(f"no key file at {path}{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"the key file {path} cannot be read ({type(exc).__name__})") from None
    return Keyring(parse_secret(text))
