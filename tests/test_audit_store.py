"""The audit store: exactly once, queries with proofs, heads, retention, and tamper detection."""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import asdict, astuple, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import click
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import audit.events
import audit.sql
import audit.store
from audit import merkle
from audit.anchor import held_largest
from audit.bench import run as run_bench
from audit.cli import audit_cli, open_store
from audit.consumer import BoundBefore, new_events, reread, resumed, tell
from audit.detector import (
    OFF_HOURS,
    REPEATED_PERSON,
    UNBOUND_PERSON,
    Detector,
    Raised,
    Rules,
    binding_of,
)
from audit.events import EPOCH, AccessLogEvent, OperatorAction, decode_event, event_id, millis
from audit.heads import (
    NoKey,
    SignedHead,
    Signer,
    TreeHead,
    consistent,
    includes,
    verify_head,
    verify_signature,
)
from audit.retention import years_before
from audit.sql import POSTGRESQL_SCHEMES, Stoppable, Stopped, connect
from audit.store import (
    COLUMN_CHARS,
    FORGED,
    NOTE_CONTEXT,
    AuditStore,
    Committed,
    ForgedNote,
    LostEntries,
    Page,
    Purge,
    Query,
    VerifyReport,
    column_text,
    default_path,
    node_key,
)
from broker import topics
from processors.rejection import reject
from renkei.cli import _said
from renkei.request_names import REQUEST_ID_CHARS
from renkei.state import STATE_ENV, state_folder
from schemas.codec import CODEC
from schemas.messages import Alert, Rejection
from tests.kafka_helpers import can_mount_read_only, said_in_one_line, with_read_only
from tests.postgres import fresh_schema
from tests.test_detector import (
    OFFICE,
    RESUMING,
    a_day_and_more,
    binding,
    decided,
    linkage,
    shuffled,
)

T0 = datetime(2024, 4, 1, 9, 0, tzinfo=UTC)
PERSONS = ("ABC98765XYZ", "369PQRST246", "0000000000Z")
HOLDERS = ("city-a", "city-b", "tax-office", "pension")


class Clock:
    """An injectable clock that moves only when told."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def event(n: int, at: datetime | None = None, person: str | None = None) -> AccessLogEvent:
    request = f"req-{n:04d}"
    return AccessLogEvent(
        event_id=event_id(request, "LINKAGE"), request_id=request,
        occurred_at=at or T0 + timedelta(minutes=n),
        kind="LINKAGE", outcome=("APPROVED", "REJECTED", "DELIVERED")[n % 3],
        reason="PATTERN_EXPIRED" if n % 3 == 1 else None, pattern_id=f"P{n % 2}",
        legal_basis="番号法 別表第二 1", requester=HOLDERS[n % 4], provider=HOLDERS[(n + 1) % 4],
        data_type="income", person=person or PERSONS[n % 3])


L = TypeVar("L", AccessLogEvent, OperatorAction)


def item(logged: L) -> tuple[L, bytes]:
    """An event or operator action as the audit consumer appends it: with its bytes, a leaf."""
    return logged, CODEC.encode(logged)


def suspension(n: int) -> OperatorAction:
    return OperatorAction(f"SUSPEND@renkei.directory:0:{n}", T0 + timedelta(minutes=n, seconds=30),
                          "ops-a", "SUSPEND", "sakura-town", "情報漏えい")


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + timedelta(days=1))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's URL: a SQLite file, or a fresh schema on the suite's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return fresh_schema(request.getfixturevalue("postgres"), f"t{uuid.uuid4().hex}")


@pytest.fixture
def store(state: Path, db: str, clock: Clock) -> Iterator[AuditStore]:
    with AuditStore(db, Signer.load_or_create(), head_every=4, clock=clock) as opened:
        yield opened


def raised(e: AccessLogEvent, rule: str = OFF_HOURS) -> Raised:
    return Raised(rule, e.requester, e.event_id, e.occurred_at)


def filled(store: AuditStore, count: int = 24) -> list[tuple[AccessLogEvent, bytes]]:
    items = [item(event(n)) for n in range(count)]
    for start in range(0, count, 5):
        store.append_many(items[start:start + 5])
    return items


# ---- appending ----

def test_a_request_id_sent_again_is_logged_on_one_line_cut_short(
        store: AuditStore, caplog: pytest.LogCaptureFixture) -> None:
    """A holder's request id is its own text: one with line breaks, sent again with other bytes,
    forges no line of the consumer's log, and a long one is not echoed whole."""
    forged = "r\n2026-12-05 04:50:00,000 WARNING forged line" + "x" * 1000
    first = replace(event(0), event_id=event_id(forged, "LINKAGE"), request_id=forged)
    caplog.set_level("INFO", logger="audit.store")
    store.append(*item(first))
    store.append(*item(replace(first, occurred_at=first.occurred_at + timedelta(seconds=1))))
    (line,) = [r.getMessage() for r in caplog.records if "came again" in r.getMessage()]
    assert "\n" not in line and "forged line" in line and len(line) < 200


def test_an_event_come_again_contradicting_the_first_is_an_error_naming_what_differs(
        store: AuditStore, caplog: pytest.LogCaptureFixture) -> None:
    """The first entry stays either way: an event made again after a crash, only its time other,
    is an INFO line; one whose outcome or reason contradicts the first (a second decision) is
    an ERROR naming those fields, not their values."""
    caplog.set_level("INFO", logger="audit.store")
    first = event(0)
    store.append(*item(first))
    store.append(*item(replace(first, occurred_at=first.occurred_at + timedelta(seconds=1))))
    assert [(r.levelname, r.getMessage().split("came again ")[1]) for r in caplog.records] == [
        ("INFO", "with other occurred_at; the first one stays")]
    caplog.clear()
    store.append(*item(replace(first, outcome="TIMED_OUT", reason="SUSPENDED")))
    assert [(r.levelname, r.getMessage().split("came again ")[1]) for r in caplog.records] == [
        ("ERROR", "with other outcome, reason; the first one stays")]
    stays = store.entry(0)
    assert stays is not None and stays.event == first


def test_exactly_once_even_across_a_restart(
        state: Path, db: str, clock: Clock, store: AuditStore,
        caplog: pytest.LogCaptureFixture) -> None:
    first, second, third = item(event(0)), item(event(1)), item(event(2))
    assert store.append(*first) == 0
    assert store.append(*first) is None
    assert store.append_many([first, second, second]) == [None, 1, None]
    rerun = event(0, at=first[0].occurred_at + timedelta(seconds=1))
    caplog.set_level("INFO", logger="audit.store")
    assert store.append(*item(rerun)) is None  # same id, other bytes: the first one stays
    assert "'req-0000:LINKAGE' came again with other occurred_at" in caplog.text
    store.close()
    # a consumer killed after the commit replays its last batch in a new process
    with AuditStore(db, Signer.load_or_create(), head_every=4, clock=clock) as again:
        assert again.append_many([first, second, third]) == [None, None, 2]
        assert again.size() == 3
        leaves = [merkle.leaf_hash(leaf) for _, leaf in (first, second, third)]
        assert again.root(3) == merkle.root(leaves)
        assert again.query(Query()).entries[2].event == third[0]


def test_roots_are_the_rfc_tree_at_every_size(store: AuditStore) -> None:
    items = filled(store, 37)
    leaves = [merkle.leaf_hash(leaf) for _, leaf in items]
    for size in range(38):
        assert store.root(size) == merkle.root(leaves[:size])
    heads = store.heads()
    assert [h.head.size for h in heads] == [5, 10, 15, 20, 25, 30, 35]
    assert store.heads(latest=3) == heads[-3:] and store.heads(latest=99) == heads
    assert all(verify_head(h, store.signer.public_key) for h in heads)
    for older, newer in itertools.pairwise(heads):
        proof = store.consistency_proof(older.head.size, newer.head.size)
        assert consistent(older.head, newer.head, proof)
    with pytest.raises(ValueError):
        store.root(38)


def test_events_normalise_time_and_check_their_fields() -> None:
    local = datetime(2024, 4, 1, 18, 0, 0, 123456, tzinfo=UTC).astimezone()
    assert event(0, at=local).occurred_at == datetime(2024, 4, 1, 18, 0, 0, 123000, tzinfo=UTC)
    with pytest.raises(ValueError):
        event(0, person="abc")
    with pytest.raises(ValueError):
        AccessLogEvent("x:1", "y", T0, "K", "O", None, None, None, "h", None, None, None)


def test_the_head_key_is_kept_private_and_reused(state: Path) -> None:
    signer = Signer.load_or_create()
    path = state / "keys" / "audit" / "head-key.json"
    assert path.stat().st_mode & 0o777 == 0o600
    public = json.loads((state / "audit" / "head-key.json").read_text())
    assert public == {"algorithm": "Ed25519",
                      "public_key": signer.public_key.public_bytes_raw().hex()}
    assert Signer.load_or_create().key_id == signer.key_id
    assert json.loads(path.read_text())["private_key"] not in repr(signer)
    signed = signer.sign_head(TreeHead(0, merkle.EMPTY_ROOT, T0))
    assert verify_head(signed, signer.public_key)
    assert not verify_head(signed, Signer.generate().public_key)
    moved = SignedHead(TreeHead(1, signed.head.root, T0), signed.key_id, signed.signature)
    assert not verify_head(moved, signer.public_key)


def test_of_two_processes_making_the_head_key_at_once_both_sign_with_the_first_ones(
        state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit consumer and the portal start together: both find no key; the other one
    writes its key between this one's look and its write."""
    first = Signer.load_or_create()
    path = state / "keys" / "audit" / "head-key.json"
    written = path.read_bytes()
    public = state / "audit" / "head-key.json"  # written after the key: hidden too
    monkeypatch.setattr(Path, "exists",
                        lambda self: self not in (path, public) and os.path.lexists(self))
    assert Signer.load_or_create().key_id == first.key_id
    assert path.read_bytes() == written and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_head_key_kept_beside_the_store_is_moved_apart_from_it(state: Path) -> None:
    """A state folder from before kept the key in audit/, which My Portal mounts for the
    store: it moves to keys/audit/, and audit/ keeps its public half alone."""
    old = state / "audit" / "head-key.json"
    before = Signer.load_or_create(old)
    assert "private_key" in json.loads(old.read_text())
    assert Signer.public().key_id == before.key_id
    assert Signer.load_or_create().key_id == before.key_id
    assert Signer.load().sign(b"x") and set(json.loads(old.read_text())) == {
        "algorithm", "public_key"}
    moved = state / "keys" / "audit" / "head-key.json"
    assert moved.stat().st_mode & 0o777 == 0o600
    assert "private_key" in json.loads(moved.read_text())
    moved.unlink()
    with pytest.raises(NoKey, match="a new key would leave the log's heads unverifiable"):
        Signer.load_or_create()
    assert Signer.public().key_id == before.key_id


# ---- queries ----

def _all_pages(store: AuditStore, where: Query, limit: int, newest: bool = False) -> list[int]:
    serials: list[int] = []
    after: str | None = None
    while True:
        page = store.query(where, limit=limit, after=after, newest=newest)
        serials.extend(e.serial for e in page.entries)
        if page.next_cursor is None:
            return serials
        after = page.next_cursor


@pytest.mark.parametrize("where", [
    Query(), Query(holder="city-b"), Query(pattern="P1"), Query(outcome="REJECTED"),
    Query(since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=17)),
    Query(holder="tax-office", outcome="APPROVED", since=T0 + timedelta(minutes=3)),
    Query(person=PERSONS[1], pattern="P0"),
])
def test_queries_page_through_every_match_in_time_order(store: AuditStore, where: Query) -> None:
    items = filled(store)
    # out of serial order in time: a late event from another partition
    store.append(*item(event(99, at=T0 - timedelta(minutes=1))))
    events = [e for e, _ in items] + [event(99, at=T0 - timedelta(minutes=1))]

    def matches(e: AccessLogEvent) -> bool:
        return ((where.person is None or e.person == where.person)
                and (where.holder is None or where.holder in (e.requester, e.provider))
                and (where.pattern is None or e.pattern_id == where.pattern)
                and (where.outcome is None or e.outcome == where.outcome)
                and (where.since is None or e.occurred_at >= where.since)
                and (where.until is None or e.occurred_at < where.until))

    expected = sorted((e.occurred_at, n) for n, e in enumerate(events) if matches(e))
    assert expected
    for limit in (1, 3, 100):
        assert _all_pages(store, where, limit) == [n for _, n in expected]
        assert _all_pages(store, where, limit, newest=True) == [n for _, n in expected][::-1]
    assert store.holders_of(PERSONS[1]) == {h for e in events if e.person == PERSONS[1]
                                            for h in (e.requester, e.provider) if h}


def test_a_page_after_the_cursor_costs_what_the_first_one_does(state: Path, tmp_path: Path,
                                                                 clock: Clock) -> None:
    """Paging through a time range (the detector's warm-up, the portal, `audit query --since`)
    enters the index at the cursor, not at `since` again for every page; newest first (a
    resident's history), at the cursor, not at `until`."""
    with AuditStore(tmp_path / "audit.db", Signer.load_or_create(), clock=clock) as store:
        items = [item(event(n, at=T0 + timedelta(seconds=n))) for n in range(3000)]
        store.append_many(items)
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        db = store._db
        assert isinstance(db, sqlite3.Connection)
        db.set_progress_handler(step, 100)  # called every 100 of SQLite's VM instructions

        def costs(where: Query, newest: bool) -> list[int]:
            nonlocal steps
            cost, after = [], None
            while True:
                steps = 0
                page = store.query(where, limit=100, after=after, newest=newest)
                cost.append(steps)
                if page.next_cursor is None:
                    return cost
                after = page.next_cursor

        for cost in (costs(Query(since=T0), False),
                     costs(Query(until=T0 + timedelta(hours=1)), True)):
            assert len(cost) == 30
            assert max(cost) <= 2 * cost[0], cost


def test_query_arguments_are_checked(store: AuditStore) -> None:
    with pytest.raises(ValueError):
        store.query(Query(), after="not-a-cursor")
    with pytest.raises(ValueError):
        store.query(Query(), limit=0)


# the columns the indexes on entries hold
INDEXED_COLUMNS = {
    "sqlite": "SELECT c.name FROM pragma_index_list('entries') AS i, "
              "pragma_index_info(i.name) AS c",
    "postgresql": "SELECT a.attname FROM pg_index AS i JOIN pg_attribute AS a "
                  "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                  "WHERE i.indrelid = 'entries'::regclass"}


def test_the_parties_of_requests_are_read_by_event_id_and_no_index_slows_each_append(
        store: AuditStore, db: str) -> None:
    """Every append updates each index on entries (the audit consumer's, thousands of events a
    second): one on request_id, for the oversight inquiry's parties alone, cost ~24-38 µs of ~120
    an event (1M entries, batches of 5,000). parties reads a request's entries by event id."""
    filled(store, 4)
    connection, dialect = connect(db)
    with closing(connection):
        indexed = {c for c, in connection.execute(INDEXED_COLUMNS[dialect.name])}
    assert "event_id" in indexed and "request_id" not in indexed
    assert store.parties(["req-0001", "req-0009"]) == {"req-0001": {HOLDERS[1], HOLDERS[2]}}


def test_the_parties_of_a_request_are_those_of_its_own_entries_whatever_its_id(
        store: AuditStore, db: str) -> None:
    """parties reads a request's entries as the event ids that begin with its id and ':': a
    request whose id begins another's (and its ':'), or is cut short with it to the column's
    length, is told its own holders alone, whatever order the database collates text in (ICU's
    root locale, an operator's PostgreSQL may have, orders ';' before ':')."""
    if db.startswith(POSTGRESQL_SCHEMES):
        tamper(db, ('ALTER TABLE entries ALTER COLUMN event_id TYPE TEXT COLLATE "und-x-icu"',
                    ()))
    ids = ["abc", "abc:1", "abc;", "abc-", "ab", "r\n", "r\n:", "x" * (COLUMN_CHARS - 1),
           "y" * (COLUMN_CHARS + 40)]
    holders = {r: {HOLDERS[n % 4], HOLDERS[(n + 1) % 4]} for n, r in enumerate(ids)}
    for n, r in enumerate(ids):
        store.append(*item(replace(event(n), event_id=event_id(r, f"LINKAGE@t:0:{n}"),
                                   request_id=r)))
    assert store.parties(ids) == holders
    assert store.parties(["abc", "abd", "y" * COLUMN_CHARS]) == {
        "abc": holders["abc"], "y" * COLUMN_CHARS: holders["y" * (COLUMN_CHARS + 40)]}


def test_person_entries_come_with_proofs_against_the_signed_head(store: AuditStore) -> None:
    filled(store, 22)
    page = store.by_person(PERSONS[2], limit=5)
    head = page.head
    assert head is not None and head.head.size == store.size() == 22
    assert verify_head(head, store.signer.public_key)
    assert [e.serial for e in page.entries] == [2, 5, 8, 11, 14]
    for entry in page.entries:
        assert entry.event.person == PERSONS[2] and entry.proof is not None
        assert includes(head.head, entry.serial, entry.leaf, entry.proof)
        assert not includes(head.head, entry.serial + 1, entry.leaf, entry.proof)
        assert not includes(head.head, entry.serial, entry.leaf + b"!", entry.proof)
    rest = store.by_person(PERSONS[2], limit=5, after=page.next_cursor)
    assert [e.serial for e in rest.entries] == [17, 20]
    assert rest.next_cursor is None
    assert store.heads()[-1] == head  # the head given out is kept in the history
    assert SignedHead.from_json(head.to_json()) == head


# ---- readers ----

def test_what_opens_the_store_with_the_public_key_alone_reads_it_as_it_grows_and_writes_nothing(
        store: AuditStore, db: str) -> None:
    """My Portal, `audit query` and `audit verify` open the store with the head key's public
    half: the connection itself refuses writes (what reads the log cannot change it), and each
    read sees what the writer appended."""
    filled(store, 8)
    with AuditStore(db, Signer.public()) as reader:
        assert reader.size() == 8
        store.append(*item(event(100)))
        assert reader.size() == 9 and reader.entry(8) == store.entry(8)
        for statement in ("DELETE FROM entries", "DROP TABLE heads"):
            with pytest.raises(Exception, match=r"read-?only"):
                reader._db.execute(statement)
    assert store.size() == 9 and [e.serial for e in store.query(Query()).entries] == [*range(9)]


# run in a folder it may not write in: each line on stdin, the size and the latest entry read
_READER = """
import sys
from audit.heads import Signer
from audit.store import AuditStore, default_path
with AuditStore(default_path(), Signer.public()) as store:
    for _ in sys.stdin:
        size = store.size()
        print(size, store.entry(size - 1).event.request_id, flush=True)
"""


@pytest.mark.skipif(not can_mount_read_only(), reason="needs user and mount namespaces")
def test_a_reader_in_a_read_only_folder_reads_what_the_writer_appends_while_it_has_the_store_open(
        state: Path) -> None:
    """My Portal with audit/ mounted read-only (compose.yaml): while the audit consumer has the
    store open, its -wal and -shm files are there, and a reader that may not write in the
    folder (SQLite 3.22 and later) reads each entry appended, the WAL checkpointed and restarted
    between; once the last connection has closed the store they are gone, and a reader there
    cannot open it: it says why."""
    path = default_path()
    query = [str(Path(sys.executable).with_name("renkei")), "audit", "query"]
    with AuditStore(path, Signer.load_or_create(), head_every=4) as writer:
        reader = subprocess.Popen(with_read_only([path.parent], [sys.executable, "-c", _READER]),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert reader.stdin is not None and reader.stdout is not None
        try:
            for n in range(0, 1200, 300):
                writer.append_many(item(event(m)) for m in range(n, n + 300))
                reader.stdin.write("\n")
                reader.stdin.flush()
                assert reader.stdout.readline().split() == [str(n + 300), f"req-{n + 299:04d}"]
                with closing(sqlite3.connect(path)) as other:
                    assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        finally:
            reader.stdin.close()
            assert reader.wait(30) == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["audit.db", "head-key.json"]
    closed = subprocess.run(with_read_only([path.parent], query), capture_output=True, text=True)
    assert closed.returncode == 1
    said_in_one_line(closed.stderr, f"cannot open the store at {path}: unable to open database "
                                    "file (read-only: the store must be there, and, in a folder")
    assert subprocess.run(query, capture_output=True).returncode == 0  # it may make them here


# ---- the detector's memory ----

def test_alerts_are_kept_once_with_their_batch(store: AuditStore) -> None:
    batch = [item(event(n)) for n in range(4)]
    alerts = [raised(batch[1][0]), raised(batch[3][0]), raised(batch[3][0], REPEATED_PERSON)]
    store.append_many(batch, alerts)
    store.append_many(batch[2:], alerts[1:])  # a batch replayed after a crash raises them again
    assert sorted(store.raised_since(T0), key=str) == sorted(alerts, key=str)  # in no order
    later = store.raised_since(T0 + timedelta(minutes=2))
    assert sorted(later, key=str) == sorted(alerts[1:], key=str)
    assert list(store.raised_since(T0, REPEATED_PERSON)) == alerts[2:]


def test_the_recent_past_comes_in_the_order_it_was_appended(store: AuditStore) -> None:
    late = [event(n, at=T0 + timedelta(minutes=10 - n % 2 / 2)) for n in range(5)]  # 10, 9.5, …
    store.append_many(item(e) for e in [event(90, at=T0), *late])
    since = T0 + timedelta(minutes=9.5)
    read_at = [(e, None) for e in late]  # none dated ahead of its reading
    assert list(store.recent_events(since, page=2)) == read_at  # from late[0]: appended first
    assert list(store.recent_events(T0 + timedelta(minutes=10))) == read_at
    assert list(store.recent_events(T0 + timedelta(minutes=1))) == read_at
    assert list(store.recent_events(T0 + timedelta(minutes=11))) == []


@pytest.mark.parametrize("late", [False, True])
def test_a_detector_resumed_from_the_store_raises_what_the_stopped_one_would_have(
        store: AuditStore, late: bool) -> None:
    """Of the log in time order, and of the log as several partitions deliver it, each event
    up to the rules' lateness late: the store gives back the events the windows hold (a late
    one appended after the first of the horizon), and the alerts on them."""
    log = shuffled(a_day_and_more(), RESUMING.lateness, 7) if late else a_day_and_more()
    uninterrupted = Detector(RESUMING)
    alerts = [uninterrupted.observe(log[n:n + 50]) for n in range(0, len(log), 50)]
    for batch, raised_then in enumerate(alerts):
        start = 50 * batch
        if batch % 7 == 3:  # the consumer restarts here
            after = [a for later in alerts[batch:] for a in later]
            now = max(e.occurred_at for e in log[:start])
            assert resumed(store, RESUMING, now).observe(log[start:]) == after, f"at {start}"
        store.append_many((item(e) for e in log[start:start + 50]),
                          [Raised.of(a) for a in raised_then])


ReadBatch = tuple[list[AccessLogEvent], datetime]  # a batch, and when the consumer read it
Told = ReadBatch | datetime  # a batch read then, or the consumer caught up then


def batches_of(log: list[AccessLogEvent], size: int) -> list[ReadBatch]:
    """The log in batches of `size`, each read as its latest event came (none dated ahead)."""
    return [(batch, max(e.occurred_at for e in batch))
            for batch in (log[n:n + size] for n in range(0, len(log), size))]


def never_stopped(rules: Rules, told: Sequence[Told]) -> list[list[Alert]]:
    """The alerts of a consumer that never stopped told each batch (read then) and each time it
    caught up, in order, its store asked of the bindings of the batches before: per one told."""
    stored: dict[tuple[str, str], datetime] = {}
    detector = Detector(rules, lambda holder, person: stored.get((holder, person)))
    raised: list[list[Alert]] = []
    for step in told:
        if isinstance(step, datetime):
            raised.append(detector.caught_up(step))
            continue
        batch, read = step
        raised.append(detector.observe(batch, read))
        for pair, at in ((binding_of(e), e.occurred_at) for e in batch):
            if pair is not None:
                stored[pair] = min(at, stored.get(pair, at))
    return raised


def appended_unjudged(store: AuditStore, rules: Rules, told: Sequence[Told]) -> None:
    """What a restarted consumer is told while its detector re-reads: each batch appended,
    unjudged (read then), each time it caught up kept."""
    for step in told:
        if isinstance(step, datetime):
            store.unjudged_caught_up(step)
        else:
            batch, read = step
            store.append_many((item(e) for e in batch), read_ahead=rules.read_ahead(batch, read),
                              unjudged=read)


def resumed_and_told(store: AuditStore, rules: Rules, now: datetime, until: int | None = None
                     ) -> tuple[Detector, list[Alert]]:
    """A detector restarted at `now`: the store's horizon re-read before its unjudged entries,
    then told what was kept unjudged in order (`until` of them, if given: then a crash), the
    alerts it raised stored as the consumer does; and those alerts."""
    detector = Detector(rules, bound := BoundBefore(store))
    reread(detector, store, now, store.unjudged_since())
    raised: list[Alert] = []
    for _ in itertools.repeat(None) if until is None else range(until):
        if (told := store.first_unjudged()) is None:
            break
        now_raised = tell(store, detector, bound, told)
        store.judged([Raised.of(a) for a in now_raised], told)
        raised += now_raised
    return detector, raised


@pytest.mark.parametrize("crash", [9, 24])
def test_entries_appended_while_the_detector_rereads_are_judged_as_the_stopped_one_would_have(
        store: AuditStore, crash: int) -> None:
    """Batches appended while a restarted consumer's detector re-read its horizon (the store's
    appends not held for it) are kept unjudged, across a crash while it is told them: the next
    restart re-reads the horizon ending at the first of them not told (not at the last appended:
    a crash in a re-read of minutes left minutes of them, here up to hours) and is told those,
    raising with the later batches the alerts of a consumer that never stopped, none lost, none
    twice."""
    told = batches_of(a_day_and_more(), 50)
    alerts = never_stopped(RESUMING, told)
    restart = 3
    for (batch, _), raised_then in zip(told[:restart], alerts[:restart], strict=True):
        store.append_many((item(e) for e in batch), [Raised.of(a) for a in raised_then])
    appended_unjudged(store, RESUMING, told[restart:crash])
    assert store.unjudged_since() == 50 * restart
    _, before_the_crash = resumed_and_told(store, RESUMING, told[crash][1], (crash - restart) // 2)
    restarted, judged = resumed_and_told(store, RESUMING, told[crash][1])
    assert store.unjudged_since() is None and store.first_unjudged() is None
    later: list[Alert] = []
    for batch, read in told[crash:]:  # live: each batch appended with its alerts
        later += (raised := restarted.observe(batch, read))
        store.append_many((item(e) for e in batch), [Raised.of(a) for a in raised])
    assert sorted(said(before_the_crash + judged + later)) == sorted(
        said(a for raised in alerts[restart:] for a in raised))
    assert any(before_the_crash) and any(judged) and any(later)


def test_a_binding_appended_after_an_unjudged_request_excuses_it_no_more_than_then(
        store: AuditStore) -> None:
    """A binding made before a linkage but read past the lateness after it (another partition
    late) came too late for the consumer that never stopped: the linkage alerted. Judged after
    a restart, the binding in the store by then, the store is asked as it stood when the linkage
    came: alerted all the same, and a request after the binding is excused."""
    rules, at = Rules(), T0 + timedelta(minutes=10)
    made = event(0, at, PERSONS[0])  # by HOLDERS[0]
    past = event(5, at + rules.lateness + timedelta(minutes=1), PERSONS[1])  # by HOLDERS[1]
    late = binding(at - timedelta(minutes=1), HOLDERS[0], PERSONS[0])
    again = event(8, past.occurred_at + timedelta(minutes=10), PERSONS[0])  # by HOLDERS[0]
    told: list[Told] = [([e], e.occurred_at) for e in (made, past, late, again)]
    told.append(again.occurred_at + 2 * rules.lateness)
    appended_unjudged(store, rules, told)
    _, judged = resumed_and_told(store, rules, made.occurred_at)
    expected = said(itertools.chain.from_iterable(never_stopped(rules, told)))
    assert said(judged) == expected == [
        (UNBOUND_PERSON, made.event_id), (UNBOUND_PERSON, past.event_id)]
    assert store.bound_since(HOLDERS[0], PERSONS[0], 2) is None
    assert store.bound_since(HOLDERS[0], PERSONS[0], 3) == late.occurred_at


def test_a_batch_appended_while_the_detector_rereads_counts_its_bindings_before_its_requests(
        store: AuditStore) -> None:
    """The consumer that never stopped counts every binding of a batch before judging its
    requests: a binding read after its request in the same batch, an event more than the
    lateness later between them, excuses it. A restarted consumer tells its detector that batch
    as one, once it has re-read: no alert for it either (told one event at a time, the later
    event took the decision before the binding was counted)."""
    rules, at = Rules(), T0 + timedelta(minutes=10)
    made = event(0, at, PERSONS[0])  # by HOLDERS[0]
    unbound = event(2, at, PERSONS[2])  # by HOLDERS[2], bound by nothing
    later = binding(at + rules.lateness + timedelta(minutes=1), HOLDERS[1], PERSONS[1])
    late = binding(at - timedelta(minutes=1), HOLDERS[0], PERSONS[0])
    told: list[Told] = [([made, unbound, later, late], later.occurred_at + timedelta(seconds=1)),
                        later.occurred_at + 2 * rules.lateness]
    appended_unjudged(store, rules, told)
    _, judged = resumed_and_told(store, rules, at)
    expected = said(itertools.chain.from_iterable(never_stopped(rules, told)))
    assert said(judged) == expected == [
        (UNBOUND_PERSON, unbound.event_id)]


def test_a_binding_read_after_a_caught_up_consumer_alerted_its_request_excuses_it_no_more(
        store: AuditStore) -> None:
    """A consumer that never stopped, caught up past a request's lateness with no binding read,
    alerts it: a binding made before it read after that excuses it no more. A restarted one
    keeps the times it caught up while its detector re-reads and tells them between the batches
    as they came: the request alerted all the same (told the batches alone, the binding excused
    it), across a crash between the two."""
    rules, at = Rules(), T0 + timedelta(minutes=10)
    made = event(0, at, PERSONS[0])  # by HOLDERS[0]
    late = binding(at - timedelta(minutes=1), HOLDERS[0], PERSONS[0])
    due = at + rules.lateness + timedelta(minutes=1)
    told: list[Told] = [([made], at + timedelta(seconds=1)), due - timedelta(minutes=2), due,
                        ([late], due + timedelta(minutes=1)), due + 2 * rules.lateness]
    appended_unjudged(store, rules, told)
    _, first = resumed_and_told(store, rules, at, 2)  # then a crash
    _, judged = resumed_and_told(store, rules, at)
    expected = said(itertools.chain.from_iterable(never_stopped(rules, told)))
    assert said(first + judged) == expected == [
        (UNBOUND_PERSON, made.event_id)]


def test_an_event_older_than_the_last_purge_cutoff_is_judged_by_neither_consumer(
        store: AuditStore) -> None:
    """An event older than the last purge's cutoff (a writer's clock years behind) is not
    logged: a consumer that never stopped judges a batch's new events (new_events), a restarted
    one what it appended unjudged, and the re-read after a restart what the log keeps; none of
    them, so none judges it (an alert on it would name an entry no log holds, and be raised or
    not as the consumer happened to restart)."""
    rules = Rules()
    [purge] = store.purge(T0)
    old = event(0, purge.cutoff - timedelta(days=1), PERSONS[0])  # by HOLDERS[0], unbound
    fresh = event(2, T0 + timedelta(minutes=10), PERSONS[2])  # by HOLDERS[2], unbound
    read = fresh.occurred_at + timedelta(seconds=1)
    live = never_stopped(rules, [(new_events(store, [item(old), item(fresh)]), read),
                                 read + 2 * rules.lateness])
    appended_unjudged(store, rules, [([old, fresh], read), read + 2 * rules.lateness])
    _, judged = resumed_and_told(store, rules, T0)
    assert said(judged) == said(itertools.chain.from_iterable(live)) == [
        (UNBOUND_PERSON, fresh.event_id)]


def said(alerts: Iterable[Alert]) -> list[tuple[str, str]]:
    return [(a.rule, a.event_id) for a in alerts]


def test_a_detector_resumed_after_an_event_dated_far_ahead_raises_what_the_stopped_one_would_have(
        store: AuditStore) -> None:
    """An event dated a year ahead in the store (its writer's clock set wrong) ended every
    restarted consumer's horizon a year ahead: its detector re-read every event appended since
    that one (a year's log, at each start, until the year had passed), took the year-ahead time
    for its latest again and decided each request about an unbound person at once. The horizon
    now ends at the latest event by the restart's time and the event counts as of it, as it did
    when read: the restarted detector raises what the stopped one would have."""
    log = a_day_and_more()
    ahead = linkage(log[10].occurred_at + timedelta(days=365), "clock", PERSONS[1])
    log.insert(10, ahead)
    batches = [log[n:n + 50] for n in range(0, len(log), 50)]
    reads = [max(e.occurred_at for e in batch if e != ahead) for batch in batches]
    uninterrupted = Detector(RESUMING)
    alerts = [uninterrupted.observe(batch, read)
              for batch, read in zip(batches, reads, strict=True)]
    assert any(a.event_id == ahead.event_id for raised_then in alerts for a in raised_then)
    for n, batch in enumerate(batches):
        if n % 7 == 3:  # the consumer restarts here
            restarted = resumed(store, RESUMING, reads[n - 1])
            assert [restarted.observe(b, read) for b, read in
                    zip(batches[n:], reads[n:], strict=True)] == alerts[n:], f"at batch {n}"
        store.append_many((item(e) for e in batch), [Raised.of(a) for a in alerts[n]])


def test_a_detector_resumed_places_an_event_dated_far_ahead_where_it_did_before_the_stop(
        store: AuditStore) -> None:
    """An event dated far ahead (its writer's clock set wrong) counts as of its reading; a
    restarted detector re-read it as of the restart, or not at all if the horizon, found by the
    events' own times, began after it: its request's decision on an unbound person was taken and
    alerted as of the restart (the same alert, another time), or never taken (no alert), and it
    was counted in the windows minutes later than before (a false REPEATED_PERSON alert once its
    requester's clock was set right). It is placed as before the stop, at the time it was read,
    which the store keeps."""
    rules, year, minute = Rules(), timedelta(days=365), timedelta(minutes=1)
    t = OFFICE
    first, ahead = linkage(t + year, "other-clock", PERSONS[2]), linkage(t + year, "clock",
                                                                        PERSONS[1])
    batches = [([first, linkage(t, "city", PERSONS[0]), ahead], t),
               ([linkage(t + 2 * minute, "city", PERSONS[0])], t + 2 * minute),
               ([linkage(t + 10 * minute, "city", PERSONS[0])], t + 10 * minute),
               ([linkage(t + m * minute, "clock", PERSONS[1]) for m in range(59, 63)],
                t + 62 * minute),
               ([linkage(t + 70 * minute, "city", PERSONS[0])], t + 70 * minute)]
    uninterrupted = Detector(rules)
    alerts = [uninterrupted.observe(batch, read) for batch, read in batches]
    assert {(UNBOUND_PERSON, e.event_id, t) for e in (first, ahead)} <= {
        (a.rule, a.event_id, a.occurred_at) for raised_then in alerts for a in raised_then}
    assert REPEATED_PERSON not in [a.rule for raised_then in alerts for a in raised_then]
    for n, (batch, read) in enumerate(batches):
        if n:  # the consumer restarts a minute after the last batch
            restarted = resumed(store, rules, batches[n - 1][1] + minute)
            assert [restarted.observe(b, r) for b, r in batches[n:]] == alerts[n:], f"at {n}"
        store.append_many((item(e) for e in batch), [Raised.of(a) for a in alerts[n]],
                          rules.read_ahead(batch, read))


# ---- retention ----

def test_an_entry_the_purge_leaves_is_logged_once_not_once_a_step(
        store: AuditStore, db: str, caplog: pytest.LogCaptureFixture) -> None:
    """An entry whose bytes are not the tree's stays, and is logged: it was found again, and
    logged again, by each step of the purge after the one it was found in (20,000 entries a
    step: a day's purge of a nation's log, hundreds of steps)."""
    days = [event(n, at=datetime(2014, 6, 1 + n, tzinfo=UTC)) for n in range(10)]
    store.append_many(item(e) for e in days)
    tamper(db, ("UPDATE entries SET leaf = ? WHERE serial = 1",
                (CODEC.encode(replace(days[1], data_type="pension")),)))
    records = store.purge(datetime(2021, 6, 20, tzinfo=UTC), step=2)
    assert len(records) >= 5 and [e.serial for e in store.query(Query()).entries] == [1]
    assert caplog.text.count("serial 1 not purged") == 1, caplog.text


def test_purge_goes_in_steps_of_the_oldest_each_a_transaction_and_record(
        store: AuditStore) -> None:
    """One transaction deleted all that had expired, holding the write lock 25 µs an entry: a
    day's purge of a nation's log, millions, past the 30 s the audit consumer waits for it.
    It goes a step of entries at a time, oldest first, each step signed with the time it purged
    up to; together they purge what one would, and verify as one."""
    days = [event(n, at=datetime(2014, 6, 1 + n, tzinfo=UTC)) for n in range(10)]
    days.insert(3, event(10, at=days[2].occurred_at))  # a tie with the first step's last
    store.append_many(item(e) for e in days)
    records = store.purge(datetime(2021, 6, 7, 12, tzinfo=UTC), step=3)  # cutoff 2014-06-07 12:00
    assert [r.ranges for r in records] == [((0, 4),), ((4, 7),), ((7, 8),)]
    assert [r.cutoff for r in records] == [datetime(2014, 6, 3, 0, 0, 0, 1000, tzinfo=UTC),
                                           datetime(2014, 6, 6, 0, 0, 0, 1000, tzinfo=UTC),
                                           datetime(2014, 6, 7, 12, tzinfo=UTC)]
    assert [e.serial for e in store.query(Query()).entries] == list(range(8, 11))
    report = store.verify(decode_event)
    assert report.ok, report.findings
    assert store.purge(datetime(2021, 6, 7, 12, tzinfo=UTC), step=3)[-1].ranges == ()


def test_purge_removes_old_entries_and_keeps_proofs_and_heads(store: AuditStore) -> None:
    years = [event(n, at=datetime(2014 + n, 6, 1, tzinfo=UTC)) for n in range(10)]
    store.append_many((item(e) for e in years), [raised(years[1]), raised(years[5])])
    before = store.sign_head()
    [record] = store.purge(datetime(2024, 1, 1, tzinfo=UTC))  # cutoff 2017-01-01
    assert record.cutoff == datetime(2017, 1, 1, tzinfo=UTC)
    assert (record.count, record.ranges) == (3, ((0, 3),))
    assert [e.serial for e in store.query(Query()).entries] == list(range(3, 10))
    assert store.append(*item(years[1])) is None  # a replay of a purged event stays purged
    assert list(store.raised_since(years[0].occurred_at)) == [raised(years[5])]  # its alert too
    store.append(*item(event(20, at=datetime(2024, 2, 1, tzinfo=UTC))))
    after = store.head()
    assert consistent(before.head, after.head,
                      store.consistency_proof(before.head.size, after.head.size))
    page = store.by_person(years[4].person or "", limit=100)
    assert page.entries and all(e.proof and includes(after.head, e.serial, e.leaf, e.proof)
                                for e in page.entries)
    for entry in page.entries:
        old_proof = store.inclusion_proof(entry.serial, before.head.size)
        assert includes(before.head, entry.serial, entry.leaf, old_proof)
    report = store.verify(decode_event)
    assert report.ok, report.findings
    assert (report.tree_size, report.entries, report.purged) == (11, 8, 3)
    assert store.purges() == [record]


@pytest.mark.usefixtures("secure_delete_off")
def test_a_purged_entry_leaves_no_trace_in_the_stores_file(
        state: Path, tmp_path: Path, clock: Clock) -> None:
    """A SQLite built without SQLITE_SECURE_DELETE left a deleted row's bytes in its page and
    the pages it freed: a purged entry's person stayed in the file past the retention; now
    overwritten."""
    gone, kept = "GONE0000001", "KEPT0000002"
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditStore(url, Signer.load_or_create(), head_every=4, clock=clock) as store:
        store.append_many([item(event(0, datetime(2014, 6, 1, tzinfo=UTC), gone)),
                           item(event(1, datetime(2023, 6, 1, tzinfo=UTC), kept))], [])
        assert store.purge(datetime(2024, 1, 1, tzinfo=UTC))[-1].count == 1
    stored = b"".join(f.read_bytes() for f in tmp_path.iterdir() if f.is_file())
    assert gone.encode() not in stored and kept.encode() in stored


def test_purge_goes_by_the_entries_signed_bytes_not_their_time_column(
        store: AuditStore, db: str, caplog: pytest.LogCaptureFixture) -> None:
    years = [event(n, at=datetime(2010 + n, 1, 1, tzinfo=UTC)) for n in range(6)]
    store.append_many(item(e) for e in years)
    backdated, other = millis(years[0].occurred_at), replace(years[1], data_type="pension")
    tamper(db, ("UPDATE entries SET occurred_at = ? WHERE serial = 5", (backdated,)),
           ("UPDATE entries SET leaf = ? WHERE serial = 1", (CODEC.encode(other),)))
    [record] = store.purge(datetime(2020, 6, 1, tzinfo=UTC))  # cutoff 2013-06-01
    assert record.ranges == ((0, 1), (2, 4))
    assert "serial 1 not purged" in caplog.text and "serial 5 not purged" in caplog.text
    assert sorted(e.serial for e in store.query(Query()).entries) == [1, 4, 5]
    assert kinds(store.verify(decode_event)) == {
        ("modified", "serial 1"), ("column", "serial 5"), ("retention", "serial 5")}


def test_a_binding_stays_made_when_its_entry_is_purged(store: AuditStore) -> None:
    made = binding(datetime(2016, 1, 5, 1, tzinfo=UTC), HOLDERS[0], PERSONS[0])
    store.append_many([item(made), item(event(1, at=made.occurred_at, person=PERSONS[0]))])
    store.purge(datetime(2024, 6, 1, tzinfo=UTC))  # cutoff 2017-06-01
    assert store.query(Query()).entries == ()
    assert store.bound_since(HOLDERS[0], PERSONS[0]) == made.occurred_at
    assert store.bound_since(HOLDERS[0], PERSONS[0], before=2) == made.occurred_at
    assert store.bound_since(HOLDERS[1], PERSONS[0]) is None  # a linkage binds no one
    monday = datetime(2024, 6, 3, 1, tzinfo=UTC)  # 10:00 JST
    later = [event(n, at=monday, person=PERSONS[0]) for n in (4, 5)]  # by HOLDERS[0], [1]
    alerts = decided(Detector(Rules(), store.bound_since), later)
    assert [(a.rule, a.requester) for a in alerts] == [(UNBOUND_PERSON, HOLDERS[1])]
    assert store.verify(decode_event).ok


@pytest.mark.parametrize("resuming", [False, True])
def test_a_binding_the_store_holds_excuses_only_the_linkages_made_at_or_after_it(
        store: AuditStore, resuming: bool) -> None:
    """The store kept which holder a binding gave which person, not when: asked of a linkage
    read after the binding was stored (late, from another partition), or at the decision on one
    re-read resuming, a binding made after the linkage excused it, and the oversight body was
    not told of a holder querying a person it had not bound then; one made before still does."""
    rules, at = Rules(), T0 + timedelta(minutes=10)
    made = [event(0, at, PERSONS[0]), event(12, at, PERSONS[1])]  # both by HOLDERS[0]
    bindings = [binding(at + timedelta(minutes=1), HOLDERS[0], PERSONS[0]),
                binding(at - timedelta(minutes=1), HOLDERS[0], PERSONS[1])]
    if resuming:  # all read before the stop, the linkages' decisions waiting
        store.append_many(item(e) for e in made + bindings)
        alerts = resumed(store, rules, at).caught_up(
            at + rules.lateness + timedelta(milliseconds=1))
    else:  # the bindings read in the batches before the linkages
        store.append_many(item(b) for b in bindings)
        alerts = decided(resumed(store, rules, at), made)
    assert [(a.rule, a.event_id) for a in alerts] == [(UNBOUND_PERSON, made[0].event_id)]


def test_a_store_made_before_the_bindings_table_keeps_its_bindings(
        state: Path, db: str, clock: Clock, store: AuditStore) -> None:
    store.append_many([item(binding(T0 + timedelta(hours=1), HOLDERS[0], PERSONS[0])),
                       item(binding(T0, HOLDERS[0], PERSONS[0])),
                       item(event(1, person=PERSONS[1]))])
    store.close()
    tamper(db, ("DROP TABLE bindings", ()))
    with AuditStore(db, Signer.load_or_create(), clock=clock) as upgraded:
        upgraded.purge(T0 + timedelta(days=8 * 366))
        assert upgraded.bound_since(HOLDERS[0], PERSONS[0]) == T0  # the earliest binding's
        assert upgraded.bound_since(HOLDERS[1], PERSONS[1]) is None


def test_a_store_made_before_the_bindings_time_takes_it_from_its_entries(
        state: Path, db: str, clock: Clock, store: AuditStore) -> None:
    """A store whose `bindings` kept no time gets its column, each pair's earliest binding's
    time from the entries; a pair whose binding entries were all purged stays bound, since
    the epoch (before the cutoff, when exactly no longer known)."""
    store.append_many([item(binding(datetime(2010, 1, 5, tzinfo=UTC), HOLDERS[1], PERSONS[1])),
                       item(binding(T0 + timedelta(hours=1), HOLDERS[0], PERSONS[0])),
                       item(binding(T0, HOLDERS[0], PERSONS[0]))])
    store.purge(datetime(2018, 1, 5, tzinfo=UTC))  # cutoff 2011-01-05
    store.close()
    tamper(db, ("ALTER TABLE bindings DROP COLUMN occurred_at", ()))
    with AuditStore(db, Signer.load_or_create(), clock=clock) as upgraded:
        assert upgraded.bound_since(HOLDERS[0], PERSONS[0]) == T0
        assert upgraded.bound_since(HOLDERS[1], PERSONS[1]) == EPOCH
        assert upgraded.bound_since(HOLDERS[1], PERSONS[0]) is None
        upgraded.append_many([item(binding(T0 - timedelta(days=1), HOLDERS[0], PERSONS[0])),
                              item(binding(T0 + timedelta(days=1), HOLDERS[0], PERSONS[0]))])
        assert upgraded.bound_since(HOLDERS[0], PERSONS[0]) == T0 - timedelta(days=1)


def test_a_purged_entry_is_found_by_its_leaf_hash_through_an_index(
        state: Path, db: str, clock: Clock, store: AuditStore) -> None:
    """purged_serial read every purged range's leaf hashes (1M purged entries: ~45 ms a call,
    each batch of an unaligned replay); now a key on the hashes the purges kept, which a store
    made before it fills from its purges."""
    items = [item(event(n, at=datetime(2010 + n, 1, 1, tzinfo=UTC))) for n in range(8)]
    store.append_many(items)
    store.purge(datetime(2020, 6, 1, tzinfo=UTC))  # cutoff 2013-06-01: serials 0-3
    store.purge(datetime(2022, 6, 1, tzinfo=UTC))  # 2015-06-01: 4, 5
    wanted = [*range(6), None, None]
    assert [store.purged_serial(leaf) for _, leaf in items] == wanted
    assert store.purged_serial(b"never logged") is None
    store.close()
    tamper(db, ("DROP TABLE purged_leaves", ()))
    with AuditStore(db, Signer.load_or_create(), clock=clock) as upgraded:
        assert [upgraded.purged_serial(leaf) for _, leaf in items] == wanted
    if not db.startswith(POSTGRESQL_SCHEMES):
        raw, _ = connect(db)
        try:
            plan = " ".join(str(row[3]) for row in raw.execute(
                f"EXPLAIN QUERY PLAN {audit.store.PURGED_SERIAL}", (b"h" * 32,)))
        finally:
            raw.close()
        assert "USING COVERING INDEX" in plan and "SCAN" not in plan, plan


def test_the_cutoffs_are_read_from_the_purges_again_only_after_one_more(
        store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The replay asks the live store's cutoffs each batch, and they were read from every purge's
    ranges each time (a purge a day for 7 years: ~14 ms): now again only after a purge."""
    store.append_many(item(event(n, at=datetime(2010 + n, 1, 1, tzinfo=UTC))) for n in range(6))
    kept, read = store.purges, list[int]()

    def purges() -> list[Purge]:
        read.append(len(read))
        return kept()

    monkeypatch.setattr(store, "purges", purges)
    assert [*store.cutoffs(), *store.cutoffs()] == [] and read == []
    store.purge(datetime(2020, 6, 1, tzinfo=UTC))  # cutoff 2013-06-01: serials 0-3
    first = (4, datetime(2013, 6, 1, tzinfo=UTC))
    assert [*store.cutoffs(), *store.cutoffs()] == [first, first] and len(read) == 1
    store.purge(datetime(2022, 6, 1, tzinfo=UTC))  # 2015-06-01: 4, 5
    assert [*store.cutoffs()] == [first, (6, datetime(2015, 6, 1, tzinfo=UTC))]
    assert [*store.cutoffs()] == [*store.cutoffs()] and len(read) == 2


def test_seven_years_back_from_a_leap_day() -> None:
    assert years_before(datetime(2024, 2, 29, 12, tzinfo=UTC), 7) == datetime(
        2017, 2, 28, 12, tzinfo=UTC)


# ---- tamper detection ----

def tamper(db: str, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Change the store's tables behind its back, as an intruder with SQL access would."""
    raw, _ = connect(db)
    try:
        for sql, params in statements:
            raw.execute(sql, params)
    finally:
        raw.close()


def kinds(report: VerifyReport) -> set[tuple[str, str]]:
    return {(f.kind, f.where) for f in report.findings}


def test_an_untouched_store_verifies(store: AuditStore) -> None:
    filled(store)
    report = store.verify(decode_event)
    assert report.ok, report.findings
    assert (report.tree_size, report.entries, report.heads, report.unsigned) == (24, 24, 5, 0)


def test_detects_a_modified_entry(store: AuditStore, db: str) -> None:
    filled(store)
    fifth = store.entry(5)
    assert fifth is not None  # its bytes changed, not its column's type (SQLite's || makes TEXT)
    tamper(db, ("UPDATE entries SET leaf = ? WHERE serial = 5", (fifth.leaf + b"\x00",)))
    assert kinds(store.verify()) == {("modified", "serial 5")}


def test_detects_a_deleted_entry(store: AuditStore, db: str) -> None:
    filled(store)
    tamper(db, ("DELETE FROM entries WHERE serial = 7", ()))
    assert kinds(store.verify()) == {("deleted", "serial 7")}


def test_detects_reordered_entries(store: AuditStore, db: str) -> None:
    filled(store)
    tamper(db, ("UPDATE entries SET serial = -1 WHERE serial = 2", ()),
           ("UPDATE entries SET serial = 2 WHERE serial = 9", ()),
           ("UPDATE entries SET serial = 9 WHERE serial = -1", ()))
    report = store.verify()
    assert kinds(report) == {("reordered", "serial 2"), ("reordered", "serial 9")}
    assert "serial 9" in report.findings[0].detail


def test_detects_an_inserted_entry(store: AuditStore, db: str) -> None:
    filled(store)
    forged = event(500)
    tamper(db, ("INSERT INTO entries SELECT 24, ?, request_id, occurred_at, kind, outcome, "
                "reason, pattern_id, legal_basis, requester, provider, data_type, person, ? "
                "FROM entries WHERE serial = 3", (forged.event_id, CODEC.encode(forged))))
    assert kinds(store.verify()) == {("inserted", "serial 24")}


def test_detects_an_entry_put_back_where_one_was_purged(store: AuditStore, db: str) -> None:
    store.append_many(item(event(n, at=datetime(2010 + n, 1, 1, tzinfo=UTC))) for n in range(6))
    store.purge(datetime(2020, 6, 1, tzinfo=UTC))
    forged = event(0, at=datetime(2010, 1, 1, tzinfo=UTC))
    row = (0, forged.event_id, forged.request_id, 1262304000000, forged.kind, forged.outcome,
           forged.reason, forged.pattern_id, forged.legal_basis, forged.requester,
           forged.provider, forged.data_type, forged.person, CODEC.encode(forged))
    tamper(db, (f"INSERT INTO entries VALUES ({', '.join('?' * len(row))})", row))
    assert ("inserted", "serial 0") in kinds(store.verify())


def purged(store: AuditStore) -> None:
    """Eight entries a year apart from 2010, the first four (serials 0-3) purged."""
    store.append_many(item(event(n, at=datetime(2010 + n, 1, 1, tzinfo=UTC))) for n in range(8))
    store.purge(datetime(2020, 6, 1, tzinfo=UTC))


def test_an_untouched_purged_store_verifies(store: AuditStore) -> None:
    purged(store)
    report = store.verify(decode_event)
    assert report.ok, report.findings
    assert (report.tree_size, report.entries, report.purged) == (8, 4, 4)


@pytest.mark.parametrize(("tampering", "where", "said"), [
    (("UPDATE purged_leaves SET hash = ? WHERE serial = 2", (b"\x00" * 32,)),
     "serial 2", "another hash"),
    (("DELETE FROM purged_leaves WHERE serial >= 1 AND serial < 3", ()),
     "serials 1..2", "no row"),
    (("INSERT INTO purged_leaves (hash, serial) SELECT hash, id FROM nodes WHERE id = 5", ()),
     "serial 5", "no signed purge removed it"),
    (("INSERT INTO purged_leaves (hash, serial) SELECT hash, 1 FROM nodes WHERE id = 5", ()),
     "serial 1", "another hash")], ids=["changed", "removed", "added", "added-beside"])
def test_detects_purged_leaves_that_are_not_the_tree_s(
        store: AuditStore, db: str, tampering: tuple[str, tuple[object, ...]], where: str,
        said: str) -> None:
    """purged_leaves tells a replay where a topic's first, purged, events sit in the log: a
    row changed, removed or added (one that puts event 5 at serial 5, or at purged serial 1)
    would make it line up wrongly."""
    purged(store)
    tamper(db, tampering)
    report = store.verify(decode_event)
    assert kinds(report) == {("purged", where)}, report.findings
    assert said in report.findings[0].detail and "purged_leaves" in report.findings[0].detail


def test_a_purge_of_a_bad_signature_is_one_finding_not_one_more_per_purged_leaf(
        store: AuditStore, db: str) -> None:
    """The rows purged_leaves keeps of a purge record whose signature is bad are that record's,
    found once as its bad signature (its entries gone as deleted), not again each as a row no
    signed purge removed; a row no purge record tells of still is."""
    purged(store)
    tamper(db, ("UPDATE purges SET signature = ?", (b"\x00" * 64,)),
           ("INSERT INTO purged_leaves (hash, serial) SELECT hash, id FROM nodes WHERE id = 5",
            ()))
    assert kinds(store.verify(decode_event)) == {
        ("purge", "purge #1"), *(("deleted", f"serial {n}") for n in range(4)),
        ("purged", "serial 5")}


def test_detects_a_deletion_dressed_up_as_a_purge(store: AuditStore, db: str) -> None:
    filled(store)
    tamper(db, ("DELETE FROM entries WHERE serial = 4", ()),
           ("INSERT INTO purges (purged_at, cutoff, ranges, key_id, signature) "
            "VALUES (0, 0, '[[4,5]]', ?, ?)", (store.signer.key_id, b"\x00" * 64)))
    assert kinds(store.verify()) == {("purge", "purge #1"), ("deleted", "serial 4")}


def test_detects_columns_that_differ_from_the_entry_bytes(store: AuditStore, db: str) -> None:
    filled(store)
    tamper(db, ("UPDATE entries SET person = 'ZZZZZZZZZZZ' WHERE serial = 3", ()))
    assert store.verify().ok  # the tree is intact: only the codec can see this
    report = store.verify(decode_event)
    assert kinds(report) == {("column", "serial 3")}
    assert "person" in report.findings[0].detail


def test_detects_a_rewritten_history_through_the_heads(store: AuditStore, db: str) -> None:
    """Modify an entry and recompute every hash consistently: only the signed heads see it."""
    items = filled(store)
    forged = event(13, person=PERSONS[0])
    leaves = [forged if n == 13 else e for n, (e, _) in enumerate(items)]
    frontier, rows = merkle.Frontier(), []
    for e in leaves:
        for (level, index), h in frontier.append(merkle.leaf_hash(CODEC.encode(e))):
            rows.append(("UPDATE nodes SET hash = ? WHERE id = ?", (h, level << 56 | index)))
    tamper(db, ("UPDATE entries SET person = ?, leaf = ? WHERE serial = 13",
                (forged.person, CODEC.encode(forged))), *rows)
    report = store.verify(decode_event)
    assert {f.kind for f in report.findings} == {"head"}
    first = report.findings[0]
    assert first.where == "head #3 (size 15)"
    assert "not consistent with head #2 (size 10)" in first.detail
    assert "serials 10..14" in first.detail


@pytest.mark.parametrize(("size", "earlier"), [(22, "head #4 (size 20)"),
                                               (12, "head #2 (size 10)")])
def test_detects_a_head_not_consistent_with_an_earlier_one(
        store: AuditStore, db: str, clock: Clock, size: int, earlier: str) -> None:
    """A head signed over another history (a fork), slipped into the store's list."""
    items = filled(store)
    forked = [merkle.leaf_hash(leaf) for _, leaf in items[:size - 1]]
    forked.append(merkle.leaf_hash(CODEC.encode(event(1000))))
    clock.now += timedelta(hours=1)
    fork = store.signer.sign_head(TreeHead(size, merkle.root(forked), clock.now))
    tamper(db, ("INSERT INTO heads (tree_size, root, signed_at, key_id, signature) "
                "VALUES (?, ?, ?, ?, ?)",
                (size, fork.head.root, int(clock.now.timestamp() * 1000), fork.key_id,
                 fork.signature)))
    report = store.verify()
    assert kinds(report) == {("head", f"head #6 (size {size})")}
    assert any(f"not consistent with {earlier}" in f.detail for f in report.findings)


def test_detects_forged_and_unsigned_heads_and_missing_nodes(store: AuditStore, db: str) -> None:
    filled(store)
    tamper(db, ("UPDATE heads SET signature = ? WHERE seq = 2", (b"\x01" * 64,)),
           ("DELETE FROM nodes WHERE id = ?", ((1 << 56) | 3,)))
    found = kinds(store.verify())
    assert ("head", "head #2 (size 10)") in found
    assert ("node", "nodes (1, 3..3)") in found


@pytest.mark.parametrize("signed_at", [-1, 300_000_000_000_000])
def test_a_head_of_a_time_no_head_has_is_a_finding_not_a_traceback(
        store: AuditStore, db: str, signed_at: int) -> None:
    """A head's time edited to before the epoch (which no 8 bytes of a signed head hold) or
    past year 9999 raised OverflowError from verify, query --person and My Portal's pages."""
    filled(store)
    tamper(db, ("UPDATE heads SET signed_at = ? WHERE seq = (SELECT max(seq) FROM heads)",
                (signed_at,)))
    assert "head" in {kind for kind, _ in kinds(store.verify())}
    page = store.query(Query(person=PERSONS[0]), prove=True)
    assert page.head is not None and not page.trusted


def test_a_purge_of_a_time_no_purge_has_is_a_bad_signature_not_a_traceback(
        store: AuditStore, db: str) -> None:
    purged(store)
    tamper(db, ("UPDATE purges SET purged_at = -1", ()))
    assert ("purge", "purge #1") in kinds(store.verify(decode_event))


# ---- heads anchored outside the store ----

def truncate(db: str, keep: int) -> None:
    """Delete the entries from serial `keep` on, with their subtree hashes and the heads that
    sign them, as an intruder would who wants the store to look whole."""
    tamper(db, ("DELETE FROM entries WHERE serial >= ?", (keep,)),
           ("DELETE FROM heads WHERE tree_size > ?", (keep,)),
           *(("DELETE FROM nodes WHERE id >= ? AND id < ?",
              (node_key(level, keep >> level), node_key(level + 1, 0))) for level in range(64)))


def test_a_store_cut_short_with_its_heads_looks_whole_but_not_to_its_anchor(
        store: AuditStore, db: str) -> None:
    filled(store)
    anchored = store.head()
    truncate(db, 20)
    assert store.verify(decode_event).ok, "alone, the store cannot tell"
    report = store.verify(decode_event, anchored=[anchored])
    where = f"anchored head (size 24, {anchored.head.timestamp.isoformat(timespec='seconds')})"
    assert kinds(report) == {("truncated", where)}
    assert report.verdict == (f"TRUNCATED: {where}: the store has 20 entries: serials 20..23 "
                              "are gone with their heads (1 finding(s))")


def test_a_store_grown_after_its_anchored_heads_verifies(store: AuditStore) -> None:
    filled(store, 12)
    anchored = [store.head()]
    store.append_many(item(event(n)) for n in range(12, 30))
    anchored.append(store.head())
    store.append_many(item(event(n)) for n in range(30, 33))
    report = store.verify(decode_event, anchored=anchored)
    assert report.ok, report.findings
    assert (report.tree_size, report.anchored, report.anchor) == (33, 2, anchored[1].head)


def test_a_process_does_not_append_or_sign_over_entries_deleted_behind_its_back(
        store: AuditStore, db: str) -> None:
    """Appended after the gap, or signed, new entries would hide it from every check after."""
    filled(store)
    truncate(db, 20)
    for going_on in (lambda: store.append_many([item(event(100))]), store.head,
                     lambda: store.commit_note(30)):
        with pytest.raises(LostEntries, match=r"the store has 20 entries, this process knew 24: "
                                              r"serials 20\.\.23 were deleted"):
            going_on()
    assert store.size() == 20 and not store.serials([event(100).event_id])


def test_a_smaller_or_forged_head_anchored_later_hides_no_truncation(
        store: AuditStore, db: str) -> None:
    filled(store)
    largest = store.head()
    truncate(db, 17)
    with AuditStore(db, store.signer) as intruder:  # it holds the key: it anchors what is left
        resigned = intruder.sign_head()
    forged = Signer.generate().sign_head(TreeHead(25, largest.head.root, largest.head.timestamp))
    report = store.verify(decode_event, anchored=[largest, resigned, forged])
    assert resigned.head.size == 17 and (report.anchored, report.anchor) == (3, largest.head)
    assert {k for k, _ in kinds(report)} == {"truncated", "anchor"}
    assert report.verdict.startswith("TRUNCATED: anchored head (size 24, ")


# a statement each engine runs for ~4 s
SLOW = {"sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                  "WHERE x < 10000000) SELECT count(*) FROM c",
        "postgresql": "SELECT pg_sleep(4)"}


def test_a_statement_is_interrupted_from_another_thread(db: str) -> None:
    """A connection's interrupt (a portal page's read cancelled, from the event loop's thread)
    stops the statement its thread runs: it fails at once, not after its ~4 s, and the
    connection reads on. (Asked until the statement has ended: one asked before it starts
    stops nothing.)"""
    connection, dialect = connect(db)
    with closing(connection), ThreadPoolExecutor(1) as thread:
        started = time.monotonic()
        running = thread.submit(lambda: connection.execute(SLOW[dialect.name]).fetchone())
        while not running.done():
            connection.interrupt()
            time.sleep(0.05)
        took = time.monotonic() - started
        assert running.exception() is not None and took < 2, f"ran {took:.1f} s"
        assert connection.execute("SELECT 1").fetchone() == (1,)


def held_past_its_check(reads: Stoppable, passed: threading.Event,
                        statement: str | None = None) -> None:
    """Each statement of `reads` (or `statement` only) held once past its check, `passed` set,
    until its read is stopped and 0.1 s more: its interrupt sent meanwhile, to no statement
    yet (the engine's has not started)."""
    check = reads.check

    def checked(sql: str) -> None:
        check(sql)
        if statement is None or sql == statement:
            passed.set()
            reads.stop.wait(30)
            time.sleep(0.1)

    setattr(reads, "check", checked)  # noqa: B010 (a method replaced on the instance)


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_a_read_stopped_as_its_statement_starts_is_interrupted(
        store: AuditStore, db: str) -> None:
    """A reader's read stopped and interrupted once its statement has passed its check and
    before the server starts it (PostgreSQL ignores a cancel that comes while no statement
    runs) is stopped all the same: the statement fails at once, not after its ~4 s. It ran
    to its end, the one cancel lost."""
    stop, passed = threading.Event(), threading.Event()
    with AuditStore(db, Signer.public()) as reader, ThreadPoolExecutor(1) as thread:
        held_past_its_check(cast(Stoppable, reader._db), passed)
        reader.stopped_by(stop)
        running = thread.submit(lambda: reader._db.execute(SLOW["postgresql"]).fetchone())
        assert passed.wait(30)
        started = time.monotonic()
        stop.set()
        reader.interrupt()
        wait([running], 30)
        took = time.monotonic() - started
        assert running.exception() is not None and took < 2, f"ran {took:.1f} s"


def test_a_readers_statements_are_refused_once_its_read_is_stopped(
        store: AuditStore, db: str) -> None:
    """A reader's read stopped between two of its statements (a portal page's, its resident
    gone) runs no further one: each is refused, but the one ending its transaction; its next
    read, under a stop of its own, reads on. The writer's statements are not checked."""
    filled(store, 4)
    stop = threading.Event()
    with AuditStore(db, Signer.public()) as reader:
        reader.stopped_by(stop)
        with pytest.raises(Stopped), reader._read() as cur:
            assert cur.execute("SELECT count(*) FROM entries").fetchone() == (4,)
            stop.set()
            cur.execute("SELECT count(*) FROM entries")
        with pytest.raises(Stopped):
            reader.query(Query())
        reader.stopped_by(threading.Event())
        assert len(reader.query(Query()).entries) == 4
    store.stopped_by(stop)
    assert store.size() == 4


def test_the_commit_note_is_signed_with_its_time_and_a_forged_one_checks_nothing(
        store: AuditStore, clock: Clock, tmp_path: Path) -> None:
    """The note the audit consumer commits: the tree, when, signed by the head key. One signed
    by another key, or whose tree was changed, is FORGED and nothing is checked against it; one
    from before the notes were signed (the tree alone) is read and said unsigned."""
    filled(store)
    signed = Committed.of(7, store.commit_note(7))
    assert signed is not None and (signed.size, signed.at) == (24, clock.now)
    report = store.verify(decode_event, committed=signed)
    assert report.ok and report.commit_signed is True, report.findings
    with AuditStore(tmp_path / "other.db", Signer.generate(), clock=clock) as other:
        filled(other, 30)
        by_another = Committed.of(7, other.commit_note(7))
    for forged in (by_another, replace(signed, size=30)):
        report = store.verify(decode_event, committed=forged)
        where = "the audit consumer's commit (offset 7, size 30)"
        assert kinds(report) == {(FORGED, where)} and report.commit_signed is False, forged
    unsigned = Committed.of(7, f"24 {signed.root.hex()}")
    assert unsigned == replace(signed, at=None, signature=None)
    report = store.verify(decode_event, committed=unsigned)
    assert report.ok and report.commit_signed is None, report.findings


def test_the_commit_note_s_signature_is_checked_once_a_view(
        store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify and the integrity page (verify_outside) check the note's signature once each (an
    Ed25519 check, the real one, counted): each checked it twice, for the report and the
    finding."""
    filled(store)
    signed = Committed.of(7, store.commit_note(7))
    checked: list[bytes] = []

    def counted(public_key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
        checked.append(message)
        return verify_signature(public_key, message, signature)

    monkeypatch.setattr(audit.store, "verify_signature", counted)
    for report in (store.verify(decode_event, committed=signed),
                   store.verify_outside([], signed)):
        assert report.ok and report.commit_signed is True, report.findings
    assert sum(m.startswith(NOTE_CONTEXT) for m in checked) == 2


def test_the_consumer_does_not_start_from_a_forged_commit_note_and_says_so_in_one_line(
        store: AuditStore, clock: Clock, tmp_path: Path) -> None:
    """A note another key signed, of the very tree the store holds, is not entries lost: the
    consumer says the note is forged, not a gap, and where to look, in one line."""
    filled(store)
    with AuditStore(tmp_path / "other.db", Signer.generate(), clock=clock) as other:
        filled(other)
        forged = other.commit_note(7)
    committed = Committed.of(7, forged)
    assert committed is not None and committed.root == merkle.tree_root(store, 24)
    with pytest.raises(ForgedNote) as stopped:
        store.check_commit(7, forged)
    said = _said(stopped.value)
    assert said is not None and "\n" not in said and "gap" not in said, said
    assert said.startswith("the audit consumer's commit (offset 7, size 24): its note's "
                           "signature is not the head key's: a note forged"), said
    assert "head key in keys/audit was replaced" in said and "renkei audit replay" in said
    store.check_commit(7, store.commit_note(7))


@pytest.mark.parametrize("note", ["genuine", "none", "unsigned"])
def test_the_consumer_does_not_start_past_the_last_offset_it_noted(store: AuditStore,
                                                                   note: str) -> None:
    """Its own note (or none, or one from before they were signed) committed again at a later
    offset, as the audit principal may: started from it, the consumer would skip the records
    between, and nothing would tell (the tree is the note's). Its own offset, or one before it
    (a note made, the commit lost in a crash), it starts from."""
    filled(store)
    genuine = store.commit_note(7)
    given = {"genuine": genuine, "none": "", "unsigned": " ".join(genuine.split(" ")[:2])}[note]
    with pytest.raises(ForgedNote) as stopped:
        store.check_commit(12, given)
    said = _said(stopped.value)
    assert said is not None and said.startswith(
        "the audit consumer's commit (offset 12) is past the last offset it noted in this "
        "store (7): started from it, the consumer would skip the records between"), said
    store.check_commit(7, given)
    store.check_commit(5, given if note != "genuine" else "")


@pytest.mark.parametrize("note", ["5 00 -1 00", "-5 00 1 00", "-5 00", "5 zz", "a note"])
def test_a_commit_note_that_cannot_be_read_is_forged_not_a_traceback(store: AuditStore,
                                                                      note: str) -> None:
    """A note with a negative size or time (which no 8-byte field holds), or that is no note,
    is one the head key did not sign: verify says FORGED and the consumer does not start. A
    negative one raised OverflowError from verify, the consumer and recommit alike; the others
    were read as no note, and checked nothing."""
    filled(store)
    committed = Committed.of(7, note)
    assert committed is not None and committed.signed_by(store.signer.public_key) is False
    assert FORGED in {kind for kind, _ in kinds(store.verify(decode_event, committed=committed))}
    with pytest.raises(ForgedNote):
        store.check_commit(7, note)


def test_a_store_cut_short_and_grown_past_its_anchor_again_is_not_consistent_with_it(
        store: AuditStore, db: str) -> None:
    """A consumer started on a store whose newest entries were deleted (or that was restored
    from a backup), with no commit of its own to check it against, appends and anchors heads of
    it: the largest anchored head is then one of the store, and the smaller one that signs the
    lost entries is what tells."""
    filled(store)
    anchored = [store.head()]
    truncate(db, 20)
    with AuditStore(db, store.signer) as restarted:
        restarted.append_many(item(event(n)) for n in range(100, 110))
        anchored.append(restarted.head())
    report = store.verify(decode_event, anchored=anchored)
    assert (report.tree_size, report.anchor) == (30, anchored[1].head)
    where = f"anchored head (size 24, {anchored[0].head.timestamp.isoformat(timespec='seconds')})"
    assert kinds(report) == {("anchor", where)}
    assert "serials 0..23 were changed after it was anchored" in report.findings[0].detail
    assert report.verdict.startswith(f"TAMPERED: {where}: ")


def test_a_store_rewritten_before_its_anchor_is_not_consistent_with_it(
        store: AuditStore, tmp_path: Path) -> None:
    filled(store)
    anchored = store.head()
    with AuditStore(tmp_path / "rewritten.db", store.signer) as rewritten:
        rewritten.append_many(item(replace(event(n), outcome="REJECTED")) for n in range(26))
        report = rewritten.verify(decode_event, anchored=[anchored])
    assert {k for k, _ in kinds(report)} == {"anchor"}
    assert "serials 0..23 were changed after it was anchored" in report.findings[0].detail
    assert report.verdict.startswith("TAMPERED: ")


def test_a_purged_store_verifies_against_its_anchor(store: AuditStore) -> None:
    store.append_many(item(event(n, at=datetime(2014 + n, 6, 1, tzinfo=UTC))) for n in range(10))
    anchored = store.head()
    assert store.purge(datetime(2024, 1, 1, tzinfo=UTC))[-1].count == 3
    report = store.verify(decode_event, anchored=[anchored])
    assert report.ok, report.findings
    assert (report.tree_size, report.entries, report.purged, report.anchor) == (
        10, 7, 3, anchored.head)


def test_the_head_a_check_keeps_for_the_next_is_the_one_the_logs_key_signed(
        store: AuditStore, db: str) -> None:
    """An AnchorCheck checks the next time only the heads anchored since, with the largest this
    one found held: a copy of it with a bad signature anchored before it is not that one, or
    the store, cut short and grown again past it by the consumer going on, passes."""
    filled(store)
    largest = store.head()
    copy = SignedHead(largest.head, largest.key_id, b"\x01" * 64)  # not the log's key's
    checked = [copy, largest]
    kept = held_largest(checked, store.verify_outside(checked, None))
    truncate(db, 20)
    with AuditStore(db, store.signer) as restarted:
        restarted.append_many(item(event(n)) for n in range(100, 110))
        report = store.verify_outside([*kept, restarted.head()], None)
    assert {f.kind for f in report.findings} == {"anchor"}, report.findings


# ---- commands ----

def test_a_person_query_shows_an_entry_replaced_whole_unproved_and_fails(
        store: AuditStore, db: str) -> None:
    """A row replaced whole, another event's columns and bytes (each agreeing with the other, so
    no column is seen edited), is not the leaf the signed head holds at its serial: `audit query
    --person` shows it as the store says, unproved (no proof that would not hold, nor pending),
    the others proved, and exits 1 naming it."""
    store.append_many(item(event(n, person=PERSONS[0])) for n in range(4))
    store.head()
    forged = event(9, person=PERSONS[0])
    tamper(db, ("DELETE FROM entries WHERE serial = 1", ()),
           (audit.store._INSERT, audit.store._row(1, forged, CODEC.encode(forged))))
    result = CliRunner().invoke(audit_cli, ["query", "--person", "--db", db], input=PERSONS[0])
    shown = {e["serial"]: e for e in json.loads(result.stdout)["entries"]}
    assert result.exit_code == 1 and "TAMPERED: no proof of entries 1 holds" in result.stderr
    assert shown[1]["request_id"] == forged.request_id and shown[1].get("unproved")
    assert "inclusion_proof" not in shown[1] and "pending" not in shown[1]
    assert all("inclusion_proof" in shown[n] for n in (0, 2, 3))


@pytest.mark.parametrize("args", [("--holder", HOLDERS[1]), ("--pattern", "P1"),
                                  ("--outcome", "approved"), ("--since", T0.isoformat()), ()])
def test_every_query_shows_an_entry_replaced_whole_unproved_and_fails(
        store: AuditStore, db: str, args: tuple[str, ...]) -> None:
    """`audit query` checked a page against the tree only with --person: by holder, pattern,
    outcome or time, a row replaced whole (another event's columns and bytes) was shown as the
    store says, exit code 0. Every page is proved as a person's is: the row unproved and named,
    exit code 1; the others proved, one appended after the signed head pending."""
    store.append_many(item(event(n)) for n in range(4))
    store.head()
    store.append_many([item(event(4))])
    forged = event(9)
    tamper(db, ("DELETE FROM entries WHERE serial = 1", ()),
           (audit.store._INSERT, audit.store._row(1, forged, CODEC.encode(forged))))
    result = CliRunner().invoke(audit_cli, ["query", "--db", db, *args])
    shown = {e["serial"]: e for e in json.loads(result.stdout)["entries"]}
    assert result.exit_code == 1 and "TAMPERED: no proof of entries 1 holds" in result.stderr
    assert shown[1]["request_id"] == forged.request_id and shown[1].get("unproved")
    assert "inclusion_proof" not in shown[1] and "pending" not in shown[1]
    assert len(shown) >= 2 and all(e.get("pending") if n == 4 else "inclusion_proof" in e
                                  for n, e in shown.items() if n != 1)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # PostgreSQL's columns hold their types
@pytest.mark.parametrize(("column", "made"), [("event_id", "BLOB"), ("person", "BLOB"),
                                              ("leaf", "TEXT")])
def test_a_column_whose_type_was_changed_by_hand_is_tampering_not_a_traceback(
        store: AuditStore, db: str, column: str, made: str) -> None:
    """SQLite lets a column hold another type than the store writes, its bytes the same: `audit
    query` ended in a traceback (a TypeError making an event of an `event_id` or `person` made
    BLOB; sqlite3.OperationalError: Could not decode to UTF-8 column 'leaf'). The entry is shown
    as its signed bytes say, its columns differing (TAMPERED, exit code 1), but for a leaf made
    TEXT, whose bytes are all the entry is and prove as they did; `--person` finds no entry
    whose person is no text, and `audit verify` names the row (it found nothing: it reads every
    column as bytes)."""
    store.append_many(item(event(n, person=PERSONS[0])) for n in range(4))
    store.head()
    tamper(db, (f"UPDATE entries SET {column} = CAST({column} AS {made}) WHERE serial = 1", ()))
    for args, given in ((), ""), (("--person",), PERSONS[0]):
        result = CliRunner().invoke(audit_cli, ["query", "--db", db, *args], input=given)
        assert not isinstance(result.exception, (TypeError, sqlite3.Error)), result.exception
        shown = {e["serial"]: e for e in json.loads(result.stdout)["entries"]}
        if column == "person" and args:  # selected by its person: not found, verify says
            assert sorted(shown) == [0, 2, 3] and result.exit_code == 0
        elif column == "leaf":
            assert shown[1]["event_id"] == event(1).event_id and result.exit_code == 0
            assert "inclusion_proof" in shown[1]  # every page is proved, not --person alone
        else:
            assert shown[1]["columns_differ"] and shown[1]["event_id"] == event(1).event_id
            assert result.exit_code == 1 and "TAMPERED: the columns of entries 1" in result.stderr
    verified = CliRunner().invoke(audit_cli, ["verify", "--no-anchor", "--db", db])
    assert verified.exit_code == 1
    assert f"serial 1: its {column} column holds {made}" in verified.output


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_an_operator_actions_record_made_text_by_hand_is_read_as_its_bytes(
        store: AuditStore, db: str) -> None:
    """`audit actions` ended in sqlite3.OperationalError (Could not decode to UTF-8 column
    'record'): it shows the action its bytes hold, and verify names the row."""
    store.append_many([item(suspension(1))])
    tamper(db, ("UPDATE operator_actions SET record = CAST(record AS TEXT)", ()))
    result = CliRunner().invoke(audit_cli, ["actions", "--db", db])
    assert result.exit_code == 0, result.exception
    assert [a["action_id"] for a in json.loads(result.stdout)["actions"]] == [
        suspension(1).action_id]
    verified = CliRunner().invoke(audit_cli, ["verify", "--no-anchor", "--db", db])
    assert verified.exit_code == 1 and "its record column holds TEXT" in verified.output


def test_a_person_query_shows_an_entry_moved_past_the_trees_end_unproved_not_pending(
        store: AuditStore, db: str) -> None:
    """An entry's serial moved past the tree's end (1 to 100) was shown pending, as if the audit
    consumer's next head would hold it, and the query exited 0: no appended entry lies past the
    tree, and one after the signed head is pending only if its leaf is the tree's at its serial.
    It is shown unproved, the query exits 1 naming it; one appended after the head is pending."""
    store.append_many(item(event(n, person=PERSONS[0])) for n in range(4))
    store.head()
    store.append_many([item(event(4, person=PERSONS[0]))])
    tamper(db, ("UPDATE entries SET serial = 100 WHERE serial = 1", ()))
    result = CliRunner().invoke(audit_cli, ["query", "--person", "--db", db], input=PERSONS[0])
    shown = {e["serial"]: e for e in json.loads(result.stdout)["entries"]}
    assert result.exit_code == 1 and "TAMPERED: no proof of entries 100 holds" in result.stderr
    assert shown[100].get("unproved") and "pending" not in shown[100]
    assert shown[4].get("pending") and all("inclusion_proof" in shown[n] for n in (0, 2, 3))


def test_audit_commands(store: AuditStore, db: str, clock: Clock) -> None:
    store.append_many(item(event(n, at=datetime(2015 + n, 1, 1, tzinfo=UTC))) for n in range(6))
    runner = CliRunner()

    def audit(*args: str, given: str = "") -> tuple[int, str]:
        result = runner.invoke(audit_cli, [*args, "--db", db], input=given)
        return result.exit_code, result.output

    code, out = audit("head")
    shown = json.loads(out)
    assert code == 0 and shown["heads"][0]["tree_size"] == 6
    assert shown["public_key"] == store.signer.public_key.public_bytes_raw().hex()
    code, out = audit("query", "--person", "--limit", "1", given=PERSONS[0])
    page = json.loads(out)
    head = SignedHead.from_json(page["head"])
    first = page["entries"][0]
    assert includes(head.head, first["serial"], CODEC.encode(event(0, at=datetime(
        2015, 1, 1, tzinfo=UTC))), [bytes.fromhex(p) for p in first["inclusion_proof"]])
    code, out = audit("query", "--person", "--after", page["next"],
                      given=f'{{"person": "{PERSONS[0]}"}}')
    assert [e["serial"] for e in json.loads(out)["entries"]] == [3]
    code, out = audit("query", "--since", "2018-01-01", "--outcome", "APPROVED")
    assert [e["serial"] for e in json.loads(out)["entries"]] == [3]
    code, out = audit("purge", "--now", "2024-06-01T00:00:00+09:00")
    assert code == 0 and "purged 3 entries and operator actions older than 2017-06-01" in out
    code, out = audit("verify", "--no-anchor")  # no broker here: test_audit_kafka checks that
    assert code == 0 and "3 entries checked, 0 operator actions checked, 3 purged" in out
    assert "not checked against the anchored heads (--no-anchor)" in out
    tamper(db, ("DELETE FROM entries WHERE serial = 4", ()))
    code, out = audit("verify", "--no-anchor")
    assert code == 1 and "DELETED   serial 4" in out
    assert out.splitlines()[-1] == ("TAMPERED: serial 4: its entry or operator action is gone "
                                    "(not purged) (1 finding(s))")
    code, out = audit("query", "--after", "x")
    assert code == 2


def test_a_query_of_no_id_code_is_refused_not_answered_with_nobody(
        store: AuditStore, db: str) -> None:
    store.append_many(item(event(n)) for n in range(3))
    typed = PERSONS[0].lower()
    for given in (typed, PERSONS[0][:-1], f'{{"person": "{typed}"}}'):
        result = CliRunner().invoke(audit_cli, ["query", "--person", "--db", db], input=given)
        assert result.exit_code == 2 and "not an ID code" in result.output, result.output
        assert PERSONS[0][:-1] not in result.output.upper()  # nothing of it said back


@pytest.mark.parametrize("outcome", ["approved", "Approved", " approved "])
def test_an_outcome_is_found_as_the_log_says_it_in_any_case(store: AuditStore, db: str,
                                                             outcome: str) -> None:
    """`audit query --outcome approved` answered an empty page, as if nothing had been approved,
    though `--action suspend` finds SUSPEND; and its help named DELIVERED, no event's outcome."""
    store.append_many(item(event(n)) for n in range(6))
    shown = CliRunner().invoke(audit_cli, ["query", "--db", db, "--outcome", outcome])
    assert shown.exit_code == 0, shown.output
    assert [e["serial"] for e in json.loads(shown.output)["entries"]] == [0, 3]
    said = CliRunner().invoke(audit_cli, ["query", "--help"]).output
    assert "DELIVERED" not in said and "NOT_FOUND" in said, said


# how each engine tells its plan of a statement, and makes it use an index wherever one serves
PLAN = {"sqlite": ("EXPLAIN QUERY PLAN ", ()),
        "postgresql": ("EXPLAIN ", ("SET enable_seqscan = off",))}


def plans(db: str, statements: Sequence[str]) -> Iterator[str]:
    """The engine's plan of each of `statements` (PLAN), in a line, every `?` given "nobody"."""
    connection, dialect = connect(db)
    explain, session = PLAN[dialect.name]
    with closing(connection):
        for setting in session:
            connection.execute(setting)
        for statement in statements:
            yield " ".join(str(row[-1]) for row in connection.execute(
                explain + statement, ("nobody",) * statement.count("?")))


def test_a_holder_no_entry_names_is_noted_not_answered_as_one_that_did_nothing(
        store: AuditStore, db: str) -> None:
    """`audit query --holder nobody` (and `oversight query`) answered an empty page, as for a
    holder that took part in nothing: a holder no entry of the store names is noted on stderr
    with the names entries give nearest it, exit code 0 still (a holder with no entries yet, or
    none left after the retention, has none); one entries name, left out by the other filters,
    is not. Whether entries name one, and which they name, is read from the indexes of requester
    and provider, not from every entry."""
    from audit.oversight_cli import oversight_cli

    filled(store, 8)

    def asked(group: click.Group, *args: str) -> tuple[list[int], str]:
        result = CliRunner().invoke(group, ["query", "--db", db, *args])
        assert result.exit_code == 0, result.output
        return [e["serial"] for e in json.loads(result.stdout)["entries"]], result.stderr

    for group in (audit_cli, oversight_cli):
        assert asked(group, "--holder", "nobody") == (
            [], "note: no entry of this store names holder 'nobody'\n")
    assert asked(audit_cli, "--holder", "City-B") == (
        [], "note: no entry of this store names holder 'City-B' (nearest: 'city-b', 'city-a')\n")
    assert asked(audit_cli, "--holder", HOLDERS[1], "--pattern", "P9") == ([], "")
    assert asked(audit_cli, "--holder", HOLDERS[3], "--limit", "1") == ([2], "")
    for plan in plans(db, (audit.store._NAMES_HOLDER, *(
            audit.store._NAMED_ON.format(side=side) for side in ("requester", "provider")))):
        assert re.search(r"(COVERING INDEX|Index Only Scan using) entries_", plan), plan
        assert not re.search(r"SCAN entries|Seq Scan", plan), plan


def test_store_urls() -> None:
    with pytest.raises(ValueError, match="unsupported store URL"):
        AuditStore("mysql://audit@db/audit", Signer.generate())


def test_bench_runs_small(tmp_path: Path) -> None:
    results = run_bench(1200, tmp_path / "bench.db", batch=500, samples=3, say=lambda _: None)
    assert results["checkpoints"][0]["size"] == 1200
    assert results["verify"]["ok"] and results["appends_per_second"] > 0


def test_the_benchs_pages_are_proved_as_audit_query_proves_every_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench timed a holder's, a pattern's, an outcome's and a time range's page unproved,
    where `audit query` (and the oversight console) proves every page: each page it times is
    read with its proofs, as a person's was."""
    asked: list[tuple[Query, bool]] = []
    query = AuditStore.query

    def noted(self: AuditStore, where: Query, **kwargs: Any) -> Page:
        asked.append((where, kwargs.get("prove", False)))
        return query(self, where, **kwargs)

    monkeypatch.setattr(AuditStore, "query", noted)
    run_bench(1200, tmp_path / "bench.db", batch=500, samples=2, verify=False,
              say=lambda _: None)
    filters = {next(k for k, v in asdict(where).items() if v is not None) for where, _ in asked}
    assert filters == {"person", "holder", "pattern", "outcome", "since"}
    assert [where for where, prove in asked if not prove] == []


def test_a_holders_absurd_names_are_stored_in_a_safe_form_and_verify(store: AuditStore) -> None:
    """A NUL (PostgreSQL text refuses it) or 10 KB (over its index row size) in a holder's
    names: the columns hold column_text of them, the leaf the exact bytes, and `verify` agrees."""
    nul, long = event(1), event(2)
    nul = replace(nul, event_id=event_id("r\x00" * 100, "LINKAGE"), request_id="r\x00" * 100,
                  pattern_id="P-074\x00", provider="town\\x00")
    long_pattern = "P-" + "7" * 10_000
    long = replace(long, pattern_id=long_pattern, data_type="\x7f")
    items = [item(nul), item(long)]
    assert store.append_many(items) == [0, 1]
    assert store.append_many(items) == [None, None]
    assert store.serials([nul.event_id, long.event_id]).keys() == {nul.event_id, long.event_id}
    first, = store.query(Query(pattern="P-074\x00")).entries
    assert first.event == nul and first.leaf == items[0][1]
    second, = store.query(Query(pattern=long_pattern)).entries
    assert second.event.pattern_id == column_text(long_pattern) and len(
        second.event.pattern_id or "") == COLUMN_CHARS
    assert decode_event(second.leaf) == long
    assert column_text("P-074\x00") != column_text("P-074\\x00") == "P-074\\\\x00"
    report = store.verify(decode_event)
    assert report.ok, report.findings


@pytest.mark.parametrize("unprintable", ["\x01", "\x85", "\\"])
def test_refusals_of_two_messages_under_one_long_unprintable_id_are_both_stored(
        store: AuditStore, unprintable: str) -> None:
    """A refused message's event names it by its request id and its source (rejected@ its
    topic:partition:offset): an id of 128 unprintable characters, escaped four times longer in
    the store's column, cut there at 256 characters before the source, and the refusal of the
    next message under it was dropped as a replay of the first (chaos fuzz --seed 50471: 226
    events). Its event names the id escaped, cut to stay whole in the column; the Rejection
    keeps the id as its holder sent it, cut."""
    request_id = unprintable * 200
    outbox = topics.outbox("nenkin")
    refused = [reject("nenkin", request_id, "MALFORMED", "too long", T0, f"{outbox}:0:{offset}",
                      "MESSAGE") for offset in (5, 6)]
    events = [CODEC.decode(logged.value, AccessLogEvent) for _, logged in refused]
    assert store.append_many([item(e) for e in events]) == [0, 1]
    assert store.serials([e.event_id for e in events]) == {events[0].event_id: 0,
                                                           events[1].event_id: 1}
    assert all(len(column_text(e.event_id)) < COLUMN_CHARS for e in events)
    assert {CODEC.decode(rejection.value, Rejection).request_id for rejection, _ in refused} == {
        request_id[:REQUEST_ID_CHARS]}
    report = store.verify(decode_event)
    assert report.ok, report.findings


def test_a_refusal_of_a_request_id_the_door_takes_names_it_as_its_other_events_do(
        store: AuditStore) -> None:
    """A request id with a backslash the door takes (within REQUEST_ID_CHARS escaped) was logged
    refused under the id escaped ('r\\\\1' for 'r\\1'), while its approval and answer name it
    as it is: one request under two ids in the audit log. Only an id the door refuses is named
    escaped."""
    request_id = "r\\1"
    refused = reject("nenkin", request_id, "SUSPENDED", "suspended", T0,
                     f"{topics.outbox('nenkin')}:0:5", "LINKAGE")
    event = CODEC.decode(refused[1].value, AccessLogEvent)
    assert event.request_id == request_id
    assert store.append_many([item(event)]) == [0]
    assert store.serials([event.event_id]) == {event.event_id: 0}


@pytest.mark.parametrize("args, said", [
    (("--now", "2040-01-01T00:00:00Z"), "is later than now"),
    (("--retention-years", "1"), "1 is not in the range x>=7"),
    (("--retention-years", "3000"), "3000 years before"),
    (("--now", "0003-01-01"), "7 years before 0003-01-01"),
    (("--retention-years", "2025"), "2025 years before"),
    (("--retention-years", str(10**20)), f"{10**20} years before"),
    (("--now", "1975-01-01T00:00:00Z"), "7 years before 1975-01-01 is before 1970")])
def test_a_purge_in_the_future_shorter_than_the_law_or_before_1970_is_refused(
        store: AuditStore, db: str, args: tuple[str, ...], said: str) -> None:
    recent = datetime.now(UTC) - timedelta(days=3)
    store.append_many([item(event(1, at=recent))])
    result = CliRunner().invoke(audit_cli, ["purge", "--db", db, *args])
    assert result.exit_code == 2 and said in result.output, result.output
    assert store.size() == 1 and store.entry(0) is not None and not store.purges()


def test_an_event_older_than_the_last_purges_cutoff_is_logged_as_not_kept(
        store: AuditStore, caplog: pytest.LogCaptureFixture) -> None:
    store.purge(T0 + timedelta(days=365 * 8))
    assert store.append_many([item(event(1))]) == [None]
    assert any(r.levelname == "ERROR" and "req-0001:LINKAGE" in r.getMessage()
               and "not logged" in r.getMessage() for r in caplog.records)


def test_the_audit_commands_connections_cache_what_they_read(tmp_path: Path) -> None:
    """`audit run` (the writer, its index inserts all over the store) caches up to 64 MiB of its
    pages, `audit verify` and `audit query` (the log read in order, a page) 16 MiB, as fast
    (a store of a million entries: 100k appends, a check): each cached up to 256 MiB."""
    with (state_folder(tmp_path / "state"), open_store(None, create=True) as writer,
          open_store(None, signing=False) as reader):
        cached = [-store._db.execute("PRAGMA cache_size").fetchone()[0]
                  for store in (writer, reader)]
    assert cached == [64 * 1024, 16 * 1024]


def test_a_printable_legal_basis_in_japanese_is_stored_as_it_is_without_the_pattern(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Printable text without a backslash, Japanese too (nearly every legal basis), is its own
    column text: the escaping pattern is not run on it (each event's legal basis, else)."""
    class Unused:
        def sub(self, *_: object) -> str:
            raise AssertionError("the pattern ran on printable text")

    monkeypatch.setattr(audit.events, "_UNSAFE", Unused())
    assert column_text("番号法 別表第二 12") == "番号法 別表第二 12"


def test_an_operator_action_is_stored_once_whatever_comes_again(store: AuditStore) -> None:
    """No operator action reached the audit log (a holder suspended, resumed, registered, a unit
    re-keyed): one is stored once per action id, with its reason, come again or not, a leaf of
    the tree in the order it came among the events."""
    action = OperatorAction("SUSPEND@renkei.directory:0:7", T0, "operator", "SUSPEND",
                            "sakura-town", "情報漏えい")
    events = [event(n) for n in range(3)]
    assert store.append_many([item(events[0]), item(action), item(events[1])]) == [0, 1, 2]
    assert store.append_many([item(events[0]), item(action),
                              item(replace(action, reason="other")), item(events[2])]) == [
        None, None, None, 3]
    assert store.operator_actions() == [action]
    assert store.size() == 4
    assert store.leaf_hashes(1, 2) == [merkle.leaf_hash(CODEC.encode(action))]
    assert store.verify(decode_event).ok


def test_an_operator_action_deleted_from_the_store_is_found_by_verify(store: AuditStore) -> None:
    """An insider deleting a suspension's row left a store that verified whole (the actions
    were stored beside the tree): the action is a leaf of the tree, and its row gone, changed,
    put at another serial or stored without one (as from before actions were leaves) is a
    finding, which does not call a leaf whose action is gone an entry."""
    store.append_many([item(event(0)), item(suspension(0)), item(event(1))])
    store.sign_head()
    report = store.verify(decode_event)
    assert report.ok and (report.entries, report.actions) == (2, 1)
    store._db.execute("UPDATE operator_actions SET reason = 'x'")
    assert {f.kind for f in store.verify(decode_event).findings} == {"column"}
    store._db.execute("UPDATE operator_actions SET serial = 2")
    assert {(f.kind, f.where) for f in store.verify().findings} == {
        ("deleted", "serial 1"), ("inserted", "serial 2")}
    store._db.execute("UPDATE operator_actions SET serial = NULL")  # as if from before leaves
    report = store.verify()
    assert [(f.kind, f.where, f.detail) for f in report.findings] == [
        ("deleted", "serial 1", "its operator action is stored without its serial, as one from "
                                "before actions were leaves")]
    store._db.execute("DELETE FROM operator_actions")
    report = store.verify()
    assert [(f.kind, f.where, f.detail) for f in report.findings] == [
        ("deleted", "serial 1", "its entry or operator action is gone (not purged)")]


def test_an_operator_action_past_the_retention_is_purged_as_a_leaf(store: AuditStore) -> None:
    """An action past the retention is purged as an entry is: its serial in the signed purge's
    ranges, its leaf hash kept, the store whole; a later one stays."""
    old, new = (replace(suspension(n), occurred_at=datetime(year, 6, 1, tzinfo=UTC))
                for n, year in ((1, 2015), (2, 2020)))
    store.append_many([item(event(0, at=datetime(2014, 6, 1, tzinfo=UTC))), item(old),
                       item(new)])
    [record] = store.purge(datetime(2024, 1, 1, tzinfo=UTC))  # cutoff 2017-01-01
    assert record.ranges == ((0, 2),) and store.operator_actions() == [new]
    assert store.purged_serial(CODEC.encode(old)) == 1
    report = store.verify(decode_event)
    assert report.ok, report.findings
    assert (report.tree_size, report.entries, report.actions, report.purged) == (3, 0, 1, 2)


def test_a_store_from_before_actions_were_leaves_keeps_its_actions_unproved(
        state: Path, db: str, clock: Clock, store: AuditStore) -> None:
    """A store made when operator actions were kept beside the tree: its actions stay, without a
    serial, counted as not provable and not as tampering; new ones are leaves after its own."""
    store.append_many([item(event(0)), item(event(1))])
    head = store.sign_head().head
    store.close()
    before = suspension(0)
    tamper(db, ("DROP INDEX operator_actions_serial", ()),
           ("ALTER TABLE operator_actions DROP COLUMN serial", ()),
           ("INSERT INTO operator_actions (action_id, occurred_at, operator, action, subject, "
            "reason, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (before.action_id, millis(before.occurred_at), before.operator, before.action,
             before.subject, before.reason, CODEC.encode(before))))
    with AuditStore(db, Signer.load_or_create(), clock=clock) as upgraded:
        assert upgraded.append_many([item(before), item(suspension(5)), item(event(2))]) == [
            None, 2, 3]
        assert upgraded.operator_actions() == [before, suspension(5)]
        report = upgraded.verify(decode_event, anchored=[upgraded.heads()[0]])
        assert report.ok, report.findings
        assert (report.tree_size, report.actions, report.unproved) == (4, 1, 1)
        assert upgraded.against(head) is None
    verified = CliRunner().invoke(audit_cli, ["verify", "--no-anchor", "--db", db])
    assert verified.exit_code == 0 and (
        "1 operator actions stored before actions were leaves of the tree: kept, not provable"
        in verified.output), verified.output
    with AuditStore(db, Signer.load_or_create(), clock=clock) as upgraded:
        upgraded.purge(datetime(2031, 4, 1, 9, 1, tzinfo=UTC))  # cutoff T0 + 1 min
        assert upgraded.operator_actions() == [suspension(5)]
        assert upgraded.verify().ok


# what a store made before a table or column lacks, as the audit consumer had it then
OLDER_SCHEMAS = {
    "actions beside the tree": ("operator_actions", "serial", (
        ("DROP INDEX operator_actions_serial", ()),
        ("ALTER TABLE operator_actions DROP COLUMN serial", ()),
        ("INSERT INTO operator_actions (action_id, occurred_at, operator, action, subject, "
         "reason, record) VALUES (?, ?, ?, ?, ?, ?, ?)",
         (suspension(0).action_id, millis(suspension(0).occurred_at), "ops-a", "SUSPEND",
          "sakura-town", "情報漏えい", CODEC.encode(suspension(0)))))),
    "no operator actions": ("operator_actions", None, (("DROP TABLE operator_actions", ()),)),
    "no purged leaves": ("purged_leaves", None, (("DROP TABLE purged_leaves", ()),)),
    "untimed bindings": ("bindings", "occurred_at", (
        ("ALTER TABLE bindings DROP COLUMN occurred_at", ()),)),
}


@pytest.mark.parametrize("older", OLDER_SCHEMAS)
def test_a_store_made_before_a_table_or_column_verifies_read_only_as_it_is(
        state: Path, db: str, store: AuditStore, older: str) -> None:
    """The audit consumer, opening a store made before a table or column, adds it; until it
    does (an archived store handed to an auditor), `audit verify`, which opens it read-only,
    failed on the missing table or column with a SQL error, no verdict: it checks what the
    store has, an action stored beside the tree counted as not provable, and changes nothing."""
    store.append_many([item(event(0, at=datetime(2014, 6, 1, tzinfo=UTC))), item(event(1)),
                       item(binding(T0, HOLDERS[0], PERSONS[0]))])
    store.purge(datetime(2024, 1, 1, tzinfo=UTC))  # cutoff 2017-01-01: serial 0
    store.sign_head()
    store.close()
    table, column, statements = OLDER_SCHEMAS[older]
    tamper(db, *statements)
    verified = CliRunner().invoke(audit_cli, ["verify", "--no-anchor", "--db", db])
    assert verified.exit_code == 0 and "ok: every entry" in verified.output, verified.output
    assert ("1 operator actions stored before actions were leaves of the tree: kept, not "
            "provable" in verified.output) == (older == "actions beside the tree")
    raw, dialect = connect(db)
    try:
        lacks = (dialect.has_table, (table,)) if column is None else (
            dialect.has_column, (table, column))
        assert raw.execute(*lacks).fetchone() is None  # as it was: nothing written
    finally:
        raw.close()


def test_an_operator_action_grows_the_tree_consistently(store: AuditStore) -> None:
    """An action appended after a head: the new head is consistent with the old (append-only)."""
    store.append_many([item(event(n)) for n in range(3)])
    old = store.sign_head().head
    store.append_many([item(suspension(3))])
    new = store.sign_head().head
    assert new.size == old.size + 1
    assert merkle.verify_consistency(old.size, new.size,
                                     store.consistency_proof(old.size, new.size),
                                     old.root, new.root)


class _Looks:
    """Looks verify takes at the heads it holds: reads of a head's size (_SizeLooked) and
    comparisons of its seq (_SeqLooked)."""

    count = 0


class _SizeLooked(TreeHead):
    """A head, each read of its size counted in _Looks."""

    def __getattribute__(self, name: str) -> object:
        if name == "size":
            _Looks.count += 1
        return super().__getattribute__(name)


class _SeqLooked(int):
    """A head's seq, each ordering of it counted in _Looks."""

    def __lt__(self, other: object) -> bool:
        _Looks.count += 1
        return int(self) < cast(int, other)

    def __le__(self, other: object) -> bool:
        _Looks.count += 1
        return int(self) <= cast(int, other)

    def __gt__(self, other: object) -> bool:
        _Looks.count += 1
        return int(self) > cast(int, other)

    def __ge__(self, other: object) -> bool:
        _Looks.count += 1
        return int(self) >= cast(int, other)


def test_verify_finds_each_heads_earlier_good_one_without_a_look_at_each(
        state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify looked at every good head before, at each head, to find the one to check it
    against: years of heads (one every 10 s) are millions, and 16,000 took 50 s; it finds it by
    bisection. 2,000 heads, their signatures and roots taken as good: a few dozen looks a head in
    all (a good head's size read, its seq compared), not one at each good head before it (the
    time the test measured before failed once on a loaded machine)."""
    with AuditStore(f"sqlite:///{tmp_path / 'audit.db'}", Signer.load_or_create()) as store:
        store.append_many([item(event(0))])
        signed = store.sign_head()
        heads = [(_SeqLooked(seq), replace(signed, head=_SizeLooked(*astuple(signed.head))))
                 for seq in range(2000)]
        monkeypatch.setattr(audit.store, "verify_head", lambda *_: True)
        monkeypatch.setattr(AuditStore, "_head_problem", lambda *_: None)
        monkeypatch.setattr(AuditStore, "_heads", staticmethod(lambda *_: heads))
        monkeypatch.setattr(_Looks, "count", 0)
        report = VerifyReport()
        store._verify_heads(1, report)
    assert (report.heads, report.unsigned, report.findings) == (2000, 0, [])
    assert _Looks.count < 2000 * 100, _Looks.count  # a look at each: ~2,000 a head


class _Counted:
    """A store's connection, each statement it runs counted (on a cursor of its own or not)."""

    def __init__(self, db: audit.sql.Connection) -> None:
        self.db, self.statements = db, 0

    def execute(self, sql: str, parameters: object = ()) -> audit.sql.Cursor:
        self.statements += 1
        return self.db.execute(sql, parameters)  # type: ignore[arg-type]

    def cursor(self) -> _Counted:
        return self


def test_verify_reads_the_roots_of_many_heads_in_a_few_statements_not_one_a_head(
        store: AuditStore, db: str) -> None:
    """verify read each head's root at its size on its own (a statement a head, a round trip on
    PostgreSQL: a year's 3 million heads took most of 15 minutes); it reads the subtree hashes of
    thousands at once. 1,000 heads, one a leaf, all good, read in a few dozen statements."""
    items = [item(event(n)) for n in range(1000)]
    store.append_many(items)
    frontier, heads = merkle.Frontier(), []
    for n, (_, leaf) in enumerate(items):
        frontier.append(merkle.leaf_hash(leaf))
        signed = store.signer.sign_head(TreeHead(n + 1, frontier.root(), T0 + timedelta(hours=n)))
        heads.append(("INSERT INTO heads (tree_size, root, signed_at, key_id, signature) "
                      "VALUES (?, ?, ?, ?, ?)",
                      (n + 1, signed.head.root, millis(signed.head.timestamp), signed.key_id,
                       signed.signature)))
    tamper(db, ("DELETE FROM heads", ()), *heads)
    counted = _Counted(store._db)
    store._db = cast(audit.sql.Connection, counted)
    try:
        report = store.verify()
    finally:
        store._db = counted.db
    assert (report.ok, report.heads, report.unsigned) == (True, 1000, 0), report.findings
    assert counted.statements < 60, counted.statements


# ---- operator actions, as an auditor reads them ----

def actions_of(n: int) -> list[OperatorAction]:
    """`n` operator actions on two holders and a unit, by two operators, a minute apart; the
    last two at one time (the page orders them by action id)."""
    kinds = ("SUSPEND", "RESUME", "REGISTER", "REKEY", "RENEW")
    return [OperatorAction(f"{kinds[k % 5]}@{k:04d}", T0 + timedelta(minutes=min(k, n - 2)),
                           ("ops-a", "ops-b")[k % 2], kinds[k % 5],
                           "unit-7" if kinds[k % 5] == "REKEY" else HOLDERS[k % 2],
                           None if k % 3 == 0 else f"理由 {k}") for k in range(n)]


def _action_pages(store: AuditStore, where: audit.store.ActionQuery, limit: int
                  ) -> list[audit.store.Acted]:
    found: list[audit.store.Acted] = []
    after: str | None = None
    while True:
        page = store.actions(where, limit=limit, after=after)
        found.extend(page.actions)
        if page.next_cursor is None:
            return found
        after = page.next_cursor


@pytest.mark.parametrize("where", [
    audit.store.ActionQuery(),
    audit.store.ActionQuery(subject=HOLDERS[0]),
    audit.store.ActionQuery(subject="unit-7", action="REKEY"),
    audit.store.ActionQuery(operator="ops-b", since=T0 + timedelta(minutes=3),
                            until=T0 + timedelta(minutes=9)),
])
def test_operator_actions_are_listed_newest_first_with_proofs(
        store: AuditStore, where: audit.store.ActionQuery) -> None:
    """An auditor saw the operator actions only by replaying the whole audit topic (`audit
    query` lists access-log events alone): the store lists them newest first, filtered, a page
    at a time, each as its bytes tell it, its reason as the topic carried it, and proved a leaf
    of the tree against the head (one signed, the store signing)."""
    acts = actions_of(12)
    store.append_many([item(event(0)), *map(item, acts), item(event(1))])

    def matches(a: OperatorAction) -> bool:
        return ((where.subject is None or a.subject == where.subject)
                and (where.action is None or a.action == where.action)
                and (where.operator is None or a.operator == where.operator)
                and (where.since is None or a.occurred_at >= where.since)
                and (where.until is None or a.occurred_at < where.until))

    expected = sorted((a for a in acts if matches(a)), key=lambda a: (a.occurred_at, a.action_id),
                      reverse=True)
    assert expected
    for limit in (1, 2, 100):
        listed = _action_pages(store, where, limit)
        assert [a.action for a in listed] == expected
    page = store.actions(where)
    assert page.trusted and page.head is not None and page.head.head.size == store.size() == 14
    for acted in page.actions:
        assert acted.faithful and acted.serial == acts.index(acted.action) + 1
        assert acted.proof is not None and includes(
            page.head.head, acted.serial, CODEC.encode(acted.action), acted.proof)


def test_an_operator_action_is_pending_or_unproved_as_the_store_tells_it(
        state: Path, db: str, clock: Clock, store: AuditStore) -> None:
    """Read with the head key's public half alone: an action after the latest signed head is
    unproved (pending); one stored beside the tree, before actions were leaves, has no serial and
    no proof; one whose columns were edited is shown as its bytes tell it, unfaithful, unproved;
    a bad cursor is a ValueError."""
    before, signed, after = actions_of(4)[:3]
    store.append_many([item(signed)])
    store.sign_head()
    store.append_many([item(after)])
    store.keep_beside([item(before)])
    store.close()
    with AuditStore(db, Signer.public()) as reader:
        page = reader.actions(audit.store.ActionQuery())
        assert [(a.action, a.serial, a.proof is not None) for a in page.actions] == [
            (after, 1, False), (signed, 0, True), (before, None, False)]
        with pytest.raises(ValueError, match="bad cursor"):
            reader.actions(audit.store.ActionQuery(), after="x")
    tamper(db, ("UPDATE operator_actions SET reason = 'none at all' WHERE serial = 0", ()))
    with AuditStore(db, Signer.public()) as reader:
        [shown] = reader.actions(audit.store.ActionQuery(subject=signed.subject,
                                                         action=signed.action)).actions
        assert shown.action == signed and not shown.faithful and shown.proof is None


def _a_bug(*_: object) -> None:
    raise TypeError("a bug in the code, not bytes edited")


def test_an_operator_actions_bytes_edited_are_tampering_an_error_of_the_code_surfaces(
        db: str, store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any exception reading an action's bytes was taken for bytes edited: a bug in the codec
    (or the action's class) showed every action as tampered with, from its columns, and said
    nothing. Bytes that are no action still are shown so; an error of the code is raised."""
    [acted] = actions_of(1)
    store.append_many([item(acted)])
    tamper(db, ("UPDATE operator_actions SET record = ?", (CODEC.encode(acted)[:-3],)))
    [shown] = store.actions(audit.store.ActionQuery()).actions
    assert shown.action == acted and not shown.faithful and shown.proof is None
    monkeypatch.setattr("schemas.codec.from_record", _a_bug)
    tamper(db, ("UPDATE operator_actions SET record = ?", (CODEC.encode(acted),)))
    with pytest.raises(TypeError, match="a bug"):
        store.actions(audit.store.ActionQuery())


def test_the_purge_takes_an_error_of_the_code_reading_a_leaf_for_no_tampering(
        store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The purge reads each expired leaf's bytes: an error of the code there was taken for bytes
    edited, every entry kept and logged as not the tree's; it is raised, nothing purged."""
    store.append_many(item(event(n, at=datetime(2010 + n, 1, 1, tzinfo=UTC))) for n in range(3))
    monkeypatch.setattr("schemas.codec.from_record", _a_bug)
    with pytest.raises(TypeError, match="a bug"):
        store.purge(datetime(2020, 6, 1, tzinfo=UTC))
    monkeypatch.undo()
    assert len(store.query(Query()).entries) == 3


def test_audit_and_oversight_list_the_operator_actions(store: AuditStore, db: str) -> None:
    """`renkei audit actions` (and the oversight body's `oversight actions`) list what `audit
    query` never did: each action's serial, time, operator, action, subject, reason and
    inclusion proof, newest first, paged; filters by holder or unit, action, operator (--by) and
    time;
    columns edited behind the log's back: TAMPERED, exit 1."""
    from audit.oversight_cli import oversight_cli

    acts = actions_of(6)
    store.append_many([item(event(0)), *map(item, acts)])
    store.sign_head()
    for group in (audit_cli, oversight_cli):
        result = CliRunner().invoke(group, ["actions", "--db", db, "--limit", "4"])
        assert result.exit_code == 0, result.output
        page = json.loads(result.output)
        head = SignedHead.from_json(page["head"])
        shown = page["actions"]
        assert [a["action_id"] for a in shown] == [a.action_id for a in acts[::-1][:4]]
        first = shown[-1]
        assert {k: first[k] for k in ("serial", "operator", "action", "subject", "reason")} == {
            "serial": 3, "operator": "ops-a", "action": "REGISTER", "subject": HOLDERS[0],
            "reason": "理由 2"}
        assert first["occurred_at"] == "2024-04-01T09:02:00.000+00:00"
        assert includes(head.head, 3, CODEC.encode(acts[2]),
                        [bytes.fromhex(p) for p in first["inclusion_proof"]])
        rest = CliRunner().invoke(group, ["actions", "--db", db, "--after", page["next"]])
        assert [a["serial"] for a in json.loads(rest.output)["actions"]] == [2, 1]
        assert json.loads(rest.output)["next"] is None
    for args, serials in ((("--holder", HOLDERS[1]), [6, 2]), (("--unit", "unit-7"), [4]),
                          (("--action", "suspend"), [6, 1]), (("--by", "ops-a"), [5, 3, 1]),
                          (("--since", "2024-04-01T18:01+09:00", "--until",
                            "2024-04-01T09:03Z"), [3, 2])):
        result = CliRunner().invoke(audit_cli, ["actions", "--db", db, *args])
        assert [a["serial"] for a in json.loads(result.output)["actions"]] == serials, args
    result = CliRunner().invoke(audit_cli, ["actions", "--db", db, "--action", "DELETE"])
    assert result.exit_code == 2 and "'DELETE' is not one of" in result.output, result.output
    result = CliRunner().invoke(audit_cli, ["actions", "--db", db, "--after", "x"])
    assert result.exit_code == 2 and "is not a cursor" in result.output
    tamper(db, ("UPDATE operator_actions SET operator = 'someone else' WHERE serial = 1", ()))
    result = CliRunner().invoke(audit_cli, ["actions", "--db", db, "--action", "SUSPEND"])
    assert result.exit_code == 1 and "TAMPERED: the columns of operator actions" in result.output
    assert [a.get("columns_differ", False) for a in json.loads(
        result.stdout)["actions"]] == [False, True]


def test_an_operator_action_replaced_whole_or_moved_past_the_trees_end_is_unproved(
        store: AuditStore, db: str) -> None:
    """`audit actions` gave each action the proof of its serial unchecked, and showed one after
    the signed head pending whatever its serial: an action's row replaced whole (another
    action's columns and bytes) was shown with a proof that does not hold, one moved past the
    tree's end pending, exit code 0. Each is checked as an entry is: unproved and named, exit
    code 1; the others proved, one appended after the head pending."""
    acts = actions_of(6)
    store.append_many(map(item, acts[:3]))
    store.sign_head()
    store.append_many([item(acts[3])])
    forged = acts[5]
    tamper(db, ("DELETE FROM operator_actions WHERE serial = 1", ()),
           (audit.store._ACT, audit.store._action_row(1, forged, CODEC.encode(forged))),
           ("UPDATE operator_actions SET serial = 100 WHERE serial = 2", ()))
    result = CliRunner().invoke(audit_cli, ["actions", "--db", db])
    shown = {a["serial"]: a for a in json.loads(result.stdout)["actions"]}
    assert result.exit_code == 1, result.output
    said = f"TAMPERED: no proof of operator actions {forged.action_id}, {acts[2].action_id} holds"
    assert said in result.stderr
    assert (shown[1]["action_id"], shown[100]["action_id"]) == (forged.action_id, acts[2].action_id)
    assert all(shown[n].get("unproved") and "inclusion_proof" not in shown[n]
               and "pending" not in shown[n] for n in (1, 100))
    assert "inclusion_proof" in shown[0] and shown[3].get("pending")


def test_a_holder_or_unit_no_action_is_on_is_noted_not_answered_as_one_left_alone(
        store: AuditStore, db: str, clock: Clock) -> None:
    """`audit actions --holder nobody` (and `oversight actions`) answered an empty page, as for a
    holder no operator ever acted on: a holder or link-code unit no action of the store is on is
    noted on stderr with the holders and units actions are on nearest it, exit code 0 still; one
    actions are on, left out by the other filters, is not; a holder entries name but no action
    is on is noted too (its page tells nothing of it). Whether an action is on it, and which
    subjects actions are on, is read from the index on subject, which a store from before it is
    given when its writer opens it again."""
    from audit.oversight_cli import oversight_cli

    store.append_many([item(event(0)), *map(item, actions_of(6))])
    store.sign_head()

    def asked(group: click.Group, *args: str) -> tuple[list[int], str]:
        result = CliRunner().invoke(group, ["actions", "--db", db, *args])
        assert result.exit_code == 0, result.output
        return [a["serial"] for a in json.loads(result.stdout)["actions"]], result.stderr

    said = "note: no operator action of this store is on holder or unit "
    for group in (audit_cli, oversight_cli):
        assert asked(group, "--holder", "nobody") == ([], f"{said}'nobody'\n")
    assert asked(audit_cli, "--unit", "Unit-7") == ([], f"{said}'Unit-7' (nearest: 'unit-7')\n")
    assert asked(audit_cli, "--holder", "City-B") == (
        [], f"{said}'City-B' (nearest: 'city-b', 'city-a')\n")
    assert asked(audit_cli, "--holder", HOLDERS[2]) == ([], f"{said}'{HOLDERS[2]}'\n")
    assert asked(audit_cli, "--holder", HOLDERS[1], "--action", "REKEY") == ([], "")
    assert asked(audit_cli, "--unit", "unit-7") == ([4], "")
    store.close()
    tamper(db, ("DROP INDEX operator_actions_subject", ()))  # a store from before the index
    assert asked(audit_cli, "--holder", "nobody") == ([], f"{said}'nobody'\n")  # read, slower
    AuditStore(db, Signer.load_or_create(), clock=clock).close()  # its writer opens it again
    for plan in plans(db, (audit.store._ACTS_ON, audit.store._SUBJECTS)):
        assert re.search(r"(COVERING INDEX|Index Only Scan using) operator_actions_subject",
                         plan), plan


@pytest.mark.parametrize("fault", [OSError("an I/O error"), TypeError("a bug")],
                         ids=["disk", "code"])
def test_a_fault_reading_a_record_back_is_raised_not_reported_as_tampering(
        state: Path, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch,
        fault: Exception) -> None:
    """Reading an entry's or an operator action's bytes back, verify took any exception for
    a record changed: a fault of the disk or of the code was shown to an auditor as TAMPERED.
    Only what a changed record raises (ValueError: the codec's, an event's own checks) is a
    finding now; anything else surfaces as it is."""

    def failing(*_: object) -> AccessLogEvent:
        raise fault

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with AuditStore(url, Signer.load_or_create(), head_every=4, clock=clock) as store:
        store.append_many([item(event(1)), item(suspension(2))])
        assert store.verify(decode_event).ok
        with pytest.raises(type(fault)):
            store.verify(failing)  # an entry's
        monkeypatch.setattr(audit.store, "_action_row", failing)
        with pytest.raises(type(fault)):
            store.verify(lambda leaf: event(1))  # an operator action's
