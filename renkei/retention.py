"""What a service keeps past the access log's retention, forgotten at its start and every
FORGET_EVERY while it runs (a holder's communication server, the numbering authority)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar

from audit.store import retention_cutoff

log = logging.getLogger(__name__)
# seconds between purges of what the store keeps past the access log's retention (one at start)
FORGET_EVERY = 3600.0
Part = TypeVar("Part")


async def keep(who: str, forget_before: Callable[[datetime], Iterable[Part]],
               told: Callable[[list[Part], datetime], str]) -> None:
    """Forget what `who`'s store keeps past the access log's retention, now and every
    FORGET_EVERY, a short transaction (a part `forget_before` yields) at a time, the loop going
    on between them (the store locked by another process, or failing: again at the next time);
    what it forgot is logged at WARNING, the level the services run at, in the words `told`
    gives it, as the CLI's purge says it."""
    while True:
        forgotten: list[Part] = []
        cutoff = retention_cutoff(datetime.now(UTC))
        try:
            for part in forget_before(cutoff):
                forgotten.append(part)
                await asyncio.sleep(0)
        except sqlite3.Error as exc:
            log.warning("%s: forgetting what is past the retention stopped (%s): again in "
                        "%.0f s", who, exc, FORGET_EVERY)
        if forgotten:
            log.warning("%s: %s", who, told(forgotten, cutoff))
        await asyncio.sleep(FORGET_EVERY)
