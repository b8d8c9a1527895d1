"""The per-instance function: bytes, a compiled plan and keys in; bytes and one record out.

The CLI's process pool, the server and a Spark executor all call :func:`process_instance`.
It never raises for bad input: every failure becomes a record with a reason code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydicom.dataset import Dataset, FileDataset
from pydicom.uid import UID

from phigate.deid.header import TrialSubject, deidentify_header
from phigate.deid.identifiers import InstanceIdentifiers, collect_identifiers
from phigate.deid.keys import Keyring
from phigate.deid.text import TextCleaner
from phigate.dicom import io as dicom_io
from phigate.errors import InstanceFiltered, InstanceRejected
from phigate.pixels.clean import clean_pixels
from phigate.pixels.overlays import remove_overlays
from phigate.pixels.rules import PixelRules
from phigate.pixels.settings import pixel_rules
from phigate.policy.annex_e import Option
from phigate.policy.plan import ActionPlan, Filter
from phigate.record import InstanceResult, Status

UNEXPECTED = "unexpected_error"
# What the pixel step did, recorded as the action on PixelData.
PIXELS_REDACTED = "pixels_redacted"
PIXELS_SCANNED_CLEAN = "pixels_scanned_no_phi"
PIXELS_REVIEW = "pixels_need_review"
PIXELS_SKIPPED_BY_SAMPLING = "pixels_skipped_by_sampling"
_PIXEL_DATA = 0x7FE00010
_FLOAT_PIXELS = ("FloatPixelData", "DoubleFloatPixelData")
_UID_SHAPE = re.compile(r"[0-9.]{1,64}")  # PS3.5 9.1
# Modality defined terms (PS3.3 C.7.3.1.1.1, with retired ones still sent): anything else
# in Modality is not recorded, since a sender may have put any word there.
DICOM_MODALITIES = frozenset(
    {
        "AR",
        "AS",
        "ASMT",
        "AU",
        "BDUS",
        "BI",
        "BMD",
        "CD",
        "CF",
        "CP",
        "CR",
        "CS",
        "CT",
        "DD",
        "DF",
        "DG",
        "DM",
        "DOC",
        "DS",
        "DX",
        "EC",
        "ECG",
        "EPS",
        "ES",
        "FA",
        "FID",
        "FS",
        "GM",
        "HC",
        "HD",
        "IO",
        "IOL",
        "IVOCT",
        "IVUS",
        "KER",
        "KO",
        "LEN",
        "LP",
        "LS",
        "MA",
        "MG",
        "MR",
        "MS",
        "NM",
        "OAM",
        "OCT",
        "OP",
        "OPM",
        "OPR",
        "OPT",
        "OPTBSV",
        "OPTENF",
        "OPV",
        "OSS",
        "OT",
        "PLAN",
        "POS",
        "PR",
        "PT",
        "PX",
        "REG",
        "RESP",
        "RF",
        "RG",
        "RTDOSE",
        "RTIMAGE",
        "RTINTENT",
        "RTPLAN",
        "RTRAD",
        "RTRECORD",
        "RTSEGANN",
        "RTSTRUCT",
        "RWV",
        "SEG",
        "SM",
        "SMR",
        "SR",
        "SRF",
        "ST",
        "STAIN",
        "TEXTUREMAP",
        "TG",
        "US",
        "VA",
        "VF",
        "VL",
        "XA",
        "XC",
    }
)


@dataclass
class Worker:
    """What one worker process needs, built once and reused for every instance."""

    plan: ActionPlan
    keys: Keyring
    subjects: Mapping[str, TrialSubject] | None = None
    max_inflated_bytes: int = dicom_io.DEFAULT_MAX_INFLATED_BYTES
    cleaner: TextCleaner | None = field(default=None)
    pixel_rules: PixelRules | None = field(default=None)
    _variants: dict[str, Worker] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.cleaner is None:
            self.cleaner = TextCleaner(self.plan.text)
        if self.pixel_rules is None and (
            self.plan.clean_pixels or self.plan.pixel_clean_modalities
        ):
            self.pixel_rules = pixel_rules(self.plan.pixel_settings)

    def warm_up(self) -> None:
        """Load the NER model now (if the plan uses it), so processes forked later share it
        instead of each loading its own."""
        for worker in (self, *(self.for_modality(m) for m in self.plan.modality_plans)):
            assert worker.cleaner is not None
            worker.cleaner.load_model()

    def for_modality(self, modality: str | None) -> Worker:
        """The worker for an instance of this modality: this one, unless the plan has a
        modality plan for it (built once, sharing keys and subjects)."""
        plan = self.plan.for_modality(modality)
        if plan is self.plan:
            return self
        assert modality is not None
        if modality not in self._variants:
            self._variants[modality] = Worker(
                plan, self.keys, self.subjects, self.max_inflated_bytes
            )
        return self._variants[modality]


@dataclass
class Outcome:
    """The result of one instance: output file (if written), the record, pseudonyms made.

    ``parts`` are the output file's bytes in consecutive pieces (see
    :func:`phigate.dicom.io.encode_instance`): a writer writes them in turn, uncopied.
    ``pseudonyms`` maps (attribute keyword, pseudonym) to the original value. It is PHI and
    goes only to the encrypted vault, never into the record.
    """

    record: InstanceResult
    parts: tuple[bytes, ...] | None = None
    pseudonyms: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def data(self) -> bytes | None:
        """The output file whole, or None when nothing was written."""
        return None if self.parts is None else b"".join(self.parts)


def process_instance(
    data: bytes, source_ref: str, worker: Worker, scan_pixels: bool = True
) -> Outcome:
    """De-identify one instance; every failure becomes a record with a reason.

    ``scan_pixels`` is False for a slice that series sampling left out because no text was
    found in its series' samples (see :mod:`phigate.pipeline.sampling`).
    """
    record = InstanceResult(
        source_ref=source_ref,
        profile_name=worker.plan.profile_name,
        profile_version=worker.plan.version,
        bytes_in=len(data),
    )
    started = time.perf_counter()
    try:
        outcome = _process(data, record, worker, scan_pixels)
    except InstanceRejected as rejected:
        filtered = isinstance(rejected, InstanceFiltered)
        record.status = Status.FILTERED if filtered else Status.QUARANTINED
        record.reason, record.reason_detail = rejected.code, str(rejected)
        outcome = Outcome(record)
    except Exception as exc:  # never let one file stop the batch; never echo its content
        record.status = Status.QUARANTINED
        record.reason = UNEXPECTED
        record.reason_detail = f"de-identification failed ({type(exc).__name__})"
        outcome = Outcome(record)
    record.timings["total"] = time.perf_counter() - started
    return outcome


def _process(data: bytes, record: InstanceResult, worker: Worker, scan_pixels: bool) -> Outcome:
    parsed = dicom_io.read_instance(data, worker.max_inflated_bytes)
    ds = parsed.dataset
    _describe_source(ds, record, parsed.transfer_syntax)
    worker = worker.for_modality(record.modality)
    record.profile_name, record.profile_version = worker.plan.profile_name, worker.plan.version
    _apply_filters(ds, worker.plan.filters)
    identifiers = collect_identifiers(ds)
    pixel_action, pixels_cleaned, overlays_read = _clean_pixels(
        ds, record, worker, identifiers, scan_pixels
    )
    dropped = _drop_unread_overlays(ds, worker.plan, overlays_read)
    header = deidentify_header(
        ds,
        worker.plan,
        worker.keys,
        worker.cleaner,
        identifiers,
        worker.subjects,
        pixels_cleaned,
        drop_item_pixels=worker.plan.cleans_pixels_for(record.modality),
    )
    _flag_for_review(ds, record, worker.plan, pixels_cleaned or pixel_action is not None)
    output = _write(ds, UID(ds.file_meta.get("TransferSyntaxUID", parsed.transfer_syntax)))
    record.actions = (
        header.actions | dropped | ({"PixelData": pixel_action} if pixel_action else {})
    )
    record.findings = header.findings + record.findings
    record.study_uid = str(ds.get("StudyInstanceUID", "")) or None
    record.series_uid = str(ds.get("SeriesInstanceUID", "")) or None
    record.sop_instance_uid = str(ds.SOPInstanceUID)
    record.output_ref = f"{record.study_uid}/{record.series_uid}/{record.sop_instance_uid}.dcm"
    record.status = Status.WRITTEN
    record.bytes_out = sum(len(part) for part in output)
    return Outcome(record, output, header.pseudonyms)


def _clean_pixels(
    ds: FileDataset,
    record: InstanceResult,
    worker: Worker,
    identifiers: InstanceIdentifiers,
    scan: bool,
) -> tuple[str | None, bool, bool]:
    """Run the pixel step when the profile asks for it; return (PixelData action, cleaned,
    whether the step handled the overlay planes).

    A slice left out by series sampling counts as handled by policy, not as cleaned: its
    BurnedInAnnotation stays as it was and the Clean Pixel Data code is not written.
    """
    if worker.pixel_rules is None or _PIXEL_DATA not in ds._dict:
        return None, False, False
    if not worker.plan.cleans_pixels_for(record.modality):
        return None, False, False
    if not scan:
        return PIXELS_SKIPPED_BY_SAMPLING, False, False
    # No reading memo shared across instances: which instances share a worker depends on
    # scheduling, and OCR batches (hence readings) depend on what the memo skips, so sharing
    # would make output depend on the number of workers. Frames of one instance still share.
    outcome = clean_pixels(ds, worker.pixel_rules, identifiers.all_values())
    record.findings.extend(outcome.findings)
    for reason in outcome.review_reasons:
        record.flag_for_review(reason)
    record.timings["pixels"] = outcome.timings.get("total", 0.0)
    if outcome.skipped_by_sampling:
        return PIXELS_SKIPPED_BY_SAMPLING, False, True
    if outcome.requires_review:
        return PIXELS_REVIEW, False, True
    action = PIXELS_REDACTED if outcome.modified else PIXELS_SCANNED_CLEAN
    return action, outcome.fully_scanned, True


def _drop_unread_overlays(ds: Dataset, plan: ActionPlan, overlays_read: bool) -> dict[str, str]:
    """Under Clean Graphics an overlay bitmap is text drawn in bits, which the header pass
    cannot clean: the pixel step reads it when it runs, and where it did not (no Pixel Data,
    a slice left out by sampling, pixel cleaning off for the modality) the overlay planes
    go. Returns the action taken, by keyword."""
    if Option.CLEAN_GRAPHICS in plan.options and not overlays_read and remove_overlays(ds):
        return {"OverlayData": "remove"}
    return {}


def _describe_source(ds: FileDataset, record: InstanceResult, syntax: UID) -> None:
    """What kind of instance this is, for the record; values that are not what their VR
    allows (text in a UID, a name in Modality) are not recorded."""
    sop_class = str(ds.SOPClassUID).strip("\0 ")
    record.sop_class_uid = sop_class if _UID_SHAPE.fullmatch(sop_class) else None
    modality = str(ds.get("Modality", "")).strip()
    record.modality = modality if modality in DICOM_MODALITIES else None
    record.transfer_syntax_uid = syntax


def _apply_filters(ds: FileDataset, filters: tuple[Filter, ...]) -> None:
    for rule in filters:
        if _matches(ds, rule):
            raise InstanceFiltered(rule.reason, "excluded by a filter of the profile")


def _matches(ds: FileDataset, rule: Filter) -> bool:
    if rule.modalities and str(ds.get("Modality", "")) not in rule.modalities:
        return False
    if rule.sop_classes and str(ds.SOPClassUID) not in rule.sop_classes:
        return False
    burned = str(ds.get("BurnedInAnnotation", "")).upper()
    return rule.burned_in_annotation is None or burned == rule.burned_in_annotation


def _flag_for_review(
    ds: FileDataset, record: InstanceResult, plan: ActionPlan, pixels_cleaned: bool
) -> None:
    """A modality the profile always reviews, and pixels that may hold burned-in text but
    were not cleaned, need a human look."""
    if record.modality in plan.review.modalities:
        record.flag_for_review("profile_reviews_every_instance_of_this_modality")
    if plan.cleans_pixels_for(record.modality) and any(k in ds for k in _FLOAT_PIXELS):
        record.flag_for_review("float_pixel_data_not_scanned_for_burned_in_text")
    if pixels_cleaned or not any(keyword in ds for keyword in ("PixelData", *_FLOAT_PIXELS)):
        return
    review = plan.review
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        record.flag_for_review("burned_in_annotation_yes_pixels_not_cleaned")
    elif record.modality in review.burned_in_modalities:
        record.flag_for_review("modality_at_risk_of_burned_in_text_pixels_not_cleaned")
    elif record.sop_class_uid in review.burned_in_sop_classes:
        record.flag_for_review("sop_class_at_risk_of_burned_in_text_pixels_not_cleaned")


def _write(ds: FileDataset, syntax: UID) -> tuple[bytes, ...]:
    try:
        return dicom_io.encode_instance(ds, syntax)
    except Exception as exc:
        raise InstanceRejected(
            dicom_io.MALFORMED,
            f"the de-identified data set cannot be encoded ({type(exc).__name__})",
        ) from None
