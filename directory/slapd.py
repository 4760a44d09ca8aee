"""The embedded local slapd: OpenLDAP's server run by govmail itself.

``govmail up`` / ``govmail directory start`` use it when no external directory is configured, and the
test suite uses it as a fixture (modelled on python-ldap's ``slapdtest``). Everything lives under one
state directory::

    <state_dir>/slapd.d/      cn=config, generated once with ``slapadd -n0`` (see :meth:`configure`)
    <state_dir>/db/           the mdb database
    <state_dir>/run/ldapi     the LDAPI socket (root may ``ldapmodify -Y EXTERNAL`` cn=config on it)
    <state_dir>/run/slapd.pid our pid file
    <state_dir>/slapd.log     slapd's own output, appended

slapd runs in the foreground of its own session (``-d``), detached from the caller, so it survives the
command that started it; :meth:`LocalSlapd.stop` ends it. Only the base DN's database is created here:
the base entry and the OUs are written by the directory syncer over LDAP like any other entry.

Environment overrides: ``SLAPD`` and ``SLAPADD`` (binaries; default: ``PATH``, then ``/usr/sbin``),
``SLAPD_SCHEMA_DIR`` (core/cosine/inetorgperson LDIF; default ``/etc/ldap/schema``),
``SLAPD_MODULE_DIR`` (default ``/usr/lib/ldap``) and ``SLAPD_LOGLEVEL`` (``-d`` level; default
``none``, which logs start, stop and errors only; ``stats`` logs every connection and operation).
"""

from __future__ import annotations

import base64
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn
from passlib.hash import ldap_salted_sha512

from provisioning.errors import ConfigError, DirectoryUnavailable

__all__ = ["SlapdConfig", "LocalSlapd", "free_port", "find_command"]

STANDARD_SCHEMAS = ("core", "cosine", "inetorgperson")
DEFAULT_SCHEMA_DIR = "/etc/ldap/schema"
DEFAULT_MODULE_DIR = "/usr/lib/ldap"
DEFAULT_LOGLEVEL = "none"
# The argon2 parameters apply when slapd hashes a password itself (Password Modify, olcPasswordHash):
# the same cost as passlib's argon2 defaults that govmail uses. Debian's build hashes with argon2i
# there; it verifies argon2i and argon2id alike.
MODULES = ("back_mdb", "argon2 m=65536 t=3 p=4", "pw-sha2")
# mdb maps the whole size up front but the file stays sparse; a million accounts need ~2-4 GiB.
DB_MAX_SIZE = 10 * 1024**3
DB_INDEXES = (
    "objectClass eq",
    "uid,mail,govmailId,govmailAlias,govmailAgencyCode,govmailStatus eq",
    "cn sub",
)
# Order matters: slapd uses the first "to" clause that matches, so the refusal for accounts that are
# not active must come before the rule that lets anonymous clients authenticate.
DB_ACCESS = (
    "to attrs=userPassword filter=(&(objectClass=govmailAccount)(!(govmailStatus=active)))"
    " by * none",
    # Passwords change only through govmail (policy, audit, and reconcile would undo a direct change).
    "to attrs=userPassword by anonymous auth by * none",
    "to * by self read by users read by * none",
)
PEERCRED_DN = "gidNumber={gid}+uidNumber={uid},cn=peercred,cn=external,cn=auth"
LOG_TAIL_LINES = 25
LOG_ROTATE_BYTES = 10 * 1024**2
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes, NUL included
_POLL_INTERVAL = 0.05
# A raw LDAPv3 anonymous bind (messageID 1) and the start of slapd's success reply: probing with a
# plain socket keeps the readiness check cheap and free of client-library socket leaks on refusal.
_ANONYMOUS_BIND_REQUEST = bytes.fromhex("300c020101600702010304008000")
_BIND_SUCCESS_PREFIX = bytes.fromhex("300c02010161070a0100")
_UNBIND_REQUEST = bytes.fromhex("30050201024200")
# The slapd processes this Python process started, shared by all LocalSlapd instances so that
# whichever instance stops a server also reaps it through its Popen (no zombie, no ResourceWarning).
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class SlapdConfig:
    """What the local slapd serves and where it keeps its files.

    Raises :class:`ConfigError` on construction when a value cannot work (empty or malformed DN,
    port out of range, empty password). The password is kept out of ``repr``; the generated
    configuration stores only its ``{SSHA512}`` hash.
    """

    state_dir: Path
    base_dn: str
    port: int
    root_dn: str
    root_password: str = field(repr=False)
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        _check_dn("base_dn", self.base_dn)
        _check_dn("root_dn", self.root_dn)
        if not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise ConfigError(f"slapd port {self.port!r}: not a TCP port (use 1-65535)")
        if not self.root_password:
            raise ConfigError("slapd root_password: empty (set a password for the directory root DN)")
        if not self.host:
            raise ConfigError("slapd host: empty (use a loopback address such as 127.0.0.1)")


class LocalSlapd:
    """Controls one slapd instance living under ``config.state_dir``.

    Instances are cheap and keep no state of their own: two ``LocalSlapd`` objects (or two
    processes) on the same state directory see the same server through its pid file, and
    :meth:`start` and :meth:`stop` serialise on a lock file so concurrent calls cannot start two.
    """

    def __init__(self, config: SlapdConfig) -> None:
        self.config = config
        self._root = config.state_dir.resolve()

    # -- paths and addresses --------------------------------------------------------------------

    @property
    def slapd_d(self) -> Path:
        """The cn=config directory (``slapd -F``)."""
        return self._root / "slapd.d"

    @property
    def db_dir(self) -> Path:
        """The mdb database directory."""
        return self._root / "db"

    @property
    def run_dir(self) -> Path:
        """Where the LDAPI socket and the pid file live."""
        return self._root / "run"

    @property
    def socket_path(self) -> Path:
        """The LDAPI socket."""
        return self.run_dir / "ldapi"

    @property
    def pid_file(self) -> Path:
        """Our pid file for the running slapd."""
        return self.run_dir / "slapd.pid"

    @property
    def lock_file(self) -> Path:
        """Held (flock) while starting or stopping."""
        return self.run_dir / "slapd.lock"

    @property
    def log_file(self) -> Path:
        """slapd's stdout and stderr, appended across runs."""
        return self._root / "slapd.log"

    @property
    def url(self) -> str:
        """``ldap://HOST:PORT`` (no trailing slash: ldap3 rejects one)."""
        host = self.config.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"ldap://{host}:{self.config.port}"

    @property
    def ldapi_url(self) -> str:
        """``ldapi://`` URL of the socket, path percent-encoded as OpenLDAP's tools expect."""
        return "ldapi://" + quote(str(self.socket_path), safe="")

    # -- configuration ----------------------------------------------------------------------------

    def is_configured(self) -> bool:
        """True when cn=config has been generated under ``slapd_d``."""
        return (self.slapd_d / "cn=config.ldif").is_file()

    def configure(self) -> None:
        """Generate cn=config unless it exists; an existing configuration is never rewritten.

        The configuration is built in a temporary directory, loaded with ``slapadd -n0``, checked
        with ``slapd -Ttest`` and only then moved into place, so an interrupted run leaves nothing
        half-written. Later changes (a new root password, say) are made over LDAPI with
        ``ldapmodify -Y EXTERNAL -H <ldapi_url>``.

        Raises :class:`ConfigError` when a binary, a schema file or a module is missing, or when
        slapadd or slapd reject the generated configuration (with their output in the message).
        """
        if self.is_configured():
            return
        slapadd = find_command("slapadd", "SLAPADD")
        slapd = find_command("slapd", "SLAPD")
        ldif = self.config_ldif()
        self._make_dirs()
        staging = Path(tempfile.mkdtemp(prefix="slapd.d.", dir=self._root))
        try:
            _run([slapadd, "-n0", "-F", str(staging)], ldif, "slapadd could not load the generated cn=config")
            # -u: slaptest opens databases read-only, and mdb cannot create its files read-only.
            _run([slapd, "-Ttest", "-u", "-F", str(staging)], None, "slapd -Ttest rejected the cn=config")
            self._install_config(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def config_ldif(self) -> str:
        """The cn=config LDIF :meth:`configure` loads (it contains the root password's hash).

        Raises :class:`ConfigError` when a schema file cannot be read.
        """
        cfg = self.config
        module_dir = os.environ.get("SLAPD_MODULE_DIR") or DEFAULT_MODULE_DIR
        parts = [
            # olcLogLevel only feeds syslog; this server logs to its own file through -d.
            _entry("cn=config", [("objectClass", "olcGlobal"), ("cn", "config"), ("olcLogLevel", "0")]),
            _entry(
                "cn=module{0},cn=config",
                [("objectClass", "olcModuleList"), ("cn", "module{0}"), ("olcModulePath", module_dir)]
                + [("olcModuleLoad", name) for name in MODULES],
            ),
            _entry("cn=schema,cn=config", [("objectClass", "olcSchemaConfig"), ("cn", "schema")]),
            *_schema_ldifs(),
            # olcPasswordHash is checked when parsed; on cn=config itself that is before the argon2
            # module is loaded, so it goes on the frontend (which slapd reads after the modules).
            _entry(
                "olcDatabase={-1}frontend,cn=config",
                [
                    ("objectClass", "olcDatabaseConfig"),
                    ("objectClass", "olcFrontendConfig"),
                    ("olcDatabase", "{-1}frontend"),
                    ("olcPasswordHash", "{ARGON2}"),
                ],
            ),
            _entry("olcDatabase={0}config,cn=config", self._config_database_attrs()),
            _entry("olcDatabase={1}mdb,cn=config", self._mdb_attrs(cfg)),
        ]
        return "\n".join(parts)

    def _config_database_attrs(self) -> list[tuple[str, str]]:
        attrs = [
            ("objectClass", "olcDatabaseConfig"),
            ("olcDatabase", "{0}config"),
            ("olcRootDN", PEERCRED_DN.format(gid=0, uid=0)),
        ]
        uid, gid = os.getuid(), os.getgid()
        if uid != 0:
            # The owner of the state directory can edit these files anyway; let them do it safely.
            owner = PEERCRED_DN.format(gid=gid, uid=uid)
            attrs.append(("olcAccess", f'{{0}}to * by dn.exact="{owner}" manage by * none'))
        return attrs

    def _mdb_attrs(self, cfg: SlapdConfig) -> list[tuple[str, str]]:
        return [
            ("objectClass", "olcDatabaseConfig"),
            ("objectClass", "olcMdbConfig"),
            ("olcDatabase", "{1}mdb"),
            ("olcSuffix", cfg.base_dn),
            ("olcRootDN", cfg.root_dn),
            ("olcRootPW", ldap_salted_sha512.hash(cfg.root_password)),
            ("olcDbDirectory", str(self.db_dir)),
            ("olcDbMaxSize", str(DB_MAX_SIZE)),
            *[("olcDbIndex", index) for index in DB_INDEXES],
            *[("olcAccess", f"{{{n}}}{rule}") for n, rule in enumerate(DB_ACCESS)],
        ]

    def _make_dirs(self) -> None:
        for path in (self._root, self.db_dir, self.run_dir):
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"slapd state directory {path}: cannot create it ({exc.strerror}); "
                    "choose a data directory this user can write"
                ) from exc

    def _install_config(self, staging: Path) -> None:
        try:
            staging.rename(self.slapd_d)
        except OSError:
            if not self.is_configured():  # else another process configured it first: keep theirs
                raise

    # -- process control ----------------------------------------------------------------------------

    def start(self, timeout: float = 15) -> None:
        """Make sure slapd is running and answering on :attr:`url`.

        Configures first if needed. If the slapd of the pid file is alive, waits until it answers and
        returns; otherwise starts slapd detached (its own session, output appended to
        :attr:`log_file`) and waits up to ``timeout`` seconds for an anonymous bind to succeed.

        Raises :class:`ConfigError` (see :meth:`configure`; also when the state directory's path is
        too long for the LDAPI socket) and :class:`DirectoryUnavailable` when slapd exits or does not
        answer in time, with the end of its log in the message. A slapd that was started here but
        does not answer is stopped before raising.
        """
        self._check_socket_path()
        deadline = time.monotonic() + timeout
        with self._locked():
            self.configure()
            pid = self.pid()
            if pid is not None:
                if self._wait_until_answering(deadline, pid):
                    return
                if _alive(pid):
                    raise DirectoryUnavailable(
                        f"slapd (pid {pid}, state {self._root}) is running but does not answer on "
                        f"{self.url}; stop it (govmail directory stop, or kill {pid}) and start again"
                        + self._log_tail_text()
                    )
            pid = self._spawn()
            try:
                answering = self._wait_until_answering(deadline, pid)
            except BaseException:
                self._stop(timeout=10)
                raise
            if not answering:
                self._fail_start(pid, timeout)

    def stop(self, timeout: float = 10) -> None:
        """Stop slapd: SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds.

        Does nothing (and raises nothing) when slapd is not running; removes the pid file. Raises
        :class:`DirectoryUnavailable` if the process cannot be signalled (another user's process).
        """
        with self._locked():
            self._stop(timeout)

    def _stop(self, timeout: float) -> None:
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                self._signal(pid, signal.SIGKILL)
                self._wait_exit(pid, 5)
            _SPAWNED.pop(pid, None)
        self.pid_file.unlink(missing_ok=True)

    def is_running(self) -> bool:
        """True when the slapd recorded in the pid file is alive (it may not answer yet)."""
        return self.pid() is not None

    def pid(self) -> int | None:
        """The process id of this state directory's slapd, or None when it is not running.

        A stale pid file (process gone, or the id reused by another program) reads as None.
        """
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and self._is_our_slapd(pid) else None

    def answers(self) -> bool:
        """True when an anonymous simple bind on :attr:`url` succeeds right now."""
        try:
            with socket.create_connection((self.config.host, self.config.port), timeout=0.5) as sock:
                sock.sendall(_ANONYMOUS_BIND_REQUEST)
                reply = sock.recv(64)
                sock.sendall(_UNBIND_REQUEST)
        except OSError:
            return False
        return reply.startswith(_BIND_SUCCESS_PREFIX)

    def _spawn(self) -> int:
        slapd = find_command("slapd", "SLAPD")
        self._make_dirs()
        self._rotate_log()
        loglevel = os.environ.get("SLAPD_LOGLEVEL") or DEFAULT_LOGLEVEL
        argv = [
            slapd,
            "-F", str(self.slapd_d),
            "-h", f"{self.url}/ {self.ldapi_url}",
            "-d", loglevel,
        ]  # fmt: skip
        banner = f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} govmail: starting {' '.join(argv)}\n"
        with open(self.log_file, "ab") as log:
            log.write(banner.encode())
            log.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _SPAWNED[proc.pid] = proc
        _write_atomically(self.pid_file, f"{proc.pid}\n")
        return proc.pid

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._make_dirs()
        with open(self.lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield  # closing the file releases the lock

    def _wait_until_answering(self, deadline: float, pid: int) -> bool:
        while True:
            if not _alive(pid):
                return False
            if self.answers():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_INTERVAL)

    def _fail_start(self, pid: int, timeout: float) -> NoReturn:
        if _alive(pid):
            problem = f"did not answer on {self.url} within {timeout:g} s"
            self._stop(timeout=10)
        else:
            proc = _SPAWNED.pop(pid, None)
            code = proc.returncode if proc is not None else None
            problem = "exited at start" + (f" (exit status {code})" if code is not None else "")
            self.pid_file.unlink(missing_ok=True)
        tail = self._log_tail_text()
        hint = ""
        if "Address already in use" in tail:
            hint = f"; port {self.config.port} is taken by another program: choose another port"
        raise DirectoryUnavailable(f"slapd {problem}{hint}; full log: {self.log_file}{tail}")

    def _is_our_slapd(self, pid: int) -> bool:
        """Whether a live pid is this state directory's slapd (not a reused process id)."""
        if pid in _SPAWNED:
            return True  # our own child; /proc can still show the pre-exec command line just after Popen
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return not Path("/proc/self").exists()  # no procfs: trust the pid file
        except OSError:
            return True
        return os.fsencode(str(self.slapd_d)) in argv

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_INTERVAL)
        return True

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError as exc:
            raise DirectoryUnavailable(
                f"cannot stop slapd (pid {pid}): {exc.strerror}; run as the user that started it"
            ) from exc

    def _check_socket_path(self) -> None:
        if len(os.fsencode(str(self.socket_path))) > _SUN_PATH_MAX:
            raise ConfigError(
                f"slapd state directory {self._root}: path too long for the LDAPI socket "
                f"({self.socket_path} exceeds {_SUN_PATH_MAX} bytes); choose a shorter data directory"
            )

    def _rotate_log(self) -> None:
        try:
            if self.log_file.stat().st_size > LOG_ROTATE_BYTES:
                self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        except FileNotFoundError:
            pass

    def _log_tail_text(self) -> str:
        lines = _tail(self.log_file, LOG_TAIL_LINES)
        if not lines:
            return ""
        return "\nlast lines of the slapd log:\n" + "\n".join(lines)


def _alive(pid: int) -> bool:
    """Whether a process exists and has not exited (an unreaped zombie counts as exited)."""
    if pid in _SPAWNED:
        return _SPAWNED[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nobody listens on right now (it may be taken again later)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_command(name: str, env_var: str) -> str:
    """Path of an OpenLDAP binary: ``$env_var`` if set, else ``PATH``, else ``/usr/sbin``.

    Raises :class:`ConfigError` saying how to install it or where to point ``env_var``.
    """
    override = os.environ.get(env_var)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise ConfigError(f"{env_var}={override!r}: not an executable file (point it at the {name} binary)")
    search = os.pathsep.join(filter(None, [os.environ.get("PATH", os.defpath), "/usr/sbin"]))
    found = shutil.which(name, path=search)
    if found is None:
        raise ConfigError(
            f"Command {name!r} not found. Install Debian's slapd package (apt-get install slapd) "
            f"or set {env_var}=/path/to/{name}"
        )
    return found


def _schema_ldifs() -> list[str]:
    schema_dir = Path(os.environ.get("SLAPD_SCHEMA_DIR") or DEFAULT_SCHEMA_DIR)
    texts = [_read_schema(schema_dir / f"{name}.ldif", "SLAPD_SCHEMA_DIR") for name in STANDARD_SCHEMAS]
    try:
        texts.append(resources.files("directory").joinpath("schema", "govmail.ldif").read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"govmail schema file: cannot read it ({exc.strerror}); reinstall govmail") from exc
    return [text if text.endswith("\n") else text + "\n" for text in texts]


def _read_schema(path: Path, env_var: str) -> str:
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(
            f"OpenLDAP schema {path}: cannot read it ({exc.strerror}); install Debian's slapd package "
            f"or set {env_var} to the directory holding core.ldif, cosine.ldif and inetorgperson.ldif"
        ) from exc


def _entry(dn: str, attrs: list[tuple[str, str]]) -> str:
    lines = [_ldif_line("dn", dn)] + [_ldif_line(name, value) for name, value in attrs]
    return "\n".join(lines) + "\n"


def _ldif_line(name: str, value: str) -> str:
    """One LDIF attribute line, base64-encoded when RFC 2849 does not allow the value as is."""
    safe = (
        value.isascii()
        and value.isprintable()
        and not value.startswith((" ", ":", "<"))
        and not value.endswith(" ")
    )
    if safe:
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"


def _check_dn(name: str, value: str) -> None:
    if not value:
        raise ConfigError(f"slapd {name}: empty (use a DN such as dc=govmail,dc=local)")
    try:
        parse_dn(value)
    except LDAPInvalidDnError as exc:
        raise ConfigError(f"slapd {name} {value!r}: not a valid DN ({exc})") from exc


def _run(argv: list[str], stdin: str | None, problem: str) -> None:
    result = subprocess.run(
        argv,
        input=stdin.encode("utf-8") if stdin is not None else None,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode("utf-8", "replace").strip()
        raise ConfigError(
            f"{problem} ({' '.join(argv)} exited with {result.returncode}); check the OpenLDAP "
            f"installation (modules in SLAPD_MODULE_DIR, schemas in SLAPD_SCHEMA_DIR):\n{output}"
        )


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _tail(path: Path, count: int) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-count:]
