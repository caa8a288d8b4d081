"""The registry side's table of cards (J-LIS keeps it, not the certificate): card serial →
the resident it was issued to.

A certificate names only its card; the portal asks this table whose card it is and gets
resident codes back (never a personal number). A resident whose code changed since the card was
issued is followed through the registry's history: the answer is every code the person has had,
the current one first, so the portal also finds log entries made under an earlier code.

It also keeps the challenges of the card logins it was shown, until they are too old to be
shown again, so that each one is used once, a restart of the registry side's process included:
by the wall clock, and by the elapsed clock's mark of its expiry too in the boot it was issued in
(renkei.clock), whatever the wall clock's steps (a table from before the marks is given them).
The latest time a dropped one was kept until is kept: a challenge judged by its time (not marked
in this boot) kept no later is refused, whatever the wall clock says then. With each challenge it
keeps the login ticket told for its login, so that its question read again is told that ticket,
good for the one change, not another.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing, suppress
from datetime import UTC, datetime
from pathlib import Path

from registry.residents import ChangeKind
from registry.store import RegistryStore
from renkei import sqlite
from renkei.clock import Mark
from renkei.state import private_dir, state_dir

SCHEMA = """CREATE TABLE IF NOT EXISTS cards (
    serial TEXT PRIMARY KEY, resident_code TEXT NOT NULL, issued_at TEXT NOT NULL)"""
USED = """CREATE TABLE IF NOT EXISTS used_challenges (
    nonce BLOB PRIMARY KEY, request_id TEXT NOT NULL, until REAL NOT NULL)"""
FORGOTTEN = """CREATE TABLE IF NOT EXISTS challenges_forgotten (
    id INTEGER PRIMARY KEY CHECK (id = 0), through REAL NOT NULL)"""


def default_path() -> Path:
    """The table in cards/holders/, apart from the registry (compose.yaml gives the authority
    registry/, for the registry alone). A state folder from before kept it in registry/: it is
    moved here, a transaction a crash left in its journal rolled back first; one another process
    moved meanwhile is left as it moved it (linked, not renamed: never over it)."""
    path = private_dir("cards", "holders") / "cards.db"
    before = state_dir() / "registry" / "cards.db"
    if before.exists() and not path.exists():
        try:
            with closing(sqlite3.connect(f"{before.absolute().as_uri()}?mode=rw", uri=True)) as db:
                db.execute("SELECT count(*) FROM sqlite_master")  # rolls a hot journal back
            os.link(before, path)
        except (sqlite3.OperationalError, OSError):
            if before.exists() and not path.exists():  # not moved by another process meanwhile
                raise
    with suppress(FileNotFoundError):  # either gone: nothing (more) to move
        if before.samefile(path):
            before.unlink()
    return path


class CardHolders:
    def __init__(self, path: Path | None = None) -> None:
        path = path or default_path()
        sqlite.created_private(path)
        self._db = sqlite3.connect(path, check_same_thread=False)
        with sqlite.closed_if_failing(self._db):
            self._db.execute(SCHEMA)
            self._db.execute(USED)
            self._db.execute(FORGOTTEN)
            sqlite.with_columns(self._db, "used_challenges", (*sqlite.MARKED, "ticket BLOB"))

    def close(self) -> None:
        self._db.close()

    def record(self, serial: str, resident_code: str) -> None:
        with self._db:
            self._db.execute("INSERT INTO cards VALUES (?, ?, ?)",
                             (serial, resident_code, datetime.now(UTC).isoformat()))

    def issued_to(self, serial: str) -> str | None:
        row = self._db.execute("SELECT resident_code FROM cards WHERE serial = ?",
                               (serial,)).fetchone()
        return None if row is None else str(row[0])

    def first_use(self, nonce: bytes, request_id: str, until: datetime, until_mark: Mark | None,
                  now: datetime, this: Mark | None) -> bool:
        """Whether a login's challenge is used now for the first time, or again by the same
        question (read again after a restart); kept until `until` (`until_mark` on the elapsed
        clock), those past it dropped: by `now` (the clock's earliest time: a step forward drops
        none), and by their mark too in this boot (`this`, the mark now). Once its boot is over a
        challenge is judged by its time, whatever its mark: one whose time its issuer put ahead
        is kept until that time is past. The latest `until` dropped is kept (`forgotten`)."""
        dropped = f"FROM used_challenges WHERE {sqlite.past('until')} AND until <= :now"
        known = sqlite.now_marked(now.timestamp(), this)
        with self._db:
            sqlite.forget(self._db, dropped, "until", known, "challenges_forgotten")
            self._db.execute("INSERT OR IGNORE INTO used_challenges (nonce, request_id, until, "
                             "boot, until_elapsed) VALUES (?, ?, ?, ?, ?)",
                             (nonce, request_id, until.timestamp(), *sqlite.marked(until_mark)))
            (first,) = self._db.execute("SELECT request_id FROM used_challenges WHERE nonce = ?",
                                        (nonce,)).fetchone()
        return bool(first == request_id)

    def ticket(self, nonce: bytes, made: Callable[[], bytes]) -> bytes:
        """The login ticket of the login whose challenge this is: the one told before, if its
        question was answered, else `made()`, kept with the challenge while it is (a question
        read again, by a restart or whoever took the portal over, gets no second ticket)."""
        told = self._told(nonce)
        if told is not None:
            return told
        fresh = made()
        with self._db:
            self._db.execute("UPDATE used_challenges SET ticket = ? WHERE nonce = ? AND ticket "
                             "IS NULL", (fresh, nonce))
        told = self._told(nonce)
        return fresh if told is None else told

    def _told(self, nonce: bytes) -> bytes | None:
        row = self._db.execute("SELECT ticket FROM used_challenges WHERE nonce = ?",
                               (nonce,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def forgotten(self, until: datetime) -> bool:
        """Whether a challenge kept until then may have been used and dropped (judged by its time,
        the wall clock set back since would take it for fresh)."""
        return sqlite.may_be_forgotten(self._db, "challenges_forgotten", until.timestamp())

    def resident_codes(self, serial: str, registry: RegistryStore) -> list[str]:
        """Every resident code of the card's holder, the current one first; [] if unknown."""
        issued = self.issued_to(serial)
        if issued is None:
            return []
        codes = [issued]
        for event in registry.history(issued):
            if event.kind is ChangeKind.CODE_CHANGED and event.after[0] not in codes:
                codes.append(event.after[0])
            if event.kind is ChangeKind.CODE_CHANGED and event.resident_code not in codes:
                codes.append(event.resident_code)
        current = [c for c in codes if registry.by_code(c) is not None]
        return current + [c for c in codes if c not in current]
