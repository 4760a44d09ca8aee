"""The LDAP boundary: connections, DN building and the few operations the syncer needs.

All escaping of DNs and filters happens here (``escape_rdn``, ``escape_filter_chars``); callers pass
plain Python strings. The bind password is revealed only to ldap3's bind and never logged.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

from provisioning.config import DirectorySettings
from provisioning.errors import DirectoryUnavailable

with warnings.catch_warnings():
    # ldap3 2.9.1 touches pyasn1 >= 0.6's deprecated tagMap/typeMap on import; harmless.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldap3 import LEVEL, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import (
        LDAPBindError, LDAPCommunicationError, LDAPException, LDAPInvalidCredentialsResult,
        LDAPNoSuchObjectResult, LDAPOperationResult, LDAPSocketOpenError,
    )
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn

__all__ = [
    "Directory", "LEVEL", "SUBTREE", "LDAPException", "LDAPOperationResult", "LDAPNoSuchObjectResult",
    "LDAPCommunicationError", "escape_filter_chars", "escape_rdn",
]

# Failures of the link rather than of one operation: the syncer stops and leaves rows queued.
LINK_ERRORS = (LDAPCommunicationError, LDAPSocketOpenError, LDAPBindError, LDAPInvalidCredentialsResult)


class Directory:
    """Where accounts and agencies are published: ``ou=people`` and ``ou=agencies`` under the base DN."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self.base_dn = settings.base_dn
        self.people_dn = f"ou=people,{settings.base_dn}"
        self.agencies_dn = f"ou=agencies,{settings.base_dn}"

    def account_dn(self, local_part: str) -> str:
        return f"uid={escape_rdn(local_part)},{self.people_dn}"

    def agency_dn(self, code: str) -> str:
        return f"govmailAgencyCode={escape_rdn(code)},{self.agencies_dn}"

    def _open(self, url: str) -> Connection:
        tls = Tls() if self.settings.start_tls else None
        server = Server(url, connect_timeout=int(self.settings.timeout), get_info="NO_INFO", tls=tls)
        conn = Connection(
            server, user=self.settings.bind_dn, password=self.settings.bind_password.reveal(),
            raise_exceptions=True, receive_timeout=int(self.settings.timeout), read_only=False,
        )
        try:
            if self.settings.start_tls:
                conn.open()
                conn.start_tls()
            conn.bind()
        except BaseException:
            _close(conn)
            raise
        return conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A bound connection as the configured service account, unbound afterwards.

        The URLs are tried in order (failover between multi-provider servers).

        :raises DirectoryUnavailable: no server answered or the bind was refused (the message
            names the URLs and the bind DN, never the password).
        """
        failures = []
        conn = None
        for url in self.settings.urls:
            try:
                conn = self._open(url)
                break
            except LINK_ERRORS as exc:
                failures.append(f"{url}: {type(exc).__name__}")
        if conn is None:
            raise DirectoryUnavailable(
                f"cannot reach or bind to the directory as {self.settings.bind_dn} "
                f"({'; '.join(failures)}); check [directory] urls and bind_dn, the bind password "
                f"file, and that slapd runs (govmail directory status)"
            )
        try:
            yield conn
        except LINK_ERRORS as exc:
            raise DirectoryUnavailable(f"lost the directory at {conn.server.host}: {type(exc).__name__}") from None
        finally:
            _close(conn)

    def ensure_tree(self, conn: Connection) -> None:
        """Create the base entry and the two organisational units when they are missing."""
        first = self.base_dn.split(",", 1)[0]
        attr, _, value = first.partition("=")
        base_attrs: dict[str, object]
        if attr.lower() == "dc":
            base_attrs = {"objectClass": ["top", "dcObject", "organization"], "dc": value, "o": value}
        elif attr.lower() == "o":
            base_attrs = {"objectClass": ["top", "organization"], "o": value}
        else:
            base_attrs = {"objectClass": ["top", "organizationalUnit"], "ou": value}
        for dn, attrs in (
            (self.base_dn, base_attrs),
            (self.people_dn, {"objectClass": ["top", "organizationalUnit"], "ou": "people"}),
            (self.agencies_dn, {"objectClass": ["top", "organizationalUnit"], "ou": "agencies"}),
        ):
            if not self.exists(conn, dn):
                conn.add(dn, attributes=attrs)

    @staticmethod
    def exists(conn: Connection, dn: str) -> bool:
        try:
            return bool(conn.search(dn, "(objectClass=*)", search_scope="BASE", attributes=["1.1"]))
        except LDAPNoSuchObjectResult:
            return False


def _close(conn: Connection) -> None:
    """Unbind and close the socket, whatever state the connection is in."""
    try:
        conn.unbind()
    except LDAPException:
        pass
    if conn.socket is not None:
        conn.socket.close()
