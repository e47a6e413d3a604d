"""One ``helo-smtp serve`` per SQLite database and per node name (``runtime/node.py``), with
real ``serve`` processes: a second one on the same file refuses with one line; a restart after
``kill -9`` is not held up."""

from __future__ import annotations

import os
import signal

from tests.ops.serveproc import ServeProcess
from tests.ops.test_serve import message, submit
from tests.support.waiting import wait_for


def _one_error_line(proc: ServeProcess) -> str:
    assert proc.wait() == 1, proc.output
    lines = [x for x in proc.lines if x.strip()]
    assert "Traceback" not in proc.output
    assert lines and lines[-1].startswith("Error: "), proc.output
    return lines[-1]


def test_a_second_serve_on_one_sqlite_database_refuses(serve, tmp_path, sinks, client_ctx):
    first, path, tenant = serve()
    first.wait_ready()
    second = ServeProcess(path, tmp_path)
    try:
        line = _one_error_line(second)
    finally:
        second.close()
    assert "in use by another 'helo-smtp serve'" in line and "relay.db.lock" in line
    # The first one is untouched: it still takes and delivers mail.
    submit(first.ports["submission"], client_ctx, tenant, message(tenant, "still here"))
    wait_for(lambda: any(b"Subject: still here" in m["data"] for m in sinks[0].h.messages),
             15, what="delivery by the first serve")


def test_a_serve_killed_outright_can_be_started_again_at_once(serve, tmp_path):
    """The kernel drops the file lock with the process; the heartbeat row it left (younger
    than the lease) does not hold the restart up."""
    first, path, _ = serve()
    first.wait_ready()
    os.kill(first.proc.pid, signal.SIGKILL)
    first.wait()
    again = ServeProcess(path, tmp_path)
    try:
        again.wait_ready()
    finally:
        again.close()
    assert "Error" not in again.output
