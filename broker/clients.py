"""Client settings for a principal: the same SASL/SCRAM identity for aiokafka and admin."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnknownTopicOrPartitionError,
)

from broker import (
    bootstrap_connection,
    closed_transport,
    cluster,
    credentials,
    offset_fetch,
    repeats,
)
from broker.credentials import Credentials

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer, TopicPartition

MECHANISM = "SCRAM-SHA-512"
PROTOCOL = "SASL_PLAINTEXT"
START_AGAIN = 2.0  # seconds between attempts to reach the broker when a client starts
# seconds a starting consumer waits for a topic the broker does not list (one just restarted
# lists its topics once it has loaded them), aiokafka's own wait in its start (its request
# timeout) included; a try that ends past it, the topic is taken for never provisioned
TOPIC_WAIT = 60.0
# ms the broker holds a fetch for a records_since read with nothing new (aiokafka's 500 ms
# default: its fetch sent before the seek makes each read half a second longer)
SCAN_WAIT_MS = 20
log = logging.getLogger(__name__)
offset_fetch.install()  # every process with a Kafka client imports this module
closed_transport.install()
bootstrap_connection.install()
repeats.install()


@dataclass(frozen=True)
class KafkaAccess:
    """Where the broker is and who connects to it."""

    bootstrap: str
    credentials: Credentials

    @classmethod
    def of(cls, principal: str) -> KafkaAccess:
        """Access for a principal whose credentials are in the state folder."""
        return cls(cluster.bootstrap(), credentials.load(principal))

    @property
    def principal(self) -> str:
        return self.credentials.username

    def aiokafka(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": PROTOCOL,
            "sasl_mechanism": MECHANISM,
            "sasl_plain_username": self.credentials.username,
            "sasl_plain_password": self.credentials.password,
        }

    def reading(self) -> dict[str, Any]:
        """A consumer's settings: the records of committed transactions only (an operator
        action on the holder directory is one transaction, its entries and its audit record
        both: one the broker fenced off is aborted, and read by no one), and a transaction open
        read once it ends (at most service_loop.TRANSACTION_MS after its
        command stopped)."""
        return {**self.aiokafka(), "isolation_level": "read_committed"}

    def confluent(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": PROTOCOL,
            "sasl.mechanism": MECHANISM,
            "sasl.username": self.credentials.username,
            "sasl.password": self.credentials.password,
        }


class BrokerRefused(RuntimeError):
    """The broker answers but will not let the principal in: waiting for it will not help."""


class BrokerAway(RuntimeError):
    """No broker answers: a command says so and ends (a service waits for it instead)."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(f"cannot reach the broker at {bootstrap}: is it running? "
                         "(`renkei broker status` says; `renkei broker up` starts it)")


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    """The (host, port) of each of `bootstrap`'s host:port,…"""
    return [(host.strip("[]"), int(port))
            for host, _, port in (server.rpartition(":") for server in bootstrap.split(","))]


def reachable(bootstrap: str, within: float = 2.0) -> None:
    """Raise BrokerAway at once unless one of the `bootstrap` addresses takes a connection
    (a client of a broker that is down would retry until its timeout, 30 s or more)."""
    for address in _addresses(bootstrap):
        try:
            with socket.create_connection(address, timeout=within):
                return
        except OSError:
            continue
    raise BrokerAway(bootstrap)


class NotProvisioned(LookupError):
    """A topic a command needs is not on the broker: it was never provisioned."""

    def __init__(self, missing: Sequence[str], bootstrap: str) -> None:
        super().__init__(f"no topic {', '.join(missing)} on the broker at {bootstrap}: "
                         "run `renkei broker provision`")
        self.missing = missing
        self.bootstrap = bootstrap


async def provisioned(access: KafkaAccess, *needed: str) -> None:
    """NotProvisioned at once if a topic of `needed` is not on the broker, where a client of it
    would wait for it; BrokerAway at once if no broker takes a connection."""
    from aiokafka.client import AIOKafkaClient

    await asyncio.to_thread(reachable, access.bootstrap)
    client = AIOKafkaClient(**access.aiokafka())
    try:
        await client.bootstrap()
        there = (await client.fetch_all_metadata()).topics()
    finally:
        await client.close()
    if missing := sorted(set(needed) - there):
        raise NotProvisioned(missing, access.bootstrap)


class Startable(Protocol):
    async def start(self) -> None: ...


class Stoppable(Startable, Protocol):
    async def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)
T = TypeVar("T")


@asynccontextmanager
async def running(client: S, access: KafkaAccess) -> AsyncIterator[S]:
    """A client of `access` started for one task and stopped after it, also when it could not
    start (one left unstopped is reported as unclosed when the command ends). BrokerAway at
    once if no broker takes a connection (before the client logs that it could not connect)."""
    try:
        await asyncio.to_thread(reachable, access.bootstrap)
        await client.start()
        yield client
    finally:
        await stopped(client)


async def stopped(client: Stoppable) -> None:
    """Stop `client`. With the broker gone meanwhile, aiokafka's stop() raises the
    CancelledError of a fetch it cancelled while that fetch waited to retry: taken as the stop
    it is (logged), not as this task cancelled, so the error that ended the task is the one
    said (the broker away), not a traceback of CancelledError; this task cancelled, it is."""
    stopping = asyncio.ensure_future(client.stop())
    try:
        await asyncio.wait({stopping})
    except asyncio.CancelledError:
        stopping.cancel()
        raise
    if stopping.cancelled():
        log.info("a Kafka client's stop was cut short (the broker away): closed without it")
        await _client_closed(client)
    elif (error := stopping.exception()) is not None:
        raise error


async def _client_closed(client: Stoppable) -> None:
    """Close the connections and tasks of a consumer whose stop was cut short: aiokafka's
    stop() closes its client after its fetcher, and the fetcher's close raised."""
    from aiokafka import AIOKafkaConsumer

    if isinstance(client, AIOKafkaConsumer):
        await client._client.close()


async def started(client: Stoppable, access: KafkaAccess) -> None:
    """Start an aiokafka client of `access`; while the broker cannot be reached (aiokafka tries
    each bootstrap server once, then gives up), say so once and try again every START_AGAIN s.
    Raises BrokerRefused if the broker is there but refuses the principal's log-in. A client
    that does not start (refused, failed, or its start cancelled) is stopped: left so, its
    connections stay open until the collector finds them ("Unclosed AIOKafkaConnection")."""
    try:
        await _starting(client, access)
    except BaseException:
        await stopped(client)
        raise


async def _starting(client: Startable, access: KafkaAccess) -> None:
    began = time.monotonic()
    said: set[str] = set()  # the waits said: each once
    unlisted: float | None = None  # since when the broker has not listed a topic of the client
    while True:
        tried = time.monotonic()
        try:
            await client.start()
        except KafkaConnectionError as exc:
            await _not_refused(access)  # aiokafka's error does not tell the two apart
            why: KafkaConnectionError | NotProvisioned | None = exc
        except UnknownTopicOrPartitionError as exc:  # aiokafka gave up waiting for a topic
            unlisted = tried if unlisted is None else unlisted
            why = await _unlisted(client, access)
            if not isinstance(why, KafkaConnectionError):  # the broker there, its topics listed
                if time.monotonic() - unlisted >= TOPIC_WAIT:  # or not: no longer waited for
                    raise (why or exc) from None
                if why is None:  # the topics are there now
                    continue
        else:
            if said:
                log.warning("started at the broker at %s after %.0f s of the waits said",
                            access.bootstrap, time.monotonic() - began)
            return
        if isinstance(why, NotProvisioned):
            _said_once(said, "no topic %s on the broker at %s yet: waiting for it (a broker just "
                       "restarted lists its topics once it has loaded them), giving up once it "
                       "has not for %.0f s", ", ".join(why.missing), why.bootstrap, TOPIC_WAIT)
        else:
            unlisted = None
            _said_once(said, "cannot reach the broker at %s (%s): trying again every %.0f s",
                       access.bootstrap, why, START_AGAIN)
        await asyncio.sleep(START_AGAIN)


async def _not_refused(access: KafkaAccess) -> None:
    """BrokerRefused if the broker is there but refuses the principal's log-in."""
    answer = await _answer(access)
    if isinstance(answer, KafkaError):
        raise BrokerRefused(
            f"the broker at {access.bootstrap} refused principal {access.principal!r} "
            f"({answer}): the broker has another password for it, or none "
            "(`renkei broker provision` gives it the state folder's)") from None


def _said_once(said: set[str], message: str, *args: object) -> None:
    """Log a wait's warning unless it was said already (in `said`)."""
    if message not in said:
        said.add(message)
        log.warning(message, *args)


async def _unlisted(client: Startable, access: KafkaAccess
                    ) -> NotProvisioned | KafkaConnectionError | None:
    """Why a consumer's start did not find a topic of its: one the broker does not list
    (NotProvisioned), or no broker answering; None if the broker lists them all now."""
    from aiokafka import AIOKafkaConsumer

    needed = sorted(client.subscription()) if isinstance(client, AIOKafkaConsumer) else []
    try:
        await provisioned(access, *needed)
    except NotProvisioned as exc:
        return exc
    except BrokerAway:
        return KafkaConnectionError("no broker took a connection")
    except KafkaConnectionError as exc:
        return exc
    return None


LOGINS_AT_ONCE = 32  # log-ins `asked` has in flight at once


class NoAnswer(ConnectionError):
    """No broker of a bootstrap answered a log-in (or one failed it other than by refusing it):
    a log-in's Answer, returned, not raised."""


Answer: TypeAlias = KafkaError | NoAnswer | None  # a log-in refused, not answered, or let in (None)


@dataclass(frozen=True)
class LogIns:
    """The principals no broker asked let log in: those one refused, and those none answered for;
    and those some let log in, not every one (a broker behind the controller)."""

    refused: list[str]
    unanswered: list[str]
    behind: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, principals: Sequence[str], answers: Sequence[Answer]) -> LogIns:
        """Each of `principals` (named once for each broker it was asked of) sorted by its
        answers (those every broker asked let in named nowhere)."""
        said: dict[str, list[Answer]] = {}
        for principal, why in zip(principals, answers, strict=True):
            said.setdefault(principal, []).append(why)
        let_in = {p: whys.count(None) for p, whys in said.items()}
        nowhere = [p for p, brokers in let_in.items() if not brokers]
        return cls([p for p in nowhere if any(isinstance(w, KafkaError) for w in said[p])],
                   [p for p in nowhere if all(isinstance(w, NoAnswer) for w in said[p])],
                   [p for p, brokers in let_in.items() if 0 < brokers < len(said[p])])


def asked(accesses: Sequence[KafkaAccess]) -> LogIns:
    """Which principals of `accesses` no broker lets log in (refused, or not answered for), and
    which some do, not every one, asked LOGINS_AT_ONCE at a time in an event loop of their own
    (callers may be in one)."""
    return in_own_loop(_asked(accesses))


async def _asked(accesses: Sequence[KafkaAccess]) -> LogIns:
    answers = await logins_at_once(partial(_answer, access) for access in accesses)
    return LogIns.of([a.principal for a in accesses], answers)


def in_own_loop(work: Coroutine[Any, Any, T]) -> T:
    """What `work` returns, run in an event loop of its own on a thread of its own: callers may
    be in one."""
    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, work).result()


async def logins_at_once(logins: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """What each of `logins` returns, in order, LOGINS_AT_ONCE of them called and awaited at a
    time."""
    at_once = asyncio.Semaphore(LOGINS_AT_ONCE)

    async def gated(login: Callable[[], Awaitable[T]]) -> T:
        async with at_once:
            return await login()

    return await asyncio.gather(*map(gated, logins))


async def _answer(access: KafkaAccess) -> Answer:
    """How the first broker of `access` that answers its log-in does: why it refused it (None: it
    let it in); NoAnswer if none answers."""
    for host, port in _addresses(access.bootstrap):
        try:
            return await login_refusal(host, port, access)
        except (OSError, KafkaError):  # not answering (a timeout is an OSError)
            continue
    return NoAnswer(f"no broker at {access.bootstrap} answered {access.principal!r}'s log-in")


async def login_refusal(host: str, port: int, access: KafkaAccess) -> KafkaError | None:
    """Why the broker at host:port refused `access`'s principal its log-in; None if it let it
    log in. Raises as aiokafka does if the broker does not answer."""
    settings = access.aiokafka()
    del settings["bootstrap_servers"]
    try:
        connection = await create_conn(host, port, request_timeout_ms=10_000, **settings)
    except (SaslAuthenticationFailed, AuthenticationFailedError) as exc:
        return exc
    connection.close()
    return None


async def at_end(consumer: Any) -> None:
    """Wait until a started group-less consumer reads from the end of every partition."""
    partitions = consumer.assignment()
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)


async def caught_up(consumer: Any, ends: dict[Any, int]) -> bool:
    """Has the consumer read every partition up to the given end offsets?"""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


async def _offsets_at(consumer: Any, times: dict[Any, int], ends: dict[Any, int]
                      ) -> dict[Any, int]:
    """Each partition's offset of its first record at or after its time (ms), or else its end."""
    starts = await consumer.offsets_for_times(times)
    return {tp: end if starts.get(tp) is None else min(starts[tp].offset, end)
            for tp, end in ends.items()}


async def committed_offsets(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]
                            ) -> dict[TopicPartition, int | None]:
    """The consumer's group's committed offset on each partition (None: none committed), asked
    all at once."""
    tps = sorted(partitions)
    return dict(zip(tps, await asyncio.gather(*(consumer.committed(tp) for tp in tps)),
                    strict=True))


async def seek_to_times(consumer: Any, times: dict[Any, int], ends: dict[Any, int]) -> None:
    """Each partition to its first record at or after its time (ms), or else to its end."""
    for tp, offset in (await _offsets_at(consumer, times, ends)).items():
        consumer.seek(tp, offset)


async def batches_up_to(consumer: Any, ends: dict[Any, int],
                        timeout_ms: int = 200) -> AsyncIterator[list[Any]]:
    """The records before each partition's end offset, a poll at a time, until the consumer
    has read up to all."""
    while not await caught_up(consumer, ends):
        polled = await consumer.getmany(timeout_ms=timeout_ms)
        records = [r for tp, rs in polled.items() for r in rs if r.offset < ends[tp]]
        if records:
            yield records


async def records_up_to(consumer: Any, ends: dict[Any, int],
                        timeout_ms: int = 200) -> AsyncIterator[Any]:
    """`batches_up_to`, a record at a time."""
    async for batch in batches_up_to(consumer, ends, timeout_ms):
        for record in batch:
            yield record


class PastEnd(LookupError):
    """An offset to read a topic from that the topic has not reached."""


async def records_since(access: KafkaAccess, names: Sequence[str], since_ms: int,
                        batch: int = 5000) -> AsyncIterator[Any]:
    """The records of the topics from the first at or after `since_ms` (their time, in ms) to
    their end as it was at the call, every partition's, without a group."""
    async for record in records_between(access, names, [(since_ms, None)], batch):
        yield record


async def records_between(access: KafkaAccess, names: Sequence[str],
                          spans: Sequence[tuple[int, int | None]],
                          batch: int = 5000) -> AsyncGenerator[Any, None]:
    """The records of the topics within each span (from, until: their time, in ms), every
    partition's, without a group: from the first at or after `from` to the last before the
    first at or after `until` (None: their end as it was at the call), a span after another."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*names, **access.reading(), group_id=None,
                                enable_auto_commit=False, max_poll_records=batch,
                                fetch_max_wait_ms=SCAN_WAIT_MS)
    async with running(consumer, access):
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        for since_ms, until_ms in spans:
            upto = ends if until_ms is None else await _offsets_at(
                consumer, {tp: until_ms for tp in partitions}, ends)
            await seek_to_times(consumer, {tp: since_ms for tp in partitions}, upto)
            async for record in records_up_to(consumer, upto, timeout_ms=500):
                yield record


async def read_topic(access: KafkaAccess, topic: str, start: int = 0) -> list[Any]:
    """Every record of a topic now, from its start (or offset `start`) to its current end,
    without a group; PastEnd if the topic ends before `start`."""
    return [record async for batch in topic_batches(access, topic, start=start)
            for record in batch]


async def offsets(access: KafkaAccess, topic: str) -> tuple[int, int]:
    """The start and end offsets of a topic's one partition now, as the broker says: its first
    record's (past 0 once the broker deleted records before it) and where its next record goes."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, **access.reading(), group_id=None,
                                enable_auto_commit=False)
    async with running(consumer, access):
        partitions = list(consumer.assignment())
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    return sum(starts.values()), sum(ends.values())


async def readable(access: KafkaAccess, records: Iterable[Any], every: float = 0.01) -> None:
    """Wait until readers of committed records (KafkaAccess.reading) can read these records of
    a committed transaction (their RecordMetadata): the broker writes a commit's markers into
    its partitions after the commit has returned, and until then the records are past their
    partitions' last stable offset, the end such a reader is told and reads to."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    wanted: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        wanted[tp] = max(wanted.get(tp, 0), record.offset + 1)
    consumer = AIOKafkaConsumer(*{tp.topic for tp in wanted}, **access.reading(), group_id=None,
                                enable_auto_commit=False)  # its topics known from its start
    async with running(consumer, access):
        while True:
            ends = await consumer.end_offsets(list(wanted))
            if all(end >= wanted[tp] for tp, end in ends.items()):
                return
            await asyncio.sleep(every)


async def topic_batches(access: KafkaAccess, topic: str, batch: int = 5000,
                        start: int = 0) -> AsyncIterator[list[Any]]:
    """The records of a topic from its start to its end as it was at the call, in batches;
    each partition's from offset `start` on, if it is later than the partition's start
    (PastEnd if it is later than its end)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, **access.reading(), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_poll_records=batch)
    async with running(consumer, access):
        ends = await consumer.end_offsets(list(consumer.assignment()))
        for partition in consumer.assignment() if start else ():
            if start > ends[partition]:
                raise PastEnd(f"{topic} ends at offset {ends[partition]}, before {start}")
            consumer.seek(partition, start)
        async for records in batches_up_to(consumer, ends, timeout_ms=500):
            yield records
