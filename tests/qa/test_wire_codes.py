"""The replies users depend on, as literals: SPEC §5's table, written out by hand, against the
catalog in errors.py. Every other test compares with ``CATALOG[...].line()``, so a changed code
(``452 4.5.3`` -> ``552``) would pass them all and change only the generated docs; here it
fails. Change a line below only together with SPEC §5 and a note to users."""

from __future__ import annotations

import pytest

from helo_smtp.errors import CATALOG, accepted_line

# SPEC §5, row by row (name: exact wire line; validation_error is followed by the limit's name)
SPEC_TABLE = {
    "idempotency_conflict":
        "550 5.7.0 idempotency_conflict: key already used for a different message",
    "auth_required": "530 5.7.0 Authentication required",
    "encryption_required":
        "538 5.7.11 Encryption required for requested authentication mechanism",
    "auth_invalid": "535 5.7.8 Authentication credentials invalid",
    "auth_locked": "421 4.7.0 Too many authentication failures, try again later",
    "account_forbidden": "550 5.7.1 account_forbidden: account may not send",
    "domain_unverified": "550 5.7.1 domain_unverified: sender domain is not verified",
    "channel_not_found":
        "550 5.7.1 channel_not_found: channel does not exist or is not accessible",
    "recipient_forbidden":
        "550 5.7.1 recipient_forbidden: pending accounts may only send to their own domain",
    "send_limit_exceeded": "550 5.7.1 send_limit_exceeded: free send limit reached",
    "too_many_recipients": "452 4.5.3 Too many recipients",
    "recipients_suppressed": "550 5.7.1 recipients_suppressed: all recipients are suppressed",
    "templating_error": "550 5.6.0 templating_error: template could not be rendered",
    "validation_error": "550 5.6.0 validation_error: ",
    "mail_type_conflict": "550 5.6.0 mail_type_conflict: header contradicts the listener",
    "bad_recipient": "501 5.1.3 Bad recipient address syntax",
    "bad_sender": "501 5.1.7 Bad sender address syntax",
    "bad_helo": "501 5.5.2 Invalid domain name",
    "nul_characters": "550 5.6.0 NUL characters are not allowed",
    "message_too_large": "552 5.3.4 Message size exceeds fixed limit",
    "too_many_connections": "421 4.7.0 Too many connections, try again later",
    "queue_full": "451 4.3.2 System not accepting messages, try again later",
    "local_error": "451 4.3.0 Local error in processing",
    "insufficient_storage": "452 4.3.1 Insufficient system storage",
}
# Not rows of the table, but what clients and their retry logic key on.
ALSO = {
    "timeout": "421 4.4.2 Timeout, closing connection",
    "shutting_down": "421 4.3.2 Service shutting down, try again later",
    "too_many_commands": "421 4.7.0 Too many commands, closing connection",
    "too_many_errors": "421 4.7.0 Too many errors, closing connection",
    "line_too_long": "500 5.5.2 Line too long",
    "auth_ok": "235 2.7.0 Authentication successful",
    "sender_ok": "250 2.1.0 Sender ok",
    "recipient_ok": "250 2.1.5 Recipient ok",
    "smtputf8_required": "553 5.6.7 SMTPUTF8 required for non-ASCII address",
    "auth_mechanism_unknown": "504 5.5.4 Unrecognized authentication type",
    "tls_not_available": "454 4.7.0 TLS not available",
    "bye": "221 2.0.0 Bye",
}
#: SPEC §5: "... and close".
CLOSING = {"auth_locked", "too_many_connections", "timeout", "shutting_down",
           "too_many_commands", "too_many_errors", "bye"}


@pytest.mark.parametrize("name", [*SPEC_TABLE, *ALSO])
def test_wire_line_is_the_documented_literal(name):
    assert CATALOG[name].line() == {**SPEC_TABLE, **ALSO}[name]


def test_replies_that_close_the_connection():
    assert {name for name, reply in CATALOG.items() if reply.close} == CLOSING


def test_accepted_line_literals():
    assert accepted_line("0190a0b0-0000-7000-8000-000000000001") == \
        "250 2.0.0 Ok: queued as 0190a0b0-0000-7000-8000-000000000001"
    assert accepted_line("m1", ["a@x.test", "b@y.test"]) == \
        "250 2.0.0 Ok: queued as m1; suppressed: a@x.test, b@y.test"
    long = accepted_line("m1", [f"user{i:03d}@example.test" for i in range(40)])
    assert long.endswith(", ...") and len(long.split("; suppressed: ")[1]) <= 405
