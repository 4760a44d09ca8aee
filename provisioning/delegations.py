"""Delegations: officials who may send as a shared (agency) mailbox, e.g. ``vanthu@`` for the clerk.

A delegation links a shared mailbox to a personal account of the same agency. The mail gateway lets
the official use the mailbox's address and aliases as sender while both are active. Delegations end
by themselves when either side is retired or the two no longer belong to the same agency (see
:func:`provisioning.accounts.end_delegations`); every grant and every end is in the audit log.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from provisioning import audit
from provisioning.accounts import get_account
from provisioning.audit import Actor
from provisioning.errors import Conflict, InvalidInput
from provisioning.models import Account, Delegation

LIVE = ("active", "suspended")


def _record(session: Session, actor: Actor, action: str, mailbox: Account, before: list[str]) -> None:
    session.flush()
    audit.record(session, actor, action, "account", mailbox.id, mailbox.address,
                 {"delegates": before}, {"delegates": delegate_addresses(session, mailbox)})


def delegate_addresses(session: Session, mailbox: Account) -> list[str]:
    """Addresses of the officials who may send as ``mailbox``, sorted."""
    rows = session.scalars(select(Delegation).where(Delegation.mailbox_id == mailbox.id))
    return sorted(d.delegate.address for d in rows)


def mailbox_addresses(session: Session, official: Account) -> list[str]:
    """Addresses of the shared mailboxes ``official`` may send as, sorted."""
    rows = session.scalars(select(Delegation).where(Delegation.delegate_id == official.id))
    return sorted(d.mailbox.address for d in rows)


def grant(session: Session, actor: Actor, mailbox_address: str, official_address: str) -> Account:
    """Let an official send as a shared mailbox of their agency; returns the mailbox.

    :raises NotFound: either address is unknown.
    :raises InvalidInput: the mailbox is not shared, or the official is not a personal account.
    :raises Conflict: either is retired or purged, they belong to different agencies, or the
        delegation exists already.
    """
    mailbox, official = get_account(session, mailbox_address), get_account(session, official_address)
    if mailbox.kind != "shared":
        raise InvalidInput("mailbox", mailbox.address, "is an official's own mailbox, not a shared one",
                           "delegate a shared agency mailbox (govmail account create --shared)")
    if official.kind != "personal":
        raise InvalidInput("official", official.address, "is a shared mailbox",
                           "name the personal account of the official who will send")
    for account in (mailbox, official):
        if account.status not in LIVE:
            raise Conflict(f"account {account.address} is {account.status}; it cannot be delegated")
    if mailbox.agency_id != official.agency_id:
        raise Conflict(f"{official.address} belongs to {official.agency.code} and {mailbox.address} to "
                       f"{mailbox.agency.code}; only officials of the mailbox's own agency can be delegated")
    if session.get(Delegation, (mailbox.id, official.id)) is not None:
        raise Conflict(f"{official.address} may already send as {mailbox.address}")
    before = delegate_addresses(session, mailbox)
    session.add(Delegation(mailbox_id=mailbox.id, delegate_id=official.id))
    _record(session, actor, "account.delegate", mailbox, before)
    return mailbox


def revoke(session: Session, actor: Actor, mailbox_address: str, official_address: str) -> Account:
    """End one delegation; returns the mailbox.

    :raises NotFound: either address is unknown. :raises Conflict: there is no such delegation.
    """
    mailbox, official = get_account(session, mailbox_address), get_account(session, official_address)
    found = session.get(Delegation, (mailbox.id, official.id))
    if found is None:
        raise Conflict(f"{official.address} is not delegated to send as {mailbox.address}")
    before = delegate_addresses(session, mailbox)
    session.delete(found)
    _record(session, actor, "account.undelegate", mailbox, before)
    return mailbox


def involving(session: Session, account: Account) -> list[Delegation]:
    """Every delegation where ``account`` is the mailbox or the official."""
    return list(session.scalars(select(Delegation).where(
        or_(Delegation.mailbox_id == account.id, Delegation.delegate_id == account.id))))


def end_stale(session: Session, actor: Actor, account: Account) -> None:
    """End the delegations of ``account`` that no longer hold after a change to it: either side
    retired or purged, or the two now in different agencies (a transfer)."""
    session.flush()
    for found in involving(session, account):
        mailbox, official = found.mailbox, found.delegate
        if mailbox.status in LIVE and official.status in LIVE and mailbox.agency_id == official.agency_id:
            continue
        before = delegate_addresses(session, mailbox)
        session.delete(found)
        _record(session, actor, "account.undelegate", mailbox, before)
