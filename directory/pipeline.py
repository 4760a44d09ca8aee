"""Pipelined LDAP adds for bulk publication.

ldap3 builds and encodes every request through pyasn1, about 2 ms of CPU per entry here, and waits
for each answer before sending the next request: 10,000 new accounts would take far longer than the
directory itself needs. This module sends many AddRequests on an already bound ldap3 connection
(plain or TLS, whatever ldap3 negotiated) without waiting, with a small BER encoder for exactly
that message, and reads the answers as they come (slapd answers out of order).

Only AddRequest is encoded here; everything else (bind, StartTLS, search, modify, delete) stays
with ldap3. Message ids come from ldap3's own counter, so they never clash with its requests.
"""

from __future__ import annotations

from collections import deque
from typing import Mapping, Sequence

from directory.ldap import Connection, Server
from provisioning.errors import DirectoryUnavailable

_ADD_REQUEST, _ADD_RESPONSE = 0x68, 0x69  # [APPLICATION 8] / [APPLICATION 9], constructed
SUCCESS, ALREADY_EXISTS = 0, 68


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _length(len(value)) + value


def _integer(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def _octets(value: str | bytes) -> bytes:
    return _tlv(0x04, value if isinstance(value, bytes) else value.encode("utf-8"))


def encode_add(message_id: int, dn: str, attributes: Mapping[str, Sequence[str | bytes]]) -> bytes:
    """The BER bytes of ``LDAPMessage { messageID, AddRequest { dn, attributes } }`` (RFC 4511 4.7)."""
    attrs = b"".join(
        _tlv(0x30, _octets(name) + _tlv(0x31, b"".join(_octets(v) for v in values)))
        for name, values in attributes.items() if values
    )
    return _tlv(0x30, _integer(message_id) + _tlv(_ADD_REQUEST, _octets(dn) + _tlv(0x30, attrs)))


def _read_tlv(buf: bytes | memoryview, pos: int) -> tuple[int, int, int] | None:
    """(tag, start of value, end of value) of the element at ``pos``, or None if incomplete."""
    if pos + 2 > len(buf):
        return None
    tag, first = buf[pos], buf[pos + 1]
    pos += 2
    if first & 0x80:
        count = first & 0x7F
        if pos + count > len(buf):
            return None
        length = int.from_bytes(bytes(buf[pos:pos + count]), "big")
        pos += count
    else:
        length = first
    if pos + length > len(buf):
        return None
    return tag, pos, pos + length


def decode_result(message: bytes) -> tuple[int, int, int, str]:
    """(message id, protocolOp tag, result code, diagnostic message) of one LDAPMessage."""
    _, start, _ = _read_tlv(message, 0)  # type: ignore[misc]
    _, id_start, id_end = _read_tlv(message, start)  # type: ignore[misc]
    message_id = int.from_bytes(message[id_start:id_end], "big", signed=True)
    op_tag, op_start, _ = _read_tlv(message, id_end)  # type: ignore[misc]
    _, code_start, code_end = _read_tlv(message, op_start)  # type: ignore[misc]
    _, _, dn_end = _read_tlv(message, code_end)  # type: ignore[misc]
    _, diag_start, diag_end = _read_tlv(message, dn_end)  # type: ignore[misc]
    code = int.from_bytes(message[code_start:code_end], "big")
    return message_id, op_tag, code, message[diag_start:diag_end].decode("utf-8", "replace")


class _Reader:
    """Whole LDAPMessages from a socket."""

    def __init__(self, sock) -> None:  # type: ignore[no-untyped-def]
        self.sock = sock
        self.buf = bytearray()

    def next(self) -> bytes:
        while True:
            found = _read_tlv(self.buf, 0)
            if found is not None:
                message = bytes(self.buf[:found[2]])
                del self.buf[:found[2]]
                return message
            chunk = self.sock.recv(65536)
            if not chunk:
                raise DirectoryUnavailable("the directory closed the connection during a bulk add")
            self.buf += chunk


def add_many(
    conn: Connection, entries: Sequence[tuple[str, Mapping[str, Sequence[str]]]], window: int = 64,
) -> list[tuple[int, str]]:
    """Add ``entries`` (dn, attributes) with up to ``window`` requests in flight.

    Returns one ``(result code, diagnostic message)`` per entry, in order: 0 is success, 68 means
    the entry already exists. The connection is usable by ldap3 again afterwards.

    :raises DirectoryUnavailable: the connection broke (entries not yet answered may or may not
        have been added; adding is idempotent for the caller, which falls back to a full publish).
    """
    sock = conn.socket
    reader = _Reader(sock)
    results: list[tuple[int, str]] = [(-1, "")] * len(entries)
    waiting: dict[int, int] = {}
    todo = deque(range(len(entries)))
    try:
        while todo or waiting:
            batch = []
            while todo and len(waiting) < window:
                index = todo.popleft()
                message_id = Server.next_message_id()
                waiting[message_id] = index
                batch.append(encode_add(message_id, *entries[index]))
            if batch:
                sock.sendall(b"".join(batch))
            message_id, op_tag, code, diagnostic = decode_result(reader.next())
            if op_tag != _ADD_RESPONSE or message_id not in waiting:
                raise DirectoryUnavailable(
                    f"unexpected answer from the directory during a bulk add (tag {op_tag:#x}, code {code}: {diagnostic})")
            results[waiting.pop(message_id)] = (code, diagnostic)
    except OSError as exc:
        raise DirectoryUnavailable(f"lost the directory during a bulk add: {type(exc).__name__}") from None
    return results
