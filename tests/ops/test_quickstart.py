"""The README's first hour, run as written (issue #21, "Done when"): in a fresh copy of the
repository, the README's first command (venv, pip install, init, serve on config/dev.toml),
then the swaks command that ``serve`` prints, then the README's quick-start commands, ending
with the message in the dev inbox, signed and with its link tracked.

Only the dev config's port numbers are changed in the copy, to free ones, so the test never
collides with a relay already running on this machine; every command runs as the README and
``serve`` print it. pip installs from the index as a reader's would (about a minute)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.support.shellexamples import ROOT, _blocks

DEV_PORTS = (2525, 4465, 2587, 8025)


def fresh_copy(dest: Path) -> Path:
    """What a clone holds: every tracked (or new, not ignored) file, none of .venv or var."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if name.startswith((".venv/", "var/")) or "node_modules/" in name or not src.is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_bytes(src.read_bytes())
    return dest


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def readme_block(after_heading: str, index: int = 0) -> str:
    """The ``index``-th sh block after a README heading, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(after_heading)
    first_line = text[:start].count("\n") + 1
    blocks = [b for b in _blocks(ROOT / "README.md") if b[0] > first_line and b[1] == "sh"]
    return "\n".join(blocks[index][2]).replace("\\\n", " ")


class Output:
    """A process's merged stdout and stderr, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.lines = proc, []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        rx, deadline = re.compile(pattern), time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := rx.search(line):
                    return m
            assert self.proc.poll() is None, "\n".join(self.lines[-40:])
            time.sleep(0.2)
        raise AssertionError(f"no /{pattern}/ in:\n" + "\n".join(self.lines[-40:]))


def sh(cmd: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_readme_first_command_then_quick_start_ends_in_the_dev_inbox(tmp_path):
    clone = fresh_copy(tmp_path / "helo-smtp")
    dev = clone / "config" / "dev.toml"
    text = dev.read_text()
    for old, new in zip(DEV_PORTS, free_ports(len(DEV_PORTS)), strict=True):
        text = re.sub(rf"\b{old}\b", str(new), text)
    dev.write_text(text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("HELO_SMTP_CONFIG", "NOTIFY_SOCKET", "VIRTUAL_ENV", "PYTHONPATH")}

    first = readme_block("## Two commands")
    assert first.startswith("python3 -m venv .venv") and "serve --config config/dev.toml" in first
    serve = subprocess.Popen(["bash", "-c", first], cwd=clone,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    out = Output(serve)
    try:
        out.wait_for(r"^Send a first message:$", timeout=900)  # pip install comes first
        swaks = out.wait_for(r"^\s+(swaks .*)$", timeout=30).group(1)
        sent = sh(swaks, clone, env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        mid = re.search(r"250 2\.0\.0 Ok: queued as (\S+)", sent.stdout).group(1)

        listing = "\n".join(readme_block("## Quick start", 1).splitlines())
        commands = [c.replace("<messageId>", mid) for c in listing.splitlines() if c.strip()]
        inbox = commands[0]
        assert inbox.startswith(".venv/bin/helo-smtp dev inbox")
        deadline = time.monotonic() + 120
        while True:  # delivery to the dev inbox is asynchronous: poll the README's command
            rows = json.loads(sh(inbox + " --json", clone, env).stdout or "[]")
            if any(r["id"] == mid for r in rows) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [r["subject"] for r in rows if r["id"] == mid] == ["Hello from helo-smtp"]
        results = [sh(c, clone, env) for c in commands]
        for c, r in zip(commands, results, strict=True):
            assert r.returncode == 0, (c, r.stdout, r.stderr)
        assert mid in results[0].stdout  # the listing
        shown = results[1].stdout
        assert "DKIM-Signature: v=1;" in shown and "/c/" in shown and "X-Helo-" not in shown
        assert "delivered" in results[2].stdout and "Ok: in the dev inbox" in results[2].stdout

        # The quick start does not poison itself: the same command again is delivered too.
        again = sh(swaks, clone, env)
        assert "250 2.0.0 Ok: queued as" in again.stdout and "suppressed" not in again.stdout
        # The README's suppression commands, as written, on a suppression made by hand.
        block = readme_block("### When a recipient is refused").splitlines()
        rcpt = re.search(r"--to (\S+)", swaks).group(1)
        added = sh(block[0].replace("suppressions list", f"suppressions add {rcpt}"), clone,
                   env)
        assert added.returncode == 0, added.stderr
        listed, removed = (sh(c, clone, env) for c in block)
        assert rcpt in listed.stdout, listed.stdout
        assert removed.returncode == 0 and "removed 1" in removed.stdout, removed.stdout
        assert "(no suppressions)" in sh(block[0], clone, env).stdout
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        serve.wait(60)
    assert serve.returncode == 0, "\n".join(out.lines[-40:])
    assert "Traceback" not in "\n".join(out.lines)
