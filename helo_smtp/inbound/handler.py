"""The aiosmtpd hooks for MAIL, RCPT and DATA: the only place a ``HeloError`` becomes a reply.

Hooks never raise (an exception escaping a hook becomes aiosmtpd's ``500`` with the exception
text): a ``HeloError`` becomes its catalog line, a store failure ``451 4.3.0`` / ``452 4.3.1``,
anything else ``451 4.3.0`` plus a log line with a correlation id. Each hook that accepts sets
the envelope itself and returns the catalog line (aiosmtpd only records the envelope when a
hook returns nothing, and then writes its own unenhanced ``250 OK``).

One log line per SMTP transaction goes to ``helo_smtp.smtp`` (key=value): at DATA, or at
MAIL when the transaction is refused there.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from helo_smtp import errors
from helo_smtp.config import Config
from helo_smtp.errors import CATALOG, HeloError
from helo_smtp.inbound import headers, message, policy
from helo_smtp.inbound.addresses import AddressProblem, check_mailbox, domain_of
from helo_smtp.inbound.capacity import Capacity
from helo_smtp.inbound.directory import Directory
from helo_smtp.models import ListenerMailType, MailType, NewMessage, stored_message, uuid7
from helo_smtp.ports import CommittedHook, Submission
from helo_smtp.runtime import metrics

log = logging.getLogger("helo_smtp.smtp")
T = TypeVar("T")

# Parsing, filling and finalizing a message this small takes a few hundred microseconds: less
# than handing it to a worker thread and back, which gains nothing under the GIL. Larger
# messages still go to a thread, so one big upload never stalls the other sessions.
INLINE_BYTES = 64 * 1024


async def _work(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the loop when the message is small, else in a worker thread."""
    if size <= INLINE_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


class Handler:
    def __init__(self, cfg: Config, submission: Submission, directory: Directory,
                 capacity: Capacity, wake: Callable[[MailType], None],
                 committed: CommittedHook | None = None) -> None:
        self.cfg = cfg
        self.submission = submission
        # Told about each message committed (the delivery process, or this process's workers).
        self.committed = committed
        self.directory = directory
        self.capacity = capacity
        self.wake = wake

    # ---- the boundary ---------------------------------------------------------------------
    async def _guard(self, server: Any, envelope: Any, command: str,
                     work: Awaitable[str]) -> str:
        """Run a hook body; turn every failure into its reply line."""
        try:
            return await work
        except HeloError as exc:
            reply, line = exc.reply, exc.line()
        except errors.StorageFull:
            reply = CATALOG["insufficient_storage"]
            line = reply.line()
            log.error("event=store_full command=%s client_ip=%s", command, server.client_ip)
        except Exception as exc:  # the one boundary: never a 5xx, never the exception text
            reply = CATALOG["local_error"]
            line = reply.line()
            log.error("event=internal_error correlation_id=%s command=%s client_ip=%s error=%s",
                      uuid.uuid4().hex[:12], command, server.client_ip, type(exc).__name__,
                      exc_info=not isinstance(exc, errors.StoreError))
        if command != "RCPT":
            self._log(server, envelope, reply.code, reply.status, reply.name)
        return line

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd calls this when anything else raises inside a command."""
        log.error("event=internal_error correlation_id=%s error=%s", uuid.uuid4().hex[:12],
                  type(error).__name__, exc_info=error)
        return CATALOG["local_error"].line()

    @staticmethod
    def _log(server: Any, envelope: Any, code: int, status: str, reason: str) -> None:
        log.info("event=smtp_transaction message_id=%s channel=%s mail_type=%s client_ip=%s "
                 "listener=%s code=%d status=%s reason=%s recipients=%d",
                 envelope.message_id or "-", envelope.channel_id or "-",
                 envelope.mail_type or "-", server.client_ip, server.listener_name, code,
                 status, reason, len(envelope.rcpt_tos))

    # ---- MAIL -----------------------------------------------------------------------------
    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        return await self._guard(server, envelope, "MAIL",
                                 self._mail(session, envelope, address, options))

    async def _mail(self, session: Any, envelope: Any, address: str, options: list[str]
                    ) -> str:
        self.capacity.check()
        problem = check_mailbox(address, envelope.smtp_utf8)
        if problem is AddressProblem.NEEDS_SMTPUTF8:
            raise errors.SmtputfRequired()
        if problem is not None:
            raise errors.BadSender()
        ref = session.auth_data
        account = policy.check_account(await self.directory.account(ref.account_id))
        domain = domain_of(address)
        policy.check_sender_domain(await self.directory.domain_verified(account.id, domain))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.account = account
        envelope.sender_domain = domain
        return CATALOG["sender_ok"].line()

    # ---- RCPT -----------------------------------------------------------------------------
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        return await self._guard(server, envelope, "RCPT", self._rcpt(envelope, address))

    async def _rcpt(self, envelope: Any, address: str) -> str:
        policy.check_recipient_count(len(envelope.rcpt_tos), self.cfg.limits.max_recipients)
        problem = check_mailbox(address, envelope.smtp_utf8)
        if problem is AddressProblem.NEEDS_SMTPUTF8:
            raise errors.SmtputfRequired()
        if problem is not None:
            raise errors.BadRecipient()
        if _canonical(address) in {_canonical(a) for a in envelope.rcpt_tos}:
            return CATALOG["recipient_ok"].line()  # a duplicate is delivered once
        policy.check_pending_recipient(envelope.account, envelope.sender_domain,
                                       domain_of(address), len(envelope.rcpt_tos))
        envelope.rcpt_tos.append(address)
        return CATALOG["recipient_ok"].line()

    # ---- DATA -----------------------------------------------------------------------------
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return await self._guard(server, envelope, "DATA", self._data(server, session, envelope))

    async def _data(self, server: Any, session: Any, envelope: Any) -> str:
        ref = session.auth_data
        size = len(envelope.original_content)
        inc = await _work(size, message.read, envelope.original_content)
        ctl = inc.controls
        channel_id = policy.channel_to_use(ref, ctl.channel_id)
        channel = policy.check_channel(ref, await self.directory.channel(ref.account_id,
                                                                           channel_id))
        envelope.channel_id = channel.id
        mail_type = policy.mail_type(ListenerMailType(server.listener.mail_type), ctl.mail_type)
        envelope.mail_type = mail_type
        for domain in dict.fromkeys(inc.from_domains):
            policy.check_sender_domain(await self.directory.domain_verified(ref.account_id,
                                                                            domain))
        data, subject = await _work(size, message.fill_templates, inc)
        recipients = list(envelope.rcpt_tos)
        suppressed = await self.directory.suppressed(channel.id, recipients)
        to_send = [r for r in recipients if r not in suppressed]
        if not to_send:
            raise errors.RecipientsSuppressed()
        trace = server.trace(envelope.smtp_utf8)
        msg = await _work(  # hashing and copying a large message: off the loop
            size, self._new_message, trace, envelope, inc, data, subject, to_send,
            [r for r in recipients if r in suppressed], channel)
        return await self._commit(server, envelope, msg)

    def _new_message(self, trace: message.Trace, envelope: Any, inc: message.Incoming,
                     data: bytes, subject: str, to_send: list[str], suppressed: list[str],
                     channel: Any) -> NewMessage:
        ctl, now, msg_id = inc.controls, time.time(), uuid7()
        received = message.received(trace, msg_id, now)
        raw = message.finalize(data, received, msg_id, self.cfg.server.hostname, now)
        opens, links = policy.tracking(channel, ctl.track_opens, ctl.track_links)
        key = name = None
        if envelope.mail_type == MailType.BROADCAST:
            key, name = policy.broadcast_group(ctl.broadcast, subject, now)
        fp = None
        if ctl.idempotency_key:
            fp = headers.fingerprint(envelope.mail_from, envelope.rcpt_tos, inc.data)
        return NewMessage(
            id=msg_id, account_id=channel.account_id, channel_id=channel.id,
            mail_type=envelope.mail_type, sender=envelope.mail_from, recipients=to_send,
            suppressed=suppressed, raw=raw, subject=subject, tags=ctl.tags,
            metadata=ctl.metadata, track_opens=opens, track_links=links, broadcast_key=key,
            broadcast_name=name, idempotency_key=ctl.idempotency_key, fingerprint=fp,
            reply=errors.accepted_line(msg_id, suppressed), created_at=now)

    async def _commit(self, server: Any, envelope: Any, msg: NewMessage) -> str:
        """One transaction, on disk before the 250 (``Submission.commit``)."""
        server.busy = True  # timers and drain leave the session alone until the reply is out
        try:
            result = await self.submission.commit(msg)
        finally:
            server.busy = False
        envelope.message_id = result.message_id
        if not result.replayed:
            if self.committed is not None and msg.recipients:
                self.committed(stored_message(msg, result.broadcast_id))
            self.capacity.note_accepted(len(msg.recipients))
            metrics.MESSAGES_ACCEPTED.labels(msg.mail_type.value).inc()
            self.wake(msg.mail_type)
        self._log(server, envelope, 250, "2.0.0", "replayed" if result.replayed else "accepted")
        return result.reply


def _canonical(address: str) -> str:
    """Local part as sent (it may be case-sensitive), domain lower-cased."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"
