"""Disk full: the client gets ``452 4.3.1`` (or ``451 4.3.0``), never a 5xx; nothing is half
stored; the next transaction passes once there is room again.

Three ways to run out of room, each a real failure of the real store:

- ``PRAGMA max_page_count`` pinned at the database's current size, on the relay's own writer
  connection (SQLITE_FULL);
- ``helo-smtp serve`` as a subprocess under ``RLIMIT_FSIZE`` (set in ``preexec_fn``): the
  database files may not grow, writes fail with EFBIG (the relay ignores SIGXFSZ, so the
  kernel's signal does not kill it), and ``prlimit`` gives the room back while it runs;
- the free-space guard: MAIL is refused below ``server.free_space_margin_mb`` of the real
  filesystem's free space (statvfs), and accepted again once the margin is met.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

from helo_smtp.errors import CATALOG
from helo_smtp.inbound.capacity import free_bytes
from helo_smtp.store import Store, lifetimes
from tests.inbound.clients import accepted, message, send, session
from tests.ops.serveproc import ServeProcess
from tests.support.accounting import assert_accounting
from tests.support.configfile import write_config
from tests.support.process import children
from tests.support.relay import base_config, make_tenant
from tests.support.waiting import wait_for

NO_ROOM = {CATALOG["insufficient_storage"].line(), CATALOG["local_error"].line()}
BIG_BODY = ("x" * 76 + "\n") * 8000  # ~620 KB: far more pages than there is room for


def _stored(store: Store) -> tuple[int, int, dict[str, int]]:
    return (len(store.admin.messages(limit=100_000)), store.queue.pending_count(),
            store.events.counts())


def test_max_page_count_full_is_452_nothing_half_stored_then_passes(relay_factory,
                                                                     client_ctx):
    relay = relay_factory(deliver=False)
    t = relay.tenant
    s = session(relay, client_ctx)
    accepted(send(s, t.sender, ["first@example.test"], message()))
    before = _stored(relay.store)
    pages = relay.write(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    relay.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
    keyed = message(body=BIG_BODY, headers={"X-Helo-Idempotency-Key": "disk-full-1"})
    for _ in range(3):  # the same session, again and again: always the same transient reply
        reply = send(s, t.sender, ["big@example.test"], keyed)
        assert reply == CATALOG["insufficient_storage"].line()
    assert _stored(relay.store) == before  # no message, recipient, event or key half-written
    relay.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    mid = accepted(send(s, t.sender, ["big@example.test"], keyed))
    assert relay.store.queue.message_raw(mid).count(b"x" * 76) == 8000
    assert _stored(relay.store)[0] == before[0] + 1  # a new message: the key was not kept
    relay.store.db.integrity_check()
    assert_accounting(relay.store)


@contextlib.contextmanager
def popen_preexec(preexec: object) -> Iterator[None]:
    """``subprocess.Popen`` with ``preexec_fn`` for the ServeProcess started inside."""
    real = subprocess.Popen
    subprocess.Popen = functools.partial(real, preexec_fn=preexec)  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]


def _ignores(pid: int, sig: int) -> bool:
    """The process has ``sig`` set to SIG_IGN (``SigIgn`` mask in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    raise AssertionError("no SigIgn line")


def _relay_pids(pid: int) -> list[int]:
    """``pid`` and its children (serve's delivery process)."""
    return [pid, *children(pid)]


def _limited_serve(path: Path, cwd: Path, limit: int) -> ServeProcess:
    """``helo-smtp serve`` with a soft RLIMIT_FSIZE of ``limit`` (``prlimit`` may raise it)."""
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    with popen_preexec(preexec):
        proc = ServeProcess(path, cwd)
    proc.wait_ready()
    return proc


def test_rlimit_fsize_relay_answers_452_survives_and_recovers(tmp_path, dns_server, mx_port,
                                                              server_cert, client_ctx, sinks):
    cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port, cert=server_cert,
                      server={"node_id": "fsize-node"})
    path = write_config(tmp_path / "relay.toml", cfg)
    store = Store.open(cfg.server.database, lifetimes(cfg))
    tenant = make_tenant(store)
    store.close()  # no reader of ours holds the WAL while the relay runs
    db = Path(cfg.server.database)
    files = [db, db.with_name(db.name + "-wal")]
    limit = max(f.stat().st_size for f in files if f.exists()) + 256 * 1024
    proc = _limited_serve(path, tmp_path, limit)
    try:
        pids = _relay_pids(proc.proc.pid)  # serve and its delivery process
        assert len(pids) == 2
        for pid in pids:
            assert resource.prlimit(pid, resource.RLIMIT_FSIZE)[0] == limit
            assert _ignores(pid, signal.SIGXFSZ)  # EFBIG instead of death by SIGXFSZ
        s = session(SimpleNamespace(ports=proc.ports, tenant=tenant), client_ctx)
        accepted(send(s, tenant.sender, ["small@example.test"], message()))
        big = message(body=BIG_BODY)
        for _ in range(2):
            assert send(s, tenant.sender, ["big@example.test"], big) in NO_ROOM
        assert proc.proc.poll() is None  # still running
        assert max(f.stat().st_size for f in files if f.exists()) <= limit
        for pid in pids:
            resource.prlimit(pid, resource.RLIMIT_FSIZE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        mid = accepted(send(s, tenant.sender, ["big@example.test"], big))
        s.quit()
        # the delivery worker lived through the full disk (its claims failed meanwhile)
        wait_for(lambda: len(sinks[0].h.messages) == 2, what="both messages delivered")
    finally:
        proc.close()
    # A store that cannot write is an expected fault: logged as one line, never a traceback.
    tracebacks = [x for x in proc.lines if "Traceback" in x]
    assert tracebacks == [], tracebacks
    _check_after(cfg, mid)


def _check_after(cfg, mid: str) -> None:
    store = Store.open(cfg.server.database, lifetimes(cfg))
    try:
        assert len(store.admin.messages(limit=100)) == 2  # small + big, no remnant of a failure
        assert store.queue.message_raw(mid).count(b"x" * 76) == 8000
        assert store.events.counts()["message.received"] == 2
        assert_accounting(store)
    finally:
        store.close()


def test_free_space_guard_uses_the_real_filesystem_and_lets_go(relay_factory, client_ctx):
    relay = relay_factory(deliver=False)
    free = free_bytes(relay.cfg.server.database)
    assert free is not None
    above = free // (1024 * 1024) + 1024  # a margin 1 GiB above what is free right now
    _set_margin(relay, above)
    s = session(relay, client_ctx)
    t = relay.tenant
    assert send(s, t.sender, ["a@example.test"], message()) == \
        CATALOG["insufficient_storage"].line()
    assert s.rcpt("a@example.test")[0] == 503  # no transaction was opened
    s.rset()
    assert relay.store.admin.messages(limit=10) == []
    _set_margin(relay, max(1, free // (1024 * 1024) // 2))  # half of what is free: room
    accepted(send(s, t.sender, ["a@example.test"], message()))
    assert len(relay.store.admin.messages(limit=10)) == 1


def _set_margin(relay, margin_mb: int) -> None:
    """A SIGHUP-style reload of the inbound side with a new margin (and fresh numbers)."""
    new = dataclasses.replace(relay.cfg, server=dataclasses.replace(
        relay.cfg.server, free_space_margin_mb=margin_mb))

    async def reload() -> None:
        relay.relay.inbound.reload(new)
        relay.relay.inbound.capacity.refresh()

    relay.run(reload())
