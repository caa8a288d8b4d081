"""The access log's retention, in a module of its own: a holder's library purges its logs by it
without importing the audit store."""

from __future__ import annotations

from datetime import datetime

RETENTION_YEARS = 7


def years_before(moment: datetime, years: int) -> datetime:
    """The same date and time `years` years before `moment` (28 February for a 29th)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


def retention_cutoff(now: datetime) -> datetime:
    """The time before which a log's entries (the holders', the numbering authority's look-ups)
    are past the access log's retention (RETENTION_YEARS)."""
    return years_before(now, RETENTION_YEARS)
