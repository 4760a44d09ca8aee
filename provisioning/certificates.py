"""Certificate bindings: bind, unbind, show, list, re-check and CRL import.

A certificate (identified by issuer + serial and by its SHA-256 fingerprint) is bound to one
account or one agency. Only a valid certificate is bound; ``check`` re-validates every bound one
(dates, chain, revocation) and records what changed. A bound certificate whose status is
``valid`` is published on its holder's directory entry while the holder is live (an account that
is active or suspended, an active agency); the entry is re-rendered through the outbox whenever a
binding or a status changes. Every change adds its rows, an audit row and an outbox row to the
caller's transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from provisioning import audit, outbox, trust
from provisioning.accounts import get_account
from provisioning.agencies import get_agency
from provisioning.audit import Actor
from provisioning.errors import Conflict, InvalidInput, NotFound
from provisioning.models import Account, Agency, Certificate, RevocationList, RevokedSerial, utcnow

STATUSES = ("valid", "expired", "not_yet_valid", "revoked", "untrusted")
CHECK_ACTIONS = {"valid": "certificate.revalidate", "expired": "certificate.expire",
                 "not_yet_valid": "certificate.not_yet_valid", "revoked": "certificate.revoke",
                 "untrusted": "certificate.untrust"}
HEX = re.compile(r"^[0-9a-f]+$")
LIST_COLUMNS = ("fingerprint", "holder", "agency", "subject", "not_after", "status", "reason")


def snapshot(cert: Certificate) -> dict[str, Any]:
    """A binding as shown to people and recorded in the audit log (the DER is left out)."""
    agency = cert.account.agency.code if cert.account else cert.agency.code if cert.agency else None
    return {
        "fingerprint": cert.fingerprint,
        "serial": cert.serial,
        "subject": cert.subject,
        "issuer": cert.issuer,
        "email": cert.email,
        "not_before": trust.iso(cert.not_before),
        "not_after": trust.iso(cert.not_after),
        "holder_kind": "account" if cert.account_id else "agency" if cert.agency_id else None,
        "holder": _holder(cert),  # an unbound certificate keeps its last holder, for the history
        "agency": agency,
        "status": cert.status,
        "reason": cert.reason or "",
        "bound_at": trust.iso(cert.bound_at),
        "unbound_at": trust.iso(cert.unbound_at) if cert.unbound_at else None,
    }


def _holder(cert: Certificate) -> str:
    return cert.account.address if cert.account else cert.agency.code if cert.agency else ""


def _label(cert: Certificate) -> str:
    return f"{_holder(cert)} serial {cert.serial}"[:320]


def _record(session: Session, actor: Actor, action: str, cert: Certificate, before: dict[str, Any] | None) -> None:
    """Audit the change and queue the holder's entry for re-publication."""
    session.flush()
    audit.record(session, actor, action, "certificate", cert.id, _label(cert), before, snapshot(cert))
    if cert.account_id:
        outbox.enqueue(session, "account", cert.account_id)
    elif cert.agency_id:
        outbox.enqueue(session, "agency", cert.agency_id)


def revocation_lookup(session: Session) -> trust.RevocationLookup:
    """A lookup in the imported CRLs, for :func:`trust.validate`."""
    def lookup(issuer_hash: str, serial: str) -> tuple[datetime, str | None] | None:
        row = session.execute(
            select(RevokedSerial.revoked_at, RevokedSerial.reason).join(RevocationList)
            .where(RevocationList.issuer_hash == issuer_hash, RevokedSerial.serial == serial)
        ).first()
        return None if row is None else (row[0], row[1])
    return lookup


@dataclass(frozen=True)
class Holder:
    """Who a certificate is bound to: exactly one of an account and an agency."""

    account: Account | None = None
    agency: Agency | None = None

    @property
    def label(self) -> str:
        return self.account.address if self.account else self.agency.code  # type: ignore[union-attr]

    def addresses(self, session: Session) -> set[str]:
        """The mail addresses that belong to the holder (a certificate's e-mail must be one)."""
        if self.account is not None:
            found = {self.account.address, *(a.address for a in self.account.aliases)}
            if self.account.personal_email:
                found.add(self.account.personal_email)
            return {a.lower() for a in found}
        assert self.agency is not None
        found = {f"{self.agency.short_name}@{self.agency.domain}"} if self.agency.short_name else set()
        for shared in session.scalars(select(Account).where(Account.agency_id == self.agency.id,
                                                            Account.kind == "shared")):
            found |= {shared.address, *(a.address for a in shared.aliases)}
        return {a.lower() for a in found}


def resolve_holder(session: Session, account: str | None, agency: str | None) -> Holder:
    """The holder named by ``--account`` or ``--agency``.

    :raises InvalidInput: neither or both given. :raises NotFound: unknown account or agency.
    :raises Conflict: a retired or purged account, an inactive agency.
    """
    if (account is None) == (agency is None):
        raise InvalidInput("holder", None, "give exactly one of an account and an agency",
                           "e.g. --account lamnt@vinhphuc.gov.vn or --agency 000.00.15.H62")
    if account is not None:
        found = get_account(session, account)
        if found.status not in ("active", "suspended"):
            raise Conflict(f"account {found.address} is {found.status}; certificates are bound to active "
                           f"or suspended accounts only")
        return Holder(account=found)
    found_agency = get_agency(session, agency or "")
    if found_agency.status != "active":
        raise Conflict(f"agency {found_agency.code} is {found_agency.status}; certificates are bound to "
                       f"active agencies only")
    return Holder(agency=found_agency)


@dataclass(frozen=True)
class Parsed:
    """A certificate file read and split: the holder's certificate and the CA certificates with it."""

    source: str
    leaf: x509.Certificate
    bundled: tuple[x509.Certificate, ...]

    @property
    def fingerprint(self) -> str:
        return trust.fingerprint(self.leaf)


def parse(data: bytes, source: str) -> Parsed:
    """Read a PEM, DER or PKCS#7 certificate file. :raises InvalidInput: naming ``source``."""
    leaf, bundled = trust.split_leaf(trust.load_certificates(data, source), source)
    return Parsed(source, leaf, tuple(bundled))


def find_bound(session: Session, parsed: Parsed) -> Certificate | None:
    """The binding this very certificate already has, if any."""
    return session.scalar(select(Certificate).where(Certificate.fingerprint == parsed.fingerprint,
                                                    Certificate.unbound_at.is_(None)))


def bind(
    session: Session, actor: Actor, store: trust.TrustStore, parsed: Parsed, holder: Holder,
    now: datetime | None = None,
) -> Certificate:
    """Bind a valid certificate to ``holder`` and queue its publication.

    :raises InvalidInput: the certificate is expired, not yet valid, untrusted, revoked or not a
        signing certificate, or carries an e-mail address that is not the holder's (each message
        names the file and what to do).
    :raises Conflict: the certificate (or another one with the same issuer and serial) is
        already bound.
    """
    now = now or utcnow()
    leaf = parsed.leaf
    issuer_hash, serial = trust.name_hash(leaf.issuer), trust.serial_hex(leaf.serial_number)
    existing = session.scalar(select(Certificate).where(
        or_(Certificate.fingerprint == parsed.fingerprint,
            (Certificate.issuer_hash == issuer_hash) & (Certificate.serial == serial))))
    if existing is not None and existing.fingerprint != parsed.fingerprint:
        raise Conflict(f"file {parsed.source!r}: another certificate with issuer {existing.issuer} and serial "
                       f"{serial} is already known (fingerprint {existing.fingerprint}); an authority never "
                       f"issues two certificates with one serial, so this file is not genuine")
    if existing is not None and existing.unbound_at is None:
        raise Conflict(f"file {parsed.source!r}: this certificate is already bound to {_holder(existing)} "
                       f"(see: govmail cert show {existing.fingerprint[:16]}; unbind it first to move it)")
    carried = trust.emails(leaf)
    if carried:
        allowed = holder.addresses(session)
        stray = [e for e in carried if e not in allowed]
        if stray:
            raise InvalidInput("file", parsed.source, f"the certificate is for {', '.join(stray)}, not for "
                               f"{holder.label}", "bind it to the holder it was issued to, or ask the "
                               "authority for a certificate with the right address")
    verdict = trust.validate(leaf, parsed.bundled, store, now, revocation_lookup(session))
    if not verdict.valid:
        raise InvalidInput("file", parsed.source, f"refused: {verdict.status.replace('_', ' ')}: {verdict.reason}",
                           "only a valid certificate can be bound")
    before = None
    cert = existing or Certificate(
        fingerprint=parsed.fingerprint, issuer=trust.show_name(leaf.issuer), issuer_hash=issuer_hash,
        serial=serial, subject=trust.show_name(leaf.subject), email=", ".join(carried)[:254] or None,
        not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
        der=leaf.public_bytes(Encoding.DER),
    )
    if existing is not None:
        before = snapshot(existing)
    cert.account, cert.agency = holder.account, holder.agency
    cert.account_id = holder.account.id if holder.account else None
    cert.agency_id = holder.agency.id if holder.agency else None
    cert.status, cert.reason = "valid", None
    cert.bound_at, cert.unbound_at, cert.checked_at = now, None, now
    session.add(cert)
    _record(session, actor, "certificate.bind", cert, before)
    return cert


def get_certificate(session: Session, key: str) -> Certificate:
    """The certificate named by its SHA-256 fingerprint (or a unique prefix of 8+ hex digits) or
    its serial number (hex); bound ones are preferred when a serial is shared by several issuers.

    :raises NotFound: nothing matches. :raises InvalidInput: the key is ambiguous or not hex.
    """
    text = key.strip().lower().replace(":", "").replace(" ", "")
    if not text or not HEX.match(text):
        raise InvalidInput("certificate", key, "is not a fingerprint or serial number",
                           "give the SHA-256 fingerprint (or its first 8+ hex digits) from: govmail cert list")
    found = list(session.scalars(select(Certificate).where(Certificate.fingerprint == text)))
    if not found:
        serial = text.upper().lstrip("0") or "0"
        found = list(session.scalars(select(Certificate).where(Certificate.serial == serial)))
    if not found and len(text) >= 8:
        found = list(session.scalars(select(Certificate).where(Certificate.fingerprint.startswith(text))))
    bound = [c for c in found if c.unbound_at is None]
    found = bound if len(bound) == 1 else found
    if not found:
        raise NotFound("certificate", key, "see: govmail cert list")
    if len(found) > 1:
        raise InvalidInput("certificate", key, f"matches {len(found)} certificates",
                           "give more of the fingerprint: " + ", ".join(c.fingerprint[:16] for c in found[:5]))
    return found[0]


def unbind(session: Session, actor: Actor, key: str, now: datetime | None = None) -> Certificate:
    """End a binding; the certificate leaves the holder's directory entry. History stays.

    :raises NotFound: no such certificate. :raises Conflict: it is not bound.
    """
    cert = get_certificate(session, key)
    if cert.unbound_at is not None:
        raise Conflict(f"certificate {cert.fingerprint[:16]} is not bound (unbound {trust.iso(cert.unbound_at)})")
    before = snapshot(cert)
    cert.unbound_at = now or utcnow()
    _record(session, actor, "certificate.unbind", cert, before)
    return cert


def parse_days(value: str) -> int:
    """'30d' or '30' -> 30. :raises InvalidInput: anything else."""
    match = re.fullmatch(r"\s*(\d{1,4})\s*d?\s*", value.lower())
    if not match:
        raise InvalidInput("expiring", value, "is not a number of days", "e.g. --expiring 30d")
    return int(match.group(1))


def list_certificates(
    session: Session, *, agency: str | None = None, expiring_days: int | None = None, status: str | None = None,
    include_unbound: bool = False, now: datetime | None = None,
) -> list[Certificate]:
    """Bound certificates (all with ``include_unbound``) ordered by expiry, filtered by the agency
    of their holder, by status, and by expiry within ``expiring_days`` from ``now`` (not yet expired).

    :raises InvalidInput: unknown status. :raises NotFound: unknown agency.
    """
    query = select(Certificate).order_by(Certificate.not_after, Certificate.fingerprint)
    if not include_unbound:
        query = query.where(Certificate.unbound_at.is_(None))
    if status is not None:
        if status not in STATUSES:
            raise InvalidInput("status", status, "is not a certificate status", f"use one of: {', '.join(STATUSES)}")
        query = query.where(Certificate.status == status)
    if expiring_days is not None:
        now = now or utcnow()
        query = query.where(Certificate.not_after >= now, Certificate.not_after <= now + timedelta(days=expiring_days))
    certs = list(session.scalars(query))
    if agency is not None:
        code = get_agency(session, agency).code
        certs = [c for c in certs if snapshot(c)["agency"] == code]
    return certs


def _revalidate(session: Session, actor: Actor, store: trust.TrustStore, cert: Certificate, now: datetime,
                lookup: trust.RevocationLookup) -> bool:
    leaf = x509.load_der_x509_certificate(cert.der)
    verdict = trust.validate(leaf, (), store, now, lookup)
    cert.checked_at = now
    if (verdict.status, verdict.reason or None) == (cert.status, cert.reason):
        return False
    before = snapshot(cert)
    cert.status, cert.reason = verdict.status, verdict.reason or None
    if verdict.status != before["status"]:
        _record(session, actor, CHECK_ACTIONS.get(verdict.status, "certificate.check"), cert, before)
    return True


def check(session: Session, actor: Actor, store: trust.TrustStore, now: datetime | None = None) -> list[dict[str, Any]]:
    """Re-validate every bound certificate (dates, chain, revocation) against the current trust
    store and CRLs; a changed status is recorded (audit, outbox). Returns one row per certificate
    with ``changed`` telling whether its status or reason changed."""
    now = now or utcnow()
    lookup = revocation_lookup(session)
    rows = []
    for cert in session.scalars(select(Certificate).where(Certificate.unbound_at.is_(None))
                                .order_by(Certificate.not_after)):
        changed = _revalidate(session, actor, store, cert, now, lookup)
        rows.append({**row(cert), "changed": changed})
    return rows


def row(cert: Certificate) -> dict[str, Any]:
    """The short view of a binding used by ``list`` and ``check``."""
    view = snapshot(cert)
    return {k: view[k] for k in LIST_COLUMNS}


# --- CRLs -------------------------------------------------------------------------------------

def import_crl(
    session: Session, actor: Actor, store: trust.TrustStore, data: bytes, source: str, now: datetime | None = None,
) -> dict[str, Any]:
    """Import a CRL signed by a configured CA, replacing an older one of the same issuer, and mark
    the bound certificates it lists as revoked (audit, outbox: they leave the directory).

    A CRL that is not newer than the one held is kept out (``imported`` is False).

    :raises InvalidInput: not a CRL, or not signed by a configured CA.
    """
    now = now or utcnow()
    parsed = trust.load_crl(data, source, store)
    crl = parsed.crl
    held = session.scalar(select(RevocationList).where(RevocationList.issuer_hash == parsed.issuer_hash))
    summary = {"issuer": parsed.issuer, "this_update": trust.iso(crl.last_update_utc),
               "next_update": trust.iso(crl.next_update_utc) if crl.next_update_utc else None,
               "entries": len(parsed.entries()), "imported": False, "revoked": []}
    if held is not None and held.this_update >= crl.last_update_utc:
        return summary
    if held is not None:
        session.query(RevokedSerial).filter(RevokedSerial.crl_id == held.id).delete()
        held.this_update, held.next_update = crl.last_update_utc, crl.next_update_utc
        held.source, held.imported_at = source[:1024], now
    else:
        held = RevocationList(issuer=parsed.issuer, issuer_hash=parsed.issuer_hash, this_update=crl.last_update_utc,
                              next_update=crl.next_update_utc, source=source[:1024], imported_at=now)
        session.add(held)
    session.flush()
    session.add_all(RevokedSerial(crl_id=held.id, serial=serial, revoked_at=at, reason=reason)
                    for serial, at, reason in {e[0]: e for e in parsed.entries()}.values())
    session.flush()
    audit.record(session, actor, "crl.import", "crl", str(held.id), parsed.issuer[:320], None,
                 {k: summary[k] for k in ("issuer", "this_update", "next_update", "entries")} | {"source": source})
    summary["imported"] = True
    lookup = revocation_lookup(session)
    for cert in session.scalars(select(Certificate).where(Certificate.unbound_at.is_(None),
                                                          Certificate.status != "revoked")):
        if _revalidate(session, actor, store, cert, now, lookup) and cert.status == "revoked":
            summary["revoked"].append(cert.fingerprint)
    return summary


def crl_sources(session: Session, leaves: Iterable[x509.Certificate] | None = None,
                now: datetime | None = None) -> list[str]:
    """Distribution-point URLs worth fetching for ``leaves`` (default: every bound certificate):
    those of issuers with no imported CRL yet, or only one past its next update."""
    now = now or utcnow()
    fresh = set(session.scalars(select(RevocationList.issuer_hash).where(RevocationList.next_update > now)))
    if leaves is None:
        leaves = [x509.load_der_x509_certificate(der) for der in session.scalars(
            select(Certificate.der).where(Certificate.unbound_at.is_(None)))]
    urls: dict[str, None] = {}
    for leaf in leaves:
        if trust.name_hash(leaf.issuer) not in fresh:
            urls.update(dict.fromkeys(trust.distribution_points(leaf)))
    return list(urls)
