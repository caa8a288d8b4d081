"""Keyed records land where Kafka's default partitioner puts them, with the hash in C."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner

from broker import partitioner, topics
from broker.clients import KafkaAccess
from renkei.service_loop import producer_for
from tests.kafka_helpers import producer

# org.apache.kafka.common.utils.UtilsTest#testMurmur2
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_is_kafkas() -> None:
    assert {key: partitioner.murmur2(key) for key in KAFKA_VECTORS} == KAFKA_VECTORS


def test_keyed_records_go_where_aiokafkas_default_partitioner_puts_them() -> None:
    keys = [str(uuid.UUID(int=i * 7919 + 1)).encode() for i in range(500)]
    keys += [b"", b"a", b"ab", b"abc", "連携".encode(), bytes(range(256))]
    default = DefaultPartitioner()
    for count in (1, 2, 3, 8, 12, 50):
        partitions = list(range(count))
        assert ([partitioner.by_key(k, partitions, partitions) for k in keys]
                == [default(k, partitions, partitions) for k in keys])


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    assert {partitioner.by_key(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
    assert partitioner.by_key(None, [0, 1, 2], []) in {0, 1, 2}


async def test_the_services_producer_places_keys_as_a_default_producer_on_the_broker(
        holders: list[str]) -> None:
    platform, inbox = KafkaAccess.of("platform"), topics.inbox(holders[0])
    keys = [f"partitioned-{i}".encode() for i in range(12)]
    services = producer_for(platform)
    await services.start()
    try:
        async with producer(platform) as default:
            ours = [(await services.send_and_wait(inbox, b"x", key=k)).partition for k in keys]
            theirs = [(await default.send_and_wait(inbox, b"x", key=k)).partition for k in keys]
    finally:
        await services.stop()
    assert ours == theirs
    assert len(set(ours)) > 1  # the inbox has several partitions, and the keys spread over them
