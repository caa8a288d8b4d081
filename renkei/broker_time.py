"""The broker's time as a process knows it from the append times it reads: a request is received
at its outbox record's append time, so its deadline and the time it may be forgotten are of the
broker's clock, and are judged by it (the platform's sweeps, a holder answering a query), whatever
the process's own wall clock says."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from renkei.clock import elapsed_seconds

LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it (its topic's configs)
WINDOW = 20.0  # seconds a read counts: a record that waited less is outweighed by one that did
# not, and the broker's clock set back is followed this long after (not until a restart)


class BrokerTime:
    """The broker's time now, at least: the latest append time of the records read in the last
    WINDOW seconds, carried on by this process's elapsed clock since it was read (the last read,
    when none was read in it). Behind the broker's clock by no more than those records waited to
    be read; its clock set back, followed within WINDOW, and after a quiet spell as well."""

    def __init__(self) -> None:
        # (elapsed clock at the read, the broker's time then less it), the later the lower
        self._reads: deque[tuple[float, float]] = deque()

    def read(self, records: Iterable[Any]) -> None:
        """Note the append times of records read (those their writers stamped tell nothing)."""
        latest = _latest(records)
        if latest is not None:
            at = elapsed_seconds()
            self._note(at, latest - at)

    def read_late(self, records: Iterable[Any]) -> None:
        """Note the append times of records that may have waited hours to be read (a take-over's
        last history record): they set the time back only if none was read in the last WINDOW
        seconds (the broker's clock perhaps set back meanwhile; behind is the safe side)."""
        latest, at = _latest(records), elapsed_seconds()
        recent = self._recent(at)
        if latest is not None and (recent is None or latest - at > recent):
            self._note(at, latest - at)

    def _note(self, at: float, seen: float) -> None:
        """Note the broker's time less the elapsed clock, `seen` at `at`."""
        while self._reads and self._reads[-1][1] <= seen:  # outweighed while this one counts
            self._reads.pop()
        while self._reads and self._reads[0][0] < at - WINDOW:
            self._reads.popleft()
        self._reads.append((at, seen))

    def _recent(self, at: float) -> float | None:
        """The latest broker's time less the elapsed clock read in the WINDOW before `at`."""
        return next((seen for read, seen in self._reads if read >= at - WINDOW), None)

    def now(self) -> datetime | None:
        """The broker's time now, at least (None: no append time read yet)."""
        if not self._reads:
            return None
        at = elapsed_seconds()
        recent = self._recent(at)
        return datetime.fromtimestamp((self._reads[-1][1] if recent is None else recent) + at, UTC)


def record_time(record: Any) -> datetime:
    """A record's time: its append time, if its topic's records are stamped by the broker."""
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


def appended_at(record: Any) -> datetime | None:
    """A record's broker append time (None: its topic's records are stamped by their writers)."""
    return record_time(record) if record.timestamp_type == LOG_APPEND_TIME else None


def _latest(records: Iterable[Any]) -> float | None:
    """The latest append time of records, in seconds (None: none stamped by the broker)."""
    stamped = [r.timestamp for r in records if r.timestamp_type == LOG_APPEND_TIME]
    return max(stamped) / 1000 if stamped else None
