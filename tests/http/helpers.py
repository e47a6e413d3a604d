"""Set up messages the way the relay does (``store.queue.enqueue``) and pull tracking URLs out
of personalized copies."""

from __future__ import annotations

import email
import re
from email.policy import default as default_policy

from helo_smtp.config import HTTPConfig
from helo_smtp.models import MailType, NewMessage, uuid7
from helo_smtp.store import Store
from helo_smtp.tracking import rewrite as tracking
from tests.support.relay import Tenant

HTML_BODY = ('<html><body><p>News</p><a href="https://shop.example.test/sale?a=1&amp;b=2">'
             'Sale</a> <a href="mailto:help@sender.test">mail</a></body></html>')


def raw_message(sender: str, to: str, subject: str = "News") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n--b1\r\n"
            "Content-Type: text/plain\r\n\r\nNews at https://shop.example.test/sale\r\n--b1\r\n"
            f"Content-Type: text/html; charset=utf-8\r\n\r\n{HTML_BODY}\r\n--b1--\r\n").encode()


async def enqueue(store: Store, tenant: Tenant, recipients: list[str], *,
                  mail_type: MailType = MailType.BROADCAST, name: str | None = "spring",
                  tags: list[str] | None = None, metadata: dict[str, str] | None = None,
                  track_opens: bool = True, track_links: bool = True) -> NewMessage:
    """Commit a message as the inbound side would; returns it."""
    msg = NewMessage(
        id=uuid7(), account_id=tenant.account.id, channel_id=tenant.channel.id,
        mail_type=mail_type, sender=tenant.sender, recipients=recipients, suppressed=[],
        raw=raw_message(tenant.sender, recipients[0]), subject="News",
        tags=tags if tags is not None else ["launch"],
        metadata=metadata if metadata is not None else {"campaign": "c1"},
        track_opens=track_opens, track_links=track_links,
        broadcast_key=f"name:{name}" if mail_type == MailType.BROADCAST and name else None,
        broadcast_name=name if mail_type == MailType.BROADCAST else None)
    await store.queue.enqueue(msg)
    return msg


def urls_for(msg: NewMessage, recipient: str, http: HTTPConfig, secret: bytes
             ) -> dict[str, str]:
    """The open, click and unsubscribe URLs in ``recipient``'s copy of ``msg``."""
    out = tracking.personalize(msg.raw, message_id=msg.id, recipient=recipient,
                               mail_type=msg.mail_type, track_opens=True, track_links=True,
                               http_cfg=http, secret=secret)
    parsed = email.message_from_bytes(out, policy=default_policy)
    html = next(p.get_content() for p in parsed.walk() if p.get_content_type() == "text/html")
    base = re.escape(http.public_url.rstrip("/"))
    urls = {"open": re.search(base + r"/o/[\w-]+\.gif", html)[0],
            "click": re.search(base + r"/c/[\w-]+", html)[0]}
    if parsed["List-Unsubscribe"]:
        urls["unsubscribe"] = str(parsed["List-Unsubscribe"]).split(",")[0].strip(" <>")
    return urls
