"""`renkei patterns list`: the legal pattern list as published, in force now or every version,
each with the broker time it was published at."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from broker import topics
from processors import pattern_list, patterns
from schemas.codec import CODEC
from schemas.messages import LegalPattern
from tests.kafka_helpers import topic_records

PUBLISHED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _published(at: datetime, *versions: LegalPattern) -> list[object]:
    keyed = [(patterns.key(p).encode(), CODEC.encode(p)) for p in versions]
    return list(topic_records(topics.PATTERNS, *keyed, appended_ms=int(at.timestamp() * 1000)))


def test_in_force_now_each_patterns_version_approval_judges_by_and_all_with_all() -> None:
    """The sample, then P-027 v2 (in force from 2027) and P-002 v1 withdrawn the day after."""
    sample = {(p.pattern_id, p.version): p for p in patterns.load()}
    amended = replace(sample["P-027", 1], version=2,
                      valid_from=datetime(2027, 4, 1, tzinfo=UTC))
    withdrawn = replace(sample["P-002", 1], valid_to=NOW - timedelta(days=1))
    day_after = PUBLISHED + timedelta(days=1)
    listed = pattern_list.published([*_published(PUBLISHED, *sample.values()),
                                     *_published(day_after, amended, withdrawn)])
    assert len(listed) == len(sample) + 1
    assert (day_after, withdrawn) in listed and (day_after, amended) in listed
    now = {f"{p.pattern_id} v{p.version}" for _, p in pattern_list.in_force(listed, NOW)}
    assert now == {"P-016 v1", "P-027 v1", "P-037 v2", "P-074 v1", "P-120 v1"}
    assert pattern_list.line(day_after, amended) == (
        "P-027 v2  municipality → pension_service  pension_benefit  "
        "2027-04-01T00:00:00+00:00 – …  published 2026-12-02T09:00:00+00:00")
