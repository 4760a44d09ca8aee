"""Running the gateway: two SMTP listeners (inbound and submission), the recorder, the snapshot.

``Gateway`` owns everything one gateway process runs; several processes can share one PostgreSQL
(the recorder only inserts, with duplicates ignored).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
from dataclasses import dataclass, field
from functools import partial

from sqlalchemy.orm import Session, sessionmaker

from mailgateway.delivery import Maildir
from mailgateway.handler import GatewayHandler
from mailgateway.mailboxes import Snapshot, load_snapshot
from mailgateway.recorder import Recorder
from mailgateway.smtp import GatewaySMTP
from provisioning.config import Settings
from provisioning.errors import ConfigError

log = logging.getLogger("govmail.gateway")


class JsonLines(logging.Formatter):
    """One JSON object per log line (time, level, logger, message) for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(entry, ensure_ascii=False)


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context from [gateway] tls_cert/tls_key, or None when none is configured.

    :raises ConfigError: the files cannot be loaded.
    """
    g = settings.gateway
    if not g.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.path(g.tls_cert), settings.path(g.tls_key) if g.tls_key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[gateway] tls_cert/tls_key cannot be loaded: {exc}") from None
    return context


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class Gateway:
    settings: Settings
    factory: sessionmaker[Session]
    recorder: Recorder = field(init=False)
    handlers: list[GatewayHandler] = field(default_factory=list)
    servers: list[asyncio.AbstractServer] = field(default_factory=list)

    def _smtp_options(self, role: str, tls: ssl.SSLContext | None) -> dict:
        g = self.settings.gateway
        options = dict(hostname=g.hostname, data_size_limit=g.max_message_bytes, enable_SMTPUTF8=True,
                       tls_context=tls, timeout=300)
        if role == "submission":
            plain = tls is None and g.plain_auth_on_loopback and _loopback(g.host)
            if tls is None and not plain:
                raise ConfigError("[gateway] submission needs tls_cert and tls_key (AUTH is offered only after "
                                  "STARTTLS); for a loopback test set plain_auth_on_loopback = true")
            if plain:
                log.warning("AUTH without TLS is enabled on %s (plain_auth_on_loopback): for testing only", g.host)
            options.update(auth_required=True, auth_require_tls=not plain, require_starttls=not plain,
                           auth_exclude_mechanism=["CRAM-MD5"])
        else:  # port 25 takes mail for the hosted domains: no logins there
            options.update(auth_exclude_mechanism=["CRAM-MD5", "PLAIN", "LOGIN"])
        return options

    async def start(self) -> None:
        """Load the mailbox snapshot, start the recorder and both listeners."""
        g = self.settings.gateway
        loop = asyncio.get_running_loop()
        snapshot = await loop.run_in_executor(None, load_snapshot, self.factory)
        maildir = Maildir(self.settings.path(g.maildir)) if g.delivery == "maildir" else None
        self.recorder = Recorder(self.factory.kw["bind"], maildir)
        self.recorder.start()
        try:
            tls = tls_context(self.settings)
            for role, port in (("inbound", g.inbound_port), ("submission", g.submission_port)):
                handler = GatewayHandler(role, g, self.factory, self.recorder, snapshot)
                options = self._smtp_options(role, tls)
                try:
                    server = await loop.create_server(partial(GatewaySMTP, handler, loop=loop, **options), host=g.host, port=port)
                except OSError as exc:
                    raise ConfigError(f"[gateway] cannot listen on {g.host}:{port} ({role}): {exc.strerror}") from None
                self.handlers.append(handler)
                self.servers.append(server)
                log.info("listening role=%s on %s:%d", role, g.host, port)
        except BaseException:
            # e.g. the second port is taken: do not leave the first listener and the recorder running
            for server in self.servers:
                server.close()
                await server.wait_closed()
            await loop.run_in_executor(None, self.recorder.stop)
            raise
        self._tasks = [asyncio.create_task(self._refresh()), asyncio.create_task(self._summarise())]

    async def _refresh(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.gateway.directory_refresh)
            try:
                snapshot: Snapshot = await loop.run_in_executor(None, load_snapshot, self.factory)
            except Exception:
                log.exception("mailbox snapshot refresh failed; keeping the previous one")
                continue
            for handler in self.handlers:
                handler.snapshot = snapshot

    async def _summarise(self, every: float = 60.0) -> None:
        """One INFO line per minute with the messages accepted and deferred (per message: DEBUG)."""
        while True:
            await asyncio.sleep(every)
            self.log_counts()

    def log_counts(self) -> None:
        for handler in self.handlers:
            if handler.counts:
                log.info("messages role=%s accepted=%d deferred=%d", handler.role,
                         handler.counts["accepted"], handler.counts["deferred"])
                handler.counts.clear()

    async def stop(self) -> None:
        """Stop listening, then let the recorder write what it holds."""
        for task in self._tasks:
            task.cancel()
        for server in self.servers:
            server.close()
            await server.wait_closed()
        await asyncio.get_running_loop().run_in_executor(None, self.recorder.stop)
        self.log_counts()
