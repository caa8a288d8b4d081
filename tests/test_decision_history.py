"""A decision partition taken over is rebuilt from the events its state can still hold, counted
back from its last event (the real broker, a topic of the test's own)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from audit.events import AccessLogEvent, event_id
from broker import acls, config, topics
from broker.clients import KafkaAccess, read_topic
from broker.cluster import Cluster
from broker.membership import Fenced
from processors import decider
from processors.approval import PatternList
from processors.codes import UnitEpoch
from processors.context import Context
from processors.patterns import load
from processors.platform import (
    HEARTBEAT_MS,
    LEASE_SECONDS,
    Platform,
    _mark,
    _TakeOver,
    decision_history,
    opened,
)
from processors.unread import Unread
from renkei.broker_time import LOG_APPEND_TIME, WINDOW, BrokerTime
from renkei.cli import _said
from renkei.compacted import dated
from renkei.envelope import Send, unpacked
from renkei.tasks import set_or_failed
from schemas.codec import CODEC, MAGIC, NewerVersion
from schemas.messages import (
    ANSWERED,
    TIMED_OUT,
    Batch,
    LinkageAnswer,
    LinkageRequest,
    Outcome,
    Pending,
    Ping,
    Pong,
    Rejection,
    RekeyAnswer,
    RekeyRequest,
    RequestState,
    Sweep,
)
from tests.clock_helpers import appended, skewed
from tests.kafka_helpers import made_topic, producer, wait_assigned
from tests.test_decider import RESIDENT, _answer, _pending, _sweeps, ctx

__all__ = ["ctx"]  # the fixture, from the decider's tests
TOPIC = "renkei-test.decision-history"


def test_a_rebuild_reaches_back_to_the_first_request_its_last_event_can_hold(
        ctx: Context) -> None:
    last = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    start = ctx.remembered_from(last, last + timedelta(hours=1))
    assert start + ctx.answer_timeout + ctx.clock_skew < last, "pending then: came after it"
    assert ctx.stale_from(start) + ctx.clock_skew <= last, "settled and not stale: after it"
    assert ctx.remembered_from(None, last) == ctx.remembered_from(last, last), "none: now"
    assert ctx.remembered_from(last + timedelta(hours=1), last) == start, \
        "a last event from the future counts from now"


async def test_a_partition_stopped_long_ago_still_times_out_what_was_pending(
        broker: Cluster, ctx: Context) -> None:
    """With the rebuild counted back from the time of the take-over (6.5 minutes), a platform
    down for longer rebuilt its partitions empty: what was pending when it stopped never got its
    timeout, and a late answer to it was dropped."""
    made_topic(TOPIC)
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(TOPIC, 0)
    stopped = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)  # as Avro keeps it
    long_before = _pending(ctx, request_id="r-0", received=stopped - timedelta(minutes=20))
    pending = _pending(ctx, received=stopped - timedelta(seconds=10))
    events = [(long_before, stopped - timedelta(minutes=20)),
              (pending, stopped - timedelta(seconds=10)), (Sweep(stopped, ()), stopped)]
    await _written(access, TOPIC, events)
    _, history = await decision_history(access, tp, len(events), ctx,
                                            BrokerTime())  # the writers' clocks, as set
    assert _events(history) == [pending, Sweep(stopped, ())]
    taken, partition = _taken_over(history, ctx)
    now = datetime.now(UTC)
    sweep, = _sweeps(taken, now, ctx)
    timeout, logged = taken.handle(partition, CODEC.decode(sweep.value, Sweep), now, ctx)
    assert timeout.topic == topics.inbox("nenkin") and logged.topic == topics.AUDIT
    assert CODEC.decode(timeout.value, LinkageAnswer).status == TIMED_OUT


async def test_a_partition_whose_answer_was_written_before_its_request_is_rebuilt_answered(
        broker: Cluster, ctx: Context) -> None:
    """An owner deciding at once writes a request's Pending after its query is acknowledged, and
    the provider's answer, written by another instance, came first: the next owner rebuilt the
    request as pending and timed it out, a TIMED_OUT to the requester after its FOUND."""
    topic = f"{TOPIC}.answer-first"
    made_topic(topic)
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(topic, 0)
    now = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=now - ctx.answer_timeout - timedelta(seconds=10))
    events = [(_answer(), now - ctx.answer_timeout), (pending, now - ctx.answer_timeout)]
    await _written(access, topic, events)
    _, history = await decision_history(access, tp, len(events), ctx,
                                            BrokerTime())  # the writers' clocks, as set
    assert _events(history) == [_answer(), pending]
    taken, partition = _taken_over(history, ctx)
    assert taken.states[partition].get("r-1") == decider.Settled(
        ANSWERED, decider.fingerprint(pending.source), pending.digest)
    assert _sweeps(taken, now, ctx) == [], "its deadline passed, but it was answered"


def _answered_after(ctx: Context, name: str, seconds: int
                    ) -> tuple[str, TopicPartition, datetime, Pending, Outcome]:
    """A topic of its own (made), a request received 10 minutes ago, and its answer given
    `seconds` after it came."""
    topic = f"{TOPIC}.{name}"
    made_topic(topic)
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    pending = _pending(ctx, received=received)
    return topic, TopicPartition(topic, 0), received, pending, replace(
        _answer(), deadline=pending.deadline, answered_at=received + timedelta(seconds=seconds))


async def test_an_answer_relayed_just_before_a_take_overs_history_began_is_not_refused_after(
        broker: Cluster, ctx: Context) -> None:
    """The last owner relayed an answer 5 s after its request came; its last record came 3.5
    minutes and 3 s after the request: the history the next owner rebuilds began after the
    request's Pending, with the answer in it. The new owner held the answer, no request known,
    and refused it to its provider at a sweep 2.5 minutes on (INVALID_TICKET: no request came),
    whose log then said not provided of data its requester has."""
    topic, tp, received, pending, answer = _answered_after(ctx, "relayed-before", 5)
    access = KafkaAccess.of(config.ADMIN)
    last = received + (received - ctx.remembered_from(received, received)) + timedelta(seconds=3)
    events = [(pending, received), (answer, received + timedelta(seconds=5)),
              (Sweep(last, ()), last)]
    await _written(access, topic, events)
    since, history = await decision_history(access, tp, len(events), ctx,
                                            BrokerTime())  # the writers' clocks, as set
    assert (since, _events(history)) == (received + timedelta(seconds=3), [answer, Sweep(last, ())])
    taken, partition = _taken_over(history, ctx, since)
    told = []
    for at in (last + timedelta(minutes=minutes) for minutes in range(1, 6)):
        for sweep in _sweeps(taken, at, ctx):
            told += taken.handle(partition, CODEC.decode(sweep.value, Sweep), at, ctx)
    assert told == [] and taken.states[partition].held == {}, "forgotten, not refused"


async def test_an_answer_recorded_just_before_a_take_overs_history_its_pending_in_it_stands(
        broker: Cluster, ctx: Context) -> None:
    """The last owner decided a request at once and wrote its Pending once its query was
    acknowledged, 4 s after it came; the provider's answer, written by another instance, landed
    first, 2 s after it came, and was relayed; the last record came 3.5 minutes and 3 s after the
    request: the history the next owner rebuilt began between the answer and the Pending. It
    rebuilt the request as pending and at its next sweep timed it out, a TIMED_OUT to its
    requester after its FOUND and a second answered@ event saying TIMED_OUT. A take-over reads
    back, from a clock skew before such a request came, the answers to it recorded before its
    history; a request before that whose answer is not read is not taken as pending."""
    topic, tp, received, pending, answer = _answered_after(ctx, "straddled", 2)
    access = KafkaAccess.of(config.ADMIN)
    earlier = _pending(ctx, request_id="r-15", received=received - timedelta(seconds=1))
    last = received + (received - ctx.remembered_from(received, received)) + timedelta(seconds=3)
    events = [(earlier, received - timedelta(seconds=1)),  # read back: not pending
              (answer, received + timedelta(seconds=2)), (pending, received + timedelta(seconds=4)),
              (Sweep(last, ()), last)]
    await _written(access, topic, events)
    since, history = await decision_history(access, tp, len(events), ctx,
                                            BrokerTime())  # the writers' clocks, as set
    assert since == received + timedelta(seconds=3)
    taken, partition = _taken_over(history, ctx, since)
    rebuilt = set(taken.states[partition].pending)
    told = [made for minutes in range(1, 6) for sweep in _sweeps(
        taken, last + timedelta(minutes=minutes), ctx) for made in taken.handle(
        partition, CODEC.decode(sweep.value, Sweep), last + timedelta(minutes=minutes), ctx)]
    assert _told(told) == [], "answered: neither timed out nor refused"
    assert rebuilt == set(), "answered (and forgotten by the last sweep)"
    assert _events(history) == [answer, pending, Sweep(last, ())], "r-0 is not pending"


async def test_a_copy_that_reaches_a_new_owner_once_it_may_have_forgotten_it_is_refused(
        broker: Cluster, ctx: Context) -> None:
    """A request read again in time (its holder message's offset not committed) waited in the
    decisions topic while its partition was taken over, past the 30 s left for its way there: the
    new owner, rebuilt from the partition's history, had forgotten it (answered) meanwhile and
    approved it anew, a second query to its provider; so did it a copy of a request from before the
    history it rebuilt. Both are refused as stale."""
    topic = f"{TOPIC}.copies"
    made_topic(topic)
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(topic, 0)
    now = datetime.now(UTC).replace(microsecond=0)
    lag = timedelta(seconds=decider.forgetting_lag(ctx))
    received = now - lag - ctx.replay_window - ctx.clock_skew - timedelta(seconds=5)
    answered, long_before = (_pending(ctx, received=received),
                             _pending(ctx, request_id="r-0", received=now - timedelta(hours=1)))
    events = [(long_before, now - timedelta(hours=1)), (answered, received),
              (_answer(), received + timedelta(seconds=1))]
    await _written(access, topic, events)
    _, history = await decision_history(access, tp, len(events), ctx,
                                            BrokerTime())  # the writers' clocks, as set
    assert _events(history) == [answered, _answer()], "the request from long before is not replayed"
    taken, partition = _taken_over(history, ctx)
    refused = taken.handle(partition, long_before, now, ctx)  # nothing forgotten here yet
    assert [s.topic for s in refused] == [topics.inbox("nenkin"), topics.AUDIT]
    sweep, = _sweeps(taken, now, ctx)
    taken.read(partition, now, ctx)  # the sweep's record
    assert taken.handle(partition, CODEC.decode(sweep.value, Sweep), now, ctx) == []
    assert taken.states[partition].get("r-1") is None, "forgotten"
    refused += taken.handle(partition, answered, now, ctx)
    assert [s.topic for s in refused] == [topics.inbox("nenkin"), topics.AUDIT] * 2
    assert [CODEC.decode(s.value, Rejection).reason for s in refused[::2]] == [
        "STALE_REQUEST"] * 2
    assert not taken.states[partition].pending, "neither is pending again"


async def test_a_partition_taken_over_is_rebuilt_beside_the_consumer_not_in_its_callback(
        platform: object, caplog: pytest.LogCaptureFixture) -> None:
    """aiokafka sends the group no heartbeat while a rebalance callback runs, and a busy
    partition's history can take longer to replay than the session lasts (seen in the benchmark:
    an instance restarted after a flat-out run was expelled 10 s into its rebuild, rejoined and
    rebuilt again; nothing was decided for ~30 s). The callback only pauses the partition; until
    it is rebuilt its offset is not committed, then it is read on from its committed offset."""
    caplog.set_level(logging.INFO, logger="processors.platform")
    tp, other = TopicPartition(decider.DECISIONS, 0), TopicPartition(topics.AUDIT, 0)
    instance = Platform(KafkaAccess.of(acls.PLATFORM))
    async with _started(instance):
        instance.consumer.assign([tp])
        await instance.take_over([tp])
        assert instance.taking_over == {0} and tp in instance.consumer.paused()
        assert instance.rebuilding is not None and not instance.rebuilding.done()
        assert instance.committable([tp, other]) == [other], "no commit for it while rebuilt"
        await instance.rebuilding
        assert not instance.taking_over and tp not in instance.consumer.paused()
        assert re.search(r"took over decision partition 0: \d+ events replayed, resumed "
                         r"\d+\.\d s after the take-over, \d+ pending", caplog.text), \
            "the operator is told how long the partition waited"
        assert 0 in instance.decider.states and 0 in instance.at_once
        assert instance.committable([tp, other]) == [tp, other]
        committed = await instance.consumer.committed(tp) or 0
        assert await instance.consumer.position(tp) == committed


async def test_each_partition_taken_over_is_decided_as_soon_as_its_own_state_is_rebuilt(
        platform: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark's restarted instance replayed 420,442 events of eight partitions in 16.7 s,
    and every partition waited for all of them; now each waits only for its own history."""
    tps = [TopicPartition(decider.DECISIONS, p) for p in (0, 1)]
    instance = Platform(KafkaAccess.of(acls.PLATFORM))
    seen: dict[int, tuple[set[int], set[TopicPartition], set[int]]] = {}
    replay = instance._replay

    async def watched(tp: TopicPartition) -> int | None:
        seen[tp.partition] = (set(instance.taking_over), set(instance.consumer.paused()),
                              set(instance.at_once))
        return await replay(tp)

    monkeypatch.setattr(instance, "_replay", watched)
    async with _started(instance):
        instance.consumer.assign(tps)
        await instance.take_over(tps)
        assert instance.rebuilding is not None
        await instance.rebuilding
        assert seen[0] == ({0, 1}, set(tps), set())
        assert seen[1] == ({1}, {tps[1]}, {0}), "partition 0 is decided while 1 is rebuilt"
        assert not instance.taking_over and not instance.consumer.paused()
        assert set(instance.at_once) == {0, 1}


async def test_a_platform_with_a_wrong_clock_judges_deadlines_and_forgetting_by_the_brokers(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request's deadline is of the broker's time (its outbox record's append time, plus the
    answer timeout), but the platform's sweeps judged it, and the requests to forget, by its own
    clock: one 10 minutes ahead timed out every request at once and forgot them early, one 10
    minutes behind timed them out 10 minutes late. On the real broker, which stamps a record
    written with its writer's clock an hour behind: whatever the platform's clock, only the
    request whose deadline passed by the broker's time is swept, at the broker's time."""
    record = await _written_an_hour_behind(topics.outbox("town"))
    received = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    requests = [_pending(ctx, request_id="r-1", received=received),
                _pending(ctx, request_id="r-0", received=received - ctx.answer_timeout)]
    for skew in (timedelta(minutes=10), -timedelta(minutes=10)):
        monkeypatch.setattr("processors.platform.datetime", skewed(skew))
        instance = Platform(KafkaAccess.of(acls.PLATFORM))
        owned = {decider.partition_of(p.request_id) for p in requests}
        instance.decider.keep_only(owned)
        for partition in owned:
            instance.decider.rebuild(partition, [], ctx)
        for pending in requests:
            instance.decider.handle(decider.partition_of(pending.request_id), pending,
                                    received, ctx, effects=False)
        instance.handle([record])
        swept = [CODEC.decode(s.value, Sweep) for s in await instance.due()]
        await instance.producer.stop()  # made with the instance, though never started here
        assert [s.expire for s in swept] == [("r-0",)], f"{skew} off"
        assert received <= swept[0].at < received + timedelta(seconds=5), "at the broker's time"


async def test_a_decision_record_of_a_partition_taken_away_since_its_poll_is_left_alone(
        platform: object, ctx: Context) -> None:
    """A poll's records are handled after an await (the directory read to its end first): an
    assignment meanwhile that took a decision partition away dropped its state, and its record
    polled before raised KeyError in the decider, which stopped the instance (seen in a crash
    chaos run after the broker came back). Its next owner reads it; the poll's others are
    handled."""
    received = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=received)
    decided = _record(decider.DECISIONS, decider.partition_of(pending.request_id), received,
                      CODEC.encode(pending))
    pinged = _record(topics.outbox("town"), 0, received, CODEC.encode(Ping("p", received)))
    instance = Platform(KafkaAccess.of(acls.PLATFORM))
    instance.decider.keep_only(set())  # the assignment that took it away
    effects, decided_here = instance.handle([decided, pinged])
    await instance.producer.stop()  # made with the instance, though never started here
    assert [CODEC.name_of(e.value) for e in effects] == [Pong.__name__]
    assert decided_here == [] and decided.partition not in instance.read


async def test_what_the_platform_logs_and_tells_a_holder_is_at_the_brokers_time(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request's receipt, deadline and timeout are of the broker's time, but its approval and
    answer were logged (and a Pong answered) at the platform's clock: one 10 minutes ahead
    showed an auditor, or a resident on the portal, a request approved 10 minutes after it timed
    out. Whatever the platform's clock, they are at the broker's time of the records read."""
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)  # its own clock
    pending = _pending(ctx, received=received)
    decided = _record(decider.DECISIONS, decider.partition_of(pending.request_id), received,
                      CODEC.encode(pending))
    pinged = _record(topics.outbox("town"), 0, received, CODEC.encode(Ping("p", received)))
    for skew in (timedelta(minutes=10), -timedelta(minutes=10)):
        monkeypatch.setattr("processors.platform.datetime", skewed(skew))
        instance = Platform(KafkaAccess.of(acls.PLATFORM))
        instance.decider.keep_only({decided.partition})
        instance.decider.rebuild(decided.partition, [], ctx)
        effects, _ = instance.handle([decided, pinged])
        await instance.producer.stop()  # made with the instance, though never started here
        logged, = [CODEC.decode(e.value, AccessLogEvent) for e in effects
                   if e.topic == topics.AUDIT]
        pong, = [CODEC.decode(e.value, Pong) for e in effects
                 if CODEC.name_of(e.value) == Pong.__name__]
        assert received <= logged.occurred_at < received + timedelta(seconds=5), f"{skew} off"
        assert received <= pong.answered_at < received + timedelta(seconds=5), f"{skew} off"


class _Decisions:
    """Request r-1's decision partition as its owners read and write it (no I/O: the records
    each writes land in the order the test says), and what they told the holders."""

    def __init__(self, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ctx, self.monkeypatch = ctx, monkeypatch
        self.partition = decider.partition_of("r-1")
        self.records: list[SimpleNamespace] = []
        self.told: list[Send] = []
        self.owners: list[Platform] = []

    def owner(self, committed: int) -> Platform:
        """An instance that takes the partition over, rebuilt from the records before its
        committed offset, deciding in the topic's order until it has read those landed by now
        (Platform.behind)."""
        instance = Platform(KafkaAccess.of(acls.PLATFORM))
        self.owners.append(instance)
        self.monkeypatch.setattr(instance.views, "refresh", lambda: self.ctx)
        history = [decider.DecisionRecord(
            datetime.fromtimestamp(record.timestamp / 1000, UTC),
            [decider.decision_event(value) for value in unpacked(opened(record, self.ctx))])
            for record in self.records[:committed]]
        instance.decider.keep_only({self.partition})
        instance.decider.rebuild(self.partition, history, self.ctx)
        if len(self.records) > committed:
            instance.behind[self.partition] = len(self.records)
        instance.decide_at_once({self.partition})
        return instance

    def sent(self, sends: list[Send]) -> list[Send]:
        """Tell the holders what is for them; the records for the partition, on their way."""
        self.told += [s for s in sends if s.topic != decider.DECISIONS]
        return [s for s in sends if s.topic == decider.DECISIONS]

    def land(self, sends: list[Send], at: datetime) -> None:
        for item in sends:
            record = _record(item.topic, self.partition, at, item.value)
            record.offset, record.headers = len(self.records), item.headers
            self.records.append(record)

    def read(self, instance: Platform, start: int) -> int:
        """The owner reads the partition from `start` to its end, its own records among them;
        the offset it reached."""
        while start < len(self.records):
            record = self.records[start]
            effects, decided = instance.handle([record])
            self.land(self.sent(effects) + decided,
                      datetime.fromtimestamp(record.timestamp / 1000, UTC))
            start += 1
        return start

    def judged(self, record: SimpleNamespace, view: Context) -> list[Send]:
        """A holder's outbox `record` judged by an owner taking the partition over (the last
        killed before committing the record), its view of the directory `view`, which reads the
        partition on: what it decided at once."""
        self.ctx = view
        owner = self.owner(committed=0)
        effects, decided = owner.handle([record])
        at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        self.land(self.sent(effects) + decided, at)
        self.read(owner, 0)
        return decided

    async def raced(self, first: Platform, committed: int, request: Pending, at: datetime,
              sweeping: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """The owner, at `at` by the broker's time, decides r-1's `request` at once while its
        sweep (`sweeping`) is on its way, landing first, and reads on from `committed`; the next
        owner (the first crashed before committing the sweep) reads on from there: what each
        told of r-1 meanwhile (_about)."""
        first.broker_time.read([appended(at)])
        swept = self.sent(await first.due())
        assert swept, f"a sweep {sweeping} is on its way"
        told = len(self.told)
        effects, decided = first._at_once([decider.to_decider("r-1", request)], at, self.ctx)
        self.land(swept + self.sent(effects) + decided, at)
        self.read(first, committed)
        first_told, told = _about(self.told[told:]), len(self.told)
        self.read(self.owner(committed), committed)
        return first_told, _about(self.told[told:])

    def statuses(self) -> set[str]:
        """What the requester was told of r-1."""
        return {CODEC.decode(s.value, LinkageAnswer).status for s in self.told
                if s.topic == topics.inbox("nenkin") and s.key == "r-1"
                and CODEC.name_of(s.value) == LinkageAnswer.__name__}

    def refused(self) -> bool:
        """Whether the provider was told its answer to r-1 was relayed to no one."""
        return any(s.topic == topics.inbox("town") and s.key == "r-1"
                   and CODEC.name_of(s.value) == Rejection.__name__ for s in self.told)


@pytest.fixture
async def decisions(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[_Decisions]:
    """r-1's decision partition (_Decisions); its owners' producers stopped after the test."""
    made = _Decisions(ctx, monkeypatch)
    yield made
    for instance in made.owners:
        await instance.producer.stop()  # made with the instance, though never started here


@pytest.mark.parametrize("answer", ["another instance's, first", "the owner's, after",
                                    "the owner's, after, the broker's time read set back"])
async def test_a_new_owner_decides_a_timeout_and_an_answer_in_the_order_the_first_told_them(
        platform: object, ctx: Context, decisions: _Decisions, answer: str) -> None:
    """The owner of a decision partition timed a request out at once (a TIMED_OUT to its
    requester), but the provider's answer, written to the topic by another instance, landed before
    the owner's record of the sweep: the owner refused the answer to its provider, crashed before
    committing, and the next owner, reading on from the offset committed, found the answer with
    the request pending and relayed it: the requester was told TIMED_OUT, then FOUND, of data its
    provider was told went to no one. Sent through the topic instead, a sweep made the same race
    the other way round with an answer the owner decided at once while its sweep was on its way.
    Sweeps are decided as they are read back, as is any event of a request past its deadline
    (by the broker's time, or by a sweep on its way)."""
    received = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=received)
    late = pending.deadline + timedelta(seconds=1)
    first = decisions.owner(committed=0)
    decisions.land([decider.to_decider("r-1", pending)], received)
    decisions.read(first, 0)
    first.broker_time.read([appended(late)])
    swept = decisions.sent(await first.due())
    if answer == "another instance's, first":
        decisions.land([decider.to_decider("r-1", _answer()), *swept], late)
    else:
        now = late if answer == "the owner's, after" else pending.deadline - timedelta(
            seconds=1)  # read by records that waited: the sweep was on its way, even so
        effects, decided = first._at_once([decider.to_decider("r-1", _answer())], now, ctx)
        decisions.land(swept + decisions.sent(effects) + decided, late)
    decisions.read(first, 1)
    assert len(decisions.statuses()) == 1, "the first owner told the requester once"
    first_told = decisions.statuses(), decisions.refused()
    second = decisions.owner(committed=1)  # the first crashed before committing
    read = decisions.read(second, 1)
    decisions.land(decisions.sent(await second.due()), late)
    decisions.read(second, read)
    assert (decisions.statuses(), decisions.refused()) == first_told, \
        "the next owner decided as the first did"
    assert decisions.refused() == (decisions.statuses() == {TIMED_OUT}), \
        "the provider is refused an answer relayed to no one, only that"


async def test_owners_taking_over_at_any_record_refuse_a_request_read_late_alike(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """An owner's stale limit was set by its rebuild alone (its history's last record): one that
    took the partition over when its last record was appended at a request's receipt dispatched
    the request read 200 s after, one that took it over 181 s after refused it STALE_REQUEST, and
    one taking over with the request in its history took it as pending and timed it out (the
    requester told TIMED_OUT after STALE_REQUEST). Each record read moves the limit on by its
    append time: every owner refuses it as stale, once, and none times it out."""
    received = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    late = _pending(ctx, received=received)
    for after in (0, 181):
        at = received + timedelta(seconds=after)
        decisions.land([decider.to_partition(decisions.partition, Sweep(at, ()))], at)
    decisions.land([decider.to_decider("r-1", late)], received + timedelta(seconds=200))
    stale = {(topics.inbox("nenkin"), "STALE_REQUEST"),
             (topics.AUDIT, event_id("r-1", f"rejected@{late.source}"))}
    for committed in (1, 2):
        told = len(decisions.told)
        decisions.read(decisions.owner(committed), committed)
        assert _about(decisions.told[told:]) == stale, f"taken over at record {committed - 1}"
    told = len(decisions.told)
    last = decisions.owner(committed=3)
    last.broker_time.read([appended(late.deadline + timedelta(minutes=5))])
    decisions.land(decisions.sent(await last.due()), late.deadline + timedelta(minutes=5))
    decisions.read(last, 3)
    assert decisions.told[told:] == [], "not taken as pending, nor timed out"


async def test_an_outbox_record_judged_again_by_a_view_that_read_a_suspension_ends_once(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """The owner of r-1's decision partition approved a request at once, its view of the
    directory not having read its provider's suspension, dated before the request: the query
    sent, the approval logged, its record landed; killed before committing the outbox record,
    the next owner read it again with the suspension read and refused it SUSPENDED straight to
    its requester and the access log, a second ending. Its refusal now goes to the decision
    partition, after the approval there, and is dropped as a copy of it."""
    received = datetime.now(UTC).replace(microsecond=0)
    roles = {"nenkin": "pension_service", "town": "municipality"}
    lawful = replace(ctx, patterns=PatternList(load()), directory={
        h: replace(entry, role=roles[h]) for h, entry in ctx.directory.items()})
    town = lawful.directory["town"]
    request = LinkageRequest("r-1", received, lawful.codes.link_code(
        RESIDENT, UnitEpoch("nenkin", 0)), "P-037", "town", "local_tax")
    record = _record(topics.outbox("nenkin"), 0, received, CODEC.encode(request))
    decided = decisions.judged(record, lawful)  # a view behind: the suspension not read
    assert decided, "decided at once"
    approved = _about(decisions.told)
    assert (topics.AUDIT, event_id("r-1", f"approved@{_digest_hex(decided, lawful)}")) in approved
    decisions.judged(record, replace(lawful, directory={**lawful.directory, "town": dated(
        replace(town, active=False), town, received - timedelta(seconds=1))}))
    assert _about(decisions.told) == approved, "ended once: approved, not refused as well"


async def test_answers_refused_to_their_suspended_provider_are_told_it_once_whoever_reads_copies(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """The owner refused at once two answers to a request pending, their provider suspended (the
    second the first sent again at another offset), their records landed, and crashed before
    committing the provider's outbox: the next owner, its view of the directory behind, read the
    second again, relayed it (FOUND to the requester, the provider told it was not relayed), and,
    once the request had timed out, read the first again and refused it to its provider a second
    time, INVALID_TICKET. Each answer refused is told its provider once: the copies are dropped,
    and the requester hears the timeout alone."""
    received = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=received)
    in_time = received + timedelta(seconds=2)
    first_answer = replace(_answer(), deadline=pending.deadline, answered_at=in_time,
                           refused="SUSPENDED")
    second_answer = replace(first_answer, source="renkei.holder.town.out:1:9")
    first = decisions.owner(committed=0)
    decisions.land([decider.to_decider("r-1", pending)], received)
    decisions.read(first, 0)
    effects, decided = first._at_once([decider.to_decider("r-1", first_answer),
                                       decider.to_decider("r-1", second_answer)], in_time, ctx)
    assert decided, "refused at once"
    decisions.land(decisions.sent(effects) + decided, in_time)
    committed = len(decisions.records)
    second = decisions.owner(committed)  # the first crashed before committing the outbox
    behind = [decider.to_decider("r-1", replace(a, refused=None)) for a in (second_answer,
                                                                           first_answer)]
    effects, decided = second._at_once(behind[:1], in_time, ctx)
    decisions.land(decisions.sent(effects) + decided, in_time)
    late = pending.deadline + timedelta(seconds=1)
    second.broker_time.read([appended(late)])
    decisions.land(decisions.sent(await second.due()), late)
    read = decisions.read(second, committed)
    effects, decided = second._at_once(behind[1:], late, ctx)  # its request timed out
    decisions.land(decisions.sent(effects) + decided, late)
    decisions.read(second, read)
    refusals = [CODEC.decode(s.value, Rejection).reason for s in decisions.told
                if s.topic == topics.inbox("town") and CODEC.name_of(s.value) == "Rejection"]
    assert refusals == ["SUSPENDED", "SUSPENDED"], "each answer refused once"
    assert decisions.statuses() == {TIMED_OUT}, "the requester hears the timeout alone"


@pytest.mark.parametrize("read", ["its unit's new key epoch", "its holder's suspension"])
async def test_a_rekeying_judged_again_by_a_view_ahead_ends_once(
        platform: object, ctx: Context, decisions: _Decisions, read: str) -> None:
    """The owner of r-1's decision partition answered a re-keying request at once, its view of
    the directory not having read its unit's new key epoch (or its holder's suspension, dated
    before the request); killed before committing the outbox record, the next owner read it
    again with that read and answered it at the new epoch (refused it SUSPENDED) straight to its
    holder and the access log, a second ending. Its judgement now goes to the decision
    partition, after the first there, and is dropped as a copy of it."""
    received = datetime.now(UTC).replace(microsecond=0)
    request = RekeyRequest("r-1", received, 0, (ctx.codes.link_code(
        RESIDENT, UnitEpoch("nenkin", 0)),))
    record = _record(topics.outbox("nenkin"), 0, received, CODEC.encode(request))
    decisions.judged(record, ctx)
    answered = _about(decisions.told)
    assert (topics.inbox("nenkin"), "epoch 0") in answered
    nenkin = ctx.directory["nenkin"]
    decisions.judged(record, replace(ctx, directory={**ctx.directory, "nenkin": replace(
        nenkin, key_epoch=1) if read == "its unit's new key epoch" else dated(
        replace(nenkin, active=False), nenkin, received - timedelta(seconds=1))}))
    assert _about(decisions.told) == answered, "ended once: answered at epoch 0 alone"


def _digest_hex(decided: list[Send], ctx: Context) -> str:
    """What a request's approval is named by (decider.copies_name), from its Pending decided."""
    pending, = [decider.decision_event(v) for s in decided for v in unpacked(opened(s, ctx))]
    assert isinstance(pending, Pending)
    return decider.copies_name(pending.source, pending.digest)


@pytest.mark.parametrize("met", ["its id, forgotten, used again", "an answer held for it"])
async def test_a_request_decided_at_once_against_a_sweep_forgetting_on_its_way_is_decided_in_order(
        platform: object, ctx: Context, decisions: _Decisions, met: str) -> None:
    """The owner decided at once a request whose id its sweep, on its way, was to forget, or
    whose answer, held, that sweep was to refuse to its provider: its record landed after the
    sweep, and the next owner (the first crashed before committing) forgot the id, then took the
    request, marked decided, as pending (the first refused it as DUPLICATE, and the next timed it
    out), or refused the held answer the first had relayed. A request settled or with answers held
    is decided in the topic's order, as one past its deadline is."""
    start = datetime.now(UTC).replace(microsecond=0)
    first = decisions.owner(committed=0)
    first.broker_time.read([appended(start)])
    if met == "its id, forgotten, used again":
        earlier = _pending(ctx, received=start)
        decisions.land([decider.to_decider("r-1", m) for m in (earlier, _answer())], start)
        forgets = decider.forgotten_at(earlier, ctx)
    else:
        decisions.land([decider.to_decider("r-1", _answer())], start)
        decisions.read(first, 0)
        decisions.land(decisions.sent(await first.due()), start)  # times the answer held
        forgets = decider.forgotten_at(_pending(ctx, received=start), ctx)
    committed = decisions.read(first, 0)
    later = forgets + timedelta(seconds=decider.forgetting_lag(ctx) + 1)
    request = _pending(ctx, source="renkei.holder.nenkin.out:0:9", received=later, digest=7)
    first_told, next_told = await decisions.raced(
        first, committed, request, later, "forgetting r-1's id or its answer held")
    assert next_told == first_told, "the next owner decided as the first did"
    held = [owner.decider.states[decisions.partition].get("r-1") for owner in decisions.owners]
    assert isinstance(held[0], RequestState) and held[1] == held[0], "r-1 pending for both"


@pytest.mark.parametrize("answer", ["another instance's", "the owner's, at once"])
async def test_an_answer_relayed_to_no_one_is_refused_only_once_its_offset_is_committed(
        platform: object, ctx: Context, decisions: _Decisions, answer: str) -> None:
    """The owner refused an answer to a requester made inactive since linkage checked it, and
    logged its request TIMED_OUT, before committing the answer's offset; the requester was made
    active again, the owner crashed, and the next owner, reading the answer again, found the
    requester active and relayed it: the requester got the data while the access log kept the
    first owner's TIMED_OUT. The owner records the refusal in the topic and commits what it
    handled at once (Platform.ends_ahead), before it reads the refusal back and makes it; the
    next owner reads on from there, makes the refusal as recorded and tells the requester
    nothing."""
    received = datetime.now(UTC).replace(microsecond=0)
    decisions.ctx = replace(ctx, directory={"town": ctx.directory["town"]})
    first = decisions.owner(committed=0)
    decisions.land([decider.to_decider("r-1", _pending(ctx, received=received))], received)
    committed = decisions.read(first, 0)
    assert not first.ends_ahead, "a request dispatched waits for the next commit"
    if answer == "another instance's":
        decisions.land([decider.to_decider("r-1", _answer())], received)
        effects, decided = first.handle([decisions.records[committed]])
    else:
        effects, decided = first._at_once([decider.to_decider("r-1", _answer())], received,
                                          decisions.ctx)
    decisions.land(decisions.sent(effects) + decided, received)
    assert first.ends_ahead and not decisions.refused(), "committed at once, not refused yet"
    committed = len(decisions.records) - 1 - len(decided)  # the refusal's record is next
    decisions.read(first, committed)
    assert decisions.refused() and not decisions.statuses(), "refused as it is read back"
    decisions.ctx = ctx  # the requester active again; the first crashed before the next commit
    decisions.read(decisions.owner(committed), committed)
    assert not decisions.statuses(), "the requester is told nothing, as the access log says"


async def test_an_answer_relayed_before_its_requester_was_made_inactive_is_relayed_by_every_owner(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """The owner relayed an answer at once, its requester active; the requester was then made
    inactive and the owner crashed before the answer's record landed: the next owner, reading
    the answer again from its outbox, found the requester inactive and refused the answer to
    its provider, though the requester got it (the access log keeping FOUND). Each owner judges
    the requester as of the answer's broker time: the next relays it again (a copy, dropped)."""
    received = datetime.now(UTC).replace(microsecond=0)
    first = decisions.owner(committed=0)
    decisions.land([decider.to_decider("r-1", _pending(ctx, received=received))], received)
    committed = decisions.read(first, 0)
    answer = replace(_answer(), answered_at=received)
    effects, _ = first._at_once([decider.to_decider("r-1", answer)], received, decisions.ctx)
    decisions.sent(effects)  # relayed; the owner crashed before the answer's record landed
    assert decisions.statuses() == {"FOUND"}, "relayed while its requester was active"
    inactive = replace(ctx.directory["nenkin"], active=False,
                       inactive_since=received + timedelta(seconds=1))
    decisions.ctx = replace(ctx, directory={**ctx.directory, "nenkin": inactive})
    second = decisions.owner(committed)
    effects, decided = second._at_once([decider.to_decider("r-1", answer)], received,
                                       decisions.ctx)
    decisions.land(decisions.sent(effects) + decided, received)
    decisions.read(second, committed)
    assert not decisions.refused(), "its provider is not told the answer went to no one"
    assert decisions.statuses() == {"FOUND"}


@pytest.mark.parametrize("landed", ["the copy, then the record", "the record, then the copy",
                                    "the copy alone: the record never landed"])
async def test_a_late_copy_of_an_answer_relayed_at_once_is_dropped_by_the_next_owner(
        platform: object, ctx: Context, decisions: _Decisions, landed: str) -> None:
    """The owner relayed an answer at once (FOUND to the requester, answered in the access log);
    the provider's copy of it, sent again past its deadline, was read before the answer's record
    was written (after its effects), and went through the topic, landing first; the owner crashed
    before committing. The next owner read the copy with the request pending past its deadline
    and refused it: INVALID_TICKET to the provider, which rewrote its entry FOUND as REJECTED,
    and a refusal in the access log beside the answer. Whatever lands first, or if the record
    never does (the answer read again from its outbox, relayed again: copies the requester and
    the access log drop), the next owner drops the copy: the requester told FOUND, the access
    log the approval and the answer, the provider nothing."""
    received = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=received)
    past = pending.deadline + timedelta(seconds=5)
    in_time = received + timedelta(seconds=3)
    answer = replace(_answer(), deadline=pending.deadline, answered_at=in_time)
    copy = replace(answer, source="renkei.holder.town.out:1:9", answered_at=past)
    first = decisions.owner(committed=0)
    decisions.land([decider.to_decider("r-1", pending)], received)
    committed = decisions.read(first, 0)
    effects, record = first._at_once([decider.to_decider("r-1", answer)], in_time, ctx)
    assert decisions.sent(effects) == [] and record, "relayed at once, its record on its way"
    first_told = _about(decisions.told)
    effects, decided = first._at_once([decider.to_decider("r-1", copy)], past, ctx)
    assert decided == [], "the copy goes through the topic: the request is settled"
    copied = decisions.sent(effects)
    decisions.land({"the copy, then the record": copied + record,
                    "the record, then the copy": record + copied}.get(landed, copied), past)
    second = decisions.owner(committed)  # the first crashed before committing
    read = decisions.read(second, committed)
    if landed.endswith("never landed"):  # the answer's offset was not committed either
        effects, decided = second._at_once([decider.to_decider("r-1", answer)], past, ctx)
        decisions.land(decisions.sent(effects) + decided, past)
        read = decisions.read(second, read)
    later = past + ctx.answer_timeout
    second.broker_time.read([appended(later)])
    decisions.land(decisions.sent(await second.due()), later)
    decisions.read(second, read)
    assert not decisions.refused(), "the provider is not told its answer went to no one"
    assert _about(decisions.told) == first_told, "the requester told FOUND, the access log " \
        "the approval and the answer, once (by event id)"
    assert second.decider.states[decisions.partition].get("r-1") == first.decider.states[
        decisions.partition].get("r-1") == decider.Settled(
            ANSWERED, decider.fingerprint(pending.source), pending.digest)


async def test_an_answer_relayed_at_once_before_a_crash_is_read_again_before_its_timeout(
        platform: object, ctx: Context, decisions: _Decisions,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The owner relayed a provider's answer at once (FOUND to the requester) and crashed before
    the answer's record landed, or its offset in the provider's outbox was committed; the request's
    deadline passed while the partition was taken over, and the next owner's sweep timed it out
    before the answer was read again from the outbox: the requester was told FOUND, then
    TIMED_OUT, and the answer, read again, was refused to its provider (its log entry turned
    REJECTED), though the broker took it in time. On the real broker (the provider's outbox a
    topic of the test's own), the next owner times a request out only once the platform's group
    has committed, on each partition its answer may come from, the end measured after its
    deadline: the answer read again lands first, relayed again (a copy), and the sweep after it
    finds the request answered."""
    outbox = f"{TOPIC}.answers"
    made_topic(outbox)
    monkeypatch.setattr(decider, "answered_from", lambda state: outbox)
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(outbox, 0)
    received = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=received)
    in_time = received + timedelta(seconds=1)
    answer = replace(_answer(), deadline=pending.deadline, answered_at=in_time)
    first = decisions.owner(committed=0)
    decisions.land([decider.to_decider("r-1", pending)], received)
    committed = decisions.read(first, 0)
    await _written(access, outbox, [(answer, in_time)])  # the provider's, as read
    effects, _ = first._at_once([decider.to_decider("r-1", answer)], received, ctx)
    decisions.sent(effects)  # relayed; the owner crashed before its record landed
    assert decisions.statuses() == {"FOUND"}, "relayed at once"
    first_told = _about(decisions.told)
    second = decisions.owner(committed)
    group = AIOKafkaConsumer(**access.aiokafka(), group_id=f"{TOPIC}.group",
                             enable_auto_commit=False)  # the platform's, as far as it tells
    group.subscribe(pattern=f"^{re.escape(outbox)}$")  # by pattern, as the platform's
    second.unread = Unread(group)
    await group.start()
    try:
        await wait_assigned(group)
        late = pending.deadline + timedelta(seconds=5)
        second.broker_time.read([appended(late)])
        assert await second.due() == [], "no sweep: the answer may be unread"
        read = decisions.read(second, committed)
        effects, decided = second._at_once([decider.to_decider("r-1", answer)], late, ctx)
        decisions.land(decisions.sent(effects) + decided, late)  # the answer read again
        await group.commit({tp: 1})  # its offset in the outbox, once it landed
        swept = await second.due()
        assert swept, "swept once every answer taken by the deadline is read"
        decisions.land(decisions.sent(swept), late)
        decisions.read(second, read)
    finally:
        await group.stop()
    assert decisions.statuses() == {"FOUND"}, "the requester is told FOUND alone"
    assert not decisions.refused(), "the provider is not told its answer went to no one"
    assert _about(decisions.told) == first_told, "the access log the approval and the answer"
    assert second.decider.states[decisions.partition].get("r-1") == decider.Settled(
        ANSWERED, decider.fingerprint(pending.source), pending.digest)


async def test_a_request_waiting_for_its_answers_topic_has_its_first_offsets_asked_once(
        broker: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sweep while a request past its deadline waited for its answer's topic to be read
    asked the broker for that topic's first offsets again, a round trip each second: they are
    asked with its end offsets, once, at the deadline. It waits until the group has committed
    the end all the same."""
    outbox = f"{TOPIC}.unread"
    made_topic(outbox)
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(outbox, 0)
    await _written(access, outbox, [(_answer(), datetime.now(UTC))])
    group = AIOKafkaConsumer(**access.aiokafka(), group_id=f"{TOPIC}.unread-group",
                             enable_auto_commit=False)
    group.subscribe(pattern=f"^{re.escape(outbox)}$")
    asked: list[list[TopicPartition]] = []
    firsts = group.beginning_offsets

    async def counted(partitions: list[TopicPartition]) -> Any:
        asked.append(list(partitions))
        return await firsts(partitions)

    monkeypatch.setattr(group, "beginning_offsets", counted)
    unread = Unread(group)
    await group.start()
    try:
        await wait_assigned(group)
        assert await unread.read({"r-1": outbox}) == []
        for _ in range(3):
            assert await unread.read({}) == [], "the answer is not read yet"
        await group.commit({tp: 1})
        assert await unread.read({}) == ["r-1"]
    finally:
        await group.stop()
    assert asked == [[tp]]


async def test_an_answer_to_a_request_not_known_is_held_as_long_by_every_owner(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """The owner held at once an answer to a request it did not know, while its sweep (timing
    another answer held) was on its way, landing first: the owner kept the answer as long as that
    sweep said, and refused it to its provider at a later sweep; the next owner (the first crashed
    before committing) read the sweep before the answer, kept it as long as that later sweep said,
    and did not refuse it then (a request coming meanwhile it would have answered with it). An
    answer to a request not known is decided in the topic's order."""
    start = datetime.now(UTC).replace(microsecond=0)
    first = decisions.owner(committed=0)
    first.broker_time.read([appended(start)])
    decisions.land([decider.to_decider("r-15", replace(_answer(), request_id="r-15"))], start)
    committed = decisions.read(first, 0)  # r-15: of r-1's partition
    swept = decisions.sent(await first.due())
    assert swept, "a sweep timing the answer held for r-15 is on its way"
    effects, decided = first._at_once([decider.to_decider("r-1", _answer())], start, ctx)
    decisions.land(swept + decisions.sent(effects) + decided, start)
    read = decisions.read(first, committed)
    later = decider.forgotten_at(_pending(ctx, received=start), ctx) + timedelta(seconds=1)
    first.broker_time.read([appended(later)])
    told = len(decisions.told)
    decisions.land(decisions.sent(await first.due()), later)
    decisions.read(first, read)
    first_told, told = _about(decisions.told[told:]), len(decisions.told)
    second = decisions.owner(committed)
    decisions.read(second, committed)
    assert _about(decisions.told[told:]) == first_told, "the next owner decided as the first did"
    held = [owner.decider.states[decisions.partition].held.get("r-1") for owner in (first, second)]
    assert held[1] == held[0], "the answer held as long by both"


async def test_a_request_decided_elsewhere_releasing_an_answer_held_is_read_after_the_directory(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """The owner decided r-1's request at once, and its answer, written by another instance,
    landed before the request's record: the owner judged the answer as it read it, the directory
    read to its end first (answers_judged). The next owner (the first crashed after committing
    the answer) held it, r-1 not known, and judged it as the request's record, decided elsewhere,
    was read: by its view as it was, a poll of decisions made at once not waiting for the
    directory, so a suspension of the requester dated before the answer, read by the first, not
    perhaps by it. A record decided elsewhere in a partition holding answers is read after the
    directory is read to its end; one decided here, or in a partition holding none, is not."""
    received = datetime.now(UTC).replace(microsecond=0)
    first = decisions.owner(committed=0)
    effects, decided = first._at_once(
        [decider.to_decider("r-1", _pending(ctx, received=received))], received, ctx)
    never = replace(_answer(), request_id="r-15")  # of r-1's partition, its request never comes
    decisions.land([decider.to_decider("r-15", never), decider.to_decider("r-1", _answer()),
                    *decisions.sent(effects), *decided], received)
    request = decisions.records[2]
    assert _mark(request) is not None, "decided at once"
    decisions.read(first, 0)
    assert first.decider.holding() == {decisions.partition}
    assert not first.read_first([request]), "decided here: not judged again"
    _, at_once = first._at_once([decider.to_decider("r-15", _pending(
        ctx, request_id="r-15", received=received))], received, ctx)
    assert at_once == [], "a request with an answer held here goes through the topic"
    second = decisions.owner(committed=2)
    assert second.decider.holding() == {decisions.partition}, "the answer held, and r-15's"
    assert second.read_first([request]), "its answer held is judged as it is read"
    told = len(decisions.told)
    decisions.read(second, 2)
    assert (topics.inbox("nenkin"), "FOUND") in _about(decisions.told[told:]), "judged then"
    other = (decisions.partition + 1) % decider.PARTITIONS
    elsewhere = SimpleNamespace(topic=decider.DECISIONS, partition=other, headers=request.headers,
                                value=request.value)
    assert not second.read_first([elsewhere]), "a partition holding no answer"


async def test_a_request_read_near_its_forgetting_is_refused_as_stale_or_not_by_every_owner(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """A request read 2.5 minutes after it was received (after an outage), decided at once by the
    owner while its sweep, forgetting a request received with it, was on its way and landed
    first: the owner took it, pending; the next owner (the first crashed before committing) read
    the sweep first and refused it as stale, marked decided (told nothing, kept nothing: never
    timed out). A request that old is decided in the topic's order."""
    received = datetime.now(UTC).replace(microsecond=0)
    answered = replace(_pending(ctx, received=received), request_id="r-15")  # r-1's partition
    first = decisions.owner(committed=0)
    first.broker_time.read([appended(received)])
    decisions.land([decider.to_decider("r-15", m)
                    for m in (answered, replace(_answer(), request_id="r-15"))], received)
    committed = decisions.read(first, 0)
    later = decider.forgotten_at(answered, ctx) + timedelta(seconds=decider.forgetting_lag(ctx) + 1)
    first_told, next_told = await decisions.raced(
        first, committed, _pending(ctx, received=received), later, "forgetting r-15")
    assert next_told == first_told, "the next owner decided as the first did"
    kept = [owner.decider.states[decisions.partition].get("r-1") for owner in decisions.owners]
    assert kept[1] == kept[0], "r-1 kept alike by both"


async def test_two_copies_of_a_request_from_two_instances_are_logged_once_whoever_replays_them(
        platform: object, ctx: Context, decisions: _Decisions) -> None:
    """A holder's request and its copy sent again, read by two instances: the owner decided its
    own at once (approved@ its offset) and refused the other's, which landed first, as a copy; the
    next owner (the first crashed before committing) dispatched the other's and took the owner's,
    marked decided, for the copy: the access log had the request approved and answered twice.
    Both are named by what copies share, the holder message's digest: logged once, whichever copy
    an owner keeps; a copy read again later is dropped, or refused to its holder alone (which
    drops a DUPLICATE of its own), by either owner."""
    start = datetime.now(UTC).replace(microsecond=0)
    mine, other = _pending(ctx, received=start), _pending(
        ctx, source="renkei.holder.nenkin.out:0:6", received=start)  # the same bytes: a copy
    first = decisions.owner(committed=0)
    first.broker_time.read([appended(start)])
    decisions.land([decider.to_decider("r-1", other)], start)  # the other instance's
    effects, decided = first._at_once([decider.to_decider("r-1", mine)], start, ctx)
    decisions.land(decisions.sent(effects) + decided, start)
    read = decisions.read(first, 0)
    decisions.read(decisions.owner(committed=0), 0)
    decisions.land([decider.to_decider("r-1", _answer())], start)
    for owner in decisions.owners:
        decisions.read(owner, read)
    steps = sorted(said.split("@")[0] for topic, said in _about(decisions.told)
                   if topic == topics.AUDIT)
    assert steps == ["r-1:answered", "r-1:approved"], "the access log has each step once"
    kept, next_kept = (owner.decider.states[decisions.partition].get("r-1")
                       for owner in decisions.owners)
    assert isinstance(kept, decider.Settled) and isinstance(next_kept, decider.Settled)
    assert replace(next_kept, source=kept.source) == kept, "answered alike, each by its copy"
    for owner in decisions.owners:
        for copy in mine, other:
            again = owner.decider.handle(decisions.partition, copy, start, ctx)
            assert _about(again) <= {(topics.inbox("nenkin"), decider.DUPLICATE)}, \
                "a copy read again is dropped or refused to its holder alone"


async def test_a_new_owner_decides_in_order_until_it_has_read_what_the_last_owner_wrote(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last owner named a linkage request in a sweep, its provider suspended since approval,
    and gave the partition up (or crashed) before reading the sweep back; the new owner, rebuilt
    up to the offset committed, knew nothing of that sweep, and, the provider resumed, decided
    its answer at once: FOUND to the requester, ANSWERED kept, its record landing after the
    sweep, so an owner rebuilding the partition later read the sweep first and kept the request
    TIMED_OUT. On the real broker (a decisions topic of the test's own): a partition taken over is
    decided in the topic's order until it is read to its end as of the take-over, then at once."""
    topic = f"{TOPIC}.taken-over"
    made_topic(topic, {"message.timestamp.type": "LogAppendTime"}, decider.PARTITIONS)
    monkeypatch.setattr(decider, "DECISIONS", topic)
    monkeypatch.setattr("processors.platform.GROUP", f"{topic}.group")
    access, partition = KafkaAccess.of(config.ADMIN), decider.partition_of("r-1")
    tp = TopicPartition(topic, partition)
    received = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=received)
    suspended = replace(ctx.directory["town"], active=False, inactive_since=received)
    last, _ = _taken_over([decider.DecisionRecord(received, [pending])], ctx)
    named = _sweeps(last, received + timedelta(seconds=1),
                    replace(ctx, directory={**ctx.directory, "town": suspended}))
    assert [CODEC.decode(s.value, Sweep).expire for s in named] == [("r-1",)], "named early"
    await _delivered(access, [decider.to_decider("r-1", pending), *named])
    owner = Platform(access)
    monkeypatch.setattr(owner.views, "refresh", lambda: ctx)  # the provider resumed
    answer = replace(_answer(), deadline=pending.deadline,
                     answered_at=received + timedelta(seconds=2))
    async with _started(owner):
        owner.consumer.assign([tp])
        await owner.consumer.commit({tp: 1})  # the last owner's: the request read, not the sweep
        await owner.take_over([tp])
        assert owner.rebuilding is not None
        await owner.rebuilding
        effects, decided = owner._at_once([decider.to_decider("r-1", answer)],
                                          received + timedelta(seconds=2), ctx)
        told = [s for s in effects if s.topic != topic]
        await _delivered(access, [s for s in effects if s.topic == topic] + decided)
        end = (await owner.consumer.end_offsets([tp]))[tp]
        while await owner.consumer.position(tp) < end:
            polled = await owner.consumer.getmany(tp, timeout_ms=1000)
            effects, decided = owner.handle([r for batch in polled.values() for r in batch])
            told += [s for s in effects if s.topic != topic]
            await _delivered(access, [s for s in effects if s.topic == topic] + decided)
        assert partition in owner.at_once, "decided at once again, read to its end"
        end = (await owner.consumer.end_offsets([tp]))[tp]
        _, history = await decision_history(access, tp, end, ctx, BrokerTime())
    statuses = _statuses(told)
    rebuilt, _ = _taken_over(history, ctx)
    kept = owner.decider.states[partition].get("r-1")
    assert kept == rebuilt.states[partition].get("r-1"), "kept as a later rebuild keeps it"
    assert statuses == [TIMED_OUT] and isinstance(kept, decider.Settled), \
        "the requester told the sweep's ending, once"


async def test_an_owner_giving_a_partition_up_sweeps_it_no_more_until_it_is_given_it_again(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """An owner's sweeper went on sweeping the partitions it had given up in a rebalance (their
    state kept until the next assignment, which may keep them), and one of its sweeps could land
    after the partition's new owner took its end as of the take-over: that owner decided at once
    what the sweep, unknown to it, named. No sweep is sent from a partition's give-up until it is
    assigned again; what was due then is swept once it is kept (a sweep in flight at the give-up
    is waited for)."""
    monkeypatch.setattr("processors.platform.SWEEP_SECONDS", 0.01)
    sent: list[Send] = []

    async def delivered(_: object, sweeps: list[Send]) -> None:
        sent.extend(sweeps)

    monkeypatch.setattr("processors.platform.deliver", delivered)
    received = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=received)
    partition = decider.partition_of("r-1")
    tp = TopicPartition(decider.DECISIONS, partition)
    owner = Platform(KafkaAccess.of(acls.PLATFORM))
    monkeypatch.setattr(owner.views, "refresh", lambda: ctx)
    owner.decider.keep_only({partition})
    owner.decider.rebuild(partition, [decider.DecisionRecord(received, [pending])], ctx)
    await owner.take_over([tp])  # its state kept: nothing to rebuild
    owner.broker_time.read([appended(pending.deadline + timedelta(seconds=1))])
    stop = asyncio.Event()
    sweeper = asyncio.create_task(owner._sweep(stop))
    try:
        await owner.give_up([tp])
        await asyncio.sleep(0.2)
        assert sent == [], "no sweep of a partition given up"
        await owner.take_over([tp])  # kept
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await sweeper
        await owner.producer.stop()  # made with the instance, though never started here
    assert [CODEC.decode(opened(s, ctx), Sweep).expire for s in sent] == [("r-1",)], \
        "swept once it is kept"


async def test_an_owner_expelled_while_frozen_rebuilds_the_partitions_it_is_given_back(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """An owner frozen past its session (a stalled machine) was expelled from the group; the
    partition's next owner decided a request and committed past it; let go on, the first
    rejoined, was given the partition back, and kept its state from before the freeze as one
    "kept across a rebalance" (nobody else had it, it thought): it read on from the offset
    committed, never knew the request, and held its provider's answer for no one: the requester
    was told nothing, ever. On the real broker (a topic and group of the test's own), the
    freeze the event loop held while another thread plays the next owner: an instance that
    missed a generation rebuilds every partition it is given."""
    owner, group, tp = _alone("expelled", ctx, monkeypatch)
    access = owner.access
    taken_over: list[int] = []
    taking_over = owner.take_over

    async def counted(assigned: Any) -> None:
        taken_over.append(len(taken_over))
        await taking_over(assigned)

    monkeypatch.setattr(owner, "take_over", counted)
    async with _started(owner):
        await _served(owner, access, lambda: bool(taken_over) and tp.partition in owner.owned
                      and not owner.taking_over)
        pending = _pending(ctx, received=datetime.now(UTC))
        _frozen(_decided_elsewhere(access, group, tp, [decider.to_decider("r-1", pending)]))
        frozen, deadline = len(taken_over), time.monotonic() + 30
        while len(taken_over) == frozen:  # let go on, busy elsewhere until it has rejoined
            assert time.monotonic() < deadline, "not given its partitions back"
            await asyncio.sleep(0.05)
        await _served(owner, access, lambda: tp.partition in owner.owned
                      and not owner.taking_over)
        await _delivered(access, [decider.to_decider("r-1", replace(
            _answer(), deadline=pending.deadline, answered_at=datetime.now(UTC)))])
        told = await _served(owner, access, None, within=3.0)
    assert _statuses(told) == ["FOUND"], "the answer relayed to its requester"


@pytest.mark.parametrize("held_in", ["history", "take-over"])
async def test_a_partition_whose_subscription_changed_while_it_was_taken_over_is_rebuilt(
        held_in: str, platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Seen in the session platform's log: a holder registered while a decision partition's
    history was read, its outbox joined the pattern subscription, and aiokafka made a new
    subscription, assigned nothing until the rebalance; the rebuild, its history read before the
    revoke cancelled it, sought the partition (AssertionError: seek needs it assigned), and the
    platform instance stopped: every later request went unanswered (the take-over's pause failed
    alike, the subscription changed while it waited for a rebuild to stop). A partition no longer
    assigned then is left unrebuilt; the rebalance that follows gives it back, rebuilt then. On
    the real broker (topics and a group of the test's own): the first history read (or the
    take-over, at its first await) is held until a new topic has joined the pattern."""
    caplog.set_level(logging.INFO)
    topic = f"{TOPIC}.moved-{held_in}"
    owner, _, _ = _alone(f"moved-{held_in}", ctx, monkeypatch,
                         pattern=rf"^{re.escape(topic)}(\..+)?$")
    access, history, stopping = owner.access, decision_history, owner.stop_rebuilding
    held = asyncio.Event()

    async def moved() -> None:
        changed = owner.consumer._subscription.wait_for_subscription()
        held.set()
        await changed  # the new topic joined the pattern: nothing assigned until the rebalance

    async def read_while_moved(*args: Any) -> Any:
        found = await history(*args)
        if not held.is_set():
            await moved()
        return found

    async def stopped_while_moved() -> None:
        await stopping()
        if not held.is_set() and owner.consumer.assignment():  # in the take-over
            await moved()

    if held_in == "history":
        monkeypatch.setattr("processors.platform.decision_history", read_while_moved)
    else:
        monkeypatch.setattr(owner, "stop_rebuilding", stopped_while_moved)
    partitions = {TopicPartition(topic, p) for p in range(decider.PARTITIONS)}
    async with _started(owner):
        await asyncio.wait_for(held.wait(), 30)
        rebuilding = owner.rebuilding
        made_topic(f"{topic}.new")
        owner.consumer.look_for_new_topics()
        if rebuilding is not None:
            with contextlib.suppress(asyncio.CancelledError):  # by the revoke, if it came first
                await asyncio.wait_for(asyncio.shield(rebuilding), 30)
        await _served(owner, access, lambda: partitions <= owner.consumer.assignment()
                      and not owner.taking_over and set(owner.decider.states) == {
                          tp.partition for tp in partitions})
        assert not owner.consumer.paused() & partitions
        for tp in partitions:
            assert await owner.consumer.position(tp) == (await owner.consumer.committed(tp) or 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                and r.name.startswith("aiokafka.consumer")
                and "listener" in r.getMessage()], "no rebalance callback failed"
    if held_in == "history":
        assert "decision partition 0 is no longer assigned here: not rebuilt" in caplog.text


async def test_an_owner_whose_rebalance_began_again_keeps_the_partitions_it_keeps(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebalance this instance took part in began again before it completed (its JoinGroup
    answered, then its SyncGroup refused REBALANCE_IN_PROGRESS as another member joined), so the
    group's generation went two past the one it last had; it took that for a generation missed
    (expelled, others may have had its partitions) and rebuilt every partition it kept, a replay
    of each one's history while its requests waited, though nobody had had them. On the real
    broker (a topic and group of the test's own): the owner, the group's leader, assigns once
    another member has joined meanwhile."""
    owner, group, tp = _alone("restarted", ctx, monkeypatch)
    access, taking_over = owner.access, owner.take_over
    joining = AIOKafkaConsumer(**access.reading(), group_id=group, enable_auto_commit=False)
    taken_over: list[tuple[int, set[int], set[int]]] = []  # generation, kept, rebuilt
    starting: list[asyncio.Task[None]] = []

    async def counted(assigned: Any) -> None:
        had = set(owner.decider.states)  # kept through the give-up, until assigned
        await taking_over(assigned)
        taken_over.append((owner.generation, had & owner.owned, set(owner.taking_over)))

    async def joined_meanwhile(response: Any) -> Any:
        coordinator._perform_assignment = assigning  # once
        joining.subscribe(topics=[tp.topic])
        starting.append(asyncio.create_task(joining.start()))  # returns once assigned
        await _joining(joining)
        return await assigning(response)

    monkeypatch.setattr(owner, "take_over", counted)
    async with _started(owner):
        coordinator = owner.consumer._coordinator
        assigning = coordinator._perform_assignment
        try:
            await _served(owner, access, lambda: bool(taken_over) and not owner.taking_over)
            monkeypatch.setattr(coordinator, "_perform_assignment", joined_meanwhile)
            coordinator.request_rejoin()
            await _served(owner, access, lambda: len(taken_over) == 2)
        finally:
            for task in starting:
                await task
            await joining.stop()
    (first, _, _), (then, kept, rebuilt) = taken_over
    assert then == first + 2 and kept, "a generation went by, begun again, and some were kept"
    assert rebuilt == set(), "nobody else had them: kept with their state"


async def test_an_owner_whose_rebalance_began_again_rebuilds_what_others_read_meanwhile(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebalance begun again may have completed for the other members first (the leader's
    SyncGroup in before another member joined, this one's after): one of them may have had a
    partition this instance keeps, decided what it read and committed past it. A partition kept
    across a generation gone by is rebuilt if its committed offset is past what was read of it
    here; one others only wrote to is decided in the topic's order until it is read to its end
    as of the take-over (their records, a sweep among them), the others at once."""
    owner, _, tp = _alone("gone-by", ctx, monkeypatch)
    access = owner.access
    written = TopicPartition(tp.topic, next(p for p in range(decider.PARTITIONS)
                                            if p != tp.partition))
    async with _started(owner):
        await _served(owner, access, lambda: len(owner.at_once) == decider.PARTITIONS)
        pending = _pending(ctx, received=datetime.now(UTC))
        await _delivered(access, [decider.to_decider("r-1", pending),
                                  decider.to_partition(written.partition, pending)])
        end = (await owner.consumer.end_offsets([tp]))[tp]
        await owner.consumer.commit({tp: end})  # as the other member would have
        generation = owner.consumer.generation() + 2
        monkeypatch.setattr(owner.consumer, "generation", lambda: generation)
        await owner.take_over(owner.consumer.assignment())
        rebuilt, behind = set(owner.taking_over), set(owner.behind)
        assert owner.rebuilding is not None
        await owner.rebuilding
    assert rebuilt == {tp.partition}, "rebuilt: read and committed elsewhere, and only it"
    assert "r-1" in owner.decider.states[tp.partition].pending
    assert behind == {written.partition}, "written elsewhere: decided in the topic's order"
    assert set(owner.at_once) == set(range(decider.PARTITIONS)) - {written.partition}


async def _joining(consumer: AIOKafkaConsumer, within: float = 20.0) -> None:
    """Wait until `consumer` has joined its group as far as the broker's rebalance: its member id
    given (MEMBER_ID_REQUIRED), its JoinGroup with it sent at once after, the group rebalancing
    once the broker has it (half a second)."""
    deadline = time.monotonic() + within
    while consumer._coordinator is None or not consumer._coordinator.member_id:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no member id within {within} s")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)


def _statuses(told: list[Send]) -> list[str]:
    """What requester nenkin was told of its requests, in order."""
    return [CODEC.decode(s.value, LinkageAnswer).status for s in told
            if s.topic == topics.inbox("nenkin")
            and CODEC.name_of(s.value) == LinkageAnswer.__name__]


async def test_an_owner_expelled_while_frozen_decides_nothing_at_once_until_it_is_heard_again(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """An owner frozen past its session was expelled; its partition's next owner dispatched a
    request; let go on, the first handled what it had fetched before the freeze before any
    heartbeat told it it had been expelled, a copy of that request among it, unknown to it, and
    decided it at once, as the partition's owner: the provider was queried again, by an instance
    owning nothing (so were answers relayed, from a state another owner had moved on). An owner
    decides at once only while the group has heard from it within its session (a heartbeat
    answered, less the time between two): else the event goes through the topic, to whoever
    owns the partition when it is read."""
    owner, group, tp = _alone("zombie", ctx, monkeypatch)
    access = owner.access
    async with _started(owner):
        pending = _pending(ctx, received=datetime.now(UTC))
        await _served(owner, access, lambda: tp.partition in owner.at_once)
        _frozen(_decided_elsewhere(access, group, tp, [decider.to_decider("r-1", pending)]))
        effects, decided = owner._at_once([decider.to_decider("r-1", pending)],
                                          datetime.now(UTC), ctx)  # fetched before the freeze
    assert [s.topic for s in effects] == [tp.topic] and decided == [], \
        "through the topic, not decided at once: no query to the provider"


async def test_an_owner_just_joined_decides_at_once(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group had not heard from an instance (heard_within) from its join until its first
    heartbeat was answered, a heartbeat interval later: an instance just started, or just
    through a rebalance, decided nothing at once meanwhile, every event through the topic. The
    SyncGroup that completed its join was answered by the group: it counts as heard from."""
    monkeypatch.setattr("processors.platform.HEARTBEAT_MS", 5_000)  # none answered in the test
    owner, _, tp = _alone("just-joined", ctx, monkeypatch)
    async with _started(owner):
        await _served(owner, owner.access, lambda: tp.partition in owner.at_once)
        pending = _pending(ctx, received=datetime.now(UTC))
        effects, decided = owner._at_once([decider.to_decider("r-1", pending)],
                                          datetime.now(UTC), ctx)
    assert [s.topic for s in decided] == [tp.topic] and tp.topic not in {
        s.topic for s in effects}, "decided at once: its query on its way, its record written"


def _alone(name: str, ctx: Context, monkeypatch: pytest.MonkeyPatch,
           pattern: str | None = None) -> tuple[Platform, str, TopicPartition]:
    """An instance (not started) subscribed alone to a decisions topic of its own (`name`'s), in
    a group of its own (whose name it returns) with as short a session as the broker allows, and
    request r-1's partition; with `pattern`, subscribed to the topics it matches instead."""
    topic = f"{TOPIC}.{name}"
    made_topic(topic, {"message.timestamp.type": "LogAppendTime"}, decider.PARTITIONS)
    group = f"{topic}.group"
    monkeypatch.setattr(decider, "DECISIONS", topic)
    monkeypatch.setattr("processors.platform.GROUP", group)
    monkeypatch.setattr("processors.platform.SESSION_TIMEOUT_MS", 6_000)  # the broker's least
    monkeypatch.setattr("processors.platform.LEASE_SECONDS", (6_000 - HEARTBEAT_MS) / 1000)
    owner = Platform(KafkaAccess.of(config.ADMIN), member=name)
    monkeypatch.setattr(owner.views, "refresh", lambda: ctx)
    if pattern is None:
        owner.consumer.subscribe(topics=[topic], listener=_TakeOver(owner))
    else:
        owner.consumer.subscribe(pattern=pattern, listener=_TakeOver(owner))
    return owner, group, TopicPartition(topic, decider.partition_of("r-1"))


@asynccontextmanager
async def _started(owner: Platform) -> AsyncIterator[None]:
    """`owner`'s consumer started, then stopped, a rebuild it began cancelled first (it would go
    on past the test, retrying on the stopped consumer, its warnings logged in later tests), and
    its producer (made with the instance, though never started here) stopped."""
    await owner.consumer.start()
    try:
        yield
    finally:
        await owner.stop_rebuilding()
        await owner.consumer.stop()
        await owner.producer.stop()


async def _served(owner: Platform, access: KafkaAccess, done: Callable[[], bool] | None,
                  within: float = 40.0) -> list[Send]:
    """The owner polls its decision topic and decides what it reads, its records written, until
    `done` (a TimeoutError if not within `within` seconds; `within` seconds, if None); what it
    told the holders."""
    told: list[Send] = []
    deadline = time.monotonic() + within
    while done is None or not done():
        if time.monotonic() > deadline:
            if done is None:
                return told
            raise TimeoutError(f"not done within {within} s")
        polled = await owner.consumer.getmany(timeout_ms=100)
        if records := [r for batch in polled.values() for r in batch]:
            effects, decided = owner.handle(records)
            told += [s for s in effects if s.topic != decider.DECISIONS]
            await _delivered(access, [s for s in effects if s.topic == decider.DECISIONS]
                             + decided)
        if owner.rebuilding is not None and owner.rebuilding.done():
            owner.rebuilding.result()
    return told


def _frozen(meanwhile: Coroutine[Any, Any, None]) -> None:
    """The event loop held (as SIGSTOP holds a process: no heartbeat, no fetch) while another
    thread runs `meanwhile`."""
    elsewhere = threading.Thread(target=asyncio.run, args=(meanwhile,))
    elsewhere.start()
    elsewhere.join()


async def _decided_elsewhere(access: KafkaAccess, group: str, tp: TopicPartition,
                             decided: list[Send]) -> None:
    """The partition's next owner, once the group has expelled the frozen one: its records of
    what it decided written, and the offset past them committed for the group."""
    await _delivered(access, decided)
    consumer = AIOKafkaConsumer(**access.reading(), group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        deadline = time.monotonic() + 30
        while True:  # refused while the frozen owner is a member still
            try:
                await consumer.commit({tp: end})
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


async def _delivered(access: KafkaAccess, sends: list[Send]) -> None:
    """Records written as the platform writes them, in order, each at the broker's time."""
    async with producer(access) as prod:
        for item in sends:
            await prod.send_and_wait(item.topic, item.value, key=(item.key or "").encode() or None,
                                     partition=item.partition, headers=list(item.headers))


def _about(told: list[Send]) -> set[tuple[str, str]]:
    """What holders were told of r-1, and what the access log has of it (by event id: it takes
    each once)."""
    said: set[tuple[str, str]] = set()
    for topic, value in ((s.topic, value) for s in told for value in unpacked(s.value)):
        name = CODEC.name_of(value)
        if name == AccessLogEvent.__name__:
            said.add((topic, CODEC.decode(value, AccessLogEvent).event_id))
        elif name == Rejection.__name__:
            said.add((topic, CODEC.decode(value, Rejection).reason))
        elif name == LinkageAnswer.__name__:
            said.add((topic, CODEC.decode(value, LinkageAnswer).status))
        elif name == RekeyAnswer.__name__:
            said.add((topic, f"epoch {CODEC.decode(value, RekeyAnswer).epoch}"))
        else:
            said.add((topic, repr(value)))  # the query
    return said


def _record(topic: str, partition: int, at: datetime, value: bytes) -> SimpleNamespace:
    """A record of `value` on `topic`'s `partition`, appended by the broker at `at`."""
    record = appended(at, value)
    record.topic, record.partition, record.offset, record.headers = topic, partition, 0, None
    return record


async def test_what_the_platform_delivers_to_a_holder_is_stamped_by_the_brokers_clock(
        platform: object) -> None:
    """A holder judges a query's deadline (of the broker's time) by its inbox's records, but the
    inbox kept its writer's, the platform's, clock: a record written with it an hour behind is
    stamped by the broker's."""
    record = await _written_an_hour_behind(topics.inbox("town"))
    assert record.timestamp_type == LOG_APPEND_TIME
    stamped = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    assert abs(stamped - datetime.now(UTC)) < timedelta(minutes=1)


async def _written_an_hour_behind(holder_topic: str) -> Any:
    """The record read back from a topic made as the town's `holder_topic` is, written with its
    writer's clock an hour behind."""
    topic = f"{TOPIC}.{holder_topic}"
    spec, = [s for s in topics.holder_topics("town") if s.name == holder_topic]
    made_topic(topic, spec.for_cluster(1).configs())
    access = KafkaAccess.of(config.ADMIN)
    async with producer(access) as prod:
        hour_behind = datetime.now(UTC) - timedelta(hours=1)
        await prod.send_and_wait(topic, b"", partition=0,
                                 timestamp_ms=int(hour_behind.timestamp() * 1000))
    record, = await read_topic(access, topic)
    return record


async def test_a_take_over_counts_its_history_back_by_the_brokers_time(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decisions topic kept its writers' times: a request decided by an instance whose clock
    was an hour behind, followed by a sweep of one whose clock was right, was left out of the
    history a take-over rebuilt (it never timed out, and a copy of it was decided again); and a
    partition with no history yet, taken over by a platform 10 minutes ahead, took the requests
    of the next 9.5 minutes as forgotten, refused as stale. The broker stamps the topic's records,
    and a partition with nothing before its committed offset has forgotten nothing."""
    topic = f"{TOPIC}.stamped-decisions"
    spec, = [s for s in topics.platform_topics() if s.name == decider.DECISIONS]
    made_topic(topic, spec.for_cluster(1).configs())
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(topic, 0)
    now = datetime.now(UTC).replace(microsecond=0)
    pending = _pending(ctx, received=now)
    events = [(pending, now - timedelta(hours=1)), (Sweep(now, ()), now)]
    await _written(access, topic, events)
    monkeypatch.setattr("processors.platform.datetime", skewed(timedelta(minutes=10)))
    _, history = await decision_history(access, tp, len(events), ctx, BrokerTime())
    assert _events(history) == [pending, Sweep(now, ())], \
        "the hour-behind writer's request is in it"
    taken, partition = _taken_over((await decision_history(access, tp, 0, ctx,
                                                           BrokerTime())).records, ctx)
    dispatched = taken.handle(partition, pending, now, ctx)
    assert [s.topic for s in dispatched] == [topics.inbox("town"), topics.AUDIT], "not stale"


async def test_a_take_overs_last_record_sets_the_brokers_time_back_only_if_none_was_read_lately(
        broker: Cluster, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A take-over reads its partition's last record, perhaps hours old. Read as any other, it set
    the broker's time back (deadlines judged hours late) once the read before it left the WINDOW;
    read only while no time was known, a time carried on through a quiet hour stayed ahead of the
    broker's clock set back meanwhile, and the history was counted back from it (requests
    forgotten early). It sets the time back only if none was read in the last WINDOW seconds."""
    elapsed = [0.0]
    monkeypatch.setattr("renkei.broker_time.elapsed_seconds", lambda: elapsed[0])
    topic = f"{TOPIC}.hour-old"
    made_topic(topic, {"message.timestamp.type": "LogAppendTime"})
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(topic, 0)
    async with producer(access) as prod:
        stamp = await prod.send_and_wait(topic, CODEC.encode(_pending(ctx)), partition=0)
    last = datetime.fromtimestamp(stamp.timestamp / 1000, UTC)
    lately, quiet = BrokerTime(), BrokerTime()
    for known in lately, quiet:
        known.read([appended(last + timedelta(hours=1))])
    elapsed[0] = WINDOW / 2
    await decision_history(access, tp, 1, ctx, lately)
    elapsed[0] = WINDOW + 5
    assert lately.now() == last + timedelta(hours=1, seconds=WINDOW + 5), "not set back"
    since = (await decision_history(access, tp, 1, ctx, quiet)).since
    assert quiet.now() == last, "none read lately: perhaps the broker's clock was set back"
    assert since == ctx.remembered_from(last, last)


async def _written(access: KafkaAccess, topic: str, events: list[tuple[Any, datetime]]) -> None:
    """Each event written to the topic's partition at its time, as its writer's clock had it."""
    async with producer(access) as prod:
        for event, at in events:
            await prod.send_and_wait(topic, CODEC.encode(event), partition=0,
                                     timestamp_ms=int(at.timestamp() * 1000))


def _taken_over(history: list[decider.DecisionRecord], ctx: Context,
                since: datetime | None = None) -> tuple[decider.Decider, int]:
    """A decider that took over request r-1's partition, rebuilt from this history (written
    from `since` on)."""
    partition = decider.partition_of("r-1")
    taken = decider.Decider()
    taken.keep_only({partition})
    taken.rebuild(partition, history, ctx, since)
    return taken, partition


def _told(made: list[Send]) -> list[tuple[str, str]]:
    """Whom each effect tells what: a requester's answer its status, an access-log event its id
    and outcome."""
    return [(s.topic, CODEC.decode(s.value, LinkageAnswer).status) if s.topic != topics.AUDIT
            else (CODEC.decode(s.value, AccessLogEvent).event_id,
                  CODEC.decode(s.value, AccessLogEvent).outcome) for s in made]


def _events(history: list[decider.DecisionRecord]) -> list[Any]:
    """The events of a history's records, in order."""
    return [event for record in history for event in record.events]


async def test_a_rebuild_stopped_while_its_replay_starts_leaves_no_consumer_unclosed(
        broker: Cluster, ctx: Context, caplog: pytest.LogCaptureFixture) -> None:
    """A platform stopped while it was taking decision partitions over cancelled their rebuilds,
    one of them still starting its replay's consumer, which was never stopped: 'Unclosed
    AIOKafkaConsumer' in the platform's last words (test_refused's platform losing its grant)."""
    topic = f"{TOPIC}.cancelled"
    made_topic(topic)
    gc.collect()  # what earlier tests on this loop left is not this rebuild's
    caplog.clear()
    rebuild = asyncio.create_task(decision_history(
        KafkaAccess.of(config.ADMIN), TopicPartition(topic, 0), 1, ctx, BrokerTime()))
    await asyncio.sleep(0)  # in its consumer's start, connecting to the broker
    rebuild.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rebuild
    del rebuild
    gc.collect()
    await asyncio.sleep(0)  # the loop's exception handler says what was left unclosed
    assert "Unclosed AIOKafkaConsumer" not in caplog.text


NEWER = MAGIC + bytes(8) + b"\x02"  # a decision event of a schema no version here knows


async def test_a_platform_meeting_a_decision_a_newer_version_wrote_stops_saying_so(
        platform: object, ctx: Context) -> None:
    """An instance of an older version reading a decision event of a schema it does not know (a
    newer instance, mid-upgrade, wrote it) logged it as a failed decision and went on, its
    partition's state without it: it now stops with NewerVersion, alone or in a batch, and its
    partitions go to the instances that can read it."""
    partition = decider.partition_of("r-1")
    for value in (NEWER, CODEC.encode(Batch((CODEC.encode(_pending(ctx)), NEWER)))):
        instance = Platform(KafkaAccess.of(acls.PLATFORM))
        instance.decider.keep_only({partition})
        instance.decider.rebuild(partition, [], ctx)
        record = _record(decider.DECISIONS, partition, datetime.now(UTC), value)
        with pytest.raises(NewerVersion, match="a newer version of Renkei wrote it"):
            instance.handle([record])
        await instance.producer.stop()  # made with the instance, though never started here


async def test_a_take_over_meeting_a_decision_a_newer_version_wrote_stops_saying_so(
        broker: Cluster, ctx: Context) -> None:
    """A take-over replaying a partition's history left out the events it could not read: one a
    newer version wrote was not in the state rebuilt. It stops with NewerVersion; a corrupt
    event of a known schema is still left out."""
    topic = f"{TOPIC}.newer"
    made_topic(topic)
    access, tp = KafkaAccess.of(config.ADMIN), TopicPartition(topic, 0)
    now = datetime.now(UTC).replace(microsecond=0)
    async with producer(access) as prod:
        for value in (CODEC.encode(_pending(ctx))[:-3], NEWER):
            await prod.send_and_wait(topic, value, partition=0)
    with pytest.raises(NewerVersion):
        await decision_history(access, tp, 2, ctx, BrokerTime())
    _, history = await decision_history(access, tp, 1, ctx, BrokerTime())
    assert _events(history) == [] and history[0].at >= now - timedelta(minutes=1)


async def test_a_second_instance_of_a_member_stops_the_first_saying_so_the_second_deciding_on(
        platform: object, ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second instance started under a running one's member id (`--member` copied into two
    units) takes its place in the group; the first, told at its next heartbeat or commit that
    the group does not know it, joined again under the id and took it back, and so on at every
    heartbeat, for ever: each rebuilt every partition every few seconds, and both decided at
    once. The first stops at once, deciding nothing at once from then on, and says in one line
    that another instance took its member id; the second goes on, deciding every partition at
    once."""
    topic = f"{TOPIC}.fenced"
    made_topic(topic, {"message.timestamp.type": "LogAppendTime"}, decider.PARTITIONS)
    monkeypatch.setattr(decider, "DECISIONS", topic)
    monkeypatch.setattr("processors.platform.GROUP", f"{topic}.group")
    monkeypatch.setattr("processors.platform.SUBSCRIPTION", f"^{re.escape(topic)}$")
    first, second = (Platform(KafkaAccess.of(config.ADMIN), member="twice") for _ in "12")
    stop = asyncio.Event()
    runs = []
    try:
        for instance in (first, second):
            ready = asyncio.Event()
            runs.append(asyncio.create_task(instance.run(stop, ready)))
            await set_or_failed(ready, runs[-1])
            if instance is first:
                await _until(lambda: len(first.at_once) == decider.PARTITIONS)
        with pytest.raises(Fenced) as fenced:
            await asyncio.wait_for(asyncio.shield(runs[0]), 3 * HEARTBEAT_MS / 1000)
        assert not first.consumer.heard_within(LEASE_SECONDS), "decides nothing at once"
        assert _said(fenced.value) == str(fenced.value) and "twice" in str(fenced.value)
        await _until(lambda: len(second.at_once) == decider.PARTITIONS)
        await asyncio.sleep(3 * HEARTBEAT_MS / 1000)  # past heartbeats and commits of both
        assert not runs[1].done() and len(second.at_once) == decider.PARTITIONS
        assert second.consumer.heard_within(LEASE_SECONDS)
    finally:
        stop.set()
        await asyncio.gather(*runs, return_exceptions=True)


async def _until(done: Callable[[], bool], within: float = 30.0) -> None:
    """Wait until `done` (a TimeoutError if not within `within` seconds)."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {within} s")
        await asyncio.sleep(0.05)
