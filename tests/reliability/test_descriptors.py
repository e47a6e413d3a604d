"""A flood of HTTP connections cannot take the file descriptors the SMTP listeners need
(SPEC §14, issue #15 item 5): ``helo-smtp serve`` under a low ``RLIMIT_NOFILE`` (hard limit
400, so it cannot raise it) keeps greeting SMTP clients while 500 slow HTTP clients knock."""

from __future__ import annotations

import re
import resource
import socket

from tests.ops.serveproc import ServeProcess
from tests.reliability.test_disk_full import popen_preexec
from tests.support.configfile import write_config
from tests.support.relay import base_config

NOFILE = 400
HTTP_CLIENTS = 500


def test_http_flood_leaves_smtp_its_descriptors(tmp_path, dns_server, mx_port, server_cert):
    cfg = base_config(tmp_path, dns_port=dns_server.port, mx_port=mx_port, cert=server_cert,
                      limits={"max_connections": 50},
                      pools={"transactional": {"max_connections": 10},
                             "broadcast": {"max_connections": 10}})
    path = write_config(tmp_path / "relay.toml", cfg)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))

    with popen_preexec(preexec):
        proc = ServeProcess(path, tmp_path)
    held: list[socket.socket] = []
    try:
        proc.wait_ready()
        http_port = int(re.search(r"event=http_listening .* port=(\d+)",
                                  proc.wait_log("event=http_listening")).group(1))
        for _ in range(HTTP_CLIENTS):  # each starts a request head and never finishes it
            sock = socket.create_connection(("127.0.0.1", http_port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            held.append(sock)
        proc.wait_log("event=http_connection_refused")  # the cap, not the kernel, said no
        for listener in ("submission", "broadcast"):
            smtp = socket.create_connection(("127.0.0.1", proc.ports[listener]), timeout=10)
            assert smtp.recv(100).startswith(b"220 ")  # still greeted
            smtp.sendall(b"QUIT\r\n")
            smtp.close()
        assert proc.proc.poll() is None
    finally:
        for sock in held:
            sock.close()
        proc.close()
    assert not [x for x in proc.lines if "Traceback" in x]
    assert any("event=http_connections_capped" in x for x in proc.lines)
