"""The SSRF guard: webhook URLs must not reach loopback, private, link-local or other
non-public addresses (cloud metadata at 169.254.169.254, the relay's own admin ports, the LAN).

The check runs on the *resolved* address at connect time: aiohttp asks
``resolver.GuardedResolver`` for
the addresses it will connect to, so a name that resolves to a private address (or is re-pointed
there after the endpoint was created: DNS rebinding) is refused; an IP literal in the URL never
reaches a resolver and is checked by ``check_url``. ``[webhooks] allow_private = true`` lifts
both (tests, receivers on the same host or LAN).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit


class BlockedAddress(OSError):
    """The target resolves only to addresses the guard refuses."""


def public(address: str) -> bool:
    """True for a globally routable unicast address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_private: bool) -> str | None:
    """A reason to refuse ``url`` before any lookup, or None. (Names are checked once
    resolved, by ``resolver.GuardedResolver``.)"""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "must be an http:// or https:// URL"
    if allow_private:
        return None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return "localhost is not allowed" if host.rstrip(".").endswith("localhost") else None
    return None if public(str(literal)) else f"{host} is not a public address"


def blocked(exc: BaseException) -> bool:
    """Whether an aiohttp connection error came from the guard."""
    seen: Any = exc
    while seen is not None:
        if isinstance(seen, BlockedAddress) or isinstance(getattr(seen, "os_error", None),
                                                          BlockedAddress):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
