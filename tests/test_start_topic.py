"""A consumer started through broker.clients.started whose topic the broker does not list yet (a
broker just restarted lists its topics once it has loaded them) waits for it, saying so once,
and starts once it is there; aiokafka's start gave up with UnknownTopicOrPartitionError after
its request timeout, and the service died with a traceback. A topic never there is said in one
line: which topic, and `renkei broker provision`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka.admin import NewTopic

from broker import clients, config, process, provision
from broker.clients import KafkaAccess, NotProvisioned, started, stopped
from broker.ports import free_port_pair
from renkei.state import STATE_ENV

GAVE_UP_MS = 1000  # the consumer's request timeout: how long aiokafka's start waits for a topic
LATE = 6.0  # seconds after the consumer's start the topic is made: it is tried three times
WAITING = "waiting for it"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaAccess]:
    """A broker of the module's own (nothing provisioned): its admin's access."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(STATE_ENV, str(tmp_path_factory.mktemp("state")))
        process.up(*free_port_pair(), tethered=True)
        try:
            yield KafkaAccess.of(config.ADMIN)
        finally:
            process.down()


def _consumer(access: KafkaAccess, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, **access.reading(), group_id=None,
                            auto_offset_reset="earliest", enable_auto_commit=False,
                            request_timeout_ms=GAVE_UP_MS)


async def _made_and_written(access: KafkaAccess, topic: str) -> None:
    """`topic` made after LATE s, and a record written to it."""
    await asyncio.sleep(LATE)
    admin = provision.admin_client()  # kept until its request is answered
    for made in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        await asyncio.to_thread(made.result, 10)
    producer = AIOKafkaProducer(**access.aiokafka())
    await started(producer, access)
    try:
        await producer.send_and_wait(topic, b"there")
    finally:
        await stopped(producer)


async def test_a_consumer_whose_topic_comes_late_waits_for_it_and_reads(
        broker: KafkaAccess, caplog: pytest.LogCaptureFixture) -> None:
    topic = "renkei-test.late"
    consumer = _consumer(broker, topic)
    making = asyncio.create_task(_made_and_written(broker, topic))
    began = time.monotonic()
    try:
        await asyncio.wait_for(started(consumer, broker), 15)
        print(f"\nstarted {time.monotonic() - began:.1f} s after its start began")
        await making
        read = await consumer.getmany(timeout_ms=5000)
        assert [r.value for rs in read.values() for r in rs] == [b"there"]
    finally:
        making.cancel()
        await stopped(consumer)
    said = [r.getMessage() for r in caplog.records if WAITING in r.getMessage()]
    assert len(said) == 1, f"said once, not at every try: {said}"
    assert said[0].startswith(f"no topic {topic} on the broker at"), said


async def test_a_topic_never_there_is_said_in_one_line(
        broker: KafkaAccess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients, "TOPIC_WAIT", 3.0)
    topic = "renkei-test.never"
    began = time.monotonic()
    with pytest.raises(NotProvisioned) as raised:
        await asyncio.wait_for(started(_consumer(broker, topic), broker), 10)
    print(f"\nsaid {time.monotonic() - began:.1f} s after its start began")
    assert str(raised.value) == (f"no topic {topic} on the broker at {broker.bootstrap}: "
                                 "run `renkei broker provision`")
