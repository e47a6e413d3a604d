"""Free disk space and queue depth for the MAIL-time guards, refreshed in the background.

MAIL must not query the database: the pending-recipient count is read once a second off the
loop and bumped locally on every accept, so ``check`` is a comparison of two cached numbers.
"""

from __future__ import annotations

import asyncio
import logging
import os

from helo_smtp.config import ServerConfig
from helo_smtp.inbound import policy
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


class Capacity:
    def __init__(self, submission: Submission, server: ServerConfig) -> None:
        self.submission = submission
        self.server = server
        self.pending = 0
        self.free: int | None = None

    def refresh(self) -> None:
        """Read both numbers now (blocking; run in a thread except at start)."""
        self.pending = self.submission.backlog()
        self.free = free_bytes(self.server.database)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception as exc:  # noqa: BLE001 - keep the last numbers, try again
                log.warning("event=capacity_refresh_failed error=%s", type(exc).__name__)

    def note_accepted(self, recipients: int) -> None:
        self.pending += recipients

    def check(self) -> None:
        """Raise ``InsufficientStorage`` or ``QueueFull`` (MAIL)."""
        policy.check_capacity(self.free, self.server.free_space_margin_mb, self.pending,
                              self.server.queue_high_water)
