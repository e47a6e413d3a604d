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
from dataclasses import dataclass, field

from helo_smtp import metrics
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
from helo_smtp.outbound.connections import ConnectionCache, SourceAddresses
from helo_smtp.outbound.delivery import Attempt, Envelope, Settled, Transport
from helo_smtp.outbound.dkim import Signer
from helo_smtp.outbound.mx import MXResolver
from helo_smtp.outbound.outcome import Action, local
from helo_smtp.outbound.pacing import ConnectionCaps, Pacer
from helo_smtp.outbound.returnpath import ReturnPath
from helo_smtp.outbound.session import Connection, SessionParams, TLSMode, tls_contexts
from helo_smtp.store import Store
from helo_smtp.tracking import needs_personalization, personalize, tracking_secret

log = logging.getLogger("helo_smtp.delivery")

MAX_SLEEP = 5.0  # poll at least this often (leases of other nodes lapse silently)
TICK = 1.0  # housekeeping period: idle connections, lease renewal
FIRST_GUESS = 0.5  # seconds a delivery to an unknown domain is assumed to take
MIN_BACKLOG_DELAY, MAX_BACKLOG_DELAY = 0.1, 30.0
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


def session_params(cfg: Config, mail_type: MailType) -> SessionParams:
    d = cfg.delivery
    return SessionParams(d.port, cfg.pool(mail_type).helo_name or cfg.server.hostname,
                         d.connect_timeout, d.command_timeout, d.data_timeout)


class Worker:
    """Delivers one mail type (see the module text). Interface used by ``daemon.Relay``."""

    def __init__(self, mail_type: MailType, cfg: Config, store: Store, resolver: MXResolver,
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
        self.transport = Transport(session_params(cfg, mail_type),
                                   tls_contexts(cfg.delivery.tls_ca_file), self.caps,
                                   self.cache, SourceAddresses(pool.source_addresses))
        self.signer = Signer(store.domains)
        self._secret: bytes | None = None
        self.return_path = ReturnPath(cfg.bounces, store.settings)
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
        self.return_path.cfg = cfg.bounces
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

    @property
    def _shared(self) -> bool:
        """Several nodes share the database: pacing and connection caps live in the store
        (``store.throttle``) so the pool's limits hold for the whole cluster, not per node."""
        return getattr(self.store.db, "dialect", "sqlite") == "postgresql"

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
            pool = self.cfg.pool(self.mail_type)
            return await self.store.throttle.take(
                self.mail_type.value, job.domain, self._transactions(job), pool_rate=pool.rate,
                domain_rate=self.pacer.domain_rate(job.domain))
        return self.pacer.delay(job.domain, self._transactions(job))

    def _personalized(self) -> bool:
        """Broadcast mail gets its own List-Unsubscribe per recipient when the HTTP side is
        public, so each recipient is its own transaction."""
        return self.mail_type == MailType.BROADCAST and bool(self.cfg.http.public_url)

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

    # ---- one delivery ------------------------------------------------------------------
    async def _deliver(self, job: Job) -> None:
        recorded = False
        try:
            await self.caps.acquire(job.domain)
            slot = await self._cluster_slot(job.domain)
            if slot is None:  # every node together holds the domain's cap: come back later
                self.caps.release(job.domain)
                await self.store.queue.release(job.ids, time.time() + CLUSTER_BUSY_DELAY)
                recorded = True
                return
            try:
                if self._stopping:
                    return
                job.started = True
                began = time.monotonic()
                settled = await self._attempt(job)
                self._timed(job.domain, time.monotonic() - began)
            finally:
                self.caps.release(job.domain)
                await self._free_slot(job.domain, slot)
            await self._record(job.rows, self._results(job, settled))
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

    async def _cluster_slot(self, domain: str) -> int | None:
        """A per-domain connection slot shared by every node (-1: no shared cap here).

        The slot's lease outlives the longest delivery (``total_deadline``), so it needs no
        renewal; a node that dies holding it frees it when the lease lapses.
        """
        cap = self.cfg.pool(self.mail_type).per_domain_connections
        if not self._shared or cap <= 0:
            return -1
        lease = self.cfg.delivery.total_deadline + 30.0
        return await self.store.throttle.acquire_slot(self.mail_type.value, domain, cap,
                                                      self.node, lease)

    async def _free_slot(self, domain: str, slot: int | None) -> None:
        if slot is not None and slot >= 0:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.throttle.release_slot(
                    self.mail_type.value, domain, slot, self.node))

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
        if not (self.inline_load and self.store.db.reads_on_loop):
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
            envs = [Envelope(msg.sender, [(r.id, r.address) for r in rows], signed)]
        else:
            envs = await asyncio.to_thread(self._personalize, msg, rows,
                                           self._tracking_secret())
        return self.return_path.apply(envs)  # HOOK (VERP): MAIL FROM per recipient

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

    # ---- housekeeping ------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        """Close idle connections past their time; renew the leases of rows in flight."""
        renew_at = time.monotonic() + self.cfg.delivery.lease_seconds / 3
        while True:
            await asyncio.sleep(min(TICK, self.cfg.delivery.lease_seconds / 3))
            await self._quit_idle(self.cache.expired())
            if time.monotonic() >= renew_at and self._jobs:
                lease = self.cfg.delivery.lease_seconds
                ids = [i for job in list(self._jobs.values()) for i in job.ids]
                try:
                    await self.store.queue.extend(ids, self.node, time.time() + lease)
                except Exception:  # a failed renewal only risks a re-delivery
                    log.exception("event=lease_renewal_failed count=%d", len(ids))
                renew_at = time.monotonic() + lease / 3
