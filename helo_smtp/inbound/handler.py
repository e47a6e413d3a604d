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

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from helo_smtp import errors
from helo_smtp.config import Config
from helo_smtp.errors import CATALOG, HeloError
from helo_smtp.inbound import message, policy
from helo_smtp.inbound.addresses import AddressProblem, check_mailbox, domain_of
from helo_smtp.inbound.capacity import Capacity
from helo_smtp.inbound.directory import Directory
from helo_smtp.models import ListenerMailType, MailType, NewMessage
from helo_smtp.ports import CommittedHook, Submission
from helo_smtp.submit.core import Core, Draft
from helo_smtp.submit.core import work as _work

log = logging.getLogger("helo_smtp.smtp")


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
        # The rules and the commit, shared with the HTTP send API (helo_smtp/submit/).
        self.core = Core(cfg, submission, directory, capacity, wake, committed)

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
        # The listener's type, or transactional on a header listener (DATA checks again).
        admit = policy.mail_type(ListenerMailType(server.listener.mail_type), None)
        return await self._guard(server, envelope, "MAIL",
                                 self._mail(session, envelope, address, options, admit))

    async def _mail(self, session: Any, envelope: Any, address: str, options: list[str],
                    admit: MailType) -> str:
        self.core.admit(admit)
        problem = check_mailbox(address, envelope.smtp_utf8)
        if problem is AddressProblem.NEEDS_SMTPUTF8:
            raise errors.SmtputfRequired()
        if problem is not None:
            raise errors.BadSender()
        domain = domain_of(address)
        account = await self.core.sender(session.auth_data.account_id, domain)
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
        self.core.recipient_count(len(envelope.rcpt_tos))
        problem = check_mailbox(address, envelope.smtp_utf8)
        if problem is AddressProblem.NEEDS_SMTPUTF8:
            raise errors.SmtputfRequired()
        if problem is not None:
            raise errors.BadRecipient()
        if _canonical(address) in {_canonical(a) for a in envelope.rcpt_tos}:
            return CATALOG["recipient_ok"].line()  # a duplicate is delivered once
        self.core.recipient(envelope.account, envelope.sender_domain,
                                       domain_of(address), len(envelope.rcpt_tos))
        envelope.rcpt_tos.append(address)
        return CATALOG["recipient_ok"].line()

    # ---- DATA -----------------------------------------------------------------------------
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return await self._guard(server, envelope, "DATA", self._data(server, session, envelope))

    async def _data(self, server: Any, session: Any, envelope: Any) -> str:
        size = len(envelope.original_content)
        inc = await _work(size, message.read, envelope.original_content)
        trace = server.trace(envelope.smtp_utf8)
        draft = Draft(session.auth_data, ListenerMailType(server.listener.mail_type),
                      envelope.mail_from, list(envelope.rcpt_tos), inc,
                      lambda msg_id, now: message.received(trace, msg_id, now))
        try:
            msg = await self.core.prepare(draft)
        finally:
            envelope.channel_id, envelope.mail_type = draft.channel_id, draft.mail_type
        return await self._commit(server, envelope, msg)

    async def _commit(self, server: Any, envelope: Any, msg: NewMessage) -> str:
        """One transaction, on disk before the 250 (``Submission.commit``)."""
        server.busy = True  # timers and drain leave the session alone until the reply is out
        try:
            result = await self.core.commit(msg)
        finally:
            server.busy = False
        envelope.message_id = result.message_id
        self._log(server, envelope, 250, "2.0.0", "replayed" if result.replayed else "accepted")
        return result.reply


def _canonical(address: str) -> str:
    """Local part as sent (it may be case-sensitive), domain lower-cased."""
    local, _, domain = address.rpartition("@")
    return f"{local}@{domain.lower()}"
