"""MTA-STS policy parsing and MX matching (RFC 8461 §3.1, §3.2, §4.1)."""

from __future__ import annotations

from helo_smtp.outbound.mtasts import Policy, parse_policy, parse_txt


def test_policy_file():
    text = ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
            "mx: *.example.net\r\nmax_age: 604800\r\n")
    assert parse_policy(text) == Policy("enforce", ("mail.example.com", "*.example.net"),
                                        604800)
    assert parse_policy(text.replace("\r\n", "\n")) is not None  # LF alone is accepted too


def test_invalid_policies_are_no_policy():
    assert parse_policy("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n") is None
    assert parse_policy("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n") is None
    assert parse_policy("version: STSv1\nmode: enforce\nmax_age: 1\n") is None  # no mx
    assert parse_policy("version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n") is None
    assert parse_policy("<html>not a policy</html>") is None
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 5\n") == Policy("none", (), 5)


def test_max_age_is_capped_at_one_year():
    p = parse_policy("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 99999999999\n")
    assert p is not None and p.max_age == 31_557_600


def test_wildcards_match_one_label_only():
    p = Policy("enforce", ("*.example.com", "mx.example.org"), 1)
    assert p.matches("mx1.example.com")
    assert p.matches("MX1.Example.COM.")
    assert not p.matches("a.b.example.com")  # RFC 8461 §4.1: the leftmost label only
    assert not p.matches("example.com")
    assert p.matches("mx.example.org") and not p.matches("mx2.example.org")


def test_txt_record():
    assert parse_txt(["v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert parse_txt(["v=spf1 -all", "v=STSv1; id=abc"]) == "abc"
    assert parse_txt(["v=STSv1; id=a", "v=STSv1; id=b"]) is None  # two records: none
    assert parse_txt(["v=STSv1;"]) is None
    assert parse_txt(["v=STSv1; id=not-alnum"]) is None
