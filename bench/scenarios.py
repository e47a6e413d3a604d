"""The measurements. Each returns plain data (dicts of numbers) for the report.

* ``accept_run``: N concurrent clients submit 4 KiB transactional messages for a fixed time (or
  count); accept rate = 250s / wall time. Then it waits for the sink to have them all:
  end-to-end rate = messages / (last receipt at the sink - first submit).
* ``source_ceiling``: smtp-source -> smtp-sink, both C, no TLS: what loopback SMTP costs here.
* ``client_ceiling``: the load client against a bare aiosmtpd sink with the same TLS + AUTH.
* ``isolation_and_memory``: 100k broadcast messages submitted while the broadcast destination
  answers 451 (peak RSS with them all queued and undeliverable), then the destination turns
  slow-but-accepting, every deferred message is made due, and transactional probes (1/s) measure
  submit-to-delivered latency while the broadcast backlog drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import machine, procs
from bench.client import Probe, Target, run_load
from bench.env import BC_DOMAIN, TX_DOMAIN, Env, Relay, bc_message, tx_message
from bench.helo import SENDER
from bench.postfix import _tool
from bench.sinks import AioCeilingSink, CSink, StampSink

Log = Callable[[str], None]


class Meter:
    """CPU accounting across one measured span: machine steal / busy / foreign share."""

    def __init__(self) -> None:
        self.a = machine.sample()
        self.own_a = procs.own_cpu()

    def done(self, *relays: Relay) -> dict[str, float]:
        b = machine.sample()
        own = procs.own_cpu() - self.own_a + sum(r.cpu_seconds() for r in relays)
        return machine.usage(self.a, b, own)


def accept_run(relay: Relay, sink: CSink, *, persistent: bool, duration: float | None = None,
               count: int | None = None, concurrency: int = 20,
               drain_timeout: float = 120.0) -> dict[str, Any]:
    """Accept rate over the run; end-to-end rate once the sink has every accepted message."""
    before = sink.count
    cpu0 = relay.cpu_seconds()
    own0, m0 = procs.own_cpu(), machine.sample()
    res = asyncio.run(run_load(relay.target(), tx_message, persistent=persistent,
                               duration=duration, count=count, concurrency=concurrency))
    relay_cpu = relay.cpu_seconds() - cpu0
    cpu = machine.usage(m0, machine.sample(), procs.own_cpu() - own0 + relay_cpu)
    delivered = sink.wait_count(before + res.acked, drain_timeout)
    last = sink.time_of(before + res.acked) if delivered else None
    return {
        "acked": res.acked, "errors": dict(res.errors), "elapsed": res.elapsed,
        "accept_rate": res.rate, "relay_cpu_s": relay_cpu,
        "msgs_per_relay_cpu_s": res.acked / relay_cpu if relay_cpu else None,
        "received": sink.count - before, "all_delivered": delivered,
        "e2e_seconds": (last - res.started) if last else None,
        "e2e_rate": res.acked / (last - res.started) if last else None,
        **cpu,
    }


def source_ceiling(env: Env, sink: CSink, *, persistent: bool, count: int,
                   concurrency: int = 20) -> dict[str, Any]:
    """smtp-source -> smtp-sink: 4 KiB bodies, ``concurrency`` sessions, no TLS, no AUTH."""
    cmd = [_tool("smtp-source"), "-s", str(concurrency), "-m", str(count), "-l", "4096",
           "-f", SENDER, "-t", f"ceiling@{TX_DOMAIN}"]
    if persistent:
        cmd.append("-d")  # don't disconnect after each message
    cmd.append(f"{env.layout.tx_ip}:{env.sink_port}")
    before = sink.count
    m = Meter()
    t0 = time.time()
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    elapsed = time.time() - t0
    sink.wait_count(before + count, 10)
    return {"sent": count, "received": sink.count - before, "elapsed": elapsed,
            "rate": count / elapsed, **m.done()}


def client_ceiling(env: Env, *, persistent: bool, duration: float | None = None,
                   count: int | None = None, concurrency: int = 20) -> dict[str, Any]:
    """The load client against a bare aiosmtpd sink (STARTTLS + AUTH, 250 at once)."""
    port = procs.free_port([env.layout.ceiling_ip])
    sink = AioCeilingSink(env.layout.ceiling_ip, port, env.cert).start()
    try:
        m = Meter()
        res = asyncio.run(run_load(Target(env.layout.ceiling_ip, port, "bench", "bench"),
                                   tx_message, persistent=persistent, duration=duration,
                                   count=count, concurrency=concurrency))
        sink_cpu = procs.cpu_seconds(sink.pid) if sink.pid else 0.0
        return {"acked": res.acked, "errors": dict(res.errors), "elapsed": res.elapsed,
                "rate": res.rate, "sink_cpu_s": sink_cpu, **m.done()}
    finally:
        sink.stop()


class Sampler:
    """Samples a relay's RSS (and queue depth, less often) in a thread."""

    def __init__(self, relay: Relay, every: float = 0.5, queue_every: float = 5.0) -> None:
        self.relay, self.every, self.queue_every = relay, every, queue_every
        self.rss: list[tuple[float, int]] = []  # RSS (helo-smtp) or summed PSS (Postfix)
        self.depth: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _run(self) -> None:
        last_q = 0.0
        while not self._stop.is_set():
            now = time.time()
            self.rss.append((now, self.relay.rss_bytes()))
            if now - last_q >= self.queue_every:
                with contextlib.suppress(Exception):
                    self.depth.append((now, self.relay.queued()))
                last_q = now
            self._stop.wait(self.every)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    @property
    def peak(self) -> int:
        return max((r for _, r in self.rss), default=0)


async def _with_probe(probe: Probe, work: Any) -> Any:
    stop = asyncio.Event()
    task = asyncio.create_task(probe.run(stop))
    try:
        return await work
    finally:
        stop.set()
        await task


def _wait(cond: Callable[[], bool], timeout: float, every: float = 2.0) -> bool:
    """Poll ``cond`` (often at first, then every ``every`` s: counting 100k queue files costs)."""
    start = time.monotonic()
    while not cond():
        waited = time.monotonic() - start
        if waited > timeout:
            return False
        time.sleep(min(every, 0.25 + waited / 4))
    return True


def isolation_and_memory(env: Env, make_relay: Callable[[], Relay], *, messages: int,
                         drain_seconds: float, slow_delay: int, log: Log,
                         settle_timeout: float = 600.0) -> dict[str, Any]:
    """See the module docstring. Returns memory, fill and latency data for one relay."""
    lay = env.layout
    stamps = env.track(StampSink(lay.tx_ip, env.sink_port).start())
    bc_sink = env.track(CSink(lay.bc_ip, env.sink_port, "-r", "rcpt", "-b",
                              "451 4.3.0 Try again later").start())
    relay = make_relay()
    sampler = Sampler(relay).start()
    probe = Probe(relay.target(), SENDER, f"probe@{TX_DOMAIN}")
    try:
        m = Meter()
        t0 = time.time()
        res = asyncio.run(_with_probe(probe, run_load(
            relay.bc_target(), bc_message, persistent=True, count=messages)))
        fill_elapsed = time.time() - t0
        log(f"  filled {res.acked}/{messages} in {fill_elapsed:.0f} s, errors {dict(res.errors)}")
        settled = _wait(lambda: relay.settled(res.acked), settle_timeout)
        settle_elapsed = time.time() - t0 - fill_elapsed
        fill_cpu = m.done(relay)
        mem = {"peak_rss": sampler.peak, "rss_after": relay.rss_bytes(),
               "peak_rss_hwm": getattr(relay, "peak_rss_bytes", lambda: None)(),
               "queued": relay.queued(), "settled": settled}
        log(f"  all tried once: {settled} after {settle_elapsed:.0f} s more;"
            f" peak RSS {sampler.peak / 2**20:.0f} MiB")
        fill_end = time.time()
        drain = _drain(env, relay, probe, bc_sink, drain_seconds, slow_delay)
        return {"fill": {**res.as_dict(), "settle_seconds": settle_elapsed, **fill_cpu},
                "memory": mem, "rss_series": sampler.rss, "depth_series": sampler.depth,
                "fill_end": fill_end, "t0": t0, **drain,
                "probes": _latencies(probe, stamps.received, t0)}
    finally:
        sampler.stop()
        relay.stop()
        stamps.stop()


def helo_memory(env: Env, *, messages: int, seconds: float, log: Log) -> dict[str, Any]:
    """helo-smtp started on a store already holding ``messages`` undeliverable broadcast
    messages (4 KiB, bulk-filled: accepting 100k through SMTP takes longer than the whole run
    may), the destination answering 451: RSS while it works through them for ``seconds``."""
    from bench import queuefill

    bc_sink = env.track(CSink(env.layout.bc_ip, env.sink_port, "-r", "rcpt", "-b",
                              "451 4.3.0 Try again later").start())
    relay = env.helo("helo-mem", start=False)
    fill_s = queuefill.fill_backlog(relay.db_path, messages, BC_DOMAIN)
    log(f"  bulk-filled {messages:,} messages in {fill_s:.0f} s; starting helo-smtp")
    relay.start()
    sampler = Sampler(relay, queue_every=10.0).start()
    try:
        t0 = time.time()
        settled = _wait(lambda: relay.settled(messages), seconds, every=5.0)
        out = {"messages": messages, "fill_seconds": fill_s, "seconds": time.time() - t0,
               "peak_rss": sampler.peak, "peak_rss_hwm": relay.peak_rss_bytes(),
               "rss_after": relay.rss_bytes(), "pss_after": relay.pss_bytes(),
               "attempted": relay.attempted(), "queued": relay.queued(), "settled": settled,
               "rss_series": sampler.rss, "t0": t0}
        log(f"  {out['attempted']:,} tried in {out['seconds']:.0f} s;"
            f" peak RSS {out['peak_rss'] / 2**20:.0f} MiB")
        return out
    finally:
        sampler.stop()
        relay.stop()
        bc_sink.stop()


def _drain(env: Env, relay: Relay, probe: Probe, bc_sink: CSink, seconds: float,
           delay: int) -> dict[str, Any]:
    """Slow accepting broadcast destination, everything due now, probes for ``seconds``."""
    bc_sink.stop()
    slow = env.track(CSink(env.layout.bc_ip, env.sink_port, "-w", str(delay)).start())
    try:
        relay.flush()
        start = time.time()
        m = Meter()
        asyncio.run(_with_probe(probe, asyncio.sleep(seconds)))
        drain_end = time.time()
        cpu = m.done(relay)
        # Let the last probes arrive (they are scored against the deadline anyway).
        _wait(lambda: False, min(10.0, seconds / 4), every=0.5)
        return {"drain_start": start, "drain_end": drain_end,
                "bc_delivered_in_drain": slow.count, "bc_marks": slow.marks[::50],
                "drain_cpu": cpu}
    finally:
        slow.stop()


def _latencies(probe: Probe, received: dict[str, float], t0: float) -> list[dict[str, Any]]:
    out = []
    for tag, sent in sorted(probe.submitted.items(), key=lambda kv: kv[1]):
        got = received.get(tag)
        out.append({"tag": tag, "t": sent - t0, "acked": tag in probe.acked,
                    "latency": (got - sent) if got else None})
    return out


__all__ = ["BC_DOMAIN", "accept_run", "client_ceiling", "isolation_and_memory",
           "source_ceiling"]
