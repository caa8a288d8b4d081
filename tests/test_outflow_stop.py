"""A service told to stop while its broker is away stops within seconds: the commit it was
waiting in (for its effects' acknowledgement, which a broker away never gives) gives way to the
stop, and leaves those effects waited for by the last commit, not cancelled nor forgotten. (It
waited for the broker until killed: `renkei demo` took GRACE_SECONDS, ~30 s, to stop after its
broker had gone, each service it ran killed in turn.)"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from renkei.envelope import Send
from renkei.service_loop import CLOSED_UNSENT, Outflow, last_commit


class Producer:
    """A producer whose broker is away (each send handed over, none ever acknowledged), or there
    and acknowledging each send at once."""

    def __init__(self, acknowledges: bool = False) -> None:
        self.acknowledges = acknowledges
        self.sent: list[asyncio.Future[Any]] = []

    async def send(self, *_: object, **__: object) -> asyncio.Future[Any]:
        self.sent.append(asyncio.get_running_loop().create_future())
        if self.acknowledges:
            self.sent[-1].set_result(None)
        return self.sent[-1]


async def test_a_commit_waiting_for_a_broker_away_gives_way_to_a_stop() -> None:
    producer = Producer()
    outflow = Outflow(cast(Any, None), cast(Any, producer))  # the consumer is never reached
    await outflow.send([TopicPartition("renkei.registry.in", 0)],
                       [Send("renkei.registry.out", "k", b"an effect")])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    began = time.monotonic()
    await asyncio.wait_for(outflow.commit(now=True, stop=stop), 3)
    assert time.monotonic() - began < 1
    assert not await last_commit(outflow, within=0.2)  # nothing committed: handled again
    [effect] = producer.sent
    assert not effect.done(), "the stop cancelled an effect the broker may still take"


async def test_effects_a_stop_gave_up_on_and_the_close_failed_are_not_logged_unretrieved(
        caplog: pytest.LogCaptureFixture) -> None:
    """The commit and the last commit given up with the broker away, the producer's close fails
    each effect it still held (aiokafka's fail_all): no one awaits them, and asyncio logged each
    with a traceback as never retrieved (a wait cancelled in `settled` took them as told)."""
    producer = Producer()
    outflow = Outflow(cast(Any, None), cast(Any, producer))
    await outflow.send([TopicPartition("renkei.registry.in", 0)],
                       [Send("renkei.registry.out", "k", b"one"),
                        Send("renkei.registry.out", "k", b"two")])
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stop.set)
    await outflow.commit(now=True, stop=stop)
    assert not await last_commit(outflow, within=0.2)
    for effect in producer.sent:  # close_producer, the broker away
        effect.set_exception(KafkaConnectionError(CLOSED_UNSENT))
    del outflow, producer, effect
    gc.collect()
    assert "never retrieved" not in caplog.text


HANDLED = TopicPartition("renkei.registry.in", 0)


class CommitTakesAWhile:
    """A consumer whose broker is there, each commit taking its round trip, `stop` set while
    its request is at the broker."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.committed: list[dict[TopicPartition, tuple[int, str]]] = []

    def assignment(self) -> set[TopicPartition]:
        return {HANDLED}

    async def position(self, _: TopicPartition) -> int:
        return 7

    async def commit(self, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        self.stop.set()
        await asyncio.sleep(0.05)
        self.committed.append(offsets)


async def test_a_stop_during_a_commits_round_trip_leaves_its_offsets_to_the_last_commit() -> None:
    """A stop set while a commit's request was at the broker gave the commit up after it had
    forgotten what was handled: the last commit committed nothing (yet said the broker was
    reached), and the batch was handled again at the next start."""
    stop = asyncio.Event()
    consumer = CommitTakesAWhile(stop)
    outflow = Outflow(cast(Any, consumer), cast(Any, Producer(acknowledges=True)))
    await outflow.send([HANDLED], [Send("renkei.registry.out", "k", b"an effect")])
    await outflow.commit(now=True, stop=stop)
    assert await last_commit(outflow, within=1)
    assert consumer.committed[-1:] == [{HANDLED: (7, "")}]
