"""The ``govmail`` command: global options, ``init``, ``up``, ``doctor`` and the command groups."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from cli.account import account
from cli import bulk as _bulk  # noqa: F401  (adds account bulk-create / bulk-retire)
from cli.agency import agency
from cli.cert import cert
from cli.app import FORMATS, App, GovmailGroup
from cli.directory import directory, start_embedded
from cli.doctor import doctor
from cli.gateway import gateway
from cli.portal import portal
from cli.sample import sample
from cli.stats import stats
from cli.usage import usage
from provisioning.config import load_settings
from provisioning.db import make_engine, migrate
from provisioning.errors import ConfigError

CONFIG_TEMPLATE = '''\
# govmail configuration. Every key may also be set from the environment as
# GOVMAIL_<SECTION>_<KEY> (e.g. GOVMAIL_DATABASE_URL); the environment wins.
# Relative paths are taken from data_dir.

# Where govmail keeps its files (database, embedded slapd, secrets).
data_dir = "{data_dir}"

[database]
# SQLAlchemy URL of the system of record. SQLite (WAL mode) by default; for several
# gateway/portal workers use PostgreSQL: "postgresql+psycopg://govmail@db.example/govmail".
url = "{database_url}"
# Seconds a writer waits for another writer's lock before giving up (the command can be re-run).
lock_timeout = 30

[directory]
# LDAP server(s), tried in order (multi-provider failover). No trailing slash.
urls = ["ldap://127.0.0.1:{port}"]
base_dn = "{base_dn}"
# The account govmail writes with, and a file holding its password (0600).
bind_dn = "cn=admin,{base_dn}"
bind_password_file = "secrets/ldap-admin.password"
# true: govmail runs its own slapd for urls[0] (govmail up); false: an existing server.
embedded = true
state_dir = "slapd"
start_tls = false
timeout = 10
# Publish each change right after it is committed (otherwise: govmail directory sync).
sync_after_change = true

[accounts]
# "given_initials": Nguyễn Thị Lâm -> lamnt; "full_name": Phạm Thị Trang -> phamthitrang.
address_style = "given_initials"
# Local parts never given to an account, in addition to postmaster, abuse, admin, ...
reserved = []
default_quota_mb = 2048
# Days between retire and purge (mailbox kept, login refused).
retention_days = 90

[passwords]
min_length = 10
max_bytes = 128
# Generated initial passwords (stored as {{SSHA512}}; change forced at first use).
initial_length = 16
# argon2id cost for passwords people choose (stored as {{ARGON2}}).
argon2_memory_kib = 65536
argon2_time_cost = 3
argon2_parallelism = 1

[agencies]
# Levels, top to bottom (districts were abolished in 2025; history keeps them).
levels = ["central", "province", "district", "commune"]

[gateway]
# Listeners (production: inbound_port = 25, submission_port = 587).
host = "127.0.0.1"
inbound_port = 2525
submission_port = 2587
hostname = "mail.govmail.local"
# PEM certificate and key for STARTTLS; AUTH is offered only after STARTTLS.
tls_cert = ""
tls_key = ""
# AUTH without TLS, only when host is a loopback address (tests, local tools).
plain_auth_on_loopback = false
max_message_bytes = 26214400
# "maildir": deliver into data_dir/<maildir>/<address>/; "relay": hand on to relay_host.
delivery = "maildir"
maildir = "mail"
relay_host = ""
relay_port = 25
relay_starttls = true
relay_timeout = 30
# Failed logins allowed per account and per client address within the window (seconds).
auth_failures_per_account = 5
auth_failures_per_client = 20
auth_failure_window = 900
# Refuse AUTH while an account still has its generated initial password (once officials can
# change it themselves, e.g. in the portal).
refuse_unchanged_password = false
# Seconds between reloads of the hosted mailboxes (new accounts, suspensions at RCPT).
directory_refresh = 30

[certificates]
# PEM/DER/PKCS#7 files of the government certification authority's root certificate(s): only
# certificates that chain to one of these are bound (see docs/certificates.md).
trust_anchors = []
# Intermediate (subordinate) CA certificates, when holders' files do not include them.
intermediates = []
# Days before expiry when `govmail cert remind` e-mails the holder and the agency (once each).
reminder_windows = [30, 14, 7]
# Sender of reminders (default no-reply@<[gateway] hostname>) and extra recipients (IT department).
reminder_sender = ""
reminder_cc = []
# true: fetch CRLs from the certificates' distribution points (bind and check); false: only CRLs
# imported with `govmail cert import-crl`. Seconds to wait for a distribution point:
fetch_crl = false
crl_timeout = 10
# Titles counted as leaders in `govmail stats certificates` (a title starting with one of these).
leader_titles = ["Bí thư", "Phó Bí thư", "Chủ tịch", "Phó Chủ tịch", "Giám đốc", "Phó Giám đốc",
                 "Chánh Văn phòng", "Phó Chánh Văn phòng", "Chánh Thanh tra", "Phó Chánh Thanh tra",
                 "Trưởng", "Phó Trưởng"]

[stats]
# The regular-use measure (docs/statistics.md). Days are local days in this time zone.
timezone = "Asia/Ho_Chi_Minh"
# Working days are Monday to Friday minus Vietnam's public holidays (Tết included), minus
# extra_days_off (bridge days the government gives), plus makeup_days (Saturdays worked instead).
makeup_days = []
extra_days_off = []
# A regular user was active in at least this share of their eligible working weeks and sent at
# least min_sent messages; a daily user was active on this share of their eligible working days.
regular_week_share = 0.75
min_sent = 1
daily_day_share = 0.8
# An account counts only when it was usable on at least this many working days of the period.
min_eligible_days = 20
# A mailbox with no activity for this many days is dormant.
dormant_days = 90
# Agencies with fewer eligible accounts than this have their rates left out of published figures.
min_agency_size = 0

[portal]
# govmail portal run: the agency self-service web portal and /api/v1. Put it behind a TLS reverse
# proxy (nginx, Apache) that forwards to host:port; several workers need PostgreSQL.
host = "127.0.0.1"
port = 8080
workers = 1
# The address people type, used in links in notification e-mails.
public_url = "https://portal.govmail.local"
# Encrypts TOTP secrets and credentials handover files; created (0600) on first use. Back it up:
# without it, officials must enrol TOTP again.
secret_key_file = "secrets/portal.key"
# Cookies only over HTTPS (leave true in production; false only for plain-HTTP tests).
cookie_secure = true
# A session ends after this many idle minutes, and after this many hours in any case.
session_idle_minutes = 30
session_max_hours = 12
# Failed sign-ins (password or code) allowed per account and per client address within the
# window (seconds); then sign-in is refused until the window has passed.
signin_failures_per_account = 5
signin_failures_per_client = 20
signin_failure_window = 900
# Name shown in authenticator apps, and how many one-time recovery codes an enrolment gives.
totp_issuer = "govmail"
recovery_codes = 10
# Sender of notification e-mails (default no-reply@<[gateway] hostname>); sent like certificate
# reminders, through [gateway] relay_host or the gateway's own inbound listener.
notify_sender = ""
page_size = 50
# Largest CSV upload for a request for new accounts.
max_upload_bytes = 2000000
max_upload_rows = 5000
'''


@click.group(cls=GovmailGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(path_type=Path), envvar="GOVMAIL_CONFIG",
              help="Configuration file (default: $GOVMAIL_CONFIG, else built-in defaults).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format for what the command prints.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, fmt: str) -> None:
    """govmail: official mail accounts for a province, published to LDAP.

    \b
    Example:
      govmail init --data-dir /var/lib/govmail
      export GOVMAIL_CONFIG=/var/lib/govmail/govmail.toml
      govmail up
      govmail agency add 000.00.00.H62 --name "UBND tỉnh Vĩnh Phúc" --level province --domain vinhphuc.gov.vn
      govmail account create --agency 000.00.00.H62 --name "Nguyễn Thị Lâm"
    """
    ctx.obj = App(config_path=config_path, fmt=fmt)
    ctx.call_on_close(ctx.obj.close)


@cli.command()
@click.option("--data-dir", type=click.Path(path_type=Path), required=True,
              help="Directory for the configuration, database, slapd and secrets.")
@click.option("--base-dn", default="dc=govmail,dc=local", show_default=True, help="LDAP suffix.")
@click.option("--port", default=3389, show_default=True, help="Loopback port of the embedded slapd.")
@click.option("--database-url", default="sqlite:///govmail.db", show_default=True,
              help="SQLAlchemy URL; relative SQLite paths are under the data directory.")
def init(data_dir: Path, base_dn: str, port: int, database_url: str) -> None:
    """Create a data directory with an annotated govmail.toml, a bind secret and the database.

    Running it again on an initialised directory changes nothing.

    \b
    Example:
      govmail init --data-dir /var/lib/govmail
    """
    data_dir = data_dir.expanduser().resolve()
    config_file = data_dir / "govmail.toml"
    if config_file.exists():
        click.echo(f"{config_file} already exists; nothing changed.")
        return
    (data_dir / "secrets").mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(data_dir / "secrets", 0o700)
    secret = data_dir / "secrets" / "ldap-admin.password"
    if not secret.exists():
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))  # no newline: ldapsearch -y reads it whole
    config_file.write_text(CONFIG_TEMPLATE.format(
        data_dir=data_dir, database_url=database_url, port=port, base_dn=base_dn), encoding="utf-8")
    settings = load_settings(config_file)
    migrate(make_engine(settings.database.url))
    click.echo(f"Initialised {data_dir}\nNext:\n  export GOVMAIL_CONFIG={config_file}\n  govmail up")


@cli.command()
@click.pass_obj
def up(app: App) -> None:
    """Apply database migrations, start the embedded slapd (if configured) and publish queued changes.

    \b
    Example:
      GOVMAIL_CONFIG=/var/lib/govmail/govmail.toml govmail up
    """
    settings = app.settings
    if settings.config_file is None:
        raise ConfigError("no configuration: give --config FILE or set GOVMAIL_CONFIG (create one with govmail init)")
    migrate(make_engine(settings.database.url))
    if settings.directory.embedded:
        start_embedded(app)
    app.publish()
    click.echo(f"govmail is up: database {settings.database.url.split('@')[-1]}, "
               f"directory {settings.directory.urls[0]} ({settings.directory.base_dn})")


def _set_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(App).fmt = value


def _accept_format_everywhere(group: click.Group) -> None:
    """Let ``--format`` also follow the subcommand (govmail account list --format json), except
    where the subcommand has a ``--format`` of its own (stats regular-use, usage import-log)."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _accept_format_everywhere(command)
        elif command.name != "init" and not any("--format" in p.opts for p in command.params):
            command.params.append(click.Option(
                ["--format"], type=click.Choice(FORMATS), expose_value=False, callback=_set_format,
                help="Output format: table, csv or json."))


for _group in (agency, account, cert, directory, gateway, doctor, portal, sample, stats, usage):
    cli.add_command(_group)
_accept_format_everywhere(cli)


def main() -> None:
    cli(prog_name="govmail")
