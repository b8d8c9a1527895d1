"""Labelled synthetic images and the measurement behind ``phigate validate pixels``.

:func:`generate_cases` makes DICOM instances for CT, MR, US, MG, CR and SC with text drawn
into the stored pixel values: PHI (names in DICOM, natural and "surname, given" order,
IDs, accession numbers, dates in several formats, institutions, phone numbers) and harmless
annotation (orientation letters, scales, acquisition labels), in several fonts, sizes from
8 px, contrasts down to faint, at random places, on single and multi-frame images, grey and
RGB, uncompressed and losslessly compressed. Every piece of text is labelled with its box.

:func:`run_validation` runs :func:`~phigate.pixels.clean.clean_pixels` on each case and
scores each label: PHI is *removed* when its box was blanked, harmless text is *kept* when
its pixels are untouched. Sensitivity, specificity and precision per modality, time per
image, and the engine and rules versions go to ``report.json``, ``report.md`` and
``report.html`` (with a plot drawn by matplotlib).

Fonts come from packages: matplotlib's bundled DejaVu faces and Pillow's built-in font.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from phigate.pixels.clean import PixelOutcome, clean_pixels
from phigate.pixels.engines import OcrEngine, load_engine
from phigate.pixels.rules import Box, PixelRules

MODALITIES = ("CT", "MR", "US", "MG", "CR", "SC")
TEXT_FREE_MODALITIES = ("CT", "MR")  # most of their slices carry no text: speed matters
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf", "DejaVuSans-Bold.ttf")
SIZES = (8, 10, 12, 14, 18, 24)
CONTRASTS = (1.0, 0.6, 0.35)  # share of the grey range between background and text

GIVEN = ("JOHN", "MARIA", "DAVID", "LINDA", "ROBERT", "SUSAN", "JAMES", "KAREN", "AHMED", "MEI")
FAMILY = ("SMITH", "GARCIA", "JOHNSON", "MILLER", "NGUYEN", "BROWN", "WILSON", "TAYLOR",
          "MORGAN", "OKAFOR")  # fmt: skip
INSTITUTIONS = ("ST MARY HOSPITAL", "LAKESIDE MEDICAL CENTER", "NORTHGATE CLINIC",
                "RIVERVIEW IMAGING CENTER", "UNIVERSITY HOSPITAL OF WESTFIELD")  # fmt: skip
HARMLESS = {
    "CT": ("L", "R", "5 cm", "W 400 L 40", "AXIAL", "HFS", "kVp 120", "IM 12/40", "A", "P"),
    "MR": ("L", "R", "T2 FSE", "TR 4000", "TE 90", "SAG", "10 cm", "SE 3", "H", "F"),
    "US": ("LIVER", "5 cm", "3.5 MHz", "GAIN 50%", "L", "R", "DEPTH 16 cm", "THI", "FR 25 Hz"),
    "MG": ("L CC", "R MLO", "LCC", "RMLO", "25 kV", "5 cm", "L", "R"),
    "CR": ("L", "R", "PA", "ERECT", "CHEST", "PORTABLE", "10 cm", "AP"),
    "SC": ("L", "R", "5 cm", "AXIAL", "SERIES 3", "PAGE 1", "CT", "IM 4/20"),
}


@dataclass(frozen=True, slots=True)
class TextLabel:
    """One drawn piece of text: PHI or not, of which entity, where."""

    phi: bool
    entity: str  # name, id, date, institution, other_phi, non_phi
    frame: int
    box: Box
    size: int
    contrast: float
    font: str


@dataclass(slots=True)
class SyntheticCase:
    """A labelled instance ready for :func:`clean_pixels`."""

    name: str
    modality: str
    dataset: Dataset
    identifiers: dict[str, str]
    labels: list[TextLabel]
    compressed: str


@dataclass(slots=True)
class ModalityScore:
    modality: str
    images: int = 0
    phi_total: int = 0
    phi_removed: int = 0
    non_phi_total: int = 0
    non_phi_kept: int = 0
    reviews: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def sensitivity(self) -> float:
        return self.phi_removed / self.phi_total if self.phi_total else 1.0

    @property
    def specificity(self) -> float:
        return self.non_phi_kept / self.non_phi_total if self.non_phi_total else 1.0

    @property
    def precision(self) -> float:
        false_alarms = self.non_phi_total - self.non_phi_kept
        flagged = self.phi_removed + false_alarms
        return self.phi_removed / flagged if flagged else 1.0

    @property
    def seconds_per_image(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else 0.0

    @property
    def slowest_seconds(self) -> float:
        return max(self.seconds, default=0.0)

    def summary(self) -> dict[str, Any]:
        return {
            "modality": self.modality, "images": self.images, "phi_total": self.phi_total,
            "phi_removed": self.phi_removed, "non_phi_total": self.non_phi_total,
            "non_phi_kept": self.non_phi_kept, "sensitivity": round(self.sensitivity, 4),
            "specificity": round(self.specificity, 4), "precision": round(self.precision, 4),
            "instances_for_review": self.reviews,
            "seconds_per_image": round(self.seconds_per_image, 3),
            "slowest_seconds": round(self.slowest_seconds, 3),
        }  # fmt: skip


@dataclass(slots=True)
class TextFreeScore:
    """Slices of one modality with no text at all: how long they take, and whether the
    engine left them alone (any change is a false alarm)."""

    modality: str
    seconds: list[float] = field(default_factory=list)
    changed: int = 0
    detector_skipped: int = 0

    def summary(self) -> dict[str, Any]:
        count = len(self.seconds)
        return {
            "modality": self.modality,
            "images": count,
            "changed": self.changed,
            "detector_skipped": self.detector_skipped,
            "seconds_per_image": round(sum(self.seconds) / count, 3) if count else 0.0,
        }


@dataclass(slots=True)
class ValidationReport:
    """The result of :func:`run_validation`, as written to the report files."""

    engine: str
    rules_version: str
    seed: int
    per_modality: dict[str, ModalityScore]
    misses: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    profile: str = ""
    text_free: dict[str, TextFreeScore] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "phigate": _phigate_version(),
            "engine": self.engine,
            "rules_version": self.rules_version,
            "profile_label": self.profile,
            "seed": self.seed,
            "modalities": [s.summary() for s in self.per_modality.values()],
            "text_free_slices": [s.summary() for s in self.text_free.values()],
            "misses": self.misses,
        }


def generate_cases(
    modalities: Sequence[str] = MODALITIES, per_modality: int = 3, seed: int = 0
) -> Iterator[SyntheticCase]:
    """Labelled synthetic instances, ``per_modality`` of each; the same seed, the same set."""
    for modality in modalities:
        for number in range(per_modality):
            rng = random.Random(f"{seed}:{modality}:{number}")
            yield _make_case(modality.upper(), number, rng)


def run_validation(
    out_dir: Path | None = None,
    modalities: Sequence[str] = MODALITIES,
    per_modality: int = 3,
    seed: int = 0,
    rules: PixelRules | None = None,
    engine: OcrEngine | None = None,
    profile: str = "",
) -> ValidationReport:
    """Clean every generated case, score it, and write the report files into ``out_dir``.

    ``profile`` names the profile (and its version) the rules come from, for the report;
    when not given, the report lists the built-in profiles whose pixel rules these are.
    CT and MR also get text-free slices, timed and checked for false alarms.
    """
    rules = rules or PixelRules()
    engine = engine or load_engine(rules.engine)
    scores = {m.upper(): ModalityScore(m.upper()) for m in modalities}
    version = rules_version(rules)
    report = ValidationReport(
        engine.version, version, seed, scores, profile=profile or _profiles_with(version)
    )
    for case in generate_cases(modalities, per_modality, seed):
        before = _frames(case.dataset)
        start = time.perf_counter()
        outcome = clean_pixels(case.dataset, rules, case.identifiers, engine=engine)
        elapsed = time.perf_counter() - start
        _score_case(case, before, _frames(case.dataset), outcome, scores[case.modality], report)
        scores[case.modality].seconds.append(elapsed)
    for modality in (m for m in scores if m in TEXT_FREE_MODALITIES):
        report.text_free[modality] = _run_text_free(modality, per_modality, seed, rules, engine)
    if out_dir is not None:
        write_report(report, Path(out_dir))
    return report


def _run_text_free(
    modality: str, count: int, seed: int, rules: PixelRules, engine: OcrEngine
) -> TextFreeScore:
    score = TextFreeScore(modality)
    for number in range(count):
        rng = random.Random(f"{seed}:{modality}:free:{number}")
        spec = _SPECS[modality][number % len(_SPECS[modality])]
        ds = _dataset(modality, spec, _background(spec, rng), _identifiers(rng))
        before = _frames(ds)
        start = time.perf_counter()
        outcome = clean_pixels(ds, rules, {}, engine=engine)
        score.seconds.append(time.perf_counter() - start)
        score.changed += int(not np.array_equal(before, _frames(ds)))
        score.detector_skipped += int(outcome.detector_passes == 0)
    return score


def _profiles_with(version: str) -> str:
    """The built-in profiles (name and version) whose pixel rules hash to ``version``."""
    from phigate.pixels.settings import pixel_rules
    from phigate.policy.plan import compile_profile
    from phigate.policy.profile import builtin_names, load_profile

    matches = []
    for name in builtin_names():
        loaded = load_profile(name)
        if rules_version(pixel_rules(compile_profile(loaded).pixel_settings)) == version:
            matches.append(f"{loaded.name} {loaded.version}")
    if not matches:
        return "custom pixel rules (no built-in profile has them)"
    return "pixel rules of built-in profiles " + ", ".join(matches)


def rules_version(rules: PixelRules) -> str:
    """A short content hash of the pixel rules (the profile hash covers them too)."""
    text = repr(rules).encode()
    return hashlib.sha256(text).hexdigest()[:12]


# --- scoring ----------------------------------------------------------------------------


def _score_case(
    case: SyntheticCase,
    before: NDArray[Any],
    after: NDArray[Any],
    outcome: PixelOutcome,
    score: ModalityScore,
    report: ValidationReport,
) -> None:
    score.images += 1
    score.reviews += int(outcome.requires_review)
    for label in case.labels:
        was, now = _box(before, label), _box(after, label)
        if label.phi:
            score.phi_total += 1
            removed = _blanked(was, now)
            score.phi_removed += int(removed)
            if not removed:
                report.misses.append(_miss(case, label, "phi_not_removed"))
        else:
            score.non_phi_total += 1
            kept = _untouched(was, now)
            score.non_phi_kept += int(kept)
            if not kept:
                report.misses.append(_miss(case, label, "non_phi_removed"))


def _miss(case: SyntheticCase, label: TextLabel, what: str) -> dict[str, Any]:
    return {"case": case.name, "what": what, "entity": label.entity, "size": label.size,
            "contrast": label.contrast, "font": label.font, "frame": label.frame,
            "box": list(label.box)}  # fmt: skip


def _box(frames: NDArray[Any], label: TextLabel) -> NDArray[Any]:
    x, y, w, h = label.box
    return frames[label.frame, y : y + h, x : x + w]


def _blanked(was: NDArray[Any], now: NDArray[Any]) -> bool:
    """The text box is now (almost) one flat value and differs from before."""
    flat = now.reshape(now.shape[0] * now.shape[1], -1)
    _, counts = np.unique(flat, axis=0, return_counts=True)
    return bool(counts.max() >= 0.95 * len(flat) and not np.array_equal(was, now))


def _untouched(was: NDArray[Any], now: NDArray[Any]) -> bool:
    changed = (was != now).any(axis=-1) if was.ndim == 3 else was != now
    return bool(changed.mean() <= 0.1)


def _frames(ds: Dataset) -> NDArray[Any]:
    arr = np.asarray(ds.pixel_array)
    samples = int(ds.get("SamplesPerPixel", 1))
    return np.asarray(arr if arr.ndim == (3 if samples == 1 else 4) else arr[np.newaxis])


# --- generation -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Spec:
    rows: int
    columns: int
    frames: int
    color: bool
    photometric: str
    bits: int
    signed: bool
    compression: UID


_SPECS: dict[str, tuple[_Spec, ...]] = {
    "CT": (_Spec(512, 512, 1, False, "MONOCHROME2", 16, True, ExplicitVRLittleEndian),
           _Spec(512, 512, 1, False, "MONOCHROME2", 16, True, RLELossless)),
    "MR": (_Spec(256, 256, 3, False, "MONOCHROME2", 12, False, ExplicitVRLittleEndian),
           _Spec(320, 320, 1, False, "MONOCHROME2", 12, False, JPEGLSLossless)),
    "US": (_Spec(480, 640, 4, True, "RGB", 8, False, ExplicitVRLittleEndian),
           _Spec(480, 640, 1, False, "MONOCHROME2", 8, False, JPEG2000Lossless)),
    "MG": (_Spec(832, 640, 1, False, "MONOCHROME1", 12, False, ExplicitVRLittleEndian),
           _Spec(832, 640, 1, False, "MONOCHROME2", 14, False, JPEG2000Lossless)),
    "CR": (_Spec(640, 512, 1, False, "MONOCHROME1", 15, False, ExplicitVRLittleEndian),
           _Spec(640, 512, 1, False, "MONOCHROME2", 12, False, RLELossless)),
    "SC": (_Spec(480, 640, 1, True, "RGB", 8, False, ExplicitVRLittleEndian),
           _Spec(480, 640, 2, False, "MONOCHROME2", 8, False, RLELossless)),
}  # fmt: skip


def _make_case(modality: str, number: int, rng: random.Random) -> SyntheticCase:
    spec = _SPECS[modality][number % len(_SPECS[modality])]
    identifiers = _identifiers(rng)
    frames = _background(spec, rng)
    labels: list[TextLabel] = []
    static = spec.frames > 1 and number % 4 == 2  # one annotation layout on every frame
    for frame in range(1 if static else spec.frames):
        drawn, ink = _draw_texts(frames, frame, spec, modality, identifiers, rng)
        labels += drawn
    if static:
        for frame in range(1, spec.frames):
            frames[frame][ink] = frames[0][ink]
        labels += [replace(lb, frame=f) for f in range(1, spec.frames) for lb in drawn]
    ds = _dataset(modality, spec, frames, identifiers)
    return SyntheticCase(
        f"{modality.lower()}-{number:03d}", modality, ds, identifiers, labels, spec.compression.name
    )


def _identifiers(rng: random.Random) -> dict[str, str]:
    born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 30000))
    study = date(2015, 1, 1) + timedelta(days=rng.randrange(0, 3000))
    return {
        "PatientName": f"{rng.choice(FAMILY)}^{rng.choice(GIVEN)}",
        "PatientID": str(rng.randrange(10**6, 10**9)),
        "AccessionNumber": f"A{rng.randrange(10**6, 10**7)}",
        "PatientBirthDate": born.strftime("%Y%m%d"),
        "StudyDate": study.strftime("%Y%m%d"),
        "InstitutionName": rng.choice(INSTITUTIONS),
    }


def _phi_texts(ids: dict[str, str], rng: random.Random) -> list[tuple[str, str]]:
    family, given = ids["PatientName"].split("^")
    born = date(int(ids["PatientBirthDate"][:4]), int(ids["PatientBirthDate"][4:6]),
                int(ids["PatientBirthDate"][6:]))  # fmt: skip
    study = date(int(ids["StudyDate"][:4]), int(ids["StudyDate"][4:6]), int(ids["StudyDate"][6:]))
    other_mrn = str(rng.randrange(10**7, 10**8))  # not in the header: recognisers must catch it
    phone = f"{rng.randrange(200, 999)}-{rng.randrange(200, 999)}-{rng.randrange(1000, 9999)}"
    names = [f"{family}^{given}", f"{given.title()} {family.title()}", f"{family}, {given}"]
    dates = [f"DOB {born:%m/%d/%Y}", study.strftime("%Y-%m-%d"), study.strftime("%d-%b-%Y").upper(),
             f"{study:%d.%m.%Y} 10:42:17"]  # fmt: skip
    return [
        ("name", rng.choice(names)),
        ("id", rng.choice([f"ID {ids['PatientID']}", ids["PatientID"], f"MRN: {other_mrn}"])),
        ("date", rng.choice(dates)),
        ("institution", ids["InstitutionName"].title()),
        (rng.choice([("id", f"ACC {ids['AccessionNumber']}"), ("other_phi", f"Tel {phone}")])),
    ]


def _draw_texts(
    frames: NDArray[Any],
    frame: int,
    spec: _Spec,
    modality: str,
    ids: dict[str, str],
    rng: random.Random,
) -> tuple[list[TextLabel], NDArray[np.bool_]]:
    """Draw PHI and harmless text on one frame; returns the labels and the inked pixels."""
    items = [(k, t, True) for k, t in _phi_texts(ids, rng)]
    items += [("non_phi", t, False) for t in rng.sample(HARMLESS[modality], 4)]
    rng.shuffle(items)
    placed: list[Box] = []
    labels = []
    ink = np.zeros((spec.rows, spec.columns), dtype=bool)
    for entity, text, phi in items:
        size, contrast, font_name = rng.choice(SIZES), rng.choice(CONTRASTS), rng.choice(FONT_FILES)
        size, mask = _fitting_mask(text, font_name, size, spec.columns - 8)
        box = _place(mask.shape, spec, placed, rng)
        if box is None:
            continue
        placed.append(box)
        _burn(frames, frame, box, mask, spec, contrast)
        x, y, w, h = box
        ink[y : y + h, x : x + w] |= mask
        labels.append(TextLabel(phi, entity, frame, box, size, contrast, font_name))
    return labels, ink


def _fitting_mask(
    text: str, font_name: str, size: int, width: int
) -> tuple[int, NDArray[np.bool_]]:
    """The text at ``size``, or at the next smaller size that fits the frame's width: a
    long institution at 24 px does not fit a 256-column MR, as on a real display."""
    for step in sorted((s for s in SIZES if s <= size), reverse=True):
        mask = _text_mask(text, _font(font_name, step))
        if mask.shape[1] <= width:
            return step, mask
    return SIZES[0], mask


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name
        return ImageFont.truetype(str(path), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def _text_mask(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> NDArray[np.bool_]:
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (int(right - left) + 2, int(bottom - top) + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, font=font, fill=255)
    return np.asarray(canvas) > 96


def _place(
    shape: tuple[int, ...], spec: _Spec, placed: list[Box], rng: random.Random
) -> Box | None:
    h, w = shape
    gap = 14
    for _ in range(200):
        x, y = (
            rng.randrange(4, max(5, spec.columns - w - 4)),
            rng.randrange(4, max(5, spec.rows - h - 4)),
        )
        box = (x, y, w, h)
        if all(_apart(box, other, gap) for other in placed):
            return box
    return None


def _apart(a: Box, b: Box, gap: int) -> bool:
    return (
        a[0] + a[2] + gap <= b[0] or b[0] + b[2] + gap <= a[0]
        or a[1] + a[3] + gap <= b[1] or b[1] + b[3] + gap <= a[1]
    )  # fmt: skip


def _burn(
    frames: NDArray[Any],
    frame: int,
    box: Box,
    mask: NDArray[np.bool_],
    spec: _Spec,
    contrast: float,
) -> None:
    """Write text into stored values: bright on dark, or dark on a light screen capture.

    ``contrast`` is the share of the remaining grey range between the brightest (darkest)
    background pixel under the text and the top (bottom) of the range: faint text is faint
    but still stands out from everything behind it, as it does on a real display.
    """
    x, y, w, h = box
    region = frames[frame, y : y + h, x : x + w]
    low, high = _value_range(spec)
    light_background = float(np.median(region)) > (low + high) / 2
    if light_background:
        base = np.percentile(region, 1, axis=(0, 1))
        target = base - contrast * (base - low)
    else:
        base = np.percentile(region, 99, axis=(0, 1))
        target = base + contrast * (high - base)
    region[mask] = np.asarray(target, dtype=np.float64).astype(frames.dtype)


def _value_range(spec: _Spec) -> tuple[float, float]:
    if spec.signed:
        return -1024.0, float(2 ** (spec.bits - 1) - 1) if spec.bits < 16 else 3071.0
    return 0.0, float(2**spec.bits - 1)


def _background(spec: _Spec, rng: random.Random) -> NDArray[Any]:
    """A plausible image: dark field, an elliptical body with noise, moving speckle per frame."""
    np_rng = np.random.default_rng(rng.randrange(2**32))
    yy, xx = np.mgrid[0 : spec.rows, 0 : spec.columns]
    cy, cx = spec.rows / 2, spec.columns / 2
    body = ((yy - cy) / (spec.rows * 0.36)) ** 2 + ((xx - cx) / (spec.columns * 0.33)) ** 2 < 1
    low, high = _value_range(spec)
    frames = []
    for _ in range(spec.frames):
        level = low + (high - low) * (0.25 + 0.1 * np_rng.standard_normal(body.shape))
        image = np.where(body, level, low + (high - low) * 0.02)
        frames.append(np.clip(image, low, high))
    stack = np.stack(frames)
    dtype = np.int16 if spec.signed else (np.uint8 if spec.bits <= 8 else np.uint16)
    stack = stack.astype(dtype)
    if spec.color:
        stack = np.repeat(stack[..., None], 3, axis=3)
        if spec.photometric == "RGB" and spec.frames == 1:  # a screen capture: light page
            stack[:] = np.asarray(235, dtype=dtype)
    return stack


def _dataset(modality: str, spec: _Spec, frames: NDArray[Any], ids: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Manufacturer = "PHIGATE SYNTHETIC"
    for keyword, value in ids.items():
        setattr(ds, keyword, value)
    data = frames if spec.frames > 1 else frames[0]
    ds.set_pixel_data(data, spec.photometric, spec.bits, generate_instance_uid=False)
    if spec.compression != ExplicitVRLittleEndian:
        ds.compress(spec.compression, generate_instance_uid=False)
    return ds


# --- report -----------------------------------------------------------------------------


def write_report(report: ValidationReport, out_dir: Path) -> None:
    """``report.json``, ``report.md``, ``report.html`` and ``report.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    (out_dir / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    png = _plot(report)
    (out_dir / "report.png").write_bytes(png)
    (out_dir / "report.md").write_text(_markdown(report))
    (out_dir / "report.html").write_text(_html(report, png))
    report.files = {k: str(out_dir / f"report.{k}") for k in ("json", "md", "html", "png")}


def _phigate_version() -> str:
    from phigate import __version__

    return str(__version__)


def _versions(report: ValidationReport) -> list[str]:
    return [
        f"phigate {_phigate_version()}",
        f"OCR engine: {report.engine}",
        f"profile: {report.profile}",
        f"pixel rules version: {report.rules_version}",
        f"generator seed: {report.seed}",
    ]


def _text_free_rows(report: ValidationReport) -> list[list[str]]:
    return [
        [s.modality, str(len(s.seconds)), str(s.changed), str(s.detector_skipped),
         f"{sum(s.seconds) / max(1, len(s.seconds)):.3f}"]
        for s in report.text_free.values()
    ]  # fmt: skip


_FREE_HEADERS = ["modality", "text-free slices", "changed", "detector skipped", "s / image"]


def _table_rows(report: ValidationReport) -> list[list[str]]:
    rows = []
    for s in report.per_modality.values():
        rows.append([s.modality, str(s.images), f"{s.phi_removed}/{s.phi_total}",
                     f"{s.sensitivity:.1%}", f"{s.non_phi_kept}/{s.non_phi_total}",
                     f"{s.specificity:.1%}", f"{s.precision:.1%}", str(s.reviews),
                     f"{s.seconds_per_image:.2f}", f"{s.slowest_seconds:.2f}"])  # fmt: skip
    return rows


_HEADERS = ["modality", "images", "PHI removed", "sensitivity", "harmless kept",
            "specificity", "precision", "for review", "s / image", "slowest s"]  # fmt: skip


_METHOD = (
    "Each image is generated with PHI text (names, IDs, dates, institutions, phone numbers) "
    "and harmless annotation (orientation letters, scales, acquisition labels) burned into "
    "its stored pixel values, in four fonts, sizes from 8 px, contrasts down to faint, at "
    "random places, on single and multi-frame, grey and RGB, uncompressed and losslessly "
    "compressed images; each piece of text is labelled with its box. The real "
    "clean_pixels step runs on each image. A PHI label counts as removed when its box is "
    "blanked; a harmless label counts as kept when at most 10 % of its pixels changed. "
    "Sensitivity = PHI removed / PHI drawn; specificity = harmless kept / harmless drawn; "
    "precision = PHI removed / (PHI removed + harmless removed). Times are wall-clock "
    "seconds per image for clean_pixels (decode, OCR, judging, redaction, re-encoding) on "
    "one core. The report holds labels only, never recognised or drawn text."
)


def _markdown(report: ValidationReport) -> str:
    lines = ["# phigate pixel validation", ""]
    lines += [f"- {v}" for v in _versions(report)]
    lines += ["", _METHOD, "", *_md_table(_HEADERS, _table_rows(report))]
    if report.text_free:
        lines += ["", "Text-free CT and MR slices (nothing to find; any change is a false alarm):"]
        lines += ["", *_md_table(_FREE_HEADERS, _text_free_rows(report))]
    lines += ["", f"Labels missed: {len(report.misses)} (listed in report.json).", ""]
    return "\n".join(lines)


def _md_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(report: ValidationReport, png: bytes) -> str:
    image = base64.b64encode(png).decode()
    versions = "<br>".join(escape(v) for v in _versions(report))
    free = ""
    if report.text_free:
        free = (
            "<p>Text-free CT and MR slices (nothing to find; any change is a false alarm):</p>"
            + _html_table(_FREE_HEADERS, _text_free_rows(report))
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>phigate pixel validation</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:60em}"
        "td,th{padding:4px 10px;border:1px solid #ccc}table{border-collapse:collapse}"
        "</style></head><body>"
        f"<h1>phigate pixel validation</h1><p>{versions}</p><p>{escape(_METHOD)}</p>"
        f"{_html_table(_HEADERS, _table_rows(report))}{free}"
        f"<p><img alt='sensitivity, specificity and time per modality' "
        f"src='data:image/png;base64,{image}'></p>"
        f"<p>Labels missed: {len(report.misses)} (listed in report.json).</p></body></html>\n"
    )


def _plot(report: ValidationReport) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = list(report.per_modality.values())
    names = [s.modality for s in scores]
    x = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar(x - 0.2, [s.sensitivity for s in scores], 0.4, label="sensitivity")
    left.bar(x + 0.2, [s.specificity for s in scores], 0.4, label="specificity")
    left.set_xticks(x, names)
    lowest = min([s.sensitivity for s in scores] + [s.specificity for s in scores], default=1.0)
    left.set_ylim(min(0.9, lowest - 0.02), 1.005)
    left.axhline(0.99, color="tab:blue", linewidth=0.8, linestyle="--", label="target 99 %")
    left.axhline(0.95, color="tab:orange", linewidth=0.8, linestyle=":", label="target 95 %")
    left.legend(loc="lower right", fontsize="small")
    left.set_title("PHI text per modality")
    right.bar(x, [s.seconds_per_image for s in scores], 0.5, color="tab:green")
    right.set_xticks(x, names)
    right.set_title("seconds per image")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
