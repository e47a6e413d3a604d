"""The database goes away under a running relay and comes back: while it is down, submissions
are answered 451 4.3.0 (a transient local error: the client keeps the message and retries) and
nothing is lost; once it is back the pooled connections are replaced, the listener reconnects
and delivery resumes, with no restart."""

from __future__ import annotations

import smtplib

import pytest

from helo_smtp.errors import CATALOG
from tests.support.pgserver import PgServer, require_bindir
from tests.support.submit import Submitter, build
from tests.support.waiting import wait_for


@pytest.fixture
def own_pg():
    """A PostgreSQL server of this test's own, since the test stops it."""
    server = PgServer(require_bindir()).start()
    yield server
    server.stop()


def _first_refusal(smtp: smtplib.SMTP, sender: str) -> str:
    """The first reply of MAIL, RCPT, DATA that is not a success (the store is read at MAIL
    for the account and written at DATA; whichever comes first must be 451)."""
    code, text = smtp.mail(sender)
    if code == 250:
        code, text = smtp.rcpt("during@example.test")
    if code == 250:
        try:
            smtp.data(build(sender, ["during@example.test"]))
        except smtplib.SMTPDataError as exc:
            code, text = exc.smtp_code, exc.smtp_error
    return f"{code} {text.decode()}"


def test_database_restart_is_451_meanwhile_and_heals(own_pg, relay_factory, sinks, client_ctx):
    url = own_pg.url(own_pg.create_database())
    relay = relay_factory(server={"database": url})
    first = Submitter(relay, client_ctx).send(["before@example.test"])
    wait_for(lambda: relay.store.queue.pending_count() == 0, what="first delivery")

    with Submitter(relay, client_ctx) as s:  # authenticated before the outage
        own_pg._shutdown()
        assert _first_refusal(s.s, relay.tenant.sender) == CATALOG["local_error"].line()

    assert own_pg._launch(), "port taken while the server was down"
    after = Submitter(relay, client_ctx).send(["after@example.test"])
    wait_for(lambda: relay.store.queue.pending_count() == 0, timeout=15,
             what="delivery after the database came back")
    got = [r for m in sinks[0].h.messages for r in m["rcpt_tos"]]
    assert got == ["before@example.test", "after@example.test"]
    assert {first, after} == {r["message_id"] for r in relay.store.events.list(
        type_="delivery.delivered")}
