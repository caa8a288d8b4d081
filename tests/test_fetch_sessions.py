"""Incremental fetch sessions: what each request names, and a consumer of many partitions that
loses and repeats nothing through pauses, seeks and a session the broker no longer accepts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, defaultdict
from dataclasses import replace
from functools import partial
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.errors import FetchSessionIdNotFound, InvalidFetchSessionEpoch
from aiokafka.protocol.fetch import FetchRequest_v4, FetchRequest_v11
from aiokafka.protocol.metadata import MetadataResponse_v0
from confluent_kafka.admin import NewTopic

from broker import config, provision
from broker.clients import KafkaAccess
from broker.cluster import Cluster
from broker.fetch_sessions import (
    INITIAL_EPOCH,
    NO_SESSION,
    QUIET_CONNECTION,
    FetchSession,
    FetchSettings,
    Gathering,
    Hearing,
    Quiet,
    SessionConsumer,
    SessionFetch,
    SessionFetcher,
    offsets_of,
)
from tests.kafka_helpers import producer

TOPIC, PARTITIONS = "renkei-test.fetch-sessions", 24
A, B, C = (TopicPartition("t", p) for p in range(3))


SETTINGS = FetchSettings(max_wait_ms=500, min_bytes=1, max_bytes=52_428_800, isolation_level=0,
                         partition_bytes=1_048_576)


def test_the_first_request_is_full_and_opens_a_session() -> None:
    session = FetchSession()
    struct = SessionFetch(SETTINGS, {A: 0, B: 5}, session).build(FetchRequest_v11)
    assert (struct.session_id, struct.session_epoch) == (NO_SESSION, INITIAL_EPOCH)
    assert [(t, sorted(p[0] for p in ps)) for t, ps in struct.topics] == [("t", [0, 1])]
    session.answered(77, 0)
    assert (session.session_id, session.epoch) == (77, 1)


def test_then_a_request_names_only_moved_or_new_partitions_and_forgets_dropped_ones() -> None:
    session = FetchSession()
    SessionFetch(SETTINGS, {A: 0, B: 5}, session)
    session.answered(77, 0)
    struct = SessionFetch(SETTINGS, {A: 0, B: 9, C: 2}, session).build(FetchRequest_v11)
    assert (struct.session_id, struct.session_epoch) == (77, 1)
    assert [(t, sorted((p[0], p[2]) for p in ps)) for t, ps in struct.topics] == [
        ("t", [(1, 9), (2, 2)])]
    assert struct.forgotten_topics_data == []
    session.answered(77, 0)
    struct = SessionFetch(SETTINGS, {B: 9, C: 2}, session).build(FetchRequest_v11)
    assert (struct.session_epoch, struct.topics, struct.forgotten_topics_data) == (
        2, [], [("t", [0])])


def test_an_idle_request_names_nothing() -> None:
    session = FetchSession()
    SessionFetch(SETTINGS, {A: 3, B: 3}, session)
    session.answered(5, 0)
    assert SessionFetch(SETTINGS, {A: 3, B: 3}, session).build(FetchRequest_v11).topics == []


def test_while_answers_carry_news_the_broker_is_asked_to_gather() -> None:
    session, gathering = FetchSession(), Gathering(max_wait_ms=5, min_bytes=65_536)
    SessionFetch(SETTINGS, {A: 0}, session, gathering)
    session.answered(5, 0, news=True)
    struct = SessionFetch(SETTINGS, {A: 4}, session, gathering).build(FetchRequest_v11)
    assert (struct.max_wait_time, struct.min_bytes) == (5, 65_536)
    session.answered(5, 0, news=False)
    struct = SessionFetch(SETTINGS, {A: 4}, session, gathering).build(FetchRequest_v11)
    assert (struct.max_wait_time, struct.min_bytes) == (500, 1)  # the consumer's own


def test_an_answer_tells_which_partitions_brought_records() -> None:
    session = FetchSession()
    fetch = SessionFetch(SETTINGS, {A: 0, B: 5}, session)
    fetch.answer(SimpleNamespace(session_id=5, error_code=0, topics=[("t", [
        (0, 0, 3, 3, 0, [], -1, b"records"), (1, 0, 5, 5, 0, [], -1, b"")])]))
    assert fetch.records == [A]  # B is in the answer only because the broker had no HW for it
    assert offsets_of(fetch) == {A: 0, B: 5} and session.busy


def test_a_lost_or_refused_answer_starts_again_in_full() -> None:
    session = FetchSession()
    SessionFetch(SETTINGS, {A: 0}, session)
    session.answered(5, 0)
    SessionFetch(SETTINGS, {A: 1}, session)
    session.lost()
    step = SessionFetch(SETTINGS, {A: 1, B: 0}, session).step
    assert (step.session_id, step.epoch, step.named) == (5, INITIAL_EPOCH, frozenset({A, B}))
    session.answered(6, 0)
    SessionFetch(SETTINGS, {A: 1, B: 0}, session)
    session.answered(6, InvalidFetchSessionEpoch.errno)  # the old one is closed, a new one opened
    assert (session.session_id, session.epoch) == (6, INITIAL_EPOCH)
    session.answered(6, FetchSessionIdNotFound.errno)
    assert (session.session_id, session.epoch) == (NO_SESSION, INITIAL_EPOCH)


def test_a_broker_that_opens_no_session_gets_full_requests() -> None:
    session = FetchSession()
    for _ in range(2):
        assert SessionFetch(SETTINGS, {A: 0, B: 0}, session).step.named == {A, B}
        session.answered(NO_SESSION, 0)
    assert SessionFetch(SETTINGS, {A: 0}, session).build(FetchRequest_v4).topics == [
        ("t", [(0, 0, 1_048_576)])]


def _fetcher(cluster: ClusterMetadata) -> SessionFetcher:
    """A session fetcher's deciding state, without its routine (nothing in flight, no records)."""
    fetcher = SessionFetcher.__new__(SessionFetcher)
    fetcher._client = SimpleNamespace(cluster=cluster)
    fetcher._preferred_read_replica, fetcher._records, fetcher._in_flight = {}, OrderedDict(), set()
    fetcher._fetcher_timeout, fetcher._client_rack = 0.2, None
    fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes, fetcher._fetch_max_bytes = 500, 1, 2**20
    fetcher._isolation_level, fetcher._max_partition_fetch_bytes = 0, 2**20
    SessionFetcher.adopt(fetcher, gathering=None)
    return fetcher


def _aiokafkas_own(fetcher: SessionFetcher, assignment: Any) -> tuple[Any, ...]:
    """aiokafka's own pass, its requests read as each node's partitions and offsets."""
    fetches, reset, timeout, invalid, resume = Fetcher._get_actions_per_node(fetcher, assignment)
    return ({node: offsets_of(request) for node, request in fetches},
            dict(reset), timeout, invalid, resume)


def _lean(fetcher: SessionFetcher, assignment: Any) -> tuple[Any, ...] | None:
    """The lean pass, without what it says of quiet partitions (asserted to be none)."""
    usual = fetcher._usual_actions(assignment)
    if usual is None:
        return None
    wanted, quiet, *others = usual
    assert quiet == {}
    return wanted, *others


def _two_nodes() -> tuple[SessionFetcher, Any]:
    """A fetcher of six partitions on two brokers (even ones on 0), at offsets 0, 10, …, 50."""
    cluster = ClusterMetadata()
    cluster.update_metadata(MetadataResponse_v0(
        [(0, "a", 1), (1, "b", 1)], [(0, "t", [(0, p, p % 2, [0], [0]) for p in range(6)])]))
    subscription = SubscriptionState()
    subscription.assign_from_user({TopicPartition("t", p) for p in range(6)})
    assignment = subscription.subscription.assignment
    for p in range(6):
        assignment.state_value(TopicPartition("t", p)).reset_to(10 * p)
    return _fetcher(cluster), assignment


async def test_the_lean_pass_decides_as_aiokafka_does_or_leaves_it_to_aiokafka() -> None:
    fetcher, assignment = _two_nodes()
    usual = _lean(fetcher, assignment)
    assert usual == _aiokafkas_own(fetcher, assignment) and set(usual[0]) == {0, 1}
    fetcher._in_flight.add(1)  # node 1 has a fetch out: only node 0's partitions
    assert _lean(fetcher, assignment) == _aiokafkas_own(fetcher, assignment)
    fetcher._records[A] = FetchResult(A, assignment=assignment, partition_records=None,
                                      backoff=5.0)  # node 0 has records not yet consumed
    nothing, own = _lean(fetcher, assignment), _aiokafkas_own(fetcher, assignment)
    assert nothing is not None and nothing[0] == own[0] == {} and nothing[3:] == own[3:]
    assert 4.0 < own[2] <= nothing[2] <= 5.0  # wake up when those records' backoff ends
    fetcher._records.clear()
    fetcher._in_flight.clear()
    assignment.state_value(B).pause()  # unusual: aiokafka's own pass decides
    assert fetcher._usual_actions(assignment) is None


async def test_quiet_partitions_are_watched_apart_and_the_pass_goes_through_busy_ones() -> None:
    fetcher, assignment = _two_nodes()
    t3, t4, t5, gone = (TopicPartition("t", p) for p in (3, 4, 5, 6))
    fetcher._hearing = Hearing(Quiet(10.0, 500, 100))  # grace: 1 s
    first = fetcher._usual_actions(assignment)  # first assigned counts as heard: all busy
    assert first is not None and first[1] == {} and first[2:] == _aiokafkas_own(
        fetcher, assignment)[1:] and first[0] == _aiokafkas_own(fetcher, assignment)[0]
    assert fetcher._hearing.due > time.monotonic() + 9  # no need to look before one turns quiet

    now = time.monotonic()
    fetcher._hearing.last = {gone: now - 40, C: now - 30, t3: now - 20, t4: now - 12,
                             t5: now - 11.5, B: now - 10.5, A: now - 1}  # as heard, oldest first
    fetcher._in_flight.update({0, 1})
    assert fetcher._usual_actions(assignment) == ({}, {}, {}, 0.2, False, [])  # no pass at all
    fetcher._in_flight.clear()
    fetcher._hearing.due = 0.0
    wanted, quiet, *_ = fetcher._usual_actions(assignment) or ()
    assert wanted == {0: {A: 0}, 1: {B: 10}}  # t1 just went quiet: busy too, for a while
    assert quiet == {0: {C: 20, t4: 40}, 1: {t3: 30, t5: 50, B: 10}}
    assert gone not in fetcher._hearing.last  # no longer assigned: forgotten

    fetcher._watches[1] = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    fetcher._hearing.due = 0.0  # node 1's watch is out: only node 0's quiet ones
    assert fetcher._usual_actions(assignment)[1] == {0: {C: 20, t4: 40}}  # type: ignore[index]
    assignment.state_value(t4).pause()  # unusual: heard, so the busy pass hands it to aiokafka
    fetcher._hearing.due = 0.0
    assert fetcher._usual_actions(assignment)[1] == {0: {C: 20}}  # type: ignore[index]
    assert fetcher._usual_actions(assignment) is None

    fetcher._watches.clear()  # a rebalance gave it up, and gave the same partitions again:
    subscription = SubscriptionState()
    subscription.assign_from_user(set(assignment.tps))
    again = subscription.subscription.assignment  # their positions not read yet
    fetcher._hearing.last = {tp: now - 30 for tp in again.tps}  # all quiet
    fetcher._hearing.due = 0.0
    assert fetcher._usual_actions(again) == ({}, {}, {}, 0.2, False, [])  # none to watch yet,
    assert fetcher._hearing.due <= time.monotonic() + 10  # but once they turn quiet again
    for tp in again.tps:
        again.state_value(tp).reset_to(0)
    fetcher._hearing.last = {tp: now - 30 for tp in again.tps}
    fetcher._hearing.due = 0.0
    fetcher._records[C] = FetchResult(C, assignment=again, partition_records=None, backoff=5.0)
    quiet = fetcher._usual_actions(again)[1]  # type: ignore[index]
    assert A in quiet[0] and C not in quiet[0]  # C has records not yet consumed: busy again
    assert fetcher._hearing.last[C] > now and fetcher._hearing.due <= time.monotonic() + 10


async def _read(consumer: SessionConsumer, count: int) -> list[tuple[int, int]]:
    """What the consumer gives within 30 s once `count` records came, and half a second more."""
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        polled = await consumer.getmany(timeout_ms=200)
        got += [(r.partition, int(r.value)) for batch in polled.values() for r in batch]
    polled = await consumer.getmany(timeout_ms=500)  # anything more would be a repeat
    return got + [(r.partition, int(r.value)) for batch in polled.values() for r in batch]


async def _rebalanced(consumer: SessionConsumer, before: Any) -> Any:
    """The consumer's assignment after `before`, polled for (nothing read) within 20 s."""
    deadline = time.monotonic() + 20
    while (assignment := consumer._subscription.subscription.assignment) is before:
        assert time.monotonic() < deadline, "no rebalance"
        assert not await consumer.getmany(timeout_ms=100)
    return assignment


async def _send(prod: AIOKafkaProducer, topic: str, log: list[tuple[int, int]],
                partitions: list[int], count: int | None = None) -> list[tuple[int, int]]:
    """`count` records (one to each of `partitions` by default), to the partitions in turn, each
    valued its place in `log`, which they are added to: those sent."""
    records = [(partitions[i % len(partitions)], len(log) + i)
               for i in range(len(partitions) if count is None else count)]
    for partition, value in records:
        await prod.send(topic, str(value).encode(), partition=partition)
    await prod.flush()
    log.extend(records)
    return records


def _once_in_order(got: list[tuple[int, int]], sent: list[tuple[int, int]]) -> bool:
    """Every record sent came once, each partition's in the order they were sent."""
    by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, value in got:
        by_partition[partition].append(value)
    return sorted(got) == sorted(sent) and all(v == sorted(v) for v in by_partition.values())


async def test_a_consumer_of_many_partitions_gets_every_record_once_in_order(
        broker: Cluster) -> None:
    admin = provision.admin_client()
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(30)
    access = KafkaAccess.of(config.ADMIN)
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    consumer = SessionConsumer(**access.aiokafka(), group_id=None, enable_auto_commit=False,
                               auto_offset_reset="earliest",
                               gathering=Gathering(max_wait_ms=5, min_bytes=65_536))
    await consumer.start()
    consumer.assign(tps)
    log: list[tuple[int, int]] = []
    try:
        async with producer(access) as prod:
            send = partial(_send, prod, TOPIC, log)
            sent = await send(list(range(PARTITIONS)), 240)
            assert _once_in_order(await _read(consumer, 240), sent)
            for _ in range(5):  # a few records at a time, as in a quiet hour
                sent = await send([3, 17], 4)
                assert _once_in_order(await _read(consumer, 4), sent)
            [session] = consumer._fetcher._sessions.values()
            assert session.session_id != NO_SESSION and session.epoch > 5, session

            consumer.pause(*tps[:12])  # paused partitions leave the session, then come back
            sent = await send(list(range(PARTITIONS)), 48)
            assert _once_in_order(await _read(consumer, 24), [r for r in sent if r[0] >= 12])
            consumer.resume(*tps[:12])
            assert _once_in_order(await _read(consumer, 24), [r for r in sent if r[0] < 12])

            consumer.seek(tps[5], 0)  # the broker's session must learn the new fetch offset
            again = [r for r in log if r[0] == 5]
            assert _once_in_order(await _read(consumer, len(again)), again)

            first = session.session_id
            session.epoch += 1000  # the broker refuses the next incremental fetch
            sent = await send(list(range(PARTITIONS)), 48)  # perhaps by a fetch sent before
            assert _once_in_order(await _read(consumer, 48), sent)
            sent = await send(list(range(PARTITIONS)), 24)  # after the refusal: a new session
            assert _once_in_order(await _read(consumer, 24), sent)
            assert session.session_id not in (first, NO_SESSION) and session.epoch >= 1, session
    finally:
        await consumer.stop()


async def test_quiet_partitions_leave_the_busy_session_and_lose_nothing(broker: Cluster) -> None:
    topic = "renkei-test.quiet-partitions"
    admin = provision.admin_client()
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    access = KafkaAccess.of(config.ADMIN)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer = SessionConsumer(**access.aiokafka(), group_id=None, enable_auto_commit=False,
                               auto_offset_reset="earliest", quiet=Quiet(2.0, 500, 100))
    await consumer.start()
    consumer.assign(tps)
    sent: list[tuple[int, int]] = []
    try:
        async with producer(access) as prod:
            send = partial(_send, prod, topic, sent)
            first = await send(list(range(PARTITIONS)))
            assert _once_in_order(await _read(consumer, PARTITIONS), first)
            fetcher = consumer._fetcher
            for _ in range(10):  # partition 3 keeps busy; the others turn quiet
                busy = await send([3])
                assert _once_in_order(await _read(consumer, 1), busy)
            [busy_session] = fetcher._sessions.values()
            [quiet_session] = fetcher._quiet_sessions.values()
            assert set(busy_session.offsets) == {tps[3]}, busy_session
            assert set(quiet_session.offsets) == set(tps) - {tps[3]}, quiet_session
            assert quiet_session.session_id not in (NO_SESSION, busy_session.session_id)

            began = time.monotonic()
            woke = await send([17])  # a quiet partition has news: at once, not at a timeout
            assert _once_in_order(await _read(consumer, 1), woke)
            assert time.monotonic() - began < 0.9  # (_read waits 0.5 s for repeats)
            again = await send([17, 17, 3, 17, 5])  # and it is busy again
            assert _once_in_order(await _read(consumer, 5), again)
            assert tps[17] in busy_session.offsets and tps[17] not in quiet_session.offsets

            consumer.seek(tps[9], 0)  # a quiet partition read again from the start
            assert _once_in_order(await _read(consumer, 1), [r for r in sent if r[0] == 9])
    finally:
        await consumer.stop()


async def test_a_watch_given_up_holds_up_no_watch_after_it(broker: Cluster) -> None:
    """A rebalance cancels the quiet partitions' watch, which the broker holds to the end of its
    wait: a watch sent after it on that connection waited behind it (one wait for each rebalance
    of a storm, as holders register), its partitions' records read that much later. The
    connection is closed with the watch given up: the next one is answered as a record comes."""
    topic = "renkei-test.watch-given-up"
    admin = provision.admin_client()
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    access = KafkaAccess.of(config.ADMIN)
    consumer = SessionConsumer(**access.aiokafka(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client._wait_on_metadata(topic)  # its leader known
        fetcher = consumer._fetcher
        settings = replace(fetcher._settings, max_wait_ms=5_000)
        given_up, woken = (TopicPartition(topic, p) for p in range(2))
        node = consumer._client.cluster.leader_for_partition(given_up)

        def watch(tp: TopicPartition) -> tuple[SessionFetch, asyncio.Task[Any]]:
            request = SessionFetch(settings, {tp: 0}, FetchSession(), connection=QUIET_CONNECTION)
            return request, asyncio.create_task(fetcher._client.send(node, request))

        async with producer(access) as prod:
            _, first = watch(given_up)
            await asyncio.sleep(0.3)  # held by the broker: nothing to read
            first.cancel()
            request, second = watch(woken)
            await asyncio.sleep(0.3)
            began = time.monotonic()
            await prod.send_and_wait(topic, b"news", partition=woken.partition)
            await asyncio.wait_for(second, 10)
        assert request.records == [woken]
        assert time.monotonic() - began < 1.0, "it waited behind the watch given up"
    finally:
        await consumer.stop()


async def test_quiet_partitions_of_the_same_assignment_again_are_still_watched(
        broker: Cluster) -> None:
    """A rebalance that hands the consumer the partitions it had (another member of its group
    joining or leaving), all of them quiet: their new states have no position yet when the
    fetcher first looks, so none could be watched; they were fetched as busy a while, and after
    it by neither the busy fetch nor a watch, their records never read."""
    run = uuid.uuid4().hex[:8]
    topic, other, group = (f"renkei-test.quiet-again-{run}", f"renkei-test.quiet-other-{run}",
                           f"renkei-test-quiet-again-{run}")
    admin = provision.admin_client()
    for name, count in ((topic, 6), (other, 1)):
        admin.create_topics([NewTopic(name, count, 1)])[name].result(30)
    access = KafkaAccess.of(config.ADMIN)
    consumer = SessionConsumer(topic, **access.aiokafka(), group_id=group,
                               enable_auto_commit=False, auto_offset_reset="earliest",
                               heartbeat_interval_ms=300, quiet=Quiet(0.5, 250, 100))
    member = AIOKafkaConsumer(other, **access.aiokafka(), group_id=group,
                              enable_auto_commit=False)
    await consumer.start()
    sent: list[tuple[int, int]] = []
    try:
        async with producer(access) as prod:
            send = partial(_send, prod, topic, sent, list(range(6)))
            first = await send()
            assert _once_in_order(await _read(consumer, 6), first)
            await consumer.commit()  # read again by none after a rebalance
            for joining in range(2):  # another member joins, then leaves: the same partitions
                await asyncio.sleep(1.3)  # all quiet (0.5 s, and the grace of 0.5 s), watched
                before = consumer._subscription.subscription.assignment
                await (member.stop() if joining else member.start())
                again = await _rebalanced(consumer, before)
                assert again is not before and again.tps == before.tps
                await asyncio.sleep(1.3)  # quiet again
                began = time.monotonic()
                news = await send()
                assert _once_in_order(await _read(consumer, 6), news), (joining, sent)
                assert time.monotonic() - began < 1.5  # at once, each
                await consumer.commit()
    finally:
        await member.stop()
        await consumer.stop()
