"""One submission, whichever door it came through (SMTP or HTTP).

The door turns its protocol into plain values (who: a ``ChannelRef``; envelope sender and
recipients; the message bytes read by ``message.read``) and calls, in SMTP order:

- ``sender`` (MAIL): capacity, the account may send, the sender domain is verified;
- ``recipient`` (RCPT): the recipient count, the pending-account rules;
- ``prepare`` (DATA): channel, mail type, From: domains, templates, suppressions -> NewMessage;
- ``commit``: one transaction on disk, then the delivery side is told.

Everything raises ``HeloError``s; turning them into wire text is the door's job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from helo_smtp import errors
from helo_smtp.config import Config
from helo_smtp.inbound import headers, message, policy
from helo_smtp.inbound.capacity import Capacity
from helo_smtp.inbound.directory import Directory
from helo_smtp.models import (
    Account,
    Channel,
    ChannelRef,
    ListenerMailType,
    MailType,
    NewMessage,
    stored_message,
    uuid7,
)
from helo_smtp.ports import Committed, CommittedHook, Submission
from helo_smtp.runtime import metrics

T = TypeVar("T")

# Parsing, filling and finalizing a message this small takes a few hundred microseconds: less
# than handing it to a worker thread and back, which gains nothing under the GIL. Larger
# messages still go to a thread, so one big upload never stalls the other sessions.
INLINE_BYTES = 64 * 1024


async def work(size: int, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the loop when the message is small, else in a worker thread."""
    if size <= INLINE_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


@dataclass(slots=True)
class Draft:
    """One message as a door hands it in. ``channel_id`` and ``mail_type`` are filled by
    ``prepare`` as soon as they are known (the door logs them, also on a rejection)."""

    ref: ChannelRef
    listener_mail_type: ListenerMailType
    sender: str
    recipients: list[str]
    incoming: message.Incoming
    #: ``Received`` value for (message id, now): each door writes its own trace line.
    received: Callable[[str, float], str]
    #: The door's own idempotency fingerprint (the API: its canonical JSON body), else the
    #: SMTP one over sender, recipients and bytes (SPEC §6).
    fingerprint: str | None = None
    channel_id: str | None = None
    mail_type: MailType | None = None


class Core:
    """The rules and the commit, with the store seen through ``Directory`` and ``Submission``."""

    def __init__(self, cfg: Config, submission: Submission, directory: Directory,
                 capacity: Capacity, wake: Callable[[MailType], None],
                 committed: CommittedHook | None = None) -> None:
        self.cfg = cfg
        self.submission = submission
        self.directory = directory
        self.capacity = capacity
        self.wake = wake
        # Told about each message committed (the delivery process, or this process's workers).
        self.committed = committed

    # ---- MAIL -----------------------------------------------------------------------------
    def admit(self, mail_type: MailType) -> None:
        """Free disk and the queue depth of ``mail_type`` (``InsufficientStorage`` /
        ``QueueFull``); a header listener's type is checked again once DATA names it."""
        self.capacity.check(mail_type)

    async def sender(self, account_id: str, domain: str) -> Account:
        """The account may send and ``domain`` is one of its verified domains."""
        account = policy.check_account(await self.directory.account(account_id))
        policy.check_sender_domain(await self.directory.domain_verified(account.id, domain))
        return account

    # ---- RCPT -----------------------------------------------------------------------------
    def recipient_count(self, accepted_so_far: int) -> None:
        policy.check_recipient_count(accepted_so_far, self.cfg.limits.max_recipients)

    @staticmethod
    def recipient(account: Account, sender_domain: str, rcpt_domain: str,
                  accepted_so_far: int) -> None:
        policy.check_pending_recipient(account, sender_domain, rcpt_domain, accepted_so_far)

    # ---- DATA -----------------------------------------------------------------------------
    async def prepare(self, d: Draft) -> NewMessage:
        """Channel, mail type, From: domains, templates, suppressions: the message to commit."""
        inc, ref = d.incoming, d.ref
        size = len(inc.data)
        ctl = inc.controls
        channel_id = policy.channel_to_use(ref, ctl.channel_id)
        channel = policy.check_channel(ref, await self.directory.channel(ref.account_id,
                                                                           channel_id))
        d.channel_id = channel.id
        d.mail_type = policy.mail_type(d.listener_mail_type, ctl.mail_type)
        self.capacity.check_type(d.mail_type)  # a header listener learns the type only here
        for domain in dict.fromkeys(inc.from_domains):
            policy.check_sender_domain(await self.directory.domain_verified(ref.account_id,
                                                                            domain))
        data, subject = await work(size, message.fill_templates, inc)
        suppressed = await self.directory.suppressed(channel.id, d.recipients)
        to_send = [r for r in d.recipients if r not in suppressed]
        if not to_send:
            raise errors.RecipientsSuppressed()
        msg = await work(  # hashing and copying a large message: off the loop
            size, self._new_message, d, data, subject, to_send,
            [r for r in d.recipients if r in suppressed], channel)
        msg.test = ref.test  # test mode: simulated at commit, never delivered
        return msg

    def _new_message(self, d: Draft, data: bytes, subject: str, to_send: list[str],
                     suppressed: list[str], channel: Channel) -> NewMessage:
        inc = d.incoming
        ctl, now, msg_id = inc.controls, time.time(), uuid7()
        raw = message.finalize(data, d.received(msg_id, now), msg_id, self.cfg.server.hostname,
                               now)
        opens, links = policy.tracking(channel, ctl.track_opens, ctl.track_links)
        mail_type = d.mail_type or MailType.TRANSACTIONAL
        key = name = None
        if mail_type == MailType.BROADCAST:
            key, name = policy.broadcast_group(ctl.broadcast, subject, now)
        fp = None
        if ctl.idempotency_key:
            fp = d.fingerprint or headers.fingerprint(d.sender, d.recipients, inc.data)
        return NewMessage(
            id=msg_id, account_id=channel.account_id, channel_id=channel.id,
            mail_type=mail_type, sender=d.sender, recipients=to_send,
            suppressed=suppressed, raw=raw, subject=subject, tags=ctl.tags,
            metadata=ctl.metadata, track_opens=opens, track_links=links, broadcast_key=key,
            broadcast_name=name, idempotency_key=ctl.idempotency_key, fingerprint=fp,
            reply=errors.accepted_line(msg_id, suppressed), created_at=now)

    async def commit(self, msg: NewMessage) -> Committed:
        """One transaction, on disk before the door says yes (``Submission.commit``)."""
        result = await self.submission.commit(msg)
        if not result.replayed:
            if self.committed is not None and msg.recipients and not msg.test:
                self.committed(stored_message(msg, result.broadcast_id))
            self.capacity.note_accepted(len(msg.recipients), msg.mail_type)
            metrics.MESSAGES_ACCEPTED.labels(msg.mail_type.value).inc()
            self.wake(msg.mail_type)
        return result
