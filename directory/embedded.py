"""The embedded default: a local slapd configured from govmail's own settings."""

from __future__ import annotations

from urllib.parse import urlparse

from directory.slapd import LocalSlapd, SlapdConfig
from provisioning.config import Settings
from provisioning.errors import ConfigError


def local_slapd(settings: Settings) -> LocalSlapd:
    """The slapd that serves ``[directory]`` when ``embedded = true``.

    :raises ConfigError: the directory is not embedded, its URL is not a loopback ``ldap://``
        URL with a port, or the bind password is missing.
    """
    d = settings.directory
    if not d.embedded:
        raise ConfigError("[directory] embedded = false: govmail does not run this directory server")
    url = urlparse(d.urls[0])
    if url.scheme != "ldap" or url.hostname not in ("127.0.0.1", "localhost") or not url.port:
        raise ConfigError(
            f"[directory] urls[0] = {d.urls[0]!r}: the embedded slapd needs ldap://127.0.0.1:PORT"
        )
    if not d.bind_password:
        raise ConfigError(
            f"no directory bind password: {settings.path(d.bind_password_file)} is missing "
            f"(govmail init creates it)"
        )
    return LocalSlapd(SlapdConfig(
        state_dir=settings.path(d.state_dir), base_dn=d.base_dn, port=url.port,
        root_dn=d.bind_dn, root_password=d.bind_password.reveal(),
    ))
