"""VERP return paths and asynchronous bounces: real mail delivered to a sink, then real
reports (fixtures modelled on RFC 3464 and on Postfix, Exim, Gmail and Microsoft) sent over
SMTP to the relay's bounces listener."""

from __future__ import annotations

import pytest

from tests.events.conftest import BOUNCE_DOMAIN
from tests.support.reports import fixture, send_report
from tests.support.submit import submit
from tests.support.waiting import wait_for


def _delivered(relay, sinks, client_ctx, rcpts, listener="submission"):
    """Submit, wait until delivered; the VERP return path the sink saw per recipient."""
    before = len(sinks[0].h.messages)
    mid = submit(relay, client_ctx, rcpts, listener=listener)
    wait_for(lambda: len(sinks[0].h.messages) >= before + len(rcpts), what="delivered")
    wait_for(lambda: relay.store.events.counts(mid).get("delivery.delivered") == len(rcpts),
             what="recorded")
    paths = {m["rcpt_tos"][0]: m["mail_from"] for m in sinks[0].h.messages[before:]}
    return mid, paths


def test_verp_one_transaction_per_recipient(bounce_relay, sinks, client_ctx):
    relay = bounce_relay()
    mid, paths = _delivered(relay, sinks, client_ctx, ["ann@example.test", "bob@example.test"])
    assert set(paths) == {"ann@example.test", "bob@example.test"}
    assert len(set(paths.values())) == 2
    verp = relay.relay.inbound.bounce_handler.intake.verp
    ids = {r["address"]: r["id"] for r in relay.store.admin.recipients(mid)}
    for rcpt, path in paths.items():
        assert path.startswith("b+") and path.endswith("@" + BOUNCE_DOMAIN)
        assert verp.row_id(path) == ids[rcpt]  # the token names the recipient row


CASES = [  # fixture, category, suppressed, source
    ("postfix_user_unknown.eml", "invalid_recipient", True, "dsn"),
    ("gmail_dsn.eml", "invalid_recipient", True, "dsn"),
    ("microsoft_ndr.eml", "invalid_recipient", True, "dsn"),
    ("mailbox_full_dsn.eml", "mailbox_full", False, "dsn"),
    ("rfc3464_failed.eml", "other", False, "dsn"),
    ("exim_text.eml", "invalid_recipient", True, "text"),
    ("garbled_bounce.eml", "other", False, "text"),
]


@pytest.mark.parametrize(("name", "category", "suppressed", "source"), CASES)
def test_async_bounce_after_delivery(bounce_relay, sinks, client_ctx, receiver, name, category,
                                     suppressed, source):
    relay = bounce_relay()
    rx = receiver()
    _, rx.secret = relay.store.webhooks.create(relay.tenant.channel.id, rx.url, ["bounced"])
    rcpt = "ann@example.test"
    mid, paths = _delivered(relay, sinks, client_ctx, [rcpt])
    data = fixture(name, return_path=paths[rcpt], recipient=rcpt, message_id=f"<{mid}@x>")
    code, text = send_report(relay.ports["bounces"], paths[rcpt], data)
    assert (code, text.decode()) == (250, "2.0.0 Ok: report received")
    [row] = relay.store.admin.recipients(mid)
    assert (row["state"], row["category"]) == ("bounced", category)
    assert relay.store.admin.message(mid)["status"] == "failed"
    [ev] = relay.store.events.list(message_id=mid, type_="delivery.bounced")
    assert (ev["recipient"], ev["data"]["category"], ev["data"]["source"]) == (
        rcpt, category, source)
    assert bool(relay.store.suppressions.filter(relay.tenant.channel.id, [rcpt])) is suppressed
    wait_for(lambda: rx.types() == ["bounced"], what="the bounced webhook")
    assert rx.events[0]["details"]["bounceCategory"] == category
    # a duplicate report changes nothing
    send_report(relay.ports["bounces"], paths[rcpt], data)
    assert len(relay.store.events.list(message_id=mid, type_="delivery.bounced")) == 1
