"""A binding answer the registry gives again (a restart makes it answer a look-up it answered before
its kill), on the real broker: logged as the first was, at the time of the binding request."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from audit.heads import Signer
from audit.store import AuditStore, Query
from broker import acls, config, topics
from broker.clients import KafkaAccess
from holders.client import HolderClient
from holders.samples import SAMPLES
from renkei import scenario
from schemas.codec import CODEC
from tests.kafka_helpers import consumer, logged_events, producer, wait_assigned

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def answer_of(request_id: str, cons: object) -> bytes:
    """The registry's answer record to the look-up of `request_id`, as it wrote it."""
    async for record in cons:  # type: ignore[attr-defined]
        if record.key == request_id.encode():
            return bytes(record.value)
    raise AssertionError("the registry's topic ended")


@pytest.mark.parametrize("holder", ["sakura-town", "sakura-hospital"])
async def test_an_answer_given_again_is_logged_once_with_the_same_bytes(
        clients: dict[str, HolderClient], holder: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """Its events were stamped with the platform's reading of the broker's time as it handled
    each copy: the same ids, other bytes, and the audit store warned of tampering; they carry the
    broker's time of the binding request now (by personal number through the authority too)."""
    client = clients[holder]
    by_number = next(s for s in SAMPLES if s.holder_id == holder).knows_numbers
    async with consumer(KafkaAccess.of(config.ADMIN), topics.REGISTRY_OUT) as cons:
        await wait_assigned(cons)
        own = next(iter(client.store.own_numbers()))
        request_id = await client.bind(own, *scenario.staff(holder), by_number=by_number)
        answer = await asyncio.wait_for(answer_of(request_id, cons), 20)
    first = await logged_events(request_id, 1)
    async with producer(KafkaAccess.of(acls.REGISTRY)) as prod:
        await prod.send_and_wait(topics.REGISTRY_OUT, answer, key=request_id.encode())
    found = await logged_events(request_id, 2 * len(first))
    with caplog.at_level(logging.WARNING), \
            AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((e, CODEC.encode(e)) for e in found)
        kept = [e.event for e in store.query(Query()).entries]
    assert kept == first
    assert "other bytes" not in caplog.text
