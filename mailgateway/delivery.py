"""Handing a message on durably: into a local Maildir, or to the downstream MTA.

Both raise :class:`TemporaryFailure` when the message could not be handed on; the gateway then
answers 4xx so the sender tries again. Maildir file names are derived from the message's hash, so
delivering a retried message again replaces the same file instead of making a second copy.
Maildir writes are batched by :class:`mailgateway.recorder.Recorder`, which also records usage.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import secrets
from pathlib import Path
from typing import Sequence

import aiosmtplib


class TemporaryFailure(Exception):
    """The message was not handed on; the sender should retry (4xx)."""


class Maildir:
    """Local delivery into ``root/<mailbox>/{tmp,new,cur}``, made durable a batch at a time.

    The writer calls :meth:`write` for every message of a batch, :meth:`sync`, :meth:`publish`
    for each, and :meth:`sync` again: two file-system syncs serve the whole batch, where one fsync
    per file and per folder would serve one message. Only :meth:`publish` makes a message visible
    to mail readers, and only after its content is on disk.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: set[str] = set()  # mailbox folders known to exist (three mkdirs cost ~20 µs)
        # Unique tmp names without uuid4 per file: this process's token and a counter.
        self._tmp_names = (f"{os.getpid()}.{secrets.token_hex(4)}.{n}" for n in itertools.count())

    def write(self, mailbox: str, name: str, content: bytes) -> tuple[str, str]:
        """Write ``content`` to a fresh file in the mailbox's ``tmp/``; returns (tmp, final path).

        :raises TemporaryFailure: the file system refused (full disk, permissions).
        """
        box = os.path.join(self.root, mailbox)  # strings: pathlib costs more than the write itself
        try:
            if box not in self._made:
                for sub in ("tmp", "new", "cur"):
                    os.makedirs(os.path.join(box, sub), exist_ok=True)
                self._made.add(box)
            tmp = f"{box}/tmp/{name}.{next(self._tmp_names)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, content)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _failure(exc) from None
        return tmp, f"{box}/new/{name}"

    def publish(self, tmp: str, final: str) -> None:
        """Move a written (and synced) file into ``new/``; a retried message replaces its earlier copy.

        :raises TemporaryFailure: the rename failed.
        """
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise _failure(exc) from None

    def sync(self, paths: Sequence[str] = ()) -> None:
        """Put everything written under the root on disk: one ``syncfs`` on Linux, else an fsync
        of each of ``paths`` (files and the folders they are in).

        :raises TemporaryFailure: the sync failed.
        """
        try:
            if _syncfs is not None:
                self.root.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.root, os.O_RDONLY)
                try:
                    if _syncfs(fd) != 0:
                        raise OSError(ctypes.get_errno(), "syncfs failed")
                finally:
                    os.close(fd)
                return
            for path in {*paths, *(os.path.dirname(p) for p in paths)}:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise _failure(exc) from None


def _failure(exc: OSError) -> TemporaryFailure:
    return TemporaryFailure(f"local delivery failed: {exc.strerror or type(exc).__name__}")


def _load_syncfs():  # type: ignore[no-untyped-def]
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux
        return None


_syncfs = _load_syncfs()


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
