"""Random command sequences against a live listener (hypothesis).

Invariants: never a 354/250 to DATA without a successful AUTH; exactly one reply per command
line (checked by QUIT being answered last, and alone); every reply is from the catalog with an
RFC 3463 code (greeting and EHLO/HELO lines excepted, RFC 2034 §3); never our own fault
(``451 4.3.0``); a ``421`` always closes the connection.
"""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw

KNOWN = {r.line() for r in CATALOG.values()}
ACCEPT = re.compile(r"250 2\.0\.0 Ok: queued as [0-9a-f-]{36}\Z")
BODY = b"From: app@sender.test\r\nSubject: fuzz\r\n\r\nx\r\n.\r\n"


def plain(username: str, secret: str) -> str:
    return "AUTH PLAIN " + base64.b64encode(f"\0{username}\0{secret}".encode()).decode()


def commands(tenant) -> st.SearchStrategy[bytes]:
    fixed = [
        "EHLO client.test", "HELO client.test", "EHLO", "EHLO bad host", "EHLO [1.2.3.4]",
        "MAIL FROM:<app@sender.test>", "MAIL FROM:<>", "MAIL FROM:<x@nowhere.test>",
        "MAIL FROM:<app@sender.test> SIZE=999999999", "MAIL FROM:<app@sender.test> BODY=8BITMIME",
        "RCPT TO:<user@example.test>", "RCPT TO:<>", "RCPT TO:<bad@@x>", "RCPT TO:user@x.test",
        "DATA", "DATA now", "RSET", "NOOP", "VRFY user", "EXPN list", "HELP", "STARTTLS",
        plain(tenant.username, tenant.secret), plain(tenant.username, "wrong"), "AUTH LOGIN",
        "AUTH FOO", "AUTH", "", "mail from:<app@sender.test>",
    ] + ["DATA", "MAIL FROM:<app@sender.test>", "RCPT TO:<user@example.test>"] * 3
    junk = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b"\t"))
    known = st.sampled_from([f.encode() for f in fixed])
    return st.one_of(known, known, known, known, junk)  # 1 in 5 is junk


def check_line(reply: str, command: bytes) -> None:
    head = command.split(b" ", 1)[0].upper()
    if head in (b"EHLO", b"HELO") and reply.startswith("250"):
        return  # RFC 2034 §3: EHLO/HELO replies carry no enhanced code
    if reply.startswith("3"):
        return  # 334 challenge, 354 go ahead
    assert reply in KNOWN or ACCEPT.match(reply) or reply.startswith(
        CATALOG["validation_error"].line()), (command, reply)
    assert reply != CATALOG["local_error"].line(), command


@pytest.fixture
def fuzz_relay(make_relay):
    """Failure windows out of the way, so later examples can still authenticate."""
    return make_relay(limits={"auth_failures_per_ip": 1_000_000,
                              "auth_failures_per_user": 1_000_000})


class Client:
    def __init__(self, relay, ctx, implicit: bool) -> None:
        self.ctx = ctx
        port = relay.ports["submissions" if implicit else "submission"]
        self.raw = Raw(port, ctx if implicit else None)
        assert self.raw.reply().startswith("220 ")
        self.authenticated = False
        self.open = True

    def run(self, command: bytes) -> None:
        reply = self.raw.cmd(command)
        assert reply, (command, "no reply")
        check_line(reply, command)
        head = command.split(b" ", 1)[0].upper()
        if head == b"DATA":
            assert self.authenticated or not reply.startswith(("354", "250")), reply
            if reply.startswith("354"):
                self.raw.send(BODY)
                check_line(self.raw.reply(), b"(end of data)")
        elif reply.startswith("334"):
            assert self.raw.cmd("*") == CATALOG["auth_aborted"].line()
        elif reply == CATALOG["auth_ok"].line():
            self.authenticated = True
        elif reply == CATALOG["tls_ready"].line():
            self.raw.starttls(self.ctx)
            self.authenticated = False  # RFC 3207 §4.2: a new session
        if reply.startswith("421") or reply == CATALOG["bye"].line():
            assert self.raw.replies_until_eof() == []
            self.open = False


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data(), implicit=st.booleans())
def test_random_command_sequences(fuzz_relay, client_ctx, data, implicit):
    relay = fuzz_relay
    client = Client(relay, client_ctx, implicit)
    t = relay.tenant
    # Random prefixes of a good session, so the deep states (after AUTH, MAIL, RCPT) are
    # reached often, then random commands.
    good = [b"EHLO client.test", plain(t.username, t.secret).encode(),
            b"MAIL FROM:<app@sender.test>", b"RCPT TO:<user@example.test>", b"DATA"]
    if not implicit:
        good[1:1] = [b"STARTTLS", b"EHLO client.test"]
    prefix = good[:data.draw(st.integers(0, len(good)))]
    sequence = prefix + data.draw(st.lists(commands(t), max_size=12))
    for command in sequence:
        client.run(command)
        if not client.open:
            return
    assert client.raw.cmd("QUIT") == CATALOG["bye"].line()
    assert client.raw.replies_until_eof() == []
