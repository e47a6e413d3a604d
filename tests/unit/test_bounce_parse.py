"""Reading reports: each fixture (tests/fixtures/bounces/) gives the action, status, reply code
and recipient a user of that MTA would read off it."""

from __future__ import annotations

import pytest

from helo_smtp.bounces.intake import category_of
from helo_smtp.bounces.parse import parse
from tests.support.reports import fixture

RP, RCPT = "b+1-abcdefghijkl@bounces.relay.test", "ann@example.test"


@pytest.mark.parametrize(("name", "kind", "action", "status", "code", "category"), [
    ("rfc3464_failed.eml", "dsn", "failed", "4.0.0", 426, "other"),
    ("postfix_user_unknown.eml", "dsn", "failed", "5.1.1", 550, "invalid_recipient"),
    ("postfix_delayed.eml", "dsn", "delayed", "4.4.1", None, "connection"),
    ("gmail_dsn.eml", "dsn", "failed", "5.1.1", 550, "invalid_recipient"),
    ("microsoft_ndr.eml", "dsn", "failed", "5.1.10", 550, "invalid_recipient"),
    ("mailbox_full_dsn.eml", "dsn", "failed", "5.2.2", 552, "mailbox_full"),
    ("exim_text.eml", "text", "failed", None, 550, "invalid_recipient"),
    ("garbled_bounce.eml", "text", "failed", None, None, "other"),
    ("autoreply_unparseable.eml", "other", "failed", None, None, "other"),
])
def test_reports(name, kind, action, status, code, category):
    rep = parse(fixture(name, return_path=RP, recipient=RCPT))
    assert rep.kind == kind
    item = rep.items[0]
    assert (item.action, item.status, item.code) == (action, status, code)
    if kind == "dsn":
        assert item.recipient == RCPT
    assert category_of(item, rep.text if kind == "text" else "") == category
    if name not in ("autoreply_unparseable.eml", "mailbox_full_dsn.eml", "garbled_bounce.eml"):
        assert RP in rep.original  # the VERP address survives in the returned headers


def test_arf():
    rep = parse(fixture("arf_abuse.eml", return_path=RP, recipient=RCPT,
                        fbl="fbl@bounces.relay.test"))
    assert (rep.kind, rep.feedback_type, rep.items[0].recipient) == ("arf", "abuse", RCPT)
    assert f"Return-Path: <{RP}>" in rep.original


def test_garbage_never_raises():
    for raw in (b"", b"\xff\xfe\x00garbage", b"Content-Type: multipart/report; boundary=x\r\n\r\n",
                b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\n"):
        rep = parse(raw)
        assert rep.kind in ("dsn", "text", "other") and rep.items
