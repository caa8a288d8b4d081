"""The broker's time as the platform knows it: a request is received at its outbox record's append
time, so its deadline and the time it may be forgotten are of the broker's clock, and are judged by
it, whatever the platform's own wall clock says."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from renkei.clock import elapsed_seconds

LOG_APPEND_TIME = 1  # a record's timestamp_type when the broker stamped it (its topic's configs)


class BrokerTime:
    """The broker's time now, at least: the latest append time of the records read, carried on by
    this process's elapsed clock since it was read. Never ahead of the broker's clock (unless it
    is set back); behind it by no more than those records waited to be read."""

    def __init__(self) -> None:
        self._from_elapsed: float | None = None  # the broker's time less the elapsed clock

    def read(self, records: Iterable[Any]) -> None:
        """Note the append times of records read (those their writers stamped tell nothing)."""
        stamped = [r.timestamp for r in records if r.timestamp_type == LOG_APPEND_TIME]
        if stamped:
            seen = max(stamped) / 1000 - elapsed_seconds()
            known = self._from_elapsed
            self._from_elapsed = seen if known is None else max(seen, known)

    def now(self) -> datetime | None:
        """The broker's time now, at least (None: no append time read yet)."""
        if self._from_elapsed is None:
            return None
        return datetime.fromtimestamp(self._from_elapsed + elapsed_seconds(), UTC)
