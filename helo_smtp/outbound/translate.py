"""Foreign exceptions become ``Outcome`` values here, and only here.

aiosmtplib, ``ssl``, ``OSError``, asyncio timeouts and dnspython each have their own exception
trees; the delivery code catches ``FOREIGN_ERRORS`` at each call into them and hands the
exception to ``from_exception``, which checks the most specific types first (after httpx's
``_transports/default.py``). Nothing above this module sees a foreign exception, and the text
kept for records never includes a traceback.
"""

from __future__ import annotations

import ssl
from dataclasses import replace

import aiosmtplib
import dns.exception
import dns.resolver

from helo_smtp.models import BounceCategory
from helo_smtp.outbound.outcome import Outcome, from_reply, local

#: What the delivery code catches around calls into the libraries it uses.
FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    aiosmtplib.SMTPException, ssl.SSLError, ssl.CertificateError, OSError, TimeoutError,
    dns.exception.DNSException, UnicodeError,
)

_C = BounceCategory


def _text(exc: BaseException, fallback: str) -> str:
    """A one-line, bounded description of a library error (never a traceback)."""
    text = " ".join(str(exc).split())[:300]
    return text or fallback


def from_exception(exc: BaseException, stage: str) -> Outcome:
    """The outcome for an exception raised by a library at ``stage``."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        o = from_reply("banner" if stage == "connect" else stage, exc.code, exc.message)
        if stage == "starttls":  # a refused STARTTLS is a TLS problem, never a bounce
            return replace(o, category=_C.TLS, permanent=False)
        return o
    if stage == "starttls":  # any failure of the handshake itself, certificate checks included
        return local("starttls", "4.7.5", "TLS handshake failed: " + _text(exc, "error"),
                     _C.TLS)
    if isinstance(exc, dns.exception.DNSException):
        return _dns(exc)
    ambiguous = stage == "data"  # the server may already hold the message
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
        return local(stage, "4.4.1", "connection timed out: " + _text(exc, "timeout"),
                     _C.CONNECTION)
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        return local(stage, "4.4.1", "connection failed: " + _text(exc, "error"),
                     _C.CONNECTION)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return local(stage, "4.4.2", f"conversation timed out during {stage}",
                     _C.CONNECTION, ambiguous)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError | ssl.SSLError):
        return local(stage, "4.4.2", f"lost connection during {stage}", _C.CONNECTION,
                     ambiguous)
    if isinstance(exc, OSError):
        return local(stage, "4.4.1", "network error: " + _text(exc, "error"),
                     _C.CONNECTION, ambiguous)
    if isinstance(exc, UnicodeError):
        return local(stage, "5.6.7", "address cannot be sent without SMTPUTF8", _C.CONTENT)
    return local(stage, "4.3.0", "delivery error: " + _text(exc, type(exc).__name__),
                 _C.OTHER, ambiguous)


def _dns(exc: dns.exception.DNSException) -> Outcome:
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return local("dns", "5.1.2", "domain not found (NXDOMAIN)", _C.DOMAIN_NOT_FOUND)
    if isinstance(exc, dns.exception.Timeout):
        return local("dns", "4.4.3", "DNS lookup timed out", _C.DNS)
    if isinstance(exc, dns.resolver.NoNameservers):
        return local("dns", "4.4.3", "DNS server failure (SERVFAIL or refused)", _C.DNS)
    return local("dns", "4.4.3", "DNS lookup failed: " + _text(exc, type(exc).__name__),
                 _C.DNS)


def dns_kind(exc: dns.exception.DNSException) -> str:
    """A short label for ``metrics.DNS_FAILURES``."""
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return "nxdomain"
    if isinstance(exc, dns.exception.Timeout):
        return "timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "servfail"
    return "error"
