"""The numbering authority's own SQLite store, which no other part of Renkei opens.

`numbers` is every personal number ever issued (retired ones stay: the primary key is what makes a
number never reissued); `conversion` is the code-conversion table, resident code ↔ current number;
`history` the changes; `lookups` the log of every look-up, who asked and why (each once, by what
identifies it: read again, it is not logged again; rows from before that have none); `answered` the
number each request for a new one was given (a request read twice is given the same); `cursors`
the last code change followed of each registry, by its identity (each numbers its own from 1), and
its fingerprint (a copy put back numbers other changes as it; none in a row from before it), and
the last change past which those followed that moved a number are all kept in `followed` (0, or
the last forgotten past the retention; none in a row from before they were kept);
`followed` each code change followed that moved a number, by its registry, number and fingerprint,
the codes it moved the number between (undone if the registry goes back before it) and when it was
followed (forgotten past the access log's retention with the look-ups; a row from before that has
none, and is kept);
`tickets_used` the change each live login ticket was used for (a ticket is good for one), and
`tickets_forgotten` the latest expiry of a ticket whose use was dropped: a ticket judged by its time
(not marked in this boot) expiring no later is refused, whatever the clock says then (set back, it
would make a dropped ticket live again). A store from before that mark is given it when opened: the
latest change of number, at which each use it forgot was of a ticket expired. A use kept with its
ticket's expiry on the elapsed clock and the boot it counts from (renkei.clock's mark) is forgotten
in that boot once that reading is past, whatever the wall clock's steps; one without (a store from
before them, or another boot's) by the wall clock's earliest time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from audit.events import millis
from renkei import sqlite
from renkei.clock import Mark
from renkei.state import folder_made, private_dir

# a commit need not fsync; the look-ups purged are overwritten
PRAGMAS = f"PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; {sqlite.SECURE_DELETE};"
HAS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
SCHEMA = """
CREATE TABLE IF NOT EXISTS numbers (
    number TEXT PRIMARY KEY,
    issued_to TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    retired_at TEXT
);
CREATE TABLE IF NOT EXISTS conversion (
    resident_code TEXT PRIMARY KEY,
    number TEXT NOT NULL UNIQUE REFERENCES numbers (number)
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    resident_code TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lookups (
    seq INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    holder TEXT NOT NULL,
    purpose TEXT NOT NULL,
    number TEXT NOT NULL,
    outcome TEXT NOT NULL,
    look_up TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    source TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    fingerprint TEXT,
    kept_past INTEGER
);
CREATE TABLE IF NOT EXISTS followed (
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (source, seq)
);
CREATE TABLE IF NOT EXISTS answered (request_id TEXT PRIMARY KEY, number TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tickets_used (
    ticket TEXT PRIMARY KEY,
    change_id TEXT,
    expires_at INTEGER NOT NULL
);
"""
LOGGED_ONCE = "CREATE UNIQUE INDEX IF NOT EXISTS lookups_logged_once ON lookups (look_up)"
LOGGED_AT = "CREATE INDEX IF NOT EXISTS lookups_logged_at ON lookups (at)"  # for forget_before
WITHDRAWN = ("CREATE INDEX IF NOT EXISTS history_withdrawn ON history (resident_code) "
             "WHERE kind = 'number-withdrawn'")  # for withdrawn_for: a few rows of many
FOLLOWED_AT = "CREATE INDEX IF NOT EXISTS followed_at ON followed (at)"  # for forget_before
# the changes of each registry followed past which those that moved a number are kept, once
# forget_before deletes those followed before :before (a bookmark kept past none stays so)
FORGOTTEN_PAST = ("UPDATE cursors SET kept_past = MAX(kept_past, (SELECT MAX(seq) FROM followed "
                  "WHERE followed.source = cursors.source AND at < :before)) WHERE source IN "
                  "(SELECT source FROM followed WHERE at < :before)")
# the look-ups logged and the code changes followed before :before that forget_before deletes in
# one transaction, oldest first
FORGET = tuple(f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE at < :before "
               "ORDER BY at LIMIT :rows)" for table in ("lookups", "followed"))
FORGOTTEN = """CREATE TABLE tickets_forgotten (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    through INTEGER NOT NULL
)"""


def default_path(made: bool = True) -> Path:
    """The store in the state folder; its folder made unless not `made` (private_dir)."""
    return private_dir("authority", made=made) / "authority.db"


@dataclass(frozen=True)
class Change:
    """One entry of the history: a number changed, or a resident code followed."""

    seq: int
    at: datetime
    kind: str
    resident_code: str
    before: str
    after: str
    reason: str


class Forgotten(NamedTuple):
    """What a transaction of a retention purge deleted: look-ups logged, code changes followed."""

    lookups: int
    followed: int


@dataclass(frozen=True)
class Lookup:
    """One logged look-up of a personal number."""

    seq: int
    at: datetime
    holder: str
    purpose: str
    number: str
    outcome: str


class AuthorityStore:
    def __init__(self, path: Path) -> None:
        folder_made(path.parent)
        self._db = sqlite.opened(path)
        with sqlite.closed_if_failing(self._db):
            self._made()

    def _made(self) -> None:
        """The store's tables, with the columns and the mark a store from before them lacks."""
        self._db.executescript(PRAGMAS + SCHEMA)
        sqlite.with_columns(self._db, "tickets_used", sqlite.MARKED)
        sqlite.with_columns(self._db, "lookups", ("look_up TEXT",))
        sqlite.with_columns(self._db, "cursors", ("fingerprint TEXT", "kept_past INTEGER"))
        sqlite.with_columns(self._db, "followed", ("at TEXT",))
        self._db.execute(LOGGED_ONCE)
        self._db.execute(LOGGED_AT)
        self._db.execute(WITHDRAWN)
        self._db.execute(FOLLOWED_AT)
        if not self._has_forgotten():
            with sqlite.writing(self._db):  # the mark's table made with its mark, or neither
                if not self._has_forgotten():  # not made meanwhile, by another process
                    self._db.execute(FORGOTTEN)
                    self._mark_forgotten_unmarked()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction holding the write lock from its start (BEGIN IMMEDIATE): what it
        reads (a resident's number, a request's answer) is not changed by another process (the
        CLI beside `serve`) before it writes on it."""
        with sqlite.writing(self._db):
            yield

    def issue(self, number: str, resident_code: str, at: datetime) -> bool:
        """Record a newly issued number; False if it was ever issued before."""
        cursor = self._db.execute("INSERT OR IGNORE INTO numbers VALUES (?, ?, ?, NULL)",
                                  (number, resident_code, at.isoformat()))
        return cursor.rowcount == 1

    def retire(self, number: str, at: datetime) -> None:
        self._db.execute("UPDATE numbers SET retired_at = ? WHERE number = ?",
                         (at.isoformat(), number))

    def bind(self, resident_code: str, number: str) -> None:
        """Set the resident's current number in the code-conversion table."""
        self._db.execute("INSERT OR REPLACE INTO conversion VALUES (?, ?)", (resident_code, number))

    def unbind(self, resident_code: str) -> None:
        """Take the resident code out of the code-conversion table (its number stays issued)."""
        self._db.execute("DELETE FROM conversion WHERE resident_code = ?", (resident_code,))

    def rename(self, old_code: str, new_code: str) -> bool:
        """Move a row of the table to the resident's new code; False if there was none."""
        cursor = self._db.execute("UPDATE conversion SET resident_code = ? WHERE resident_code = ?",
                                  (new_code, old_code))
        return cursor.rowcount == 1

    def number_of(self, resident_code: str) -> str | None:
        row = self._db.execute("SELECT number FROM conversion WHERE resident_code = ?",
                               (resident_code,)).fetchone()
        return None if row is None else str(row[0])

    def resident_of(self, number: str) -> str | None:
        row = self._db.execute("SELECT resident_code FROM conversion WHERE number = ?",
                               (number,)).fetchone()
        return None if row is None else str(row[0])

    def issued_at(self, number: str) -> datetime | None:
        """When the number was issued; None if it never was."""
        row = self._db.execute("SELECT issued_at FROM numbers WHERE number = ?",
                               (number,)).fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    def was_issued(self, number: str) -> bool:
        return self.issued_at(number) is not None

    def record_change(self, at: datetime, kind: str, resident_code: str, before: str, after: str,
                      reason: str) -> None:
        self._db.execute("INSERT INTO history (at, kind, resident_code, before, after, reason) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (at.isoformat(), kind, resident_code, before, after, reason))

    def record_lookup(self, at: datetime, holder: str, purpose: str, number: str,
                      outcome: str, look_up: str | None = None) -> None:
        """Log a look-up; one `look_up` (what identifies it) logged before is not logged again."""
        with self._db:
            self._db.execute("INSERT INTO lookups (at, holder, purpose, number, outcome, look_up) "
                             "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (look_up) DO NOTHING",
                             (at.isoformat(), holder, purpose, number, outcome, look_up))

    def forget_before(self, cutoff: datetime) -> Iterator[Forgotten]:
        """Delete the look-ups logged and the code changes followed before `cutoff`, up to
        sqlite.BATCH rows of each a transaction, oldest first, each yielded once committed, until
        none is left (as a holder's store forgets its access log past the retention): a registry
        going back past a change followed that long ago has it undone no longer."""
        told = {"before": cutoff.isoformat(), "rows": sqlite.BATCH}
        while True:
            with sqlite.writing(self._db):
                self._db.execute(FORGOTTEN_PAST, told)
                counts = Forgotten(*(self._db.execute(forget, told).rowcount for forget in FORGET))
            if not any(counts):
                return
            yield counts

    def answered(self, request_id: str) -> str | None:
        """The number a request for a new number was given; None if it was not answered yet."""
        row = self._db.execute("SELECT number FROM answered WHERE request_id = ?",
                               (request_id,)).fetchone()
        return None if row is None else str(row[0])

    def record_answer(self, request_id: str, number: str) -> None:
        self._db.execute("INSERT INTO answered VALUES (?, ?)", (request_id, number))

    def use_ticket(self, ticket: str, change_id: str | None, expires_at: datetime,
                   expires: Mark | None, now: datetime, this: Mark | None) -> bool:
        """Record the login ticket used for the change, with its expiry's mark (`expires`, on the
        elapsed clock); False if it was used before. The other tickets expired are forgotten:
        those marked in this boot (`this`, the mark now) by their mark, the rest by `now`; the
        latest expiry forgotten kept."""
        expired = f"FROM tickets_used WHERE ticket != :ticket AND {sqlite.past('expires_at')}"
        known = {"ticket": ticket, **sqlite.now_marked(millis(now), this)}
        sqlite.forget(self._db, expired, "expires_at", known, "tickets_forgotten")
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO tickets_used (ticket, change_id, expires_at, boot, "
            "until_elapsed) VALUES (?, ?, ?, ?, ?)",
            (ticket, change_id, millis(expires_at), *sqlite.marked(expires)))
        return cursor.rowcount == 1

    def _has_forgotten(self) -> bool:
        """Whether the store has its table of the latest forgotten expiry (tickets_forgotten)."""
        return self._db.execute(HAS_TABLE, ("tickets_forgotten",)).fetchone() is not None

    def _mark_forgotten_unmarked(self) -> None:
        """Mark a store from before tickets_forgotten: a use was forgotten only by a change of
        number, of a ticket expired by then, so none expired after the latest change."""
        changed = [datetime.fromisoformat(at) for (at,) in self._db.execute(
            "SELECT at FROM history WHERE kind = 'number-changed'")]
        if changed:
            sqlite.kept_through(self._db, "tickets_forgotten", millis(max(changed)))

    def ticket_forgotten(self, expires_at: datetime) -> bool:
        """Whether a ticket expiring then may have had its use forgotten (it is no longer kept)."""
        return sqlite.may_be_forgotten(self._db, "tickets_forgotten", millis(expires_at))

    def history(self, resident_code: str | None = None) -> list[Change]:
        rows = self._db.execute(
            "SELECT seq, at, kind, resident_code, before, after, reason FROM history "
            "WHERE ? IS NULL OR ? IN (resident_code, before, after) ORDER BY seq",
            (resident_code, resident_code))
        return [Change(seq, datetime.fromisoformat(at), *rest) for seq, at, *rest in rows]

    def withdrawn_for(self, resident_code: str, number: str) -> bool:
        """Whether a number issued to `resident_code` was withdrawn from it for `number`, the one
        a change of code brought there (history: 'number-withdrawn')."""
        return self._db.execute(
            "SELECT 1 FROM history WHERE kind = 'number-withdrawn' AND resident_code = ? AND "
            "after = ?", (resident_code, number)).fetchone() is not None

    def lookups(self) -> list[Lookup]:
        rows = self._db.execute(
            "SELECT seq, at, holder, purpose, number, outcome FROM lookups ORDER BY seq")
        return [Lookup(seq, datetime.fromisoformat(at), *rest) for seq, at, *rest in rows]

    def cursor(self, source: str) -> tuple[int, str | None]:
        """The last change of `source` followed, and its fingerprint (None if not kept)."""
        row = self._db.execute("SELECT seq, fingerprint FROM cursors WHERE source = ?",
                               (source,)).fetchone()
        return (0, None) if row is None else (int(row[0]), row[1])

    def started(self, source: str) -> bool:
        """Start the cursor of `source` at 0, in a transaction of its own; False if it was kept."""
        with sqlite.writing(self._db):
            return self._db.execute("INSERT OR IGNORE INTO cursors (source, seq, kept_past) "
                                    "VALUES (?, 0, 0)", (source,)).rowcount == 1

    def sources(self) -> list[str]:
        """The sources whose cursors are kept."""
        return [source for (source,) in self._db.execute("SELECT source FROM cursors")]

    def set_cursor(self, source: str, seq: int, fingerprint: str | None = None) -> None:
        """Keep the change of `source` followed last (a source new here is kept past none)."""
        self._db.execute("INSERT INTO cursors (source, seq, fingerprint, kept_past) "
                         "VALUES (?, ?, ?, 0) ON CONFLICT (source) DO UPDATE SET "
                         "seq = excluded.seq, fingerprint = excluded.fingerprint",
                         (source, seq, fingerprint))

    def all_followed_kept(self, source: str) -> bool:
        """Whether every change of `source` followed that moved a number is kept (in `followed`),
        none forgotten past the retention nor followed before they were kept (a bookmark from
        before that)."""
        row = self._db.execute("SELECT kept_past FROM cursors WHERE source = ?",
                               (source,)).fetchone()
        return row is None or row[0] == 0

    def record_followed(self, source: str, seq: int, fingerprint: str, before: str,
                        after: str, at: datetime) -> None:
        """Keep the change of `source` followed (`at`) that moved a number from code `before` to
        `after`."""
        self._db.execute("INSERT OR REPLACE INTO followed (source, seq, fingerprint, before, "
                         "after, at) VALUES (?, ?, ?, ?, ?, ?)",
                         (source, seq, fingerprint, before, after, at.isoformat()))

    def followed(self, source: str) -> Iterator[tuple[int, str, str, str]]:
        """The changes of `source` followed that moved a number, the latest first: number,
        fingerprint, the codes before and after."""
        yield from self._db.execute("SELECT seq, fingerprint, before, after FROM followed "
                                    "WHERE source = ? ORDER BY seq DESC", (source,))

    def forget_followed(self, source: str, after_seq: int) -> None:
        """Forget the changes of `source` followed past `after_seq` (undone)."""
        self._db.execute("DELETE FROM followed WHERE source = ? AND seq > ?", (source, after_seq))

    def counts(self) -> dict[str, int]:
        """Numbers issued, current, retired; look-ups logged."""
        issued, retired = self._db.execute(
            "SELECT COUNT(*), COUNT(retired_at) FROM numbers").fetchone()
        current = self._db.execute("SELECT COUNT(*) FROM conversion").fetchone()[0]
        lookups = self._db.execute("SELECT COUNT(*) FROM lookups").fetchone()[0]
        return {"issued": issued, "current": current, "retired": retired, "lookups": lookups}
