"""Configuration: one annotated TOML file plus ``GOVMAIL_*`` environment overrides.

:func:`load_settings` reads the file named by ``--config`` / ``GOVMAIL_CONFIG``, applies environment
overrides (``GOVMAIL_<SECTION>_<KEY>``, e.g. ``GOVMAIL_DATABASE_URL``) and returns one frozen
:class:`Settings` passed down explicitly. Relative paths are resolved against ``data_dir``.
Secrets are wrapped in :class:`Secret`, whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provisioning.errors import ConfigError

ENV_PREFIX = "GOVMAIL_"
LEVELS_DEFAULT = ("central", "province", "district", "commune")


class Secret:
    """A string that never shows itself in a repr, a log line or an error message."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one call that needs it (a bind, a hash)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///govmail.db"
    echo: bool = False
    lock_timeout: float = 30.0


@dataclass(frozen=True)
class DirectorySettings:
    urls: tuple[str, ...] = ("ldap://127.0.0.1:3389",)
    base_dn: str = "dc=govmail,dc=local"
    bind_dn: str = "cn=admin,dc=govmail,dc=local"
    bind_password: Secret = field(default_factory=lambda: Secret(""))
    bind_password_file: str = "secrets/ldap-admin.password"
    embedded: bool = True
    state_dir: str = "slapd"
    start_tls: bool = False
    timeout: float = 10.0
    sync_after_change: bool = True


@dataclass(frozen=True)
class AccountSettings:
    address_style: str = "given_initials"
    reserved: tuple[str, ...] = ()
    default_quota_mb: int = 2048
    retention_days: int = 90


@dataclass(frozen=True)
class PasswordSettings:
    min_length: int = 10
    max_bytes: int = 128
    initial_length: int = 16
    argon2_memory_kib: int = 65536
    argon2_time_cost: int = 3
    argon2_parallelism: int = 1


@dataclass(frozen=True)
class AgencySettings:
    levels: tuple[str, ...] = LEVELS_DEFAULT


@dataclass(frozen=True)
class GatewaySettings:
    host: str = "127.0.0.1"
    inbound_port: int = 2525
    submission_port: int = 2587
    hostname: str = "mail.govmail.local"
    tls_cert: str = ""
    tls_key: str = ""
    plain_auth_on_loopback: bool = False
    max_message_bytes: int = 26_214_400
    delivery: str = "maildir"
    maildir: str = "mail"
    relay_host: str = ""
    relay_port: int = 25
    relay_starttls: bool = True
    relay_timeout: float = 30.0
    auth_failures_per_account: int = 5
    auth_failures_per_client: int = 20
    auth_failure_window: float = 900.0
    refuse_unchanged_password: bool = False
    directory_refresh: float = 30.0


LEADER_TITLES_DEFAULT = (
    "Bí thư", "Phó Bí thư", "Chủ tịch", "Phó Chủ tịch", "Giám đốc", "Phó Giám đốc",
    "Chánh Văn phòng", "Phó Chánh Văn phòng", "Chánh Thanh tra", "Phó Chánh Thanh tra",
    "Trưởng", "Phó Trưởng",
)


@dataclass(frozen=True)
class CertificateSettings:
    trust_anchors: tuple[str, ...] = ()
    intermediates: tuple[str, ...] = ()
    reminder_windows: tuple[str, ...] = ("30", "14", "7")  # text, like every list here; see ``windows``
    reminder_sender: str = ""
    reminder_cc: tuple[str, ...] = ()
    fetch_crl: bool = False
    crl_timeout: float = 10.0
    leader_titles: tuple[str, ...] = LEADER_TITLES_DEFAULT

    @property
    def windows(self) -> tuple[int, ...]:
        """Reminder windows in days, largest first (validated when the settings are loaded)."""
        return tuple(sorted({int(w) for w in self.reminder_windows}, reverse=True))


@dataclass(frozen=True)
class StatsSettings:
    timezone: str = "Asia/Ho_Chi_Minh"
    makeup_days: tuple[str, ...] = ()  # ISO dates worked in place of a bridge day (make-up Saturdays)
    extra_days_off: tuple[str, ...] = ()  # ISO dates off besides the public holidays (bridge days)
    regular_week_share: float = 0.75
    min_sent: int = 1
    daily_day_share: float = 0.8
    min_eligible_days: int = 20
    dormant_days: int = 90
    min_agency_size: int = 0


@dataclass(frozen=True)
class PortalSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    # The address people type, for links in notification e-mails.
    public_url: str = "http://127.0.0.1:8080"
    # Fernet key that encrypts TOTP secrets and credentials handover files (created on first use).
    secret_key_file: str = "secrets/portal.key"
    cookie_secure: bool = True
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    signin_failures_per_account: int = 5
    signin_failures_per_client: int = 20
    signin_failure_window: float = 900.0
    totp_issuer: str = "govmail"
    recovery_codes: int = 10
    notify_sender: str = ""
    page_size: int = 50
    max_upload_bytes: int = 2_000_000
    max_upload_rows: int = 5000


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".")
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    directory: DirectorySettings = field(default_factory=DirectorySettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    agencies: AgencySettings = field(default_factory=AgencySettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    certificates: CertificateSettings = field(default_factory=CertificateSettings)
    stats: StatsSettings = field(default_factory=StatsSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    config_file: Path | None = None

    def path(self, value: str) -> Path:
        """``value`` as an absolute path, relative ones taken from ``data_dir``."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.data_dir / p


SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "directory": DirectorySettings,
    "accounts": AccountSettings,
    "passwords": PasswordSettings,
    "agencies": AgencySettings,
    "gateway": GatewaySettings,
    "certificates": CertificateSettings,
    "stats": StatsSettings,
    "portal": PortalSettings,
}


def _convert(section: str, key: str, raw: Any, target: Any) -> Any:
    """Convert a TOML or environment value to the type of the field's default."""
    where = f"[{section}] {key}"
    try:
        if isinstance(target, Secret):
            return Secret(str(raw))
        if isinstance(target, bool):
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(target, int):
            if isinstance(raw, bool):
                raise ValueError("expected a whole number")
            return int(raw)
        if isinstance(target, float):
            return float(raw)
        if isinstance(target, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if not isinstance(raw, str):
            raise ValueError("expected text")
        return raw
    except (TypeError, ValueError) as exc:
        shown = "********" if isinstance(target, Secret) else repr(raw)
        raise ConfigError(f"configuration {where} = {shown}: {exc}") from None


def _section(name: str, cls: type, values: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    defaults = cls()
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(
            f"configuration [{name}]: unknown key(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    kwargs: dict[str, Any] = {}
    for key in known:
        target = getattr(defaults, key)
        env_key = f"{ENV_PREFIX}{name}_{key}".upper()
        if env_key in env:
            kwargs[key] = _convert(name, key, env[env_key], target)
        elif key in values:
            kwargs[key] = _convert(name, key, values[key], target)
    return dataclasses.replace(defaults, **kwargs)


def _check_stats(stats: StatsSettings) -> None:
    try:
        ZoneInfo(stats.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"configuration [stats] timezone: {stats.timezone!r} is not a time zone (e.g. 'Asia/Ho_Chi_Minh')"
        ) from None
    for key in ("makeup_days", "extra_days_off"):
        for value in getattr(stats, key):
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ConfigError(
                    f"configuration [stats] {key}: {value!r} is not a date (write YYYY-MM-DD, e.g. '2025-04-26')"
                ) from None
    for key in ("regular_week_share", "daily_day_share"):
        if not 0 < getattr(stats, key) <= 1:
            raise ConfigError(f"configuration [stats] {key} must be a share between 0 and 1 (e.g. 0.75)")
    for key in ("min_sent", "min_eligible_days", "dormant_days", "min_agency_size"):
        if getattr(stats, key) < 0:
            raise ConfigError(f"configuration [stats] {key} must not be negative")


def settings_from_mapping(
    data: Mapping[str, Any], *, base_dir: Path, env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Build :class:`Settings` from parsed TOML ``data`` and environment ``env``.

    :raises ConfigError: unknown sections or keys, or values of the wrong type.
    """
    env = dict(os.environ if env is None else env)
    unknown = set(data) - set(SECTIONS) - {"data_dir"}
    if unknown:
        raise ConfigError(
            f"configuration: unknown section(s) {', '.join(sorted(unknown))} "
            f"(known: data_dir, {', '.join(SECTIONS)})"
        )
    data_dir = Path(env.get(f"{ENV_PREFIX}DATA_DIR", data.get("data_dir", ".")))
    data_dir = (data_dir if data_dir.is_absolute() else base_dir / data_dir).resolve()
    sections = {name: _section(name, cls, data.get(name, {}), env) for name, cls in SECTIONS.items()}
    directory: DirectorySettings = sections["directory"]
    if not directory.bind_password:
        pw_file = Path(directory.bind_password_file).expanduser()
        pw_file = pw_file if pw_file.is_absolute() else data_dir / pw_file
        if pw_file.is_file():
            directory = dataclasses.replace(
                directory, bind_password=Secret(pw_file.read_text(encoding="utf-8").strip())
            )
    for url in directory.urls:
        if url.endswith("/"):
            raise ConfigError(
                f"configuration [directory] urls: {url!r} ends with '/' (write it as {url.rstrip('/')!r})"
            )
    if sections["accounts"].address_style not in ("given_initials", "full_name"):
        raise ConfigError(
            "configuration [accounts] address_style must be 'given_initials' or 'full_name'"
        )
    if sections["gateway"].delivery not in ("maildir", "relay"):
        raise ConfigError("configuration [gateway] delivery must be 'maildir' or 'relay'")
    if sections["gateway"].delivery == "relay" and not sections["gateway"].relay_host:
        raise ConfigError("configuration [gateway] delivery = 'relay' needs relay_host (the downstream MTA)")
    for window in sections["certificates"].reminder_windows:
        if not window.isdigit() or not 0 < int(window) <= 366:
            raise ConfigError(
                f"configuration [certificates] reminder_windows: {window!r} is not a number of days "
                f"(write whole days between 1 and 366, e.g. [30, 14, 7])"
            )
    _check_stats(sections["stats"])
    portal: PortalSettings = sections["portal"]
    for key in ("session_idle_minutes", "session_max_hours", "signin_failures_per_account",
                "signin_failures_per_client", "page_size", "max_upload_rows"):
        if getattr(portal, key) < 1:
            raise ConfigError(f"configuration [portal] {key} must be at least 1")
    database: DatabaseSettings = sections["database"]
    if database.url.startswith("sqlite:///") and not database.url.startswith("sqlite:////"):
        rel = database.url[len("sqlite:///"):]
        if rel and rel != ":memory:":
            database = dataclasses.replace(database, url=f"sqlite:///{data_dir / rel}")
    sections["directory"] = directory
    sections["database"] = database
    return Settings(data_dir=data_dir, config_file=config_file, **sections)


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file at ``path`` (or ``$GOVMAIL_CONFIG``) and apply overrides.

    With neither, the defaults apply with ``data_dir`` the current directory.

    :raises ConfigError: the file is missing, not valid TOML, or has invalid values.
    """
    env = dict(os.environ if env is None else env)
    if path is None and env.get(f"{ENV_PREFIX}CONFIG"):
        path = Path(env[f"{ENV_PREFIX}CONFIG"])
    if path is None:
        return settings_from_mapping({}, base_dir=Path.cwd(), env=env)
    path = path.expanduser().resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} not found (create one with: govmail init --data-dir DIR)"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
    return settings_from_mapping(data, base_dir=path.parent, env=env, config_file=path)
