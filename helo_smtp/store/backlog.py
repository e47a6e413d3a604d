"""Two reads of the pending queue for the isolation rules (issue #23), run as plain reads:

* ``pending_by_type``: pending recipients not held, per mail type, one walk of the partial due
  index; each type's admission mark counts only its own (``inbound/capacity.py``).
* ``first_due``: where the due rows outside some busy domains begin. A paced worker reads it
  before a claim that skips those domains (``outbound/gates.py``), so the walk past their rows
  holds no write lock, and the claim (``queue.claim_in``, ``since``) starts where it ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import helo_smtp.store.pg_queue as pg_queue
from helo_smtp.models import MailType


def pending_by_type(db: Any) -> dict[MailType, int]:
    rows = db.read(lambda c: c.execute(
        "SELECT mail_type, count(*) FROM recipients WHERE state IN ('queued', 'deferred')"
        " AND held = 0 GROUP BY mail_type").fetchall())
    out = dict.fromkeys(MailType, 0)
    out.update({MailType(r[0]): r[1] for r in rows})
    return out


def first_due(db: Any, mail_type: MailType, skip: Sequence[str], now: float) -> float | None:
    """When the earliest due recipient outside ``skip`` became due (None: none is)."""
    row = db.read(lambda c: c.execute(
        "SELECT next_attempt_at FROM recipients WHERE mail_type = ?"
        " AND state IN ('queued', 'deferred') AND held = 0 AND next_attempt_at <= ?"
        f"{pg_queue.not_in(skip)} ORDER BY next_attempt_at LIMIT 1",
        (mail_type.value, now, *skip)).fetchone())
    return None if row is None else row[0]
