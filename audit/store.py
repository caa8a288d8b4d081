"""The audit store: the access log as an append-only RFC 9162 Merkle tree, on SQLite or PostgreSQL.

Tables: `entries` (one row per event; serial = leaf index; the canonical bytes and indexed columns),
`nodes` (the hash of every complete subtree, leaves included, keyed by level and index; never
deleted), `heads` (signed tree heads), `purges` (signed records of what retention removed),
`purged_leaves` (the leaf hash of each purged serial, by hash: where a replay finds a topic's first
events in the log; copied from `nodes`), `alerts` (which alerts the live detector raised on which
entries, so a restarted one resumes where it stopped; not part of the tree), `read_ahead` (when the
audit consumer read each entry its detector counted as of that reading, dated too far ahead of it: a
restarted one places it there again; not part of the tree, purged with the entry), `bindings` (which
holder a binding ever gave which person, and when it first did, for the detector; not part of the
tree, never purged: a binding stays made) and `operator_actions` (an operator's changes to the
holder directory, one row per action id, with its bytes as on the audit topic: leaves of the same
tree as the events, serial their leaf index, in the topic's order among them; a row stored before
actions were leaves has no serial, and is not provable). Proofs read O(log n) nodes; a purge deletes
entry rows (and their alerts) and operator actions past the retention, never nodes, heads or
bindings, so proofs for what remains and consistency between heads keep verifying, and a holder
stays bound to the persons it bound more than 7 years ago.
"""

from __future__ import annotations

import bisect
import difflib
import heapq
import itertools
import json
import logging
import operator
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import merkle
from audit.detector import Raised, binding_of
from audit.events import (
    BINDING,
    EPOCH,
    AccessLogEvent,
    Logged,
    OperatorAction,
    decode_event,
    escaped,
    from_millis,
    logged_key,
    millis,
    signed_event,
    signed_record,
)
from audit.heads import (
    SignedHead,
    Signer,
    TreeHead,
    consistent,
    includes,
    verify_head,
    verify_signature,
)
from audit.retention import RETENTION_YEARS, years_before
from audit.sql import Connection, Cursor, Dialect, NoTables, Stoppable, connect
from renkei.shown import short
from renkei.sqlite import INTEGERS
from renkei.state import private_dir
from schemas.codec import CODEC, SchemaError

HEAD_EVERY = 10_000
# a connection's SQLite page cache, at most (it grows as pages are read): the writer's, whose
# index inserts land all over; a reader's, whose check reads the log in order, query a page
WRITER_CACHE_KIB, READER_CACHE_KIB = 64 * 1024, 16 * 1024
MAX_PAGE = 1000
LEVEL_SHIFT = 56
PURGE_CONTEXT = b"renkei audit purge v1\x00"
NOTE_CONTEXT = b"renkei audit commit note v1\x00"
FORGED = "forged"
TRUNCATED = "truncated"
_CHUNK = 900
# heads verify takes at once: their roots recomputed from one batched read of the subtree hashes
# they need, not a read of its own for each head (a round trip each on PostgreSQL, two thirds of
# a head's check: a year's heads, one every 10 s, are 3 million); so many at a time in memory
_HEADS_AT_ONCE = 4096
PURGE_STEP = 20_000  # entries a step of the purge deletes in one transaction (~0.5 s)
_END = INTEGERS.stop
# a text column's value at most: PostgreSQL refuses a NUL in text, and an index row over ~2.7 KB
COLUMN_CHARS = 256

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
V = TypeVar("V")


def default_path(made: bool = True) -> Path:
    """The store in the git-ignored state folder (it names persons: kept private); its folder
    made unless not `made` (private_dir)."""
    return private_dir("audit", made=made) / "audit.db"


def column_text(value: str) -> str:
    """What a text column holds of an event's value (its leaf keeps the exact one): control
    characters and the backslash escaped (events.escaped), cut to COLUMN_CHARS. Stored rows,
    lookups and `verify` all go through it."""
    return escaped(value)[:COLUMN_CHARS]


def _event_ids(request_id: str) -> tuple[str, str]:
    """The range [low, high) of the event_id column that holds each event of the request whose
    request_id column is `request_id`: their ids begin with it and ':' (events.event_id), cut
    to COLUMN_CHARS as it is (one cut before the ':' is the request id's column itself)."""
    return (request_id + ":")[:COLUMN_CHARS], request_id + ";"


def _action_row(serial: int | None, action: OperatorAction, leaf: bytes) -> Row:
    """An operator action's row, in ACTION_COLUMNS order: its serial (None: beside the tree),
    its columns as column_text has them, and its bytes (its leaf)."""
    return (serial, column_text(action.action_id), millis(action.occurred_at),
            column_text(action.operator), column_text(action.action), column_text(action.subject),
            None if action.reason is None else column_text(action.reason), leaf)


def node_key(level: int, index: int) -> int:
    """One integer key per subtree: level in the high bits, index below (level 0 = serial)."""
    return level << LEVEL_SHIFT | index


class MissingNode(LookupError):
    """A subtree hash the tree needs is not in the store."""


class LostEntries(RuntimeError):
    """The store lost entries the audit consumer appended (and committed, or knew): going on
    would append after the gap and hide it from `verify`."""

    def __str__(self) -> str:
        return (f"{self.args[0]}: the audit consumer does not go on over the gap (restore the "
                "store, or see `renkei audit verify` and `renkei audit replay`)")


class ForgedNote(RuntimeError):
    """The audit consumer's last commit carries a note the head key did not sign: started from
    it, the consumer would go on from an offset it did not commit, the store unchecked."""

    def __str__(self) -> str:
        return (f"{self.args[0]}: the audit consumer does not start from it (see whether the "
                "head key in keys/audit was replaced, else who else commits as the audit "
                "principal; `renkei audit replay` compares the store with the topic, and "
                "`renkei audit recommit` commits the offset the store accounts for again)")


EVENT_COLUMNS = tuple(f.name for f in fields(AccessLogEvent))
_EVENT_VALUES = operator.attrgetter(*EVENT_COLUMNS)  # an event's values, in EVENT_COLUMNS order
ENTRY_COLUMNS = ("serial", *EVENT_COLUMNS, "leaf")


def _reading(table: str, columns: Sequence[str], signed: str) -> str:
    """The SELECT of `columns` from `table`, the `signed` bytes read as bytes whatever type a
    hand edit gave their column (SQLite lets it; verify says it did): no UTF-8 to decode."""
    return "SELECT " + ", ".join(
        f"CAST({c} AS BLOB)" if c == signed else c for c in columns) + f" FROM {table}"


_SELECT = _reading("entries", ENTRY_COLUMNS, "leaf")
# verify reads whatever an intruder left: text and blobs as bytes, so nothing fails to decode
_RAW_SELECT = "SELECT " + ", ".join(
    c if c in ("serial", "occurred_at") else f"CAST({c} AS BLOB)" for c in ENTRY_COLUMNS
) + " FROM entries"
_INSERT = (f"INSERT INTO entries ({', '.join(ENTRY_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})")
_TIME, _LEAF = ENTRY_COLUMNS.index("occurred_at"), ENTRY_COLUMNS.index("leaf")
ACTION_COLUMNS = ("serial", "action_id", "occurred_at", "operator", "action", "subject", "reason",
                  "record")
_ACT = (f"INSERT INTO operator_actions ({', '.join(ACTION_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(ACTION_COLUMNS))})")
# verify's read of the actions in the tree, as _RAW_SELECT's of the entries
_RAW_ACTIONS = "SELECT " + ", ".join(
    c if c in ("serial", "occurred_at") else f"CAST({c} AS BLOB)" for c in ACTION_COLUMNS
) + " FROM operator_actions WHERE serial IS NOT NULL ORDER BY serial"
_ACTION_TIME, _RECORD = ACTION_COLUMNS.index("occurred_at"), ACTION_COLUMNS.index("record")
_ACTIONS = _reading("operator_actions", ACTION_COLUMNS, "record")
# the types the store writes each column of an entry or operator action in, as SQLite names them
# (the others are text; any may be null where its table allows)
_WRITTEN = {"serial": "integer", "occurred_at": "integer", "leaf": "blob", "record": "blob"}
# the last offset the audit consumer committed (or is about to) on the audit topic
_NOTED = ("INSERT INTO noted (one, committed_offset) VALUES (1, ?) "
          "ON CONFLICT (one) DO UPDATE SET committed_offset = excluded.committed_offset")
# what the live detector was not told yet, appended while it resumed (Unjudged): a batch read
# at `read_at`, its entries from serial `since` up to `until`; or (`until` = `since`) the
# consumer caught up as of `read_at`, those entries appended: the latest such time kept
_UNJUDGED = "INSERT INTO unjudged (since, until, read_at) VALUES (?, ?, ?)"
_UNJUDGED_CAUGHT_UP = (f"{_UNJUDGED} ON CONFLICT (since, until) DO UPDATE SET "
                       "read_at = excluded.read_at WHERE excluded.read_at > unjudged.read_at")
LAST_SERIAL = 2**63 - 1  # past every serial (BIGINT's largest)
_RAISED = ("INSERT INTO alerts (rule, event_id, requester, occurred_at) VALUES (?, ?, ?, ?) "
           "ON CONFLICT DO NOTHING")
# a (holder, person) pair's row keeps its earliest binding's time, whichever came first
_BIND = ("INSERT INTO bindings (holder, person, occurred_at) VALUES (?, ?, ?) "
         "ON CONFLICT (holder, person) DO UPDATE SET occurred_at = excluded.occurred_at "
         "WHERE excluded.occurred_at < bindings.occurred_at")
# a pair's earliest binding time (`bindings`), that of its earliest BINDING entry kept, and of its
# earliest one before a serial
_BINDING_KEPT = (f"SELECT min(occurred_at) FROM entries WHERE person = ? AND requester = ? "
                 f"AND kind = '{BINDING}'")
_BOUND_BEFORE = (f"SELECT occurred_at, ({_BINDING_KEPT}), ({_BINDING_KEPT} AND serial < ?) "
                 "FROM bindings WHERE holder = ? AND person = ?")
# a store made before `bindings`, or before its time, takes each pair's earliest from its
# entries; a pair whose every binding entry was purged keeps its row, made before the cutoff
_BINDINGS_FROM_ENTRIES = (
    "INSERT INTO bindings (holder, person, occurred_at) "
    "SELECT requester, person, min(occurred_at) FROM entries "
    f"WHERE kind = '{BINDING}' AND person IS NOT NULL GROUP BY requester, person "
    "ON CONFLICT (holder, person) DO UPDATE SET occurred_at = excluded.occurred_at")
# where the detector's times of the entries are, by table and column: their own, and the time
# of reading of those counted as of it (read_ahead)
_TIMES = (("entries", "occurred_at"), ("read_ahead", "read_at"))
# a purged range's leaf hashes, kept by hash: purged_serial reads one key, not every purged leaf
_PURGED_LEAVES = ("INSERT INTO purged_leaves (hash, serial) "
                  "SELECT hash, id FROM nodes WHERE id >= ? AND id < ?")
PURGED_SERIAL = "SELECT max(serial) FROM purged_leaves WHERE hash = ?"
# the serials purged_leaves has rows of, in order, each with whether they are one, its leaf's
_KEPT_LEAVES = ("SELECT p.serial, count(*) = count(n.id) FROM purged_leaves AS p "
                "LEFT JOIN nodes AS n ON n.id = p.serial AND n.hash = p.hash "
                "GROUP BY p.serial ORDER BY p.serial")
# what verify finds of them, each of a run of serials
_NO_ROW = "purged, but purged_leaves keeps no row of its leaf hash"
_OTHER_HASH = "purged_leaves keeps a row of another hash than its leaf's"
_NOT_PURGED = "purged_leaves keeps a row of it, but no signed purge removed it"
# what verify finds of a leaf whose row is gone, but not purged: nothing tells which it was, but
# an operator action stored without its serial, as one from before actions were leaves
_GONE = "its entry or operator action is gone (not purged)"
_UNSERIALED = ("its operator action is stored without its serial, as one from before actions "
               "were leaves")
# indexed for the queries; each ends in occurred_at so pages come in time order
_INDEXED = {"person": True, "requester": False, "provider": True, "pattern_id": True,
            "outcome": False}
# the holders of the requests asked (VALUES of each id and the range of its events' ids,
# _event_ids): the UNIQUE index on event_id serves the ranges where they are taken bytewise
# (SQLite); PostgreSQL scans (its column's collation may order ';' before ':'). The request id
# through CAST, which SQLite indexes not: else it makes an index of it for the statement (1M
# entries: ~20 s)
_PARTIES = ("WITH asked (id, low, high) AS (VALUES {rows}) "
            "SELECT asked.id, requester, provider FROM asked JOIN entries "
            "ON entries.event_id COLLATE BINARY >= asked.low "
            "AND entries.event_id COLLATE BINARY < asked.high "
            "AND CAST(request_id AS TEXT) = asked.id")


# whether an entry names a holder: one look into each side's index
_NAMES_HOLDER = ("SELECT EXISTS (SELECT 1 FROM entries WHERE requester = ?) "
                 "OR EXISTS (SELECT 1 FROM entries WHERE provider = ?)")
# the holders entries name on one side, each once: a look into its index for each (the next
# name after the one before), not a read of every entry
_NAMED_ON = ("WITH RECURSIVE named (holder) AS ("
             "SELECT min({side}) FROM entries WHERE {side} IS NOT NULL UNION ALL "
             "SELECT (SELECT min({side}) FROM entries WHERE {side} > named.holder) FROM named "
             "WHERE named.holder IS NOT NULL) SELECT holder FROM named WHERE holder IS NOT NULL")
NEAREST_HOLDERS = 3  # the names said beside a holder no entry names, at most
# whether an operator action is on a subject (a holder, or a link-code unit re-keyed), and the
# subjects actions are on: from operator_actions_subject, which a store from before it is given
# at its writer's next start (the audit consumer's: _create); read without it, a scan (100k
# actions, SQLite: ~30 ms and ~60 ms; with it ~0.01 ms and ~4 ms), never a look into the index
# for each name (_NAMED_ON: without the index a scan for each, 47 s)
_ACTS_ON = "SELECT EXISTS (SELECT 1 FROM operator_actions WHERE subject = ?)"
_SUBJECTS = "SELECT DISTINCT subject FROM operator_actions"


def _schema(d: Dialect) -> list[str]:
    nullable = {"reason", "pattern_id", "legal_basis", "provider", "data_type", "person"}
    columns = ",\n  ".join(
        ["serial " + d.key]
        + [f"{c} {'BIGINT' if c == 'occurred_at' else 'TEXT'}"
           f"{'' if c in nullable else ' NOT NULL'}{' UNIQUE' if c == 'event_id' else ''}"
           for c in EVENT_COLUMNS]
        + [f"leaf {d.blob} NOT NULL"])
    indexes = [
        f"CREATE INDEX IF NOT EXISTS entries_{c} ON entries ({c}, occurred_at)"
        + (f" WHERE {c} IS NOT NULL" if partial else "")
        for c, partial in _INDEXED.items()]
    return [
        f"CREATE TABLE IF NOT EXISTS entries (\n  {columns})",
        *indexes,
        "CREATE INDEX IF NOT EXISTS entries_occurred_at ON entries (occurred_at)",
        f"CREATE TABLE IF NOT EXISTS nodes (id {d.key}, hash {d.blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS heads (seq {d.auto_key}, tree_size BIGINT NOT NULL, "
        f"root {d.blob} NOT NULL, signed_at BIGINT NOT NULL, key_id {d.blob} NOT NULL, "
        f"signature {d.blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS purges (seq {d.auto_key}, purged_at BIGINT NOT NULL, "
        f"cutoff BIGINT NOT NULL, ranges TEXT NOT NULL, key_id {d.blob} NOT NULL, "
        f"signature {d.blob} NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS purged_leaves (hash {d.blob} NOT NULL, "
        "serial BIGINT NOT NULL, PRIMARY KEY (hash, serial))",
        "CREATE TABLE IF NOT EXISTS alerts (rule TEXT NOT NULL, event_id TEXT NOT NULL, "
        "requester TEXT NOT NULL, occurred_at BIGINT NOT NULL, PRIMARY KEY (rule, event_id))",
        "CREATE INDEX IF NOT EXISTS alerts_occurred_at ON alerts (occurred_at)",
        "CREATE TABLE IF NOT EXISTS read_ahead (serial BIGINT PRIMARY KEY, "
        "read_at BIGINT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS read_ahead_read_at ON read_ahead (read_at)",
        "CREATE TABLE IF NOT EXISTS bindings (holder TEXT NOT NULL, person TEXT NOT NULL, "
        "occurred_at BIGINT NOT NULL, PRIMARY KEY (holder, person))",
        "CREATE TABLE IF NOT EXISTS operator_actions (action_id TEXT PRIMARY KEY, "
        "occurred_at BIGINT NOT NULL, operator TEXT NOT NULL, action TEXT NOT NULL, "
        f"subject TEXT NOT NULL, reason TEXT, record {d.blob} NOT NULL, serial BIGINT)",
        "CREATE UNIQUE INDEX IF NOT EXISTS operator_actions_serial ON operator_actions (serial)",
        "CREATE INDEX IF NOT EXISTS operator_actions_subject ON operator_actions "
        "(subject, occurred_at)",
        "CREATE TABLE IF NOT EXISTS noted (one INTEGER PRIMARY KEY CHECK (one = 1), "
        "committed_offset BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS unjudged (since BIGINT NOT NULL, until BIGINT NOT NULL, "
        "read_at BIGINT NOT NULL, PRIMARY KEY (since, until))",
    ]


@dataclass(frozen=True)
class Query:
    """Filters; all given ones must hold. `holder` matches requester or provider."""

    person: str | None = None
    holder: str | None = None
    pattern: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Unnamed:
    """A holder asked for that no entry of the store names (as requester or provider), or no
    operator action is on (a holder or a link-code unit): an empty page of it is no answer about
    it; with the names entries (or actions) do give nearest it."""

    holder: str
    nearest: tuple[str, ...]


class NoTime(ValueError):
    """A range of time [since, until) asked of the log that holds none (until not after since):
    its empty page would read as nothing having happened, though nothing was asked."""

    def __init__(self, since: datetime, until: datetime) -> None:
        super().__init__(f"{until.isoformat()} is not after {since.isoformat()}")
        self.since, self.until = since, until


def time_range(since: datetime | None, until: datetime | None
               ) -> tuple[datetime | None, datetime | None]:
    """[since, until), either end open; NoTime if it holds no time."""
    if since is not None and until is not None and until <= since:
        raise NoTime(since, until)
    return since, until


@dataclass(frozen=True)
class Entry:
    serial: int
    event: AccessLogEvent
    leaf: bytes
    proof: tuple[bytes, ...] | None = None
    edited: bool = False  # its columns made no event, and are not its bytes' (_entry)
    # its bytes are not the leaf the signed head holds at its serial: its proof does not hold
    # (the row's bytes, or the tree's hashes, changed); after the head, not the leaf the tree
    # holds there (its serial moved: past the tree's end, none); no proof, nor pending (_proved)
    unproved: bool = False


class DamagedEntry(RuntimeError):
    """An entry whose columns and bytes both make no event: a store's row edited."""


def as_signed(entry: Entry) -> tuple[Entry, bool]:
    """The entry as its signed bytes tell it (as stored if they decode to no event), and
    whether the store's columns say what those bytes say."""
    signed = signed_event(entry.leaf)
    if signed is None:
        return entry, False
    return replace(entry, event=signed), signed == entry.event and not entry.edited


@dataclass(frozen=True)
class Page:
    """Entries in (occurred_at, serial) order; `head` is what the proofs are against, `trusted`
    if the log's key signed it (if not, none is proved)."""

    entries: tuple[Entry, ...]
    next_cursor: str | None
    head: SignedHead | None = None
    trusted: bool = True


@dataclass(frozen=True)
class Unjudged:
    """What the live detector was not told yet, kept as the consumer would have told it while
    it resumed: a batch read at `read_at`, its events those appended from serial `since` up to
    `until`; or, none (`until` = `since`), that the consumer caught up as of `read_at`."""

    since: int
    until: int
    read_at: datetime

    @property
    def caught_up(self) -> bool:
        return self.until == self.since


@dataclass(frozen=True)
class Proved:
    """Entries with inclusion proofs against `head`, the latest signed (None if none is), those
    it holds; `trusted` if the log's key signed it (if not, none is proved)."""

    entries: tuple[Entry, ...]
    head: SignedHead | None
    trusted: bool


@dataclass(frozen=True)
class ActionQuery:
    """Filters of operator actions; all given ones must hold. `subject` is the holder acted on,
    or the link-code unit re-keyed."""

    subject: str | None = None
    action: str | None = None
    operator: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Acted:
    """An operator action as its stored bytes (its leaf) tell it: its serial (None: stored
    beside the tree, before actions were leaves, and not provable), its inclusion proof against
    the page's head (None: not proved), and whether the store's columns say what its bytes say
    (if not, nothing is proved); `unproved` as an Entry is."""

    serial: int | None
    action: OperatorAction
    record: bytes
    faithful: bool = True
    proof: tuple[bytes, ...] | None = None
    unproved: bool = False


@dataclass(frozen=True)
class ActionPage:
    """Operator actions newest first; `head` is what the proofs are against (the latest signed),
    `trusted` if the log's key signed it (if not, none is proved)."""

    actions: tuple[Acted, ...]
    next_cursor: str | None
    head: SignedHead | None = None
    trusted: bool = True


@dataclass(frozen=True)
class Purge:
    """A signed record of a retention purge: which serials lost their entries, and why."""

    purged_at: datetime
    cutoff: datetime
    ranges: tuple[tuple[int, int], ...]
    key_id: bytes
    signature: bytes

    @property
    def count(self) -> int:
        return sum(end - start for start, end in self.ranges)

    def message(self) -> bytes:
        return (PURGE_CONTEXT + millis(self.purged_at).to_bytes(8, "big")
                + millis(self.cutoff).to_bytes(8, "big") + _ranges_text(self.ranges).encode())


def _runs(serials: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending serials as ranges [start, end) of consecutive ones."""
    ranges: list[tuple[int, int]] = []
    for serial in serials:
        if ranges and ranges[-1][1] == serial:
            ranges[-1] = (ranges[-1][0], serial + 1)
        else:
            ranges.append((serial, serial + 1))
    return ranges


def _ranges_text(ranges: Sequence[tuple[int, int]]) -> str:
    return json.dumps([list(r) for r in ranges], separators=(",", ":"))


def beyond_retention(event: AccessLogEvent | OperatorAction, cutoff: datetime | None) -> bool:
    """Is the event (or operator action) older than the last purge's `cutoff` (None: no purge
    yet)? The store logs no such one (append_many), and lacks none (audit recommit)."""
    return cutoff is not None and event.occurred_at < cutoff


@dataclass(frozen=True)
class Finding:
    kind: str
    where: str
    detail: str


@dataclass(frozen=True)
class Committed:
    """The audit consumer's last commit on the audit topic, kept by the broker out of the
    store's reach: its offset, and the tree's size and root once the events before it were in
    the store, when it noted them and its signature of them by the head key (the note it
    committed with it, `AuditStore.commit_note`). A note from before the notes were signed has
    neither time nor signature."""

    offset: int
    size: int
    root: bytes
    at: datetime | None = None
    signature: bytes | None = None

    @classmethod
    def of(cls, offset: int, note: str | None) -> Committed | None:
        """The commit at `offset` with its note; None if it has none (a commit of a consumer
        from before the notes). A note that cannot be read is one the head key did not sign."""
        if not note:
            return None
        try:
            size, root, *signed = note.split(" ")
            tree = cls(offset, int(size), bytes.fromhex(root))
            if tree.size < 0 or (signed and int(signed[0]) < 0):  # no signed note's 8 bytes
                return cls._unreadable(offset)
            if not signed:  # a note from before the notes were signed
                return tree
            at, signature = signed
            return replace(tree, at=from_millis(int(at)), signature=bytes.fromhex(signature))
        except (ValueError, OverflowError):
            return cls._unreadable(offset)

    @classmethod
    def _unreadable(cls, offset: int) -> Committed:
        return cls(offset, 0, b"", EPOCH, b"")  # no signature of the head key's

    def signed_by(self, public_key: Ed25519PublicKey) -> bool | None:
        """Whether the head key signed the note; None for a note from before they were signed."""
        if self.at is None or self.signature is None:
            return None
        return verify_signature(public_key, TreeHead(self.size, self.root, self.at).message(
            NOTE_CONTEXT), self.signature)


@dataclass
class VerifyReport:
    """What `verify` checked and found; `ok` when nothing was found."""

    tree_size: int = 0
    entries: int = 0
    actions: int = 0  # operator actions checked as leaves
    unproved: int = 0  # operator actions stored before they were leaves: no serial, not proved
    purged: int = 0
    heads: int = 0
    unsigned: int = 0
    anchored: int = 0
    anchor: TreeHead | None = None
    held: TreeHead | None = None  # the largest anchored head the tree holds, signed by the key
    unheld: list[SignedHead] = field(default_factory=list)  # those anchored it does not hold
    committed: Committed | None = None
    commit_signed: bool | None = None  # the commit's note signed by the head key; None: unsigned
    findings: list[Finding] = field(default_factory=list)
    omitted: int = 0
    max_findings: int = 1000

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def verdict(self) -> str:
        """A report with findings in one line: TRUNCATED and why, when the store is smaller
        than a head anchored outside it, else TAMPERED and the first finding."""
        cut = [f for f in self.findings if f.kind == TRUNCATED]
        first = (cut or self.findings)[0]
        return (f"{'TRUNCATED' if cut else 'TAMPERED'}: {first.where}: {first.detail} "
                f"({len(self.findings) + self.omitted} finding(s))")

    def add(self, kind: str, where: str, detail: str) -> None:
        if len(self.findings) < self.max_findings:
            self.findings.append(Finding(kind, where, detail))
        else:
            self.omitted += 1


def _now() -> datetime:
    return datetime.now(UTC)


def _came_again(named: str, logged_id: str, first: Logged, again: Logged) -> None:
    """An event or operator action come again with other bytes, the first one staying: only its
    time other (a decision made again after a crash), an INFO line; anything else (a second
    decision that contradicts the first: its outcome, reason, person…) an ERROR naming the
    fields, not their values."""
    other = [f.name for f in fields(again) if getattr(first, f.name) != getattr(again, f.name)]
    level = logging.INFO if other == ["occurred_at"] else logging.ERROR
    log.log(level, "%s %r came again with other %s; the first one stays", named,
            short(logged_id), ", ".join(other) or "bytes")


class AuditStore:
    """The tamper-evident audit log. One writer process at a time appends; readers any time.
    Opened with the head key's public half alone (My Portal, `audit query`, `audit verify`),
    which signs no head, it is read-only: the connection itself refuses writes, and a store
    whose tables are not made yet is NoTables. Its page cache is `cache_kib` at most, else its
    role's (WRITER_CACHE_KIB, READER_CACHE_KIB)."""

    def __init__(self, url: str | Path, signer: Signer, *, head_every: int = HEAD_EVERY,
                 clock: Callable[[], datetime] = _now, cache_kib: int | None = None) -> None:
        self.signer, self.head_every, self.clock = signer, head_every, clock
        self.url = url
        if cache_kib is None:
            cache_kib = WRITER_CACHE_KIB if signer.signs else READER_CACHE_KIB
        db, self._dialect = connect(url, read_only=not signer.signs)
        # a reader's statements checked each against its read's stop; the writer's not
        self._reads = None if signer.signs else Stoppable(db)
        self._db: Connection = self._reads or db
        for statement in self._dialect.session:
            self._db.execute(statement)
        if self._dialect.cache_size is not None:
            self._db.execute(self._dialect.cache_size.format(kib=cache_kib))
        if signer.signs:
            for statement in self._dialect.writer_session:
                self._db.execute(statement)
            with self._write() as cur:
                self._create(cur)
        elif self._db.execute(self._dialect.has_table, ("entries",)).fetchone() is None:
            self._db.close()  # its file made, its tables not yet (made in one transaction)
            raise NoTables("the audit store has no tables yet: the audit consumer makes them at "
                          "its first start")
        self._frontier = merkle.Frontier()
        self._cutoffs: tuple[int | None, tuple[tuple[int, datetime], ...]] = (None, ())
        self._open = True

    def _create(self, cur: Cursor) -> None:
        """Create the missing tables; a store made before `bindings` fills it from its entries,
        one made before `purged_leaves` from its purges' ranges; one made before the bindings'
        time gives `bindings` its column, filled from the entries too (the epoch for a pair
        whose binding entries were all purged: bound before the cutoff, as ever before); one made
        before operator actions were leaves gives `operator_actions` its serial column, none in
        its rows."""
        without_bindings, without_purged, without_actions = (
            self._without_table(cur, table)
            for table in ("bindings", "purged_leaves", "operator_actions"))
        untimed = not without_bindings and self._without_column(cur, "bindings", "occurred_at")
        if untimed:
            cur.execute("ALTER TABLE bindings ADD COLUMN occurred_at BIGINT NOT NULL DEFAULT 0")
        if not without_actions and self._without_column(cur, "operator_actions", "serial"):
            cur.execute("ALTER TABLE operator_actions ADD COLUMN serial BIGINT")
        for statement in _schema(self._dialect):
            cur.execute(statement)
        if without_bindings or untimed:
            cur.execute(_BINDINGS_FROM_ENTRIES)
        if without_purged:
            cur.executemany(_PURGED_LEAVES, [r for purge in self.purges() for r in purge.ranges])

    def _without_table(self, cur: Cursor, table: str) -> bool:
        return cur.execute(self._dialect.has_table, (table,)).fetchone() is None

    def _without_column(self, cur: Cursor, table: str, column: str) -> bool:
        """Whether the table lacks the column (a table that is not there lacks them all)."""
        return cur.execute(self._dialect.has_column, (table, column)).fetchone() is None

    def close(self) -> None:
        """Close the connection (again is fine), the writer refreshing the query planner's
        statistics."""
        if self._open:
            self._open = False
            for statement in self._dialect.closing if self.signer.signs else ():
                try:
                    self._db.execute(statement)
                except self._dialect.busy as exc:  # no wait helps: a writer got in first
                    log.info("%s skipped (%s): next time", statement, exc)
            self._db.close()

    def interrupt(self) -> None:
        """Stop the statement running on the connection now (called from any thread, not the
        event loop's: a reader's is sent again until that statement's execute has returned,
        audit.sql.Stoppable): it raises its engine's error; with none running, nothing happens."""
        self._db.interrupt()

    def stopped_by(self, stop: threading.Event) -> None:
        """A reader's statements from now on (its next read's) each refused (Stopped) once
        `stop` is set, from any thread, but one ending a transaction; the one running then goes
        on until `interrupt` (audit.sql.Stoppable), on SQLite only until it next looks at `stop`.
        The writer's are not checked (the audit consumer's appends): its reads go on."""
        if self._reads is not None:
            self._reads.stop = stop

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        cur = self._db.cursor()
        for statement in self._dialect.begin_write:
            cur.execute(statement)
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        """One snapshot for several statements."""
        cur = self._db.cursor()
        cur.execute(self._dialect.begin_read)
        try:
            yield cur
        finally:
            cur.execute("COMMIT")

    # ---- the tree ----

    def size(self) -> int:
        """The number of leaves ever appended, entries and operator actions (purged ones
        included)."""
        found = self._db.execute(
            "SELECT max(id) FROM nodes WHERE id < ?", (node_key(1, 0),)).fetchone()[0]
        return 0 if found is None else int(found) + 1

    def node_hashes(self, nodes: Sequence[merkle.Node]) -> list[bytes]:
        keys = [node_key(*n) for n in nodes]
        found = self._stored_hashes(keys)
        missing = [n for n, k in zip(nodes, keys, strict=True) if k not in found]
        if missing:
            raise MissingNode(f"subtree hashes missing from the store: {missing[:5]}")
        return [found[k] for k in keys]

    def _stored_hashes(self, keys: Sequence[int]) -> dict[int, bytes]:
        """The stored subtree hashes under these keys (missing ones left out)."""
        found: dict[int, bytes] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            found.update(self._db.execute(
                f"SELECT id, CAST(hash AS BLOB) FROM nodes "
                f"WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk).fetchall())
        return found

    def root(self, size: int) -> bytes:
        self._check_size(size)
        return merkle.tree_root(self, size)

    def inclusion_proof(self, serial: int, size: int) -> list[bytes]:
        self._check_size(size)
        return merkle.inclusion_proof(self, serial, size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        self._check_size(new)
        return merkle.consistency_proof(self, old, new)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size():
            raise ValueError(f"no tree of size {size}: the log has {self.size()} entries")

    def _tree(self) -> merkle.Frontier:
        """A copy of the right edge of the tree, re-read if another writer appended; LostEntries
        if it is smaller than this process knew it (entries deleted behind its back: appended
        after the gap, or signed, new ones would hide it)."""
        size = self.size()
        if size < self._frontier.size:
            known = self._frontier.size
            raise LostEntries(f"the store has {size} entries, this process knew {known}: "
                              f"{_serials(size, known)} were deleted")
        if self._frontier.size != size:
            nodes = merkle.covering_nodes(0, size)
            self._frontier = merkle.Frontier(size, self.node_hashes(nodes))
        return self._frontier.copy()

    # ---- appending ----

    def append(self, event: AccessLogEvent, leaf: bytes) -> int | None:
        """The entry's serial, or None when the event is already there (or purged)."""
        return self.append_many([(event, leaf)])[0]

    def append_many(self, items: Iterable[tuple[Logged, bytes]],
                    raised: Sequence[Raised] = (),
                    read_ahead: Mapping[str, datetime] | None = None,
                    unjudged: datetime | None = None) -> list[int | None]:
        """Append a batch of events and operator actions, each with its bytes as on the audit
        topic, in its order, each a leaf of the tree, the alerts the detector raised on it, and
        when it read those of its events it counted as of their reading (`read_ahead`, by event
        id: Rules.read_ahead), in one transaction: per item its serial, or None for a replay.
        Appended while the live detector resumes, the batch read at `unjudged` (if given): its
        events are kept unjudged with that time (`first_unjudged`), in the same transaction,
        until the detector is told them as a batch (`judged`).

        An event id already stored is skipped: exactly one entry per event id, the first; an
        operator action id already stored (a row from before actions were leaves too), or an
        alert, likewise. Other bytes under a stored id (a step re-run with a new time?) are
        logged as a warning. Events and operator actions older than the last purge's cutoff are
        skipped too.
        The batch is first written as all new; only if an event id clashes (a replay after
        a crash) is it redone, looking up which events are stored.
        """
        batch, read = list(items), read_ahead or {}
        try:
            return self._append(batch, raised, read, unjudged, replay=False)
        except self._dialect.duplicate:
            return self._append(batch, raised, read, unjudged, replay=True)

    def _append(self, batch: list[tuple[Logged, bytes]], raised: Sequence[Raised],
                read_ahead: Mapping[str, datetime], unjudged: datetime | None, replay: bool
                ) -> list[int | None]:
        serials: list[int | None] = []
        with self._write() as cur:
            tree = self._tree()
            since = tree.size
            known = {key: bytes(v) for key, v in self._by_logged(
                cur, [r for r, _ in batch if replay or isinstance(r, OperatorAction)],
                "leaf", "record").items()}
            horizon = self._last_cutoff(cur)
            rows: list[Row] = []
            acted: list[Row] = []
            nodes: list[tuple[int, bytes]] = []
            bindings: list[tuple[str, str, int]] = []
            read: list[tuple[int, int]] = []
            for record, leaf in batch:
                kind, logged_id = logged_key(record)
                named = "operator action" if kind == "action" else kind
                key = (kind, column_text(logged_id))
                seen = known.get(key)
                if seen is not None and seen != leaf:
                    _came_again(named, logged_id, CODEC.decode(seen, type(record)), record)
                expired = beyond_retention(record, horizon)
                if seen is None and expired:
                    log.error("%s %r of %s is not logged: it is older than the last purge's "
                              "cutoff %s", named, short(key[1]), record.occurred_at.isoformat(),
                              horizon)
                if seen is not None or expired:
                    serials.append(None)
                    continue
                known[key] = leaf
                serials.append(tree.size)
                if isinstance(record, OperatorAction):
                    acted.append(_action_row(tree.size, record, leaf))
                else:
                    rows.append(_row(tree.size, record, leaf))
                    if (binding := binding_of(record)) is not None:
                        bindings.append((*binding, millis(record.occurred_at)))
                    if (at := read_ahead.get(record.event_id)) is not None:
                        read.append((tree.size, millis(at)))
                nodes.extend((node_key(*n), h) for n, h in tree.append(merkle.leaf_hash(leaf)))
            cur.executemany(_INSERT, rows)
            cur.executemany(_ACT, acted)
            cur.executemany("INSERT INTO nodes (id, hash) VALUES (?, ?)", nodes)
            cur.executemany(_BIND, bindings)
            cur.executemany("INSERT INTO read_ahead (serial, read_at) VALUES (?, ?)", read)
            cur.executemany(_RAISED, _raised_rows(raised))
            if unjudged is not None and rows:
                cur.execute(_UNJUDGED, (since, tree.size, millis(unjudged)))
            latest = self._latest_head(cur)
            if tree.size - (latest.head.size if latest else 0) >= self.head_every:
                self._sign(cur, tree)
        self._frontier = tree
        return serials

    def keep_beside(self, actions: Iterable[tuple[OperatorAction, bytes]]) -> None:
        """Store operator actions, each with its bytes, beside the tree, without a serial, as
        a store made before actions were leaves kept them (not provable): the replay of one's
        topic keeps them so. An action id already stored is skipped."""
        with self._write() as cur:
            cur.executemany(f"{_ACT} ON CONFLICT DO NOTHING",
                            [_action_row(None, action, leaf) for action, leaf in actions])

    @staticmethod
    def _last_cutoff(cur: Cursor) -> datetime | None:
        """The last purge's cutoff: an event older than it is not logged; None if none."""
        cutoff = cur.execute("SELECT max(cutoff) FROM purges").fetchone()[0]
        return None if cutoff is None else from_millis(int(cutoff))

    def last_cutoff(self) -> datetime | None:
        """The last purge's cutoff: append_many logs no event older than it; None if none."""
        return self._last_cutoff(self._db.cursor())

    def cutoffs(self) -> tuple[tuple[int, datetime], ...]:
        """Each purge's cutoff, and the size of the log past every serial it or a purge before it
        purged: an event older than the cutoff, read at that size or later, came after the purge
        (which would have purged it, had it been logged before): append_many left it out. Read
        from the purges again only after one more (the replay asks each batch)."""
        last = self._db.execute("SELECT max(seq) FROM purges").fetchone()[0]
        if last != self._cutoffs[0]:
            self._cutoffs = (last, tuple(self._held_cutoffs()))
        return self._cutoffs[1]

    def _held_cutoffs(self) -> Iterator[tuple[int, datetime]]:
        past = 0
        for purge in self.purges():
            past = max([past, *(end for _, end in purge.ranges)])
            yield past, purge.cutoff

    @staticmethod
    def _by_id(cur: Cursor, ids: list[str], column: str, table: str = "entries",
               key: str = "event_id") -> dict[str, Any]:
        """The stored `column` (leaf or serial) of these event ids (or the ids in another
        table's `key` column), by their column_text."""
        keys = sorted({column_text(i) for i in ids})
        found: dict[str, Any] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            found.update(cur.execute(
                f"SELECT {key}, {column} FROM {table} "
                f"WHERE {key} IN ({', '.join('?' * len(chunk))})", chunk).fetchall())
        return found

    @classmethod
    def _by_logged(cls, cur: Cursor, records: Sequence[Logged], event_column: str,
                   action_column: str) -> dict[tuple[str, str], Any]:
        """The stored `event_column` of these events and `action_column` of these operator
        actions (_by_id), by their logged_key's kind and its id's column_text."""
        found = {("event", k): v for k, v in cls._by_id(cur, [
            r.event_id for r in records if isinstance(r, AccessLogEvent)], event_column).items()}
        found.update((("action", k), v) for k, v in cls._by_id(cur, [
            r.action_id for r in records if isinstance(r, OperatorAction)], action_column,
            "operator_actions", "action_id").items())
        return found

    # ---- heads ----

    def _sign(self, cur: Cursor, tree: merkle.Frontier) -> SignedHead:
        signed = self.signer.sign_head(TreeHead(tree.size, tree.root(), self.clock()))
        cur.execute(
            "INSERT INTO heads (tree_size, root, signed_at, key_id, signature) "
            "VALUES (?, ?, ?, ?, ?)",
            (signed.head.size, signed.head.root, millis(signed.head.timestamp),
             signed.key_id, signed.signature))
        return signed

    def _latest_head(self, cur: Cursor) -> SignedHead | None:
        heads = self._heads(cur, "ORDER BY seq DESC LIMIT 1")
        return heads[0][1] if heads else None

    @staticmethod
    def _heads(cur: Cursor, tail: str = "ORDER BY seq") -> list[tuple[int, SignedHead]]:
        rows = cur.execute(
            "SELECT seq, CAST(tree_size AS INTEGER), CAST(root AS BLOB), "
            "CAST(signed_at AS INTEGER), CAST(key_id AS BLOB), CAST(signature AS BLOB) "
            f"FROM heads {tail}")
        return [(seq, _head(size, root, at, key, sig)) for seq, size, root, at, key, sig in rows]

    def commit_note(self, offset: int) -> str:
        """The tree's size and root now, the time, and the head key's signature of them, as the
        audit consumer commits them with `offset` (Committed.of reads them); the store keeps
        the offset first, the last it may start from (check_commit)."""
        tree = self._tree()
        with self._write() as cur:
            cur.execute(_NOTED, (offset,))
        head = TreeHead(tree.size, tree.root(), self.clock())
        signature = self.signer.sign(head.message(NOTE_CONTEXT))
        return f"{head.size} {head.root.hex()} {millis(head.timestamp)} {signature.hex()}"

    def sign_head(self) -> SignedHead:
        """Sign and keep a head of the tree as it is now."""
        with self._write() as cur:
            signed = self._sign(cur, self._tree())
        return signed

    def head(self) -> SignedHead:
        """The current signed head: the latest one, or a new one if entries came after it."""
        with self._write() as cur:
            return self._current_head(cur)

    def _current_head(self, cur: Cursor) -> SignedHead:
        latest, tree = self._latest_head(cur), self._tree()
        if latest is None or latest.head.size != tree.size:
            return self._sign(cur, tree)
        return latest

    def heads(self, latest: int | None = None) -> list[SignedHead]:
        """Every head signed so far, or the `latest` ones alone; oldest first."""
        tail = "ORDER BY seq" if latest is None else f"ORDER BY seq DESC LIMIT {int(latest)}"
        heads = [signed for _, signed in self._heads(self._db.cursor(), tail)]
        return heads if latest is None else heads[::-1]

    # ---- queries ----

    def operator_actions(self) -> list[OperatorAction]:
        """Every operator action stored, in time order."""
        rows = self._db.execute("SELECT CAST(record AS BLOB) FROM operator_actions "
                                "ORDER BY occurred_at, action_id").fetchall()
        return [CODEC.decode(bytes(record), OperatorAction) for record, in rows]

    def actions(self, where: ActionQuery, *, limit: int = 100, after: str | None = None
                ) -> ActionPage:
        """One page of the operator actions matching `where`, newest first (by time, then action
        id), each as its bytes tell it, with its inclusion proof against the latest head signed
        (the current one if this store signs: one is signed if actions came after it), pending
        after it, or unproved as an entry is (_held); pass `next_cursor` as `after` for the next
        page (ValueError if it is none)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}")
        before = _parse_action_cursor(after)
        with (self._write if self.signer.signs else self._read)() as cur:
            rows = _action_page(cur, where, limit + 1, before)
            acted = [_acted(row) for row in rows[:limit]]
            head, signed, held = self._held(
                cur, [(a.serial, a.record) for a in acted if a.faithful and a.serial is not None])
        shown = tuple(a if not a.faithful or a.serial is None
                      else replace(a, proof=held[a.serial]) if a.serial in held
                      else replace(a, unproved=True) for a in acted)
        more = _action_cursor(rows[limit - 1]) if len(rows) > limit else None
        return ActionPage(shown, more, head, head is None or signed)

    def held(self, records: Sequence[Logged]) -> dict[tuple[str, str], int | None]:
        """The serial of each of these events and operator actions the store holds, by
        logged_key (a purged one's is not held; an action stored before actions were leaves
        has none: None)."""
        found = self._by_logged(self._db.cursor(), records, "serial", "serial")
        held: dict[tuple[str, str], int | None] = {}
        for record in records:
            kind, logged_id = key = logged_key(record)
            if (stored := (kind, column_text(logged_id))) in found:
                serial = found[stored]
                held[key] = None if serial is None else int(serial)
        return held

    def serials(self, event_ids: Sequence[str]) -> dict[str, int]:
        """The serial of each of these event ids the log holds (a purged entry's is not)."""
        found = self._by_id(self._db.cursor(), list(event_ids), "serial")
        return {i: int(serial) for i in event_ids
                if (serial := found.get(column_text(i))) is not None}

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of serials start..end-1 (kept for purged entries too)."""
        return self.node_hashes([(0, serial) for serial in range(start, end)])

    def bound_since(self, holder: str, person: str, before: int | None = None
                    ) -> datetime | None:
        """When a binding first gave `holder` this person (the earliest BINDING entry it
        requested, purged or not); None if none ever did. Of the entries before serial `before`
        (if given: what the store held when the detector read that entry), the purged ones
        among them: `bindings` keeps each pair's earliest time, which one before the earliest
        entry it keeps came from a purged one."""
        if before is None:
            found = self._db.execute(
                "SELECT occurred_at FROM bindings WHERE holder = ? AND person = ?",
                (holder, person)).fetchone()
            return None if found is None else from_millis(int(found[0]))
        found = self._db.execute(_BOUND_BEFORE, (person, holder, person, holder, before, holder,
                                                 person)).fetchone()
        if found is None:
            return None
        earliest, kept, kept_before = found
        at = earliest if kept is None or earliest < kept else kept_before
        return None if at is None else from_millis(int(at))

    def latest_time(self, until: datetime | None = None, before: int | None = None
                    ) -> datetime | None:
        """When the latest event in the log occurred (of those that occurred by `until`, if
        given: one dated far ahead, its writer's clock wrong, passed over, the time it was read
        taken instead; of those before serial `before`, if given)."""
        # the time index walked down from `until` (max() with the serial too reads every row)
        found = [self._db.execute(f"SELECT {at} FROM {table} WHERE {at} <= ? AND serial < ? "
                                  f"ORDER BY {at} DESC LIMIT 1",
                                  (_by(until), _serial_by(before))).fetchone()
                 for table, at in _TIMES]
        return max((from_millis(int(f[0])) for f in found if f is not None), default=None)

    def unjudged_since(self) -> int | None:
        """The first serial of the entries appended while the live detector resumed that it
        was not told yet (first_unjudged: those before it, it judged); None if it was told
        all."""
        told = self.first_unjudged()
        return None if told is None else told.since

    def unjudged_caught_up(self, at: datetime) -> None:
        """The consumer caught up as of `at` while the live detector resumes: kept to tell it
        after the batches appended before (`first_unjudged`); told again before another batch
        comes, only the latest time is kept (the decisions due by then taken alike)."""
        with self._write() as cur:
            size = self._tree().size
            cur.execute(_UNJUDGED_CAUGHT_UP, (size, size, millis(at)))

    def first_unjudged(self) -> Unjudged | None:
        """The first batch or caught-up time the live detector was not told yet, appended
        while it resumed; None if it was told all."""
        found = self._db.execute("SELECT since, until, read_at FROM unjudged "
                                 "ORDER BY since, until LIMIT 1").fetchone()
        return None if found is None else Unjudged(int(found[0]), int(found[1]),
                                                   from_millis(int(found[2])))

    def judged(self, raised: Sequence[Raised], told: Unjudged) -> None:
        """The live detector was told `told` (first_unjudged): the alerts it raised then stored,
        and it kept no more, in one transaction."""
        with self._write() as cur:
            cur.executemany(_RAISED, _raised_rows(raised))
            cur.execute("DELETE FROM unjudged WHERE since = ? AND until = ?",
                        (told.since, told.until))

    def recent_events(self, since: datetime, until: datetime | None = None,
                      before: int | None = None, page: int = MAX_PAGE
                      ) -> Iterator[tuple[AccessLogEvent, datetime | None]]:
        """The events appended since the first one that occurred at or after `since` (and by
        `until`, if given: not since one dated far ahead, appended perhaps long before; one
        counted as of its reading, at that time), and before serial `before` (if given), in the
        order they were appended (the order the live detector saw them), a page at a time: each
        with the time it was read if the detector counted it as of then (read_ahead), else
        None."""
        # min(serial) over a subquery, so that SQLite reads the time index; asked directly, it
        # walks the table by serial from the first entry until one meets `since` (the last 30 s
        # of 410k entries: 93 ms that way, 0.2 ms this; years of entries: all of them)
        firsts = [self._db.execute(
            f"SELECT min(serial) FROM (SELECT serial FROM {table} WHERE {at} >= ? AND "
            f"{at} <= ? ORDER BY {at}) AS recent", (millis(since), _by(until))).fetchone()[0]
            for table, at in _TIMES]
        serial = min((f for f in firsts if f is not None), default=None)
        if serial is not None:
            yield from self.appended_since(serial, before, page)

    def appended_since(self, serial: int, before: int | None = None, page: int = MAX_PAGE
                       ) -> Iterator[tuple[AccessLogEvent, datetime | None]]:
        """The events appended from serial `serial` on (and before `before`, if given), in
        order, a page at a time: each with the time it was read if the detector counted it as
        of then (read_ahead), else None."""
        end = _serial_by(before)
        while True:
            rows = self._db.execute(
                f"{_SELECT} WHERE serial >= ? AND serial < ? ORDER BY serial LIMIT ?",
                (serial, end, page)).fetchall()
            if not rows:
                return
            read = dict(self._db.execute(
                "SELECT serial, read_at FROM read_ahead WHERE serial >= ? AND serial <= ?",
                (serial, rows[-1][0])).fetchall())
            for row in rows:
                at = read.get(row[0])
                yield _entry(row).event, None if at is None else from_millis(int(at))
            if len(rows) < page:
                return
            serial = rows[-1][0] + 1

    def raised_since(self, since: datetime, rule: str | None = None,
                     until: datetime | None = None) -> Iterator[Raised]:
        """The alerts (of one rule, if given) raised on events that occurred at or after
        `since` (and before `until`, if given), in no order (none to sort), read as they are used
        (the benchmark's 50 minutes raised 322,551)."""
        params: list[object] = [millis(since)]
        where = "occurred_at >= ?"
        if until is not None:
            where += " AND occurred_at < ?"
            params.append(millis(until))
        if rule is not None:
            where += " AND rule = ?"
            params.append(rule)
        for found, event_id, requester, at in self._db.execute(
                f"SELECT rule, event_id, requester, occurred_at FROM alerts WHERE {where}",
                params):
            yield Raised(found, requester, event_id, from_millis(at))

    def by_person(self, person: str, *, limit: int = 100, after: str | None = None) -> Page:
        """All entries about one person, with inclusion proofs against the current head."""
        return self.query(Query(person=person), limit=limit, after=after, prove=True)

    def query(self, where: Query, *, limit: int = 100, after: str | None = None,
              prove: bool = False, newest: bool = False) -> Page:
        """One page of matching entries (`newest` first, or oldest); pass `next_cursor` as
        `after` for the next page."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}")
        transaction = self._write if prove and self.signer.signs else self._read
        with transaction() as cur:
            rows = self._page(cur, where, limit + 1, _parse_cursor(after), newest)
            entries = tuple(_entry(row) for row in rows[:limit])
            head, trusted = None, True
            if prove:
                proved = self._proved(cur, entries)
                entries, head = proved.entries, proved.head
                trusted = head is None or proved.trusted
        return Page(entries, cursor_of(entries[-1]) if len(rows) > limit else None, head,
                    trusted)

    def holders_of(self, person: str) -> set[str]:
        """The holders (requester or provider) of the entries about `person`, as the store's
        columns tell them."""
        with self._read() as cur:
            return {holder for holder, in cur.execute(
                "SELECT requester FROM entries WHERE person = ? UNION "
                "SELECT provider FROM entries WHERE person = ? AND provider IS NOT NULL",
                (column_text(person),) * 2).fetchall()}

    def unnamed(self, holder: str) -> Unnamed | None:
        """None if an entry names `holder` (requester or provider); else Unnamed, with the
        names entries give nearest it (a typing error's), looked for only then."""
        said = column_text(holder)
        with self._read() as cur:
            if cur.execute(_NAMES_HOLDER, (said, said)).fetchone()[0]:
                return None
            named = {name for side in ("requester", "provider")
                     for name, in cur.execute(_NAMED_ON.format(side=side)).fetchall()}
        return _unnamed(holder, named)

    def unacted(self, subject: str) -> Unnamed | None:
        """None if an operator action is on `subject` (a holder, or a link-code unit re-keyed);
        else Unnamed, with the subjects actions are on nearest it, looked for only then."""
        with self._read() as cur:
            if cur.execute(_ACTS_ON, (column_text(subject),)).fetchone()[0]:
                return None
            named = {name for name, in cur.execute(_SUBJECTS).fetchall()}
        return _unnamed(subject, named)

    def parties(self, request_ids: Sequence[str]) -> dict[str, set[str]]:
        """The holders (requester or provider) of each of `request_ids` the store has entries
        of, as its columns tell them; read by event id (_PARTIES), as an index on request_id
        would slow every append (~24-38 µs an event of ~95)."""
        given = {column_text(r): r for r in request_ids}
        asked, per = list(given), _CHUNK // 3
        found: dict[str, set[str]] = {}
        with self._read() as cur:
            for chunk in (asked[start:start + per] for start in range(0, len(asked), per)):
                for request_id, requester, provider in cur.execute(
                        _PARTIES.format(rows=", ".join(["(?, ?, ?)"] * len(chunk))),
                        [v for r in chunk for v in (r, *_event_ids(r))]).fetchall():
                    found.setdefault(given[request_id], set()).update(
                        h for h in (requester, provider) if h is not None)
        return found

    def entry(self, serial: int) -> Entry | None:
        """The entry at `serial`; None if there is none (purged, or past the end)."""
        if not 0 <= serial < self.size():
            return None
        row = self._db.execute(f"{_SELECT} WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else _entry(row)

    def prove(self, entries: Sequence[Entry]) -> Proved:
        """The entries with inclusion proofs, all against one head: the current one."""
        with (self._write if self.signer.signs else self._read)() as cur:
            return self._proved(cur, entries)

    def _proved(self, cur: Cursor, entries: Sequence[Entry]) -> Proved:
        """The entries with their proofs (_held), those after the head pending, the others
        unproved; the head, and whether the log's key signed it."""
        head, trusted, held = self._held(cur, [(e.serial, e.leaf) for e in entries])
        return Proved(tuple(replace(e, proof=held[e.serial]) if e.serial in held
                            else replace(e, unproved=True) for e in entries), head, trusted)

    def _held(self, cur: Cursor, leaves: Sequence[tuple[int, bytes]]
              ) -> tuple[SignedHead | None, bool, dict[int, tuple[bytes, ...] | None]]:
        """The head the tree's leaves at these serials are proved against (_proofs), whether
        the log's key signed it, and, by serial, the bytes it holds: each with its proof under
        the head if that holds for them, or None (pending) after the head if they are the
        tree's leaf at their serial (an appended one's are; none lies past the tree's end).
        Bytes left out are not the tree's: their row, or the tree's hashes, changed."""
        head, trusted, paths = self._proofs(cur, [serial for serial, _ in leaves])
        after = self._stored_hashes([node_key(0, serial) for serial, _ in leaves
                                     if serial not in paths])
        held: dict[int, tuple[bytes, ...] | None] = {}
        for serial, leaf in leaves:
            if serial not in paths:
                if after.get(node_key(0, serial)) == merkle.leaf_hash(leaf):
                    held[serial] = None
            elif head is not None and includes(head.head, serial, leaf, paths[serial]):
                held[serial] = paths[serial]
        return head, trusted, held

    def _proofs(self, cur: Cursor, serials: Sequence[int]
                ) -> tuple[SignedHead | None, bool, dict[int, tuple[bytes, ...]]]:
        """The inclusion proofs of `serials`, by serial, against the current head; with the
        head key's public half alone, which signs none, against the latest head signed (None if
        none is), a serial after it unproved, and none if the log's key did not sign it (written
        into the store: it proves nothing, and its size may be any). The head, and whether the
        log's key signed it."""
        head = self._current_head(cur) if self.signer.signs else self._latest_head(cur)
        trusted = head is not None and verify_head(head, self.signer.public_key)
        size = head.head.size if head and trusted else 0
        held = [serial for serial in serials if serial < size]
        paths = merkle.resolve(self, [merkle.inclusion_ranges(serial, size) for serial in held])
        return head, trusted, {serial: tuple(path)
                               for serial, path in zip(held, paths, strict=True)}

    @staticmethod
    def _page(cur: Cursor, where: Query, n: int,
              after: tuple[int, int] | None, newest: bool = False) -> list[Row]:
        conditions: list[tuple[str, object]] = [
            (f"{column} = ?", column_text(value)) for column, value in (
                ("person", where.person), ("pattern_id", where.pattern),
                ("outcome", where.outcome)) if value is not None]
        start = _start(where.since, None if newest else after)
        if start is not None:
            conditions.append(("occurred_at >= ?", start))
        end = _end(where.until, after if newest else None)
        if end is not None:
            conditions.append(("occurred_at <= ?", end))
        branches = ([conditions] if where.holder is None else
                    [[*conditions, (f"{side} = ?", column_text(where.holder))]
                     for side in ("requester", "provider")])
        results = []
        for branch in branches:
            sql = [c for c, _ in branch]
            params = [p for _, p in branch]
            if after is not None:
                sql.append(f"(occurred_at, serial) {'<' if newest else '>'} (?, ?)")
                params.extend(after)
            clause = f" WHERE {' AND '.join(sql)}" if sql else ""
            order = " DESC" if newest else ""
            results.append(cur.execute(
                f"{_SELECT}{clause} ORDER BY occurred_at{order}, serial{order} LIMIT ?",
                [*params, n]).fetchall())
        merged = heapq.merge(*results, key=lambda row: (row[_TIME], row[0]), reverse=newest)
        unique = (next(same) for _, same in itertools.groupby(merged, key=lambda row: row[0]))
        return list(itertools.islice(unique, n))

    # ---- retention ----

    def purge(self, now: datetime, retention_years: int = RETENTION_YEARS,
              step: int = PURGE_STEP) -> list[Purge]:
        """Delete entries (and the alerts on them) and operator actions older than the
        retention, a leaf's age as its signed bytes tell it; keep their leaf hashes and all
        heads. An entry or action whose bytes are not its leaf's, or tell of a later one, stays
        (logged; `verify` reports it). An operator action stored before actions were leaves
        goes by its time column. Done in steps of about `step` entries, the oldest first, each a
        write transaction and a signed record whose cutoff is the time it purged up to: one
        transaction held the write lock for all (25 µs an entry: a day's purge of a nation's
        log, millions, longer than the audit consumer waits for it, 30 s). The records made."""
        final = years_before(now, retention_years)
        made: list[Purge] = []
        kept: set[int] = set()  # the serials that stay, each logged once, not once a step
        cutoff = self.last_cutoff() or EPOCH
        while cutoff < final:
            cutoff = min(final, self._step_end(cutoff, final, step))
            made.append(self._purge_before(now, cutoff, kept))
        return made or [self._purge_before(now, final, kept)]

    def _step_end(self, start: datetime, final: datetime, step: int) -> datetime:
        """The time a step of the purge from `start` goes up to: just past the `step`-th entry's
        from there (ties with it included), or `final` if fewer are left before it."""
        found = self._db.execute(
            "SELECT occurred_at FROM entries WHERE occurred_at >= ? AND occurred_at < ? "
            "ORDER BY occurred_at LIMIT 1 OFFSET ?", (millis(start), millis(final), step - 1)
        ).fetchone()
        return final if found is None else from_millis(int(found[0]) + 1)

    def _purge_before(self, now: datetime, cutoff: datetime, kept: set[int]) -> Purge:
        """One step of the purge at `now`: what is older than `cutoff`, in one transaction; the
        serials that stay though their time column is older are logged unless `kept` has them
        (a step before did), and added to it."""
        with self._write() as cur:
            ranges = _runs(self._expired(cur, millis(cutoff), kept))
            for table in ("entries", "operator_actions", "read_ahead"):
                cur.executemany(f"DELETE FROM {table} WHERE serial >= ? AND serial < ?", ranges)
            cur.executemany(_PURGED_LEAVES, ranges)
            cur.execute("DELETE FROM alerts WHERE occurred_at < ?", (millis(cutoff),))
            cur.execute("DELETE FROM operator_actions WHERE serial IS NULL AND occurred_at < ?",
                        (millis(cutoff),))
            unsigned = Purge(now, cutoff, tuple(ranges), self.signer.key_id, b"")
            record = replace(unsigned, signature=self.signer.sign(unsigned.message()))
            cur.execute(
                "INSERT INTO purges (purged_at, cutoff, ranges, key_id, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                (millis(now), millis(cutoff), _ranges_text(ranges), record.key_id,
                 record.signature))
        return record

    def _expired(self, cur: Cursor, cutoff: int, kept: set[int]) -> Iterator[int]:
        """In order, the serials of the entries and operator actions whose time column is before
        `cutoff` and whose bytes, the ones in the tree, tell of one before it too; each other
        one logged, unless `kept` has it already (found again by each step of a purge after)."""
        rows = heapq.merge(
            cur.execute("SELECT serial, CAST(leaf AS BLOB) FROM entries "
                        "WHERE occurred_at < ? ORDER BY serial", (cutoff,)),
            self._db.cursor().execute("SELECT serial, CAST(record AS BLOB) FROM operator_actions "
                                      "WHERE occurred_at < ? AND serial IS NOT NULL "
                                      "ORDER BY serial", (cutoff,)),
            key=operator.itemgetter(0))
        for chunk in iter(lambda: list(itertools.islice(rows, _CHUNK)), []):
            leaves = self._stored_hashes([node_key(0, serial) for serial, _ in chunk])
            for serial, leaf in chunk:
                event = signed_record(leaf)
                if (leaves.get(node_key(0, serial)) == merkle.leaf_hash(leaf)
                        and event is not None and millis(event.occurred_at) < cutoff):
                    yield serial
                elif serial not in kept:
                    kept.add(serial)
                    log.warning("serial %d not purged: its time column is past the retention, "
                                "but its bytes are not the tree's or tell of a later event "
                                "(renkei audit verify reports it)", serial)

    def purged_serial(self, leaf: bytes) -> int | None:
        """The serial of the purged entry whose bytes were `leaf`, found by the leaf hash the
        purge kept (the latest of several); None if no purge removed it."""
        found = self._db.execute(PURGED_SERIAL, (merkle.leaf_hash(leaf),)).fetchone()[0]
        return None if found is None else int(found)

    def purges(self) -> list[Purge]:
        return [_purge(row) for _, *row in self._purge_rows()]

    def _purge_rows(self) -> Cursor:
        return self._db.execute(
            "SELECT seq, purged_at, cutoff, CAST(ranges AS TEXT), CAST(key_id AS BLOB), "
            "CAST(signature AS BLOB) FROM purges ORDER BY seq")

    # ---- verification ----

    def verify(self, decode: Callable[[bytes], AccessLogEvent] | None = None, *,
               anchored: Sequence[SignedHead] = (), committed: Committed | None = None,
               max_findings: int = 1000) -> VerifyReport:
        """Recompute the log from what is stored and report every inconsistency found.

        Checks each entry's bytes against its leaf hash (modified, reordered, deleted or
        inserted entries), every stored subtree hash against its children, every head's
        signature and root, and each head against the latest earlier one that holds, and
        `purged_leaves` against the leaves of the purged serials.
        With `decode` (the canonical codec), also each entry's indexed columns. With the heads
        `anchored` outside the store (audit.anchor), also that the tree holds the largest one
        signed by the log's key and grew from it: one cut short, its newest entries deleted
        with their heads, looks whole on its own. With the audit consumer's last commit
        (`committed`), also that the tree holds the one it noted: the entries appended after
        the last anchored head deleted, it looks whole against the heads too.
        """
        report = VerifyReport(max_findings=max_findings)
        # `bindings` is not checked: it is derived from the entries, and outlives their purge.
        # A store made before a table or column, opened read-only (no writer added it since),
        # is checked as it is: the audit consumer fills `purged_leaves` from the purges, and
        # operator actions stored without a serial are beside the tree
        with self._read() as cur:
            report.tree_size = size = self.size()
            purged, unsigned, horizon = self._verified_purges(report)
            self._verify_entries(cur, size, purged, horizon, decode, report)
            if not self._dialect.typed:
                self._verify_types(cur, report)
            if not self._without_table(cur, "purged_leaves"):
                self._verify_purged_leaves(purged, unsigned, report)
            for level in range(1, size.bit_length()):
                self._verify_level(level, size, report)
            beyond = self._db.execute("SELECT count(*) FROM nodes WHERE id >= ?",
                                      (node_key(max(size.bit_length(), 1), 0),)).fetchone()[0]
            if beyond:
                report.add("node", "above the root", f"{beyond} subtree hashes beyond the tree")
            self._verify_heads(size, report)
            self._verify_outside(anchored, committed, report)
        return report

    def verify_outside(self, anchored: Sequence[SignedHead],
                       committed: Committed | None) -> VerifyReport:
        """The tree against what the broker keeps outside it alone, the heads `anchored` and
        the audit consumer's last commit: what `verify` checks last."""
        report = VerifyReport()
        with self._read():
            report.tree_size = self.size()
            self._verify_outside(anchored, committed, report)
        return report

    def _verify_outside(self, anchored: Sequence[SignedHead], committed: Committed | None,
                        report: VerifyReport) -> None:
        """The tree against the largest head anchored and the tree the last commit noted: a
        store cut short (with its heads, or after its last anchored head) is found here."""
        self._verify_anchor(anchored, report)
        self._verify_committed(committed, report)

    def _verified_purges(self, report: VerifyReport) -> tuple[_Ranges, _Ranges, int | None]:
        """The purged serial ranges and latest cutoff, from the purge records signed by us, and
        the ranges the records of a bad signature tell (those that can be read)."""
        ranges: list[tuple[int, int]] = []
        unsigned: list[tuple[int, int]] = []
        horizon: int | None = None
        for seq, *row in self._purge_rows():
            try:
                record = _purge(row)
            except (ValueError, TypeError):
                record = None
            if record is None or not self._signed(record):
                report.add("purge", f"purge #{seq}", "bad signature: its ranges are not trusted")
                unsigned.extend(record.ranges if record is not None else ())
                continue
            ranges.extend(record.ranges)
            horizon = max(horizon or 0, millis(record.cutoff))
        return _Ranges(ranges), _Ranges(unsigned), horizon

    def _signed(self, record: Purge) -> bool:
        """Whether the log's key signed the purge record."""
        try:
            return record.key_id == self.signer.key_id and verify_signature(
                self.signer.public_key, record.message(), record.signature)
        except (ValueError, TypeError, OverflowError):  # a time no 8 bytes hold: a row edited
            return False

    def _verify_entries(self, cur: Cursor, size: int, purged: _Ranges, horizon: int | None,
                        decode: Callable[[bytes], AccessLogEvent] | None,
                        report: VerifyReport) -> None:
        # a store made before operator actions were leaves keeps them all beside the tree, in
        # a table without the serial column (or in none, made before there were actions)
        as_leaves = not self._without_column(cur, "operator_actions", "serial")
        rows = heapq.merge(self._db.execute(f"{_RAW_SELECT} ORDER BY serial"),
                           self._db.execute(_RAW_ACTIONS) if as_leaves else (),
                           key=operator.itemgetter(0))
        beside = self._beside_the_tree(cur, as_leaves)
        report.unproved = len(beside)
        leaves = self._db.execute("SELECT id, CAST(hash AS BLOB) FROM nodes "
                                  "WHERE id < ? ORDER BY id",
                                  (node_key(1, 0),))
        mismatched: list[tuple[int, bytes, bytes]] = []
        expected = 0
        for serial, row, stored in _join(rows, leaves):
            if stored is not None and serial > expected:
                report.add("node", _serials(expected, serial), "leaf hashes missing")
            if stored is not None:
                expected = serial + 1
            if row is None:
                if serial in purged:
                    report.purged += 1
                else:
                    report.add("deleted", f"serial {serial}",
                               _UNSERIALED if stored in beside else _GONE)
                continue
            action = _is_action(row)
            if action:
                report.actions += 1
            else:
                report.entries += 1
            computed = merkle.leaf_hash(row[_RECORD if action else _LEAF])
            if stored is None:
                report.add("inserted", f"serial {serial}", "an entry that is not in the tree")
            elif serial in purged:
                report.add("inserted", f"serial {serial}", "an entry where one was purged")
            elif computed == stored:
                _check_columns(serial, row, horizon, decode, report)
            elif len(mismatched) < report.max_findings:
                mismatched.append((serial, computed, stored))
            else:
                report.omitted += 1
        origin = {stored: serial for serial, _, stored in mismatched}
        for serial, computed, _ in mismatched:
            if computed in origin:
                report.add("reordered", f"serial {serial}",
                           f"holds the entry appended as serial {origin[computed]}")
            else:
                report.add("modified", f"serial {serial}",
                           "its bytes do not match the leaf hash in the tree")

    def _verify_types(self, cur: Cursor, report: VerifyReport) -> None:
        """The rows of entries and operator actions with a column of another type than the store
        writes (SQLite lets a hand edit cast one; its bytes compared as they are, nothing else
        sees it): an entry whose person is made a blob is found by no query of the person."""
        tables = [("entries", ENTRY_COLUMNS)]
        if not self._without_column(cur, "operator_actions", "serial"):
            tables.append(("operator_actions", ACTION_COLUMNS))
        for table, columns in tables:
            for serial, *types in self._db.execute(_mistyped(table, columns)):
                where = "beside the tree" if serial is None else f"serial {serial}"
                for column, made in zip(columns, types, strict=True):
                    if made is not None:
                        report.add("column", where, f"its {column} column holds "
                                   f"{made.upper()}, not {_WRITTEN.get(column, 'text').upper()}"
                                   " as the store writes it (cast by hand)")

    def _beside_the_tree(self, cur: Cursor, as_leaves: bool) -> set[bytes]:
        """The leaf hashes of the operator actions stored without a serial, beside the tree (all
        of them in a store made before actions were leaves, `as_leaves` not): not provable."""
        if self._without_table(cur, "operator_actions"):
            return set()
        return {merkle.leaf_hash(bytes(record)) for record, in self._db.execute(
            "SELECT CAST(record AS BLOB) FROM operator_actions"
            + (" WHERE serial IS NULL" if as_leaves else ""))}

    def _verify_purged_leaves(self, purged: _Ranges, unsigned: _Ranges,
                              report: VerifyReport) -> None:
        """`purged_leaves` against the tree, its rows joined to their serials' leaves and merged
        with the purged serials in order: each serial the signed purges removed has one row, its
        leaf's hash, and no other serial has one (else a replay finds a topic's first events
        where they are not), but one a purge record of a bad signature tells of (`unsigned`):
        that record is the finding, its rows only checked against their leaves."""
        problems: dict[str, list[int]] = {_NO_ROW: [], _OTHER_HASH: [], _NOT_PURGED: []}
        removed = zip(purged, itertools.repeat(True))
        for serial, kept, was_removed in _join(self._db.execute(_KEPT_LEAVES), removed):
            if kept is None:
                problems[_NO_ROW].append(serial)
            elif was_removed is None and serial not in unsigned:
                problems[_NOT_PURGED].append(serial)
            elif not kept[1]:
                problems[_OTHER_HASH].append(serial)
        for detail, serials in problems.items():
            for first, after in _runs(serials):
                report.add("purged", _where(first, after), detail)

    def _verify_level(self, level: int, size: int, report: VerifyReport) -> None:
        """Each stored node of `level` against its two children; missing or extra ones."""
        count = size >> level
        parents = self._db.execute(
            "SELECT id, CAST(hash AS BLOB) FROM nodes WHERE id >= ? AND id < ? ORDER BY id",
            (node_key(level, 0), node_key(level + 1, 0)))
        children = iter(self._db.execute(
            "SELECT id, CAST(hash AS BLOB) FROM nodes WHERE id >= ? AND id < ? ORDER BY id",
            (node_key(level - 1, 0), node_key(level - 1, 2 * count))))
        child = next(children, None)
        expected = 0
        for key, stored in parents:
            index = key - node_key(level, 0)
            where = f"node ({level}, {index})"
            if index >= count:
                report.add("node", where, "a subtree hash beyond the tree")
                continue
            if index > expected:
                report.add("node", f"nodes ({level}, {expected}..{index - 1})", "missing")
            expected = index + 1
            pair: dict[int, bytes] = {}
            while child is not None and child[0] - node_key(level - 1, 0) <= 2 * index + 1:
                pair[child[0] - node_key(level - 1, 0)] = child[1]
                child = next(children, None)
            left, right = pair.get(2 * index), pair.get(2 * index + 1)
            if left is not None and right is not None and merkle.node_hash(left, right) != stored:
                report.add("node", where, f"does not hash its children (covers "
                                          f"{_serials(index << level, (index + 1) << level)})")
        if expected < count:
            report.add("node", f"nodes ({level}, {expected}..{count - 1})", "missing")

    def _verify_heads(self, size: int, report: VerifyReport) -> None:
        """Each head's signature, order and root; a bad root against the earlier good head."""
        good = _GoodHeads()
        previous: TreeHead | None = None
        heads = iter(self._heads(self._db.cursor()))
        while chunk := list(itertools.islice(heads, _HEADS_AT_ONCE)):
            roots = self._roots(sorted({signed.head.size for _, signed in chunk}), size)
            for seq, signed in chunk:
                previous = self._verify_head(seq, signed, previous, roots.get(signed.head.size),
                                             size, good, report)
        report.unsigned = size - good.largest

    def _verify_head(self, seq: int, signed: SignedHead, previous: TreeHead | None,
                     root: bytes | None, size: int, good: _GoodHeads,
                     report: VerifyReport) -> TreeHead | None:
        """One head against the one before it (`previous`, returned for the next) and the
        tree's `root` at its size (None: not recomputed, a subtree hash missing)."""
        report.heads += 1
        head, where = signed.head, f"head #{seq} (size {signed.head.size})"
        if not verify_head(signed, self.signer.public_key):
            report.add("head", where, "bad signature or unknown key")
            return previous
        if previous and (head.size < previous.size or head.timestamp < previous.timestamp):
            report.add("head", where, "smaller or older than the head before it")
        if head.size > size:
            report.add("head", where, f"signs {head.size} entries; the tree has {size}")
            return head
        earlier = good.latest_by(head.size)
        try:
            problem = self._head_problem(head, earlier, root)
        except MissingNode as exc:
            problem = f"cannot recompute it: {exc}"
        if problem is None:
            good.add(seq, head)
        else:
            report.add("head", where, problem)
        return head

    def _verify_anchor(self, anchored: Sequence[SignedHead], report: VerifyReport) -> None:
        """The tree against every head anchored outside it and signed by the log's key: each
        must be a head of this tree, its root at its size. The largest alone is not enough: a
        store cut short (or restored from a backup) and grown past it again, by the consumer
        going on, holds it no more than its lost entries. A head of the tree needs no signature
        check (years of heads, one every 10 s, are millions); one that is not is a finding if
        the log's key signed it, and counted as forged if not and larger than every good one."""
        key = self.signer.public_key
        report.anchored = len(anchored)
        roots = self._roots(sorted({s.head.size for s in anchored}), report.tree_size)
        held = sorted((s for s in anchored if roots.get(s.head.size) == s.head.root),
                      key=lambda s: s.head.size, reverse=True)
        others = [s for s in anchored if roots.get(s.head.size) != s.head.root]
        good = sorted((s.head for s in others if verify_head(s, key)), key=lambda h: h.size)
        report.held = largest_held = next((s.head for s in held if verify_head(s, key)), None)
        report.unheld = others
        report.anchor = max([*good[-1:], *filter(None, [largest_held])], key=lambda h: h.size,
                            default=None)
        least = report.anchor.size if report.anchor else -1
        if forged := sum(s.head.size > least for s in others):
            report.add("anchor", "anchored heads", f"{forged} larger than the largest good one, "
                                                   "with a bad signature or an unknown key")
        if good and (finding := self.against(good[-1])) is not None:
            report.add(finding.kind, finding.where, finding.detail)
        if len(good) > 1:
            report.add("anchor", "anchored heads", f"{len(good)} signed by the log's key are "
                                                   "not heads of the store, the smallest of "
                                                   f"size {good[0].size}")

    def _roots(self, sizes: Sequence[int], size: int) -> dict[int, bytes]:
        """The root at each of `sizes` that the tree of `size` entries can recompute (not beyond
        it, nor with a subtree hash missing), its nodes read in one batch."""
        covers = {n: [node_key(*node) for node in merkle.covering_nodes(0, n)]
                  for n in sizes if n <= size}
        known = self._stored_hashes(sorted({key for keys in covers.values() for key in keys}))
        return {n: merkle.fold([known[key] for key in keys]) for n, keys in covers.items()
                if all(key in known for key in keys)}

    def against(self, anchored: TreeHead) -> Finding | None:
        """None if the tree holds the head `anchored` outside the store and grew from it (a
        consistency proof); else what is wrong: TRUNCATED if it is smaller."""
        where = (f"anchored head (size {anchored.size}, "
                 f"{anchored.timestamp.isoformat(timespec='seconds')})")
        return self._grown_from(anchored.size, anchored.root, where, "with their heads",
                                "after it was anchored")

    def _grown_from(self, size: int, root: bytes, where: str, gone: str,
                    changed: str) -> Finding | None:
        """None if the tree has `root` at `size` and grew from it; else TRUNCATED (its entries
        from `size` on are `gone`) or not consistent (they were `changed`)."""
        now = self.size()
        if now < size:
            return Finding(TRUNCATED, where, f"the store has {now} entries: "
                                             f"{_serials(now, size)} are gone {gone}")
        try:
            grown = merkle.verify_consistency(
                size, now, merkle.consistency_proof(self, size, now), root,
                merkle.tree_root(self, now))
        except MissingNode as exc:
            return Finding("anchor", where, f"cannot recompute the tree: {exc}")
        return None if grown else Finding(
            "anchor", where, f"the store is not consistent with it: {_serials(0, size)} were "
                             f"changed {changed}, or the store forks the log")

    def _verify_committed(self, committed: Committed | None, report: VerifyReport) -> None:
        """The tree against the audit consumer's last commit, kept by the broker: it holds the
        tree the consumer noted with it, the entries after the last anchored head included."""
        report.committed = committed
        if committed is None:
            return
        report.commit_signed = committed.signed_by(self.signer.public_key)
        if (finding := self.against_commit(committed, report.commit_signed)) is not None:
            report.add(finding.kind, finding.where, finding.detail)

    def against_commit(self, committed: Committed, signed: bool | None) -> Finding | None:
        """None if the tree holds the one the audit consumer noted with its commit and grew
        from it; else what is wrong: TRUNCATED if it is smaller, FORGED if the note's signature
        is not the head key's (`signed`, Committed.signed_by: an unsigned note, from before they
        were signed, is read)."""
        where = (f"the audit consumer's commit (offset {committed.offset}, "
                 f"size {committed.size})")
        if signed is False:
            return Finding(FORGED, where, "its note's signature is not the head key's: a note "
                                          "forged, the store not checked against it")
        return self._grown_from(committed.size, committed.root, where,
                                "though the consumer had appended them and read past them",
                                "after the consumer committed them")

    def check_commit(self, offset: int, note: str) -> None:
        """Raise LostEntries unless the tree holds the one noted with the commit at `offset`
        (if any), ForgedNote if the head key did not sign its note or the offset is past the
        last this store's consumer noted (whatever the note: the records between would be
        skipped); from then on, any entry deleted raises LostEntries at the next append, head
        or note (`_tree`)."""
        committed = Committed.of(offset, note)
        finding = None if committed is None else self.against_commit(
            committed, committed.signed_by(self.signer.public_key))
        if finding is not None:
            stopped = ForgedNote if finding.kind == FORGED else LostEntries
            raise stopped(f"{finding.where}: {finding.detail}")
        if (noted := self.noted_before(offset)) is not None:
            raise ForgedNote(f"the audit consumer's commit (offset {offset}) is past the last "
                             f"offset it noted in this store ({noted}): started from it, the "
                             "consumer would skip the records between: a commit not its own")
        self._tree()

    def noted_before(self, offset: int) -> int | None:
        """The last offset the audit consumer noted in this store (commit_note) if `offset` is
        past it, else None (none noted: a store from before, or a new one)."""
        noted = self._db.execute("SELECT committed_offset FROM noted").fetchone()
        return None if noted is None or offset <= noted[0] else int(noted[0])

    def _head_problem(self, head: TreeHead, earlier: tuple[int, TreeHead] | None,
                      root: bytes | None = None) -> str | None:
        """None when the stored tree has this root at this size (`root`, if read with other
        heads'; else recomputed: MissingNode, a subtree hash missing); else what is wrong."""
        if (merkle.tree_root(self, head.size) if root is None else root) == head.root:
            return None
        problem = "its root is not the stored tree's root at that size"
        if earlier is None:
            return problem
        seq, older = earlier
        if not consistent(older, head, merkle.consistency_proof(self, older.size, head.size)):
            problem += (f"; not consistent with head #{seq} (size {older.size}):"
                        f" {_serials(older.size, head.size)} were changed after it"
                        " was signed, or it forks the log")
        return problem


class _GoodHeads:
    """The heads verify found good, by (size, seq): the latest of those of a size or smaller
    found by bisection, not by a look at each (one at each head: years of heads, one every 10 s,
    are millions; 16,000 took 50 s), each added at the end as heads come in order."""

    def __init__(self) -> None:
        self._keys: list[tuple[int, int]] = []
        self._heads: list[TreeHead] = []

    def add(self, seq: int, head: TreeHead) -> None:
        at = bisect.bisect_right(self._keys, (head.size, seq))
        self._keys.insert(at, (head.size, seq))
        self._heads.insert(at, head)

    def latest_by(self, size: int) -> tuple[int, TreeHead] | None:
        """The good head of the largest size up to `size` (of those, the last signed)."""
        at = bisect.bisect_right(self._keys, (size, _END)) - 1
        return None if at < 0 else (self._keys[at][1], self._heads[at])

    @property
    def largest(self) -> int:
        """The size of the largest good head (0: none)."""
        return self._keys[-1][0] if self._keys else 0


class _Ranges:
    """Membership in a set of serial ranges."""

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        self._ranges = sorted(ranges)
        self._starts = [start for start, _ in self._ranges]

    def __iter__(self) -> Iterator[int]:
        """The serials in order (the ranges do not overlap)."""
        return itertools.chain.from_iterable(itertools.starmap(range, self._ranges))

    def __contains__(self, serial: object) -> bool:
        if not isinstance(serial, int):
            return False
        at = bisect.bisect_right(self._starts, serial) - 1
        return at >= 0 and serial < self._ranges[at][1]


def _serials(start: int, end: int) -> str:
    return f"serials {start}..{end - 1}"


def _where(start: int, end: int) -> str:
    """Serials start..end-1, one said as such."""
    return f"serial {start}" if end == start + 1 else _serials(start, end)


def _join(rows: Iterable[Row], leaves: Iterable[tuple[int, V]]
          ) -> Iterator[tuple[int, Row | None, V | None]]:
    """Rows and (serial, value) pairs (entries and leaf hashes) side by side, by serial, each in
    order; None where one side has none."""
    row_iter, leaf_iter = iter(rows), iter(leaves)
    row, leaf = next(row_iter, None), next(leaf_iter, None)
    while row is not None or leaf is not None:
        serial = min(row[0] if row is not None else _END, leaf[0] if leaf is not None else _END)
        this_row = row if row is not None and row[0] == serial else None
        this_leaf = leaf if leaf is not None and leaf[0] == serial else None
        yield serial, this_row, None if this_leaf is None else this_leaf[1]
        if this_row is not None:
            row = next(row_iter, None)
        if this_leaf is not None:
            leaf = next(leaf_iter, None)


def _is_action(row: Row) -> bool:
    """Whether a row verify reads is an operator action's (_RAW_ACTIONS), not an entry's."""
    return len(row) == len(ACTION_COLUMNS)


def _check_columns(serial: int, row: Row, horizon: int | None,
                   decode: Callable[[bytes], AccessLogEvent] | None,
                   report: VerifyReport) -> None:
    """An entry's (or operator action's) row against the last purge's cutoff and, with
    `decode`, its columns against its bytes (an action's by the codec)."""
    action = _is_action(row)
    at, leaf = (_ACTION_TIME, _RECORD) if action else (_TIME, _LEAF)
    if horizon is not None and isinstance(row[at], int) and row[at] < horizon:
        report.add("retention", f"serial {serial}", "older than the last purge's cutoff")
    if decode is None:
        return
    try:
        columns = (_action_row(serial, CODEC.decode(row[leaf], OperatorAction), row[leaf])
                   if action else _row(serial, decode(row[leaf]), row[leaf]))
    except ValueError as exc:  # bytes changed: the codec's SchemaError, or an event's own checks
        # (a fault of the code or of the disk is not taken for them: it surfaces)
        report.add("column", f"serial {serial}", f"its bytes do not decode: {exc}")
        return
    expected = (v.encode() if isinstance(v, str) else v for v in columns)
    differ = [name for name, stored, made in zip(
        ACTION_COLUMNS if action else ENTRY_COLUMNS, row, expected, strict=True)
              if stored != made]
    if differ:
        report.add("column", f"serial {serial}",
                   f"indexed columns differ from its bytes: {', '.join(differ)}")


def _serial_by(before: int | None) -> int:
    """The serial `before` bounds a read by: past every one if None."""
    return LAST_SERIAL if before is None else before


def _raised_rows(raised: Sequence[Raised]) -> list[Row]:
    return [(a.rule, column_text(a.event_id), column_text(a.requester), millis(a.occurred_at))
            for a in raised]


def _row(serial: int, event: AccessLogEvent, leaf: bytes) -> Row:
    """The entries row of an event, in ENTRY_COLUMNS order, its text through column_text."""
    return (serial, *map(_column, _EVENT_VALUES(event)), leaf)


def _column(value: object) -> object:
    if isinstance(value, str):
        return column_text(value)
    return millis(value) if isinstance(value, datetime) else value


def _head(size: int, root: bytes, at: int, key: bytes, signature: bytes) -> SignedHead:
    """A head as its row has it; one whose time is none (a row edited), at the epoch and
    unsigned: no head key's (verify says so)."""
    try:
        return SignedHead(TreeHead(size, root, from_millis(at)), key, signature)
    except ValueError:
        return SignedHead(TreeHead(size, root, EPOCH), key, b"")


def _entry(row: Row) -> Entry:
    """The entry of a row; if its columns make no event (an id cut to COLUMN_CHARS, which its
    bytes hold whole, or a column edited), the event its bytes hold, and `edited` unless its
    columns are those of that event. DamagedEntry if neither makes one."""
    values = list(row[1:_LEAF])
    try:
        if not _event_typed(values):  # a column's type changed by hand (SQLite lets it)
            raise ValueError
        values[_TIME - 1] = from_millis(values[_TIME - 1])
        return Entry(row[0], AccessLogEvent(*values), row[_LEAF])
    except ValueError:
        pass
    try:
        event = decode_event(row[_LEAF])
    except ValueError:
        raise DamagedEntry(f"entry {row[0]}: neither its columns nor its bytes make an event "
                           "(`renkei audit verify` says more)") from None
    return Entry(row[0], event, row[_LEAF], edited=tuple(row) != _row(row[0], event, row[_LEAF]))


def _event_typed(values: Sequence[object]) -> bool:
    """Whether an entry's event columns (EVENT_COLUMNS) hold the types the store writes them in:
    text or none, the time an integer."""
    return all(v is None or isinstance(v, int if c == "occurred_at" else str)
               for c, v in zip(EVENT_COLUMNS, values, strict=True))


def _mistyped(table: str, columns: Sequence[str]) -> str:
    """SQLite's statement of the rows of `table` with a column of another type than the store
    writes (`_WRITTEN`): each's serial and, for each of `columns`, its type if it is another."""
    other = {c: f"typeof({c}) NOT IN ('null', '{_WRITTEN.get(c, 'text')}')" for c in columns}
    types = ", ".join(f"CASE WHEN {o} THEN typeof({c}) END" for c, o in other.items())
    return (f"SELECT serial, {types} FROM {table} WHERE {' OR '.join(other.values())} "
            "ORDER BY serial")


def _purge(row: Sequence[Any]) -> Purge:
    at, cutoff, ranges, key, signature = row
    return Purge(from_millis(at), from_millis(cutoff),
                 tuple((int(start), int(end)) for start, end in json.loads(ranges)), key,
                 signature)


def _start(since: datetime | None, after: tuple[int, int] | None) -> int | None:
    """The time a page starts at: the later of `since` and the cursor's. One lower bound, so the
    index is entered there; given both, SQLite enters it at `since` and steps again over every
    page before the cursor (the last page of 1.7 million entries: 113 ms instead of 0.5)."""
    starts = [] if since is None else [millis(since)]
    if after is not None:
        starts.append(after[0])
    return max(starts, default=None)


def _by(until: datetime | None) -> int:
    """The last time (milliseconds) of events that occurred by `until`; given none, of any."""
    return INTEGERS[-1] if until is None else millis(until)


def _end(until: datetime | None, before: tuple[int, int] | None) -> int | None:
    """The last time a newest-first page holds: the earlier of just before `until` and the
    cursor's (one upper bound, as `_start` is one lower bound)."""
    ends = [] if until is None else [millis(until) - 1]
    if before is not None:
        ends.append(before[0])
    return min(ends, default=None)


def cursor_of(entry: Entry) -> str:
    """The cursor of the page after `entry`: its time and serial."""
    return f"{millis(entry.event.occurred_at)}:{entry.serial}"


def _parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    if cursor is None:
        return None
    try:
        at, serial = (int(part) for part in cursor.split(":"))
        if at not in INTEGERS or serial not in INTEGERS:
            raise ValueError
        return at, serial
    except ValueError:
        raise ValueError(f"bad cursor {cursor!r}: pass a page's next_cursor") from None


def _unnamed(asked: str, named: set[str]) -> Unnamed:
    """`asked`, which none of `named` is, with those nearest it (a typing error's), case aside."""
    by_folded = {name.casefold(): name for name in sorted(named, reverse=True)}
    nearest = difflib.get_close_matches(column_text(asked).casefold(), by_folded,
                                        n=NEAREST_HOLDERS)
    return Unnamed(asked, tuple(by_folded[n] for n in nearest))


def _action_page(cur: Cursor, where: ActionQuery, n: int, before: tuple[int, str] | None
                 ) -> list[Row]:
    """Up to `n` rows of operator actions matching `where`, newest first, before the cursor's."""
    sql = [f"{column} = ?" for column, value in (
        ("subject", where.subject), ("action", where.action), ("operator", where.operator))
        if value is not None]
    params: list[object] = [column_text(v) for v in (where.subject, where.action, where.operator)
                            if v is not None]
    if where.since is not None:
        sql.append("occurred_at >= ?")
        params.append(millis(where.since))
    if where.until is not None:
        sql.append("occurred_at < ?")
        params.append(millis(where.until))
    if before is not None:
        sql.append("(occurred_at, action_id) < (?, ?)")
        params.extend(before)
    clause = f" WHERE {' AND '.join(sql)}" if sql else ""
    return cur.execute(f"{_ACTIONS}{clause} "
                       "ORDER BY occurred_at DESC, action_id DESC LIMIT ?", [*params, n]).fetchall()


def _acted(row: Row) -> Acted:
    """An operator action's row as its bytes tell it, faithful if its columns are those bytes';
    one whose bytes decode to none, as its columns tell it, not faithful (DamagedEntry if they
    make none either: its time edited)."""
    serial, record = row[0], bytes(row[_RECORD])
    try:
        action = CODEC.decode(record, OperatorAction)
    except SchemaError:  # bytes edited (an error of the code is not taken for them: it surfaces)
        try:
            action = OperatorAction(row[1], from_millis(row[_ACTION_TIME]), *row[3:_RECORD])
        except ValueError:
            raise DamagedEntry(f"operator action {row[1]!r}: neither its columns nor its bytes "
                               "make an action (`renkei audit verify` says more)") from None
        return Acted(serial, action, record, faithful=False)
    stored = (*row[:_RECORD], record)
    return Acted(serial, action, record, faithful=stored == _action_row(serial, action, record))


def _action_cursor(row: Row) -> str:
    """The cursor of the page after an operator action's row: its time and action id."""
    return f"{row[_ACTION_TIME]}:{row[1]}"


def _parse_action_cursor(cursor: str | None) -> tuple[int, str] | None:
    if cursor is None:
        return None
    at, colon, action_id = cursor.partition(":")
    try:
        if not colon or int(at) not in INTEGERS:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad cursor {cursor!r}: pass a page's next_cursor") from None
    return int(at), action_id
