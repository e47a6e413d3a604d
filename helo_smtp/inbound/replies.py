"""Every line aiosmtpd 1.4.6 writes itself, rewritten to its catalog reply.

aiosmtpd answers many errors with its own texts, most without an RFC 3463 enhanced code and
some echoing client input (``500 Error: command "X" not recognized``). The protocol's ``push``
passes every outgoing line through ``translate``: a line aiosmtpd wrote becomes the catalog
line for the same situation; our own catalog lines (already enhanced) pass unchanged; the
greeting, EHLO/HELO replies and 3xx continuations carry no enhanced code by RFC 2034 §3 /
RFC 3463 (classes are 2, 4 and 5 only). ``tests/qa/test_catalog.py`` checks this table against
every literal reply in aiosmtpd's source.
"""

from __future__ import annotations

import logging
import re

from helo_smtp.errors import CATALOG

log = logging.getLogger("helo_smtp.smtp")

_ENHANCED = re.compile(r"\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")

# (pattern matched at the start of aiosmtpd's line, catalog name); first match wins.
_TABLE: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), n) for p, n in (
    (r"500 Command line too long", "line_too_long"),
    (r"500 Line too long", "line_too_long"),
    (r"500 Error: \(|500 Error: Cannot describe error", "local_error"),
    (r"500 Error: bad syntax|500 Error: strict ASCII mode|500 Error: command ",
     "unknown_command"),
    (r"530 Must issue a STARTTLS command first", "auth_required"),
    (r"421 4\.7\.0 .* sent too many times", "too_many_commands"),
    (r"502 5\.5\.1 Too many unrecognized commands", "too_many_errors"),
    (r"503 Error: send \S+ first|503 Already authenticated"
     r"|503 Error: nested MAIL command|503 Error: need MAIL command", "bad_sequence"),
    (r"503 Error: need RCPT command", "no_valid_recipients"),
    (r"530 5\.7\.0 Authentication required", "auth_required"),
    (r"538 5\.7\.11 |554 Command refused due to lack of security", "encryption_required"),
    (r"501 Syntax: |501 Not enough value|501 Too many values|501 Error: BODY "
     r"|501 Error: SMTPUTF8 ", "bad_syntax"),
    (r"221 Bye", "bye"),
    (r"454 TLS not available", "tls_not_available"),
    (r"220 Ready to start TLS", "tls_ready"),
    (r"504 5\.5\.4 Unrecognized authentication type", "auth_mechanism_unknown"),
    (r"235 2\.7\.0 ", "auth_ok"),
    (r"535 5\.7\.8 ", "auth_invalid"),
    (r"501 5\.7\.0 Auth aborted", "auth_aborted"),
    (r"501 5\.5\.2 Can't ", "bad_auth_data"),
    (r"250 Syntax: |250 Supported commands|501 Supported commands|502 EXPN not implemented"
     r"|502 Could not VRFY", "not_implemented"),
    (r"252 Cannot VRFY", "vrfy_disabled"),
    (r"552 Error: message size exceeds|552 Error: Too much mail data", "message_too_large"),
    (r"555 ", "unknown_parameter"),
))

# Replies whose meaning depends on the command being answered.
_BY_COMMAND = {
    ("553 5.1.3 Error: malformed address", "MAIL"): "bad_sender",
    ("553 5.1.3 Error: malformed address", "RCPT"): "bad_recipient",
    ("250 OK", "MAIL"): "sender_ok",
    ("250 OK", "RCPT"): "recipient_ok",
    ("250 OK", None): "ok",
}


def catalog_name(line: str, command: str | None) -> str | None:
    """The catalog entry for one of aiosmtpd's own lines, or None when it is not one."""
    name = _BY_COMMAND.get((line, command))
    if name is None and line in ("553 5.1.3 Error: malformed address", "250 OK"):
        name = _BY_COMMAND.get((line, None), "bad_syntax")
    if name is not None:
        return name
    for pattern, name in _TABLE:
        if pattern.match(line):
            return name
    return None


def translate(line: str, command: str | None) -> str:
    """The line to write for ``line`` (what aiosmtpd or a hook produced) in ``command``."""
    if line[:1] == "3" or _exempt(line, command):
        return line
    name = catalog_name(line, command)
    if name is not None:
        return CATALOG[name].line()
    if _ENHANCED.match(line):
        return line  # a catalog line of ours
    log.warning("event=unmapped_reply code=%s command=%s", line[:3], command)
    return CATALOG["ok" if line[:1] == "2" else "local_error"].line()


def _exempt(line: str, command: str | None) -> bool:
    """RFC 2034 §3: no enhanced code on the greeting nor on replies to EHLO/HELO."""
    if command in ("EHLO", "HELO") and line.startswith("250"):
        return True
    return command is None and line.startswith("220 ") and not line.startswith("220 Ready")


def reason_of(line: str) -> str:
    """The catalog name of a line we wrote (for metrics and logs)."""
    for reply in CATALOG.values():
        if line.startswith(reply.line()):
            return reply.name
    return "accepted" if line.startswith("250 2.0.0 Ok: queued") else "other"
