"""A consumer-group service loop for the systems around the platform (registry, authority,
holders, audit): read a batch, handle it, send the effects; commit once the broker has them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    ProducerFenced,
)

from broker import partitioner
from broker.clients import KafkaAccess, running, started
from broker.membership import GroupMember
from broker.presence import watched
from renkei.compacted import CompactedView, holder_directory
from renkei.envelope import Directory, Send
from renkei.tasks import cancelled, retrieved, set_or_ended, set_or_failed
from renkei.tether import when_parent_gone

log = logging.getLogger(__name__)
Handler = Callable[[list[Any]], Awaitable[Sequence[Send]]]
Note = Callable[[int], str]  # what a commit notes with an offset it commits: what the records
# handled before it made
Idle = Callable[[datetime], Awaitable[None]]  # told when every record was read (read_to_the_end)
IDLE_SECONDS = 2.0  # how often at most a service with nothing left to read is told so
COMMIT_SECONDS = 0.2
GATHER_BYTES, GATHER_RECORDS = 256 * 1024, 5000
POLL_RECORDS = 500
# ms a transaction may stay open: one a stopped command left open holds up every reader of its
# topics' partitions (read_committed) until the broker aborts it (or the next command fences it)
TRANSACTION_MS = 10_000
STOP_SECONDS = 3.0  # a stop waits this long for the broker (last commit, flush), then goes on
# what a send still held fails with when its producer is closed before the broker took it
CLOSED_UNSENT = "the producer was closed before the broker took it"
# said at a stop a step of which did not end in time: one that waits for the broker; else its
# batch alone, which a slow handler holds as well as a broker away
AWAY_AT_STOP = ("a step of the stop that waits for the broker did not end in time (the broker "
                "away, most likely): closed without it")
CUT_AT_STOP = (f"the batch being handled had not ended {STOP_SECONDS:g} s after the stop (a slow "
               "handler, or one waiting for the broker): given up, the last commit not made "
               "(what was handled since the one before is handled again at the next start)")


def consumer_for(access: KafkaAccess, topics_in: Sequence[str], group: str,
                 instance: str | None = None, gather_ms: int = 0) -> AIOKafkaConsumer:
    """A group member; with `instance` a static one, which a restart rejoins at once, and which
    stops (Fenced) once another instance has joined under the same `instance`. With
    `gather_ms`, the broker holds each fetch up to that long for a fuller batch (for consumers
    that pay per batch, not per record, and are on no one's critical path)."""
    gathering = ({"fetch_min_bytes": GATHER_BYTES, "fetch_max_wait_ms": gather_ms,
                  "max_poll_records": GATHER_RECORDS} if gather_ms
                 else {"max_poll_records": POLL_RECORDS})
    return GroupMember(*topics_in, **access.reading(), group_id=group,
                       group_instance_id=instance,
                       enable_auto_commit=False, auto_offset_reset="earliest",
                       session_timeout_ms=10_000, heartbeat_interval_ms=2_000,
                       **gathering)


def producer_for(access: KafkaAccess, linger_ms: int = 2,
                 transactional_id: str | None = None) -> AIOKafkaProducer:
    """Idempotent, all replicas acknowledging; a record waits up to `linger_ms` for others to
    share its produce request. With `transactional_id`, its records go in transactions, and
    its start fences off every producer of that id started before: their open transaction
    aborted, their every write after refused (ProducerFenced); one its process left open is
    aborted by the broker after TRANSACTION_MS."""
    return AIOKafkaProducer(**access.aiokafka(), acks="all", enable_idempotence=True,
                            linger_ms=linger_ms, partitioner=partitioner.by_key,
                            transactional_id=transactional_id,
                            transaction_timeout_ms=TRANSACTION_MS)


@contextlib.asynccontextmanager
async def fencing(access: KafkaAccess, transactional_id: str
                  ) -> AsyncIterator[AIOKafkaProducer]:
    """The producer of `transactional_id` (producer_for) started, fencing off every one of that
    id started before, for one task, and stopped after it; fenced off in turn, ProducerFenced
    (its failure taken as told: _told). A command SIGTERM stops meanwhile stops as Ctrl-C stops
    it (terminated_as_interrupted): its open transaction aborted at once."""
    producer = producer_for(access, transactional_id=transactional_id)
    with terminated_as_interrupted():
        async with running(producer, access):
            try:
                yield producer
            except ProducerFenced:
                _told(producer)
                raise


@contextlib.contextmanager
def terminated_as_interrupted() -> Iterator[None]:
    """While it lasts, SIGTERM (a service manager's stop) ends the task it was entered in as
    Ctrl-C ends a command's (asyncio.run): cancelled where it is, a transaction it has open
    aborted (aiokafka's transaction context), its producer stopped, then KeyboardInterrupt
    (renkei.cli: "Aborted!"). Left at SIGTERM's default, the process ended at once and its
    transaction held every read_committed reader of its partitions until the broker aborted it,
    TRANSACTION_MS and more later; SIGKILL still does (it cannot be caught). Entered on a thread
    other than the main one (a town set up on a worker thread), where no signal can be handled,
    SIGTERM stays as it is: the main thread's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    terminated = False

    def terminate(_: int, __: object) -> None:
        nonlocal terminated
        if not terminated:
            terminated = True
            loop.call_soon_threadsafe(task.cancel)

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGTERM, before)


def _told(producer: AIOKafkaProducer) -> None:
    """The failure of a producer fenced off, or closed with what it held failed (close_producer),
    which aiokafka (0.14) leaves on futures no one awaits, its transaction's end and each failed
    batch's drain (one sent once, put back to be sent again), taken as told (else asyncio logs
    each, a traceback, as never retrieved)."""
    accumulator = producer._message_accumulator
    for future in [producer._txn_manager.wait_for_transaction_end(),
                   *(batch._drain_waiter for batches in accumulator._batches.values()
                     for batch in batches)]:
        if future is not None and future.done() and not future.cancelled():
            future.exception()


async def deliver(producer: AIOKafkaProducer, effects: Sequence[Send]) -> None:
    """Send every effect and wait until the broker has them all."""
    await settled(await handed(producer, effects))


async def settled(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Wait for each in turn; the first failure is raised, and the failures of those after it
    are taken as told by it (as asyncio.gather does: none is logged as never retrieved).
    (asyncio.gather costs 1.4 µs a future even when all have settled, as most have here; this
    costs 0.03.)"""
    waiting = iter(futures)
    try:
        for future in waiting:
            await future
    except BaseException:
        for later in waiting:
            later.add_done_callback(retrieved)
        raise


async def handed(producer: AIOKafkaProducer,
                 effects: Sequence[Send]) -> list[asyncio.Future[Any]]:
    """The effects handed to the producer; what settles when the broker has each."""
    return [await producer.send(e.topic, e.value, key=e.key.encode() if e.key else None,
                                partition=e.partition, headers=list(e.headers) or None,
                                timestamp_ms=e.timestamp_ms)
            for e in effects]


class Outflow:
    """Effects go out as soon as they are known; offsets are committed at most every
    `interval` seconds, only once the broker has acknowledged every effect sent before, and
    only for the partitions whose records were handled since the last commit: at least once,
    without waiting for a round trip per batch, and without committing the same offsets over
    again for partitions (or a whole service) with nothing new. With a `note`, each commit
    carries what it tells then, as the offsets' metadata."""

    def __init__(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer,
                 interval: float = COMMIT_SECONDS, note: Note | None = None) -> None:
        self.consumer = consumer
        self.producer = producer
        self.interval = interval
        self.note = note
        self._unacknowledged: list[asyncio.Future[Any]] = []
        self._committed_at = time.monotonic()
        self._handled: set[TopicPartition] = set()
        self._records: asyncio.Future[Any] | None = None

    async def send(self, handled: Iterable[TopicPartition], effects: Sequence[Send],
                   records: Sequence[Send] = ()) -> None:
        """The effects of the records just handled from `handled` (no effects is fine); then
        `records` of what was decided, each written only once the broker has these effects
        and every record sent before it (a crash leaves no record of an effect not made)."""
        self._handled.update(handled)
        sent = await handed(self.producer, effects)
        self._unacknowledged += sent
        if records:  # its failure is raised by whoever awaits it (commit, flush, the next
            # record); one a stop without a last commit leaves (its producer closing, it fails
            # unwritten, or is written after its effects: none committed, their records handled
            # again at the next start) is given up, not logged as never retrieved
            self._records = asyncio.ensure_future(self._record(sent, self._records, records))
            self._records.add_done_callback(retrieved)
            self._unacknowledged.append(self._records)

    async def _record(self, effects: list[asyncio.Future[Any]],
                      before: asyncio.Future[Any] | None, records: Sequence[Send]) -> None:
        await settled([*([before] if before else []), *effects])
        await deliver(self.producer, records)

    async def flush(self) -> None:
        """Wait until the broker has every effect and record sent so far."""
        await settled(list(self._unacknowledged))

    async def commit(self, now: bool = False, stop: asyncio.Event | None = None) -> None:
        """Commit what was handled, once its every effect is acknowledged (at most every
        `interval` seconds, unless `now`). With `stop`, the wait for the acknowledgements is
        given up should it be set first, and nothing committed: a broker away would keep the
        service from stopping (its processes killed GRACE_SECONDS later); the effects are still
        waited for by the last commit (last_commit), the records handled again if it cannot. A
        commit's request, once made, is not given up by this wait; a batch cut short at a stop
        (stopped_within) gives it up, and aiokafka's shield lets it end, its failure taken as
        told. A partition no longer assigned here once its position is known
        (position_if_assigned) is not committed by this member: its next owner handles its
        records again."""
        if not self._handled or (
                not now and time.monotonic() - self._committed_at < self.interval):
            return
        futures = list(self._unacknowledged)
        if waiting := [f for f in futures if not f.done()]:
            acknowledged = _acknowledged(waiting)
            if stop is None:
                await acknowledged
            elif not await unless_stopped(stop, acknowledged):
                return
        await settled(futures)  # a failed send raises: nothing is committed
        del self._unacknowledged[:len(futures)]
        handled = set(self._handled)  # forgotten once committed, not if the commit is cut short
        positions = {tp: at for tp in handled
                     if (at := await position_if_assigned(self.consumer, tp)) is not None}
        owned = self.consumer.assignment()  # as of the commit: each position may have waited
        offsets = {tp: (at, "" if self.note is None else self.note(at))
                   for tp, at in positions.items() if tp in owned}
        if offsets:  # none if a rebalance took every partition handled since the last commit
            await commit(self.consumer, offsets)
        self._handled -= handled
        self._committed_at = time.monotonic()


async def position_if_assigned(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """`tp`'s position, or None if it is not assigned here, or no longer once it is known:
    aiokafka waits for a position it does not know yet (a partition just assigned, its committed
    offset being fetched; one reset), and meanwhile a topic may join a pattern subscription (a new
    subscription, nothing assigned until the rebalance) or a rebalance take the partition; it
    then raises IllegalStateError, which stopped the service. A partition no longer assigned is
    not this member's to commit, nor to tell read: its next owner reads it on from the offset
    last committed (at least once)."""
    try:
        at: int = await consumer.position(tp)
    except IllegalStateError:
        return None
    return at


async def _acknowledged(waiting: list[asyncio.Future[Any]]) -> None:
    """Wait until each of `waiting` is acknowledged or one fails. Given up (cancelled: a stop, a
    last commit out of time), it leaves them be, the broker may still take them; their failure
    (the producer closed without them) is taken as told, not logged as never retrieved."""
    try:
        await asyncio.wait(waiting, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for future in waiting:
            future.add_done_callback(retrieved)
        raise


async def serving(access: KafkaAccess, topics_in: Sequence[str], group: str, handle: Handler,
                  stop: asyncio.Event, instance: str | None = None,
                  producer: AIOKafkaProducer | None = None,
                  following: Sequence[CompactedView[Any]] = ()) -> asyncio.Task[bool]:
    """`serve` started as a task, once it is ready (its error raised if it fails to start)."""
    ready = asyncio.Event()
    task = asyncio.create_task(serve(access, topics_in, group, handle, stop, ready, instance,
                                     producer=producer, following=following))
    try:
        await set_or_failed(ready, task)  # start-up failed: its error
    except asyncio.CancelledError:  # given up while it waits for the broker: so is the task,
        await cancelled(task)  # ended before whoever gave it up goes on (closes the producer)
        raise
    return task


async def serve(access: KafkaAccess, topics_in: Sequence[str], group: str, handle: Handler,
                stop: asyncio.Event, ready: asyncio.Event | None = None,
                instance: str | None = None, gather_ms: int = 0,
                producer: AIOKafkaProducer | None = None,
                following: Sequence[CompactedView[Any]] = (), note: Note | None = None,
                idle: Idle | None = None) -> bool:
    """Run until `stop` is set; offsets are committed only after the effects are delivered,
    with `note`'s text when given. With `idle`, when a poll finds nothing and no record is left
    to read (at most every IDLE_SECONDS), it is told as of when (read_to_the_end).
    Effects go through `producer` when given (started and stopped by its owner, who sends its
    own records through it too: one produce stream, fewer requests to the broker). Stops with
    NotFollowing if a view the handler reads from (`following`) stops being kept up to date.
    Whether each step of its stop ended in time (Stopping.in_time): once one did not, its
    owner's own steps after it need not wait for the broker again."""
    consumer = consumer_for(access, topics_in, group, instance=instance, gather_ms=gather_ms)
    sender = producer or producer_for(access)
    outflow = Outflow(consumer, sender, note=note)
    stopping = Stopping()
    idled = time.monotonic() - IDLE_SECONDS

    async def start() -> None:
        await started(consumer, access)
        if producer is None:
            await started(sender, access)

    async def served() -> None:
        nonlocal idled
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=100)
            records = [r for batch in polled.values() for r in batch]
            if records:
                await outflow.send(polled, await handle(records))
            elif idle is not None and time.monotonic() - idled >= IDLE_SECONDS and (
                    read := await read_to_the_end(consumer)) is not None:
                idled = time.monotonic()
                await idle(read)
            await outflow.commit(stop=stop)
            for view in following:
                view.check()

    try:
        if not await unless_stopped(stop, start()):
            return False
        if ready is not None:
            ready.set()
        async with watched(access.bootstrap, group):
            stopping.batch_ended = await stopped_within(stop, served())
        await stopping.last_commit(outflow)
    finally:
        if producer is None:
            await stopping.producer_closed(sender)
        stopping.waited(await close_consumer(consumer))
        stopping.said()
    return stopping.in_time


class Stopping:
    """What a service's stop found: whether its batch ended in time (stopped_within), and whether
    each of its steps that wait for the broker did (the last commit, a client's close); once one
    did not, the broker is not waited for again. Said in one line as it is known (said): a batch
    given up was slow, or waited for the broker; a step that waits for the broker alone and did
    not end in time found it away, most likely."""

    def __init__(self) -> None:
        self.batch_ended = True
        self.answered = True  # in time, by each step that waited for the broker

    @property
    def in_time(self) -> bool:
        """Whether each step so far ended in time (the broker may be waited for)."""
        return self.batch_ended and self.answered

    def waited(self, answered: bool) -> None:
        """A step that waited for the broker ended in time (`answered`), or did not."""
        self.answered = self.answered and answered

    async def last_commit(self, outflow: Outflow) -> None:
        """last_commit, unless a step before did not end in time (its batch given up: what it
        handled is handled again)."""
        if self.in_time:
            self.waited(await last_commit(outflow))

    async def producer_closed(self, producer: AIOKafkaProducer) -> None:
        """close_producer, at once if a step before did not end in time."""
        if self.in_time:
            self.waited(await close_producer(producer))
        else:
            await close_producer(producer, away=True)

    def said(self) -> None:
        """AWAY_AT_STOP if a step that waited for the broker did not end in time; else
        CUT_AT_STOP if its batch did not; else nothing."""
        if not self.answered:
            log.warning(AWAY_AT_STOP)
        elif not self.batch_ended:
            log.warning(CUT_AT_STOP)


async def read_to_the_end(consumer: AIOKafkaConsumer) -> datetime | None:
    """The time (this process's wall clock) as of which the consumer had read every record of
    its partitions: the oldest of the fetches that last told each's end, its position there; None
    if one has records left to read, or no fetch told its end yet (or it has no partition), or
    its partitions changed while it asked (position_if_assigned)."""
    fetched: list[int] = []
    assigned = consumer.assignment()
    for tp in assigned:
        if consumer.assignment() != assigned:  # changed while a position was awaited: asked
            return None  # again at the next poll (aiokafka asserts the partition assigned)
        end, at = consumer.highwater(tp), consumer.last_poll_timestamp(tp)
        if end is None or at is None or (
                position := await position_if_assigned(consumer, tp)) is None or position < end:
            return None
        fetched.append(at)
    return datetime.fromtimestamp(min(fetched) / 1000, UTC) if fetched else None


async def stopped_within(stop: asyncio.Event, serving: Awaitable[None],
                         within: float = STOP_SECONDS) -> bool:
    """`serving` awaited (its error raised); once `stop` is set, it has `within` seconds to end
    of itself (its batch done), then it is cancelled where it waits: a step that waits for a
    broker gone away (an effect's delivery, an alert's, a commit, a position) held the stop until
    the broker came back, the service killed meanwhile. What was handled and not committed is
    handled again at the next start (effects before offsets). Whether it ended of itself."""
    task = asyncio.ensure_future(serving)
    try:
        await set_or_ended(stop, task)
        await asyncio.wait({task}, timeout=within)
    finally:
        if not task.done():
            await cancelled(task)
    if task.cancelled():
        log.info("the service's batch was given up at shutdown, %g s after it was told to stop "
                 "(a slow handler, or one waiting for the broker): what it handled is handled "
                 "again", within)
        return False
    task.result()
    return True


async def last_commit(outflow: Outflow, within: float = STOP_SECONDS) -> bool:
    """At a stop, commit what was handled once the broker has every effect of it; if the
    broker cannot be reached within `within` seconds, commit nothing (effects before offsets:
    what was handled since the last commit is handled again at the next start). Whether the
    broker was reached."""
    try:
        await asyncio.wait_for(outflow.commit(now=True), within)
    except (TimeoutError, KafkaError) as exc:
        log.info("offsets not committed at shutdown (%s): they will be handled again",
                 type(exc).__name__)
        return False
    return True


async def close_producer(producer: AIOKafkaProducer, within: float = STOP_SECONDS,
                         away: bool = False) -> bool:
    """Stop `producer`: what it holds goes if the broker takes it within `within` seconds (its
    stop() would wait for a broker away for good); else, or at once if the broker is `away`
    (it did not take a delivery of the stop just now), each send still held fails
    (KafkaConnectionError, to whoever awaits it) and the producer is closed without them.
    Whether everything it held went."""
    stopping = asyncio.ensure_future(producer.stop())
    if not away and (await asyncio.wait({stopping}, timeout=within))[0]:
        return _ended_cleanly(stopping)
    accumulator = producer._message_accumulator
    accumulator._pending_batches = _TakenOutOnce(accumulator._pending_batches)
    accumulator.fail_all(  # aiokafka: no other way
        KafkaConnectionError(CLOSED_UNSENT))
    _told(producer)
    sender = producer._sender  # closed, its sender task ends in an error (a produce request
    if sender is not None and sender.sender_task is not None:  # cut short) whose callback
        sender.sender_task.remove_done_callback(sender._fail_all)  # raises (aiokafka 0.14)
    if (await asyncio.wait({stopping}, timeout=within))[0]:  # its flush is over: it closes
        _ended_cleanly(stopping)
        return False
    stopping.cancel()  # a produce request still waits for the broker: close its connections
    await asyncio.wait({stopping}, timeout=within)
    await _quietly(producer.client.close(), within)
    return False


class _TakenOutOnce(set[Any]):
    """aiokafka 0.14's batches in flight, where a batch sent, its request failed (the broker
    gone) and put back to be sent again (reenqueue: taken out) is taken out again as fail_all
    fails it, by the callback its first sending left: a KeyError's traceback on the event loop
    (a holder's stop, under load); and one failed while it waits to be put back, by reenqueue.
    Here a batch not in it is taken out as it is: it is not."""

    def remove(self, batch: Any) -> None:
        self.discard(batch)


async def close_consumer(consumer: AIOKafkaConsumer, within: float = STOP_SECONDS) -> bool:
    """Stop `consumer` (it leaves its group). With the broker away aiokafka's stop() raises the
    CancelledError of a fetch it cancelled while that fetch waited to retry, before closing
    its connections; or waits for the broker: the consumer is closed anyway. Whether it left
    as usual."""
    stopping = asyncio.ensure_future(consumer.stop())
    if (await asyncio.wait({stopping}, timeout=within))[0] and _ended_cleanly(stopping):
        return True
    stopping.cancel()
    await asyncio.wait({stopping}, timeout=within)
    fetcher = getattr(consumer, "_fetcher", None)
    fetches = [t for t in getattr(fetcher, "_pending_tasks", ()) if not t.done()]
    for fetch in fetches:
        fetch.cancel()
    if fetches:
        await asyncio.wait(fetches, timeout=within)
    await _quietly(consumer._client.close(), within)  # what stop() skipped
    return False


def _ended_cleanly(task: asyncio.Future[Any]) -> bool:
    """Whether a stop ended without an error (one it ended with is logged)."""
    if task.cancelled():
        return False
    if (error := task.exception()) is not None:
        log.info("a Kafka client stopped with %s: %s", type(error).__name__, error)
        return False
    return True


async def _quietly(closing: Awaitable[Any], within: float) -> None:
    """Wait up to `within` seconds for `closing`; an error it ends with is only logged."""
    task = asyncio.ensure_future(closing)
    if (await asyncio.wait({task}, timeout=within))[0]:
        _ended_cleanly(task)
    else:
        task.cancel()


async def unless_stopped(stop: asyncio.Event, starting: Awaitable[object]) -> bool:
    """Wait for `starting` (which waits while the broker is away) unless `stop` is set first,
    then give it up: a service told to stop while it starts stops. Whether it finished."""
    task = asyncio.ensure_future(starting)
    try:
        await set_or_failed(stop, task)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    task.result()  # its error, if it failed
    return True


async def commit(consumer: AIOKafkaConsumer,
                 offsets: dict[TopicPartition, tuple[int, str]]) -> None:
    """Commit what was handled; if a rebalance took the partitions, their next owner (or this
    consumer, rejoined) handles them again, and consumers drop what they already had."""
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError) as exc:
        log.info("offsets not committed (%s): they will be handled again", type(exc).__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, or once the run that started the service has gone:
    the service finishes its batch and stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    when_parent_gone(stop.set)
    return stop


async def said_when_up(running: Callable[[asyncio.Event], Awaitable[None]], said: str) -> None:
    """`running(ready)` awaited, `said` on stdout once it sets `ready`: an operator sees that
    the service is up, and what it serves (not while it waits for the broker, nor if it fails
    to start)."""
    ready = asyncio.Event()
    task = asyncio.ensure_future(running(ready))
    try:
        await set_or_failed(ready, task)
    except asyncio.CancelledError:
        await cancelled(task)
        raise
    if ready.is_set():
        click.echo(said)
    await task


async def run_service(principal: str, topics_in: Sequence[str], group: str,
                      handler: Callable[[Directory], Callable[[list[Any]], Sequence[Send]]],
                      ready: asyncio.Event | None = None) -> None:
    """Run a service that needs the holder directory, until signalled; `ready` set once it
    serves."""
    access = KafkaAccess.of(principal)
    stop = stop_on_signals()
    directory = holder_directory(access)
    handle = handler(lambda holder: directory.entries.get(holder.encode()))

    async def handle_async(records: list[Any]) -> Sequence[Send]:
        return handle(records)

    try:
        await directory.start()
        if await unless_stopped(stop, directory.loaded()):
            await serve(access, topics_in, group, handle_async, stop, ready, instance=group,
                        following=[directory])
    finally:
        await directory.stop()
