"""The dev inbox's SMTP side: a catch-all aiosmtpd server on loopback that files every message
it is given into the Maildir (``mailbox.store``). It takes any sender and any recipient, with
no AUTH and no TLS, and listens on 127.0.0.1 on a free port that only the delivering process
knows (``routing.Routing`` points every recipient at it), like Postfix's ``smtp-sink -d``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from helo_smtp.devinbox import mailbox

log = logging.getLogger("helo_smtp.devinbox")


class _Handler:
    def __init__(self, path: str) -> None:
        self.path = path

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content
        assert isinstance(data, bytes)
        rcpts = list(envelope.rcpt_tos)
        key = await asyncio.to_thread(mailbox.store, self.path, envelope.mail_from or "",
                                      rcpts, data)
        log.info("event=dev_inbox_stored key=%s recipients=%d size=%d", key, len(rcpts),
                 len(data))
        return "250 2.0.0 Ok: in the dev inbox"


class DevInboxSink:
    """``await start()`` gives the port; ``close()`` stops listening."""

    def __init__(self, path: str, max_size: int) -> None:
        self.path = path
        self.max_size = max_size
        self._server: Any = None

    async def start(self) -> int:
        handler = _Handler(self.path)
        await asyncio.to_thread(mailbox.prepare, self.path)  # fail now, not at the first mail
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="dev-inbox.localhost", ident="helo-smtp dev inbox",
                         data_size_limit=self.max_size * 2, enable_SMTPUTF8=True,
                         decode_data=False),
            host="127.0.0.1", port=0)
        port = int(self._server.sockets[0].getsockname()[1])
        log.info("event=dev_inbox_started dir=%s port=%d", self.path, port)
        return port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
