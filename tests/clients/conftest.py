"""Fixtures for the real-client tests: a delivering relay and where its mail lands."""

from __future__ import annotations

import re

import pytest

from tests.support.outbound import extra_sinks  # noqa: F401 - fixture
from tests.support.waiting import wait_for

QUEUED = re.compile(r"250 2\.0\.0 Ok: queued as ([0-9a-f-]{36})")


@pytest.fixture
def client_relay(relay_factory, sinks, dns):
    """A delivering relay; example.test's first MX is ``sinks[0]``."""
    return relay_factory(delivery={"connect_timeout": 5.0, "command_timeout": 5.0,
                                   "data_timeout": 5.0, "total_deadline": 15.0})


def arrived(sink, message_id: str, timeout: float = 15.0) -> dict:
    """The one message with this Helo id the sink received (the id is in our Received line:
    clients bring their own Message-ID)."""
    trace = re.compile(rb"\bwith \w*SMTPSA id " + message_id.encode() + rb"\b")

    def find():
        return [m for m in sink.h.messages if trace.search(m["data"])]
    got = wait_for(find, timeout, what=f"{message_id} at {sink.h.name}")
    assert len(got) == 1, got
    return got[0]
