"""The one reply table (SPEC §5).

Every reply helo-smtp writes on the wire is a ``Reply`` in ``CATALOG``. Rejections are raised
as ``HeloError`` subclasses, each carrying its reply and whether the connection is closed after
it; ``inbound/handler.py`` is the only place that turns them into wire text. Ordered like
Postfix's ``cleanup_strerror.c``: by severity, our own faults (4xx) first.

Rules (checked by ``tests/qa/test_catalog.py``): codes are unique snake_case; the first digit of
the SMTP code matches the enhanced status class (RFC 3463 §2); faults of ours are 4xx; every text
is one ASCII line without braces or exception names, and never echoes client input.

Imports nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: basic code, RFC 3463 enhanced status, and fixed text."""

    name: str  # catalog key, snake_case
    code: int
    status: str  # enhanced status code, e.g. "5.7.1"
    text: str
    close: bool = False  # close the connection after writing it
    doc: str = ""  # when it is sent, for docs/errors.md

    def line(self, detail: str = "") -> str:
        """The wire line; ``detail`` is catalog-controlled text appended after the fixed text."""
        text = f"{self.text}{detail}" if detail else self.text
        return f"{self.code} {self.status} {text}"

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500


def _r(name: str, code: int, status: str, text: str, doc: str, close: bool = False) -> Reply:
    return Reply(name, code, status, text, close, doc)


_REPLIES = (
    # --- transient: our own faults and temporary refusals (never 5xx) ---
    _r("local_error", 451, "4.3.0", "Local error in processing",
       "store write failed or an unexpected exception (logged with a correlation id)"),
    _r("insufficient_storage", 452, "4.3.1", "Insufficient system storage",
       "disk full or free space below the configured margin"),
    _r("queue_full", 451, "4.3.2", "System not accepting messages, try again later",
       "queue over its high-water mark"),
    _r("shutting_down", 421, "4.3.2", "Service shutting down, try again later",
       "the relay is draining for a stop or restart", close=True),
    _r("too_many_connections", 421, "4.7.0", "Too many connections, try again later",
       "global or per-IP connection cap reached", close=True),
    _r("auth_locked", 421, "4.7.0", "Too many authentication failures, try again later",
       "3 failed AUTH on this connection, or the IP / username failure window is full",
       close=True),
    _r("rate_limited", 451, "4.7.1", "rate_limited: channel send limit reached",
       "the channel's hourly_limit or daily_limit is used up (channels update); nothing of "
       "the message was kept, the client retries later"),
    _r("too_many_recipients", 452, "4.5.3", "Too many recipients",
       "RCPT number 51 and later (RFC 5321 §4.5.3.1.10)"),
    _r("timeout", 421, "4.4.2", "Timeout, closing connection",
       "idle timeout or maximum session lifetime reached", close=True),
    _r("too_many_commands", 421, "4.7.0", "Too many commands, closing connection",
       "command_call_limit reached", close=True),
    # --- permanent: the client's request can never succeed as sent ---
    _r("auth_required", 530, "5.7.0", "Authentication required", "MAIL before AUTH"),
    _r("encryption_required", 538, "5.7.11",
       "Encryption required for requested authentication mechanism", "AUTH before TLS"),
    _r("auth_invalid", 535, "5.7.8", "Authentication credentials invalid",
       "bad username or secret, or a revoked credential"),
    _r("unauthorized", 550, "5.7.8", "unauthorized: API key missing or invalid",
       "HTTP send API: no, malformed, unknown or revoked Bearer key (HTTP 401)"),
    _r("not_found", 550, "5.1.0", "not_found: no such resource",
       "HTTP send API: unknown path, or an id outside the key's account and channel (404)"),
    _r("idempotency_conflict", 550, "5.7.0",
       "idempotency_conflict: key already used for a different message",
       "X-Helo-Idempotency-Key reused with different content within 1 hour"),
    _r("account_forbidden", 550, "5.7.1", "account_forbidden: account may not send",
       "the account's status is forbidden (at MAIL)"),
    _r("domain_unverified", 550, "5.7.1", "domain_unverified: sender domain is not verified",
       "MAIL FROM or From: domain is not a verified domain of the account"),
    _r("channel_not_found", 550, "5.7.1",
       "channel_not_found: channel does not exist or is not accessible",
       "channel unknown, not the account's, or missing with an account credential"),
    _r("recipient_forbidden", 550, "5.7.1",
       "recipient_forbidden: pending accounts may only send to their own domain",
       "pending account, recipient outside the sender's domain (at RCPT)"),
    _r("send_limit_exceeded", 550, "5.7.1", "send_limit_exceeded: free send limit reached",
       "pending account over 1,000 recipient-sends"),
    _r("recipients_suppressed", 550, "5.7.1",
       "recipients_suppressed: all recipients are suppressed",
       "every recipient is on the channel's suppression list"),
    _r("templating_error", 550, "5.6.0", "templating_error: template could not be rendered",
       "template placeholder without data, or bad template syntax"),
    _r("validation_error", 550, "5.6.0", "validation_error: ",
       "a Helo limit of SPEC §4 broken; the text names the limit, never client text"),
    _r("mail_type_conflict", 550, "5.6.0",
       "mail_type_conflict: header contradicts the listener",
       "X-Helo-Mail-Type names the other type on a fixed-type listener"),
    _r("relay_denied", 550, "5.7.1", "relay denied",
       "bounces listener: a recipient outside [bounces] domain (never an open relay)"),
    _r("bad_return_path", 550, "5.1.1", "Unknown return path",
       "bounces listener: a b+<token> address whose signature does not check"),
    _r("bad_recipient", 501, "5.1.3", "Bad recipient address syntax",
       "recipient syntax, control characters, over-long parts, <> as recipient"),
    _r("bad_sender", 501, "5.1.7", "Bad sender address syntax",
       "sender syntax, control characters, over-long parts"),
    _r("bad_helo", 501, "5.5.2", "Invalid domain name",
       "EHLO/HELO argument is not a hostname or address literal"),
    _r("nul_characters", 550, "5.6.0", "NUL characters are not allowed",
       "a NUL byte in the message content"),
    _r("message_too_large", 552, "5.3.4", "Message size exceeds fixed limit",
       "SIZE= or the data is larger than limits.max_message_size"),
    _r("line_too_long", 500, "5.5.2", "Line too long",
       "a command line over 512 octets (RFC 5321 §4.5.3.1.4); a text line over 1000 "
       "octets is folded, not refused"),
    _r("bad_syntax", 501, "5.5.4", "Syntax error in parameters or arguments",
       "unknown MAIL/RCPT parameter or malformed command arguments"),
    _r("bad_sequence", 503, "5.5.1", "Bad sequence of commands",
       "a command out of order (RCPT before MAIL, DATA before RCPT)"),
    _r("no_valid_recipients", 554, "5.5.1", "No valid recipients",
       "DATA when no RCPT was accepted"),
    _r("smtputf8_required", 553, "5.6.7", "SMTPUTF8 required for non-ASCII address",
       "non-ASCII address without the SMTPUTF8 parameter (RFC 6531 §3.4)"),
    # --- protocol replies of the SMTP engine (aiosmtpd's own texts are rewritten to these) ---
    _r("unknown_command", 500, "5.5.2", "Syntax error, command unrecognized",
       "an unknown verb, an empty line or a non-ASCII command"),
    _r("not_implemented", 502, "5.5.1", "Command not implemented", "EXPN and HELP"),
    _r("unknown_parameter", 555, "5.5.4", "MAIL or RCPT parameters not recognized",
       "an ESMTP parameter we do not implement (RFC 5321 §4.1.1.11)"),
    _r("auth_mechanism_unknown", 504, "5.5.4", "Unrecognized authentication type",
       "AUTH with a mechanism other than PLAIN or LOGIN"),
    _r("auth_aborted", 501, "5.7.0", "Authentication aborted",
       "the client answered an AUTH challenge with * (RFC 4954 §4)"),
    _r("bad_auth_data", 501, "5.5.2", "Cannot decode authentication data",
       "AUTH data that is not base64 or not in the mechanism's format"),
    _r("tls_not_available", 454, "4.7.0", "TLS not available",
       "STARTTLS on a listener without a STARTTLS certificate"),
    _r("too_many_errors", 421, "4.7.0", "Too many errors, closing connection",
       "too many unrecognized commands in one session", close=True),
    # --- positive replies ---
    _r("ok", 250, "2.0.0", "Ok", "NOOP and RSET"),
    _r("sender_ok", 250, "2.1.0", "Sender ok", "MAIL accepted"),
    _r("recipient_ok", 250, "2.1.5", "Recipient ok", "RCPT accepted"),
    _r("report_received", 250, "2.0.0", "Ok: report received",
       "bounces listener: a DSN, bounce or complaint recorded"),
    _r("vrfy_disabled", 252, "2.5.0",
       "Cannot VRFY user, but will accept message and attempt delivery",
       "VRFY is not answered (RFC 5321 §3.5.3)"),
    _r("auth_ok", 235, "2.7.0", "Authentication successful", "AUTH accepted"),
    _r("tls_ready", 220, "2.0.0", "Ready to start TLS", "STARTTLS accepted"),
    _r("bye", 221, "2.0.0", "Bye", "QUIT", close=True),
)

#: The reply table, by name.
CATALOG: dict[str, Reply] = {r.name: r for r in _REPLIES}


def accepted_line(message_id: str, suppressed: list[str] | None = None) -> str:
    """``250 2.0.0 Ok: queued as <id>`` plus the suppressed list cut at 400 chars (SPEC §5)."""
    line = f"250 2.0.0 Ok: queued as {message_id}"
    if suppressed:
        listed = ", ".join(suppressed)
        if len(listed) > 400:
            listed = listed[:400].rsplit(", ", 1)[0] + ", ..."
        line += f"; suppressed: {listed}"
    return line


class HeloError(Exception):
    """A rejection carrying its catalog reply. ``detail`` is catalog-controlled text."""

    reply: Reply = CATALOG["local_error"]

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.reply.name)
        self.detail = detail

    def line(self) -> str:
        return self.reply.line(self.detail)


def _subclass(name: str) -> type[HeloError]:
    cls_name = "".join(part.capitalize() for part in name.split("_"))
    return type(cls_name, (HeloError,), {"reply": CATALOG[name], "__doc__": CATALOG[name].doc})


LocalError = _subclass("local_error")
InsufficientStorage = _subclass("insufficient_storage")
QueueFull = _subclass("queue_full")
ShuttingDown = _subclass("shutting_down")
TooManyConnections = _subclass("too_many_connections")
AuthLocked = _subclass("auth_locked")
TooManyRecipients = _subclass("too_many_recipients")
AuthRequired = _subclass("auth_required")
EncryptionRequired = _subclass("encryption_required")
AuthInvalid = _subclass("auth_invalid")
IdempotencyConflict = _subclass("idempotency_conflict")
Unauthorized = _subclass("unauthorized")
NotFound = _subclass("not_found")
AccountForbidden = _subclass("account_forbidden")
DomainUnverified = _subclass("domain_unverified")
ChannelNotFound = _subclass("channel_not_found")
RecipientForbidden = _subclass("recipient_forbidden")
SendLimitExceeded = _subclass("send_limit_exceeded")
RecipientsSuppressed = _subclass("recipients_suppressed")
TemplatingError = _subclass("templating_error")
ValidationError = _subclass("validation_error")
MailTypeConflict = _subclass("mail_type_conflict")
BadRecipient = _subclass("bad_recipient")
BadSender = _subclass("bad_sender")
BadHelo = _subclass("bad_helo")
NulCharacters = _subclass("nul_characters")
MessageTooLarge = _subclass("message_too_large")
SmtputfRequired = _subclass("smtputf8_required")
RateLimited = _subclass("rate_limited")
RelayDenied = _subclass("relay_denied")
BadReturnPath = _subclass("bad_return_path")


class StoreError(Exception):
    """A store write failed (not the client's fault): becomes ``local_error``."""


class StorageFull(StoreError):
    """The disk or the database's page budget is exhausted: becomes ``insufficient_storage``."""


class ConfigError(Exception):
    """A config file is wrong; the message names the file and the key."""


class UsageError(Exception):
    """Bad input to a management command (unknown id, duplicate name, bad address)."""
