"""The live detector's rules, on injected events: the events' own times are the clock."""

from __future__ import annotations

import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from audit.detector import (
    EARLIEST,
    OFF_HOURS,
    REJECTION_BURST,
    REPEATED_PERSON,
    SUSPENDED_REQUESTS,
    UNBOUND_PERSON,
    VOLUME,
    Detector,
    Raised,
    Rules,
    _Volume,
    binding_of,
    never_bound,
)
from audit.events import APPLICATION, AccessLogEvent, event_id
from audit.replay import History, Recheck
from processors import applications
from schemas.messages import Alert, HolderEntry, HolderLogRequest

# Tuesday 2026-11-24 10:00 JST
OFFICE = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
PERSONS = [f"{n:011d}" for n in range(100)]
_serial = itertools.count()


def linkage(at: datetime, requester: str = "city", person: str | None = PERSONS[0],
            outcome: str = "APPROVED", reason: str | None = None) -> AccessLogEvent:
    request = f"r{next(_serial)}"
    step = "approved" if outcome == "APPROVED" else "rejected@x"
    return AccessLogEvent(event_id(request, step), request, at, "LINKAGE", outcome, reason,
                          "P-1", "法", requester, "tax", "local_tax", person)


def binding(at: datetime, requester: str, person: str) -> AccessLogEvent:
    request = f"b{next(_serial)}"
    return AccessLogEvent(event_id(request, "binding:0"), request, at, "BINDING", "FOUND",
                          None, None, None, requester, None, None, person)


def everyone_bound(holder: str, person: str) -> datetime | None:
    return EARLIEST


def decided(detector: Detector, batch: list[AccessLogEvent]) -> list[Alert]:
    """The batch's alerts, and those of the decisions on unbound persons it leaves waiting, taken
    as an event past its latest by more than the lateness comes."""
    past = max(e.occurred_at for e in batch) + detector.rules.lateness + timedelta(seconds=1)
    return detector.observe(batch) + detector.observe([binding(past, "other", PERSONS[99])])


def rules_of(alerts: list[Alert]) -> list[str]:
    return [a.rule for a in alerts]


def test_volume_far_above_the_norm() -> None:
    rules = Rules(volume_floor=10, volume_factor=5.0, norm_buckets=10)
    detector = Detector(rules, everyone_bound)
    start = OFFICE - timedelta(minutes=10)
    steady = [linkage(start + timedelta(minutes=m, seconds=10 * s), person=PERSONS[6 * m + s])
              for m in range(10) for s in range(6)]  # 6 a minute: a norm of 6
    assert detector.observe(steady) == []
    burst = [linkage(OFFICE + timedelta(seconds=s / 2), person=PERSONS[s]) for s in range(40)]
    alerts = detector.observe(burst)
    assert rules_of(alerts) == [VOLUME]
    assert alerts[0].count == 31 and "norm is 6.0" in alerts[0].detail  # 5 × 6 = 30 exceeded
    assert alerts[0].alert_id == f"VOLUME:{burst[30].event_id}"
    other = Detector(rules, everyone_bound)  # a requester without a norm: the floor holds
    assert rules_of(other.observe(
        linkage(OFFICE + timedelta(seconds=s), person=PERSONS[s]) for s in range(11))) == [VOLUME]


def test_the_volume_norm_kept_as_requests_come_is_the_sum_of_the_trailing_buckets() -> None:
    volume, counts, rng, now = _Volume(norm_buckets=5), dict[int, int](), random.Random(5), 0
    for _ in range(20_000):  # mostly on, some out of order, some after a pause, some pruned
        now += rng.choice([0, 0, 0, 1, 1, 2, 4, 9, -3])
        bucket = now - rng.choice([0, 0, 0, 0, 1, 3, 7])
        trailing = sum(n for b, n in counts.items() if bucket - 5 <= b < bucket)
        counts[bucket] = counts.get(bucket, 0) + 1
        assert volume.count(bucket) == (counts[bucket], trailing)
        if rng.random() < 0.05:  # the oldest buckets kept cut into the norm's, or not
            oldest = now - rng.randrange(8)
            volume.prune(oldest)
            counts = {b: n for b, n in counts.items() if b >= oldest}
        assert volume.latest is not None and volume.trailing == sum(
            n for b, n in counts.items() if volume.latest - 5 <= b < volume.latest)


def test_the_same_person_queried_again_and_again() -> None:
    detector = Detector(Rules(person_repeats=3, person_window=timedelta(hours=1)),
                        everyone_bound)
    spread = [linkage(OFFICE + timedelta(minutes=40 * n)) for n in range(3)]
    assert detector.observe(spread) == []  # never 3 within an hour
    close = [linkage(OFFICE + timedelta(hours=5, minutes=n)) for n in range(7)]
    alerts = detector.observe(close)
    assert rules_of(alerts) == [REPEATED_PERSON]  # at the 3rd: one episode
    assert alerts[0].person == PERSONS[0] and alerts[0].event_id == close[2].event_id
    assert detector.observe([linkage(OFFICE + timedelta(hours=5, minutes=8),
                                     requester="other")]) == []


def test_one_person_queried_50_times_in_10_minutes_is_one_alert() -> None:
    """An officer's view: one alert for the episode, saying so, not one every 5th query (10)."""
    detector = Detector(Rules(), everyone_bound)
    alerts = detector.observe(linkage(OFFICE + timedelta(seconds=12 * n)) for n in range(50))
    assert [(a.rule, a.person, a.count) for a in alerts] == [(REPEATED_PERSON, PERSONS[0], 5)]
    assert alerts[0].detail == (
        "the same person queried 5 times within 1 h: one alert for the episode, its further "
        "queries by this requester not alerted again until 1 h passes without 5 of them within "
        "1 h")


def a_second_episode() -> list[AccessLogEvent]:
    """A person queried 50 times in 10 minutes, then once every 20 minutes for 3 hours (never 5
    within an hour: quiet), then 50 times in 10 minutes again."""
    first = [linkage(OFFICE + timedelta(seconds=12 * n)) for n in range(50)]
    trickle = [linkage(OFFICE + timedelta(minutes=20 * n)) for n in range(1, 10)]
    second = [linkage(OFFICE + timedelta(hours=3, seconds=12 * n)) for n in range(50)]
    return sorted(first + trickle + second, key=lambda event: event.occurred_at)


def test_a_new_episode_after_a_quiet_hour_is_alerted_again() -> None:
    alerts = Detector(Rules(), everyone_bound).observe(a_second_episode())
    assert [(a.rule, a.occurred_at) for a in alerts] == [  # each episode's 5th within the hour
        (REPEATED_PERSON, OFFICE + timedelta(seconds=48)),
        (REPEATED_PERSON, OFFICE + timedelta(hours=3, seconds=12))]  # the trickle's last 3 in it


def test_a_restarted_detector_raises_the_episodes_alerts_of_an_unstopped_one() -> None:
    """Stopped anywhere (in an episode, in the quiet between), it re-reads the horizon with
    the alerts raised then and raises what the unstopped one did: the second episode's alert,
    no further one for the first."""
    log, rules = a_second_episode(), Rules()
    uninterrupted = Detector(rules, everyone_bound)
    alerts = [uninterrupted.observe([event]) for event in log]
    assert sum(map(len, alerts)) == 2
    for stop in range(1, len(log)):
        latest = log[stop - 1].occurred_at
        restarted = Detector(rules, everyone_bound)
        restarted.resume([(e, None) for e in log[:stop] if e.occurred_at >= latest - rules.horizon],
                         [Raised.of(a) for raised in alerts[:stop] for a in raised])
        assert restarted.observe(log[stop:]) == [a for raised in alerts[stop:] for a in raised], (
            f"restarted after {stop} events")


def test_access_outside_office_hours() -> None:
    detector = Detector(Rules(), everyone_bound)
    evening = datetime(2026, 11, 24, 11, 30, tzinfo=UTC)  # 20:30 JST
    saturday = datetime(2026, 11, 28, 2, 0, tzinfo=UTC)  # 11:00 JST, a Saturday
    assert detector.observe([linkage(OFFICE), linkage(OFFICE + timedelta(hours=9))]) == []
    alerts = detector.observe([linkage(evening), linkage(evening + timedelta(hours=1))])
    assert rules_of(alerts) == [OFF_HOURS]  # once a night, not per request
    assert "Tue 20:30 JST" in alerts[0].detail
    assert rules_of(detector.observe([linkage(saturday)])) == [OFF_HOURS]
    late = Detector(Rules(office_close=datetime(2000, 1, 1, 21).time()), everyone_bound)
    assert late.observe([linkage(evening)]) == []  # office hours are configurable


def test_an_off_hours_request_read_a_day_late_is_alerted_and_moves_no_quiet_back() -> None:
    """A Saturday night's request alerted, then the Thursday night's before it, read after a
    consumer's day-long outage: the ordered log alerted both. The quiet was taken one way only
    from the latest alert (`at - last`, negative for an earlier one), so the Thursday's was never
    said. Each alert is quiet before and after it: the Saturday's next request, half an hour on,
    is within the Saturday's (the late one moved it not back), the Friday's early one within the
    Thursday's."""
    detector = Detector(Rules(), everyone_bound)
    saturday = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)  # 23:00 JST
    thursday = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)  # 22:00 JST
    assert rules_of(detector.observe([linkage(saturday)])) == [OFF_HOURS]
    assert rules_of(detector.observe([linkage(thursday)])) == [OFF_HOURS]
    assert detector.observe([linkage(saturday + timedelta(minutes=30))]) == []
    assert detector.observe([linkage(thursday + timedelta(hours=6))]) == []  # its own night


def test_bursts_of_rejections() -> None:
    detector = Detector(Rules(burst_rejections=5, burst_window=timedelta(minutes=1)),
                        everyone_bound)
    slow = [linkage(OFFICE + timedelta(seconds=20 * n), person=PERSONS[n], outcome="REJECTED",
                    reason="WRONG_PROVIDER") for n in range(8)]
    assert detector.observe(slow) == []  # 3 a minute
    fast = [linkage(OFFICE + timedelta(minutes=10, seconds=n), person=None, outcome="REJECTED",
                    reason="NOT_PERMITTED") for n in range(11)]
    alerts = detector.observe(fast)
    assert rules_of(alerts) == [REJECTION_BURST, REJECTION_BURST]
    assert alerts[0].event_id == fast[4].event_id and "NOT_PERMITTED" in alerts[0].detail


def test_applications_refused_for_a_suspended_holder_raise_nothing_and_are_no_linkage(
        ) -> None:
    """Residents' applications naming a suspended holder, refused by the platform in its stead
    (APPLICATION, REJECTED, the portal the requester), tripped REJECTION_BURST against the
    portal: a refusal for an inactive holder's sake is no requester's doing. None counts as a
    linkage either, nor is re-checked as one by the replay."""
    suspended = HolderEntry("town", "town", "municipality", "town", 0, b"k", False, False, OFFICE,
                            inactive_since=OFFICE)
    refused = [s.message for n in range(30) for s in applications.relay(
        HolderLogRequest(f"ap-{n}", OFFICE, ("town",), ("req-1",), "本人"), {"town": suspended},
        OFFICE + timedelta(seconds=n), OFFICE + timedelta(seconds=n))
        if isinstance(s.message, AccessLogEvent)]
    assert len(refused) == 30 and {(e.kind, e.outcome) for e in refused} == {
        (APPLICATION, "REJECTED")}
    detector = Detector(Rules(burst_rejections=5, volume_floor=5, person_repeats=2),
                        never_bound)
    assert detector.observe(refused) == []
    recheck = Recheck(History([]), History([]))
    assert not any(recheck.applies(e) for e in refused)


def test_a_holder_querying_a_person_it_never_bound() -> None:
    earlier = {("city", PERSONS[1]): OFFICE}
    detector = Detector(Rules(), lambda holder, person: earlier.get((holder, person)))
    batch = [binding(OFFICE, "city", PERSONS[2]),
             linkage(OFFICE + timedelta(seconds=1), person=PERSONS[1]),  # bound before
             linkage(OFFICE + timedelta(seconds=2), person=PERSONS[2]),  # bound in this batch
             linkage(OFFICE + timedelta(seconds=3), person=PERSONS[3]),
             linkage(OFFICE + timedelta(seconds=4), requester="tax", person=PERSONS[1]),
             linkage(OFFICE + timedelta(seconds=5), person=None, outcome="REJECTED",
                     reason="INVALID_LINK_CODE")]
    alerts = decided(detector, batch)
    assert [(a.rule, a.requester, a.person) for a in alerts] == [
        (UNBOUND_PERSON, "city", PERSONS[3]), (UNBOUND_PERSON, "tax", PERSONS[1])]


def test_the_store_is_asked_once_whether_a_pair_is_bound_but_again_while_it_is_not() -> None:
    asked: list[tuple[str, str]] = []
    bound = {("city", PERSONS[1]): OFFICE}

    def store_bound(holder: str, person: str) -> datetime | None:
        asked.append((holder, person))
        return bound.get((holder, person))

    detector = Detector(Rules(), store_bound)
    for n in range(3):
        detector.observe([linkage(OFFICE + timedelta(seconds=n), person=PERSONS[1]),
                          linkage(OFFICE + timedelta(seconds=n), person=PERSONS[2])])
        bound[("city", PERSONS[2])] = OFFICE + timedelta(milliseconds=500)  # after the first
    detector.observe([linkage(OFFICE, person=PERSONS[2])])  # late, made before its binding
    assert asked == [("city", PERSONS[1]), ("city", PERSONS[2]), ("city", PERSONS[2]),
                     ("city", PERSONS[2])]


@pytest.mark.parametrize("later_batch", [False, True])
def test_a_binding_made_after_the_request_excuses_it_not_once_the_store_holds_it(
        later_batch: bool) -> None:
    """The store, asked at the decision, held the binding the consumer stored since the request
    was read, made after it: a request made before its requester's binding was not alerted."""
    stored: dict[tuple[str, str], datetime] = {}
    detector = Detector(Rules(), lambda holder, person: stored.get((holder, person)))
    request = linkage(OFFICE, person=PERSONS[3])
    made = binding(OFFICE + timedelta(seconds=3), "city", PERSONS[3])
    for batch in ([request], [made]) if later_batch else ([request, made],):
        assert detector.observe(batch) == []
        stored.update((pair, e.occurred_at) for e in batch  # appended
                      if (pair := binding_of(e)) is not None)
    alerts = detector.caught_up(OFFICE + detector.rules.lateness + timedelta(seconds=1))
    assert [(a.rule, a.event_id) for a in alerts] == [(UNBOUND_PERSON, request.event_id)]


def test_windows_are_pruned_as_time_moves_on() -> None:
    detector = Detector(Rules(person_repeats=3), everyone_bound)
    detector.observe(linkage(OFFICE + timedelta(seconds=n), requester=f"h{n}",
                             person=PERSONS[n]) for n in range(50))
    detector.observe([linkage(OFFICE + timedelta(days=1))])
    assert len(detector._persons) == 1 and len(detector._volume) == 1


SATURDAY = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # Saturday 00:00 JST: off hours all day
RESUMING = Rules(norm_buckets=10, volume_floor=10, volume_factor=3.0, burst_rejections=20)


def a_day_and_more() -> list[AccessLogEvent]:
    """30 hours of a log in which every rule fires again and again, each rule's alerts spaced so
    that a window or quiet period is always open: a requester every 30 min (off-hours alerts
    12 h apart), one person queried every 14 min (an alert at every 5th), rejections every 2 s
    for 5 min, a requester's volume stepping up hour by hour, and a suspended holder sending
    20 requests within 40 s every 21 min."""
    log = [linkage(SATURDAY + timedelta(minutes=30 * n), "night", PERSONS[n % 50])
           for n in range(60)]
    log += [linkage(SATURDAY + timedelta(minutes=14 * n), "city") for n in range(128)]
    log += [linkage(SATURDAY + timedelta(hours=2, seconds=2 * n), "tax", None, "REJECTED",
                    "NOT_PERMITTED") for n in range(150)]
    log += [linkage(SATURDAY + timedelta(minutes=m, seconds=60 * k / (2 + m // 60 * 4)), "bank",
                    PERSONS[k % 50]) for m in range(180) for k in range(2 + m // 60 * 4)]
    log += [linkage(SATURDAY + timedelta(minutes=7 * n, seconds=2 * k), "town", PERSONS[k],
                    "REJECTED", "SUSPENDED") for n in range(258) for k in range(n % 3 * 10)]
    return sorted(log, key=lambda event: event.occurred_at)


def test_a_resuming_detector_asks_the_store_of_no_binding() -> None:
    """The audit consumer re-reads the horizon on a thread of its own, on a reader of its own,
    the detector's `bound` the writer's (the event loop's): resuming, it asks nothing of it, the
    requests it re-reads waiting again, asked once they are judged live."""
    asked: list[tuple[str, str]] = []

    def bound(holder: str, person: str) -> datetime | None:
        asked.append((holder, person))
        return None

    at = OFFICE + timedelta(minutes=10)
    made = [linkage(at + timedelta(minutes=m), "town", PERSONS[m]) for m in range(4)]
    detector = Detector(Rules(), bound)
    detector.resume([(e, None) for e in made], [])
    assert asked == []
    assert rules_of(detector.caught_up(at + timedelta(hours=1))) == [UNBOUND_PERSON] * 4
    assert sorted(asked) == sorted(("town", e.person) for e in made)


def test_a_resumed_detector_raises_what_the_stopped_one_would_have() -> None:
    log = a_day_and_more()
    uninterrupted = Detector(RESUMING, everyone_bound)
    alerts = [uninterrupted.observe([event]) for event in log]
    assert {a.rule for raised in alerts for a in raised} == {
        VOLUME, REPEATED_PERSON, OFF_HOURS, REJECTION_BURST, SUSPENDED_REQUESTS}
    for stop in range(1, len(log), 37):  # the log's first `stop` events were seen before
        latest = log[stop - 1].occurred_at
        restarted = Detector(RESUMING, everyone_bound)
        restarted.resume([(e, None) for e in log[:stop]
                          if e.occurred_at >= latest - RESUMING.horizon],
                         [Raised.of(a) for raised in alerts[:stop] for a in raised
                          if a.occurred_at >= latest - RESUMING.memory])
        assert restarted.observe(log[stop:]) == [a for raised in alerts[stop:] for a in raised], (
            f"restarted after {stop} events")


def test_an_event_at_the_ends_of_time_stalls_no_detector() -> None:
    """Its JST day past year 9999, or its windows before year 1, ended `observe` in an
    OverflowError: the audit consumer raised it at that batch, and again at each restart."""
    detector = Detector(Rules(), everyone_bound)
    ends = [linkage(datetime(9999, 12, 31, 23, tzinfo=UTC)),
            linkage(datetime(1, 1, 1, 0, 30, tzinfo=UTC), outcome="REJECTED",
                    reason="NOT_PERMITTED")]
    assert detector.observe(ends) == []
    night = OFFICE + timedelta(hours=12)  # 22:00 JST
    assert rules_of(detector.observe([linkage(night)])) == [OFF_HOURS]


def test_an_event_dated_far_ahead_of_its_reading_is_counted_as_of_it_and_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """An event a year ahead (its writer's clock set wrong) made the detector's latest time a
    year ahead for good: every event after it was more than the lateness behind, a warning each
    batch, each request's decision on an unbound person taken at once, before the binding read
    in the next batch (a false alert each), and the windows were never pruned again. Now it is
    counted as dated when it was read (its request's decision due the lateness after), and said
    once for its requester; the requests read after it are decided and pruned as without it. A
    binding of that clock too, made before the request by it and read a batch later, excuses it
    (dated at their readings, it came after)."""
    rules = Rules()
    detector = Detector(rules, never_bound)
    minutes = 4 * int(rules.horizon / timedelta(minutes=1))  # four horizons, a request a minute
    year = OFFICE + timedelta(days=365)
    ahead = [linkage(year, "clock", PERSONS[n]) for n in (1, 2)]
    bound_ahead = binding(year - timedelta(seconds=1), "clock", PERSONS[2])
    with caplog.at_level(logging.WARNING, "audit.detector"):
        alerts = detector.observe(ahead, read=OFFICE)
        for m in range(minutes):  # each request's binding made before it, read a batch later
            at = OFFICE + timedelta(minutes=m, seconds=30)
            made = [linkage(at, "city", f"{m:011d}")]
            made += [binding(at - timedelta(seconds=61), "city", f"{m - 1:011d}")] if m else [
                bound_ahead]
            alerts += detector.observe(made, read=at + timedelta(seconds=1))
    assert [(a.rule, a.event_id, a.occurred_at) for a in alerts] == [
        (UNBOUND_PERSON, ahead[0].event_id, OFFICE)]
    [said] = caplog.records  # no warning of events behind the latest, one line for "clock"
    assert "'clock'" in said.getMessage() and PERSONS[1] not in said.getMessage()
    assert len(detector._persons) <= 2 * rules.horizon / timedelta(minutes=1)  # pruned


def test_each_episode_of_a_requesters_clock_ahead_is_said_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """A requester's events dated far ahead were said once per process: its clock set right
    (an event of it read at its own time), then wrong again, the second episode was not said
    until the consumer restarted. Each episode is said once, its further events not; a restarted
    detector re-reading the horizon does not say again the episode it is still in."""
    year = timedelta(days=365)
    reads = [OFFICE + timedelta(minutes=m) for m in range(6)]
    episodes = [linkage(reads[0] + year, "clock"), linkage(reads[1] + year, "clock"),
                linkage(reads[2], "clock"), linkage(reads[3] + year, "clock"),
                linkage(reads[4] + year, "clock")]
    detector = Detector(Rules(), everyone_bound)
    with caplog.at_level(logging.ERROR, "audit.detector"):
        for event, read in zip(episodes, reads, strict=False):
            detector.observe([event], read)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert episodes[0].event_id in said[0] and episodes[3].event_id in said[1]
    caplog.clear()
    restarted = Detector(Rules(), everyone_bound)
    with caplog.at_level(logging.ERROR, "audit.detector"):
        restarted.resume(zip(episodes[3:], reads[3:5], strict=True), [], reads[4])
        restarted.observe([linkage(reads[5] + year, "clock")], reads[5])
    assert caplog.records == []  # the episode it re-read is the one it is in


def test_an_event_dated_just_under_the_lateness_ahead_of_its_reading_takes_no_decision_early(
        ) -> None:
    """An event is written before it is read: one dated ahead of its reading by more than two
    machines' clocks may differ (clock.AHEAD) has its writer's clock wrong. One dated up to
    `Rules.lateness` ahead was taken at its own time, and put the latest that far on: a linkage
    read just before it, whose binding (made before it, by a right clock) was read within the
    lateness, was decided at once, before the binding came (a false UNBOUND_PERSON alert)."""
    rules = Rules()
    made = linkage(OFFICE, "city", PERSONS[1])
    other_read = OFFICE + timedelta(seconds=2)
    other = linkage(other_read + rules.lateness - timedelta(seconds=1), "clock", PERSONS[2])
    bound = binding(OFFICE - timedelta(seconds=1), "city", PERSONS[1])
    detector = Detector(rules, never_bound)
    alerts = detector.observe([made], OFFICE) + detector.observe([other], other_read)
    alerts += detector.observe([bound], OFFICE + rules.lateness / 2)
    alerts += detector.caught_up(other_read + rules.lateness + timedelta(seconds=1))
    assert [(a.rule, a.event_id) for a in alerts] == [(UNBOUND_PERSON, other.event_id)]


def test_the_rules_reach_is_worked_out_once_not_per_event() -> None:
    """The horizon and memory of a Rules are worked out once (the detector asks them of each
    event), and are what their windows make them."""
    rules = Rules()
    assert rules.horizon is rules.horizon and rules.horizon == timedelta(minutes=125)
    assert rules.memory is rules.memory and rules.memory == timedelta(hours=12)


def rejected(at: datetime, requester: str = "tax", reason: str = "NOT_PERMITTED"
             ) -> AccessLogEvent:
    return linkage(at, requester, None, "REJECTED", reason)


def test_a_burst_completed_by_a_late_rejection_is_alerted() -> None:
    """Access-log events come from several partitions and platform instances, out of their time
    order: a rejection a minute late, after a later one had slid the window past it, was counted
    with that one alone, and the five within 5 s went unalerted."""
    detector = Detector(Rules(burst_rejections=5), everyone_bound)
    assert detector.observe([rejected(OFFICE + timedelta(seconds=s)) for s in range(4)]) == []
    assert detector.observe([rejected(OFFICE + timedelta(seconds=65))]) == []
    late = rejected(OFFICE + timedelta(seconds=4))
    alerts = detector.observe([late])
    assert [(a.rule, a.event_id, a.count) for a in alerts] == [
        (REJECTION_BURST, late.event_id, 5)]


def test_late_rejections_spread_over_minutes_raise_no_burst() -> None:
    """Rejections 20 s apart (3 a minute) that came newest first were all counted from the late
    one's window start to the newest: five within 100 s made a burst of a minute."""
    detector = Detector(Rules(burst_rejections=5), everyone_bound)
    spread = [rejected(OFFICE + timedelta(seconds=20 * n)) for n in range(8)]
    assert detector.observe(reversed(spread)) == []


def test_a_late_request_in_a_bucket_alerted_for_volume_is_not_alerted_again() -> None:
    """A bucket alerted, then the next one, then a request late into the first: it raised the
    first bucket's alert again (only the latest alerted bucket was remembered)."""
    detector = Detector(Rules(volume_floor=3, volume_factor=1.0, norm_buckets=10),
                        everyone_bound)
    for minute in range(2):
        assert rules_of(detector.observe(
            linkage(OFFICE + timedelta(minutes=minute, seconds=s), person=PERSONS[s])
            for s in range(4))) == [VOLUME]
    assert detector.observe([linkage(OFFICE + timedelta(seconds=5), person=PERSONS[6])]) == []


def shuffled(log: list[AccessLogEvent], lateness: timedelta, seed: int) -> list[AccessLogEvent]:
    """The log as partitions deliver it: each event up to `lateness` late (or none), in the order
    of their arrival."""
    rng = random.Random(seed)
    late = {e.event_id: e.occurred_at + lateness * rng.choice([0, 0, rng.random()]) for e in log}
    return sorted(log, key=lambda e: late[e.event_id])


def test_events_out_of_order_within_the_lateness_raise_the_alerts_of_the_ordered_log() -> None:
    """Each rule's alerts, per requester (and person), for the log in time order and for it as
    several partitions deliver it (each event up to `Rules.lateness` late): the same volume and
    off-hours alerts; a burst or repeated person alerted too, as often or less (a late event
    before an alert is counted in what it said); none where the ordered log raised none. The
    volume alerts were 17 to 27 instead of 4 (a bucket alerted again, a norm cut short)."""
    log = a_day_and_more()

    def raised(events: list[AccessLogEvent]) -> Counter[tuple[str, str, str | None]]:
        detector = Detector(RESUMING, everyone_bound)
        return Counter((a.rule, a.requester, a.person) for a in detector.observe(events))

    ordered = raised(log)
    assert {rule for rule, _, _ in ordered} == {VOLUME, REPEATED_PERSON, OFF_HOURS,
                                                  REJECTION_BURST, SUSPENDED_REQUESTS}
    for seed in range(5):
        late = raised(shuffled(log, RESUMING.lateness, seed))
        assert set(late) == set(ordered) and late <= ordered, f"seed {seed}"
        assert [late[k] for k in ordered if k[0] in (VOLUME, OFF_HOURS)] == [
            ordered[k] for k in ordered if k[0] in (VOLUME, OFF_HOURS)], f"seed {seed}"


def test_an_event_later_than_the_lateness_is_counted_where_its_window_is_kept_and_said(
        caplog: pytest.LogCaptureFixture) -> None:
    """A person queried four times, then a request 20 minutes on, then the fifth query 16
    minutes late (after a crash): its hour's window is kept, and the repeat alerted with the
    five (they were six within 20 minutes); a rejection as late beside one still kept, the
    burst of two within a second too. The detector says how many came so late, and from when."""
    detector = Detector(Rules(person_repeats=5, burst_rejections=2), everyone_bound)
    assert detector.observe([linkage(OFFICE + timedelta(minutes=m)) for m in range(4)]) == []
    assert detector.observe([rejected(OFFICE), linkage(OFFICE + timedelta(minutes=20),
                                                       person=PERSONS[1])]) == []
    with caplog.at_level(logging.WARNING, "audit.detector"):
        alerts = detector.observe([linkage(OFFICE + timedelta(minutes=4)),
                                   rejected(OFFICE + timedelta(seconds=1))])
    assert [(a.rule, a.count) for a in alerts] == [(REPEATED_PERSON, 5), (REJECTION_BURST, 2)]
    assert "saw 2 events more than 5 min behind the latest" in caplog.text
    assert OFFICE.isoformat() not in caplog.text and (
        f"the oldest of {(OFFICE + timedelta(seconds=1)).isoformat()}" in caplog.text)


def test_a_suspended_holder_sending_on_is_alerted_once_and_masks_no_other_burst() -> None:
    """A suspended holder's requests, refused SUSPENDED, counted as its bursts of rejections:
    one alert every 20 (50 for its 1,000 in 10 minutes), beside its volume's (one a minute) and
    each person's it asked again; and a holder asking it, refused SUSPENDED too, was alerted a
    burst of rejections with them. The oversight body is told once that a holder sends on into a
    suspension (SUSPENDED_REQUESTS, then quiet for `suspended_quiet`), and each holder's own
    rejections still make their bursts."""
    rules = Rules(volume_floor=50)
    flood = [linkage(OFFICE + timedelta(milliseconds=600 * n), "town", PERSONS[n % 10],
                     "REJECTED", "SUSPENDED") for n in range(1000)]
    asking = [linkage(OFFICE + timedelta(seconds=n), "city", PERSONS[n], "REJECTED", "SUSPENDED")
              for n in range(25)]
    own = [rejected(OFFICE + timedelta(minutes=5, seconds=n), "city", "WRONG_PROVIDER")
           for n in range(20)]
    log = sorted(flood + asking + own, key=lambda e: e.occurred_at)
    alerts = Detector(rules, everyone_bound).observe(log)
    assert [(a.rule, a.requester, a.count) for a in alerts] == [
        (SUSPENDED_REQUESTS, "town", 20), (SUSPENDED_REQUESTS, "city", 20),
        (REJECTION_BURST, "city", 20)]
    assert "SUSPENDED" in alerts[0].detail and "12 h" in alerts[0].detail
    assert "WRONG_PROVIDER" in alerts[2].detail
    detector = Detector(rules, everyone_bound)
    day = [linkage(OFFICE + timedelta(hours=h, seconds=s), "town", None, "REJECTED", "SUSPENDED")
           for h in range(0, 30, 5) for s in range(20)]  # 20 within 20 s every 5 hours
    assert [a.occurred_at - OFFICE for a in detector.observe(day)] == [
        timedelta(seconds=19), timedelta(hours=15, seconds=19)]  # the first after 12 h


def test_a_burst_of_suspended_requests_read_late_within_an_earlier_alerts_quiet_is_not_alerted(
        ) -> None:
    """Bursts of requests refused SUSPENDED alerted at 0 h and 20 h, then one at 1 h read late:
    within the first alert's quiet, the ordered log alerted it not. The quiet was of the latest
    alert alone (20 h), so it was alerted."""
    detector = Detector(Rules(), everyone_bound)

    def burst(at: datetime) -> list[AccessLogEvent]:
        return [linkage(at + timedelta(seconds=s), "town", None, "REJECTED", "SUSPENDED")
                for s in range(20)]

    assert rules_of(detector.observe(burst(OFFICE))) == [SUSPENDED_REQUESTS]
    assert rules_of(detector.observe(burst(OFFICE + timedelta(hours=20)))) == [
        SUSPENDED_REQUESTS]
    assert detector.observe(burst(OFFICE + timedelta(hours=1))) == []


def test_a_suspended_holders_refusals_make_no_norm_for_its_volume() -> None:
    """Counted in its volume, the refusals of a holder suspended for an hour raised its norm: at
    100 a minute, its 60 requests within a minute once resumed stayed under the threshold."""
    detector = Detector(Rules(volume_floor=10, volume_factor=5.0, norm_buckets=10),
                        everyone_bound)
    refused = [linkage(OFFICE + timedelta(seconds=0.6 * n), "town", PERSONS[n % 10], "REJECTED",
                       "SUSPENDED") for n in range(1000)]
    detector.observe(refused)
    resumed = [linkage(OFFICE + timedelta(minutes=10, seconds=n), "town", PERSONS[n])
               for n in range(60)]
    assert rules_of(detector.observe(resumed)) == [VOLUME]


def test_a_binding_that_comes_after_the_request_it_made_possible_excuses_it() -> None:
    """A binding and the linkage made with its link code are logged under two request ids, on
    two partitions: the linkage's event, read first in a batch, was alerted as about a person
    the holder never bound. A binding of the batch excuses a request made after it, whichever
    came first; not one made before it."""
    batch = [linkage(OFFICE + timedelta(seconds=2), person=PERSONS[2]),
             binding(OFFICE + timedelta(seconds=1), "city", PERSONS[2]),
             linkage(OFFICE + timedelta(seconds=2), person=PERSONS[3]),
             binding(OFFICE + timedelta(seconds=3), "city", PERSONS[3])]
    alerts = decided(Detector(Rules(), never_bound), batch)
    assert [(a.rule, a.person) for a in alerts] == [(UNBOUND_PERSON, PERSONS[3])]


def test_a_binding_read_in_a_later_batch_than_its_linkage_excuses_it() -> None:
    """Events come from several partitions, each up to `Rules.lateness` behind the latest: the
    binding that gave a holder a person's link code, read in the batch after the linkage made
    with it, came too late, and the linkage was alerted as about a person the holder never bound.
    The decision waits until a binding that late could have been read (the events' time past
    the linkage's by more than the lateness), and is then the same as it was."""
    rules = Rules()
    detector = Detector(rules, never_bound)
    made = [linkage(OFFICE, person=PERSONS[2]), linkage(OFFICE, person=PERSONS[3])]
    assert detector.observe(made) == []
    assert detector.observe([binding(OFFICE - timedelta(seconds=1), "city", PERSONS[2]),
                             binding(OFFICE, "tax", PERSONS[3])]) == []  # not city's
    assert detector.observe([binding(OFFICE + rules.lateness, "other", PERSONS[9])]) == []
    alerts = detector.observe([binding(OFFICE + rules.lateness + timedelta(milliseconds=1),
                                       "other", PERSONS[9])])
    assert alerts == [Alert(f"{UNBOUND_PERSON}:{made[1].event_id}", UNBOUND_PERSON, "city",
                            PERSONS[3], OFFICE, made[1].event_id, 1,
                            "a linkage request about a person the requester never bound (no "
                            "binding gave it this person)")]


def test_a_resumed_detector_takes_the_unbound_decisions_left_waiting_once() -> None:
    """Linkages every 40 s, the bindings of a third of them read 3 min after them (within the
    lateness), another third's persons bound by another holder: the uninterrupted detector
    alerts the two thirds not bound by the requester, each once its lateness has passed; one
    restarted anywhere (the store holding the bindings read before) raises the same alerts
    after the restart, those taken before it not again, none left waiting lost."""
    made = [linkage(OFFICE + timedelta(seconds=40 * n), person=PERSONS[n]) for n in range(30)]
    bindings = [binding(e.occurred_at - timedelta(seconds=1), "city" if n % 3 == 0 else "tax",
                        PERSONS[n]) for n, e in enumerate(made) if n % 3 != 1]
    arrival = {e.event_id: e.occurred_at + timedelta(minutes=3 * (e.kind == "BINDING"))
               for e in made + bindings}
    log = sorted(made + bindings, key=lambda e: arrival[e.event_id])

    def held(store: dict[tuple[str, str], datetime]) -> Callable[[str, str], datetime | None]:
        return lambda holder, person: store.get((holder, person))

    def observed(detector: Detector, events: list[AccessLogEvent],
                 store: dict[tuple[str, str], datetime]) -> list[list[Alert]]:
        """Each event's alerts, one batch each, its binding in the store after (as the audit
        consumer appends it)."""
        alerts = []
        for event in events:
            alerts.append(detector.observe([event]))
            if (pair := binding_of(event)) is not None:
                store[pair] = event.occurred_at
        return alerts

    store: dict[tuple[str, str], datetime] = {}
    alerts = observed(Detector(Rules(), held(store)), log, store)
    assert [(a.rule, a.event_id) for raised in alerts for a in raised] == [
        (UNBOUND_PERSON, e.event_id) for n, e in enumerate(made[:22]) if n % 3 != 0]
    for stop in range(1, len(log)):
        latest = max(e.occurred_at for e in log[:stop])
        kept = {pair: e.occurred_at for e in log[:stop] if (pair := binding_of(e)) is not None}
        restarted = Detector(Rules(), held(kept))
        restarted.resume([(e, None) for e in log[:stop]
                          if e.occurred_at >= latest - Rules().horizon],
                         [Raised.of(a) for raised in alerts[:stop] for a in raised])
        assert observed(restarted, log[stop:], kept) == alerts[stop:], f"restarted at {stop}"


def test_a_caught_up_detector_takes_the_unbound_decisions_due_by_the_time_it_is_told() -> None:
    """In a quiet log no later event moves the events' time past a linkage's lateness, and a
    linkage about a person its requester never bound waited unalerted until one came (hours, at
    night). Told the time by a consumer that has read the log to its end, the detector takes the
    decisions due by then (a binding that late would have been read), the alert the same as an
    event that late raises, and once: a detector resumed after it does not raise it again."""
    rules = Rules()
    detector, made = Detector(rules, never_bound), linkage(OFFICE, person=PERSONS[3])
    assert detector.observe([made, binding(OFFICE, "city", PERSONS[2])]) == []
    assert detector.caught_up(OFFICE + rules.lateness) == []
    alerts = detector.caught_up(OFFICE + rules.lateness + timedelta(milliseconds=1))
    assert alerts == decided(Detector(rules, never_bound), [made])
    assert [a.event_id for a in alerts] == [made.event_id]
    assert detector.caught_up(OFFICE + 2 * rules.lateness) == []
    resumed = Detector(rules, never_bound)
    resumed.resume([(made, None)], [Raised.of(a) for a in alerts])
    assert resumed.caught_up(OFFICE + 2 * rules.lateness) == []
