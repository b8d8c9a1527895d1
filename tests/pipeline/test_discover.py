"""Finding the input files of a run, and the keyed names they go by."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phigate.deid.keys import Keyring
from phigate.pipeline.runner import STAGING_DIR, RunRequest, _source_ref, discover
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
    os.mkfifo(inputs / "fifo")
    found = {p.relative_to(inputs).as_posix() for p in discover(inputs)}
    assert "link-to-file" in found
    assert not {f for f in found if f.startswith(("link-to-folder", "broken", "fifo"))}
    assert len(found) == 8


def test_a_staging_folder_left_in_the_input_is_not_read(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "b" / STAGING_DIR).mkdir()
    (tmp_path / "b" / STAGING_DIR / "half-written.dcm").write_bytes(b"x")
    assert not [p for p in discover(tmp_path) if STAGING_DIR in p.parts]
    assert len(discover(tmp_path)) == 7


@pytest.mark.parametrize("spelling", ["in", "./in", "in/"])
def test_an_input_is_named_by_its_path_relative_to_the_input_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spelling: str
) -> None:
    """The name is the keyed hash of the relative path, however the folder was spelt and
    whether the file came from :func:`discover` or from a caller."""
    _tree(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    keys = Keyring(b"k" * 32)
    request = RunRequest(
        Path(spelling), tmp_path / "out", tmp_path / "q", compile_profile(load_profile("basic")),
        keys,
    )  # fmt: skip
    for path in [*discover(Path(spelling)), Path(spelling) / "b/sub/deep/f"]:
        relative = path.resolve().relative_to(tmp_path / "in").as_posix()
        assert _source_ref(request, path) == keys.instance_ref(relative)
