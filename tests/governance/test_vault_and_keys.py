"""Keys and the vault: keyed derivations, the installation secret, the encrypted reverse map."""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

import pytest
from pydicom.uid import UID
from typer.testing import CliRunner

from phigate.cli import app
from phigate.deid.keys import Keyring, parse_secret
from phigate.errors import KeyFileError, VaultError
from phigate.governance.home import KEY_ENV, Home, init_home, load_keyring
from phigate.governance.vault import Vault

SECRET = b"k" * 32
KEYS = Keyring(SECRET)
PAIRS = {("PatientID", "PGABC123"): "MRN-778899", ("PatientName", "ANON^XYZ"): "DOE^JOHN"}


@pytest.fixture(autouse=True)
def _no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keyed derivations --------------------------------------------------------------------


def test_derivations_are_deterministic_across_keyring_instances() -> None:
    again = Keyring(bytes(SECRET))
    assert KEYS.uid("1.2.3") == again.uid("1.2.3")
    assert KEYS.pseudonym("PatientID", "X", 12) == again.pseudonym("PatientID", "X", 12)
    assert KEYS.day_offset("p", -100, -1) == again.day_offset("p", -100, -1)
    assert KEYS.instance_ref("a/b.dcm") == again.instance_ref("a/b.dcm")


def test_purposes_are_separated() -> None:
    assert KEYS.digest("uid", "1.2.3") != KEYS.digest("pseudonym/uid", "1.2.3")
    assert KEYS.pseudonym("PatientID", "X", 12) != KEYS.pseudonym("AccessionNumber", "X", 12)
    assert KEYS.hexdigest("a", "v") != KEYS.hexdigest("b", "v")


def test_different_secrets_and_namespaces_give_different_values() -> None:
    other, recipient = Keyring(b"o" * 32), KEYS.for_namespace("partner-a")
    assert len({KEYS.uid("1.2.3"), other.uid("1.2.3"), recipient.uid("1.2.3")}) == 3
    assert recipient.uid("1.2.3") == KEYS.for_namespace("partner-a").uid("1.2.3")
    assert KEYS.for_namespace("partner-b").uid("1.2.3") != recipient.uid("1.2.3")


@pytest.mark.parametrize("original", ["1.2.3", "1.2.840.113619.2.55.3.604688119", "9" * 64])
def test_replacement_uid_is_a_valid_2_25_uid(original: str) -> None:
    new = KEYS.uid(original)
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", new)
    assert int(new[5:]) < 2**128
    assert len(new) <= 64 and UID(new).is_valid


def test_uid_padding_does_not_change_the_replacement() -> None:
    assert KEYS.uid("1.2.3\0") == KEYS.uid(" 1.2.3 ") == KEYS.uid("1.2.3")


def test_day_offsets_stay_in_the_window_and_spread() -> None:
    offsets = {KEYS.day_offset(f"patient-{n}", -3650, -365) for n in range(200)}
    assert min(offsets) >= -3650 and max(offsets) <= -365
    assert len(offsets) > 150


def test_pseudonym_has_the_length_and_alphabet_asked_for() -> None:
    value = KEYS.pseudonym("PatientID", "MRN-1", 20)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{20}", value)


def test_short_secret_is_refused() -> None:
    with pytest.raises(KeyFileError, match="too short"):
        Keyring(b"k" * 31)


def test_keyring_repr_hides_the_secret() -> None:
    assert "kkkk" not in repr(KEYS)


@pytest.mark.parametrize(
    ("text", "words"),
    [("zz" * 32, "not hexadecimal"), ("ab" * 16, "too short"), ("", "too short")],
)
def test_malformed_secret_text_is_a_key_file_error(text: str, words: str) -> None:
    with pytest.raises(KeyFileError, match=words) as caught:
        parse_secret(text)
    assert not text or text[:8] not in str(caught.value)


def test_secret_text_is_parsed_with_surrounding_whitespace() -> None:
    assert parse_secret(" " + "6b" * 32 + "\n") == SECRET


# --- PHIGATE_HOME and the key file --------------------------------------------------------


def test_init_creates_a_private_key_and_folders(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    assert init_home(home) is True
    assert mode(home.key_file) == 0o600
    assert mode(home.key_file.parent) == 0o700 and mode(home.quarantine) == 0o700
    assert len(parse_secret(home.key_file.read_text())) == 32


def test_init_never_overwrites_a_key(tmp_path: Path) -> None:
    home = Home(tmp_path)
    init_home(home)
    before = home.key_file.read_bytes()
    assert init_home(home) is False
    assert home.key_file.read_bytes() == before


def test_two_installations_get_different_secrets(tmp_path: Path) -> None:
    first, second = Home(tmp_path / "a"), Home(tmp_path / "b")
    init_home(first)
    init_home(second)
    assert first.key_file.read_text() != second.key_file.read_text()


def test_keyring_comes_from_the_home_key_file(tmp_path: Path) -> None:
    home = Home(tmp_path)
    init_home(home)
    assert load_keyring(home).secret == parse_secret(home.key_file.read_text())


def test_key_file_option_overrides_the_home_key(tmp_path: Path) -> None:
    home = Home(tmp_path)
    init_home(home)
    other = tmp_path / "other.key"
    other.write_text("6b" * 32)
    assert load_keyring(home, other).secret == SECRET


def test_environment_key_overrides_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path)
    init_home(home)
    other = tmp_path / "other.key"
    other.write_text("00" * 32)
    monkeypatch.setenv(KEY_ENV, "6b" * 32)
    assert load_keyring(home).secret == SECRET
    assert load_keyring(home, other).secret == SECRET


@pytest.mark.parametrize("content", ["not a key", "ab" * 16, "", "\xff\xfe"])
def test_malformed_key_file_is_a_key_file_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content, encoding="latin-1")
    with pytest.raises(KeyFileError):
        load_keyring(Home(tmp_path), path)


def test_malformed_environment_key_is_a_key_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "secret-password")
    with pytest.raises(KeyFileError, match="not hexadecimal") as caught:
        load_keyring(Home(tmp_path))
    assert "secret-password" not in str(caught.value)


def test_missing_key_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="phigate init"):
        load_keyring(Home(tmp_path))


# --- the vault ----------------------------------------------------------------------------


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault" / "pseudonyms.jsonl"


def test_vault_round_trip(vault_path: Path) -> None:
    assert Vault(vault_path, KEYS).add(PAIRS) == 2
    [entry] = Vault(vault_path, KEYS).lookup("PGABC123")
    assert (entry.kind, entry.pseudonym, entry.original) == ("PatientID", "PGABC123", "MRN-778899")
    assert Vault(vault_path, KEYS).lookup(" ANON^XYZ ")[0].original == "DOE^JOHN"


def test_vault_lookup_of_an_unknown_value_is_empty(vault_path: Path) -> None:
    Vault(vault_path, KEYS).add(PAIRS)
    assert Vault(vault_path, KEYS).lookup("PGNOTHING") == []
    assert Vault(vault_path, KEYS).lookup("MRN-778899") == []  # originals are not keys


def test_vault_deduplicates_within_and_across_instances(vault_path: Path) -> None:
    vault = Vault(vault_path, KEYS)
    vault.add(PAIRS)
    assert vault.add(PAIRS) == 0
    assert Vault(vault_path, KEYS).add(PAIRS) == 0
    assert len(vault_path.read_text().splitlines()) == 2
    assert len(Vault(vault_path, KEYS).lookup("PGABC123")) == 1


def test_same_pseudonym_of_another_kind_is_a_new_entry(vault_path: Path) -> None:
    Vault(vault_path, KEYS).add(PAIRS)
    assert Vault(vault_path, KEYS).add({("AccessionNumber", "PGABC123"): "ACC-1"}) == 1
    kinds = {e.kind for e in Vault(vault_path, KEYS).lookup("PGABC123")}
    assert kinds == {"PatientID", "AccessionNumber"}


def test_vault_file_is_private_and_holds_no_plain_values(vault_path: Path) -> None:
    Vault(vault_path, KEYS).add(PAIRS)
    assert mode(vault_path) == 0o600
    assert mode(vault_path.parent) == 0o700
    content = vault_path.read_bytes()
    for (kind, pseudonym), original in PAIRS.items():
        for value in (original, pseudonym, kind, "778899", "DOE"):
            assert value.encode() not in content


def test_vault_with_the_wrong_key_cannot_be_read(vault_path: Path) -> None:
    Vault(vault_path, KEYS).add(PAIRS)
    with pytest.raises(VaultError):
        Vault(vault_path, Keyring(b"w" * 32)).lookup("PGABC123")


def test_vault_refuses_entries_under_another_key(vault_path: Path) -> None:
    Vault(vault_path, KEYS).add(PAIRS)
    with pytest.raises(VaultError):
        Vault(vault_path, Keyring(b"w" * 32)).add({("PatientID", "PGOTHER"): "MRN-1"})


def test_altered_vault_entry_is_detected(vault_path: Path) -> None:
    Vault(vault_path, KEYS).add(PAIRS)
    rows = [json.loads(line) for line in vault_path.read_text().splitlines()]
    sealed = bytearray(base64.b64decode(rows[0]["c"]))
    sealed[0] ^= 1
    rows[0]["c"] = base64.b64encode(bytes(sealed)).decode()
    vault_path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(VaultError, match="wrong key or altered"):
        Vault(vault_path, KEYS).lookup("PGABC123")


def test_unreadable_vault_is_a_vault_error(vault_path: Path) -> None:
    vault_path.parent.mkdir()
    vault_path.write_text("this is not json\n")
    with pytest.raises(VaultError, match="cannot be read"):
        Vault(vault_path, KEYS).lookup("PGABC123")


def test_vault_entries_use_fresh_nonces(vault_path: Path) -> None:
    Vault(vault_path, KEYS).add(PAIRS)
    nonces = re.findall(r'"n": "([^"]+)"', vault_path.read_text())
    assert len(nonces) == len(set(nonces)) == 2


# --- the commands -------------------------------------------------------------------------


BROKER_PASSWORD = "a broker's long password"


def _as_honest_broker(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """An initialised home with an honest broker, whom the CLI then runs as."""
    monkeypatch.setenv("PHIGATE_HOME", str(home.root))
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--home", str(home.root)]).exit_code == 0
    added = runner.invoke(
        app, ["user", "add", "broker", "--role", "honest_broker", "--password", BROKER_PASSWORD]
    )
    assert added.exit_code == 0, added.output
    monkeypatch.setenv("PHIGATE_USER", "broker")
    monkeypatch.setenv("PHIGATE_PASSWORD", BROKER_PASSWORD)


def test_reidentify_reads_the_vault_with_the_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "site.key"
    key.write_text("6b" * 32)
    home = Home(tmp_path / "home")
    _as_honest_broker(home, monkeypatch)
    Vault(home.vault_file, KEYS).add(PAIRS)
    runner = CliRunner()
    found = runner.invoke(
        app,
        [
            "reidentify",
            "PGABC123",
            "--reason",
            "IRB-1",
            "--home",
            str(home.root),
            "--key-file",
            str(key),
        ],
    )
    assert (found.exit_code, found.stdout.split()) == (0, ["PatientID", "MRN-778899"])
    # The home's own key is another secret: the vault says so instead of reading.
    missing = runner.invoke(
        app, ["reidentify", "PGABC123", "--reason", "IRB-1", "--home", str(home.root)]
    )
    assert missing.exit_code != 0


def test_reidentify_reads_the_vault_with_the_environment_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path)
    _as_honest_broker(home, monkeypatch)
    monkeypatch.setenv(KEY_ENV, "6b" * 32)
    Vault(home.vault_file, KEYS).add(PAIRS)
    result = CliRunner().invoke(
        app, ["reidentify", "ANON^XYZ", "--reason", "IRB-1", "--home", str(home.root)]
    )
    assert (result.exit_code, result.stdout.split()) == (0, ["PatientName", "DOE^JOHN"])


def test_reidentify_is_refused_without_the_honest_broker_role(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path)
    _as_honest_broker(home, monkeypatch)
    monkeypatch.delenv("PHIGATE_USER")  # back to the local admin, who may not re-identify
    monkeypatch.setenv(KEY_ENV, "6b" * 32)
    Vault(home.vault_file, KEYS).add(PAIRS)
    result = CliRunner().invoke(
        app, ["reidentify", "ANON^XYZ", "--reason", "IRB-1", "--home", str(home.root)]
    )
    assert result.exit_code != 0
    assert "DOE" not in result.output


def test_init_command_makes_a_0600_key_once(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "h"
    first = runner.invoke(app, ["init", "--home", str(home)])
    key = (home / "keys" / "secret.key").read_text()
    second = runner.invoke(app, ["init", "--home", str(home)])
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert "created a new secret" in " ".join(first.stdout.split())
    assert "kept the existing secret" in " ".join(second.stdout.split())
    assert (home / "keys" / "secret.key").read_text() == key
    assert mode(home / "keys" / "secret.key") == 0o600
    assert key.strip() not in first.stdout


def test_malformed_key_file_stops_the_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not-a-key")
    result = CliRunner().invoke(
        app, ["reidentify", "X", "--home", str(tmp_path), "--key-file", str(bad)]
    )
    assert isinstance(result.exception, KeyFileError)
    assert "not-a-key" not in str(result.exception)
