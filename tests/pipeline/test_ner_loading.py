"""Where the NER model is loaded in a run: once in the parent when several workers will
share it, and otherwise only in a worker that meets text needing it.

Each case runs in a fresh interpreter, since the model is cached per process and other
tests in this one may have loaded it already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from phigate.samples import make_sample_set

_RUN = """
import json, sys
from pathlib import Path
from phigate.deid import ner
from phigate.deid.keys import Keyring
from phigate.pipeline.runner import RunRequest, run
from phigate.policy.plan import compile_profile
from phigate.policy.profile import load_profile

root, workers = Path(sys.argv[1]), int(sys.argv[2])
request = RunRequest(
    input_dir=root / "in",
    output_dir=root / f"out-{workers}",
    quarantine_dir=root / f"quarantine-{workers}",
    plan=compile_profile(load_profile("basic")),
    keys=Keyring(b"n" * 32),
    workers=workers,
)
summary = run(request)
print(json.dumps({"parent_loaded": ner._load.cache_info().currsize, "written": summary.written}))
"""


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ner-loading")
    make_sample_set(root / "in", patients=2)
    return root


@pytest.mark.parametrize(("workers", "parent_loads"), [(1, False), (2, True)])
def test_the_parent_loads_the_model_only_for_workers_to_share(
    sample_root: Path, workers: int, parent_loads: bool
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(sample_root), str(workers)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["written"] > 0
    assert bool(result["parent_loaded"]) is parent_loads
