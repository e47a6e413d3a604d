"""A whole relay in its own process (``python -m tests.support.run_relay CONFIG``), for tests
that SIGKILL it or run several nodes; ``ports`` once its listeners are bound."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.process import terminate

ROOT = Path(__file__).resolve().parents[2]


class RelayProcess:
    def __init__(self, config_path: Path, log: Path, name: str = "relay",
                 start_timeout: float = 60.0) -> None:
        self.name = name
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.support.run_relay",
                                      str(config_path)], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=self.log)
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()))
        reader.start()
        reader.join(start_timeout)
        assert line and line[0], f"{name} did not start; see {log}"
        self.ports = json.loads(line[0])["ports"]

    def kill(self) -> None:
        """SIGKILL: no drain, leases left behind, DATA replies cut."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        terminate(self.proc, grace=30, kill_wait=10)
        if not self.log.closed:
            self.log.close()
