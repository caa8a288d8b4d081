"""A holder's connectivity check: a Ping through the platform's agent, answered by a Pong."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from broker import topics
from broker.clients import KafkaAccess, at_end, running
from schemas.codec import CODEC, SchemaError
from schemas.messages import Ping, Pong


@dataclass(frozen=True)
class PingResult:
    ping: Ping
    pong: Pong
    seconds: float


async def ping(holder: str, within: float = 30.0) -> PingResult:
    """Send a Ping from `holder`'s outbox and wait for the Pong in its inbox."""
    access = KafkaAccess.of(holder)
    sent = Ping(str(uuid.uuid4()), datetime.now(UTC))
    inbox = AIOKafkaConsumer(topics.inbox(holder), **access.reading(), enable_auto_commit=False)
    async with running(inbox, access), asyncio.timeout(within):
        await at_end(inbox)
        async with running(AIOKafkaProducer(**access.aiokafka(), acks="all"), access) as outbox:
            started = time.monotonic()
            await outbox.send_and_wait(topics.outbox(holder), CODEC.encode(sent))
        while True:
            for records in (await inbox.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        pong = CODEC.decode(record.value or b"", Pong)
                    except SchemaError:
                        continue
                    if pong.request_id == sent.request_id:
                        return PingResult(sent, pong, time.monotonic() - started)
