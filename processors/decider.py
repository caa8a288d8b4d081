"""The decider: one place, keyed by request id, that makes each request's effects happen once.

It sends an approved query once, refuses a reused request id, relays the first answer, answers
with a timeout when the deadline passes, and forgets a request after the replay window. Events
arrive at least once (a crash replays them): an event whose source already decided a request
repeats that decision's effects, which holders and the audit log then drop as duplicates.
"""

from __future__ import annotations

import heapq
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime

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
)

DECISIONS = f"{acls.PLATFORM_APP}-decisions"
PARTITIONS = 8
TIMEOUT_SOURCE = "deadline"


def partition_of(request_id: str) -> int:
    return zlib.crc32(request_id.encode()) % PARTITIONS


def to_decider(request_id: str, message: object) -> Send:
    return send(DECISIONS, request_id, message, partition_of(request_id))


def to_partition(partition: int, message: object) -> Send:
    return send(DECISIONS, None, message, partition)


@dataclass(frozen=True, slots=True)
class Decision:
    """The request's new state (None: forget it), and what to send."""

    state: RequestState | None
    effects: list[Send] = field(default_factory=list)


def on_pending(p: Pending, state: RequestState | None, now: datetime,
               ctx: Context) -> Decision:
    if state is None:
        state = RequestState(p.request_id, PENDING, p.source, None, p.deadline,
                             p.deadline + 2 * ctx.replay_window, p.requester, p.provider,
                             p.pattern_id, p.legal_basis, p.data_type, p.person)
        return Decision(state, _dispatch(p, now))
    if state.source == p.source:  # the same request again, after a crash upstream
        return Decision(state, _dispatch(p, now) if state.status == PENDING else [])
    return Decision(state, reject(
        p.requester, p.request_id, "DUPLICATE_REQUEST",
        f"request id {p.request_id} was already used", now, p.source, LINKAGE,
        pattern_id=p.pattern_id, legal_basis=p.legal_basis, provider=p.provider,
        data_type=p.data_type, person=p.person))


def _dispatch(p: Pending, now: datetime) -> list[Send]:
    """Step ③: the query to the provider, and the approval in the access log."""
    return [
        Send(topics.inbox(p.provider), p.request_id, p.query),
        logged(p.request_id, "approved", now, LINKAGE, APPROVED, p.requester,
               pattern_id=p.pattern_id, legal_basis=p.legal_basis, provider=p.provider,
               data_type=p.data_type, person=p.person),
    ]


def on_outcome(o: Outcome, state: RequestState | None, now: datetime) -> Decision:
    """Step ④: relay the provider's (rewritten) answer, if it is the first."""
    if state is None or (state.status != PENDING and state.resolved_by != o.source):
        return Decision(state)  # unknown, or already answered or timed out: dropped
    answer = CODEC.decode(o.answer, LinkageAnswer)
    return Decision(replace(state, status=ANSWERED, resolved_by=o.source),
                    [Send(topics.inbox(state.requester), o.request_id, o.answer),
                     _answered(state, answer.status, now)])


def on_deadline(state: RequestState | None, now: datetime, ctx: Context) -> Decision:
    """No answer in time: the requester gets a timeout instead."""
    if state is None or now < state.deadline or (
            state.status != PENDING and state.resolved_by != TIMEOUT_SOURCE):
        return Decision(state)
    link_a, = ctx.codes.link_codes_of([state.person], [ctx.unit(state.requester)])
    timeout = LinkageAnswer(state.request_id, link_a, state.provider, state.pattern_id,
                            state.data_type, TIMED_OUT, b"")
    return Decision(replace(state, status=TIMED_OUT, resolved_by=TIMEOUT_SOURCE),
                    [send(topics.inbox(state.requester), state.request_id, timeout),
                     _answered(state, TIMED_OUT, now)])


def on_forget(state: RequestState | None, now: datetime) -> Decision:
    if state is None or state.status == PENDING or now < state.forget_at:
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

    def watch(self, state: RequestState) -> None:
        when, what = ((state.deadline, "expire") if state.status == PENDING
                      else (state.forget_at, "forget"))
        heapq.heappush(self._heap, (when, what, state.request_id))

    def due(self, now: datetime) -> dict[int, tuple[list[str], list[str]]]:
        """Requests whose deadline or memory ran out: partition → (to expire, to forget)."""
        found: dict[int, tuple[list[str], list[str]]] = {}
        while self._heap and self._heap[0][0] <= now:
            _, what, request_id = heapq.heappop(self._heap)
            expire, forget = found.setdefault(partition_of(request_id), ([], []))
            (expire if what == "expire" else forget).append(request_id)
        return found

    def __len__(self) -> int:
        return len(self._heap)
