"""Who may do what in the portal and the API.

A :class:`Principal` is the signed-in person (or an API token) with the set of agencies they
administer, subtrees expanded: a province administrator administers every agency, an agency
administrator their agency and those below it, an official none (only their own account). Every
portal page and API route asks the principal before it reads or changes anything.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning import audit
from provisioning.accounts import get_account
from provisioning.agencies import get_agency, subtree_ids
from provisioning.audit import Actor
from provisioning.errors import Conflict, InvalidInput, NotFound
from provisioning.models import Account, Agency, ApiToken, PortalRole, utcnow

PROVINCE, AGENCY = "province_admin", "agency_admin"
TOKEN_PREFIX = "gmt_"


class Forbidden(Exception):
    """The principal may not see or change this object. Shown as 'not found' (404), so guessing
    ids tells nothing."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: an account (``account_id``) or an API token (``token_id``)."""

    name: str
    source: str  # portal | api
    account_id: str | None = None
    token_id: str | None = None
    province: bool = False
    agencies: frozenset[str] = frozenset()  # ids administered, subtrees included
    client: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.province or bool(self.agencies)

    def administers(self, agency_id: str) -> bool:
        return self.province or agency_id in self.agencies

    def require_agency(self, agency_id: str) -> None:
        """:raises Forbidden: not an administrator of this agency."""
        if not self.administers(agency_id):
            raise Forbidden()

    def require_province(self) -> None:
        """:raises Forbidden: not a province administrator."""
        if not self.province:
            raise Forbidden()

    def actor(self) -> Actor:
        return Actor(name=self.name, source=self.source, client=self.client)


def principal_for_account(session: Session, account: Account, client: str | None = None) -> Principal:
    """The principal of a signed-in account, with the agencies its roles cover."""
    province, ids = False, set()
    for role in session.scalars(select(PortalRole).where(PortalRole.account_id == account.id)):
        if role.role == PROVINCE:
            province = True
        elif role.agency is not None and role.agency.status == "active":
            ids |= subtree_ids(session, role.agency)
    return Principal(name=account.address, source="portal", account_id=account.id, province=province,
                     agencies=frozenset(ids), client=client)


def is_admin(session: Session, account_id: str) -> bool:
    """Whether the account holds any administrator role (administrators must use TOTP)."""
    return session.scalar(select(PortalRole.id).where(PortalRole.account_id == account_id).limit(1)) is not None


def roles_of(session: Session, account_id: str) -> list[PortalRole]:
    return list(session.scalars(select(PortalRole).where(PortalRole.account_id == account_id).order_by(PortalRole.id)))


def list_roles(session: Session) -> list[PortalRole]:
    return list(session.scalars(select(PortalRole).order_by(PortalRole.role, PortalRole.id)))


def grant(session: Session, actor: Actor, address: str, agency_code: str | None) -> PortalRole:
    """Make the account a province administrator (``agency_code`` None) or an agency administrator.

    :raises NotFound: no such account or agency. :raises Conflict: the account is not an active
    personal account, or already holds the role.
    """
    account = get_account(session, address)
    if account.status != "active" or account.kind != "personal":
        raise Conflict(f"{account.address} is a {account.status} {account.kind} account; "
                       "only an active personal account can be an administrator")
    agency = get_agency(session, agency_code) if agency_code else None
    role_name = AGENCY if agency else PROVINCE
    for existing in roles_of(session, account.id):
        if existing.role == role_name and existing.agency_id == (agency.id if agency else None):
            raise Conflict(f"{account.address} is already {_label(existing)}")
    role = PortalRole(account=account, role=role_name, agency=agency, granted_by=actor.name)
    session.add(role)
    session.flush()
    audit.record(session, actor, "role.grant", "account", account.id, account.address, None,
                 {"role": role_name, "agency": agency.code if agency else None})
    return role


def revoke(session: Session, actor: Actor, address: str, agency_code: str | None) -> None:
    """Take a role away. :raises NotFound: the account does not hold it."""
    account = get_account(session, address)
    agency_id = get_agency(session, agency_code).id if agency_code else None
    role_name = AGENCY if agency_code else PROVINCE
    role = session.scalar(select(PortalRole).where(
        PortalRole.account_id == account.id, PortalRole.role == role_name,
        PortalRole.agency_id.is_(None) if agency_id is None else PortalRole.agency_id == agency_id))
    if role is None:
        raise NotFound("role", f"{role_name} {agency_code or ''}".strip() + f" of {account.address}")
    session.delete(role)
    audit.record(session, actor, "role.revoke", "account", account.id, account.address,
                 {"role": role_name, "agency": agency_code}, None)


def _label(role: PortalRole) -> str:
    return "province administrator" if role.role == PROVINCE else f"administrator of {role.agency.code}"


def province_admin_addresses(session: Session) -> list[str]:
    """Addresses of the active province administrators (notified of new requests)."""
    rows = session.scalars(select(Account).join(PortalRole, PortalRole.account_id == Account.id)
                           .where(PortalRole.role == PROVINCE, Account.status == "active"))
    return sorted({a.address for a in rows})


# --- API tokens ------------------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, principal: Principal, agency_code: str, name: str) -> tuple[ApiToken, str]:
    """A new API token for an agency the principal administers; returns it and the secret (shown once).

    :raises InvalidInput: empty or too long a name. :raises NotFound: no such agency.
    :raises Forbidden: the principal does not administer it.
    """
    name = name.strip()
    if not name or len(name) > 128 or not name.isprintable():
        raise InvalidInput("name", None, "must be 1 to 128 printable characters", "e.g. 'HR system'")
    agency = get_agency(session, agency_code)
    principal.require_agency(agency.id)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=name, token_hash=_token_hash(secret), agency=agency, created_by=principal.name)
    session.add(token)
    session.flush()
    audit.record(session, principal.actor(), "token.create", "agency", agency.id, agency.code, None,
                 {"token": token.id, "name": name})
    return token, secret


def list_tokens(session: Session, principal: Principal) -> list[ApiToken]:
    """The tokens of the agencies the principal administers, newest first."""
    tokens = session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc()))
    return [t for t in tokens if principal.administers(t.agency_id)]


def revoke_token(session: Session, principal: Principal, token_id: str) -> ApiToken:
    """:raises NotFound: no such token, or not one the principal administers."""
    token = session.get(ApiToken, token_id)
    if token is None or not principal.administers(token.agency_id):
        raise NotFound("API token", token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(session, principal.actor(), "token.revoke", "agency", token.agency_id, token.agency.code,
                     {"token": token.id, "name": token.name}, None)
    return token


def principal_for_token(session: Session, secret: str, client: str | None = None,
                        now: datetime | None = None) -> Principal | None:
    """The principal of a bearer token, or None for an unknown or revoked one."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(secret)))
    if token is None or token.revoked_at is not None or token.agency.status != "active":
        return None
    now = now or utcnow()
    if token.last_used_at is None or now - token.last_used_at > timedelta(seconds=60):  # not a write per call
        token.last_used_at = now
    return Principal(name=f"token:{token.name}", source="api", token_id=token.id,
                     agencies=frozenset(subtree_ids(session, token.agency)), client=client)


def agency_in_scope(session: Session, principal: Principal, code: str) -> Agency:
    """The agency, when the principal administers it.

    :raises NotFound: no such agency, or one the principal does not administer (the same answer).
    """
    try:
        agency = get_agency(session, code)
    except NotFound:
        raise NotFound("agency", code) from None
    if not principal.administers(agency.id):
        raise NotFound("agency", code)
    return agency


def account_in_scope(session: Session, principal: Principal, address: str) -> Account:
    """The account, when the principal administers its agency or it is the principal's own.

    :raises NotFound: no such account, or one outside the principal's reach (the same answer).
    """
    try:
        account = get_account(session, address)
    except NotFound:
        raise NotFound("account", address) from None
    if account.id != principal.account_id and not principal.administers(account.agency_id):
        raise NotFound("account", address)
    return account
