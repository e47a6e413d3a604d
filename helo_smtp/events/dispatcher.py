"""The webhook dispatcher: drains the outbox (``webhook_deliveries``) in its own task.

It runs on the accepting process's loop, never in the delivery workers, and only reads and
writes its own rows: a slow or dead receiver cannot delay mail. Each endpoint has a
concurrency cap (``max_concurrency``): the dispatcher claims at most as many of its due rows
as it has room for (``PREFETCH`` times the cap), and runs at most ``max_concurrency`` POST
loops for it; so one slow receiver neither starves others nor holds many leases.

At-least-once: a row stays ``pending`` until an outcome is recorded after the POST. A claim
moves the row's due time past a lease (``LEASE_EXTRA`` + the POST timeout); if the process is
killed mid-flight, the row comes due again by itself after a restart. A receiver can see an
event twice (after such a crash); ``X-Helo-Event-Id`` lets it drop the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict, deque
from typing import Any

import aiohttp

from helo_smtp.config import Config
from helo_smtp.events import policy, signing, ssrf
from helo_smtp.events.payload import body, public_event
from helo_smtp.events.resolver import GuardedResolver
from helo_smtp.store import Store
from helo_smtp.store.webhooks import Endpoint

log = logging.getLogger("helo_smtp.webhooks")

LEASE_EXTRA = 60.0
ENDPOINTS_TTL = 2.0  # seconds the list of enabled endpoints is reused
PREFETCH = 4  # rows claimed per endpoint: this many times its concurrency cap, at most
USER_AGENT = "helo-smtp-webhooks/1"


class Dispatcher:
    def __init__(self, cfg: Config, store: Store, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.rng = rng or random.Random()
        self.inflight: Counter[str] = Counter()  # POSTs in flight per endpoint
        self._workers: Counter[str] = Counter()
        self._queues: defaultdict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self._stopped: set[str] = set()  # endpoints disabled by this process
        self._tasks: set[asyncio.Task[None]] = set()
        self._kick = asyncio.Event()
        self._endpoints: list[Endpoint] = []
        self._endpoints_at = 0.0
        self.http: aiohttp.ClientSession | None = None
        self._failing: set[str] = set()  # endpoints with a failure recorded by this process

    async def run(self) -> None:
        wc = self.cfg.webhooks
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.cfg.dns, wc.allow_private), use_dns_cache=False,
            limit=0)
        timeout = aiohttp.ClientTimeout(total=wc.timeout_seconds)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                         headers={"User-Agent": USER_AGENT}) as http:
            self.http = http
            try:
                while True:
                    try:
                        await self._tick()
                    except Exception:  # the store is away: try again next round
                        log.exception("event=webhook_tick_failed")
                    self._kick.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._kick.wait(), wc.poll_seconds)
            finally:
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def kick(self) -> None:
        self._kick.set()

    async def _enabled(self) -> list[Endpoint]:
        now = time.monotonic()
        if now - self._endpoints_at > ENDPOINTS_TTL:
            self._endpoints = await asyncio.to_thread(self.store.webhooks.list, None, True)
            self._endpoints_at = now
            self._stopped -= {ep.id for ep in self._endpoints}  # enabled again (CLI)
        return self._endpoints

    async def _tick(self) -> None:
        lease = self.cfg.webhooks.timeout_seconds + LEASE_EXTRA
        for ep in await self._enabled():
            q = self._queues[ep.id]
            room = ep.max_concurrency * PREFETCH - len(q) - self.inflight[ep.id]
            if len(q) < ep.max_concurrency and room > 0:
                q.extend(await self.store.webhooks.claim(ep.id, room, lease, time.time()))
            while q and self._workers[ep.id] < ep.max_concurrency:
                self._workers[ep.id] += 1
                self._track(self._work(ep, q))

    def _track(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, ep: Endpoint, q: deque[dict[str, Any]]) -> None:
        """One of at most ``max_concurrency`` POST loops of an endpoint. The outcome is
        recorded in the background: the next POST does not wait for its fsync."""
        try:
            while q and ep.id not in self._stopped:
                row = q.popleft()
                self.inflight[ep.id] += 1
                try:
                    code, error = await self.post(ep, public_event(row))
                finally:
                    self.inflight[ep.id] -= 1
                self._track(self._record_logged(ep, row, code, error))
        finally:
            self._workers[ep.id] -= 1
            self._kick.set()  # refill the queue

    async def _record_logged(self, ep: Endpoint, row: dict[str, Any], code: int | None,
                             error: str) -> None:
        try:
            await self._record(ep, row, code, error)
        except Exception:  # not recorded: the lease lapses and it is sent again
            log.exception("event=webhook_record_failed delivery=%s", row["delivery_id"])

    async def post(self, ep: Endpoint, event: dict[str, Any]) -> tuple[int | None, str]:
        """POST one event; (HTTP status or None, error text)."""
        assert self.http is not None
        reason = ssrf.check_url(ep.url, self.cfg.webhooks.allow_private)
        if reason:
            return None, f"blocked: {reason}"
        data = body(event)
        headers = {"Content-Type": "application/json", signing.EVENT_ID_HEADER: event["id"],
                   signing.HEADER: signing.sign(ep.secrets, data)}
        try:
            async with self.http.post(ep.url, data=data, headers=headers,
                                      allow_redirects=False) as resp:
                await resp.content.read(4096)  # a little of the body; the rest is dropped
                return resp.status, "" if resp.status < 300 else resp.reason or ""
        except TimeoutError:
            return None, "timeout"
        except aiohttp.ClientError as exc:
            if ssrf.blocked(exc):
                return None, "blocked: resolves only to non-public addresses"
            return None, type(exc).__name__
        except (ValueError, UnicodeError) as exc:  # a URL aiohttp cannot use: no retry helps
            return None, f"blocked: bad URL ({type(exc).__name__})"
        except OSError as exc:  # below aiohttp's own wrapping: a passing network failure
            return None, type(exc).__name__

    async def _record(self, ep: Endpoint, row: dict[str, Any], code: int | None, error: str
                      ) -> None:
        wc, now = self.cfg.webhooks, time.time()
        v = policy.verdict(code)
        if error.startswith("blocked:"):
            v = policy.Verdict.FAIL
        state, due = "failed", now
        if v == policy.Verdict.DELIVERED:
            state = "delivered"
        elif v == policy.Verdict.RETRY:
            nxt = policy.retry_at(row["attempts"] + 1, row["queued_at"], now,
                                  wc.first_retry_seconds, wc.retry_for_seconds, self.rng.random)
            if nxt is not None:
                state, due = "pending", nxt
            else:
                error = f"gave up after {wc.retry_for_seconds:.0f} s: {error or code}"
        await self.store.webhooks.finish(row["delivery_id"], state, due, code, error, now)
        log.info("event=webhook_attempt endpoint=%s event_id=%s code=%s state=%s error=%s",
                 ep.id, row["uid"], code, state, error or "-")
        ok = state == "delivered"
        if ok and ep.failing_since is None and ep.id not in self._failing:
            return  # the common case: no streak to end, no write
        (self._failing.discard if ok else self._failing.add)(ep.id)
        gone = "410 Gone" if v == policy.Verdict.GONE else ""
        if await self.store.webhooks.endpoint_health(ep.id, ok, now, wc.retry_for_seconds,
                                                     gone):
            self._endpoints_at = 0.0  # stop claiming for it at once
            self._stopped.add(ep.id)
            self._queues.pop(ep.id, None)  # claimed rows come due again after their lease
            log.warning("event=webhook_endpoint_disabled endpoint=%s reason=%s", ep.id,
                        gone or "failing")
