"""Log lines: kv and json formats, one line per record, and redaction of AUTH secrets."""

from __future__ import annotations

import base64
import io
import json
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helo_smtp.config import LoggingConfig
from helo_smtp.runtime import logs

KV_HEAD = re.compile(r"^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(\w+) logger=(\S+) ")


@pytest.fixture(autouse=True)
def clean_logging():
    yield
    logs.reset()
    logs.clear_secrets()


def capture(fmt: str = "kv", level: str = "INFO") -> io.StringIO:
    out = io.StringIO()
    logs.setup(LoggingConfig(format=fmt, level=level), stream=out)
    return out


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_kv_quotes_only_what_needs_it_and_parses_back():
    line = logs.kv(event="started", note="two words", empty="", none=None, n=3,
                   q='say "hi"\nbye', eq="a=b")
    assert line == ('event=started note="two words" empty="" none="" n=3 '
                    'q="say \\"hi\\"\\nbye" eq="a=b"')
    assert logs.parse_kv(line) == {"event": "started", "note": "two words", "empty": "",
                                   "none": "", "n": "3", "q": 'say "hi"\nbye', "eq": "a=b"}
    assert logs.parse_kv("listener and TLS changes need a restart") is None


def test_kv_format_one_line_per_record():
    out = capture("kv")
    log = logging.getLogger("helo_smtp.daemon")
    log.info(logs.kv(event="started", ports="submission:587 submissions:465"))
    log.warning("plain text with\na newline")
    log.debug("not at INFO")
    got = lines(out)
    assert len(got) == 2
    m = KV_HEAD.match(got[0])
    assert m and m.groups() == ("info", "helo_smtp.daemon")
    assert got[0].endswith('event=started ports="submission:587 submissions:465"')
    assert KV_HEAD.match(got[1]).group(1) == "warning"
    assert got[1].endswith('msg="plain text with\\na newline"')


def test_json_format_one_object_per_line():
    out = capture("json", level="DEBUG")
    log = logging.getLogger("helo_smtp.outbound.worker")
    log.debug(logs.kv(event="delivered", rcpt="a@example.test", reply="250 2.0.0 ok"))
    log.error("store write failed")
    first, second = (json.loads(line) for line in lines(out))
    assert first["level"] == "debug" and first["logger"] == "helo_smtp.outbound.worker"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert first["message"] == 'event=delivered rcpt=a@example.test reply="250 2.0.0 ok"'
    assert (first["event"], first["rcpt"], first["reply"]) == (
        "delivered", "a@example.test", "250 2.0.0 ok")
    assert second["message"] == "store write failed" and "event" not in second


@pytest.mark.parametrize("fmt", ["kv", "json"])
def test_tracebacks_stay_on_one_line_and_are_redacted(fmt):
    out = capture(fmt)
    try:
        raise ValueError("password=hunter22 leaked into an exception")
    except ValueError:
        logging.getLogger("helo_smtp.inbound").exception(logs.kv(event="hook_failed"))
    (line,) = lines(out)
    assert "hunter22" not in line
    exc = json.loads(line)["exc"] if fmt == "json" else logs.parse_kv(line.split(" ", 3)[3])["exc"]
    assert "Traceback" in exc and "ValueError: password=[redacted]" in exc


def test_aiosmtpd_warnings_are_kept_and_its_chatter_is_not():
    out = capture("kv", level="INFO")
    aio = logging.getLogger("mail.log")
    aio.info("%r >> %r", ("127.0.0.1", 5), b"MAIL FROM:<a@b>")
    aio.warning("%r unrecognised: %s", ("127.0.0.1", 5), "AUTH PLAIN AGFsaWNlAHMzY3JldA==")
    (line,) = lines(out)
    assert "logger=mail.log" in line
    assert "AGFsaWNlAHMzY3JldA" not in line and "AUTH PLAIN [redacted]" in line


def test_setup_twice_replaces_the_handler():
    first = capture("kv")
    second = capture("json")
    logging.getLogger("helo_smtp").info("once")
    assert lines(first) == []
    assert [json.loads(x)["message"] for x in lines(second)] == ["once"]


@pytest.mark.parametrize("text, secret", [
    ("AUTH PLAIN AHVzZXIAc3VwZXItc2VjcmV0", "AHVzZXIAc3VwZXItc2VjcmV0"),
    ("b'auth login dXNlcm5hbWU='", "dXNlcm5hbWU="),
    ("event=auth_failed user=bob password=Tr0ub4dor&3 next=1", "Tr0ub4dor&3"),
    ('event=x secret="two words" next=1', "two words"),
    ("credential secret: abcdefgh", "abcdefgh"),
])
def test_redact_patterns(text, secret):
    red = logs.redact(text)
    assert secret not in red and logs.REDACTED in red


@pytest.mark.parametrize("line", [
    logs.kv(event="delivered", rcpt="a@example.test", reply="250 2.0.0 Ok: queued as x"),
    "b'250-ENHANCEDSTATUSCODES\\r\\n250 AUTH PLAIN LOGIN'",  # an EHLO reply: no secret
    "b'AUTH LOGIN'",
])
def test_redact_leaves_ordinary_lines_alone(line):
    assert logs.redact(line) == line


secrets_st = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                     min_size=12, max_size=60)
users_st = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_.@", min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(secret=secrets_st, user=users_st, authzid=st.sampled_from(["", "x", "ab"]))
def test_registered_secret_and_its_base64_never_survive(secret, user, authzid):
    """The secret as such, its AUTH LOGIN line (base64 of the secret) and the AUTH PLAIN blob
    (base64 of authzid NUL user NUL secret, at any alignment) are all redacted wherever they
    appear, also without an ``AUTH PLAIN`` prefix (a PLAIN response sent after ``334``)."""
    logs.register_secret(secret)
    login = base64.b64encode(secret.encode()).decode()
    plain = base64.b64encode(f"{authzid}\0{user}\0{secret}".encode()).decode()
    text = f"got {secret} then {login!r} then {plain} and b'{plain}'"
    red = logs.redact(text)
    for leaked in (secret, login, plain):
        assert leaked not in red
    # The whole base64 run goes: no fragment long enough to carry secret bits is left.
    assert not re.search(r"[A-Za-z0-9+/]{12,}", red.replace(logs.REDACTED, " "))


def test_register_secret_is_bounded(monkeypatch):
    monkeypatch.setattr(logs, "MAX_SECRETS", 50)
    for i in range(60):
        logs.register_secret(f"secret-number-{i:06d}")
    assert len(logs._secrets) <= 50
    assert logs.redact("x secret-number-000000 y") == "x secret-number-000000 y"  # forgotten
    assert logs.redact("x secret-number-000059 y") == f"x {logs.REDACTED} y"


def test_short_strings_are_not_registered():
    logs.register_secret("abc")
    assert logs.redact("abc abcdef") == "abc abcdef"
