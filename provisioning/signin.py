"""Portal sign-in: password, TOTP second factor, recovery codes and server-side sessions.

Sign-in goes password -> (TOTP code | TOTP enrolment for an administrator without one) -> signed in.
Failed passwords and codes are throttled per account and per client with :mod:`provisioning.throttle`
(failures of either factor count together). A session is a :class:`PortalSession` row whose id is
the SHA-256 of the cookie value, so the database never holds a usable cookie.

Every function works in the caller's transaction and never commits. No secret (password, TOTP
secret or code, recovery code, cookie value) appears in a return value's repr, a log, an error
message or an audit row.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import segno
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from provisioning import accounts, audit, passwords, roles, throttle
from provisioning.audit import Actor
from provisioning.config import PasswordSettings, Settings
from provisioning.errors import Conflict, InvalidInput, NotFound
from provisioning.models import Account, PortalSession, RecoveryCode, TotpCredential, utcnow
from provisioning.secretbox import SecretBox

SESSION_COOKIE = "govmail_session"
STAGES = ("totp", "enrol", "full")
_STEP = 30  # seconds per TOTP time step
_RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
_TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class SigninResult:
    """``status``: ``ok`` | ``failed`` | ``locked``; on ``ok``, ``stage`` says what comes next:
    ``totp`` (a code is needed), ``enrol`` (an administrator must enrol TOTP first) or ``full``."""

    status: str
    account_id: str | None = None
    stage: str | None = None


# --- throttling ----------------------------------------------------------------------------------


def _limits(settings: Settings, account_key: str, client: str | None) -> dict[str, int]:
    """Throttle keys and their limits; no client key when the client is unknown (None would lump
    every such request together)."""
    limits = {account_key: settings.portal.signin_failures_per_account}
    if client:
        limits[f"portal:client:{client[:200]}"] = settings.portal.signin_failures_per_client
    return limits


@functools.lru_cache(maxsize=4)
def _dummy_hash(policy: PasswordSettings) -> str:
    """A hash of the configured cost, verified for unknown logins (and next to fast initial-password
    hashes) so timing does not tell which accounts exist."""
    return passwords.hash_chosen("not the password of anyone", policy)


def check_password(session: Session, settings: Settings, login: str, password: str, client: str | None,
                   now: datetime | None = None) -> SigninResult:
    """The first step of sign-in. ``login`` is an address, an alias or a bare local part.

    ``ok`` (with ``account_id`` and ``stage``) for the right password of an active account;
    ``failed`` for an unknown login, a wrong password or an account that is not active (the caller
    must not tell which); ``locked`` when the account or the client has too many recent failures
    (the password is then not checked and no failure is added). A failure is recorded in the
    session: the caller must commit even when the result is not ``ok``.
    """
    now = now or utcnow()
    try:
        account: Account | None = accounts.get_account(session, login)
    except NotFound:
        account = None
    typed = "".join(c if c.isprintable() else "?" for c in login.strip().lower()[:200])  # PostgreSQL text: no NUL
    account_key = f"portal:account:{account.id}" if account else f"portal:login:{typed}"
    limits = _limits(settings, account_key, client)
    window = settings.portal.signin_failure_window
    if throttle.blocked(session, limits, window, now):
        return SigninResult("locked")
    stored = account.password_hash if account else _dummy_hash(settings.passwords)
    right = passwords.verify(password, stored)
    if not stored.startswith("{ARGON2}"):  # a fast initial-password hash must not stand out either
        passwords.verify(password, _dummy_hash(settings.passwords))
    if account is None or not right or account.status != "active":
        throttle.fail(session, list(limits), window, now)
        return SigninResult("failed")
    if has_totp(session, account.id):
        stage = "totp"
    elif roles.is_admin(session, account.id):
        stage = "enrol"
    else:
        stage = "full"
    return SigninResult("ok", account.id, stage)


# --- TOTP and recovery codes ---------------------------------------------------------------------


def _account(session: Session, account_id: str) -> Account:
    """:raises NotFound: no such account."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound("account", account_id)
    return account


def _credential(session: Session, account_id: str) -> TotpCredential | None:
    return session.get(TotpCredential, account_id)


def _accept_totp(session: Session, box: SecretBox, credential: TotpCredential, code: str, now: datetime) -> bool:
    """Whether ``code`` is the code of the current time step (or the one before or after) and that
    step is newer than the last one used; if so, records the step atomically, so two concurrent
    uses of one code cannot both succeed."""
    code = "".join(code.split())
    if len(code) != 6 or not (code.isascii() and code.isdigit()):
        return False
    totp = pyotp.TOTP(box.decrypt(credential.secret_encrypted).decode("ascii"))
    current = int(now.timestamp()) // _STEP
    matches = [step for step in (current + 1, current, current - 1)
               if hmac.compare_digest(totp.generate_otp(step), code)]
    if not matches:
        return False
    step = matches[0]  # the newest: an older match can only be refused too
    result = session.execute(
        update(TotpCredential)
        .where(TotpCredential.account_id == credential.account_id, TotpCredential.last_step < step)
        .values(last_step=step))
    return result.rowcount == 1


def _normalize_recovery(code: str) -> str:
    return "".join(code.lower().split()).replace("-", "")


def _accept_recovery(session: Session, box: SecretBox, account_id: str, code: str, now: datetime) -> bool:
    """Whether ``code`` is an unused recovery code of the account; if so, marks it used atomically."""
    normalized = _normalize_recovery(code)
    if len(normalized) != 10:
        return False
    result = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.account_id == account_id, RecoveryCode.code_hash == box.mac(normalized),
               RecoveryCode.used_at.is_(None))
        .values(used_at=now))
    return result.rowcount == 1


def start_enrolment(session: Session, settings: Settings, box: SecretBox, account_id: str) -> str:
    """A new TOTP secret (base32) for the account, stored encrypted and unconfirmed, replacing an
    earlier unconfirmed one. Show it (or its QR code) once; do not keep it.

    :raises Conflict: TOTP is already enrolled.
    """
    credential = _credential(session, account_id)
    if credential is not None and credential.confirmed_at is not None:
        raise Conflict("TOTP is already enrolled; turn it off first to enrol a new phone")
    secret = pyotp.random_base32()
    encrypted = box.encrypt(secret.encode("ascii"))
    if credential is None:
        session.add(TotpCredential(account_id=account_id, secret_encrypted=encrypted, last_step=0))
    else:
        credential.secret_encrypted, credential.last_step, credential.created_at = encrypted, 0, utcnow()
    session.flush()
    return secret


def pending_secret(session: Session, box: SecretBox, account_id: str) -> str | None:
    """The secret of the account's unconfirmed enrolment (to show again after a wrong first code),
    or None when no enrolment is pending."""
    credential = _credential(session, account_id)
    if credential is None or credential.confirmed_at is not None:
        return None
    return box.decrypt(credential.secret_encrypted).decode("ascii")


def provisioning_uri(settings: Settings, address: str, secret: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=address, issuer_name=settings.portal.totp_issuer)


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as inline ``<svg>`` markup (no XML declaration)."""
    return segno.make(uri, error="m").svg_inline(scale=4)


def _new_recovery_code() -> str:
    chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"


def confirm_enrolment(session: Session, settings: Settings, box: SecretBox, account_id: str, code: str,
                      now: datetime | None = None) -> list[str]:
    """Confirm the pending enrolment with a first code from the app and return new recovery codes
    (``settings.portal.recovery_codes`` of them, shown once; earlier ones are deleted). Audited as
    ``account.totp_enrol`` by the account itself.

    :raises Conflict: no enrolment is pending. :raises InvalidInput: field ``code``: not the current code.
    """
    now = now or utcnow()
    credential = _credential(session, account_id)
    if credential is None or credential.confirmed_at is not None:
        raise Conflict("no TOTP enrolment is pending; start the enrolment again")
    if not _accept_totp(session, box, credential, code, now):
        raise InvalidInput("code", None, "is not the code your app shows now",
                           "check the phone's clock and type the 6 digits again")
    credential.confirmed_at = now
    session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account_id))
    codes = [_new_recovery_code() for _ in range(settings.portal.recovery_codes)]
    session.add_all(RecoveryCode(account_id=account_id, code_hash=box.mac(_normalize_recovery(c))) for c in codes)
    account = _account(session, account_id)
    audit.record(session, Actor(name=account.address, source="portal"), "account.totp_enrol", "account",
                 account.id, account.address, None, {"totp": True, "recovery_codes": len(codes)})
    session.flush()
    return codes


def verify_second_factor(session: Session, settings: Settings, box: SecretBox, account_id: str, code: str,
                         client: str | None, now: datetime | None = None) -> SigninResult:
    """The second step of sign-in: a current TOTP code (6 digits, one step of clock drift either
    way, never a step already used) or an unused recovery code (then used up).

    ``ok`` with stage ``full``; ``failed`` otherwise (also for an account without confirmed TOTP or
    no longer active); ``locked`` when the account or client has too many recent failures (the code
    is then not checked). Throttled with the same keys as :func:`check_password`. A failure is
    recorded in the session: the caller must commit even when the result is not ``ok``.
    """
    now = now or utcnow()
    limits = _limits(settings, f"portal:account:{account_id}", client)
    window = settings.portal.signin_failure_window
    if throttle.blocked(session, limits, window, now):
        return SigninResult("locked")
    account = session.get(Account, account_id)
    credential = _credential(session, account_id)
    ok = (account is not None and account.status == "active"
          and credential is not None and credential.confirmed_at is not None
          and (_accept_totp(session, box, credential, code, now)
               or _accept_recovery(session, box, account_id, code, now)))
    if not ok:
        throttle.fail(session, list(limits), window, now)
        return SigninResult("failed")
    return SigninResult("ok", account_id, "full")


def has_totp(session: Session, account_id: str) -> bool:
    """Whether the account has a confirmed TOTP credential."""
    return session.scalar(select(TotpCredential.account_id).where(
        TotpCredential.account_id == account_id, TotpCredential.confirmed_at.is_not(None))) is not None


def recovery_codes_left(session: Session, account_id: str) -> int:
    """How many unused recovery codes the account has."""
    return session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.account_id == account_id, RecoveryCode.used_at.is_(None))) or 0


def remove_totp(session: Session, actor: Actor, account_id: str, reset: bool = False) -> None:
    """Turn TOTP off for an official: deletes the credential (confirmed or pending) and the
    recovery codes. Audited as ``account.totp_remove``.

    ``reset``: the IT department's reset for a lost phone, allowed for administrators too; it also
    ends the account's sessions, and an administrator enrols again at the next sign-in.

    :raises NotFound: no such account. :raises Conflict: the account is an administrator (they must
    keep TOTP) and this is not a reset, or it has no TOTP.
    """
    account = _account(session, account_id)
    if not reset and roles.is_admin(session, account_id):
        raise Conflict(f"{account.address} is an administrator; administrators must keep TOTP")
    credential = _credential(session, account_id)
    if credential is None:
        raise Conflict(f"{account.address} has no TOTP to remove")
    confirmed = credential.confirmed_at is not None
    session.delete(credential)
    session.execute(delete(RecoveryCode).where(RecoveryCode.account_id == account_id))
    if reset:
        close_other_sessions(session, account_id, None)
    audit.record(session, actor, "account.totp_reset" if reset else "account.totp_remove", "account", account.id,
                 account.address, {"totp": confirmed}, {"totp": False})
    session.flush()


# --- sessions ------------------------------------------------------------------------------------


def _session_id(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


def _new_session(session: Session, account_id: str, stage: str, client: str | None, created_at: datetime,
                 last_seen_at: datetime, expires_at: datetime) -> str:
    if stage not in STAGES:
        raise ValueError(f"unknown sign-in stage {stage!r} (one of {', '.join(STAGES)})")
    cookie = secrets.token_urlsafe(32)
    session.add(PortalSession(
        id=_session_id(cookie), account_id=account_id, stage=stage, csrf=secrets.token_urlsafe(32),
        client=client[:64] if client else None, created_at=created_at, last_seen_at=last_seen_at,
        expires_at=expires_at))
    session.flush()
    return cookie


def open_session(session: Session, settings: Settings, account_id: str, stage: str, client: str | None,
                 now: datetime | None = None) -> str:
    """Open a session at ``stage`` (``totp`` | ``enrol`` | ``full``) lasting at most
    ``session_max_hours``; returns the cookie value (to set as :data:`SESSION_COOKIE`)."""
    now = now or utcnow()
    return _new_session(session, account_id, stage, client, now, now,
                        now + timedelta(hours=settings.portal.session_max_hours))


def load_session(session: Session, settings: Settings, cookie: str | None,
                 now: datetime | None = None) -> PortalSession | None:
    """The live session of ``cookie``, or None: no or unknown cookie, past its absolute expiry,
    idle longer than ``session_idle_minutes``, or the account is no longer active (the row is then
    deleted). Refreshes ``last_seen_at`` when it is more than a minute old.
    """
    if not cookie or len(cookie) > 256:
        return None
    now = now or utcnow()
    ps = session.get(PortalSession, _session_id(cookie))
    if ps is None:
        return None
    account = session.get(Account, ps.account_id)
    if (now > ps.expires_at or now - ps.last_seen_at > timedelta(minutes=settings.portal.session_idle_minutes)
            or account is None or account.status != "active"):
        session.delete(ps)
        session.flush()
        return None
    if now - ps.last_seen_at > _TOUCH_EVERY:
        ps.last_seen_at = now
    return ps


def advance(session: Session, settings: Settings, ps: PortalSession, stage: str, now: datetime | None = None) -> str:
    """Move a session to ``stage`` under a new cookie (and CSRF token), keeping its creation and
    expiry times; the old cookie stops working. Returns the new cookie value."""
    now = now or utcnow()
    account_id, client, created_at, expires_at = ps.account_id, ps.client, ps.created_at, ps.expires_at
    session.delete(ps)
    session.flush()
    return _new_session(session, account_id, stage, client, created_at, now, expires_at)


def close_session(session: Session, cookie: str | None) -> None:
    """Sign out: the session of ``cookie`` (if any) is deleted."""
    if cookie:
        session.execute(delete(PortalSession).where(PortalSession.id == _session_id(cookie)))


def close_other_sessions(session: Session, account_id: str, keep_cookie: str | None) -> int:
    """Delete every session of the account except the one of ``keep_cookie``; returns how many."""
    stmt = delete(PortalSession).where(PortalSession.account_id == account_id)
    if keep_cookie:
        stmt = stmt.where(PortalSession.id != _session_id(keep_cookie))
    return session.execute(stmt).rowcount


def csrf_ok(ps: PortalSession, value: str | None) -> bool:
    """Whether ``value`` is the session's CSRF token (constant-time comparison)."""
    if not value:
        return False
    return hmac.compare_digest(ps.csrf.encode("utf-8"), value.encode("utf-8"))


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """Delete sessions past their absolute expiry; returns how many (idle ones go at their expiry
    at the latest, and are refused by :func:`load_session` before)."""
    now = now or utcnow()
    return session.execute(delete(PortalSession).where(PortalSession.expires_at < now)).rowcount


# --- password change -----------------------------------------------------------------------------


def change_password(session: Session, settings: Settings, actor: Actor, account_id: str, current: str, new: str,
                    keep_cookie: str | None) -> None:
    """An official changes their own password: checks ``current``, sets ``new`` (policy checked,
    published to the directory, no forced change any more) and signs out every other session.

    :raises NotFound: no such account. :raises InvalidInput: ``current_password`` is wrong,
    ``new_password`` is the current one, or (field ``password``) the new one breaks the policy.
    :raises Conflict: the account is retired or purged.
    """
    account = _account(session, account_id)
    if not passwords.verify(current, account.password_hash):
        raise InvalidInput("current_password", None, "is not your current password",
                           "type the password you signed in with")
    if new == current:
        raise InvalidInput("new_password", None, "is the same as the current one", "choose a different password")
    accounts.reset_password(session, settings, actor, account.address, password=new)
    close_other_sessions(session, account_id, keep_cookie)
