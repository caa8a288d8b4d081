"""The platform's stream processor: one consumer-group member, thin around the pure handlers.

It reads every holder's outbox (found by pattern, looked for again as soon as the holder
directory changes, so a holder registered joins within seconds), the
registry's answers, the oversight body's and My Portal's requests, My Portal's access-log events
(on to the audit topic, which the platform alone writes), and the decider's own topic;
each poll is handled as a batch (so code conversions run as few FF1 batches as possible), every
effect is delivered and acknowledged by the broker, and only then are the offsets committed: at
least once, with effects the audit log takes exactly once (by event id); a query or a request for
holder-side logs read again reaches its holders again, and the decider, the oversight body and My
Portal each take one answer of a holder (by request id). A partition of the decider's topic taken
over from another instance is first replayed to rebuild its state, and decided in the topic's order
until it is read to its end as of the take-over (what the last owner wrote, a sweep among it).

An event for a decision partition this instance owns is decided at once, without the hop through
the decider's topic; its record is written there after its effects are acknowledged (marked
as decided, so that it is not decided again), for the next owner to rebuild from. Events for
partitions other instances own go through the topic to them, as before, as do sweeps and the
events a sweep may change the decision on (Decider.in_order): any owner replaying the topic decides
them in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from broker import acls, topics
from broker.clients import (
    KafkaAccess,
    committed_offsets,
    records_up_to,
    seek_to_times,
    started,
    stopped,
)
from broker.fetch_sessions import Gathering, Quiet, SessionConsumer
from broker.presence import watched
from processors import access_log, applications, binding, decider, keys, outbox, oversight
from processors.approval import PatternList
from processors.context import Context
from processors.decider import DecisionEvent
from processors.isolation import isolated
from processors.unread import Unread
from renkei.broker_time import LOG_APPEND_TIME, BrokerTime, appended_at, record_time
from renkei.compacted import CompactedView, holder_directory
from renkei.envelope import Incoming, Send, batched, unpacked
from renkei.request_names import too_long
from renkei.service_loop import (
    Outflow,
    Stopping,
    close_consumer,
    deliver,
    producer_for,
    stopped_within,
    unless_stopped,
)
from renkei.tasks import cancelled
from schemas.codec import CODEC, MAX_BYTES, NewerVersion, SchemaError
from schemas.messages import (
    HolderEntry,
    HolderLogRequest,
    LegalPattern,
    Outcome,
    RegistryAnswer,
)

log = logging.getLogger(__name__)
GROUP = acls.PLATFORM_APP
SUBSCRIPTION = (r"^(renkei\.holder\.[a-z0-9][a-z0-9-]*\.out|renkei\.registry\.out|"
                r"renkei\.oversight\.out|renkei\.portal\.out|renkei\.portal\.audit|"
                r"renkei-platform-decisions)$")
SWEEP_SECONDS = 1.0
POLL_RECORDS = 2000
GATHERING = Gathering(max_wait_ms=5, min_bytes=64 * 1024)  # while busy: fewer, fuller fetches
QUIET = Quiet(after_seconds=10.0, watch_wait_ms=5_000, busy_wait_ms=100)  # idle holders' outboxes
METADATA_SECONDS = 15  # all topics (thousands of them) read again, besides on directory changes
REBUILD_RETRY = 1.0  # seconds before reading a taken-over partition's history again
REPLAY_WAIT_MS = 10  # a replay reads what is there: no fetch held 500 ms at the log's end
DIRECTORY_WAIT = 1.0  # seconds a poll waits at most for the directory and pattern list views
SESSION_TIMEOUT_MS = 10_000  # an instance not heard from for longer leaves the group
HEARTBEAT_MS = 2_000
# how long since the group last heard from it an instance still decides at once
LEASE_SECONDS = (SESSION_TIMEOUT_MS - HEARTBEAT_MS) / 1000
DECIDED = "renkei-decided"  # header of a decision event decided at once: the owner's mark
BATCHED = (topics.AUDIT, decider.DECISIONS)  # sent a poll's worth at a time


class Views:
    """The compacted topics the platform follows, and the context rebuilt when they change."""

    def __init__(self, access: KafkaAccess, ctx: Context) -> None:
        self.ctx = ctx
        self.directory = holder_directory(access)
        self.patterns = CompactedView(access, topics.PATTERNS,
                                      lambda b: CODEC.decode(b, LegalPattern))
        self._seen = (-1, -1)
        self._behind: asyncio.Task[None] | None = None  # a directory read to its end not done
        self._given_up = False  # a directory read given up (said), none read to its end since

    async def directory_read(self) -> None:
        """Wait until the directory view has read every directory record the broker had now, and
        the pattern list's view every pattern version (their ends asked in one request), so
        that the records polled before are judged by every resumption and registration written
        before them (a holder's request sent once `renkei holder resume` had returned was
        refused SUSPENDED by a view not there yet; judged_by_directory), and by every version
        published before them (one sent once `renkei patterns publish` had returned was judged
        by the list before it, replay's grace hiding it): DIRECTORY_WAIT at most,
        after which, or if the broker does not say the directory's end, they are judged by the
        view as it is, said in a warning (once: not again until a read has reached the end), and
        no poll waits again until that read has reached its end (said once it, or a read after,
        has)."""
        if self._behind is not None and not self._behind.done():
            return
        reading = asyncio.create_task(self.directory.read_to_end(self.patterns))
        done, _ = await asyncio.wait({reading}, timeout=DIRECTORY_WAIT)
        if reading in done and reading.exception() is None:
            self._behind = None
            self._caught_up(reading)
            return
        if reading not in done:
            self._behind = reading
            reading.add_done_callback(self._caught_up)
        if self._given_up:  # said already, none read to its end since: an outage, a line
            return
        self._given_up = True
        log.warning("the holder directory and legal pattern list are not read to their end "
                    "(%s): requests are judged by them as read so far",
                    reading.exception() if reading in done else f"not within {DIRECTORY_WAIT} s")

    def _caught_up(self, reading: asyncio.Task[None]) -> None:
        """Say that the directory is read to its end again once a read has reached it (`reading`,
        its failure taken), the first since one was given up."""
        if not reading.cancelled() and reading.exception() is None and self._given_up:
            self._given_up = False
            log.info("the holder directory and legal pattern list are read to their end again: "
                     "requests are judged by every entry written before them")

    async def start(self) -> None:
        await self.directory.start()
        await self.patterns.start()
        await self.directory.loaded()
        await self.patterns.loaded()
        await self.directory_read()  # its client asking the ends started before any request

    async def stop(self) -> None:
        if self._behind is not None and not self._behind.done():  # an ended one's error taken
            await cancelled(self._behind)
        await self.directory.stop()
        await self.patterns.stop()

    def check(self) -> None:
        """Raise NotFollowing if a view stopped: no approvals under a stale pattern list."""
        self.directory.check()
        self.patterns.check()

    def refresh(self) -> Context:
        """The context, with amendments to the directory and pattern list applied live."""
        seen = (self.directory.version, self.patterns.version)
        if seen != self._seen:
            self._seen = seen
            self.ctx.directory = {e.holder_id: e for e in self.directory.entries.values()}
            self.ctx.patterns = PatternList(self.patterns.entries.values())
        return self.ctx


class Platform:
    """One instance of the platform's processor."""

    def __init__(self, access: KafkaAccess, answer_timeout: timedelta | None = None,
                 member: str | None = None) -> None:
        master = keys.load()
        ctx = Context.of(master)
        if answer_timeout is not None:
            ctx.answer_timeout = answer_timeout
        self.access = access
        self.views = Views(access, ctx)
        self.decider = decider.Decider()
        self.broker_time = BrokerTime()
        self.taking_over: set[int] = set()
        self.rebuilding: asyncio.Task[None] | None = None  # of partitions in taking_over
        self.at_once: dict[int, bytes] = {}  # partitions decided here at once, and their mark
        # partitions taken over, and their end offsets then: read to them before deciding at once
        self.behind: dict[int, int] = {}
        self.owned: set[int] = set()  # decision partitions assigned here: the ones swept
        self.generation = -1  # the group's, as of the last assignment
        self.member = ""  # this instance's member id in the group then
        self.read: dict[int, int] = {}  # decision partitions' offsets past what was read here
        self.sweeping = asyncio.Lock()  # held while sweeps are sent (give_up waits for them)
        self.ends_ahead = False  # the last records handled recorded an answer relayed to no one
        self.producer = producer_for(access)
        self.consumer = SessionConsumer(
            **access.reading(), group_id=GROUP, group_instance_id=member,
            enable_auto_commit=False,
            auto_offset_reset="earliest", max_poll_records=POLL_RECORDS,
            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_MS,
            metadata_max_age_ms=METADATA_SECONDS * 1000, gathering=GATHERING, quiet=QUIET)
        self.outflow = Outflow(self.consumer, self.producer)
        self.unread = Unread(self.consumer)
        self.stopping = Stopping()  # what its stop found

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run until `stop` is set (also while it waits for the broker to start)."""
        sweeper: asyncio.Task[None] | None = None
        try:
            if not await unless_stopped(stop, self._start()):
                return
            sweeper = asyncio.create_task(self._sweep(stop))
            if ready is not None:
                ready.set()
            async with watched(self.access.bootstrap, GROUP):
                self.stopping.batch_ended = await stopped_within(stop, self._serve(stop, sweeper))
            await self.stopping.last_commit(self.outflow)
        finally:
            if sweeper is not None:
                sweeper.cancel()
            await self.stop_rebuilding()
            self.stopping.waited(await close_consumer(self.consumer))  # bounded, away or not
            await self.stopping.producer_closed(self.producer)
            await self.views.stop()
            self.stopping.said()

    async def _start(self) -> None:
        await self.views.start()
        await started(self.producer, self.access)
        self.consumer.subscribe(pattern=SUBSCRIPTION, listener=_TakeOver(self))
        await started(self.consumer, self.access)

    async def _serve(self, stop: asyncio.Event, sweeper: asyncio.Task[None]) -> None:
        directory = self.views.directory.version
        while not stop.is_set():
            polled = await self.consumer.getmany(timeout_ms=100, max_records=POLL_RECORDS)
            records = [r for batch in polled.values() for r in batch]
            if records:
                if self.read_first(records):
                    await self.views.directory_read()
                await self.outflow.send(self.committable(polled), *self.handle(records))
            await self.outflow.commit(now=self.ends_ahead, stop=stop)
            self.ends_ahead = False
            self.views.check()
            for task in (sweeper, self.rebuilding):  # they stop early only on an error:
                if task is not None and task.done() and not task.cancelled():
                    task.result()  # the platform stops with it
            if directory != self.views.directory.version:  # a holder registered, perhaps:
                directory = self.views.directory.version  # look for its outbox now
                self.consumer.look_for_new_topics()

    def read_first(self, records: list[Any]) -> bool:
        """Whether the directory is to be read to its end before these records are judged
        (judged_by_directory), or before answers held for a request are: a record decided at once
        by another owner (a last owner's, read on from the offset it committed) releases those
        of its requests, judged as it is read (Decider.handle), as the answers are by an owner
        reading its request not decided at once (Decider.in_order); one decided here, or in a
        partition holding none, needs no look-up."""
        if judged_by_directory(records):
            return True
        holding = self.decider.holding()  # none, mostly: the records not looked at for it
        return bool(holding) and any(  # each a decision record decided at once, by someone
            r.partition in holding and _mark(r) != self.at_once.get(r.partition) for r in records)

    def committable(self, polled: Iterable[TopicPartition]) -> list[TopicPartition]:
        """The partitions whose offsets may be committed: not decision partitions being taken
        over (read again from their committed offset once rebuilt)."""
        return [tp for tp in polled
                if tp.topic != decider.DECISIONS or tp.partition not in self.taking_over]

    def handle(self, records: list[Any]) -> tuple[list[Send], list[Send]]:
        """One poll's records, by kind: holders' outboxes, registry, relays, decisions; the
        effects, and the records of what was decided at once."""
        self.broker_time.read(records)  # what is logged and told is at it, as deadlines are
        now, ctx = self.broker_time.now() or datetime.now(UTC), self.views.refresh()
        by_topic: dict[str, list[Any]] = defaultdict(list)
        for record in records:
            kind = record.topic if topics.holder_of_outbox(record.topic) is None else "outbox"
            by_topic[kind].append(record)
        out = outbox.handle([_incoming(r) for r in by_topic.pop("outbox", [])], ctx, now)
        out += [decider.to_decider(a.request_id, a) for a in binding.to_decide(
            [(a, record_time(r)) for r in by_topic.pop(topics.REGISTRY_OUT, [])
             for a in decoded([r], RegistryAnswer, outbox.MOST_DECIDED_BYTES)], now)]
        out += relayed(_asked(by_topic.pop(topics.OVERSIGHT_OUT, []), now),
                       _asked(by_topic.pop(topics.PORTAL_OUT, []), now), ctx.directory, now)
        out += access_log.from_portal((r.value or b"", _received(r, now))
                                      for r in by_topic.pop(topics.PORTAL_AUDIT, []))
        decisions = [r for r in by_topic.pop(decider.DECISIONS, [])
                     if r.partition in self.decider.states]  # else taken away since it was
        for record in decisions:  # polled (an await between): its next owner reads it
            if record.partition not in self.taking_over:  # read again once rebuilt
                out += self._decide(record, now, ctx)
                self.read[record.partition] = record.offset + 1
        if self.behind:
            self._read_up(decisions)
        return self._at_once(out, now, ctx)

    def _at_once(self, out: list[Send], now: datetime,
                 ctx: Context) -> tuple[list[Send], list[Send]]:
        """Decide here the decision events of partitions this instance owns: their effects
        join the others (access-log events in batches), and the events become records marked
        as decided. An event a sweep may change the decision on (Decider.in_order) goes through
        the topic: the sweep may be on its way there, and it is decided in the topic's order. So
        does every event while the group has not heard from this instance within its lease:
        expelled meanwhile (frozen past its session), it owns nothing, whatever it holds."""
        effects: list[Send] = []
        decided: list[Send] = []
        near = decider.near_forgetting(ctx)
        at_once = self.at_once if self.consumer.heard_within(LEASE_SECONDS) else {}
        for item in out:
            partition = item.partition if item.topic == decider.DECISIONS else None
            if (partition is None or partition not in at_once
                    or self.decider.in_order(partition, item.key or "", item.message, now, near)):
                effects.append(item)
                continue
            event = item.message if isinstance(item.message, DecisionEvent) else item.value
            effects += self._apply(partition, event, now, ctx)
            decided.append(item)
        self.ends_ahead = ends_ahead(effects)
        return (sealed(batched(effects, BATCHED), ctx),
                sealed([self._marked(s) for s in batched(decided, BATCHED)], ctx))

    def _marked(self, record: Send) -> Send:
        """A record of events decided at once, marked with its partition's current mark (one
        mark a batch, not a copy of each event marked)."""
        assert record.partition is not None
        return Send(record.topic, record.key, record.value, record.partition,
                    ((DECIDED, self.at_once[record.partition]),), record.message)

    def _decide(self, record: Any, now: datetime, ctx: Context) -> list[Send]:
        """Events read from the decider's topic, alone or in a batch: decided now, unless they
        were decided at once (under the partition's current mark, by this instance since it took
        the partition: nothing to do; under another: their effects were made, only the state is
        brought up to date, which applying them again leaves as it is if it was already); read
        first, by the record's append time (Decider.read), whichever."""
        self.decider.read(record.partition, record_time(record), ctx)
        mark = _mark(record)
        if mark is not None and mark == self.at_once.get(record.partition):
            return []
        return [made for event in unpacked(opened(record, ctx))
                for made in self._apply(record.partition, event, now, ctx, effects=mark is None)]

    def _apply(self, partition: int, event: bytes | DecisionEvent, now: datetime, ctx: Context,
               effects: bool = True) -> list[Send]:
        """Decide one event, as read (bytes) or as made here (not decoded again)."""
        try:
            message = (decider.decision_event(event) if isinstance(event, bytes)
                       else event)
            return self.decider.handle(partition, message, now, ctx, effects)
        except NewerVersion:
            raise  # the instance stops: a newer one decides what this one cannot read
        except Exception:  # a bug must not stop the decider: log it, keep the partition moving
            log.exception("a decision on partition %s failed", partition)
            return []

    async def due(self) -> list[Send]:
        """Sweep events for the deadlines passed (or requests to providers suspended since,
        by the directory as read now: no record need come first), their answers all read
        (Unread), and requests to forget, by the broker's time now (none before any of its
        times is read: nothing is known to be due)."""
        now = self.broker_time.now()
        if now is None:
            return []
        expire = await self.unread.read(self.decider.passed(now, self.views.refresh()))
        return self.decider.sweeps(now, self.views.ctx, expire)

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Deadlines and forgetting, as Sweep events in the partitions they concern, decided
        as they are read back, never at once: any owner replaying the partition then times a
        request out at the same point among the answers to it that other instances wrote. None
        is sent for a partition given up (give_up), not ours to sweep, until it is given back."""
        while not stop.is_set():
            await asyncio.sleep(SWEEP_SECONDS)
            sweeps = await self.due()
            async with self.sweeping:
                if any(sweep.partition not in self.owned for sweep in sweeps):
                    self.decider.unsent(sweeps)  # given up meanwhile: due again if kept
                    continue
                try:
                    await deliver(self.producer, sealed(sweeps, self.views.refresh()))
                except KafkaError as exc:
                    log.warning("sweep not sent (%s): it is due again next time", exc)
                    self.decider.unsent(sweeps)

    async def take_over(self, assigned: Iterable[TopicPartition]) -> None:
        """Rebuild the state of decision partitions this instance has just been given.

        They are paused (and their records ignored, their offsets not committed) until their
        state is rebuilt from their recent past up to the committed offset, one partition after
        another; the consumer then reads each on from there. The rebuild runs beside the
        consumer, not in this callback: the group gets no heartbeat while it runs, and the
        history of a busy partition can take longer to replay than the session lasts.
        Partitions it keeps across a rebalance keep their state: nobody else had them; but an
        instance expelled from the group (frozen past its session, and let go on: it joins again
        under a new member id) rebuilds every one it is given: others may have had them
        meanwhile, and decided and committed what it never read. A rebalance begun again before
        it completed here (its SyncGroup refused, another member joining) is a generation gone
        by too, which others may have completed: a partition kept across it is rebuilt if its
        committed offset is past what was read of it here, and decided in the topic's order
        until it is read to its end as of the take-over (what they wrote, a sweep among it).
        """
        await self.stop_rebuilding()
        ours = {tp.partition for tp in assigned if tp.topic == decider.DECISIONS}
        generation, member = self.consumer.generation(), self.consumer.member()  # hand: -1
        if self.generation >= 0 and generation != self.generation + 1:
            if member != self.member:
                self.decider.keep_only(set())
                self.behind = {}
            else:
                await self._gone_by(ours & set(self.decider.states))
        self.generation, self.member = generation, member
        new = [TopicPartition(decider.DECISIONS, p) for p in self.decider.keep_only(ours)]
        self.behind = {p: end for p, end in self.behind.items() if p in ours}
        self.owned = ours
        self.decide_at_once(ours - {tp.partition for tp in new})
        assigned_now = self.consumer.assignment()  # none if the subscription changed meanwhile:
        new = [tp for tp in new if tp in assigned_now]  # the rebalance that follows gives them
        if new:
            self.consumer.pause(*new)
            self.taking_over.update(tp.partition for tp in new)
            self.rebuilding = asyncio.create_task(self._rebuild(new, ours))

    async def _gone_by(self, kept: set[int]) -> None:
        """Partitions kept across generations gone by elsewhere: rebuilt if others may have read
        past what was read of them here (or the broker does not say), else decided in the topic's
        order up to their ends now if others wrote past it."""
        tps = {p: TopicPartition(decider.DECISIONS, p) for p in kept}
        try:
            committed = await committed_offsets(self.consumer, tps.values())
            ends = await self.consumer.end_offsets(list(tps.values()))
        except KafkaError as exc:
            log.warning("decision partitions kept across a rebalance begun again are rebuilt: "
                        "their offsets not read (%s)", exc)
            self.decider.keep_only(set(self.decider.states) - kept)
            return
        moved = {p for p, tp in tps.items() if (committed[tp] or 0) > self.read.get(p, 0)}
        self.decider.keep_only(set(self.decider.states) - moved)
        self.behind.update({p: ends[tp] for p, tp in tps.items()
                            if p not in moved and ends[tp] > self.read.get(p, 0)})

    async def _rebuild(self, new: list[TopicPartition], ours: set[int]) -> None:
        """The partitions `new` from their history, one after another: each is read on from its
        committed offset as soon as its own state is rebuilt (its requests do not wait for the
        others' history), and decided at once from its end as of the take-over on (_replay). One
        no longer assigned here once its history is read (the subscription changed meanwhile: a
        holder's outbox joined the pattern, the revoke still to come) is left as it is, unrebuilt:
        the rebalance that follows gives it to its owner, this instance's take-over rebuilds it."""
        started = time.monotonic()
        try:
            for tp in sorted(new):
                replayed = await self._replay(tp)
                if replayed is None:
                    log.info("decision partition %d is no longer assigned here: not rebuilt (the "
                             "rebalance under way gives it to its owner)", tp.partition)
                    continue
                self.taking_over.discard(tp.partition)
                self.consumer.resume(tp)
                self.decide_at_once(ours - self.taking_over)
                log.info("took over decision partition %d: %d events replayed, resumed %.1f s "
                         "after the take-over, %d pending%s", tp.partition, replayed,
                         time.monotonic() - started, len(self.decider.states[tp.partition].pending),
                         f", decided in the topic's order until offset {self.behind[tp.partition]}"
                         if tp.partition in self.behind else "")
        finally:  # also when cancelled by a rebalance
            left = [tp for tp in new if tp.partition in self.taking_over]
            self.taking_over.difference_update(tp.partition for tp in left)
            owned = self.consumer.assignment()
            self.consumer.resume(*[tp for tp in left if tp in owned])

    async def _replay(self, tp: TopicPartition) -> int | None:
        """One partition's state from its history up to its committed offset, where the consumer
        then reads on, decided in the topic's order up to the partition's end now (`behind`):
        what the last owner wrote past that offset (a sweep it made, unread) is not known here
        until it is read, and an event decided at once before it would be decided otherwise by
        an owner replaying the topic; how many events it replayed. None, and nothing rebuilt nor
        sought, if the partition is no longer assigned here once its history is read (aiokafka
        seeks only an assigned partition: the instance stopped on its AssertionError)."""
        while True:
            try:
                ctx = self.views.refresh()
                committed = await self.consumer.committed(tp) or 0
                end = (await self.consumer.end_offsets([tp]))[tp]
                history = await decision_history(self.access, tp, committed, ctx,
                                                 self.broker_time)
                break
            except (KafkaError, NoBrokerTime) as exc:  # the partition waits, paused
                log.warning("rebuilding decision partition %d failed (%s): again in %s s",
                            tp.partition, exc, REBUILD_RETRY)
                await asyncio.sleep(REBUILD_RETRY)
        if tp not in self.consumer.assignment():
            return None
        self.decider.rebuild(tp.partition, history.records, ctx, history.since)
        self.read[tp.partition] = committed
        self.consumer.seek(tp, committed)
        if end > committed:
            self.behind[tp.partition] = end
        return sum(len(record.events) for record in history.records)

    async def stop_rebuilding(self) -> None:
        """Cancel a rebuild still running (its partitions are rebuilt anew if kept)."""
        if self.rebuilding is not None and not self.rebuilding.done():
            self.rebuilding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.rebuilding

    def decide_at_once(self, partitions: set[int]) -> None:
        """Decide events of these partitions at once, but of those not read to their end as of
        their take-over yet (`behind`); a partition new to it gets a new mark."""
        self.at_once = {p: self.at_once.get(p) or secrets.token_bytes(8) for p in partitions
                        if p not in self.behind}

    def _read_up(self, records: list[Any]) -> None:
        """The partitions taken over that these decision records, just read, read to their end
        as of the take-over: decided at once from now on."""
        for record in records:
            if (record.partition in self.behind
                    and record.offset + 1 >= self.behind[record.partition]):
                del self.behind[record.partition]
                self.decide_at_once({*self.at_once, record.partition})
                log.info("decision partition %d is read to its end as of its take-over: decided "
                         "at once from now on", record.partition)

    async def give_up(self, revoked: Iterable[TopicPartition]) -> None:
        """Stop deciding at once for partitions taken away, and sweeping them (their state is
        kept until the assignment, which may give them back), and get their records and a sweep
        on its way written before the next owner takes their end (Platform.behind)."""
        await self.stop_rebuilding()
        given = {tp.partition for tp in revoked if tp.topic == decider.DECISIONS}
        for partition in given:
            self.at_once.pop(partition, None)
        async with self.sweeping:  # a sweep on its way lands first, and none is sent after
            self.owned -= given
        await self.outflow.flush()


def sealed(sends: list[Send], ctx: Context) -> list[Send]:
    """The records for the decisions topic sealed as they go to it (decision_sealing), the
    others as they are."""
    return [ctx.decisions.sealed(s) if s.topic == decider.DECISIONS else s for s in sends]


def opened(record: Any, ctx: Context) -> bytes:
    """A decision record's value as the platform wrote it: opened, sealed at rest (a Send's
    too)."""
    return ctx.decisions.opened(record.value or b"", record.topic, record.partition)


def judged_by_directory(records: list[Any]) -> bool:
    """Whether the directory is to be read to its end before these records are judged: all
    but decision records decided at once (judged as they were decided) are judged by the
    directory as of their broker time, a holder's request at approval, an answer by its
    requester (a provider's, the registry's, a decision record to decide); an owner whose
    view had not read a suspension dated before one made its effects at once, and the next,
    the first killed or frozen before recording them, its view ahead, judged it otherwise
    (a request approved, then refused SUSPENDED; an answer relayed, then relayed to no one);
    read to its end first, every owner judges it alike, at a look-up of the end a poll, whatever
    its view says."""
    return any(r.topic != decider.DECISIONS or _mark(r) is None for r in records)


def _mark(record: Any) -> bytes | None:
    """The mark of a decision record decided at once (its DECIDED header), None if it is one
    to decide."""
    mark: bytes | None = dict(record.headers or ()).get(DECIDED)
    return mark


class History(NamedTuple):
    """A decision partition's records written from `since` on (None: all it ever had), after the
    answers to their requests recorded before (decider.read_back)."""

    since: datetime | None
    records: list[decider.DecisionRecord]


class NoBrokerTime(Exception):
    """A partition's history is gone, and no append time was read yet to count back from."""


async def decision_history(access: KafkaAccess, tp: TopicPartition, end: int, ctx: Context,
                           broker_time: BrokerTime) -> History:
    """A partition's decision records up to `end`, from the first that its state as of the last
    of them can still hold (so a platform down for an hour still times out what was pending
    when it stopped), by the broker's time (the topic's records stamped by it), after the answers
    recorded before it to requests whose Pending it has (decider.read_back: one written after its
    answer landed, just after the history began, would be pending, timed out after its answer was
    relayed); if they are gone, one with no events at the time counted from, as read then."""
    if not end:
        return History(None, [])  # nothing before: nothing decided, nothing forgotten
    replay = AIOKafkaConsumer(**access.reading(), group_id=None, enable_auto_commit=False,
                              auto_offset_reset="earliest", fetch_max_wait_ms=REPLAY_WAIT_MS)
    ends = {tp: end}
    try:  # stopped also if the rebuild is cancelled while it starts (the platform stopping)
        await replay.start()
        replay.assign([tp])
        last = await _last_record(replay, tp, end)
        broker_time.read_late([] if last is None else [last])  # perhaps hours old
        counted = _counted_from(broker_time, last)
        since = ctx.remembered_from(None if last is None else record_time(last), counted)
        await seek_to_times(replay, {tp: _millis(since)}, ends)
        begun = await replay.position(tp)
        history = await _records(replay, ends, ctx)
        if begun and (back := decider.read_back(history, since, ctx)) is not None:
            await seek_to_times(replay, {tp: _millis(back.since)}, {tp: begun})
            history = decider.answers_to(await _records(replay, {tp: begun}, ctx),
                                         back.requests) + history
    finally:
        await stopped(replay)
    return History(since, history or [decider.DecisionRecord(counted, [])])  # gone: read now


async def _records(replay: AIOKafkaConsumer, ends: dict[TopicPartition, int],
                   ctx: Context) -> list[decider.DecisionRecord]:
    """The decision records from the replay's position up to `ends`."""
    return [decider.DecisionRecord(record_time(record), _events(record, ctx))
            async for record in records_up_to(replay, ends)]


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _events(record: Any, ctx: Context) -> list[DecisionEvent]:
    """A decision record's events, but those that cannot be read (NewerVersion for one a newer
    version wrote)."""
    events: list[DecisionEvent] = []
    for event in unpacked(opened(record, ctx)):
        try:
            events.append(decider.decision_event(event))
        except SchemaError:
            continue
    return events


def _counted_from(broker_time: BrokerTime, last: Any | None) -> datetime:
    """The time a history is counted back from: the broker's, as read so far (`last` among it,
    if the broker stamped it); if none is known yet, NoBrokerTime if the history is gone, else
    this platform's own clock. A last record stamped by its writer is said loudly, whichever."""
    if last is not None and last.timestamp_type != LOG_APPEND_TIME:
        log.warning("%s is stamped by its writers' clocks, not the broker's: a take-over's "
                    "history is counted back by them (`renkei broker provision` brings it to "
                    "spec)", decider.DECISIONS)
    now = broker_time.now()
    if now is not None:
        return now
    if last is None:
        raise NoBrokerTime("its history is gone, and the broker's time is not known yet")
    return datetime.now(UTC)


async def _last_record(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> Any | None:
    """The partition's last record before `end` (None: it has none)."""
    consumer.seek(tp, end - 1)
    last = None
    async for record in records_up_to(consumer, {tp: end}):
        last = record
    return last


def _received(record: Any, now: datetime) -> datetime:
    """When the broker received a record: its append time if the broker stamped it, else (its
    topic not brought to spec: its writer's time) the broker's time as read `now`."""
    return appended_at(record) or now


class _TakeOver(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Uncommitted records go to the partition's next owner; what was decided at once is
        written first."""
        await self.platform.give_up(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.platform.take_over(assigned)


Asked = tuple[HolderLogRequest, datetime]  # a request for holders' logs, and its broker time


def relayed(requests: list[Asked], residents: list[Asked],
            directory: Mapping[str, HolderEntry], now: datetime) -> list[Send]:
    """The oversight body's requests and residents' applications, on to the holders, each
    holder judged as of the request's broker time; one that cannot be relayed is dropped (and
    logged), the others go on."""
    return (isolated(requests, _each(partial(oversight.relay, directory=directory, now=now)),
                     _nothing)
            + isolated(residents, _each(partial(applications.relay, directory=directory, now=now)),
                       _nothing))


def _each(relay: Callable[..., list[Send]]) -> Callable[[list[Asked]], list[Send]]:
    return lambda items: [made for request, at in items for made in relay(request, at=at)]


def _asked(records: list[Any], now: datetime) -> list[Asked]:
    """The readable requests for holders' logs of the records, each with its broker time
    (_received)."""
    return [(request, _received(record, now)) for record in records
            for request in decoded([record], HolderLogRequest)]


def ends_ahead(sends: list[Send]) -> bool:
    """Whether an answer relayed to no one is recorded among them (Outcome.ended): what was
    handled is committed at once, before that record is read back and its refusal made, so no
    owner replaying the answer after a crash relays it."""
    return any(isinstance(s.message, Outcome) and s.message.ended is not None for s in sends)


def _nothing(item: object, exc: Exception) -> list[Send]:
    return []


def _incoming(record: Any) -> Incoming:
    return Incoming(record.topic, record.partition, record.offset, record_time(record),
                    record.value)


def decoded(records: list[Any], cls: type[Any], most_bytes: int = MAX_BYTES) -> list[Any]:
    """The records' messages; the unreadable, those with a request id too long to answer
    (`request_names.too_long`: their answers would not fit the codec), and those over `most_bytes`
    (one the decider keeps: with its times stamped, over the codec's limit, outside any
    isolation, the platform would stop on it at every start) are dropped and logged."""
    found = []
    for record in records:
        try:
            message = CODEC.decode(record.value or b"", cls)
        except SchemaError as exc:
            log.warning("an unreadable %s on %s: %s", cls.__name__, record.topic, exc)
            continue
        if len(record.value or b"") > most_bytes:
            log.error("a %s on %s dropped: %d bytes, over the %d it may be", cls.__name__,
                      record.topic, len(record.value or b""), most_bytes)
        elif (why := too_long(message.request_id)) is not None:
            log.warning("a %s on %s dropped: %s", cls.__name__, record.topic, why)
        else:
            found.append(message)
    return found
