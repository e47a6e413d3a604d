"""domains verify against the local DNS server (the config's [dns] points at it)."""

from __future__ import annotations

import pytest

from helo_smtp import keys
from helo_smtp.config import DNSConfig
from helo_smtp.domainverify import Outcome, check
from tests.cli.conftest import CLI


@pytest.fixture
def domain(cli: CLI, db_store):
    """An unverified domain verify.test of account acme; returns its token."""
    cli.ok("accounts", "create", "acme")
    cli.ok("domains", "add", "verify.test", "--account", "acme", "--bits", "1024")
    return db_store.domains.require("verify.test").verify_token


def test_right_token_verifies(cli: CLI, dns, db_store, domain):
    dns.add("_helo.verify.test", "TXT", '"v=spf1 -all"', f'"{keys.VERIFY_PREFIX}{domain}"')
    res = cli.ok("domains", "verify", "verify.test")
    assert "verify.test: verified" in res.stdout
    dom = db_store.domains.require("verify.test")
    assert dom.verified and dom.verified_at is not None
    assert ("_helo.verify.test.", "TXT", "udp") in dns.queries
    assert cli.json("domains", "show", "verify.test")["verified"] is True


def test_token_split_in_several_strings_is_joined(cli: CLI, dns, db_store, domain):
    value = keys.VERIFY_PREFIX + domain
    dns.add("_helo.verify.test", "TXT", f'"{value[:10]}" "{value[10:]}"')
    cli.ok("domains", "verify", "verify.test")
    assert db_store.domains.require("verify.test").verified


def test_wrong_token_is_refused(cli: CLI, dns, db_store, domain):
    dns.add("_helo.verify.test", "TXT", f'"{keys.VERIFY_PREFIX}0123456789abcdef"')
    msg = cli.fail("domains", "verify", "verify.test")
    assert "not verified" in msg and "different token" in msg and domain in msg
    assert not db_store.domains.require("verify.test").verified
    res = cli.run("domains", "verify", "verify.test", "--json")
    assert res.exit_code == 1 and '"outcome": "wrong_token"' in res.stdout


def test_missing_record_nxdomain_and_nodata(cli: CLI, dns, db_store, domain):
    msg = cli.fail("domains", "verify", "verify.test")
    assert "no TXT record at _helo.verify.test" in msg and "NXDOMAIN" in msg
    dns.add("_helo.verify.test", "A", "192.0.2.1")  # the name exists, no TXT
    msg = cli.fail("domains", "verify", "verify.test")
    assert "no TXT record at _helo.verify.test" in msg and "NXDOMAIN" not in msg
    dns.add("_helo.verify.test", "TXT", '"something else"')
    assert "none starting with helo-verify=" in cli.fail("domains", "verify", "verify.test")
    assert not db_store.domains.require("verify.test").verified


def test_servfail_is_a_lookup_failure(cli: CLI, dns, db_store, domain):
    dns.add("_helo.verify.test", "TXT", f'"{keys.VERIFY_PREFIX}{domain}"')
    dns.servfail.add("verify.test")
    msg = cli.fail("domains", "verify", "verify.test")
    assert "SERVFAIL" in msg and "try again later" in msg
    assert not db_store.domains.require("verify.test").verified


def test_failed_recheck_keeps_an_earlier_verification(cli: CLI, dns, db_store, domain):
    dns.add("_helo.verify.test", "TXT", f'"{keys.VERIFY_PREFIX}{domain}"')
    cli.ok("domains", "verify", "verify.test")
    dns.remove("_helo.verify.test")
    msg = cli.fail("domains", "verify", "verify.test")
    assert "stays verified" in msg
    assert db_store.domains.require("verify.test").verified


def test_timeout_names_the_limit(dns):
    dns.drop.add("slow.test")
    cfg = DNSConfig(nameservers=["127.0.0.1"], port=dns.port, timeout=0.3)
    verdict = check("slow.test", "tok", cfg)
    assert verdict.outcome == Outcome.TIMEOUT and not verdict.ok
    assert "timed out after 0.3s" in verdict.message
