"""Each mail type leaves from its own pool: its source address and its EHLO name are what
the receiving MTA sees (and what the attempt records)."""

from __future__ import annotations

from tests.support.net import POOLS


def test_source_ip_and_helo_name_per_pool(scenario, sinks):
    sc = scenario()
    tx = sc.submit(["tx@example.test"])
    bc = sc.submit(["bc@other.test"], headers={"X-Helo-Mail-Type": "broadcast"})
    sc.wait(tx, delivered=1)
    sc.wait(bc, delivered=1)

    [m_tx] = sinks[0].h.messages
    [m_bc] = sinks[2].h.messages
    assert (m_tx["peer"][0], m_tx["ehlo"]) == (POOLS["transactional"][0], "tx.relay.test")
    assert (m_bc["peer"][0], m_bc["ehlo"]) == (POOLS["broadcast"][0], "bc.relay.test")
    assert sc.attempts(tx)[0]["source_ip"] == POOLS["transactional"][0]
    assert sc.attempts(bc)[0]["source_ip"] == POOLS["broadcast"][0]
    # broadcast mail is personalized per recipient before signing (RFC 8058 headers)
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in m_bc["data"]
    assert b"List-Unsubscribe" not in m_tx["data"]
    assert sc.counts() == {"message.received": 2, "recipient.accepted": 2, "delivery.delivered": 2}
