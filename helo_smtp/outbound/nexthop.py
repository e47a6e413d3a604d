"""Where a recipient domain's mail goes when it is not straight to its MX (SPEC §15).

Postfix's order, read for each (message, domain) group:

1. ``[dev] inbox = true``: every domain goes to the built-in catch-all inbox
   (``devinbox.sink``) on loopback, whatever else is set. Nothing leaves the machine.
2. ``[delivery.routes]``: the recipient domain's own next hop (``transport_maps``).
3. ``[delivery] relayhost``: one smarthost for everything else (``relayhost``), with optional
   SMTP AUTH and a TLS mode of its own.
4. Otherwise the domain's MX (``mx.MXResolver``).

This module holds the parsed form (``NextHop``, ``parse``); ``routing.py`` picks the hop
and resolves it. A next hop is written as Postfix writes it: ``host:port`` looks up the MX
records of ``host`` (falling back to its addresses, RFC 5321 §5.1); ``[host]:port`` skips the
MX lookup and connects to ``host``'s addresses; the port defaults to 25.
``routing.RoutedResolver`` answers the delivery attempt's ``resolve(domain)`` with the next
hop's addresses, each ``Route`` carrying the ``NextHop`` so the session uses its port, TLS mode
and credentials. A next hop that does not resolve defers (4.4.3, category ``dns``): a
configuration problem of ours never bounces the recipient (Postfix defers mail for an
unreachable relayhost too).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from helo_smtp.config import Config
from helo_smtp.errors import ConfigError

DEFAULT_PORT = 25


@dataclass(frozen=True, slots=True)
class NextHop:
    """One configured next hop; ``tls`` is ``may`` (opportunistic, as for MX hosts),
    ``starttls`` (required, certificate not checked: Postfix's ``encrypt``), ``implicit``
    or ``none``."""

    host: str
    port: int
    mx_lookup: bool
    tls: str = "may"
    username: str = ""
    password: str = ""
    label: str = ""  # the setting it came from, for logs and failure text


def parse(text: str, key: str) -> tuple[str, int, bool]:
    """``host[:port]`` or ``[host][:port]`` -> (host, port, look up MX). Raises
    ``ConfigError`` naming ``key``."""
    value = text.strip()
    bracketed = value.startswith("[")
    port_text = ""
    if bracketed:
        host, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"'{key}' = {text!r}: write [host]:port")
        port_text = rest[1:]
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host = value  # a bare name, or an IPv6 address without a port
    host = host.strip().rstrip(".").lower()
    if not host:
        raise ConfigError(f"'{key}' = {text!r}: no host")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"'{key}' = {text!r}: the port must be a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"'{key}' = {text!r}: the port must be 1-65535")
    return host, port, not bracketed and not is_ip(host)


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check(cfg: Config) -> list[str]:
    """Errors in ``delivery.relayhost`` and ``[delivery.routes]``, each naming the key (for
    ``check-config``, ``serve`` and a reload; this module imports nothing heavy)."""
    items = [(f"delivery.routes.{dom}", hop) for dom, hop in cfg.delivery.routes.items()]
    if cfg.delivery.relayhost:
        items.append(("delivery.relayhost", cfg.delivery.relayhost))
    out = []
    for key, text in items:
        try:
            parse(text, key)
        except ConfigError as exc:
            out.append(f"{cfg.source}: {exc}")
    return out


__all__ = ["NextHop", "check", "is_ip", "parse"]
