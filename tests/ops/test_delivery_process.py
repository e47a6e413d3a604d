"""`helo-smtp serve` delivers from a child process (``helo_smtp/runtime/deliverer.py``).

Real processes throughout: the relay under test is ``helo-smtp serve`` as systemd starts it,
its child is found in ``/proc``, mail goes to the aiosmtpd sinks through the local DNS, and
``/metrics`` is fetched over HTTP.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from pathlib import Path

from tests.ops.test_serve import RCPT, message, submit
from tests.support.process import children
from tests.support.waiting import wait_for


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def delivery_child(proc) -> int:
    """The one child of ``serve``: the delivery process."""
    kids = wait_for(lambda: children(proc.proc.pid), 10, what="the delivery process")
    assert len(kids) == 1, kids
    assert "helo_smtp.runtime.child" in cmdline(kids[0])
    return kids[0]


def delivered(sink, subject: str) -> bool:
    return any(f"Subject: {subject}".encode() in m["data"] for m in sink.h.messages)


def metrics(proc) -> str:
    port = int(proc.wait_log(r"event=started .* http_port=\d+").rsplit("http_port=", 1)[1])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``text`` (0 when absent)."""
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and all(f'{k}="{v}"' in m.group(1) for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


def test_the_child_delivers_and_metrics_add_up_both_processes(serve, sinks, client_ctx):
    proc, _path, tenant = serve()
    proc.wait_ready()
    child = delivery_child(proc)
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "split"))
    wait_for(lambda: delivered(sinks[0], "split"), 15, what="delivery by the child")
    proc.wait_log(r"event=delivery .*state=delivered")

    def counted() -> str | None:
        text = metrics(proc)
        return text if sample(text, "helo_delivery_attempts_total", outcome="delivered") else None

    text = wait_for(counted, 10, what="the child's delivery counted in the parent's /metrics")
    assert sample(text, "helo_delivery_attempts_total", outcome="delivered") == 1
    assert sample(text, "helo_messages_accepted_total", mail_type="transactional") == 1
    # The parent handed the committed bytes over: the child did not read them back.
    assert sample(text, "helo_message_loads_total", source="memory") == 1
    assert sample(text, "helo_message_loads_total", source="store") == 0
    assert 'helo_queue_depth{mail_type="transactional"} 0.0' in text
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.output
    assert not Path(f"/proc/{child}").exists()  # the child drained and exited with it
    assert "Traceback" not in proc.output


def test_a_killed_child_is_restarted_and_mail_waits_for_it(serve, sinks, client_ctx):
    proc, _path, tenant = serve()
    proc.wait_ready()
    first = delivery_child(proc)
    os.kill(first, signal.SIGKILL)
    proc.wait_log(rf"event=delivery_process_exited pid={first} code=-9")
    # Accepted while no deliverer runs: safe in the store, sent once the new child is up.
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "while down"))
    wait_for(lambda: delivered(sinks[0], "while down"), 20, what="delivery after the restart")
    second = delivery_child(proc)
    assert second != first
    proc.wait_log(rf"event=delivery_process_started pid={second}")
    # The new child is woken by new mail as the first was (no waiting for a poll).
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "after"))
    wait_for(lambda: delivered(sinks[0], "after"), 4, what="delivery by the new child")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.output


def test_sighup_reaches_the_child_and_a_dead_parent_takes_it_along(serve):
    proc, _path, _tenant = serve()
    proc.wait_ready()
    child = delivery_child(proc)
    proc.wait_log(rf"event=delivery_started pid={child}")
    proc.signal(signal.SIGHUP)
    wait_for(lambda: proc.output.count("event=reloaded") == 2, 10,
             what="both processes reloading")
    # Killed outright, the parent takes its child along at once (PR_SET_PDEATHSIG): no orphan
    # finishing deliveries while a restarted relay's new child claims the same mail.
    os.kill(proc.proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not Path(f"/proc/{child}").exists() or
             Path(f"/proc/{child}/stat").read_text().split()[2] == "Z", 5,
             what="the orphaned delivery process exiting")


def test_a_message_too_big_to_hand_over_is_read_from_the_store(serve, sinks, client_ctx):
    proc, _path, tenant = serve()
    proc.wait_ready()
    big = message(tenant, "big")
    big.set_content("x" * 70 + "\n" + ("y" * 76 + "\n") * 1000)  # ~77 KiB > 64 KiB
    submit(proc.ports["submission"], client_ctx, tenant, big)
    wait_for(lambda: delivered(sinks[0], "big"), 15, what="delivery of the big message")
    text = metrics(proc)
    assert sample(text, "helo_message_loads_total", source="store") == 1
    assert sample(text, "helo_message_loads_total", source="memory") == 0


def test_delivery_process_off_is_one_process(serve, sinks, client_ctx):
    proc, _path, tenant = serve(server={"delivery_process": False})
    proc.wait_ready()
    submit(proc.ports["submission"], client_ctx, tenant, message(tenant, "single"))
    wait_for(lambda: delivered(sinks[0], "single"), 15, what="delivery in one process")
    assert children(proc.proc.pid) == []
    assert RCPT in sinks[0].h.messages[0]["rcpt_tos"]


def test_a_hung_child_is_killed_restarted_and_its_leases_given_back(serve, dns, extra_sinks,
                                                                    client_ctx):
    """The child stops (SIGSTOP) in the middle of a delivery: it answers no ping, so after
    half the watchdog interval (here 5 s) the parent kills it, gives its lease back, logs and
    counts it, and the new child delivers the message."""
    from email.message import EmailMessage

    from tests.support.net import NET

    sink = extra_sinks(26, "mx.hang.test")
    dns.add("hang.test", "MX", "10 mx.hang.test.")
    dns.add("mx.hang.test", "A", f"{NET}26")
    sink.h.stall = {"DATA": 60}
    proc, _path, tenant = serve(watchdog_usec=10_000_000)
    proc.wait_ready()
    first = delivery_child(proc)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = tenant.sender, "x@hang.test", "hung"
    msg.set_content("body\n")
    submit(proc.ports["submission"], client_ctx, tenant, msg)
    wait_for(lambda: any(v == "DATA" for _, v, _ in sink.h.commands), 15,
             what="the child in the middle of DATA")
    os.kill(first, signal.SIGSTOP)
    proc.wait_log(r"event=delivery_process_unresponsive timeout=5\.0s")
    proc.wait_log(rf"event=delivery_process_exited pid={first} code=-9 reason=unresponsive")
    proc.wait_log(r"event=leases_released count=1 ")  # given back by the parent at once
    sink.h.stall = {}
    wait_for(lambda: any(b"Subject: hung" in m["data"] for m in sink.h.messages), 30,
             what="delivery by the new child")
    second = delivery_child(proc)
    assert second != first
    text = metrics(proc)
    assert sample(text, "helo_delivery_process_restarts_total", reason="unresponsive") == 1
    assert sample(text, "helo_delivery_process_restarts_total", reason="exited") == 0
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.output
