"""The delivery worker of one mail type: claim due recipients, deliver, record.

Two workers run, one per mail type, each with its own pool (``[pools.<type>]``): connection
budget and per-domain cap (``pacing.ConnectionCaps``), source addresses and EHLO name, token
buckets (``pacing.Pacer``), idle connections. They share nothing but the event loop, the store
and the DNS cache, and each claims only its own type (``store.queue.claim`` reads its own
range of the partial due index), so a backlog of any size in one queue never delays the other.

The loop: claim at most as many rows as there is room for in flight (leased; the lease is
renewed while they are held, and a crash lets it lapse so the rows simply come back), group
them by (message, domain), and start one delivery task per group. A group whose domain already
has a full wave waiting, or that the pacer says must wait, is given back with
``store.queue.release`` (due later, no lease, no connection held while it waits). With nothing
due the worker sleeps until ``wake()`` or the next due time (``store.queue.next_due``).

Two hooks sit in the path of each group: the pacer (``_hold_back``, before a connection slot is
taken) and per-recipient personalization (``_envelopes``: ``tracking.personalize`` makes one
copy, and so one transaction, per recipient, before the DKIM signature is computed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

from helo_smtp.config import Config
from helo_smtp.errors import StoreError
from helo_smtp.models import (
    MailType,
)
from helo_smtp.outbound import records
from helo_smtp.outbound.connections import ConnectionCache, SourceAddresses
from helo_smtp.outbound.delivery import Settled, Transport
from helo_smtp.outbound.dkim import Signer
from helo_smtp.outbound.job import CLUSTER_BUSY_DELAY, DeliveryJob, Job, group
from helo_smtp.outbound.mx import MXResolver
from helo_smtp.outbound.pacing import ConnectionCaps, Pacer
from helo_smtp.outbound.session import Connection, SessionParams, tls_contexts
from helo_smtp.outbound.slots import ClusterSlots
from helo_smtp.ports import Delivery

log = logging.getLogger("helo_smtp.delivery")

MAX_SLEEP = 5.0  # poll at least this often (leases of other nodes lapse silently)
TICK = 1.0  # housekeeping period: idle connections, lease renewal
FIRST_GUESS = 0.5  # seconds a delivery to an unknown domain is assumed to take
MIN_BACKLOG_DELAY, MAX_BACKLOG_DELAY = 0.1, 30.0


def session_params(cfg: Config, mail_type: MailType) -> SessionParams:
    d = cfg.delivery
    return SessionParams(d.port, cfg.pool(mail_type).helo_name or cfg.server.hostname,
                         d.connect_timeout, d.command_timeout, d.data_timeout)


class Worker(DeliveryJob):
    """Delivers one mail type (see the module text). Interface used by ``daemon.Relay``."""

    def __init__(self, mail_type: MailType, cfg: Config, store: Delivery, resolver: MXResolver,
                 node_id: str) -> None:
        self.mail_type = mail_type
        self.inline_load = False  # True in the delivery process: see _load_signed
        self.cfg = cfg
        self.store = store
        self.resolver = resolver
        self.node = node_id
        pool = cfg.pool(mail_type)
        self.caps = ConnectionCaps.for_pool(pool)
        self.pacer = Pacer(pool, store.destinations, pool=mail_type.value)
        self.cache = ConnectionCache(cfg.delivery.idle_connection_seconds)
        self.slots = ClusterSlots(store.throttle, mail_type.value, node_id, self._slot_cap,
                                  lambda: self.cfg.delivery.lease_seconds)
        self.transport = Transport(session_params(cfg, mail_type),
                                   tls_contexts(cfg.delivery.tls_ca_file), self.caps,
                                   self.cache, SourceAddresses(pool.source_addresses),
                                   self.slots)
        self.signer = Signer(store.domains)
        self._secret: bytes | None = None
        self._jobs: dict[asyncio.Task[None], Job] = {}
        self._by_domain: Counter[str] = Counter()
        self._seconds: dict[str, float] = {}  # moving average of a delivery, per domain
        self._kick = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # ---- the daemon's interface --------------------------------------------------------
    def wake(self) -> None:
        """New mail of this type was committed (safe from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._kick.set()  # before run(): the first round claims anyway
            return
        try:
            same = asyncio.get_running_loop() is loop
        except RuntimeError:
            same = False
        if same:
            self._kick.set()
        else:
            loop.call_soon_threadsafe(self._kick.set)

    async def run(self) -> None:
        """Claim and deliver until ``stop()``."""
        self._loop = asyncio.get_running_loop()
        keeper = asyncio.create_task(self._housekeeping(), name=f"keeper-{self.mail_type}")
        try:
            while not self._stopping:
                self._kick.clear()
                try:
                    busy = await self._claim_round()
                except StoreError as exc:  # disk full, database away: expected, one line
                    log.error("event=claim_failed mail_type=%s error=%s", self.mail_type.value,
                              type(exc).__name__)
                    await asyncio.sleep(TICK)
                    continue
                except Exception:  # a bug: keep the traceback, and keep the worker alive
                    log.exception("event=claim_failed mail_type=%s", self.mail_type.value)
                    await asyncio.sleep(TICK)
                    continue
                if not busy:
                    await self._sleep()
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def stop(self, grace: float) -> None:
        """Stop claiming; deliveries under way get ``grace`` seconds, then are cancelled and
        their rows released (a cut DATA may be delivered twice: RFC 5321 §6.1 allows it)."""
        self._stopping = True
        self._kick.set()
        for task, job in list(self._jobs.items()):
            if not job.started:
                task.cancel()
        if self._jobs:
            _, late = await asyncio.wait(set(self._jobs), timeout=max(0.0, grace))
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._quit_idle(self.cache.drain())

    async def _quit_idle(self, conns: list[Connection]) -> None:
        timeout = min(1.0, self.cfg.delivery.command_timeout)
        await asyncio.gather(*(c.quit(timeout) for c in conns))

    def reload(self, cfg: Config) -> None:
        """New pool settings (SIGHUP) apply to deliveries started from now on."""
        self.cfg = cfg
        pool = cfg.pool(self.mail_type)
        self.caps.reload(pool)
        self.pacer.reload(pool)
        self.cache.idle_seconds = cfg.delivery.idle_connection_seconds
        self.transport.params = session_params(cfg, self.mail_type)
        self.transport.sources = SourceAddresses(pool.source_addresses)
        self.transport.contexts = tls_contexts(cfg.delivery.tls_ca_file)
        for conn in self.cache.drain():  # opened with the old source address and EHLO name
            conn.close()

    # ---- claiming ----------------------------------------------------------------------
    def _room(self) -> int:
        """Groups that may be in flight: two waves of the pool's connection budget."""
        budget = self.caps.max_connections or self.cfg.delivery.batch_size
        return max(0, 2 * budget - len(self._jobs))

    async def _claim_round(self) -> bool:
        """Claim and dispatch once; True when a full batch came (claim again at once)."""
        limit = min(self.cfg.delivery.batch_size, self._room())
        if limit <= 0:
            return False
        rows = await self.store.queue.claim(self.mail_type, limit, self.node,
                                            self.cfg.delivery.lease_seconds)
        if not rows:
            return False
        now = time.time()
        late = [r for r in rows if r.expires_at <= now]
        if late:
            await self._record(late, [records.expired(r, now) for r in late])
        started = 0
        for job in group([r for r in rows if r.expires_at > now], self._personalized()):
            wait = await self._hold_back(job)
            if wait > 0:
                await self.store.queue.release(job.ids, time.time() + wait)
                log.debug("event=held_back mail_type=%s domain=%s rows=%d seconds=%.3f",
                          self.mail_type.value, job.domain, len(job.ids), wait)
                continue
            self._spawn(job)
            started += 1
        return len(rows) == limit and started > 0

    async def _hold_back(self, job: Job) -> float:
        """Seconds this group must wait before it may start (0: start now)."""
        per_domain = max(1, self.caps.per_domain or 1)
        if self._by_domain[job.domain] >= 2 * per_domain:
            # A full wave already waits for this domain: come back about when a slot frees.
            waves = self._by_domain[job.domain] / per_domain
            guess = waves * self._seconds.get(job.domain, FIRST_GUESS)
            return min(MAX_BACKLOG_DELAY, max(MIN_BACKLOG_DELAY, guess))
        # HOOK (pacing): a paced claim asks the pool's token buckets; a positive delay gives
        # the rows back (store.queue.release) instead of holding a lease or a connection.
        if self._shared:
            if await self.slots.all_elsewhere(job.domain):  # no connection possible here now
                return CLUSTER_BUSY_DELAY
            pool = self.cfg.pool(self.mail_type)
            return await self.store.throttle.take(
                self.mail_type.value, job.domain, self._transactions(job), pool_rate=pool.rate,
                domain_rate=self.pacer.domain_rate(job.domain))
        return self.pacer.delay(job.domain, self._transactions(job))

    def _personalized(self) -> bool:
        """Broadcast mail gets its own List-Unsubscribe per recipient when the HTTP side is
        public, so each recipient is its own transaction."""
        return self.mail_type == MailType.BROADCAST and bool(self.cfg.http.public_url)

    async def _busy(self, job: Job, settled: dict[int, Settled]) -> None:
        """Every cluster connection to the domain is open: the rows come back in a moment,
        and the shared tokens they took go back to the bucket (nothing was sent)."""
        await self.store.queue.release([i for i in job.ids if i not in settled],
                                       time.time() + CLUSTER_BUSY_DELAY)
        if not settled:
            pool = self.cfg.pool(self.mail_type)
            await self.store.throttle.give_back(
                self.mail_type.value, job.domain, self._transactions(job), pool_rate=pool.rate,
                domain_rate=self.pacer.domain_rate(job.domain))

    def _transactions(self, job: Job) -> int:
        """Messages this group will send: one per recipient when it is personalized."""
        return len(job.rows) if self._personalized() else 1

    async def _sleep(self) -> None:
        timeout = MAX_SLEEP  # with no room, a finishing delivery kicks us
        if self._room() > 0:
            try:
                due = self.store.queue.next_due(self.mail_type)
            except Exception:  # same as a failed claim: try again in a while
                log.exception("event=next_due_failed mail_type=%s", self.mail_type.value)
                due = None
            if due is not None:
                timeout = min(MAX_SLEEP, max(0.01, due - time.time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), timeout)

    def _spawn(self, job: Job) -> None:
        task = asyncio.create_task(self._deliver(job), name=f"deliver-{job.message_id}")
        self._jobs[task] = job
        self._by_domain[job.domain] += 1
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        job = self._jobs.pop(task, None)
        if job is not None:
            self._by_domain[job.domain] -= 1
            if self._by_domain[job.domain] <= 0:
                del self._by_domain[job.domain]
        self._kick.set()

    # ---- housekeeping ------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        """Close idle connections past their time; renew the leases of rows in flight and of
        the cluster slots open connections hold."""
        renew_at = time.monotonic() + self.cfg.delivery.lease_seconds / 3
        while True:
            await asyncio.sleep(min(TICK, self.cfg.delivery.lease_seconds / 3))
            await self._quit_idle(self.cache.expired())
            self.slots.sweep()
            if time.monotonic() < renew_at:
                continue
            lease = self.cfg.delivery.lease_seconds
            await self.slots.renew()
            if self._jobs:
                ids = [i for job in list(self._jobs.values()) for i in job.ids]
                try:
                    await self.store.queue.extend(ids, self.node, time.time() + lease)
                except Exception:  # a failed renewal only risks a re-delivery
                    log.exception("event=lease_renewal_failed count=%d", len(ids))
            renew_at = time.monotonic() + lease / 3
