"""A tracked broadcast end to end: submitted on the broadcast listener, personalized per
recipient, delivered to the sinks; the recipients open, click and unsubscribe through the
relay's own HTTP side; the broadcast counters and the Prometheus metrics equal the event
counts; and the next broadcast to the unsubscribed address is suppressed and says so in the
250 line."""

from __future__ import annotations

import asyncio
import email
import re
from email.policy import default as default_policy

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from helo_smtp import errors
from helo_smtp.models import SuppressionReason
from tests.broadcast.conftest import http_base, local_url
from tests.support.outbound import wait_states
from tests.support.submit import Submitter, build

ANN, BOB = "ann@example.test", "bob@example.test"
TARGET = "https://shop.example.test/sale?id=7&utm=mail"
HTML = ('<html><body><p>Spring sale</p><a href="https://shop.example.test/sale?id=7&amp;utm=mail">'
        'Shop now</a> <a href="mailto:help@sender.test">Help</a></body></html>')
CONTROL = {"X-Helo-Broadcast": "spring", "X-Helo-Track-Opens": "true",
           "X-Helo-Track-Links": "true", "X-Helo-Tag": "sale",
           "X-Helo-Metadata-campaign": "c1"}
KINDS = {"open": "message.opened", "click": "link.clicked",
         "unsubscribe": "recipient.unsubscribed"}


def tracking_urls(data: bytes) -> dict[str, str]:
    msg = email.message_from_bytes(data, policy=default_policy)
    html = msg.get_body(("html",)).get_content()
    assert "mailto:help@sender.test" in html  # never rewritten
    return {"open": re.search(r'<img src="([^"]+/o/[\w-]+\.gif)"', html)[1],
            "click": re.search(r'<a href="([^"]+/c/[\w-]+)"', html)[1],
            "unsubscribe": str(msg["List-Unsubscribe"]).strip("<>")}


def metric(kind: str) -> float:
    return REGISTRY.get_sample_value("helo_engagement_total", {"kind": kind}) or 0.0


async def engage(relay, urls: dict[str, dict[str, str]]) -> str:
    """Ann opens twice, clicks and unsubscribes; Bob opens once. Returns /metrics text."""
    async with aiohttp.ClientSession() as http:
        for who, n in ((ANN, 2), (BOB, 1)):
            for _ in range(n):
                async with http.get(local_url(relay, urls[who]["open"])) as r:
                    assert r.status == 200 and r.content_type == "image/gif"
        async with http.get(local_url(relay, urls[ANN]["click"]), allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (302, TARGET)
        async with http.post(local_url(relay, urls[ANN]["unsubscribe"]),
                             data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200
        async with http.get(f"{http_base(relay)}/metrics") as r:
            return await r.text()


def test_engagement_counts_and_unsubscribe_suppresses_next_broadcast(broadcast_relay, sinks,
                                                                      client_ctx):
    relay = broadcast_relay()
    before = {k: metric(k) for k in KINDS}
    with Submitter(relay, client_ctx, "broadcast") as s:
        mid = s.send([ANN, BOB], subject="Spring", html=HTML, headers=CONTROL)
    wait_states(relay.store, mid, lambda c: c == {"delivered": 2})
    copies = {m["rcpt_tos"][0]: m["data"] for s in sinks for m in s.h.messages}
    assert sorted(copies) == [ANN, BOB]  # one personalized transaction per recipient
    urls = {who: tracking_urls(data) for who, data in copies.items()}
    assert urls[ANN]["click"] != urls[BOB]["click"]

    text = asyncio.run(engage(relay, urls))

    bid = relay.store.queue.load_message(mid).broadcast_id
    b = relay.store.broadcasts.get(bid)
    assert (b["name"], b["accepted"], b["delivered"]) == ("spring", 2, 2)
    assert (b["unique_opens"], b["unique_clicks"], b["unsubscribes"]) == (2, 1, 1)
    counts = relay.store.events.counts(mid)
    assert (counts["message.opened"], counts["link.clicked"],
            counts["recipient.unsubscribed"]) == (2, 1, 1)
    for ev in relay.store.events.list(message_id=mid):
        if ev["type"] in KINDS.values():
            assert ev["data"]["tags"] == ["sale"] and ev["data"]["metadata"] == {"campaign": "c1"}
    served = {s.labels["kind"]: s.value for f in text_string_to_metric_families(text)
              if f.name == "helo_engagement" for s in f.samples
              if s.name == "helo_engagement_total"}
    for kind, type_ in KINDS.items():
        assert served[kind] - before[kind] == counts[type_], kind
    (sup,) = relay.store.suppressions.list(relay.tenant.channel.id)
    assert (sup.address, sup.reason) == (ANN, SuppressionReason.UNSUBSCRIBE)

    with Submitter(relay, client_ctx, "broadcast") as s:
        data = build(relay.tenant.sender, [ANN, BOB], subject="Summer", html=HTML,
                     headers={**CONTROL, "X-Helo-Broadcast": "summer"})
        assert s.s.mail(relay.tenant.sender)[0] == 250
        assert [s.s.rcpt(a)[0] for a in (ANN, BOB)] == [250, 250]
        code, reply = s.s.data(data)
    line = f"{code} {reply.decode()}"
    mid2 = line.split("queued as ", 1)[1].split(";", 1)[0]
    assert line == errors.accepted_line(mid2, [ANN])
    wait_states(relay.store, mid2, lambda c: c == {"delivered": 1, "suppressed": 1})
    summer = relay.store.broadcasts.get("summer")
    assert (summer["accepted"], summer["suppressed"], summer["delivered"]) == (1, 1, 1)
    delivered = sorted((m["t"], m["rcpt_tos"]) for s in sinks for m in s.h.messages)
    assert [rcpts for _, rcpts in delivered][2:] == [[BOB]]
