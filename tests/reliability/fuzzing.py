"""Property-based fuzzing of a live relay (hypothesis). Each ``run_*`` takes ``max_examples``
and returns how many examples ran, so the default suite runs a few dozen in seconds and the
chaos run (tests/chaos/test_fuzz_long.py) thousands, for the figures in docs/reliability.md.

- ``run_body_roundtrip``: any mix of ``a``, ``.``, CR, LF, CRLF, NUL, non-ASCII and
  ``MAIL FROM:`` lines, submitted and relayed, arrives at the sink as exactly one message equal
  to the normalised form (every line end CRLF); a NUL gets ``550 5.6.0`` and nothing is sent.
- ``SessionMachine`` (``run_stateful``): random command sequences as a hypothesis stateful
  machine with a model of the session (greeting, TLS, AUTH, transaction, recipients); every
  reply must be the one the model predicts, and the store must hold exactly the messages the
  model saw accepted, each with exactly the recipients the model saw accepted.
- ``run_envelopes``: random MAIL/RCPT argument strings: every reply is from the catalog (never
  our own fault), the session survives, and an accepted address is stored as it was sent.
"""

from __future__ import annotations

import base64
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from helo_smtp.errors import CATALOG
from tests.inbound.clients import Raw, accepted
from tests.reliability.roundtrip import RoundTrip, body_of, only_crlf

KNOWN = {r.line() for r in CATALOG.values()}
ACCEPT = re.compile(r"250 2\.0\.0 Ok: queued as ([0-9a-f-]{36})\Z")


def c(name: str) -> str:
    return CATALOG[name].line()


def _settings(max_examples: int, **kw: Any) -> settings:
    return settings(max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), **kw)


# ---- body round trip ---------------------------------------------------------------------
FRAGMENTS = [b"a", b".", b"\r", b"\n", b"\r\n", b"\x00", "é".encode(), "€".encode(),
             b"MAIL FROM:<x@example.test>\r\n", b"..", b" ", b"\t", b"\r\n.\r\n", b"\n.\n",
             b"RCPT TO:<victim@example.test>", b"\r.\r"]
BODIES = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)


@dataclass
class Count:
    examples: int = 0
    rejected: int = 0  # answered with a documented refusal (NUL)
    steps: int = 0
    accepted: int = 0
    notes: dict[str, int] = field(default_factory=dict)


def run_body_roundtrip(relay: Any, ctx: ssl.SSLContext, sink: Any, max_examples: int) -> Count:
    count = Count()
    rt = RoundTrip(relay, ctx, sink)

    @_settings(max_examples)
    @given(body=BODIES)
    def one(body: bytes) -> None:
        count.examples += 1
        before = len(sink.h.messages)
        reply = rt.submit(body)
        if b"\x00" in body:
            assert reply == c("nul_characters"), (body, reply)
            count.rejected += 1
            assert len(sink.h.messages) == before
            return
        data = rt.delivered(accepted(reply))
        assert only_crlf(data), (body, data)
        assert body_of(data) == rt.expected_body(body), (body, body_of(data))
        count.accepted += 1

    try:
        one()
    finally:
        rt.close()
    return count


# ---- stateful session fuzzing ------------------------------------------------------------
JUNK = st.binary(min_size=1, max_size=30).map(
    lambda b: b.replace(b"\n", b"_").replace(b"\r", b"_")).filter(
    lambda b: b.split(b" ", 1)[0].upper() not in (b"QUIT", b"DATA", b"STARTTLS", b"AUTH",
                                                    b"EHLO", b"HELO", b"MAIL", b"RCPT",
                                                    b"RSET", b"NOOP", b"VRFY", b"EXPN",
                                                    b"HELP", b"BDAT"))
CLOSERS = {c("auth_locked"), c("too_many_commands"), c("too_many_errors"), c("bye"),
           c("timeout")}


class SessionMachine(RuleBasedStateMachine):
    """One client at a time against ``relay`` (set with ``bind`` before running)."""

    relay: Any = None
    ctx: ssl.SSLContext | None = None
    count: Count = Count()

    @classmethod
    def bind(cls, relay: Any, ctx: ssl.SSLContext, count: Count) -> None:
        cls.relay, cls.ctx, cls.count = relay, ctx, count

    def __init__(self) -> None:
        super().__init__()
        self.count.examples += 1
        self.raw: Raw | None = None
        self.before = {m["id"] for m in self.relay.store.admin.messages(limit=100_000)}
        self.accepted: dict[str, list[str]] = {}
        self._new_session(False)

    # ---- model helpers ----
    def _new_session(self, tls: bool) -> None:
        self.tls, self.greeted, self.authed, self.auth_failures = tls, False, False, 0
        self.extended = False  # EHLO (not HELO): AUTH exists only in ESMTP
        self._reset_tx()

    def _reset_tx(self) -> None:
        self.in_mail, self.rcpts = False, []

    def _cmd(self, line: bytes) -> str:
        assert self.raw is not None
        self.count.steps += 1
        reply = self.raw.cmd(line)
        assert reply, (line, "no reply")
        if reply in CLOSERS or reply.startswith("421"):
            assert reply in CLOSERS, reply
            assert self.raw.replies_until_eof() == []
            self.raw.close()
            self.raw = None
        return reply

    def _expect(self, line: bytes, want: str | set[str]) -> str:
        reply = self._cmd(line)
        wanted = {want} if isinstance(want, str) else want
        assert reply in wanted or (self.raw is None and reply in CLOSERS), (line, reply, wanted)
        return reply

    def _gate(self, needs_auth: bool = True) -> str | None:
        """The refusal the session state calls for before a MAIL/RCPT/DATA (None: none)."""
        if not self.greeted:
            return c("bad_sequence")
        if needs_auth and not self.authed:
            return c("auth_required")
        return None

    # ---- rules ----
    @rule(listener=st.sampled_from(["submission", "submissions"]))
    def connect(self, listener: str) -> None:
        if self.raw is not None:
            self.raw.close()
        implicit = listener == "submissions"
        self.raw = Raw(self.relay.ports[listener], self.ctx if implicit else None)
        assert self.raw.reply().startswith("220 ")
        self._new_session(implicit)

    @rule(listener=st.sampled_from(["submission", "submissions"]))
    def logged_in(self, listener: str) -> None:
        """A shortcut to the deep states: a new connection, TLS, EHLO and a good AUTH."""
        self.connect(listener)
        if not self.tls:
            self.greet(b"EHLO")
            self.starttls()
        self.greet(b"EHLO")
        self.auth(True)

    @precondition(lambda self: self.raw is not None)
    @rule(verb=st.sampled_from([b"EHLO", b"HELO"]))
    def greet(self, verb: bytes) -> None:
        reply = self._cmd(verb + b" client.test")
        assert reply.startswith("250"), reply
        self.greeted, self.extended = True, verb == b"EHLO"
        self._reset_tx()

    @precondition(lambda self: self.raw is not None)
    @rule()
    def starttls(self) -> None:
        if self.tls:
            self._expect(b"STARTTLS", c("bad_sequence"))
            return
        # the relay (like aiosmtpd) takes STARTTLS before EHLO as well: nothing to leak yet
        self._expect(b"STARTTLS", c("tls_ready"))
        assert self.raw is not None
        self.raw.starttls(self.ctx)
        self._new_session(True)  # RFC 3207 §4.2: forget everything

    @precondition(lambda self: self.raw is not None)
    @rule(good=st.booleans())
    def auth(self, good: bool) -> None:
        t = self.relay.tenant
        secret = t.secret if good else "wrong-" + t.secret[:4]
        token = base64.b64encode(f"\0{t.username}\0{secret}".encode())
        line = b"AUTH PLAIN " + token
        if not self.greeted:
            self._expect(line, c("bad_sequence"))
        elif not self.extended:  # after HELO, AUTH is an unknown verb (RFC 4954 §3)
            self._expect(line, c("unknown_command"))
        elif not self.tls:
            self._expect(line, c("encryption_required"))
        elif self.authed:
            self._expect(line, c("bad_sequence"))
        elif good:
            self._expect(line, c("auth_ok"))
            self.authed = True
        else:
            self.auth_failures += 1
            last = self.auth_failures >= self.relay.cfg.limits.auth_failures_per_connection
            self._expect(line, c("auth_locked") if last else c("auth_invalid"))

    @precondition(lambda self: self.raw is not None)
    @rule(kind=st.sampled_from(["ok", "foreign", "syntax"]))
    def mail(self, kind: str) -> None:
        sender = {"ok": self.relay.tenant.sender, "foreign": "app@elsewhere.test",
                  "syntax": "app@@bad"}[kind]
        line = f"MAIL FROM:<{sender}>".encode()
        refusal = self._gate() or (c("bad_sequence") if self.in_mail else None)
        if refusal:
            self._expect(line, refusal)
            return
        want = {"ok": c("sender_ok"), "foreign": c("domain_unverified"),
                "syntax": c("bad_sender")}[kind]
        self._expect(line, want)
        self.in_mail = kind == "ok"

    @precondition(lambda self: self.raw is not None)
    @rule(n=st.integers(0, 60), good=st.booleans())
    def rcpt(self, n: int, good: bool) -> None:
        address = f"u{n}@example.test" if good else f"u{n}@@example.test"
        line = f"RCPT TO:<{address}>".encode()
        refusal = self._gate() or (None if self.in_mail else c("bad_sequence"))
        if refusal:
            self._expect(line, refusal)
        elif not good:
            self._expect(line, c("bad_recipient"))
        elif address in self.rcpts:
            self._expect(line, c("recipient_ok"))  # a duplicate is kept once
        elif len(self.rcpts) >= self.relay.cfg.limits.max_recipients:
            self._expect(line, c("too_many_recipients"))
        else:
            self._expect(line, c("recipient_ok"))
            self.rcpts.append(address)

    @precondition(lambda self: self.raw is not None)
    @rule(nul=st.booleans())
    def data(self, nul: bool) -> None:
        refusal = self._gate()
        if refusal is None and not self.rcpts:  # no MAIL, or no RCPT accepted: RFC 5321
            refusal = c("no_valid_recipients")  # §3.3 allows 503 or 554; the relay says 554
        if refusal:
            self._expect(b"DATA", refusal)
            return
        reply = self._cmd(b"DATA")
        assert reply.startswith("354"), reply
        assert self.raw is not None
        body = b"hello" + (b"\x00" if nul else b"") + b"\r\n"
        reply = self.raw.data(f"From: {self.relay.tenant.sender}\r\nSubject: m\r\n\r\n"
                              .encode() + body)
        self.count.steps += 1
        if nul:
            assert reply == c("nul_characters"), reply
        else:
            m = ACCEPT.match(reply)
            assert m, reply
            self.accepted[m.group(1)] = list(self.rcpts)
            self.count.accepted += 1
        self._reset_tx()

    @precondition(lambda self: self.raw is not None)
    @rule(n=st.integers(0, 60))
    def transaction(self, n: int) -> None:
        """MAIL, RCPT, DATA in a row (each step still checked against the model)."""
        self.mail("ok")
        if self.raw is not None:
            self.rcpt(n, True)
        if self.raw is not None:
            self.data(False)

    @precondition(lambda self: self.raw is not None)
    @rule(verb=st.sampled_from([b"RSET", b"NOOP", b"VRFY u@example.test", b"HELP"]))
    def other(self, verb: bytes) -> None:
        want = {b"RSET": c("ok"), b"NOOP": c("ok"), b"HELP": c("not_implemented")}.get(
            verb, c("vrfy_disabled"))
        self._expect(verb, want)
        if verb == b"RSET":
            self._reset_tx()

    @precondition(lambda self: self.raw is not None)
    @rule(junk=JUNK)
    def junk(self, junk: bytes) -> None:
        reply = self._cmd(junk)
        assert reply in KNOWN, (junk, reply)
        assert reply != c("local_error"), junk

    @precondition(lambda self: self.raw is not None)
    @rule()
    def quit(self) -> None:
        self._expect(b"QUIT", c("bye"))

    @invariant()
    def store_holds_exactly_what_was_accepted(self) -> None:
        store = self.relay.store
        now = {m["id"] for m in store.admin.messages(limit=100_000)} - self.before
        assert now == set(self.accepted), (now, set(self.accepted))

    def teardown(self) -> None:
        for mid, rcpts in self.accepted.items():
            got = [r["address"] for r in self.relay.store.admin.recipients(mid)]
            assert got == rcpts, (mid, got, rcpts)
        if self.raw is not None:
            self.raw.close()


def run_stateful(relay: Any, ctx: ssl.SSLContext, max_examples: int, steps: int) -> Count:
    from hypothesis.stateful import run_state_machine_as_test

    count = Count()
    SessionMachine.bind(relay, ctx, count)
    run_state_machine_as_test(SessionMachine,
                              settings=_settings(max_examples, stateful_step_count=steps))
    return count


# ---- envelope strings ----------------------------------------------------------------------
PIECES = ["<", ">", "@", "app", "user", "sender.test", "example.test", ":", " ", "\t",
          "SIZE=10", "BODY=8BITMIME", "SMTPUTF8", "AUTH=<>", "NOTIFY=NEVER", '"', "\\", "\x00",
          "\r", "é", ".", "[127.0.0.1]", "[IPv6:::1]", "a" * 64, "=", "%", "!", ",", "(c)",
          "\u2028", "\x7f", "xn--", "-", "+tag", "#"]
ARGS = st.one_of(st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
                 st.text(st.characters(blacklist_characters="\n"), max_size=40))


def _session(relay: Any, ctx: ssl.SSLContext) -> Raw:
    t = relay.tenant
    raw = Raw(relay.ports["submissions"], ctx)
    assert raw.reply().startswith("220 ")
    raw.cmd("EHLO client.test")
    token = base64.b64encode(f"\0{t.username}\0{t.secret}".encode()).decode()
    assert raw.cmd(f"AUTH PLAIN {token}") == c("auth_ok")
    return raw


def _known(reply: str) -> bool:
    return reply in KNOWN or reply.startswith(c("validation_error"))


def run_envelopes(relay: Any, ctx: ssl.SSLContext, max_examples: int) -> Count:
    count = Count()
    holder: list[Raw] = [_session(relay, ctx)]
    t = relay.tenant

    @_settings(max_examples)
    @given(mail=ARGS, rcpt=ARGS, wrap=st.booleans(), wrap_rcpt=st.booleans())
    def one(mail: str, rcpt: str, wrap: bool, wrap_rcpt: bool) -> None:
        count.examples += 1
        raw = holder[0]
        mail_arg = f"<{t.sender}>{mail}" if wrap else mail  # also well-formed + parameters
        if wrap_rcpt:  # a random local part (or parameters) on a real destination
            rcpt = f"<{rcpt}@example.test>" if len(rcpt) % 2 else f"<user@example.test>{rcpt}"
        reply = raw.cmd(f"MAIL FROM:{mail_arg}".encode("utf-8", "surrogatepass"))
        assert _known(reply) and reply != c("local_error"), (mail_arg, reply)
        count.notes[reply[:9]] = count.notes.get(reply[:9], 0) + 1
        if reply == c("sender_ok"):
            reply = raw.cmd(f"RCPT TO:{rcpt}".encode("utf-8", "surrogatepass"))
            assert _known(reply) and reply != c("local_error"), (rcpt, reply)
            if reply == c("recipient_ok"):
                count.accepted += 1
                assert raw.cmd("DATA").startswith("354")
                mid = accepted(raw.data(f"From: {t.sender}\r\nSubject: e\r\n\r\nx\r\n".encode()))
                [stored] = relay.store.admin.recipients(mid)
                assert stored["address"] in rcpt, (rcpt, stored["address"])
                assert not re.search(r"[\x00-\x20\x7f<>]", stored["address"]), stored
        if reply.startswith("421"):  # closed (e.g. a command limit): carry on in a new one
            holder[0] = _session(relay, ctx)
            return
        assert raw.cmd("RSET") == c("ok")  # the session survived whatever was sent

    try:
        one()
    finally:
        holder[0].close()
    return count
