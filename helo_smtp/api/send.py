"""``POST /send/{transactional,broadcast}[/batch]``: JSON -> the submission core -> a reply.

The same steps, in the same order, as an SMTP transaction (``inbound/handler.py``): admit
(disk, queue depth), sender (account may send, domain verified), each recipient (pending-account
rules), then ``message.read`` + ``Core.prepare`` + ``Core.commit``. Only the edges differ: the
message is built from JSON, and a ``HeloError`` becomes an HTTP status (``replies``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ipaddress
import logging
import uuid
from typing import Any

from helo_smtp import errors
from helo_smtp.api import replies
from helo_smtp.api.build import Built, build
from helo_smtp.errors import HeloError
from helo_smtp.inbound import message
from helo_smtp.inbound.addresses import domain_of
from helo_smtp.models import ChannelRef, ListenerMailType, MailType
from helo_smtp.submit.core import Core, Draft, work

log = logging.getLogger("helo_smtp.api")
Answer = tuple[int, dict[str, Any]]


def received(client_ip: str, hostname: str, tls: bool, message_id: str, now: float) -> str:
    """``Received`` for an API submission (RFC 5321 §4.4): only our own or validated text."""
    ip = ipaddress.ip_address(client_ip)
    literal = f"[IPv6:{ip.compressed}]" if ip.version == 6 else f"[{ip}]"
    proto = "HTTPS" if tls else "HTTP"
    date = email.utils.format_datetime(dt.datetime.fromtimestamp(now, dt.UTC))
    return (f"from api ({literal})\r\n\tby {hostname} (helo-smtp) with {proto}"
            f" id {message_id};\r\n\t{date}")


def _suppressed_of(reply: str) -> list[str]:
    """The suppressed list of a replayed 250 line (``errors.accepted_line``)."""
    _, sep, listed = reply.partition("; suppressed: ")
    return [a for a in listed.split(", ") if a and a != "..."] if sep else []


class Sender:
    def __init__(self, core: Core, hostname: str, tls: bool) -> None:
        self.core = core  # the SMTP listener's: one capacity count, one commit path
        self.hostname = hostname
        self.tls = tls

    async def one(self, ref: ChannelRef, body: Any, mail_type: MailType,
                  channel_header: str | None, idempotency_key: str | None,
                  client_ip: str) -> Answer:
        """One message, judged alone; never raises."""
        try:
            built = build(body, broadcast=mail_type == MailType.BROADCAST,
                          channel_id=channel_header, idempotency_key=idempotency_key)
            return await self._submit(ref, built, mail_type, client_ip)
        except HeloError as exc:
            return replies.from_error(exc)
        except errors.StorageFull:
            log.error("event=store_full door=api client_ip=%s", client_ip)
            return replies.fault("insufficient_storage")
        except Exception as exc:  # the boundary: never a 500, never the exception text
            log.error("event=internal_error correlation_id=%s door=api client_ip=%s error=%s",
                      uuid.uuid4().hex[:12], client_ip, type(exc).__name__,
                      exc_info=not isinstance(exc, errors.StoreError))
            return replies.fault()

    async def _submit(self, ref: ChannelRef, built: Built, mail_type: MailType,
                      client_ip: str) -> Answer:
        core = self.core
        if len(built.data) > core.cfg.limits.max_message_size:
            raise errors.MessageTooLarge()
        core.admit(mail_type)
        sender_domain = domain_of(built.sender)
        account = await core.sender(ref.account_id, sender_domain)
        for n, rcpt in enumerate(built.recipients):
            core.recipient(account, sender_domain, domain_of(rcpt), n)
        inc = await work(len(built.data), message.read, built.data)
        draft = Draft(ref, ListenerMailType(mail_type.value), built.sender, built.recipients,
                      inc, lambda msg_id, now: received(client_ip, self.hostname, self.tls,
                                                        msg_id, now),
                      fingerprint=built.fingerprint)
        msg = await core.prepare(draft)
        result = await core.commit(msg)
        suppressed = _suppressed_of(result.reply) if result.replayed else msg.suppressed
        log.info("event=api_send message_id=%s channel=%s mail_type=%s client_ip=%s "
                 "recipients=%d reason=%s", result.message_id, draft.channel_id,
                 mail_type.value, client_ip, len(built.recipients),
                 "replayed" if result.replayed else "accepted")
        return 200, {"status": "accepted", "messageId": result.message_id,
                     "suppressions": suppressed}

    async def batch(self, ref: ChannelRef, body: Any, mail_type: MailType,
                    channel_header: str | None, client_ip: str,
                    max_items: int) -> Answer:
        """``{"requests": [...]}`` -> ``{"responses": [...]}`` in order, each judged alone.
        The items run together so their commits share the store's group commit."""
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return replies.from_error(errors.ValidationError("field requests is missing or "
                                                             "invalid"))
        if len(items) > max_items:
            return replies.from_error(errors.MessageTooLarge())
        answers = await asyncio.gather(*(
            self.one(ref, item, mail_type, channel_header, None, client_ip) for item in items))
        return 200, {"responses": [body for _, body in answers]}
