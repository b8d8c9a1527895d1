"""A worker process that dies (as a native decoder can abort on a corrupt file) costs that
one file, quarantined as ``worker_crashed``, never the batch or its neighbours in a chunk.

The crash is made by replacing ``process_instance`` in the runner with a wrapper that ends
its process on one marked input; forked workers inherit the replacement.
"""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.mark.parametrize("workers", [1, 2])
def test_a_dying_worker_costs_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    inputs = tmp_path / "in"
    manifest = make_sample_set(inputs, patients=2)
    files = sorted(p for p in inputs.rglob("*") if p.is_file())
    assert len(files) >= 12  # several files per chunk, so the crash has neighbours
    victim = files[len(files) // 2]
    victim.write_bytes(victim.read_bytes() + MARK)
    monkeypatch.setattr(runner, "process_instance", crashing)
    records: list[InstanceResult] = []
    request = RunRequest(
        input_dir=inputs,
        output_dir=tmp_path / "out",
        quarantine_dir=tmp_path / "quarantine",
        plan=compile_profile(load_profile("basic")),
        keys=Keyring(b"c" * 32),
        workers=workers,
    )
    summary = run(request, on_result=records.append)
    crashed = [r for r in records if r.reason == WORKER_CRASHED]
    assert len(crashed) == 1 and crashed[0].status is Status.QUARANTINED
    assert crashed[0].source_ref == request.keys.instance_ref(victim.relative_to(inputs).as_posix())
    assert summary.balanced and len(records) == len(files)
    written = [r for r in records if r.status is Status.WRITTEN]
    assert len(written) == len(manifest.instances) - 1
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == len(written)
