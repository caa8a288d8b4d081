"""The baseline's holder: the same topics, principal and consumer loop as a real holder, but bare
messages — it sends padded requests and answers padded queries, nothing else."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from broker import acls, topics
from broker.clients import KafkaAccess, started, stopped
from renkei import bare
from renkei.bare import BareMessage, Sizes
from renkei.envelope import Send
from renkei.exchanges import Exchange
from renkei.service_loop import deliver, producer_for, serving
from schemas.messages import FOUND


class BareHolder:
    def __init__(self, holder: str, sizes: Sizes) -> None:
        self.holder = holder
        self.sizes = sizes
        self.access = KafkaAccess.of(holder)
        self.group = self.group_of(holder)
        # lingers 2 ms, the bare holder's best flat out (a Renkei holder's 10 cost it 20% there)
        self._producer = producer_for(self.access)
        self._waiters: dict[bytes, asyncio.Future[None]] = {}
        self._stop = asyncio.Event()
        self._inbox: asyncio.Task[bool] | None = None

    @staticmethod
    def group_of(holder: str) -> str:
        """The consumer group of a holder's bare inbox loop (under the holder's group prefix)."""
        return f"{acls.holder_group(holder)}bench"

    async def start(self) -> None:
        await started(self._producer, self.access)
        self._inbox = await serving(self.access, [topics.inbox(self.holder)], self.group,
                                    self._handle, self._stop, instance=f"{self.group}-1",
                                    producer=self._producer)

    async def stop(self) -> None:
        self._stop.set()
        if self._inbox is not None:
            await self._inbox
        await stopped(self._producer)

    async def round_trip(self, exchange: Exchange, own_number: str,
                         within: float) -> tuple[str, str]:
        """A padded request to the provider, through the relay; FOUND when its answer is back."""
        request_id = uuid.uuid4().bytes
        answered = self._waiters[request_id] = asyncio.get_running_loop().create_future()
        try:
            await deliver(self._producer, [Send(topics.outbox(self.holder), own_number, bare.encode(
                BareMessage(bare.QUERY, request_id, self.holder, exchange.provider),
                self.sizes.request, self.sizes.query))])
            async with asyncio.timeout(within):
                await answered
        finally:
            self._waiters.pop(request_id, None)
        return request_id.hex(), FOUND

    async def _handle(self, records: list[Any]) -> Sequence[Send]:
        out = []
        for record in records:
            if not bare.is_bare(record.value):
                continue  # a real message left from before the baseline
            message = bare.decode(record.value)
            if message.kind == bare.QUERY:
                key = record.key.decode() if record.key else None
                out.append(Send(topics.outbox(self.holder), key, bare.encode(
                    BareMessage(bare.ANSWER, message.request_id, self.holder, message.sender),
                    self.sizes.answer, self.sizes.reply)))
            elif (waiter := self._waiters.get(message.request_id)) and not waiter.done():
                waiter.set_result(None)
        return out
