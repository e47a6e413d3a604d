"""Postfix's ``smtp-sink`` as a remote MTA with scripted faults (installed by tests/run.sh).

    sink = SmtpSink("127.0.1.20", port, ["-f", "RCPT", "-B", "550 5.1.1 No such user"])
    ... sink.messages()    # every transaction it took (-d dump files), as bytes
    sink.stop()

Options used here (smtp-sink(1)): ``-f CMD`` hard (5xx) and ``-r CMD`` soft (4xx) reject with
the reply set by ``-B`` / ``-b``; ``-Q CMD`` 421 and disconnect; ``-q CMD`` disconnect without
a reply (``.`` is the end of DATA); ``-W CMD:SECONDS`` reply late; ``CONNECT`` is the greeting.
smtp-sink has no STARTTLS at all. As root it must drop privileges (``-u nobody``), so its dump
directory lives under /tmp, open to that user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.support.process import terminate
from tests.support.waiting import wait_for

SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"


def available() -> bool:
    return os.access(SMTP_SINK, os.X_OK)


class SmtpSink:
    def __init__(self, host: str, port: int, options: list[str]) -> None:
        self.host, self.port = host, port
        self.dumps = Path(tempfile.mkdtemp(prefix="smtp-sink-", dir="/tmp"))
        self.dumps.chmod(0o777)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        cmd = [SMTP_SINK, *user, "-d", f"{self.dumps}/%Y%m%d%H%M%S.", "-t", "30", *options,
               f"{host}:{port}", "64"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        wait_for(self._listening, timeout=10, what=f"smtp-sink on {host}:{port}")

    def _listening(self) -> bool:
        assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
        with socket.socket() as s:
            s.settimeout(1)
            try:
                s.connect((self.host, self.port))
            except OSError:
                return False
        return True

    def messages(self) -> list[bytes]:
        """The dumped transactions (a probe connection dumps nothing)."""
        return [p.read_bytes() for p in sorted(self.dumps.rglob("*")) if p.is_file()]

    def stop(self) -> None:
        terminate(self.proc, grace=5)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()
        shutil.rmtree(self.dumps, ignore_errors=True)
