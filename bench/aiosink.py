"""A bare aiosmtpd sink with STARTTLS and AUTH (any credential), answering 250 to every DATA.

The Python ceiling: what an aiosmtpd server with the same TLS and AUTH steps as helo-smtp does
when the message goes nowhere. Run as ``python -m bench.aiosink HOST PORT CERT KEY``.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


class _Handler:
    count = 0

    async def handle_DATA(self, server: SMTP, session: object, envelope: object) -> str:
        self.count += 1
        return "250 2.0.0 Ok: discarded"


def _accept_all(server: SMTP, session: object, envelope: object, mechanism: str,
                auth_data: object) -> AuthResult:
    return AuthResult(success=True)


async def main(host: str, port: int, cert: str, key: str) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    handler = _Handler()
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; with proto 0
    # every multi-line reply (EHLO) waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="aiosink.bench.test", tls_context=ctx,
                     require_starttls=True, auth_required=True, auth_require_tls=True,
                     authenticator=_accept_all, ident="bench-aiosink"),
        sock=sock, backlog=1024)
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGINT, done.set)
    await done.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
