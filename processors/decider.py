"""The decider: one place, keyed by request id, that makes each request's effects happen once.

It sends an approved query once, refuses a reused request id, relays the first answer, answers
with a timeout when the deadline passes, and forgets a request after the replay window. Events
arrive at least once (a crash replays them): a pending request's own event again repeats its
dispatch, which the provider and the audit log drop as duplicates. Once a request is settled
(answered or timed out) only a small `Settled` is kept: the effects of the event that settled it
are delivered before that event's offset is committed, and a crash before then makes the event
itself come again; so a later copy of it has nothing left to do.
"""

from __future__ import annotations

import heapq
import sys
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from broker import acls, topics
from processors.access_log import ANSWER, APPROVED, LINKAGE, logged
from processors.context import Context
from processors.rejection import reject
from renkei.envelope import Send, send
from schemas.codec import CODEC
from schemas.messages import (
    ANSWERED,
    PENDING,
    TIMED_OUT,
    LinkageAnswer,
    Outcome,
    Pending,
    RequestState,
    Sweep,
)

DECISIONS = f"{acls.PLATFORM_APP}-decisions"
PARTITIONS = 8


def partition_of(request_id: str) -> int:
    return zlib.crc32(request_id.encode()) % PARTITIONS


def to_decider(request_id: str, message: object) -> Send:
    return send(DECISIONS, request_id, message, partition_of(request_id))


def to_partition(partition: int, message: object) -> Send:
    return send(DECISIONS, None, message, partition)


@dataclass(frozen=True, slots=True)
class Settled:
    """What is kept of an answered or timed-out request until it is forgotten: enough to refuse
    its id again and to drop late answers, in a fraction of a pending request's memory."""

    status: str
    source: str
    forget_at: datetime


State = RequestState | Settled  # a RequestState is a pending request


@dataclass(frozen=True, slots=True)
class Decision:
    """The request's new state (None: forget it), and what to send."""

    state: State | None
    effects: list[Send] = field(default_factory=list)


def on_pending(p: Pending, state: State | None, now: datetime, ctx: Context) -> Decision:
    if state is None:
        state = RequestState(p.request_id, PENDING, p.source, None, p.deadline,
                             p.deadline + 2 * ctx.replay_window,
                             _shared(p.requester), _shared(p.provider), _shared(p.pattern_id),
                             _shared(p.legal_basis), _shared(p.data_type), p.person)
        return Decision(state, _dispatch(p, now))
    if state.source == p.source:  # the same request again, after a crash upstream
        return Decision(state, _dispatch(p, now) if isinstance(state, RequestState) else [])
    return Decision(state, reject(
        p.requester, p.request_id, "DUPLICATE_REQUEST",
        f"request id {p.request_id} was already used", now, p.source, LINKAGE,
        pattern_id=p.pattern_id, legal_basis=p.legal_basis, provider=p.provider,
        data_type=p.data_type, person=p.person))


def _shared(name: str) -> str:
    """One copy of a holder, pattern or data-type name for all the requests remembered."""
    return sys.intern(name)


def _dispatch(p: Pending, now: datetime) -> list[Send]:
    """Step ③: the query to the provider, and the approval in the access log."""
    return [
        Send(topics.inbox(p.provider), p.request_id, p.query),
        logged(p.request_id, "approved", now, LINKAGE, APPROVED, p.requester,
               pattern_id=p.pattern_id, legal_basis=p.legal_basis, provider=p.provider,
               data_type=p.data_type, person=p.person),
    ]


def on_outcome(o: Outcome, state: State | None, now: datetime) -> Decision:
    """Step ④: relay the provider's (rewritten) answer, if it is the first."""
    if not isinstance(state, RequestState):
        return Decision(state)  # unknown, or already answered or timed out: dropped
    answer = CODEC.decode(o.answer, LinkageAnswer)
    return Decision(Settled(ANSWERED, state.source, state.forget_at),
                    [Send(topics.inbox(state.requester), o.request_id, o.answer),
                     _answered(state, answer.status, now)])


def on_deadline(state: State | None, now: datetime, ctx: Context) -> Decision:
    """No answer in time: the requester gets a timeout instead."""
    if not isinstance(state, RequestState) or now < state.deadline:
        return Decision(state)
    link_a, = ctx.codes.link_codes_of([state.person], [ctx.unit(state.requester)])
    timeout = LinkageAnswer(state.request_id, link_a, state.provider, state.pattern_id,
                            state.data_type, TIMED_OUT, b"")
    return Decision(Settled(TIMED_OUT, state.source, state.forget_at),
                    [send(topics.inbox(state.requester), state.request_id, timeout),
                     _answered(state, TIMED_OUT, now)])


def on_forget(state: State | None, now: datetime) -> Decision:
    if not isinstance(state, Settled) or now < state.forget_at:
        return Decision(state)
    return Decision(None)


def _answered(state: RequestState, outcome: str, now: datetime) -> Send:
    return logged(state.request_id, "answered", now, ANSWER, outcome, state.requester,
                  pattern_id=state.pattern_id, legal_basis=state.legal_basis,
                  provider=state.provider, data_type=state.data_type, person=state.person)


class Timers:
    """When each request's deadline and forgetting fall due, by decider partition (in memory;
    rebuilt from the table after a restart or rebalance)."""

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, str, str]] = []

    def watch(self, request_id: str, state: State) -> None:
        when, what = ((state.deadline, "expire") if isinstance(state, RequestState)
                      else (state.forget_at, "forget"))
        heapq.heappush(self._heap, (when, what, request_id))

    def due(self, now: datetime) -> dict[int, tuple[list[str], list[str]]]:
        """Requests whose deadline or memory ran out: partition → (to expire, to forget)."""
        found: dict[int, tuple[list[str], list[str]]] = {}
        while self._heap and self._heap[0][0] <= now:
            _, what, request_id = heapq.heappop(self._heap)
            expire, forget = found.setdefault(partition_of(request_id), ([], []))
            (expire if what == "expire" else forget).append(request_id)
        return found

    def retry(self, sweep: Sweep) -> None:
        """A sweep that could not be sent: its requests fall due again."""
        for request_id in sweep.expire:
            heapq.heappush(self._heap, (sweep.at, "expire", request_id))
        for request_id in sweep.forget:
            heapq.heappush(self._heap, (sweep.at, "forget", request_id))

    def __len__(self) -> int:
        return len(self._heap)


class Decider:
    """The state of the decision partitions this instance owns, and what each event does to it.

    The state is a pure function of each partition's events (a sweep carries its own time), so
    an instance that takes a partition over rebuilds it from the partition's recent past
    (`rebuild`), and needs no changelog of its own.
    """

    def __init__(self) -> None:
        self.states: dict[int, dict[str, State]] = {}
        self.timers = Timers()

    def keep_only(self, partitions: set[int]) -> set[int]:
        """Drop the state of partitions no longer ours; return the new ones (to rebuild)."""
        for partition in set(self.states) - partitions:
            del self.states[partition]
        return partitions - set(self.states)

    def rebuild(self, partition: int, history: list[Pending | Outcome | Sweep],
                ctx: Context) -> None:
        """A partition's state from its recent events, whose effects already happened."""
        self.states[partition] = {}
        for message in history:
            self.handle(partition, message, datetime.now(UTC), ctx)

    def handle(self, partition: int, message: Pending | Outcome | Sweep, now: datetime,
               ctx: Context) -> list[Send]:
        """Apply one decision event to its partition's state; return its effects."""
        states = self.states[partition]
        if isinstance(message, Sweep):
            decisions = [(r, on_deadline(states.get(r), message.at, ctx)) for r in message.expire]
            decisions += [(r, on_forget(states.get(r), message.at)) for r in message.forget]
        elif isinstance(message, Pending):
            decisions = [(message.request_id,
                          on_pending(message, states.get(message.request_id), now, ctx))]
        else:
            decisions = [(message.request_id,
                          on_outcome(message, states.get(message.request_id), now))]
        effects: list[Send] = []
        for request_id, decision in decisions:
            before = states.get(request_id)
            if decision.state is None:
                states.pop(request_id, None)
            elif decision.state != before:
                states[request_id] = decision.state
                self.timers.watch(request_id, decision.state)
            effects += decision.effects
        return effects

    def pending(self) -> int:
        return sum(1 for states in self.states.values() for s in states.values()
                   if isinstance(s, RequestState))
