"""What a site template brings to a profile, checked through ``process_instance``: private
dictionaries (names and VRs of private attributes), modalities always reviewed, modalities
whose pixels are or are not cleaned, and a different profile for one modality."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    UltrasoundImageStorage,
)

from phigate.deid.keys import Keyring
from phigate.governance.errors import SiteTemplateInvalid
from phigate.governance.sites import validate_template
from phigate.pipeline.instance import Outcome, Worker, process_instance
from phigate.policy.plan import ActionPlan, PrivateName, compile_profile
from phigate.policy.profile import load_profile, parse_profile_text, with_site_template
from phigate.record import Status

from .test_visitor import encode

KEYS = Keyring(b"q" * 32)
CREATOR = "ACME 1.1"
# Private block 0x10 of group 0029: element 0x10 a protocol code, 0x11 an operator name.
PROTOCOL_TAG, OPERATOR_TAG = 0x00291010, 0x00291011
TEMPLATE = {
    "name": "north",
    "private_tags": [
        {"creator": CREATOR, "element": "10", "vr": "LO", "keyword": "AcmeProtocol", "safe": True},
        {"creator": CREATOR, "element": "11", "vr": "PN", "keyword": "AcmeOperator"},
    ],
    "modality_defaults": {
        "CT": {"pixel_cleaning": False, "requires_review": True},
        "US": {"pixel_cleaning": True},
    },
}


def instance(modality: str = "CT", sop_class: str = CTImageStorage) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.826.0.1.999.5.1"
    ds.StudyInstanceUID = "1.2.826.0.1.999.5"
    ds.SeriesInstanceUID = "1.2.826.0.1.999.5.2"
    ds.Modality = modality
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "MRN-1234"
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 8, 8, 7
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(32 * 32)
    block = ds.private_block(0x0029, CREATOR, create=True)
    block.add_new(0x10, "LO", "PROTO-7")
    block.add_new(0x11, "PN", "ROE^RICHARD")
    return ds


def encoded(ds: Dataset, syntax: str = ImplicitVRLittleEndian) -> bytes:
    """In Implicit VR Little Endian (the default) private VRs are not written."""
    return encode(ds, syntax=syntax)


def site_plan(profile_text: str, template: dict[str, object] = TEMPLATE) -> ActionPlan:
    return compile_profile(with_site_template(parse_profile_text(profile_text), "north", template))


def run(ds: Dataset, plan: ActionPlan) -> Outcome:
    outcome = process_instance(encoded(ds), "ref", Worker(plan, KEYS))
    assert outcome.record.status is Status.WRITTEN, outcome.record.reason_detail
    return outcome


def written(outcome: Outcome) -> Dataset:
    assert outcome.data is not None
    return pydicom.dcmread(io.BytesIO(outcome.data))


TCIA_PN_PSEUDONYMS = (
    "name: t\nextends: tcia\noverrides:\n  - {select: {vr: PN}, action: pseudonymize}\n"
)


def test_site_dictionary_gives_private_attributes_their_vr_and_name() -> None:
    outcome = run(instance(), site_plan(TCIA_PN_PSEUDONYMS))
    block = written(outcome).private_block(0x0029, CREATOR)
    assert block[0x10].value == b"PROTO-7 "  # a safe private tag, kept (implicit VR: no VR)
    # Known to be a PN, so the profile's PN rule reaches it; the record names it.
    assert outcome.record.actions["private:AcmeOperator"] == "pseudonymize"
    assert b"ROE" not in block[0x11].value and block[0x11].value


def test_site_dictionary_replaces_un_with_the_declared_vr() -> None:
    """A PACS that forwarded an implicit-VR file as explicit VR wrote its private tags as UN;
    the dictionary's VR comes back in the output."""
    ds = instance()
    ds[PROTOCOL_TAG] = DataElement(PROTOCOL_TAG, "UN", b"PROTO-7 ")
    ds[OPERATOR_TAG] = DataElement(OPERATOR_TAG, "UN", b"ROE^RICHARD ")
    outcome = process_instance(
        encoded(ds, ExplicitVRLittleEndian), "ref", Worker(site_plan(TCIA_PN_PSEUDONYMS), KEYS)
    )
    block = written(outcome).private_block(0x0029, CREATOR)
    assert (block[0x10].VR, block[0x10].value) == ("LO", "PROTO-7")
    assert block[0x11].VR == "PN" and "ROE" not in str(block[0x11].value)


def test_without_the_dictionary_private_attributes_stay_unknown() -> None:
    plan = compile_profile(parse_profile_text(TCIA_PN_PSEUDONYMS))
    outcome = run(instance(), plan)
    out = written(outcome)
    assert PROTOCOL_TAG not in out and OPERATOR_TAG not in out
    assert outcome.record.actions["private(0029,xx11)"] == "remove"


def test_site_modality_default_sends_every_instance_of_a_modality_to_review() -> None:
    plan = site_plan("name: t\nextends: basic\n")
    ct, us = run(instance(), plan).record, run(instance("US", UltrasoundImageStorage), plan).record
    assert "profile_reviews_every_instance_of_this_modality" in ct.review_reasons
    assert "profile_reviews_every_instance_of_this_modality" not in us.review_reasons


def test_site_modality_defaults_turn_pixel_cleaning_off_and_on() -> None:
    """tcia cleans pixels; the site turns that off for CT. basic does not; the site turns it
    on for US."""
    ct = run(instance(), site_plan("name: t\nextends: tcia\n")).record
    us = run(instance("US", UltrasoundImageStorage), site_plan("name: t\nextends: basic\n"))
    assert "PixelData" not in ct.actions
    assert us.record.actions["PixelData"] == "pixels_scanned_no_phi"
    assert written(us).BurnedInAnnotation == "NO"
    plain_ct = run(instance(), compile_profile(load_profile("tcia"))).record
    assert plain_ct.actions["PixelData"] == "pixels_scanned_no_phi"


def test_a_modality_plan_governs_instances_of_its_modality() -> None:
    plan = compile_profile(load_profile("basic"))
    plan.modality_plans["US"] = compile_profile(load_profile("tcia"))
    worker = Worker(plan, KEYS)
    ct = process_instance(encoded(instance()), "a", worker)
    us = process_instance(encoded(instance("US", UltrasoundImageStorage)), "b", worker)
    assert (ct.record.profile_name, us.record.profile_name) == ("basic", "tcia")
    assert us.record.profile_version == plan.modality_plans["US"].version
    assert "phigate tcia" in str(written(us).DeidentificationMethod)
    assert "phigate basic" in str(written(ct).DeidentificationMethod)


def test_a_dictionary_entry_for_one_group_does_not_rename_another() -> None:
    """One creator may use its block in several groups with other VRs (Siemens does): an
    entry with a group applies to that group only."""
    template = {
        "name": "north",
        "private_tags": [
            {"creator": CREATOR, "group": "0029", "element": "11", "vr": "PN", "keyword": "Op"},
            {"creator": CREATOR, "group": "0031", "element": "11", "vr": "LO", "keyword": "Other"},
        ],
    }
    plan = site_plan(TCIA_PN_PSEUDONYMS, template)
    assert plan.private_name(CREATOR, OPERATOR_TAG) == PrivateName("Op", "PN")
    assert plan.private_name(CREATOR, 0x00311011) == PrivateName("Other", "LO")
    assert plan.private_name(CREATOR, 0x00331011) is None


def test_a_site_keyword_cannot_pass_for_a_standard_attribute() -> None:
    template = {
        "name": "north",
        "private_tags": [{"creator": CREATOR, "element": "11", "vr": "LO", "keyword": "PatientID"}],
    }
    actions = run(instance(), site_plan("name: t\nextends: basic\n", template)).record.actions
    assert actions["private:PatientID"] == "remove"
    assert actions["PatientID"] != "remove"


def test_a_dictionary_may_declare_only_a_standard_vr_other_than_sq() -> None:
    for vr in ("XX", "SQ"):
        template = {
            "name": "north",
            "private_tags": [{"creator": CREATOR, "element": "11", "vr": vr}],
        }
        with pytest.raises(SiteTemplateInvalid):
            validate_template(template)


def test_pixels_cleaned_by_a_modality_exception_are_coded_as_cleaned() -> None:
    """basic has no Clean Pixel Data option; the site cleans US pixels anyway, and the output
    says so with the option's code (113101)."""
    out = written(
        run(instance("US", UltrasoundImageStorage), site_plan("name: t\nextends: basic\n"))
    )
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert "113101" in codes
