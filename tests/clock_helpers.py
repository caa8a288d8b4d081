"""A clock a test moves (renkei.clock): time passing moves the wall clock and the elapsed one
alike, a step (NTP, a clock set by hand) the wall clock alone; the boot is one of its own."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from types import SimpleNamespace

import pytest

from renkei import sqlite
from renkei.broker_time import LOG_APPEND_TIME
from renkei.clock import Clock, Mark


@dataclass
class Hands:
    """The wall clock and the elapsed one, as a test moves them, and the boot they count from."""

    wall: datetime
    elapsed: float = 0.0
    boot: str = "this boot"

    def passes(self, time: timedelta) -> None:
        self.wall += time
        self.elapsed += time.total_seconds()

    def steps(self, by: timedelta) -> None:
        self.wall += by

    def clock(self) -> Clock:
        return Clock(lambda: self.wall, lambda: self.elapsed, lambda: self.boot)

    def mark(self, boot: str | None = None) -> Mark:
        """The elapsed clock's mark now, in this boot (or in `boot`)."""
        return Mark.of(boot or self.boot, self.elapsed)


def machine_clocks(monkeypatch: pytest.MonkeyPatch, boottime: bool = True) -> dict[str, float]:
    """The machine's monotonic clock and CLOCK_BOOTTIME (`boottime`: Linux's, here anywhere; else
    none) as `time` reads them: the readings a test moves, by name ("monotonic", "boottime")."""
    machine = {"monotonic": 100.0, "boottime": 500.0}
    if boottime:
        monkeypatch.setattr(time, "CLOCK_BOOTTIME", 7, raising=False)
    else:
        monkeypatch.delattr(time, "CLOCK_BOOTTIME", raising=False)
    monkeypatch.setattr(time, "monotonic", lambda: machine["monotonic"])
    monkeypatch.setattr(time, "clock_gettime", lambda _: machine["boottime"])
    return machine


def unmarked(path: Path, table: str, row: tuple[object, ...]) -> None:
    """The store at `path` as one was left before expiries were marked: `table` without the
    mark's columns (renkei.sqlite.MARKED) nor any after them, holding `row`."""
    old = sqlite3.connect(path)
    columns = [name for (_, name, *_) in old.execute(f"PRAGMA table_info({table})")]
    first = columns.index(sqlite.MARKED[0].split()[0])
    for column in columns[first:]:
        old.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    old.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})", row)
    old.commit()
    old.close()


def skewed(skew: timedelta) -> type[datetime]:
    """A wall clock `skew` off."""

    class Skewed(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Skewed:
            return cls.fromtimestamp((datetime.now(tz) + skew).timestamp(), tz)

    return Skewed


def appended(at: datetime, value: bytes = b"") -> SimpleNamespace:
    """A record of `value` the broker stamped at `at`."""
    return SimpleNamespace(value=value, timestamp=int(at.timestamp() * 1000),
                           timestamp_type=LOG_APPEND_TIME)
