"""The embedded slapd and the govmail schema, against Debian's real slapd (no mocks).

If slapd is not installed these tests fail with the message that says how to install it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPNoSuchObjectResult
from passlib.hash import argon2, ldap_salted_sha512

from directory.slapd import LocalSlapd, SlapdConfig, find_command, free_port
from provisioning.errors import ConfigError, DirectoryUnavailable

BASE = "dc=govmail,dc=local"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PW = "root-secret-Đ1"
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "directory" / "schema"
STANDARD_SCHEMA_DIR = Path(os.environ.get("SLAPD_SCHEMA_DIR") or "/etc/ldap/schema")


def make_slapd(state_dir: Path, port: int | None = None) -> LocalSlapd:
    config = SlapdConfig(state_dir, BASE, port or free_port(), ROOT_DN, ROOT_PW)
    return LocalSlapd(config)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlapd]:
    server = make_slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def root(slapd: LocalSlapd) -> Iterator[ldap3.Connection]:
    with connect(slapd.url, ROOT_DN, ROOT_PW) as conn:
        conn.add(BASE, ["dcObject", "organization"], {"dc": "govmail", "o": "govmail"})
        conn.add(f"ou=people,{BASE}", ["organizationalUnit"], {"ou": "people"})
        yield conn


@contextmanager
def connect(
    url: str | ldap3.Server, dn: str | None = None, password: str | None = None
) -> Iterator[ldap3.Connection]:
    """A bound ldap3 connection that is unbound (socket closed) on exit, unlike ldap3's own ``with``."""
    conn = ldap3.Connection(url, dn, password, auto_bind=True, raise_exceptions=True)
    try:
        yield conn
    finally:
        conn.unbind()


def add_account(root: ldap3.Connection, uid: str, password_hash: str, status: str = "active") -> str:
    dn = f"uid={uid},ou=people,{BASE}"
    root.add(
        dn,
        ["inetOrgPerson", "govmailAccount"],
        {
            "uid": uid,
            "cn": uid,
            "sn": uid,
            "mail": f"{uid}@skhdt.example.gov.vn",
            "govmailId": str(uuid.uuid4()),
            "govmailStatus": status,
            "govmailQuota": 2048,
            "govmailAlias": [f"{uid}.alias@example.gov.vn"],
            "govmailMustChangePassword": True,
            "userPassword": password_hash,
        },
    )
    return dn


def whoami(url: str, dn: str, password: str) -> subprocess.CompletedProcess[str]:
    """Bind with OpenLDAP's own client, as a mail server's LDAP library would."""
    return subprocess.run(
        ["ldapwhoami", "-x", "-H", url, "-D", dn, "-w", password],
        capture_output=True,
        text=True,
        timeout=10,
        env={**os.environ, "LDAPNOINIT": "1"},
    )


def schema_definitions(text: str, ldif: bool = True) -> list[str]:
    """The "( ... )" definitions of an LDIF or slapd.conf schema text, whitespace-normalised."""
    # LDIF folds anywhere, even inside a word, and drops exactly one space; slapd.conf continuation
    # lines are joined with whitespace.
    unfolded = re.sub(r"\n ", "", text) if ldif else re.sub(r"\n[ \t]+", " ", text)
    lines = [line for line in unfolded.splitlines() if not line.startswith("#")]
    found = re.findall(r"^(?:olcAttributeTypes:|olcObjectClasses:|attributetype|objectclass)\s*(\(.*\))\s*$",
                       "\n".join(lines), flags=re.MULTILINE | re.IGNORECASE)
    return [" ".join(item.split()) for item in found]


# -- the schema files ---------------------------------------------------------------------------------


def test_both_schema_formats_define_the_same_things() -> None:
    ldif = schema_definitions((SCHEMA_DIR / "govmail.ldif").read_text())
    conf = schema_definitions((SCHEMA_DIR / "govmail.schema").read_text(), ldif=False)
    assert len(ldif) == 13  # 11 attribute types + 2 object classes
    assert ldif == conf
    assert all(" DESC '" in item for item in ldif)


def test_slapd_conf_format_schema_loads(tmp_path: Path) -> None:
    conf = tmp_path / "slapd.conf"
    includes = [STANDARD_SCHEMA_DIR / f"{name}.schema" for name in ("core", "cosine", "inetorgperson")]
    conf.write_text("".join(f'include "{path}"\n' for path in [*includes, SCHEMA_DIR / "govmail.schema"]))
    converted = tmp_path / "slapd.d"
    converted.mkdir()
    result = subprocess.run(
        [find_command("slapd", "SLAPD"), "-Ttest", "-f", str(conf), "-F", str(converted)],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # slapd converted it to cn=config: the result defines what govmail.ldif defines.
    [entry] = (converted / "cn=config" / "cn=schema").glob("cn={*}govmail.ldif")
    assert schema_definitions(_strip_ordinals(entry.read_text())) == schema_definitions(
        (SCHEMA_DIR / "govmail.ldif").read_text()
    )


def test_ldif_schema_loads_with_ldapadd_into_a_running_server(tmp_path: Path) -> None:
    """What an administrator does on a stock OpenLDAP: ldapadd -Y EXTERNAL -H ldapi:/// -f govmail.ldif."""
    peercred = f"gidNumber={os.getgid()}+uidNumber={os.getuid()},cn=peercred,cn=external,cn=auth"
    config = "\n".join([
        "dn: cn=config\nobjectClass: olcGlobal\ncn: config\n",
        "dn: cn=schema,cn=config\nobjectClass: olcSchemaConfig\ncn: schema\n",
        (STANDARD_SCHEMA_DIR / "core.ldif").read_text(),
        f"dn: olcDatabase={{0}}config,cn=config\nobjectClass: olcDatabaseConfig\n"
        f"olcDatabase: {{0}}config\nolcRootDN: {peercred}\n",
    ])  # fmt: skip
    slapd_d = tmp_path / "d"
    slapd_d.mkdir()
    subprocess.run([find_command("slapadd", "SLAPADD"), "-n0", "-F", str(slapd_d)],
                   input=config, text=True, check=True, capture_output=True)  # fmt: skip
    ldapi = "ldapi://" + str(tmp_path / "s").replace("/", "%2F")
    proc = subprocess.Popen([find_command("slapd", "SLAPD"), "-F", str(slapd_d), "-h", ldapi, "-d", "0"])
    try:
        added = _retry_until_socket(
            tmp_path / "s",
            ["ldapadd", "-Q", "-Y", "EXTERNAL", "-H", ldapi, "-f", str(SCHEMA_DIR / "govmail.ldif")],
        )
        assert added.returncode == 0, added.stderr
        listed = subprocess.run(
            ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", ldapi, "-b", "cn=schema,cn=config",
             "(cn=*govmail)", "olcObjectClasses"],
            capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        assert "govmailAccount" in listed.stdout and "govmailAgency" in listed.stdout
    finally:
        proc.terminate()
        proc.wait(10)


def _strip_ordinals(text: str) -> str:
    return re.sub(r"^(olcAttributeTypes|olcObjectClasses): \{\d+\}", r"\1: ", text, flags=re.MULTILINE)


def _retry_until_socket(path: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run an LDAP client once slapd answers on ``path`` (the socket file appears before slapd
    accepts on it, so "Can't contact LDAP server" is retried for a few seconds)."""
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10) if path.exists() else None
        if result is not None and (result.returncode != 255 or time.monotonic() > deadline):
            return result
        if result is None and time.monotonic() > deadline:
            raise AssertionError(f"slapd never created {path}")
        time.sleep(0.05)


# -- LocalSlapd -------------------------------------------------------------------------------------


def test_a_missing_binary_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLAPD", raising=False)
    how_to_fix = r"not found\. Install Debian's slapd package \(apt-get install slapd\) or set SLAPD="
    with pytest.raises(ConfigError, match=how_to_fix):
        find_command("slapd-not-installed", "SLAPD")
    monkeypatch.setenv("SLAPD", "/nonexistent/slapd")
    with pytest.raises(ConfigError, match="SLAPD='/nonexistent/slapd': not an executable file"):
        find_command("slapd", "SLAPD")


def test_slapd_is_installed() -> None:
    assert find_command("slapd", "SLAPD") and find_command("slapadd", "SLAPADD")


def test_config_validation_names_the_field_and_hides_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="base_dn"):
        SlapdConfig(tmp_path, "not a dn", 389, ROOT_DN, ROOT_PW)
    with pytest.raises(ConfigError, match="port"):
        SlapdConfig(tmp_path, BASE, 0, ROOT_DN, ROOT_PW)
    config = SlapdConfig(tmp_path, BASE, 389, ROOT_DN, ROOT_PW)
    assert ROOT_PW not in repr(config)


def test_start_answers_and_publishes_the_schema(slapd: LocalSlapd) -> None:
    assert slapd.is_running() and slapd.answers()
    assert slapd.url == f"ldap://127.0.0.1:{slapd.config.port}"
    assert slapd.ldapi_url.startswith("ldapi://%2F") and slapd.ldapi_url.endswith("%2Frun%2Fldapi")
    server = ldap3.Server(slapd.url, get_info=ldap3.SCHEMA)
    with connect(server) as conn:
        assert not conn.extend.standard.who_am_i()  # anonymous
    assert "govmailAccount" in server.schema.object_classes
    assert "govmailAgency" in server.schema.object_classes
    assert "govmailAlias" in server.schema.attribute_types


def test_generated_config_keeps_the_root_password_hashed(slapd: LocalSlapd) -> None:
    text = "".join(path.read_text() for path in slapd.slapd_d.rglob("*.ldif"))
    assert ROOT_PW not in text
    assert "olcRootPW: {SSHA512}" in text or "olcRootPW:: " in text
    assert ROOT_PW not in (slapd.log_file.read_text())


def test_root_can_manage_cn_config_over_ldapi(slapd: LocalSlapd) -> None:
    result = subprocess.run(
        ["ldapsearch", "-Q", "-LLL", "-Y", "EXTERNAL", "-H", slapd.ldapi_url,
         "-b", "olcDatabase={1}mdb,cn=config", "-s", "base", "olcSuffix", "olcPasswordHash"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"olcSuffix: {BASE}" in result.stdout


def test_argon2_and_ssha512_passwords_bind(slapd: LocalSlapd, root: ldap3.Connection) -> None:
    argon_hash = "{ARGON2}" + argon2.using(type="ID").hash("Argon-pass-1")
    assert argon_hash.startswith("{ARGON2}$argon2id$")
    argon_dn = add_account(root, "lamnt", argon_hash)
    sha_dn = add_account(root, "ductv", ldap_salted_sha512.hash("Sha-pass-1"))

    ok = whoami(slapd.url, argon_dn, "Argon-pass-1")
    assert ok.returncode == 0 and ok.stdout.strip() == f"dn:{argon_dn}", ok.stderr
    ok = whoami(slapd.url, sha_dn, "Sha-pass-1")
    assert ok.returncode == 0 and ok.stdout.strip() == f"dn:{sha_dn}", ok.stderr
    assert whoami(slapd.url, argon_dn, "wrong").returncode == 49
    # An authenticated user reads the directory (what a mail server's lookup account needs).
    with connect(slapd.url, sha_dn, "Sha-pass-1") as conn:
        conn.search(f"ou=people,{BASE}", "(govmailAlias=lamnt.alias@example.gov.vn)", attributes=["mail"])
        assert [entry.entry_dn for entry in conn.entries] == [argon_dn]
        conn.search(argon_dn, "(objectClass=*)", attributes=["userPassword"])
        assert not conn.response[0]["attributes"].get("userPassword")


def test_users_cannot_change_their_password_in_the_directory(
    slapd: LocalSlapd, root: ldap3.Connection
) -> None:
    dn = add_account(root, "hoanglv", ldap_salted_sha512.hash("Old-pass-1"))
    with connect(slapd.url, dn, "Old-pass-1") as conn, pytest.raises(ldap3.core.exceptions.LDAPOperationResult):
        conn.extend.standard.modify_password(new_password="New-pass-1")  # only govmail changes passwords
    assert whoami(slapd.url, dn, "Old-pass-1").returncode == 0


def test_a_password_set_by_the_server_is_hashed_with_argon2(
    slapd: LocalSlapd, root: ldap3.Connection
) -> None:
    dn = add_account(root, "hoanglv2", ldap_salted_sha512.hash("Old-pass-1"))
    assert root.extend.standard.modify_password(dn, new_password="New-pass-1")  # olcPasswordHash {ARGON2}
    root.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["userPassword"])
    stored = root.entries[0].userPassword.value
    assert stored.startswith(b"{ARGON2}$argon2") and b"m=65536,t=3,p=4" in stored
    assert whoami(slapd.url, dn, "New-pass-1").returncode == 0


def test_anonymous_cannot_read_entries(slapd: LocalSlapd, root: ldap3.Connection) -> None:
    add_account(root, "tuyetlta", ldap_salted_sha512.hash("x-1"))
    with connect(slapd.url) as conn, pytest.raises(LDAPNoSuchObjectResult):
        conn.search(BASE, "(uid=tuyetlta)")  # even the base entry is invisible to anonymous


def test_suspended_and_retired_accounts_cannot_bind(slapd: LocalSlapd, root: ldap3.Connection) -> None:
    password = "Suspend-me-1"
    dn = add_account(root, "trangpt", "{ARGON2}" + argon2.using(type="ID").hash(password))
    assert whoami(slapd.url, dn, password).returncode == 0

    for status in ("suspended", "retired"):
        root.modify(dn, {"govmailStatus": [(ldap3.MODIFY_REPLACE, [status])]})
        refused = whoami(slapd.url, dn, password)
        assert refused.returncode == 49, (status, refused.stdout)  # invalidCredentials

    root.modify(dn, {"govmailStatus": [(ldap3.MODIFY_REPLACE, ["active"])]})
    assert whoami(slapd.url, dn, password).returncode == 0


def test_start_is_idempotent(slapd: LocalSlapd) -> None:
    pid = slapd.pid()
    slapd.start()
    LocalSlapd(slapd.config).start()  # another controller over the same state directory
    assert slapd.pid() == pid


def test_stop_then_restart_keeps_the_data(tmp_path: Path) -> None:
    server = make_slapd(tmp_path / "state")
    server.start()
    try:
        with connect(server.url, ROOT_DN, ROOT_PW) as conn:
            conn.add(BASE, ["dcObject", "organization"], {"dc": "govmail", "o": "govmail"})
        server.stop()
        assert not server.is_running() and server.pid() is None
        assert not server.answers()
        server.stop()  # stopping a stopped server is fine

        server.start()
        with connect(server.url, ROOT_DN, ROOT_PW) as conn:
            assert conn.search(BASE, "(objectClass=organization)", search_scope=ldap3.BASE)
    finally:
        server.stop()


def test_a_killed_server_is_restarted(tmp_path: Path) -> None:
    server = make_slapd(tmp_path / "state")
    server.start()
    try:
        pid = server.pid()
        assert pid is not None
        os.kill(pid, 9)
        deadline = time.monotonic() + 5
        while server.is_running() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server.is_running()  # the pid file is stale now
        server.start()
        assert server.pid() not in (None, pid) and server.answers()
    finally:
        server.stop()


def test_port_already_taken_raises_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = make_slapd(tmp_path / "state", port=busy.getsockname()[1])
        with pytest.raises(DirectoryUnavailable) as raised:
            server.start(timeout=5)
    message = str(raised.value)
    assert "Address already in use" in message  # from slapd's own log
    assert "choose another port" in message
    assert ROOT_PW not in message
    assert not server.is_running()


def test_unusable_schema_dir_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLAPD_SCHEMA_DIR", str(tmp_path / "missing"))
    server = make_slapd(tmp_path / "state")
    with pytest.raises(ConfigError, match="SLAPD_SCHEMA_DIR"):
        server.start()
    assert not server.is_configured()


def test_a_server_started_by_another_process_is_seen_and_stopped(tmp_path: Path) -> None:
    """What `govmail up` then `govmail directory stop` do: two processes, one pid file."""
    server = make_slapd(tmp_path / "state")
    starter = (
        "import os, sys; from pathlib import Path\n"
        "from directory.slapd import LocalSlapd, SlapdConfig\n"
        "LocalSlapd(SlapdConfig(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4],"
        " os.environ['TEST_ROOT_PW'])).start()\n"
    )
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", starter, str(server.config.state_dir), BASE,
         str(server.config.port), ROOT_DN],
        check=True, timeout=30, cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "TEST_ROOT_PW": ROOT_PW},
    )  # fmt: skip
    try:
        pid = server.pid()
        assert pid is not None and server.answers()
        server.start()  # already running: nothing to do
        assert server.pid() == pid
    finally:
        server.stop()
    assert not server.is_running() and not server.answers()
