"""Errors of the pixel engine. Like every phigate error, a message never quotes OCR text,
an element value or a file name: only engine names, codes and what to do next."""

from __future__ import annotations

from phigate.errors import PhigateError


class PixelError(PhigateError):
    """Base of the pixel engine's errors."""


class OcrEngineUnavailable(PixelError):
    """The configured OCR engine, or the model it needs, is not installed on this machine."""


class UnknownOcrEngine(PixelError):
    """A profile names an OCR engine phigate does not know."""


class PixelRulesError(PixelError):
    """Pixel rules that cannot work (for example a review threshold below the minimum)."""
