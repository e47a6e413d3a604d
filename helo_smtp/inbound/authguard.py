"""AUTH failure bookkeeping (SPEC §14): who is locked out, who is slowed, in bounded memory.

Failures are counted in sliding windows (``auth_failure_window``) under three keys:

- the client address (``auth_failures_per_ip``): past it every AUTH from there is locked;
- the (username, client address) pair (``auth_failures_per_user``): past it that username is
  locked *from that address* only;
- the username alone: past ``auth_failures_per_user`` failures from all addresses together,
  every AUTH for it is *slowed* (answered after a delay growing to ``auth_slowdown_max``),
  never locked. So a guesser elsewhere cannot lock the owner out (issue #15: ten wrong secrets
  from anywhere used to lock the owner out for the whole window), yet a guesser spread over
  many addresses gets one answer per few seconds per connection.

IPv6 clients are counted by their /64 (one host is handed a /64 and can rotate inside it).

Memory is bounded without forgetting a lockout: counters (at most ``MAX_COUNTERS`` keys, a
bounded deque each) are evicted oldest-first, which forgets only progress towards a lock; a
key that reaches its limit moves to the lock table, where it stays until its window has
passed. The lock table holds at most ``MAX_LOCKS`` entries; when it is full of live locks, no
lock is dropped: instead every failure is answered ``421`` and closes its connection (as a
locked client's would) until locks expire, and one warning is logged.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict, deque

from helo_smtp.config import LimitsConfig

log = logging.getLogger("helo_smtp.smtp")

MAX_COUNTERS = 50_000  # keys counting towards a lock (about 10 MB at most)
MAX_LOCKS = 100_000  # live lockouts (about 15 MB at most)
SLOW_STEP = 0.5  # seconds added per failure past the username's limit
_MAX_SWEEP_EVERY = 1.0  # seconds between sweeps of a full lock table


def client_key(ip: str) -> str:
    """The address a failure is counted against: the IP, or its /64 for IPv6."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class AuthGuard:
    """Sliding failure windows per address, per (username, address) and per username."""

    def __init__(self, limits: LimitsConfig, max_counters: int = MAX_COUNTERS,
                 max_locks: int = MAX_LOCKS) -> None:
        self.limits = limits
        self.max_counters = max_counters
        self.max_locks = max_locks
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()
        self._locks: dict[str, float] = {}  # key -> monotonic time the lock ends
        self._swept = -_MAX_SWEEP_EVERY
        self._warned = False

    # ---- questions --------------------------------------------------------------------
    def ip_locked(self, ip: str, now: float | None = None) -> bool:
        return self._locked("ip:" + client_key(ip), _now(now))

    def locked(self, ip: str, username: str, now: float | None = None) -> bool:
        """AUTH from ``ip`` for ``username`` is refused (421) whatever the secret."""
        t = _now(now)
        return (self._locked("ip:" + client_key(ip), t)
                or self._locked(_pair(username, ip), t))

    def delay(self, username: str, now: float | None = None) -> float:
        """Seconds to wait before answering AUTH for ``username`` (0: not slowed)."""
        over = self._count("user:" + username, _now(now)) - self.limits.auth_failures_per_user
        if over < 0:
            return 0.0
        return min(self.limits.auth_slowdown_max, SLOW_STEP * (over + 1))

    def _locked(self, key: str, now: float) -> bool:
        until = self._locks.get(key)
        if until is None:
            return False
        if until > now:
            return True
        del self._locks[key]
        return False

    def _count(self, key: str, now: float) -> int:
        times = self._fails.get(key)
        if times is None:
            return 0
        cutoff = now - self.limits.auth_failure_window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._fails[key]
            return 0
        return len(times)

    # ---- recording ----------------------------------------------------------------------
    def record(self, ip: str, username: str, now: float | None = None) -> None:
        """One failed AUTH from ``ip`` for ``username``."""
        t = _now(now)
        lim = self.limits
        self._add("ip:" + client_key(ip), t, lim.auth_failures_per_ip, lock=True)
        self._add(_pair(username, ip), t, lim.auth_failures_per_user, lock=True)
        slow_span = lim.auth_failures_per_user + int(lim.auth_slowdown_max / SLOW_STEP) + 1
        self._add("user:" + username, t, slow_span, lock=False)

    def _add(self, key: str, now: float, limit: int, lock: bool) -> None:
        if lock and self._locked(key, now):
            return  # a locked key's attempts are not counted again
        self._count(key, now)
        times = self._fails.get(key)
        if times is None:
            while len(self._fails) >= self.max_counters:
                self._fails.popitem(last=False)  # forgets progress only, never a lock
            times = self._fails[key] = deque(maxlen=max(1, limit))
        else:
            self._fails.move_to_end(key)
        times.append(now)
        if lock and len(times) >= limit:
            self._lock(key, times[0] + self.limits.auth_failure_window, now)

    def full(self, now: float | None = None) -> bool:
        """The lock table is full of live locks: every failure must end its connection."""
        t = _now(now)
        if len(self._locks) >= self.max_locks and t - self._swept >= _MAX_SWEEP_EVERY:
            self._swept = t  # one sweep a second at most: each is O(locks)
            for k in [k for k, end in self._locks.items() if end <= t]:
                del self._locks[k]
        return len(self._locks) >= self.max_locks

    def _lock(self, key: str, until: float, now: float) -> None:
        if self.full(now):
            if not self._warned:
                log.warning("event=auth_lock_table_full locks=%d", len(self._locks))
            self._warned = True
            return  # no lock is dropped to make room (see the module docstring)
        self._warned = False
        self._locks[key] = until
        del self._fails[key]


def _pair(username: str, ip: str) -> str:
    return f"pair:{client_key(ip)}\0{username}"


def _now(now: float | None) -> float:
    return time.monotonic() if now is None else now
