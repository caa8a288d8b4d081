"""A holder's own store (SQLite): its records and data, the correspondence table (own number ↔
link code), its investigation queue, staff and terminals, its requests and its access log."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

import uuid6

from registry.residents import FourAttributes, Sex
from renkei import retention
from renkei.sqlite import connected, missing_columns, savepoint, with_columns, writing
from renkei.state import held, private_dir, state_path
from renkei.windows import ANSWER_TIMEOUT, CLOCK_SKEW, REPLAY_WINDOW
from schemas.messages import FOUND, NOT_FOUND, REFUSED, TIMED_OUT, HolderLogEntry, ProviderQuery

log = logging.getLogger(__name__)

# an entry a request id and side, a provider's one a query of it (query_digest, _query_digest; a
# requester's and one made before: x''): a requester may use an id again once the platform has
# forgotten it, and a copy of a query read again or dispatched again is the one entry; its serial
# never given again (AUTOINCREMENT), the entries before it forgotten: a holder's system pages the
# log by the serial it read up to (after), and would miss an entry under one given again
_ACCESS_LOG = """access_log (
    serial INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, request_id TEXT NOT NULL,
    side TEXT NOT NULL, operator TEXT NOT NULL, terminal TEXT NOT NULL, counterpart TEXT,
    pattern_id TEXT, data_type TEXT, content TEXT, purpose TEXT, outcome TEXT NOT NULL,
    query_digest BLOB NOT NULL DEFAULT x'', UNIQUE (request_id, side, query_digest))"""
# a case's serial, the order opened, never given again (as an access-log entry's): the open cases
# are paged by it too
_INVESTIGATIONS = """investigations (
    serial INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE,
    own_number TEXT NOT NULL, reason TEXT NOT NULL, opened_at TEXT NOT NULL, closed_at TEXT)"""
_CASE = "request_id, own_number, reason, opened_at, closed_at"
_ACCESS_LOG_AT = "CREATE INDEX IF NOT EXISTS access_log_at ON access_log (at)"
# a provider's entries made before queries had digests (_ANSWERED_BEFORE), and an index of them
# by time, which the store's open reads the latest of
_OF_BEFORE_DIGESTS = "side = 'PROVIDER' AND query_digest = x''"
_BEFORE_DIGESTS = ("CREATE INDEX IF NOT EXISTS access_log_before_digests ON access_log (at) "
                   f"WHERE {_OF_BEFORE_DIGESTS}")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    own_number TEXT PRIMARY KEY, name TEXT NOT NULL, address TEXT NOT NULL,
    date_of_birth TEXT NOT NULL, sex INTEGER NOT NULL, personal_number TEXT);
CREATE TABLE IF NOT EXISTS data (
    own_number TEXT NOT NULL REFERENCES records, data_type TEXT NOT NULL, fields TEXT NOT NULL,
    PRIMARY KEY (own_number, data_type));
CREATE TABLE IF NOT EXISTS bindings (
    own_number TEXT PRIMARY KEY REFERENCES records, link_code TEXT NOT NULL UNIQUE,
    bound_at TEXT NOT NULL, epoch INTEGER NOT NULL DEFAULT 0, previous_code TEXT);
CREATE TABLE IF NOT EXISTS {_INVESTIGATIONS};
CREATE TABLE IF NOT EXISTS staff (staff_id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS terminals (terminal_id TEXT PRIMARY KEY);
-- the terminals a staff member is tied to; one with none may use any registered terminal
CREATE TABLE IF NOT EXISTS staff_terminals (
    staff_id TEXT NOT NULL, terminal_id TEXT NOT NULL, PRIMARY KEY (staff_id, terminal_id))
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, kind TEXT NOT NULL, own_number TEXT NOT NULL,
    pattern_id TEXT, provider TEXT, data_type TEXT, purpose TEXT,
    operator TEXT NOT NULL, terminal TEXT NOT NULL, sent_at TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT, result TEXT, answered_at TEXT, duplicates INTEGER DEFAULT 0,
    outgoing_key TEXT, outgoing BLOB);
CREATE TABLE IF NOT EXISTS {_ACCESS_LOG};
-- the idempotency key a request was made under, if its caller gave one, with a fingerprint of
-- what was asked: kept as the request is (until forget_before)
CREATE TABLE IF NOT EXISTS request_keys (
    idempotency_key TEXT PRIMARY KEY, request_id TEXT NOT NULL REFERENCES requests,
    fingerprint TEXT NOT NULL) WITHOUT ROWID;
-- the queries a provider holds back, their codes found on no record while bindings of an older
-- key epoch than its unit's wait for their re-keying (a NOT_FOUND then might be untrue): stored
-- with the inbox batch that read them, answered once the bindings are brought to the unit's
-- epoch (or logged TIMED_OUT past their deadline), let go once the broker has the answer
CREATE TABLE IF NOT EXISTS held_queries (
    request_id TEXT NOT NULL, query_digest BLOB NOT NULL, deadline TEXT NOT NULL,
    query BLOB NOT NULL, PRIMARY KEY (request_id, query_digest)) WITHOUT ROWID;
-- the link-code unit the bindings are of (one row; none yet: checked at the first follow)
CREATE TABLE IF NOT EXISTS bindings_unit (
    one INTEGER PRIMARY KEY CHECK (one = 0), unit TEXT NOT NULL);
-- requests are found by id; only counts() reads by status, and scans (an index on status cost
-- each request 6 µs to keep up)
DROP INDEX IF EXISTS requests_status;
-- what forget_before finds past the retention, oldest first, with no scan of the tables
CREATE INDEX IF NOT EXISTS requests_done ON requests (coalesce(answered_at, sent_at));
CREATE INDEX IF NOT EXISTS request_keys_request ON request_keys (request_id);
{_ACCESS_LOG_AT};
"""
_OPEN = ("INSERT INTO requests (request_id, kind, own_number, pattern_id, provider, data_type, "
         "purpose, operator, terminal, sent_at, status, outgoing_key, outgoing) "
         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# the open cases in the order opened (rowid), a page read off it from any case on (no scan of
# the cases closed, no sort): a holder moving its unit opens one a binding (a year's: millions)
_OPEN_IN_ORDER = ("CREATE INDEX IF NOT EXISTS investigations_open_in_order "
                  "ON investigations (closed_at) WHERE closed_at IS NULL")
OPEN_CASES_AFTER = ("SELECT rowid, own_number, reason FROM investigations "
                    "WHERE closed_at IS NULL AND rowid > ? ORDER BY rowid LIMIT ?")
# the requests whose messages are kept (the broker not known to have them), read off an index
# of those alone at a server's start (a scan of a year's requests, a million: 91 ms), oldest
# first; a request is in it from when it is recorded until the broker has it (delivered)
_KEPT_INDEX = ("CREATE INDEX IF NOT EXISTS requests_kept ON requests (status) "
               "WHERE outgoing IS NOT NULL")
UNSENT = ("SELECT request_id, outgoing_key, outgoing FROM requests "
          "WHERE outgoing IS NOT NULL AND status = ? ORDER BY rowid")
_PROVIDED = "SELECT fields FROM bindings JOIN data USING (own_number)"
# the bindings of a key epoch, by epoch and in the table's order (rowid): re-keying reads those
# of older epochs off it, and applies the platform's answer in the order read, each binding's
# row and its two entries here changed in order, one page after another, the link-code index
# and the moved codes' alone at random pages (in link-code order, the row and the new entry
# here too: 100k bindings re-keyed wrote 1.7 GB, not 0.9; 300k 6.9 GB, not 5.5)
_EPOCH_INDEX = "CREATE INDEX IF NOT EXISTS bindings_of_epoch ON bindings (epoch)"
# the older key epoch after one (-1: before any) that bindings are of, off bindings_of_epoch
OLDER_EPOCH_AFTER = "SELECT min(epoch) FROM bindings WHERE epoch > ? AND epoch < ?"
# the bindings of one key epoch re-keying converts, up to a number after the last read (its
# rowid), off bindings_of_epoch in its order (no scan, no sort)
BINDINGS_OF_EPOCH = ("SELECT rowid, link_code FROM bindings WHERE epoch = ? AND rowid > ? "
                     "ORDER BY rowid LIMIT ?")
# the bindings re-keying moved, by their code of the epoch before (a binding's previous code): of
# those alone, not of each binding never moved (NULL), one of which each move took out at a
# place of its own in the index, a page written for it (100k bindings re-keyed: 3.5 GB, not 5)
_MOVED_INDEX = ("CREATE INDEX IF NOT EXISTS bindings_moved ON bindings (previous_code) "
                "WHERE previous_code IS NOT NULL")
# the pages the store's connection caches, up to 32 MiB (SQLite's default, 2 MiB, spilled the
# pages a re-keying's transaction dirtied to the write-ahead log before its end, each written
# again as the next binding dirtied it: 100k bindings re-keyed wrote 3.5 GB, not 1.7, and read
# 2.4 GB, not 0.7)
CACHE_KIB = 32 * 1024
_BEFORE_ANY = 0  # the rowid before any binding's (given from 1)
BINDINGS_AT_ONCE = 10_000  # bindings one read of bindings_before gives (~3 ms)
SENT = "SENT"
# a request's status as its holder's own systems are told it (standing) while it is recorded and
# its message kept, the broker not known to have it (down): sent once it is back, SENT then; the
# store keeps it SENT (unanswered), its message in `outgoing`
KEPT = "KEPT"
_STANDING = f"CASE WHEN status = '{SENT}' AND outgoing IS NOT NULL THEN '{KEPT}' ELSE status END"
DELIVERED_AT_ONCE = 500  # request ids a statement names (well under SQLite's 32,766)
FORGET_AT_ONCE = 1000  # rows of each table a transaction of forget_before deletes (a few ms)
REQUESTER, PROVIDER = "REQUESTER", "PROVIDER"
ANSWERED = (FOUND, NOT_FOUND, REFUSED)  # a provider's entry of an answer sent, not yet ended
# a requester's entry is dated when its staff made the request (its sent_at), not when its outcome
# came (30 s later if timed out, hours if the server was down); now if none is recorded (refused
# before it was)
_ASKED_AT = "coalesce((SELECT sent_at FROM requests WHERE request_id = ?), ?)"
_LOGGED = ("at, request_id, side, operator, terminal, counterpart, pattern_id, data_type, "
           "content, purpose, outcome")  # an entry's columns but its query_digest (and serial)
# the tables whose serials are never given again, each as made, with its columns but its serial
_SERIALED = (("access_log", _ACCESS_LOG, f"{_LOGGED}, query_digest"),
             ("investigations", _INVESTIGATIONS, _CASE))
# a provider's entry made before queries had digests (x'') is a copy's of its query read since,
# to its requester, pattern and data type (its deadline was not kept), if answered around the
# copy's deadline (_answered_around), or TIMED_OUT after it: the platform forgets an id, which
# may then be used again, no sooner than the replay window and clock skew after its request
# came, nor before its deadline, so another query of the id is due at least the replay window
# after any answer to the one before (the holder's clock within the skew), a copy at most an
# answer timeout (30 s) after it; a TIMED_OUT entry, logged whenever read late, was made after its
# deadline, a copy's, and before that of another query unless read a replay window late and after
# that one's deadline too (then one entry of the two, with no content, neither answered)
_ANSWERED_BEFORE = ("SELECT 1 FROM access_log WHERE request_id = ? AND side = ? "
                    "AND query_digest = x'' AND counterpart IS ? AND pattern_id IS ? "
                    "AND data_type IS ? AND CASE outcome WHEN ? THEN at > ? "
                    "ELSE at > ? AND at < ? END")
# An import's rows are staged in a TEMP table of the store's connection (writing it takes no lock
# on the store), each told what it changes (change: new, changed, unchanged; NULL: left out),
# whether staff are told of it (flagged) and what of the store it was told by (basis), then the
# new and changed written in one short write transaction; if another connection wrote to the
# store meanwhile, the rows whose basis it moved (_Import.moved) are told again in it.
_CHANGING = "change IN ('new', 'changed')"  # the rows staged that an import writes
_FOUR = ("name", "address", "date_of_birth", "sex")  # a record's four attributes' columns


class Side(NamedTuple):
    """A holder's side of one exchange, as a resident's application tells it: REQUESTER (of
    its own request), or PROVIDER to `requester`."""

    side: str
    requester: str = ""

    def holds(self, entry: HolderLogEntry) -> bool:
        """`entry` is of this side: made on it, and, a provider's, for its requester."""
        return entry.side == self.side and (self.side != PROVIDER
                                            or entry.counterpart == self.requester)


def _record_change(values: tuple[str, ...]) -> str:
    """What tells a record's change by the columns an import gives (`values`), and its flag: a
    bound record's four attributes changed, or its personal number changed to another (that
    binding may be of another person than the number says; a number given or taken away, not)."""
    stored, staged = (", ".join(f"{row}.{c}" for c in values) for row in ("r", "s"))
    four, four_staged = (", ".join(f"{row}.{c}" for c in _FOUR) for row in ("r", "s"))
    renumbered = ("r.personal_number != s.personal_number" if "personal_number" in values
                  else "FALSE")  # != is NULL, not true, if either has none
    return f"""(change, flagged, basis) = (SELECT CASE WHEN r.own_number IS NULL THEN 'new'
    WHEN ({stored}) IS ({staged}) THEN 'unchanged' ELSE 'changed' END,
    b.own_number IS NOT NULL AND (({four}) IS NOT ({four_staged}) OR {renumbered} IS TRUE), NULL
    FROM (SELECT 1) LEFT JOIN main.records AS r ON r.own_number = s.own_number
    LEFT JOIN main.bindings AS b ON b.own_number = r.own_number)"""


# data of no record is left out (flagged); fields are the same if they hold the same keys and
# values, in whatever order (compared again, in the lock, only where the store's fields or the
# record's presence are no longer those told by)
_DATA_OF = """FROM (SELECT 1) LEFT JOIN main.records AS r ON r.own_number = s.own_number
    LEFT JOIN main.data AS d ON d.own_number = s.own_number AND d.data_type = s.data_type"""
_DATA_CHANGE = f"""(change, flagged, basis) = (SELECT CASE WHEN r.own_number IS NULL THEN NULL
    WHEN d.fields IS NULL THEN 'new'
    WHEN d.fields = s.fields OR ((SELECT count(*) FROM json_each(d.fields))
        = (SELECT count(*) FROM json_each(s.fields)) AND NOT EXISTS (
            SELECT 1 FROM json_each(s.fields) AS n LEFT JOIN json_each(d.fields) AS o
            ON o.key = n.key WHERE o.value IS NOT n.value)) THEN 'unchanged'
    ELSE 'changed' END, r.own_number IS NULL, d.fields {_DATA_OF})"""
_DATA_MOVED = f"(SELECT r.own_number IS NULL, d.fields {_DATA_OF}) IS NOT (s.flagged, s.basis)"
# the rows past the retention (:before) forget_before deletes in one transaction, up to :rows of
# each table, oldest first: the idempotency keys of the requests it deletes, before them
_DONE_BEFORE = ("SELECT request_id FROM requests WHERE coalesce(answered_at, sent_at) < :before "
                "ORDER BY coalesce(answered_at, sent_at) LIMIT :rows")
FORGET = (f"DELETE FROM request_keys WHERE request_id IN ({_DONE_BEFORE})",
          f"DELETE FROM requests WHERE request_id IN ({_DONE_BEFORE})",
          "DELETE FROM access_log WHERE serial IN "
          "(SELECT serial FROM access_log WHERE at < :before ORDER BY at LIMIT :rows)",
          "DELETE FROM investigations WHERE request_id IN (SELECT request_id FROM investigations "
          "WHERE closed_at < :before ORDER BY closed_at LIMIT :rows)")
# fields as the store keeps them: json.dumps(fields, ensure_ascii=False), whose encoder is made
# once here, not at each call (0.8 µs of 2.2, three times a round trip)
fields_json = json.JSONEncoder(ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    kind: str
    own_number: str
    pattern_id: str | None
    provider: str | None
    data_type: str | None
    purpose: str | None
    operator: str
    terminal: str
    status: str
    detail: str | None
    result: dict[str, str] | None


class Keyed(NamedTuple):
    """The idempotency key a caller made a request under, and a fingerprint of what it asked;
    `formerly`, the one a key stored before that fingerprint's format was made under (kept as
    long as such a key is: the retention)."""

    key: str
    fingerprint: str
    formerly: str | None = None

    def asks(self, made: Made) -> bool:
        """Whether the request made under this key is the one asked now."""
        return made.fingerprint in (self.fingerprint, self.formerly)


class KeyInUse(Exception):
    """An idempotency key under which another call is making a request at the same time."""

    def __init__(self) -> None:
        super().__init__("a request under this idempotency key is being made: ask again in a "
                         "moment")


class Made(NamedTuple):
    """The request made under an idempotency key: its id, the fingerprint of what was asked,
    and whether its message is still kept (the broker not known to have it)."""

    request_id: str
    fingerprint: str
    kept: bool


class Forgotten(NamedTuple):
    """What a retention purge deleted: requests (with their idempotency keys), log entries,
    investigations closed."""

    requests: int
    log_entries: int
    cases: int

    @classmethod
    def of(cls, parts: Iterable[Forgotten]) -> Forgotten:
        """What the parts of a purge deleted, together."""
        return retention.summed(parts, cls(0, 0, 0))

    @classmethod
    def told_of(cls, parts: Iterable[Forgotten], cutoff: datetime) -> str:
        """What the parts of a purge forgot together, in words (told)."""
        return cls.of(parts).told(cutoff)

    def told(self, cutoff: datetime) -> str:
        """What the purge forgot, in words, as `renkei holder purge` and the server's log say."""
        return (f"{self.requests} requests, {self.log_entries} access-log entries and "
                f"{self.cases} investigations closed from before {cutoff.date().isoformat()} "
                "forgotten")


class RecordsRemoved(NamedTuple):
    """What a removal of records did: how many were removed, the lines of own numbers the store
    had no record of, and those of records with a request in flight (line, its request id)."""

    removed: int
    absent: list[int]
    in_flight: list[tuple[int, str]]


class Imported(NamedTuple):
    """What an import did: its rows by change (new, changed, unchanged), and the lines and own
    numbers of those flagged (records: a bound record's four attributes or number changed; data:
    of no record, left out)."""

    counts: Counter[str]
    flagged: list[tuple[int, str]]


@dataclass(frozen=True, slots=True)
class _Import:
    """How rows are imported into a table of the store: its key's columns and the others, and
    what tells each row's change, flag and basis (_record_change), and which rows to tell again
    in the lock (moved)."""

    table: str
    key: tuple[str, ...]
    values: tuple[str, ...]
    change: str
    moved: str = "TRUE"  # the rows (s) whose basis another connection may have moved: all

    @property
    def columns(self) -> str:
        return ", ".join(self.key + self.values)


_NUMBERED = (*_FOUR, "personal_number")
_RECORDS = _Import("records", ("own_number",), _NUMBERED, _record_change(_NUMBERED))
# records of a file without the personal_number column: a record's number is kept as it is
_UNNUMBERED_RECORDS = _Import("records", ("own_number",), _FOUR, _record_change(_FOUR))
_DATA = _Import("data", ("own_number", "data_type"), ("fields",), _DATA_CHANGE, _DATA_MOVED)


class Provided(NamedTuple):
    """A provider's entry of a query: its outcome, the data sent (if FOUND), when it was made."""

    outcome: str
    content: str | None
    at: datetime


class Rekeyed(NamedTuple):
    """A binding re-keying moved, or unbound: for its new code was not valid, or was bound to
    record `taken_by` already."""

    own_number: str
    taken_by: str | None = None


STORE_FILE = "holder.db"
MEMORY = ":memory:"  # SQLite's name of a store in memory, no file's


def default_path(holder: str) -> Path:
    """Where the holder's own store is in the state folder (nothing made here: HolderStore.of
    makes it)."""
    return state_path("holders", holder, STORE_FILE)


def store_made(holder: str) -> bool:
    """Whether the holder's store is made yet (nothing made here)."""
    return default_path(holder).exists()


def _record_row(own_number: str, attributes: FourAttributes,
                personal_number: str | None) -> tuple[str, str, str, str, int, str | None]:
    """A record as the store keeps it."""
    return (own_number, attributes.name, attributes.address,
            attributes.date_of_birth.isoformat(), int(attributes.sex), personal_number)


def _has_query_digest(db: sqlite3.Connection) -> bool:
    """Whether the store's access log tells a provider's entries by their queries (made since
    they are)."""
    return not missing_columns(db, "access_log", ("query_digest",))


def _query_digest(requester: str | None, pattern_id: str | None, data_type: str | None,
                  deadline: datetime) -> bytes:
    """What tells a query of a request id: what the platform fixes of it at approval, which each
    dispatch of it repeats (its deadline an answer timeout after the request was received, so
    another for an id used again), not its ticket (sealed again under another nonce when a
    dispatch is made again) nor its link codes (another after a re-keying in between)."""
    told = f"{requester}\0{pattern_id}\0{data_type}\0{deadline.timestamp()}"  # in any zone
    return hashlib.blake2b(told.encode(), digest_size=16).digest()


def _digest_of(query: ProviderQuery) -> bytes:
    """What tells the query among those of its request id (_query_digest)."""
    return _query_digest(query.requester, query.pattern_id, query.data_type, query.deadline)


def _of_query(at: str, requester: str | None, pattern_id: str | None, data_type: str | None,
              digest: bytes, deadline: datetime) -> bool:
    """Whether a provider's entry, answered, is of the query due by `deadline`: by its digest,
    or made before digests around it (_answered_around)."""
    if digest:
        return digest == _query_digest(requester, pattern_id, data_type, deadline)
    after, before = _answered_around(deadline)
    return after < _utc(at) < before


def _answered_around(deadline: datetime) -> tuple[datetime, datetime]:
    """When (strictly between) a provider's entry made before digests, answered, is of the query
    due by `deadline`: less than the replay window before it and less than the replay window
    less an answer timeout after it, before any answer to a later query of the id (received no
    sooner than the replay window and clock skew after this one's request, an answer timeout
    before its deadline; the holder's clock within the skew)."""
    return deadline - REPLAY_WINDOW, deadline + REPLAY_WINDOW - ANSWER_TIMEOUT


def _exchanged_around(at: datetime) -> tuple[datetime, datetime]:
    """When (after, up to) a provider's entry is of the use of its request id the access log
    has an event of `at` (its approval, or its answer by its deadline): each use's query is
    answered from its request's receipt to its deadline an answer timeout on (the holder's clock
    within the skew), the id used again no sooner than the replay window and skew after (or
    before) that receipt, so for an event within the replay window less an answer timeout and
    skew (60 s) of its receipt, no other use's entry is within."""
    return at - REPLAY_WINDOW + ANSWER_TIMEOUT, at + ANSWER_TIMEOUT + CLOCK_SKEW


def _utc(at: str) -> datetime:
    """An entry's time (written in UTC; perhaps without its offset by an old version)."""
    read = datetime.fromisoformat(at)
    return read if read.tzinfo is not None else read.replace(tzinfo=UTC)


def _stamp(at: datetime) -> str:
    """A time as the store writes it: UTC, to the millisecond (text that sorts as the time)."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def _now() -> str:
    return _stamp(datetime.now(UTC))


def own_number(value: str) -> str:
    """An own number as the store keys it: NFKC (full-width `Ｈ－１`, as a spreadsheet or a
    system may write it, is `H-1`: one record, not two), without the whitespace around it."""
    return unicodedata.normalize("NFKC", value).strip()


# the tables whose rows are reached by a record's own number (its requests and access log are
# what was done then, kept as they were)
_KEYED_BY_OWN_NUMBER = ("records", "data", "bindings", "investigations")
OWN_NUMBERS_KEYED = 1  # PRAGMA user_version of a store whose own numbers are keyed (own_number)


class HolderStore:
    @classmethod
    def of(cls, holder: str) -> HolderStore:
        """The holder's own store in the state folder, opened for writing: made where there is
        none yet, in a folder only this user may read (private_dir)."""
        return cls(private_dir("holders", holder) / STORE_FILE)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = connected(path)
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.db.executescript(SCHEMA)
        # a store made before re-keying: nothing moved yet
        with_columns(self.db, "bindings",
                     ("epoch INTEGER NOT NULL DEFAULT 0", "previous_code TEXT"))
        self.db.execute(_MOVED_INDEX)
        self.db.execute("DROP INDEX IF EXISTS bindings_previous_code")  # of every binding
        self.db.execute(_EPOCH_INDEX)
        self.db.execute("DROP INDEX IF EXISTS bindings_epoch")  # of (epoch, link code)
        # a store made before requests were kept until sent
        with_columns(self.db, "requests", ("outgoing_key TEXT", "outgoing BLOB"))
        self.db.execute(_KEPT_INDEX)
        # a store made before cases were closed: each case open
        with_columns(self.db, "investigations", ("closed_at TEXT",))
        self._log_by_query()
        self._serials_never_given_again()
        self._own_numbers_keyed()
        self.db.execute(_ACCESS_LOG_AT)
        self.db.execute("CREATE INDEX IF NOT EXISTS investigations_open "
                        "ON investigations (own_number) WHERE closed_at IS NULL")
        self.db.execute("CREATE INDEX IF NOT EXISTS investigations_closed "
                        "ON investigations (closed_at) WHERE closed_at IS NOT NULL")
        self.db.execute(_OPEN_IN_ORDER)
        self.db.execute(_BEFORE_DIGESTS)
        # the latest of them (None: none, as in a store made since): later ones are never made
        latest = self.db.execute(
            f"SELECT max(at) FROM access_log WHERE {_OF_BEFORE_DIGESTS}").fetchone()[0]
        self._before_digests = None if latest is None else _utc(latest)

    def _log_by_query(self) -> None:
        """A store made before a provider's entries were one a query (one a request id): its
        access log made again with their queries' column, its entries kept (of none: x''), in one
        write transaction (done by another process meanwhile: left as it is)."""
        if _has_query_digest(self.db):
            return
        with writing(self.db):
            if _has_query_digest(self.db):
                return
            self._made_again("access_log", _ACCESS_LOG, _LOGGED)

    def _serials_never_given_again(self) -> None:
        """A store made before serials were never given again (SQLite gives the largest + 1,
        one given before once its rows are forgotten): its access log and investigations made
        again with AUTOINCREMENT, their rows and serials kept (the largest kept: none given
        again from then on), in one write transaction (done by another process meanwhile: left
        as it is)."""
        if all(map(self._never_gives_again, (table for table, *_ in _SERIALED))):
            return
        with writing(self.db):
            for table, made, columns in _SERIALED:
                if not self._never_gives_again(table):
                    self._made_again(table, made, columns)

    def _made_again(self, table: str, made: str, columns: str) -> None:
        """The table made again as `made`, its rows' serials and `columns` kept (the others
        given their default), its indexes gone (the store's open makes them after)."""
        self.db.execute(f"ALTER TABLE {table} RENAME TO {table}_before")
        self.db.execute(f"CREATE TABLE {made}")
        self.db.execute(f"INSERT INTO {table} (serial, {columns}) "
                        f"SELECT rowid, {columns} FROM {table}_before")
        self.db.execute(f"DROP TABLE {table}_before")

    def _own_numbers_keyed(self) -> None:
        """A store made before own numbers were keyed (own_number) at every way in: a record
        kept as given (`Ｈ－１`) keyed again (`H-1`) with its data, binding and cases, else no
        import, removal or call could reach it and its next import made a second record; one
        whose keyed number another record has is left as it is, said in the log. Once, in one
        write transaction (done by another process meanwhile: left as it is)."""
        if self.db.execute("PRAGMA user_version").fetchone()[0] >= OWN_NUMBERS_KEYED:
            return
        with writing(self.db):
            taken = {own for (own,) in self.db.execute("SELECT own_number FROM records")}
            for own in sorted(own for own in taken if own != own_number(own)):
                if (keyed := own_number(own)) in taken:
                    log.warning("holder store %s: record %r is record %r keyed as every way in "
                                "keys it, which holds another record: left as it was, which "
                                "no import, removal or call reaches", self.path, own, keyed)
                    continue
                for table in _KEYED_BY_OWN_NUMBER:
                    self.db.execute(f"UPDATE {table} SET own_number = ? WHERE own_number = ?",
                                    (keyed, own))
                taken.add(keyed)  # two given forms of one number: the second left, said
            self.db.execute(f"PRAGMA user_version = {OWN_NUMBERS_KEYED}")

    def _never_gives_again(self, table: str) -> bool:
        """Whether the table's serials are never given again (made with AUTOINCREMENT)."""
        made = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (table,)).fetchone()[0]
        return "AUTOINCREMENT" in made

    def close(self) -> None:
        self.db.close()

    def held(self, what: str) -> AbstractContextManager[None]:
        """The store for this process's `what` (a holder library started on it) alone while it
        runs: another's start on it is refused (InUse, naming the store and the process holding
        it), not left to send each request kept and answer each query a second time, each
        logged twice. A lock (flock) of a file beside the store, let go by the OS whatever ends
        the process; a store in memory is this connection's alone (nothing held)."""
        return nullcontext() if str(self.path) == MEMORY else held(self.path, what)

    def wait_for_lock(self, seconds: float) -> None:
        """Wait up to `seconds` for a write lock another connection holds (SQLite's busy
        timeout; 5 s unless set), then fail with "database is locked"."""
        self.db.execute(f"PRAGMA busy_timeout = {round(seconds * 1000)}")

    def transaction(self) -> AbstractContextManager[None]:
        return writing(self.db)

    # the holder's own records, data and people allowed to act
    def add_record(self, own_number: str, attributes: FourAttributes,
                   personal_number: str | None = None) -> None:
        self.db.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?, ?)",
                        _record_row(own_number, attributes, personal_number))

    def import_records(self, records: Iterable[tuple[int, str, FourAttributes, str | None]],
                       numbered: bool = True) -> Imported:
        """Add or update records (line, own number, four attributes, personal number), all or
        none; flagged: bound records whose four attributes or number changed. Not `numbered` (a
        file without the column), each record keeps the personal number it has (a new one none)."""
        how = _RECORDS if numbered else _UNNUMBERED_RECORDS
        width = len(how.key) + len(how.values)  # the personal number last, left out if not given
        return self._import(how, ((*_record_row(own, attributes, number)[:width], line)
                                  for line, own, attributes, number in records))

    def import_data(self, data: Iterable[tuple[int, str, str, dict[str, str]]]) -> Imported:
        """Add or update data (line, own number, data type, fields), all or none, but for
        records the store lacks (flagged)."""
        return self._import(_DATA, ((own, data_type, fields_json(fields), line)
                                    for line, own, data_type, fields in data))

    def remove_data(self, keys: Iterable[tuple[int, str, str]]) -> list[int]:
        """Remove the data (line, own number, data type) in one write transaction: the holder
        provides it no more; the lines of those it did not have."""
        with writing(self.db):
            return [line for line, own, data_type in keys if self.db.execute(
                "DELETE FROM data WHERE own_number = ? AND data_type = ?",
                (own, data_type)).rowcount == 0]

    def remove_records(self, keys: Iterable[tuple[int, str]]) -> RecordsRemoved:
        """Remove the records (line, own number) in one write transaction, each with its data and
        its binding (a query of its link code is answered NOT_FOUND from then on; bound again,
        imported again, it is a binding anew) and its open investigations closed; its requests and
        access-log entries stay (a log is not edited: kept the retention). Refused, the rest
        removed: an own number of no record, and a record with a request in flight (SENT: its
        answer would come to no record), named by the first such request's id."""
        absent: list[int] = []
        in_flight: list[tuple[int, str]] = []
        removed = 0
        with writing(self.db):
            sent = dict(self.db.execute(  # a scan (no index on status), once
                "SELECT own_number, min(request_id) FROM requests WHERE status = ? "
                "GROUP BY own_number", (SENT,)).fetchall())
            now = _now()
            for line, own in keys:
                if own in sent:
                    in_flight.append((line, str(sent[own])))
                elif self.db.execute("DELETE FROM records WHERE own_number = ?",
                                     (own,)).rowcount == 0:
                    absent.append(line)
                else:
                    removed += 1
                    self.db.execute("DELETE FROM data WHERE own_number = ?", (own,))
                    self.db.execute("DELETE FROM bindings WHERE own_number = ?", (own,))
                    self.db.execute("UPDATE investigations SET closed_at = ? "
                                    "WHERE own_number = ? AND closed_at IS NULL", (now, own))
        return RecordsRemoved(removed, absent, in_flight)

    def _import(self, how: _Import, rows: Iterable[tuple[object, ...]]) -> Imported:
        """Stage the rows (their columns, then line) and tell what each changes with no lock on
        the store, then write those that change it in one write transaction (none if none does
        and the store is as they were told against)."""
        staged, key = f"temp.staged_{how.table}", ", ".join(how.key)
        self.db.execute(f"CREATE TEMP TABLE staged_{how.table} ({how.columns}, line, change, "
                        f"flagged, basis, PRIMARY KEY ({key}))")
        try:
            with writing(self.db, deferred=True):
                self.db.executemany(f"INSERT INTO {staged} ({how.columns}, line) VALUES "
                                    f"({', '.join('?' * (len(how.key) + len(how.values) + 1))})",
                                    rows)
                self.db.execute(f"UPDATE {staged} AS s SET {how.change}")
                told = self._data_version()
                changing = self.db.execute(
                    f"SELECT EXISTS (SELECT 1 FROM {staged} WHERE {_CHANGING})").fetchone()[0]
            if changing or self._data_version() != told:
                self._write(how, staged, told)
            return self._imported(staged)
        finally:
            self.db.execute(f"DROP TABLE {staged}")

    def _write(self, how: _Import, staged: str, told: int) -> None:
        """Write the rows staged that change the store in one write transaction, told again in
        it if another connection wrote to the store since they were told (data version `told`)."""
        key = ", ".join(how.key)
        with writing(self.db):
            if self._data_version() != told:
                self.db.execute(f"UPDATE {staged} AS s SET {how.change} WHERE {how.moved}")
            self.db.execute(
                f"INSERT INTO main.{how.table} ({how.columns}) SELECT {how.columns} "
                f"FROM {staged} WHERE {_CHANGING} ORDER BY {key} "
                f"ON CONFLICT ({key}) DO UPDATE SET "
                f"{', '.join(f'{c} = excluded.{c}' for c in how.values)}")

    def _imported(self, staged: str) -> Imported:
        """What the import of the rows staged did, as told (read from them, not the store)."""
        counts = Counter(dict(self.db.execute(f"SELECT change, count(*) FROM {staged} "
                                              "WHERE change IS NOT NULL GROUP BY change")))
        return Imported(counts, list(self.db.execute(
            f"SELECT line, own_number FROM {staged} WHERE flagged ORDER BY line")))

    def _data_version(self) -> int:
        """A number that changes when another connection commits to the store."""
        return int(self.db.execute("PRAGMA main.data_version").fetchone()[0])

    def record(self, own_number: str) -> tuple[FourAttributes, str | None] | None:
        row = self.db.execute("SELECT name, address, date_of_birth, sex, personal_number "
                              "FROM records WHERE own_number = ?", (own_number,)).fetchone()
        if row is None:
            return None
        return FourAttributes(row[0], row[1], date.fromisoformat(row[2]), Sex(row[3])), row[4]

    def own_numbers(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT own_number FROM records ORDER BY 1")]

    def put_data(self, own_number: str, data_type: str, fields: dict[str, str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO data VALUES (?, ?, ?)",
                        (own_number, data_type, fields_json(fields)))

    def data(self, own_number: str, data_type: str) -> dict[str, str] | None:
        row = self.db.execute("SELECT fields FROM data WHERE own_number = ? AND data_type = ?",
                              (own_number, data_type)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def add_staff(self, staff_id: str, name: str, terminals: Collection[str] = ()) -> None:
        """Register (or replace) a staff member, tied to `terminals` (none: any registered)."""
        self.db.execute("INSERT OR REPLACE INTO staff VALUES (?, ?)", (staff_id, name))
        self.db.execute("DELETE FROM staff_terminals WHERE staff_id = ?", (staff_id,))
        self.db.executemany("INSERT INTO staff_terminals VALUES (?, ?)",
                            [(staff_id, t) for t in sorted(set(terminals))])

    def remove_staff(self, staff_id: str) -> bool:
        """Unregister a staff member and their terminal ties; False if there was none."""
        self.db.execute("DELETE FROM staff_terminals WHERE staff_id = ?", (staff_id,))
        return self.db.execute("DELETE FROM staff WHERE staff_id = ?", (staff_id,)).rowcount > 0

    def staff(self) -> list[tuple[str, str, list[str]]]:
        """Each staff member's id, name and the terminals they are tied to (none: any)."""
        tied: dict[str, list[str]] = {}
        for staff_id, terminal in self.db.execute(
                "SELECT staff_id, terminal_id FROM staff_terminals ORDER BY 1, 2"):
            tied.setdefault(staff_id, []).append(terminal)
        return [(staff_id, name, tied.get(staff_id, [])) for staff_id, name in
                self.db.execute("SELECT staff_id, name FROM staff ORDER BY 1")]

    def add_terminal(self, terminal_id: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO terminals VALUES (?)", (terminal_id,))

    def remove_terminal(self, terminal_id: str) -> bool:
        """Unregister a terminal; False if there was none. Staff tied to it keep the tie (so one
        tied to it alone may use no terminal, not any), and get it back if it is registered
        again."""
        return self.db.execute("DELETE FROM terminals WHERE terminal_id = ?",
                               (terminal_id,)).rowcount > 0

    def terminals(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT terminal_id FROM terminals ORDER BY 1")]

    def authorized(self, operator: str, terminal: str) -> bool:
        """Registered staff on a registered terminal (paper §5(3)), one they are tied to if
        they are tied to any."""
        return bool(self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM staff WHERE staff_id = :staff) "
            "AND EXISTS (SELECT 1 FROM terminals WHERE terminal_id = :terminal) "
            "AND (NOT EXISTS (SELECT 1 FROM staff_terminals WHERE staff_id = :staff) "
            "OR EXISTS (SELECT 1 FROM staff_terminals "
            "WHERE staff_id = :staff AND terminal_id = :terminal))",
            {"staff": operator, "terminal": terminal}).fetchone()[0])

    # the correspondence table and the investigation queue
    def bind(self, own_number: str, link_code: str, epoch: int) -> str | None:
        """Bind a record to its link code, of the unit's key `epoch` (a record bound already is
        bound anew). None, or the other record the link code is bound to (or was, before a
        re-keying moved that record on): then nothing changed, two records of one person being
        an ambiguous match. Bound, the record's open investigations are closed."""
        other = self.db.execute("SELECT own_number FROM bindings WHERE (link_code = :code "
                                "OR previous_code = :code) AND own_number != :own",
                                {"code": link_code, "own": own_number}).fetchone()
        if other is not None:
            return str(other[0])
        now = _now()
        self.db.execute("INSERT OR REPLACE INTO bindings VALUES (?, ?, ?, ?, NULL)",
                        (own_number, link_code, now, epoch))
        self.db.execute("UPDATE investigations SET closed_at = ? "
                        "WHERE own_number = ? AND closed_at IS NULL", (now, own_number))
        return None

    def link_code(self, own_number: str) -> str | None:
        bound = self.binding(own_number)
        return None if bound is None else bound[0]

    def binding(self, own_number: str) -> tuple[str, int] | None:
        """The record's link code and the key epoch it is of (None: not bound)."""
        row = self.db.execute("SELECT link_code, epoch FROM bindings WHERE own_number = ?",
                              (own_number,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def provided(self, link_code: str, data_type: str,
                 previous: str | None = None) -> dict[str, str] | None:
        """The data of this type on the record bound to this link code (None: no such record or
        no such data). Across a re-keying, also the record still bound to the person's code of
        the previous epoch (`previous`), or already moved on from this code."""
        row = self.db.execute(f"{_PROVIDED} WHERE link_code = ? AND data_type = ?",
                              (link_code, data_type)).fetchone()
        if row is None:
            row = self.db.execute(
                f"{_PROVIDED} WHERE (link_code = ? OR previous_code = ?) AND data_type = ?",
                (previous, link_code, data_type)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def bound_before(self, epoch: int) -> bool:
        """Whether a binding is of a key epoch before `epoch` (read off bindings_of_epoch)."""
        return bool(self.db.execute("SELECT EXISTS (SELECT 1 FROM bindings WHERE epoch < ?)",
                                    (epoch,)).fetchone()[0])

    # queries held back while the bindings wait for their re-keying
    def hold(self, query: ProviderQuery, encoded: bytes) -> None:
        """Keep the query (`encoded`, as read) to answer later; a copy of one kept, once."""
        self.db.execute("INSERT OR IGNORE INTO held_queries VALUES (?, ?, ?, ?)",
                        (query.request_id, _digest_of(query), _stamp(query.deadline), encoded))

    def held_queries(self) -> list[bytes]:
        """The queries held back, as read, those due first first."""
        return [bytes(q) for q, in self.db.execute(
            "SELECT query FROM held_queries ORDER BY deadline")]

    def held_due(self) -> datetime | None:
        """The deadline of the query held back due first (to the millisecond, no later than
        its own), None if none is held."""
        row = self.db.execute("SELECT min(deadline) FROM held_queries").fetchone()
        return None if row[0] is None else _utc(row[0])

    def let_go(self, query: ProviderQuery) -> None:
        """The query held back is answered and the broker has its answer, or it is past its
        deadline and logged so: kept no more."""
        self.db.execute("DELETE FROM held_queries WHERE request_id = ? AND query_digest = ?",
                        (query.request_id, _digest_of(query)))

    def bindings(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT own_number, link_code FROM bindings"))

    def bindings_before(self, epoch: int) -> dict[int, list[str]]:
        """The link codes of key epochs before `epoch`, by epoch: what re-keying converts."""
        found: dict[int, list[str]] = {}
        for old_epoch, link_codes in self.bindings_before_in_parts(epoch):
            found.setdefault(old_epoch, []).extend(link_codes)
        return found

    def bindings_before_in_parts(self, epoch: int, at_once: int = BINDINGS_AT_ONCE
                                 ) -> Iterator[tuple[int, list[str]]]:
        """bindings_before a part at a time, by epoch and in the store's order (rowid, that of
        applying the platform's answer at the fewest pages): up to `at_once` link codes of one
        key epoch, each read of the store on its own (the event loop may go on between them:
        one read of 200k bindings held it 65 ms)."""
        old_epoch, after = self._older_epoch_after(-1, epoch), _BEFORE_ANY
        while old_epoch is not None:
            rows = self.db.execute(BINDINGS_OF_EPOCH, (old_epoch, after, at_once)).fetchall()
            if rows:
                yield old_epoch, [link_code for _, link_code in rows]
                after = rows[-1][0]
            else:
                old_epoch, after = self._older_epoch_after(old_epoch, epoch), _BEFORE_ANY

    def _older_epoch_after(self, after: int, epoch: int) -> int | None:
        """The key epoch after `after` and before `epoch` bindings are of (None: none)."""
        found = self.db.execute(OLDER_EPOCH_AFTER, (after, epoch)).fetchone()[0]
        return None if found is None else int(found)

    def rekey(self, link_code: str, new_code: str | None, epoch: int) -> Rekeyed | None:
        """Give the binding of an older epoch's `link_code` its code of `epoch`; with no new
        code, unbind it (one of `epoch` too: not a code of the unit). The record moved or
        unbound, or None if nothing changed (done already, a code of `epoch` found valid, or the
        new code is another record's code of an older epoch, odds ~n²/36¹¹: it stays of its
        old epoch until that one has moved)."""
        if new_code is None:
            row = self.db.execute("DELETE FROM bindings WHERE link_code = ? AND epoch <= ? "
                                  "RETURNING own_number", (link_code, epoch)).fetchone()
            return None if row is None else Rekeyed(str(row[0]))
        if new_code == link_code:
            return None
        try:
            row = self.db.execute(
                "UPDATE bindings SET link_code = ?, epoch = ?, previous_code = link_code "
                "WHERE link_code = ? AND epoch < ? RETURNING own_number",
                (new_code, epoch, link_code, epoch)).fetchone()
        except sqlite3.IntegrityError:
            return self._rekey_taken(link_code, new_code, epoch)
        return None if row is None else Rekeyed(str(row[0]))

    def _rekey_taken(self, link_code: str, new_code: str, epoch: int) -> Rekeyed | None:
        """The new code is bound already: if to a record of `epoch` (the same person keyed
        twice, the other bound since the unit moved), the old binding is unbound, ambiguous."""
        other = self.db.execute("SELECT own_number FROM bindings WHERE link_code = ? "
                                "AND epoch >= ?", (new_code, epoch)).fetchone()
        if other is None:
            return None
        row = self.db.execute("DELETE FROM bindings WHERE link_code = ? AND epoch < ? "
                              "RETURNING own_number", (link_code, epoch)).fetchone()
        return Rekeyed(str(row[0]), str(other[0]))

    def bindings_unit(self) -> str | None:
        """The link-code unit the bindings were last brought to (None: never noted)."""
        row = self.db.execute("SELECT unit FROM bindings_unit").fetchone()
        return None if row is None else str(row[0])

    def move_to_unit(self, unit: str) -> list[str]:
        """The bindings are now of link-code `unit`: those of another unit the holder left are
        unbound and investigated (their codes are not the people's there); the records unbound."""
        noted = self.bindings_unit()
        self.db.execute("INSERT OR REPLACE INTO bindings_unit VALUES (0, ?)", (unit,))
        if noted is None or noted == unit:
            return []
        return self._unbind(unit, f"the holder moved from link-code unit {noted!r} to {unit!r}: "
                                  "bind it again")

    def unbind_after(self, epoch: int, unit: str) -> list[str]:
        """Unbind and investigate the bindings of a key epoch after `epoch`, the one link-code
        `unit` is at: of another unit (the holder moved); the records unbound."""
        return self._unbind(unit, f"its link code is of a key epoch link-code unit {unit!r} has "
                                  "not reached, of a unit the holder left: bind it again",
                            "WHERE epoch > ?", (epoch,))

    def _unbind(self, unit: str, reason: str, where: str = "",
                args: tuple[object, ...] = ()) -> list[str]:
        """Unbind the bindings (all, or those `where`), each investigated for `reason` as it
        comes to link-code `unit` (a case of its own, whatever moves came before); the records
        unbound."""
        unbound = [str(own) for own, in self.db.execute(
            f"DELETE FROM bindings {where} RETURNING own_number", args).fetchall()]
        move = uuid6.uuid7()
        for own_number in unbound:
            self.investigate(f"unit:{unit}:{move}:{own_number}", own_number, reason)
        return unbound

    def investigate(self, request_id: str, own_number: str, reason: str) -> None:
        """Open a case: the record, and why it is not bound (closed once it is bound)."""
        self.db.execute("INSERT OR IGNORE INTO investigations "
                        "(request_id, own_number, reason, opened_at) VALUES (?, ?, ?, ?)",
                        (request_id, own_number, reason, _now()))

    def investigations(self) -> list[tuple[str, str]]:
        """The open cases (record, reason), in the order opened (all: the CLI's and the demo's;
        the server reads them a page at a time, investigations_page)."""
        return [(own, reason) for _, own, reason in self.investigations_page(0, -1)]

    def investigations_page(self, after: int, most: int) -> list[tuple[int, str, str]]:
        """Up to `most` open cases (a negative number: all) after the serial `after`, in the
        order opened, each with its serial (record, reason)."""
        return [(int(r[0]), str(r[1]), str(r[2]))
                for r in self.db.execute(OPEN_CASES_AFTER, (after, most))]

    # requests this holder sent, and their outcome (each recorded once)
    def open_request(self, request_id: str, kind: str, own_number: str, operator: str,
                     terminal: str, *, pattern_id: str | None = None,
                     provider: str | None = None, data_type: str | None = None,
                     purpose: str | None = None,
                     outgoing: tuple[str | None, bytes] | None = None,
                     keyed: Keyed | None = None) -> Request:
        """Record a request about to be sent, with its message (key, value) kept until the broker
        has it (one statement: a request recorded is sent, if not now then at the next start),
        and the idempotency key it is made under, in the same transaction; returns it as
        recorded."""
        key, value = outgoing or (None, None)
        row = (request_id, kind, own_number, pattern_id, provider, data_type, purpose, operator,
               terminal, _now(), SENT, key, value)
        if keyed is None:
            self.db.execute(_OPEN, row)
        else:
            self._open_keyed(row, keyed)
        return Request(request_id, kind, own_number, pattern_id, provider, data_type, purpose,
                       operator, terminal, SENT, None, None)

    def _open_keyed(self, row: tuple[object, ...], keyed: Keyed) -> None:
        """Record a request and its idempotency key, both or neither (a savepoint: inside a
        transaction, that of the requests recorded with it goes on)."""
        try:
            with savepoint(self.db, "keyed"):
                self.db.execute(_OPEN, row)
                self.db.execute("INSERT INTO request_keys VALUES (?, ?, ?)",
                                (keyed.key, row[0], keyed.fingerprint))
        except sqlite3.IntegrityError as exc:
            raise KeyInUse from exc

    def made(self, idempotency_key: str) -> Made | None:
        """The request made under this idempotency key (None: none)."""
        row = self.db.execute(
            "SELECT request_id, fingerprint, outgoing IS NOT NULL FROM request_keys "
            "JOIN requests USING (request_id) WHERE idempotency_key = ?",
            (idempotency_key,)).fetchone()
        return None if row is None else Made(str(row[0]), str(row[1]), bool(row[2]))

    def delivered(self, request_ids: list[str]) -> None:
        """The broker has these requests' messages: they are no longer kept, nor their keys (a
        linkage request's: the person's link code), a statement for up to DELIVERED_AT_ONCE of
        them."""
        for at in range(0, len(request_ids), DELIVERED_AT_ONCE):
            ids = request_ids[at:at + DELIVERED_AT_ONCE]
            self.db.execute("UPDATE requests SET outgoing_key = NULL, outgoing = NULL "
                            "WHERE request_id IN "
                            f"({', '.join('?' * len(ids))})", ids)

    def unsent(self) -> list[tuple[str, str | None, bytes]]:
        """The messages (request id, key, value) of requests recorded, not answered and not
        known to be delivered, oldest first (read off their index, requests_kept: no scan)."""
        return [(str(r[0]), r[1], bytes(r[2])) for r in self.db.execute(UNSENT, (SENT,))]

    def resolve(self, request: Request, status: str, detail: str | None = None,
                result: dict[str, str] | None = None) -> Request | None:
        """Record a request's outcome if it has none yet (its message and key no longer kept); a
        second outcome is only counted."""
        done = self.db.execute(
            "UPDATE requests SET status = ?, detail = ?, result = ?, answered_at = ?, "
            "outgoing_key = NULL, outgoing = NULL WHERE request_id = ? AND status = ?",
            (status, detail, None if result is None else fields_json(result),
             _now(), request.request_id, SENT)).rowcount
        if not done:
            self.db.execute("UPDATE requests SET duplicates = duplicates + 1 "
                            "WHERE request_id = ?", (request.request_id,))
            return None
        return replace(request, status=status, detail=detail, result=result)

    def rekey_counted(self, request_id: str, converted: int, investigated: int
                      ) -> tuple[int, int]:
        """Add a part of a re-keying's answer to what it has converted and sent to
        investigation so far, kept in its request's result while it is SENT (in the part's
        transaction: a crash between parts loses none of the count); the sums."""
        row = self.db.execute(
            "UPDATE requests SET result = json_object("
            "'converted', CAST(coalesce(result ->> 'converted', 0) + ? AS TEXT), "
            "'investigated', CAST(coalesce(result ->> 'investigated', 0) + ? AS TEXT)) "
            "WHERE request_id = ? AND status = ? "
            "RETURNING result ->> 'converted', result ->> 'investigated'",
            (converted, investigated, request_id, SENT)).fetchone()
        return (converted, investigated) if row is None else (int(row[0]), int(row[1]))

    def request(self, request_id: str) -> Request | None:
        return self._request(request_id, "status")

    def standing(self, request_id: str) -> Request | None:
        """The request as its holder's own systems are told it: KEPT while its message is kept
        (the broker not known to have it: sent once it is back), else as recorded (SENT once
        the broker has it, until its outcome)."""
        return self._request(request_id, _STANDING)

    def _request(self, request_id: str, status_as: str) -> Request | None:
        """The request, its status as `status_as` (a column expression) reads it."""
        row = self.db.execute(
            "SELECT request_id, kind, own_number, pattern_id, provider, data_type, purpose, "
            f"operator, terminal, {status_as}, detail, result FROM requests WHERE request_id = ?",
            (request_id,)).fetchone()
        if row is None:
            return None
        (request_id, kind, own_number, pattern_id, provider, data_type, purpose, operator,
         terminal, status, detail, result) = row
        return Request(request_id, kind, own_number, pattern_id, provider, data_type, purpose,
                       operator, terminal, status, detail,
                       None if result is None else dict(json.loads(result)))

    def counts(self, kind: str | None = None) -> dict[str, int]:
        """Requests (of one kind, or all) by status, and answers that arrived for an already
        answered request."""
        where, args = ("WHERE kind = ?", (kind,)) if kind else ("", ())
        counts = dict(self.db.execute(
            f"SELECT status, count(*) FROM requests {where} GROUP BY status", args))
        counts["duplicates dropped"] = self.db.execute(
            f"SELECT coalesce(sum(duplicates), 0) FROM requests {where}", args).fetchone()[0]
        return counts

    def forget_before(self, cutoff: datetime) -> Iterator[Forgotten]:
        """Delete the requests answered (never answered: sent) before `cutoff`, with their
        idempotency keys, the access-log entries made before it and the investigations closed
        before it (an open one stays: staff have yet to act on it), in transactions of up to
        FORGET_AT_ONCE rows a table, oldest first, each yielded once committed, until none is
        left: past the log's retention nothing of them is needed (a copy of an answer, off the
        broker long before, would be dropped as one to an unknown request, not acted on)."""
        told = {"before": _stamp(cutoff),
                "rows": FORGET_AT_ONCE}
        while True:
            with writing(self.db):
                _, *counts = (self.db.execute(forget, told).rowcount for forget in FORGET)
            if not any(counts):
                return
            yield Forgotten(*counts)

    # the holder-side access log (⑦–⑫)
    def log(self, request_id: str, side: str, operator: str, terminal: str, outcome: str, *,
            counterpart: str | None = None, pattern_id: str | None = None,
            data_type: str | None = None, content: str | None = None,
            purpose: str | None = None, deadline: datetime | None = None) -> bool:
        """An entry of the request on this side, once (a requester's at the time it was made); a
        provider's of the query it answers by `deadline`, once a query (_query_digest; one made
        before: _ANSWERED_BEFORE). False if it was made before (this one not made)."""
        if deadline is None:
            digest = b""
        elif self._answered_before(request_id, side, counterpart, pattern_id, data_type,
                                   deadline):
            return False
        else:
            digest = _query_digest(counterpart, pattern_id, data_type, deadline)
        at = _ASKED_AT if side == REQUESTER else "?"
        return self.db.execute(
            f"INSERT OR IGNORE INTO access_log ({_LOGGED}, query_digest) "
            f"VALUES ({at}, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*((request_id,) if side == REQUESTER else ()), _now(), request_id, side, operator,
             terminal, counterpart, pattern_id, data_type, content, purpose, outcome,
             digest)).rowcount == 1

    def provided_before(self, request_id: str, requester: str, pattern_id: str, data_type: str,
                        deadline: datetime) -> Provided | None:
        """This holder's entry as the provider of the query due by `deadline`, if one was made
        (None: none, or one made before queries had digests)."""
        row = self.db.execute(
            "SELECT outcome, content, at FROM access_log WHERE request_id = ? AND side = ? "
            "AND query_digest = ?", (request_id, PROVIDER, _query_digest(
                requester, pattern_id, data_type, deadline))).fetchone()
        return None if row is None else Provided(row[0], row[1], datetime.fromisoformat(row[2]))

    def _answered_before(self, request_id: str, side: str, requester: str | None,
                         pattern_id: str | None, data_type: str | None,
                         deadline: datetime) -> bool:
        """Whether the query due by `deadline` has its entry from before the store told queries
        by their digests (_ANSWERED_BEFORE); not looked up for one due a replay window after
        the latest of those (a few minutes after the upgrade), nor in a store made since."""
        after, before = _answered_around(deadline)
        if self._before_digests is None or after >= self._before_digests:
            return False
        told = (request_id, side, requester, pattern_id, data_type, TIMED_OUT, _stamp(deadline),
                _stamp(after), _stamp(before))
        return self.db.execute(_ANSWERED_BEFORE, told).fetchone() is not None

    def not_provided(self, request_id: str, outcome: str,
                     deadline: datetime | None = None) -> bool:
        """The provider's entry of `request_id` that was answered (not TIMED_OUT) of the query
        due by `deadline` (_of_query; a refusal naming none, of v1: the latest) ends as
        `outcome`, with no content: its answer never reached the requester; ended already, it is
        a copy of the refusal, left as it is. False if this holder made no such entry."""
        rows = self.db.execute(
            "SELECT serial, outcome, at, counterpart, pattern_id, data_type, query_digest "
            "FROM access_log WHERE request_id = ? AND side = ? AND outcome != ? "
            "ORDER BY serial DESC", (request_id, PROVIDER, TIMED_OUT))
        row = next((r for r in rows if deadline is None
                    or _of_query(r[2], r[3], r[4], r[5], r[6], deadline)), None)
        if row is None:
            return False
        if row[1] in ANSWERED:
            self.db.execute("UPDATE access_log SET outcome = ?, content = NULL WHERE serial = ?",
                            (outcome, row[0]))
        return True

    def access_log(self, request_id: str | None = None) -> list[HolderLogEntry]:
        """The entries ⑦/⑧ operator, ⑨/⑩ terminal, ⑪ content, ⑫ purpose, in the order made: of
        `request_id` (of "": none), else all."""
        return [entry for _, entry in self.access_log_page(request_id, 0, -1)]

    def access_log_page(self, request_id: str | None, after: int,
                        most: int) -> list[tuple[int, HolderLogEntry]]:
        """Up to `most` entries (a negative number: all) as access_log gives them, each with its
        serial, of those after the serial `after`: the log a page at a time (a year's is a
        million entries)."""
        where, args = ("AND request_id = ?", (request_id,)) if request_id is not None else (
            "", ())
        return [(row[0], HolderLogEntry(*row[1:])) for row in self.db.execute(
            f"SELECT serial, request_id, at, side, operator, terminal, counterpart, pattern_id, "
            f"data_type, content, purpose, outcome FROM access_log WHERE serial > ? {where} "
            "ORDER BY serial LIMIT ?", (after, *args, most))]

    def exchange_log(self, request_id: str, exchanged_at: datetime | None,
                     side: Side | None = None) -> list[HolderLogEntry]:
        """The entries of one use of `request_id`, the one the access log has at `exchanged_at`
        (None: not told, no provider's): the requester's (an id it drew once: its requests
        table), and the provider's made around it (_exchanged_around), not another use's, whose
        ⑪ is another person's data; a provider's made a while later (TIMED_OUT, read late) is
        left out with them. Told this holder's `side` of that exchange, that side's alone: as
        its requester, not its provider's entries of another's use of the id; as its provider,
        those for that side's requester alone, not its own requests' that used the id again."""
        around = None if exchanged_at is None else _exchanged_around(exchanged_at)
        return [e for e in self.access_log(request_id) if (e.side != PROVIDER or (
            around is not None and around[0] < _utc(e.at) <= around[1])) and (
            side is None or side.holds(e))]
