"""One delivery job: the claimed recipients of one message at one domain, delivered.

``DeliveryJob`` is the second half of a worker (``worker.py`` claims, paces and spawns; this
delivers): load and sign the message (personalized per recipient before signing,
``tracking.personalize``), run the attempt (``delivery.py``; on a shared store each connection
it opens holds a cluster slot, ``slots.py``), and record what each recipient's verdict says
(``records.py``); rows no slot was free for go back to the claimer (``_busy``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from helo_smtp.config import Config
from helo_smtp.errors import StoreError
from helo_smtp.models import (
    BounceCategory,
    ClaimedRecipient,
    DeliveryResult,
    MailType,
    StoredMessage,
)
from helo_smtp.outbound import records
from helo_smtp.outbound.delivery import Attempt, Envelope, Settled, Transport
from helo_smtp.outbound.dkim import Signer
from helo_smtp.outbound.mx import MXResolver
from helo_smtp.outbound.outcome import Action, local
from helo_smtp.outbound.pacing import ConnectionCaps, Pacer
from helo_smtp.outbound.session import TLSMode
from helo_smtp.outbound.slots import NoSlot
from helo_smtp.ports import Delivery
from helo_smtp.runtime import metrics
from helo_smtp.tracking.rewrite import needs_personalization, personalize
from helo_smtp.tracking.tokens import tracking_secret

log = logging.getLogger("helo_smtp.delivery")

CLUSTER_BUSY_DELAY = 0.5  # seconds before rows refused a cluster-wide connection slot return
DURATION_DOMAINS = 10_000  # domains whose delivery time is remembered
INLINE_SIGN_BYTES = 64 * 1024  # larger messages are signed in a thread even when inline_load


@dataclass
class Job:
    """The claimed recipients of one message at one destination domain."""

    message_id: str
    domain: str
    rows: list[ClaimedRecipient] = field(default_factory=list)
    started: bool = False  # holds a connection slot: stop() lets it finish within grace

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.rows]


def group(rows: list[ClaimedRecipient], per_recipient: bool = False) -> list[Job]:
    """(message, domain) groups, in claim order: one transaction carries each group.

    ``per_recipient``: one job per recipient, for mail personalized per recipient (one
    transaction each anyway). Each job then asks the pacer for its own token when it starts,
    so deliveries follow the token bucket instead of leaving in batches.
    """
    jobs: dict[tuple[str, str] | int, Job] = {}
    for r in rows:
        key = r.id if per_recipient else (r.message_id, r.domain)
        jobs.setdefault(key, Job(r.message_id, r.domain)).rows.append(r)
    return list(jobs.values())


class DeliveryJob:
    """Delivers one ``Job`` (``_deliver``); the worker that claimed it supplies the state."""

    mail_type: MailType
    cfg: Config
    store: Delivery
    resolver: MXResolver
    node: str
    inline_load: bool
    caps: ConnectionCaps
    pacer: Pacer
    transport: Transport
    signer: Signer
    _secret: bytes | None
    _by_domain: Counter[str]
    _seconds: dict[str, float]
    _stopping: bool

    @property
    def _shared(self) -> bool:
        """Several nodes share the database: pacing and connection caps live in the store
        (``store.throttle``) so the pool's limits hold for the whole cluster, not per node."""
        return self.store.backend.shared

    # ---- one delivery ------------------------------------------------------------------
    async def _deliver(self, job: Job) -> None:
        recorded = False
        try:
            await self.caps.acquire(job.domain)
            try:
                if self._stopping:
                    return
                job.started = True
                began = time.monotonic()
                settled = await self._attempt(job)
                self._timed(job.domain, time.monotonic() - began)
            finally:
                self.caps.release(job.domain)
            await self._record(job.rows, self._results(job, settled))
            if len(settled) < len(job.ids):  # no cluster connection slot (slots.NoSlot)
                await self._busy(job, settled)
            recorded = True
        except StoreError as exc:
            # The store cannot take the outcome (disk full, database away): an expected fault,
            # one line. The rows go back to the queue (or their lease lapses); a delivered one
            # may then arrive twice, as after a crash between DATA and the record.
            log.error("event=record_failed message_id=%s domain=%s error=%s", job.message_id,
                      job.domain, type(exc).__name__)
        except Exception:  # a bug in one delivery must not strand its rows
            log.exception("event=delivery_error message_id=%s domain=%s", job.message_id,
                          job.domain)
            oops = local("queue", "4.3.0", "local error in delivery", BounceCategory.OTHER)
            settled = {rid: Settled(oops, Action.DEFER) for rid in job.ids}
            with contextlib.suppress(Exception):
                await self._record(job.rows, self._results(job, settled))
                recorded = True
        finally:
            if not recorded:  # stopped or cancelled before an outcome: back to the queue
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.shield(self.store.queue.release(job.ids, time.time()))

    async def _busy(self, job: Job, settled: dict[int, Settled]) -> None:
        """No cluster connection slot was free for the rest of ``job`` (``slots.NoSlot``):
        the claimer gives those rows back, and their tokens (``Worker._busy``)."""
        raise NotImplementedError

    def _slot_cap(self, domain: str) -> int:
        """The cluster-wide connection cap of a destination (0: one node, no shared slots).
        Each open connection holds a slot, idle or not (``slots.py``)."""
        return self.cfg.pool(self.mail_type).per_domain_connections if self._shared else 0

    def _timed(self, domain: str, seconds: float) -> None:
        if len(self._seconds) >= DURATION_DOMAINS and domain not in self._seconds:
            self._seconds.clear()
        last = self._seconds.get(domain, seconds)
        self._seconds[domain] = 0.7 * last + 0.3 * seconds

    async def _attempt(self, job: Job) -> dict[int, Settled]:
        msg, signed = await self._load_signed(job.message_id)
        if msg is None:
            gone = local("queue", "5.3.0", "message data missing", BounceCategory.OTHER)
            return {rid: Settled(gone, Action.BOUNCE) for rid in job.ids}
        envelopes = await self._envelopes(msg, job.rows, signed)
        mode = (TLSMode.VERIFY if job.domain in self._require_tls() else TLSMode.MAY)
        attempt = Attempt(self.transport, self.resolver, job.domain, envelopes, mode=mode,
                          max_addresses=self.cfg.delivery.max_mx_addresses)
        try:
            async with asyncio.timeout(self.cfg.delivery.total_deadline):
                await attempt.run()
        except TimeoutError:
            attempt.abort(local("deadline", "4.4.2", "delivery deadline reached",
                                BounceCategory.CONNECTION))
        except NoSlot:  # the cluster's connections to the domain are all open: not an attempt
            log.debug("event=cluster_busy mail_type=%s domain=%s", self.mail_type.value,
                      job.domain)
        finally:
            attempt.close()  # cancelled mid-session: the connection goes, not to the cache
        return attempt.results

    def _require_tls(self) -> set[str]:
        return {d.lower().rstrip(".") for d in self.cfg.delivery.require_tls_domains}

    async def _load_signed(self, message_id: str) -> tuple[StoredMessage | None, bytes | None]:
        """(message, its signed bytes when every recipient gets the same copy).

        In one process with the listeners, both steps go to a worker thread in one hop, so
        reading the blob and signing stay off the loop that answers clients. In the delivery
        process (``inline_load``) nothing else shares the loop, and the hop cost more than it
        saved (the GIL serializes the Python part of signing anyway; the benchmarks gained
        10-20 % without it): a small message is read and signed right here; a big one, whose
        body hash would hold the loop for milliseconds, is still signed in a thread. On
        PostgreSQL the read is a round trip, so it never runs on the loop."""
        if not (self.inline_load and self.store.backend.reads_on_loop):
            return await asyncio.to_thread(self._load, message_id)
        msg = self._fetch(message_id)
        if msg is not None and len(msg.raw) > INLINE_SIGN_BYTES:
            return await asyncio.to_thread(self._signed, msg)
        return self._signed(msg)

    def _load(self, message_id: str) -> tuple[StoredMessage | None, bytes | None]:
        """``_load_signed``'s two steps in the calling (worker) thread."""
        return self._signed(self._fetch(message_id))

    def _fetch(self, message_id: str) -> StoredMessage | None:
        hit = self.store.queue.recent.get(message_id)
        metrics.MESSAGE_LOADS.labels("memory" if hit is not None else "store").inc()
        return hit if hit is not None else self.store.queue.load_message(message_id)

    def _signed(self, msg: StoredMessage | None) -> tuple[StoredMessage | None, bytes | None]:
        """(msg, its signed bytes), or no bytes when each recipient gets its own copy."""
        if msg is None or self._per_recipient(msg):
            return msg, None
        return msg, self.signer.sign(msg.raw, msg.account_id, msg.sender)

    def _per_recipient(self, msg: StoredMessage) -> bool:
        return needs_personalization(msg.mail_type, msg.track_opens, msg.track_links,
                                     self.cfg.http)

    async def _envelopes(self, msg: StoredMessage, rows: list[ClaimedRecipient],
                         signed: bytes | None) -> list[Envelope]:
        """The bytes to send: personalized per recipient when needed, then DKIM-signed."""
        if signed is not None:
            return [Envelope(msg.sender, [(r.id, r.address) for r in rows], signed)]
        return await asyncio.to_thread(self._personalize, msg, rows, self._tracking_secret())

    def _personalize(self, msg: StoredMessage, rows: list[ClaimedRecipient], secret: bytes
                     ) -> list[Envelope]:
        """HOOK (personalization): each recipient gets its own copy and its own transaction;
        tracking.personalize runs BEFORE signing so the signature covers the final bytes."""
        out = []
        for r in rows:
            raw = personalize(msg.raw, message_id=msg.id, recipient=r.address,
                              mail_type=msg.mail_type, track_opens=msg.track_opens,
                              track_links=msg.track_links, http_cfg=self.cfg.http,
                              secret=secret)
            data = self.signer.sign(raw, msg.account_id, msg.sender)
            out.append(Envelope(msg.sender, [(r.id, r.address)], data))
        return out

    def _tracking_secret(self) -> bytes:
        if self._secret is None:
            self._secret = tracking_secret(self.cfg.http, self.store.settings)
        return self._secret

    def _results(self, job: Job, settled: dict[int, Settled]) -> list[DeliveryResult]:
        now = time.time()
        out = []
        for row in job.rows:
            s = settled.get(row.id)
            if s is None:
                continue
            o = s.outcome
            if s.action == Action.DEFER and o.code:
                self.pacer.note_reply(job.domain, o.code, o.status, o.text)
            out.append(records.to_result(row, s, self.cfg.delivery, now))
        return out

    async def _record(self, rows: list[ClaimedRecipient], results: list[DeliveryResult]
                      ) -> None:
        await self.store.queue.record(results)
        by_id = {r.id: r for r in rows}
        for res in results:
            records.observe(self.mail_type, by_id[res.recipient_id], res)
