"""The legal pattern list's history, which audit replay re-checks approvals by, outlives them on
its compacted topic: a version withdrawn (published again with a valid_to, the same key) keeps
its earlier value while the audit topic keeps what was approved under it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from audit.replay import History, Recheck
from broker import topics
from tests.test_recheck import T0, event, holder, pattern

DAY = timedelta(days=1)
V = TypeVar("V")


def compacted(records: Sequence[tuple[datetime, bytes, V]], now: datetime, lag: timedelta
              ) -> list[tuple[datetime, bytes, V]]:
    """What the compacted topic holds at `now` (Kafka's log cleaner, at its most eager): a
    key's value is dropped once a newer value of its key is older than the topic's
    min.compaction.lag.ms (`lag`)."""
    return [(at, key, value) for at, key, value in records
            if not any(k == key and at < later <= now - lag for later, k, _ in records)]


def test_an_approval_under_a_withdrawn_version_rechecks_as_approved_while_it_is_kept() -> None:
    """P-1 v1 in force from T0, approved under at T0 + 1 day, withdrawn at T0 + 30 days: once
    compaction dropped v1's first value, its withdrawal was known from its own record time only,
    and the approval re-checked as UNKNOWN_PATTERN, a false disagreement, while the audit topic
    still kept it (seven years)."""
    v1 = pattern(1, ("local_tax",), T0)
    withdrawn = replace(v1, valid_to=T0 + 60 * DAY)
    written = [(T0, b"P-1#1", v1), (T0 + 30 * DAY, b"P-1#1", withdrawn)]
    approved = event(T0 + DAY)
    spec, = (s for s in topics.platform_topics() if s.name == topics.PATTERNS)
    lag = timedelta(milliseconds=int(spec.configs().get("min.compaction.lag.ms", "0")))
    last_kept = approved.occurred_at + timedelta(milliseconds=topics.kept_ms(topics.AUDIT))
    directory = History([(T0, b"nenkin", holder("nenkin", "pension_service")),
                         (T0, b"town", holder("town", "municipality"))])
    check = Recheck(History(compacted(written, last_kept, lag)), directory)
    assert check.check(approved) is None
