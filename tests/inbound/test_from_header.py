"""From: and Sender: spoofing across tenants (SPEC §14, issue #15 item 1), on a real listener.

Tenant ``acme`` has verified ``sender.test`` and ``bücher.test``; tenant ``beta`` has verified
``beta.test``. Each case is a spelling an attacker holding acme's credential would try, with
what a mail client shows for it; the relay must refuse every spelling where a client could
show an address outside acme's verified domains, and check exactly the mailboxes it keeps.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.parser import HeaderParser

import idna
import pytest

from helo_smtp import keys
from helo_smtp.errors import CATALOG
from helo_smtp.inbound import headers, mailboxes
from helo_smtp.inbound.controls import DETAILS
from tests.inbound.clients import accepted, other_tenant, send, session

INVALID = CATALOG["validation_error"].line(DETAILS["from"])
UNVERIFIED = CATALOG["domain_unverified"].line()
OK = "ok"
SENDER_OK = "app@sender.test"

# (id, header lines, expected reply, what a mail client shows (Thunderbird / Gmail reading))
CASES = [
    ("display-name-is-an-address", ["From: app@sender.test <y@beta.test>"], INVALID,
     "app@sender.test <y@beta.test>, replies go to y@beta.test"),
    ("quoted-display-holds-foreign", ['From: "app@sender.test" <y@beta.test>'], INVALID,
     "app@sender.test (the real address hidden behind it)"),
    ("quoted-display-holds-own", ['From: "ceo@beta.test" <app@sender.test>'], INVALID,
     "ceo@beta.test"),
    ("quoted-with-at-and-angles", ['From: "y@beta.test <y@beta.test>" <app@sender.test>'],
     INVALID, "y@beta.test <y@beta.test>"),
    ("comment-holds-address", ["From: app@sender.test (y@beta.test)"], INVALID,
     "app@sender.test (y@beta.test)"),
    ("comment-before-address", ["From: (y@beta.test) app@sender.test"], INVALID,
     "(y@beta.test) app@sender.test"),
    ("angle-less-no-comma", ["From: app@sender.test y@beta.test"], INVALID,
     "y@beta.test (some clients take the last address)"),
    ("angle-less-list", ["From: app@sender.test, y@beta.test"], UNVERIFIED,
     "app@sender.test, y@beta.test"),
    ("group", ["From: Team: app@sender.test, y@beta.test;"], INVALID,
     "Team: app@sender.test, y@beta.test"),
    ("empty-group", ["From: undisclosed-senders:;"], INVALID, "undisclosed-senders"),
    ("encoded-word-is-address", ["From: =?utf-8?q?y=40beta.test?= <app@sender.test>"],
     INVALID, "y@beta.test"),
    ("encoded-word-in-quotes", ['From: "=?utf-8?b?eUBiZXRhLnRlc3Q=?=" <app@sender.test>'],
     INVALID, "y@beta.test (clients decode inside quotes too)"),
    ("encoded-word-local-part", ["From: =?utf-8?q?y=40beta.test?=@sender.test"], INVALID,
     "y@beta.test@sender.test"),
    ("folded-list", ["From: app@sender.test,", " y@beta.test"], UNVERIFIED,
     "app@sender.test, y@beta.test"),
    ("two-from", ["From: app@sender.test", "From: y@beta.test"], INVALID,
     "either one, depending on the client"),
    ("two-from-mixed-case", ["From: app@sender.test", "fROM: y@beta.test"], INVALID,
     "either one, depending on the client"),
    ("space-before-colon", ["From: app@sender.test", "From : y@beta.test"], INVALID,
     "y@beta.test where obsolete syntax is read (Postfix's cleanup takes it as a header)"),
    ("space-before-colon-first", ["From : y@beta.test"], INVALID, "y@beta.test, or no From"),
    ("mixed-case-name", ["FROM: y@beta.test"], UNVERIFIED, "y@beta.test"),
    ("bare-cr-split", ["From: app@sender.test\rReply-To: y@beta.test"], OK,
     "app@sender.test (the CR is a line break: Reply-To is its own header)"),
    ("bidi-override", ["From: =?utf-8?q?Support=E2=80=AE?= <app@sender.test>"], INVALID,
     "a name written right to left"),
    ("source-route", ["From: <@beta.test:app@sender.test>"], INVALID, "app@sender.test"),
    ("domain-literal", ["From: app@[127.0.0.1]"], INVALID, "app@[127.0.0.1]"),
    ("fullwidth-dot", ["From: app@sender\uff0etest"], INVALID, "app@sender．test"),
    ("cyrillic-lookalike", ["From: app@s\u0435nder.test"], UNVERIFIED, "app@sеnder.test"),
    ("upper-case-u-label", ["From: app@BÜCHER.test"], INVALID, "app@BÜCHER.test"),
    ("sender-foreign", [f"From: {SENDER_OK}", "Sender: y@beta.test"], UNVERIFIED,
     "y@beta.test on behalf of app@sender.test"),
    ("sender-two-mailboxes", [f"From: {SENDER_OK}", "Sender: app@sender.test, y@beta.test"],
     INVALID, "two senders"),
    ("two-senders", [f"From: {SENDER_OK}", "Sender: app@sender.test", "Sender: y@beta.test"],
     INVALID, "either one"),
    # clean spellings that must pass
    ("plain", [f"From: {SENDER_OK}"], OK, SENDER_OK),
    ("display-name", ["From: Acme Support <app@sender.test>"], OK, "Acme Support"),
    ("obs-phrase-dot", ["From: John Q. Public <app@sender.test>"], OK, "John Q. Public"),
    ("quoted-display", ['From: "Acme, Inc." <app@sender.test>'], OK, "Acme, Inc."),
    ("encoded-display", ["From: =?utf-8?q?Caf=C3=A9?= <app@sender.test>"], OK, "Café"),
    ("folded-display", ["From: Acme", " Support <app@sender.test>"], OK, "Acme Support"),
    ("plain-comment", ["From: app@sender.test (Acme App)"], OK, "app@sender.test (Acme App)"),
    ("quoted-local", ['From: "john doe"@sender.test'], OK, '"john doe"@sender.test'),
    ("upper-case-domain", ["From: app@SENDER.TEST"], OK, "app@SENDER.TEST"),
    ("lower-case-name", ["from: app@sender.test"], OK, SENDER_OK),
    ("u-label", ["From: app@bücher.test"], OK, "app@bücher.test"),
    ("a-label", ["From: app@xn--bcher-kva.test"], OK, "app@bücher.test"),
    ("own-list", ["From: app@sender.test, b@bücher.test", "Sender: app@sender.test"], OK,
     "app@sender.test, b@bücher.test"),
]


@pytest.fixture(scope="module")
def tenants(shared_relay):
    store = shared_relay.store
    other_tenant(store, "beta", "beta.test")
    private_pem, public_b64 = keys.generate_dkim_key(1024)
    idn = store.domains.add(shared_relay.tenant.account.id, "xn--bcher-kva.test",
                            keys.new_verify_token(), "sel1", private_pem, public_b64)
    store.domains.set_verified(idn.id)
    return shared_relay


def _message(lines: list[str]) -> bytes:
    head = "\r\n".join([*lines, "To: user@example.test", "Subject: hi"])
    return (head + "\r\n\r\nHello.\r\n").encode("utf-8")


@pytest.mark.parametrize(("lines", "expected"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_spelling_on_a_real_listener(tenants, client_ctx, lines, expected):
    s = session(tenants, client_ctx)
    try:
        reply = send(s, SENDER_OK, ["user@example.test"], _message(lines),
                     mail_options=("SMTPUTF8",))
    finally:
        s.close()
    if expected is OK:
        raw = tenants.store.queue.message_raw(accepted(reply))
        shown = HeaderParser(policy=email.policy.default).parsestr(raw.decode("utf-8"))
        for name in ("From", "Sender"):  # what was checked is what is delivered
            for value in shown.get_all(name) or []:
                assert all(_ascii(a.domain) in ("sender.test", "xn--bcher-kva.test")
                           for a in value.addresses), (name, str(value))
    else:
        assert reply == expected


@pytest.mark.parametrize("lines", [c[1] for c in CASES if c[2] is OK],
                         ids=[c[0] for c in CASES if c[2] is OK])
def test_accepted_spellings_agree_with_lenient_readers(lines):
    """For every accepted header, what ``email.headerregistry`` and ``getaddresses`` (the
    readers behind many clients and filters) find is exactly what the strict parser checked."""
    raw = _message(lines)
    fields, _ = headers.split(headers.normalise_line_ends(raw))
    from_field = next(f for f in fields if f.name == "from")
    ours = [(b.local, b.domain) for b in mailboxes.parse_mailbox_list(
        mailboxes.unfold(from_field.raw))]
    msg = HeaderParser(policy=email.policy.default).parsestr(raw.decode("utf-8"))
    theirs = [(a.username, _ascii(a.domain)) for a in msg["From"].addresses]
    assert theirs == ours
    legacy = email.utils.getaddresses([str(msg["From"])])
    assert [_ascii(addr.rpartition("@")[2]) for _, addr in legacy] == [d for _, d in ours]


def _ascii(domain: str) -> str:
    return idna.encode(domain, uts46=True).decode("ascii") if not domain.isascii() \
        else domain.lower()


def test_parser_refuses_what_it_cannot_check():
    for text in ["", ",", "a@b.test,", "a@b.test,,c@b.test", '"unclosed <a@b.test>',
                 "(unclosed a@b.test", "<a@b.test", "a@b.test>", "a @b.test", "a@ b.test",
                 "a.@b.test", ".a@b.test", "a..b@b.test", "a@b..test", "a@-b.test",
                 "a@b.test\0", "=?bogus-charset?q?x?= <a@b.test>", "=?utf-8?b?!!!?= <a@b.test>",
                 '"\x07" <a@b.test>', "((nested)) a@b.test", "a@xn--zz.test"]:
        with pytest.raises(mailboxes.Malformed):
            mailboxes.parse_mailbox_list(text)
