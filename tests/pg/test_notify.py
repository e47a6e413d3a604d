"""Wake-ups across nodes: an enqueue on one node wakes the workers of every node (LISTEN/NOTIFY,
sent at COMMIT), and a lost listening connection comes back and wakes everything once."""

from __future__ import annotations

import asyncio
import dataclasses

import psycopg
import pytest

from helo_smtp.models import MailType
from helo_smtp.store import Store
from tests.pg import nodeproc
from tests.support.relay import make_tenant
from tests.support.waiting import await_for


@pytest.fixture
def two_nodes(pg_url):
    a, b = Store.open(pg_url), Store.open(pg_url)
    yield a, b
    a.close()
    b.close()


def _msg(t, mail_type=MailType.TRANSACTIONAL):
    m = nodeproc.new_message(t.account.id, t.channel.id, ["x@example.test"])
    if mail_type == MailType.BROADCAST:
        m = dataclasses.replace(m, mail_type=mail_type, broadcast_key="name:spring",
                                broadcast_name="spring")
    return m


def test_enqueue_on_one_node_wakes_the_other(two_nodes):
    a, b = two_nodes
    t = make_tenant(a)
    woken: list[MailType] = []

    async def scenario():
        listener = asyncio.create_task(b.queue.listen(woken.append))
        try:
            # on connecting, every type is woken once (notices from before are lost)
            await await_for(lambda: sorted(woken) == sorted(MailType), what="first wake")
            woken.clear()
            await a.queue.enqueue(_msg(t))
            await await_for(lambda: woken == [MailType.TRANSACTIONAL], what="tx wake")
            await a.queue.enqueue(_msg(t, MailType.BROADCAST))
            await await_for(lambda: woken[-1:] == [MailType.BROADCAST], what="broadcast wake")
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())


def test_notice_is_sent_only_when_the_enqueue_commits(two_nodes):
    a, b = two_nodes
    t = make_tenant(a)
    woken: list[MailType] = []

    async def scenario():
        listener = asyncio.create_task(b.queue.listen(woken.append))
        try:
            await await_for(lambda: len(woken) == len(MailType), what="listening")
            woken.clear()

            def enqueue_then_fail(c):
                from helo_smtp.store import queue
                queue.enqueue_in(c, _msg(t), 3600)
                raise RuntimeError("rolled back")

            with pytest.raises(RuntimeError):
                await a.db.awrite(enqueue_then_fail)
            await a.queue.enqueue(_msg(t))  # a committed one after it, as a marker
            await await_for(lambda: woken, what="marker wake")
            assert woken == [MailType.TRANSACTIONAL]  # one wake: the rolled back one sent none
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())


def test_listener_reconnects_after_losing_its_connection(two_nodes, pg_url):
    a, b = two_nodes
    t = make_tenant(a)
    woken: list[MailType] = []

    async def scenario():
        listener = asyncio.create_task(b.queue.listen(woken.append))
        try:
            await await_for(lambda: len(woken) == len(MailType), what="listening")
            woken.clear()
            with psycopg.connect(pg_url, autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'").fetchone()[0]
            assert killed == 1
            # back again: every type woken once, since notices in the gap were lost
            await await_for(lambda: sorted(woken) == sorted(MailType), timeout=15,
                            what="wake on reconnect")
            woken.clear()
            await a.queue.enqueue(_msg(t))
            await await_for(lambda: woken == [MailType.TRANSACTIONAL], what="wake after")
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    asyncio.run(scenario())


def test_listen_returns_at_once_on_sqlite(tmp_path):
    s = Store.open(str(tmp_path / "one.db"))
    try:
        asyncio.run(asyncio.wait_for(s.queue.listen(lambda mt: None), 5))
    finally:
        s.close()
