"""What a report that reached the return path does (SPEC §13).

The envelope recipient says whose report it is: ``b+<token>@<bounce domain>`` names one
recipient row (``verp.py``). A feedback-loop report sent to ``fbl@<bounce domain>`` names it
through the original message it carries (its ``Return-Path`` is our VERP address).

- DSN or text bounce, ``failed``: ``store/bounces.bounce_in`` (bounced event, category from the
  delivery classifier, hard-bounce suppression for recipient-class categories only).
- ``delayed``: a deferred event.
- ARF with ``Feedback-Type: abuse`` (or none given): ``engagement.complaint_in`` (complained
  event, ``complaint`` suppression, the broadcast's ``complaints`` counter).
- Anything naming no known recipient, mail with no sign of a bounce (auto-replies), and ARF
  reports of other feedback types (fraud, virus, not-spam), are kept as ``bounce.unmatched``
  events with their text: nothing is dropped.
"""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

from helo_smtp.bounces.parse import Item, Report, parse
from helo_smtp.bounces.verp import Verp
from helo_smtp.models import BounceCategory
from helo_smtp.outbound.classify import classify
from helo_smtp.store import engagement
from helo_smtp.store.bounces import bounce_in, complaint_row_in, unmatched_in

COMPLAINT_TYPES = ("abuse", "")


def category_of(item: Item, full_text: str = "") -> BounceCategory:
    """The delivery classifier on the remote reply; for a free-text bounce whose telling line
    says nothing, on the whole text."""
    cat = classify(item.code, item.status, item.text)
    if cat == BounceCategory.OTHER and full_text:
        cat = classify(item.code, item.status, full_text)
    return cat


def _pick(items: list[Item], address: str) -> Item:
    for it in items:
        if it.recipient and it.recipient == address.lower():
            return it
    return items[0]


class Intake:
    def __init__(self, verp: Verp, db: Any) -> None:
        self.verp = verp
        self.db = db
        self._in_text = re.compile(
            rf"b\+[0-9a-z]{{1,13}}-[a-z2-7]{{12}}@{re.escape(verp.domain)}", re.IGNORECASE)

    def rows(self, rcpts: list[str], report: Report) -> list[int]:
        """Recipient rows the report is about: from the VERP envelope recipients, else (a
        feedback-loop address) from the original message."""
        ids = [i for i in (self.verp.row_id(a) for a in rcpts) if i is not None]
        if not ids:
            ids = [i for i in (self.verp.row_id(a) for a in self._in_text.findall(
                report.original)) if i is not None][:1]
        return ids

    async def take(self, rcpts: list[str], raw: bytes) -> list[str]:
        """Record one report; returns what happened per row (for the log)."""
        report = parse(raw)
        ids = self.rows(rcpts, report)
        now = time.time()
        return await self.db.awrite(lambda c: self._apply(c, report, ids, rcpts, now))

    def _apply(self, c: sqlite3.Connection, report: Report, ids: list[int], rcpts: list[str],
               now: float) -> list[str]:
        out = []
        for rid in ids:
            out.append(self._one(c, report, rid, now))
        if not ids or "unknown" in out:
            unmatched_in(c, now, kind=report.kind, rcpt=",".join(rcpts),
                         feedback_type=report.feedback_type, text=report.text[:1000])
        return out or ["unmatched"]

    def _one(self, c: sqlite3.Connection, report: Report, rid: int, now: float) -> str:
        if report.kind == "other":
            return "unknown"
        if report.kind == "arf":
            if report.feedback_type not in COMPLAINT_TYPES:
                return "unknown"
            row = complaint_row_in(c, rid, now)
            if row is None:
                return "unknown"
            engagement.complaint_in(c, row[0], row[1], now, source="arf",
                                    feedback_type=report.feedback_type or "abuse")
            return "complained"
        row = complaint_row_in(c, rid, now)
        item = _pick(report.items, row[1] if row else "")
        return bounce_in(c, rid, action=item.action, code=item.code, status=item.status,
                         text=item.text, category=category_of(item, report.text if
                                                              report.kind == "text" else ""),
                         remote=item.remote, source=report.kind, now=now)

    async def simulate(self, row_id: int, kind: str, text: str = "") -> str:
        """HOOK (test mode, SPEC §15): what a report for ``row_id`` would do, without mail.
        ``kind`` is ``hard_bounce`` (550 5.1.1), ``soft_bounce`` (a delayed DSN, 4.2.2) or
        ``complaint`` (ARF abuse). Simulator addresses call this after their fake delivery."""
        items = {"hard_bounce": Item("failed", "", "5.1.1", 550, text or
                                     "550 5.1.1 simulated: mailbox does not exist"),
                 "soft_bounce": Item("delayed", "", "4.2.2", 452, text or
                                     "452 4.2.2 simulated: mailbox full")}
        report = (Report("arf", [Item("complained", "", None, None, text)],
                         feedback_type="abuse") if kind == "complaint"
                  else Report("dsn", [items[kind]]))
        now = time.time()
        [done] = await self.db.awrite(lambda c: self._apply(c, report, [row_id], [], now))
        return done

