"""A broadcast backlog draining: delivery-process CPU, WAL growth and transactional latency.

    .venv/bin/python -m bench.drain --messages 100000 --seconds 30 --pacing on
    .venv/bin/python -m bench.drain --messages 100000 --seconds 60 --pacing off

helo-smtp starts (``helo-smtp serve``, two processes) on a store bulk-filled with ``messages``
broadcast messages of 4 KiB, one recipient each, all due now at one destination domain whose
``smtp-sink`` accepts everything. ``--pacing on`` keeps the broadcast pool's defaults (50 msg/s,
5 msg/s per domain, 50 connections, 5 per domain); ``off`` is the main benchmark's unpaced pool
(bench/env.py). After ``--warmup`` seconds it measures, over ``--seconds``:

* CPU seconds of the delivery process (the child of ``serve``) and of the listener process;
* the size of the SQLite WAL file at the start and at the end of the window, and its peak;
* broadcast messages the sink received;
* transactional probes (every ``--probe-interval`` s on the submission port, to an aiosmtpd sink
  that stamps arrival): submit-to-delivered latency, p50 / p99 / max.

It prints one JSON object; with ``--into FILE --label NAME`` it also stores it in FILE (a JSON
object of runs by label, ``bench/results/drain.json``), which ``python -m bench --report``
renders into docs/benchmarks.md (``bench/report_drain.py``).

Run it from a checkout: the relay runs the code of the checkout the script is in
(bench/helo.py puts that on PYTHONPATH), so the same command measures another branch from a
second checkout. Needs root for smtp-sink's -u (as bench/run.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import procs, queuefill
from bench.client import Probe
from bench.env import BC_DOMAIN, TX_DOMAIN, Env
from bench.helo import SENDER, to_toml
from bench.sinks import CSink, StampSink

PACED = {"pools": {"broadcast": {"rate": 50.0, "per_domain_rate": 5.0, "max_connections": 50,
                                 "per_domain_connections": 5}}}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--pacing", choices=("on", "off"), default="on")
    p.add_argument("--probes", choices=("on", "off"), default="on")
    p.add_argument("--keep", action="store_true", help="keep the work directory (relay log)")
    p.add_argument("--into", default="", help="store the result in this JSON file, by label")
    p.add_argument("--label", default="", help="the result's name in --into (e.g. main-paced)")
    p.add_argument("--probe-interval", type=float, default=0.25,
                   help="seconds between transactional probes (one session)")
    return p.parse_args(argv)


class WalWatch:
    """Samples the WAL file's size every 0.2 s (its peak, not only the two ends)."""

    def __init__(self, path: str) -> None:
        self.path, self.peak, self._stop = path + "-wal", 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.size())

    def start(self) -> WalWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _wait_delivering(relay: Any, timeout: float) -> None:
    """Until the delivery process says it has started (its start-up is not the drain)."""
    end = time.monotonic() + timeout
    while "event=delivery_started" not in relay.log_tail(1_000_000):
        if time.monotonic() > end:
            raise RuntimeError(f"no delivery process: {relay.log_tail()}")
        time.sleep(0.2)


def _delivery_pid(serve_pid: int) -> int | None:
    kids = procs.children(serve_pid)
    return kids[0] if kids else None


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def _probe_for(probe: Probe | None, seconds: float) -> None:
    if probe is None:
        await asyncio.sleep(seconds)
        return
    stop = asyncio.Event()
    task = asyncio.create_task(probe.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = Env(keep=args.keep).start()
    try:
        lay = env.layout
        stamps = env.track(StampSink(lay.tx_ip, env.sink_port).start())
        sink = env.track(CSink(lay.bc_ip, env.sink_port).start())
        relay = env.helo("helo-drain", start=False)
        if args.pacing == "on":
            relay.overrides = PACED
            (relay.root / "helo.toml").write_text(to_toml(relay.config()))
        fill_s = queuefill.fill_backlog(relay.db_path, args.messages, BC_DOMAIN)
        relay.start()
        _wait_delivering(relay, 120.0)
        time.sleep(args.warmup)
        serve_pid = relay.pid
        assert serve_pid is not None
        child = _delivery_pid(serve_pid)
        wal = WalWatch(relay.db_path).start()
        probe = (Probe(relay.target(), SENDER, f"probe@{TX_DOMAIN}",
                       interval=args.probe_interval) if args.probes == "on" else None)
        cpu0 = {"delivery": procs.cpu_seconds(child) if child else 0.0,
                "listener": procs.cpu_seconds(serve_pid)}
        wal0, got0, t0 = wal.size(), sink.count, time.time()
        asyncio.run(_probe_for(probe, args.seconds))
        elapsed = time.time() - t0
        cpu1 = {"delivery": procs.cpu_seconds(child) if child else 0.0,
                "listener": procs.cpu_seconds(serve_pid)}
        wal1, got1 = wal.size(), sink.count
        time.sleep(3.0)  # the last probes arrive
        wal.stop()
        lat = []
        if probe is not None:
            lat = [stamps.received[t] - s for t, s in probe.submitted.items()
                   if t in stamps.received]
        return {
            "messages": args.messages, "pacing": args.pacing, "seconds": elapsed,
            "fill_seconds": fill_s, "checkout": str(Path(__file__).resolve().parent.parent),
            "cpu_seconds": {k: cpu1[k] - cpu0[k] for k in cpu0},
            "cpu_share": {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0},
            "wal_bytes": {"start": wal0, "end": wal1, "growth": wal1 - wal0,
                          "peak": max(wal.peak, wal1)},
            "bc_delivered": got1 - got0,
            "probes": {"sent": len(probe.submitted) if probe else 0, "delivered": len(lat),
                       "errors": dict(probe.errors) if probe else {},
                       "p50_ms": _ms(statistics.median(lat) if lat else None),
                       "p99_ms": _ms(_pct(lat, 0.99)), "max_ms": _ms(max(lat, default=None)),
                       "slowest_ms": [_ms(v) for v in sorted(lat)[-5:]]},
            "workdir": str(env.workdir) if args.keep else "",
            "load_before": os.getloadavg(),
        }
    finally:
        env.close()


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def store(path: str, label: str, result: dict[str, Any]) -> None:
    """Add ``result`` to the runs in ``path`` under ``label`` (the other runs are kept)."""
    p = Path(path)
    data = json.loads(p.read_text()) if p.exists() else {"runs": {}}
    data["runs"][label] = result
    p.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = run(args)
    result["command"] = "python -m bench.drain " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])
    print(json.dumps(result, indent=1))
    if args.into:
        store(args.into, args.label or args.pacing, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
