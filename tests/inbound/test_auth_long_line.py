"""A 200 KB AUTH response is answered once and the connection closed: reading on would answer
the rest of the line as commands, one extra 500 per piece, out of step with the client
(issue #15 item 7)."""

from __future__ import annotations

import pytest

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw

HUGE = b"A" * 200_000


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_huge_auth_response_gets_one_reply_then_close(relay, client_ctx, mechanism):
    raw = Raw(relay.ports["submissions"], client_ctx)
    raw.reply()
    raw.cmd("EHLO client.test")
    assert raw.cmd(f"AUTH {mechanism}").startswith("334 ")
    raw.send(HUGE + b"\r\n")
    assert raw.replies_until_eof() == [CATALOG["line_too_long"].line()]


def test_huge_auth_command_line_gets_one_reply_and_the_session_goes_on(relay, client_ctx):
    raw = Raw(relay.ports["submissions"], client_ctx)
    raw.reply()
    raw.cmd("EHLO client.test")
    raw.send(b"AUTH PLAIN " + HUGE + b"\r\n")
    assert raw.reply() == CATALOG["line_too_long"].line()
    assert raw.cmd("NOOP") == CATALOG["ok"].line()  # in step: one reply per command
