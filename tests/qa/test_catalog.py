"""The reply table itself (after aiosmtpd's ``qa/test_1testsuite.py``): every reply the relay can
write is sane before any test talks SMTP."""

from __future__ import annotations

import builtins
import inspect
import re

import aiosmtpd.smtp
import pytest

from helo_smtp import errors
from helo_smtp.errors import CATALOG, HeloError, accepted_line
from helo_smtp.inbound import replies
from helo_smtp.inbound.controls import DETAILS

ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\Z")  # RFC 3463 §2: class.subject.detail
SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*\Z")
EXCEPTION_NAMES = {name for name, obj in vars(builtins).items()
                   if isinstance(obj, type) and issubclass(obj, BaseException)}
EXCEPTION_NAMES |= {name for name, obj in vars(errors).items()
                    if isinstance(obj, type) and issubclass(obj, BaseException)}
#: Our own faults: never the client's, so never permanent.
FAULTS = {"local_error", "insufficient_storage", "queue_full", "shutting_down", "timeout"}


def test_names_are_unique_snake_case():
    names = [r.name for r in errors._REPLIES]
    assert len(names) == len(set(names)) == len(CATALOG)
    for name, reply in CATALOG.items():
        assert reply.name == name and SNAKE.match(name), name


@pytest.mark.parametrize("reply", list(CATALOG.values()), ids=list(CATALOG))
def test_codes_agree(reply):
    assert reply.code // 100 in (2, 4, 5)
    assert ENHANCED.match(reply.status), reply.status
    assert str(reply.code)[0] == reply.status[0], "RFC 3463: class matches the reply code"
    assert reply.transient == (reply.code // 100 == 4)


def test_our_own_faults_are_transient():
    # RFC 3463 X.3.X is "mail system status": ours. Only 5.3.4 (message too big) is permanent.
    system = {n for n, r in CATALOG.items() if r.status.split(".")[1] == "3"}
    assert system - {"message_too_large"} >= FAULTS - {"shutting_down", "timeout"}
    for name in FAULTS | (system - {"message_too_large"}):
        assert CATALOG[name].code // 100 == 4, name


def test_closing_replies_are_421():
    for name, reply in CATALOG.items():
        if reply.code == 421:
            assert reply.close, name
        if reply.close:
            assert reply.code in (421, 221), name


def _check_text(text: str) -> None:
    assert text.isascii() and text.isprintable(), text
    assert "\r" not in text and "\n" not in text
    assert "{" not in text and "}" not in text, text
    assert "Traceback" not in text
    words = set(re.findall(r"[A-Za-z_]+", text))
    assert not words & EXCEPTION_NAMES, (text, words & EXCEPTION_NAMES)


@pytest.mark.parametrize("reply", list(CATALOG.values()), ids=list(CATALOG))
def test_text_is_one_clean_ascii_line(reply):
    _check_text(reply.text)
    _check_text(reply.line())
    assert reply.doc, "every reply says when it is sent (docs/errors.md)"


def test_helo_error_codes_lead_their_text():
    # SPEC §5: where a Helo errorCode applies, it is the first word of the text.
    for code in ("idempotency_conflict", "account_forbidden", "domain_unverified",
                 "channel_not_found", "recipient_forbidden", "send_limit_exceeded",
                 "recipients_suppressed", "templating_error", "validation_error",
                 "mail_type_conflict"):
        assert CATALOG[code].text.startswith(code + ": "), code


def test_validation_details_follow_the_same_rules():
    for detail in DETAILS.values():
        _check_text(detail)
        _check_text(CATALOG["validation_error"].line(detail))


def test_every_error_class_carries_a_catalog_reply():
    classes = [obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, HeloError)]
    assert len(classes) > 20
    for cls in classes:
        assert CATALOG[cls.reply.name] is cls.reply
        assert cls().line() == cls.reply.line()


def test_accepted_line():
    assert accepted_line("m1") == "250 2.0.0 Ok: queued as m1"
    assert accepted_line("m1", ["a@x.test", "b@y.test"]) == \
        "250 2.0.0 Ok: queued as m1; suppressed: a@x.test, b@y.test"
    many = [f"address-{i:03d}@example.test" for i in range(50)]
    cut = accepted_line("m1", many).split("; suppressed: ")[1]
    assert cut.endswith(", ...") and len(cut) <= 405
    assert cut[:-5] and all(a in many for a in cut[:-5].split(", "))


# ---- aiosmtpd's own replies ----------------------------------------------------------------
def _aiosmtpd_literals() -> list[str]:
    """Every reply literal in aiosmtpd 1.4.6's smtp.py ({...} placeholders filled)."""
    source = inspect.getsource(aiosmtpd.smtp)
    found = re.findall(r'"(\d{3}[ -][^"]*)"', source)
    found += re.findall(r"'(\d{3}[ -][^']*)'", source)
    return sorted({re.sub(r"\{[^}]*\}", "X", text) for text in found})


def test_aiosmtpd_version_is_the_one_audited():
    assert aiosmtpd.__version__ == "1.4.6"


def test_every_aiosmtpd_reply_is_rewritten_to_the_catalog():
    literals = _aiosmtpd_literals()
    assert len(literals) > 40  # the regex still finds them
    known = {r.line() for r in CATALOG.values()}
    for text in literals:
        if text[0] == "3":
            continue  # 334 / 354 continuations: RFC 3463 has no class 3
        for command in ("MAIL", "RCPT", "DATA", "AUTH", "NOOP", "STARTTLS", "QUIT", None):
            if command is None and text.startswith("220 X"):
                continue  # the greeting: no enhanced code (RFC 2034 §3)
            if text in ("250 X", "250 HELP") or text.startswith("250-"):
                continue  # aiosmtpd's HELO/EHLO lines; our EHLO and HELO write their own
            line = replies.translate(text, command)
            assert line in known, (text, command, line)
            if text[0] in "45":
                assert line[0] in "45", (text, line)  # a refusal stays a refusal


def test_our_own_lines_pass_the_rewrite_unchanged():
    lines = [r.line() for r in CATALOG.values()]
    lines += [CATALOG["validation_error"].line(d) for d in DETAILS.values()]
    lines += [accepted_line("0193a0b0-0000-7000-8000-000000000001", ["a@x.test"])]
    for line in lines:
        for command in ("MAIL", "RCPT", "DATA", "AUTH", "EHLO", None):
            assert replies.translate(line, command) == line, (line, command)
