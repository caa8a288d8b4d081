"""The portal's reading of holders' answers, with an in-memory topic in place of the consumer
that follows one (the rest is the real class): an answer is kept only once logged, and a failed
audit write does not end the reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import portal.kafka as portal_kafka
from broker.clients import KafkaAccess
from broker.credentials import Credentials
from renkei import holder_logs, sealing
from renkei.envelope import Send
from schemas.codec import CODEC
from schemas.messages import HolderLogAnswer, HolderLogEntry


@dataclass
class Record:
    value: bytes


class Topic:
    """An answers topic, followed from its end."""

    def __init__(self) -> None:
        self.records: asyncio.Queue[Record] = asyncio.Queue()

    async def from_now(self, access: KafkaAccess, topic: str, ready: asyncio.Event
                       ) -> AsyncIterator[bytes]:
        ready.set()
        while True:
            yield (await self.records.get()).value


class Producer:
    async def stop(self) -> None:
        pass


async def _nothing(*args: Any) -> None:
    pass


async def _delivered(producer: Any, effects: Sequence[Send]) -> None:
    pass


def _answer(key: X25519PrivateKey, asked: portal_kafka.Asked) -> Record:
    entry = HolderLogEntry("rq-1", "2026-01-01T00:00:00", "provider", "", "", None, "P-037",
                           "local_tax", "課税所得 3,000,000円", "審査", "FOUND")
    sealed = holder_logs.seal(sealing.public_bytes(key), holder_logs.MARK + asked.request_id,
                              [entry])
    return Record(CODEC.encode(HolderLogAnswer(asked.request_id, "nenkin", datetime.now(UTC),
                                               (), sealed)))


async def _until(done: Any) -> None:
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)


async def test_a_failed_audit_write_neither_shows_the_answer_unlogged_nor_stops_the_reading(
        monkeypatch: pytest.MonkeyPatch) -> None:
    topic = Topic()
    monkeypatch.setattr(portal_kafka, "from_now", topic.from_now)
    monkeypatch.setattr(portal_kafka, "started", _nothing)
    monkeypatch.setattr(portal_kafka, "producer_for", lambda access: Producer())
    monkeypatch.setattr(portal_kafka, "deliver", _delivered)
    monkeypatch.setattr(portal_kafka, "RETRY_FIRST", 0.01, raising=False)
    key, tries, shown_unlogged = X25519PrivateKey.generate(), [0], []

    async def audit_write(asked: portal_kafka.Asked, answer: HolderLogAnswer) -> None:
        shown_unlogged.append(asked.complete)
        tries[0] += 1
        if tries[0] == 1:
            raise ConnectionError("the audit write timed out (simulated)")

    access = KafkaAccess("127.0.0.1:9", Credentials("portal", "-"))
    logs = portal_kafka.HolderLogs(access, "out", "in", key, audit_write)
    await logs.start()
    try:
        first = await logs.ask(["nenkin"], ["rq-1"], "basis", person="ABC98765XYZ")
        second = await logs.ask(["nenkin"], ["rq-2"], "basis", person="369PQRST246")
        await topic.records.put(_answer(key, first))
        await _until(lambda: first.complete)
        await topic.records.put(_answer(key, second))
        await _until(lambda: second.complete)
        assert first.complete and second.complete
        assert tries[0] == 3 and not any(shown_unlogged)
    finally:
        await logs.stop()
