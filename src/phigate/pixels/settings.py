"""Map a profile's ``pixels:`` section (YAML data, validated by the policy schema) onto
:class:`~phigate.pixels.rules.PixelRules`. Lists in the profile add to the defaults."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from phigate.pixels.rules import KnownRegion, PixelRules, ScanStrategy

_SCALARS = (
    "engine",
    "min_text_confidence",
    "review_threshold",
    "redact_all_text",
    "unclassified_text",
    "overlays",
    "reencode",
)


def pixel_rules(settings: Mapping[str, Any]) -> PixelRules:
    """The pixel rules a profile asks for; an empty section gives the defaults."""
    defaults = PixelRules()
    values: dict[str, Any] = {key: settings[key] for key in _SCALARS if key in settings}
    values["keep_text"] = defaults.keep_text + tuple(settings.get("keep_text", ()))
    values["harmless_words"] = defaults.harmless_words + tuple(settings.get("harmless_words", ()))
    values["known_regions"] = tuple(_region(entry) for entry in settings.get("known_regions", ()))
    if "scan" in settings:
        values["scan_strategies"] = tuple(_strategy(entry) for entry in settings["scan"])
    return PixelRules(**values)


def _region(entry: Mapping[str, Any]) -> KnownRegion:
    boxes = tuple((int(x), int(y), int(w), int(h)) for x, y, w, h in entry["boxes"])
    return KnownRegion(
        boxes=boxes,
        manufacturer=str(entry.get("manufacturer", "")),
        model=str(entry.get("model", "")),
        rows=entry.get("rows"),
        columns=entry.get("columns"),
        first_frame=entry.get("first_frame"),
        last_frame=entry.get("last_frame"),
        label=str(entry.get("label", "")),
    )


def _strategy(entry: Mapping[str, Any]) -> ScanStrategy:
    sample = tuple(entry.get("sample", ("first", "middle", "last", "localizer")))
    return ScanStrategy(
        mode=entry["mode"],
        modalities=tuple(m.upper() for m in entry.get("modalities", ())),
        sop_classes=tuple(entry.get("sop_classes", ())),
        sample=sample,
    )
