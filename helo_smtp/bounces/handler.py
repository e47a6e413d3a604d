"""The SMTP side of a ``mail_type = "bounces"`` listener (SPEC §13; port 25 in production).

No AUTH: remote MTAs and feedback loops deliver here as they would to any MX. What makes it
safe is RCPT: only ``b+<token>@<bounce domain>`` with a token that checks, and
``fbl@<bounce domain>``, are taken; every other recipient is ``550 5.7.1 relay denied``, so it
can never relay, and a forged token is ``550 5.1.1``. Any sender is allowed, including the
null sender ``<>`` that DSNs use (RFC 5321 §4.5.5). The report is recorded (``intake.py``) in
one transaction before the ``250``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from helo_smtp import errors
from helo_smtp.bounces.intake import Intake
from helo_smtp.config import Config
from helo_smtp.errors import CATALOG
from helo_smtp.inbound.addresses import AddressProblem, check_mailbox
from helo_smtp.inbound.handler import Handler
from helo_smtp.store import Store

if TYPE_CHECKING:
    from helo_smtp.inbound.listener import InboundServer

log = logging.getLogger("helo_smtp.bounces")


class BounceHandler(Handler):
    """``Handler``'s boundary (``_guard``) with the bounce listener's MAIL, RCPT and DATA."""

    intake: Intake

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        return await self._guard(server, envelope, "MAIL",
                                 self._report_sender(envelope, address, options))

    async def _report_sender(self, envelope: Any, address: str, options: list[str]) -> str:
        self.capacity.check_disk()  # a report queues nothing: only the disk can refuse it
        if address != "<>" and check_mailbox(address, envelope.smtp_utf8) is not None:
            raise errors.BadSender()
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return CATALOG["sender_ok"].line()

    async def _rcpt(self, envelope: Any, address: str) -> str:
        problem = check_mailbox(address, envelope.smtp_utf8)
        if problem is AddressProblem.NEEDS_SMTPUTF8:
            raise errors.SmtputfRequired()
        if problem is not None:
            raise errors.BadRecipient()
        verp = self.intake.verp
        if not verp.in_domain(address):
            raise errors.RelayDenied()
        if not verp.is_fbl(address) and verp.row_id(address) is None:
            raise errors.BadReturnPath()
        if len(envelope.rcpt_tos) >= self.cfg.limits.max_recipients:
            raise errors.TooManyRecipients()
        envelope.rcpt_tos.append(address)
        return CATALOG["recipient_ok"].line()

    async def _data(self, server: Any, session: Any, envelope: Any) -> str:
        server.busy = True
        try:
            done = await self.intake.take(list(envelope.rcpt_tos), envelope.original_content)
        finally:
            server.busy = False
        log.info("event=report_received client_ip=%s mail_from=%s recipients=%d outcome=%s",
                 server.client_ip, envelope.mail_from or "<>", len(envelope.rcpt_tos),
                 ",".join(done))
        return CATALOG["report_received"].line()


def attach(inbound: InboundServer, cfg: Config, store: Store) -> None:
    """Give ``inbound`` (an ``InboundServer``) the bounce handler when a listener needs it."""
    if not any(lc.mail_type == "bounces" for lc in cfg.listeners):
        return
    if not cfg.bounces.domain:
        raise errors.ConfigError("a listener has mail_type = \"bounces\" but [bounces] domain "
                                 "is not set")
    from helo_smtp.bounces.verp import Verp

    h = BounceHandler(cfg, inbound.handler.submission, inbound.directory, inbound.capacity,
                      inbound.handler.wake)
    h.intake = Intake(Verp.load(cfg.bounces.domain, cfg.bounces.secret, store.settings),
                      store.db)
    inbound.bounce_handler = h
