"""End-to-end scenarios: real submission (smtplib -> the relay's listener), real delivery to
the scriptable sinks resolved through the local DNS server. Each scenario ends on an exact
count of events; the accounting invariant is checked after every one (after the relay stopped,
so nothing moves while it is read)."""

from __future__ import annotations

from typing import Any

import pytest

from helo_smtp.models import MailType
from helo_smtp.store import Store
from tests.support.accounting import assert_accounting
from tests.support.outbound import extra_sinks, wait_states  # noqa: F401 - fixture
from tests.support.relay import RelayHandle
from tests.support.submit import Submitter, submit

#: Short timeouts keep failure paths fast (the defaults are minutes).
DELIVERY = {"connect_timeout": 5.0, "command_timeout": 5.0, "data_timeout": 5.0,
            "total_deadline": 15.0, "idle_connection_seconds": 5.0, "lease_seconds": 30.0}


class Scenario:
    """A running relay plus the conveniences every scenario uses."""

    def __init__(self, relay: RelayHandle, ctx: Any) -> None:
        self.relay = relay
        self.ctx = ctx

    @property
    def store(self) -> Store:
        return self.relay.store

    def submit(self, rcpts: list[str], **kw: Any) -> str:
        return submit(self.relay, self.ctx, rcpts, **kw)

    def session(self, listener: str = "submission") -> Submitter:
        return Submitter(self.relay, self.ctx, listener)

    def wait(self, message_id: str, **want: int) -> dict[str, int]:
        """Wait until the message's recipients are in exactly these states."""
        return wait_states(self.store, message_id, lambda c: c == want)

    def retry_now(self, mail_type: MailType = MailType.TRANSACTIONAL) -> int:
        """Move time: deferred rows become due, and the worker is told."""
        n = self.store.queue.make_due(mail_type)
        self.relay.relay.wake(mail_type)
        return n

    def counts(self) -> dict[str, int]:
        return self.store.events.counts()

    def attempts(self, message_id: str) -> list[dict[str, Any]]:
        return self.store.admin.attempts(message_id)


@pytest.fixture
def scenario(relay_factory, sinks, dns, client_ctx):
    """``scenario(**config_overrides)`` -> a started Scenario (delivery on)."""
    made: list[Scenario] = []

    def start(**overrides: Any) -> Scenario:
        overrides["delivery"] = {**DELIVERY, **overrides.get("delivery", {})}
        sc = Scenario(relay_factory(**overrides), client_ctx)
        made.append(sc)
        return sc

    yield start
    for sc in made:
        sc.relay.stop()
        store = Store.open(sc.relay.cfg.server.database)
        try:
            assert_accounting(store)
        finally:
            store.close()
