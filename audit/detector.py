"""The live detector: rules over the access-log stream that raise alerts for the oversight body.

Pure: it is fed events in the log's order and keeps sliding windows in event time, so the clock is
the events' own. The log's order is not quite theirs: events come from several partitions and
platform instances, each up to `Rules.lateness` behind the latest (more after a crash). A late one
is counted into the windows of its own time (kept that much longer), and what an alert counted is
said once; one later still is counted where its window is still kept, and the detector says how
many came so late. The consumer tells when it read each batch (its own clock): an event dated more
than `Rules.skew` past that (its writer's clock set wrong, a year ahead) is counted as dated
then (whether a binding came before a request is still told by their own times, of one clock), and
said once for each episode of its requester's clock ahead (again once one of its events has come
at its own time); at its own time it would put every event after it behind the latest, take every
decision on an unbound person at once and stop the windows' pruning, for as long as that clock was
ahead. Rules: a requester's volume far above its norm, one person queried again and again by one
requester (once an episode: `Rules.person_repeats` within `Rules.person_window`, not said again
until a person_window has passed with no such run), access outside office hours, bursts of
rejections (but the platform's refusals to ask an inactive holder for its logs, no requester's
doing), a holder querying a person it never bound (no BINDING event made by the request's time gave
it that person's link code: decided once the events' time, or the time a consumer that read the log
to its end tells (`caught_up`), is past the request's by more than `Rules.lateness`, when such a
binding read late would have come), and a holder sending on into a suspension (its own or its
provider's: a burst of requests refused SUSPENDED, said once in `Rules.suspended_quiet`; no other
rule counts them, nothing was asked).

A restarted detector resumes: it re-reads the last horizon of the log and takes each alert
decision in it from the alerts raised then, so its windows and quiet periods come out as the
stopped one left them, and after the restart it raises what that one would have (the decisions
on unbound persons it left waiting too).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from functools import cached_property
from typing import NamedTuple

from audit.events import BINDING, HOLDER_LOGS, LINKAGE, REJECTED, SUSPENDED, AccessLogEvent
from renkei.clock import AHEAD, JST
from renkei.shown import short
from schemas.messages import Alert

VOLUME, REPEATED_PERSON, OFF_HOURS = "VOLUME", "REPEATED_PERSON", "OFF_HOURS"
REJECTION_BURST, UNBOUND_PERSON = "REJECTION_BURST", "UNBOUND_PERSON"
SUSPENDED_REQUESTS = "SUSPENDED_REQUESTS"
RULES = (VOLUME, REPEATED_PERSON, OFF_HOURS, REJECTION_BURST, UNBOUND_PERSON, SUSPENDED_REQUESTS)
QUIETED = (OFF_HOURS, SUSPENDED_REQUESTS)  # quiet for a while after an alert (Rules.memory)

Bound = Callable[[str, str], datetime | None]  # when a binding first gave the holder the person
QUIET_KEPT = 64  # a requester's latest alerts of a QUIETED rule kept: a month of nights
KNOWN_BOUND = 100_000  # (holder, person) pairs remembered as bound, and since when
# the event times the windows can place: one a window from the start of datetime's range, or a
# day (its JST time) from its end, ended `observe` in an OverflowError, each batch again
EARLIEST, LATEST = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rules:
    """The thresholds; volume is counted per `bucket`, its norm the mean of the trailing ones."""

    bucket: timedelta = timedelta(minutes=1)
    norm_buckets: int = 60
    volume_factor: float = 10.0
    volume_floor: int = 200
    person_window: timedelta = timedelta(hours=1)
    person_repeats: int = 5
    office_open: time = time(8)
    office_close: time = time(20)
    office_days: frozenset[int] = frozenset(range(5))  # Monday to Friday, in JST
    off_hours_quiet: timedelta = timedelta(hours=12)
    burst_window: timedelta = timedelta(minutes=1)
    burst_rejections: int = 20
    suspended_quiet: timedelta = timedelta(hours=12)  # after a holder's SUSPENDED_REQUESTS
    lateness: timedelta = timedelta(minutes=5)  # how far behind the latest an event may come
    # how far ahead of its reading an event may be dated: the platform's clock and the audit
    # consumer's apart (an event is written before it is read), not how late one may come
    skew: timedelta = AHEAD

    @cached_property
    def horizon(self) -> timedelta:
        """How far back the windows reach (the current bucket and its norm's), and the lateness
        behind that: what a restarted detector re-reads."""
        return max(self.bucket * (self.norm_buckets + 1), self.episode_reach,
                   self.burst_window) + self.lateness

    @cached_property
    def episode_reach(self) -> timedelta:
        """How far back a repeated-person decision looks: whether the person was queried
        `person_repeats` times within a `person_window` ending in the window before it (an
        episode going on)."""
        return 2 * self.person_window

    @cached_property
    def memory(self) -> timedelta:
        """How far back an alert still matters: the windows, or the quiet after an off-hours or
        a suspended-requests one."""
        return max(self.horizon, self.off_hours_quiet, self.suspended_quiet)

    def quiet(self, rule: str) -> timedelta:
        """How long a QUIETED rule is quiet after its alert, before and after it."""
        return self.off_hours_quiet if rule == OFF_HOURS else self.suspended_quiet

    def last_at(self, read: datetime) -> datetime:
        """The latest time an event read at `read` is taken to have occurred at: the skew past
        it (one dated later is its writer's clock set wrong)."""
        return read + self.skew

    def dated(self, at: datetime, read: datetime) -> datetime:
        """The time of an event read at `read` as the rules take it: its own, or `read` if that
        lies past `last_at` (no event read then occurred later)."""
        return read if at > self.last_at(read) else at

    def read_ahead(self, events: Iterable[AccessLogEvent], read: datetime) -> dict[str, datetime]:
        """The events of a batch read at `read` that are dated then (`dated`), by event id, and
        that time: where a restarted detector places them again (the audit store keeps it)."""
        return {e.event_id: read for e in events
                if self.dated(e.occurred_at, read) != e.occurred_at}

    def in_office_hours(self, moment: datetime) -> bool:
        local = moment.astimezone(JST)
        return (local.weekday() in self.office_days
                and self.office_open <= local.time() < self.office_close)


def never_bound(holder: str, person: str) -> datetime | None:
    return None


def binding_of(event: AccessLogEvent) -> tuple[str, str] | None:
    """The (holder, person) a BINDING event gave its requester; None for other events."""
    if event.kind == BINDING and event.person is not None:
        return event.requester, event.person
    return None


@dataclass(frozen=True, slots=True)
class Raised:
    """An alert raised earlier, as much of it as resuming needs (what the audit store keeps)."""

    rule: str
    requester: str
    event_id: str
    occurred_at: datetime

    @classmethod
    def of(cls, alert: Alert) -> Raised:
        return cls(alert.rule, alert.requester, alert.event_id, alert.occurred_at)


@dataclass
class _Volume:
    """One requester's linkage requests per bucket (the latest one and its trailing norm), and
    how many fell in the `norm_buckets` before the latest, kept as requests come and buckets
    pass and are pruned: the norm without adding up the trailing buckets at each request."""

    norm_buckets: int
    counts: dict[int, int] = field(default_factory=dict)
    latest: int | None = None  # the latest bucket counted
    trailing: int = 0  # the requests in the `norm_buckets` before `latest`
    alerted: set[int] = field(default_factory=set)  # the buckets alerted (a late request's too)

    def count(self, bucket: int) -> tuple[int, int]:
        """Count a request in `bucket`: the bucket's count, and the requests in the buckets of
        its norm (added up only for a request older than the latest bucket, out of order)."""
        if self.latest is None or bucket > self.latest:
            self._move_to(bucket)
        elif self.latest - self.norm_buckets <= bucket < self.latest:
            self.trailing += 1
        self.counts[bucket] = count = self.counts.get(bucket, 0) + 1
        if bucket == self.latest:
            return count, self.trailing
        return count, self.sum_of(bucket - self.norm_buckets, bucket)

    def _move_to(self, bucket: int) -> None:
        """Make `bucket` the latest: the buckets passed since come into the norm's, the oldest
        leave it (none counted after the latest)."""
        latest = self.latest
        if latest is None or bucket - self.norm_buckets > latest:
            self.trailing = 0
        else:
            self.trailing += self.counts.get(latest, 0) - sum(
                self.counts.get(b, 0) for b in range(latest - self.norm_buckets,
                                                     bucket - self.norm_buckets))
        self.latest = bucket

    def prune(self, oldest: int) -> None:
        """Drop the buckets before `oldest` (and their requests from the norm's)."""
        self.counts = {b: n for b, n in self.counts.items() if b >= oldest}
        self.alerted = {b for b in self.alerted if b >= oldest}
        if self.latest is not None:
            self.trailing = self.sum_of(self.latest - self.norm_buckets, self.latest)

    def sum_of(self, first: int, end: int) -> int:
        """The requests counted in the buckets from `first` up to, not with, `end`."""
        return sum(n for b, n in self.counts.items() if first <= b < end)


class _Waiting(NamedTuple):
    """A linkage request about a person no binding gave its requester yet, in the heap of those
    waiting for their decision (ordered by `due`, then `queued`)."""

    due: datetime  # its own time past the lateness
    queued: int  # the order it waited in, for requests due at once
    event: AccessLogEvent
    person: str
    made: datetime  # its own time (the event's may be the time it was read)
    asked: bool  # whether the store was asked when it was read


@dataclass
class _Window:
    """The times of a requester's events of one rule (of one person's, for REPEATED_PERSON), in
    time order whatever order they came in, back to `Rules.lateness` before the latest's window;
    and the time up to which an alert said them (those up to it are not counted again)."""

    times: list[datetime] = field(default_factory=list)
    said: datetime | None = None

    def count(self, at: datetime, window: timedelta, lateness: timedelta) -> tuple[int, int]:
        """Count an event at `at`: the most events within `window` of one another, `at` among
        them and none said, and the end of the first such run (to `say`); (0, 0) for one before
        an alert's, counted in what it said (as it would have been, had it come in time)."""
        if self.said is not None and at < self.said:
            return 0, 0
        times = self.times
        bisect.insort(times, at)
        del times[:bisect.bisect_right(times, times[-1] - window - lateness)]
        most, end = 0, 0
        for first in range(bisect.bisect_right(times, at - window),
                           bisect.bisect_right(times, at)):
            last = bisect.bisect_left(times, times[first] + window)
            if last - first > most:
                most, end = last - first, last
        return most, end

    def say(self, end: int) -> None:
        """An alert said the events up to `end` (what `count` gave): they count no more."""
        self.said = self.times[end - 1]
        del self.times[:end]

    def keep(self, most: int) -> None:
        """Keep the latest `most` times only (the same set whatever order they came in)."""
        del self.times[:-most]

    def since(self, moment: datetime) -> bool:
        """Whether an event in it, or the alert that said them, is later than `moment`."""
        return any(t is not None and t > moment
                   for t in (self.times[-1] if self.times else None, self.said))


class Detector:
    """Feed it the log's new events a batch at a time; it answers with the alerts they raise.

    `bound(holder, person)` says when the earliest BINDING event read before the batch gave the
    holder that person (the audit store answers it); bindings within the batch, and those of
    later batches up to the time a request's decision waits for, it sees itself: each, seen or
    told, excuses the requests made at or after it, whichever of them came first.
    """

    def __init__(self, rules: Rules | None = None, bound: Bound = never_bound) -> None:
        self.rules = rules or Rules()
        self._bound = bound
        self._placeable = (EARLIEST + self.rules.memory, LATEST - timedelta(days=1))
        self._known_bound: dict[tuple[str, str], datetime] = {}
        self._volume: dict[str, _Volume] = {}
        self._persons: dict[tuple[str, str], _Window] = {}
        # when each (requester, person) was last queried `person_repeats` times within the window
        self._episodes: dict[tuple[str, str], datetime] = {}
        self._rejections: dict[str, _Window] = {}
        self._latest: datetime | None = None  # the latest event time seen
        # the requesters whose latest event read was dated ahead of its reading (an episode said)
        self._ahead: set[str] = set()
        self._suspended: dict[str, _Window] = {}  # requests refused SUSPENDED, by requester
        # the times of each QUIETED rule's latest alerts (QUIET_KEPT), by requester, in order
        self._quiet: dict[str, dict[str, list[datetime]]] = {rule: {} for rule in QUIETED}
        self._pruned: datetime | None = None
        # the linkage requests about a person no binding gave the requester yet, by when their
        # decision is due; how many wait for each (requester, person), and the bindings of those
        # seen since (each's first time): the store holds the bindings of the batches before
        self._waiting: list[_Waiting] = []
        self._queued = itertools.count()  # the order they waited in, for requests due at once
        self._unsure: Counter[tuple[str, str]] = Counter()
        self._bindings: dict[tuple[str, str], datetime] = {}
        self._retraced: dict[str, set[str]] | None = None  # rule → event ids, while resuming

    def resume(self, events: Iterable[tuple[AccessLogEvent, datetime | None]],
               raised: Iterable[Raised], read: datetime | None = None) -> None:
        """Re-read the log's last horizon (`events`, in the order they were observed, each with
        the time it was read if it was dated then, `Rules.read_ahead`; the others at `read`, as
        `observe` reads a batch: one dated ahead of that too counts as of it), taking each alert
        decision from `raised` (the alerts on those events, and those of each QUIETED rule of
        the last `Rules.memory`) instead of the rules: the windows and quiet periods come out as
        the detector before left them, and the requests whose decision on an unbound person was
        still waiting wait again (those due before were decided, and alerted, then)."""
        retraced: dict[str, set[str]] = {}
        for alert in raised:
            retraced.setdefault(alert.rule, set()).add(alert.event_id)
            if alert.rule in QUIETED:  # its quiet reaches back further than the events
                self._quieten(alert.rule, alert.requester, alert.occurred_at)
        self._retraced = retraced
        try:
            for event, read_then in events:  # one at a time: the alerts retraced are dropped
                self.observe((event,), read_then or read)  # as they come
        finally:
            self._retraced = None

    def _fires(self, rule: str, event: AccessLogEvent, by_the_rule: bool) -> bool:
        """The rule's decision; while resuming, the decision taken when the event was new."""
        if self._retraced is None:
            return by_the_rule
        return event.event_id in self._retraced.get(rule, ())

    def observe(self, events: Iterable[AccessLogEvent], read: datetime | None = None
                ) -> list[Alert]:
        """The alerts a batch raises, read at `read` (if told: the events dated as
        `Rules.dated` has it)."""
        alerts: list[Alert] = []
        batch = list(events)
        for event in batch:  # by their own times, a binding's compared with its request's
            if (binding := binding_of(event)) is not None:
                self._bindings[binding] = min(event.occurred_at,
                                              self._bindings.get(binding, event.occurred_at))
        later: list[datetime] = []  # the times of events more than `lateness` late
        for own in batch:
            event = self._dated(own, read)
            if not self._placed(event.occurred_at):
                log.error("the detector passed over event %r: its time %s is out of its "
                          "windows' reach", short(event.event_id), event.occurred_at.isoformat())
                continue
            if self._latest is None or event.occurred_at > self._latest:
                self._latest = event.occurred_at
            elif event.occurred_at < self._latest - self.rules.lateness:
                later.append(event.occurred_at)
            alerts += self._rules_of(event, own.occurred_at) + self._unbound_due(self._latest)
            self._prune(event.occurred_at)
        self._forget_settled_bindings()
        if later and self._latest is not None and self._retraced is None:
            log.warning("the detector saw %d events more than %s behind the latest (%s), the "
                        "oldest of %s: each counted where its window is still kept; a rule may "
                        "have missed them", len(later), _span(self.rules.lateness),
                        self._latest.isoformat(), min(later).isoformat())
        return alerts

    def _dated(self, event: AccessLogEvent, read: datetime | None) -> AccessLogEvent:
        """The event dated when it was read if its own time lies too far ahead of that: said
        once per episode of its requester's (until one of its events comes at its own time), not
        while resuming (said before the stop, the episode re-read)."""
        if read is None:
            return event
        if (at := self.rules.dated(event.occurred_at, read)) == event.occurred_at:
            self._ahead.discard(event.requester)
            return event
        if event.requester not in self._ahead and self._retraced is None:
            log.error("the detector counts event %r of requester %r as of its reading at %s: "
                      "its time %s lies more than %s ahead of that (its writer's clock set "
                      "wrong?); the requester's further ones are counted so, said again once "
                      "one of them has come at its own time", short(event.event_id),
                      short(event.requester), at.isoformat(), event.occurred_at.isoformat(),
                      _span(self.rules.skew))
        self._ahead.add(event.requester)
        return replace(event, occurred_at=at)

    def caught_up(self, now: datetime) -> list[Alert]:
        """The log read to its end as of `now` (a consumer with no record left to read): the
        decisions on unbound persons due by then taken, as an event at `now` would take them (a
        binding up to `Rules.lateness` late would have been read), in a quiet log as well."""
        alerts = self._unbound_due(now)
        self._forget_settled_bindings()
        return alerts

    def _rules_of(self, event: AccessLogEvent, made: datetime) -> list[Alert]:
        """The alerts an event raises by the rules that count it (`made` its own time: a binding
        made before it, dated by the same clock, excuses it though read later)."""
        if event.kind in HOLDER_LOGS:  # refused only for an inactive holder's sake
            return []
        if event.outcome == REJECTED and event.reason == SUSPENDED:
            return self._suspended_of(event)  # nothing asked: one alert says them all
        alerts = self._rejection(event) if event.outcome == REJECTED else []
        if event.kind == LINKAGE:
            alerts += self._volume_of(event) + self._off_hours_of(event)
            if event.person is not None:
                alerts += self._repeated(event, event.person)
                self._wait_if_unbound(event, event.person, made)
        return alerts

    def _placed(self, at: datetime) -> bool:
        """Whether the windows (and the JST day) of an event at `at` are times there can be."""
        first, last = self._placeable
        return first <= at <= last

    def _volume_of(self, event: AccessLogEvent) -> list[Alert]:
        rules, at = self.rules, event.occurred_at
        bucket = int(at.timestamp() // rules.bucket.total_seconds())
        seen = self._volume.get(event.requester)
        if seen is None:
            seen = self._volume[event.requester] = _Volume(rules.norm_buckets)
        count, trailing = seen.count(bucket)
        norm = trailing / rules.norm_buckets
        threshold = max(rules.volume_floor, rules.volume_factor * norm)
        if not self._fires(VOLUME, event, count > threshold and bucket not in seen.alerted):
            return []
        seen.alerted.add(bucket)
        return [_alert(VOLUME, event, count, f"{count} linkage requests within "
                       f"{_span(rules.bucket)}; its norm is {norm:.1f}, the threshold "
                       f"{threshold:.0f}")]

    def _repeated(self, event: AccessLogEvent, person: str) -> list[Alert]:
        """One alert an episode: a query that makes `person_repeats` within `person_window` is
        alerted unless another such did within a window of it (the episode going on), alerted or
        not; its run is not said (each query in it such a one, the episode's end is seen)."""
        rules, at, pair = self.rules, event.occurred_at, (event.requester, person)
        window = self._persons.setdefault(pair, _Window())
        count, _ = window.count(at, rules.person_window, rules.lateness)
        # twice the repeats within the window and its lateness hold a run of them: the episode
        # seen, more would only cost (a window at the benchmark's rate held 2,000, 500 µs a query)
        window.keep(2 * rules.person_repeats)
        last = self._episodes.get(pair)
        on = last is not None and abs(at - last) < rules.person_window
        repeated = count >= rules.person_repeats
        fires = self._fires(REPEATED_PERSON, event, repeated and not on)
        if repeated or fires:  # one alerted before the stop was such a one (its window re-read
            self._episodes[pair] = at if last is None else max(at, last)  # may fall short)
        if not fires:
            return []
        return [_alert(REPEATED_PERSON, event, count, f"the same person queried {count} times "
                       f"within {_span(rules.person_window)}: one alert for the episode, its "
                       f"further queries by this requester not alerted again until "
                       f"{_span(rules.person_window)} passes without {rules.person_repeats} of "
                       f"them within {_span(rules.person_window)}", person)]

    def _quieted(self, rule: str, event: AccessLogEvent) -> bool:
        """Whether an alert of a QUIETED rule on the requester lies within its quiet of the
        event, before or after it (one read late, after a later alert, among them)."""
        times, at = self._quiet[rule].get(event.requester, []), event.occurred_at
        nearest = bisect.bisect_left(times, at)
        return any(abs(at - t) < self.rules.quiet(rule) for t in times[max(nearest - 1, 0):
                                                                        nearest + 1])

    def _quieten(self, rule: str, requester: str, at: datetime) -> None:
        """An alert of a QUIETED rule at `at`, kept in time order with the requester's latest
        others (one read late moves no quiet back: it is quiet about its own time)."""
        times = self._quiet[rule].setdefault(requester, [])
        bisect.insort(times, at)
        del times[:-QUIET_KEPT]

    def _off_hours_of(self, event: AccessLogEvent) -> list[Alert]:
        """A request outside office hours, unless one was alerted within `off_hours_quiet` of
        it."""
        at = event.occurred_at
        if not self._fires(OFF_HOURS, event, not self.rules.in_office_hours(at)
                           and not self._quieted(OFF_HOURS, event)):
            return []
        self._quieten(OFF_HOURS, event.requester, at)
        local = at.astimezone(JST)
        return [_alert(OFF_HOURS, event, 1, f"a linkage request at {local:%a %H:%M} JST, outside "
                       f"{self.rules.office_open:%H:%M}–{self.rules.office_close:%H:%M} "
                       "on working days")]

    def _rejection(self, event: AccessLogEvent) -> list[Alert]:
        window = self._rejections.setdefault(event.requester, _Window())
        count, end = window.count(event.occurred_at, self.rules.burst_window, self.rules.lateness)
        if not self._fires(REJECTION_BURST, event, count >= self.rules.burst_rejections):
            return []
        window.say(end)
        return [_alert(REJECTION_BURST, event, count, f"{count} rejections within "
                       f"{_span(self.rules.burst_window)} (latest: {event.reason})")]

    def _suspended_of(self, event: AccessLogEvent) -> list[Alert]:
        """A burst of a requester's requests refused SUSPENDED (it, or the holder it asks, is
        suspended), unless one was alerted within `suspended_quiet` of it: counted not at all."""
        rules, at, requester = self.rules, event.occurred_at, event.requester
        if self._quieted(SUSPENDED_REQUESTS, event):
            return []
        window = self._suspended.setdefault(requester, _Window())
        count, _ = window.count(at, rules.burst_window, rules.lateness)
        if not self._fires(SUSPENDED_REQUESTS, event, count >= rules.burst_rejections):
            return []
        del self._suspended[requester]
        self._quieten(SUSPENDED_REQUESTS, requester, at)
        return [_alert(SUSPENDED_REQUESTS, event, count, f"{count} requests refused within "
                       f"{_span(rules.burst_window)} as a holder they name is suspended "
                       f"(SUSPENDED; latest to {event.provider}); its requests refused so are "
                       f"not alerted again for {_span(rules.suspended_quiet)}")]

    def _wait_if_unbound(self, event: AccessLogEvent, person: str, made: datetime) -> None:
        """A request about a person no binding gave its requester yet waits for its decision
        until a binding up to `Rules.lateness` late could have been read (the store is not asked
        while resuming: the decision is taken, or waits again, all the same; one alerted before
        the stop, by the time a caught-up consumer told, waits no more)."""
        if self._fires(UNBOUND_PERSON, event, by_the_rule=False):
            return
        asked = self._retraced is None
        if not self._given(event, person, made, ask=asked):
            heapq.heappush(self._waiting, _Waiting(event.occurred_at + self.rules.lateness,
                                                   next(self._queued), event, person, made, asked))
            self._unsure[event.requester, person] += 1

    def _unbound_due(self, now: datetime) -> list[Alert]:
        """The decisions on unbound persons due, `now` past them: an alert for each request that
        no binding seen since excuses, made before it (none while resuming: those were taken,
        and alerted, before the stop; they keep no window). The store was asked when the request
        was read; it is asked now only of one queued while resuming, not asked then."""
        alerts: list[Alert] = []
        while self._waiting and self._waiting[0].due < now:
            _, _, event, person, made, asked = heapq.heappop(self._waiting)
            if (left := self._unsure.pop((event.requester, person)) - 1) > 0:
                self._unsure[event.requester, person] = left
            if self._retraced is None and not self._given(event, person, made, ask=not asked):
                alerts.append(_alert(UNBOUND_PERSON, event, 1, "a linkage request about a "
                                     "person the requester never bound (no binding gave it "
                                     "this person)", person))
        return alerts

    def _forget_settled_bindings(self) -> None:
        """Forget the bindings seen of the pairs no request waits for (the store holds them)."""
        self._bindings = {pair: at for pair, at in self._bindings.items() if pair in self._unsure}

    def _given(self, event: AccessLogEvent, person: str, made: datetime, ask: bool) -> bool:
        """Whether a binding made at or before the request (`made`, its own time) gave the
        requester this person: one seen, or one the store holds (if `ask`; it holds those read
        since it was asked, made after the request among them, and earlier ones read late)."""
        pair = (event.requester, person)
        if min(self._known_bound.get(pair, LATEST), self._bindings.get(pair, LATEST)) <= made:
            return True
        if not ask or (since := self._bound(*pair)) is None:
            return False
        if len(self._known_bound) >= KNOWN_BOUND:  # a binding, once given, stays given
            self._known_bound.clear()
        self._known_bound[pair] = since
        return since <= made

    def _prune(self, now: datetime) -> None:
        """Drop windows that fell behind the horizon, once per horizon of event time."""
        horizon = self.rules.horizon
        if self._pruned is not None and now - self._pruned < horizon:
            return
        self._pruned = now
        oldest = int((now - horizon).timestamp() // self.rules.bucket.total_seconds())
        for volume in self._volume.values():
            volume.prune(oldest)
        self._volume = {r: v for r, v in self._volume.items() if v.counts}
        self._persons = {k: w for k, w in self._persons.items() if w.since(now - horizon)}
        self._episodes = {k: at for k, at in self._episodes.items() if at > now - horizon}
        self._rejections = {k: w for k, w in self._rejections.items()
                            if w.since(now - horizon)}
        self._suspended = {k: w for k, w in self._suspended.items() if w.since(now - horizon)}


def _span(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    return f"{seconds // 3600} h" if seconds % 3600 == 0 else (
        f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s")


def _alert(rule: str, event: AccessLogEvent, count: int, detail: str,
           person: str | None = None) -> Alert:
    return Alert(f"{rule}:{event.event_id}", rule, event.requester, person, event.occurred_at,
                 event.event_id, count, detail)
