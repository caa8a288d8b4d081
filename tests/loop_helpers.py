"""Whether the event loop went on while something waited: a ticker, and a SQLite database held
locked by another connection for a while."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

TICK = 0.01


class Ticker:
    """Counts the event loop's turns of TICK seconds from its start."""

    def __init__(self) -> None:
        self.ticks = 0
        self.started = time.monotonic()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.ticks += 1

    def went_on(self, at_least: float) -> float:
        """The seconds since the start, asserted to be `at_least`, in which the loop ticked at
        least half the time."""
        took = time.monotonic() - self.started
        assert took >= at_least and self.ticks >= 0.5 * took / TICK, (took, self.ticks)
        return took


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    task = asyncio.create_task(ticker._run())
    try:
        yield ticker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def locked(path: Path, begin: str, seconds: float = 1.0) -> Iterator[None]:
    """The database at `path` held by another connection (`begin`: its lock) for `seconds`
    from the block's start."""
    other = sqlite3.connect(path, timeout=0, check_same_thread=False)
    other.execute(begin)
    free = threading.Timer(seconds, other.rollback)
    free.start()
    try:
        yield
    finally:
        free.join()
        other.close()
