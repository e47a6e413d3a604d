"""Wiring only: open the store, start listeners, both delivery workers and the HTTP side on one
loop; handle signals; drain. The only module that knows all the others."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from helo_smtp import config as config_mod
from helo_smtp.config import Config
from helo_smtp.models import MailType
from helo_smtp.ports import CommittedHook
from helo_smtp.runtime import metrics
from helo_smtp.runtime.node import NodeClaim, NodeInUse, give_back
from helo_smtp.store import Store, lifetimes, retention

log = logging.getLogger("helo_smtp.daemon")


def node_id(cfg: Config) -> str:
    """Lease owner name; stable across restarts so a restarted node frees its own leases."""
    return cfg.server.node_id or socket.gethostname()


class Relay:
    """The relay's listeners, HTTP side and delivery workers on one loop. ``await start()``,
    then ``await stop()``. ``deliver=False``: no workers (``serve`` delivers from a child
    process, inbound tests read the queue as left); ``accept=False``: workers only (that
    child, ``deliverer.py``). ``exclusive``: refuse to start beside a live process with
    our ``node_id`` or on our SQLite file (``serve``; ``runtime/node.py``)."""

    def __init__(self, cfg: Config, store: Store | None = None, deliver: bool = True,
                 accept: bool = True, committed: CommittedHook | None = None,
                 exclusive: bool = False) -> None:
        self.cfg = cfg
        # Told about each message the listeners commit: the delivery process when the workers
        # live there (``DeliveryProcess.hand_over``), else this process's own workers' cache.
        self.committed = committed
        self.deliver = deliver
        self.accept = accept
        self.exclusive = exclusive
        self.node: NodeClaim | None = None  # the heartbeat, in the node's main process
        self.on_node_lost: Callable[[], None] = lambda: None
        # Where wake-ups go when the workers live in another process (DeliveryProcess.wake).
        self.wake_elsewhere: Callable[[MailType], None] | None = None
        self.store = store
        self._own_store = store is None
        self.ports: dict[str, int] = {}
        self.http_port: int | None = None
        self.inbound: Any = None
        self.workers: dict[MailType, Any] = {}
        self.http: Any = None
        self.resolver: Any = None  # outbound/routing.RoutedResolver, shared by both workers
        self.dev_inbox: Any = None  # the dev inbox's sink, in the process that delivers
        self.api: Any = None
        self.api_port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.stopped = asyncio.Event()
        self._quitting = threading.Event()  # tells a retention pass in its thread to stop

    async def start(self) -> None:
        from helo_smtp.inbound.listener import InboundServer
        from helo_smtp.outbound import routing
        from helo_smtp.outbound.dkim import install_fast_paths
        from helo_smtp.outbound.mx import MXResolver
        from helo_smtp.outbound.worker import Worker

        if self.store is None:
            self.store = Store.open(self.cfg.server.database, lifetimes(self.cfg))
        self.store.backend.bind_loop(asyncio.get_running_loop())  # writes commit on the loop
        node = node_id(self.cfg)
        if self.accept:  # the node's main process (the delivery child has no name of its own)
            self.node = NodeClaim(self.store, node, self.cfg.delivery.lease_seconds)
            self._claim_node()
        released = self.store.queue.release_node(node)
        self.store.throttle.release_holder(node)  # connection slots of our previous process
        if released:
            log.info("event=leases_released count=%d node=%s", released, node)
        if self.deliver:
            install_fast_paths()  # dkimpy on OpenSSL (outbound/dkim.py)
            mx = MXResolver(self.cfg.dns)
            self.resolver, self.dev_inbox = await routing.start(self.cfg, mx)
            for mt in MailType:
                self.workers[mt] = Worker(mt, self.cfg, self.store, self.resolver, node)
                # alone on this loop (the delivery process): no thread hop per message
                self.workers[mt].inline_load = not self.accept
        if self.accept:
            committed = self.committed
            if committed is None and self.deliver:
                committed = self.store.queue.recent.add
            self.inbound = InboundServer(self.cfg, self.store.submission, self.wake, committed)
            from helo_smtp.bounces.handler import attach

            attach(self.inbound, self.cfg, self.store)  # a mail_type = "bounces" listener
            self.ports = await self.inbound.start()
        self._tasks = [asyncio.create_task(w.run(), name=f"worker-{mt}")
                       for mt, w in self.workers.items()]
        if self.node is not None:
            self._tasks.append(asyncio.create_task(self.node.run(self.on_node_lost),
                                                   name="heartbeat"))
        if self.workers:  # several nodes on PostgreSQL: their enqueues wake our workers too
            self._tasks.append(asyncio.create_task(self.store.queue.listen(self.wake),
                                                   name="queue-notify"))
        if self.workers and self.cfg.retention.interval > 0:  # the delivering process
            self._tasks.append(asyncio.create_task(retention.run_periodically(
                self.store.retention, self.cfg.retention, self._quitting.is_set), name="retention"))
        if self.accept:
            from helo_smtp.events import retention as event_tasks

            self._tasks += event_tasks.start(self.cfg, self.store)  # webhooks, event purge
            await self._start_http()
            await self._start_api()
            metrics.register_queue(self.store.queue.depth_by_type)

    def _claim_node(self) -> None:
        assert self.node is not None and self.store is not None
        try:
            self.node.take(exclusive=self.exclusive)
        except NodeInUse:
            if self._own_store:
                self.store.close()
            raise

    async def _start_http(self) -> None:
        if not self.cfg.http.listen:
            return
        try:
            from helo_smtp.http.app import HTTPServer
        except ImportError:  # the HTTP side is optional in a stripped-down install
            return
        self.http = HTTPServer(self.cfg, self.store)
        self.http_port = await self.http.start()

    async def _start_api(self) -> None:
        """The HTTP send API on the SMTP door's submission core (``helo_smtp/submit``)."""
        if not self.cfg.api.listen or self.inbound is None or self.store is None:
            return
        from helo_smtp.api.app import APIServer
        from helo_smtp.api.keys import KeyCheck
        from helo_smtp.api.send import Sender
        from helo_smtp.inbound.tls import server_context

        api = self.cfg.api
        keys = KeyCheck(self.store.api_keys, self.store.backend.reads_on_loop,
                        api.auth_failures_per_ip, api.auth_failure_window)
        sender = Sender(self.inbound.handler.core, self.cfg.server.hostname, api.tls)
        ctx = server_context(self.cfg.tls) if api.tls else None
        self.api = APIServer(self.cfg, keys, sender, ctx)
        self.api_port = await self.api.start()

    def wake(self, mail_type: MailType) -> None:
        if self.wake_elsewhere is not None:
            self.wake_elsewhere(mail_type)
        worker = self.workers.get(mail_type)
        if worker is not None:
            worker.wake()

    def reload(self) -> None:
        """SIGHUP: credentials, channels, suppressions and every setting but those of
        ``runtime.reloadplan.RESTART_ONLY``, which are named in ``event=reload_partial``."""
        from helo_smtp.runtime import reloadplan

        try:
            new = config_mod.load(self.cfg.source) if self.cfg.source else self.cfg
        except Exception as exc:  # noqa: BLE001 - a bad file keeps the running config
            log.error("event=reload_failed error=%s", exc)
            return
        from helo_smtp.outbound import nexthop

        problems = nexthop.check(new)
        if problems:
            log.error("event=reload_failed error=%s", "; ".join(problems))
            return
        kept = reloadplan.restart_needed(self.cfg, new)
        if kept:
            log.warning("event=reload_partial restart_needed=%s msg=these settings keep their "
                        "old value until the next start", ",".join(kept))
        applied = [k for k in reloadplan.changed(self.cfg, new) if k not in kept]
        if new.logging != self.cfg.logging:
            self._reload_logging(new)
        self.cfg = new
        if self.store is not None:  # expiry of mail accepted from now on
            self.store.queue.lifetimes.update(lifetimes(new))
        if self.inbound is not None:
            self.inbound.reload(new)
        if self.resolver is not None:
            self.resolver.reload(new)
        for w in self.workers.values():
            w.reload(new)
        log.info("event=reloaded changed=%s", ",".join(applied) or "-")

    @staticmethod
    def _reload_logging(new: Config) -> None:
        try:
            from helo_smtp.runtime import logs
        except ImportError:
            return
        logs.setup(new.logging)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new sessions, let sessions and deliveries finish, release the rest."""
        grace = self.cfg.server.shutdown_grace if grace is None else grace
        self._quitting.set()
        if self.inbound is not None:
            self.inbound.stop_accepting()
        await asyncio.gather(
            *(w.stop(grace) for w in self.workers.values()),
            self.inbound.drain(grace) if self.inbound is not None else asyncio.sleep(0),
            self.api.stop() if self.api is not None else asyncio.sleep(0))
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        if self.dev_inbox is not None:
            await self.dev_inbox.close()
        if self.node is not None:
            self.node.leave()
        if self.store is not None:
            metrics.unregister_queue(self.store.queue.depth_by_type)
            self.store.backend.unbind_loop()
        if self._own_store and self.store is not None:
            self.store.close()
        self.stopped.set()


async def serve(cfg: Config, on_started: Callable[[Config], None] | None = None) -> None:
    """``helo-smtp serve``: run until SIGTERM/SIGINT, reload on SIGHUP. ``on_started`` runs
    once everything is listening, before READY=1 (the dev bootstrap)."""
    from helo_smtp.runtime import sdnotify

    # Over RLIMIT_FSIZE a write must fail with EFBIG (the store answers 452 4.3.1), not kill
    # the relay with SIGXFSZ. CPython ignores it at start already; say so where it matters.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    relay, child = await _start(cfg)
    done = asyncio.Event()
    relay.on_node_lost = done.set
    # Everything built so far (modules, config, caches) lives as long as the process: move it
    # out of the collector's generations so a full collection scans only what sessions and
    # deliveries allocate, and a GC pause never stalls the loop for tens of milliseconds.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(relay, child))
    if on_started is not None:
        on_started(cfg)
    sdnotify.ready(relay)
    watchdog = asyncio.create_task(sdnotify.watchdog_loop(relay))
    ports = ",".join(f"{name}:{port}" for name, port in relay.ports.items())
    log.info("event=started pid=%d ports=%s http_port=%s", os.getpid(), ports, relay.http_port)
    await done.wait()
    sdnotify.notify("STOPPING=1")
    log.info("event=stopping")
    watchdog.cancel()
    if child is None:
        await relay.stop()
    else:  # both sides drain at once, as the workers and listeners do in one process
        await asyncio.gather(relay.stop(), child.stop(relay.cfg.server.shutdown_grace))
    log.info("event=stopped")


async def _start(cfg: Config) -> tuple[Relay, Any]:
    """The relay, and with ``server.delivery_process`` its delivery child (started after the
    parent has opened and migrated the store)."""
    if not cfg.server.delivery_process:
        relay = Relay(cfg, exclusive=True)
        await relay.start()
        return relay, None
    from helo_smtp.runtime.deliverer import DeliveryProcess

    child = DeliveryProcess(cfg)
    # just-committed bytes go to the deliverer
    relay = Relay(cfg, deliver=False, committed=child.hand_over, exclusive=True)
    relay.wake_elsewhere = child.wake
    await relay.start()
    assert relay.store is not None
    child.on_exit = lambda: give_back(relay.store, node_id(cfg))
    await child.start()
    return relay, child


def _reload(relay: Relay, child: Any) -> None:
    relay.reload()
    if child is not None:
        child.reload()
