"""Child processes: ending one politely (SIGTERM, a grace period, then SIGKILL), and finding
a process's children in ``/proc``."""

from __future__ import annotations

import subprocess
from pathlib import Path


def terminate(proc: subprocess.Popen, grace: float, kill_wait: float = 5.0) -> None:
    """SIGTERM ``proc`` if it still runs; SIGKILL it when it outlives ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(kill_wait)


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (``/proc/PID/task/*/children``), e.g. serve's delivery
    process."""
    return [int(k) for t in Path(f"/proc/{pid}/task").iterdir()
            for k in (t / "children").read_text().split()]
