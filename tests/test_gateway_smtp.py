"""The gateway's fast SMTP address parser gives exactly what aiosmtpd's full parser gives."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings, strategies as st

from mailgateway.smtp import GatewaySMTP

ATOM = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
LABEL = st.text("abz09-", min_size=1, max_size=5)
PLAIN = st.builds(lambda local, labels: ".".join(local) + "@" + ".".join(labels),
                  st.lists(ATOM, min_size=1, max_size=3), st.lists(LABEL, min_size=1, max_size=3))
REST = st.text(" \tSIZE=0123BODY8BITMIME()<>\"@.,;:", max_size=12)
ANY = st.text(" <>@.\"()[]:;,\\abc019-+\t\u00e9", max_size=20)


class _Handler:
    pass


def _parsers() -> tuple[SMTP, SMTP]:
    loop = asyncio.new_event_loop()
    return GatewaySMTP(_Handler(), loop=loop), SMTP(_Handler(), loop=loop)


FAST, FULL = _parsers()


@settings(max_examples=500, deadline=None)
@given(space=st.sampled_from(["", " ", "  "]), address=PLAIN, rest=REST)
@example(space="", address="a..b@c", rest="")
@example(space="", address="a@b.c", rest=" (comment) SIZE=1")
@example(space="", address="x" * 70 + "@b.c", rest="")
def test_plain_addresses_parse_as_aiosmtpd_parses_them(space: str, address: str, rest: str) -> None:
    arg = f"{space}<{address}>{rest}"
    assert FAST._getaddr(arg) == FULL._getaddr(arg)


@settings(max_examples=500, deadline=None)
@given(arg=ANY)
@example(arg='<"quoted"@b.c>')
@example(arg="<@route:a@b.c>")
@example(arg="<a@[127.0.0.1]>")
@example(arg="a@b.c")
@example(arg="<>")
@example(arg="0@[")
def test_any_argument_parses_as_aiosmtpd_parses_it(arg: str) -> None:
    try:
        expected = FULL._getaddr(arg)
    except (IndexError, AttributeError):  # the parser crashes on "<", "0@[" and the like: "syntax error"
        expected = (None, None)
    assert FAST._getaddr(arg) == expected
