"""Loopback address blocks per xdist worker, and free ports shared by several addresses."""

from __future__ import annotations

import os
import socket

# One /24 of loopback per xdist worker so parallel workers never collide.
_W = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
NET = f"127.0.{_W + 1}."  # 127.0.1.x for gw0 / no xdist
CLIENT_IP = NET + "1"
POOLS = {"transactional": [NET + "2"], "broadcast": [NET + "3"]}
MX_IPS = [NET + "10", NET + "11", NET + "12", NET + "13", NET + "14"]


def common_free_port(ips: list[str]) -> int:
    """A TCP port free on every ip (so all test MXs share one delivery port)."""
    for _ in range(100):
        s0 = socket.socket()
        s0.bind((ips[0], 0))
        port = s0.getsockname()[1]
        socks = [s0]
        try:
            for ip in ips[1:]:
                s = socket.socket()
                socks.append(s)
                s.bind((ip, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no common port")
