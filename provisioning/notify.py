"""Notification e-mails about change requests: queued in the transaction of the change, sent later.

A notification row is written with the change it reports (so a rolled-back change notifies
nobody); :func:`flush` sends the pending rows through the same SMTP path as the certificate
reminders. Delivery is at least once: a crash between sending and recording sends a row again, and
two flushers running at once may both send one, so run one flusher at a time. Bodies are
Vietnamese first, then English, and never contain a password.
"""

from __future__ import annotations

import json
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning import cert_reminders
from provisioning.config import Settings
from provisioning.models import ChangeRequest, Notification, utcnow

MAX_ATTEMPTS = 10

KIND_LABELS = {  # kind: (Vietnamese, English)
    "create": ("tạo tài khoản", "create accounts"),
    "suspend": ("tạm khóa tài khoản", "suspend an account"),
    "restore": ("khôi phục tài khoản", "restore an account"),
    "retire": ("thu hồi tài khoản", "retire an account"),
    "transfer": ("chuyển tài khoản sang cơ quan khác", "transfer an account"),
    "reset_password": ("đặt lại mật khẩu", "reset a password"),
    "cert_bind": ("gắn chứng thư số", "bind a digital certificate"),
}
STATUS_LABELS = {
    "pending": ("đang chờ duyệt", "awaits approval"),
    "applied": ("đã được duyệt và thực hiện", "was approved and applied"),
    "failed": ("đã được duyệt nhưng không thực hiện được", "was approved but could not be applied"),
    "rejected": ("đã bị từ chối", "was rejected"),
}


def recipients_of(note: Notification) -> list[str]:
    return list(json.loads(note.recipients))


def queue(session: Session, recipients: Sequence[str], subject: str, body: str) -> Notification | None:
    """Add a notification to the caller's transaction; None (nothing queued) without recipients.

    Recipients are lower-cased and de-duplicated; the subject is cut to 255 characters.
    """
    unique = list(dict.fromkeys(r.strip().lower() for r in recipients if r and r.strip()))
    if not unique:
        return None
    note = Notification(recipients=json.dumps(unique), subject=subject[:255], body=body, attempts=0)
    session.add(note)
    return note


def pending_count(session: Session) -> int:
    """How many notifications wait to be sent (not yet sent, fewer than :data:`MAX_ATTEMPTS` failures)."""
    return session.scalar(select(func.count()).select_from(Notification).where(
        Notification.sent_at.is_(None), Notification.attempts < MAX_ATTEMPTS)) or 0


def compose(settings: Settings, note: Notification) -> EmailMessage:
    """The e-mail of a notification, marked Auto-Submitted (it never counts as regular use)."""
    msg = EmailMessage()
    msg["From"] = settings.portal.notify_sender or cert_reminders.sender(settings)
    msg["To"] = ", ".join(recipients_of(note))
    msg["Subject"] = note.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = make_msgid(domain=settings.gateway.hostname)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(note.body, charset="utf-8")
    return msg


def flush(factory: sessionmaker[Session], settings: Settings, limit: int = 100, now: datetime | None = None) -> int:
    """Send up to ``limit`` pending notifications (oldest first) in transactions of its own.

    A sent row gets ``sent_at``; a refused or undeliverable one gets ``attempts`` + 1 and
    ``last_error``, and is tried again on the next call until it has failed :data:`MAX_ATTEMPTS`
    times. Returns how many were sent.
    """
    with factory() as session:
        notes = list(session.scalars(
            select(Notification).where(Notification.sent_at.is_(None), Notification.attempts < MAX_ATTEMPTS)
            .order_by(Notification.id).limit(limit)))
        messages = [compose(settings, n) for n in notes]
        ids = [n.id for n in notes]
    if not ids:
        return 0
    errors = cert_reminders.deliver(settings, messages)
    sent = 0
    with factory() as session, session.begin():
        for note_id, error in zip(ids, errors):
            note = session.get(Notification, note_id)
            if note is None or note.sent_at is not None:
                continue
            if error:
                note.attempts += 1
                note.last_error = error[:1000]
            else:
                note.sent_at, note.last_error = now or utcnow(), None
                sent += 1
    return sent


# --- what the messages say ---------------------------------------------------------------------


def request_link(settings: Settings, req: ChangeRequest) -> str:
    return settings.portal.public_url.rstrip("/") + f"/requests/{req.id}"


def _describe(req: ChangeRequest) -> tuple[str, str]:
    vi_kind, en_kind = KIND_LABELS.get(req.kind, (req.kind, req.kind))
    agency = f"{req.agency.code} ({req.agency.name})"
    vi = (f"Yêu cầu số {req.id}: {vi_kind}\nCơ quan: {agency}\nNội dung: {req.summary}\n"
          f"Người yêu cầu: {req.requested_by}\n")
    en = (f"Request #{req.id}: {en_kind}\nAgency: {agency}\nSummary: {req.summary}\n"
          f"Requested by: {req.requested_by}\n")
    return vi, en


def submitted(settings: Settings, req: ChangeRequest) -> tuple[str, str]:
    """(subject, body) telling province administrators about a new request."""
    vi, en = _describe(req)
    vi_status, en_status = STATUS_LABELS.get(req.status, (req.status, req.status))
    link = request_link(settings, req)
    subject = f"Yêu cầu #{req.id} {vi_status} / Request #{req.id} {en_status}: {req.summary}"
    body = (f"{vi}Trạng thái: {vi_status}" + (f" ({req.decided_by})" if req.decided_by else "") +
            f"\nXem và duyệt tại: {link}\n\n---\n\n"
            f"{en}Status: {en_status}" + (f" ({req.decided_by})" if req.decided_by else "") +
            f"\nReview it at: {link}\n")
    return subject, body


def decided(settings: Settings, req: ChangeRequest) -> tuple[str, str]:
    """(subject, body) telling the requester what became of their request (never a password)."""
    vi, en = _describe(req)
    vi_status, en_status = STATUS_LABELS.get(req.status, (req.status, req.status))
    link = request_link(settings, req)
    outcome = json.loads(req.outcome) if req.outcome else {}
    vi_more = en_more = ""
    if req.status == "rejected":
        vi_more, en_more = f"Lý do: {req.reason}\n", f"Reason: {req.reason}\n"
    elif req.status == "failed":
        vi_more, en_more = f"Lỗi: {outcome.get('error', '')}\n", f"Error: {outcome.get('error', '')}\n"
    elif req.credentials is not None:
        vi_more = "Tải tệp bàn giao mật khẩu ban đầu (chỉ tải được một lần) tại trang yêu cầu.\n"
        en_more = "Download the initial-password handover file (once only) from the request page.\n"
    subject = f"Yêu cầu #{req.id} {vi_status} / Request #{req.id} {en_status}"
    body = (f"{vi}Kết quả: {vi_status} ({req.decided_by})\n{vi_more}Chi tiết: {link}\n\n---\n\n"
            f"{en}Result: {en_status} ({req.decided_by})\n{en_more}Details: {link}\n")
    return subject, body
