"""Accept latency while retention purges a large backlog (issue #22).

``python -m bench.retention [--messages 200000] [--seconds 20] [--rate 40] [--write]``

A real ``helo-smtp serve`` (listeners + delivery child, delivering to ``smtp-sink`` through
the local DNS) on a SQLite file that holds ``--messages`` finished messages from 100 days ago,
each with one recipient, one attempt and two events: 5 rows a message, so the default 200,000
messages are 1,000,000 rows (bulk-inserted, bench only). A paced load (``--rate`` messages/s
over ``--sessions`` persistent authenticated sessions, well under the relay's ceiling, so the
latency is the relay's and not a queue in front of it) measures the time from MAIL to the 250
after DATA:

1. idle: ``--seconds`` of load, nothing else running;
2. purge: the same load while a purge process (``drive``: the store's own ``Retention.run``
   with the ``[retention]`` settings, in another process, as the background pass runs in the
   delivery child) drops every body and then every row. The purge is paused and resumed every
   ``--window`` seconds (SIGUSR1 / SIGUSR2, acted on only between two batches, so it never
   holds the write lock while paused), and each latency is booked to the window it started
   in: "purging" and "paused" windows interleave, so the machine's own drift (it is shared)
   falls on both alike;
3. idle again.

Prints one JSON object: p50 / p99 / max per phase and per window kind, the purge's report.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.client import Session, make_message
from bench.env import TX_DOMAIN, Env
from bench.helo import SENDER, to_toml
from bench.report import percentile
from bench.sinks import CSink

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0
ROWS_PER_MESSAGE = 5  # message, recipient, attempt, two events
BODY = b"Subject: old\r\n\r\n" + b"x" * 1024 + b"\r\n"


def fill(path: str, messages: int) -> float:
    """Finished mail from 100 days ago, written straight into the tables; returns seconds."""
    conn = sqlite3.connect(path, isolation_level=None)
    account, channel = conn.execute("SELECT account_id, id FROM channels LIMIT 1").fetchone()
    t0 = time.perf_counter()
    conn.execute("PRAGMA synchronous = OFF")  # bench-only: a fill, not a relay
    conn.execute("BEGIN")
    done = time.time() - 95 * DAY
    for start in range(0, messages, 10_000):
        n = min(10_000, messages - start)
        ids = [str(uuid.uuid4()) for _ in range(n)]
        created = [done - 5 * DAY + (start + i) * 0.001 for i in range(n)]
        conn.executemany(
            "INSERT INTO messages (id, account_id, channel_id, mail_type, sender, subject, size,"
            " raw, status, created_at) VALUES (?, ?, ?, 'transactional', ?, 'old', ?, ?,"
            " 'accepted', ?)",
            [(m, account, channel, SENDER, len(BODY), BODY, c)
             for m, c in zip(ids, created, strict=True)])
        first = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM recipients").fetchone()[0]
        conn.executemany(
            "INSERT INTO recipients (id, message_id, address, domain, mail_type, state,"
            " attempts, next_attempt_at, expires_at, updated_at) VALUES (?, ?, ?, ?,"
            " 'transactional', 'delivered', 1, ?, ?, ?)",
            [(first + i, m, f"old{start + i}@{TX_DOMAIN}", TX_DOMAIN, done, done, done)
             for i, m in enumerate(ids)])
        conn.executemany(
            "INSERT INTO attempts (recipient_id, message_id, at, stage, outcome, code)"
            " VALUES (?, ?, ?, 'data', 'delivered', 250)",
            [(first + i, m, done) for i, m in enumerate(ids)])
        conn.executemany(
            "INSERT INTO events (at, type, message_id, channel_id, data) VALUES (?, ?, ?, ?,"
            " '{}')",
            [(at, t, m, channel) for m, c in zip(ids, created, strict=True)
             for at, t in ((c, "message.received"), (done, "delivery.delivered"))])
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def drive(config: str) -> None:
    """The purge process: one retention pass, paused while SIGUSR1 was the last signal."""
    from helo_smtp import config as config_mod
    from helo_smtp.store import Store

    running = threading.Event()
    running.set()
    signal.signal(signal.SIGUSR1, lambda *_: running.clear())
    signal.signal(signal.SIGUSR2, lambda *_: running.set())
    print("ready", flush=True)  # the signals are handled from here on

    def gate() -> bool:  # called between batches only: no transaction is open here
        while not running.wait(0.05):
            pass
        return False

    cfg = config_mod.load(config)
    store = Store.open(cfg.server.database, check=False)
    try:
        rep = store.retention.run(cfg.retention.body_days, cfg.retention.metadata_days,
                                  batch=cfg.retention.batch_size, pause=cfg.retention.pause,
                                  stop=gate)
    finally:
        store.close()
    print(json.dumps(rep.as_dict()))


async def _session(relay: Any, ctx: Any, every: float, until: Any, out: list[Any],
                   tag: str) -> None:
    s = Session(relay.target(), ctx)
    await s.open()
    n = 0
    next_at = time.monotonic()
    try:
        while not until():
            rcpt = f"{tag}{n}@{TX_DOMAIN}"
            data = make_message(SENDER, rcpt, f"{tag}{n}")
            t0 = time.perf_counter()
            await s.send(SENDER, rcpt, data)
            out.append((t0, time.perf_counter() - t0))
            n += 1
            next_at += every
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await s.close()


async def load(relay: Any, sessions: int, rate: float, until: Any, tag: str
               ) -> list[tuple[float, float]]:
    """Paced submissions until ``until()``; (start, latency) of each transaction."""
    out: list[tuple[float, float]] = []
    ctx = relay.target().context()
    await asyncio.gather(*(_session(relay, ctx, sessions / rate, until, out, f"{tag}{i}x")
                           for i in range(sessions)))
    return out


def _figures(lat: list[tuple[float, float]]) -> dict[str, float]:
    ms = sorted(x * 1000 for _, x in lat)
    return {"count": len(ms), "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(ms[-1], 2) if ms else 0.0}


def _timed(seconds: float) -> Any:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end


def _toggle(proc: subprocess.Popen[str], window: float, windows: list[tuple[float, bool]]
            ) -> None:
    """Resume and pause the purge every ``window`` seconds until it ends."""
    purging = True
    while proc.poll() is None:
        windows.append((time.perf_counter(), purging))
        time.sleep(window)
        purging = not purging
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGUSR2 if purging else signal.SIGUSR1)


def _split(lat: list[tuple[float, float]], windows: list[tuple[float, bool]]
           ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Latencies booked to purging and to paused windows (by the time they started)."""
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    starts = [w[0] for w in windows]
    for t, x in lat:
        i = bisect.bisect_right(starts, t) - 1
        if i >= 0:
            (on if windows[i][1] else off).append((t, x))
    return on, off


def run(messages: int, seconds: float, sessions: int, rate: float, window: float = 5.0
        ) -> dict[str, Any]:
    env = Env().start()
    try:
        env.track(CSink(env.layout.tx_ip, env.sink_port).start())
        relay = env.helo("retention", start=False)
        relay.overrides = {**relay.overrides, "retention": {"interval": 0.0}}
        (relay.root / "helo.toml").write_text(to_toml(relay.config()))
        filled = fill(relay.db_path, messages)
        relay.start()
        asyncio.run(load(relay, sessions, rate, _timed(3.0), "warm"))
        idle = asyncio.run(load(relay, sessions, rate, _timed(seconds), "idle"))
        cmd = [sys.executable, "-m", "bench.retention", "--drive", str(relay.root / "helo.toml")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        windows: list[tuple[float, bool]] = []  # (start, purging)
        toggler = threading.Thread(target=_toggle, args=(proc, window, windows), daemon=True)
        toggler.start()
        during = asyncio.run(load(relay, sessions, rate, lambda: proc.poll() is not None,
                                  "purge"))
        purge_seconds = time.perf_counter() - t0
        report = json.loads(proc.communicate()[0])
        toggler.join()
        after = asyncio.run(load(relay, sessions, rate, _timed(seconds), "after"))
        on, off = _split(during, windows)
        return {"messages": messages, "rows": messages * ROWS_PER_MESSAGE,
                "fill_seconds": round(filled, 1), "rate": rate, "sessions": sessions,
                "window": window, "idle": _figures(idle), "during_purge": _figures(during),
                "purging_windows": _figures(on), "paused_windows": _figures(off),
                "idle_after": _figures(after), "purge_seconds": round(purge_seconds, 1),
                "purge": report,
                "db_bytes_after": Path(relay.db_path).stat().st_size}
    finally:
        env.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=200_000, help="finished messages to purge")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each idle phase")
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--rate", type=float, default=40.0, help="messages per second, all sessions")
    p.add_argument("--window", type=float, default=5.0,
                   help="seconds between pausing and resuming the purge")
    p.add_argument("--drive", metavar="CONFIG", help=argparse.SUPPRESS)  # the purge process
    p.add_argument("--write", action="store_true",
                   help="save bench/results/retention.json and update docs/benchmarks.md")
    p.add_argument("--note", default="", help="a sentence for the docs (machine load, ...)")
    a = p.parse_args(argv)
    if a.drive:
        drive(a.drive)
        return
    result = run(a.messages, a.seconds, a.sessions, a.rate, a.window)
    print(json.dumps(result, indent=2))
    if a.write:
        write(result, a.note)


def write(result: dict[str, Any], note: str = "") -> None:
    from bench import report_retention

    result = {**result, "note": note}
    report_retention.RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    report_retention.splice(report_retention.ROOT / "docs" / "benchmarks.md",
                            report_retention.section(result))


if __name__ == "__main__":
    main()
