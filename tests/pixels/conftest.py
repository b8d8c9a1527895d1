"""Shared fixture: the real OCR engine, loaded once per test session."""

from __future__ import annotations

import pytest

from phigate.pixels import OcrEngine, load_engine


@pytest.fixture(scope="session")
def engine() -> OcrEngine:
    return load_engine("rapidocr")
