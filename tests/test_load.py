"""The benchmark's open loop, without Kafka: when it sends, and from when it times."""

from __future__ import annotations

import itertools
import time

from renkei.load import TICK, open_loop
from renkei.scenario import LAWFUL, Exchange


class Instant:
    """A holder whose round trips take no time; it notes when each was sent."""

    def __init__(self) -> None:
        self.sent: list[float] = []

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def round_trip(self, exchange: Exchange, own_number: str,
                         within: float) -> tuple[str, str]:
        self.sent.append(time.monotonic())
        return f"request-{len(self.sent)}", "FOUND"


async def test_the_open_loop_sends_what_is_due_a_tick_at_a_time() -> None:
    holder, rate, seconds = Instant(), 1000.0, 0.3
    start = time.monotonic() + 0.01
    records = await open_loop(holder, itertools.repeat((LAWFUL[0], "own-1")), rate, start,
                              seconds, max_outstanding=10_000, drain=1.0)
    due = [start + k / rate for k in range(300)]
    assert sorted(records.started) == due  # each timed from when it was due, not when sent
    assert len(holder.sent) == 300 and all(s >= d for s, d in zip(holder.sent, due, strict=True))
    wakes = 1 + sum(b - a > 0.001 for a, b in itertools.pairwise(holder.sent))
    assert wakes <= seconds / TICK + 2  # not one wake per request (300 of them at 1 ms apart)
