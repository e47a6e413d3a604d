"""The accounting invariant, checked after every delivery scenario.

Per recipient: accepted = delivered + bounced + expired + suppressed + still queued/deferred.
"Accepted" is read from the ``message.received`` events (what the relay answered 250 for), the
states from the recipient rows, and every final state must be backed by exactly one final event
for that recipient (an expired recipient is reported once, a delivered one never twice), with no
recipient in two final states.
"""

from __future__ import annotations

from collections import Counter

from helo_smtp.store import Store

BIG = 10_000_000
FINAL_EVENTS = {"delivered": "delivery.delivered", "bounced": "delivery.bounced",
                "expired": "message.expired"}


def assert_accounting(store: Store) -> dict[str, int]:
    """Check the invariant; returns the recipients per state."""
    states = store.queue.accounting()
    received = store.events.list(type_="message.received", limit=BIG)
    queued = sum(e["data"]["recipients"] for e in received)
    suppressed = sum(e["data"]["suppressed"] for e in received)
    assert sum(states.values()) == queued + suppressed, (states, queued, suppressed)
    assert states.get("suppressed", 0) == suppressed, states
    finals: Counter[tuple[str, str]] = Counter()
    for state, etype in FINAL_EVENTS.items():
        keys = [(e["message_id"], e["recipient"]) for e in store.events.list(type_=etype,
                                                                           limit=BIG)]
        assert len(keys) == len(set(keys)), f"a recipient got {etype} twice"
        assert len(keys) == states.get(state, 0), (state, len(keys), states)
        finals.update(keys)
    assert all(n == 1 for n in finals.values()), "a recipient reached two final states"
    pending = states.get("queued", 0) + states.get("deferred", 0)
    assert queued == (states.get("delivered", 0) + states.get("bounced", 0)
                      + states.get("expired", 0) + pending), states
    return states
