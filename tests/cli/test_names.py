"""helo_smtp.names: domain names for `domains add` and mailboxes for suppressions."""

from __future__ import annotations

import pytest

from helo_smtp import names
from helo_smtp.inbound import addresses


@pytest.mark.parametrize(("given", "ascii"), [
    ("Example.COM.", "example.com"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a-b.c-d.test", "a-b.c-d.test"),
    ("x" * 63 + ".test", "x" * 63 + ".test"),
])
def test_valid_domains(given, ascii):
    assert names.domain_to_ascii(given) == ascii
    assert names.is_domain(given)


@pytest.mark.parametrize(("given", "why"), [
    ("", "empty"),
    ("a b.test", "spaces or control"),
    ("a\r\nb.test", "spaces or control"),
    ("under_score.test", "letters, digits"),
    ("-x.test", "letters, digits"),
    ("x-.test", "letters, digits"),
    ("a..test", "empty label"),
    ("x" * 64 + ".test", "longer than 63"),
    (".".join(["a" * 63] * 4) + ".test", "longer than 253"),
    ("localhost", "two labels"),
    ("10.0.0.1", "all digits"),
    ("xn--zz.test", "A-label"),
])
def test_invalid_domains(given, why):
    with pytest.raises(ValueError, match=why):
        names.domain_to_ascii(given)
    assert not names.is_domain(given)


@pytest.mark.parametrize("addr", [
    "a@example.test", "First.Last+tag@example.test", "jörg@bücher.example",
    "o'hara@example.test", "x" * 64 + "@example.test", '"john doe"@example.test',
])
def test_valid_addresses_agree_with_the_inbound_validator(addr):
    assert names.check_address(f"  <{addr}> ") == addr
    assert addresses.check_mailbox(addr, smtputf8=True) is None


@pytest.mark.parametrize(("addr", "why"), [
    ("", "empty"),
    ("plain", "local part, an @"),
    ("@example.test", "local part, an @"),
    ("a@", "local part, an @"),
    ("a..b@example.test", "dot-string"),
    ('"a"b"@example.test', "quoted string"),
    ("a b@example.test", "dot-string"),
    ("a\x00b@example.test", "control"),
    ("x" * 65 + "@example.test", "longer than 64"),
    ("a" * 5 + "@" + ".".join(["b" * 61] * 4) + ".test", "longer than 254"),
    ("a@bad_domain.test", "letters, digits"),
    ("a@localhost", "two labels"),
])
def test_invalid_addresses_name_the_reason(addr, why):
    with pytest.raises(ValueError, match=why):
        names.check_address(addr)
    assert not names.is_address(addr)
    assert addresses.check_mailbox(addr, smtputf8=True) is not None
