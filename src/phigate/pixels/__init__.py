"""Burned-in text in pixels: OCR engines behind one interface, PHI classification, redaction.

The entry point is :func:`clean_pixels`; :class:`PixelRules` is the pixel part of a
profile; :class:`SeriesScanCache` lets one worker sample series and reuse readings;
:mod:`phigate.pixels.validation` generates labelled images and measures the engine.
"""

from phigate.pixels.clean import PixelOutcome, clean_pixels
from phigate.pixels.engines import OcrEngine, check_engine, load_engine
from phigate.pixels.errors import (
    OcrEngineUnavailable,
    PixelError,
    PixelRulesError,
    UnknownOcrEngine,
)
from phigate.pixels.rules import KnownRegion, PixelRules, ScanStrategy
from phigate.pixels.sampling import InstanceRef, SeriesScanCache

__all__ = [
    "InstanceRef",
    "KnownRegion",
    "OcrEngine",
    "OcrEngineUnavailable",
    "PixelError",
    "PixelOutcome",
    "PixelRules",
    "PixelRulesError",
    "ScanStrategy",
    "SeriesScanCache",
    "UnknownOcrEngine",
    "check_engine",
    "clean_pixels",
    "load_engine",
]
