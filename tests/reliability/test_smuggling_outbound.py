"""Smuggling and header injection, both ways.

Inbound, the fake end-of-data variants are tests/inbound/test_smuggling.py (only <CRLF>.<CRLF>
ends DATA). Here: what the relay *sends*. A body that holds a bare ``\\n.\\n`` or ``\\r.\\r\\n``
becomes a real "." line once the relay makes every line end CRLF, so the outbound side must
dot-stuff it; each message must arrive at the sink as exactly one message, CRLF only, its body
the normalised form of what the client sent. And CR/LF/NUL in EHLO, addresses, control-header
values and AUTH usernames never add a header to the stored or the delivered message.
"""

from __future__ import annotations

import base64
import logging

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw, accepted
from tests.reliability.roundtrip import RoundTrip, body_of, only_crlf

SMUGGLED = b"MAIL FROM:<app@sender.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nevil\r\n"
BODIES = [
    b"a\n.\nb",
    b"a\r.\r\nb",
    b"a\r\n.\r\nb",  # a real "." line: the client stuffs it, the relay must too
    b".leading\r\n..two\r\n...three\r\n",
    b"a\n.\r\n" + SMUGGLED,
    b"a\r\n.\r\n" + SMUGGLED + b".\r\n",
    b"\r\n.\r\nstarts with a dot line",
    b"\n.\n",
    b"a\r\n.\n",
    b"ends with a dot line\r\n.",
    b"x\r\n. \r\n.\t\r\n",
    b"a\r\r\n.\r\r\nb\r",
    b"\xc3\xa9t\xc3\xa9\n.\n\xe2\x82\xac",
    b"a\n..b\n.c\n...d\n",  # after a bare LF a doubled dot is a stuffed one (smtplib)
]


def test_dot_lines_and_bare_line_ends_arrive_as_one_normalised_message(relay_factory, sinks,
                                                                       client_ctx):
    relay = relay_factory()
    rt = RoundTrip(relay, client_ctx, sinks[0])
    ids = []
    for body in BODIES:
        mid = accepted(rt.submit(body))
        ids.append(mid)
        data = rt.delivered(mid)
        assert only_crlf(data), (body, data)
        assert body_of(data) == rt.expected_body(body), (body, body_of(data))
        assert b"victim@example.test" not in b"".join(m["rcpt_tos"][0].encode()
                                                     for m in sinks[0].h.messages)
    rt.close()
    assert len(sinks[0].h.messages) == len(BODIES)  # one message each, nothing smuggled
    assert [m["rcpt_tos"] for m in sinks[0].h.messages] == [["user@example.test"]] * len(BODIES)


# ---- header injection ------------------------------------------------------------------
INJECTED = "X-Injected"


def _no_injection(*messages: bytes) -> None:
    for raw in messages:
        head = raw.split(b"\r\n\r\n", 1)[0]
        assert INJECTED.encode().lower() not in raw.lower(), head
        assert only_crlf(raw)


def _tls_raw(relay, ctx) -> Raw:
    raw = Raw(relay.ports["submissions"], ctx)
    assert raw.reply().startswith("220 ")
    return raw


def _login(raw: Raw, username: str, secret: str) -> str:
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + secret.encode()).decode()
    return raw.cmd(f"AUTH PLAIN {token}")


EHLO_TRICKS = [b"EHLO client.test\rX-Injected: 1", b"EHLO client.test\x00X-Injected: 1",
               b"HELO client.test\rX-Injected: 1",
               b"EHLO [127.0.0.1]\rX-Injected: 1", b"EHLO client.test\x0bX-Injected: 1"]
ADDRESS_TRICKS = ["app@sender.test\rX-Injected: 1", "app@sender.test\nX-Injected: 1",
                  "app@sender.test\x00X-Injected: 1", "app\r\n@sender.test",
                  "\"app\rX-Injected: 1\"@sender.test"]
USER_TRICKS = ["{u}\r\nX-Injected: 1", "{u}\rX-Injected: 1", "{u}\nX-Injected: 1",
               "{u}\x00X-Injected: 1"]


REFUSED = {CATALOG[n].line() for n in ("bad_sender", "bad_recipient", "bad_syntax",
                                        "unknown_command")}


def _commands(raw: Raw, line: str) -> list[str]:
    """Send one line that may hold bare LFs: the relay reads one command per LF."""
    raw.send(line.encode() + b"\r\n")
    return [raw.reply() for _ in range(line.count("\n") + 1)]


def test_crlf_nul_in_ehlo_addresses_and_auth_never_reach_a_header(relay_factory, sinks,
                                                                   client_ctx, caplog):
    caplog.set_level(logging.DEBUG)
    relay = relay_factory()
    t = relay.tenant
    raw = _tls_raw(relay, client_ctx)
    for trick in EHLO_TRICKS:
        assert raw.cmd(trick) == CATALOG["bad_helo"].line(), trick
    # a bare LF ends a command line (aiosmtpd reads commands up to LF): two commands, the
    # second an unknown verb; nothing joins the EHLO name
    assert raw.cmd(b"EHLO client.test\nX-Injected: 1").startswith("250")
    assert raw.reply() == CATALOG["unknown_command"].line()
    assert raw.cmd("EHLO client.test").startswith("250")
    for trick in USER_TRICKS:  # never a credential: refused before anything is written
        raw = _tls_raw(relay, client_ctx)
        raw.cmd("EHLO client.test")
        reply = _login(raw, trick.format(u=t.username), t.secret)
        assert reply in (CATALOG["auth_invalid"].line(), CATALOG["bad_auth_data"].line()), trick
    raw = _tls_raw(relay, client_ctx)
    raw.cmd("EHLO client.test")
    assert _login(raw, t.username, t.secret) == CATALOG["auth_ok"].line()
    for trick in ADDRESS_TRICKS:
        assert set(_commands(raw, f"MAIL FROM:<{trick}>")) <= REFUSED, trick
    assert raw.cmd(f"MAIL FROM:<{t.sender}>") == CATALOG["sender_ok"].line()
    for trick in ADDRESS_TRICKS:
        rcpt = trick.replace("app", "user").replace("sender.test", "example.test")
        assert set(_commands(raw, f"RCPT TO:<{rcpt}>")) <= REFUSED, rcpt
    assert raw.cmd("RCPT TO:<user@example.test>") == CATALOG["recipient_ok"].line()
    assert raw.cmd("DATA").startswith("354")
    mid = accepted(raw.data(f"From: {t.sender}\r\nSubject: clean\r\n\r\nhello\r\n".encode()))
    rt = RoundTrip.__new__(RoundTrip)
    rt.sink = sinks[0]
    _no_injection(relay.store.queue.message_raw(mid), rt.delivered(mid))
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("helo_smtp")]
    assert not [m for m in ours if INJECTED in m or "\r" in m or "\n" in m]  # no forged line


CONTROL_TRICKS = [
    ("X-Helo-Tag", "=?utf-8?q?t=0D=0AX-Injected:_1?="),
    ("X-Helo-Tag", "t\r\n X-Injected: 1"),  # a folded value: the fold goes with it
    ("X-Helo-Metadata-k", "=?utf-8?b?" + base64.b64encode(b"v\r\nX-Injected: 1").decode()
     + "?="),
    ("X-PM-Metadata-k", "v\r\n\tX-Injected: 1"),
    ("X-Helo-Broadcast", "=?utf-8?q?b=0AX-Injected:_1?="),
    ("X-Helo-Idempotency-Key", "k\r\n X-Injected: 1"),
    ("X-Helo-Track-Opens", "=?utf-8?q?true=0D=0AX-Injected:_1?="),
    ("X-Helo-Template-Data", '{"a": "=?utf-8?q?=0D=0AX-Injected:_1?="}'),
]


def test_crlf_in_control_header_values_never_becomes_a_header(relay_factory, sinks, client_ctx):
    relay = relay_factory(http={"public_url": "http://127.0.0.1:8025"})
    t = relay.tenant
    rt = RoundTrip(relay, client_ctx, sinks[0])
    for name, value in CONTROL_TRICKS:
        before = len(relay.store.admin.messages(limit=1000))
        rt.head = (f"From: {t.sender}\r\nTo: user@example.test\r\nSubject: {{{{a}}}} ctl\r\n"
                   f"{name}: {value}\r\n\r\n").encode()
        reply = rt.submit(b"hello {{a}}\r\n")
        if reply.startswith("550 5.6.0"):  # refused as invalid: then nothing is stored
            assert reply.startswith((CATALOG["validation_error"].line(),
                                     CATALOG["templating_error"].line())), (name, reply)
            assert len(relay.store.admin.messages(limit=1000)) == before
            continue
        mid = accepted(reply)
        _no_injection(relay.store.queue.message_raw(mid), rt.delivered(mid))
