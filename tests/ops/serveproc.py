"""``helo-smtp serve`` as a real subprocess, the way systemd runs it: a notify socket of the
test's own in ``$NOTIFY_SOCKET``, signals for stop and reload, logs on stderr."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.ops.notifysock import NotifySocket, fields
from tests.support.waiting import wait_for

HELO_SMTP = str(Path(sys.executable).parent / "helo-smtp")

# Runs the command with MemoryDenyWriteExecute's rule in force (prctl PR_SET_MDWE,
# PR_MDWE_REFUSE_EXEC_GAIN: no writable+executable mapping, ever; kept across execve), the
# way the unit's MemoryDenyWriteExecute=yes runs the relay.
_MDWE_EXEC = ("import ctypes, os, sys\n"
              "if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:\n"
              "    sys.exit(97)\n"
              "os.execv(sys.argv[1], sys.argv[1:])\n")


def mdwe_supported() -> bool:
    """Linux >= 6.3 has PR_SET_MDWE."""
    probe = subprocess.run([sys.executable, "-c", _MDWE_EXEC, "/bin/true"], timeout=30)
    return probe.returncode == 0


def mdwe_refuses_wx() -> bool:
    """A process started under the wrapper cannot map memory writable and executable."""
    code = ("import mmap\n"
            "mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n")
    p = subprocess.run([sys.executable, "-c", _MDWE_EXEC, sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=30)
    return p.returncode != 0 and "PermissionError" in p.stderr


class ServeProcess:
    """One ``helo-smtp serve --config <path>`` process."""

    def __init__(self, config_path: Path, cwd: Path, *, abstract_socket: bool = False,
                 watchdog_usec: int | None = None, mdwe: bool = False) -> None:
        self.notify = NotifySocket(abstract=abstract_socket)
        env = {k: v for k, v in os.environ.items()
               if k not in ("WATCHDOG_USEC", "WATCHDOG_PID", "HELO_SMTP_CONFIG")}
        env["NOTIFY_SOCKET"] = self.notify.env
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        cmd = [HELO_SMTP, "serve", "--config", str(config_path)]
        if mdwe:
            cmd = [sys.executable, "-c", _MDWE_EXEC, *cmd]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ports: dict[str, int] = {}

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 30.0) -> list[str]:
        """Datagrams up to READY=1; learns the listener ports from its STATUS= line."""
        try:
            got = self.notify.until(lambda d: "READY=1" in d.splitlines(), timeout)
        except AssertionError:
            raise AssertionError(f"no READY=1; exit={self.proc.poll()} output:\n{self.output}"
                                 ) from None
        status = fields(got[-1]).get("STATUS", "")
        m = re.match(r"listening ((?:\S+:\d+ ?)+);", status)
        assert m, status
        self.ports = {name: int(port) for name, port in
                      (item.rsplit(":", 1) for item in m.group(1).split())}
        return got

    def wait_log(self, pattern: str, timeout: float = 15.0) -> str:
        rx = re.compile(pattern)
        return wait_for(lambda: next((x for x in self.lines if rx.search(x)), None), timeout,
                        what=f"log line /{pattern}/ in:\n{self.output}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.notify.close()
