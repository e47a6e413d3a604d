"""Templates and control-header removal rewrite only the bytes they must (SPEC §14, issue #15
item 2): every other header field is stored byte for byte as the client sent it, so no header
can be made or split by the relay (the CVE-2024-6923 refolding injection fails)."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

from helo_smtp.inbound import headers
from tests.inbound.clients import accepted, send, session
from tests.support.hostile import INJECTION, TRICKY_FIELDS, kept_fields, tricky_message

ADDED = frozenset({"received"})
TEMPLATE = b'X-Helo-Template-Data: {"name": "J\\u00fcrgen <b>"}\r\n'


def _stored(relay, ctx, raw: bytes) -> bytes:
    s = session(relay, ctx)
    try:
        mid = accepted(send(s, relay.tenant.sender, ["user@example.test"], raw))
    finally:
        s.close()
    return relay.store.queue.message_raw(mid)


def test_template_injection_through_refolding_makes_no_header(relay, client_ctx):
    stored = _stored(relay, client_ctx, tricky_message(TEMPLATE))
    fields, _ = headers.split(stored)
    assert [f.raw for f in fields if f.name == "from"] == [TRICKY_FIELDS[0]]
    assert INJECTION in stored
    msg = BytesParser(policy=email.policy.default).parsebytes(stored)
    assert msg.get_all("From") == ['"Acme, Inc." <app@sender.test>']
    assert b"boss@beta.test" not in stored.replace(INJECTION, b"")


def test_template_rewrites_only_subject_and_text_parts(relay, client_ctx):
    sent = tricky_message(TEMPLATE)
    stored = _stored(relay, client_ctx, sent)
    untouched = frozenset({"subject", "x-helo-template-data"})
    assert kept_fields(stored, untouched | ADDED) == kept_fields(sent, untouched)
    msg = BytesParser(policy=email.policy.default).parsebytes(stored)
    assert msg["Subject"] == "Hello Jürgen <b>"
    plain, html = (p.get_content() for p in msg.iter_parts())
    assert plain.startswith("Hi Jürgen <b>, see")  # us-ascii part became utf-8 to carry it
    assert "<p>Hi J&#xfc;rgen &lt;b&gt;</p>" in html or "<p>Hi Jürgen &lt;b&gt;</p>" in html
    assert stored.endswith(b"--b1--\r\n")  # the epilogue and delimiters are kept


def test_control_header_removal_keeps_every_other_byte(relay, client_ctx):
    controls = (b"X-Helo-Tag: a, b\r\n", b"x-pm-metadata-order: 42\r\n",
                b"X-Helo-Track-Opens: false\r\n")
    sent = tricky_message(*controls)
    stored = _stored(relay, client_ctx, sent)
    dropped = frozenset({"x-helo-tag", "x-pm-metadata-order", "x-helo-track-opens"})
    assert kept_fields(stored, ADDED) == kept_fields(sent, dropped)
    assert stored.endswith(sent[sent.index(b"\r\n\r\n--b1"):])  # the body, byte for byte
