"""The agency tree: codes, levels, parents, short names; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from provisioning import agencies
from provisioning.errors import Conflict, InvalidInput, NotFound
from tests.conftest import Govmail


def add(gm: Govmail, **values):
    with gm.session() as s, s.begin():
        return agencies.snapshot(agencies.add_agency(s, gm.settings, gm.actor, agencies.parse_fields(gm.settings, values)))


def update(gm: Govmail, **values):
    with gm.session() as s, s.begin():
        return agencies.update_agency(s, gm.settings, gm.actor, agencies.parse_fields(gm.settings, values))


@pytest.mark.parametrize("code", ["000.00.15.H62", "000.00.00.g01", " 26 ", "24889"])
def test_valid_codes(code):
    assert agencies.validate_code(code) == code.strip().upper()


@pytest.mark.parametrize("code", ["15.H62", "000.00.15.H6", "000-00-15-H62", "1", "123456", "", "000.00.15.H62;"])
def test_invalid_codes_say_what_a_code_looks_like(code):
    with pytest.raises(InvalidInput, match="000.00.15.H62"):
        agencies.validate_code(code)


def test_tree_levels_domain_inheritance_and_subtree(gm: Govmail):
    add(gm, code="000.00.00.H62", name="UBND tỉnh Vĩnh Phúc", level="province", domain="vinhphuc.gov.vn")
    dept = add(gm, code="000.00.15.H62", name="Sở Kế hoạch và Đầu tư", level="province", parent="000.00.00.H62",
               short_name="skhdt", staff_count="85")
    assert dept["domain"] == "vinhphuc.gov.vn" and dept["staff_count"] == 85
    add(gm, code="26", name="UBND phường Vĩnh Yên", level="commune", parent="000.00.00.H62")
    with pytest.raises(InvalidInput, match="above its parent's level"):
        add(gm, code="27", name="Bộ X", level="central", parent="26")
    with gm.session() as s:
        root = agencies.get_agency(s, "000.00.00.H62")
        assert len(agencies.subtree_ids(s, root)) == 3
        assert [a.code for a in agencies.list_agencies(s, parent="000.00.00.H62")] == ["000.00.15.H62", "26"]
        assert [a.code for a in agencies.list_agencies(s, level="commune")] == ["26"]
    gm.sync()
    with gm.directory.connect() as conn:
        conn.search(gm.directory.agencies_dn, "(govmailAgencyCode=000.00.15.H62)", attributes=["*"])
        entry = conn.entries[0]
        assert str(entry.o) == "Sở Kế hoạch và Đầu tư" and str(entry.govmailParentAgencyCode) == "000.00.00.H62"
        assert str(entry.govmailShortName) == "skhdt" and str(entry.govmailMailDomain) == "vinhphuc.gov.vn"


def test_refusals(gm: Govmail):
    add(gm, code="000.00.00.H62", name="UBND tỉnh Vĩnh Phúc", level="province", domain="vinhphuc.gov.vn", short_name="ubnd")
    with pytest.raises(Conflict, match="already exists"):
        add(gm, code="000.00.00.h62", name="Trùng", level="province", domain="x.gov.vn")
    with pytest.raises(Conflict, match="ubnd"):
        add(gm, code="000.00.16.H62", name="Sở Nội vụ", level="province", parent="000.00.00.H62", short_name="ubnd")
    with pytest.raises(NotFound, match="agency list"):
        add(gm, code="000.00.16.H62", name="Sở Nội vụ", level="province", parent="000.00.99.H62")
    with pytest.raises(InvalidInput, match="domain"):
        add(gm, code="000.00.17.H62", name="Không có miền", level="province")
    with pytest.raises(InvalidInput, match="level"):
        add(gm, code="000.00.18.H62", name="Sở", level="huyện")
    with pytest.raises(InvalidInput, match="name"):
        add(gm, code="000.00.19.H62", name="   ", level="province", domain="a.gov.vn")


def test_update_and_parent_cycles(gm: Govmail):
    add(gm, code="000.00.00.H62", name="UBND tỉnh", level="province", domain="vinhphuc.gov.vn")
    add(gm, code="000.00.15.H62", name="Sở KHĐT", level="province", parent="000.00.00.H62")
    assert update(gm, code="000.00.15.H62", name="Sở Kế hoạch và Đầu tư") is True
    assert update(gm, code="000.00.15.H62", name="Sở Kế hoạch và Đầu tư") is False
    with pytest.raises(InvalidInput, match="own ancestor"):
        update(gm, code="000.00.00.H62", parent="000.00.15.H62")
    gm.sync()
    with gm.directory.connect() as conn:
        conn.search(gm.directory.agencies_dn, "(govmailAgencyCode=000.00.15.H62)", attributes=["o"])
        assert str(conn.entries[0].o) == "Sở Kế hoạch và Đầu tư"
