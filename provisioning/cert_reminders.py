"""Expiry reminders for bound certificates: who gets one, what it says, sending, once per window.

A certificate is in window *w* (days, from ``[certificates] reminder_windows``) when it expires
within *w* days; it gets one reminder for the smallest window it is in, so a certificate first
seen 10 days before expiry gets the 14-day reminder only, then the 7-day one later. Recipients: the
holder (the official's address), the agency's admins (its active shared mailboxes, such as
``vanthu@``, stand for them until an agency-admin role exists) and ``reminder_cc``. Mail goes to the configured relay (``[gateway] delivery = "relay"``), otherwise to
the gateway's inbound listener, through aiosmtplib.

Sending and recording are separate steps: the caller sends, then records what was accepted in one
transaction. A crash between the two sends those reminders again on the next run (at least once,
never silently lost).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Sequence

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning import audit, trust
from provisioning.audit import Actor
from provisioning.config import Settings
from provisioning.models import Account, Agency, Certificate, PortalRole, ReminderSent, utcnow


@dataclass(frozen=True)
class Reminder:
    """One reminder due for one certificate in one window."""

    certificate_id: str
    fingerprint: str
    window: int
    days_left: int
    holder: str
    subject: str
    serial: str
    issuer: str
    not_after: datetime
    recipients: tuple[str, ...]

    def view(self) -> dict[str, object]:
        return {"fingerprint": self.fingerprint, "holder": self.holder, "subject": self.subject,
                "not_after": trust.iso(self.not_after), "days_left": self.days_left, "window": self.window,
                "recipients": list(self.recipients)}


def _agency_mailboxes(session: Session, agency: Agency) -> list[str]:
    return list(session.scalars(select(Account.local_part + "@" + Account.domain).where(
        Account.agency_id == agency.id, Account.kind == "shared", Account.status == "active")
        .order_by(Account.local_part)))


def _agency_admins(session: Session, agency: Agency) -> list[str]:
    """The active administrators of ``agency`` or of an agency above it (portal roles)."""
    ids, current = [], agency
    while current is not None and current.id not in ids:
        ids.append(current.id)
        current = current.parent
    rows = session.scalars(select(Account).join(PortalRole, PortalRole.account_id == Account.id).where(
        PortalRole.role == "agency_admin", PortalRole.agency_id.in_(ids), Account.status == "active"))
    return sorted({a.address for a in rows})


def _recipients(session: Session, settings: Settings, cert: Certificate) -> tuple[str, ...]:
    found: list[str] = []
    agency = cert.account.agency if cert.account is not None else cert.agency
    if cert.account is not None and cert.account.status == "active":
        found.append(cert.account.address)
    if agency is not None:
        found += _agency_mailboxes(session, agency) + _agency_admins(session, agency)
    found += settings.certificates.reminder_cc
    return tuple(dict.fromkeys(a.lower() for a in found))


def due(session: Session, settings: Settings, now: datetime | None = None) -> list[Reminder]:
    """Reminders not yet sent for bound, valid certificates of live holders, soonest expiry first."""
    now = now or utcnow()
    windows = settings.certificates.windows
    if not windows:
        return []
    sent = {(cid, window) for cid, window in session.execute(select(ReminderSent.certificate_id, ReminderSent.window))}
    out = []
    for cert in session.scalars(
        select(Certificate).where(Certificate.unbound_at.is_(None), Certificate.status == "valid",
                                  Certificate.not_after > now, Certificate.not_after <= now + timedelta(days=windows[0]))
        .order_by(Certificate.not_after)
    ):
        if cert.account is not None and cert.account.status not in ("active", "suspended"):
            continue
        if cert.agency is not None and cert.agency.status != "active":
            continue
        left = cert.not_after - now
        window = min(w for w in windows if left <= timedelta(days=w))
        if (cert.id, window) in sent:
            continue
        out.append(Reminder(cert.id, cert.fingerprint, window, left.days, _holder_label(cert), cert.subject,
                            cert.serial, cert.issuer, cert.not_after, _recipients(session, settings, cert)))
    return out


def _holder_label(cert: Certificate) -> str:
    return cert.account.address if cert.account else cert.agency.code if cert.agency else ""


def sender(settings: Settings) -> str:
    return settings.certificates.reminder_sender or f"no-reply@{settings.gateway.hostname}"


def compose(settings: Settings, reminder: Reminder) -> EmailMessage:
    """The reminder e-mail (marked Auto-Submitted, so it never counts as regular use)."""
    msg = EmailMessage()
    msg["From"] = sender(settings)
    msg["To"] = ", ".join(reminder.recipients)
    msg["Subject"] = f"Digital certificate expires on {reminder.not_after.date().isoformat()}: {reminder.holder}"
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=settings.gateway.hostname)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"The digital certificate of {reminder.holder} expires in {reminder.days_left} day(s), on "
        f"{trust.iso(reminder.not_after)}.\n\n"
        f"Subject: {reminder.subject}\nIssuer:  {reminder.issuer}\nSerial:  {reminder.serial}\n"
        f"SHA-256: {reminder.fingerprint}\n\n"
        "Ask the certification authority for a new certificate before this date. When it arrives, your\n"
        "province's IT department binds it with: govmail cert bind FILE\n"
    )
    return msg


def _smtp_target(settings: Settings) -> tuple[str, int, bool | None]:
    g = settings.gateway
    if g.delivery == "relay":
        return g.relay_host, g.relay_port, g.relay_starttls or False
    return g.host, g.inbound_port, False  # our own inbound listener: hosted recipients, no relaying


async def _deliver(settings: Settings, messages: Sequence[EmailMessage]) -> list[str]:
    host, port, starttls = _smtp_target(settings)
    errors = [""] * len(messages)
    try:
        async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=starttls,
                                   timeout=settings.gateway.relay_timeout,
                                   local_hostname=settings.gateway.hostname) as smtp:
            for index, msg in enumerate(messages):
                try:
                    await smtp.send_message(msg)
                except aiosmtplib.SMTPResponseException as exc:
                    errors[index] = f"refused by {host}:{port}: {exc.code} {exc.message}"
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    errors[index] = f"recipients refused by {host}:{port}: {len(exc.recipients)}"
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = f"cannot send through {host}:{port}: {type(exc).__name__}"
        errors = [e or reason for e in errors]
    return errors


def deliver(settings: Settings, messages: Sequence[EmailMessage]) -> list[str]:
    """Send ``messages`` over one SMTP connection; one error text per message ('' = accepted)."""
    if not messages:
        return []
    return asyncio.run(_deliver(settings, messages))


def record(session: Session, actor: Actor, reminder: Reminder, now: datetime | None = None) -> None:
    """Remember that ``reminder`` was sent (it is not sent again for that window) and audit it."""
    session.add(ReminderSent(certificate_id=reminder.certificate_id, window=reminder.window,
                             sent_at=now or utcnow(), recipients=json.dumps(list(reminder.recipients))))
    audit.record(session, actor, "certificate.remind", "certificate", reminder.certificate_id,
                 f"{reminder.holder} serial {reminder.serial}"[:320], None,
                 {"window": reminder.window, "days_left": reminder.days_left, "recipients": list(reminder.recipients)})
