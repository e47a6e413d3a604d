"""Domain ownership proof: the TXT record ``_helo.<domain>`` must hold ``helo-verify=<token>``.

Looked up with dnspython through the configured resolver (``[dns]``): with nameservers set, a
resolver built with ``configure=False`` (never the system's), else the system resolver. Every
way the lookup can end is a ``Verdict`` with a one-line message for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import dns.exception
import dns.resolver

from helo_smtp.config import DNSConfig
from helo_smtp.keys import VERIFY_PREFIX


class Outcome(StrEnum):
    VERIFIED = "verified"
    WRONG_TOKEN = "wrong_token"
    MISSING = "missing"
    DNS_FAILURE = "dns_failure"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    name: str  # the name looked up
    message: str
    found: list[str] = field(default_factory=list)  # TXT strings seen at the name

    @property
    def ok(self) -> bool:
        return self.outcome == Outcome.VERIFIED


def record_name(domain: str) -> str:
    return f"_helo.{domain}"


def make_resolver(cfg: DNSConfig) -> dns.resolver.Resolver:
    if cfg.nameservers:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = list(cfg.nameservers)
    else:
        res = dns.resolver.Resolver()
    res.port = cfg.port
    res.timeout = res.lifetime = cfg.timeout
    return res


def _txt_strings(answer: dns.resolver.Answer) -> list[str]:
    # A TXT record may be split in 255-octet strings; they form one value (RFC 7208 §3.3).
    # Non-printable characters are masked: the text is shown on the operator's terminal.
    out = []
    for rdata in answer:
        text = b"".join(rdata.strings).decode("utf-8", "replace").strip()
        out.append("".join(ch if ch.isprintable() else "?" for ch in text))
    return out


def check(domain: str, token: str, cfg: DNSConfig) -> Verdict:
    """Look the record up and compare it with the expected token."""
    name = record_name(domain)
    expected = VERIFY_PREFIX + token
    try:
        answer = make_resolver(cfg).resolve(name, "TXT", search=False)
    except dns.resolver.NXDOMAIN:
        return Verdict(Outcome.MISSING, name, f"no TXT record at {name} (NXDOMAIN); publish "
                       f"{name} TXT \"{expected}\" and run verify again")
    except dns.resolver.NoAnswer:
        return Verdict(Outcome.MISSING, name, f"no TXT record at {name}; publish "
                       f"{name} TXT \"{expected}\" and run verify again")
    except dns.resolver.LifetimeTimeout:
        return Verdict(Outcome.TIMEOUT, name, f"DNS lookup of {name} timed out after "
                       f"{cfg.timeout:g}s; check [dns] and try again")
    except dns.resolver.NoNameservers:
        return Verdict(Outcome.DNS_FAILURE, name, f"DNS lookup of {name} failed (SERVFAIL or "
                       "refused by every nameserver); try again later")
    except dns.exception.DNSException as exc:
        return Verdict(Outcome.DNS_FAILURE, name,
                       f"DNS lookup of {name} failed ({type(exc).__name__}); try again later")
    found = _txt_strings(answer)
    if expected in found:
        return Verdict(Outcome.VERIFIED, name, f"{name} holds the expected token", found)
    ours = [t for t in found if t.startswith(VERIFY_PREFIX)]
    if ours:
        return Verdict(Outcome.WRONG_TOKEN, name, f"TXT record at {name} has a different "
                       f"token ({ours[0]}); expected \"{expected}\"", found)
    return Verdict(Outcome.MISSING, name, f"{name} has TXT records but none starting with "
                   f"{VERIFY_PREFIX}; publish \"{expected}\"", found)
