"""Agencies: the tree of province, departments and communes that accounts belong to.

An agency is keyed by its electronic identifier (mã định danh điện tử, e.g. ``000.00.15.H62``) or
an administrative unit code (digits). Each change is audited and queued for the directory.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning import audit, outbox
from provisioning.addresses import validate_domain, validate_local_part
from provisioning.audit import Actor
from provisioning.config import Settings
from provisioning.errors import Conflict, GovmailError, InvalidInput, NotFound
from provisioning.models import Agency, IssuedAddress, utcnow

# 000.00.15.H62: ministry/province prefix, two groups, then a letter + two digits (H62 = Vĩnh Phúc).
ELECTRONIC_ID = re.compile(r"^\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}$")
ADMIN_CODE = re.compile(r"^\d{2,5}$")
STATUSES = ("active", "inactive")


def validate_code(value: str, field_name: str = "code") -> str:
    """An agency code as stored (upper-case letter), or :class:`InvalidInput`."""
    code = value.strip().upper()
    if ELECTRONIC_ID.match(code) or ADMIN_CODE.match(code):
        return code
    raise InvalidInput(
        field_name, value, "is not an agency code",
        "use the electronic identifier like 000.00.15.H62 or an administrative unit code of 2-5 digits",
    )


def clean_text(value: str, field_name: str, max_len: int = 255) -> str:
    """NFC, trimmed, single-spaced text; refuses empty, over-long or control characters."""
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        raise InvalidInput(field_name, value, "is empty")
    if len(text) > max_len:
        raise InvalidInput(field_name, value, f"is longer than {max_len} characters")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise InvalidInput(field_name, value, "contains control characters")
    return text


def snapshot(agency: Agency) -> dict[str, Any]:
    """The agency as shown to people and recorded in the audit log."""
    return {
        "code": agency.code,
        "name": agency.name,
        "short_name": agency.short_name,
        "level": agency.level,
        "parent": agency.parent.code if agency.parent else None,
        "domain": agency.domain,
        "status": agency.status,
        "staff_count": agency.staff_count,
    }


def get_agency(session: Session, code: str) -> Agency:
    """The agency with ``code``.

    :raises NotFound: no such agency (the message says how to list them).
    """
    key = code.strip().upper()
    agency = session.scalar(select(Agency).where(Agency.code == key)) if key.isprintable() else None
    if agency is None:
        raise NotFound("agency", code, "see: govmail agency list")
    return agency


def list_agencies(session: Session, *, parent: str | None = None, level: str | None = None) -> list[Agency]:
    """Agencies ordered by code, optionally only the children of ``parent`` or one ``level``."""
    query = select(Agency).order_by(Agency.code)
    if parent is not None:
        query = query.where(Agency.parent_id == get_agency(session, parent).id)
    if level is not None:
        query = query.where(Agency.level == level)
    return list(session.scalars(query))


def subtree_ids(session: Session, agency: Agency) -> set[str]:
    """Ids of ``agency`` and every agency below it."""
    children: dict[str | None, list[str]] = {}
    for agency_id, parent_id in session.execute(select(Agency.id, Agency.parent_id)):
        children.setdefault(parent_id, []).append(agency_id)
    found, todo = set(), [agency.id]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, ()))
    return found


@dataclass
class AgencyFields:
    """Validated values for an agency (None: not given)."""

    code: str
    name: str | None = None
    level: str | None = None
    parent: str | None = None
    domain: str | None = None
    short_name: str | None = None
    staff_count: int | None = None
    status: str | None = None
    given: set[str] = field(default_factory=set)


def parse_fields(settings: Settings, values: Mapping[str, Any]) -> AgencyFields:
    """Validate raw values (strings from a CLI or CSV row) into :class:`AgencyFields`.

    Empty strings count as not given. :raises InvalidInput: naming the first bad field.
    """
    def given(key: str) -> Any:
        value = values.get(key)
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    fields = AgencyFields(code=validate_code(str(values.get("code") or ""), "code"))
    if (name := given("name")) is not None:
        fields.name = clean_text(str(name), "name")
    if (level := given("level")) is not None:
        level = str(level).strip().lower()
        if level not in settings.agencies.levels:
            raise InvalidInput("level", level, "is not a configured level",
                               f"use one of: {', '.join(settings.agencies.levels)}")
        fields.level = level
    if (parent := given("parent")) is not None:
        fields.parent = validate_code(str(parent), "parent")
    if (domain := given("domain")) is not None:
        fields.domain = validate_domain(str(domain).strip(), "domain")
    if (short := given("short_name")) is not None:
        fields.short_name = validate_local_part(str(short).strip(), "short_name")
    if (staff := given("staff_count")) is not None:
        try:
            fields.staff_count = int(str(staff).strip())
        except ValueError:
            raise InvalidInput("staff_count", staff, "is not a whole number") from None
        if fields.staff_count < 0:
            raise InvalidInput("staff_count", staff, "is negative")
    if (status := given("status")) is not None:
        status = str(status).strip().lower()
        if status not in STATUSES:
            raise InvalidInput("status", status, "is not an agency status", "use active or inactive")
        fields.status = status
    fields.given = {k for k in ("name", "level", "parent", "domain", "short_name", "staff_count", "status")
                    if getattr(fields, k) is not None}
    return fields


def _check_level(settings: Settings, level: str, parent: Agency | None) -> None:
    levels = settings.agencies.levels
    if parent is not None and parent.level in levels and levels.index(level) < levels.index(parent.level):
        raise InvalidInput("level", level, f"is above its parent's level ({parent.level})",
                           "a child agency is at its parent's level or below")


def _reserve_short_name(session: Session, short_name: str, agency_code: str) -> None:
    taken = session.get(IssuedAddress, short_name)
    if taken is not None:
        raise Conflict(
            f"short_name {short_name!r} of agency {agency_code} is already used as an address "
            f"(choose another abbreviation)"
        )
    session.add(IssuedAddress(local_part=short_name, purpose="agency"))


def add_agency(session: Session, settings: Settings, actor: Actor, fields: AgencyFields) -> Agency:
    """Create an agency.

    The mail domain defaults to the parent's. The short name (abbreviation) is reserved as a
    local part so no account is ever given it.

    :raises Conflict: the code or short name is taken.
    :raises InvalidInput: missing name/level/domain, unknown parent, level above the parent's.
    :raises NotFound: the parent does not exist.
    """
    if session.scalar(select(Agency.id).where(Agency.code == fields.code)):
        raise Conflict(f"agency {fields.code} already exists (see: govmail agency show {fields.code})")
    if fields.name is None:
        raise InvalidInput("name", None, "is required", 'give the Vietnamese name, e.g. --name "Sở Nội vụ"')
    if fields.level is None:
        raise InvalidInput("level", None, "is required",
                           f"use one of: {', '.join(settings.agencies.levels)}")
    parent = get_agency(session, fields.parent) if fields.parent else None
    domain = fields.domain or (parent.domain if parent else None)
    if domain is None:
        raise InvalidInput("domain", None, "is required for a top-level agency", "e.g. --domain vinhphuc.gov.vn")
    _check_level(settings, fields.level, parent)
    if fields.short_name:
        _reserve_short_name(session, fields.short_name, fields.code)
    agency = Agency(
        code=fields.code, name=fields.name, level=fields.level, parent=parent, domain=domain,
        short_name=fields.short_name, staff_count=fields.staff_count, status=fields.status or "active",
    )
    session.add(agency)
    session.flush()
    audit.record(session, actor, "agency.add", "agency", agency.id, agency.code, None, snapshot(agency))
    outbox.enqueue(session, "agency", agency.id, "create")
    return agency


def update_agency(session: Session, settings: Settings, actor: Actor, fields: AgencyFields) -> bool:
    """Apply the given fields to an existing agency; True when anything changed.

    The domain of an agency is not changed here: existing addresses keep theirs.

    :raises NotFound: the agency or the new parent does not exist.
    :raises InvalidInput: a parent cycle or a level above the parent's.
    :raises Conflict: a short name already used as an address.
    """
    agency = get_agency(session, fields.code)
    before = snapshot(agency)
    if "parent" in fields.given and fields.parent != (agency.parent.code if agency.parent else None):
        parent = get_agency(session, fields.parent) if fields.parent else None
        if parent is not None and parent.id in subtree_ids(session, agency):
            raise InvalidInput("parent", fields.parent, "is this agency or one below it",
                               "an agency cannot be its own ancestor")
        agency.parent = parent
    for key in ("name", "level", "domain", "staff_count", "status"):
        if key in fields.given:
            setattr(agency, key, getattr(fields, key))
    if "short_name" in fields.given and fields.short_name != agency.short_name:
        _reserve_short_name(session, fields.short_name or "", agency.code)
        agency.short_name = fields.short_name
    _check_level(settings, agency.level, agency.parent)
    after = snapshot(agency)
    if after == before:
        return False
    agency.updated_at = utcnow()
    audit.record(session, actor, "agency.update", "agency", agency.id, agency.code, before, after)
    outbox.enqueue(session, "agency", agency.id)
    return True


@dataclass
class ImportResult:
    """Outcome of :func:`import_agencies`: one entry per row (line number, action, code, error)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.rows if r["action"] == "error")


def import_agencies(
    session: Session, settings: Settings, actor: Actor, rows: Iterable[tuple[int, Mapping[str, Any]]],
) -> ImportResult:
    """Create or update agencies from ``(line, values)`` rows, parents before children.

    Rows may come in any order. Each row is validated first; the caller commits only when
    ``result.failed == 0`` (an import is all or nothing).
    """
    result = ImportResult()
    parsed: list[tuple[int, AgencyFields]] = []
    for line, values in rows:
        try:
            parsed.append((line, parse_fields(settings, values)))
        except GovmailError as exc:
            result.rows.append({"line": line, "code": values.get("code"), "action": "error", "error": str(exc)})
    codes_in_file = {f.code for _, f in parsed}
    done: set[str] = set()
    pending = parsed
    while pending:
        later = []
        for line, fields in pending:
            if fields.parent and fields.parent in codes_in_file and fields.parent not in done:
                later.append((line, fields))
                continue
            try:
                with session.begin_nested():
                    exists = session.scalar(select(Agency.id).where(Agency.code == fields.code))
                    if exists:
                        action = "updated" if update_agency(session, settings, actor, fields) else "unchanged"
                    else:
                        add_agency(session, settings, actor, fields)
                        action = "created"
                result.rows.append({"line": line, "code": fields.code, "action": action, "error": ""})
            except GovmailError as exc:
                result.rows.append({"line": line, "code": fields.code, "action": "error", "error": str(exc)})
            done.add(fields.code)
        if len(later) == len(pending):  # a cycle among parents in the file
            for line, fields in later:
                result.rows.append({"line": line, "code": fields.code, "action": "error",
                                    "error": f"parent {fields.parent} forms a cycle in the file"})
            break
        pending = later
    result.rows.sort(key=lambda r: r["line"])
    return result
