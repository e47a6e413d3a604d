"""Webhook signatures, the retry policy, VERP tokens and the SSRF address check."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from helo_smtp.bounces.verp import Verp
from helo_smtp.events import policy, signing, ssrf
from helo_smtp.events.policy import Verdict


def test_signature_is_hmac_over_t_dot_body():
    body = b'{"id":"x"}'
    header = signing.sign(["whsec_a"], body, t=1700000000)
    want = hmac.new(b"whsec_a", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={want}"
    assert signing.verify("whsec_a", header, body, now=1700000100)
    assert not signing.verify("whsec_a", header, body + b" ", now=1700000100)
    assert not signing.verify("whsec_b", header, body, now=1700000100)
    assert not signing.verify("whsec_a", header, body, now=1700000000 + 301)  # replayed


def test_rotation_signs_with_every_active_secret():
    header = signing.sign(["new", "old"], b"{}", t=5)
    assert header.count("v1=") == 2
    assert signing.verify("old", header, b"{}", now=5) and signing.verify("new", header, b"{}",
                                                                          now=5)


def test_verdicts():
    assert [policy.verdict(c) for c in (200, 204, None, 500, 503, 408, 429, 410, 400, 404,
                                        301)] == [
        Verdict.DELIVERED, Verdict.DELIVERED, Verdict.RETRY, Verdict.RETRY, Verdict.RETRY,
        Verdict.RETRY, Verdict.RETRY, Verdict.GONE, Verdict.FAIL, Verdict.FAIL, Verdict.FAIL]


def test_retry_schedule_doubles_with_jitter_until_the_window_ends():
    mid = [policy.retry_at(n, 0.0, 0.0, 60.0, 86400.0, lambda: 0.5) for n in (1, 2, 3, 4)]
    assert mid == [60.0, 120.0, 240.0, 480.0]
    low = policy.retry_at(1, 0.0, 0.0, 60.0, 86400.0, lambda: 0.0)
    high = policy.retry_at(1, 0.0, 0.0, 60.0, 86400.0, lambda: 0.999)
    assert low == 45.0 and 74.9 < high < 75.0
    assert policy.retry_at(12, 0.0, 80000.0, 60.0, 86400.0, lambda: 0.5) == 86400.0  # last
    assert policy.retry_at(13, 0.0, 86400.0, 60.0, 86400.0) is None  # given up


@given(st.integers(min_value=1, max_value=2**62))
def test_verp_round_trip(row_id):
    v = Verp("Bounces.Example.COM", b"k")
    addr = v.address(row_id)
    assert addr == addr.lower() and len(addr.split("@")[0]) <= 2 + 13 + 1 + 12
    assert v.row_id(addr) == row_id
    assert v.row_id(addr.upper()) == row_id
    assert Verp("bounces.example.com", b"other").row_id(addr) is None


def test_public_addresses():
    assert ssrf.public("93.184.216.34") and ssrf.public("2606:2800:220:1::1")
    for a in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
              "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1",
              "224.0.0.1"):
        assert not ssrf.public(a), a
    assert ssrf.check_url("https://hooks.example.com/x", False) is None
    assert ssrf.check_url("http://127.0.0.1/x", True) is None
    assert ssrf.check_url("http://127.0.0.1/x", False)
