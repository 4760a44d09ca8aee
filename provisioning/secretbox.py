"""The portal key: encrypts TOTP secrets and credentials handover files, and keys HMACs.

The key is a Fernet key in ``[portal] secret_key_file`` (mode 0600), created on first use. Losing it
makes the encrypted values unreadable (officials enrol TOTP again); it never appears in a log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from provisioning.config import Settings
from provisioning.errors import ConfigError


@dataclass(frozen=True)
class SecretBox:
    """Encrypts and authenticates small values with the portal key."""

    _key: bytes = field(repr=False)

    def encrypt(self, data: bytes) -> bytes:
        return Fernet(self._key).encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """:raises ConfigError: the value was encrypted under another key (the key file was replaced)."""
        try:
            return Fernet(self._key).decrypt(token)
        except InvalidToken:
            raise ConfigError("a stored secret cannot be decrypted with the current portal key "
                              "([portal] secret_key_file was replaced; restore it from the backup)") from None

    def mac(self, text: str) -> str:
        """Hex HMAC-SHA256 of ``text`` (recovery codes are stored this way)."""
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def load(settings: Settings, create: bool = True) -> SecretBox:
    """The portal key from ``[portal] secret_key_file``, created (0600) when missing and ``create``.

    :raises ConfigError: the file is missing (and not created), unreadable or not a Fernet key.
    """
    path: Path = settings.path(settings.portal.secret_key_file)
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker made it first
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
    try:
        key = path.read_bytes().strip()
        Fernet(key)
    except FileNotFoundError:
        raise ConfigError(f"[portal] secret_key_file {str(path)!r} does not exist "
                          "(restore it from the backup, or run govmail portal run once to create one)") from None
    except OSError as exc:
        raise ConfigError(f"[portal] secret_key_file {str(path)!r} cannot be read ({exc.strerror})") from None
    except ValueError:
        raise ConfigError(f"[portal] secret_key_file {str(path)!r} does not hold a key "
                          "(32 url-safe base64 bytes, as Fernet.generate_key() writes)") from None
    return SecretBox(key)
