"""The holder directory's history, which audit replay re-checks approvals by, outlives them on its
compacted topic: a holder's entry written over (a suspension, a renewal, a re-keying) keeps its
earlier value while the audit topic keeps what was approved by it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from audit.replay import History, Recheck
from broker import topics
from schemas.messages import HolderEntry
from tests.test_pattern_history import compacted
from tests.test_recheck import T0, event, holder, pattern

DAY = timedelta(days=1)
NENKIN, TOWN = holder("nenkin", "pension_service"), holder("town", "municipality")
LATER = T0 + 30 * DAY


@pytest.mark.parametrize("written_over", [
    (b"town", replace(TOWN, active=False, inactive_since=LATER)),  # the provider suspended
    (b"nenkin", replace(NENKIN, public_key=b"k2", updated_at=LATER)),  # the requester renewed
    (b"nenkin", replace(NENKIN, key_epoch=1, rekeyed_at=LATER)),  # its unit re-keyed
], ids=["suspended", "renewed", "rekeyed"])
def test_an_approval_before_a_holders_next_entry_rechecks_as_approved_while_it_is_kept(
        written_over: tuple[bytes, HolderEntry]) -> None:
    """nenkin asked town at T0 + 1 day, approved; at T0 + 30 days one of them got its next entry:
    once compaction dropped the entry before it, the holder was in the directory from that
    record's time only, and the approval re-checked as UNKNOWN_HOLDER (town) or NOT_PERMITTED
    (nenkin, unlisted), a false disagreement, while the audit topic still kept it (7 years)."""
    written = [(T0, b"nenkin", NENKIN), (T0, b"town", TOWN), (LATER, *written_over)]
    approved = event(T0 + DAY)
    spec, = (s for s in topics.platform_topics() if s.name == topics.DIRECTORY)
    lag = timedelta(milliseconds=int(spec.configs().get("min.compaction.lag.ms", "0")))
    last_kept = approved.occurred_at + timedelta(milliseconds=topics.kept_ms(topics.AUDIT))
    patterns = History([(T0, b"P-1#1", pattern(1, ("local_tax",), T0))])
    check = Recheck(patterns, History(compacted(written, last_kept, lag)))
    assert check.check(approved) is None
