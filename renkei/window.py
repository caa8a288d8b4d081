"""A window on topics: where they ended when it opened, and every record appended since.

Read without a consumer group (nothing committed, nobody's partitions taken), as any principal
allowed to read the topics.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer

from broker.clients import KafkaAccess, at_end, caught_up, started, stopped


class Window:
    def __init__(self, access: KafkaAccess, topic_names: Sequence[str]) -> None:
        self._access = access
        self._consumer = AIOKafkaConsumer(*topic_names, **access.reading(), group_id=None,
                                          enable_auto_commit=False, max_poll_records=10_000)

    async def __aenter__(self) -> Window:
        await started(self._consumer, self._access)
        await at_end(self._consumer)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await stopped(self._consumer)

    async def poll(self, wait: float = 0.2) -> list[Any]:
        """Whatever arrived since the last poll (or the opening)."""
        polled = await self._consumer.getmany(timeout_ms=int(wait * 1000))
        return [record for batch in polled.values() for record in batch]

    async def rest(self) -> list[Any]:
        """Everything not read yet, up to the topics' ends as they are now."""
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        found: list[Any] = []
        while not await caught_up(self._consumer, ends):
            found += await self.poll()
        return found
