"""What a service keeps past the access log's retention, forgotten at its start and every
FORGET_EVERY while it runs (a holder's communication server, the numbering authority)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from audit.retention import retention_cutoff

log = logging.getLogger(__name__)
# seconds between purges of what the store keeps past the access log's retention (one at start)
FORGET_EVERY = 3600.0
Part = TypeVar("Part")
Told = TypeVar("Told", covariant=True)
Counts = TypeVar("Counts", bound=tuple[int, ...])


def summed(parts: Iterable[Counts], nothing: Counts) -> Counts:
    """What the parts (transactions) of a purge forgot together, count by count; `nothing`, the
    counts of a part that forgot nothing, gives their kind."""
    return type(nothing)(*(sum(counts) for counts in zip(nothing, *parts, strict=True)))


class Forgetting(Protocol[Told]):
    """A store that forgets what it keeps past a cutoff, a part (a transaction) at a time."""

    def forget_before(self, cutoff: datetime) -> Iterator[Told]: ...

    def close(self) -> None: ...


async def keep(who: str, opened: Callable[[], Forgetting[Part]],
               told: Callable[[list[Part], datetime], str]) -> None:
    """Forget what `who`'s store keeps past the access log's retention, now and every
    FORGET_EVERY, a short transaction (a part its `forget_before` yields) at a time, in a thread
    on a store `opened` for each purge alone (its own connection, closed after): the loop goes on
    while the purge waits for a store another process holds (SQLite's busy timeout); still
    locked, or failing (its store not opened, its disk full, say), it is logged in one line as
    it fails and tried again at the next time, the service going on (what it keeps past the
    retention kept until then); cancelled, the purge stops after the transaction it is in. What
    it forgot is logged at WARNING, the level the services run at, in the words `told` gives
    it, as the CLI's purge says it."""
    while True:
        cutoff = retention_cutoff(datetime.now(UTC))
        stop = threading.Event()
        try:
            forgotten, failed = await asyncio.to_thread(_forgotten, opened, cutoff, stop)
        except asyncio.CancelledError:
            stop.set()
            raise
        if failed is not None:
            log.warning("%s: forgetting what is past the retention stopped (%s: %s): what it "
                        "keeps past it is kept until the next time, in %.0f s", who,
                        type(failed).__name__, failed, FORGET_EVERY)
        if forgotten:
            log.warning("%s: %s", who, told(forgotten, cutoff))
        await asyncio.sleep(FORGET_EVERY)


def _forgotten(opened: Callable[[], Forgetting[Part]], cutoff: datetime,
               stop: threading.Event) -> tuple[list[Part], Exception | None]:
    """The parts the store `opened` committed forgetting before `cutoff` (closed after), until
    none is left or `stop` is set, and the error that stopped it (None: none), the store's own
    or another (one that cannot be opened: an OSError)."""
    forgotten: list[Part] = []
    try:
        with closing(opened()) as store:
            for part in store.forget_before(cutoff):
                forgotten.append(part)
                if stop.is_set():
                    break
    except Exception as exc:
        return forgotten, exc
    return forgotten, None
