"""``govmail gateway run|check``: the SMTP gateway that records usage."""

from __future__ import annotations

import asyncio
import logging
import signal
import smtplib
import sys
import warnings

import click

from cli.app import EXIT_FAILED, App
from mailgateway.server import Gateway, JsonLines
from provisioning.db import make_engine, session_factory


@click.group()
def gateway() -> None:
    """The mail gateway: authenticated submission and inbound SMTP, recording usage.

    \b
    Example:
      govmail gateway run
      govmail gateway check --format json
    """


@gateway.command("run")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Least severe level logged.")
@click.pass_obj
def gateway_run(app: App, log_level: str) -> None:
    """Run the gateway until SIGTERM or Ctrl-C; logs JSON lines on stderr (never bodies or secrets).

    \b
    Example:
      GOVMAIL_CONFIG=/var/lib/govmail/govmail.toml govmail gateway run
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger("govmail")
    root.addHandler(handler)
    root.setLevel(log_level)
    # aiosmtpd 1.4 warns about its own Session.login_data after each AUTH: noise for operators
    warnings.filterwarnings("ignore", "Session.login_data is deprecated", DeprecationWarning)
    db = app.settings.database
    engine = make_engine(db.url, db.echo, db.lock_timeout, durable=True)
    try:
        asyncio.run(_serve(Gateway(app.settings, session_factory(engine))))
    finally:
        engine.dispose()


async def _serve(gw: Gateway) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gw.start()
    await stop.wait()
    await gw.stop()


@gateway.command("check")
@click.pass_obj
def gateway_check(app: App) -> None:
    """Check that both listeners answer EHLO and what they offer; exit 1 when one does not.

    \b
    Example:
      govmail gateway check
    """
    g = app.settings.gateway
    rows = []
    for role, port in (("inbound", g.inbound_port), ("submission", g.submission_port)):
        try:
            with smtplib.SMTP(g.host, port, timeout=5) as client:
                code, _ = client.ehlo("govmail-check")
                offers = sorted(k.upper() for k in client.esmtp_features)
                rows.append({"listener": role, "address": f"{g.host}:{port}", "status": "ok" if code == 250 else f"EHLO {code}",
                             "offers": " ".join(offers)})
        except OSError as exc:
            rows.append({"listener": role, "address": f"{g.host}:{port}", "status": f"down ({type(exc).__name__})", "offers": ""})
    app.emit(rows, ["listener", "address", "status", "offers"])
    if any(r["status"] != "ok" for r in rows):
        raise SystemExit(EXIT_FAILED)
