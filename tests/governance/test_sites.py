"""Site templates: schema validation, storage, unique claims and recognition."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from phigate.governance.errors import AlreadyExists, NotFound, PermissionDenied, SiteTemplateInvalid
from phigate.governance.sites import add_site, get_site, list_sites, parse_template, recognise_site

from .conftest import People

NORTH = """
name: north
description: North campus PACS
profile: tcia
recognise:
  calling_ae_titles: [NORTH_PACS]
  source_folders: [/imports/north]
  institution_names: [North General Hospital]
private_tags:
  - {creator: GEMS_ACQU_01, group: "0019", element: "0x10", vr: LO, keyword: ScanDetail, safe: true}
burned_in_regions:
  - {manufacturer: ACME, model: Sono 5, modality: US, boxes: [[0, 0, 640, 40]]}
modality_defaults:
  US: {requires_review: true, pixel_cleaning: true}
"""


def test_a_full_template_is_stored_and_read_back(session: Session, people: People) -> None:
    site = add_site(session, people.admin, parse_template(NORTH))
    session.commit()
    assert get_site(session, people.researcher, "north").template == site.template
    assert site.template["burned_in_regions"][0]["boxes"] == [[0, 0, 640, 40]]
    assert [item.name for item in list_sites(session, people.auditor)] == ["north"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("name: North Campus", "name"),
        ("name: x\nprivate_tags: [{creator: A, element: '0x1234'}]", "private_tags/0/element"),
        ("name: x\nburned_in_regions: [{boxes: [[1, 2, 3]]}]", "burned_in_regions/0/boxes/0"),
        ("name: x\nmodality_defaults: {us: {}}", "modality_defaults"),
        (
            "name: x\nrecognise: {calling_ae_titles: ['WAY_TOO_LONG_AE_TITLE']}",
            "recognise/calling_ae_titles/0",
        ),
        ("name: x\ncolour: blue", "(top level)"),
        ("name: [unclosed", "line"),
    ],
)
def test_bad_templates_name_the_field(text: str, where: str) -> None:
    with pytest.raises(
        SiteTemplateInvalid, match=rf"{where.replace('(', '[(]').replace(')', '[)]')}"
    ):
        parse_template(text)


def test_two_sites_cannot_claim_the_same_input(session: Session, people: People) -> None:
    add_site(session, people.admin, parse_template(NORTH))
    clash = parse_template("name: south\nrecognise: {institution_names: [north general hospital]}")
    with pytest.raises(SiteTemplateInvalid, match=r"north.*InstitutionName"):
        add_site(session, people.admin, clash)
    with pytest.raises(AlreadyExists, match="--replace"):
        add_site(session, people.admin, parse_template(NORTH))
    replaced = add_site(session, people.steward, parse_template("name: north"), replace=True)
    assert replaced.template == {"name": "north"}


def test_only_admins_and_stewards_manage_sites(session: Session, people: People) -> None:
    with pytest.raises(PermissionDenied):
        add_site(session, people.researcher, {"name": "x"})
    with pytest.raises(PermissionDenied):
        list_sites(session, people.partner)
    with pytest.raises(NotFound):
        get_site(session, people.admin, "nowhere")


def test_recognition_by_ae_title_folder_and_institution(session: Session, people: People) -> None:
    add_site(session, people.admin, parse_template(NORTH))
    add_site(
        session,
        people.admin,
        parse_template(
            "name: north-cardio\n"
            "recognise: {source_folders: [/imports/north/cardio], calling_ae_titles: [CARDIO]}"
        ),
    )
    session.commit()

    def found(**hints: str) -> str | None:
        site = recognise_site(session, **hints)
        return site.name if site else None

    assert found(calling_ae="NORTH_PACS") == "north"
    assert found(calling_ae="CARDIO", institution_name="North General Hospital") == "north-cardio"
    assert found(source_folder="/imports/north/cardio/2024/study1") == "north-cardio"
    assert found(source_folder="/imports/north/other") == "north"
    assert found(source_folder="/imports/northern") is None
    assert found(institution_name="  NORTH GENERAL HOSPITAL ") == "north"
    assert found(calling_ae="UNKNOWN") is None
    assert found() is None
