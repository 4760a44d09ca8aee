"""SQL rows -> the LDAP entries that publish them, and the changes that bring an entry up to date.

Only the attributes listed in ``MANAGED`` belong to govmail; anything else an administrator puts on
an entry (a photo, a posixAccount) is left alone. Object classes are only ever added.

Bound, valid certificates are published as ``userCertificate;binary`` (DER bytes; inetOrgPerson
and govmailAgency allow it) while their holder is live: an active or suspended account, an active
agency. Servers return the attribute as ``userCertificate;binary`` or ``userCertificate``; both
are compared under the bare name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from directory.ldap import Directory
from provisioning.addresses import split_full_name
from provisioning.models import Account, Agency, Certificate

ACCOUNT_CLASSES = ("top", "person", "organizationalPerson", "inetOrgPerson", "govmailAccount")
AGENCY_CLASSES = ("top", "govmailAgency")

CERTIFICATE_ATTR = "userCertificate;binary"
ACCOUNT_ATTRS = (
    "uid", "cn", "sn", "givenName", "displayName", "mail", "govmailAlias", "title", "telephoneNumber",
    "employeeNumber", "ou", "userPassword", "govmailId", "govmailStatus", "govmailAgencyCode",
    "govmailQuota", "govmailMustChangePassword", "govmailMailboxKind", CERTIFICATE_ATTR,
)
AGENCY_ATTRS = (
    "o", "govmailId", "govmailAgencyCode", "govmailParentAgencyCode", "govmailAgencyLevel",
    "govmailShortName", "govmailMailDomain", "govmailStatus", CERTIFICATE_ATTR,
)
BINARY = {"usercertificate"}  # compared as bytes, never decoded
MANAGED = {"account": ACCOUNT_ATTRS, "agency": AGENCY_ATTRS}
# What a reconcile reads back; userPassword is compared but never printed.
READ_ATTRS = sorted({"objectClass", *ACCOUNT_ATTRS, *AGENCY_ATTRS})


@dataclass(frozen=True)
class Desired:
    """The entry an object should have: where, which classes, which managed attribute values."""

    kind: str  # "account" | "agency"
    object_id: str
    label: str  # address or agency code, for reports
    dn: str
    classes: tuple[str, ...]
    attrs: Mapping[str, tuple[str | bytes, ...]]


def published_certificates(session: Session, kind: str, ids: Iterable[str] | None = None) -> dict[str, list[bytes]]:
    """DER of the bound, valid certificates of each account or agency (of those in ``ids``, or of
    all); whether the holder is live is decided by :func:`account_entry` / :func:`agency_entry`."""
    column = Certificate.account_id if kind == "account" else Certificate.agency_id
    query = (select(column, Certificate.der).where(column.is_not(None), Certificate.unbound_at.is_(None),
                                                   Certificate.status == "valid").order_by(Certificate.fingerprint))
    wanted = None if ids is None else list(ids)
    chunks = [None] if wanted is None else [wanted[i:i + 500] for i in range(0, len(wanted), 500)]
    out: dict[str, list[bytes]] = {}
    for chunk in chunks:
        for holder_id, der in session.execute(query if chunk is None else query.where(column.in_(chunk))):
            out.setdefault(holder_id, []).append(der)
    return out


def _values(**attrs: object) -> dict[str, tuple[str | bytes, ...]]:
    out: dict[str, tuple[str | bytes, ...]] = {}
    for key, value in attrs.items():
        if value is None or value == "" or value == ():
            out[key] = ()
        elif isinstance(value, (list, tuple)):
            out[key] = tuple(str(v) for v in value)
        else:
            out[key] = (str(value),)
    return out


def account_entry(directory: Directory, account: Account, certificates: Sequence[bytes] = ()) -> Desired:
    """The entry for a live (not purged) account; ``certificates`` (DER) are published only while
    it is active or suspended."""
    family, middles, given = split_full_name(account.full_name) if account.kind == "personal" else ("", (), "")
    attrs = _values(
        uid=account.local_part, cn=account.full_name, sn=family or account.full_name,
        givenName=" ".join((*middles, given)).strip() or None, displayName=account.full_name,
        mail=account.address, govmailAlias=[a.address for a in account.aliases], title=account.title,
        telephoneNumber=account.phone, employeeNumber=account.employee_code, ou=account.agency.name,
        userPassword=account.password_hash, govmailId=account.id, govmailStatus=account.status,
        govmailAgencyCode=account.agency.code, govmailQuota=account.quota_mb,
        govmailMustChangePassword="TRUE" if account.must_change_password else "FALSE",
        govmailMailboxKind=account.kind,
    )
    attrs[CERTIFICATE_ATTR] = tuple(certificates) if account.status in ("active", "suspended") else ()
    return Desired("account", account.id, account.address, directory.account_dn(account.local_part),
                   ACCOUNT_CLASSES, attrs)


def agency_entry(directory: Directory, agency: Agency, certificates: Sequence[bytes] = ()) -> Desired:
    """The entry for an agency; ``certificates`` (DER) are published only while it is active."""
    attrs = _values(
        o=agency.name, govmailId=agency.id, govmailAgencyCode=agency.code,
        govmailParentAgencyCode=agency.parent.code if agency.parent else None,
        govmailAgencyLevel=agency.level, govmailShortName=agency.short_name,
        govmailMailDomain=agency.domain, govmailStatus=agency.status,
    )
    attrs[CERTIFICATE_ATTR] = tuple(certificates) if agency.status == "active" else ()
    return Desired("agency", agency.id, agency.code, directory.agency_dn(agency.code), AGENCY_CLASSES, attrs)


def _bare(name: str) -> str:
    return name.split(";")[0].lower()


def decode(raw: Mapping[str, list[bytes]]) -> dict[str, tuple[str | bytes, ...]]:
    """ldap3 raw attributes -> {lower-case name without options: values as text (bytes for
    binary attributes such as certificates)}."""
    return {_bare(k): tuple(vals) if _bare(k) in BINARY else tuple(v.decode("utf-8", "replace") for v in vals)
            for k, vals in raw.items()}


def differences(desired: Desired, current: Mapping[str, tuple[str | bytes, ...]]) -> dict[str, list]:
    """ldap3 ``modify`` changes that make ``current`` (from :func:`decode`) match ``desired``.

    Empty when the entry is up to date. Classes are added, never removed.
    """
    changes: dict[str, list] = {}
    have_classes = {c.lower() for c in current.get("objectclass", ())}
    missing = [c for c in desired.classes if c.lower() not in have_classes]
    if missing:
        changes["objectClass"] = [("MODIFY_ADD", missing)]
    for name, values in desired.attrs.items():
        if name == "uid":  # the RDN value: renamed through modify_dn, not modify
            continue
        have = current.get(_bare(name), ())
        if sorted(have) != sorted(values):
            changes[name] = [("MODIFY_REPLACE", list(values))]
    return changes


def add_attributes(desired: Desired) -> dict[str, list[str]]:
    attrs = {k: list(v) for k, v in desired.attrs.items() if v}
    attrs["objectClass"] = list(desired.classes)
    return attrs
