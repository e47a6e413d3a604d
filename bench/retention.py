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
2. purge: the same load while ``helo-smtp purge`` (another process, as the background pass is
   in the delivery child) drops every body and then every row, in ``[retention]`` batches;
3. idle again, to see the drift of the machine itself.

Prints one JSON object: p50 / p99 / max per phase, the purge's report and duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.client import Session, make_message
from bench.env import TX_DOMAIN, Env
from bench.helo import SENDER, to_toml
from bench.report import percentile
from bench.sinks import CSink

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


async def _session(relay: Any, ctx: Any, every: float, until: Any, out: list[float],
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
            out.append(time.perf_counter() - t0)
            n += 1
            next_at += every
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        await s.close()


async def load(relay: Any, sessions: int, rate: float, until: Any, tag: str) -> list[float]:
    """Paced submissions until ``until()``; returns each transaction's latency (seconds)."""
    out: list[float] = []
    ctx = relay.target().context()
    await asyncio.gather(*(_session(relay, ctx, sessions / rate, until, out, f"{tag}{i}x")
                           for i in range(sessions)))
    return out


def _figures(lat: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in lat)
    return {"count": len(ms), "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(ms[-1], 2) if ms else 0.0}


def _timed(seconds: float) -> Any:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() >= end


def run(messages: int, seconds: float, sessions: int, rate: float) -> dict[str, Any]:
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
        cmd = [sys.executable, "-c", "from helo_smtp.cli import main; main()", "purge",
               "--json", "--config", str(relay.root / "helo.toml")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=relay.root, stdout=subprocess.PIPE, text=True)
        during = asyncio.run(load(relay, sessions, rate, lambda: proc.poll() is not None,
                                  "purge"))
        purge_seconds = time.perf_counter() - t0
        report = json.loads(proc.communicate()[0])
        after = asyncio.run(load(relay, sessions, rate, _timed(seconds), "after"))
        return {"messages": messages, "rows": messages * ROWS_PER_MESSAGE,
                "fill_seconds": round(filled, 1), "rate": rate, "sessions": sessions,
                "idle": _figures(idle), "during_purge": _figures(during),
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
    p.add_argument("--write", action="store_true",
                   help="save bench/results/retention.json and update docs/benchmarks.md")
    p.add_argument("--note", default="", help="a sentence for the docs (machine load, ...)")
    a = p.parse_args(argv)
    result = run(a.messages, a.seconds, a.sessions, a.rate)
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
