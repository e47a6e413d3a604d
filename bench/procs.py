"""Process and port helpers: wait for a port, walk a process tree, read its memory from /proc."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.support.net import common_free_port as free_port  # noqa: F401 - one copy, re-exported


def wait_port(host: str, port: int, timeout: float) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port}") from None
            time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _kib(value: str | None) -> int:
    return int(value.split()[0]) * 1024 if value else 0


def rss(pid: int) -> int:
    """Resident set size now, in bytes (0 when the process is gone)."""
    return _kib(_status(pid).get("VmRSS"))


def peak_rss(pid: int) -> int:
    """Highest resident set size since the process started (VmHWM), in bytes."""
    return _kib(_status(pid).get("VmHWM"))


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        if p in seen or not alive(p):
            continue
        seen.append(p)
        todo += children(p)
    return seen


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_with_children(pid: int) -> float:
    """CPU seconds of a process plus the children it has already reaped (cutime, cstime):
    Postfix's master reaps every short-lived smtpd/cleanup/smtp, so nothing is lost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process tree, reaped children included."""
    return sum(cpu_with_children(p) for p in tree(pid))


def own_cpu() -> float:
    """This process, its reaped children, and its live descendants."""
    t = os.times()
    live = sum(cpu_with_children(p) for p in tree(os.getpid()) if p != os.getpid())
    return t.user + t.system + t.children_user + t.children_system + live


def pss(pid: int) -> int:
    """Proportional set size in bytes: shared pages divided among the processes sharing them,
    so summing it over Postfix's processes does not count libc 25 times."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0
