"""Harness for the mail-gateway tests: TLS material, a gateway in a thread, a downstream MTA,
a raw SMTP line client and small message helpers.

Everything here is real: the gateway is ``mailgateway.server.Gateway`` on its own asyncio loop
in a background thread (listening on free loopback ports), the downstream is an aiosmtpd server
on its own loop and thread, TLS uses certificates issued by a throw-away ``trustme`` CA.
"""

from __future__ import annotations

import asyncio
import random
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailgateway.server import Gateway
from provisioning.config import Settings, load_settings
from provisioning.models import UsageEvent
from tests.conftest import Govmail, config_data, write_config

DOMAIN = "vinhphuc.gov.vn"
PROVINCE = "000.00.00.H62"
CHOSEN_PASSWORD = "Mật khẩu rất dài 2026"


# --- ports ------------------------------------------------------------------------------------------

def listener_port(host: str = "127.0.0.1") -> int:
    """A free port *below* the kernel's ephemeral range.

    ``directory.slapd.free_port`` asks the kernel for port 0, i.e. an ephemeral port: the very
    range every client socket (ours, the database driver's) draws from, so it was sometimes taken
    by a client before the gateway bound it (or while a killed gateway was restarting)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(max(1025, low - 15000), low)
        with socket.socket(socket.AF_INET) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port found below {low} on {host}")


# --- TLS --------------------------------------------------------------------------------------

@dataclass
class Tls:
    """A CA and the gateway's server certificate (for 127.0.0.1 and localhost) as PEM files."""

    ca: trustme.CA
    cert_file: Path
    key_file: Path

    @classmethod
    def make(cls, directory: Path) -> Tls:
        ca = trustme.CA()
        issued = ca.issue_cert("127.0.0.1", "localhost")
        cert_file, key_file = directory / "gateway-cert.pem", directory / "gateway-key.pem"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        issued.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)
        return cls(ca, cert_file, key_file)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA and checks the host name."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


# --- the gateway in a thread ----------------------------------------------------------------------

class GatewayThread:
    """``Gateway(settings, factory)`` started on its own event loop in a daemon thread."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings, self.factory = settings, factory
        self.gateway: Gateway | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gateway-under-test", daemon=True)

    def start(self) -> GatewayThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the gateway did not start within 30 s")
        if self._error is not None:
            raise AssertionError(f"the gateway failed to start: {self._error!r}") from self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.gateway = Gateway(self.settings, self.factory)
            try:
                await self.gateway.start()
            except Exception as exc:  # noqa: BLE001  (any failure is reported to the test by start())
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await self.gateway.stop()

        asyncio.run(main())

    def stop(self) -> None:
        if self._thread.is_alive() and self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._thread.is_alive():
            raise AssertionError("the gateway did not stop within 30 s")


@dataclass
class Official:
    address: str
    password: str

    @property
    def local_part(self) -> str:
        return self.address.split("@")[0]


@dataclass
class RunningGateway:
    """A started gateway, its configuration (usable by the CLI) and helpers to talk to it."""

    gm: Govmail  # the test's Govmail, its CLI pointed at this gateway's configuration file
    settings: Settings
    tls: Tls
    runner: GatewayThread | None = None
    officials: dict[str, Official] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.settings.gateway.host

    @property
    def inbound_port(self) -> int:
        return self.settings.gateway.inbound_port

    @property
    def submission_port(self) -> int:
        return self.settings.gateway.submission_port

    @property
    def maildir(self) -> Path:
        return self.settings.data_dir / self.settings.gateway.maildir

    def start(self) -> RunningGateway:
        self.runner = GatewayThread(self.settings, self.gm.factory).start()
        return self

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner = None

    # clients -----------------------------------------------------------------------------------

    def inbound(self, **kw: Any) -> smtplib.SMTP:
        client = smtplib.SMTP(self.host, self.inbound_port, timeout=10, **kw)
        client.ehlo("sender.example.org")
        return client

    def submission(self, login: Official | None = None, *, starttls: bool = True, **kw: Any) -> smtplib.SMTP:
        """A submission client after EHLO (and STARTTLS, trusting the test CA; and AUTH if ``login``)."""
        client = smtplib.SMTP(self.host, self.submission_port, timeout=10, **kw)
        client.ehlo("client.vinhphuc.gov.vn")
        if starttls:
            client.starttls(context=self.tls.client_context())
            client.ehlo("client.vinhphuc.gov.vn")
        if login is not None:
            client.login(login.address, login.password)
        return client

    # what the gateway left behind --------------------------------------------------------------

    def delivered(self, address: str) -> list[bytes]:
        """Contents of the files in ``<maildir>/<address>/new/``."""
        new = self.maildir / address / "new"
        return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []

    def events(self) -> list[UsageEvent]:
        with self.gm.factory() as session:
            return list(session.scalars(select(UsageEvent).order_by(UsageEvent.id)))

    def account_id(self, address: str) -> str:
        from provisioning.accounts import get_account

        with self.gm.factory() as session:
            return get_account(session, address).id


def gateway_settings(gm: Govmail, tmp_path: Path, tls: Tls, **overrides: Any) -> tuple[Path, Settings]:
    """A configuration file for ``gm``'s database and directory plus a [gateway] section on free ports."""
    data = config_data(gm.slapd, gm.settings.database.url, gm.settings.directory.base_dn, gm.settings.data_dir)
    inbound = listener_port()
    submission = wait_until(lambda: (port := listener_port()) != inbound and port, 5, "a second port")
    data["gateway"] = {
        "host": "127.0.0.1",
        "inbound_port": inbound,
        "submission_port": submission,
        "hostname": f"mail.{DOMAIN}",
        "tls_cert": str(tls.cert_file),
        "tls_key": str(tls.key_file),
        "max_message_bytes": 20_000,
        "maildir": "mail",
        "auth_failures_per_account": 3,
        "auth_failures_per_client": 8,
        "auth_failure_window": 600.0,
        "directory_refresh": 0.3,
        "relay_timeout": 5.0,
        **overrides,
    }
    config_file = write_config(tmp_path / f"gateway-{uuid.uuid4().hex[:8]}.toml", data)
    return config_file, load_settings(config_file, env={})


def with_config(gm: Govmail, config_file: Path) -> Govmail:
    return replace(gm, config_file=config_file)


# --- messages -------------------------------------------------------------------------------------

def message(sender: str, recipients: list[str], subject: str = "Báo cáo tuần", body: str = "Nội dung.",
            message_id: str | None = None, headers: dict[str, str] | None = None) -> bytes:
    """An RFC 5322 message as CRLF bytes (8-bit UTF-8 body; subject as an encoded word)."""
    from email.header import Header

    lines = [
        f"From: {sender}",
        f"To: {', '.join(recipients)}",
        f"Subject: {Header(subject, 'utf-8').encode()}",
        f"Message-ID: {message_id or make_message_id()}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
        "",
        body,
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


def make_message_id() -> str:
    return f"<{uuid.uuid4().hex}@client.{DOMAIN}>"


# --- a downstream MTA -----------------------------------------------------------------------------

class _Store:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Stored"


class Downstream:
    """A small aiosmtpd server (no TLS, no AUTH) on its own loop and thread, storing what it gets.

    It can be stopped and started again on the same port (the gateway's relay target)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or listener_port()
        self.store = _Store()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        with self.store.lock:
            return list(self.store.messages)

    def start(self) -> Downstream:
        ready, errors = threading.Event(), []

        async def main() -> None:
            loop = asyncio.get_running_loop()
            self._loop, self._stop = loop, asyncio.Event()
            try:
                server = await loop.create_server(
                    lambda: AiosmtpdSMTP(self.store, hostname="downstream.test", loop=loop), "127.0.0.1", self.port)
            except OSError as exc:
                errors.append(exc)
                ready.set()
                return
            ready.set()
            await self._stop.wait()
            server.close()
            await server.wait_closed()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), name="downstream", daemon=True)
        self._thread.start()
        if not ready.wait(10) or errors:
            raise AssertionError(f"the downstream SMTP server did not start on port {self.port}: {errors}")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._thread.is_alive() and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._thread = None


# --- a raw line client, for what smtplib refuses to send ------------------------------------------

class RawSmtp:
    """A plain socket speaking SMTP lines; ``reply()`` reads one (possibly multi-line) reply."""

    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes) -> tuple[int, str]:
        self.send(line + b"\r\n")
        return self.reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed by the server (pending: {self.buffer!r})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self._line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def close(self) -> None:
        self.sock.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        time.sleep(0.05)
