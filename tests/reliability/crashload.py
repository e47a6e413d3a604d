"""Crash under load: rounds of clients submitting while a sink stalls DATA, a SIGKILL of
``helo-smtp serve`` at a random moment, and a restart.

After every kill (the relay is dead, so nothing moves while the store is read):

- every message id a client saw ``250`` for is in the store, each recipient delivered or still
  queued/deferred (lost = acknowledged ids missing or short of a recipient: must be 0);
- ``PRAGMA integrity_check`` says ok, and the accounting invariant holds
  (``tests/support/accounting.py``);

after every restart, no recipient still carries a lease of the dead process (``release_node``
at start frees them: none is stuck until its lease lapses); and at the end, with the sink fast
again, every recipient is delivered and every acknowledged id reached each sink at least once.
A message reaches a sink twice only when a kill cut a DATA whose reply was pending (the
ambiguous end of DATA, RFC 5321 §6.1); duplicates are counted and bounded by the connections
that can be in DATA at a kill.
"""

from __future__ import annotations

import random
import re
import signal
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from helo_smtp.store import Store, lifetimes
from tests.ops.serveproc import ServeProcess
from tests.support.accounting import assert_accounting
from tests.support.configfile import write_config
from tests.support.relay import Tenant, base_config, make_tenant
from tests.support.submit import Submitter
from tests.support.waiting import wait_for

MAX_CONNECTIONS = 3  # per pool: bounds the DATA commands a kill can cut, per domain
LEASE_SECONDS = 30.0
CLIENTS = 3
DATA_STALL = 0.2  # the first MX of example.test answers each DATA this late
RCPTS = ("r{}@example.test", "s{}@other.test")  # mx1 (stalls) and mx3
_MID = re.compile(rb"Message-ID: <([0-9a-f-]+)@relay\.test>", re.IGNORECASE)


@dataclass
class Figures:
    rounds: int = 0
    acknowledged: int = 0
    unacknowledged_stored: int = 0  # DATA cut by the kill, committed all the same
    lost: int = 0
    duplicated: int = 0
    client_errors: int = 0
    pending_at_kills: int = 0  # recipients queued or in flight at the kills, summed
    acked_ids: list[str] = field(default_factory=list)


class Load:
    """``CLIENTS`` threads submitting one message after another until ``stop``."""

    def __init__(self, ports: dict[str, int], tenant: Tenant, ctx: ssl.SSLContext) -> None:
        self.relay = SimpleNamespace(ports=ports, tenant=tenant)
        self.ctx = ctx
        self.acked: list[str] = []
        self.errors = 0
        self._n = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(CLIENTS)]
        for t in self._threads:
            t.start()

    def _next(self) -> int:
        with self._lock:
            self._n += 1
            return self._n

    def _client(self) -> None:
        while not self._stop.is_set():
            try:
                with Submitter(self.relay, self.ctx) as s:
                    while not self._stop.is_set():
                        n = self._next()
                        mid = s.send([a.format(n) for a in RCPTS])
                        with self._lock:
                            self.acked.append(mid)
            except (smtplib.SMTPException, OSError, AssertionError):
                with self._lock:
                    self.errors += 1
                self._stop.wait(0.05)  # the relay is gone: do not spin

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def sink_ids(sink: Any) -> list[str]:
    out = []
    for m in sink.h.messages:
        found = _MID.search(m["data"])
        assert found, m["data"][:300]
        out.append(found.group(1).decode())
    return out


def check_dead_state(store: Store, acked: list[str]) -> int:
    """Checks while the relay is dead; returns the number of acknowledged ids lost."""
    store.db.integrity_check()
    assert_accounting(store)
    lost = 0
    for mid in acked:
        states = [r["state"] for r in store.admin.recipients(mid)]
        if len(states) != len(RCPTS) or not set(states) <= {"queued", "deferred",
                                                             "delivered"}:
            lost += 1
    return lost


def check_no_stale_lease(store: Store, killed_at: float) -> None:
    """After the restart no pending row holds a lease granted by the dead process."""
    stale = [r for r in store.admin.queue_list(limit=1_000_000)
             if r["lease_until"] is not None and r["lease_until"] <= killed_at + LEASE_SECONDS]
    assert stale == [], f"{len(stale)} recipients still leased by the killed process"


def start(path: Path, cwd: Path) -> ServeProcess:
    proc = ServeProcess(path, cwd)
    proc.wait_ready()
    return proc


def kill(proc: ServeProcess) -> None:
    proc.signal(signal.SIGKILL)
    proc.wait(10)
    assert "Traceback" not in proc.output, proc.output[-4000:]


def _config(tmp_path: Path, dns_port: int, mx_port: int, cert: tuple[str, str]) -> Any:
    return base_config(tmp_path, dns_port=dns_port, mx_port=mx_port, cert=cert,
                       server={"node_id": "chaos-node"},
                       delivery={"connect_timeout": 2.0, "command_timeout": 2.0,
                                 "data_timeout": 5.0, "total_deadline": 10.0,
                                 "lease_seconds": LEASE_SECONDS},
                       pools={"transactional": {"max_connections": MAX_CONNECTIONS}})


def _round(path: Path, cwd: Path, store: Store, tenant: Tenant, ctx: ssl.SSLContext,
           delay: float, killed_at: float | None, fig: Figures) -> float:
    """Start, load, kill after ``delay`` seconds, check; returns the moment of the kill."""
    proc = start(path, cwd)
    if killed_at is not None:
        check_no_stale_lease(store, killed_at)
    load = Load(proc.ports, tenant, ctx)
    try:
        time.sleep(delay)  # the random moment of the kill
        killed_at = time.time()
        kill(proc)
    finally:
        load.stop()
        proc.close()
    fig.rounds += 1
    fig.acked_ids += load.acked
    fig.client_errors += load.errors
    fig.lost += check_dead_state(store, fig.acked_ids)
    fig.pending_at_kills += store.queue.pending_count()
    return killed_at


def run_rounds(rounds: int, *, tmp_path: Path, dns_port: int, mx_port: int,
               cert: tuple[str, str], sinks: list[Any], ctx: ssl.SSLContext,
               seed: int) -> Figures:
    rng = random.Random(seed)
    cfg = _config(tmp_path, dns_port, mx_port, cert)
    path = write_config(tmp_path / "relay.toml", cfg)
    store = Store.open(cfg.server.database, lifetimes(cfg))
    fig = Figures()
    try:
        tenant = make_tenant(store)
        sinks[0].h.stall = {"DATA": DATA_STALL}
        killed_at: float | None = None
        for _ in range(rounds):
            killed_at = _round(path, tmp_path, store, tenant, ctx, rng.uniform(0.2, 1.2),
                               killed_at, fig)
        sinks[0].h.stall = {}
        proc = start(path, tmp_path)
        try:
            if killed_at is not None:
                check_no_stale_lease(store, killed_at)
            wait_for(lambda: store.queue.pending_count() == 0, timeout=60 + rounds,
                     what="every recipient delivered after the last restart")
        finally:
            proc.close()
        _final_checks(store, sinks, fig)
    finally:
        store.close()
    return fig


def _final_checks(store: Store, sinks: list[Any], fig: Figures) -> None:
    fig.acknowledged = len(fig.acked_ids)
    stored = {m["id"] for m in store.admin.messages(limit=10_000_000)}
    fig.unacknowledged_stored = len(stored - set(fig.acked_ids))
    assert set(fig.acked_ids) <= stored
    assert len(set(fig.acked_ids)) == len(fig.acked_ids)  # one id per acknowledged message
    for mid in stored:
        assert {r["state"] for r in store.admin.recipients(mid)} == {"delivered"}, mid
    for sink in (sinks[0], sinks[2]):
        ids = sink_ids(sink)
        assert set(ids) == stored  # every stored message arrived, nothing else did
        fig.duplicated += len(ids) - len(set(ids))
    # only a DATA cut by a kill is sent again: at most the pool's connections per kill
    assert fig.duplicated <= fig.rounds * MAX_CONNECTIONS
    counts = store.events.counts()
    assert counts.get("message.received") == len(stored)
    assert counts.get("delivery.delivered") == len(RCPTS) * len(stored)
    assert_accounting(store)
    store.db.integrity_check()
