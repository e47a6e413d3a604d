"""Sample a running relay with py-spy and reduce the stacks to the top functions.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``). Self time is
the innermost frame; inclusive time counts a function once per stack it appears in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Begin sampling ``pid`` and its children (helo-smtp's delivery process) for ``seconds``
    (non-blocking: the target is never paused)."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    return subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(int(seconds) + 1),
                             "-r", str(rate), "-f", "raw", "-o", str(out), "--nonblocking",
                             "--subprocesses"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m.group('func')} ({path})"


def summarize(raw: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by self and by inclusive samples, as % of all samples."""
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = child = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += n
        if "helo_smtp.runtime.child" in stack:
            child += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    pct = (lambda c: round(100.0 * c / total, 1)) if total else (lambda c: 0.0)
    return {"samples": total, "delivery_process_pct": pct(child),
            "self": [(f, pct(c)) for f, c in self_c.most_common(top)],
            "inclusive": [(f, pct(c)) for f, c in incl.most_common()
                          if not _plumbing(f)][:top]}


# Frames on nearly every stack (thread start, the event loop, click, asyncio.run): they say
# nothing about where the time goes, so the inclusive list leaves them out.
_PLUMBING = ("threading.py", "click/", "(main.py)", "asyncio/runners.py", "asyncio/events.py",
             "concurrent/futures/thread.py", "<module>", "<frozen runpy>", "(child.py)",
             "uvloop/__init__.py",
             # py-spy --subprocesses roots each stack at "process PID:cmdline", and the bench's
             # cmdline (python -c "...; main()" serve --config ...) has semicolons of its own
             "process ", "serve --config")
_LOOP = ("run_forever", "run_until_complete", "_run_once")


def _plumbing(frame: str) -> bool:
    func = frame.split(" (", 1)[0].rsplit(".", 1)[-1]
    return any(p in frame for p in _PLUMBING) or func in _LOOP
