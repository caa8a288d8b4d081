"""The wall clock read against the elapsed one, so that a step of it (NTP, a clock set by hand)
is told from time elapsing.

The elapsed clock is CLOCK_BOOTTIME where there is one (Linux): it counts time suspended, as the
wall clock tells it on resume, so a suspend is time elapsed, not a step (an hour's ticket suspended
through is an hour old); elsewhere the monotonic clock, which stops while suspended, so that a
resume reads as a step forward. Each reading notes how far the wall clock is from the elapsed one;
a change of more than STEP since the last reading starts a new timeline. `since(read)` is the time
now as the wall clock that read `read` would tell it had it not stepped since: `read` plus the
time elapsed after it (a login ticket's age judged by it is its age, whatever the clock did
meanwhile). Which timeline read a time is known only as finely as the readings fall: a time either
of two could have read is taken for the one that makes it older. `earliest()` is the time now on
the timeline furthest behind of those seen: what has expired by it has by each. The timelines are
this process's own (the last MOST of them); started again, it begins from the wall clock as it is
then.

Where the elapsed clock is CLOCK_BOOTTIME it is the machine's, from its boot, which Linux names
(boot_id), as a time namespace shifts it (a container's of its own, the boot_id the machine's):
the boot a mark names is the boot_id and the time namespace (TIME_NAMESPACE), so a time read
with its `mark()` (the elapsed reading and the boot) is judged by `since` exactly, the time
elapsed since, by any process on the machine in that namespace until it boots again; a time
without a mark, or marked in another boot or namespace, by the timelines. A mark travels (in a
card login's challenge, a login ticket), so it tells neither the boot_id nor when the machine
booted: the boot is named by a hash of its boot_id and namespace, and the reading counted from
an origin drawn from that hash, which only the machine's processes know (Mark.of).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import TypeGuard

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
TIME_NAMESPACE = Path("/proc/self/ns/time")  # its link names the process's (Linux 5.6 on)
STEP = 1.0  # seconds the wall clock may drift from the elapsed one between readings unstepped
MOST = 64  # timelines kept: past it the oldest goes
NAMING = b"renkei boot name v1\x00"  # what a boot_id is hashed after, for its mark's name
NAME_BYTES, ORIGIN_BYTES = 16, 5  # of that hash: the name's; the origin's (ms, up to ~35 years)
ELAPSED_BYTES = 8  # of a packed mark's elapsed reading (Mark.packed)
AHEAD = timedelta(seconds=5)  # how far a time read (another machine's clock, a mark) may be ahead
LAST = datetime.max.replace(tzinfo=UTC)  # the calendar's last instant
JST = timezone(timedelta(hours=9), "JST")  # Japan's time (no daylight saving): its day and hours


def _now() -> datetime:
    return datetime.now(UTC)


def elapsed_seconds() -> float:
    """Seconds on the elapsed clock: CLOCK_BOOTTIME, counting time suspended, where there is one;
    else the monotonic clock."""
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    return time.monotonic() if boottime is None else time.clock_gettime(boottime)


def this_boot() -> str | None:
    """The boot the elapsed clock counts from (Linux's boot_id, with CLOCK_BOOTTIME), and the time
    namespace that shifts it; None where there is none."""
    if getattr(time, "CLOCK_BOOTTIME", None) is None:
        return None
    try:
        boot_id = BOOT_ID.read_text().strip()
    except OSError:
        return None
    return f"{boot_id} {_time_namespace()}" if boot_id else None


def _time_namespace() -> str:
    """This process's time namespace ("time:[inode]"); empty where the kernel has none."""
    try:
        return os.readlink(TIME_NAMESPACE)
    except OSError:
        return ""


@dataclass(frozen=True)
class Mark:
    """The elapsed clock's reading (seconds) when a time was read, and the boot it counts from:
    each as a boot's mark tells it (`of`)."""

    boot: str
    elapsed: float

    @classmethod
    def of(cls, boot_id: str, elapsed: float) -> Mark:
        """The mark of an elapsed reading in the boot of this id: the boot named by a hash of the
        id, the reading counted from an origin drawn from the same hash (the name tells not it)."""
        digest = hashlib.sha256(NAMING + boot_id.encode()).digest()
        origin = int.from_bytes(digest[NAME_BYTES:NAME_BYTES + ORIGIN_BYTES], "big") / 1000
        return cls(digest[:NAME_BYTES].hex(), origin + elapsed)

    def after(self, span: timedelta) -> Mark:
        """The elapsed reading `span` later, in the same boot."""
        return Mark(self.boot, self.elapsed + span.total_seconds())

    @property
    def elapsed_ms(self) -> int:
        """The elapsed reading in milliseconds, as a mark travels."""
        return round(self.elapsed * 1000)

    def packed(self) -> bytes:
        """The mark as a card login's challenge and a login ticket's signature carry it: the
        boot's name, its length (2 bytes) first, then the elapsed reading (milliseconds, 8 bytes),
        each big-endian."""
        boot = self.boot.encode()
        return len(boot).to_bytes(2, "big") + boot + self.elapsed_ms.to_bytes(ELAPSED_BYTES, "big")

    @classmethod
    def unpacked(cls, packed: bytes) -> Mark | None:
        """The mark these bytes carry (`packed`); None if they are not one."""
        length = int.from_bytes(packed[:2], "big")
        if len(packed) != 2 + length + ELAPSED_BYTES:
            return None
        try:
            boot = packed[2:2 + length].decode()
        except UnicodeDecodeError:
            return None
        return cls(boot, int.from_bytes(packed[2 + length:], "big") / 1000)


class Age(Enum):
    """A time read, judged against the span it lives (Clock.judged)."""

    YOUNG = "young"  # read less than its span before now
    OLD = "old"  # read its span or more before now
    AHEAD = "ahead"  # read later than now, by more than AHEAD
    # marked in this boot later than its elapsed clock reads now, by more than AHEAD: the mark is
    # none this machine made (the clock that read it is this one), forged or tampered with
    FORGED = "forged"


def log_refused_ahead(log: logging.Logger, age: Age, refused: str, whose: str) -> None:
    """Log why `refused` is refused if judged `age` ahead, issued more than AHEAD later than this
    clock tells now (`whose` clock, another machine's, is ahead of this one), or forged, marked in
    this machine's boot later than its elapsed clock reads now (no mark made here, so no clock's
    disagreement); nothing for another age."""
    if age is Age.AHEAD:
        log.warning("%s is refused: issued more than %g s later than this clock tells now, %s "
                    "clock is ahead of it (are both machines' clocks synced, NTP?)", refused,
                    AHEAD.total_seconds(), whose)
    elif age is Age.FORGED:
        log.warning("%s is refused: its mark names this machine's boot yet reads more than %g s "
                    "later than its elapsed clock now, as none made here can: forged or tampered "
                    "with, not a clock ahead", refused, AHEAD.total_seconds())


@dataclass
class _Timeline:
    """Readings between two steps: the wall clock's offset from the elapsed one, and the
    elapsed time of its first and last reading (seconds)."""

    offset: float
    first: float
    last: float


class Clock:
    def __init__(self, wall: Callable[[], datetime] = _now,
                 elapsed: Callable[[], float] = elapsed_seconds,
                 boot: Callable[[], str | None] = this_boot) -> None:
        self._wall, self._elapsed = wall, elapsed
        boot_id = boot()
        self._origin = None if boot_id is None else Mark.of(boot_id, 0.0)  # this boot's mark of 0
        self._timelines: list[_Timeline] = []

    def __call__(self) -> datetime:
        """The wall clock's time now."""
        wall, _ = self._read()
        return wall

    def mark(self) -> Mark | None:
        """The elapsed clock's reading now, in this boot (None where boots are not named)."""
        _, elapsed = self._read()
        return self._marked(elapsed)

    def in_this_boot(self, mark: Mark | None) -> TypeGuard[Mark]:
        """Whether a time with this mark was read since this boot: its age is known exactly."""
        return mark is not None and self._origin is not None and mark.boot == self._origin.boot

    def since(self, read: datetime, mark: Mark | None = None) -> datetime:
        """The time now as the wall clock that read `read` would tell it, had it not stepped:
        exactly, if `mark` is this boot's; else by the timeline that read it."""
        _, elapsed = self._read()
        now = self._marked(elapsed)
        if now is not None and self.in_this_boot(mark):
            return read + timedelta(seconds=now.elapsed - mark.elapsed)
        at = read.timestamp()
        readers = [timeline.offset for i, timeline in enumerate(self._timelines)
                   if self._began(i) <= at - timeline.offset <= self._ended(i)]
        return _at(elapsed + max(readers, default=self._timelines[-1].offset))

    def judged(self, read: datetime, mark: Mark | None, lasts: timedelta) -> Age:
        """Whether a time read `read` (marked `mark`) is younger than `lasts` now, older, ahead
        of now by more than AHEAD, or forged. One marked in this boot by its mark alone (`_aged`:
        the calendar not read, so one read near year 9999 is as old as it is); another by the
        timelines (`since`), ahead if none has reached it, or if the calendar cannot hold its
        span's end or its time now (near year 9999)."""
        if self.in_this_boot(mark) and (now := self.mark()) is not None:
            return _aged(now.elapsed - mark.elapsed, lasts)
        try:
            since, ends = self.since(read), read + lasts
        except OverflowError:
            return Age.AHEAD
        if read - since > AHEAD:
            return Age.AHEAD
        return Age.YOUNG if since < ends else Age.OLD

    def earliest(self) -> datetime:
        """The time now on the timeline furthest behind of those seen."""
        _, elapsed = self._read()
        return _at(elapsed + min(timeline.offset for timeline in self._timelines))

    def _read(self) -> tuple[datetime, float]:
        """The wall clock and the elapsed one, read now; a step starts a new timeline."""
        wall, elapsed = self._wall(), self._elapsed()
        offset = wall.timestamp() - elapsed
        if self._timelines and abs(offset - self._timelines[-1].offset) <= STEP:
            self._timelines[-1].last = elapsed
        else:
            self._timelines = [*self._timelines[-(MOST - 1):],
                               _Timeline(offset, elapsed, elapsed)]
        return wall, elapsed

    def _marked(self, elapsed: float) -> Mark | None:
        """The mark of this elapsed reading, in this boot (None where boots are not named)."""
        return None if self._origin is None else Mark(self._origin.boot,
                                                      self._origin.elapsed + elapsed)

    def _began(self, i: int) -> float:
        """The earliest elapsed time the timeline could have begun (the first: ever)."""
        return self._timelines[i - 1].last if i else -math.inf

    def _ended(self, i: int) -> float:
        """The latest elapsed time the timeline could have ended (the last: not yet)."""
        return self._timelines[i + 1].first if i + 1 < len(self._timelines) else math.inf


def _aged(elapsed: float, lasts: timedelta) -> Age:
    """The age of a time marked in this boot `elapsed` seconds ago by its elapsed clock, living
    `lasts`: forged if marked more than AHEAD later than it (none made here is)."""
    if -elapsed > AHEAD.total_seconds():
        return Age.FORGED
    return Age.YOUNG if elapsed < lasts.total_seconds() else Age.OLD


def later(read: datetime, span: timedelta) -> datetime:
    """`span` after `read`, or the calendar's last instant if it cannot hold that (a time
    marked near year 9999, which lives by its mark)."""
    try:
        return read + span
    except OverflowError:
        return LAST


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
