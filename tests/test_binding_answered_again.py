"""A binding answer the registry gives again (a restart makes it answer a look-up it answered before
its kill), on the real broker: logged as the first was, at the time of the binding request; one
given again otherwise (the resident moved or withdrawn between the two) neither relayed nor
logged; none in time (the registry stopped), the binding answered TIMED_OUT once, and the answer
the registry gives once back neither relayed nor logged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from audit.heads import Signer
from audit.store import AuditStore, Query
from broker import acls, config, topics
from broker.clients import KafkaAccess
from holders.client import INBOX_MESSAGES, INVESTIGATING, HolderClient
from holders.samples import SAMPLES
from renkei import exchanges, town
from schemas.codec import CODEC
from schemas.messages import NOT_FOUND, TIMED_OUT, BindingAnswer, RegistryAnswer
from tests.conftest import ANSWER_TIMEOUT
from tests.kafka_helpers import (
    audit_events,
    consumer,
    logged_events,
    producer,
    wait_assigned,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECOND_WAIT = 1.5  # seconds the holder's inbox is read for a second answer (relayed in ms)


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
        request_id = await client.bind(own, *exchanges.staff(holder), by_number=by_number)
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


async def binding_answers(request_id: str, cons: object) -> int:
    """How many BindingAnswers of `request_id` the holder's inbox gets within SECOND_WAIT."""
    got = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SECOND_WAIT):
            async for record in cons:  # type: ignore[attr-defined]
                if record.key == request_id.encode():
                    got += isinstance(CODEC.decode(record.value, *INBOX_MESSAGES), BindingAnswer)
    return got


async def test_an_answer_given_again_otherwise_is_neither_relayed_nor_logged(
        clients: dict[str, HolderClient], tmp_path: Path) -> None:
    """The registry answering a look-up again with another answer (its resident withdrawn
    meanwhile): the holder got both answers and the audit log both bindings; the first alone
    now, decided once by the decider."""
    client, admin = clients["sakura-town"], KafkaAccess.of(config.ADMIN)
    async with consumer(admin, topics.REGISTRY_OUT) as cons, \
            consumer(admin, topics.inbox("sakura-town")) as inbox:
        await wait_assigned(cons)
        await wait_assigned(inbox)
        own = next(iter(client.store.own_numbers()))
        request_id = await client.bind(own, *exchanges.staff("sakura-town"))
        answer = await asyncio.wait_for(answer_of(request_id, cons), 20)
        first = await logged_events(request_id, 1)
        other = replace(CODEC.decode(answer, RegistryAnswer), status=NOT_FOUND, candidates=())
        async with producer(KafkaAccess.of(acls.REGISTRY)) as prod:
            await prod.send_and_wait(topics.REGISTRY_OUT, CODEC.encode(other),
                                     key=request_id.encode())
        relayed = await binding_answers(request_id, inbox)
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((e, CODEC.encode(e)) for e in await audit_events({request_id}))
        kept = [e.event for e in store.query(Query()).entries]
    assert relayed == 1
    assert kept == first and [e.person for e in first if e.person]


async def test_a_binding_the_registry_does_not_answer_in_time_is_answered_timed_out_once(
        platform: town.Processes, clients: dict[str, HolderClient]) -> None:
    """Its request stayed SENT for good, nothing logged: it is answered TIMED_OUT at its deadline
    (no candidates: its record investigated, as on a registry's refusal) and logged so, once;
    the registry's answer once it is back (its look-up read from its last commit) is dropped."""
    client, admin = clients["sakura-hospital"], KafkaAccess.of(config.ADMIN)
    async with consumer(admin, topics.REGISTRY_OUT) as cons, \
            consumer(admin, topics.inbox("sakura-hospital")) as inbox:
        await wait_assigned(cons)
        await wait_assigned(inbox)
        platform.stop("registry")
        try:
            own = next(iter(client.store.own_numbers()))
            request_id = await client.bind(own, *exchanges.staff("sakura-hospital"))
            outcome = await client.outcome(request_id, ANSWER_TIMEOUT + 10)
        finally:
            platform.start_service("registry")
        await asyncio.wait_for(answer_of(request_id, cons), 30)
        relayed = await binding_answers(request_id, inbox)
    assert (outcome.status, (outcome.detail or "").split(":")[0]) == (INVESTIGATING, TIMED_OUT)
    assert relayed == 1
    assert [(e.kind, e.outcome) for e in await audit_events({request_id})] == [
        ("BINDING", TIMED_OUT)]
