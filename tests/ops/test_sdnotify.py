"""sd_notify over a real AF_UNIX datagram socket the test binds (a path and an abstract name)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
from types import SimpleNamespace

import pytest

from helo_smtp.models import MailType, NewMessage, uuid7
from helo_smtp.runtime import sdnotify
from tests.ops.notifysock import NotifySocket, fields
from tests.support.relay import make_tenant


@pytest.fixture(params=["path", "abstract"])
def notify_sock(request, monkeypatch):
    s = NotifySocket(abstract=request.param == "abstract")
    monkeypatch.setenv("NOTIFY_SOCKET", s.env)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield s
    s.close()


@pytest.fixture
def relay_like(store):
    """What sdnotify reads from a Relay: its bound ports and its real store, with mail queued."""
    tenant = make_tenant(store)
    for mail_type, rcpts in ((MailType.TRANSACTIONAL, ["a@example.test", "b@example.test"]),
                             (MailType.BROADCAST, ["c@example.test"])):
        mid = uuid7()
        asyncio.run(store.queue.enqueue(NewMessage(
            mid, tenant.account.id, tenant.channel.id, mail_type, tenant.sender, rcpts, [],
            b"Subject: x\r\n\r\nhi\r\n", reply=f"250 2.0.0 Ok: queued as {mid}")))
    return SimpleNamespace(ports={"submission": 2525, "submissions": 4465}, store=store)


def test_notify_sends_one_datagram(notify_sock):
    assert sdnotify.notify("STATUS=hello\nERRNO=0") is True
    assert notify_sock.recv() == "STATUS=hello\nERRNO=0"


def test_notify_outside_systemd_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False


def test_notify_to_a_missing_socket_reports_failure_without_raising(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert sdnotify.notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")  # an address family we do not speak
    assert sdnotify.notify("READY=1") is False


def test_ready_reports_ports_and_queue_sizes(notify_sock, relay_like):
    assert sdnotify.ready(relay_like) is True
    got = fields(notify_sock.recv())
    assert got["READY"] == "1"
    assert got["STATUS"] == ("listening submission:2525 submissions:4465; "
                             "queue transactional=2 broadcast=1")


def test_watchdog_pings_at_half_the_interval_with_status(notify_sock, relay_like, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s: a ping every 0.1 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == pytest.approx(0.1)

    async def scenario() -> list[str]:
        task = asyncio.create_task(sdnotify.watchdog_loop(relay_like))
        got: list[str] = []
        while sum(d == "WATCHDOG=1" for d in got) < 3:
            got.append(await asyncio.to_thread(notify_sock.recv))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    got = asyncio.run(scenario())
    statuses = [fields(d)["STATUS"] for d in got if d.startswith("STATUS=")]
    assert statuses, got
    assert statuses[0].endswith("queue transactional=2 broadcast=1")


def test_watchdog_for_another_pid_only_refreshes_status(notify_sock, relay_like, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for someone else
    assert sdnotify.watchdog_interval() is None

    async def scenario() -> str:
        task = asyncio.create_task(sdnotify.watchdog_loop(relay_like))
        first = await asyncio.to_thread(notify_sock.recv)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return first

    assert asyncio.run(scenario()).startswith("STATUS=listening submission:2525")


@pytest.mark.parametrize("usec", ["", "0", "junk"])
def test_no_watchdog_values(monkeypatch, usec):
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() is None


def test_watchdog_loop_returns_at_once_outside_systemd(monkeypatch, relay_like):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    asyncio.run(asyncio.wait_for(sdnotify.watchdog_loop(relay_like), 5))


def test_status_survives_a_failing_store(notify_sock, relay_like):
    broken = SimpleNamespace(ports=relay_like.ports,
                             store=SimpleNamespace(queue=SimpleNamespace(depth_by_type=_boom)))
    assert sdnotify.ready(broken) is True
    got = fields(notify_sock.recv())
    assert got["READY"] == "1" and got["STATUS"].endswith("queue unknown")


def _boom():
    raise OSError("disk gone")


def test_a_hung_store_never_delays_the_ping_nor_piles_up_threads(notify_sock, monkeypatch):
    """The queue count hangs (a stuck disk): pings go on, STATUS says so, one query only."""
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setattr(sdnotify, "QUEUE_QUERY_TIMEOUT", 0.05)
    release, calls = threading.Event(), []

    def hung_depths():
        calls.append(1)
        release.wait(10)
        return {"transactional": (7, None), "broadcast": (0, None)}

    relay = SimpleNamespace(ports={"submission": 1},
                            store=SimpleNamespace(queue=SimpleNamespace(depth_by_type=hung_depths)))

    async def scenario() -> list[str]:
        task = asyncio.create_task(sdnotify.watchdog_loop(relay))
        got: list[str] = []
        while sum(d == "WATCHDOG=1" for d in got) < 4 or "queue unknown" not in got[-1]:
            got.append(await asyncio.to_thread(notify_sock.recv))
        assert len(calls) == 1  # still the first query: no second thread started
        release.set()
        while not got[-1].endswith("queue transactional=7 broadcast=0"):
            got.append(await asyncio.to_thread(notify_sock.recv))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return got

    got = asyncio.run(scenario())
    assert got.count("STATUS=listening submission:1; queue unknown") >= 1


def test_a_manager_that_stops_reading_never_blocks_the_caller(tmp_path, monkeypatch):
    # An unread socket's datagram queue fills after a few sends: later ones must fail at once
    # (False), not block the event loop (found as a `serve` hung under WATCHDOG pings).
    path = tempfile.mkdtemp(prefix="hsn-", dir="/tmp") + "/notify"  # sun_path: 108 bytes
    unread = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unread.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    done = threading.Event()
    results: list[bool] = []

    def flood() -> None:
        results.extend(sdnotify.notify("WATCHDOG=1") for _ in range(200))
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    try:
        assert done.wait(30), "notify blocked on a full socket"
        assert results[0] is True and results[-1] is False
    finally:
        unread.close()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
