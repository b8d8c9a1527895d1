"""Finding the input files of a run, and the keyed names they go by."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from phigate.deid.keys import Keyring
from phigate.pipeline.runner import (
    STAGING_DIR,
    RunRequest,
    _make_folders,
    _source_ref,
    discover,
)
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile


def _tree(root: Path) -> None:
    for rel in ["b/2.dcm", "b/10.dcm", "a/z/x", "a.dcm", "a b/c", "A/upper", "b/sub/deep/f"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


def test_finds_every_file_in_the_order_of_its_relative_path(tmp_path: Path) -> None:
    _tree(tmp_path)
    found = [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path)]
    expected = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert found == sorted(expected)
    assert found[:3] == ["A/upper", "a b/c", "a.dcm"]  # code point order, as before


def test_links_to_files_count_linked_folders_and_other_entries_do_not(tmp_path: Path) -> None:
    inputs, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    _tree(inputs)
    _tree(elsewhere)
    (inputs / "link-to-file").symlink_to(elsewhere / "a.dcm")
    (inputs / "link-to-folder").symlink_to(elsewhere / "b", target_is_directory=True)
    (inputs / "broken-link").symlink_to(tmp_path / "missing")
    (inputs / "loop").symlink_to(inputs / "loop")
    (inputs / "through-a-file").symlink_to(inputs / "a.dcm" / "sub")
    os.mkfifo(inputs / "fifo")
    found = {p.relative_to(inputs).as_posix() for p in discover(inputs)}
    assert "link-to-file" in found
    others = ("link-to-folder", "broken", "loop", "through", "fifo")
    assert not {f for f in found if f.startswith(others)}
    assert len(found) == 8


def test_a_file_named_like_the_staging_folder_is_an_input(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / STAGING_DIR).write_bytes(b"x")
    assert [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path)] == [f"b/{STAGING_DIR}"]


def test_a_staging_folder_left_in_the_input_is_not_read(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "b" / STAGING_DIR).mkdir()
    (tmp_path / "b" / STAGING_DIR / "half-written.dcm").write_bytes(b"x")
    assert not [p for p in discover(tmp_path) if STAGING_DIR in p.parts]
    assert len(discover(tmp_path)) == 7


@pytest.mark.parametrize("spelling", ["in", ".", "absolute", "linked"])
def test_an_input_is_named_by_its_path_relative_to_the_input_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """The name is the keyed hash of the path relative to the folder as given, however it
    was spelt, whether the file came from :func:`discover` or from a caller."""
    _tree(tmp_path / "in")
    (tmp_path / "linked").symlink_to(tmp_path / "in", target_is_directory=True)
    monkeypatch.chdir(tmp_path / "in" if spelling == "." else tmp_path)
    folder = {"absolute": tmp_path / "in"}.get(spelling, Path(spelling))
    keys = Keyring(b"k" * 32)
    request = RunRequest(
        folder, tmp_path / "out", tmp_path / "q", compile_profile(load_profile("basic")), keys
    )
    paths = [*discover(folder), folder / "b/sub/deep/f"]
    assert len(paths) == 8
    for path in paths:
        assert _source_ref(request, path) == keys.instance_ref(path.relative_to(folder).as_posix())


def test_output_folders_are_made_once_and_a_file_in_their_way_is_an_error(
    tmp_path: Path,
) -> None:
    made: set[str] = set()
    series = os.path.join(tmp_path, "study", "series")
    _make_folders(series, made)
    assert os.path.isdir(series) and made == {series, os.path.dirname(series)}
    os.rmdir(series)
    _make_folders(series, made)  # known: no system call
    assert not os.path.exists(series)
    deeper = os.path.join(tmp_path, "a", "b", "c")
    _make_folders(deeper, made)
    assert os.path.isdir(deeper)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "series").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        _make_folders(os.path.join(tmp_path, "taken", "series"), set())


_OVERRIDES = "-dac_override,-dac_read_search"


def _without_root_override(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as root without the capabilities that let root read any folder."""
    return subprocess.run(
        ["setpriv", f"--bounding-set={_OVERRIDES}", f"--inh-caps={_OVERRIDES}",
         sys.executable, "-c", code, *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_a_folder_that_cannot_be_listed_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    """Its files cannot be counted, so no run may report success without them; the
    message names no folder, since a folder's name may hold PHI."""
    inputs = tmp_path / "in"
    _tree(inputs)
    secret = inputs / "DOE^JOHN 1970"
    secret.mkdir()
    (secret / "f.dcm").write_bytes(b"x")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from phigate.errors import UsageError\n"
        "from phigate.pipeline.runner import discover\n"
        "try:\n"
        "    print(len(discover(Path(sys.argv[1]))))\n"
        "except UsageError as exc:\n"
        "    print('error:', exc)\n"
    )
    assert _without_root_override(code, str(inputs)).stdout.strip() == "8"  # control
    secret.chmod(0o000)
    try:
        shown = _without_root_override(code, str(inputs)).stdout
    finally:
        secret.chmod(0o755)
    assert shown.startswith("error: a folder in the input cannot be listed")
    assert "DOE" not in shown and "JOHN" not in shown
