"""The second OCR engine, Debian's tesseract (``apt-get install tesseract-ocr``, which
scripts/test.sh installs), behind the same interface: it finds a line of burned-in text and
reads it. (Its page segmentation misses lines the default engine finds on busy images, so
it is not validated for the built-in profiles; see docs/profiles.md.)"""

from __future__ import annotations

import numpy as np
import pytest

from phigate.pixels import OcrEngine, load_engine

from .helpers import burn


@pytest.fixture(scope="module")
def tesseract() -> OcrEngine:
    return load_engine("tesseract")


def test_tesseract_finds_and_reads_a_line(tesseract: OcrEngine) -> None:
    image = np.zeros((120, 400, 3), dtype=np.uint8)
    box = burn(image, "DOE JOHN 12345678", 20, 40, 20, (255, 255, 255))
    regions = tesseract.detect(image)
    assert regions, "no text found"
    found = max(regions, key=lambda r: r.box[2] * r.box[3]).box
    assert found[0] <= box[0] + 4 and found[0] + found[2] >= box[0] + box[2] - 4
    # A tight crop of light text on black: read from a prepared crop (margin, dark on
    # light, upscaled), where the raw crop read "DOE JOAN 123456 /8".
    [reading] = tesseract.recognize(image, [found])
    assert "DOE" in reading.text.upper() and "12345678" in reading.text
    assert 0.0 < reading.confidence <= 1.0
    assert tesseract.version.startswith("tesseract")
