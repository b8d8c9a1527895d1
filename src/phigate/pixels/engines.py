"""OCR engines behind one interface: find text regions, then read only those.

Detection is the cheap first pass (one network over the frame); recognition runs only on
the regions found. Every engine works offline: its model must already be installed, and
:func:`load_engine` checks that at start-up instead of letting a library try a download.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from phigate.pixels.boxes import contains
from phigate.pixels.errors import OcrEngineUnavailable, UnknownOcrEngine
from phigate.pixels.rules import Box

RgbImage = NDArray[np.uint8]
"""An ``(rows, columns, 3)`` 8-bit RGB rendering of one frame, as OCR sees it."""

THREADS_ENV = "PHIGATE_OCR_THREADS"
_RAPIDOCR_MISSING = (
    "OCR engine 'rapidocr' is not installed: pip install 'rapidocr>=3.9.2,<4' onnxruntime"
)


@dataclass(frozen=True, slots=True)
class TextRegion:
    """Where the detector believes there is a line of text, and how sure it is."""

    box: Box
    score: float


@dataclass(frozen=True, slots=True)
class Reading:
    """What the recogniser read in one region. ``text`` is PHI: it never leaves the engine's
    caller (no log, no message, no record)."""

    text: str
    confidence: float


class OcrEngine(Protocol):
    """The interface every OCR engine implements."""

    name: str
    version: str

    def detect(self, image: RgbImage) -> list[TextRegion]:
        """Text-line regions of an RGB frame (or a crop of one)."""
        ...

    def detect_with_hints(self, image: RgbImage) -> tuple[list[TextRegion], list[Box] | None]:
        """:meth:`detect`, plus boxes where the detector saw signs of text too faint or
        small to call a line (worth a second look at a larger size). ``None`` when the
        engine gives no such signs: then the caller must look everywhere it would."""
        ...

    def recognize(self, image: RgbImage, boxes: Sequence[Box]) -> list[Reading]:
        """Read the text inside each box of ``image``, in the same order."""
        ...


class RapidOcrEngine:
    """RapidOCR 3.x (PP-OCR detection and recognition on onnxruntime).

    The models ship inside the ``rapidocr`` wheel; they are passed by path so the library
    never reaches for its download code. The angle classifier is not used: burned-in
    annotations are horizontal.
    """

    name = "rapidocr"

    # Detector settings tried on phigate's validation set: a lower box threshold and a
    # wider unclip keep faint text whole (PP-OCR defaults 0.5 / 1.6); a lower binarisation
    # threshold than 0.3 merges text with grey anatomy into one blob, so it stays.
    DETECTOR: ClassVar[dict[str, float]] = {
        "Det.thresh": 0.3,
        "Det.box_thresh": 0.4,
        "Det.unclip_ratio": 1.8,
    }

    def __init__(self, threads: int = 1, max_side: int = 4096) -> None:
        det_path, rec_path = _rapidocr_models()
        try:
            from rapidocr import RapidOCR
            from rapidocr.ch_ppocr_rec import TextRecInput
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise OcrEngineUnavailable(_RAPIDOCR_MISSING) from exc
        params: dict[str, Any] = {
            "Global.log_level": "critical",
            "Global.use_cls": False,
            "Det.model_path": str(det_path),
            "Rec.model_path": str(rec_path),
            "Det.limit_type": "max",
            "Det.limit_side_len": max_side,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            **self.DETECTOR,
        }
        ocr = RapidOCR(params=params)
        # rapidocr's TextDetector (untyped): its pre-processing, network and post-processing
        # are called one by one, so the network's text map is seen too.
        self._detector: Any = ocr._load_det_model()  # type: ignore[no-untyped-call]
        self._recognizer: Callable[[Any], Any] = ocr._load_rec_model()  # type: ignore[no-untyped-call]
        self._rec_input = TextRecInput
        self._lock = threading.Lock()
        self.version = f"rapidocr {metadata.version('rapidocr')} ({det_path.stem}, {rec_path.stem})"

    def detect(self, image: RgbImage) -> list[TextRegion]:
        """Run the text detector; boxes are the bounding rectangles of its quadrilaterals."""
        return self.detect_with_hints(image)[0]

    def detect_with_hints(self, image: RgbImage) -> tuple[list[TextRegion], list[Box] | None]:
        """The detector's lines, and the places where its text map reached
        :data:`FAINT_TEXT_LEVEL` outside them.

        The map scores each pixel as text; a line is where it passes ``Det.thresh`` over an
        area big enough. Small or faint lines (8-10 px, low contrast) often leave only a
        weak or thin trace, dropped as a line but telling where to look again.
        """
        bgr = _to_bgr(_pad_small(image))
        with self._lock:
            tensor = self._detector.get_preprocess()(bgr)
            if tensor is None:
                return [], []
            text_map = self._detector.session(tensor)
            quads, scores = self._detector.postprocess_op(text_map, bgr.shape[:2])
        regions = []
        for quad, score in zip(self._detector.sorted_boxes(np.asarray(quads)), scores, strict=True):
            box = _quad_to_box(np.asarray(quad), image.shape[1], image.shape[0])
            if box[2] > 0 and box[3] > 0:
                regions.append(TextRegion(box=box, score=float(score)))
        return regions, _faint_traces(text_map[0, 0], bgr.shape, image.shape, regions)

    def recognize(self, image: RgbImage, boxes: Sequence[Box]) -> list[Reading]:
        """Read each box; the recogniser batches crops of similar width."""
        if not boxes:
            return []
        crops = [_to_bgr(_crop(image, box)) for box in boxes]
        with self._lock:
            out = self._recognizer(self._rec_input(img=crops))
        return [
            Reading(text=str(text), confidence=float(score))
            for text, score in zip(out.txts, out.scores, strict=True)
        ]


class TesseractEngine:
    """Debian's ``tesseract`` command (``apt-get install tesseract-ocr``), a second engine.

    It has no separate detector, so ``detect`` runs full page segmentation and keeps the
    line boxes; ``recognize`` reads each box as a single line.
    """

    name = "tesseract"

    def __init__(self, threads: int = 1) -> None:
        exe = shutil.which("tesseract")
        if exe is None:
            raise OcrEngineUnavailable(
                "OCR engine 'tesseract' is not installed: apt-get install tesseract-ocr"
            )
        self._exe = exe
        self._env = {**os.environ, "OMP_THREAD_LIMIT": str(threads)}
        langs = self._run(["--list-langs"], b"").decode(errors="replace").split()
        if "eng" not in langs:
            raise OcrEngineUnavailable(
                "tesseract has no English model: apt-get install tesseract-ocr-eng"
            )
        first_line = self._run(["--version"], b"").decode(errors="replace").splitlines()
        self.version = first_line[0] if first_line else "tesseract"

    def _run(self, args: list[str], stdin: bytes) -> bytes:
        done = subprocess.run(
            [self._exe, *args], input=stdin, capture_output=True, env=self._env, check=False
        )
        if done.returncode != 0:
            raise OcrEngineUnavailable(f"tesseract exited with code {done.returncode}")
        return done.stdout + done.stderr if args[:1] == ["--version"] else done.stdout

    def _tsv(self, image: RgbImage, psm: int) -> list[list[str]]:
        png = _encode_png(image)
        out = self._run(["stdin", "stdout", "--psm", str(psm), "-l", "eng", "tsv"], png)
        rows = [line.split("\t") for line in out.decode(errors="replace").splitlines()[1:]]
        return [r for r in rows if len(r) == 12]

    def detect(self, image: RgbImage) -> list[TextRegion]:
        """Line boxes from page segmentation (level 4 rows of tesseract's TSV)."""
        lines: dict[tuple[str, str, str], list[int]] = {}
        confs: dict[tuple[str, str, str], list[float]] = {}
        for r in self._tsv(image, psm=11):
            if r[0] != "5" or not r[11].strip():
                continue
            key = (r[2], r[3], r[4])
            x, y, w, h = (int(v) for v in r[6:10])
            box = lines.setdefault(key, [x, y, x + w, y + h])
            box[:] = [min(box[0], x), min(box[1], y), max(box[2], x + w), max(box[3], y + h)]
            confs.setdefault(key, []).append(max(float(r[10]), 0.0) / 100.0)
        return [
            TextRegion(box=(b[0], b[1], b[2] - b[0], b[3] - b[1]), score=max(confs[k]))
            for k, b in lines.items()
        ]

    def detect_with_hints(self, image: RgbImage) -> tuple[list[TextRegion], list[Box] | None]:
        """:meth:`detect`; tesseract gives no signs of text it did not read."""
        return self.detect(image), None

    def recognize(self, image: RgbImage, boxes: Sequence[Box]) -> list[Reading]:
        """Each box read as one line of text (``--psm 7``), from a crop prepared the way
        tesseract reads best (:func:`_for_tesseract`)."""
        readings = []
        rows, cols = image.shape[:2]
        for x, y, w, h in boxes:
            left, top = max(0, x - _TESSERACT_CONTEXT), max(0, y - _TESSERACT_CONTEXT)
            right = min(cols, x + w + _TESSERACT_CONTEXT)
            bottom = min(rows, y + h + _TESSERACT_CONTEXT)
            crop = _for_tesseract(image[top:bottom, left:right])
            words = [r for r in self._tsv(crop, psm=7) if r[0] == "5" and r[11]]
            text = " ".join(r[11] for r in words)
            conf = min((max(float(r[10]), 0.0) / 100.0 for r in words), default=0.0)
            readings.append(Reading(text=text, confidence=conf))
        return readings


# Pixels of context kept around a line for tesseract, and the line height it reads best at.
_TESSERACT_CONTEXT = 4
_TESSERACT_LINE_HEIGHT = 40


def _for_tesseract(crop: RgbImage) -> RgbImage:
    """Grey, dark text on a light ground, a line about 40 px tall, with a margin: tesseract
    misreads tight crops of small light-on-dark text (O for 0, a lost digit)."""
    grey = crop.max(axis=2) if crop.ndim == 3 else crop
    if np.median(grey) < 128:
        grey = 255 - grey
    scale = max(1.0, _TESSERACT_LINE_HEIGHT / max(1, grey.shape[0]))
    if scale > 1.0:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    grey = cv2.copyMakeBorder(grey, 12, 12, 12, 12, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(np.repeat(grey[..., np.newaxis], 3, axis=2), dtype=np.uint8)


ENGINES: dict[str, Callable[[int], OcrEngine]] = {
    "rapidocr": lambda threads: RapidOcrEngine(threads=threads),
    "tesseract": lambda threads: TesseractEngine(threads=threads),
}

_LOADED: dict[tuple[str, int], OcrEngine] = {}
_LOAD_LOCK = threading.Lock()


def default_threads() -> int:
    """Inference threads per process: ``PHIGATE_OCR_THREADS`` or 1 (one worker per core)."""
    raw = os.environ.get(THREADS_ENV, "1")
    return max(1, int(raw)) if raw.isdigit() else 1


def load_engine(name: str, threads: int | None = None) -> OcrEngine:
    """The named engine, loaded once per process; fails fast if its model is missing."""
    if name not in ENGINES:
        known = ", ".join(sorted(ENGINES))
        raise UnknownOcrEngine(f"unknown OCR engine '{name}'; known engines: {known}")
    key = (name, threads or default_threads())
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = ENGINES[name](key[1])
        return _LOADED[key]


def check_engine(name: str) -> str:
    """Start-up check: load the engine (models included) and return its version string."""
    return load_engine(name).version


def _rapidocr_models() -> tuple[Path, Path]:
    """The detection and recognition models bundled in the installed rapidocr wheel."""
    try:
        dist = metadata.distribution("rapidocr")
    except metadata.PackageNotFoundError as exc:
        raise OcrEngineUnavailable(_RAPIDOCR_MISSING) from exc
    models = Path(str(dist.locate_file("rapidocr/models")))
    det = sorted(models.glob("*det*.onnx"))
    rec = sorted(models.glob("*rec*.onnx"))
    if not det or not rec:
        raise OcrEngineUnavailable(
            "rapidocr's bundled OCR models are missing; reinstall it: "
            "pip install --force-reinstall 'rapidocr>=3.9.2,<4'"
        )
    return det[-1], rec[-1]


# The detector's text-map score above which a pixel outside its lines is a trace of text.
FAINT_TEXT_LEVEL = 0.1


def _faint_traces(
    text_map: NDArray[np.float32],
    padded: tuple[int, ...],
    shape: tuple[int, ...],
    lines: Sequence[TextRegion],
) -> list[Box]:
    """Boxes (in ``shape``'s image) of the map's connected traces at or above
    :data:`FAINT_TEXT_LEVEL` that no line holds. ``padded`` is the shape the detector saw
    (the image, padded when small); the map is at the detector's working size."""
    traces = (text_map >= FAINT_TEXT_LEVEL).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(traces, connectivity=8)
    sy, sx = padded[0] / text_map.shape[0], padded[1] / text_map.shape[1]
    found = []
    for x, y, w, h, _area in stats[1:]:
        x0, y0 = int(x * sx), int(y * sy)
        x1, y1 = (
            min(shape[1], int(np.ceil((x + w) * sx))),
            min(shape[0], int(np.ceil((y + h) * sy))),
        )
        box = (x0, y0, x1 - x0, y1 - y0)
        if box[2] > 0 and box[3] > 0 and not any(contains(_pad(r.box, 2), box) for r in lines):
            found.append(box)
    return found


def _pad(box: Box, margin: int) -> Box:
    return (box[0] - margin, box[1] - margin, box[2] + 2 * margin, box[3] + 2 * margin)


_MIN_DETECT_SIDE = 64


def _pad_small(image: RgbImage) -> RgbImage:
    """Pad tiny images at the bottom and right: the detector needs context around text."""
    rows, cols = image.shape[:2]
    pad_y, pad_x = max(0, _MIN_DETECT_SIDE - rows), max(0, _MIN_DETECT_SIDE - cols)
    if not pad_y and not pad_x:
        return image
    fill = int(np.median(image))
    return np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)), constant_values=fill)


def _to_bgr(image: RgbImage) -> RgbImage:
    """RapidOCR takes arrays in OpenCV's BGR channel order."""
    return np.ascontiguousarray(image[..., ::-1])


def _quad_to_box(quad: NDArray[Any], width: int, height: int) -> Box:
    """The detector's quadrilateral as an axis-aligned box clipped to the image."""
    x0 = max(0, int(np.floor(quad[:, 0].min())))
    y0 = max(0, int(np.floor(quad[:, 1].min())))
    x1 = min(width, int(np.ceil(quad[:, 0].max())) + 1)
    y1 = min(height, int(np.ceil(quad[:, 1].max())) + 1)
    return (x0, y0, max(0, x1 - x0), max(0, y1 - y0))


def _crop(image: RgbImage, box: Box) -> RgbImage:
    x, y, w, h = box
    return np.ascontiguousarray(image[y : y + h, x : x + w])


def _encode_png(image: RgbImage) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise OcrEngineUnavailable("could not encode a frame for tesseract")
    return bytes(buf)
