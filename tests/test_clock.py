"""The wall clock read against the elapsed one: steps told from time elapsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import audit.detector
import portal.web
import registry.normalize
from renkei import clock
from renkei.clock import MOST, Age, Clock, Mark
from tests.clock_helpers import Hands, machine_clocks

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class _Hands:
    """A wall clock and an elapsed one a test moves, read by one clock at each move: time passing
    both, a step the wall's."""

    def __init__(self) -> None:
        self.wall, self.elapsed = T0, 0.0
        self.clock = Clock(lambda: self.wall, lambda: self.elapsed, lambda: "this boot")

    def passes(self, minutes: int) -> None:
        self.wall += timedelta(minutes=minutes)
        self.elapsed += minutes * 60.0
        self.clock()

    def steps(self, minutes: int) -> None:
        self.wall += timedelta(minutes=minutes)
        self.clock()


def test_a_time_read_before_a_step_back_is_as_old_as_the_time_elapsed_since() -> None:
    """Set back an hour after ten minutes, the clock tells T0 (and a time either timeline could
    have read, taken for the older's) ten minutes ago, not fifty minutes ahead; the earliest time
    now is the wall clock's."""
    hands = _Hands()
    hands.clock()
    hands.passes(10)
    hands.steps(-60)
    assert hands.clock() == T0 - timedelta(minutes=50)
    for read in (T0, T0 - timedelta(minutes=30)):
        assert hands.clock.since(read) == T0 + timedelta(minutes=10)
    assert hands.clock.earliest() == T0 - timedelta(minutes=50)


def test_a_time_read_before_a_step_forward_is_as_old_as_the_time_elapsed_since() -> None:
    """Set forward two hours after ten minutes, the clock tells T0 ten minutes ago and a time read
    after the step by the wall clock; one no timeline read (in the step) by the wall clock; the
    earliest time now is the one before the step."""
    hands = _Hands()
    hands.clock()
    hands.passes(10)
    hands.steps(120)
    hands.passes(1)
    now = T0 + timedelta(minutes=131)
    assert hands.clock.since(T0) == T0 + timedelta(minutes=11)
    assert hands.clock.since(now - timedelta(minutes=1)) == now
    assert hands.clock.since(T0 + timedelta(minutes=60)) == now
    assert hands.clock.earliest() == T0 + timedelta(minutes=11)


def test_the_clock_keeps_its_latest_timelines() -> None:
    """Past MOST steps the oldest timeline goes: a time it read is judged by the oldest kept."""
    hands = _Hands()
    hands.clock()
    for _ in range(MOST):
        hands.passes(1)
        hands.steps(-2)
    assert hands.clock.since(T0) == hands.clock.since(T0 - timedelta(days=1))
    assert hands.clock.since(T0) < T0 + timedelta(minutes=MOST)


@pytest.mark.parametrize("boot, aged", [("this boot", timedelta(minutes=1)),
                                        ("another boot", timedelta(minutes=61))])
def test_a_time_marked_in_this_boot_is_as_old_as_the_time_elapsed_whatever_the_steps(
        boot: str, aged: timedelta) -> None:
    """Set back an hour after two, a time read after the step and marked in this boot is a minute
    old a minute later: it was taken for the older timeline's, an hour older; one marked in
    another boot (its elapsed reading not this boot's) is judged by the timelines still."""
    hands = _Hands()
    hands.clock()
    hands.passes(120)
    hands.steps(-60)
    read, mark = hands.clock(), hands.clock.mark()
    assert mark == Mark.of("this boot", 120 * 60.0)
    hands.passes(1)
    assert hands.clock.since(read, Mark.of(boot, 120 * 60.0)) == read + aged


@pytest.mark.parametrize("boottime, aged", [(True, timedelta(hours=1)), (False, timedelta(0))])
def test_a_suspend_is_time_elapsed_where_the_elapsed_clock_counts_it(
        monkeypatch: pytest.MonkeyPatch, boottime: bool, aged: timedelta) -> None:
    """Suspended an hour (the wall clock and CLOCK_BOOTTIME on, the monotonic clock stopped), a
    time read before is an hour older where there is CLOCK_BOOTTIME (Linux): it was judged by the
    monotonic clock, so a resume read as a step and a ticket lived on for the time suspended;
    with no CLOCK_BOOTTIME, by the monotonic one."""
    wall, machine = [T0], machine_clocks(monkeypatch, boottime)
    clock = Clock(lambda: wall[0])
    clock()
    wall[0] += timedelta(hours=1)
    machine["boottime"] += 3600.0
    assert clock.since(T0) == T0 + aged


def test_a_mark_tells_neither_the_boot_id_nor_when_the_machine_booted() -> None:
    """A mark travels in a card login's challenge (the resident's browser and reader see it) and
    in a login ticket: it named the boot by its boot_id and read the elapsed clock from the boot,
    so a challenge's time less its reading told when the machine booted. It names the boot by
    another name, read from another origin, by which two marks of one boot are still told apart
    by the time elapsed between them, and told from another boot's."""
    boot_id = "0e6c4a53-3ad2-4c5e-9d6f-2b1f8a7c9e10"
    hands = Hands(T0, elapsed=7200.0, boot=boot_id)
    clock = hands.clock()
    first = clock.mark()
    assert first is not None
    assert boot_id not in first.boot and boot_id.replace("-", "") not in first.boot
    assert first.elapsed != 7200.0
    hands.passes(timedelta(minutes=1))
    assert clock.mark() == first.after(timedelta(minutes=1))
    assert Mark.of("another boot", 7200.0).boot != first.boot


def test_a_time_marked_in_another_time_namespace_is_judged_by_the_timelines(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A container with a time namespace of its own shares the machine's boot_id, its
    CLOCK_BOOTTIME a day ahead: a time marked in it a minute ago is a minute old outside it, by
    the timelines; it was taken for this boot's, read a day ahead (so refused as from the
    future, and one marked outside a day old inside)."""
    machine, boot_id, namespace = machine_clocks(monkeypatch), tmp_path / "boot_id", tmp_path / "ns"
    boot_id.write_text("0e6c4a53-3ad2-4c5e-9d6f-2b1f8a7c9e10\n")
    monkeypatch.setattr(clock, "BOOT_ID", boot_id)
    monkeypatch.setattr(clock, "TIME_NAMESPACE", namespace)
    wall = [T0]
    namespace.symlink_to("time:[4026531834]")
    host = Clock(lambda: wall[0])
    namespace.unlink()
    namespace.symlink_to("time:[4026532174]")
    machine["boottime"] += 86400.0
    marked = Clock(lambda: wall[0]).mark()
    machine["boottime"] += 60.0 - 86400.0
    wall[0] += timedelta(minutes=1)
    assert not host.in_this_boot(marked)
    assert host.judged(T0, marked, timedelta(hours=1)) is Age.YOUNG
    assert host.since(T0, marked) == T0 + timedelta(minutes=1)


def test_a_mark_of_this_boot_reading_ahead_is_judged_forged_not_ahead() -> None:
    """A time marked in this boot more than AHEAD later than its elapsed clock reads is forged (no
    mark made here reads ahead); one read as far ahead of the wall clock, unmarked or marked in
    another boot, is ahead (another machine's clock is); marked AHEAD later, it is young."""
    hands = Hands(T0, 3600.0)
    judge, lasts, beyond = hands.clock(), timedelta(minutes=3), clock.AHEAD + timedelta(seconds=1)
    assert judge.judged(T0, hands.mark().after(beyond), lasts) is Age.FORGED
    assert judge.judged(T0 + beyond, None, lasts) is Age.AHEAD
    assert judge.judged(T0 + beyond, hands.mark("another boot"), lasts) is Age.AHEAD
    assert judge.judged(T0, hands.mark().after(clock.AHEAD), lasts) is Age.YOUNG


def test_a_time_near_year_9999_marked_in_this_boot_is_as_old_as_its_mark() -> None:
    """A time read in the calendar's last second and marked in this boot (this machine's clock
    read it) is as old as its mark, though the calendar cannot hold its span's end nor its time
    now: young, then old once its span has elapsed; it was ahead, as another machine's clock.
    Unmarked, or marked in another boot, it is ahead still."""
    hands = Hands(T0, 3600.0)
    judge, lasts, last = hands.clock(), timedelta(minutes=3), clock.LAST
    marked = hands.mark()
    assert judge.judged(last, marked, lasts) is Age.YOUNG
    hands.passes(lasts)
    assert judge.judged(last, marked, lasts) is Age.OLD
    assert judge.judged(last, None, lasts) is Age.AHEAD
    assert judge.judged(last, hands.mark("another boot"), lasts) is Age.AHEAD


def test_japans_time_is_one_definition_the_registry_portal_and_detector_share() -> None:
    """Japan's time was defined in each of them: one is clock.JST."""
    used = [vars(module)["JST"] for module in (audit.detector, portal.web, registry.normalize)]
    assert all(jst is clock.JST for jst in used)
    assert clock.JST.utcoffset(None) == timedelta(hours=9)
