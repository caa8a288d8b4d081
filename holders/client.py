"""The holder library: what a holder's communication server does with Renkei.

It binds its records (asks for link codes by four attributes or personal number and binds only on
an exact match), sends linkage requests, answers the platform's queries from its own store, and
keeps its side of the access log. Each request's outcome is recorded exactly once, whatever the
broker redelivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import zip_longest
from typing import Any, NamedTuple, TypeVar

import uuid6
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import acls, credentials, topics
from broker.clients import BrokerAway, KafkaAccess, records_between, started
from holders import matching
from holders.store import (
    ANSWERED,
    KEPT,
    PROVIDER,
    REQUESTER,
    SENT,
    Forgotten,
    HolderStore,
    Keyed,
    KeyInUse,
    Provided,
    Request,
    Side,
    fields_json,
)
from holders.store import (
    own_number as keyed_own,
)
from registry.residents import FourAttributes
from renkei import holder_logs, retention, sealing, sqlite
from renkei.broker_time import BrokerTime, appended_at
from renkei.compacted import holder_directory
from renkei.envelope import Send, send
from renkei.service_loop import close_producer, deliver, producer_for, serving, unless_stopped
from renkei.signers import of_holder, previous_until
from renkei.tasks import cancelled, ended, retrieved, set_or_ended
from renkei.windows import ANSWER_TIMEOUT, CLOCK_SKEW, REPLAY_WINDOW
from schemas.codec import CODEC, NewerVersion, OversizedMessage, SchemaError, UnknownSchema
from schemas.messages import (
    BY_ATTRIBUTES,
    BY_PERSONAL_NUMBER,
    FOUND,
    NOT_FOUND,
    REFUSED,
    TIMED_OUT,
    BindingAnswer,
    BindingRequest,
    HolderEntry,
    HolderLogAnswer,
    HolderLogEntry,
    HolderLogRequest,
    LinkageAnswer,
    LinkageRequest,
    Payload,
    PersonalNumber,
    Ping,
    Pong,
    ProviderAnswer,
    ProviderQuery,
    Rejection,
    RekeyAnswer,
    RekeyedCode,
    RekeyRequest,
)

log = logging.getLogger(__name__)
Done = TypeVar("Done")  # what a step in the store gives
Found = TypeVar("Found")  # what is looked for on a topic (_found)
INBOX_MESSAGES = (ProviderQuery, LinkageAnswer, BindingAnswer, Rejection, Pong,
                  HolderLogRequest, RekeyAnswer)
BINDING, LINKAGE, REKEY = "BINDING", "LINKAGE", "REKEY"
BOUND, INVESTIGATING, REJECTED, UNREADABLE = "BOUND", "INVESTIGATING", "REJECTED", "UNREADABLE"
REKEYED = "REKEYED"
SYSTEM = "system"
# A holder sends one request or answer at a time, as its business makes them: each waits up to
# this long for others to share its produce request (fewer requests for the holder's client and
# the broker to handle, at ~10 ms more latency a hop).
LINGER_MS = 10
OPEN_KEPT = 10_000  # requests sent and not yet answered, kept at hand (beyond: read from the store)
REKEY_CODES = 10_000  # link codes one re-keying request carries (~140 KB; its answer ~300 KB)
REKEY_AT_ONCE = 500  # codes of a re-keying answer applied in one transaction (~6 ms)
REKEY_RETRY = 0.5  # seconds before asking again when the platform did not know the new epoch yet
RENEWAL_AGAIN = 5.0  # seconds before a key file of a renewal that could not be read is read again
SIGNED_NEVER = datetime.min.replace(tzinfo=UTC)  # a signer's `until` when nothing it signs is taken
REKEY_AGAIN = 30.0  # seconds before re-keying (or following a move of unit) again after it failed
REKEY_WAIT = 10.0  # seconds a request waits for its record's re-keying (then goes as it is)
REKEY_WITHIN = 120.0  # seconds the platform has to answer a re-keying, or a check of the unit
HELD_PAST = 0.002  # seconds past a held query's deadline (kept to the millisecond) it is ended at
SEND_WAIT = 5.0  # seconds a caller waits for the broker to take its request (then: NotSentYet)
SEND_RETRY = 1.0  # seconds before a request the broker did not take is sent again
# seconds more on each side of when the platform would take a kept request (by when it was made,
# on its holder's clock) its outbox is read at a start for those the broker has (the clocks may
# differ: _looked_for), and how long that read may take (then each is sent)
TAKEN_MARGIN = 60.0
TAKEN_WAIT = 10.0
# seconds before a holder's inbox is read again for the answers to kept requests it could not
# look for on its outbox, not sent (_settled_by_inbox)
TAKEN_AGAIN = 5.0
# seconds before the store is told again while another holds its write lock: an inbox batch,
# the requests the broker took (_no_longer_kept)
STORE_RETRY = 1.0
# seconds the requests the broker took wait for the others it takes meanwhile, the store told of
# them all in one write (_no_longer_kept): a holder sending hundreds a second has them taken a
# produce request (a few) at a time, each write a transaction of its own (~45 µs); one taken and
# not yet written is SENT as it stands (standing), and one a crash leaves kept is found on the
# outbox at the next start, not sent again (_send_kept)
DELIVERED_EVERY = 0.05
# seconds the client waits for the store's write lock another process (an import) holds: the
# wait stands the event loop still (every query, every call to the server), so it is short; then
# the inbox and _no_longer_kept try again STORE_RETRY later, a call to the server is answered 503
LOCK_WAIT = 0.05
DUPLICATE = "DUPLICATE_REQUEST"
# the reason the platform refuses answers alone by (a ticket is an answer's): a refusal of one
# whose ticket could not be opened names no query's deadline, yet is of an answer from here
INVALID_TICKET = "INVALID_TICKET"
ANSWERED_KIND = {BindingAnswer: BINDING, LinkageAnswer: LINKAGE, RekeyAnswer: REKEY}
KEPT_MESSAGES = (LinkageRequest, BindingRequest, RekeyRequest)


def new_request_id() -> str:
    """A UUIDv7 (RFC 9562): ids made later sort later, so each request and log entry is added
    at the end of the stores' indexes (holder, audit) instead of at a random page of them."""
    return str(uuid6.uuid7())


class Kept(NamedTuple):
    """A request's message kept, not known to be delivered, and when it was made (its own)."""

    request_id: str
    key: str | None
    value: bytes
    sent_at: datetime


def _looked_for(sent_at: datetime) -> tuple[datetime, datetime]:
    """When (by the broker's time) a request made at `sent_at` is looked for on the outbox at a
    start: the platform takes one the broker stamped from the clock skew before `sent_at` to the
    replay window after (else refused as stale), looked for TAKEN_MARGIN more before and the
    clock skew and TAKEN_MARGIN more after; once the holder's clock is past that end, the
    broker's is past the window too, so one not found there is not sent (refused as stale)."""
    return (sent_at - timedelta(seconds=TAKEN_MARGIN),
            sent_at + REPLAY_WINDOW + CLOCK_SKEW + timedelta(seconds=TAKEN_MARGIN))


def _answered_within(sent_at: datetime) -> tuple[datetime, datetime]:
    """When (by the broker's time, as _looked_for) the platform's answer to a request made at
    `sent_at` is on its holder's inbox if the broker took it: relayed by its deadline, an answer
    timeout after the platform took it; once the holder's clock is past that end, an inbox with
    none was sent none."""
    since, until = _looked_for(sent_at)
    return since, until + ANSWER_TIMEOUT


def _copy_stale(sent_at: datetime, now: datetime) -> bool:
    """Whether a copy of a request made at `sent_at`, sent `now` (the holder's clock), may
    reach the platform past the replay window (the clocks may differ by the clock skew): refused
    as stale, and logged about the person again."""
    return sent_at + REPLAY_WINDOW - CLOCK_SKEW <= now


def _spans(made: Iterable[datetime], within: Callable[[datetime], tuple[datetime, datetime]]
           = _looked_for) -> list[tuple[int, int]]:
    """The spans (ms) of a topic the messages of requests made at these times are looked for
    in (each as `within` gives it), those that overlap merged."""
    spans: list[tuple[int, int]] = []
    for start, end in sorted(within(at) for at in made):
        since, until = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        if spans and since <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], until))
        else:
            spans.append((since, until))
    return spans


class NotAuthorized(PermissionError):
    """Only registered staff on registered terminals may act; the refusal is logged."""


class NotBound(LookupError):
    """The record has no link code yet: bind it first."""


class NotFound(LookupError):
    """What a holder's system named is not here: no record under its own number (or none with
    a personal number to bind by), no request under its id."""


class NotInDirectory(LookupError):
    """A holder, or a service of the platform's (the registry, the authority), that the holder
    directory does not list, or not yet (as this holder's view of it has read it)."""


class NotSentYet(RuntimeError):
    """The broker cannot be reached: the request is recorded and kept, and goes once the broker
    is back (in this run, or at the next start)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"the broker cannot be reached: request {request_id} is kept and "
                         "sent once it is back")
        self.request_id = request_id


class Renewal(NamedTuple):
    """What `renkei holder renew` gave a holder, as its files hold it once the directory
    publishes its keys: its sealing and signing keys, its sealing keys before (answers sealed to
    them may still come), its broker password."""

    key: X25519PrivateKey
    signing: Ed25519PrivateKey
    previous: list[X25519PrivateKey]
    credentials: credentials.Credentials


class RenewalNotTaken(RuntimeError):
    """The directory publishes this holder's keys renewed, which its server cannot take (its key
    files unreadable, or holding others): it stops rather than lose what it cannot read, or
    answer with keys its requesters refuse."""


class EpochsNotFollowed(RuntimeError):
    """A holder's server that no longer follows its link-code unit's key epochs (_follow_epochs
    failed): it stops rather than go on with its bindings not re-keyed at the next move, their
    people not found, and the queries held back never answered."""

    def __init__(self, holder: str, failure: BaseException) -> None:
        super().__init__(
            f"{holder}: following its link-code unit's key epochs failed ({type(failure).__name__}"
            f": {failure}): its bindings are no longer re-keyed, nor the queries held back "
            "answered; it stops: start it again (a move made meanwhile is followed at its start)")


class KeyReused(ValueError):
    """An idempotency key a request was made under already, given with another request."""


class Applied(NamedTuple):
    """What a re-keying answer, of key `epoch`, did to the bindings: how many moved and how
    many went to investigation, and why the rest moved none if refused (the counts then those
    of the parts before)."""
    epoch: int
    converted: int = 0
    investigated: int = 0
    refused: str | None = None


class Rekeying:
    """A re-keying request's settling, awaited by the requests waiting for their records' new
    codes: refused, its bindings move no more before REKEY_AGAIN, past REKEY_WAIT."""

    def __init__(self) -> None:
        self.settled = asyncio.Event()
        self.refused = False


class RekeyRefused(RuntimeError):
    """The platform refused to re-key this holder's link codes (the reason says why)."""


def _taken(request_id: str, sending: asyncio.Task[None]) -> asyncio.Future[None]:
    """What a caller awaits of a request's sending: that the broker took it, else NotSentYet,
    SEND_WAIT after it was recorded (_not_taken_yet; it goes on being sent, kept until the
    broker has it) or once its sending ended without it (_told). A future the task's end
    settles, not an asyncio.wait with a timer of its own each; what it is told is taken as told
    should its caller be gone."""
    taken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    taken.add_done_callback(retrieved)
    sending.add_done_callback(partial(_told, request_id, taken))
    return taken


def _told(request_id: str, taken: asyncio.Future[None], sending: asyncio.Task[None]) -> None:
    """Tell the caller its request was taken by the broker, unless told already (or gone); a
    sending that ended otherwise (failed or cancelled as the client stopped) left it kept, to go
    at the next start: NotSentYet, as one the broker did not take within SEND_WAIT."""
    if taken.done():
        return
    if sending.cancelled():
        failed = None
    elif (failed := sending.exception()) is None:
        taken.set_result(None)
        return
    kept = NotSentYet(request_id)
    kept.__cause__ = failed  # how its sending ended, in its traceback
    taken.set_exception(kept)


def _not_taken_yet(taking: list[tuple[str, asyncio.Future[None]]]) -> None:
    """The callers of requests of one commit the broker has not taken within SEND_WAIT told
    NotSentYet (one timer a commit)."""
    for request_id, taken in taking:
        if not taken.done():
            taken.set_exception(NotSentYet(request_id))


def _answer_in(value: bytes | None) -> ProviderAnswer | None:
    """The provider's answer an outbox record holds, if it holds one."""
    try:
        return CODEC.decode(value or b"", ProviderAnswer)
    except SchemaError:
        return None


def _answering(request_ids: set[str], record: Any) -> str | None:
    """The id of the request of these an inbox record answers (or refuses), if it does."""
    try:
        message = CODEC.decode(record.value or b"", LinkageAnswer, BindingAnswer, RekeyAnswer,
                               Rejection)
    except SchemaError:
        return None
    if isinstance(message, Rejection) and _of_answer(message):
        return None
    return message.request_id if message.request_id in request_ids else None


def _first_failure(exc: BaseException) -> BaseException:
    """The first error an exception group (a TaskGroup's) holds, however deep; else `exc`."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


def _of_answer(rejection: Rejection) -> bool:
    """Whether a refusal is of an answer from here: it names its query's deadline, or its
    reason is one given answers alone (INVALID_TICKET: its ticket not opened, naming none)."""
    return rejection.deadline is not None or rejection.reason == INVALID_TICKET


class HolderClient:
    def __init__(self, holder: str, store: HolderStore, access: KafkaAccess | None = None,
                 answer_queries: bool = True, instance: str = "1") -> None:
        self.holder = holder
        self.store = store
        store.wait_for_lock(LOCK_WAIT)
        self.answer_queries = answer_queries
        self.instance = f"{acls.holder_group(holder)}{instance}"
        self._keys_taken(sealing.key_of(holder), sealing.signing_key_of(holder),
                         sealing.previous_keys(holder))
        self._unsigned_out = sealing.SessionSealer()  # while its entry has no signing key
        self._unsigned_from: set[str] = set()  # providers whose unsigned answers were warned of
        self._clients_made(access or KafkaAccess.of(holder))
        self._switching = asyncio.Lock()  # held while its clients stop, and start renewed
        self._stopping = asyncio.Event()  # set by stop(): clients starting renewed give up
        self._held_back: asyncio.Task[None] | None = None  # requests recorded once switched
        self._waiters: dict[str, list[asyncio.Future[Request]]] = {}  # each caller's own
        self._open: dict[str, Request] = {}  # sent from here, not yet answered
        self._making: set[str] = set()  # idempotency keys of calls with no request recorded yet
        self._rekeying = Rekeying()  # settled (and replaced) as each re-keying request is
        self._late_binding = asyncio.Event()  # set when a binding of an older epoch is stored
        self._brought_to: int | None = None  # the key epoch the bindings were last brought to
        self._held_more = asyncio.Event()  # set when a query is held back (_hold_back)
        self._answering_held = asyncio.Lock()  # one answering of the held queries at a time
        self.broker_time = BrokerTime()  # of the inbox's records: a query's deadline is of it
        self._inbox: asyncio.Task[bool] | None = None
        self._sending: set[asyncio.Task[None]] = set()  # requests on their way to the broker
        # requests opened in this turn of the event loop, to be recorded at its end
        self._opening: list[tuple[Callable[[], Request], Send,
                                  asyncio.Future[asyncio.Future[None]]]] = []
        self._delivered_ids: list[str] = []  # taken by the broker, still kept in the store
        self._epochs: asyncio.Task[None] | None = None
        self._settling: asyncio.Task[None] | None = None  # kept requests not sent: _send_kept
        self._renewal: asyncio.Task[None] | None = None  # takes the keys renewed as it runs
        self._retention: asyncio.Task[None] | None = None
        self.terminal = f"{holder}/communication-server"
        self._held = contextlib.ExitStack()  # the store's lock, from start to stop

    async def start(self) -> None:
        """Start on the store, held for this client alone (HolderStore.held: another client
        started on it is refused, InUse, before it reaches the broker), until stopped."""
        self._held.enter_context(self.store.held(f"holder library of {self.holder}"))
        try:
            await self._started()
        except BaseException:  # failed, or cancelled (another's start failed: started_clients)
            try:
                await self._clients_stopped(given_up=True)
            finally:
                self._held.close()
            raise
        self._renewal = asyncio.create_task(self._renewed(),
                                            name=f"renewal:{self.holder}")
        self._renewal.add_done_callback(retrieved)  # raised by until_stopped, not by the stop
        self._retention = asyncio.create_task(
            retention.keep(self.holder, partial(HolderStore, self.store.path), Forgotten.told_of),
            name=f"retention:{self.holder}")

    def _keys_taken(self, key: X25519PrivateKey, signing: Ed25519PrivateKey,
                    previous: list[X25519PrivateKey]) -> None:
        """Open answers with `key` (and those `previous`, renewed), sign with `signing`."""
        self._key, self._signing, self._previous = key, signing, previous
        self._signing_public = sealing.public_bytes(signing)
        self._answers_in = sealing.SessionOpener(key, holder=self.holder, previous=previous)
        self._signed_out = sealing.SessionSealer(signer=sealing.Signer(self.holder, signing))

    def _clients_made(self, access: KafkaAccess) -> None:
        """Its Kafka clients, made (not started) to log in with `access`."""
        self.access = access
        self.directory = holder_directory(access)
        self._producer = producer_for(access, linger_ms=LINGER_MS)
        self._stop = asyncio.Event()

    async def _started(self) -> None:
        await self.directory.start()
        # the producer starts while the directory loads; nothing is sent before the key check
        producing = asyncio.create_task(started(self._producer, self.access))
        try:
            await self.directory.loaded()  # queries are answered with the requester's key
            self._check_key()
            await producing
            await self._broker_time_read()
        except BaseException:
            await cancelled(producing)
            await close_producer(self._producer)
            raise
        await self._send_kept()
        self._inbox = await serving(
            self.access, [topics.inbox(self.holder)], self.inbox_group(self.holder),
            self._handle, self._stop, instance=self.instance, producer=self._producer,
            following=[self.directory])
        self._epochs = asyncio.create_task(self._follow_epochs(), name=f"epochs:{self.holder}")

    async def _broker_time_read(self) -> None:
        """The broker's time now, from the append time of a Ping sent on the outbox (the
        platform answers a Pong, which the inbox passes over). A query read again after a
        restart is judged late by it: in a batch of old records alone, their append times
        would pass it as in time, and an answer sent again past its deadline, by then
        forgotten by the platform, would be refused, ending the entry of the answer relayed
        before as not provided."""
        ping = Ping(new_request_id(), datetime.now(UTC))
        self.broker_time.read([await self._producer.send_and_wait(
            topics.outbox(self.holder), CODEC.encode(ping))])

    async def _send_kept(self) -> None:
        """Send the requests recorded and not known to be delivered, but those the broker has
        (taken just before a stop, unknown to it): those are kept no more, their answer comes
        as any other's; a copy would be refused and, past the replay window, audited again.
        One the broker did not take within the replay window after it was made is not sent:
        the platform would refuse it as stale, audited about the person; it is settled so. The
        outbox not read, each is sent (a copy refused to the holder alone) but one a copy of
        which would come past the replay window: not sent, it is settled by its answer on the
        inbox, or so if the inbox has none in time (_settled_by_inbox)."""
        kept = await self._readable(self.store.unsent())
        taken = await self._taken(kept)
        now = datetime.now(UTC)
        on_broker: list[Kept] = []
        stale: list[Kept] = []
        unsent: list[Kept] = []
        unknown: list[Kept] = []
        for k in kept:
            if taken is None and _copy_stale(k.sent_at, now):  # the outbox not read, and a
                unknown.append(k)  # copy would be refused as stale, logged again: none sent
            elif taken is None:  # the outbox not read: sent, a copy refused to the holder alone
                unsent.append(k)
            elif k.value in taken:
                on_broker.append(k)
            elif _looked_for(k.sent_at)[1] <= now:
                stale.append(k)
            else:
                unsent.append(k)
        if on_broker:
            self._delivered_ids += [k.request_id for k in on_broker]
            self._no_longer_kept()
            log.warning("%s: %d request(s) recorded but not known to be sent were on the broker "
                        "already: not sent again", self.holder, len(on_broker))
        for k in stale:
            await self._rejected_unsent(k.request_id, f"STALE_REQUEST: sent at "
                                  f"{k.sent_at.isoformat()}, not on the broker within the "
                                  "replay window: not sent (it would be refused as stale)")
        if stale:
            log.warning("%s: %d request(s) recorded but not known to be sent, not on the broker "
                        "within the replay window after they were made: not sent, settled %s "
                        "STALE_REQUEST", self.holder, len(stale), REJECTED)
        for k in unsent:
            self._sending_task(k.request_id, Send(topics.outbox(self.holder), k.key, k.value))
        if unsent:
            log.warning("%s: %d request(s) recorded but not known to be sent: sending them now",
                        self.holder, len(unsent))
        if unknown:
            log.warning("%s: %d request(s) recorded but not known to be sent, its outbox not "
                        "read, a copy of which would come past the replay window: not sent, "
                        "settled by their answers on its inbox (or %s STALE_REQUEST if it has "
                        "none in time)", self.holder, len(unknown), REJECTED)
            self._settling = asyncio.create_task(self._settled_by_inbox(unknown),
                                                 name=f"kept:{self.holder}")

    async def _settled_by_inbox(self, kept: list[Kept]) -> None:
        """Settle kept requests not sent, their outbox not read (_send_kept): one the inbox has
        an answer to was taken by the broker (kept no more, the answer settles it as any); one
        it has none to once it would (_answered_within) was never taken, settled REJECTED
        STALE_REQUEST; the inbox read again TAKEN_AGAIN later at least, until each is settled.
        Stopped before, or failed (logged as it fails: nobody awaits it but the stop, which goes
        on), they stay kept for the next start."""
        try:
            await self._settled_when_answered(kept)
        except Exception as exc:
            log.error("%s: its kept request(s) not sent could not be settled (%s: %s): they stay "
                      "kept, settled at its next start", self.holder, type(exc).__name__, exc)

    async def _settled_when_answered(self, kept: list[Kept]) -> None:
        """`_settled_by_inbox`, its failure raised."""
        while kept:
            now = datetime.now(UTC)  # before the read: an answer due by now is on the inbox
            answered = await self._found(
                topics.inbox(self.holder), _spans((k.sent_at for k in kept), _answered_within),
                partial(_answering, {k.request_id for k in kept}),
                f"the {len(kept)} request(s) kept not sent are looked for again in "
                f"{TAKEN_AGAIN:.0f} s")
            if answered is not None:
                self._delivered_ids += sorted(answered)
                self._no_longer_kept()
                for k in kept:
                    if k.request_id not in answered and _answered_within(k.sent_at)[1] <= now:
                        await self._rejected_unsent(k.request_id, (
                            f"STALE_REQUEST: sent at {k.sent_at.isoformat()}, not known to be "
                            "on the broker (its outbox could not be read) and not answered in "
                            "time: not sent (it would be refused as stale)"))
                kept = [k for k in kept if k.request_id not in answered
                        and _answered_within(k.sent_at)[1] > now]
            if kept:
                due = min(_answered_within(k.sent_at)[1] for k in kept)
                await asyncio.sleep(max(TAKEN_AGAIN, (due - now).total_seconds()))

    async def _readable(self, kept: list[tuple[str, str | None, bytes]]) -> list[Kept]:
        """The kept messages this holder can read now; one it cannot (kept by an earlier version
        under a schema retired since, or corrupt) is not sent, the platform able neither to read
        it nor to name it in its refusal, and is settled REJECTED with why."""
        readable = []
        for request_id, key, value in kept:
            try:
                message = CODEC.decode(value, *KEPT_MESSAGES)
            except SchemaError as exc:
                log.warning("%s: request %s kept cannot be read now (%s): not sent, settled %s",
                            self.holder, request_id, exc, REJECTED)
                await self._rejected_unsent(request_id, f"{exc.reason}: its message kept "
                                            f"cannot be read now ({exc}): not sent")
            else:
                readable.append(Kept(request_id, key, value, message.sent_at))
        return readable

    async def _rejected_unsent(self, request_id: str, detail: str) -> None:
        """Settle a kept request REJECTED, not sent; at a start (or a switch to renewed keys)
        while another process holds the store's write lock (`renkei holder records import`),
        once it is free (_in_store), the start not ended by "database is locked"; a caller
        waiting for its outcome (one not sent at a start, _settled_by_inbox) given it."""
        settled = await self._in_store(partial(self._settled_alone, request_id, REJECTED, detail))
        self._woken(() if settled is None else (settled,))

    def _settled_alone(self, request_id: str, status: str, detail: str) -> Request | None:
        """`_settled`, in a transaction of its own."""
        with self.store.transaction():
            return self._settled(request_id, status, detail)

    async def _answers_sent(self, messages: list[Any], now: datetime | None) -> set[str] | None:
        """Of the queries read past their deadline (`now`; None: each one) whose answer this
        holder logged before (a query read again after a restart, or held back and answered
        before one), those whose answer its outbox has (by request id), each looked for where
        it would be (_spans, from its entry's time); None if the outbox cannot be read."""
        logged = {m.request_id: before.at for m in messages if isinstance(m, ProviderQuery)
                  and self.answer_queries and (now is None or m.deadline < now)
                  and (before := self._provided_before(m)) is not None}
        if not logged:
            return set()
        return await self._found(
            topics.outbox(self.holder), _spans(logged.values()),
            lambda record: answer.request_id if (answer := _answer_in(record.value)) is not None
            and answer.request_id in logged else None,
            f"the {len(logged)} answer(s) logged before and read again late stay logged as "
            "they are")

    async def _taken(self, kept: list[Kept]) -> set[bytes] | None:
        """Which of these kept messages the holder's outbox has, each looked for where the
        platform would have taken it (_looked_for); None if it cannot be read (each is sent,
        the platform refusing a copy)."""
        if not kept:
            return set()
        wanted = {k.value for k in kept}
        return await self._found(
            topics.outbox(self.holder), _spans(k.sent_at for k in kept),
            lambda record: record.value if record.value in wanted else None,
            f"the {len(kept)} request(s) kept are all sent again, but those a copy of which "
            "would come past the replay window")

    async def _found(self, topic: str, spans: list[tuple[int, int]],
                     found: Callable[[Any], Found | None], otherwise: str) -> set[Found] | None:
        """What `found` finds in the records of this holder's `topic` (its outbox or inbox)
        within `spans` (None: nothing); None if it cannot be read within TAKEN_WAIT, logged
        with what it means (`otherwise`)."""
        try:
            async with asyncio.timeout(TAKEN_WAIT):
                return {value async for record in records_between(self.access, [topic], spans)
                        if (value := found(record)) is not None}
        except (KafkaError, BrokerAway, TimeoutError) as exc:
            log.warning("%s: its %s cannot be read (%s): %s", self.holder,
                        "outbox" if topic == topics.outbox(self.holder) else "inbox",
                        str(exc) or type(exc).__name__, otherwise)
            return None

    async def _renewed(self) -> None:
        """Take the keys and broker password `renkei holder renew` gave this holder while its
        server ran, once the directory publishes the keys its files now hold (_renewal_read): with
        those it started with it could open nothing sealed to its new key, its answers would
        be refused and its log-in too at the broker's re-authentication. While a file of them
        cannot be read (missing, damaged), it goes on with its keys, reading them again
        RENEWAL_AGAIN later; it never writes one."""
        while True:
            seen = self.directory.version
            if self._unpublished(self._key, self._signing) is None:
                await self._directory_moved(seen)
            elif (renewal := self._renewal_read()) is not None:
                await self._renewal_taken(renewal)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._directory_moved(seen), self._read_again_in())

    def _read_again_in(self) -> float:
        """Seconds before the key files of a renewal it could not read are read again:
        RENEWAL_AGAIN, or fewer to the time its requesters refuse its answers from, when it
        stops (_stopped_past_grace) rather than sign one they refuse."""
        now = datetime.now(UTC)
        return min(RENEWAL_AGAIN, ((self._refused_from() or now) - now).total_seconds())

    def _renewal_read(self) -> Renewal | None:
        """The keys and password this holder's files hold now, if the directory publishes those
        keys (the renewal done: `renkei holder renew` writes each file whole, and all before it
        publishes them); None while it does not, or while one cannot be read (logged)."""
        try:
            key, signing = sealing.keys_in_files(self.holder)
            if self._unpublished(key, signing) is not None:
                self._stopped_past_grace("its key files hold keys the directory does not")
                return None
            return Renewal(key, signing, sealing.previous_keys(self.holder),
                           credentials.load(self.holder))
        except (sealing.BadSealingKey, credentials.UnknownPrincipal, OSError, ValueError,
                KeyError) as exc:
            refused_from = self._stopped_past_grace(
                f"its key or password files cannot be read ({exc})")
            log.error("%s: the directory publishes keys renewed (`renkei holder renew`) other "
                      "than those it runs with, and its key or password files cannot be read "
                      "(%s): it answers with its own, which its requesters refuse from %s (it "
                      "stops then), read again in %.0f s; an answer sealed to its new key stops "
                      "it at once", self.holder, exc, refused_from.isoformat(),
                      self._read_again_in())
            return None

    def _stopped_past_grace(self, why: str) -> datetime:
        """When the requesters of this holder, renewed, refuse its answers signed with the key
        it runs with (those it dates past signers.previous_until of the renewal, however soon
        relayed; at once, its entry naming none); past it, RenewalNotTaken (`why` it cannot
        take the keys renewed)."""
        now = datetime.now(UTC)
        refused_from = self._refused_from() or now
        if refused_from <= now:
            raise self._not_taken(why, refused_from)
        return refused_from

    def _refused_from(self) -> datetime | None:
        """From when the requesters of this holder, its entry publishing its keys renewed,
        refuse what it signs with the key it runs with: signers.previous_until of the renewal;
        None (at once) while its entry names none, or names another key before it (renewed
        twice: they never take the one it runs with)."""
        entry = self._own_entry()
        if entry is None or entry.previous_signing_key != self._signing_public:
            return None
        renewed = entry.signing_renewed_at
        return None if renewed is None else previous_until(renewed)

    def _not_taken(self, why: str, refused_from: datetime) -> RenewalNotTaken:
        """What stops the server of this holder renewed, `why` it cannot take the keys renewed,
        its requesters refusing its answers from `refused_from`."""
        return RenewalNotTaken(
            f"{self.holder}: the directory publishes its keys renewed (`renkei holder renew`) "
            f"and {why}: its requesters refuse the answers it signs with its own from "
            f"{refused_from.isoformat()}; it stops: restore the key and password files the "
            f"renewal wrote (or run `renkei holder renew {self.holder}` again) and start it "
            "again")

    async def _renewal_taken(self, renewal: Renewal) -> None:
        """Its Kafka clients stopped as at a stop (requests not taken by the broker kept), and
        started again with the renewed keys and password (those kept sent, as at a start),
        unless it is stopped first (the broker away, say): stop() stops what started, as of a
        start given up."""
        async with self._switching:
            await self._clients_stopped()
            self._keys_taken(renewal.key, renewal.signing, renewal.previous)
            self._clients_made(replace(self.access, credentials=renewal.credentials))
            if not await unless_stopped(self._stopping, self._started()):
                return
        log.warning("%s: took its keys and broker password renewed (`renkei holder renew`): "
                    "serving with them", self.holder)

    def _unpublished(self, key: X25519PrivateKey, signing: Ed25519PrivateKey) -> str | None:
        """The kind of the first of these keys the directory's entry of this holder publishes
        another of (sealing.SEALING, sealing.SIGNING), None if it publishes them (or has no entry
        of it). No signing key in an entry made before signing, until the holder is registered
        again: only its sealing key is compared."""
        entry = self._own_entry()
        if entry is None:
            return None
        if entry.public_key != sealing.public_bytes(key):
            return sealing.SEALING
        if entry.signing_key and entry.signing_key != sealing.public_bytes(signing):
            return sealing.SIGNING
        return None

    def _check_key(self) -> None:
        """Refuse to start with a sealing or signing key other than the directory's (a key file
        lost and made anew, or another's): every answer sealed to this holder would be
        unreadable, every answer it signs refused."""
        if (kind := self._unpublished(self._key, self._signing)) is not None:
            raise sealing.BadSealingKey(
                f"the {kind} key of {self.holder} in {sealing.key_file(self.holder, kind)} "
                "is not the one the holder directory has: restore it from a backup (or "
                f"register the holder again, `renkei holder register {self.holder} …`, to "
                f"publish this one; a `renkei holder renew {self.holder}` stopped half-way: "
                "run it again, which renews the password too)")

    async def until_stopped(self, stop: asyncio.Event) -> None:
        """Wait for `stop`, or for the client's stop(); raise what ended the inbox loop first, if
        something did (the directory no longer followed: queries would be answered with stale
        keys), the following of its unit's key epochs (EpochsNotFollowed), or the taking of
        renewed keys; an inbox loop ended (and the following cancelled) as its clients started
        renewed is waited past (its wait given up at `stop`: the broker may be away)."""
        assert self._inbox is not None and self._epochs is not None and \
            self._renewal is not None, "start the client first"
        while True:
            inbox, watched = self._inbox, (self._inbox, self._epochs, self._renewal)
            await set_or_ended(stop, *watched)
            if stop.is_set() or self._stopping.is_set():
                return
            for task in watched:
                if task.done() and not task.cancelled():
                    task.result()  # its error, if it ended with one
            if not await unless_stopped(stop, self._switched()):
                return
            if self._inbox is inbox:  # not started renewed: what the taking failed with, if so
                if self._renewal.done() and not self._renewal.cancelled():
                    self._renewal.result()
                return

    async def _switched(self) -> None:
        """Once its clients run renewed (at once if they are not being switched)."""
        async with self._switching:
            pass

    async def stop(self) -> None:
        self._stopping.set()
        async with self._switching:  # renewed keys being taken: once its clients run
            await ended(self._renewal)
            await ended(self._retention)
            try:
                await self._clients_stopped()
            finally:
                self._held.close()  # another client may start on the store now

    async def _clients_stopped(self, given_up: bool = False) -> None:
        """Its Kafka clients stopped: what the producer holds goes if the broker takes it in
        time, a request it did not take stays kept in the store, sent at the next start; those
        of a start `given_up` (failed, or cancelled) stopped as they are, the producer at once
        (what it held stays kept, unsaid: the start's failure is told)."""
        self._stop.set()
        await ended(self._epochs)  # its failure told as it failed (logged; until_stopped)
        await ended(self._settling)
        reached = not given_up  # each step of the inbox's stop in time (serve): else not waited
        try:
            if self._inbox is not None:
                reached = await self._inbox  # what ended it, raised (once its clients are closed)
        finally:
            # what the producer holds goes if the broker takes it in time; a request it did
            # not take stays kept in the store, and goes at the next start
            closed = await close_producer(self._producer, away=not reached)
            if self._sending:  # each was failed by the producer's close (or is cancelled)
                for sending in self._sending:
                    sending.cancel()
                await asyncio.wait(set(self._sending))
            self._no_longer_kept()  # those delivered this last turn
            if not closed and not given_up:  # counted once those the broker took are not kept
                log.warning("%s: its producer closed at shutdown %s: %d request(s) kept, sent at "
                            "the next start", self.holder, "before the broker took all it held "
                            "(away, most likely)" if reached else "at once, a step of its "
                            "inbox's stop not having ended in time (said before)",
                            len(self.store.unsent()))
            await self.directory.stop()

    @staticmethod
    def inbox_group(holder: str) -> str:
        """The consumer group of a holder's inbox loop (under the holder's group prefix)."""
        return f"{acls.holder_group(holder)}inbox"

    def entry(self, holder: str) -> HolderEntry:
        found = self._listed(holder)
        if found is None:
            raise NotInDirectory(f"{holder!r} is not in the holder directory")
        return found

    def _listed(self, holder: str) -> HolderEntry | None:
        """`holder`'s entry in the directory (None: not in it)."""
        return self.directory.entries.get(holder.encode())

    def _own_entry(self) -> HolderEntry | None:
        """This holder's entry in the directory (None: not in it yet)."""
        return self._listed(self.holder)

    # requester side
    def _authorize(self, request_id: str, operator: str, terminal: str, kind: str) -> None:
        if not self.store.authorized(operator, terminal):
            self.store.log(request_id, REQUESTER, operator, terminal,
                           "REFUSED: not registered staff on a registered terminal",
                           purpose=kind)
            raise NotAuthorized(f"{operator!r} on {terminal!r} may not act for {self.holder}")

    def _made(self, keyed: Keyed | None) -> str | None:
        """The id of the request made under this idempotency key already (None: none); as it
        stands: NotSentYet while the broker does not have it, KeyReused if made for a different
        request, KeyInUse while a call under it has none recorded yet (_making). Asked once the
        caller is authorized: the id is not for one who may not act."""
        if keyed is None:
            return None
        if (made := self.store.made(keyed.key)) is None:
            if keyed.key in self._making:
                raise KeyInUse
            return None
        if not keyed.asks(made):
            raise KeyReused(f"the idempotency key was used already, for a different request "
                            f"(request {made.request_id}): a new request takes a new key")
        if made.kept and made.request_id not in self._delivered_ids:  # taken: its writing waits
            raise NotSentYet(made.request_id)  # for DELIVERED_EVERY
        return made.request_id

    @contextlib.contextmanager
    def _making_under(self, keyed: Keyed | None) -> Iterator[None]:
        """The idempotency key held while its call waits (for its record's code, up to
        REKEY_WAIT during a re-keying) before its request is recorded: a call with it meanwhile
        is told to ask again (KeyInUse), one after is answered the request (_made)."""
        held = {keyed.key} if keyed else set()
        self._making |= held
        try:
            yield
        finally:
            self._making -= held

    async def bind(self, own_number: str, operator: str, terminal: str,
                   by_number: bool = False, keyed: Keyed | None = None) -> str:
        """Ask for this record's link code (step ①–④ of binding); returns the request id (the
        one made already under the idempotency key `keyed`, if any). The own number is read as
        an import keys it (NFKC: `Ｈ－１` is the record `H-1`)."""
        own_number = keyed_own(own_number)
        request_id = new_request_id()
        self._authorize(request_id, operator, terminal, BINDING)
        if made := self._made(keyed):
            return made
        found = self.store.record(own_number)
        if found is None:
            raise NotFound(f"no record {own_number!r}")
        attributes, number = found
        if by_number and number is None:
            raise NotFound(f"record {own_number!r} holds no personal number")
        if by_number:
            sealed = sealing.seal(self.entry(acls.AUTHORITY).public_key,
                                  CODEC.encode(PersonalNumber(str(number))), request_id)
        else:
            sealed = sealing.seal(self.entry(acls.REGISTRY).public_key,
                                  CODEC.encode(attributes), request_id)
        outgoing = self._outgoing(request_id, BindingRequest(
            request_id, datetime.now(UTC), BY_PERSONAL_NUMBER if by_number else BY_ATTRIBUTES,
            sealed))
        with self._making_under(keyed):
            taken = await self._recorded(partial(
                self.store.open_request, request_id, BINDING, own_number, operator, terminal,
                outgoing=(outgoing.key, outgoing.value), keyed=keyed), outgoing)
        await taken
        return request_id

    async def request(self, own_number: str, pattern_id: str, provider: str, data_type: str,
                      purpose: str, operator: str, terminal: str,
                      keyed: Keyed | None = None) -> str:
        """Step ①: ask `provider` for this person's `data_type` under `pattern_id`; returns the
        request id (the one made already under the idempotency key `keyed`, if any). NotBound
        for a record with no link code, NotFound for no record. The own number is read as an
        import keys it (NFKC: `Ｈ－１` is the record `H-1`)."""
        own_number = keyed_own(own_number)
        request_id = new_request_id()
        self._authorize(request_id, operator, terminal, purpose)
        if made := self._made(keyed):
            return made
        with self._making_under(keyed):
            link_code = await self._current_code(own_number)
            if link_code is None and self.store.record(own_number) is None:
                raise NotFound(f"no record {own_number!r}")
            if link_code is None:
                raise NotBound(f"record {own_number!r} is not bound to a link code")
            outgoing = self._outgoing(link_code, LinkageRequest(
                request_id, datetime.now(UTC), link_code, pattern_id, provider, data_type))
            taken = await self._recorded(partial(
                self.store.open_request, request_id, LINKAGE, own_number, operator, terminal,
                pattern_id=pattern_id, provider=provider, data_type=data_type, purpose=purpose,
                outgoing=(outgoing.key, outgoing.value), keyed=keyed), outgoing)
        await taken
        return request_id

    # re-keying: the unit moved to a new key epoch
    def _epoch(self) -> int:
        """The key epoch this holder's unit is at, as the directory says."""
        entry = self._own_entry()
        return 0 if entry is None else entry.key_epoch

    async def _follow_unit(self, followed: str | None) -> str | None:
        """The link-code unit the directory gives this holder, the bindings brought to it unless
        it is `followed` (the unit they were last brought to, None: not yet): after a move to
        another unit (`holder register --move-unit`), every binding to be redone, unbound and
        investigated, not used with a code of the unit left; a store that never noted its unit
        has its bindings checked by their codes first (_check_unit)."""
        entry = self._own_entry()
        if entry is None or entry.link_unit == followed:
            return followed
        if self.store.bindings_unit() is None:
            unbound = await self._check_unit(entry.link_unit, entry.key_epoch)
            if unbound:
                log.warning("%s: %d binding(s) not of link-code unit %s (the holder moved before "
                            "its store noted its unit): to investigation, to be bound again",
                            self.holder, unbound, entry.link_unit)
        with self.store.transaction():
            moved = self.store.move_to_unit(entry.link_unit)
        if moved:
            log.warning("%s: moved to link-code unit %s: %d binding(s) to investigation, to be "
                        "bound again", self.holder, entry.link_unit, len(moved))
        return entry.link_unit

    async def _follow_epochs(self) -> None:
        """The bindings brought to the directory's unit and epoch (_bindings_followed), and the
        queries held back meanwhile ended at their deadline, the re-keying done or not
        (_held_ended_when_due). Each goes on past the failures it expects (the broker away, the
        store busy: again REKEY_AGAIN later); another ends both, logged in one line as it fails,
        and stops the server: EpochsNotFollowed, raised by until_stopped (not by the stop)."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._bindings_followed())
                group.create_task(self._held_ended_when_due())
        except Exception as exc:
            failed = EpochsNotFollowed(self.holder, _first_failure(exc))
            log.error("%s", failed)
            raise failed from exc

    async def _bindings_followed(self) -> None:
        """Re-key the bindings whenever this holder's unit moves to a new key epoch in the
        directory (and once at start, for a move made while the holder was down), and again
        whenever a binding answered at the old epoch is stored after that; unbind them all
        whenever the holder moves to another link-code unit (_follow_unit). What each moved is
        logged at WARNING, the level the server runs at. The queries held back meanwhile
        (_hold_back) are answered once they are brought to it."""
        followed: str | None = None  # the unit they were last brought to
        while True:
            seen, epoch = self.directory.version, self._epoch()
            try:
                followed = await self._follow_unit(followed)
                if epoch != self._brought_to:
                    converted, investigated = await self._rekey(epoch)
                    self._brought_to = epoch
                    if converted or investigated:
                        log.warning("%s: bindings re-keyed to epoch %s: %d converted, %d to "
                                    "investigation", self.holder, epoch, converted, investigated)
                await self._answer_held()
            except Exception as exc:  # refused, timed out, not sent, the store busy: it must
                # not stop here
                log.error("%s: bringing the bindings to the directory's unit and epoch %s "
                          "failed (%s): again in %.0f s", self.holder, epoch, exc, REKEY_AGAIN)
                await asyncio.sleep(REKEY_AGAIN)
                continue
            await self._epoch_news(seen)
            if self._late_binding.is_set():
                self._late_binding.clear()
                self._brought_to = None  # not all of them any more

    async def _epoch_news(self, seen: int) -> None:
        """Wait until the directory changes after version `seen`, or a binding of an older key
        epoch than the directory's is stored."""
        waits = {asyncio.ensure_future(self._directory_moved(seen)),
                 asyncio.ensure_future(self._late_binding.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()

    async def _directory_moved(self, seen: int) -> None:
        """Wait until the directory changes after version `seen`."""
        while self.directory.version == seen:
            await self.directory.changed()

    async def _current_code(self, own_number: str) -> str | None:
        """The record's link code (None: not bound). Just after its unit moved to a new key
        epoch, once its binding is re-keyed (up to REKEY_WAIT, or until a re-keying is
        refused): a code of the old epoch would be refused."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REKEY_WAIT
        refused = False
        while (bound := self.store.binding(own_number)) is not None:
            code, epoch = bound
            left = deadline - loop.time()
            if epoch >= self._epoch() or left <= 0 or refused:
                return code
            rekeying = self._rekeying
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rekeying.settled.wait(), left)
            refused = rekeying.refused
        return None

    async def _rekey(self, epoch: int, within: float = REKEY_WITHIN) -> tuple[int, int]:
        """Bring every binding of an older key epoch to `epoch`: the platform converts the link
        codes, a batch at a time. How many were converted, and how many went to investigation
        (not valid, or the new code bound to another record already)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        converted = investigated = 0
        stale = await self._bindings_before(epoch)
        while stale:
            moved, unbound, answered_at = await self._rekeyed_codes(stale, deadline)
            converted, investigated = converted + moved, investigated + unbound
            left = await self._bindings_before(epoch)
            if left == stale:
                if answered_at >= epoch:  # answered at the new epoch: asking again moves nothing
                    log.error("%s: %d binding(s) could not move to epoch %s: they stay of "
                              "their old epoch", self.holder,
                              sum(len(link_codes) for _, link_codes in left), epoch)
                    break
                # the platform is still at the old epoch: it reads the directory anew
                if loop.time() + REKEY_RETRY > deadline:
                    raise TimeoutError("the platform did not move to the new epoch in time")
                await asyncio.sleep(REKEY_RETRY)
            stale = left
        return converted, investigated

    async def _bindings_before(self, epoch: int) -> list[tuple[int, list[str]]]:
        """The link codes of key epochs before `epoch`, a batch a re-keying request carries at
        a time (up to REKEY_CODES of one epoch), each read with the event loop going on after
        it."""
        batches = []
        for batch in self.store.bindings_before_in_parts(epoch, REKEY_CODES):
            batches.append(batch)
            await asyncio.sleep(0)
        return batches

    async def _rekeyed_codes(self, stale: list[tuple[int, list[str]]],
                             deadline: float) -> tuple[int, int, int]:
        """Have the platform re-key these batches of link codes (each of the key epoch it is
        of): how many were converted, how many went to investigation, and the earliest epoch
        answered at."""
        loop = asyncio.get_running_loop()
        asked = [await self._ask_rekey(old_epoch, codes) for old_epoch, codes in stale]
        converted = investigated = 0
        answered_at: list[int] = []
        for request_id in asked:
            done = await self.outcome(request_id, max(0.0, deadline - loop.time()))
            if done.status != REKEYED or done.result is None:
                raise RekeyRefused(f"request {request_id}: {done.status}: {done.detail}")
            converted += int(done.result["converted"])
            investigated += int(done.result["investigated"])
            answered_at.append(int(done.result["epoch"]))
        return converted, investigated, min(answered_at)

    async def _check_unit(self, unit: str, epoch: int) -> int:
        """Check by their codes the bindings of a store that never noted its link-code unit
        (bound before units were noted, or a move made before its first follow): those of a
        key epoch after `epoch`, the one `unit` is at, and those the platform finds no code of
        `unit` as it re-keys them to `epoch`, are unbound and investigated. How many."""
        with self.store.transaction():
            unbound = len(self.store.unbind_after(epoch, unit))
        bound = await self._bindings_before(epoch + 1)
        if bound:
            deadline = asyncio.get_running_loop().time() + REKEY_WITHIN
            unbound += (await self._rekeyed_codes(bound, deadline))[1]
        return unbound

    async def _ask_rekey(self, epoch: int, link_codes: list[str]) -> str:
        request_id = new_request_id()
        outgoing = self._outgoing(request_id, RekeyRequest(request_id, datetime.now(UTC), epoch,
                                                           tuple(link_codes)))
        await (await self._recorded(partial(
            self.store.open_request, request_id, REKEY, "", SYSTEM, self.terminal,
            outgoing=(outgoing.key, outgoing.value)), outgoing))
        return request_id

    def _opened(self, request: Request) -> None:
        """Keep a request just recorded at hand, for its outcome without reading the store."""
        if len(self._open) >= OPEN_KEPT:  # the oldest goes: its answer will read the store
            del self._open[next(iter(self._open))]
        self._open[request.request_id] = request

    def _sent(self, request_id: str, answered: bool = False) -> Request | None:
        """A request as sent from here and not yet answered (taken off those at hand once
        `answered`), else as the store has it (answered, sent before a restart, or let go)."""
        kept = self._open.pop(request_id, None) if answered else self._open.get(request_id)
        return kept or self.store.request(request_id)

    def _outgoing(self, key: str, message: object) -> Send:
        return send(topics.outbox(self.holder), key, message)

    def _recorded(self, opening: Callable[[], Request],
                  outgoing: Send) -> asyncio.Future[asyncio.Future[None]]:
        """The broker's taking of a request once `opening` has recorded it (_taken), with the
        others opened in this turn of the event loop (_record_opened: one commit for them all,
        ~20 µs)."""
        recorded: asyncio.Future[asyncio.Future[None]] = \
            asyncio.get_running_loop().create_future()
        if not self._opening:
            asyncio.get_running_loop().call_soon(self._record_opened)
        self._opening.append((opening, outgoing, recorded))
        return recorded

    def _record_opened(self) -> None:
        """The requests opened in the turn before recorded in one transaction (each durable
        before it is sent), each one's sending begun once it is committed; one whose caller gave
        up meanwhile is not recorded, one whose idempotency key is in use alone not (its
        savepoint), and any other failure records none, each caller told of it. While its
        clients stop and start renewed, once they run (_held_back): recorded now, a request
        would be sent with the producer stopped, or both by its sending and as one kept."""
        if self._switching.locked():
            if self._held_back is None or self._held_back.done():
                self._held_back = asyncio.create_task(self._recorded_once_switched())
            return
        opening, self._opening = [o for o in self._opening if not o[2].done()], []
        made: list[Request | KeyInUse] = []
        try:
            with self.store.transaction():
                for open_one, _, _ in opening:
                    try:
                        made.append(open_one())
                    except KeyInUse as exc:
                        made.append(exc)
        except Exception as exc:
            for _, _, recorded in opening:
                recorded.set_exception(exc)
            return
        taking: list[tuple[str, asyncio.Future[None]]] = []
        for (_, outgoing, recorded), request in zip(opening, made, strict=True):
            if isinstance(request, KeyInUse):
                recorded.set_exception(request)
            else:
                self._opened(request)
                taken = _taken(request.request_id,
                               self._sending_task(request.request_id, outgoing))
                taking.append((request.request_id, taken))
                recorded.set_result(taken)
        if taking:
            asyncio.get_running_loop().call_later(SEND_WAIT, _not_taken_yet, taking)

    async def _recorded_once_switched(self) -> None:
        """The requests opened while its clients switched, recorded once they run renewed."""
        await self._switched()
        self._record_opened()

    def _sending_task(self, request_id: str, outgoing: Send) -> asyncio.Task[None]:
        sending = asyncio.create_task(self._delivered(request_id, outgoing))
        self._sending.add(sending)
        sending.add_done_callback(self._sent_off)
        return sending

    def _sent_off(self, sending: asyncio.Task[None]) -> None:
        self._sending.discard(sending)
        retrieved(sending)  # a request left unsent is kept, and logged so

    async def _delivered(self, request_id: str, outgoing: Send) -> None:
        """Send until the broker has it (or the client stops: it stays kept), then keep it no
        more."""
        while True:
            try:
                await deliver(self._producer, [outgoing])
                break
            except KafkaError as exc:
                if self._stop.is_set():
                    raise
                log.warning("%s: request %s not sent (%s): again in %.0f s", self.holder,
                            request_id, type(exc).__name__, SEND_RETRY)
                await asyncio.sleep(SEND_RETRY)
        if not self._delivered_ids:  # the store is told once for all those of DELIVERED_EVERY
            asyncio.get_running_loop().call_later(DELIVERED_EVERY, self._no_longer_kept)
        self._delivered_ids.append(request_id)

    def _no_longer_kept(self) -> None:
        """The requests the broker has taken are kept no more (a crash before this leaves them
        to the next start, which finds them on the outbox and sends no copy: _send_kept); while
        another holds the store's write lock, told again STORE_RETRY later (stopped: at the
        next start)."""
        delivered, self._delivered_ids = self._delivered_ids, []
        if not delivered:  # told already (at the start's look at the outbox, or the stop)
            return
        try:
            self.store.delivered(delivered)
        except sqlite3.OperationalError as exc:
            if not sqlite.busy(exc):
                raise
            if self._stop.is_set():
                log.warning("%s: its store is locked (%s): %d request(s) the broker has stay "
                            "kept, found on its outbox at the next start", self.holder, exc,
                            len(delivered))
                return
            self._delivered_ids = delivered  # none came since: this call took them all
            asyncio.get_running_loop().call_later(STORE_RETRY, self._no_longer_kept)

    async def outcome(self, request_id: str, within: float = 60.0) -> Request:
        """Wait for the request's one outcome (answer, rejection, timeout, binding result)."""
        found = self._sent(request_id)
        if found is None:
            raise NotFound(f"no request {request_id!r}")
        if found.status != SENT:
            return found
        waiter: asyncio.Future[Request] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, []).append(waiter)
        try:
            async with asyncio.timeout(within):  # cancels this caller's future, no one else's
                return await waiter
        except BaseException:  # given up: asking again and again must not pile up futures
            self._forget(request_id, waiter)
            raise

    def standing(self, request_id: str) -> Request | None:
        """The request as it stands (None: no such request): KEPT while the broker is not known
        to have it (NotSentYet: sent once it is back), SENT from then until its outcome, then
        its outcome (SENT once the broker has it, its writing waiting for DELIVERED_EVERY)."""
        found = self.store.standing(request_id)
        if found is not None and found.status == KEPT and request_id in self._delivered_ids:
            return replace(found, status=SENT)
        return found

    def _forget(self, request_id: str, waiter: asyncio.Future[Request]) -> None:
        """Take a waiter given up on off its request's list (unless an answer just popped it)."""
        waiting = self._waiters.get(request_id, [])
        if waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                del self._waiters[request_id]

    # the inbox: answers to this holder's requests, and queries to answer
    async def _handle(self, records: list[Any]) -> Sequence[Send]:
        """One poll's batch: the re-keying answers in it applied a part at a time, then the
        batch in one transaction of the store (its offsets committed once this returns)."""
        self.broker_time.read(records)  # once: held while the store is locked, they grow old
        now = self._now()  # own: an inbox not to spec
        read = [(m, r) for r in records if (m := self._decoded(r)) is not None]
        messages = [m for m, _ in read]
        applied = await self._rekeyings_applied(messages)
        sent = await self._answers_sent(messages, now)
        try:
            out, resolved = await self._in_store(partial(self._handled, read, applied, now, sent))
        except sealing.SignedPast as exc:  # the batch not committed: read at the next start
            raise self._not_taken("it has not taken them by then (its key files not read, "
                                  "or the renewal seen late: its batch is read again)",
                                  self._refused_from() or datetime.now(UTC)) from exc
        self._woken(resolved)
        return out

    def _woken(self, resolved: Iterable[Request]) -> None:
        """The callers waiting for these requests' outcomes (outcome), given them."""
        for request in resolved:
            for waiter in self._waiters.pop(request.request_id, ()):
                if not waiter.done():
                    waiter.set_result(request)

    async def _in_store(self, step: Callable[[], Done]) -> Done:
        """`step`, its own transaction of the store; while another holds the store's write lock
        past LOCK_WAIT, tried again STORE_RETRY later, the loop going on meanwhile (the inbox
        not read again until it is); the wait logged at its start and at its end, how long."""
        locked_since: float | None = None
        while True:
            try:
                done = step()
                break
            except sqlite3.OperationalError as exc:
                if not sqlite.busy(exc) or self._stop.is_set():
                    raise
                if locked_since is None:
                    locked_since = time.monotonic()
                    log.error("%s: its store is locked (%s): the inbox tries again every %.0f s "
                              "until it is free", self.holder, exc, STORE_RETRY)
                await asyncio.sleep(STORE_RETRY)
        if locked_since is not None:
            log.warning("%s: its store is free again: the inbox waited %.1f s for it",
                        self.holder, time.monotonic() - locked_since)
        return done

    def _decoded(self, record: Any) -> Any:
        """An inbox record's message (None: unreadable, logged); NewerVersion for one of a
        schema a newer platform wrote: the holder stops, its inbox read on from that message
        once its library is upgraded, not skipping an answer or a query for good."""
        try:
            return CODEC.decode(record.value or b"", *INBOX_MESSAGES)
        except UnknownSchema as exc:
            raise NewerVersion(record.topic, "holder library", exc) from None
        except SchemaError as exc:
            log.error("%s: an unreadable inbox message: %s", self.holder, exc)
            return None

    async def _rekeyings_applied(self, messages: list[Any]) -> dict[str, Applied]:
        """What each re-keying answer of the batch to a request still awaiting it did, applied
        REKEY_AT_ONCE codes a transaction, the loop going on between them (10k codes in one
        held it ~170 ms CPU on a loaded machine). A crash between parts leaves the request
        unanswered and the batch's offsets uncommitted: read again, its answer is applied again,
        the bindings moved already (of its epoch by then) not moved twice, counted once as the
        parts before the crash kept their count (HolderStore.rekey_counted)."""
        applied: dict[str, Applied] = {}
        for answer in messages:
            if (isinstance(answer, RekeyAnswer) and answer.request_id not in applied
                    and (request := self._sent(answer.request_id)) is not None
                    and request.kind == REKEY and request.status == SENT):
                applied[answer.request_id] = await self._rekey_applied(answer)
        return applied

    async def _rekey_applied(self, answer: RekeyAnswer) -> Applied:
        """Rebind each record to its new code; a record whose old code was not valid, or whose
        new code is bound to another record already, is unbound and investigated. None moved
        (no more, the holder moving between parts) if answered under another link-code unit
        than the directory gives (the platform not yet at the holder's move): refused, to be
        asked again, with what the parts before moved (of the unit left: unbound with the
        rest once the bindings follow the move)."""
        applied = Applied(answer.epoch)
        # one part at least: the unit is checked with no codes too
        for start in range(0, len(answer.codes), REKEY_AT_ONCE) or [0]:
            await asyncio.sleep(0)  # after the batch's decoding, or the part before
            codes = answer.codes[start:start + REKEY_AT_ONCE]
            applied = await self._in_store(partial(self._rekeyed_part, answer, codes))
            if applied.refused is not None:
                break
        return applied

    def _of_unit_left(self, answer: RekeyAnswer) -> str | None:
        """Why the answer is refused if answered under another link-code unit than the
        directory gives now (None: it is not)."""
        entry = self._own_entry()
        if entry is None or answer.unit in ("", entry.link_unit):
            return None
        return (f"answered under link-code unit {answer.unit!r}, not {entry.link_unit!r}: "
                "asked again")

    def _rekeyed_part(self, answer: RekeyAnswer, codes: Sequence[RekeyedCode]) -> Applied:
        """Apply these codes of the answer, in one transaction: how many of its codes moved,
        and how many went to investigation, with this part (the parts before a crash too);
        refused, none of these moved, if the holder moved to another unit since the part
        before."""
        with self.store.transaction():
            refused = self._of_unit_left(answer)
            moved = (0, 0) if refused else self._bindings_moved(answer, codes)
            counted = self.store.rekey_counted(answer.request_id, *moved)
        return Applied(answer.epoch, *counted, refused)

    def _bindings_moved(self, answer: RekeyAnswer, codes: Sequence[RekeyedCode]
                        ) -> tuple[int, int]:
        """Move the bindings of these codes of the answer: how many moved, how many went to
        investigation."""
        converted = investigated = 0
        for code in codes:
            moved = self.store.rekey(code.old, code.new, answer.epoch)
            if moved is None:
                continue
            if code.new is not None and moved.taken_by is None:
                converted += 1
                continue
            investigated += 1
            self.store.investigate(
                f"{answer.request_id}:{moved.own_number}", moved.own_number,
                f"its link code of epoch {answer.epoch} is already bound to record "
                f"{moved.taken_by}" if moved.taken_by else
                f"its link code is not valid at epoch {answer.epoch}: bind it again")
        return converted, investigated

    def _handled(self, read: list[tuple[Any, Any]], applied: dict[str, Applied],
                 now: datetime, sent: set[str] | None) -> tuple[list[Send], list[Request]]:
        """The effects of the batch (each message with its record: an answer's append time,
        when it was relayed, read off it alone), and the requests it answered (the re-keyings
        `applied`; of the queries read late with an answer logged before, those `sent`, None:
        not known)."""
        out: list[Send] = []
        resolved: list[Request] = []
        late = 0
        with self.store.transaction():
            for message, record in read:
                if isinstance(message, ProviderQuery):
                    if not self.answer_queries:
                        continue
                    if message.deadline < now:  # an answer would be refused (its ticket
                        late += 1  # expired): none sent, no content
                        self._read_late(message, sent)
                    elif (answer := self._answer(message)) is not None:  # None: held back
                        out.append(answer)
                elif isinstance(message, Pong):
                    continue
                elif isinstance(message, HolderLogRequest):
                    out.append(self._log_for_oversight(message))
                elif (done := self._read(message, applied, appended_at(record) or now)
                      ) is not None:
                    resolved.append(done)
        if late:
            log.warning("%s: %d quer(ies) read after their deadline (the server was down, or "
                        "behind): not answered, the platform has timed them out", self.holder,
                        late)
        return out, resolved

    def _read(self, message: LinkageAnswer | BindingAnswer | Rejection | RekeyAnswer,
              applied: dict[str, Applied], relayed: datetime) -> Request | None:
        """`_resolve`d; one that cannot be read settled UNREADABLE (said once), unless it opens
        with the key renewed in its key file that it opens with now (_renewed_key_taken)."""
        try:
            try:
                return self._resolve(message, applied, relayed)
            except sealing.CannotOpen as exc:
                if not self._renewed_key_taken():
                    self._unopened_renewed(message.request_id, exc)
                    raise
                return self._resolve(message, applied, relayed)
        except (sealing.CannotOpen, SchemaError) as exc:
            log.error("%s: answer %s cannot be read: %s", self.holder, message.request_id, exc)
            return self._settled(message.request_id, UNREADABLE, str(exc))

    def _unopened_renewed(self, request_id: str, exc: sealing.CannotOpen) -> None:
        """RenewalNotTaken if the directory publishes a sealing key of this holder other than
        those it opens answers with (renewed, its key files unreadable or holding another):
        the answer to `request_id` was sealed to it, and is left on the inbox (its batch not
        committed), opened at the next start, not settled UNREADABLE and lost."""
        entry = self._own_entry()
        opened_with = {sealing.public_bytes(k) for k in (self._key, *self._previous)}
        if entry is not None and entry.public_key not in opened_with:
            raise RenewalNotTaken(
                f"{self.holder}: the answer to request {request_id} cannot be opened ({exc}) "
                "with the keys it runs with, and the directory publishes its sealing key "
                "renewed (`renkei holder renew`), which its key files do not give it: it stops, "
                "the answer left on its inbox: restore the key files the renewal wrote (or run "
                f"`renkei holder renew {self.holder}` again) and start it again") from exc

    def _renewed_key_taken(self) -> bool:
        """Whether its key file holds a sealing key, renewed as it runs, other than those it
        opens answers with, now opened with too until its clients switch to it (_renewed): a
        provider whose directory view published it before this server's did, or before it
        switched, seals to it. Its own key (`renkei holder renew` writes it before it publishes
        it): an answer it opens was sealed to this holder, signed by its provider as any."""
        try:
            key, _ = sealing.keys_in_files(self.holder)
        except sealing.BadSealingKey:  # the renewal's wait says it (_renewal_read)
            return False
        opened_with = {sealing.public_bytes(k) for k in (self._key, *self._previous)}
        if sealing.public_bytes(key) in opened_with:
            return False
        self._keys_taken(self._key, self._signing, [*self._previous, key])
        log.warning("%s: an answer sealed to its key renewed (`renkei holder renew`) came "
                    "before it took it: answers are opened with it too", self.holder)
        return True

    def _resolve(self, message: LinkageAnswer | BindingAnswer | Rejection | RekeyAnswer,
                 applied: dict[str, Applied], relayed: datetime) -> Request | None:
        """The request `message` answers, settled by it; `relayed`: its record's append time
        on the inbox, when the platform relayed it (however late this server reads it)."""
        if isinstance(message, Rejection) and not message.request_id:  # processors.outbox's
            log.warning("%s: a refusal (%s) of a message from here the platform could not read, "
                        "naming no request: none settled", self.holder, message.reason)
            return None
        if isinstance(message, Rejection) and _of_answer(message):
            # never of a request sent from here, which may have that query's id (each requester
            # draws its own ids)
            self._answer_refused(message)
            return None
        request = self._sent(message.request_id, answered=True)
        if request is None:
            if isinstance(message, Rejection):
                self._answer_refused(message)
            else:
                log.warning("%s: an answer to unknown request %s", self.holder,
                            message.request_id)
            return None
        if not isinstance(message, Rejection) and ANSWERED_KIND[type(message)] != request.kind:
            log.error("%s: a %s cannot answer %s request %s: dropped", self.holder,
                      type(message).__name__, request.kind, message.request_id)
            return None
        if request.status != SENT:  # a copy of an answer acted on already: only counted
            return self._finish(request, request.status, request.detail)
        if isinstance(message, Rejection):
            if message.reason == DUPLICATE:  # ids are drawn afresh, so this is a copy of ours
                # sent again (after a stop, or a send the broker took but did not acknowledge):
                # the request's own outcome comes from the first
                log.info("%s: a copy of request %s was sent again and refused",
                         self.holder, request.request_id)
                return None
            return self._finish(request, REJECTED, f"{message.reason}: {message.detail}")
        if isinstance(message, BindingAnswer):
            return self._bound(request, message)
        if isinstance(message, RekeyAnswer):
            return self._rekeyed(request, applied[request.request_id])
        fields = None
        if message.status == FOUND:
            # a session dated later than its relaying (a clock skew beside) is refused: no
            # provider with a clock the platform takes requests by made it
            payload = self._answers_in.open(message.sealed_payload, message.request_id,
                                            self._signed_by(request.provider or message.provider,
                                                            relayed), relayed + CLOCK_SKEW)
            fields = dict(CODEC.decode(payload, Payload).fields)
        return self._finish(request, message.status, None, fields)

    def _signed_by(self, provider: str, relayed: datetime) -> sealing.SignedBy | None:
        """Whom a provider's answer sessions are to be signed by, as its directory entry says,
        its signing key before its last renewal too if the answer was `relayed` within
        SIGNING_GRACE of it (an answer it signed just before is read, not UNREADABLE, however
        late this server reads it: the platform relays none past its ticket's deadline); None
        (unsigned, as before signing was, warned of once a provider) for a provider whose
        entry has no signing key: one not registered again since, or no longer in it."""
        signer = of_holder(provider, self._listed(provider), relayed)
        if signer is not None:
            return signer
        if provider not in self._unsigned_from:
            self._unsigned_from.add(provider)
            log.warning("%s: the directory has no signing key of provider %s: its answers are "
                        "taken unsigned (the platform could have made them) until it is "
                        "registered again", self.holder, provider)
        return None

    def _answer_refused(self, rejection: Rejection) -> None:
        """This holder's answer to a query, refused by the platform (its ticket expired on the
        way, say): the requester never got it, so the provider's entry of the query it names
        (one naming none, of v1 or of a ticket not opened: the latest of that id) says so, not
        FOUND. One of a query this holder answered none of (another provider's, or forgotten)
        ends no entry."""
        if self.store.not_provided(rejection.request_id, f"{REJECTED}: {rejection.reason}",
                                   rejection.deadline):
            log.warning("%s: its answer to query %s was refused (%s: %s): logged not provided",
                        self.holder, rejection.request_id, rejection.reason, rejection.detail)
            return
        none = ("no request sent from here nor a query" if not _of_answer(rejection) else
                "no query" if rejection.deadline is None else
                f"no query due {rejection.deadline.isoformat()}")
        log.warning("%s: a refusal (%s) of %s, %s answered here (another provider's, or "
                    "forgotten): no entry ended", self.holder, rejection.reason,
                    rejection.request_id, none)

    def _settled(self, request_id: str, status: str, detail: str) -> Request | None:
        """A request sent from here settled with `status` and why, not by an answer (one that
        cannot be read, or none: not sent); None if there is none of this id, or it was settled
        already."""
        request = self._sent(request_id, answered=True)
        return None if request is None else self._finish(request, status, detail)

    def _finish(self, request: Request, status: str, detail: str | None,
                fields: dict[str, str] | None = None) -> Request | None:
        done = self.store.resolve(request, status, detail, fields)
        if done is not None and request.kind == REKEY:
            self._rekeying_settled(refused=status != REKEYED)
        if done is not None and request.kind == LINKAGE:
            self.store.log(request.request_id, REQUESTER, request.operator, request.terminal,
                           status, counterpart=request.provider, pattern_id=request.pattern_id,
                           data_type=request.data_type, purpose=request.purpose,
                           content=None if fields is None else fields_json(fields))
        return done

    def _rekeying_settled(self, refused: bool) -> None:
        """Wake the requests waiting for their records' new codes (_current_code), a re-keying
        request settled either way: they look again, or, it `refused`, go with the code their
        record has (or none)."""
        self._rekeying.refused = refused
        self._rekeying.settled.set()
        self._rekeying = Rekeying()

    def _bound(self, request: Request, answer: BindingAnswer) -> Request | None:
        found = self.store.record(request.own_number)
        if found is None:  # removed as its binding was asked (between its read and its request)
            return self._finish(request, REJECTED, "its record was removed while its binding "
                                "was asked: nothing bound")
        candidates = [(c.link_code, CODEC.decode(
            sealing.open_sealed_by((self._key, *self._previous), c.sealed_attributes,
                                   request.request_id),
            FourAttributes)) for c in answer.candidates]
        decision = matching.decide(found[0], candidates)
        if not isinstance(decision, matching.Bind):
            reason = decision.reason if answer.status == FOUND else (
                f"{answer.status}: {answer.detail or decision.reason}")
        elif moved := self._of_another_unit(answer):
            reason = moved
        elif (other := self.store.bind(request.own_number, decision.link_code,
                                       answer.epoch)) is not None:
            reason = f"the link code is already bound to record {other}"
        else:
            if answer.epoch < self._epoch():  # answered before the unit moved: re-key it
                self._brought_to = None  # not all of them any more
                self._late_binding.set()
            return self._finish(request, BOUND, None)
        self.store.investigate(request.request_id, request.own_number, reason)
        return self._finish(request, INVESTIGATING, reason)

    def _of_another_unit(self, answer: BindingAnswer) -> str | None:
        """Why a binding answered under another link-code unit than the bindings are of (as the
        store noted, else as the directory gives: being brought to it) is not kept, the holder
        having moved (None: it is kept; an answer before v3 tells no unit)."""
        unit = self.store.bindings_unit()
        if unit is None:
            entry = self._own_entry()
            unit = answer.unit if entry is None else entry.link_unit
        if answer.unit in ("", unit):
            return None
        return (f"answered under link-code unit {answer.unit!r}, the bindings being of {unit!r} "
                "(the holder moved): bind it again")

    def _rekeyed(self, request: Request, applied: Applied) -> Request | None:
        """A re-keying request settled by what its answer did to the bindings (refused: what it
        did before the holder's move was seen)."""
        result = {"converted": str(applied.converted), "investigated": str(applied.investigated),
                  "epoch": str(applied.epoch)}
        if applied.refused is not None:
            before = (f"; {applied.converted} binding(s) re-keyed to epoch {applied.epoch} and "
                      f"{applied.investigated} to investigation before the move was seen, of "
                      "the unit left: unbound with the rest once the bindings follow the move"
                      if applied.converted or applied.investigated else "")
            return self._finish(request, REJECTED, applied.refused + before, result)
        return self._finish(request, REKEYED, f"epoch {applied.epoch}", result)

    def _sealed(self, query: ProviderQuery, fields: dict[str, str] | None) -> tuple[str, bytes]:
        """The answer's status, and the data sealed to the requester if found; REFUSED when the
        directory holds no usable key of the requester (that query only: the inbox goes on)."""
        try:
            requester_key = self.entry(query.requester).public_key
        except LookupError:
            return REFUSED, b""
        if fields is None:
            return NOT_FOUND, b""
        payload = CODEC.encode(Payload(query.data_type, fields))
        try:
            return FOUND, self._answers_out().seal(requester_key, payload, query.request_id,
                                                   query.requester)
        except ValueError as exc:  # a key that is not an X25519 public key one can seal to
            log.warning("%s: the directory's key of requester %s cannot be sealed to (%s): "
                        "query %s refused", self.holder, query.requester, exc, query.request_id)
            return REFUSED, b""

    def _answers_out(self) -> sealing.SessionSealer:
        """Signed sessions once this holder's entry publishes its signing key (requesters then
        refuse unsigned ones), unsigned until then (requesters expect them so); its entry
        publishing another (renewed, not yet taken), signed by the time its requesters refuse
        them from, none later (sealing.SignedPast)."""
        entry = self._own_entry()
        if entry is None or not entry.signing_key:
            return self._unsigned_out
        signer = self._signed_out.signer
        assert signer is not None, "made with one (_keys_taken)"
        until = (None if entry.signing_key == self._signing_public
                 else self._refused_from() or SIGNED_NEVER)
        if signer.until != until:
            self._signed_out.signer = replace(signer, until=until)
        return self._signed_out

    def _answer(self, query: ProviderQuery) -> Send | None:
        """Step ③ at the provider: find the person by link code, seal the data to the requester.
        A query answered before (read again after a restart) is answered as its entry says,
        whatever the store holds now: the data sent is the data logged. None: held back, its
        codes found on no record while the bindings wait for their re-keying (_hold_back)."""
        fields = self.store.provided(query.link_code, query.data_type, query.previous_link_code)
        if fields is None and self._hold_back(query):
            return None
        status, answer = self._answered(query, fields)
        if self._logged(query, status, fields):
            return answer
        before = self._provided_before(query)
        if before is None or (before.outcome, before.content) == (
                status, fields_json(fields) if status == FOUND else None):
            return answer  # none to go by (TIMED_OUT, refused since), or the same
        if before.outcome == FOUND and before.content is not None:
            return self._answered(query, json.loads(before.content))[1]
        return self._provider_answer(query, before.outcome, b"")

    def _hold_back(self, query: ProviderQuery) -> bool:
        """Whether the query, its codes found on no record, is held back in the store (in the
        transaction of its batch: a crash loses none), to be answered once the bindings are
        brought to their unit's key epoch (_answer_held): while some are of an older one, and
        not yet brought to it, the person may be bound under a code of an epoch the query's
        codes (this epoch's and the one before) are not of, a NOT_FOUND untrue. One answered
        before (read again) is answered as then."""
        epoch = self._epoch()
        if self._brought_to == epoch or not self.store.bound_before(epoch) or (
                self.store.provided_before(query.request_id, query.requester, query.pattern_id,
                                           query.data_type, query.deadline) is not None):
            return False
        self.store.hold(query, CODEC.encode(query))
        self._held_more.set()
        return True

    async def _held_ended_when_due(self) -> None:
        """End each query held back once its deadline passes (_answer_held: logged TIMED_OUT,
        not answered, the platform has timed it out), however long the re-keying it waits for
        takes: up to REKEY_WITHIN, four times the platform's answer timeout, and again after
        REKEY_AGAIN if it failed."""
        while True:
            self._held_more.clear()
            due = self.store.held_due()
            left = None if due is None else (due - self._now()).total_seconds() + HELD_PAST
            if left is None or left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._held_more.wait(), left)
                continue
            try:
                await self._answer_held()
            except Exception as exc:  # the broker away, say: it must not stop here
                log.error("%s: the queries held back past their deadline could not be ended "
                          "(%s): again in %.0f s", self.holder, exc, REKEY_AGAIN)
                await asyncio.sleep(REKEY_AGAIN)

    def _now(self) -> datetime:
        """The broker's time now (a query's deadline is of it), else this machine's."""
        return self.broker_time.now() or datetime.now(UTC)

    async def _answer_held(self) -> None:
        """Answer the queries held back (_hold_back), the bindings now brought to their unit's
        key epoch, each logged once; those past their deadline are logged TIMED_OUT (the
        platform timed them out: its requester told so, asking again if it will), not answered.
        Each is kept until the broker has its answer: a crash before leaves it to the next start,
        let go if its outbox has the answer, else answered again as logged, or, past its
        deadline, TIMED_OUT."""
        async with self._answering_held:  # another would answer the same ones again
            queries = [CODEC.decode(q, ProviderQuery) for q in self.store.held_queries()]
            if not queries:
                return
            sent = await self._answers_sent(queries, None)
            answered, late = await self._in_store(partial(self._held_answered, queries, sent))
            await deliver(self._producer, [answer for _, answer in answered])
            await self._in_store(partial(self._let_go, [query for query, _ in answered]))
        if late:
            log.warning("%s: %d quer(ies) held back while its bindings were re-keyed ended past "
                        "their deadline: not answered, the platform has timed them out",
                        self.holder, late)
        if answered:
            log.warning("%s: %d quer(ies) held back while its bindings were re-keyed answered",
                        self.holder, len(answered))

    def _held_answered(self, queries: list[ProviderQuery], sent: set[str] | None
                       ) -> tuple[list[tuple[ProviderQuery, Send]], int]:
        """The held queries answered (logged), in one transaction, and how many were past their
        deadline (by the broker's time now, after the outbox was read: nothing is answered that
        the platform has timed out), those logged so and let go, as are those whose answer the
        outbox has (`sent`: answered before a crash); one held back again (the unit moved on
        meanwhile) stays."""
        answered = []
        now, late = self._now(), 0
        with self.store.transaction():
            for query in queries:
                if query.deadline < now:
                    late += 1
                    self._read_late(query, sent)
                    self.store.let_go(query)
                elif sent is not None and query.request_id in sent:
                    self.store.let_go(query)
                elif (answer := self._answer(query)) is not None:
                    answered.append((query, answer))
        return answered, late

    def _let_go(self, queries: list[ProviderQuery]) -> None:
        """These held queries' answers are on the broker: kept no more."""
        with self.store.transaction():
            for query in queries:
                self.store.let_go(query)

    def _provided_before(self, query: ProviderQuery) -> Provided | None:
        """This holder's entry of an answer to the query, if it made one before."""
        before = self.store.provided_before(query.request_id, query.requester, query.pattern_id,
                                            query.data_type, query.deadline)
        return before if before is not None and before.outcome in ANSWERED else None

    def _read_late(self, query: ProviderQuery, sent: set[str] | None) -> None:
        """A query past its deadline: logged TIMED_OUT, not answered (its answer would be
        refused, its ticket expired); one whose answer was logged before, TIMED_OUT if that
        answer never reached the broker (not among those `sent`; None: not known, left as
        logged)."""
        if not self._logged(query, TIMED_OUT) and sent is not None:
            self._unsent(query, sent)

    def _unsent(self, query: ProviderQuery, sent: set[str]) -> None:
        """A query read late whose answer was logged before a restart, and never reached the
        broker (not among those `sent`): its entry ends TIMED_OUT, no data said sent."""
        if query.request_id not in sent and self.store.not_provided(
                query.request_id, TIMED_OUT, query.deadline):
            log.warning("%s: its answer to query %s, logged before a restart, never reached the "
                        "broker: logged TIMED_OUT, not provided", self.holder, query.request_id)

    def _answered(self, query: ProviderQuery,
                  fields: dict[str, str] | None) -> tuple[str, Send]:
        """The answer to the query with `fields` (None: not found), and its status."""
        try:
            status, sealed = self._sealed(query, fields)
            return status, self._provider_answer(query, status, sealed)
        except OversizedMessage as exc:  # not a message the broker takes: this query only
            log.error("%s: the answer to query %s is too large to send (%s): refused",
                      self.holder, query.request_id, exc)
            return REFUSED, self._provider_answer(query, REFUSED, b"")

    def _logged(self, query: ProviderQuery, status: str,
                fields: dict[str, str] | None = None) -> bool:
        """The provider's entry of the query in its log, one a query (by what the platform fixed
        at its approval: a copy read or dispatched again is the one entry, a request id used
        again another): the data sent with it if FOUND. False if it was made before."""
        return self.store.log(query.request_id, PROVIDER, SYSTEM, self.terminal, status,
                              counterpart=query.requester, pattern_id=query.pattern_id,
                              data_type=query.data_type, deadline=query.deadline,
                              content=fields_json(fields) if status == FOUND else None)

    def _provider_answer(self, query: ProviderQuery, status: str, sealed: bytes) -> Send:
        return send(topics.outbox(self.holder), query.link_code, ProviderAnswer(
            query.request_id, query.ticket, query.link_code, status, sealed))

    def _log_for_oversight(self, asked: HolderLogRequest) -> Send:
        """This holder's side of the access log (⑦–⑫) of the asked requests, sealed to the party
        that asked (the oversight body, or My Portal for a resident), signed as its answer
        sessions are (once its entry publishes its signing key: its askers then refuse unsigned
        ones); none if it has no key, or one that cannot be sealed to (that request only: the
        inbox goes on)."""
        entries = self._log_asked(asked)
        asker = holder_logs.asker(asked.request_id)
        try:
            return self._log_answer(asked, holder_logs.seal(
                self.entry(asker).public_key, asked.request_id, entries,
                self._answers_out().signer))
        except LookupError:
            log.error("%s: no key of %s to seal the log of %s to", self.holder, asker,
                      asked.request_id)
        except OversizedMessage as exc:  # the asker is to ask for fewer requests at a time
            log.warning("%s: the log of %s (%d entries) is too large to send (%s): answered "
                        "so", self.holder, asked.request_id, len(entries), exc)
            return self._log_answer(asked, None, too_large=True)
        except ValueError as exc:  # a key one cannot seal to (OversizedMessage is one: above)
            log.error("%s: the directory's key of %s cannot be sealed to (%s): the log of %s "
                      "answered unsealed", self.holder, asker, exc, asked.request_id)
        return self._log_answer(asked, None)

    def _log_asked(self, asked: HolderLogRequest) -> list[HolderLogEntry]:
        """The entries asked for: the oversight body's, every one of each request id; a
        resident's application's, those of the use of each id when it says it was exchanged
        (HolderLogRequest v2; from an older portal, which says not: the requester's alone), as
        a requester numbering its requests may use an id again, for another resident; told the
        requester of each (v3), this holder's side of it alone (_side), as another holder may
        use the same id for its own requests, of other residents."""
        if not holder_logs.is_application(asked.request_id):
            return [e for request_id in asked.request_ids if request_id
                    for e in self.store.access_log(request_id)]
        return [e for request_id, at, requester in zip_longest(
                    asked.request_ids, asked.exchanged_at, asked.requesters)
                if request_id for e in self.store.exchange_log(request_id, at,
                                                               self._side(requester))]

    def _side(self, requester: str | None) -> Side | None:
        """This holder's side of an exchange of `requester` (None: not told, an older portal's)."""
        if not requester:
            return None
        return Side(REQUESTER) if requester == self.holder else Side(PROVIDER, requester)

    def _log_answer(self, asked: HolderLogRequest, sealed: bytes | None,
                    too_large: bool = False) -> Send:
        """The answer to `asked`: its entries `sealed`, or none (too large, or not sealed),
        signed as sealed ones are (holder_logs.unsent_answer): its askers refuse unsigned ones."""
        answer = (HolderLogAnswer(asked.request_id, self.holder, datetime.now(UTC), (), sealed)
                  if sealed is not None else holder_logs.unsent_answer(
                      asked.request_id, self.holder, too_large, self._answers_out().signer))
        return send(topics.outbox(self.holder), asked.request_id, answer)
