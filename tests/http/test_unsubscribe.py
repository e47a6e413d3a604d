"""RFC 8058 one-click unsubscribe against the real HTTP server."""

from __future__ import annotations

import aiohttp

from helo_smtp.models import SuppressionReason
from helo_smtp.tracking import tokens
from tests.http.helpers import enqueue, urls_for

A, B = "ann@example.test", "bob@other.test"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def counters(store, msg) -> dict:
    return store.broadcasts.get(store.queue.load_message(msg.id).broadcast_id)


async def test_one_click_post_suppresses_at_once_without_cookies(served, tenant):
    msg = await enqueue(served.store, tenant, [A, B], metadata={"list": "weekly"})
    url = urls_for(msg, A, served.http, served.secret)["unsubscribe"]
    async with served.client.post(url, data=ONE_CLICK) as r:
        assert r.status == 200
        assert "Set-Cookie" not in r.headers
        assert A in await r.text()
    (sup,) = served.store.suppressions.list(tenant.channel.id)
    assert (sup.address, sup.reason, sup.source_message_id) == \
        (A, SuppressionReason.UNSUBSCRIBE, msg.id)
    assert served.store.suppressions.filter(tenant.channel.id, [A, B]) == {A}
    assert counters(served.store, msg)["unsubscribes"] == 1
    (ev,) = served.store.events.list(message_id=msg.id, type_="recipient.unsubscribed")
    assert ev["recipient"] == A and ev["data"]["metadata"] == {"list": "weekly"}
    async with served.client.post(url, data=ONE_CLICK) as r:  # again: still fine, counted once
        assert r.status == 200
    assert counters(served.store, msg)["unsubscribes"] == 1
    assert len(served.store.events.list(type_="suppression.added")) == 1


async def test_one_click_as_multipart_form_data(served, tenant):
    msg = await enqueue(served.store, tenant, [B])
    form = aiohttp.FormData()
    form.add_field("List-Unsubscribe", "One-Click")
    form.add_field("extra", "x" * 10, filename="ignored.txt")  # forces multipart/form-data
    async with served.client.post(urls_for(msg, B, served.http, served.secret)["unsubscribe"],
                                  data=form) as r:
        assert r.status == 200
    assert served.store.suppressions.filter(tenant.channel.id, [B]) == {B}


async def test_get_shows_a_form_and_unsubscribes_no_one(served, tenant):
    msg = await enqueue(served.store, tenant, [A])
    url = urls_for(msg, A, served.http, served.secret)["unsubscribe"]
    async with served.client.get(url) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        page = await r.text()
    assert '<form method="post"' in page
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page
    assert served.store.suppressions.list(tenant.channel.id) == []
    assert counters(served.store, msg)["unsubscribes"] == 0
    # the page's own button posts exactly the one-click body to the same URL
    async with served.client.post(url, data=ONE_CLICK) as r:
        assert r.status == 200
    assert served.store.suppressions.filter(tenant.channel.id, [A]) == {A}


async def test_post_without_the_one_click_body_changes_nothing(served, tenant):
    msg = await enqueue(served.store, tenant, [A])
    url = urls_for(msg, A, served.http, served.secret)["unsubscribe"]
    for data in (None, {"List-Unsubscribe": "Yes"}, {"other": "One-Click"}):
        async with served.client.post(url, data=data) as r:
            assert r.status == 400
    assert served.store.suppressions.list(tenant.channel.id) == []
    assert counters(served.store, msg)["unsubscribes"] == 0


async def test_bad_or_wrong_kind_tokens_unsubscribe_no_one(served, tenant):
    msg = await enqueue(served.store, tenant, [A])
    urls = urls_for(msg, A, served.http, served.secret)
    open_tok = urls["open"].rsplit("/", 1)[1].removesuffix(".gif")
    forged = tokens.make_token(b"other-key", tokens.UNSUBSCRIBE, msg.id, A)
    for url in (f"{served.base}/u/{open_tok}", f"{served.base}/u/{forged}",
                urls["unsubscribe"][:-3] + "abc", f"{served.base}/u/nope"):
        async with served.client.post(url, data=ONE_CLICK) as r:
            assert r.status == 404, url
        async with served.client.get(url) as r:
            assert r.status == 404, url
    assert served.store.suppressions.list(tenant.channel.id) == []
    assert "recipient.unsubscribed" not in served.store.events.counts(msg.id)


async def test_unsubscribe_for_a_message_that_is_gone_is_404(served, tenant):
    from helo_smtp.models import uuid7

    tok = tokens.make_token(served.secret, tokens.UNSUBSCRIBE, uuid7(), A)
    async with served.client.post(f"{served.base}/u/{tok}", data=ONE_CLICK) as r:
        assert r.status == 404
    assert served.store.suppressions.list(tenant.channel.id) == []
