"""What a chaos run checks afterwards, the same for every run: each linkage request a requester
recorded since the run began (its own store's requests table, not the requests the run's load
happened to follow) answered once, logged once by its requester and, if a provider answered it,
once by that provider, and audited once per step — approved, then answered with the outcome the
requester got. The chaos runs send lawful requests only: one REJECTED is a failure too."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from audit.events import step_of
from audit.heads import Signer
from audit.store import AuditStore, Query
from audit.store import default_path as audit_path
from holders.client import LINKAGE, REJECTED
from holders.store import REQUESTER, SENT
from holders.store import default_path as holder_path
from schemas.messages import FOUND, NOT_FOUND

APPROVED, ANSWERED = "approved", "answered"  # the audit steps of a lawful linkage request
LAWFUL_STEPS = (APPROVED, ANSWERED)
FROM_A_PROVIDER = (FOUND, NOT_FOUND)  # outcomes a provider answered (and logged) itself
LATE = 2.0  # seconds to look once more for anything doubled, which arrives late


@dataclass(frozen=True, slots=True)
class Asked:
    """A linkage request as its requester's store holds it."""

    request_id: str
    status: str


@dataclass
class Logged:
    """What the holders' and the audit store hold of the requests: holder access-log entries
    per request on each side, and audit steps (step, outcome) per request."""

    requester: Counter[str] = field(default_factory=Counter)
    provider: Counter[str] = field(default_factory=Counter)
    audit: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    duplicates_dropped: int = 0


@dataclass
class Checked:
    """requests: linkage requests the requesters recorded since the run began; answered: their
    outcomes by status; lost: no outcome; rejected: refused by the platform (lawful: a failure);
    requester_log_not_once: the requester's access log holds it other than once (once if
    answered, never if not); provider_log_not_once: a FOUND or NOT_FOUND its provider logged
    other than once (or another outcome logged twice); audit_steps_per_request: {steps in the
    audit store, in order: requests answered}; audit_not_as_answered: answered requests whose
    audit steps are not approved + answered once each, or whose answered step's outcome is not
    the requester's; duplicates_dropped: answers a requester received again and dropped (not a
    failure); failing_request_ids: the requests of each failure."""

    requests: int
    answered: dict[str, int]
    lost: int
    rejected: int
    requester_log_not_once: int
    provider_log_not_once: int
    audit_steps_per_request: dict[str, int]
    audit_not_as_answered: int
    duplicates_dropped: int
    failing_request_ids: dict[str, list[str]]

    @property
    def exactly_once(self) -> bool:
        return self.requests > 0 and not self.failing_request_ids

    def to_json(self) -> dict[str, Any]:
        return {"exactly_once": self.exactly_once, **asdict(self)}

    def lines(self) -> list[str]:
        """The figures, in two lines."""
        return [
            f"requests the requesters recorded: {self.requests}; answered "
            + ", ".join(f"{k} {v}" for k, v in self.answered.items())
            + f"; lost {self.lost}; rejected {self.rejected}; requester log not once "
            f"{self.requester_log_not_once}; provider log not once "
            f"{self.provider_log_not_once}; duplicates dropped {self.duplicates_dropped}",
            f"audit store: steps per answered request {self.audit_steps_per_request}; not as "
            f"answered {self.audit_not_as_answered}",
        ]


def with_checked(result: Any) -> dict[str, Any]:
    """A chaos run's result (a dataclass with a `checked` verdict) as JSON: its own fields, then
    the verdict's."""
    own = {k: v for k, v in asdict(result).items() if k != "checked"}
    return {**own, **result.checked.to_json()}


def check(asked: list[Asked], logged: Logged) -> Checked:
    """The verdict over every request asked (pure: from what the stores hold)."""
    answered = [a for a in asked if a.status != SENT]
    failing = {
        "lost": [a.request_id for a in asked if a.status == SENT],
        "rejected": [a.request_id for a in answered if a.status == REJECTED],
        "requester_log_not_once": [a.request_id for a in asked if logged.requester[a.request_id]
                                   != (0 if a.status == SENT else 1)],
        "provider_log_not_once": [a.request_id for a in answered
                                  if not _provider_logged_once(a, logged.provider)],
        "audit_not_as_answered": [a.request_id for a in answered if a.status != REJECTED
                                  and not _audited_as_answered(a, logged.audit)],
    }
    steps = Counter("+".join(step for step, _ in logged.audit.get(a.request_id, []))
                    for a in answered)
    return Checked(
        requests=len(asked), answered=dict(Counter(a.status for a in answered).most_common()),
        lost=len(failing["lost"]), rejected=len(failing["rejected"]),
        requester_log_not_once=len(failing["requester_log_not_once"]),
        provider_log_not_once=len(failing["provider_log_not_once"]),
        audit_steps_per_request=dict(sorted(steps.items())),
        audit_not_as_answered=len(failing["audit_not_as_answered"]),
        duplicates_dropped=logged.duplicates_dropped,
        failing_request_ids={why: ids for why, ids in failing.items() if ids},
    )


def _provider_logged_once(asked: Asked, provider: Counter[str]) -> bool:
    entries = provider[asked.request_id]
    return entries == 1 if asked.status in FROM_A_PROVIDER else entries <= 1


def _audited_as_answered(asked: Asked, audit: dict[str, list[tuple[str, str]]]) -> bool:
    steps = audit.get(asked.request_id, [])
    return (sorted(step for step, _ in steps) == sorted(LAWFUL_STEPS)
            and dict(steps)[ANSWERED] == asked.status)


def asked_since(stores: Iterable[sqlite3.Connection], since: datetime) -> list[Asked]:
    """The linkage requests each holder's store recorded from `since` on."""
    at = since.astimezone(UTC).isoformat(timespec="milliseconds")
    return [Asked(str(r), str(s)) for db in stores for r, s in db.execute(
        "SELECT request_id, status FROM requests WHERE kind = ? AND sent_at >= ?",
        (LINKAGE, at))]


def logged_of(stores: Iterable[sqlite3.Connection], request_ids: set[str],
              since: datetime) -> Logged:
    """What the holders' stores and the audit store hold of these requests."""
    found = Logged(audit=audit_steps(request_ids, since))
    for db in stores:
        for request_id, side in db.execute("SELECT request_id, side FROM access_log"):
            if request_id in request_ids:
                (found.requester if side == REQUESTER else found.provider)[request_id] += 1
        found.duplicates_dropped += db.execute(
            "SELECT coalesce(sum(duplicates), 0) FROM requests").fetchone()[0]
    return found


def audit_steps(request_ids: set[str], since: datetime) -> dict[str, list[tuple[str, str]]]:
    """(step, outcome) of each audit store entry of these requests, in the store's order."""
    steps: dict[str, list[tuple[str, str]]] = {}
    with AuditStore(audit_path(), Signer.public()) as store:
        after = None
        while True:
            page = store.query(Query(since=since), limit=1000, after=after)
            for entry in page.entries:
                event = entry.event
                if event.request_id in request_ids:
                    steps.setdefault(event.request_id, []).append((step_of(event),
                                                                    event.outcome))
            if page.next_cursor is None:
                return steps
            after = page.next_cursor


async def checked(holders: list[str], since: datetime, within: float) -> Checked:
    """The verdict once it holds (or `within` seconds passed), looked at once more `LATE`
    seconds after: a request answered or audited twice shows late."""
    deadline = time.monotonic() + within
    while True:
        verdict = await asyncio.to_thread(_check_now, holders, since)
        if not verdict.failing_request_ids or time.monotonic() > deadline:
            await asyncio.sleep(LATE)
            return await asyncio.to_thread(_check_now, holders, since)
        await asyncio.sleep(1)


def _check_now(holders: list[str], since: datetime) -> Checked:
    """The verdict over the stores as they are now, each holder's opened once."""
    with holder_stores(holders) as stores:
        asked = asked_since(stores, since)
        return check(asked, logged_of(stores, {a.request_id for a in asked}, since))


@contextmanager
def holder_stores(holders: Iterable[str]) -> Iterator[list[sqlite3.Connection]]:
    """The holders' stores, read only (their servers may be writing them)."""
    with ExitStack() as opened:
        yield [opened.enter_context(closing(sqlite3.connect(
            f"file:{holder_path(holder)}?mode=ro", uri=True))) for holder in holders]
