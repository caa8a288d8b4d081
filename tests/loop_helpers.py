"""Whether the event loop went on while something waited: a ticker, and a SQLite database held
locked by another connection for a while; and a wait's deadline, which every waiting loop of the
tests checks on each turn."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

TICK = 0.01


class Deadline:
    """A wait's end, `within` seconds from now: past it, `check` fails saying what was awaited."""

    def __init__(self, within: float, awaited: str) -> None:
        self.within, self.awaited = within, awaited
        self.at = time.monotonic() + within

    def check(self, seen: object = None) -> None:
        """Fail if the deadline has passed, naming what was awaited and what was last `seen`."""
        if time.monotonic() > self.at:
            last = "" if seen is None else f" (last seen: {seen})"
            raise AssertionError(f"{self.awaited}: not within {self.within:g} s{last}")


class Ticker:
    """The event loop's longest stand-still between its turns of `tick` seconds from its start,
    by `clock` (time.thread_time with a tick of 0: the CPU time of the loop's longest step,
    whatever else a loaded machine runs meanwhile)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, tick: float = TICK) -> None:
        self.clock, self.tick = clock, tick
        self.started = self.turned = clock()
        self.longest = 0.0

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            self._turn()

    def _turn(self) -> float:
        now = self.clock()
        self.longest, self.turned = max(self.longest, now - self.turned), now
        return now

    def stood_still(self) -> float:
        """The longest stand-still so far, the one up to now counted (the ticker may not have
        turned yet)."""
        self._turn()
        return self.longest

    def went_on(self, at_least: float) -> float:
        """The seconds since the start, asserted to be `at_least`, with no stand-still of half."""
        took = self._turn() - self.started
        assert took >= at_least and self.longest < at_least / 2, (took, self.longest)
        return took


@contextlib.asynccontextmanager
async def ticking(clock: Callable[[], float] = time.monotonic,
                  tick: float = TICK) -> AsyncIterator[Ticker]:
    ticker = Ticker(clock, tick)
    task = asyncio.create_task(ticker._run())
    try:
        yield ticker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def cpu_ticking() -> AsyncIterator[Ticker]:
    """A ticker of the CPU time of the loop's longest step (time.thread_time, a tick of 0), the
    garbage collector off meanwhile: its passes over the whole test session's heap are not what
    is timed."""
    gc.disable()
    try:
        async with ticking(time.thread_time, tick=0) as ticker:
            yield ticker
    finally:
        gc.enable()


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
