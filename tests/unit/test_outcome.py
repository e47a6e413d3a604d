"""The failure policy (outcome.py), reply parsing, exception translation and bounce
classification, the last against real provider replies."""

from __future__ import annotations

import ssl

import aiosmtplib
import dns.exception
import dns.resolver
import pytest

from helo_smtp.models import SUPPRESSING_CATEGORIES
from helo_smtp.models import BounceCategory as C
from helo_smtp.outbound.classify import classify
from helo_smtp.outbound.outcome import (
    Action,
    decide,
    from_reply,
    is_overflow,
    local,
    split_status,
)
from helo_smtp.outbound.translate import from_exception

# ---- reply parsing -------------------------------------------------------------------------


def test_split_status_reads_the_enhanced_code_and_joins_lines():
    assert split_status("5.1.1 The email account\n5.1.1 does not exist") == (
        "5.1.1", "The email account 5.1.1 does not exist")
    assert split_status("Requested action aborted") == (None, "Requested action aborted")
    assert split_status("4.7.28 rate limited") == ("4.7.28", "rate limited")


def test_a_status_whose_class_contradicts_the_code_is_dropped():
    o = from_reply("rcpt", 550, "4.2.2 Mailbox full")
    assert o.status is None and o.permanent


def test_2xx_is_delivered():
    o = from_reply("data", 250, "2.0.0 Ok: queued as 1234")
    assert o.delivered and o.category is None
    assert decide(o, last_host=False) == Action.DELIVERED


# ---- the policy -----------------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["ehlo", "mail", "rcpt", "data"])
def test_4xx_tries_the_next_host_then_defers_at_the_last(stage):
    o = from_reply(stage, 451, "4.3.0 try later")
    assert decide(o, last_host=False) == Action.NEXT_HOST
    assert decide(o, last_host=True) == Action.DEFER


@pytest.mark.parametrize("stage", ["ehlo", "mail", "rcpt", "data"])
def test_5xx_bounces_wherever_it_comes(stage):
    o = from_reply(stage, 550, "5.1.1 No such user")
    assert decide(o, last_host=False) == Action.BOUNCE


def test_a_5xx_greeting_only_skips_the_host():
    o = from_reply("banner", 554, "5.7.1 No SMTP service here")
    assert not o.permanent
    assert decide(o, last_host=False) == Action.NEXT_HOST
    assert decide(o, last_host=True) == Action.DEFER


def test_a_lost_connection_after_data_is_deferred_never_sent_elsewhere():
    o = from_exception(aiosmtplib.SMTPServerDisconnected("lost"), "data")
    assert o.ambiguous and not o.permanent and o.category == C.CONNECTION
    assert decide(o, last_host=False) == Action.DEFER
    before = from_exception(aiosmtplib.SMTPServerDisconnected("lost"), "rcpt")
    assert decide(before, last_host=False) == Action.NEXT_HOST


def test_timeouts_and_connection_failures_are_transient():
    for exc, stage in [(aiosmtplib.SMTPConnectTimeoutError("t"), "connect"),
                       (aiosmtplib.SMTPConnectError("refused"), "connect"),
                       (aiosmtplib.SMTPReadTimeoutError("t"), "mail"),
                       (ConnectionResetError("reset"), "rcpt"),
                       (OSError(113, "No route to host"), "connect")]:
        o = from_exception(exc, stage)
        assert not o.permanent and o.category == C.CONNECTION and o.status.startswith("4.4.")
        assert o.code is None


def test_a_data_timeout_is_ambiguous():
    o = from_exception(aiosmtplib.SMTPReadTimeoutError("timed out"), "data")
    assert o.ambiguous and decide(o, last_host=False) == Action.DEFER


def test_tls_handshake_failures_are_transient_tls_failures():
    o = from_exception(ssl.SSLCertVerificationError(1, "certificate verify failed"),
                       "starttls")
    assert (o.stage, o.status, o.category, o.permanent) == ("starttls", "4.7.5", C.TLS, False)
    o = from_exception(ConnectionResetError("reset by peer"), "starttls")
    assert o.category == C.TLS


def test_smtp_replies_inside_exceptions_keep_their_code():
    o = from_exception(aiosmtplib.SMTPRecipientRefused(550, "5.1.1 No such user", "a@b"),
                       "rcpt")
    assert (o.code, o.status, o.permanent, o.category) == (550, "5.1.1", True,
                                                           C.INVALID_RECIPIENT)
    banner = from_exception(aiosmtplib.SMTPConnectResponseError(554, "5.7.1 go away"),
                            "connect")
    assert banner.stage == "banner" and not banner.permanent


def test_dns_failures():
    nx = from_exception(dns.resolver.NXDOMAIN(qnames=["x.test."]), "dns")
    assert (nx.status, nx.category, nx.permanent) == ("5.1.2", C.DOMAIN_NOT_FOUND, True)
    for exc in (dns.exception.Timeout(), dns.resolver.NoNameservers()):
        o = from_exception(exc, "dns")
        assert (o.status, o.category, o.permanent) == ("4.4.3", C.DNS, False)


def test_overflow_is_452_4_5_3_at_rcpt_only():
    assert is_overflow(from_reply("rcpt", 452, "4.5.3 Too many recipients"))
    assert not is_overflow(from_reply("rcpt", 452, "4.2.2 Mailbox full"))
    assert not is_overflow(from_reply("mail", 452, "4.5.3 Too many recipients"))


def test_local_failures_take_permanence_from_their_status():
    assert local("dns", "5.1.10", "null MX", C.DOMAIN_NOT_FOUND).permanent
    assert not local("deadline", "4.4.2", "deadline", C.CONNECTION).permanent


# ---- classification: real provider replies -----------------------------------------------

PROVIDER_REPLIES = [
    # Gmail
    (550, "5.1.1 The email account that you tried to reach does not exist. Please try "
          "double-checking the recipient's email address for typos or unnecessary spaces. "
          "For more information, go to https://support.google.com/mail/?p=NoSuchUser",
     C.INVALID_RECIPIENT),
    (550, "5.2.1 The email account that you tried to reach is disabled. Learn more at "
          "https://support.google.com/mail/?p=DisabledUser", C.INVALID_RECIPIENT),
    (552, "5.2.2 The recipient's inbox is out of storage space. Please direct the recipient "
          "to https://support.google.com/mail/?p=OverQuotaPerm", C.MAILBOX_FULL),
    (452, "4.2.2 The email account that you tried to reach is over quota. Please direct the "
          "recipient to https://support.google.com/mail/?p=OverQuotaTemp", C.MAILBOX_FULL),
    (550, "5.7.26 This mail is unauthenticated, which poses a security risk to the sender and "
          "Gmail users, and has been blocked. The sender must authenticate with at least one "
          "of SPF or DKIM. To best protect our users from spam, the message has been blocked.",
     C.POLICY),
    (550, "5.7.1 Our system has detected that this message is likely unsolicited mail. To "
          "reduce the amount of spam sent to Gmail, this message has been blocked.",
     C.SPAM_BLOCK),
    (421, "4.7.28 Our system has detected an unusual rate of unsolicited mail originating "
          "from your IP address. To protect our users from spam, mail sent from your IP "
          "address has been temporarily rate limited.", C.RATE_LIMITED),
    (550, "5.7.1 Our system has detected that this message is suspicious due to the very "
          "low reputation of the sending domain. To best protect our users from spam, the "
          "message has been blocked.", C.REPUTATION),
    (552, "5.7.0 This message was blocked because its content presents a potential security "
          "issue.", C.CONTENT),
    (452, "4.2.1 The user you are trying to contact is receiving mail at a rate that "
          "prevents additional messages from being delivered.", C.RATE_LIMITED),
    (550, "5.7.25 The IP address sending this message does not have a PTR record setup, or "
          "the corresponding forward DNS entry does not point to the sending IP.", C.POLICY),
    # Microsoft / Outlook / Exchange Online
    (550, "5.5.0 Requested action not taken: mailbox unavailable (S2017062302).",
     C.INVALID_RECIPIENT),
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     C.INVALID_RECIPIENT),
    (550, "5.4.1 Recipient address rejected: Access denied. AS(201806281)",
     C.INVALID_RECIPIENT),
    (550, "5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
          "Internet service provider since part of their network is on our block list "
          "(S3150).", C.REPUTATION),
    (550, "5.7.511 Access denied, banned sender[192.0.2.1]. To request removal from this list "
          "please forward this message to delist@messaging.microsoft.com.", C.REPUTATION),
    (451, "4.7.500 Server busy. Please try again later from [192.0.2.1]. (S77714)",
     C.RATE_LIMITED),
    (554, "5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException",
     C.MAILBOX_FULL),
    (550, "5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
     C.REPUTATION),
    # Yahoo / AOL
    (554, "delivery error: dd This user doesn't have a yahoo.com account "
          "(someone@yahoo.com) [0] - mta1234.mail.gq1.yahoo.com", C.INVALID_RECIPIENT),
    (554, "delivery error: dd Sorry your message to someone@yahoo.com cannot be delivered. "
          "This mailbox is disabled (554.30). - mta1234.mail.bf1.yahoo.com",
     C.INVALID_RECIPIENT),
    (421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected "
          "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/"
          "error-codes", C.REPUTATION),
    (553, "5.7.2 [TSS09] All messages from 192.0.2.1 will be permanently deferred; Retrying "
          "will NOT succeed. See https://postmaster.yahooinc.com/error-codes", C.REPUTATION),
    (554, "5.7.9 Message not accepted for policy reasons.  See "
          "https://postmaster.yahooinc.com/error-codes", C.POLICY),
    # Apple / iCloud
    (550, "5.1.1 <someone@icloud.com>: user does not exist", C.INVALID_RECIPIENT),
    (552, "5.2.2 <someone@icloud.com>: user is over quota", C.MAILBOX_FULL),
    (554, "5.7.1 [CS01] Message rejected due to local policy. Please visit "
          "https://support.apple.com/en-us/HT204137", C.POLICY),
    (550, "5.7.0 Blocked - see https://ipcheck.proofpoint.com/?ip=192.0.2.1", C.REPUTATION),
    (554, "5.7.1 [HM08] Message rejected due to local policy. Please visit "
          "https://support.apple.com/en-us/HT204137", C.POLICY),
    # Generic MTAs
    (550, "5.1.1 <x@example.org>: Recipient address rejected: User unknown in virtual "
          "mailbox table", C.INVALID_RECIPIENT),
    (554, "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using "
          "zen.spamhaus.org", C.REPUTATION),
    (554, "5.7.1 <x@example.org>: Relay access denied", C.POLICY),
    (552, "5.3.4 Message size exceeds fixed maximum message size", C.CONTENT),
    (550, "5.7.1 Requested action not taken: mailbox unavailable, rejected by policy",
     C.POLICY),
    (451, "4.3.0 Temporary server error. Please try again later", C.OTHER),
]


@pytest.mark.parametrize(("code", "message", "category"), PROVIDER_REPLIES)
def test_provider_replies_are_classified(code, message, category):
    o = from_reply("rcpt", code, message)
    assert o.category == category, message


def test_only_recipient_class_categories_would_suppress():
    """Reputation, policy, spam and rate-limit replies never land in a suppressing class."""
    for code, message, category in PROVIDER_REPLIES:
        o = from_reply("rcpt", code, message)
        suppress = o.permanent and o.category in SUPPRESSING_CATEGORIES
        assert suppress == (code >= 500 and category in (C.INVALID_RECIPIENT,
                                                         C.DOMAIN_NOT_FOUND)), message
        if category in (C.REPUTATION, C.POLICY, C.SPAM_BLOCK, C.RATE_LIMITED):
            assert not suppress


@pytest.mark.parametrize(("status", "category"), [
    ("5.1.1", C.INVALID_RECIPIENT), ("5.1.2", C.DOMAIN_NOT_FOUND),
    ("5.1.10", C.DOMAIN_NOT_FOUND), ("4.2.2", C.MAILBOX_FULL), ("5.3.4", C.CONTENT),
    ("5.6.7", C.CONTENT), ("5.7.1", C.POLICY), ("4.7.28", C.RATE_LIMITED),
    ("5.2.1", C.INVALID_RECIPIENT), ("4.2.1", C.RATE_LIMITED), ("4.4.2", C.CONNECTION),
    ("5.5.1", C.OTHER),
])
def test_bare_enhanced_statuses(status, category):
    assert classify(int(status[0]) * 100 + 50, status, "no text we know") == category


def test_codes_without_status_or_known_text():
    assert classify(421, None, "closing") == C.CONNECTION
    assert classify(550, None, "go away") == C.OTHER


def test_a_refused_starttls_is_a_transient_tls_failure():
    o = from_exception(aiosmtplib.SMTPResponseException(554, "5.7.3 TLS not available"),
                       "starttls")
    assert (o.code, o.category, o.permanent) == (554, C.TLS, False)
    assert decide(o, last_host=True) == Action.DEFER
