"""What a chaos run checks afterwards, the same for every run: each linkage request a requester
recorded since the run began (its own store's requests table, not the requests the run's load
happened to follow) answered once, logged once by its requester and, if a provider answered it,
once by that provider, and audited once per step — approved, then answered with the outcome the
requester got (it may have a late answer's refusal audited too, once a copy: its provider answering
too late, or sending again after a crash an answer that came in time, its copy refused past the
ticket's deadline under its own source). The chaos runs send lawful requests only: one REJECTED is
a failure too.
Each binding request a holder recorded (the crash run sends some) answered once to it, BOUND or
INVESTIGATING (a refusal the registry or the authority gave it, or its timeout, ends as one), its
binding events each in the audit store once (or, timed out, its timeout), and, by personal
number, its look-up once in the authority's log (by the four attributes, never).
A request whose requester or provider (a binding whose holder) was suspended while it was on its
way (a `Suspension`: sent before the holder was resumed, answered after its suspension began) may
end refused SUSPENDED instead, the reason its requester recorded: at approval, audited as that
refusal alone, or after it (ended early, or its answer relayed to no one), audited TIMED_OUT with
its answer refused to its provider SUSPENDED (or late) once a copy; a binding with no look-up, or
its look-up's events and that TIMED_OUT; each still answered once, logged once, never lost."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from audit.events import SUSPENDED, AccessLogEvent
from audit.heads import Signer
from audit.store import AuditStore, Query
from audit.store import default_path as audit_path
from authority import store as authority_store
from broker import topics
from holders.client import BINDING, BOUND, INVALID_TICKET, INVESTIGATING, LINKAGE, REJECTED
from holders.store import REQUESTER, SENT
from holders.store import default_path as holder_path
from renkei import sqlite
from schemas.messages import FOUND, NOT_FOUND, TIMED_OUT

APPROVED, ANSWERED = "approved", "answered"  # the audit steps of a lawful linkage request
APPROVAL = (APPROVED, "APPROVED")  # its approved step, with its outcome (processors.access_log)
# a provider's answer that came after its request timed out or past its ticket's deadline, refused
# (processors.decider.on_outcome, on_late: a copy of one relayed, dropped there, is refused if its
# request may be forgotten by then): as audit_steps reads it
LATE_ANSWER_REFUSED = ("rejected", INVALID_TICKET)
FROM_A_PROVIDER = (FOUND, NOT_FOUND)  # outcomes a provider answered (and logged) itself
BINDING_ANSWERS = (BOUND, INVESTIGATING)  # a binding's outcomes at its holder, but a refusal
BINDING_STEP = "binding:"  # how each audit event of a binding's answer begins (processors.binding)
# a binding no answer came for by its deadline (the registry or the authority killed, slow back):
# answered TIMED_OUT, its holder investigating, the answer coming after dropped
# (processors.decider._timed_out, on_registry_answer)
BINDING_TIMED_OUT = (ANSWERED, TIMED_OUT)
LATE = 2.0  # seconds to look once more for anything doubled, which arrives late
# a request refused because a holder was suspended (processors.approval), as audit_steps reads it
REFUSED_SUSPENDED = ("rejected", SUSPENDED)


@dataclass(frozen=True, slots=True)
class Suspension:
    """A holder suspended during a run: from before its suspension was asked (`since`) until
    its resumption had returned (`until`)."""

    holder: str
    since: datetime
    until: datetime

    def during(self, holders: Collection[str | None], sent_at: datetime,
               answered_at: datetime | None) -> bool:
        """Whether a request of these holders, sent and answered (None: not yet) then, was on its
        way while this holder was suspended."""
        return (self.holder in holders and sent_at < self.until
                and (answered_at is None or answered_at > self.since))


@dataclass(frozen=True, slots=True)
class Asked:
    """A linkage request as its requester's store holds it: refused, the reason recorded
    (`reason`); `suspended`: its requester or provider suspended while it was on its way
    (`provider`: its provider)."""

    request_id: str
    status: str
    reason: str | None = None
    suspended: bool = False
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """A binding request as its holder's store holds it; by_number: looked up by the authority;
    refused, the reason recorded; `suspended`: its holder suspended while it was on its way."""

    request_id: str
    status: str
    by_number: bool
    reason: str | None = None
    suspended: bool = False


@dataclass
class Logged:
    """What the holders', the audit and the authority's stores hold of the requests: holder
    access-log entries per request on each side (the provider's saying its answer was refused,
    not provided, counted apart too), audit steps (step as its event's id names it, outcome; a
    refusal's: its reason) per request, and the authority's look-ups per binding request."""

    requester: Counter[str] = field(default_factory=Counter)
    provider: Counter[str] = field(default_factory=Counter)
    audit: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    duplicates_dropped: int = 0
    lookups: Counter[str] = field(default_factory=Counter)
    not_provided: Counter[str] = field(default_factory=Counter)


@dataclass
class Checked:
    """requests: linkage requests the requesters recorded since the run began; answered: their
    outcomes by status; lost: no outcome; rejected: refused by the platform (lawful: a failure);
    requester_log_not_once: the requester's access log holds it other than once (once if
    answered, never if not); provider_log_not_once: a FOUND or NOT_FOUND its provider logged
    other than once, or as not provided (or another outcome logged twice);
    audit_steps_per_request: {steps in the
    audit store, in order: requests answered}; audit_not_as_answered: answered requests whose
    audit steps are not approved + answered once each, or whose answered step's outcome is not
    the requester's (each may have a late answer's refusal too, once a copy);
    duplicates_dropped: answers a requester received again and dropped (not a failure);
    bindings: binding requests the holders recorded, bindings_by_number those by personal
    number, bindings_answered their outcomes by status, bindings_lost no outcome,
    bindings_refused an outcome but BOUND or INVESTIGATING, binding_audit_not_once answered ones
    with no binding event in the audit store or one twice (an INVESTIGATING one may have its
    timeout alone), lookup_not_once answered ones the authority logged other than once by
    personal number (or at all by the attributes); failing_request_ids: the requests of each
    failure; suspended_endings: the outcomes of the requests and bindings whose holders were
    suspended while on their way, by status (a refusal with its reason), those refused SUSPENDED
    at approval counted apart."""

    requests: int
    answered: dict[str, int]
    lost: int
    rejected: int
    requester_log_not_once: int
    provider_log_not_once: int
    audit_steps_per_request: dict[str, int]
    audit_not_as_answered: int
    duplicates_dropped: int
    bindings: int
    bindings_by_number: int
    bindings_answered: dict[str, int]
    bindings_lost: int
    bindings_refused: int
    binding_audit_not_once: int
    lookup_not_once: int
    failing_request_ids: dict[str, list[str]]
    suspended_endings: dict[str, int] = field(default_factory=dict)

    @property
    def exactly_once(self) -> bool:
        return self.requests > 0 and not self.failing_request_ids

    def to_json(self) -> dict[str, Any]:
        return {"exactly_once": self.exactly_once, **asdict(self)}

    def lines(self) -> list[str]:
        """The figures, in three lines (four with requests of a suspended holder)."""
        return [
            f"requests the requesters recorded: {self.requests}; answered "
            + ", ".join(f"{k} {v}" for k, v in self.answered.items())
            + f"; lost {self.lost}; rejected {self.rejected}; requester log not once "
            f"{self.requester_log_not_once}; provider log not once "
            f"{self.provider_log_not_once}; duplicates dropped {self.duplicates_dropped}",
            f"bindings the holders recorded: {self.bindings} ({self.bindings_by_number} by "
            "personal number); answered "
            + (", ".join(f"{k} {v}" for k, v in self.bindings_answered.items()) or "none")
            + f"; lost {self.bindings_lost}; refused {self.bindings_refused}; audit not once "
            f"{self.binding_audit_not_once}; authority log not once {self.lookup_not_once}",
            f"audit store: steps per answered request {self.audit_steps_per_request}; not as "
            f"answered {self.audit_not_as_answered}",
        ] + ([f"requests and bindings of a holder suspended meanwhile: {self.suspended_endings}"]
             if self.suspended_endings else [])


def with_checked(result: Any) -> dict[str, Any]:
    """A chaos run's result (a dataclass with a `checked` verdict) as JSON: its own fields, then
    the verdict's."""
    own = {k: v for k, v in asdict(result).items() if k != "checked"}
    return {**own, **result.checked.to_json()}


def check(asked: list[Asked], logged: Logged, bindings: Collection[Binding] = ()) -> Checked:
    """The verdict over every request asked and binding (pure: from what the stores hold)."""
    answered = [a for a in asked if a.status != SENT]
    bound = [b for b in bindings if b.status != SENT]
    as_answered = [b for b in bound if _binding_answered(b)]
    failing = {
        "lost": [a.request_id for a in asked if a.status == SENT],
        "rejected": [a.request_id for a in answered
                     if a.status == REJECTED and not _refused_suspended(a)],
        "requester_log_not_once": [a.request_id for a in asked if logged.requester[a.request_id]
                                   != (0 if a.status == SENT else 1)],
        "provider_log_not_once": [a.request_id for a in answered
                                  if not _provider_logged_once(a, logged)],
        "audit_not_as_answered": [a.request_id for a in answered
                                  if (a.status != REJECTED or _refused_suspended(a))
                                  and not _audited_as_answered(a, logged.audit)],
        "bindings_lost": [b.request_id for b in bindings if b.status == SENT],
        "bindings_refused": [b.request_id for b in bound if not _binding_answered(b)],
        "binding_audit_not_once": [b.request_id for b in as_answered if not
                                   _binding_audited_once(b, logged.audit.get(b.request_id, []))],
        "lookup_not_once": [b.request_id for b in as_answered
                            if logged.lookups[b.request_id] != _lookups(b, logged.audit)],
    }
    steps = Counter("+".join(_step(named) for named, _ in logged.audit.get(a.request_id, []))
                    for a in answered)
    return Checked(
        requests=len(asked), answered=dict(Counter(a.status for a in answered).most_common()),
        lost=len(failing["lost"]), rejected=len(failing["rejected"]),
        requester_log_not_once=len(failing["requester_log_not_once"]),
        provider_log_not_once=len(failing["provider_log_not_once"]),
        audit_steps_per_request=dict(sorted(steps.items())),
        audit_not_as_answered=len(failing["audit_not_as_answered"]),
        duplicates_dropped=logged.duplicates_dropped,
        bindings=len(bindings), bindings_by_number=sum(b.by_number for b in bindings),
        bindings_answered=dict(Counter(b.status for b in bound).most_common()),
        bindings_lost=len(failing["bindings_lost"]),
        bindings_refused=len(failing["bindings_refused"]),
        binding_audit_not_once=len(failing["binding_audit_not_once"]),
        lookup_not_once=len(failing["lookup_not_once"]),
        failing_request_ids={why: ids for why, ids in failing.items() if ids},
        suspended_endings=suspended_endings([*asked, *bindings], logged.audit),
    )


def suspended_endings(requests: Iterable[Asked | Binding],
                      audit: dict[str, list[tuple[str, str]]]) -> dict[str, int]:
    """The outcomes of the requests (and bindings) whose holders were suspended while they were
    on their way, by status, a refusal with its reason recorded, one refused at approval (its
    one audit step that refusal) as such."""
    return dict(Counter(
        f"{r.status} {r.reason}"
        + (" at approval" if _refused_at_approval(r, audit.get(r.request_id, [])) else "")
        if r.reason else r.status for r in requests if r.suspended).most_common())


def _binding_answered(binding: Binding) -> bool:
    """Answered BOUND or INVESTIGATING, or refused SUSPENDED while its holder was suspended."""
    return binding.status in BINDING_ANSWERS or _refused_suspended(binding)


def _refused_suspended(request: Asked | Binding) -> bool:
    """Refused SUSPENDED, its holder (or its provider) suspended while it was on its way."""
    return request.suspended and request.status == REJECTED and request.reason == SUSPENDED


def _refused_at_approval(request: Asked | Binding, steps: list[tuple[str, str]]) -> bool:
    """Refused SUSPENDED at approval: that refusal its one audit step (of its `steps`, as their
    events' ids name them)."""
    return _refused_suspended(request) and [
        (_step(named), outcome) for named, outcome in steps] == [REFUSED_SUSPENDED]


def _provider_logged_once(asked: Asked, logged: Logged) -> bool:
    """Logged once by its provider (at most once if its provider did not answer it), and, its
    requester given the provider's answer, as provided: not as an answer refused."""
    entries = logged.provider[asked.request_id]
    if asked.status in FROM_A_PROVIDER:
        return entries == 1 and not logged.not_provided[asked.request_id]
    return entries <= 1


def _audited_as_answered(asked: Asked, audit: dict[str, list[tuple[str, str]]]) -> bool:
    """Approved and answered with the requester's outcome, each once; and perhaps its provider's
    late answer refused, once a copy (one it sent again, after a crash, is refused again under its
    own source; one answered in time, its copy sent again past the deadline); no event twice.
    Refused SUSPENDED while a holder was: at approval, that refusal alone; after it, answered
    TIMED_OUT, its provider's answer perhaps refused SUSPENDED too, once a copy."""
    named = audit.get(asked.request_id, [])
    if _refused_at_approval(asked, named):
        return True
    steps = sorted((_step(name), outcome) for name, outcome in named)
    refused = [(_step(name), outcome) for name, outcome in named
               if _answer_refused(asked, name, outcome)]
    outcome = TIMED_OUT if _refused_suspended(asked) else asked.status
    lawful = sorted([APPROVAL, (ANSWERED, outcome), *refused])
    return steps == lawful and len(set(named)) == len(named)


def _answer_refused(asked: Asked, named: str, outcome: str) -> bool:
    """Whether an audit step (as its event's id names it) is the refusal of a copy of the
    provider's answer: late (INVALID_TICKET), or, a holder suspended while the request was on
    its way, SUSPENDED, a message of the provider's outbox refused."""
    step, _, source = named.partition("@")
    if (step, outcome) == LATE_ANSWER_REFUSED:
        return True
    return (asked.suspended and (step, outcome) == REFUSED_SUSPENDED
            and topics.holder_of_source(source) == asked.provider)


def _binding_audited_once(binding: Binding, steps: list[tuple[str, str]]) -> bool:
    """A binding's audit steps: one or more (one per candidate, or one saying why none), each a
    binding event, none twice; or, its holder investigating, its timeout alone. Refused SUSPENDED
    while its holder was: at approval, that refusal alone; after it, its answer's binding events
    (relayed to no one) or its timeout alone."""
    if _refused_at_approval(binding, steps):
        return True
    audited = [(_step(named), outcome) for named, outcome in steps]
    if (binding.status == INVESTIGATING or _refused_suspended(binding)) and (
            audited == [BINDING_TIMED_OUT]):
        return True
    names = [name for name, _ in audited]
    return bool(names) and all(n.startswith(BINDING_STEP) for n in names) and (
        len(set(names)) == len(names))


def _lookups(binding: Binding, audit: dict[str, list[tuple[str, str]]]) -> int:
    """How often the authority is to have logged a binding's look-up: once by personal number,
    never by the four attributes or if refused at approval."""
    return int(binding.by_number
               and not _refused_at_approval(binding, audit.get(binding.request_id, [])))


def asked_since(stores: Mapping[str, sqlite3.Connection], since: datetime,
                suspensions: Collection[Suspension] = ()) -> list[Asked]:
    """The linkage requests each holder's store recorded from `since` on, each judged by the
    run's `suspensions` of its requester and provider."""
    return [Asked(r.request_id, r.status, r.reason, r.during(suspensions, holder), r.provider)
            for holder, db in stores.items() for r in _recorded(db, LINKAGE, since)]


def bindings_since(stores: Mapping[str, sqlite3.Connection], since: datetime,
                   by_number: Collection[str],
                   suspensions: Collection[Suspension] = ()) -> list[Binding]:
    """The binding requests each holder's store recorded from `since` on; by personal number
    those of the holders `by_number`; each judged by the run's `suspensions` of its holder."""
    return [Binding(r.request_id, r.status, holder in by_number, r.reason,
                    r.during(suspensions, holder))
            for holder, db in stores.items() for r in _recorded(db, BINDING, since)]


@dataclass(frozen=True, slots=True)
class _Recorded:
    """A request as a holder's store records it: refused, the reason (what its detail begins
    with); provider: a linkage request's."""

    request_id: str
    status: str
    reason: str | None
    provider: str | None
    sent_at: datetime
    answered_at: datetime | None

    def during(self, suspensions: Collection[Suspension], requester: str) -> bool:
        """Whether its requester or provider was suspended while it was on its way."""
        return any(s.during((requester, self.provider), self.sent_at, self.answered_at)
                   for s in suspensions)


def _recorded(db: sqlite3.Connection, kind: str, since: datetime) -> list[_Recorded]:
    """The requests of `kind` a holder's store recorded from `since`."""
    at = since.astimezone(UTC).isoformat(timespec="milliseconds")
    return [_Recorded(str(r), str(s), str(d).split(":", 1)[0] if s == REJECTED and d else None,
                      p, datetime.fromisoformat(sent),
                      datetime.fromisoformat(answered) if answered else None)
            for r, s, d, p, sent, answered in db.execute(
                "SELECT request_id, status, detail, provider, sent_at, answered_at FROM requests "
                "WHERE kind = ? AND sent_at >= ?", (kind, at))]


def logged_of(stores: Iterable[sqlite3.Connection], request_ids: set[str],
              since: datetime) -> Logged:
    """What the holders' stores and the audit store hold of these requests."""
    found = Logged(audit=audit_steps(request_ids, since))
    for db in stores:
        for request_id, side, outcome in db.execute(
                "SELECT request_id, side, outcome FROM access_log"):
            if request_id in request_ids:
                (found.requester if side == REQUESTER else found.provider)[request_id] += 1
                if side != REQUESTER and outcome.startswith(REJECTED):  # HolderStore.not_provided
                    found.not_provided[request_id] += 1
        found.duplicates_dropped += db.execute(
            "SELECT coalesce(sum(duplicates), 0) FROM requests").fetchone()[0]
    return found


def lookups_logged(request_ids: set[str]) -> Counter[str]:
    """How often the authority's log holds a look-up of each of these binding requests (each
    logged as "<request id>@<the message it came from>", authority.lookups._identified)."""
    with closing(sqlite.read_only(authority_store.default_path())) as db:
        logged = Counter(str(look_up).split("@", 1)[0]
                         for (look_up,) in db.execute("SELECT look_up FROM lookups"))
    return Counter({r: logged[r] for r in request_ids})


def audit_steps(request_ids: set[str], since: datetime) -> dict[str, list[tuple[str, str]]]:
    """(step, outcome) of each audit store entry of these requests, in the store's order."""
    steps: dict[str, list[tuple[str, str]]] = {}
    with AuditStore(audit_path(), Signer.public()) as store:
        after = None
        while True:
            page = store.query(Query(since=since), limit=1000, after=after)
            for entry in page.entries:
                event = entry.event
                if event.request_id in request_ids:
                    steps.setdefault(event.request_id, []).append(audited_step(event))
            if page.next_cursor is None:
                return steps
            after = page.next_cursor


def audited_step(event: AccessLogEvent) -> tuple[str, str]:
    """An audit event's step as its id names it (what it is of after its '@': a refusal's, the
    holder message refused, so two copies of an answer are two steps and one event twice is the
    same) and its outcome; a refusal's reason for its outcome, which tells a late answer's
    (INVALID_TICKET, which no request's has) from a request's."""
    reason = event.reason if event.outcome == REJECTED else None
    return event.event_id.removeprefix(f"{event.request_id}:"), reason or event.outcome


def _step(named: str) -> str:
    """A step named as its event's id names it, without its '@' part (events.step_of)."""
    return named.split("@", 1)[0]


async def checked(holders: list[str], since: datetime, within: float,
                  by_number: Collection[str] = (),
                  suspensions: Collection[Suspension] = ()) -> Checked:
    """The verdict once it holds (or `within` seconds passed), looked at once more `LATE`
    seconds after: a request answered or audited twice shows late. The holders `by_number` bind
    by personal number; the requests are judged by the run's `suspensions`."""
    deadline = time.monotonic() + within
    while True:
        verdict = await asyncio.to_thread(_check_now, holders, since, by_number, suspensions)
        if not verdict.failing_request_ids or time.monotonic() > deadline:
            await asyncio.sleep(LATE)
            return await asyncio.to_thread(_check_now, holders, since, by_number, suspensions)
        await asyncio.sleep(1)


def _check_now(holders: list[str], since: datetime, by_number: Collection[str],
               suspensions: Collection[Suspension]) -> Checked:
    """The verdict over the stores as they are now, each holder's opened once (the authority's
    only if a binding was recorded)."""
    with holder_stores(holders) as stores:
        asked = asked_since(stores, since, suspensions)
        bindings = bindings_since(stores, since, by_number, suspensions)
        ids = {a.request_id for a in asked} | {b.request_id for b in bindings}
        logged = logged_of(stores.values(), ids, since)
        if bindings:
            logged.lookups = lookups_logged({b.request_id for b in bindings})
        return check(asked, logged, bindings)


@contextmanager
def holder_stores(holders: Iterable[str]) -> Iterator[dict[str, sqlite3.Connection]]:
    """The holders' stores by holder, read only (their servers may be writing them)."""
    with ExitStack() as opened:
        yield {holder: opened.enter_context(closing(sqlite.read_only(holder_path(holder))))
               for holder in holders}
