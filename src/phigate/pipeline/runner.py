"""De-identify every file under a folder with a pool of worker processes.

Workers read their input and write their output themselves (to a staging name inside OUT),
so only records cross process boundaries. The parent takes results in input order, which
makes duplicate handling deterministic: the first file with a given SOP Instance UID is
written, later ones are quarantined. Output paths come from replacement UIDs only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import multiprocessing
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from phigate.deid.header import TrialSubject
from phigate.deid.keys import Keyring
from phigate.dicom.io import DEFAULT_MAX_INFLATED_BYTES
from phigate.errors import UsageError
from phigate.pipeline.instance import Outcome, Worker, process_instance
from phigate.pipeline.report import RunSummary
from phigate.pipeline.sampling import SamplingPlan, plan_sampling
from phigate.pixels.rules import PixelRules, ScanStrategy
from phigate.pixels.settings import pixel_rules
from phigate.policy.plan import ActionPlan
from phigate.record import InstanceResult, Status

T = TypeVar("T")
STAGING_DIR = ".phigate-staging"
DUPLICATE = "duplicate_sop_instance_uid"
UNREADABLE = "unreadable_file"
# Tasks submitted ahead per worker. Results are taken in input order, so a slow file at the
# head holds up the taking; a deep queue keeps the other workers busy meanwhile (a file with
# burned-in text costs seconds, a sampled-out slice milliseconds). Tasks are only paths.
_IN_FLIGHT_PER_WORKER = 32
# Files per worker round trip (fewer when the batch is small).
_CHUNK_FILES = 8
WORKER_CRASHED = "worker_crashed"
# glibc malloc (mallopt(3)): blocks up to the largest mmap threshold it allows come from the
# heap, and freed heap memory up to the trim threshold is kept for the next file.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES = 32 << 20
_TRIM_THRESHOLD_BYTES = 128 << 20


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs; ``subjects`` is PHI and stays in memory."""

    input_dir: Path
    output_dir: Path
    quarantine_dir: Path
    plan: ActionPlan
    keys: Keyring
    workers: int = 1
    subjects: Mapping[str, TrialSubject] | None = None
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES


@dataclass(frozen=True)
class _Task:
    path: str
    source_ref: str
    scan_pixels: bool = True


@dataclass
class _Done:
    record: InstanceResult
    pseudonyms: dict[tuple[str, str], str]
    staged: str | None


ResultCallback = Callable[[InstanceResult], None]
PseudonymSink = Callable[[dict[tuple[str, str], str]], None]


def check_folders(input_dir: Path, output_dir: Path) -> None:
    """Refuse folder layouts that would read our own output or overwrite our input."""
    if not input_dir.is_dir():
        raise UsageError("the input folder does not exist or is not a folder")
    source, target = input_dir.resolve(), output_dir.resolve()
    if target == source or target.is_relative_to(source):
        raise UsageError("the output folder must not be inside the input folder")
    if source.is_relative_to(target):
        raise UsageError("the input folder must not be inside the output folder")


def discover(input_dir: Path) -> list[Path]:
    """Every regular file under ``input_dir``, in the order of their relative paths.

    Links to files count; linked folders are not followed. One directory listing per
    folder and no ``stat`` per regular file, which a folder of 100k slices notices. A folder
    that cannot be listed is an error: its files would be lost without a count.
    """
    found: list[tuple[str, str]] = []  # (relative path, path)
    _scan(os.fspath(input_dir), "", found)
    found.sort()
    return [Path(path) for _, path in found]


def _scan(folder: str, prefix: str, found: list[tuple[str, str]]) -> None:
    try:
        with os.scandir(folder) as listing:
            entries = list(listing)
    except FileNotFoundError:
        return  # removed while the input was being listed: no file of it to lose
    except PermissionError:
        # Its files could be neither read nor counted: stop before any is processed rather
        # than report a run without them. The folder's name may be PHI: not in the message.
        raise UsageError(
            "a folder in the input cannot be listed (permission denied); "
            "give this user read access to every folder under the input and run again"
        ) from None
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if entry.name != STAGING_DIR:
                _scan(entry.path, f"{prefix}{entry.name}/", found)
        elif _is_file(entry):
            found.append((prefix + entry.name, entry.path))


def _is_file(entry: os.DirEntry[str]) -> bool:
    """A regular file, or a link to one; a link in a loop or through a file is neither."""
    try:
        return entry.is_file()
    except OSError:
        return False


def run(
    request: RunRequest,
    on_result: ResultCallback | None = None,
    on_pseudonyms: PseudonymSink | None = None,
    files: list[Path] | None = None,
) -> RunSummary:
    """De-identify every file under the input folder; return the run's summary."""
    check_folders(request.input_dir, request.output_dir)
    files = discover(request.input_dir) if files is None else files
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    summary = RunSummary(run_id, request.plan.profile_name, request.plan.version, request.workers)
    staging = request.output_dir / STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tasks = [_Task(str(p), _source_ref(request, p)) for p in files]
    sampling = _sampling_plan(request, files)
    seen: dict[str, str] = {}
    folders: set[str] = set()
    series_with_text: set[str] = set()

    def settle(batch: list[_Task]) -> None:
        for task, done in zip(batch, _results(request, batch, staging), strict=True):
            _settle(request, task, done, seen, folders, run_id)
            if any(finding.where == "pixel" for finding in done.record.findings):
                series_with_text.add(done.record.series_uid or "")
            summary.add(done.record)
            if on_pseudonyms and done.pseudonyms:
                on_pseudonyms(done.pseudonyms)
            if on_result:
                on_result(done.record)

    settle([tasks[i] for i in sampling.first_pass(len(tasks))])
    settle(
        [
            _second_pass_task(request, tasks[i], sampling.deferred[i], series_with_text)
            for i in sampling.second_pass()
        ]
    )
    summary.elapsed_seconds = time.perf_counter() - started
    shutil.rmtree(staging, ignore_errors=True)
    return summary


def _sampling_plan(request: RunRequest, files: list[Path]) -> SamplingPlan:
    if not request.plan.uses_pixels:
        return SamplingPlan({})
    rules: dict[int, PixelRules] = {}

    def strategy_for(modality: str, sop_class: str) -> ScanStrategy | None:
        plan = request.plan.for_modality(modality or None)
        if not plan.cleans_pixels_for(modality or None):
            return None
        if id(plan) not in rules:
            rules[id(plan)] = pixel_rules(plan.pixel_settings)
        return rules[id(plan)].strategy_for(modality, sop_class)

    return plan_sampling(files, strategy_for)


def _second_pass_task(
    request: RunRequest, task: _Task, original_series: str, series_with_text: set[str]
) -> _Task:
    """A deferred slice is read only if text turned up in its series' samples."""
    new_series = request.keys.uid(original_series)
    return _Task(task.path, task.source_ref, scan_pixels=new_series in series_with_text)


def _source_ref(request: RunRequest, path: Path) -> str:
    """The keyed hash of the path relative to the input folder. Paths from :func:`discover`
    start with the folder's own spelling, so a string slice does (pathlib's way: 10 µs)."""
    text, root = os.fspath(path), os.path.join(os.fspath(request.input_dir), "")
    if text.startswith(root):
        return request.keys.instance_ref(text[len(root) :].replace(os.sep, "/"))
    return request.keys.instance_ref(path.relative_to(request.input_dir).as_posix())


def _results(request: RunRequest, tasks: list[_Task], staging: Path) -> Iterator[_Done]:
    args = (request.plan, request.keys, request.subjects, request.max_inflated_bytes, str(staging))
    if not tasks:
        return
    # Built once in the parent; forked workers inherit it. The NER model (about 1.4 s to
    # load) is loaded here for several workers, who then share it; a single worker loads
    # it on first need, since many batches hold no free text a name could hide in. The OCR
    # engine loads in each worker (its runtime's threads do not survive a fork).
    _reuse_freed_memory()
    _init_worker(*args, preload_ner=request.workers > 1)
    with _CrashSafePool(request.workers, request.plan) as pool:
        yield from pool.run(tasks)


@functools.cache
def _reuse_freed_memory() -> None:
    """Let the C allocator keep the memory of one file's buffers for the next file's.

    By default glibc maps each block above 128 KiB afresh and unmaps it when freed, so every
    file's input, values and output cost page faults on new zeroed pages (a worker's run over
    the header benchmark's corpus: 120k faults by default, 57k so). Workers inherit the
    setting. Elsewhere than glibc: no-op.
    """
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is not None and getattr(libc, "gnu_get_libc_version", None) is not None:
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)


class _CrashSafePool:
    """Worker processes whose death costs one file, not the batch.

    A native decoder can abort its process on a corrupt file (python-gdcm does on some
    broken JPEG 2000 data). Every file therefore runs in a worker, even with one worker.
    When a worker dies, the pool is rebuilt and the file at the head of the queue is run
    alone: if it kills that process too it is quarantined as ``worker_crashed``; the files
    behind it are submitted again. Results come back in input order.
    """

    def __init__(self, workers: int, plan: ActionPlan) -> None:
        self.workers = max(1, workers)
        self.plan = plan
        self.executor = self._new_executor(self.workers)

    def __enter__(self) -> _CrashSafePool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    @staticmethod
    def _new_executor(workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))

    def run(self, tasks: list[_Task]) -> Iterator[_Done]:
        pending: deque[tuple[list[_Task], Future[list[_Done]]]] = deque()
        window = self.workers * _IN_FLIGHT_PER_WORKER
        # A file whose pixels are read costs a second or more: send those one at a time.
        most = 1 if self.plan.uses_pixels else _CHUNK_FILES
        for chunk in _chunks(tasks, self.workers, most):
            pending.append((chunk, self._submit(chunk)))
            if len(pending) >= window:
                yield from self._next(pending)
        while pending:
            yield from self._next(pending)

    def _next(self, pending: deque[tuple[list[_Task], Future[list[_Done]]]]) -> list[_Done]:
        chunk, future = pending.popleft()
        try:
            return future.result()
        except BrokenProcessPool:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._new_executor(self.workers)
            waiting = [queued for queued, _ in pending]
            pending.clear()
            pending.extend((c, self._submit(c)) for c in waiting)
            return [self._alone(task) for task in chunk]

    def _submit(self, chunk: list[_Task]) -> Future[list[_Done]]:
        """Submit a chunk; if the pool broke meanwhile (a worker died while this was being
        submitted), a future that says so, handled in turn by :meth:`_next`."""
        try:
            return self.executor.submit(_run_chunk, chunk)
        except BrokenProcessPool as broken:
            future: Future[list[_Done]] = Future()
            future.set_exception(broken)
            return future

    def _alone(self, task: _Task) -> _Done:
        with self._new_executor(1) as executor:
            try:
                [done] = executor.submit(_run_chunk, [task]).result()
                return done
            except BrokenProcessPool:
                return _crashed(task, self.plan)


def _chunks(tasks: list[T], workers: int, most: int) -> Iterator[list[T]]:
    """Tasks in consecutive groups of at most ``most``: one round trip per group, not per
    file. Groups shrink as the tasks run out (a quarter of each worker's share of what is
    left), down to single files at the end, so that no worker idles while another still
    has a group of big files to finish."""
    start = 0
    while start < len(tasks):
        size = max(1, min(most, (len(tasks) - start) // (workers * 4)))
        yield tasks[start : start + size]
        start += size


def _crashed(task: _Task, plan: ActionPlan) -> _Done:
    record = InstanceResult(task.source_ref, reason=WORKER_CRASHED)
    record.reason_detail = "processing this file ended its worker process (a decoder crash)"
    record.profile_name, record.profile_version = plan.profile_name, plan.version
    return _Done(record, {}, None)


_state: tuple[Worker, str] | None = None


def _init_worker(
    plan: ActionPlan,
    keys: Keyring,
    subjects: Mapping[str, TrialSubject] | None,
    max_inflated_bytes: int,
    staging: str,
    preload_ner: bool = False,
) -> None:
    global _state
    worker = Worker(plan, keys, subjects, max_inflated_bytes)
    if preload_ner:
        worker.warm_up()
    _state = (worker, staging)


def _run_chunk(tasks: list[_Task]) -> list[_Done]:
    return [_run_task(task) for task in tasks]


def _run_task(task: _Task) -> _Done:
    assert _state is not None, "worker not initialised"
    worker, staging = _state
    try:
        data = Path(task.path).read_bytes()
    except OSError as exc:
        record = InstanceResult(task.source_ref, reason=UNREADABLE)
        record.reason_detail = f"the file cannot be read ({type(exc).__name__})"
        record.profile_name, record.profile_version = worker.plan.profile_name, worker.plan.version
        return _Done(record, {}, None)
    outcome = process_instance(data, task.source_ref, worker, task.scan_pixels)
    return _Done(outcome.record, outcome.pseudonyms, _stage(outcome, staging))


def _stage(outcome: Outcome, staging: str) -> str | None:
    if outcome.parts is None:
        return None
    path = os.path.join(staging, outcome.record.source_ref + ".dcm")
    with open(path, "wb") as handle:
        handle.writelines(outcome.parts)
    return path


def _settle(
    request: RunRequest,
    task: _Task,
    done: _Done,
    seen: dict[str, str],
    folders: set[str],
    run_id: str,
) -> None:
    """Move a staged output into place (``folders``: output folders made so far), or send
    the input to quarantine."""
    record = done.record
    if record.status is Status.WRITTEN and record.sop_instance_uid in seen:
        record.status, record.reason = Status.QUARANTINED, DUPLICATE
        record.reason_detail = "another input with the same SOP Instance UID was written first"
        record.output_ref = None
    if record.status is Status.WRITTEN and done.staged and record.output_ref:
        seen[record.sop_instance_uid or ""] = task.source_ref
        target = os.path.join(request.output_dir, record.output_ref)
        _make_folders(os.path.dirname(target), folders)
        os.replace(done.staged, target)
        return
    if done.staged:
        os.remove(done.staged)
    if record.status is Status.QUARANTINED:
        _quarantine(request, task, record, run_id)


def _make_folders(folder: str, made: set[str]) -> None:
    """``os.makedirs`` once per output folder in a run; ``made``: folders known to exist."""
    if folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.update((folder, os.path.dirname(folder)))


def _quarantine(request: RunRequest, task: _Task, record: InstanceResult, run_id: str) -> None:
    """Keep a copy of the raw input with its reason. The quarantine is a raw (PHI) zone."""
    folder = request.quarantine_dir / run_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    copy = folder / f"{task.source_ref}.dcm"
    try:
        shutil.copyfile(task.path, copy)
    except OSError:
        copy = Path()
    note = {
        "source_ref": task.source_ref,
        "source_path": str(Path(task.path).resolve()),
        "reason": record.reason,
        "detail": record.reason_detail,
        "run_id": run_id,
        "profile": {"name": record.profile_name, "version": record.profile_version},
        "copy": copy.name or None,
    }
    (folder / f"{task.source_ref}.json").write_text(json.dumps(note, indent=2) + "\n")
