"""SQL rows -> the LDAP entries that publish them, and the changes that bring an entry up to date.

Only the attributes listed in ``MANAGED`` belong to govmail; anything else an administrator puts on
an entry (a photo, a posixAccount) is left alone. Object classes are only ever added.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from directory.ldap import Directory
from provisioning.addresses import split_full_name
from provisioning.models import Account, Agency

ACCOUNT_CLASSES = ("top", "person", "organizationalPerson", "inetOrgPerson", "govmailAccount")
AGENCY_CLASSES = ("top", "govmailAgency")

ACCOUNT_ATTRS = (
    "uid", "cn", "sn", "givenName", "displayName", "mail", "govmailAlias", "title", "telephoneNumber",
    "employeeNumber", "ou", "userPassword", "govmailId", "govmailStatus", "govmailAgencyCode",
    "govmailQuota", "govmailMustChangePassword", "govmailMailboxKind",
)
AGENCY_ATTRS = (
    "o", "govmailId", "govmailAgencyCode", "govmailParentAgencyCode", "govmailAgencyLevel",
    "govmailShortName", "govmailMailDomain", "govmailStatus",
)
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
    attrs: Mapping[str, tuple[str, ...]]


def _values(**attrs: object) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for key, value in attrs.items():
        if value is None or value == "" or value == ():
            out[key] = ()
        elif isinstance(value, (list, tuple)):
            out[key] = tuple(str(v) for v in value)
        else:
            out[key] = (str(value),)
    return out


def account_entry(directory: Directory, account: Account) -> Desired:
    """The entry for a live (not purged) account."""
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
    return Desired("account", account.id, account.address, directory.account_dn(account.local_part),
                   ACCOUNT_CLASSES, attrs)


def agency_entry(directory: Directory, agency: Agency) -> Desired:
    attrs = _values(
        o=agency.name, govmailId=agency.id, govmailAgencyCode=agency.code,
        govmailParentAgencyCode=agency.parent.code if agency.parent else None,
        govmailAgencyLevel=agency.level, govmailShortName=agency.short_name,
        govmailMailDomain=agency.domain, govmailStatus=agency.status,
    )
    return Desired("agency", agency.id, agency.code, directory.agency_dn(agency.code), AGENCY_CLASSES, attrs)


def decode(raw: Mapping[str, list[bytes]]) -> dict[str, tuple[str, ...]]:
    """ldap3 raw attributes -> {lower-case name: values as text}."""
    return {k.split(";")[0].lower(): tuple(v.decode("utf-8", "replace") for v in vals) for k, vals in raw.items()}


def differences(desired: Desired, current: Mapping[str, tuple[str, ...]]) -> dict[str, list]:
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
        have = current.get(name.lower(), ())
        if sorted(have) != sorted(values):
            changes[name] = [("MODIFY_REPLACE", list(values))]
    return changes


def add_attributes(desired: Desired) -> dict[str, list[str]]:
    attrs = {k: list(v) for k, v in desired.attrs.items() if v}
    attrs["objectClass"] = list(desired.classes)
    return attrs
