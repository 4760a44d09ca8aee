"""Handing a message on durably: into a local Maildir, or to the downstream MTA.

Both raise :class:`TemporaryFailure` when the message could not be handed on; the gateway then
answers 4xx so the sender tries again. Maildir file names are derived from the message's hash, so
delivering a retried message again replaces the same file instead of making a second copy.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Sequence

import aiosmtplib


class TemporaryFailure(Exception):
    """The message was not handed on; the sender should retry (4xx)."""


_made: set[Path] = set()  # mailbox folders known to exist: three mkdir calls per message cost ~20 µs


def maildir_deliver(root: Path, mailbox: str, name: str, content: bytes) -> None:
    """Write ``content`` into ``root/<mailbox>/new/<name>``: tmp file, fsync, rename, fsync dir.

    :raises TemporaryFailure: the file system refused (full disk, permissions).
    """
    box = root / mailbox
    try:
        if box not in _made:
            for sub in ("tmp", "new", "cur"):
                (box / sub).mkdir(parents=True, exist_ok=True)
            _made.add(box)
        tmp = box / "tmp" / f"{name}.{uuid.uuid4().hex}"  # two deliveries at once never share a tmp file
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, box / "new" / name)
        dir_fd = os.open(box / "new", os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise TemporaryFailure(f"local delivery failed: {exc.strerror or type(exc).__name__}") from None


async def relay(
    content: bytes, sender: str, recipients: Sequence[str], *, host: str, port: int, starttls: bool,
    timeout: float, local_hostname: str,
) -> None:
    """Hand the message to the downstream MTA; returns once it answered 250 for the data.

    :raises TemporaryFailure: unreachable, timed out, or refused with a 4xx. A 5xx refusal is
        raised as well (the caller answers 451 and keeps nothing: the downstream is ours).
    """
    try:
        await aiosmtplib.send(
            content, sender=sender, recipients=list(recipients), hostname=host, port=port,
            start_tls=starttls, timeout=timeout, local_hostname=local_hostname,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise TemporaryFailure(f"downstream {host}:{port}: {type(exc).__name__}") from None
