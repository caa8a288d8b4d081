"""The service loop's consumer calls after an await, on the real broker: a partition asked for its
position (which aiokafka waits for when it is not known yet: a partition just assigned, its
committed offset being fetched; one reset) may no longer be assigned once the call returns, or
when the next partition is asked: a topic joined the pattern subscription meanwhile (aiokafka
makes a new subscription and assigns nothing until the rebalance), or a rebalance took it. aiokafka
then raises (position: IllegalStateError; highwater, last_poll_timestamp: AssertionError), which
stopped the service (the platform's loop catches neither). A partition no longer assigned is not
committed by this member: its next owner handles its records again (at least once)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiokafka import TopicPartition

from broker import config
from broker.clients import KafkaAccess
from broker.cluster import Cluster
from broker.fetch_sessions import SessionConsumer
from renkei.service_loop import Outflow, producer_for, read_to_the_end
from tests.kafka_helpers import made_topic, producer
from tests.loop_helpers import Deadline

TOPIC = "renkei-test.outflow-moved"


@asynccontextmanager
async def _subscribed(name: str) -> AsyncIterator[tuple[SessionConsumer, str]]:
    """A member (the platform's kind) of a group of its own subscribed to the pattern of
    `name`'s topics (one made, of two partitions, a record in each, read), and that topic."""
    access, topic = KafkaAccess.of(config.ADMIN), f"{TOPIC}.{name}"
    made_topic(topic, partitions=2)
    async with producer(access) as prod:
        for partition in (0, 1):
            await prod.send_and_wait(topic, b"handled", partition=partition)
    cons = SessionConsumer(**access.reading(), group_id=f"{topic}.group", enable_auto_commit=False,
                       auto_offset_reset="earliest", session_timeout_ms=6_000,
                       heartbeat_interval_ms=1_000)
    cons.subscribe(pattern=rf"^{re.escape(topic)}(\..+)?$")
    await cons.start()
    try:
        read: set[TopicPartition] = set()
        deadline = Deadline(30, f"a record from each partition of {topic}")
        while len(read) < 2:
            deadline.check(read)
            read |= {tp for tp, batch in (await cons.getmany(timeout_ms=500)).items() if batch}
        yield cons, topic
    finally:
        await cons.stop()


def _moved_while_asked(cons: SessionConsumer, topic: str,
                       monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The consumer's first position asked is held, once aiokafka has told it, until a new topic
    has joined the pattern (as a position aiokafka waits for would be): the subscription has
    changed when the next partition is asked. Set once it has."""
    position, moved = cons.position, asyncio.Event()

    async def held(tp: TopicPartition) -> int:
        at: int = await position(tp)
        if not moved.is_set():
            changed = cons._subscription.wait_for_subscription()
            made_topic(f"{topic}.new")
            cons.look_for_new_topics()
            await asyncio.wait_for(changed, 30)
            moved.set()
        return at

    monkeypatch.setattr(cons, "position", held)
    return moved


async def test_partitions_no_longer_assigned_when_their_position_is_asked_are_not_committed(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    async with _subscribed("commit") as (cons, topic):
        handled = sorted(cons.assignment())
        effects = producer_for(KafkaAccess.of(config.ADMIN))
        await effects.start()
        try:
            outflow = Outflow(cons, effects)
            await outflow.send(handled, [])
            moved = _moved_while_asked(cons, topic, monkeypatch)
            await outflow.commit(now=True)  # raised IllegalStateError: the service stopped
            assert moved.is_set()
            assert [await cons.committed(tp) for tp in handled] == [None, None], (
                "none committed: the subscription changed before the commit")
            again: set[TopicPartition] = set()  # by their next owner: this member, rejoined
            deadline = Deadline(30, "the records handled again after the rebalance")
            while len(again) < 2:
                deadline.check(again)
                polled = await cons.getmany(timeout_ms=500)
                again |= {tp for tp, batch in polled.items() if batch}
            await outflow.send(again, [])
            await outflow.commit(now=True)
            assert [await cons.committed(tp) for tp in handled] == [1, 1]
        finally:
            await effects.stop()


async def test_a_read_to_the_end_whose_partitions_moved_meanwhile_tells_no_time(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    async with _subscribed("read") as (cons, topic):
        moved = _moved_while_asked(cons, topic, monkeypatch)
        assert await read_to_the_end(cons) is None  # raised AssertionError (highwater)
        assert moved.is_set()
        deadline = Deadline(30, "a read to the end once the rebalance is over")
        while (await read_to_the_end(cons)) is None:
            deadline.check(cons.assignment())
            await cons.getmany(timeout_ms=200)
