"""Accounts: mailbox + identity of an official (or a shared agency mailbox) and its lifecycle.

Lifecycle: ``active`` <-> ``suspended``; ``retire`` -> ``retired`` (login refused, mailbox kept
for the retention period) -> ``purge`` -> ``purged`` (directory entry removed, row and history
kept). An address, once issued, is never issued again. Every function adds its SQL rows, an audit
row and a directory-outbox row to the caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from provisioning import audit, outbox, passwords, spans
from provisioning.addresses import (
    DEFAULT_RESERVED, base_local_part, normalize_full_name, numbered_candidates, split_address,
    validate_domain, validate_local_part,
)
from provisioning.agencies import clean_text, get_agency, subtree_ids
from provisioning.audit import Actor
from provisioning.config import Settings
from provisioning.errors import Conflict, InvalidInput, NotFound
from provisioning.models import Account, Agency, Alias, IssuedAddress, utcnow

STATUSES = ("active", "suspended", "retired", "purged")
KINDS = ("personal", "shared")
PHONE = re.compile(r"^\+?[0-9][0-9 .-]{5,20}$")


VIEW_COLUMNS = ("local_part", "domain", "full_name", "kind", "status", "title", "phone", "employee_code",
                "personal_email", "quota_mb", "must_change_password", "created_at", "retired_at", "purge_after")


def view(values: Mapping[str, Any], agency_code: str, aliases: Sequence[str]) -> dict[str, Any]:
    """An account's column values as shown to people and recorded in the audit log (never the
    password hash). ``values`` holds at least :data:`VIEW_COLUMNS`."""
    def when(key: str) -> str | None:
        return values[key].isoformat(timespec="seconds") if values[key] else None

    return {
        "address": f"{values['local_part']}@{values['domain']}",
        "full_name": values["full_name"],
        "agency": agency_code,
        "kind": values["kind"],
        "status": values["status"],
        "title": values["title"],
        "phone": values["phone"],
        "employee_code": values["employee_code"],
        "personal_email": values["personal_email"],
        "quota_mb": values["quota_mb"],
        "aliases": list(aliases),
        "must_change_password": values["must_change_password"],
        "created_at": when("created_at"),
        "retired_at": when("retired_at"),
        "purge_after": when("purge_after"),
    }


def snapshot(account: Account) -> dict[str, Any]:
    """:func:`view` of an account row."""
    return view({c: getattr(account, c) for c in VIEW_COLUMNS}, account.agency.code,
                [a.address for a in account.aliases])


def _changed(session: Session, actor: Actor, action: str, account: Account, before: dict[str, Any] | None) -> None:
    account.updated_at = utcnow()
    session.flush()
    spans.track(session, account, before, account.updated_at)
    audit.record(session, actor, action, "account", account.id, account.address, before, snapshot(account))
    outbox.enqueue(session, "account", account.id, "create" if before is None else None)


def get_account(session: Session, address: str) -> Account:
    """The account with this address, alias, or unique local part.

    :raises NotFound: no such account.
    """
    key = address.strip().lower()
    if not key.isprintable():  # no address holds a control character (and PostgreSQL text cannot hold NUL)
        raise NotFound("account", address, "see: govmail account list --agency CODE")
    if "@" in key:
        local, domain = key.split("@", 1)
        account = session.scalar(select(Account).where(Account.local_part == local, Account.domain == domain))
        if account is None:
            account = session.scalar(select(Account).join(Alias).where(Alias.address == key))
    else:
        account = session.scalar(select(Account).where(Account.local_part == key))
    if account is None:
        raise NotFound("account", address, "see: govmail account list --agency CODE")
    return account


def reserved_names(settings: Settings) -> frozenset[str]:
    return DEFAULT_RESERVED | frozenset(n.lower() for n in settings.accounts.reserved)


def next_free_local_part(session: Session, settings: Settings, full_name: str) -> str:
    """The first free address for ``full_name`` under the configured style (lamnt, lamnt2, ...)."""
    base = base_local_part(full_name, settings.accounts.address_style)  # type: ignore[arg-type]
    # One query for every issued lamnt* instead of one per candidate (common names reach lamnt400).
    taken = reserved_names(settings) | set(session.scalars(
        select(IssuedAddress.local_part).where(IssuedAddress.local_part.startswith(base[:40], autoescape=True))))
    for candidate in numbered_candidates(base):
        if candidate not in taken:
            return candidate
    raise AssertionError("numbered_candidates is endless")


def _hosted_domains(session: Session) -> set[str]:
    return set(session.scalars(select(Agency.domain).distinct()))


def _explicit_address(session: Session, settings: Settings, value: str, agency: Agency, field: str) -> tuple[str, str]:
    if "@" in value:
        local, domain = split_address(value, field)
        if domain not in _hosted_domains(session):
            raise InvalidInput(field, value, f"domain {domain} is not hosted here",
                               f"use the agency's domain {agency.domain}")
    else:
        local, domain = validate_local_part(value, field), agency.domain
    if local in reserved_names(settings):
        raise Conflict(f"{field} {value!r}: {local!r} is a reserved name (choose another)")
    taken = session.get(IssuedAddress, local)
    if taken is not None:
        raise Conflict(
            f"{field} {value!r}: {local!r} was already issued ({taken.purpose}) and is never re-issued "
            f"(choose another)"
        )
    return local, domain


def _optional_text(value: str | None, field: str, max_len: int) -> str | None:
    return None if value is None or not value.strip() else clean_text(value, field, max_len)


def clean_phone(value: str | None) -> str | None:
    """A phone number as stored, or None. :raises InvalidInput: not a phone number."""
    if value is None or not value.strip():
        return None
    phone = " ".join(value.split())
    if not PHONE.match(phone):
        raise InvalidInput("phone", value, "is not a phone number", "digits, spaces, '.', '-' and a leading '+'")
    return phone


def clean_personal_email(value: str | None) -> str | None:
    """A personal (recovery) address as stored, or None. :raises InvalidInput: not an address."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    local, at, domain = text.rpartition("@")
    problem = InvalidInput("personal_email", value, "is not an email address", "write it like ten@gmail.com")
    if not at or not local or len(text) > 254 or any(c.isspace() or c in '<>,;"()[]\\' for c in local):
        raise problem
    try:
        domain = validate_domain(domain, "personal_email")
    except InvalidInput:
        raise problem from None
    return f"{local}@{domain}"


def clean_employee_code(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    return clean_text(value, "employee_code", 64)


def check_quota(quota_mb: int) -> int:
    """The quota if it is in range. :raises InvalidInput: negative or absurd."""
    if quota_mb < 0 or quota_mb > 10_000_000:
        raise InvalidInput("quota_mb", quota_mb, "is out of range", "give MiB between 0 and 10000000")
    return quota_mb


def _ensure_employee_code_free(session: Session, code: str | None, account_id: str | None = None) -> None:
    if code is None:
        return
    other = session.scalar(select(Account).where(Account.employee_code == code))
    if other is not None and other.id != account_id:
        raise Conflict(f"employee_code {code!r} already belongs to {other.address} (each official has one account)")


@dataclass(frozen=True)
class NewAccount:
    """What a person asks for when creating an account; strings as typed (validated on create)."""

    agency: str
    full_name: str
    title: str | None = None
    phone: str | None = None
    employee_code: str | None = None
    personal_email: str | None = None
    address: str | None = None
    kind: str = "personal"
    quota_mb: int | None = None
    aliases: Sequence[str] = ()


def create_account(
    session: Session, settings: Settings, actor: Actor, new: NewAccount, password: str | None = None,
) -> tuple[Account, str | None]:
    """Create an account and return it with its generated initial password (None when ``password`` was given).

    The address is ``new.address`` when given, else generated from the name (lamnt, lamnt2 ...).
    A generated password forces a change at first use; a chosen one is checked against the policy.

    :raises InvalidInput: a bad field (name, phone, address, quota, password ...).
    :raises NotFound: the agency does not exist.
    :raises Conflict: the agency is inactive, or the address/employee code is taken.
    """
    agency = get_agency(session, new.agency)
    if agency.status != "active":
        raise Conflict(f"agency {agency.code} is {agency.status}; accounts can only be created in active agencies")
    if new.kind not in KINDS:
        raise InvalidInput("kind", new.kind, "is not an account kind", "use personal or shared")
    full_name = normalize_full_name(new.full_name) if new.kind == "personal" else clean_text(new.full_name, "full_name", 128)
    employee_code = clean_employee_code(new.employee_code)
    _ensure_employee_code_free(session, employee_code)
    if new.address:
        local, domain = _explicit_address(session, settings, new.address, agency, "address")
    elif new.kind == "shared":
        raise InvalidInput("address", None, "is required for a shared mailbox", "e.g. --address vanthu")
    else:
        local, domain = next_free_local_part(session, settings, full_name), agency.domain
    initial = None
    if password is None:
        initial = passwords.generate_initial(settings.passwords.initial_length)
        password_hash = passwords.hash_initial(initial)
    else:
        passwords.check_policy(password, settings.passwords, full_name=full_name, local_part=local)
        password_hash = passwords.hash_chosen(password, settings.passwords)
    account = Account(
        local_part=local, domain=domain, kind=new.kind, full_name=full_name, agency=agency,
        title=_optional_text(new.title, "title", 128), phone=clean_phone(new.phone),
        employee_code=employee_code, personal_email=clean_personal_email(new.personal_email),
        quota_mb=check_quota(settings.accounts.default_quota_mb if new.quota_mb is None else new.quota_mb),
        password_hash=password_hash, must_change_password=password is None, status="active",
    )
    session.add(account)
    session.flush()
    session.add(IssuedAddress(local_part=local, account_id=account.id, purpose="account"))
    for alias in new.aliases:
        _add_alias(session, settings, account, alias)
    _changed(session, actor, "account.create", account, None)
    return account, initial


def _add_alias(session: Session, settings: Settings, account: Account, value: str) -> None:
    local, domain = _explicit_address(session, settings, value, account.agency, "alias")
    session.add(IssuedAddress(local_part=local, account_id=account.id, purpose="alias"))
    account.aliases.append(Alias(address=f"{local}@{domain}"))


def _end_delegations(session: Session, actor: Actor, account: Account) -> None:
    from provisioning.delegations import end_stale  # that module builds on this one

    end_stale(session, actor, account)


def _require(account: Account, allowed: tuple[str, ...], action: str) -> None:
    if account.status not in allowed:
        raise Conflict(f"account {account.address} is {account.status}; cannot {action} it")


def suspend(session: Session, settings: Settings, actor: Actor, address: str) -> Account:
    """Suspend an active account: login refused, mail refused, entry kept.

    :raises Conflict: the account is not active.
    """
    account = get_account(session, address)
    _require(account, ("active",), "suspend")
    before = snapshot(account)
    account.status, account.suspended_at = "suspended", utcnow()
    _changed(session, actor, "account.suspend", account, before)
    return account


def restore(session: Session, settings: Settings, actor: Actor, address: str) -> Account:
    """Make a suspended or retired (not yet purged) account active again.

    :raises Conflict: the account is active or already purged.
    """
    account = get_account(session, address)
    _require(account, ("suspended", "retired"), "restore")
    if account.agency.status != "active":
        raise Conflict(f"agency {account.agency.code} is inactive; transfer the account first")
    before = snapshot(account)
    account.status = "active"
    account.suspended_at = account.retired_at = account.purge_after = None
    _changed(session, actor, "account.restore", account, before)
    return account


def transfer(session: Session, settings: Settings, actor: Actor, address: str, agency_code: str) -> Account:
    """Move an account to another agency; the address stays the same.

    :raises NotFound: the agency does not exist. :raises Conflict: purged account, same or inactive agency.
    """
    account = get_account(session, address)
    _require(account, ("active", "suspended", "retired"), "transfer")
    target = get_agency(session, agency_code)
    if target.id == account.agency_id:
        raise Conflict(f"account {account.address} already belongs to {target.code}")
    if target.status != "active":
        raise Conflict(f"agency {target.code} is {target.status}")
    before = snapshot(account)
    account.agency = target
    _changed(session, actor, "account.transfer", account, before)
    _end_delegations(session, actor, account)
    return account


def rename(
    session: Session, settings: Settings, actor: Actor, address: str, *,
    full_name: str | None = None, new_address: str | None = None,
) -> Account:
    """Correct the full name and/or change the address.

    A changed address keeps the old one as an alias, so mail already addressed still arrives.

    :raises InvalidInput: bad name or address. :raises Conflict: address taken, purged account.
    """
    account = get_account(session, address)
    _require(account, ("active", "suspended", "retired"), "rename")
    if full_name is None and new_address is None:
        raise InvalidInput("name", None, "nothing to change", "give --name and/or --address")
    before = snapshot(account)
    if full_name is not None:
        account.full_name = normalize_full_name(full_name) if account.kind == "personal" else clean_text(full_name, "full_name", 128)
    if new_address is not None:
        old = account.address
        local, domain = _explicit_address(session, settings, new_address, account.agency, "address")
        session.add(IssuedAddress(local_part=local, account_id=account.id, purpose="account"))
        account.local_part, account.domain = local, domain
        account.aliases.append(Alias(address=old))
    _changed(session, actor, "account.rename", account, before)
    return account


def update(
    session: Session, settings: Settings, actor: Actor, address: str, *, title: str | None = None,
    phone: str | None = None, employee_code: str | None = None, personal_email: str | None = None,
    quota_mb: int | None = None, add_aliases: Sequence[str] = (), remove_aliases: Sequence[str] = (),
) -> bool:
    """Change descriptive fields, quota and aliases; an empty string clears a field. True if anything changed.

    :raises InvalidInput: a bad value. :raises Conflict: taken alias or employee code. :raises NotFound: unknown alias.
    """
    account = get_account(session, address)
    _require(account, ("active", "suspended"), "update")
    before = snapshot(account)
    if title is not None:
        account.title = _optional_text(title, "title", 128)
    if phone is not None:
        account.phone = clean_phone(phone)
    if employee_code is not None:
        code = clean_employee_code(employee_code)
        _ensure_employee_code_free(session, code, account.id)
        account.employee_code = code
    if personal_email is not None:
        account.personal_email = clean_personal_email(personal_email)
    if quota_mb is not None:
        account.quota_mb = check_quota(quota_mb)
    for value in remove_aliases:
        match = [a for a in account.aliases if a.address == value.strip().lower()]
        if not match:
            raise NotFound("alias", value, f"aliases of {account.address}: {', '.join(a.address for a in account.aliases) or 'none'}")
        account.aliases.remove(match[0])  # the local part stays issued: never re-used
    for value in add_aliases:
        _add_alias(session, settings, account, value)
    if snapshot(account) == before:
        return False
    _changed(session, actor, "account.update", account, before)
    return True


def reset_password(
    session: Session, settings: Settings, actor: Actor, address: str, password: str | None = None,
) -> tuple[Account, str | None]:
    """Set a new password: generated (returned, change forced at next use) or the chosen ``password``.

    :raises InvalidInput: the chosen password breaks the policy. :raises Conflict: retired or purged account.
    """
    account = get_account(session, address)
    _require(account, ("active", "suspended"), "reset the password of")
    before = snapshot(account)
    initial = None
    if password is None:
        initial = passwords.generate_initial(settings.passwords.initial_length)
        account.password_hash = passwords.hash_initial(initial)
    else:
        passwords.check_policy(password, settings.passwords, full_name=account.full_name, local_part=account.local_part)
        account.password_hash = passwords.hash_chosen(password, settings.passwords)
    account.must_change_password = password is None
    _changed(session, actor, "account.reset_password", account, before)
    return account, initial


def retire(session: Session, settings: Settings, actor: Actor, address: str, now: datetime | None = None) -> Account:
    """Retire an account: login and mail refused now, purged after the retention period.

    :raises Conflict: already retired or purged.
    """
    account = get_account(session, address)
    _require(account, ("active", "suspended"), "retire")
    before = snapshot(account)
    now = now or utcnow()
    account.status, account.retired_at = "retired", now
    account.purge_after = now + timedelta(days=settings.accounts.retention_days)
    _changed(session, actor, "account.retire", account, before)
    _end_delegations(session, actor, account)
    return account


def purge_due(session: Session, settings: Settings, actor: Actor, now: datetime | None = None) -> list[Account]:
    """Purge every retired account whose retention period has ended; returns them.

    The directory entry is removed; the SQL row, its aliases and its history stay, and the
    addresses stay issued.
    """
    now = now or utcnow()
    due = list(session.scalars(
        select(Account).where(Account.status == "retired", Account.purge_after <= now).order_by(Account.local_part)
    ))
    for account in due:
        before = snapshot(account)
        account.status, account.purged_at = "purged", now
        _changed(session, actor, "account.purge", account, before)
    return due


def list_accounts(
    session: Session, *, agency: str | None = None, include_subagencies: bool = False,
    status: str | None = None, search: str | None = None, limit: int | None = None, offset: int = 0,
) -> list[Account]:
    """Accounts ordered by address, filtered by agency (optionally with the agencies below), status
    and a search text matched against address and name."""
    query = select(Account).order_by(Account.local_part)
    if agency is not None:
        root = get_agency(session, agency)
        ids = subtree_ids(session, root) if include_subagencies else {root.id}
        query = query.where(Account.agency_id.in_(ids))
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput("status", status, "is not an account status", f"use one of: {', '.join(STATUSES)}")
        query = query.where(Account.status == status)
    if search:
        pattern = f"%{search.strip().lower()}%"
        query = query.where(or_(Account.local_part.like(pattern), func.lower(Account.full_name).like(pattern)))
    return list(session.scalars(query.offset(offset).limit(limit)))
