"""The portal's inbox (SQLite, in the state folder): its requests for holder-side logs — the
residents' applications for ⑪⑫ and the oversight body's requests — and the holders' answers, each
kept as it came (its entries sealed to the asker: the inbox holds no personal data in plaintext),
with the position read up to on each answers topic, so that a restarted portal takes what came
while it was down and nothing twice; each request logged and not known to be sent, as it is to be
sent, so that it is sent again (the portal stopped or its broker away at the sending); and where
the integrity page's anchor check stands (audit.anchor.Held), so that a restarted portal's first
check reads only the heads anchored since.
It keeps too each resident's request for a new number whose outcome they have not seen (by their
ID code), so that their next request, in any session or at the counter, is the same change: the
authority answers the number it gave, never a second one; for CHANGES_KEPT from when it was first
asked, then it is dropped, and their next request is a new change.

Each book (the topic its answers come on) keeps a request and its answers for a stated period
from when it was asked, then drops them: a resident who applied finds the answers for
APPLICATIONS_KEPT, the oversight body for OVERSIGHT_KEPT.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from audit.anchor import Held
from audit.heads import SignedHead
from renkei.sqlite import connected, with_columns, writing
from renkei.state import private_dir
from renkei.tasks import OneThread

# A resident may come back weeks after applying, as to an inbox; three times the 30 days the
# answers topic keeps them, and no longer: holder-side logs, even sealed, are kept only as needed.
APPLICATIONS_KEPT = timedelta(days=90)
# An investigation by the oversight body runs longer than a resident's look; its own requests
# topic keeps them 7 years, its answers are kept a year here (it may ask the holders again).
OVERSIGHT_KEPT = timedelta(days=365)
# A resident told that their new number's outcome is not known yet comes back as to their inbox,
# weeks later at most: their change is resumed as long as their applications are kept, and no
# longer (a later request is a new change, not one asked months before, by whom it was then).
CHANGES_KEPT = APPLICATIONS_KEPT
# A holder's communication server answers in seconds; one silent this long after it was asked
# (its server down, or no longer a holder, whose request the platform did not pass on) is said
# not to have answered: its answer, if it comes later, is still taken and shown.
ANSWER_WITHIN = timedelta(minutes=10)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS asked (
    request_id TEXT PRIMARY KEY, book TEXT NOT NULL, at TEXT NOT NULL, holders TEXT NOT NULL,
    request_ids TEXT NOT NULL, person TEXT, unsent BLOB);
CREATE INDEX IF NOT EXISTS asked_by_book ON asked (book, person, at);
CREATE TABLE IF NOT EXISTS answers (
    request_id TEXT NOT NULL, holder TEXT NOT NULL, answer BLOB NOT NULL,
    PRIMARY KEY (request_id, holder)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    person TEXT PRIMARY KEY, change_id TEXT NOT NULL, at TEXT NOT NULL, requester TEXT NOT NULL,
    note TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS anchor_held (
    id INTEGER PRIMARY KEY CHECK (id = 0), next INTEGER NOT NULL, read INTEGER NOT NULL,
    heads TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Asked:
    """One request for holder-side logs, and each holder's answer so far as it came."""

    request_id: str
    at: datetime
    holders: tuple[str, ...]
    request_ids: tuple[str, ...]
    person: str | None = None  # a resident's application: whose
    answers: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return set(self.answers) >= set(self.holders)

    @property
    def answer_by(self) -> datetime:
        """When a holder that has not answered is said not to have (overdue)."""
        return self.at + ANSWER_WITHIN


@dataclass(frozen=True)
class ChangeAsked:
    """A resident's request for a new number: whose (their ID code), its change id (asked again,
    the same change), and when and by whom it was first asked, with the staff member's note at
    the counter (logged again, the same audit event, byte for byte)."""

    person: str
    change_id: str
    at: datetime
    requester: str
    note: str | None = None


def kept_since(now: datetime, kept: timedelta) -> datetime:
    """The earliest time a request may have been asked and still be kept (with its answers)."""
    return now - kept


def taken(asked: Asked, holder: str, since: datetime) -> bool:
    """Whether a holder's answer is taken: it answers a request still kept, from a holder that
    was asked, and is the first from that holder (a re-read after a restart, or a holder that
    answers twice, is not taken again, nor logged again)."""
    return asked.at >= since and holder in asked.holders and holder not in asked.answers


def overdue(asked: Asked, now: datetime) -> tuple[str, ...]:
    """The holders asked that have not answered within ANSWER_WITHIN of `asked`, by `now`."""
    if now < asked.answer_by:
        return ()
    return tuple(h for h in asked.holders if h not in asked.answers)


def default_path() -> Path:
    return private_dir("portal") / "inbox.db"


def _time(at: datetime) -> str:
    """A time as stored: UTC, to the microsecond, so that text order is time order."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


class Inbox:
    """The inbox's SQLite work is done on a thread of its own, one call at a time in the order
    asked, each call's transaction whole: a busy database (waited for up to SQLite's busy
    timeout) holds up the calls that need it, not the event loop's pages and readers."""

    def __init__(self, path: Path) -> None:
        self._db = connected(path)
        self._db.executescript(SCHEMA)
        with_columns(self._db, "asked", ["unsent BLOB"])  # an inbox from before: all taken as sent
        self._thread = OneThread("inbox")

    async def close(self) -> None:
        await self._thread.close(self._db.close)

    async def add(self, book: str, asked: Asked) -> None:
        await self._thread.run(partial(
            self._db.execute, "INSERT INTO asked (request_id, book, at, holders, request_ids, "
            "person) VALUES (?, ?, ?, ?, ?, ?)", (
                asked.request_id, book, _time(asked.at), json.dumps(asked.holders),
                json.dumps(asked.request_ids), asked.person)))

    async def to_send(self, book: str, request_id: str, value: bytes) -> None:
        """The request, logged, is to be sent as `value` (the record) until it is known sent."""
        await self._thread.run(partial(
            self._db.execute, "UPDATE asked SET unsent = ? WHERE book = ? AND request_id = ?",
            (value, book, request_id)))

    async def sent(self, book: str, request_id: str) -> None:
        """The broker has the request: it is not sent again."""
        await self._thread.run(partial(
            self._db.execute, "UPDATE asked SET unsent = NULL WHERE book = ? AND request_id = ?",
            (book, request_id)))

    async def unsent(self, book: str, since: datetime) -> list[tuple[str, bytes]]:
        """The book's requests asked since `since`, logged and not known to be sent: each one's
        id and record, oldest first."""
        return await self._thread.run(lambda: self._db.execute(
            "SELECT request_id, unsent FROM asked WHERE book = ? AND at >= ? AND unsent IS NOT "
            "NULL ORDER BY at", (book, _time(since))).fetchall())

    async def drop(self, book: str, before: datetime) -> None:
        """Drop the book's requests asked before `before`, and their answers."""
        def dropped() -> None:
            with writing(self._db):
                self._db.execute("DELETE FROM answers WHERE request_id IN (SELECT request_id "
                                 "FROM asked WHERE book = ? AND at < ?)", (book, _time(before)))
                self._db.execute("DELETE FROM asked WHERE book = ? AND at < ?",
                                 (book, _time(before)))
        await self._thread.run(dropped)

    async def withdraw(self, book: str, request_id: str) -> None:
        """Drop a request never sent (it has no answers)."""
        await self._thread.run(partial(self._db.execute,
                                       "DELETE FROM asked WHERE book = ? AND request_id = ?",
                                       (book, request_id)))

    async def asked(self, book: str, request_id: str) -> Asked | None:
        found = await self._asked("book = ? AND request_id = ?", (book, request_id))
        return found[0] if found else None

    async def every(self, book: str, since: datetime) -> list[Asked]:
        """The book's requests asked since `since`, newest first."""
        return await self._asked("book = ? AND at >= ?", (book, _time(since)))

    async def of_person(self, book: str, people: Sequence[str], since: datetime
                        ) -> list[Asked]:
        """The book's requests about any of `people` asked since `since`, newest first."""
        return await self._asked(
            f"book = ? AND at >= ? AND person IN ({', '.join('?' * len(people))})",
            (book, _time(since), *people))

    async def _asked(self, where: str, args: tuple[str, ...]) -> list[Asked]:
        def found() -> list[Asked]:
            rows = self._db.execute("SELECT request_id, at, holders, request_ids, person FROM "
                                    f"asked WHERE {where} ORDER BY at DESC", args).fetchall()
            return [Asked(r[0], datetime.fromisoformat(r[1]), tuple(json.loads(r[2])),
                          tuple(json.loads(r[3])), r[4], self._answers(r[0])) for r in rows]
        return await self._thread.run(found)

    def _answers(self, request_id: str) -> dict[str, bytes]:
        return dict(self._db.execute("SELECT holder, answer FROM answers WHERE request_id = ? "
                                     "ORDER BY holder", (request_id,)).fetchall())

    async def change(self, fresh: ChangeAsked) -> ChangeAsked:
        """The person's request for a new number whose outcome they have not seen, else `fresh`,
        kept as that; the requests asked before CHANGES_KEPT from `fresh` are dropped."""
        def kept() -> ChangeAsked:
            since = kept_since(fresh.at, CHANGES_KEPT)
            with writing(self._db):
                self._drop_changes(since)
                found = self._change_of(fresh.person, since)
                if found is None:
                    self._db.execute("INSERT INTO changes VALUES (?, ?, ?, ?, ?)", (
                        fresh.person, fresh.change_id, _time(fresh.at), fresh.requester,
                        fresh.note))
            return found or fresh
        return await self._thread.run(kept)

    async def drop_changes(self, now: datetime) -> None:
        """Drop the requests for a new number no longer kept `now` (a portal starting: kept no
        longer than CHANGES_KEPT though no one asks for a change again)."""
        await self._thread.run(partial(self._drop_changes, kept_since(now, CHANGES_KEPT)))

    def _drop_changes(self, before: datetime) -> None:
        self._db.execute("DELETE FROM changes WHERE at < ?", (_time(before),))

    async def change_of(self, person: str, now: datetime) -> ChangeAsked | None:
        """The person's request for a new number whose outcome they have not seen, still kept
        `now`."""
        return await self._thread.run(partial(self._change_of, person,
                                              kept_since(now, CHANGES_KEPT)))

    def _change_of(self, person: str, since: datetime) -> ChangeAsked | None:
        row = self._db.execute("SELECT change_id, at, requester, note FROM changes "
                               "WHERE person = ? AND at >= ?", (person, _time(since))).fetchone()
        return None if row is None else ChangeAsked(person, row[0], datetime.fromisoformat(
            row[1]), row[2], row[3])

    async def change_seen(self, change: ChangeAsked) -> None:
        """The outcome of the change was told: the person's next request is a new change."""
        await self._thread.run(partial(self._db.execute,
                                "DELETE FROM changes WHERE person = ? AND change_id = ?",
                                (change.person, change.change_id)))

    async def positions(self, topic: str) -> dict[int, int]:
        """The offset to read next on each partition of `topic` read before."""
        return dict(await self._thread.run(lambda: self._db.execute(
            "SELECT partition, next FROM positions WHERE topic = ?", (topic,)).fetchall()))

    async def anchor_held(self) -> Held | None:
        """Where the integrity page's anchor check stood after its last check (None: none was
        made, or what is kept does not read)."""
        row = await self._thread.run(lambda: self._db.execute(
            "SELECT next, read, heads FROM anchor_held").fetchone())
        try:
            return None if row is None else Held(int(row[0]), int(row[1]), tuple(
                SignedHead.from_json(head) for head in json.loads(row[2])))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("the anchor check's place in the inbox does not read (%s)", exc)
            return None

    async def keep_anchor_held(self, held: Held) -> None:
        await self._thread.run(partial(
            self._db.execute, "INSERT OR REPLACE INTO anchor_held VALUES (0, ?, ?, ?)",
            (held.next, held.read, json.dumps([head.to_json() for head in held.heads]))))

    async def read(self, topic: str, partition: int, offset: int,
                   answer: tuple[str, str, bytes] | None = None) -> None:
        """The record at `offset` was read: it is passed, and `answer` (request id, holder, the
        answer as it came), if it was taken, kept, in one transaction."""
        def kept() -> None:
            with writing(self._db):
                if answer is not None:
                    self._db.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?)", answer)
                self._db.execute("INSERT OR REPLACE INTO positions VALUES (?, ?, ?)",
                                 (topic, partition, offset + 1))
        await self._thread.run(kept)
