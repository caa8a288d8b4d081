"""What a service keeps past the access log's retention, forgotten at its start and every
FORGET_EVERY while it runs (a holder's communication server, the numbering authority)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from audit.store import retention_cutoff

log = logging.getLogger(__name__)
# seconds between purges of what the store keeps past the access log's retention (one at start)
FORGET_EVERY = 3600.0
Part = TypeVar("Part")
Told = TypeVar("Told", covariant=True)


class Forgetting(Protocol[Told]):
    """A store that forgets what it keeps past a cutoff, a part (a transaction) at a time."""

    def forget_before(self, cutoff: datetime) -> Iterator[Told]: ...

    def close(self) -> None: ...


def apart(opened: Callable[[], Forgetting[Part]], cutoff: datetime) -> Iterator[Part]:
    """`forget_before` of a store `opened` for it alone (its own connection, in the thread `keep`
    runs it in), closed after."""
    with closing(opened()) as store:
        yield from store.forget_before(cutoff)


async def keep(who: str, forget_before: Callable[[datetime], Iterable[Part]],
               told: Callable[[list[Part], datetime], str]) -> None:
    """Forget what `who`'s store keeps past the access log's retention, now and every
    FORGET_EVERY, a short transaction (a part `forget_before` yields) at a time, in a thread of
    its own (`forget_before` opens its own connection: `apart`), the loop answering meanwhile
    though the store is locked by another process (the purge waits SQLite's busy timeout; still
    locked, or failing: again at the next time); what it forgot is logged at WARNING, the level
    the services run at, in the words `told` gives it, as the CLI's purge says it."""
    while True:
        cutoff = retention_cutoff(datetime.now(UTC))
        forgotten, failed = await asyncio.to_thread(_forgotten, forget_before, cutoff)
        if failed is not None:
            log.warning("%s: forgetting what is past the retention stopped (%s): again in "
                        "%.0f s", who, failed, FORGET_EVERY)
        if forgotten:
            log.warning("%s: %s", who, told(forgotten, cutoff))
        await asyncio.sleep(FORGET_EVERY)


def _forgotten(forget_before: Callable[[datetime], Iterable[Part]],
               cutoff: datetime) -> tuple[list[Part], sqlite3.Error | None]:
    """The parts `forget_before(cutoff)` committed, and the error that stopped it (None: none)."""
    forgotten: list[Part] = []
    try:
        for part in forget_before(cutoff):
            forgotten.append(part)
    except sqlite3.Error as exc:
        return forgotten, exc
    return forgotten, None
