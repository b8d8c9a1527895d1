"""How the runner groups files into worker round trips (``runner._chunks``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from phigate.pipeline.runner import _chunks


@given(count=st.integers(0, 3000), workers=st.integers(1, 16), most=st.integers(1, 16))
def test_groups_hold_every_file_once_in_input_order(count: int, workers: int, most: int) -> None:
    tasks = list(range(count))
    chunks = list(_chunks(tasks, workers, most))
    assert [t for chunk in chunks for t in chunk] == tasks
    assert all(1 <= len(chunk) <= most for chunk in chunks)


@given(count=st.integers(1, 3000), workers=st.integers(1, 16), most=st.integers(1, 16))
def test_groups_shrink_to_single_files_as_the_work_runs_out(
    count: int, workers: int, most: int
) -> None:
    """No group is more than a quarter of each worker's share of the files left when it is
    made, so the last groups are single files and no worker idles long at the end."""
    left = count
    sizes = []
    for chunk in _chunks(list(range(count)), workers, most):
        assert len(chunk) <= max(1, left // (workers * 4))
        sizes.append(len(chunk))
        left -= len(chunk)
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1


def test_a_large_batch_goes_in_full_groups_until_its_end() -> None:
    sizes = [len(c) for c in _chunks(list(range(478)), 2, 8)]
    assert sizes[:52] == [8] * 52  # one round trip per 8 files while there is plenty left
    assert sizes[-8:] == [1] * 8
    assert len(sizes) < 478 // 4
