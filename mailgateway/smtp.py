"""aiosmtpd's SMTP protocol with a cheaper address parser.

aiosmtpd parses every MAIL FROM and RCPT TO address with the email package's RFC 5322 header
parser, about a third of its CPU time per message. Nearly every address a mail server sees is a
plain ``<dot-atom@domain>``; those are parsed here with one regular expression, with exactly the
result the full parser gives (a property test checks this), and everything else still goes to it.
Where the full parser crashes (``MAIL FROM:<`` raises IndexError, ``0@[`` AttributeError), the client
gets a syntax error instead of a 451.
"""

from __future__ import annotations

import re

from aiosmtpd.smtp import SMTP

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(.*)", re.DOTALL)


class GatewaySMTP(SMTP):
    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN.fullmatch(arg.lstrip()) if arg else None
        rest = match.group(2).lstrip(" \t") if match else ""
        if match is None or rest.startswith("("):  # a comment after the address: the full parser
            try:
                return super()._getaddr(arg)
            except Exception:  # the email package's parser crashes on some junk: a syntax error, not a 451
                return None, None
        address = match.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest
