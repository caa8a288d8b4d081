"""A holder's suspensions: whether its directory entry is active as of a time, and which
suspension a time falls in (the platform judges a holder's message so, and so do the holder
library and the portal where they ask whether one is active)."""

from __future__ import annotations

from datetime import datetime

from schemas.messages import HolderEntry, Suspension


def active_at(entry: HolderEntry, at: datetime | None) -> bool:
    """Whether a holder's entry is active as of `at`, the broker's time of what is judged (None:
    now): one made inactive at inactive_since is active for what came before then, and a resumed
    one (resumed_at) inactive for what came from then until its resumption, and within each
    earlier suspension it keeps (suspensions). Judged so, a holder's message is judged alike by
    every instance, whenever it reads it; one made inactive at a time not known (inactive_since
    None) is inactive at every time, one resumed at a time not known active at every time."""
    if at is not None and _earlier(entry, at) is not None:
        return False
    if at is None or entry.inactive_since is None:
        return entry.active
    if at < entry.inactive_since:
        return True
    return entry.active and (entry.resumed_at is None or entry.resumed_at <= at)


def active_between(entry: HolderEntry, since: datetime, until: datetime) -> bool:
    """Whether a holder's entry is active at every time from `since` to `until` (active_at): at
    `since`, and at the start of each suspension it keeps that began after it, by `until`."""
    starts = [s.since for s in entry.suspensions]
    if entry.inactive_since is not None:
        starts.append(entry.inactive_since)
    return all(active_at(entry, at) for at in (since, *(s for s in starts if since < s <= until)))


def _earlier(entry: HolderEntry, at: datetime) -> Suspension | None:
    """The earlier suspension of the entry's (suspensions) that `at` falls in, if one."""
    return next((s for s in entry.suspensions if s.since <= at < s.until), None)


def suspension_at(entry: HolderEntry, at: datetime | None
                  ) -> tuple[datetime | None, datetime | None]:
    """When the suspension of an entry inactive as of `at` (None: now; active_at) began and
    ended: the earlier one `at` falls in (suspensions), else its last one (None: not dated, not
    ended)."""
    earlier = None if at is None else _earlier(entry, at)
    if earlier is not None:
        return earlier.since, earlier.until
    return entry.inactive_since, entry.resumed_at if entry.active else None
