"""A broker just started answers an offset fetch with "loading" for a moment; aiokafka 0.14 read
that as "nothing committed", so a consumer (re)joining then started from the beginning (the
platform decided requests again that it had forgotten long ago). With broker.offset_fetch, the
committed offsets read from the first moment the broker answers are the committed ones."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from confluent_kafka.admin import NewTopic

from broker import config, process, provision
from broker.clients import KafkaAccess
from broker.ports import free_port_pair
from renkei.state import state_folder

pytestmark = pytest.mark.timeout(300)
GROUP, TOPIC, PARTITIONS = "renkei-test.committed", "renkei-test.committed", 8
COMMITS = 6000  # rounds of commits: a log the restarted coordinator loads for a moment (with
# 2,000, unfixed aiokafka read None in at least 3 runs of 6 here; with 6,000, in 4 of 4)
COMMITTERS = 4  # consumers committing them at once: one alone took 12.6 s of the test's 22 s


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A broker of this module's own: it is killed and started again under the test."""
    with state_folder(tmp_path_factory.mktemp("restarted")):
        process.up(*free_port_pair(), tethered=True)
        try:
            yield
        finally:
            process.down()


async def _commit_rounds(access: KafkaAccess, partitions: list[TopicPartition]) -> dict[int, int]:
    """Offsets committed for GROUP, many times over, by COMMITTERS consumers at once (each
    commits one round at a time), the last round alone after all the others; the last of each
    partition."""
    committers = [AIOKafkaConsumer(**access.aiokafka(), group_id=GROUP, enable_auto_commit=False)
                  for _ in range(COMMITTERS)]

    async def rounds(consumer: AIOKafkaConsumer, numbers: range) -> None:
        for n in numbers:
            await consumer.commit({tp: OffsetAndMetadata(n * 10 + tp.partition, "")
                                   for tp in partitions})

    try:
        for consumer in committers:
            await consumer.start()
            consumer.assign(partitions)
        await asyncio.gather(*(rounds(consumer, range(1 + k, COMMITS, COMMITTERS))
                               for k, consumer in enumerate(committers)))
        await rounds(committers[0], range(COMMITS, COMMITS + 1))
    finally:
        for consumer in committers:
            await consumer.stop()
    return {tp.partition: COMMITS * 10 + tp.partition for tp in partitions}


async def _read_while_starting(access: KafkaAccess, partitions: list[TopicPartition],
                               within: float) -> list[dict[int, int | None]]:
    """Committed offsets, read again and again from the first moment the broker answers."""
    reads: list[dict[int, int | None]] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and len(reads) < 20:
        consumer = AIOKafkaConsumer(**access.aiokafka(), group_id=GROUP,
                                    enable_auto_commit=False, request_timeout_ms=5000)
        try:
            await consumer.start()
            while len(reads) < 20:
                reads.append({tp.partition: await consumer.committed(tp) for tp in partitions})
        except Exception:  # not up yet (refused, timed out): try again
            await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
    return reads


async def test_offsets_read_as_a_started_broker_loads_them_are_the_committed_ones(
        own_broker: None) -> None:
    access = KafkaAccess.of(config.ADMIN)
    admin = provision.admin_client()
    for done in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        done.result(30)
    partitions = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    committed = await _commit_rounds(access, partitions)
    process.stop_node(1, hard=True)
    starting = asyncio.create_task(asyncio.to_thread(process.start_node, 1))
    reads = await _read_while_starting(access, partitions, within=90)
    await starting
    assert len(reads) == 20, "the broker did not answer"
    wrong = [read for read in reads if read != committed]
    assert not wrong, f"{len(wrong)} of {len(reads)} reads not the committed offsets: {wrong[0]}"
