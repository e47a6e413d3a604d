"""accounts, domains (without DNS), channels and credentials, including every bad-input case."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization

from helo_smtp import credsecret, keys
from tests.cli.conftest import CLI


# ---- accounts -----------------------------------------------------------------------------
def test_accounts_create_list_show_set_status(cli: CLI):
    acme = cli.json("accounts", "create", "acme")
    assert acme["status"] == "active" and acme["sends_used"] == 0
    free = cli.json("accounts", "create", "freebie", "--pending")
    assert free["status"] == "pending"
    listed = cli.json("accounts", "list")
    assert [(a["name"], a["status"]) for a in listed] == [("acme", "active"),
                                                          ("freebie", "pending")]
    assert acme["created_at"].endswith("Z")
    table = cli.ok("accounts", "list").stdout.splitlines()
    assert table[0].split() == ["id", "name", "status", "sends_used", "created_at"]
    assert table[1].split()[:3] == [acme["id"], "acme", "active"]
    by_name = cli.json("accounts", "show", "acme")
    by_id = cli.json("accounts", "show", acme["id"])
    assert by_name == by_id and by_name["domains"] == [] and by_name["credentials"] == 0
    changed = cli.json("accounts", "set-status", "acme", "forbidden")
    assert changed["status"] == "forbidden"
    assert cli.json("accounts", "show", acme["id"])["status"] == "forbidden"


def test_accounts_bad_input(cli: CLI):
    cli.ok("accounts", "create", "acme")
    assert cli.fail("accounts", "create", "acme") == "Error: account 'acme' already exists"
    assert "no account 'ghost'" in cli.fail("accounts", "show", "ghost")
    assert "no account 'ghost'" in cli.fail("accounts", "set-status", "ghost", "active")
    assert "'sleeping'" in cli.fail("accounts", "set-status", "acme", "sleeping", code=2)
    assert "must not be empty" in cli.fail("accounts", "create", "  ")


# ---- domains ------------------------------------------------------------------------------
def test_domains_add_prints_records_and_stores_a_working_dkim_key(cli: CLI, db_store):
    cli.ok("accounts", "create", "acme")
    out = cli.json("domains", "add", "Example.TEST.", "--account", "acme")
    assert out["name"] == "example.test" and out["verified"] is False
    dom = db_store.domains.require("example.test")
    assert out["records"] == [
        {"name": "_helo.example.test", "type": "TXT",
         "value": keys.VERIFY_PREFIX + dom.verify_token},
        {"name": f"{dom.dkim_selector}._domainkey.example.test", "type": "TXT",
         "value": keys.dkim_record(dom.dkim_public_key)}]
    key = serialization.load_pem_private_key(dom.dkim_private_key.encode(), None)
    assert key.key_size == 2048  # the default
    # The published p= value verifies what the stored private key signs (dkimpy).
    msg = b"From: a@example.test\r\nTo: b@x.test\r\nSubject: s\r\n\r\nbody\r\n"
    sig = dkim.sign(msg, dom.dkim_selector.encode(), b"example.test",
                    dom.dkim_private_key.encode(), include_headers=[b"from", b"subject"])
    record = keys.dkim_record(dom.dkim_public_key).encode()
    assert dkim.verify(sig + msg, dnsfunc=lambda name, timeout=5: record)
    human = cli.ok("domains", "show", "example.test").stdout
    assert f"_helo.example.test. IN TXT \"helo-verify={dom.verify_token}\"" in human
    # A long DKIM key is split into 255-octet strings, the zone-file form.
    dkim_line = next(line for line in human.splitlines() if "_domainkey" in line)
    assert all(len(chunk) <= 255 for chunk in dkim_line.split('"')[1::2])
    assert "".join(dkim_line.split('"')[1::2]) == keys.dkim_record(dom.dkim_public_key)


def test_domains_list_show_and_idna(cli: CLI):
    cli.ok("accounts", "create", "acme")
    cli.ok("accounts", "create", "other")
    cli.ok("domains", "add", "bücher.test", "--account", "acme", "--bits", "1024")
    cli.ok("domains", "add", "other.test", "--account", "other", "--bits", "1024")
    assert [d["name"] for d in cli.json("domains", "list")] == ["other.test",
                                                                "xn--bcher-kva.test"]
    mine = cli.json("domains", "list", "--account", "acme")
    assert [(d["name"], d["account"], d["verified"]) for d in mine] == [
        ("xn--bcher-kva.test", "acme", False)]
    assert cli.json("domains", "show", "bücher.test")["name"] == "xn--bcher-kva.test"
    assert cli.json("domains", "show", mine[0]["id"])["name"] == "xn--bcher-kva.test"


@pytest.mark.parametrize(("name", "why"), [
    ("bad_domain.test", "letters, digits"),
    ("lead-.test", "letters, digits"),
    ("a..test", "empty label"),
    ("localhost", "two labels"),
    ("192.0.2.1", "all digits"),
    ("x" * 64 + ".test", "longer than 63"),
    (("a" * 60 + ".") * 5 + "test", "longer than 253"),
    ("xn--zz.test", "A-label"),
])
def test_domains_add_refuses_bad_domains(cli: CLI, name, why):
    cli.ok("accounts", "create", "acme")
    msg = cli.fail("domains", "add", name, "--account", "acme", "--bits", "1024")
    assert msg.startswith("Error: invalid domain") and why in msg


def test_domains_bad_input(cli: CLI):
    cli.ok("accounts", "create", "acme")
    cli.ok("domains", "add", "dup.test", "--account", "acme", "--bits", "1024")
    assert "already exists" in cli.fail("domains", "add", "DUP.test", "--account", "acme")
    assert "no account 'ghost'" in cli.fail("domains", "add", "new.test", "--account", "ghost")
    assert "no domain 'nope.test'" in cli.fail("domains", "show", "nope.test")
    assert "no domain 'nope.test'" in cli.fail("domains", "verify", "nope.test")
    assert "no domain 'nope.test'" in cli.fail("domains", "dkim-rotate", "nope.test")
    assert "'512'" in cli.fail("domains", "add", "x.test", "--account", "acme", "--bits", "512",
                               code=2)


def test_dkim_rotate_installs_a_new_selector_and_key(cli: CLI, db_store):
    cli.ok("accounts", "create", "acme")
    cli.ok("domains", "add", "rot.test", "--account", "acme", "--bits", "1024")
    before = db_store.domains.require("rot.test")
    out = cli.json("domains", "dkim-rotate", "rot.test", "--bits", "1024")
    after = db_store.domains.require("rot.test")
    assert out["old_selector"] == before.dkim_selector
    assert out["dkim_selector"] == after.dkim_selector != before.dkim_selector
    assert after.dkim_public_key != before.dkim_public_key
    assert after.dkim_private_key != before.dkim_private_key
    assert out["record"] == {"name": f"{after.dkim_selector}._domainkey.rot.test",
                             "type": "TXT", "value": keys.dkim_record(after.dkim_public_key)}
    assert after.verify_token == before.verify_token  # the ownership proof is unchanged


# ---- channels -----------------------------------------------------------------------------
def test_channels_create_list_show_update(cli: CLI):
    cli.ok("accounts", "create", "acme")
    cli.ok("accounts", "create", "other")
    news = cli.json("channels", "create", "--account", "acme", "--name", "news",
                    "--track-opens", "--track-links")
    assert (news["track_opens"], news["track_links"], news["account"]) == (True, True, "acme")
    plain = cli.json("channels", "create", "--account", "acme", "--name", "receipts")
    assert (plain["track_opens"], plain["track_links"]) == (False, False)
    cli.ok("channels", "create", "--account", "other", "--name", "receipts")
    assert len(cli.json("channels", "list")) == 3
    assert [c["name"] for c in cli.json("channels", "list", "--account", "acme")] == [
        "news", "receipts"]
    # "receipts" exists twice: the name alone is ambiguous, ACCOUNT/NAME is not.
    assert "ambiguous" in cli.fail("channels", "show", "receipts")
    shown = cli.json("channels", "show", "acme/receipts")
    assert shown["id"] == plain["id"]
    assert (shown["messages"], shown["pending"], shown["suppressions"],
            shown["credentials"]) == (0, 0, 0, 0)
    assert cli.json("channels", "show", "news")["id"] == news["id"]
    upd = cli.json("channels", "update", "news", "--no-track-links", "--name", "letters")
    assert (upd["name"], upd["track_opens"], upd["track_links"]) == ("letters", True, False)
    assert cli.json("channels", "show", news["id"])["name"] == "letters"


def test_channels_bad_input(cli: CLI):
    cli.ok("accounts", "create", "acme")
    cli.ok("channels", "create", "--account", "acme", "--name", "news")
    cli.ok("channels", "create", "--account", "acme", "--name", "other")
    assert "already exists" in cli.fail("channels", "create", "--account", "acme", "--name",
                                        "news")
    assert "no account" in cli.fail("channels", "create", "--account", "x", "--name", "n")
    assert "no channel 'ghost'" in cli.fail("channels", "show", "ghost")
    assert "already exists" in cli.fail("channels", "update", "other", "--name", "news")
    assert "nothing to update" in cli.fail("channels", "update", "other")
    assert "no channel 'ghost'" in cli.fail("channels", "delete", "ghost")


def test_channels_delete_revokes_credentials(cli: CLI, db_store):
    cli.ok("accounts", "create", "acme")
    ch = cli.json("channels", "create", "--account", "acme", "--name", "old")
    cred = cli.json("credentials", "create", "--channel", "acme/old")
    out = cli.json("channels", "delete", "acme/old")
    assert out == {"id": ch["id"], "name": "old", "deleted": True, "purged_recipients": 0}
    assert cli.json("channels", "list") == []
    assert db_store.credentials.get(cred["id"]).revoked_at is not None
    assert db_store.credentials.lookup(cred["username"]) is None


# ---- credentials --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # reads the database files
def test_credentials_secret_is_shown_once_and_not_stored(cli: CLI, db_store):
    cli.ok("accounts", "create", "acme")
    ch = cli.json("channels", "create", "--account", "acme", "--name", "main")
    res = cli.ok("credentials", "create", "--channel", ch["id"], "--name", "billing")
    fields = dict(line.split(None, 1) for line in res.stdout.splitlines())
    secret, username = fields["secret"], fields["username"]
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32  # 256 random bits
    assert "shown only now" in res.stderr
    # The relay can verify it ...
    cred, stored = db_store.credentials.lookup(username)
    assert cred.channel_id == ch["id"] and credsecret.verify_secret(secret, stored)
    assert stored.startswith("hmac-sha256$")
    # ... but neither list shows it or its hash ...
    for out in (cli.ok("credentials", "list").stdout,
                cli.ok("credentials", "list", "--json").stdout,
                cli.ok("credentials", "list", "--all", "--json").stdout):
        assert username in out and secret not in out and stored not in out
        assert "hash" not in out
    # ... and the database files (main, -wal, -shm) do not hold it.
    files = list(cli.db.parent.glob("helo.db*"))
    assert cli.db in files
    for f in files:
        data = f.read_bytes()
        assert secret.encode() not in data, f
        assert base64.b64encode(secret.encode()) not in data, f


def test_credentials_account_scope_list_filters_and_revoke(cli: CLI):
    cli.ok("accounts", "create", "acme")
    cli.ok("accounts", "create", "other")
    cli.ok("channels", "create", "--account", "acme", "--name", "main")
    wide = cli.json("credentials", "create", "--account", "acme")
    assert wide["channel_id"] is None and wide["account"] == "acme"
    scoped = cli.json("credentials", "create", "--channel", "acme/main", "--account", "acme")
    cli.json("credentials", "create", "--account", "other")
    assert {c["username"] for c in cli.json("credentials", "list", "--account", "acme")} == {
        wide["username"], scoped["username"]}
    assert [c["username"] for c in cli.json("credentials", "list", "--channel", "acme/main")
            ] == [scoped["username"]]
    revoked = cli.json("credentials", "revoke", wide["username"])
    assert revoked["revoked_at"] is not None
    assert wide["username"] not in {c["username"] for c in cli.json("credentials", "list")}
    assert wide["username"] in {c["username"] for c in cli.json("credentials", "list", "--all")}
    again = cli.ok("credentials", "revoke", wide["id"])
    assert "already revoked" in again.stderr
    assert cli.json("accounts", "show", "acme")["credentials"] == 1


def test_credentials_bad_input(cli: CLI):
    cli.ok("accounts", "create", "acme")
    cli.ok("accounts", "create", "other")
    cli.ok("channels", "create", "--account", "acme", "--name", "main")
    assert "give --channel" in cli.fail("credentials", "create")
    assert "no channel 'ghost'" in cli.fail("credentials", "create", "--channel", "ghost")
    assert "no account 'ghost'" in cli.fail("credentials", "create", "--account", "ghost")
    assert "does not belong" in cli.fail("credentials", "create", "--channel", "acme/main",
                                         "--account", "other")
    assert "no credential 'hs_nope'" in cli.fail("credentials", "revoke", "hs_nope")
