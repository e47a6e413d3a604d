"""Run the whole relay in this process until SIGTERM, for tests that need a real process to
kill: ``python -m tests.support.run_relay CONFIG_TOML`` (from the repository root).

Builds the config from the file, opens the store, runs ``daemon.Relay`` (which frees this
node's old leases first), and prints one JSON line on stdout once every listener is bound:
``{"pid": ..., "ports": {"submission": 41234, ...}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

from helo_smtp import config
from helo_smtp.runtime.daemon import Relay, lifetimes
from helo_smtp.store import Store


async def main(path: str) -> None:
    cfg = config.load(path)
    store = Store.open(cfg.server.database, lifetimes(cfg))
    relay = Relay(cfg, store, exclusive=True)
    await relay.start()
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    print(json.dumps({"pid": os.getpid(), "ports": relay.ports}), flush=True)
    await done.wait()
    await relay.stop(cfg.server.shutdown_grace)
    store.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(sys.argv[1]))
