"""A failing store answers 451 4.3.0 / 452 4.3.1, never 5xx, and the session carries on.

Faults are real SQLite errors raised by the store's own writer connection: an authorizer that
denies inserts into ``messages`` (SQLITE_AUTH, a store error) and a blob length limit below the
message size (SQLITE_TOOBIG, "string or blob too big", which the store reports as full).
"""

from __future__ import annotations

import logging
import re
import sqlite3

import pytest

from helo_smtp.errors import CATALOG
from tests.inbound.clients import accepted, message, messages, send, session


def deny_message_inserts(action, arg1, arg2, db_name, trigger):
    if action == sqlite3.SQLITE_INSERT and arg1 == "messages":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


@pytest.mark.sqlite_only  # SQLite internals (writer connection, page limits, statvfs of the file)
def test_store_error_mid_data_is_451_and_the_next_message_passes(relay, client_ctx, caplog):
    caplog.set_level(logging.ERROR, logger="helo_smtp.smtp")
    s = session(relay, client_ctx)
    t = relay.tenant
    relay.write(lambda c: c.set_authorizer(deny_message_inserts))
    reply = send(s, t.sender, ["user@example.test"], message())
    assert reply == CATALOG["local_error"].line()
    [record] = [r for r in caplog.records if "event=internal_error" in r.getMessage()]
    assert re.search(r"correlation_id=[0-9a-f]{12} command=DATA", record.getMessage())
    assert messages(relay.store) == [] and relay.store.queue.pending_count() == 0
    relay.write(lambda c: c.set_authorizer(None))
    accepted(send(s, t.sender, ["user@example.test"], message()))
    assert relay.store.events.counts() == {"message.received": 1, "recipient.accepted": 1}


@pytest.mark.sqlite_only  # SQLite internals (writer connection, page limits, statvfs of the file)
def test_storage_full_is_452_and_the_next_message_passes(relay, client_ctx):
    s = session(relay, client_ctx)
    t = relay.tenant
    big = message(body=("x" * 70 + "\n") * 60)
    old = relay.write(lambda c: c.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 3000))
    assert send(s, t.sender, ["user@example.test"], big) == \
        CATALOG["insufficient_storage"].line()
    relay.write(lambda c: c.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old))
    accepted(send(s, t.sender, ["user@example.test"], big))
    assert len(messages(relay.store)) == 1
