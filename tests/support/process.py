"""Ending a child process politely: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import subprocess


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
