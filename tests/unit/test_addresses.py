"""Envelope paths, mailboxes and EHLO names (helo_smtp.inbound.addresses)."""

from __future__ import annotations

import pytest
from aiosmtplib.email import quote_address
from hypothesis import given
from hypothesis import strategies as st

from helo_smtp.inbound.addresses import (
    AddressProblem,
    ascii_domain,
    check_mailbox,
    domain_of,
    parse_path,
    valid_helo,
)

S, U = AddressProblem.SYNTAX, AddressProblem.NEEDS_SMTPUTF8


@pytest.mark.parametrize("arg,expected", [
    ("<a@b.test>", ("a@b.test", "")),
    ("<a@b.test> SIZE=10 BODY=8BITMIME", ("a@b.test", "SIZE=10 BODY=8BITMIME")),
    ("<@relay.one,@relay.two:a@b.test>", ("a@b.test", "")),
    ("a@b.test", ("a@b.test", "")),
    ("a@b.test SMTPUTF8", ("a@b.test", "SMTPUTF8")),
    ("<>", None),
    ("<a@b.test", None),
    ("<a@b.test>SIZE=1", None),
    ("<a@b.test>\rRCPT TO:<c@d.test>", None),
])
def test_parse_path(arg, expected):
    assert parse_path(arg) == expected


@pytest.mark.parametrize("address,utf8,expected", [
    ("user@example.test", False, None),
    ("first.last+tag@sub.example.test", False, None),
    ("o'neil!#$%&*/=?^_`{|}~-@example.test", False, None),
    ("user@EXAMPLE.test", False, None),
    ("üser@example.test", False, U),
    ("user@exämple.test", False, U),
    ("üser@exämple.test", True, None),
    ("a\x00b@example.test", False, S),
    ("a\x00b@example.test", True, S),
    ("a\u2028b@example.test", True, S),
    ("a\udcffb@example.test", True, S),
    ("a b@example.test", False, S),
    ('"quoted"@example.test', False, None),  # RFC 5321 §4.1.2 Quoted-string
    ('"john doe"@example.test', False, None),
    ('"a\\"b@c"@example.test', False, None),  # quoted-pair, and an @ inside the quotes
    ('"jörg"@example.test', False, U),
    ('"jörg"@example.test', True, None),
    ('""@example.test', False, S),
    ('"a"b"@example.test', False, S),
    ('"a\x01"@example.test', False, S),
    ('"a\\\x01"@example.test', False, S),
    ('"' + "a" * 63 + '"@example.test', False, S),  # 65 octets with its quotes
    ("a..b@example.test", False, S),
    (".a@example.test", False, S),
    ("a.@example.test", False, S),
    ("@example.test", False, S),
    ("user", False, S),
    ("a" * 64 + "@example.test", False, None),
    ("a" * 65 + "@example.test", False, S),
    ("é" * 33 + "@example.test", True, S),  # 66 octets in UTF-8
    ("a" * 10 + "@" + ".".join(["d" * 60] * 4) + ".test", False, S),  # 259 octets
    ("user@localhost", False, S),
    ("user@[127.0.0.1]", False, S),
    ("user@1.2.3.4", False, S),
    ("user@-x.test", False, S),
    ("user@x-.test", False, S),
    ("user@under_score.test", False, S),
    ("user@" + "d" * 64 + ".test", False, S),
])
def test_check_mailbox(address, utf8, expected):
    assert check_mailbox(address, utf8) == expected


def test_domains():
    assert ascii_domain("Exämple.TEST") == "xn--exmple-cua.test"
    assert ascii_domain("a.b") == "a.b"
    assert ascii_domain("") is None and ascii_domain("a..b") is None
    assert domain_of("User@Example.Test") == "example.test"


@pytest.mark.parametrize("name,ok", [
    ("client.test", True), ("localhost", True), ("DESKTOP_12", True), ("host.", True),
    ("[192.0.2.1]", True), ("[IPv6:2001:db8::1]", True), ("[ipv6:::1]", True),
    ("", False), ("bad host", False), ("a\x00b", False), ("a\rb", False),
    ("[1.2.3.999]", False), ("[IPv6:1.2.3.4]", False), ("[2001:db8::1]", False),
    ("-bad.test", False), ("hé.test", False), ("a..b", False), ("x" * 64, False),
])
def test_valid_helo(name, ok):
    assert valid_helo(name) is ok


_ANY = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@given(local=_ANY, domain=st.sampled_from(["example.test", "exämple.test", "x.test"]),
       utf8=st.booleans())
def test_accepted_mailboxes_round_trip_through_aiosmtplib(local, domain, utf8):
    """Whatever we accept, the delivery side writes back unchanged (SPEC §7, RFC 5321)."""
    address = f"{local}@{domain}"
    if check_mailbox(address, utf8) is None:
        assert quote_address(address) == f"<{address}>"
        assert parse_path(f"<{address}>") == (address, "")


def test_idna_matches_the_cli_mapping():
    """Inbound and the CLI must map a Unicode domain to the same A-label (UTS #46)."""
    from helo_smtp.inbound.addresses import ascii_domain
    from helo_smtp.names import domain_to_ascii

    for name in ("straße.de", "bücher.example", "ÉCOLE.fr"):
        assert ascii_domain(name) == domain_to_ascii(name)
