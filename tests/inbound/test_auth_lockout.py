"""AUTH lockouts keyed by (username, client IP) and by client IP, in bounded memory that never
forgets a live lockout (SPEC §14, issue #15 items 3 and 4), on a real listener."""

from __future__ import annotations

import logging

from helo_smtp.config import LimitsConfig
from helo_smtp.errors import CATALOG
from helo_smtp.inbound.authguard import AuthGuard, client_key
from tests.inbound.clients import other_tenant, source_ip
from tests.inbound.test_auth import auth_plain, tls_raw

LOCKED, INVALID, OK = (CATALOG[n].line() for n in ("auth_locked", "auth_invalid", "auth_ok"))


def _fail(relay, ctx, ip: str, username: str, times: int) -> list[str]:
    """``times`` wrong secrets from ``ip``, one connection each (no per-connection strike)."""
    out = []
    for _ in range(times):
        raw = tls_raw(relay, ctx, source=ip)
        out.append(auth_plain(raw, username, "wrong"))
        raw.close()
    return out


def test_ten_failures_from_an_attacker_do_not_lock_the_owner_out(make_relay, client_ctx,
                                                                    caplog):
    caplog.set_level(logging.INFO, logger="helo_smtp.smtp")
    relay = make_relay(limits={"auth_failures_per_ip": 10, "auth_failures_per_user": 10,
                               "auth_slowdown_max": 0.3})
    t = relay.tenant
    attacker, owner = source_ip(61), source_ip(62)
    replies = _fail(relay, client_ctx, attacker, t.username, 12)
    assert replies[:9] == [INVALID] * 9 and set(replies[9:]) == {LOCKED}
    # the attacker is locked out, even with the right secret
    assert auth_plain(tls_raw(relay, client_ctx, source=attacker), t.username, t.secret) == LOCKED
    # the owner, elsewhere, is slowed (logged) but gets in
    assert auth_plain(tls_raw(relay, client_ctx, source=owner), t.username, t.secret) == OK
    assert any("event=auth_slowed" in r.getMessage() for r in caplog.records)


def test_a_username_is_locked_only_from_the_address_that_failed(make_relay, client_ctx):
    relay = make_relay(limits={"auth_failures_per_ip": 100, "auth_failures_per_user": 3,
                               "auth_slowdown_max": 0.1})
    t = relay.tenant
    beta = other_tenant(relay.store, "beta", "beta.test")
    ip = source_ip(63)
    assert _fail(relay, client_ctx, ip, t.username, 3) == [INVALID, INVALID, LOCKED]
    assert auth_plain(tls_raw(relay, client_ctx, source=ip), t.username, t.secret) == LOCKED
    # the same address may still log in as another username (its IP limit is not reached)
    assert auth_plain(tls_raw(relay, client_ctx, source=ip), beta.username, beta.secret) == OK
    # and the locked username still logs in from another address
    other = source_ip(64)
    assert auth_plain(tls_raw(relay, client_ctx, source=other), t.username, t.secret) == OK


def test_spraying_usernames_never_evicts_a_live_lockout(make_relay, client_ctx):
    relay = make_relay(limits={"auth_failures_per_ip": 1000, "auth_failures_per_user": 2})
    t = relay.tenant
    guard = relay.relay.inbound.guard

    async def shrink() -> None:  # small bounds so that a test can fill them over the wire
        guard.max_counters, guard.max_locks = 20, 3
    relay.run(shrink())
    victim_ip = source_ip(65)
    assert _fail(relay, client_ctx, victim_ip, t.username, 2) == [INVALID, LOCKED]
    sprayer = source_ip(66)
    for i in range(30):  # 90 failures under 60 usernames: far more keys than counters
        raw = tls_raw(relay, client_ctx, source=sprayer)
        replies = [auth_plain(raw, f"spray-{i}-{j}", "wrong") for j in range(2)]
        replies.append(auth_plain(raw, f"spray-{i}-0", "wrong"))
        raw.close()
    # the lock table filled (3 live locks): no lock was dropped to make room, and every
    # failure since ends its connection
    assert auth_plain(tls_raw(relay, client_ctx, source=victim_ip), t.username, t.secret) == LOCKED
    assert replies[0] == LOCKED and replies[1:] == ["", ""]  # closed at the first
    assert relay.run(_sizes(guard)) == (20, 3)


async def _sizes(guard: AuthGuard) -> tuple[int, int]:
    return len(guard._fails), len(guard._locks)


def test_guard_bounds_and_expiry_without_a_listener():
    limits = LimitsConfig(auth_failures_per_ip=3, auth_failures_per_user=2,
                          auth_failure_window=10.0)
    g = AuthGuard(limits, max_counters=5, max_locks=2)
    g.record("10.0.0.1", "u", now=0.0)
    g.record("10.0.0.1", "u", now=1.0)
    assert g.locked("10.0.0.1", "u", now=1.0) and not g.locked("10.0.0.2", "u", now=1.0)
    for n in range(50):
        g.record(f"10.0.1.{n}", f"x{n}", now=2.0)
    assert len(g._fails) <= 5 and g.locked("10.0.0.1", "u", now=5.0)
    assert not g.locked("10.0.0.1", "u", now=10.5)  # the window passed: the lock ends
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
