"""Open pixel and click redirect against the real HTTP server on loopback."""

from __future__ import annotations

from prometheus_client import REGISTRY

from helo_smtp.http.pages import PIXEL_GIF
from helo_smtp.models import MailType
from helo_smtp.tracking import tokens
from tests.http.helpers import enqueue, urls_for

A, B = "ann@example.test", "bob@other.test"


def engagement_metric(kind: str) -> float:
    return REGISTRY.get_sample_value("helo_engagement_total", {"kind": kind}) or 0.0


def broadcast(store, msg) -> dict:
    bid = store.queue.load_message(msg.id).broadcast_id
    return store.broadcasts.get(bid)


async def test_pixel_records_one_open_per_recipient(served, tenant):
    msg = await enqueue(served.store, tenant, [A, B], tags=["t1", "t2"],
                        metadata={"campaign": "spring", "segment": "all"})
    before = engagement_metric("open")
    for _ in range(3):
        async with served.client.get(urls_for(msg, A, served.http, served.secret)["open"]) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "image/gif"
            assert "no-store" in r.headers["Cache-Control"]
            assert await r.read() == PIXEL_GIF
    assert broadcast(served.store, msg)["unique_opens"] == 1
    opened = served.store.events.list(message_id=msg.id, type_="message.opened")
    assert len(opened) == 1
    assert opened[0]["recipient"] == A
    assert opened[0]["data"]["tags"] == ["t1", "t2"]
    assert opened[0]["data"]["metadata"] == {"campaign": "spring", "segment": "all"}
    assert opened[0]["broadcast_id"] == broadcast(served.store, msg)["id"]
    assert [(r["kind"], r["count"]) for r in served.store.engagement.get(msg.id, A)] \
        == [("open", 3)]
    async with served.client.get(urls_for(msg, B, served.http, served.secret)["open"]) as r:
        assert r.status == 200
    assert broadcast(served.store, msg)["unique_opens"] == 2
    assert engagement_metric("open") - before == 2


async def test_click_redirects_to_the_original_url_and_counts_once(served, tenant):
    msg = await enqueue(served.store, tenant, [A])
    url = urls_for(msg, A, served.http, served.secret)["click"]
    for _ in range(2):
        async with served.client.get(url, allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == "https://shop.example.test/sale?a=1&b=2"
            assert r.headers["Referrer-Policy"] == "no-referrer"
    # extra query text cannot choose the target: the token alone does
    async with served.client.get(url + "?url=https://evil.test/", allow_redirects=False) as r:
        assert r.headers["Location"] == "https://shop.example.test/sale?a=1&b=2"
    assert broadcast(served.store, msg)["unique_clicks"] == 1
    (clicked,) = served.store.events.list(message_id=msg.id, type_="link.clicked")
    assert clicked["data"]["url"] == "https://shop.example.test/sale?a=1&b=2"
    assert clicked["data"]["tags"] == ["launch"]
    assert clicked["data"]["metadata"] == {"campaign": "c1"}


async def test_click_on_transactional_mail_records_without_a_broadcast(served, tenant):
    msg = await enqueue(served.store, tenant, [A], mail_type=MailType.TRANSACTIONAL)
    async with served.client.get(urls_for(msg, A, served.http, served.secret)["click"],
                                 allow_redirects=False) as r:
        assert r.status == 302
    (clicked,) = served.store.events.list(message_id=msg.id, type_="link.clicked")
    assert clicked["broadcast_id"] is None
    assert served.store.broadcasts.list() == []


def _tamper(url: str) -> str:
    head, tok = url.rsplit("/", 1)
    i = len(tok) // 2
    return f"{head}/{tok[:i]}{'A' if tok[i] != 'A' else 'B'}{tok[i + 1:]}"


async def test_bad_tokens_are_404_and_count_nothing(served, tenant):
    msg = await enqueue(served.store, tenant, [A])
    urls = urls_for(msg, A, served.http, served.secret)
    foreign = tokens.make_token(b"not-our-secret", tokens.CLICK, msg.id, A,
                                  "https://evil.test/")
    click_tok = urls["click"].rsplit("/", 1)[1]
    open_tok = urls["open"].rsplit("/", 1)[1].removesuffix(".gif")
    bad = [_tamper(urls["click"]), _tamper(urls["open"].removesuffix(".gif")),
           f"{served.base}/c/{foreign}", f"{served.base}/c/garbage",
           f"{served.base}/o/{'x' * 7000}.gif", f"{served.base}/o/{click_tok}.gif",
           f"{served.base}/c/{open_tok}", f"{served.base}/c/{click_tok[:-4]}"]
    for url in bad:
        async with served.client.get(url, allow_redirects=False) as r:
            assert r.status == 404, url
            assert "Location" not in r.headers
    async with served.client.head(urls["open"]) as r:  # HEAD is not an open
        assert r.status == 405
    assert served.store.engagement.get(msg.id) == []
    counts = served.store.events.counts(msg.id)
    assert "message.opened" not in counts and "link.clicked" not in counts
    b = broadcast(served.store, msg)
    assert (b["unique_opens"], b["unique_clicks"]) == (0, 0)


async def test_token_for_an_unknown_message_counts_nothing(served, tenant):
    from helo_smtp.models import uuid7

    tok = tokens.make_token(served.secret, tokens.OPEN, uuid7(), A)
    async with served.client.get(f"{served.base}/o/{tok}.gif") as r:
        assert r.status == 200  # still an image: mail clients show nothing broken
    msg = await enqueue(served.store, tenant, [A])
    stranger = tokens.make_token(served.secret, tokens.OPEN, msg.id, "eve@x.test")
    async with served.client.get(f"{served.base}/o/{stranger}.gif") as r:
        assert r.status == 200
    assert served.store.events.counts().get("message.opened") is None
    assert broadcast(served.store, msg)["unique_opens"] == 0
