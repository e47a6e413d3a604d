"""How a process of the relay runs: its event loop and its logging."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from helo_smtp.config import Config


def run(coro: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop (a dependency on POSIX), plain asyncio where it is missing."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def setup_logging(cfg: Config) -> None:
    """One line per record on stderr (``logs.py``); plain logging if that module is missing."""
    try:
        from helo_smtp.runtime import logs
    except ImportError:
        logging.basicConfig(level=cfg.logging.level,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        return
    logs.setup(cfg.logging)
