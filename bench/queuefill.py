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


async def _claim_once(store: Store, mail_type: MailType, batch: int) -> tuple[float, int]:
    t = time.perf_counter()
    rows = await store.queue.claim(mail_type, batch, "bench", 300.0)
    took = time.perf_counter() - t
    # Untimed: give the batch back, due in the past again, so a 1k queue stays 1k deep for
    # every sample (a worker's claim is followed by outcomes; those are not timed).
    await store.queue.release([r.id for r in rows], time.time() - 86_400)
    return took, len(rows)


async def _interleaved(stores: dict[int, Store], mail_type: MailType, batches: int,
                       batch: int) -> dict[int, tuple[list[float], int]]:
    """One claim per store in turn, ``batches`` times: a slow spell of the disk (fsync times
    drift by 2x over minutes on a shared machine) lands on every size alike."""
    out: dict[int, tuple[list[float], int]] = {n: ([], 0) for n in stores}
    for _ in range(batches):
        for n, store in stores.items():
            took, got = await _claim_once(store, mail_type, batch)
            times, total = out[n]
            times.append(took)
            out[n] = (times, total + got)
    return out


def _figures(bc: tuple[list[float], int], tx: tuple[list[float], int], batch: int
             ) -> dict[str, Any]:
    (bct, bc_got), (txt, tx_got) = bc, tx
    return {"batch": batch, "claim_ms": [t * 1000 for t in bct], "claimed": bc_got,
            "median_ms": statistics.median(bct) * 1000,
            "p90_ms": sorted(bct)[int(0.9 * (len(bct) - 1))] * 1000,
            "tx_claim_ms": [t * 1000 for t in txt], "tx_claimed": tx_got,
            "tx_median_ms": statistics.median(txt) * 1000}


def scaling(workdir: Path, sizes: list[int], log: Any = print, batches: int = 30,
            batch: int = 200) -> dict[str, Any]:
    """Fill one store per size, then claim from them in turn (broadcast ``batches`` rounds,
    then 5 transactional ones) through the real ``Store.open(...).queue.claim``."""
    paths = {n: workdir / f"queue-{n}.db" for n in sizes}
    fills = {n: fill(str(p), n) for n, p in paths.items()}
    # integrity_check of 1M rows is not what we time
    stores = {n: Store.open(str(p), check=False) for n, p in paths.items()}
    try:
        bc = asyncio.run(_interleaved(stores, MailType.BROADCAST, batches, batch))
        tx = asyncio.run(_interleaved(stores, MailType.TRANSACTIONAL, 5, batch))
    finally:
        for store in stores.values():
            store.close()
    out: dict[str, Any] = {}
    for n, path in paths.items():
        res = _figures(bc[n], tx[n], batch)
        res.update(rows=n, fill_seconds=fills[n], db_mib=path.stat().st_size / 2**20)
        log(f"  {n:>9,} rows: claim {res['median_ms']:.2f} ms median"
            f" (tx among them {res['tx_median_ms']:.2f} ms), fill {fills[n]:.0f} s")
        out[str(n)] = res
        for p in workdir.glob(f"queue-{n}.db*"):
            p.unlink()
    return out
