"""A worker process that dies (as a native decoder can abort on a corrupt file) costs that
one file, quarantined as ``worker_crashed``, never the batch or its neighbours in a chunk.

The crash is made by replacing ``process_instance`` in the runner with a wrapper that ends
its process on one marked input; forked workers inherit the replacement.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pytest

from phigate.deid.keys import Keyring
from phigate.pipeline import runner
from phigate.pipeline.instance import Outcome, Worker, process_instance
from phigate.pipeline.runner import WORKER_CRASHED, RunRequest, run
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile
from phigate.record import InstanceResult, Status
from phigate.samples import make_sample_set

MARK = b"PHIGATE-TEST-CRASH"


def crashing(data: bytes, source_ref: str, worker: Worker, scan_pixels: bool = True) -> Outcome:
    if MARK in data:
        os._exit(70)  # as abrupt as a decoder's abort: no exception, no clean-up
    return process_instance(data, source_ref, worker, scan_pixels)


def _chunk_holding(count: int, workers: int, index: int) -> list[int]:
    """The input indexes sent to a worker together with input ``index``."""
    indexes = list(range(count))
    return next(c for c in runner._chunks(indexes, workers, runner._CHUNK_FILES) if index in c)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("position", [0.15, 0.35], ids=["early", "middle"])
def test_a_dying_worker_costs_one_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    folder_request: Callable[..., RunRequest],
    workers: int,
    position: float,
) -> None:
    """The victim is the middle file of its chunk, so it has neighbours on both sides;
    early: among the first chunks, middle: a third of the way through."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    made = 0
    for seed in (0, 1):  # two sets: enough files for chunks of three or more in the middle
        made += len(make_sample_set(tmp_path / f"set{seed}", patients=6, seed=seed).instances)
        (tmp_path / f"set{seed}").rename(inputs / f"set{seed}")
    files = runner.discover(inputs)  # in the runner's order, which its chunks follow
    chunk = _chunk_holding(len(files), workers, int(len(files) * position))
    assert len(chunk) >= 3  # so the victim, its middle file, has neighbours on both sides
    victim = files[chunk[len(chunk) // 2]]
    victim.write_bytes(victim.read_bytes() + MARK)
    monkeypatch.setattr(runner, "process_instance", crashing)
    records: list[InstanceResult] = []
    request = folder_request(inputs, "basic", b"c" * 32, workers)
    summary = run(request, on_result=records.append)
    crashed = [r for r in records if r.reason == WORKER_CRASHED]
    assert len(crashed) == 1 and crashed[0].status is Status.QUARANTINED
    assert crashed[0].source_ref == request.keys.instance_ref(victim.relative_to(inputs).as_posix())
    assert summary.balanced
    expected = [request.keys.instance_ref(p.relative_to(inputs).as_posix()) for p in files]
    assert sorted(r.source_ref for r in records) == sorted(expected)  # none lost, none twice
    written = [r for r in records if r.status is Status.WRITTEN]
    assert len(written) == made - 1
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == len(written)


def test_a_pool_that_breaks_while_files_are_being_submitted_loses_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker can die while the parent is still submitting: then ``submit`` itself raises
    BrokenProcessPool. That race is forced here: the first pool's third submit raises."""
    inputs = tmp_path / "in"
    make_sample_set(inputs, patients=2)
    files = sorted(p for p in inputs.rglob("*") if p.is_file())
    made = 0
    real_executor = runner._CrashSafePool._new_executor

    def executor_breaking_once(workers: int) -> ProcessPoolExecutor:
        nonlocal made
        made += 1
        executor = real_executor(workers)
        if made == 1:
            submitted = 0
            real_submit = executor.submit

            def submit(*args: Any, **kwargs: Any) -> Future[Any]:
                nonlocal submitted
                submitted += 1
                if submitted == 3:
                    raise BrokenProcessPool("a worker died")
                return real_submit(*args, **kwargs)

            monkeypatch.setattr(executor, "submit", submit)
        return executor

    monkeypatch.setattr(
        runner._CrashSafePool, "_new_executor", staticmethod(executor_breaking_once)
    )
    records: list[InstanceResult] = []
    request = RunRequest(
        inputs, tmp_path / "out", tmp_path / "q", compile_profile(load_profile("basic")),
        Keyring(b"c" * 32), workers=2,
    )  # fmt: skip
    summary = run(request, on_result=records.append)
    expected = [request.keys.instance_ref(p.relative_to(inputs).as_posix()) for p in files]
    assert [r.source_ref for r in records] == expected  # in input order, none lost
    assert summary.balanced and not [r for r in records if r.reason == WORKER_CRASHED]
    assert made >= 2  # the broken pool was replaced
