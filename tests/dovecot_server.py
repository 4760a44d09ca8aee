"""A real Dovecot IMAP server for tests, authenticating against the directory through an LDAP passdb.

Debian's ``dovecot-imapd`` and ``dovecot-ldap`` (2.3) are run as the test's own child process
(``dovecot -F``) with everything generated under one directory: configuration, ``base_dir`` (sockets,
pid file), ``state_dir`` and the log. Nothing of the system's Dovecot (``/etc/dovecot``,
``/run/dovecot``, ``/var/lib/dovecot``) is read or touched.

The passdb is what an administrator would configure for govmail: find the account by address or alias
under ``ou=people`` with the service account, only while ``govmailStatus=active``, then bind as the
account with the password given (``auth_bind``), so slapd itself verifies the stored hash.

Mail processes never run as root (Dovecot refuses uid 0). Run as root, mail belongs to the system
``dovecot`` user and lives in a directory of its own under the system temp directory (pytest's temp
tree is 0700 root, which that user cannot enter); run as anyone else, everything is that user's and the
mail lives next to the configuration.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install dovecot-imapd dovecot-ldap"
LOG_TAIL_LINES = 30


def find_dovecot() -> str:
    """Path of the ``dovecot`` binary: ``$DOVECOT`` if set, else ``PATH``, else ``/usr/sbin``.

    Fails the test (never skips) when it is not installed, saying how to install it.
    """
    override = os.environ.get("DOVECOT")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        pytest.fail(f"DOVECOT={override!r} is not an executable file; unset it or {INSTALL_HINT}")
    search = os.pathsep.join(filter(None, [os.environ.get("PATH", os.defpath), "/usr/sbin"]))
    found = shutil.which("dovecot", path=search)
    if found is None:
        pytest.fail(f"Dovecot is not installed (no 'dovecot' binary on PATH or in /usr/sbin): {INSTALL_HINT}")
    return found


def _conf_value(value: str) -> str:
    """A value for a Dovecot ``key = value`` line, quoted when it has characters the parser would eat."""
    if value and value.strip() == value and not any(c in value for c in '"\\#{}$'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class DovecotServer:
    """One Dovecot instance under ``root``, IMAP on ``127.0.0.1:port``, passdb LDAP on ``people_dn``."""

    def __init__(self, root: Path, *, port: int, ldap_url: str, bind_dn: str, bind_password: str,
                 people_dn: str) -> None:
        self.root = root
        self.port = port
        self.ldap_url = ldap_url
        self.bind_dn = bind_dn
        self.bind_password = bind_password
        self.people_dn = people_dn
        self.conf_path = root / "dovecot.conf"
        self.ldap_conf_path = root / "dovecot-ldap.conf.ext"
        self.log_path = root / "dovecot.log"
        self.base_dir = root / "run"
        self.state_dir = root / "state"
        self._own_mail_root = os.geteuid() == 0
        self.mail_root = root / "mail"  # as root: a directory of its own, made by write_config
        self._proc: subprocess.Popen[bytes] | None = None

    # -- configuration --------------------------------------------------------------------------------

    def _mail_user(self) -> pwd.struct_passwd:
        if os.geteuid() != 0:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam("dovecot")
        except KeyError:
            pytest.fail(f"the system user 'dovecot' (created by dovecot-core) is missing: {INSTALL_HINT}")

    def write_config(self) -> None:
        user = self._mail_user()
        self.root.mkdir(parents=True, exist_ok=True)
        if self._own_mail_root:
            self.mail_root = Path(tempfile.mkdtemp(prefix="govmail-dovecot-mail-"))
            os.chown(self.mail_root, user.pw_uid, user.pw_gid)
        else:
            self.mail_root.mkdir(exist_ok=True)
        # Not root: Dovecot's own processes run as this user and cannot chroot.
        root = os.geteuid() == 0
        unprivileged = "" if root else (
            f"default_internal_user = {user.pw_name}\n"
            f"default_login_user = {user.pw_name}\n"
            f"default_internal_group = {grp.getgrgid(user.pw_gid).gr_name}\n"
        )
        no_chroot = "" if root else "  chroot =\n"
        self.ldap_conf_path.write_text(
            f"uris = {self.ldap_url}\n"
            f"dn = {_conf_value(self.bind_dn)}\n"
            f"dnpass = {_conf_value(self.bind_password)}\n"
            "ldap_version = 3\n"
            "auth_bind = yes\n"
            f"base = {_conf_value(self.people_dn)}\n"
            "scope = onelevel\n"
            "pass_filter = (&(objectClass=govmailAccount)(|(mail=%u)(govmailAlias=%u))(govmailStatus=active))\n"
            "pass_attrs = mail=user\n",
            encoding="utf-8",
        )
        self.ldap_conf_path.chmod(0o600)
        self.conf_path.write_text(
            f"base_dir = {self.base_dir}\n"
            f"state_dir = {self.state_dir}\n"
            f"instance_name = govmail-test-{self.port}\n"
            f"{unprivileged}"
            "listen = 127.0.0.1\n"
            "protocols = imap\n"
            "ssl = no\n"
            "# Plain-text passwords over loopback only: this is a test server.\n"
            "disable_plaintext_auth = no\n"
            "auth_mechanisms = plain login\n"
            "# Refusals are answered at Dovecot's next 0.5 s tick instead of after 2 s.\n"
            "auth_failure_delay = 0\n"
            "auth_verbose = yes\n"
            f"log_path = {self.log_path}\n"
            f"mail_location = maildir:{self.mail_root}/%u\n"
            f"first_valid_uid = {user.pw_uid}\n"
            "# No auth penalty (anvil's delay of up to 15 s for an IP after a failed login): tests\n"
            "# refuse logins on purpose and then log in again from the same address.\n"
            "service anvil {\n"
            f"{no_chroot}"
            "  unix_listener anvil-auth-penalty {\n"
            "    mode = 0\n"
            "  }\n"
            "}\n"
            "service imap-login {\n"
            f"{no_chroot}"
            "  inet_listener imap {\n"
            "    address = 127.0.0.1\n"
            f"    port = {self.port}\n"
            "  }\n"
            "}\n"
            "passdb {\n"
            "  driver = ldap\n"
            f"  args = {self.ldap_conf_path}\n"
            "}\n"
            "userdb {\n"
            "  driver = static\n"
            f"  args = uid={user.pw_uid} gid={user.pw_gid} home={self.mail_root}/%u\n"
            "}\n",
            encoding="utf-8",
        )

    # -- process control ----------------------------------------------------------------------------

    def start(self, timeout: float = 10) -> None:
        """Start Dovecot and wait until the IMAP greeting arrives; fails the test with the log's tail."""
        dovecot = find_dovecot()
        self.write_config()
        with open(self.log_path, "ab") as out:  # what Dovecot prints before its log is open
            self._proc = subprocess.Popen(
                [dovecot, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, close_fds=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                self._fail(f"exited at start with status {self._proc.returncode}")
            if self._greets():
                return
            if " Fatal: " in self._log_text():  # e.g. the auth process cannot load its passdb
                self._fail("failed at start")
            if time.monotonic() >= deadline:
                self._fail(f"did not greet on 127.0.0.1:{self.port} within {timeout:g} s")
            time.sleep(0.02)

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                greeting = sock.recv(64)
                sock.sendall(b"0 LOGOUT\r\n")
                return greeting.startswith(b"* OK")
        except OSError:
            return False

    def _fail(self, problem: str) -> None:
        self.stop()
        pytest.fail(f"Dovecot {problem}; config {self.conf_path}\n{self.diagnosis()}")

    def stop(self, wait: bool = True, timeout: float = 10) -> None:
        """Ask Dovecot to stop (SIGTERM to the master, which ends its children).

        Dovecot's master sleeps a fixed second while stopping (to let its log process drain), so a
        caller stopping many servers passes ``wait=False`` and calls :meth:`wait` later.
        """
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        if wait:
            self.wait(timeout)

    def wait(self, timeout: float = 10) -> None:
        """Wait until a stopping Dovecot has exited (SIGKILL after ``timeout``); remove its mail."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._own_mail_root and self.mail_root != self.root / "mail":
            shutil.rmtree(self.mail_root, ignore_errors=True)

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:]) or "(empty log)"

    def diagnosis(self) -> str:
        """The end of Dovecot's log for a failure message, with the fix when it is a known one."""
        tail = self.log_tail()
        hint = ""
        if "Unknown passdb driver 'ldap'" in self._log_text():
            hint = f"Dovecot's LDAP passdb module is missing: {INSTALL_HINT}\n"
        elif "Address already in use" in self._log_text():
            hint = f"port {self.port} was taken by another program meanwhile: run the test again\n"
        return f"{hint}last lines of {self.log_path}:\n{tail}"
