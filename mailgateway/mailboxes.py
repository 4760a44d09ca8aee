"""What the gateway knows about hosted mailboxes: a snapshot for RCPT checks, fresh reads for AUTH.

RCPT checks read an in-memory snapshot (refreshed in a worker thread every few seconds) so the
event loop never waits on the database; AUTH always reads the account afresh, so a suspension
takes effect at the next login, and counts failures in the database, so a lockout holds across
all gateway processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning import passwords
from provisioning.throttle import blocked, fail
from provisioning.config import GatewaySettings, PasswordSettings
from provisioning.errors import NotFound
from provisioning.accounts import get_account
from provisioning.models import Account, Agency, Alias, Delegation, utcnow


@dataclass(frozen=True)
class Mailbox:
    account_id: str
    agency_id: str
    address: str
    status: str


@dataclass(frozen=True)
class Login:
    """An authenticated official: who, and which sender addresses they may use: their own
    address and aliases, and those of the active shared mailboxes delegated to them
    (``shared`` maps each such address to its mailbox)."""

    account_id: str
    agency_id: str
    address: str
    senders: frozenset[str]
    shared: dict[str, Mailbox]
    must_change_password: bool = False

    def __repr__(self) -> str:
        return f"Login({self.address!r})"


@dataclass(frozen=True)
class Snapshot:
    domains: frozenset[str]
    mailboxes: dict[str, Mailbox]  # by address and by alias, lower-case

    def lookup(self, address: str) -> Mailbox | None:
        return self.mailboxes.get(address.lower())

    def hosted(self, address: str) -> bool:
        return address.rpartition("@")[2].lower() in self.domains


def load_snapshot(factory: sessionmaker[Session]) -> Snapshot:
    """Every live mailbox with its aliases, and the hosted domains (blocking: run it in a thread)."""
    with factory() as session:
        domains = frozenset(d.lower() for d in session.scalars(select(Agency.domain).distinct()))
        boxes: dict[str, Mailbox] = {}
        rows = session.execute(select(Account.id, Account.agency_id, Account.local_part, Account.domain, Account.status)
                               .where(Account.status != "purged"))
        by_id = {}
        for account_id, agency_id, local, domain, status in rows:
            box = Mailbox(account_id, agency_id, f"{local}@{domain}", status)
            boxes[box.address] = by_id[account_id] = box
        for account_id, alias in session.execute(select(Alias.account_id, Alias.address)):
            if account_id in by_id:
                boxes[alias.lower()] = by_id[account_id]
    # An agency's domain can change while its existing addresses keep theirs: still hosted.
    domains |= {address.rpartition("@")[2] for address in boxes}
    return Snapshot(domains, boxes)


def authenticate(factory: sessionmaker[Session], settings: GatewaySettings, login: str, password: str,
                 client: str) -> tuple[str, Login | None]:
    """(outcome, the official) for a login attempt from ``client``: ``ok`` with the official,
    ``failed`` (unknown login, wrong password, account not active: the caller must not tell
    which) or ``throttled`` (too many failures for this account or client; counted again).
    Failures are recorded for every gateway process to see. Blocking: run it in a thread.
    """
    with factory() as session, session.begin():
        account = None
        if "@" in login:  # a full address or alias: a bare local part is not a login
            try:
                account = get_account(session, login)
            except NotFound:
                pass
        right = passwords.verify(password, account.password_hash if account else _DUMMY_HASH)
        keys = {f"account:{account.id}" if account else f"login:{login}": settings.auth_failures_per_account,
                f"client:{client}": settings.auth_failures_per_client}
        now = utcnow()
        if blocked(session, keys, settings.auth_failure_window, now):
            fail(session, list(keys), settings.auth_failure_window, now)
            return "throttled", None
        if account is None or not right or account.status != "active":
            fail(session, list(keys), settings.auth_failure_window, now)
            return "failed", None
        shared: dict[str, Mailbox] = {}
        for delegation in session.scalars(select(Delegation).where(Delegation.delegate_id == account.id)):
            box = delegation.mailbox
            if box.status == "active":
                mailbox = Mailbox(box.id, box.agency_id, box.address, box.status)
                shared.update({address: mailbox for address in (box.address, *(a.address for a in box.aliases))})
        senders = frozenset({account.address, *(a.address for a in account.aliases), *shared})
        return "ok", Login(account.id, account.agency_id, account.address, senders, shared,
                           account.must_change_password)


# An unknown login costs what a chosen password costs, so timing does not tell which accounts exist.
_DUMMY_HASH = passwords.hash_chosen("not a password of anyone", PasswordSettings())
