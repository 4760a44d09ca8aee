"""The aiosmtpd handler: who may send what to whom, delivery, and the usage event of each message.

One handler serves one listener: ``submission`` (officials sending, AUTH required) or ``inbound``
(mail for the hosted domains). A message gets 250 only after it was handed on durably *and* its
usage events were committed; any failure answers 451 so the sender retries. The client never
sees an exception's text.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import logging
from base64 import b64decode
from collections import Counter
from email.utils import getaddresses
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session, TLSSetupException
from sqlalchemy.orm import Session as DbSession, sessionmaker

from mailgateway import delivery
from mailgateway.mailboxes import Login, Snapshot, authenticate
from mailgateway.recorder import Recorder
from provisioning.config import GatewaySettings
from provisioning.models import utcnow

log = logging.getLogger("govmail.gateway")

ACCEPTED = "250 2.0.0 Message accepted"
# One answer for a wrong password, an unknown login, a suspended account and a throttled one.
REFUSED = AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")
CHANGE_PASSWORD = AuthResult(success=False, handled=False, message=(
    "535 5.7.8 Change your initial password first (ask your IT administrator), then sign in again"))
TEMPORARY = "451 4.3.0 Temporary failure, please try again later"


def _headers(content: bytes, names: tuple[bytes, ...]) -> dict[bytes, str]:
    """The first value of each wanted header (lower-case names; every From line, joined), unfolded;
    a scan of the header block only (the email package's full parser costs more than the rest of
    accepting a message)."""
    found: dict[bytes, str] = {}
    current: bytes | None = None
    for line in content.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                found[current] += " " + line.strip().decode("utf-8", "replace")
            continue
        name, colon, value = line.partition(b":")
        key = name.strip().lower()
        # From is gathered from every From line: a second one must not slip past the sender check
        current = key if colon and key in names and (key not in found or key == b"from") else None
        if current is not None:
            text = value.strip().decode("utf-8", "replace")
            found[current] = f"{found[current]}, {text}" if current in found else text
    return found


def message_facts(content: bytes, headers: dict[bytes, str], sender: str) -> tuple[str, bool]:
    """(the message's identity, automatic?) from its content and its :func:`_headers`.

    The identity is a SHA-256 over the Message-ID and the whole content: a retry of the same
    message has the same identity (delivered into the same file, counted once), while another
    message reusing a Message-ID has a different one and can neither replace nor hide the first.
    """
    message_id = headers.get(b"message-id", "")
    digest = hashlib.sha256(message_id.encode("utf-8", "replace") + b"\0" + hashlib.sha256(content).digest()).hexdigest()
    auto = headers.get(b"auto-submitted", "no").lower()
    precedence = headers.get(b"precedence", "").lower()
    automatic = auto != "no" or precedence in ("bulk", "list", "junk") or sender in ("", "<>")
    return digest, automatic


class GatewayHandler:
    """aiosmtpd handler for one listener (``role`` = ``submission`` or ``inbound``)."""

    def __init__(self, role: str, settings: GatewaySettings, factory: sessionmaker[DbSession],
                 recorder: Recorder, snapshot: Snapshot) -> None:
        self.role = role
        self.settings = settings
        self.factory = factory
        self.recorder = recorder
        self.snapshot = snapshot
        self.counts: Counter[str] = Counter()  # messages accepted and deferred, logged now and then

    # --- AUTH (submission only; aiosmtpd offers it only after STARTTLS unless configured) -------

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        blob = await server.challenge_auth("") if len(args) == 1 else await _b64(server, args[1])
        if blob is MISSING or blob is None:
            return AuthResult(success=False, handled=True)  # aiosmtpd or _b64 answered already
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            return REFUSED
        return await self._login(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        login = await server.challenge_auth("Username:") if len(args) == 1 else await _b64(server, args[1])
        if login is MISSING or login is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._login(server, login, password)

    async def _login(self, server: SMTP, raw_login: bytes, raw_password: bytes) -> AuthResult:
        client = server.session.peer[0] if server.session and server.session.peer else "?"
        login = raw_login.decode("utf-8", "replace").strip().lower()
        try:
            password = raw_password.decode("utf-8")
        except UnicodeDecodeError:
            password = ""  # never anyone's password: counted as a failure like any other
        outcome, found = await asyncio.get_running_loop().run_in_executor(
            None, authenticate, self.factory, self.settings, login, password, client)
        if found is None:
            level = logging.WARNING if outcome == "throttled" else logging.INFO
            log.log(level, "auth %s login=%s client=%s", outcome, login, client)
            return REFUSED
        if found.must_change_password and self.settings.refuse_unchanged_password:
            # The password was right, so saying why tells an attacker nothing new.
            log.info("auth refused, password not yet changed login=%s client=%s", found.address, client)
            return CHANGE_PASSWORD
        log.info("auth ok login=%s client=%s", found.address, client)
        return AuthResult(success=True, auth_data=found)

    async def handle_exception(self, error: Exception) -> str:
        """Never the exception's text to the client: it is logged, the client is told to retry."""
        if isinstance(error, TLSSetupException):  # a client that rejected our certificate, a scanner
            log.info("TLS handshake failed: %s", type(error.__cause__).__name__)
            return "451 4.3.0 TLS handshake failed"
        log.error("internal error: %s", type(error).__name__, exc_info=error)
        return "451 4.3.0 Internal error, please try again later"

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        """The EHLO answer, less AUTH on the inbound listener (aiosmtpd announces it even empty)."""
        session.host_name = hostname
        if self.role == "inbound":
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    # --- envelope -----------------------------------------------------------------------------

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        if self.role == "submission":
            login: Login | None = session.auth_data if session.authenticated else None
            if login is None:
                return "530 5.7.0 Authentication required"
            if address.lower() not in login.senders:
                log.warning("sender refused login=%s from=%s", login.address, address)
                return "553 5.7.1 Sender address not allowed for this login"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.snapshot.hosted(address):
            box = self.snapshot.lookup(address)
            if box is None:
                return "550 5.1.1 No such mailbox here"
            if box.status != "active":
                return "550 5.2.1 Mailbox disabled"
        elif self.role == "inbound":
            return "550 5.7.1 Relaying denied"
        elif self.settings.delivery != "relay":
            return "550 5.7.1 This gateway delivers only to the hosted domains"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    # --- data ---------------------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        try:
            content = envelope.original_content or b""
            headers = _headers(content, (b"message-id", b"auto-submitted", b"precedence", b"from"))
            login: Login | None = session.auth_data if self.role == "submission" else None
            if login is not None and not _from_allowed(headers.get(b"from", ""), login):
                log.warning("From header refused login=%s", login.address)
                return "553 5.7.1 From header address not allowed for this login"
            digest, automatic = message_facts(content, headers, envelope.mail_from or "")
            local = [r for r in envelope.rcpt_tos if self.snapshot.hosted(r)]
            external = [r for r in envelope.rcpt_tos if not self.snapshot.hosted(r)]
            events = self._events(login, envelope.mail_from or "", digest, automatic, len(content), local, external)
            if self.settings.delivery == "relay":
                s = self.settings
                await delivery.relay(content, envelope.mail_from or "", envelope.rcpt_tos, host=s.relay_host,
                                     port=s.relay_port, starttls=s.relay_starttls, timeout=s.relay_timeout,
                                     local_hostname=s.hostname)
                await self.recorder.accept(events)
            else:
                boxes = sorted({self.snapshot.lookup(r).address for r in local})  # type: ignore[union-attr]
                await self.recorder.accept(events, boxes, f"{digest}.govmail", content)
        except delivery.TemporaryFailure as exc:
            self.counts["deferred"] += 1
            log.warning("deferred: %s", exc)
            return TEMPORARY
        except Exception:
            self.counts["deferred"] += 1
            log.exception("internal error while accepting a message")
            return TEMPORARY
        self.counts["accepted"] += 1
        log.debug("accepted role=%s rcpts=%d size=%d auto=%s", self.role, len(envelope.rcpt_tos), len(content), automatic)
        return ACCEPTED

    def _events(self, login: Login | None, sender: str, digest: str, automatic: bool, size: int,
                local: list[str], external: list[str]) -> list[dict[str, Any]]:
        """One event per account concerned: the official who sent (and the shared mailbox they
        sent as), and each hosted mailbox that received."""
        now = utcnow()
        common = dict(at=now, recipients_internal=len(local), recipients_external=len(external), size=size,
                      automatic=automatic, message_hash=digest)
        events = []
        if login is not None:
            direction = "sent_external" if external else "sent_internal"
            events.append(dict(common, account_id=login.account_id, agency_id=login.agency_id, direction=direction))
            shared = login.shared.get(sender.lower())
            if shared is not None:
                events.append(dict(common, account_id=shared.account_id, agency_id=shared.agency_id, direction=direction))
        for box in {self.snapshot.lookup(r) for r in local}:
            if box is not None:
                events.append(dict(common, account_id=box.account_id, agency_id=box.agency_id, direction="received"))
        return events


def _from_allowed(value: str, login: Login) -> bool:
    """Whether every address in a From header is one ``login`` may send as (no From: allowed,
    as the envelope sender was checked already)."""
    addresses = [address for _name, address in getaddresses([value]) if address]
    return all(address.lower() in login.senders for address in addresses)


async def _b64(server: SMTP, text: str) -> bytes | None:
    """The decoded initial response, or None after telling the client it was not base64."""
    try:
        return b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        await server.push("501 5.5.2 Can't decode base64")
        return None
