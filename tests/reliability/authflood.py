"""An AUTH brute-force client, run as its own process so its work never shares a GIL with the
relay under test (the relay's loop lag is what the test measures):

    python -m tests.reliability.authflood PORT USERNAME CONNECTIONS PARALLEL TRIES SRC1,SRC2,...

Opens CONNECTIONS implicit-TLS connections, PARALLEL at a time (round-robin over the source
addresses),
each sending EHLO then up to TRIES ``AUTH PLAIN`` guesses, and prints one JSON list of every
AUTH reply line. Certificates are not checked: an attacker does not care.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import sys


async def _reply(reader: asyncio.StreamReader) -> str:
    lines = []
    while True:
        raw = await reader.readline()
        if not raw:
            return "\n".join(lines)
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(text)
        if len(text) < 4 or text[3] != "-":
            return "\n".join(lines)


async def _one(port: int, username: str, tries: int, source: str, n: int,
               ctx: ssl.SSLContext) -> list[str]:
    out: list[str] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                   local_addr=(source, 0))
    try:
        await _reply(reader)  # banner
        writer.write(b"EHLO brute.test\r\n")
        await _reply(reader)
        for i in range(tries):
            token = base64.b64encode(f"\0{username}\0guess-{n}-{i}".encode())
            writer.write(b"AUTH PLAIN " + token + b"\r\n")
            reply = await _reply(reader)
            if not reply:
                break
            out.append(reply)
            if reply.startswith("421"):
                break
    finally:
        writer.close()
    return out


async def main(port: int, username: str, connections: int, parallel: int, tries: int,
               sources: list[str]) -> list[str]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(parallel)

    async def one(n: int) -> list[str]:
        async with gate:
            return await _one(port, username, tries, sources[n % len(sources)], n, ctx)

    results = await asyncio.gather(*(one(n) for n in range(connections)))
    return [r for rs in results for r in rs]


if __name__ == "__main__":
    port, user, conns, parallel, tries, srcs = sys.argv[1:7]
    replies = asyncio.run(main(int(port), user, int(conns), int(parallel), int(tries),
                               srcs.split(",")))
    print(json.dumps(replies))
