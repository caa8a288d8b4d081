"""`renkei audit replay`: rebuild a fresh store from offset 0 of the audit topic, compare its root
and size with the live store's, and re-check every approval and rejection against the pattern
list. The live store must hold at least the entries of the events the audit consumer has
committed (it commits a batch once appended): one with fewer is short, cut after the fact; the
events after that offset it may not have appended yet. Once the topic's retention (seven years)
has let the broker delete its oldest records, the topic starts past offset 0: the live store's
entries of those events are beyond the topic's retention, told apart and counted, and the
live store's later entries are compared leaf by leaf with those the replay rebuilt. An event older
than the cutoff of a purge the live store made before the event came, which the store did not log,
the replay leaves out too. A topic that starts past the audit consumer's committed offset lost
the records between: the broker deleted them before the consumer read them, their events never
logged. One that ends before that offset was cut, or deleted and made again: the live store
holds events it no longer has.

The re-check runs `processors.approval.approve` again for each APPROVED linkage and each
linkage REJECTED for an approval reason, at the event's time, with the legal pattern list and
holder directory as the platform knew them then: the versions whose records the broker had
appended by that moment. The platform approves at the broker's append time of the request, a few
milliseconds before the event's `occurred_at` of an approval, and its view of the compacted
topics lags their records a little: a verdict counts as agreeing if it holds for what was known
at any moment within `grace` before the event.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from audit import merkle
from audit.anchor import group_commit
from audit.consumer import new_leaves, read_audit
from audit.events import (
    LINKAGE,
    SUSPENDED,
    AccessLogEvent,
    Logged,
    OperatorAction,
    from_millis,
    logged_key,
)
from audit.store import AuditStore, beyond_retention
from broker import acls, topics
from broker.clients import KafkaAccess, offsets, read_topic, topic_batches
from processors.approval import UNKNOWN_HOLDER, Approved, PatternList, approve
from renkei.compacted import Unkeyed, not_its_holders
from schemas.codec import CODEC
from schemas.messages import HolderEntry, LegalPattern, LinkageRequest

APPROVAL_REASONS = frozenset({"UNKNOWN_PATTERN", "PATTERN_NOT_IN_FORCE", "NOT_PERMITTED",
                              "WRONG_PROVIDER", UNKNOWN_HOLDER, SUSPENDED,
                              "DATA_TYPE_NOT_PERMITTED"})
GRACE = timedelta(seconds=10)
LEAVES_AT_ONCE = 10_000  # leaf hashes read from each store at a time when comparing them
APPROVED = "APPROVED"
V = TypeVar("V")
log = logging.getLogger(__name__)


class History(Generic[V]):
    """A compacted topic's value per key through time, by the broker's record times.

    A tombstone (None) removes the key from then on. Compaction may have dropped older values
    of a key: its earliest surviving one then counts from its own time on.
    """

    def __init__(self, records: Iterable[tuple[datetime, bytes, V | None]]) -> None:
        self._timelines: dict[bytes, tuple[list[datetime], list[V | None]]] = {}
        for at, key, value in sorted(records, key=lambda r: r[0]):
            times, values = self._timelines.setdefault(key, ([], []))
            times.append(at)
            values.append(value)
        self.times = sorted({at for times, _ in self._timelines.values() for at in times})

    def value(self, key: bytes, moment: datetime) -> V | None:
        """The key's value as it stood at `moment`."""
        times, values = self._timelines.get(key, ([], []))
        index = bisect.bisect_right(times, moment) - 1
        return values[index] if index >= 0 else None

    def values(self, moment: datetime) -> list[V]:
        return [v for key in self._timelines if (v := self.value(key, moment)) is not None]

    def latest(self) -> list[tuple[datetime, V]]:
        """Each key's value now, with the record time it has stood since (a removed key's none)."""
        return [(times[-1], values[-1]) for times, values in self._timelines.values()
                if values[-1] is not None]

    def version(self, moment: datetime) -> int:
        """How many changes happened up to `moment`: equal numbers, equal values."""
        return bisect.bisect_right(self.times, moment)

    def changes(self, start: datetime, end: datetime) -> list[datetime]:
        """The moments in (start, end] at which some value changed."""
        return self.times[bisect.bisect_right(self.times, start):bisect.bisect_right(
            self.times, end)]


async def history(access: KafkaAccess, topic: str, cls: type[V],
                  unkeyed: Unkeyed[V] | None = None) -> History[V]:
    """Every record of a compacted topic now (history_of)."""
    return history_of(await read_topic(access, topic), topic, cls, unkeyed)


def history_of(records: Iterable[Any], topic: str, cls: type[V],
               unkeyed: Unkeyed[V] | None = None) -> History[V]:
    """These records of a compacted topic through time; an unreadable one, and one whose value
    is not of its key (`unkeyed`, as every view of the topic refuses it), logged and left out."""
    timed: list[tuple[datetime, bytes, V | None]] = []
    for r in records:
        try:
            value = None if r.value is None else CODEC.decode(r.value, cls)
        except ValueError as exc:
            log.warning("an unreadable entry on %s at offset %s: %s", topic, r.offset, exc)
            continue
        key = r.key or b""
        if value is not None and unkeyed is not None and (why := unkeyed(key, value)):
            log.warning("an entry on %s refused at offset %s: %s", topic, r.offset, why)
            continue
        timed.append((from_millis(r.timestamp), key, value))
    return History(timed)


@dataclass(frozen=True)
class Disagreement:
    event: AccessLogEvent
    logged: str
    rechecked: str
    detail: str


class Recheck:
    """Approval again, with the pattern list and directory known around the event's time."""

    def __init__(self, patterns: History[LegalPattern], directory: History[HolderEntry],
                 grace: timedelta = GRACE) -> None:
        self.patterns, self.directory, self.grace = patterns, directory, grace
        self._lists: dict[int, PatternList] = {}

    def applies(self, event: AccessLogEvent) -> bool:
        """Approved linkages, and linkages rejected for an approval reason."""
        return event.kind == LINKAGE and (
            event.outcome == APPROVED or event.reason in APPROVAL_REASONS)

    def check(self, event: AccessLogEvent) -> Disagreement | None:
        """None if what was known at some moment within the grace gives the logged outcome."""
        at = event.occurred_at
        logged = APPROVED if event.outcome == APPROVED else str(event.reason)
        moments = sorted({at - self.grace, *self.patterns.changes(at - self.grace, at),
                          *self.directory.changes(at - self.grace, at)})
        verdicts = [self._verdict(event, known) for known in moments]
        if any(logged in (outcome, before) for outcome, _, before in verdicts):
            return None
        outcome, detail, _ = verdicts[-1]
        return Disagreement(event, logged, outcome, detail)

    def _verdict(self, event: AccessLogEvent, known: datetime) -> tuple[str, str, str]:
        """The outcome, its detail, and what it was logged as before SUSPENDED (logged_before)."""
        version = self.patterns.version(known)
        if version not in self._lists:
            self._lists[version] = PatternList(self.patterns.values(known))
        provider = event.provider or ""
        entry = self.directory.value(provider.encode(), known)
        request = LinkageRequest(event.request_id, event.occurred_at, "",
                                 event.pattern_id or "", provider, event.data_type or "")
        requester = self.directory.value(event.requester.encode(), known)
        verdict = approve(request, requester, {provider: entry} if entry else {},
                          self._lists[version], event.occurred_at)
        if isinstance(verdict, Approved):
            return (APPROVED, f"pattern {verdict.pattern.pattern_id} v{verdict.pattern.version}",
                    APPROVED)
        return verdict.reason, verdict.detail, logged_before(verdict.reason, requester)


def logged_before(reason: str, requester: HolderEntry | None) -> str:
    """The reason a refusal was logged as before a suspended holder was refused SUSPENDED: a
    suspended requester's NOT_PERMITTED (as one asking what the law does not permit it), a
    suspended provider's UNKNOWN_HOLDER (before Rejection v3, as one not in the directory)."""
    if reason != SUSPENDED:
        return reason
    return "NOT_PERMITTED" if requester is not None and not requester.active else UNKNOWN_HOLDER


@dataclass
class ReplayReport:
    """What a replay rebuilt, how its root and size compare with the live store's, what
    disagreed. `records` are the topic's records, `events` the readable events and operator
    actions they hold, the leaves they make (an id again is not appended again). `acknowledged`
    is the audit consumer's committed offset (None: it committed none, it never read the
    topic), `owed` the leaves the events and actions before it make: the live store must hold
    at least those. `start` and `end` are the topic's
    first offset and its end, as the broker said before the replay read it, and `held` the live
    store's entries then: past 0, the broker deleted the records before `start`, and `beyond`
    are the live store's entries of their events (its first ones, beyond the replay, its purged
    ones among them); `compared_at` entries after them are then compared one by one, `differing`
    differ. `unlogged` are the events (and operator actions) older than the live
    store's cutoff when they came, which it did not log (AuditStore.cutoffs): not replayed
    either; `left`, those as old, or older than the cutoff of a purge after it logged them, that
    it holds all the same, at the serial they take, the entries a purge left (their bytes not
    their leaf's, or their time column not their event's): replayed. `actions` are the operator
    actions on the topic, once each, `unkept` those of them the live store does not hold (one
    older than its last purge's cutoff aside: purged, or never logged), `beside` those of them
    the live store keeps beside the tree, stored before actions were leaves: the replay keeps
    them so too."""

    records: int = 0
    start: int = 0
    end: int = 0
    held: int = 0
    beyond: int = 0
    aligned: bool = False  # `beyond` found: from the live store's serials of a batch
    differing: int = 0
    events: int = 0
    unlogged: int = 0
    left: int = 0
    size: int = 0
    root: bytes = b""
    acknowledged: int | None = None
    owed: int = 0
    live_size: int | None = None
    compared_at: int = 0
    live_root: bytes | None = None
    replay_root: bytes | None = None
    checked: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    actions: list[OperatorAction] = field(default_factory=list)
    unkept: list[OperatorAction] = field(default_factory=list)
    beside: int = 0
    seconds: float = 0.0

    @property
    def identical(self) -> bool:
        if self.start:
            return self.live_size is not None and not self.differing
        return self.live_root is not None and self.live_root == self.replay_root

    @property
    def logged(self) -> int:
        """The entries the topic's events make, those beyond its retention included."""
        return self.beyond + self.size

    @property
    def short(self) -> bool:
        """Does the live store lack entries of events the audit consumer said it appended?"""
        return self.live_size is not None and self.live_size < self.owed

    @property
    def lost(self) -> int:
        """How many offsets, from the audit consumer's committed one to the topic's start, the
        broker deleted before the consumer read them: their events were never logged."""
        return 0 if self.acknowledged is None else max(0, self.start - self.acknowledged)

    @property
    def past_end(self) -> int:
        """How many offsets the audit consumer committed past the topic's end: records it read
        and logged that the topic no longer has (cut, or deleted and made again)."""
        return 0 if self.acknowledged is None else max(0, self.acknowledged - self.end)

    @property
    def uncompared(self) -> bool:
        """Did the live store hold entries before the replay read the topic, none of which it
        could compare: the topic holds less than the store (its records of them all deleted, or
        the topic made again)?"""
        return self.held > 0 and not self.compared_at


async def replay(access: KafkaAccess, target: AuditStore, live: AuditStore | None = None,
                 grace: timedelta = GRACE, topic: str = topics.AUDIT,
                 group: str = acls.AUDIT_GROUP) -> ReplayReport:
    """Fill the empty `target` from the audit topic's (or `topic`'s) start to its end now;
    re-check; compare. The audit consumer is `group`."""
    if target.size():
        raise ValueError("the replay needs a fresh store: this one has entries")
    started = time.perf_counter()
    recheck = Recheck(await history(access, topics.PATTERNS, LegalPattern),
                      await history(access, topics.DIRECTORY, HolderEntry, not_its_holders),
                      grace)
    # read before the live store's size: the consumer appends a batch, then commits its offset
    committed = await group_commit(access, topic, group)
    report = ReplayReport(acknowledged=None if committed is None else committed[0],
                          held=0 if live is None else live.size())
    # read after the live store's size: its entries are of records before this end. This start
    # stands for a topic with no records; one that has them starts at its first one read (the
    # broker may delete more meanwhile)
    report.start, report.end = await offsets(access, topic)
    async for records in topic_batches(access, topic):
        if not report.records:
            report.start = records[0].offset
        report.records += len(records)
        cut = bisect.bisect_left([r.offset for r in records], report.acknowledged or 0)
        _rebuilt(target, recheck, live, records[:cut], report)
        if cut:
            report.owed = report.beyond + target.size()
        _rebuilt(target, recheck, live, records[cut:], report)
    report.size = target.size()
    report.root = target.head().head.root
    report.actions = target.operator_actions()
    report.beside = sum(serial is None for serial in target.held(report.actions).values())
    if live is not None:
        kept = live.held(report.actions)
        cutoff = live.last_cutoff()
        report.unkept = [a for a in report.actions
                         if logged_key(a) not in kept and not beyond_retention(a, cutoff)]
        report.live_size = live.size()
        if report.start:
            report.compared_at, report.differing = _leaves_compared(live, target, report.beyond)
        else:
            report.compared_at = at = min(report.size, report.live_size)
            report.live_root, report.replay_root = live.root(at), target.root(at)
    report.seconds = time.perf_counter() - started
    return report


def _leaves_compared(live: AuditStore, target: AuditStore, beyond: int) -> tuple[int, int]:
    """How many of the live store's entries after its first `beyond` were compared with the
    replay's, leaf hash by leaf hash, and how many of them differ."""
    compared = max(0, min(target.size(), live.size() - beyond))
    differing = 0
    for start in range(0, compared, LEAVES_AT_ONCE):
        end = min(compared, start + LEAVES_AT_ONCE)
        differing += sum(ours != theirs for ours, theirs in zip(
            target.leaf_hashes(start, end), live.leaf_hashes(beyond + start, beyond + end),
            strict=True))
    return compared, differing


def _rebuilt(target: AuditStore, recheck: Recheck, live: AuditStore | None,
             records: Sequence[Any], report: ReplayReport) -> None:
    """Append the events and operator actions of `records` to `target`, in the topic's order, as
    the audit consumer does (each once), re-checking each new approval or rejection. On a topic
    whose start the broker deleted, one the live store holds beyond it (logged again later) is
    left out: the audit consumer appended it at its first time. So is one older than the live
    store's cutoff when it came: the consumer did not log it. An operator action the live store
    keeps beside the tree (stored before actions were leaves) is kept so (_beside)."""
    items = read_audit(records)
    report.events += len(items)
    found = _held(live, items, report.start)
    items = _beside(target, found, items)
    held = ({key: serial for key, serial in found.items() if serial is not None}
            if report.start else {})
    cutoffs = _Cutoffs(() if live is None else live.cutoffs())
    if live is not None and items and report.start and not report.aligned:
        _aligned(target, live, items, held, cutoffs, report)
    if report.aligned:
        items = [(logged, leaf) for logged, leaf in items
                 if held.get(logged_key(logged), report.beyond) >= report.beyond]
    if live is not None and cutoffs and (report.aligned or not report.start):
        left, held_old = _unlogged(target, live, items, report.beyond, cutoffs)
        report.unlogged += len(left)
        report.left += held_old
        items = [(logged, leaf) for logged, leaf in items if logged_key(logged) not in left]
    if not items:
        return
    serials = target.append_many(items)
    for (event, _), serial in zip(items, serials, strict=True):
        if (serial is None or not isinstance(event, AccessLogEvent)
                or not recheck.applies(event)):
            continue
        report.checked += 1
        disagreement = recheck.check(event)
        if disagreement is not None:
            report.disagreements.append(disagreement)


def _held(live: AuditStore | None, items: list[tuple[Logged, bytes]], start: int
          ) -> dict[tuple[str, str], int | None]:
    """The live store's serial of each operator action of `items` it holds (None: beside the
    tree), and, on a topic whose start the broker deleted (`start`), of each event it holds too,
    by logged_key: one look-up for both."""
    wanted = [logged for logged, _ in items if start or isinstance(logged, OperatorAction)]
    return live.held(wanted) if live is not None and wanted else {}


def _beside(target: AuditStore, held: dict[tuple[str, str], int | None],
            items: list[tuple[Logged, bytes]]) -> list[tuple[Logged, bytes]]:
    """`items` but the operator actions the live store keeps beside the tree, without a serial
    (`held`: stored before actions were leaves, the audit consumer makes no leaf of an action it
    holds), which `target` keeps so too."""
    kept = {key for key, serial in held.items() if serial is None}
    if not kept:
        return items
    target.keep_beside((logged, leaf) for logged, leaf in items
                       if isinstance(logged, OperatorAction) and logged_key(logged) in kept)
    return [(logged, leaf) for logged, leaf in items if logged_key(logged) not in kept]


def _aligned(target: AuditStore, live: AuditStore, items: list[tuple[Logged, bytes]],
             held: dict[tuple[str, str], int], cutoffs: _Cutoffs,
             report: ReplayReport) -> None:
    """report.beyond from the latest serial the live store holds of the events and operator
    actions `target` would append (the first ones read may be purged from it): back from it,
    each takes the serial before, but one the live store holds lower, logged again after its
    first time beyond the topic's start, or one it left out as older than its cutoff
    (_left_out), which the audit consumer did not append. If it holds none of them, its
    retention purged them all: from the serial of the first one's purged leaf."""
    new = new_leaves(target, items)
    fresh = [held.get(logged_key(logged)) for logged, _ in new]
    known = [serial for serial in fresh if serial is not None]
    if known:
        serial = max(known)
        for (logged, leaf), before in reversed(
                list(zip(new, fresh, strict=True))[:fresh.index(serial)]):
            if before is None and _left_out(live, logged, leaf, serial, cutoffs):
                continue
            if before is None or before >= serial - 1:
                serial -= 1
    elif new and (purged := live.purged_serial(new[0][1])) is not None:
        serial = purged
    else:
        return
    report.beyond, report.aligned = max(0, serial - target.size()), True


class _Cutoffs:
    """The live store's purge cutoffs (AuditStore.cutoffs) looked up by the size of its log,
    a bisection each (their sizes only grow), with the latest cutoff of the purges up to each
    and of those from each kept (a cutoff need not be later than the one before)."""

    def __init__(self, cutoffs: Sequence[tuple[int, datetime]]) -> None:
        self._sizes = [since for since, _ in cutoffs]
        made = [cutoff for _, cutoff in cutoffs]
        self._up_to = list(itertools.accumulate(made, max))
        self._from = list(itertools.accumulate(reversed(made), max))[::-1]

    def __bool__(self) -> bool:
        return bool(self._sizes)

    def at(self, size: int) -> datetime | None:
        """The cutoff the live store held an event to that it read with its log of `size`
        entries (None: none): the latest of the purges it had made by then."""
        split = bisect.bisect_right(self._sizes, size)
        return self._up_to[split - 1] if split else None

    def after(self, size: int) -> datetime | None:
        """The latest cutoff of the purges the live store made after it logged its entry at
        serial `size` (None: none): those that, or a purge before them, removed a later serial."""
        split = bisect.bisect_right(self._sizes, size)
        return self._from[split] if split < len(self._from) else None


def _unlogged(target: AuditStore, live: AuditStore, items: list[tuple[Logged, bytes]],
              beyond: int, cutoffs: _Cutoffs) -> tuple[set[tuple[str, str]], int]:
    """The logged_keys of the events and operator actions of `items` the live store did not
    log, as older than its cutoff when they came (its log `beyond` leaves longer than `target`,
    then one more per one it logged): each copy of one is left out; and how many it holds all
    the same at the serial they take, as old (its leaf there theirs) or older than the cutoff
    of a purge after it logged them: a purge left them (and no later one removed them). Only
    these are looked up, at once: a replay from offset 0 of a store that purged its oldest
    meets them all."""
    size, left, expired = beyond + target.size(), set(), {}
    for logged, leaf in new_leaves(target, items):
        old = beyond_retention(logged, cutoffs.at(size))
        if old and not _logged_at(live, size, leaf):
            left.add(logged_key(logged))
            continue
        if old or beyond_retention(logged, cutoffs.after(size)):
            expired[logged_key(logged)] = logged, size
        size += 1
    held = live.held([logged for logged, _ in expired.values()]) if expired else {}
    return left, sum(held.get(key) == serial for key, (_, serial) in expired.items())


def _logged_at(live: AuditStore, serial: int, leaf: bytes) -> bool:
    """Whether the live store's leaf at `serial` is that of the event whose bytes are `leaf`
    (its entry there, purged or not)."""
    return 0 <= serial < live.size() and live.leaf_hashes(serial, serial + 1) == [
        merkle.leaf_hash(leaf)]


def _left_out(live: AuditStore, logged: Logged, leaf: bytes, serial: int,
              cutoffs: _Cutoffs) -> bool:
    """Whether an event or operator action the live store does not hold, read just before the
    one it holds at `serial`, was left out as older than its cutoff then: not the leaf before,
    purged."""
    return beyond_retention(logged, cutoffs.at(serial)) and not _logged_at(
        live, serial - 1, leaf)
