"""SQLAlchemy models: the system of record.

Agencies form a tree; accounts belong to one agency; every local part ever handed out is kept in
``issued_addresses`` so that a retired address is never issued again. Each change writes its rows,
an ``audit_log`` row and a ``directory_outbox`` row in one transaction.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it without the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Agency(Base):
    __tablename__ = "agencies"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    short_name: Mapped[str | None] = mapped_column(String(64), unique=True)
    domain: Mapped[str] = mapped_column(String(253))
    level: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    staff_count: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    parent: Mapped[Agency | None] = relationship(remote_side="Agency.id", lazy="joined")

    def __repr__(self) -> str:
        return f"Agency(code={self.code!r}, level={self.level!r})"


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    local_part: Mapped[str] = mapped_column(String(64), unique=True)
    domain: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(16), default="personal")
    full_name: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(128))
    phone: Mapped[str | None] = mapped_column(String(32))
    employee_code: Mapped[str | None] = mapped_column(String(64), unique=True)
    personal_email: Mapped[str | None] = mapped_column(String(254))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    quota_mb: Mapped[int] = mapped_column(Integer)
    password_hash: Mapped[str] = mapped_column(String(255))
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purge_after: Mapped[datetime | None] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agency: Mapped[Agency] = relationship(lazy="joined")
    aliases: Mapped[list[Alias]] = relationship(
        back_populates="account", cascade="all, delete-orphan", lazy="selectin",
        order_by="Alias.address",
    )

    @property
    def address(self) -> str:
        return f"{self.local_part}@{self.domain}"

    def __repr__(self) -> str:  # no hash, no personal data beyond the address
        return f"Account(address={self.address!r}, status={self.status!r})"


class Alias(Base):
    __tablename__ = "aliases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)

    account: Mapped[Account] = relationship(back_populates="aliases")


class Delegation(Base):
    """An official who may send as a shared (agency) mailbox: ``vanthu@...`` handled by a clerk."""

    __tablename__ = "delegations"

    mailbox_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    delegate_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True, index=True)
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    mailbox: Mapped[Account] = relationship(foreign_keys=[mailbox_id], lazy="joined")
    delegate: Mapped[Account] = relationship(foreign_keys=[delegate_id], lazy="joined")


class AuthFailure(Base):
    """A failed login at the gateway, kept for the lockout window: one row per key (the account
    named, the client address), shared by every gateway process using the database."""

    __tablename__ = "auth_failures"
    __table_args__ = (Index("ix_auth_failures_key_at", "key", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(400))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class IssuedAddress(Base):
    """Every local part ever handed out (account, alias, agency mailbox): never deleted."""

    __tablename__ = "issued_addresses"

    local_part: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str | None] = mapped_column(String(36), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OutboxEntry(Base):
    """A directory object whose published entry must be brought up to date.

    The syncer renders the object's *current* SQL state, so applying a row twice is harmless and
    several rows for one object collapse into one LDAP write.
    """

    __tablename__ = "directory_outbox"
    __table_args__ = (Index("ix_outbox_pending", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(36))
    # "create" when the row comes from creating the object: the syncer may add without looking first.
    hint: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_object", "object_kind", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    client: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    object_kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(36))
    object_label: Mapped[str] = mapped_column(String(320))
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)


class UsageEvent(Base):
    """One accepted message seen from one account: what the regular-use statistics count.

    Never a body, subject or address of the other party; ``message_hash`` is a SHA-256 of the
    Message-ID (or of the message when it has none), so a retried message is counted once.
    """

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_account_at", "account_id", "at"),
        Index("ux_usage_once", "message_hash", "account_id", "direction", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    account_id: Mapped[str] = mapped_column(String(36))
    agency_id: Mapped[str] = mapped_column(String(36), index=True)
    direction: Mapped[str] = mapped_column(String(16))  # sent_internal | sent_external | received
    recipients_internal: Mapped[int] = mapped_column(Integer)
    recipients_external: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    automatic: Mapped[bool] = mapped_column(Boolean)
    message_hash: Mapped[str] = mapped_column(String(64))


class AccountSpan(Base):
    """A stretch of time during which an account was usable (active) in one agency.

    Opened when an account is created or restored, closed when it is suspended, retired or
    transferred (a transfer opens the next span in the new agency). The regular-use statistics count
    an account only for the working days its spans cover, in the agency of its last span.
    """

    __tablename__ = "account_spans"
    __table_args__ = (Index("ix_account_spans_account", "account_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    agency_id: Mapped[str] = mapped_column(String(36))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class LoginEvent(Base):
    """A mailbox login (IMAP/POP3) read from the mail store's log; ``line_hash`` makes imports idempotent."""

    __tablename__ = "login_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    account_id: Mapped[str] = mapped_column(String(36), index=True)
    protocol: Mapped[str] = mapped_column(String(16))
    client: Mapped[str | None] = mapped_column(String(64))
    line_hash: Mapped[str] = mapped_column(String(64), unique=True)


class UsageDaily(Base):
    """One account's activity on one local day: non-automatic authenticated sends and mailbox logins.

    A row exists only for an active day. ``working`` says whether the day was a working day under
    the calendar named by the rollup state's fingerprint.
    """

    __tablename__ = "usage_daily"

    account_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, index=True)
    sent: Mapped[int] = mapped_column(Integer)
    logins: Mapped[int] = mapped_column(Integer)
    working: Mapped[bool] = mapped_column(Boolean)


class UsageWeekly(Base):
    """``usage_daily`` summed per account and week (``week`` is its Monday), so reports read few rows."""

    __tablename__ = "usage_weekly"

    week: Mapped[date] = mapped_column(Date, primary_key=True)
    account_id: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)
    active_days: Mapped[int] = mapped_column(Integer)
    working_days: Mapped[int] = mapped_column(Integer)
    sent: Mapped[int] = mapped_column(Integer)
    last_day: Mapped[date] = mapped_column(Date)


class UsageRollupState(Base):
    """How far the rollup has read ``usage_events`` and which working calendar its flags follow."""

    __tablename__ = "usage_rollup_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime())
    calendar: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Certificate(Base):
    """An X.509 certificate bound to an account or an agency (exactly one while bound).

    Identified by issuer + serial (``issuer_hash`` is the SHA-256 of the issuer name's DER, so
    long Vietnamese names still index) and by the SHA-256 ``fingerprint`` of the DER. ``serial``
    is upper-case hex (serials are up to 20 bytes). ``status`` is the last validation result:
    valid | expired | not_yet_valid | revoked | untrusted; only a valid, bound certificate is
    published. An unbound certificate keeps its row (and history) with ``unbound_at`` set.
    """

    __tablename__ = "certificates"
    __table_args__ = (Index("ux_certificates_issuer_serial", "issuer_hash", "serial", unique=True),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    issuer: Mapped[str] = mapped_column(Text)
    issuer_hash: Mapped[str] = mapped_column(String(64))
    serial: Mapped[str] = mapped_column(String(42))
    subject: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(254))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    unbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    account: Mapped[Account | None] = relationship(lazy="joined")
    agency: Mapped[Agency | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"Certificate(serial={self.serial!r}, status={self.status!r})"


class RevocationList(Base):
    """The newest imported CRL of one issuing CA (a CRL lists every revoked certificate that has
    not yet expired, so the newest one replaces the older ones)."""

    __tablename__ = "certificate_crls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    issuer: Mapped[str] = mapped_column(Text)
    issuer_hash: Mapped[str] = mapped_column(String(64), unique=True)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime | None] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(1024))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RevokedSerial(Base):
    """One entry of an imported CRL: the issuer's certificate with this serial is revoked."""

    __tablename__ = "certificate_revocations"

    crl_id: Mapped[int] = mapped_column(ForeignKey("certificate_crls.id", ondelete="CASCADE"), primary_key=True)
    serial: Mapped[str] = mapped_column(String(42), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(String(32))


class ReminderSent(Base):
    """An expiry reminder sent for a certificate in one window (days before expiry): sent once."""

    __tablename__ = "certificate_reminders"

    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    recipients: Mapped[str] = mapped_column(Text)


# --- the portal: roles, sign-in, requests --------------------------------------------------------


class PortalRole(Base):
    """An administrator role: ``province_admin`` (no agency: everything) or ``agency_admin`` of one
    agency and the agencies below it."""

    __tablename__ = "portal_roles"
    __table_args__ = (Index("ux_portal_roles", "account_id", "role", "agency_id", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    account: Mapped[Account] = relationship(lazy="joined")
    agency: Mapped[Agency | None] = relationship(lazy="joined")


class TotpCredential(Base):
    """An account's TOTP secret, encrypted with the portal key (Fernet). ``confirmed_at`` is set once
    a first code has been accepted; ``last_step`` is the newest time step used (a code is never
    accepted twice)."""

    __tablename__ = "totp_credentials"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_step: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    def __repr__(self) -> str:
        return f"TotpCredential(account_id={self.account_id!r}, confirmed={self.confirmed_at is not None})"


class RecoveryCode(Base):
    """A one-time recovery code (HMAC-SHA256 under the portal key; the code itself is shown once)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PortalSession(Base):
    """A signed-in browser. ``id`` is the SHA-256 of the cookie value; ``stage`` is how far sign-in
    got (``totp``: password accepted, code pending; ``enrol``: an administrator must enrol TOTP
    first; ``full``: signed in)."""

    __tablename__ = "portal_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))
    csrf: Mapped[str] = mapped_column(String(64))
    client: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    def __repr__(self) -> str:  # never the id: it opens the session
        return f"PortalSession(account_id={self.account_id!r}, stage={self.stage!r})"


class ApiToken(Base):
    """A bearer token for ``/api/v1``, scoped to one agency and those below it (SHA-256 stored)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agency: Mapped[Agency] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"ApiToken(name={self.name!r}, revoked={self.revoked_at is not None})"


class ChangeRequest(Base):
    """A change an agency administrator (or an API token) asks for and a province administrator
    approves or rejects. ``payload`` and ``outcome`` are JSON; ``credentials`` is the encrypted
    handover file (initial passwords) until the requester downloads it."""

    __tablename__ = "change_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    summary: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(128))
    requester_account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    requester_token_id: Mapped[str | None] = mapped_column(ForeignKey("api_tokens.id"))
    source: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary)
    credentials_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    agency: Mapped[Agency] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"ChangeRequest(id={self.id!r}, kind={self.kind!r}, status={self.status!r})"


class AutoApproveRule(Base):
    """Requests of ``kind`` for this agency (and those below it) are approved as they arrive."""

    __tablename__ = "auto_approve_rules"

    agency_id: Mapped[str] = mapped_column(ForeignKey("agencies.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    agency: Mapped[Agency] = relationship(lazy="joined")


class Notification(Base):
    """An e-mail waiting to be sent (written in the transaction of the change it reports)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    recipients: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
