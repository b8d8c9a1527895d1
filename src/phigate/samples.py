"""phigate's own PHI-planting sample generator (for the tests and for ``phigate demo``).

:func:`make_sample_set` copies a varied set of pydicom's bundled test files (CT, MR, RT,
SR, SEG, ECG, US and secondary capture; multi-frame; JPEG, JPEG-LS, JPEG 2000 and RLE
compressed; big endian, deflated and implicit VR; files without file meta), plus any extra
source files passed in by path, and plants synthetic PHI into each: every standard
identifying attribute, free text that embeds the names, IDs, dates, phone, e-mail, address
and SSN, sequences three deep, private elements, the file meta group and the preamble. The
files are spread over a few synthetic patients with consistent study, series and frame of
reference UIDs and with cross-references between instances, and are named with PHI on
purpose (``QUILLFEATHER_MRN99887766/...``) to prove output names never derive from input
names. Research-critical attributes get known values that must survive de-identification.

:func:`find_planted` searches a folder (file bytes, inflated deflated data sets, file and
folder names) for the planted values and reports *where* and *which category*, never the
value, so its result is safe to print.

Everything here is synthetic and deterministic for a seed. Only runtime dependencies are
used (pydicom and its bundled test files).

The manifest (:class:`SampleManifest`) lists the planted values, so it is PHI by design:
:func:`make_sample_set` writes it *next to* the sample folder, as
``<folder>.manifest.json``, never inside it, so that de-identifying the folder does not
read it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import re
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, generate_uid

# Small, varied bundled pydicom test files (about 0.6 MB together).
BUNDLED_SOURCES: tuple[str, ...] = (
    "CT_small.dcm",  # CT, explicit VR little endian, private tags
    "MR_small.dcm",  # MR, explicit VR little endian
    "MR_small_implicit.dcm",  # implicit VR little endian
    "MR_small_bigendian.dcm",  # explicit VR big endian
    "MR_small_RLE.dcm",  # RLE lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEG2000.dcm",  # JPEG 2000, NM secondary capture
    "JPEG-lossy.dcm",  # JPEG extended
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, RGB
    "SC_rgb_rle_2frame.dcm",  # RLE, multi-frame
    "SC_rgb_small_odd_big_endian.dcm",  # big endian, odd-sized pixel data
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless
    "ExplVR_BigEnd.dcm",  # US, big endian
    "image_dfl.dcm",  # deflated explicit VR little endian
    "rtplan.dcm",  # RT plan, implicit VR
    "rtdose.dcm",  # RT dose, multi-frame
    "rtstruct.dcm",  # RT structure set, no file meta
    "liver_1frame.dcm",  # segmentation
    "test-SR.dcm",  # comprehensive SR
    "reportsi.dcm",  # basic text SR
    "waveform_ecg.dcm",  # 12-lead ECG waveform
)

# Research-critical attributes every built-in profile keeps unchanged.
RESEARCH_KEYWORDS: tuple[str, ...] = (
    "Modality", "SOPClassUID", "Rows", "Columns", "BitsAllocated", "BitsStored",
    "PhotometricInterpretation", "SamplesPerPixel", "NumberOfFrames", "ImageType",
    "PixelSpacing", "SliceThickness", "KVP", "BodyPartExamined", "RescaleSlope",
    "RescaleIntercept", "EchoTime", "RepetitionTime", "ImageOrientationPatient",
    "ImagePositionPatient", "SeriesNumber", "InstanceNumber", "Manufacturer",
)  # fmt: skip
# Dates planted per instance; their intervals survive date shifting.
DATE_KEYWORDS: tuple[str, ...] = (
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate",
)  # fmt: skip
SAFE_PRIVATE_CREATOR = "SIEMENS MR HEADER"
SAFE_PRIVATE_GROUP = 0x0019
SAFE_PRIVATE_ELEMENT = 0x0C
SAFE_PRIVATE_VALUE = "1000"
SAMPLE_PRIVATE_CREATOR = "PHIGATE SAMPLE PHI"
MAX_PATIENTS = 6
DICOM_UID_ROOT = "1.2.840.10008."
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."
_STUDY_CLASS_UID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management SOP Class (retired)
_DEFLATED_UID = str(DeflatedExplicitVRLittleEndian).encode()
_MAX_SEARCH_INFLATE = 256 << 20
_FIRST_STUDY = dt.date(2023, 2, 7)

_SURNAMES = ("QUILLFEATHER", "MARROWBRIDGE", "THISTLEWAITE", "GRIMSHAWE", "BRACKENBURY",
             "WYNDLEMERE")  # fmt: skip
_GIVEN = ("PEREGRINE", "OTTOLINE", "LYSANDER", "CLEMENTINA", "BARNABUS", "HONORIA")
_SEXES = ("M", "F", "M", "F", "M", "F")
_MOTHERS = ("DUNWOODY^ESMERALDA", "PENHALIGON^ROSAMUND", "CRESSWICKE^ADELINDA",
            "FOTHERGILL^MIRABEL", "HAVERSTOCK^LAVINIA", "OAKENSHAW^GWENDOLINE")  # fmt: skip
_BIRTHS = (dt.date(1923, 8, 17), dt.date(1936, 5, 23), dt.date(1949, 11, 2),
           dt.date(1962, 3, 29), dt.date(1975, 10, 11), dt.date(1988, 6, 14))  # fmt: skip
_STREETS = ("Ravensworth", "Kettleburn", "Sallowmead", "Featherstonhaugh", "Ambleside",
            "Goldhawk")  # fmt: skip
_TOWNS = ("Bramblecombe", "Nettlefold", "Quenby Marsh", "Wrexington", "Hollinsclough",
          "Pitchcombe")  # fmt: skip
_PHYSICIANS = (("WINTERBOURNE", "AUGUSTINA"), ("ASHCOMBE", "DELPHINE"),
               ("BLACKTHORNE", "SILAS"), ("FAIRCLOUGH", "MORWENNA"),
               ("HARGREAVES", "ALOYSIUS"), ("PENDERGAST", "CORDELIA"))  # fmt: skip
_INSTITUTIONS = (("HOLLOWMERE INFIRMARY", "17 Cobblestack Lane, Wrenfield"),
                 ("BRACKENFORD CLINIC", "4 Tansywood Road, Glimmerdale"),
                 ("SALTMARSH ROYAL HOSPITAL", "90 Pollardine Way, Kestlebury"))  # fmt: skip
_NESTED_PEOPLE = (("GALLOWGLASS", "TIBERIUS"), ("MOONSHADE", "PERPETUA"),
                  ("COPPERKETTLE", "ALARIC"), ("NIGHTINGALE", "SERAPHINA"),
                  ("HOLLINGWORTH", "EZEKIEL"), ("WETHERALL", "PHILIPPA"))  # fmt: skip


@dataclass
class PlantedPHI:
    """The synthetic PHI planted into the sample set, by category.

    ``names`` holds every form written (``DOE^JOHN``, ``John Doe``, ``Doe, John``).
    :meth:`search_terms` gives the distinctive strings to look for in output bytes.
    """

    names: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    accessions: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    ssns: list[str] = field(default_factory=list)
    institutions: list[str] = field(default_factory=list)
    physicians: list[str] = field(default_factory=list)
    free_text: list[str] = field(default_factory=list)
    private_values: list[str] = field(default_factory=list)
    file_meta: list[str] = field(default_factory=list)
    preamble: list[str] = field(default_factory=list)
    nested: list[str] = field(default_factory=list)
    # Distinctive search strings per category (name parts, address words, date formats...).
    terms: dict[str, list[str]] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the values: they end up in test logs
        return f"PlantedPHI({len(self.search_terms())} search terms)"

    def search_terms(self) -> list[tuple[str, str]]:
        """(category, string) pairs to look for, case-insensitively, in output bytes.

        Each string is long and unusual enough that a byte search cannot match by chance.
        """
        pairs = [(category, term) for category, terms in self.terms.items() for term in terms]
        return sorted(set(pairs))

    def all_strings(self) -> list[str]:
        """Every distinctive planted string (no categories), sorted."""
        return sorted({term for _, term in self.search_terms()})

    def merge(self, other: PlantedPHI) -> None:
        """Add another patient's values to this one."""
        for name, value in vars(other).items():
            if name == "terms":
                for category, terms in value.items():
                    self.terms.setdefault(category, []).extend(terms)
            else:
                getattr(self, name).extend(value)


@dataclass
class SampleInstance:
    """One written sample file and what was planted in it (its ``file`` name holds PHI)."""

    file: str
    source: str
    patient: int
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    frame_of_reference_uid: str | None
    transfer_syntax: str | None
    references: list[str]
    dates: dict[str, str]
    research: dict[str, str]
    pixel_sha256: str | None
    uids: list[str]
    safe_private: bool

    def __repr__(self) -> str:  # the file name holds PHI
        return f"SampleInstance(source={self.source!r}, patient={self.patient})"


@dataclass
class SampleManifest:
    """What :func:`make_sample_set` wrote. PHI: keep it out of the sample folder."""

    folder: str
    manifest_path: str
    seed: int
    patients: list[PlantedPHI]
    patient_ids: list[str]
    birth_dates: list[str]
    instances: list[SampleInstance]
    skipped: list[str]

    def __repr__(self) -> str:  # never show the values: they end up in test logs
        return (
            f"SampleManifest({len(self.instances)} instances, {len(self.patients)} patients, "
            f"seed {self.seed})"
        )

    @property
    def planted(self) -> PlantedPHI:
        """Every patient's planted values together."""
        merged = PlantedPHI()
        for patient in self.patients:
            merged.merge(patient)
        return merged

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (PHI)."""
        return asdict(self)


@dataclass(frozen=True)
class _Patient:
    """Every synthetic value of one patient."""

    index: int
    surname: str
    given: str
    mrn: str
    other_id: str
    issuer: str
    accession: str
    study_id: str
    procedure_id: str
    record_locator: str
    nested_id: str
    birth: dt.date
    study: dt.date
    sex: str
    mother: str
    address: str
    street: str
    town: str
    zip_code: str
    phone: str
    email: str
    ssn: str
    institution: str
    institution_address: str
    physicians: tuple[tuple[str, str], ...]
    nested_person: tuple[str, str]
    private_token: str
    meta_token: str
    preamble_token: str

    @property
    def pn(self) -> str:
        return f"{self.surname}^{self.given}"

    @property
    def natural(self) -> str:
        return f"{self.given.title()} {self.surname.title()}"

    @property
    def inverted(self) -> str:
        return f"{self.surname.title()}, {self.given.title()}"

    @property
    def age(self) -> str:
        years = self.study.year - self.birth.year
        if (self.study.month, self.study.day) < (self.birth.month, self.birth.day):
            years -= 1
        return f"{years:03d}Y"

    def day(self, offset: int) -> dt.date:
        """A date of this patient's study, ``offset`` days after the study date."""
        return self.study + dt.timedelta(days=offset)


def _make_patient(index: int, seed: int) -> _Patient:
    rng = random.Random(f"phigate-sample/{seed}/{index}")
    pick = (seed + index) % MAX_PATIENTS
    digits = f"{rng.randrange(10**6):06d}"
    surname, given = _SURNAMES[pick], _GIVEN[pick]
    institution, institution_address = _INSTITUTIONS[pick % len(_INSTITUTIONS)]
    physicians = tuple(_PHYSICIANS[(pick + k) % len(_PHYSICIANS)] for k in range(4))
    zip_code = f"0{rng.randrange(1000, 9999)}"
    street, town = _STREETS[pick], _TOWNS[pick]
    number = 1427 + 311 * pick
    return _Patient(
        index=index,
        surname=surname,
        given=given,
        mrn=f"MRN{(99887766 + 1048573 * (index + 7 * seed)) % 10**8:08d}",
        other_id=f"OPX{rng.randrange(10**8):08d}",
        issuer=f"{institution.split()[0]} MRN",
        accession=f"ACC{rng.randrange(10**7):07d}",
        study_id=f"SID{rng.randrange(10**6):06d}",
        procedure_id=f"RPX{rng.randrange(10**7):07d}",
        record_locator=f"MRLOC{rng.randrange(10**7):07d}",
        nested_id=f"NID{rng.randrange(10**8):08d}",
        birth=_BIRTHS[index],
        study=_FIRST_STUDY + dt.timedelta(days=41 * index + rng.randrange(7)),
        sex=_SEXES[pick],
        mother=_MOTHERS[pick],
        address=f"{number} {street} Terrace, {town}, MA {zip_code}",
        street=street,
        town=town,
        zip_code=zip_code,
        phone=f"617-555-{143 + 17 * pick:04d}",
        email=f"{given.lower()}.{surname.lower()}@{institution.split()[0].lower()}-health.org",
        ssn=f"987-{65 + pick:02d}-{4329 + 7 * index:04d}",
        institution=institution,
        institution_address=institution_address,
        physicians=physicians,
        nested_person=_NESTED_PEOPLE[pick],
        private_token=f"PVTNOTE{digits}",
        meta_token=f"SRCAE{digits}",
        preamble_token=f"PREAMBLE{digits}",
    )


def _date_forms(day: dt.date) -> list[str]:
    """Several common written forms of one date."""
    return [
        day.strftime("%Y%m%d"),
        day.strftime("%Y-%m-%d"),
        day.strftime("%m/%d/%Y"),
        day.strftime("%d.%m.%Y"),
        day.strftime("%B %d, %Y"),
        day.strftime("%d %b %Y"),
    ]


def _free_text(p: _Patient) -> dict[str, str]:
    """Free-text attributes that embed the patient's identifiers (descriptors are LO <= 64)."""
    doctor = p.physicians[0]
    return {
        "StudyDescription": f"CT CHEST W CONTRAST {p.surname} {p.mrn}",
        "SeriesDescription": f"AX T2 {p.natural} DOB {p.birth:%m/%d/%Y}",
        "ProtocolName": f"CHEST {p.inverted}",
        "ImageComments": (
            f"Patient {p.pn} ({p.natural}; {p.inverted}), MRN {p.mrn}, accession "
            f"{p.accession}, born {p.birth:%B %d, %Y} ({p.birth:%Y-%m-%d}), scanned "
            f"{p.study:%m/%d/%Y}. Call {p.phone} or e-mail {p.email}. Lives at {p.address}. "
            f"SSN {p.ssn}. Referred by Dr. {doctor[1].title()} {doctor[0].title()} of "
            f"{p.institution.title()}."
        ),
        "AdditionalPatientHistory": (
            f"{p.natural} seen on {p.study:%d.%m.%Y} ({p.study:%Y%m%d}); history per "
            f"Dr {doctor[0].title()}; contact ({p.phone[:3]}) {p.phone[4:]}; other ID "
            f"{p.other_id}."
        ),
        "PatientComments": (
            f"{p.inverted} lives at {p.address}; SSN {p.ssn}; e-mail {p.email}; "
            f"born {p.birth:%d %b %Y}; mother {p.mother}."
        ),
        "AdmittingDiagnosesDescription": f"FALL AT HOME {p.street.upper()} {p.town.upper()}",
        "DerivationDescription": (
            f"Derived by Dr {doctor[1].title()} {doctor[0].title()} for {p.natural} "
            f"({p.mrn}) on {p.study:%Y-%m-%d}"
        ),
    }


def _planted_phi(p: _Patient) -> PlantedPHI:
    """The planted values of one patient, with their distinctive search terms."""
    names = [p.pn, p.natural, p.inverted, p.mother]
    physicians = [f"{s}^{g}" for s, g in p.physicians]
    nested = [f"{p.nested_person[0]}^{p.nested_person[1]}", p.nested_id]
    dates = [*_date_forms(p.birth), *_date_forms(p.study)]
    terms = {
        "names": [p.surname, p.given, *p.mother.split("^")],
        "ids": [p.mrn, p.other_id, p.study_id, p.procedure_id, p.record_locator],
        "accession": [p.accession],
        "dates": dates + [p.day(k).strftime("%Y%m%d") for k in range(1, 3)],
        "addresses": [p.street, p.town],
        "phone": [p.phone[4:]],
        "email": [p.email],
        "ssn": [p.ssn],
        "institution": [p.institution.split()[0], *_address_words(p.institution_address)],
        "physicians": [part for pair in p.physicians for part in pair],
        "private": [p.private_token],
        "file_meta": [p.meta_token],
        "preamble": [p.preamble_token],
        "nested": [*p.nested_person, p.nested_id],
    }
    return PlantedPHI(
        names=names,
        ids=[p.mrn, p.other_id, p.study_id, p.procedure_id, p.record_locator, p.issuer],
        accessions=[p.accession],
        dates=dates,
        addresses=[p.address],
        phones=[p.phone],
        emails=[p.email],
        ssns=[p.ssn],
        institutions=[p.institution, p.institution_address],
        physicians=physicians,
        free_text=list(_free_text(p).values()),
        private_values=[p.private_token],
        file_meta=[p.meta_token],
        preamble=[p.preamble_token],
        nested=nested,
        terms=terms,
    )


def _address_words(address: str) -> list[str]:
    return [w for w in re.split(r"[\s,]+", address) if len(w) >= 8]


# Building the sample set


@dataclass
class _Slot:
    """Where one source file goes: its patient, UIDs and output name."""

    source: Path
    dataset: FileDataset
    patient: _Patient
    sop_uid: str
    series_uid: str = ""
    file: str = ""
    references: list[str] = field(default_factory=list)


def make_sample_set(
    out_dir: Path,
    *,
    sources: Sequence[Path] | None = None,
    patients: int = 3,
    seed: int = 0,
) -> SampleManifest:
    """Write a PHI-planted sample set into ``out_dir`` (created; must be empty).

    ``sources`` are extra DICOM files (for example pydicom-data's) added to the bundled
    ones; files that cannot be read, planted and read back are skipped and listed in the
    manifest. The manifest is written next to ``out_dir`` as ``<out_dir>.manifest.json``
    (it holds the planted PHI) and returned.
    """
    if not 1 <= patients <= MAX_PATIENTS:
        raise ValueError(f"patients must be between 1 and {MAX_PATIENTS}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ValueError("the sample folder must be empty")
    people = [_make_patient(index, seed) for index in range(patients)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about odd values in its own test files
        loaded, skipped = _load_sources(_source_paths(sources))
        slots = _assign(loaded, people, seed)
        written = [(slot, _write_slot(out_dir, slot, slots)) for slot in slots]
    instances = [instance for _, instance in written if instance is not None]
    skipped.extend(slot.source.name for slot, instance in written if instance is None)
    manifest = SampleManifest(
        folder=str(out_dir),
        manifest_path=str(out_dir.with_name(out_dir.name + ".manifest.json")),
        seed=seed,
        patients=[_planted_phi(p) for p in people],
        patient_ids=[p.mrn for p in people],
        birth_dates=[p.birth.strftime("%Y%m%d") for p in people],
        instances=instances,
        skipped=sorted(skipped),
    )
    Path(manifest.manifest_path).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
    return manifest


def _source_paths(sources: Sequence[Path] | None) -> list[Path]:
    bundled = []
    for name in BUNDLED_SOURCES:
        found = get_testdata_file(name)
        if found is not None:
            bundled.append(Path(str(found)))
    return bundled + [Path(s) for s in sources or ()]


def _load_sources(paths: Iterable[Path]) -> tuple[list[tuple[Path, FileDataset]], list[str]]:
    loaded, skipped = [], []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, force=True)
            ds.SOPClassUID  # noqa: B018 - must exist
        except Exception:
            skipped.append(path.name)
            continue
        loaded.append((path, ds))
    return loaded, skipped


def _assign(
    loaded: list[tuple[Path, FileDataset]], people: list[_Patient], seed: int
) -> list[_Slot]:
    order = list(range(len(loaded)))
    random.Random(f"phigate-sample/{seed}/order").shuffle(order)
    slots = []
    for position, index in enumerate(order):
        path, ds = loaded[index]
        patient = people[position % len(people)]
        sop_uid = _uid(seed, "sop", str(position))
        slots.append(_Slot(path, ds, patient, sop_uid))
    for slot in slots:
        klass = str(slot.dataset.SOPClassUID)
        slot.series_uid = _uid(seed, "series", str(slot.patient.index), klass)
    _name_files(slots)
    _link(slots)
    return slots


def _name_files(slots: list[_Slot]) -> None:
    counts: dict[int, int] = {}
    for slot in slots:
        p = slot.patient
        counts[p.index] = counts.get(p.index, 0) + 1
        k = counts[p.index]
        folder = f"{p.surname}_{p.mrn}"
        stem = f"{p.surname.title()}_{p.given.title()}_{p.mrn}_{k:02d}"
        slot.file = f"{folder}/{stem}.dcm" if k % 4 else f"{folder}/IM_{stem}"


def _link(slots: list[_Slot]) -> None:
    """Each instance references the previous and next instance of the same patient."""
    by_patient: dict[int, list[_Slot]] = {}
    for slot in slots:
        by_patient.setdefault(slot.patient.index, []).append(slot)
    for group in by_patient.values():
        if len(group) < 2:
            continue
        for k, slot in enumerate(group):
            slot.references = [group[k - 1].sop_uid, group[(k + 1) % len(group)].sop_uid]


def _uid(seed: int, *parts: str) -> str:
    return str(generate_uid(_UID_PREFIX, entropy_srcs=["phigate-sample", str(seed), *parts]))


def _write_slot(out_dir: Path, slot: _Slot, slots: list[_Slot]) -> SampleInstance | None:
    """Plant, write and read back one file; ``None`` if the source cannot take it."""
    try:
        ds = slot.dataset
        _plant(ds, slot, slots)
        data = _encode(ds)
        check = pydicom.dcmread(io.BytesIO(data), force=True)
        if str(check.SOPInstanceUID) != slot.sop_uid:
            return None
    except Exception:
        return None
    target = out_dir / slot.file
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return _describe(slot, check)


def _encode(ds: FileDataset) -> bytes:
    buffer = io.BytesIO()
    if "TransferSyntaxUID" in ds.file_meta:
        ds.save_as(buffer, enforce_file_format=True)
    else:  # a bare data set: keep it bare, in the encoding it was read with
        implicit, little = ds.original_encoding
        ds.save_as(buffer, implicit_vr=implicit, little_endian=little)
    return buffer.getvalue()


# Planting


def _plant(ds: FileDataset, slot: _Slot, slots: list[_Slot]) -> None:
    p = slot.patient
    _plant_patient(ds, p)
    _plant_study(ds, p)
    _plant_people(ds, p)
    for keyword, text in _free_text(p).items():
        setattr(ds, keyword, text)
    _plant_uids(ds, slot, slots)
    _plant_research(ds)
    _plant_private(ds, p)
    _plant_request(ds, p, slot)
    _plant_graphics(ds, p)
    _plant_file_meta(ds, slot)


def _plant_patient(ds: Dataset, p: _Patient) -> None:
    ds.PatientName = p.pn
    ds.PatientID = p.mrn
    ds.IssuerOfPatientID = p.issuer
    ds.OtherPatientIDs = p.other_id
    ds.OtherPatientNames = f"{p.surname}-{p.town.split()[0].upper()}^{p.given}"
    ds.PatientMotherBirthName = p.mother
    ds.PatientBirthDate = p.birth.strftime("%Y%m%d")
    ds.PatientAge = p.age
    ds.PatientSex = p.sex
    ds.PatientAddress = p.address
    ds.PatientTelephoneNumbers = p.phone
    ds.MedicalRecordLocator = p.record_locator
    other = Dataset()
    other.PatientID = p.other_id
    other.IssuerOfPatientID = p.issuer
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = [other]


def _plant_study(ds: Dataset, p: _Patient) -> None:
    ds.AccessionNumber = p.accession
    ds.StudyID = p.study_id
    days = {"StudyDate": 0, "SeriesDate": 0, "AcquisitionDate": 0, "ContentDate": 1,
            "InstanceCreationDate": 2}  # fmt: skip
    for keyword, offset in days.items():
        setattr(ds, keyword, p.day(offset).strftime("%Y%m%d"))
    for keyword in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
        setattr(ds, keyword, "101530")
    ds.AcquisitionDateTime = p.study.strftime("%Y%m%d") + "101530.000000"


def _plant_people(ds: Dataset, p: _Patient) -> None:
    pn = [f"{s}^{g}" for s, g in p.physicians]
    ds.InstitutionName = p.institution
    ds.InstitutionAddress = p.institution_address
    ds.ReferringPhysicianName = pn[0] + "^^DR"
    ds.PerformingPhysicianName = [pn[1], pn[3]]
    ds.OperatorsName = pn[2]
    ds.NameOfPhysiciansReadingStudy = pn[3]
    ds.PhysiciansOfRecord = pn[0]


def _plant_uids(ds: Dataset, slot: _Slot, slots: list[_Slot]) -> None:
    p = slot.patient
    ds.StudyInstanceUID = _study_uid(slot)
    ds.SeriesInstanceUID = slot.series_uid
    ds.SOPInstanceUID = slot.sop_uid
    if "PixelData" in ds or "FrameOfReferenceUID" in ds:
        ds.FrameOfReferenceUID = _frame_of_reference_uid(slot)
    by_uid = {s.sop_uid: s for s in slots}
    if slot.references:
        previous, following = (by_uid[u] for u in slot.references)
        ds.SourceImageSequence = [_source_item(previous, p)]
        ds.ReferencedImageSequence = [_ref_item(following)]


def _study_uid(slot: _Slot) -> str:
    # One study per patient (the MRN already depends on the seed).
    return str(generate_uid(_UID_PREFIX, entropy_srcs=["study", slot.patient.mrn]))


def _frame_of_reference_uid(slot: _Slot) -> str:
    return str(generate_uid(_UID_PREFIX, entropy_srcs=["frame", slot.patient.mrn]))


def _ref_item(target: _Slot) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = str(target.dataset.SOPClassUID)
    item.ReferencedSOPInstanceUID = target.sop_uid
    return item


def _source_item(target: _Slot, p: _Patient) -> Dataset:
    """Depth 1 > PurposeOfReferenceCodeSequence (2) > VerifyingObserverSequence (3)."""
    observer = Dataset()
    observer.VerifyingObserverName = f"{p.nested_person[0]}^{p.nested_person[1]}"
    observer.VerifyingOrganization = p.institution
    observer.VerificationDateTime = p.study.strftime("%Y%m%d") + "120000"
    observer.PatientID = p.nested_id
    block = observer.private_block(0x0013, SAMPLE_PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", f"{p.nested_person[1].title()} {p.nested_person[0].title()}")
    purpose = Dataset()
    purpose.CodeValue = "121320"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Uncompressed predecessor"
    purpose.VerifyingObserverSequence = [observer]
    item = _ref_item(target)
    item.PurposeOfReferenceCodeSequence = [purpose]
    return item


def _plant_research(ds: Dataset) -> None:
    if "PixelData" not in ds:
        return
    ds.KVP = "120"
    ds.SliceThickness = "1.25"
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.BodyPartExamined = "CHEST"
    if ds.get("Modality") == "MR":
        block = ds.private_block(SAFE_PRIVATE_GROUP, SAFE_PRIVATE_CREATOR, create=True)
        block.add_new(SAFE_PRIVATE_ELEMENT, "IS", SAFE_PRIVATE_VALUE)


def _plant_private(ds: Dataset, p: _Patient) -> None:
    block = ds.private_block(0x0011, SAMPLE_PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", f"{p.pn} {p.mrn}")
    block.add_new(0x02, "LT", f"Private note {p.private_token} for {p.natural}, {p.phone}")
    block.add_new(0x04, "OB", f"{p.private_token} {p.email} {p.ssn}".encode())
    inner = Dataset()
    inner_block = inner.private_block(0x0011, SAMPLE_PRIVATE_CREATOR, create=True)
    inner_block.add_new(0x01, "LO", f"{p.private_token} {p.inverted}")
    inner.PatientName = p.pn
    block.add_new(0x03, "SQ", [inner])


def _plant_request(ds: Dataset, p: _Patient, slot: _Slot) -> None:
    """RequestAttributesSequence at the top, and a three-deep ReferencedStudySequence."""
    request = Dataset()
    request.RequestedProcedureID = p.procedure_id
    request.ScheduledProcedureStepID = p.procedure_id + "S"
    request.AccessionNumber = p.accession
    request.RequestedProcedureDescription = f"CT CHEST for {p.inverted} {p.mrn}"
    request.RequestingPhysician = "^".join(p.physicians[3])
    ds.RequestAttributesSequence = [request]
    referenced_patient = Dataset()
    referenced_patient.PatientName = f"{p.nested_person[0]}^{p.nested_person[1]}"
    referenced_patient.PatientID = p.nested_id
    referenced_patient.PatientBirthDate = p.birth.strftime("%Y%m%d")
    nested_request = Dataset()
    nested_request.RequestedProcedureID = p.procedure_id
    nested_request.RequestedProcedureDescription = f"Follow up {p.natural}"
    nested_request.ReferencedPatientSequence = [referenced_patient]
    study = Dataset()
    study.ReferencedSOPClassUID = _STUDY_CLASS_UID
    study.ReferencedSOPInstanceUID = _study_uid(slot)
    study.RequestAttributesSequence = [nested_request]
    ds.ReferencedStudySequence = [study]


def _plant_graphics(ds: Dataset, p: _Patient) -> None:
    """Overlay comments and a graphic annotation (Clean Graphics), and for SR documents a
    text and a person-name content item two levels down (Clean Structured Content)."""
    if "PixelData" in ds:
        ds.add_new(0x60000022, "LO", f"Annotated for {p.natural}")  # OverlayDescription
        ds.add_new(0x60004000, "LT", f"Overlay drawn on {p.pn} {p.mrn}")  # OverlayComments
        text = Dataset()
        text.UnformattedTextValue = f"{p.inverted} {p.mrn} tel {p.phone}"
        annotation = Dataset()
        annotation.GraphicLayer = "LAYER1"
        annotation.TextObjectSequence = [text]
        ds.GraphicAnnotationSequence = [annotation]
    if ds.get("Modality") == "SR" and "ContentSequence" in ds:
        ds.ContentSequence.append(_text_item(p))


def _text_item(p: _Patient) -> Dataset:
    person = Dataset()
    person.RelationshipType = "HAS OBS CONTEXT"
    person.ValueType = "PNAME"
    person.ConceptNameCodeSequence = [_code("121008", "DCM", "Person Observer Name")]
    person.PersonName = p.pn
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = [_code("121106", "DCM", "Comment")]
    text.TextValue = f"Discussed with {p.natural} ({p.mrn}), tel {p.phone}, {p.email}."
    text.ContentSequence = [person]
    return text


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = scheme
    code.CodeMeaning = meaning
    return code


def _plant_file_meta(ds: FileDataset, slot: _Slot) -> None:
    p = slot.patient
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.preamble = None  # a bare data set: no preamble and no file meta to plant into
        return
    ds.preamble = f"{p.preamble_token} {p.pn} {p.mrn}".encode().ljust(128, b"\0")
    meta = FileMetaDataset()
    for element in ds.file_meta:
        meta.add(element)
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = UID(slot.sop_uid)
    meta.SourceApplicationEntityTitle = p.meta_token
    meta.SendingApplicationEntityTitle = p.meta_token[:12] + "SND"
    meta.PrivateInformationCreatorUID = UID(_uid(0, "meta", p.mrn))
    meta.PrivateInformation = f"{p.meta_token} {p.pn} {p.mrn}".encode()
    ds.file_meta = meta


# Describing what was written


def _describe(slot: _Slot, ds: Dataset) -> SampleInstance:
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    pixels = ds.get("PixelData")
    return SampleInstance(
        file=slot.file,
        source=slot.source.name,
        patient=slot.patient.index,
        patient_id=slot.patient.mrn,
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        frame_of_reference_uid=str(ds.FrameOfReferenceUID) if "FrameOfReferenceUID" in ds else None,
        transfer_syntax=str(syntax) if syntax else None,
        references=list(slot.references),
        dates={k: str(ds.get(k, "")) for k in DATE_KEYWORDS},
        research=research_values(ds),
        pixel_sha256=hashlib.sha256(pixels).hexdigest() if isinstance(pixels, bytes) else None,
        uids=sorted(set(walk_uids(ds))),
        safe_private=_has_safe_private(ds),
    )


def research_values(ds: Dataset) -> dict[str, str]:
    """The research-critical attributes present in ``ds``, as comparable strings."""
    found = {}
    for keyword in RESEARCH_KEYWORDS:
        if keyword in ds:
            found[keyword] = canonical(ds[keyword].value)
    return found


def canonical(value: object) -> str:
    """A value as a string that compares equal across encodings (multi-values joined by \\)."""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(canonical(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\0 ")
    return str(value).strip("\0 ")


def walk_uids(ds: Dataset) -> Iterator[str]:
    """Every UID value (VR UI) in ``ds`` at any depth, except DICOM-defined ones."""
    for element in ds.iterall():
        if element.VR != "UI" or element.value is None:
            continue
        values = element.value if isinstance(element.value, MultiValue) else [element.value]
        for value in values:
            uid = str(value).strip("\0 ")
            if uid and not uid.startswith(DICOM_UID_ROOT):
                yield uid


def _has_safe_private(ds: Dataset) -> bool:
    try:
        block = ds.private_block(SAFE_PRIVATE_GROUP, SAFE_PRIVATE_CREATOR)
        return SAFE_PRIVATE_ELEMENT in block
    except KeyError:
        return False


# Searching for planted values


def find_planted(folder: Path, planted: PlantedPHI) -> list[tuple[str, str]]:
    """Where planted values appear under ``folder``: (relative path, category) pairs.

    File bytes (and the inflated body of deflated DICOM files) and every file and folder
    name are searched case-insensitively. The value found is never returned; a path that
    itself holds a planted value is replaced by ``<redacted path N>`` and its category is
    prefixed with ``path:``, so the result is always safe to print.
    """
    terms = [
        (category, term.lower().encode("latin-1")) for category, term in planted.search_terms()
    ]
    hits: set[tuple[str, str]] = set()
    for index, path in enumerate(sorted(folder.rglob("*"))):
        relative = path.relative_to(folder).as_posix()
        name = relative.lower().encode("latin-1", "replace")
        in_name = {category for category, term in terms if term in name}
        shown = f"<redacted path {index}>" if in_name else relative
        hits.update((shown, f"path:{category}") for category in in_name)
        if path.is_file():
            content = searchable_bytes(path.read_bytes()).lower()
            hits.update((shown, category) for category, term in terms if term in content)
    return sorted(hits)


def find_in_text(text: str | bytes, planted: PlantedPHI) -> list[str]:
    """Categories of planted values found in ``text`` (for stdout, stderr and reports)."""
    data = (text.encode("utf-8", "replace") if isinstance(text, str) else text).lower()
    found = {c for c, t in planted.search_terms() if t.lower().encode("latin-1") in data}
    return sorted(found)


def searchable_bytes(data: bytes) -> bytes:
    """``data``, followed by the inflated data set if it is a deflated DICOM file."""
    if _DEFLATED_UID not in data[:1024]:
        return data
    start = _meta_end(data)
    if start is None:
        return data
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        body = inflater.decompress(data[start:], _MAX_SEARCH_INFLATE)
    except zlib.error:
        return data
    return data + b"\0" + body


def _meta_end(data: bytes) -> int | None:
    """Offset just past the file meta group (explicit VR little endian) of a PS3.10 file."""
    if data[128:132] != b"DICM":
        return None
    offset = 132
    while offset + 8 <= len(data):
        group, _element = struct.unpack_from("<HH", data, offset)
        if group != 0x0002:
            return offset
        vr = data[offset + 4 : offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            (length,) = struct.unpack_from("<I", data, offset + 8)
            offset += 12 + length
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            offset += 8 + length
    return None


def load_manifest(path: Path) -> SampleManifest:
    """Read a manifest written by :func:`make_sample_set` (PHI)."""
    data = json.loads(path.read_text())
    data["patients"] = [PlantedPHI(**patient) for patient in data["patients"]]
    data["instances"] = [SampleInstance(**instance) for instance in data["instances"]]
    return SampleManifest(**data)
