"""The decider: one place, keyed by request id, that makes each request's effects happen once.

It sends an approved query once, refuses a reused request id (a copy its holder sent again, the same
bytes at another offset, of a request the broker took unknown to the holder, is refused to it alone:
the access log has the request once), relays the first answer, a linkage's or a binding's (to a
requester still active in the directory, else the request is logged timed out and a suspended
requester refused, as at approval: a decision recorded in its topic before it is made), answers with
a timeout when the deadline passes, or at once when its provider is seen suspended, its requester
refused as at approval (a suspended requester is refused so instead; and refuses to its
provider an answer that comes after it, which the provider logs not provided, in the access log as
an answer past its ticket's deadline is; a copy of an answer relayed that its provider sent again is
dropped, however late, read before the record of the answer relayed or after it: on_late), and
forgets a request once any copy of it would be refused as stale and its ticket has expired. A
request that comes once it may have been forgotten (received no later than the
latest it forgot, both by the broker's clock, or before the history an owner taking the partition
over at the record just read would rebuild, by that record's append time: so every owner, live or
rebuilding, takes the same requests as perhaps forgotten at each record of the topic) is refused as
stale, however long it waited: not decided again. A sweep forgets a settled request only once the
record it came in takes it as perhaps forgotten, so a sweep before a rebuild's history forgets
nothing its first record does not say. An answer can come before its request's event
(an owner deciding at once writes that event only after the query is acknowledged, and another
instance can write the answer first): it is held until the request comes and relayed when the
request is read (not in a rebuild: an owner holding it may have lost the partition before its
request came, so only relaying it again is sure; holders and the audit log drop copies); a rebuild
reads the history back for the answers to its requests recorded before it began (read_back), or
one whose answer was relayed would be pending, and timed out after it; or, when a
request received at the first sweep after it would be forgotten, refused to its provider as one to
no request (as is an answer the decider cannot read; a decision relaying one to no one held so is
made as recorded), unless its ticket's request came before the history a rebuild read: an owner
that knew that request decided the answer, relayed or refused it (_decided_before_history).
Events arrive at least once (a crash replays them): a pending request's own event again repeats
its dispatch, which the provider and the audit log drop as duplicates. Once a request is settled
(answered or timed out) only a small `Settled` is
kept: the effects of the event that settled it are delivered before that event's offset is committed
(or, for an event decided at once by the partition's owner, before its record is written and the
offset of the holder's message it came from committed), and a crash before then makes the event
itself come again; so a later copy of it has nothing left to do. Timeouts and forgetting (Sweep
events) are decided only as they are read back from the topic, never at once, and so is any event
whose decision a sweep on its way may change (Decider.in_order): every owner replaying a partition
decides a timeout, the forgetting, a request and an answer in the same order. A request refused at
approval by the platform's views (a Refusal), or a re-keying answered by them (one too), is decided
as the first judgement of its request id:
another instance, its view of the directory behind, may judge the same holder message otherwise,
and the second judgement is a copy, dropped (on_refusal); so is an answer refused to its provider,
no active holder as of its broker time by its reader's view (Outcome.refused): made only if it
is the first judgement of the answer, to a request not answered (on_outcome); and an answer
refused to its provider, read again, whatever its request became since.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import logging
import math
import sys
import zlib
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import NamedTuple, TypedDict, TypeGuard

from audit.events import ANSWER, APPROVED, BINDING, EPOCH, REJECTED, SUSPENDED, AccessLogEvent
from broker import acls, topics
from processors import binding
from processors.access_log import logged
from processors.approval import UNKNOWN_HOLDER, Refused, provider_not_active, suspended
from processors.context import Context
from processors.rejection import refusal, reject
from renkei.envelope import Send, runs, send
from schemas.codec import CODEC, NewerVersion, SchemaError, UnknownSchema
from schemas.messages import (
    ANSWERED,
    PENDING,
    TIMED_OUT,
    BindingAnswer,
    LinkageAnswer,
    Outcome,
    Pending,
    Refusal,
    RegistryAnswer,
    RequestState,
    Sweep,
)

log = logging.getLogger(__name__)
DECISIONS = f"{acls.PLATFORM_APP}-decisions"
PARTITIONS = 8
SWEEP_BYTES = 256 * 1024  # the request ids one Sweep names at most: well under codec.MAX_BYTES
DUPLICATE = "DUPLICATE_REQUEST"
SOURCE_WIDTH = 64  # bits of a packed Settled's source (a fingerprint), above its status bits
SOURCE_BITS = (1 << SOURCE_WIDTH) - 1
ENDINGS = (ANSWERED, TIMED_OUT, REJECTED)  # a Settled's status, packed as its index
STATUS_WIDTH = 2  # bits of a packed Settled's status
DIGEST_BYTES = 8  # of a holder message's digest: an Avro long
TIMED_OUT_FIRST = "the request timed out before its answer came"  # refusing a late answer
UNANSWERED = {TIMED_OUT: TIMED_OUT_FIRST,  # the words refusing an answer to a request ended so
              REJECTED: "the request was refused at approval"}
# the words refusing an answer to a request pending whose answer was refused to its provider
PROVIDER_REFUSED_FIRST = ("an answer to the request was refused to its provider, no active holder "
                          "in the directory, before: the request ends unanswered")
TICKET_EXPIRED = "the ticket expired at"  # the words refusing an answer past its deadline
# how long a request decided at once may wait for its record to land, generously (its effects
# acknowledged first): a sweep made meanwhile lands before it
LANDING = timedelta(seconds=10)
# the time Decider.rebuild hands Decider.handle, read by none: a rebuild makes no effects (they
# already happened), and a Sweep is decided at its own time
UNTIMED = EPOCH
LOOK_UPS = {acls.REGISTRY: topics.REGISTRY_IN, acls.AUTHORITY: topics.AUTHORITY_IN}  # bindings'


def partition_of(request_id: str) -> int:
    return zlib.crc32(request_id.encode()) % PARTITIONS


def to_decider(request_id: str, message: object) -> Send:
    return send(DECISIONS, request_id, message, partition_of(request_id))


def to_partition(partition: int, message: object) -> Send:
    return send(DECISIONS, None, message, partition)


@dataclass(frozen=True, slots=True)
class Settled:
    """What is kept of an answered, timed-out or refused request until it is forgotten: enough
    to refuse its id again, to refuse a copy of it to its holder alone (or drop one judged
    again), and to drop a late answer (or refuse it to its provider, if the request was not
    answered), in a fraction of a pending request's memory. Packed into one integer: its digest,
    its source, then two bits for its status (ENDINGS)."""

    status: str
    source: int  # fingerprint of the holder message it came from
    digest: int  # of that message (message_digest)

    def packed(self) -> int:
        return ((self.digest << SOURCE_WIDTH | self.source) << STATUS_WIDTH
                | ENDINGS.index(self.status))

    @classmethod
    def unpacked(cls, packed: int) -> Settled:
        return cls(ENDINGS[packed & (1 << STATUS_WIDTH) - 1],
                   (packed >> STATUS_WIDTH) & SOURCE_BITS, packed >> (SOURCE_WIDTH + STATUS_WIDTH))


def fingerprint(source: str) -> int:
    """64 bits standing for a holder message's topic:partition:offset."""
    return int.from_bytes(hashlib.blake2b(source.encode(), digest_size=8).digest())


def message_digest(key: bytes, holder: str, value: bytes) -> int:
    """64 bits (signed, an Avro long) standing for a holder's message, its holder and bytes,
    keyed by the platform's digest key (MasterKeys.digest_key), so a holder cannot search offline
    for two messages of one digest, whose approvals would share an id (copies_name)."""
    return int.from_bytes(hashlib.blake2b(b"%b\0%b" % (holder.encode(), value), key=key,
                                          digest_size=DIGEST_BYTES).digest(), signed=True)


State = RequestState | Settled  # a RequestState is a pending request
DecisionEvent = Pending | Refusal | Outcome | Sweep | RegistryAnswer
Judged = Pending | Refusal  # a holder's request as approval judged it


def _ended_unanswered(state: State | None) -> TypeGuard[Settled]:
    """Whether the request ended without an answer: timed out (by a sweep, or its answer relayed
    to no one) or refused at approval."""
    return isinstance(state, Settled) and state.status != ANSWERED


def decision_event(value: bytes) -> DecisionEvent:
    """A decision event as read from the decider's topic; NewerVersion if a newer version of
    Renkei wrote it."""
    try:
        return CODEC.decode(value, Pending, Refusal, Outcome, Sweep, RegistryAnswer)
    except UnknownSchema as exc:
        raise NewerVersion(DECISIONS, "platform instance", exc) from None


class DecisionRecord(NamedTuple):
    """A record of a decision partition: its append time and its events."""

    at: datetime
    events: list[DecisionEvent]


@dataclass(frozen=True, slots=True)
class Held:
    """The answers that came under a request id no request is known by, in order, each once
    (Partition.hold); kept until `until`, set by the first sweep after the first of them (None:
    none yet)."""

    outcomes: tuple[Outcome, ...] = ()
    until: datetime | None = None


@dataclass
class Partition:
    """One decision partition's requests: the pending in full, those of a linkage listed by
    their provider too, the settled as one integer each, listed by the second they are to be
    forgotten; the few answers that came before their request, or past their deadline to it
    pending; and the latest second whose requests may have been forgotten."""

    pending: dict[str, RequestState] = field(default_factory=dict)
    settled: dict[str, int] = field(default_factory=dict)
    forgetting: dict[int, list[str]] = field(default_factory=dict)
    held: dict[str, Held] = field(default_factory=dict)
    # answers past their deadline to a request pending (its answer relayed may be recorded after
    # them): decided once it is settled (on_late)
    late: dict[str, tuple[Outcome, ...]] = field(default_factory=dict)
    bound: dict[str, int] = field(default_factory=dict)  # a binding answered: its answer's digest
    # the answers refused to their provider (the fingerprints of their sources), kept
    # as their request is: a copy of one read again is dropped, whatever its request became
    # (on_outcome); as many as its provider sent under its ticket by the ticket's deadline
    refused: dict[str, set[int]] = field(default_factory=dict)
    forgotten_through: int = 0
    # the start of the history it was rebuilt from (None: the partition's first record): a
    # request received before it, a clock skew's margin after, may have been decided before it
    known_from: datetime | None = None
    # the ids of the pending linkage requests by their provider (a binding's look-up has none a
    # directory suspends), made from `pending` and kept in step with it by `put`
    by_provider: dict[str, set[str]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        for state in self.pending.values():
            self._list(state)

    def _list(self, state: RequestState) -> None:
        if state.kind != BINDING:
            self.by_provider.setdefault(state.provider, set()).add(state.request_id)

    def _unlist(self, state: RequestState) -> None:
        if state.kind != BINDING:
            listed = self.by_provider[state.provider]
            listed.discard(state.request_id)
            if not listed:
                del self.by_provider[state.provider]

    def pending_to(self, providers: Iterable[str]) -> list[str]:
        """The ids of the linkage requests pending to `providers`."""
        return [r for provider in providers for r in self.by_provider.get(provider, ())]

    def get(self, request_id: str) -> State | None:
        found = self.pending.get(request_id)
        if found is not None:
            return found
        packed = self.settled.get(request_id)
        return None if packed is None else Settled.unpacked(packed)

    def put(self, request_id: str, state: State) -> None:
        if isinstance(state, RequestState):
            self.pending[request_id] = state
            self._list(state)  # listed already if pending: its provider is the same (on_outcome)
            return
        was = self.pending.pop(request_id, None)  # its id string is the one its deadline holds
        if was is None:  # settled already (ended TIMED_OUT by an answer relayed to no one), or
            self.settled[request_id] = state.packed()  # by its first event (forget_at)
            return
        self._unlist(was)
        self.settled[was.request_id] = state.packed()
        self.forget_at(was.request_id, was.forget_at)

    def forget_at(self, request_id: str, at: datetime) -> None:
        """Forget a settled request at `at`: one settled from pending (put), or by its first
        event (never pending), as it would be once settled, pending first."""
        self.forgetting.setdefault(math.ceil(at.timestamp()), []).append(request_id)

    def hold(self, outcome: Outcome) -> None:
        """Keep an answer to a request not known (yet), until its request comes or is too late:
        once, as first judged (another view's judgement of it, Outcome.refused or not, is a
        copy); a decision relaying one to no one (Outcome.ended) as recorded."""
        held = self.held.get(outcome.request_id, Held())
        if not any(h == outcome or (h.source == outcome.source and h.ended is outcome.ended is None)
                   for h in held.outcomes):
            self.held[outcome.request_id] = replace(held, outcomes=(*held.outcomes, outcome))

    def wait(self, outcome: Outcome) -> None:
        """Keep an answer past its deadline to a pending request until the request is settled."""
        waiting = self.late.get(outcome.request_id, ())
        if outcome not in waiting:
            self.late[outcome.request_id] = (*waiting, outcome)

    def release(self, request_id: str) -> tuple[Outcome, ...]:
        """The answers held for a request that has come, in the order they came."""
        held = self.held.pop(request_id, None)  # none, mostly: no Held made for nothing
        return () if held is None else held.outcomes

    def forget_until(self, at: datetime, held_until: datetime) -> list[Outcome]:
        """Forget every settled request and held answer whose time has come by `at`, a settled
        request only once it is taken as perhaps forgotten already (by the record read: so a
        sweep read before a rebuild's history forgets no more than its first record says);
        answers held that no sweep has timed yet are kept until `held_until`. The answers
        forgotten, whose request never came."""
        through = min(at.timestamp(), self.forgotten_through)
        for second in [s for s in self.forgetting if s <= through]:
            for request_id in self.forgetting.pop(second):
                self.settled.pop(request_id, None)
                self.bound.pop(request_id, None)
                self.refused.pop(request_id, None)
        forgotten: list[Outcome] = []
        for request_id, held in list(self.held.items()):
            if held.until is None:
                self.held[request_id] = replace(held, until=held_until)
            elif held.until <= at:
                forgotten += self.held.pop(request_id).outcomes
        return forgotten

    def forgotten_by(self, forget_at: datetime) -> None:
        """Take every request to be forgotten by `forget_at` as perhaps forgotten already."""
        self.forgotten_through = max(self.forgotten_through, math.ceil(forget_at.timestamp()))

    def may_be_forgotten(self, request_id: str, forget_at: datetime) -> bool:
        """Whether a request not known, to be forgotten at `forget_at`, may have been decided and
        forgotten."""
        return self.may_have_forgotten(forget_at) and self.get(request_id) is None

    def may_have_forgotten(self, forget_at: datetime) -> bool:
        """Whether a request to be forgotten at `forget_at` may have been forgotten, its id free
        for another: no later than the latest second forgotten (whatever the clocks say now)."""
        return math.ceil(forget_at.timestamp()) <= self.forgotten_through

    def next_forgetting(self, lag: int) -> int | None:
        """The second the next settled requests (`lag` seconds after their time: once a record
        then takes them as perhaps forgotten) or held answers are to be forgotten (None: none
        are; 0: an answer is held that no sweep has timed yet)."""
        held = (0 if h.until is None else math.ceil(h.until.timestamp())
                for h in self.held.values())
        return min(itertools.chain((s + lag for s in self.forgetting), held), default=None)


@dataclass(frozen=True, slots=True)
class Decision:
    """The request's new state (None: unknown, nothing to keep), and what to send: made only
    when asked for, as a rebuild keeps the state of events whose effects already happened; an
    answer it refuses to its provider is kept with its request (Partition.refused)."""

    state: State | None
    make: Callable[[], list[Send]] = list
    refused: str | None = None  # the source of the answer it refuses to its provider

    @property
    def effects(self) -> list[Send]:
        return self.make()


def on_pending(p: Pending, state: State | None, now: datetime, forget_at: datetime) -> Decision:
    """The decision on a request read now, known as `state`; new, it is to be forgotten at
    `forget_at` (forgotten_at). A binding settled by its answer before this event came knows no
    digest (on_registry_answer): this event, of the same holder message, tells it, so a copy of
    it sent again is refused as one, as when the event came first."""
    if state is None:
        state = RequestState(p.request_id, PENDING, p.source, None, p.deadline, forget_at,
                             _shared(p.requester), _shared(p.provider), _shared(p.pattern_id),
                             _shared(p.legal_basis), _shared(p.data_type), p.person, p.digest,
                             _shared(p.kind))
        return Decision(state, partial(_dispatch, p, now))
    if _same_source(state, p.source):  # the same request again, after a crash upstream
        if isinstance(state, RequestState):
            return Decision(state, partial(_dispatch, p, now))
        return Decision(replace(state, digest=state.digest or p.digest))
    if p.digest != 0 and p.digest == state.digest:  # 0: an event before Pending v2, not told
        return Decision(state, partial(_copy_refused, p, now))
    return Decision(state, partial(_refused, p, DUPLICATE,
                                   f"request id {p.request_id} was already used", now))


def _refused(p: Pending, reason: str, detail: str, now: datetime) -> list[Send]:
    """The request's rejection, to its requester and in the access log, as of its kind (a
    binding's names no pattern, data type or person)."""
    return reject(p.requester, p.request_id, reason, detail, now, p.source, p.kind,
                  **_named(p))


class Named(TypedDict):
    """What a request names in its access-log events."""

    pattern_id: str | None
    legal_basis: str | None
    provider: str | None
    data_type: str | None
    person: str | None


def _named(r: Pending | RequestState) -> Named:
    """What a request (its Pending, or its state) names in its access-log events: what it left
    empty (a binding: no pattern, legal basis, data type or person) named as none, and a
    binding's provider too, as its answer's events (binding.answered) name it: the registry or
    authority it asks is no holder, and an answer read before its request cannot tell which."""
    return Named(pattern_id=r.pattern_id or None, legal_basis=r.legal_basis or None,
                 provider=None if r.kind == BINDING else r.provider,
                 data_type=r.data_type or None, person=r.person or None)


def on_refusal(r: Refusal, state: State | None, now: datetime) -> Decision:
    """A request approval refused by the platform's views (linkage.requests: a suspension, the
    pattern list, its link code; or a re-keying answered or refused by the directory,
    rekey.answer), decided as the first judgement of its request id: known to none,
    it is settled REJECTED (a re-keying answered too: no provider or registry answers one) and
    made as recorded (_refusal_made); its holder message judged again (the same source), pending
    or settled already, it is a copy, dropped: one instance, killed before committing it,
    approved it by a view that had not read a suspension dated before it, or refused it. The
    same bytes its holder sent again (the same digest, another source) are refused to it alone,
    as on_pending refuses them; another message under a used id is refused as recorded all the
    same, its state left as it is, as it was before refusals came here."""
    if state is None:
        return Decision(Settled(REJECTED, fingerprint(r.source), r.digest),
                        partial(_refusal_made, r))
    if _same_source(state, r.source):
        log.info("request %s refused (%s) is a copy of one judged already: dropped",
                 r.request_id, r.source)
        return Decision(state)
    if r.digest == state.digest:
        return Decision(state, partial(_copy_refused, r, now))
    return Decision(state, partial(_refusal_made, r))


def _refusal_made(r: Refusal) -> list[Send]:
    """A refusal's Rejection (a re-keying's answer) to its requester and its access-log event,
    as linkage (rekey) made them."""
    return [Send(topics.inbox(r.requester), r.request_id, r.rejection),
            Send(topics.AUDIT, r.request_id, r.logged)]


def _copy_refused(j: Judged, now: datetime) -> list[Send]:
    """A copy its holder sent again, refused to it alone: the access log has its request once."""
    log.info("request %s came again, a copy its holder sent again: refused, not logged",
             j.request_id)
    return [refusal(j.requester, j.request_id, DUPLICATE,
                    f"request {j.request_id} came again: its first copy is the one answered", now)]


def _stale(p: Pending, now: datetime, ctx: Context) -> list[Send]:
    """A request that came after the decider may have forgotten it (a copy read again, or one
    that waited in the decider's topic, through a take-over perhaps): refused, not decided
    again."""
    return _refused(p, "STALE_REQUEST", f"received {_received(p.deadline, ctx).isoformat()}: its "
                    "decision may be forgotten, it is not decided again", now)


def _received(deadline: datetime, ctx: Context) -> datetime:
    """When a request of this deadline was received (an answer timeout before it)."""
    return deadline - ctx.answer_timeout


def forgotten_at(p: Judged, ctx: Context) -> datetime:
    """When the request of this event may be forgotten (_forgotten_by its deadline)."""
    return _forgotten_by(p.deadline, ctx)


def _forgotten_by(deadline: datetime, ctx: Context) -> datetime:
    """When a request of this deadline may be forgotten (_forget_at its receipt)."""
    return _forget_at(_received(deadline, ctx), ctx)


def _forget_at(received: datetime, ctx: Context) -> datetime:
    """When a request received then may be forgotten and its id used again: once any copy of it
    would be stale, and never before its ticket expires (as it would under an answer timeout
    longer than the replay window and clock skew), so no old ticket answers a new request under
    its id."""
    return max(ctx.stale_from(received), received + ctx.answer_timeout)


def _forgettable(appended: datetime, ctx: Context) -> datetime:
    """The latest forget time (forgotten_at) of the requests a record appended then takes as
    perhaps forgotten: received before the history an owner taking over there would rebuild
    begins, a clock skew's margin after."""
    return _forget_at(ctx.remembered_from(appended, appended) + ctx.clock_skew, ctx)


class ReadBack(NamedTuple):
    """The requests whose Pending a rebuild's history has that an answer recorded before the
    history began may settle, and from when such an answer may have been recorded."""

    requests: frozenset[str]
    since: datetime


def read_back(history: list[DecisionRecord], since: datetime, ctx: Context) -> ReadBack | None:
    """What a history written from `since` on is to be read back for (None: nothing): the
    requests whose Pending it has, received before it began, a clock skew's margin after (the
    broker takes an answer after its request, by their clocks): an owner deciding one at once
    writes its Pending only after its query is acknowledged, and its answer, written by another
    instance, can land first, before the history; rebuilt without it, the request would be
    pending and timed out after its answer was relayed. From a clock skew before the first of
    them was received. A Pending its record takes as perhaps forgotten (refused as stale, never
    pending) asks for none."""
    received = {e.request_id: _received(e.deadline, ctx) for record in history
                for e in record.events if isinstance(e, Pending)
                and forgotten_at(e, ctx) > _forgettable(record.at, ctx)
                and _before_history(e.deadline, since, ctx)}
    if not received:
        return None
    return ReadBack(frozenset(received), min(received.values()) - ctx.clock_skew)


def answers_to(records: list[DecisionRecord], requests: Collection[str]) -> list[DecisionRecord]:
    """The records read back before a history (read_back), each with only its answers to
    `requests` (its other events are before the history: its state holds none of them): put
    before the history, they are held until their request is read, and relayed then (not
    again: a rebuild makes no effects), as the owner that decided the request at once relayed
    them, its Pending in hand."""
    read: list[DecisionRecord] = []
    for record in records:
        answers: list[DecisionEvent] = [e for e in record.events if isinstance(
            e, Outcome | RegistryAnswer) and e.request_id in requests]
        if answers:
            read.append(DecisionRecord(record.at, answers))
    return read


def _before_history(deadline: datetime, since: datetime, ctx: Context) -> bool:
    """Whether the request of this deadline was received before a history written from `since`
    on began, a clock skew's margin after (its Pending is recorded after the receipt, and the
    broker takes an answer after its request, by their clocks): read_back,
    _decided_before_history."""
    return _received(deadline, ctx) < since + ctx.clock_skew


def forgetting_lag(ctx: Context) -> int:
    """How many seconds after its forget time a settled request can be forgotten: when a
    record appended then takes it as perhaps forgotten (_forgettable)."""
    return math.ceil((UNTIMED - _forgettable(UNTIMED, ctx)).total_seconds())


def near_forgetting(ctx: Context) -> timedelta:
    """How long after now (negative: before) falls the deadline of a request that may be
    forgotten LANDING after now (forgotten_at is its deadline plus a span the same for all)."""
    return UNTIMED + ctx.answer_timeout + LANDING - _forget_at(UNTIMED, ctx)


def answered_from(state: RequestState) -> str:
    """The topic a pending request's answer comes from: its provider's outbox, or, for a
    binding, the registry's (which answers one by personal number, the authority passing it on)."""
    return topics.REGISTRY_OUT if state.kind == BINDING else topics.outbox(state.provider)


def _settled(state: RequestState, status: str) -> Settled:
    """What is kept of a pending request once `status` settles it."""
    return Settled(status, fingerprint(state.source), state.digest)


def _same_source(state: State, source: str) -> bool:
    if isinstance(state, RequestState):
        return state.source == source
    return state.source == fingerprint(source)


def _shared(name: str) -> str:
    """One copy of a holder, pattern or data-type name for all the requests remembered."""
    return sys.intern(name)


def copies_name(source: str, digest: int) -> str:
    """What a request's approval and answer entries are named by after their '@': what its
    copies share, its holder message's digest (16 hex digits), so a copy sent again is logged
    once whichever copy an owner dispatched; the message's topic:partition:offset for an event
    from before digests (0). A request that uses a forgotten id again is logged as itself, not
    dropped as a replay of the one before: its bytes differ (the same bytes are stale by then)."""
    return source if digest == 0 else digest.to_bytes(DIGEST_BYTES, "big", signed=True).hex()


def _dispatch(p: Pending, now: datetime) -> list[Send]:
    """Step ③: the query to the provider, and the approval in the access log (copies_name); a
    binding's look-up to the registry or the authority (its answer is what is logged)."""
    if p.kind == BINDING:
        return [Send(LOOK_UPS[p.provider], p.request_id, p.query)]
    return [
        Send(topics.inbox(p.provider), p.request_id, p.query),
        logged(p.request_id, f"approved@{copies_name(p.source, p.digest)}", now, p.kind,
               APPROVED, p.requester, pattern_id=p.pattern_id, legal_basis=p.legal_basis,
               provider=p.provider, data_type=p.data_type, person=p.person),
    ]


def on_outcome(o: Outcome, state: State | None, now: datetime, ctx: Context,
               refused: Collection[int] = ()) -> Decision:
    """Step ④: relay the provider's (rewritten) answer, if it is the first, and of the exchange
    pending under its id (one of another exchange, whose id was used again or that answers
    under it, is refused to its provider, as is one that comes after its request timed out, or
    to a requester no longer active in the directory: _relayed, on_ended). One its reader
    refused, its provider no active holder in the directory as of its broker time by that view
    (Outcome.refused), is the first judgement of its answer if its request is pending: refused
    to its provider as linkage judged it (_provider_refused), the request left to end as one
    whose provider was suspended since its approval does (on_deadline), that refusal kept as its
    resolution (RequestState.resolved_by), and a later judgement of the same answer (its
    source), relayed by a view behind, a copy, dropped; another answer to it (its query
    dispatched again, answered again by its provider resumed meanwhile) is refused to its
    provider too, which logged the first not provided: the request ends unanswered; to a request
    answered, it is dropped as a second answer is, a copy of the answer relayed that a view
    ahead judged again (or its provider sent again) perhaps. An answer refused to its provider
    (one of `refused`, the fingerprints of the sources of those refused under its id:
    Partition.refused) is told so once: a copy of it, read again by whichever view, is dropped
    whatever its request became since (timed out, or ended relaying it to no one)."""
    if fingerprint(o.source) in refused:
        log.info("an answer to request %s (%s) is a copy of one refused already: dropped",
                 o.request_id, o.source)
        return Decision(state)
    if o.ended is not None:
        return on_ended(o, o.ended, state)
    if _ended_unanswered(state):
        return Decision(state, partial(_relayed_to_no_one, o, UNANSWERED[state.status], now),
                        o.source)
    if not isinstance(state, RequestState):
        return Decision(state)  # unknown (the decider holds it), or answered: dropped
    if o.refused is not None:  # the request to end unanswered: kept as its resolution
        return Decision(replace(state, resolved_by=o.refused), partial(_provider_refused, o, now),
                        o.source)
    if state.resolved_by is not None:
        return Decision(state, partial(_relayed_to_no_one, o, PROVIDER_REFUSED_FIRST, now),
                        o.source)
    answer = _readable(o)
    if answer is None:
        return Decision(state, partial(_unreadable, o, now), o.source)
    exchange = (answer.provider, answer.pattern_id, answer.data_type)
    if exchange != (state.provider, state.pattern_id, state.data_type):
        log.warning("an answer to request %s is of another exchange (%s, %s, %s): refused",
                    o.request_id, *exchange)
        return Decision(state, partial(_refused_answer, o, answer, "the request pending under "
                                       "its id is of another exchange", now), o.source)
    return Decision(_settled(state, ANSWERED), partial(_relayed, o, answer, state, now, ctx))


def expired_at(o: Outcome) -> datetime | None:
    """The deadline of the answer's ticket, if the broker took the answer past it (None: in
    time, or not told, before Outcome v4)."""
    if o.deadline is None or o.answered_at is None or o.answered_at <= o.deadline:
        return None
    return o.deadline


def expired(deadline: datetime, at: datetime) -> str:
    """The words refusing an answer the broker took `at`, past its ticket's `deadline`."""
    return f"{TICKET_EXPIRED} {deadline.isoformat()}, the answer came at {at.isoformat()}"


def _awaits(state: RequestState | None, deadline: datetime) -> bool:
    """Whether a late answer under a ticket due by `deadline` waits for the request pending
    under its id (`state`) to be settled: it is its ticket's request."""
    return state is not None and state.deadline == deadline


def on_late(o: Outcome, state: State | None, mine: bool) -> Decision:
    """An answer the broker took past its ticket's deadline (linkage.answers passes on those it
    would have relayed in time), decided once its request is no longer pending (one pending
    waits, Partition.late: an owner relaying the first answer at once records it after its
    effects, so a copy can be read before that record, by the next owner after a crash): to its
    request answered (`mine`: the request known under its id is its ticket's, not one reusing
    an id perhaps forgotten), it is dropped, as a second answer in time is, a copy its provider
    sent again (restarted before it knew the broker took the first) or another answer, so the
    provider's log keeps its first entry (FOUND) and the access log the answer relayed alone;
    any other, to a request timed out (by a sweep, after it perhaps), not known or perhaps
    forgotten, is refused to its provider, which logs it not provided, and in the access log
    under its own source, at its broker time: as linkage refused it before, the same whichever
    owner decides it."""
    if mine and isinstance(state, Settled) and state.status == ANSWERED:
        log.info("an answer to request %s came past its ticket's deadline (%s), the request "
                 "answered: dropped, a copy or a second answer", o.request_id, o.source)
        return Decision(state)
    assert o.deadline is not None and o.answered_at is not None  # expired_at told it
    return Decision(state, partial(_relayed_to_no_one, o, expired(o.deadline, o.answered_at),
                                   o.answered_at))


def on_registry_answer(a: RegistryAnswer, state: State | None, first: int | None, said: int,
                       now: datetime, ctx: Context) -> Decision:
    """The registry's answer (digest `said`) to a binding look-up, decided on its request's
    state: pending, relayed and logged (_bound), its request ANSWERED; answered by this answer
    (`first`) already, relayed again (a replay: holders and the audit log drop the copies;
    _bound, again); another answer to it (the registry answering again after a restart, the resident
    moved or withdrawn meanwhile), one to a request timed out (its holder told so), or to another
    request under its id, dropped. One to a request not known is relayed and settles it: its look-up
    came before this version, or its request's event comes after it (an owner deciding at once
    writes it only after the look-up is acknowledged: its digest, then 0, is what that event tells,
    on_pending), and is then done."""
    if isinstance(state, RequestState):
        if (state.kind, state.source, state.requester) != (BINDING, a.source, a.requester):
            return _dropped(a, "is not of the request pending under its id", state)
        return Decision(_settled(state, ANSWERED), partial(_bound, a, now, ctx))
    if state is None:
        return Decision(Settled(ANSWERED, fingerprint(a.source), 0), partial(_bound, a, now, ctx))
    if _ended_unanswered(state):
        return _dropped(a, f"came after its request ended {state.status}", state)
    if not _same_source(state, a.source):
        return _dropped(a, "is not of the request answered under its id", state)
    if first != said:  # a registry restarted answers its look-ups again, each sealed anew
        log.info("binding %s: the registry answered it again otherwise (a restart, its "
                 "candidates sealed anew, or the resident changed meanwhile): the first "
                 "answer stands, this one dropped", a.request_id)
        return Decision(state)
    return Decision(state, partial(_bound, a, now, ctx, again=True))


def _bound(a: RegistryAnswer, now: datetime, ctx: Context, again: bool = False) -> list[Send]:
    """The registry's first answer to its requester, and in the access log (binding.answered);
    relayed to no one if the requester is no longer an active holder in the directory as of the
    answer's broker time (a.answered_at: suspended since its binding was approved, the
    platform's view of the directory then behind), as a linkage answer is (_relayed): the binding
    logged TIMED_OUT for that reason (binding.ended) and a suspended requester refused, a
    decision recorded in the decider's topic first and made as it is read back (on_ended). The
    registry or authority is told nothing: no holder, it logs nothing not provided. That answer
    read `again` (or given again, the same but for its broker time) is relayed again; to a
    requester no longer active as of its broker time, not at all: the first's decision stands
    (relayed, or to no one, its decision on its way)."""
    if (gone := ctx.inactive_reason(a.requester, a.answered_at)) is None:
        return binding.answered(a, now, ctx)
    if again:
        log.info("binding %s: the registry's answer again is relayed to no one: %s is no longer "
                 "an active holder in the directory (%s)", a.request_id, a.requester, gone)
        return []
    return [_ended(Outcome(a.request_id, a.source, b"", answered_at=a.answered_at), a.requester,
                   gone, binding.ended(a, now, gone, ctx), now, ctx)]


def _dropped(a: RegistryAnswer, why: str, state: State) -> Decision:
    log.warning("binding %s: the registry's answer %s: dropped", a.request_id, why)
    return Decision(state)


def _readable(o: Outcome) -> LinkageAnswer | None:
    """The rewritten answer an Outcome carries (None: it cannot be read, and is refused)."""
    try:
        return CODEC.decode(o.answer, LinkageAnswer)
    except SchemaError as exc:
        log.warning("the answer to request %s cannot be read (%s): refused", o.request_id, exc)
        return None


def _relayed_to_no_one(o: Outcome, why: str, now: datetime) -> list[Send]:
    """An answer with no request pending for it: to one timed out before it came (taken by the
    broker by its ticket's deadline, but after the sweep in the decider's partition, or read
    late from its outbox), or held for one that never came, forgotten. Relayed to no one, so its
    provider is told (INVALID_TICKET, `why`; INTERNAL_ERROR if it cannot be read), and logs it
    not provided; the access log has the refusal as it has one of an answer past its ticket's
    deadline (each copy under its own source). A relayed answer leaves its request ANSWERED,
    never refused so. One its reader refused, its provider inactive (Outcome.refused), is
    refused so (_provider_refused)."""
    if o.refused is not None:
        return _provider_refused(o, now)
    answer = _readable(o)
    if answer is None:
        return _unreadable(o, now)
    return _refused_answer(o, answer, why, now)


def _provider_refused(o: Outcome, now: datetime) -> list[Send]:
    """An answer refused to its provider, no active holder in the directory as of the answer's
    broker time by the view that read it (Outcome.refused: SUSPENDED or UNKNOWN_HOLDER), at that
    time, as linkage refused it before it came here: in the access log under the answer's
    source."""
    assert o.refused is not None and o.answered_at is not None  # linkage.answers told both
    answer = _readable(o)
    if answer is None:
        return _unreadable(o, now)
    return _refused_answer(o, answer, _no_longer_active(answer.provider), o.answered_at,
                           o.refused)


def _no_longer_active(holder: str) -> str:
    return f"{holder} is no longer an active holder in the directory"


def _never_requested(o: Outcome, at: datetime) -> list[Send]:
    """An outcome held for a request that never came, forgotten `at`: an answer is relayed to no
    one, its provider refused; a decision relaying one to no one (Outcome.ended: made by an owner
    that knew its request, whose record came before the history of the owner holding it) is made
    as recorded (_unrelayed), not refused as an answer (a binding's carries none): an owner that
    held it before may have made nothing, and its requester, provider and the audit log drop
    copies."""
    if o.ended is not None:
        return _unrelayed(o, o.ended)
    return _relayed_to_no_one(o, f"no request {o.request_id} came to the platform in time", at)


def _decided_before_history(o: Outcome, known_from: datetime | None, ctx: Context) -> bool:
    """Whether an answer held, its request never come, may answer a request whose Pending was
    recorded before the history its partition was rebuilt from (`known_from`): its ticket's
    request received before it, a clock skew's margin after (the Pending is recorded after the
    receipt, by the broker's clocks). The owner that decided the answer then knew the request,
    and relayed or refused it: forgotten unsaid, not refused as one to no request. A decision
    relaying one to no one (Outcome.ended) is made as recorded all the same (_never_requested)."""
    if (o.ended is not None or o.deadline is None or known_from is None
            or not _before_history(o.deadline, known_from, ctx)):
        return False
    log.info("request %s, received before the history rebuilt here began, never came: the "
             "answer held for it, which an owner knowing it decided, is forgotten, not refused",
             o.request_id)
    return True


def _refused_answer(o: Outcome, answer: LinkageAnswer, why: str, now: datetime,
                    reason: str = "INVALID_TICKET") -> list[Send]:
    """An answer relayed to no one, refused to its provider (`reason`, `why`), which logs it not
    provided; the access log has the refusal under the answer's source."""
    return reject(answer.provider, o.request_id, reason,
                  f"{why}: the answer was relayed to no one", now, o.source, ANSWER,
                  pattern_id=answer.pattern_id, data_type=answer.data_type, deadline=o.deadline)


def _unreadable(o: Outcome, now: datetime) -> list[Send]:
    """An answer the decider cannot read, refused to the provider whose outbox it came from
    (none if its source names no holder's outbox: only logged), which logs it not provided."""
    provider = topics.holder_of_source(o.source)
    if provider is None:
        log.error("the answer to request %s cannot be read and came from %s, no holder's "
                  "outbox: no one is told", o.request_id, o.source)
        return []
    return reject(provider, o.request_id, "INTERNAL_ERROR", "the platform cannot read the answer: "
                  "it was relayed to no one", now, o.source, ANSWER, deadline=o.deadline)


def _relayed(o: Outcome, answer: LinkageAnswer, state: RequestState, now: datetime,
             ctx: Context) -> list[Send]:
    """The answer to its requester, and in the access log; relayed to no one if the requester is
    no longer an active holder in the directory as of the answer's broker time (o.answered_at;
    made so since its request was approved, linkage judging only the provider, or while the
    answer was held for its request; Context.active): judged as of that time, an answer one
    owner relayed before it crashed, its record not landed, is relayed too by the owner reading
    it again, the requester made inactive since or not. Relayed to no one, that decision goes to
    the decider's topic first (the request settled, in its order), with the TIMED_OUT that ends
    the request in the access log, and is made as it is read back (on_ended), once the answer's
    offset is committed (Platform.ends_ahead), so an owner replaying the answer after a crash
    never relays what another refused, nor one replaying that decision asks the directory again.
    A provider made inactive since is not asked again: it answered while active, and its
    requester, told nothing else now that its request is settled, is answered. A suspended
    requester is refused (_told_ended) by that decision too, which carries the refusal
    (Outcome.told)."""
    if (gone := ctx.inactive_reason(state.requester, o.answered_at)) is not None:
        return [_ended(o, state.requester, gone, _answered(state, TIMED_OUT, now, gone), now,
                       ctx)]
    return [Send(topics.inbox(state.requester), o.request_id, o.answer),
            _answered(state, answer.status, now)]


def _ended(o: Outcome, requester: str, gone: str, ended: Send, now: datetime,
           ctx: Context) -> Send:
    """The decision relaying an answer (`o`) to no one, its `requester` no longer an active
    holder in the directory (`gone`: Context.inactive_reason): its request's TIMED_OUT in the
    access log (`ended`) and the refusal telling a suspended requester (_told_ended), recorded
    in the decider's topic (Outcome.ended, Outcome.told), made as they are read back
    (on_ended)."""
    log.info("the answer to request %s is relayed to no one: %s is no longer an active "
             "holder in the directory (%s)", o.request_id, requester, gone)
    told = _told_ended(requester, o.request_id, gone, o.answered_at, now, ctx)
    return to_decider(o.request_id, replace(o, ended=ended.value,
                                            told=None if told is None else told.value))


def on_ended(o: Outcome, ended: bytes, state: State | None) -> Decision:
    """An answer an owner relayed to no one, its requester no longer active in the directory
    (Outcome.ended, that owner's decision; a binding's too, its registry told nothing:
    _unrelayed): refused to its provider for the reason that
    decision logged (SUSPENDED or UNKNOWN_HOLDER; one logged with none, before they were told
    apart, is UNKNOWN_HOLDER, as it was refused then), which logs it not provided, a suspended
    requester refused (Outcome.told), and its request logged TIMED_OUT, as one whose answer
    linkage refused is at its deadline, as that owner made them, by whichever owner reads it;
    and settled TIMED_OUT, unless a timeout, or this decision read before, ended it already: a
    later copy of the answer, refused so, is dropped (on_outcome)."""
    if state is None or _ended_unanswered(state):
        return Decision(state)
    settled = (_settled(state, TIMED_OUT) if isinstance(state, RequestState)
               else replace(state, status=TIMED_OUT))
    return Decision(settled, partial(_unrelayed, o, ended), o.source)


def _unrelayed(o: Outcome, ended: bytes) -> list[Send]:
    """The refusal to its provider of an answer an owner relayed to no one (none to a binding's
    registry or authority, no holder), that to its requester if suspended (Outcome.told), and
    its request's TIMED_OUT, at that owner's time: the same whichever owner makes them."""
    event = CODEC.decode(ended, AccessLogEvent)
    told = [] if o.told is None else [Send(topics.inbox(event.requester), o.request_id, o.told)]
    refused = [] if event.kind == BINDING else _refused_answer(
        o, CODEC.decode(o.answer, LinkageAnswer), _no_longer_active(event.requester),
        event.occurred_at, event.reason or UNKNOWN_HOLDER)
    return [*refused, *told, Send(topics.AUDIT, o.request_id, ended)]


def on_deadline(state: State | None, now: datetime, ctx: Context) -> Decision:
    """A sweep of `now` names the request: no answer came in time, or none is to come before the
    deadline, its provider no active holder in the directory when the sweep was made (suspended
    since its request was approved: Decider.passed). A pending request is ended whatever the
    directory says as the sweep is read, so every owner, live or rebuilding, ends it at this
    sweep: the requester gets a timeout instead, or a refusal saying why (_timed_out)."""
    if not isinstance(state, RequestState):
        return Decision(state)
    return Decision(_settled(state, TIMED_OUT), partial(_timed_out, state, now, ctx))


def _provider_gone(state: RequestState, at: datetime, ctx: Context) -> Refused | None:
    """The refusal, as at approval (approval.provider_not_active), of a linkage request whose
    provider is no active holder in the directory as of `at` (None: it is one, or the request is
    a binding's look-up, whose registry or authority is no holder)."""
    if state.kind == BINDING or ctx.active(state.provider, at):
        return None
    return provider_not_active(state.provider, ctx.directory.get(state.provider), at)


def _timed_out(state: RequestState, now: datetime, ctx: Context) -> list[Send]:
    """The timeout to its requester, and in the access log, both as of `now` or the deadline,
    whichever is first; none if the requester is no longer an active holder in the directory
    then, as an answer to it would not be relayed: a suspended one refused instead
    (_told_ended), one not in it told nothing (logged); to a provider no longer an active one
    then, a refusal as at approval (SUSPENDED, since when; approval.provider_not_active) instead,
    not a timeout, whose answer, if it comes, is refused to it (on_outcome): a plain timeout if
    it was resumed between the sweep naming the request early and its reading; its access-log
    event says why (Context.inactive_reason)."""
    at = min(now, state.deadline)
    if (gone := ctx.inactive_reason(state.requester, at)) is not None:
        told = _told_ended(state.requester, state.request_id, gone, at, now, ctx)
        log.info("request %s timed out: its requester %s is no longer an active holder in the "
                 "directory (%s): %s", state.request_id, state.requester, gone,
                 "no one is told" if told is None else "it is refused so")
        return [*([] if told is None else [told]), _answered(state, TIMED_OUT, now, gone)]
    if (refused := _provider_gone(state, at, ctx)) is not None:
        log.info("request %s ended unanswered: its provider %s is no longer an active holder in "
                 "the directory (%s): its requester is refused so", state.request_id,
                 state.provider, refused.reason)
        return [refusal(state.requester, state.request_id, refused.reason, refused.detail, now),
                _answered(state, TIMED_OUT, now, refused.reason)]
    if state.kind == BINDING:  # no candidates: its holder investigates, as a registry's refusal
        unit = ctx.unit(state.requester)
        unanswered = BindingAnswer(state.request_id, TIMED_OUT, f"the {state.provider} did not "
                                   f"answer by {state.deadline.isoformat()}", (), unit.epoch,
                                   unit.unit)
        return [send(topics.inbox(state.requester), state.request_id, unanswered),
                _answered(state, TIMED_OUT, now)]
    link_a, = ctx.codes.link_codes_of([state.person], [ctx.unit(state.requester)])
    timeout = LinkageAnswer(state.request_id, link_a, state.provider, state.pattern_id,
                            state.data_type, TIMED_OUT, b"")
    return [send(topics.inbox(state.requester), state.request_id, timeout),
            _answered(state, TIMED_OUT, now)]


def _told_ended(requester: str, request_id: str, gone: str, at: datetime | None, now: datetime,
                ctx: Context) -> Send | None:
    """The refusal telling a requester suspended as of `at` (None: now; `gone`: inactive_reason)
    since its request was approved (the platform's view of the directory had not read the
    suspension yet) that the request ended, as it is refused at approval (SUSPENDED, the
    suspension `at` falls in), no data: so its holder, which hears nothing else of it, does not
    keep it sent for good. None for a requester not in the directory (UNKNOWN_HOLDER): its inbox
    may be gone."""
    if gone != SUSPENDED:
        return None
    return refusal(requester, request_id, SUSPENDED,
                   suspended("the requester", ctx.directory[requester], at), now)


def _answered(state: RequestState, outcome: str, now: datetime,
              reason: str | None = None) -> Send:
    """The answer (or timeout) in the access log, named as its approval is (copies_name): a
    pending request's state, rebuilt or not, keeps the source and digest of the request it stands
    for. A timeout relayed to no one has the `reason` its requester is not told."""
    return logged(state.request_id, f"answered@{copies_name(state.source, state.digest)}", now,
                  BINDING if state.kind == BINDING else ANSWER, outcome, state.requester,
                  reason=reason, **_named(state))


class Deadlines:
    """When each pending request's deadline falls due (in memory; rebuilt from the decision
    events after a restart or rebalance): each request once, while its partition is ours."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str]] = []
        self._watched: dict[str, datetime] = {}

    def watch(self, request_id: str, deadline: datetime) -> None:
        if self._watched.get(request_id) != deadline:
            self._watched[request_id] = deadline
            heapq.heappush(self._heap, (deadline, request_id))

    def hasten(self, request_id: str, at: datetime) -> None:
        """A request watched due `at` if that is sooner (one due already is not watched again)."""
        if self._watched.get(request_id, at) > at:
            self.watch(request_id, at)

    def settle(self, request_id: str) -> None:
        """No deadline for a request answered or timed out (its heap entry is dropped when due)."""
        self._watched.pop(request_id, None)

    def due(self, now: datetime) -> list[str]:
        found = []
        while self._heap and self._heap[0][0] <= now:
            deadline, request_id = heapq.heappop(self._heap)
            if self._watched.get(request_id) == deadline:  # else: moved, or not ours any more
                del self._watched[request_id]
                found.append(request_id)
        return found

    def keep_only(self, partitions: set[int]) -> None:
        """Stop watching the requests of partitions given away: their new owner watches them."""
        for request_id in [r for r in self._watched if partition_of(r) not in partitions]:
            del self._watched[request_id]


class Decider:
    """The state of the decision partitions this instance owns, and what each event does to it.

    The state is a pure function of each partition's events (a sweep carries its own time), so
    an instance that takes a partition over rebuilds it from the partition's recent past
    (`rebuild`), and needs no changelog of its own.
    """

    def __init__(self) -> None:
        self.states: dict[int, Partition] = {}
        self.deadlines = Deadlines()
        self._swept: dict[int, datetime] = {}
        self._named_early: set[str] = set()  # named before their deadlines in a sweep on its way

    def keep_only(self, partitions: set[int]) -> set[int]:
        """Drop the state of partitions no longer ours; return the new ones (to rebuild)."""
        for partition in set(self.states) - partitions:
            del self.states[partition]
        self.deadlines.keep_only(partitions)
        self._named_early = {r for r in self._named_early if partition_of(r) in partitions}
        return partitions - set(self.states)

    def rebuild(self, partition: int, history: list[DecisionRecord], ctx: Context,
                since: datetime | None = None) -> None:
        """A partition's state from its recent records, whose effects already happened, each
        read as a live owner reads it (`read`, then its events), written from `since` on (None:
        all the partition ever had)."""
        self.states[partition] = Partition(known_from=since)
        for record in history:
            self.read(partition, record.at, ctx)
            for message in record.events:
                self.handle(partition, message, UNTIMED, ctx, effects=False, rebuilding=True)

    def read(self, partition: int, appended: datetime, ctx: Context) -> None:
        """A record of the partition read, appended then: a request received before the history
        an owner taking over there would rebuild begins (a clock skew's margin after) may have
        been decided and forgotten, whoever reads on."""
        self.states[partition].forgotten_by(_forgettable(appended, ctx))

    def handle(self, partition: int, message: DecisionEvent, now: datetime, ctx: Context,
               effects: bool = True, rebuilding: bool = False) -> list[Send]:
        """Apply one decision event to its partition's state; return its effects, made at `now`
        (a Sweep's at its own time), none if `effects` is false: they already happened; but
        answers held for a request are relayed when it is read, unless `rebuilding`."""
        states = self.states[partition]
        if isinstance(message, Judged):
            forget_at = forgotten_at(message, ctx)
            if states.may_be_forgotten(message.request_id, forget_at):
                if not effects:
                    return []
                return (_stale(message, now, ctx) if isinstance(message, Pending)
                        else _refusal_made(message))  # refused as it was before it came here
            requested = self._judged(states, message, now, forget_at, effects)
            for held in states.release(message.request_id):  # answers that came before it
                requested += self._outcome(states, held, now, ctx, not rebuilding)
            return requested
        if isinstance(message, RegistryAnswer):
            return self._registry_answer(states, message, now, ctx, effects)
        if isinstance(message, Outcome):
            if (deadline := expired_at(message)) is not None:  # its request's, unless forgotten
                mine = not states.may_have_forgotten(_forgotten_by(deadline, ctx))
                if mine and _awaits(states.pending.get(message.request_id), deadline):
                    states.wait(message)  # the answer relayed may be recorded after it
                    return []
                return self._decide(states, message.request_id,
                                    partial(on_late, message, mine=mine), effects)
            if states.get(message.request_id) is None:  # its request may come after it
                states.hold(message)
                return []
            return self._outcome(states, message, now, ctx, effects)
        made: list[Send] = []
        for request_id in message.expire:  # each decided on the state the one before it left;
            try:  # one whose timeout cannot be made costs only itself, not the sweep's others
                made += self._decide(states, request_id, partial(on_deadline, now=message.at,
                                                                 ctx=ctx), effects)
            except Exception:
                log.exception("the timeout of request %s could not be made", request_id)
            self._named_early.discard(request_id)
        # forgetting last: the decisions were made before it; an answer held is kept as long
        # as its request, had it come at this sweep (after the answer, so later), would be
        for never in states.forget_until(message.at, _forget_at(message.at, ctx)):
            if effects and not _decided_before_history(never, states.known_from, ctx):
                made += _never_requested(never, message.at)
        if partition in self._swept and self._swept[partition] <= message.at:
            del self._swept[partition]  # our last sweep is done: what is due needs a new one
        return made

    def _judged(self, states: Partition, message: Judged, now: datetime, forget_at: datetime,
                effects: bool) -> list[Send]:
        """A request as approval judged it, decided on its state (on_pending, on_refusal); one
        settled by its refusal, known to none before, forgotten as it would be pending first."""
        if isinstance(message, Pending):
            return self._decide(states, message.request_id, partial(
                on_pending, message, now=now, forget_at=forget_at), effects)
        new = states.get(message.request_id) is None
        made = self._decide(states, message.request_id, partial(on_refusal, message, now=now),
                            effects)
        if new:
            states.forget_at(message.request_id, forget_at)
        return made

    def _outcome(self, states: Partition, o: Outcome, now: datetime, ctx: Context,
                 effects: bool) -> list[Send]:
        """An answer decided on its request's state and the answers refused under its id
        (on_outcome)."""
        return self._decide(states, o.request_id, partial(
            on_outcome, o, now=now, ctx=ctx, refused=states.refused.get(o.request_id, ())),
            effects)

    def _registry_answer(self, states: Partition, a: RegistryAnswer, now: datetime,
                         ctx: Context, effects: bool) -> list[Send]:
        """The registry's answer decided on its request's state (on_registry_answer); one to
        a request not known that may be forgotten is dropped: it may not be the first."""
        assert a.requested_at is not None  # binding.to_decide stamped it
        forget_at, state = _forget_at(a.requested_at, ctx), states.get(a.request_id)
        if states.may_be_forgotten(a.request_id, forget_at):
            log.warning("binding %s: the registry's answer came once its look-up may be "
                        "forgotten: dropped, it may not be the first", a.request_id)
            return []
        said = message_digest(ctx.digest_key, a.requester,  # the same answer given again too
                              CODEC.encode(replace(a, answered_at=None)))
        decision = on_registry_answer(a, state, states.bound.get(a.request_id), said, now, ctx)
        if decision.state is not state:  # relayed first: its request settled by it
            states.bound[a.request_id] = said
            if state is None:  # to be forgotten as its request would be
                states.forget_at(a.request_id, forget_at)
        return self._decide(states, a.request_id, lambda _: decision, effects)

    def _decide(self, states: Partition, request_id: str,
                decide: Callable[[State | None], Decision], effects: bool) -> list[Send]:
        """Decide on the request's current state, keep its new state, return the effects (and,
        once it is settled, those of the answers past their deadline that waited for it)."""
        decision = decide(states.get(request_id))
        late: tuple[Outcome, ...] = ()
        if decision.refused is not None and decision.state is not None:  # kept as its request
            states.refused.setdefault(request_id, set()).add(fingerprint(decision.refused))
        if decision.state is not None and decision.state != states.get(request_id):
            states.put(request_id, decision.state)
            if isinstance(decision.state, RequestState):
                self.deadlines.watch(request_id, decision.state.deadline)
            else:
                self.deadlines.settle(request_id)
                late = states.late.pop(request_id, ())
        made = decision.effects if effects else []
        for answer in late:  # answers past their deadline that waited for it to be settled
            made += self._decide(states, request_id, partial(on_late, answer, mine=True), effects)
        return made

    def holding(self) -> set[int]:
        """The partitions holding answers for requests not read yet (rarely any)."""
        return {partition for partition, states in self.states.items() if states.held}

    def in_order(self, partition: int, request_id: str, event: object, now: datetime,
                 near: timedelta) -> bool:
        """Whether an event of the request is to be decided in the topic's order, as a sweep is,
        not at once, for a sweep on its way (or made before the event's record lands) may change
        what it decides: an event of a request pending past its deadline by the latest of `now`
        and our sweep of its partition on its way (which may be timing it out) or named before
        it in one, its provider suspended (passed), settled (a sweep may forget it, its id then
        free) or with answers held (a sweep may refuse them, forgotten); an answer to a request
        not known (held as long as the next sweep says); a new request whose deadline falls
        `near` (near_forgetting) after that latest or sooner (a sweep forgetting others
        received with it makes it stale). Only our own sweeps are known here: a partition taken
        over, whose last owner's sweeps may be unread, is decided in order until it is read to
        its end as of the take-over (Platform.behind)."""
        states = self.states[partition]
        latest = max(now, self._swept.get(partition, now))
        state = states.pending.get(request_id)
        if state is not None:
            return state.deadline <= latest or request_id in self._named_early
        return (request_id in states.settled or request_id in states.held
                or not isinstance(event, Judged) or event.deadline <= latest + near)

    def passed(self, now: datetime, ctx: Context) -> dict[str, str]:
        """The pending requests whose deadlines passed by `now`, or whose providers are no
        active holders in the directory as of `now` (suspended since their approval: ended at
        once, on_deadline), each once, with the topic its answer comes from (answered_from): to
        time out once every answer the broker took there by then is read (unread.Unread), an
        answer its provider gave while still active relayed first."""
        gone = {holder for holder in ctx.directory if not ctx.active(holder, now)}
        for states in self.states.values() if gone else ():
            for request_id in states.pending_to(gone):
                self.deadlines.hasten(request_id, now)
                self._named_early.add(request_id)
        found = {}
        for request_id in self.deadlines.due(now):
            state = self.states[partition_of(request_id)].pending.get(request_id)
            if state is not None:
                found[request_id] = answered_from(state)
        return found

    def sweeps(self, now: datetime, ctx: Context, expire: Iterable[str]) -> list[Send]:
        """Sweep events timing out the requests `expire` of partitions still ours (past their
        deadlines: passed), and for the partitions with requests to forget."""
        expiring: dict[int, list[str]] = {}
        for request_id in expire:
            if partition_of(request_id) in self.states:
                expiring.setdefault(partition_of(request_id), []).append(request_id)
        lag = forgetting_lag(ctx)
        for partition, states in self.states.items():
            second = states.next_forgetting(lag)
            swept = self._swept.get(partition)
            if second is not None and second <= now.timestamp() and (
                    swept is None or swept.timestamp() < second):
                expiring.setdefault(partition, [])
        self._swept.update((partition, now) for partition in expiring)
        return [to_partition(partition, Sweep(now, run))
                for partition, ids in expiring.items() for run in runs(ids, _id_cost, SWEEP_BYTES)]

    def unsent(self, sweeps: list[Send]) -> None:
        """Sweeps that could not be sent: their deadlines and forgetting fall due again."""
        for sweep in sweeps:
            unsent = CODEC.decode(sweep.value, Sweep)
            for request_id in unsent.expire:
                self.deadlines.watch(request_id, unsent.at)
        self._swept.clear()


def _id_cost(request_id: str) -> int:
    return len(request_id.encode()) + 8  # its bytes and Avro's length prefix, generously
