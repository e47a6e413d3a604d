"""Queue scaling: how long ``Queue.claim`` takes with 1k, 100k and 1M rows queued.

The store is filled by a bench-only bulk insert straight into the tables (``synchronous=OFF``,
one transaction: filling through SMTP would take hours at 1M). The rows look like what the
relay writes: one message per ``per_message`` recipients, broadcast, due in the past in
arrival order. Then the real ``Store.open`` and ``Queue.claim`` run with the relay's own
settings (WAL, ``synchronous=FULL``, one writer thread), one batch at a time, as a worker would.
A second measurement claims transactional rows that sit among all the broadcast ones.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from helo_smtp.models import AccountStatus, MailType
from helo_smtp.store import Store

RAW = b"From: a@sender.bench.test\r\nSubject: q\r\n\r\nbody\r\n"


def _tenant(path: str) -> tuple[str, str]:
    store = Store.open(path)
    try:
        acc = store.accounts.create("bench", AccountStatus.ACTIVE)
        ch = store.channels.create(acc.id, "main", False, False)
        return acc.id, ch.id
    finally:
        store.close()


def _rows(n: int, per_message: int, mail_type: str, start: float, account: str,
          channel: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    msgs, rcpts = [], []
    for i in range(0, n, per_message):
        mid = str(uuid.uuid4())
        at = start + i * 0.001
        msgs.append((mid, account, channel, mail_type, "a@sender.bench.test", "q", len(RAW),
                     RAW, at))
        rcpts += [(mid, f"r{i + j}@{mail_type[:2]}.bench.test", f"{mail_type[:2]}.bench.test",
                   mail_type, at, at + 86_400 * 5, at) for j in range(min(per_message, n - i))]
    return msgs, rcpts


def fill(path: str, broadcast_rows: int, transactional_rows: int = 1000,
         per_message: int = 10) -> float:
    """Bulk-insert pending recipients; returns the seconds it took."""
    account, channel = _tenant(path)
    t0 = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")  # bench-only: a fill, not a relay
    conn.execute("BEGIN")
    start = time.time() - 86_400  # all due: they arrived over the last day
    for mail_type, n in (("broadcast", broadcast_rows), ("transactional", transactional_rows)):
        for chunk in range(0, n, 100_000):
            msgs, rcpts = _rows(min(100_000, n - chunk), per_message, mail_type,
                                start + chunk * 0.001, account, channel)
            _insert(conn, msgs, rcpts)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def _insert(conn: sqlite3.Connection, msgs: list[tuple], rcpts: list[tuple]) -> None:
    """Bulk rows straight into the queue tables (bench fills only: no events, no counters)."""
    conn.executemany(
        "INSERT INTO messages (id, account_id, channel_id, mail_type, sender, subject,"
        " size, raw, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?)",
        msgs)
    conn.executemany(
        "INSERT INTO recipients (message_id, address, domain, mail_type, state,"
        " next_attempt_at, expires_at, updated_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
        rcpts)


def fill_backlog(path: str, messages: int, domain: str) -> float:
    """Queue ``messages`` broadcast messages of 4 KiB, one recipient each at ``domain``, for the
    tenant already in the store at ``path`` (bench/helo.py made it). Returns seconds taken."""
    from bench.client import make_message

    conn = sqlite3.connect(path, isolation_level=None)
    account, channel = conn.execute("SELECT account_id, id FROM channels LIMIT 1").fetchone()
    sender = conn.execute("SELECT name FROM domains LIMIT 1").fetchone()[0]
    t0 = time.perf_counter()
    conn.execute("PRAGMA synchronous = OFF")  # bench-only: a fill, not a relay
    conn.execute("BEGIN")
    now = time.time()
    for start in range(0, messages, 10_000):
        msgs, rcpts = [], []
        for i in range(start, min(messages, start + 10_000)):
            mid, rcpt = str(uuid.uuid4()), f"reader{i}@{domain}"
            raw = make_message(f"app@{sender}", rcpt, f"bulk{i}")
            msgs.append((mid, account, channel, "broadcast", f"app@{sender}", "bulk",
                         len(raw), raw, now))
            rcpts.append((mid, rcpt, domain, "broadcast", now, now + 172_800, now))
        _insert(conn, msgs, rcpts)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


async def _claims(store: Store, mail_type: MailType, batches: int, batch: int
                  ) -> tuple[list[float], int]:
    times, got = [], 0
    for _ in range(batches):
        t = time.perf_counter()
        rows = await store.queue.claim(mail_type, batch, "bench", 300.0)
        times.append(time.perf_counter() - t)
        got += len(rows)
        # Untimed: give the batch back, due in the past again, so a 1k queue stays 1k deep
        # for every sample (a worker's claim is followed by outcomes; those are not timed).
        await store.queue.release([r.id for r in rows], time.time() - 86_400)
    return times, got


def measure(path: str, batches: int = 30, batch: int = 200) -> dict[str, Any]:
    """Claim ``batches`` batches of broadcast rows, then 5 of transactional ones."""
    store = Store.open(path, check=False)  # integrity_check of 1M rows is not what we time
    try:
        bc, bc_got = asyncio.run(_claims(store, MailType.BROADCAST, batches, batch))
        tx, tx_got = asyncio.run(_claims(store, MailType.TRANSACTIONAL, 5, batch))
    finally:
        store.close()
    return {"batch": batch, "claim_ms": [t * 1000 for t in bc], "claimed": bc_got,
            "median_ms": statistics.median(bc) * 1000,
            "p90_ms": sorted(bc)[int(0.9 * (len(bc) - 1))] * 1000,
            "tx_claim_ms": [t * 1000 for t in tx], "tx_claimed": tx_got,
            "tx_median_ms": statistics.median(tx) * 1000}


def scaling(workdir: Path, sizes: list[int], log: Any = print, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        path = workdir / f"queue-{n}.db"
        fill_s = fill(str(path), n)
        res = measure(str(path), **kw)
        res.update(rows=n, fill_seconds=fill_s, db_mib=path.stat().st_size / 2**20)
        log(f"  {n:>9,} rows: claim {res['median_ms']:.2f} ms median"
            f" (tx among them {res['tx_median_ms']:.2f} ms), fill {fill_s:.0f} s")
        out[str(n)] = res
        for p in workdir.glob(f"queue-{n}.db*"):
            p.unlink()
    return out
