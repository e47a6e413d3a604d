"""The DNS records the bounce domain needs (SPEC §13; ``domains show``, docs/operations.md).

- **MX** to this relay, so DSNs and feedback-loop reports for ``b+...@<bounce domain>`` reach
  the ``mail_type = "bounces"`` listener (port 25).
- **SPF** for the bounce domain: it is the MAIL FROM domain of every outbound message now, so
  receivers check SPF against it (RFC 7208 §2.4), and DMARC's SPF alignment is relaxed
  alignment with the From domain when the bounce domain is a subdomain of it (RFC 7489 §3.1.2).
  The relay's source addresses (both pools) are listed, else its host name (``a:``).
"""

from __future__ import annotations

from helo_smtp.config import Config


def bounce_records(cfg: Config) -> list[dict[str, str]]:
    domain = cfg.bounces.domain.rstrip(".")
    if not domain:
        return []
    host = cfg.server.hostname.rstrip(".")
    sources = dict.fromkeys([*cfg.pools.transactional.source_addresses,
                             *cfg.pools.broadcast.source_addresses])
    mechs = [f"ip6:{a}" if ":" in a else f"ip4:{a}" for a in sources] or [f"a:{host}"]
    return [{"name": domain, "type": "MX", "value": f"10 {host}."},
            {"name": domain, "type": "TXT", "value": f"v=spf1 {' '.join(mechs)} -all"}]
