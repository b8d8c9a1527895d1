"""Header de-identification throughput: phigate against its peers and the pydicom floor.

Every tool de-identifies a fresh copy of the same mixed corpus (pydicom's test files,
pydicom-data and deid-data, replicated), with one worker and with all workers. The floor is
pydicom reading and saving each file unchanged. Peers run in-process per file in a pool of
spawned workers (read, anonymize with their default profile, save), timed once the workers are
up; phigate runs as a user runs it, `phigate deidentify IN OUT --profile basic --workers N
--json`, start-up included, and also in-process through its pipeline when that is importable.

Run from the repository root:  python -m benchmarks.header_throughput [--copies N] [--json F]
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import io
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from importlib import metadata, util
from pathlib import Path
from typing import Any, NamedTuple

import pydicom
from pydicom.dataset import Dataset

FLOOR = "floor"
PHIGATE = "phigate"
PHIGATE_API = "phigate (in-process)"
PEERS = ("dicognito", "deid", "dicom-anonymizer")
PEER_MODULES = {"dicognito": "dicognito", "deid": "deid", "dicom-anonymizer": "dicomanonymizer"}
MB = 1_000_000
TARGET_FILES = 2000
TARGET_BYTES = 150 * MB
CORPUS_FORMAT = 2  # bump when the way the corpus is written changes
CHUNK = 8  # files per pool task: small enough to balance big files, big enough to hide IPC
READY_TIMEOUT = 120.0
BUSY_WARNING = 0.10
RSS_WORKER = "ru_maxrss of each pool worker (getrusage RUSAGE_SELF), max over workers"
RSS_TREE = "ru_maxrss from wait4 on the phigate process: max over it and its reaped children"
RSS_API = "ru_maxrss of the calling process and of its reaped children (getrusage)"

Anonymize = Callable[[Dataset], Dataset]


# ----------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Corpus:
    """The replicated input set: relative paths under ``root`` and their total size."""

    root: Path
    rel: tuple[str, ...]
    nbytes: int
    base_files: int
    copies: int
    skipped: int

    def first_copy(self) -> tuple[str, ...]:
        return tuple(r for r in self.rel if r.startswith("c00/"))


def _package_dir(name: str) -> Path | None:
    spec = util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def candidate_files() -> list[Path]:
    """Every file shipped as test data, once per distinct content, in path order."""
    import pydicom.data

    found = [Path(p) for p in pydicom.data.get_testdata_files()]
    for package in ("data_store", "deid_data"):  # pydicom-data, deid-data
        root = _package_dir(package)
        if root is not None:
            found += (root / "data").rglob("*")
    unique: dict[str, Path] = {}
    for path in sorted({p.resolve() for p in found if p.is_file()}):
        unique.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    return list(unique.values())


def round_trips(path: Path) -> bool:
    """True if pydicom reads the file (with its file meta) and writes it back."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            if "TransferSyntaxUID" not in ds.file_meta:
                return False
            buffer = io.BytesIO()
            ds.save_as(buffer)
            buffer.seek(0)
            pydicom.dcmread(buffer)
    except Exception:
        return False
    return True


def default_copies(count: int, nbytes: int) -> int:
    """Fewest copies giving TARGET_BYTES or TARGET_FILES, whichever comes first."""
    return max(1, min(math.ceil(TARGET_FILES / count), math.ceil(TARGET_BYTES / nbytes)))


def build_corpus(work: Path, copies: int | None) -> Corpus:
    """Write the corpus under ``work/corpus`` (reused when its manifest still matches)."""
    candidates = candidate_files()
    base = [p for p in candidates if round_trips(p)]
    if not base:
        raise SystemExit("no readable DICOM test files: install pydicom-data and deid-data")
    sizes = [p.stat().st_size for p in base]
    n = copies or default_copies(len(base), sum(sizes))
    names = [f"{i:04d}_{p.name}" for i, p in enumerate(base)]
    rel = tuple(f"c{c:02d}/{name}" for c in range(n) for name in names)
    root = work / "corpus"
    manifest = {"format": CORPUS_FORMAT, "rel": rel, "sizes": sizes}
    if _read_json(root / "manifest.json") != json.loads(json.dumps(manifest)):
        _write_corpus(root, base, names, n, manifest)
    return Corpus(root, rel, _size(root, rel), len(base), n, len(candidates) - len(base))


def _write_corpus(
    root: Path, base: list[Path], names: list[str], copies: int, manifest: dict[str, Any]
) -> None:
    shutil.rmtree(root, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in range(copies):
            (root / f"c{c:02d}").mkdir(parents=True)
            for i, (src, name) in enumerate(zip(base, names, strict=True)):
                ds = pydicom.dcmread(src)
                make_distinct(ds, c, i)
                ds.save_as(root / f"c{c:02d}" / name)
    (root / "manifest.json").write_text(json.dumps(manifest))


def _derived_uid(*parts: object) -> str:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def make_distinct(ds: Dataset, copy: int, index: int) -> None:
    """Give each copy its own study/series UIDs and each file its own SOP Instance UID.

    The test sets reuse UIDs (one image in several transfer syntaxes) and copies would repeat
    them all; a tool that quarantines duplicate instances would then skip real work.
    """
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        if keyword in ds:
            setattr(ds, keyword, _derived_uid(copy, ds[keyword].value))
    if "SOPInstanceUID" in ds:
        ds.SOPInstanceUID = _derived_uid(copy, index, ds.SOPInstanceUID)
        if "MediaStorageSOPInstanceUID" in ds.file_meta:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _size(root: Path, rel: Sequence[str]) -> int:
    return sum((root / r).stat().st_size for r in rel)


@contextmanager
def scratch(work: Path, prefix: str) -> Iterator[Path]:
    """A temporary directory under ``work``, removed afterwards (outside any timing)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fresh_input(corpus: Corpus, dest: Path) -> Path:
    """A private copy of the corpus for one tool."""
    shutil.copytree(corpus.root, dest, ignore=shutil.ignore_patterns("manifest.json"))
    return dest


# ----------------------------------------------------------------------------- measuring


@dataclass
class Run:
    """One timed pass of one tool over a list of files."""

    tool: str
    workers: int
    files: int
    nbytes: int
    seconds: float
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    peak_rss_kib: int | None = None
    rss_source: str = ""
    others: float | None = None  # share of all CPUs used by other processes meanwhile
    cpu_seconds: float | None = None  # CPU time of the tool's own processes
    all_seconds: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / MB / self.seconds


@dataclass
class Timing:
    seconds: float = 0.0
    busy: float | None = None  # CPU seconds used machine-wide during the window
    own_cpu: float = 0.0  # CPU seconds of the measured tool's processes, where known


def cpu_busy_seconds() -> float | None:
    """CPU seconds used so far by everything on the machine (Linux /proc/stat), or None."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


@contextmanager
def window() -> Iterator[Timing]:
    """Wall time and machine-wide CPU time of the enclosed block."""
    timing = Timing()
    busy, start = cpu_busy_seconds(), time.perf_counter()
    yield timing
    timing.seconds = time.perf_counter() - start
    end = cpu_busy_seconds()
    timing.busy = None if busy is None or end is None else end - busy


def others_share(timing: Timing, own_cpu: float) -> float | None:
    """The share of all CPUs that other processes used during a timed window."""
    if timing.busy is None or timing.seconds <= 0:
        return None
    return max(0.0, timing.busy - own_cpu) / ((os.cpu_count() or 1) * timing.seconds)


# ----------------------------------------------------------------------------- in-process tools

_ANONYMIZE: Anonymize | None = None
_CPU_AT_START = 0.0


class Done(NamedTuple):
    """What a worker reports for one file."""

    error: str | None
    rss_kib: int
    pid: int
    cpu: float  # this worker's CPU seconds since the timed window opened


def make_anonymizer(tool: str) -> Anonymize:
    """The tool's default de-identification of one dataset, built once per worker."""
    if tool == FLOOR:
        return lambda ds: ds
    if tool == "dicognito":
        from dicognito.anonymizer import Anonymizer

        return _in_place(Anonymizer().anonymize)
    if tool == "deid":
        from deid.config import DeidRecipe
        from deid.dicom import replace_identifiers

        recipe = DeidRecipe()  # the default recipe, parsed once rather than per file
        return lambda ds: replace_identifiers(ds, deid=recipe)[0]
    if tool == "dicom-anonymizer":
        from dicomanonymizer import anonymize_dataset

        return _in_place(anonymize_dataset)
    raise ValueError(f"unknown tool {tool!r}")


def _in_place(anonymize: Callable[[Dataset], None]) -> Anonymize:
    def run(ds: Dataset) -> Dataset:
        anonymize(ds)
        return ds

    return run


def _quiet() -> None:
    """Silence prints, logs and warnings the same way for every tool."""
    os.environ["MESSAGELEVEL"] = "QUIET"  # deid's logger, read at import
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _init_worker(tool: str, ready: Any) -> None:
    global _ANONYMIZE, _CPU_AT_START
    _quiet()
    _ANONYMIZE = make_anonymizer(tool)
    ready.wait(READY_TIMEOUT)
    _CPU_AT_START = time.process_time()


def _process_one(job: tuple[str, str]) -> Done:
    """Read, de-identify, save one file."""
    assert _ANONYMIZE is not None
    error = None
    try:
        _ANONYMIZE(pydicom.dcmread(job[0])).save_as(job[1])
    except (Exception, SystemExit) as exc:  # deid calls sys.exit on some errors
        error = type(exc).__name__
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Done(error, rss, os.getpid(), time.process_time() - _CPU_AT_START)


def _timed_pool(tool: str, jobs: list[tuple[str, str]], workers: int) -> tuple[Timing, list[Done]]:
    """Run the jobs in a pool of spawned workers, timed from the moment all are ready.

    ``Timing.own_cpu`` covers this process and the workers while the clock runs.
    """
    ctx = mp.get_context("spawn")
    ready = ctx.Barrier(workers + 1)
    with ctx.Pool(workers, _init_worker, (tool, ready)) as pool:
        try:
            ready.wait(READY_TIMEOUT)
        except threading.BrokenBarrierError:
            raise RuntimeError(f"{tool}: the workers did not start") from None
        cpu = time.process_time()
        with window() as timing:
            done = list(pool.imap_unordered(_process_one, jobs, chunksize=CHUNK))
        timing.own_cpu = time.process_time() - cpu + _workers_cpu(done)
    return timing, done


def _workers_cpu(done: list[Done]) -> float:
    latest: dict[int, float] = {}
    for d in done:
        latest[d.pid] = max(latest.get(d.pid, 0.0), d.cpu)
    return sum(latest.values())


def run_pool(tool: str, src: Path, rel: Sequence[str], workers: int, dst: Path) -> Run:
    """Time ``tool`` over the files ``rel`` under ``src``, writing under ``dst``."""
    for folder in {Path(r).parent for r in rel}:
        (dst / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(str(src / r), str(dst / r)) for r in rel]
    os.sync()  # flush earlier copies and outputs so their writeback stays out of the timing
    timing, done = _timed_pool(tool, jobs, workers)
    errors = Counter(d.error for d in done if d.error)
    return Run(
        tool=tool,
        workers=workers,
        files=len(rel),
        nbytes=_size(src, rel),
        seconds=timing.seconds,
        failures=errors.total(),
        errors=dict(errors),
        peak_rss_kib=max(d.rss_kib for d in done),
        rss_source=RSS_WORKER,
        others=others_share(timing, timing.own_cpu),
        cpu_seconds=timing.own_cpu,
    )


# ----------------------------------------------------------------------------- phigate


@dataclass
class Command:
    """A finished subprocess: wall time, exit code, output, peak RSS, others' CPU share."""

    seconds: float
    code: int
    stdout: str
    stderr: str
    peak_rss_kib: int
    others: float | None
    cpu_seconds: float


def timed_command(cmd: Sequence[str], env: dict[str, str]) -> Command:
    """Run ``cmd``: wall time from spawn to exit, RSS and CPU time from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with window() as timing:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text_out, text_err = (
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )
    cpu = usage.ru_utime + usage.ru_stime
    others = others_share(timing, cpu)
    return Command(
        timing.seconds, proc.returncode, text_out, text_err, usage.ru_maxrss, others, cpu
    )


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def parse_summary(stdout: str) -> dict[str, Any]:
    """The JSON summary phigate prints: the whole output, or else its last JSON line."""
    for text in (stdout, *reversed(stdout.splitlines())):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return {}


def _count(summary: dict[str, Any], key: str) -> int:
    """A count from the summary, at the top level or one level down (0 if absent)."""
    for scope in (summary, *(v for v in summary.values() if isinstance(v, dict))):
        if isinstance(scope.get(key), int):
            return int(scope[key])
    return 0


@dataclass
class Phigate:
    """How to call the phigate CLI with a key of its own."""

    exe: str
    home: Path
    profile: str

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PHIGATE_HOME": str(self.home)}

    def deidentify(self, src: Path, dst: Path, workers: int) -> Command:
        dst.mkdir(parents=True, exist_ok=True)
        os.sync()  # as in run_pool
        cmd = [self.exe, "deidentify", str(src), str(dst), "--profile", self.profile]
        return timed_command([*cmd, "--workers", str(workers), "--json"], self.env)


def setup_phigate(home: Path, profile: str) -> tuple[Phigate | None, str]:
    """A phigate with a fresh PHIGATE_HOME and key (``phigate init``), or why not."""
    beside_python = Path(sys.executable).with_name("phigate")  # an unactivated venv
    exe = shutil.which("phigate") or shutil.which(beside_python)
    if exe is None:
        return None, "no `phigate` command on PATH (pip install -e .)"
    compile_phigate()
    phigate = Phigate(exe, home, profile)
    init = timed_command([exe, "init"], phigate.env)
    if init.code != 0:
        return None, f"`phigate init` exited {init.code}: {last_line(init.stderr)}"
    return phigate, ""


def compile_phigate() -> None:
    """Byte-compile phigate's modules, as installing its wheel does and as a first call does
    where Python may write bytecode. Under PYTHONDONTWRITEBYTECODE (set on some build
    machines) an editable install would compile them afresh on every call: about 0.2 s
    that no installed copy pays."""
    import phigate

    compileall.compile_dir(Path(phigate.__file__).parent, quiet=1)


def run_phigate(phigate: Phigate, src: Path, rel: Sequence[str], workers: int, dst: Path) -> Run:
    """Time the CLI over ``src`` (which holds exactly ``rel``); raise if it fails."""
    done = phigate.deidentify(src, dst, workers)
    if done.code != 0:
        raise RuntimeError(f"`phigate deidentify` exited {done.code}: {last_line(done.stderr)}")
    summary = parse_summary(done.stdout)
    return Run(
        tool=PHIGATE,
        workers=workers,
        files=len(rel),
        nbytes=_size(src, rel),
        seconds=done.seconds,
        failures=_count(summary, "quarantined"),
        peak_rss_kib=done.peak_rss_kib,
        rss_source=RSS_TREE,
        others=done.others,
        cpu_seconds=done.cpu_seconds,
        extra={"summary": summary},
    )


def phigate_startup(phigate: Phigate, work: Path) -> dict[str, Any]:
    """Fixed cost of one CLI call: `deidentify` of an empty folder, else `--help`."""
    with scratch(work, "empty-") as empty:
        (empty / "in").mkdir()
        done = phigate.deidentify(empty / "in", empty / "out", 1)
        if done.code == 0:
            return {"seconds": done.seconds, "how": "deidentify of an empty folder"}
    done = timed_command([phigate.exe, "--help"], phigate.env)
    return {"seconds": done.seconds, "how": "phigate --help"}


def _phigate_pipeline(src: Path, dst: Path, profile: str, workers: int) -> Callable[[], Any]:
    """phigate's in-process entry point, set up (profile compiled, key loaded), not yet run."""
    from phigate.governance.home import load_keyring, resolve_home
    from phigate.pipeline.instance import Worker
    from phigate.pipeline.runner import RunRequest, run
    from phigate.policy.plan import compile_profile
    from phigate.policy.profile import load_profile

    home = resolve_home(None)
    plan, keys = compile_profile(load_profile(profile)), load_keyring(home, None)
    Worker(plan, keys).warm_up()  # the NER model, cached per process: the run's workers share it
    request = RunRequest(src, dst, home.quarantine, plan, keys, workers=workers)
    return partial(run, request)


def _tree_usage() -> list[resource.struct_rusage]:
    """Resource use of this process and of its reaped children."""
    return [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]


def _tree_cpu() -> float:
    return sum(u.ru_utime + u.ru_stime for u in _tree_usage())


def _call_pipeline(args: tuple[str, str, str, int], home: str, out: Any) -> None:
    """In a fresh process: set phigate's pipeline up, then time one run of it."""
    os.environ["PHIGATE_HOME"] = home
    _quiet()
    try:
        call = _phigate_pipeline(Path(args[0]), Path(args[1]), args[2], args[3])
        cpu = _tree_cpu()
        with window() as timing:
            summary = call()
        cpu = _tree_cpu() - cpu
    except Exception as exc:
        out.put({"error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        return
    out.put(
        {
            "seconds": timing.seconds,
            "others": others_share(timing, cpu),
            "cpu": cpu,
            "rss": max(u.ru_maxrss for u in _tree_usage()),
            "quarantined": getattr(summary, "quarantined", 0),
        }
    )


def _result_of(proc: Any, out: Any) -> dict[str, Any]:
    """What ``proc`` put on ``out``, or an error if it died without a word."""
    while True:
        try:
            result: dict[str, Any] = out.get(timeout=1.0)
        except queue.Empty:
            if not proc.is_alive():
                return {"error": f"the process exited with code {proc.exitcode}"}
            continue
        proc.join()
        return result


def run_phigate_api(
    phigate: Phigate, src: Path, rel: Sequence[str], workers: int, dst: Path
) -> Run:
    """Time phigate's pipeline in-process (after import and set-up); raise if unavailable."""
    os.sync()  # as in run_pool
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    args = (str(src), str(dst), phigate.profile, workers)
    proc = ctx.Process(target=_call_pipeline, args=(args, str(phigate.home), out))
    proc.start()
    result = _result_of(proc, out)
    if "error" in result:
        raise RuntimeError(f"phigate.pipeline.runner.run: {result['error']} (CLI is the contract)")
    return Run(
        tool=PHIGATE_API,
        workers=workers,
        files=len(rel),
        nbytes=_size(src, rel),
        seconds=result["seconds"],
        failures=result["quarantined"],
        peak_rss_kib=result["rss"],
        rss_source=RSS_API,
        others=result["others"],
        cpu_seconds=result["cpu"],
    )


# ----------------------------------------------------------------------------- the benchmark

Runner = Callable[[Path, Sequence[str], int, Path], Run]  # (src, rel, workers, dst) -> Run


@dataclass
class Contender:
    """A tool, how to time it, and its private copy of the corpus."""

    name: str
    run: Runner
    src: Path


@dataclass
class Bench:
    """Everything measured in one invocation."""

    corpus: Corpus
    workers: int
    repeat: int
    work: Path
    runs: list[Run] = field(default_factory=list)
    small: dict[str, Run] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    startup: dict[str, Any] = field(default_factory=dict)
    spent: list[Path] = field(default_factory=list)  # timed runs' outputs, not yet deleted

    def retire(self, output: Path) -> None:
        """Keep a timed run's output until the end, unless the disk runs short.

        Deleting thousands of files just before a timed run makes that run's every file
        and folder creation dearer on some file systems (ext4 without a journal skips
        inodes freed in the last 30 s, one by one: here 0.14 ms of CPU for a folder and a
        file in it, against 0.04 ms), which would charge each run for the one before it.
        """
        self.spent.append(output)
        if shutil.disk_usage(self.work).free < 3 * self.corpus.nbytes:
            log("short of disk: deleting outputs between runs, which slows the next run")
            self.remove_spent()

    def remove_spent(self) -> None:
        for path in self.spent:
            shutil.rmtree(path, ignore_errors=True)
        self.spent.clear()

    def get(self, tool: str, workers: int) -> Run | None:
        return next((r for r in self.runs if r.tool == tool and r.workers == workers), None)

    def fastest_peer(self, workers: int) -> Run | None:
        runs = [r for p in PEERS if (r := self.get(p, workers))]
        return max(runs, key=lambda r: r.files_per_s, default=None)

    def worker_counts(self) -> list[int]:
        return sorted({1, self.workers})

    def keep_best(self, run: Run) -> None:
        """Record a run; per tool and worker count the fastest stands, all times are kept."""
        log(f"{run.tool}, {run.workers} worker(s): {run.seconds:.2f} s")
        best = self.get(run.tool, run.workers)
        run.all_seconds = [*(best.all_seconds if best else []), run.seconds]
        if best is None:
            self.runs.append(run)
        elif run.seconds < best.seconds:
            self.runs[self.runs.index(best)] = run
        else:
            best.all_seconds = run.all_seconds


def time_once(bench: Bench, contender: Contender, rel: Sequence[str], workers: int) -> Run:
    """One timed run into a fresh output folder, removed after all runs (Bench.retire)."""
    dst = Path(tempfile.mkdtemp(prefix="out-", dir=bench.work))
    try:
        return contender.run(contender.src, rel, workers, dst)
    finally:
        bench.retire(dst)


def measure(bench: Bench, contenders: list[Contender]) -> None:
    """Rounds of every tool in turn, so load from elsewhere falls on all of them alike."""
    for round_ in range(bench.repeat):
        log(f"round {round_ + 1} of {bench.repeat}")
        for contender in list(contenders):
            try:
                for n in bench.worker_counts():
                    bench.keep_best(time_once(bench, contender, bench.corpus.rel, n))
            except RuntimeError as exc:
                bench.skipped[contender.name] = str(exc)
                contenders.remove(contender)


def measure_small(bench: Bench, contenders: list[Contender]) -> None:
    """One copy of the base set, one worker: the small input of the RSS comparison."""
    small = [r.removeprefix("c00/") for r in bench.corpus.first_copy()]
    for c in contenders:
        bench.small[c.name] = time_once(bench, Contender(c.name, c.run, c.src / "c00"), small, 1)


def in_process_contenders(bench: Bench, tools: Sequence[str], stack: ExitStack) -> list[Contender]:
    """The floor and the installed peers, each with its own copy of the corpus."""
    found = []
    for tool in (t for t in (FLOOR, *PEERS) if t in tools):
        if tool != FLOOR and util.find_spec(PEER_MODULES[tool]) is None:
            bench.skipped[tool] = "not installed (pip install -e '.[bench]')"
            continue
        found.append(Contender(tool, partial(run_pool, tool), private_copy(bench, stack)))
    return found


def phigate_contenders(bench: Bench, profile: str, stack: ExitStack) -> list[Contender]:
    """phigate's CLI and its in-process pipeline, sharing a fresh PHIGATE_HOME and key."""
    phigate, why = setup_phigate(stack.enter_context(scratch(bench.work, "home-")), profile)
    if phigate is None:
        bench.skipped[PHIGATE] = why
        return []
    bench.startup = phigate_startup(phigate, bench.work)
    return [
        Contender(PHIGATE, partial(run_phigate, phigate), private_copy(bench, stack)),
        Contender(PHIGATE_API, partial(run_phigate_api, phigate), private_copy(bench, stack)),
    ]


def private_copy(bench: Bench, stack: ExitStack) -> Path:
    return fresh_input(bench.corpus, stack.enter_context(scratch(bench.work, "in-")) / "in")


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- report


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def row_figures(bench: Bench, run: Run) -> dict[str, float | None]:
    """Time ratios to the floor and to the fastest peer, and the parallel speed-up."""
    floor = bench.get(FLOOR, run.workers)
    peer = bench.fastest_peer(run.workers)
    one = bench.get(run.tool, 1)
    return {
        "x_floor": _ratio(run.seconds, floor.seconds if floor else None),
        "x_fastest_peer": _ratio(run.seconds, peer.seconds if peer else None),
        "speedup": _ratio(one.seconds, run.seconds) if one and run.workers > 1 else None,
    }


TABLE = "{:<20} {:>2} {:>5} {:>6} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>8} {:>6} {:>7} {:>7}"
HEADER = ("tool", "w", "files", "MB", "s", "CPU s", "files/s", "MB/s", "×floor", "×peer")


def _cells(bench: Bench, run: Run) -> list[object]:
    fig = row_figures(bench, run)
    rates = [f"{run.seconds:.2f}", _fmt(run.cpu_seconds), f"{run.files_per_s:.1f}"]
    rates.append(f"{run.mb_per_s:.1f}")
    ratios = [_fmt(fig[key]) for key in ("x_floor", "x_fastest_peer", "speedup")]
    others = _fmt(None if run.others is None else 100 * run.others, ".0f")
    size = f"{run.nbytes / MB:.1f}"
    return [
        run.tool,
        run.workers,
        run.files,
        size,
        *rates,
        *ratios,
        run.failures,
        _mib(run.peak_rss_kib),
        others,
    ]


def table_lines(bench: Bench) -> list[str]:
    lines = [TABLE.format(*HEADER, "speed-up", "failed", "RSS MiB", "others%")]
    return lines + [TABLE.format(*_cells(bench, run)) for run in bench.runs]


def rss_lines(bench: Bench) -> list[str]:
    """Peak RSS per worker: one copy of the base set against the whole corpus, 1 worker."""
    small_n, large_n = len(bench.corpus.first_copy()), len(bench.corpus.rel)
    lines = [f"{'tool':<20} {f'{small_n} files':>11} {f'{large_n} files':>11}  ratio"]
    for tool, small in bench.small.items():
        large = bench.get(tool, 1)
        kib = large.peak_rss_kib if large else None
        ratio = _fmt(_ratio(kib, small.peak_rss_kib))
        lines.append(f"{tool:<20} {_mib(small.peak_rss_kib):>11} {_mib(kib):>11}  {ratio}")
    return lines


def _run_ratio(a: Run | None, b: Run | None, attr: str) -> float | None:
    return _ratio(getattr(a, attr), getattr(b, attr)) if a and b else None


def targets(bench: Bench, tool: str = PHIGATE) -> list[dict[str, Any]]:
    """The issue's targets for one way of running phigate (its CLI, start-up included, or
    its pipeline in-process, timed after set-up as the peers are timed once their workers
    are up); ``passed`` is None when not measured.

    The time ratios are also given by CPU time, which load from other processes moves less.
    """
    one, many = bench.get(tool, 1), bench.get(tool, bench.workers)
    floor, peer = bench.get(FLOOR, 1), bench.fastest_peer(1)
    small = bench.small.get(tool)
    speedup = _run_ratio(one, many, "seconds") if bench.workers > 1 else None
    return [
        _check(
            "1 worker: files/s over the fastest peer's",
            _run_ratio(peer, one, "seconds"),
            ">=",
            1.0,
            _run_ratio(peer, one, "cpu_seconds"),
        ),
        _check(
            "1 worker: time over the floor's",
            _run_ratio(one, floor, "seconds"),
            "<=",
            1.5,
            _run_ratio(one, floor, "cpu_seconds"),
        ),
        _check(f"{bench.workers} workers: speed-up over 1 worker", speedup, ">=", 1.8),
        _check(
            "peak RSS, whole corpus over one copy (flat)",
            _run_ratio(one, small, "peak_rss_kib"),
            "<=",
            1.2,
        ),
    ]


def _check(
    name: str, value: float | None, op: str, limit: float, by_cpu: float | None = None
) -> dict[str, Any]:
    passed = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {
        "target": name,
        "value": value,
        "op": op,
        "limit": limit,
        "passed": passed,
        "by_cpu_time": by_cpu,
    }


def target_lines(bench: Bench, tool: str = PHIGATE) -> list[str]:
    words = {True: "PASS", False: "FAIL", None: "n/a "}
    lines = []
    for t in targets(bench, tool):
        cpu = "" if t["by_cpu_time"] is None else f" (by CPU time: {_fmt(t['by_cpu_time'])})"
        line = f"{t['target']}: {_fmt(t['value'])} {t['op']} {t['limit']}{cpu}"
        lines.append(f"[{words[t['passed']]}] {line}")
    return lines


def versions() -> dict[str, str]:
    found = {}
    for dist in ("phigate", "pydicom", "dicognito", "deid", "dicom-anonymizer"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def header_lines(bench: Bench) -> list[str]:
    c, peer = bench.corpus, bench.fastest_peer(1)
    return [
        f"corpus: {len(c.rel)} files, {c.nbytes / MB:.1f} MB = {c.copies} copies of "
        f"{c.base_files} files ({c.skipped} candidates skipped: pydicom cannot round-trip them)",
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"best of {bench.repeat} runs; ×floor, ×peer: time over the floor's / the fastest "
        f"peer's with the same workers (fastest peer, 1 worker: {peer.tool if peer else '-'}); "
        "CPU s: CPU time of the tool's own processes; others%: CPU used by other processes",
    ]


def footer_lines(bench: Bench) -> list[str]:
    lines = [f"skipped {tool}: {why}" for tool, why in bench.skipped.items()]
    for run in bench.runs:
        if run.errors:
            lines.append(f"{run.tool} ({run.workers} w) failures: {run.errors}")
        summary = run.extra.get("summary", {})
        if own := summary.get("timings", {}).get("elapsed_seconds"):
            lines.append(f"{run.tool} ({run.workers} w) by its own report: {own} s of the run")
        if reasons := summary.get("quarantine_reasons"):
            lines.append(
                f"{run.tool} ({run.workers} w) quarantined (the 'failed' column): {reasons}"
            )
    if any((r.others or 0) > BUSY_WARNING for r in bench.runs):
        lines.append(
            f"warning: other processes used over {BUSY_WARNING:.0%} of the CPUs during some runs; "
            "those figures are pessimistic (re-run on a quiet machine or raise --repeat)"
        )
    return lines


def report(bench: Bench, elapsed: float) -> str:
    startup = bench.startup if bench.get(PHIGATE, 1) else {}
    lines = [
        *header_lines(bench),
        "",
        *table_lines(bench),
        "",
        "peak RSS per worker, MiB, 1 worker (pools: ru_maxrss per worker; CLI: wait4 tree)",
        *rss_lines(bench),
        "",
        f"targets for the phigate CLI, timed as a subprocess with its start-up "
        f"({_fmt(startup.get('seconds'))} s, measured by {startup.get('how', '-')})",
        *target_lines(bench),
        "targets for phigate in-process, timed after set-up (profile compiled, NER model "
        "loaded), as the peers are timed once their workers are up",
        *target_lines(bench, PHIGATE_API),
        *footer_lines(bench),
        f"total benchmark time: {elapsed:.0f} s",
    ]
    return "\n".join(lines)


def to_json(bench: Bench, elapsed: float) -> dict[str, Any]:
    runs = [
        {**asdict(r), **row_figures(bench, r), "files_per_s": r.files_per_s, "mb_per_s": r.mb_per_s}
        for r in bench.runs
    ]
    corpus = {k: v for k, v in asdict(bench.corpus).items() if k != "rel"}
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": versions(),
        "corpus": {**corpus, "root": str(bench.corpus.root), "files": len(bench.corpus.rel)},
        "workers": bench.workers,
        "repeat": bench.repeat,
        "runs": runs,
        "small_input_runs": {tool: asdict(run) for tool, run in bench.small.items()},
        "phigate_startup": bench.startup,
        "targets": targets(bench),
        "targets_in_process": targets(bench, PHIGATE_API),
        "skipped": bench.skipped,
        "elapsed_s": elapsed,
    }


# ----------------------------------------------------------------------------- entry point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    tools = [FLOOR, *PEERS, PHIGATE]
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--work", type=Path, default=here / ".work", help="work directory")
    parser.add_argument("--copies", type=int, help="copies of the base set (default: auto)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="all workers")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs each; the best counts")
    parser.add_argument("--tools", nargs="+", default=tools, choices=tools, help="what to run")
    parser.add_argument("--profile", default="basic", help="phigate profile")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log("building the corpus")
    bench = Bench(build_corpus(work, args.copies), max(1, args.workers), max(1, args.repeat), work)
    with ExitStack() as stack:
        stack.callback(bench.remove_spent)
        log("copying the corpus for each tool")
        contenders = in_process_contenders(bench, args.tools, stack)
        if PHIGATE in args.tools:
            contenders += phigate_contenders(bench, args.profile, stack)
        measure(bench, contenders)
        measure_small(bench, contenders)
    elapsed = time.perf_counter() - started
    print(report(bench, elapsed))
    if args.json:
        args.json.write_text(json.dumps(to_json(bench, elapsed), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
