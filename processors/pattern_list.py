"""The legal pattern list as published (`renkei patterns list`): each version as its topic has it
now, with the broker time it was published at (its record's), in force now or every one."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from audit.replay import history_of
from broker import topics
from processors.approval import PatternList
from schemas.messages import LegalPattern


def published(records: Iterable[Any]) -> list[tuple[datetime, LegalPattern]]:
    """Each version on the list and when it was published as it stands (the broker time of its
    last record: a withdrawal's, for one withdrawn), by pattern id and version."""
    return sorted(history_of(records, topics.PATTERNS, LegalPattern).latest(),
                  key=lambda listed: (listed[1].pattern_id, listed[1].version))


def in_force(listed: list[tuple[datetime, LegalPattern]], now: datetime
             ) -> list[tuple[datetime, LegalPattern]]:
    """The versions approval judges by at `now`: of each pattern, the one in force then
    (PatternList.in_force), if any."""
    by_now = PatternList(pattern for _, pattern in listed)
    return [(at, p) for at, p in listed if by_now.in_force(p.pattern_id, now) == p]


def line(at: datetime, pattern: LegalPattern) -> str:
    """One version: id, version, requester → provider, data, validity, when published."""
    until = pattern.valid_to.isoformat() if pattern.valid_to else "…"
    return (f"{pattern.pattern_id} v{pattern.version}  {pattern.requester_role} → "
            f"{pattern.provider_role}  {', '.join(pattern.data_types)}  "
            f"{pattern.valid_from.isoformat()} – {until}  "
            f"published {at.isoformat(timespec='seconds')}")
