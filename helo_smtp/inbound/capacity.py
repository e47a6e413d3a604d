"""Free disk space and queue depth for the MAIL-time guards, refreshed in the background.

MAIL must not query the database: the pending-recipient counts are read once a second off the
loop and bumped locally on every accept, so ``check`` is a comparison of two cached numbers.

Admission is per mail type (issue #23): each type is compared with its own pending count and
its own high-water mark, so a broadcast backlog of any size never refuses transactional mail.
The broadcast mark is the lower of ``broadcast_high_water`` and ``queue_high_water``: it bites
first. A fixed listener knows the type at MAIL; a ``header`` listener learns it from
X-Helo-Mail-Type after DATA, so MAIL checks the transactional mark (the default type) and the
handler checks the broadcast mark again once the header is read (``check_type``).
"""

from __future__ import annotations

import asyncio
import logging
import os

from helo_smtp.config import ServerConfig
from helo_smtp.inbound import policy
from helo_smtp.models import MailType
from helo_smtp.ports import Submission

log = logging.getLogger("helo_smtp.smtp")

REFRESH_SECONDS = 1.0


def free_bytes(database: str) -> int | None:
    """Free bytes for unprivileged writers on the database's filesystem (None: not a file)."""
    if database == ":memory:" or "://" in database:
        return None
    directory = os.path.dirname(os.path.abspath(database))
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def high_water(server: ServerConfig, mail_type: MailType) -> int:
    """The pending-recipient mark of ``mail_type``: the broadcast one is never the higher."""
    if mail_type == MailType.BROADCAST:
        return min(server.broadcast_high_water, server.queue_high_water)
    return server.queue_high_water


class Capacity:
    def __init__(self, submission: Submission, server: ServerConfig) -> None:
        self.submission = submission
        self.server = server
        self.pending: dict[MailType, int] = dict.fromkeys(MailType, 0)
        self.free: int | None = None

    def refresh(self) -> None:
        """Read the numbers now (blocking; run in a thread except at start)."""
        self.pending = self.submission.backlog()
        self.free = free_bytes(self.server.database)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # noqa: BLE001 - keep the last numbers, try again
                log.warning("event=capacity_refresh_failed error=%s", type(exc).__name__)

    def note_accepted(self, recipients: int, mail_type: MailType) -> None:
        self.pending[mail_type] += recipients

    def check(self, mail_type: MailType) -> None:
        """Raise ``InsufficientStorage`` or ``QueueFull`` (MAIL) for mail of ``mail_type``."""
        policy.check_capacity(self.free, self.server.free_space_margin_mb,
                              self.pending[mail_type], high_water(self.server, mail_type))

    def check_disk(self) -> None:
        """Free disk alone (``InsufficientStorage``): for mail that queues nothing (reports to
        the bounces listener)."""
        policy.check_capacity(self.free, self.server.free_space_margin_mb, 0, 1)

    def check_type(self, mail_type: MailType) -> None:
        """The queue mark alone (after DATA, once a ``header`` listener knows the type)."""
        policy.check_capacity(None, 0, self.pending[mail_type],
                              high_water(self.server, mail_type))
