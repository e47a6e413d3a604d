"""File descriptors: raise ``RLIMIT_NOFILE`` at start and keep a reserve for SMTP (SPEC §14).

Every connection is a descriptor. A flood of one listener (700 slow HTTP clients) must not take
the descriptors the SMTP listeners and the delivery pools need, or the relay stops greeting.
So the soft limit is raised to the hard limit at start (systemd's ``LimitNOFILE`` sets both),
and the HTTP side may hold only what is left after the SMTP reserve: inbound
``max_connections`` + every pool's ``max_connections`` + ``BASE_RESERVE`` (database files,
DNS sockets, logs, the delivery channel).
"""

from __future__ import annotations

import logging
import resource

from helo_smtp.config import Config

log = logging.getLogger("helo_smtp.daemon")

BASE_RESERVE = 128
MIN_HTTP = 8  # the HTTP side always gets a few: /metrics and health checks must answer


def raise_nofile() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # a kernel cap (fs.nr_open) below the hard one
            log.warning("event=nofile_not_raised soft=%d hard=%d error=%s", soft, hard,
                        type(exc).__name__)
    return soft


def smtp_reserve(cfg: Config) -> int:
    """Descriptors the SMTP listeners and the delivery pools may need at once."""
    pools = sum(p.max_connections for p in (cfg.pools.transactional, cfg.pools.broadcast))
    return cfg.limits.max_connections + pools + BASE_RESERVE


def check_reserve(cfg: Config, soft: int) -> None:
    """Warn at start when the limit cannot even hold the SMTP side's own caps."""
    if soft != resource.RLIM_INFINITY and soft < smtp_reserve(cfg) + MIN_HTTP:
        log.warning("event=nofile_below_reserve nofile=%d smtp_reserve=%d", soft,
                    smtp_reserve(cfg))


def http_budget(cfg: Config, soft: int | None = None) -> int:
    """How many connections the HTTP side may hold: its setting, within what the SMTP reserve
    leaves of the descriptor limit."""
    if soft is None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    wanted = cfg.http.max_connections
    if soft == resource.RLIM_INFINITY:
        return wanted
    budget = min(wanted, max(MIN_HTTP, soft - smtp_reserve(cfg)))
    if budget < wanted:
        log.warning("event=http_connections_capped max_connections=%d cap=%d nofile=%d "
                    "smtp_reserve=%d", wanted, budget, soft, smtp_reserve(cfg))
    return budget
