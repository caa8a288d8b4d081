"""The portal's view of the access log without a browser: a person's entries, checked."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit import heads, merkle
from audit.events import millis
from audit.heads import SignedHead, Signer, TreeHead, includes, verify_signature
from audit.sql import Cursor, Stoppable
from audit.store import (
    _ACT,
    MAX_PAGE,
    ActionQuery,
    AuditStore,
    Committed,
    Entry,
    Page,
    Proved,
    Query,
    VerifyReport,
    _action_row,
)
from audit.store import default_path as audit_path
from portal import app as portal_app
from portal import records as portal_records
from portal.i18n import words
from portal.records import CACHE_MIB, HISTORY_PAGE, READERS, Records
from portal.web import TEMPLATES, local_time
from renkei.state import state_folder
from renkei.tasks import cancelled
from schemas.codec import CODEC
from tests.test_audit_store import (
    HOLDERS,
    PERSONS,
    actions_of,
    event,
    held_past_its_check,
    item,
    tamper,
    truncate,
)

ME, SOMEONE, OTHER = PERSONS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuditStore]:
    with AuditStore(tmp_path / "audit.db", Signer.generate(), head_every=10_000) as opened:
        yield opened


async def test_a_person_sees_every_entry_newest_first_and_each_one_alone(store: AuditStore) -> None:
    count = MAX_PAGE + 3
    store.append_many(item(event(n, person=ME)) for n in range(count))
    store.append(*item(event(count, person=SOMEONE)))
    records = Records(lambda: store)
    history = await records.of_person([ME])
    found, head = history.entries, history.head
    assert [c.entry.serial for c in found] == list(reversed(range(count)))
    assert head is not None and head.head.size == count + 1 and all(c.verified for c in found)
    alone = await records.entry_of([ME], count - 1)
    assert alone is not None and alone.trusted and not alone.tampered
    (newest,) = alone.entries
    assert newest.verified and newest.entry.serial == count - 1
    assert await records.entry_of([ME], count) is None  # someone else's
    assert await records.entry_of([ME], count + 1) is None  # none yet
    assert await records.entry_of([SOMEONE], count) is not None


async def test_the_store_is_checked_against_every_anchored_head(store: AuditStore,
                                                                tmp_path: Path) -> None:
    """As `audit verify` checks it: cut short, the store is smaller than the largest anchored
    head; grown again past it by the consumer going on, the head it lost is no head of it."""
    store.append_many(item(event(n)) for n in range(12))
    records = Records(lambda: store)
    anchored = [store.head()]
    none = await records.against([], None)
    assert (none.anchor, none.ok) == (None, True), "none yet"
    holds = await records.against(anchored, None)
    assert (holds.anchor, holds.ok) == (anchored[0].head, True)
    truncate(f"sqlite:///{tmp_path / 'audit.db'}", 9)
    cut = await records.against(anchored, None)
    assert [(f.kind, f.detail) for f in cut.findings] == [
        ("truncated", "the store has 9 entries: serials 9..11 are gone with their heads")]
    with AuditStore(tmp_path / "audit.db", store.signer) as restarted:  # with no commit to check
        restarted.append_many(item(event(n)) for n in range(100, 110))
        anchored.append(restarted.head())
    regrown = await records.against(anchored, None)
    assert regrown.anchor == anchored[1].head and [f.kind for f in regrown.findings] == ["anchor"]
    assert "serials 0..11 were changed after it was anchored" in regrown.findings[0].detail


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_the_integrity_page_says_which_commit_it_checked_the_store_against(
        store: AuditStore, lang: str) -> None:
    """As `audit verify` says it: the audit consumer's commit checked (its offset, the tree's
    size and root it noted, when, its signature) and how many anchored heads; the store said to
    hold the commit's tree too only when one was checked (the page named no commit). A note
    from before the notes were signed is said unsigned."""
    store.append_many(item(event(n)) for n in range(12))
    records, w = Records(lambda: store), words(lang)
    committed = Committed.of(4242, store.commit_note(4242))
    assert committed is not None and committed.at is not None
    unsigned = replace(committed, at=None, signature=None)
    shown = {given: integrity_page(lang, await records.against([store.head()], given))
             for given in (committed, unsigned, None)}
    checked = shown[committed].split('id="commit"')[1]
    assert "<dd>4242</dd>" in checked and "<dd>12</dd>" in checked, checked
    assert committed.root.hex() in checked and w["commit_offset"] in checked
    assert f"<dd>{local_time(committed.at)}</dd>" in checked and w["signature_ok"] in checked
    assert w["signature_none"] in shown[unsigned] and w["signature_ok"] not in \
        shown[unsigned].split('id="commit"')[1].split("</section>")[0]
    assert "<dd>1</dd>" in shown[committed].split('id="commit"')[0], "one anchored head"
    assert w["anchor_holds"] in shown[committed] and w["commit_none"] not in shown[committed]
    assert w["anchor_holds_heads"] in shown[None] and w["commit_none"] in shown[None]
    assert w["anchor_holds"] not in shown[None]


def integrity_page(lang: str, report: VerifyReport) -> str:
    """The oversight console's integrity page showing `report`, in `lang`."""
    officer = SimpleNamespace(resident=None, officer=SimpleNamespace(role="oversight"))
    return TEMPLATES.get_template("integrity.html").render(
        w=words(lang), lang=lang, session=officer, csrf="", link_token="", notice=None,
        path="/oversight/integrity", here="/oversight/integrity", heads=[], anchor=report)


@dataclass
class Hold:
    """A read of ME's entries waits until `free` is set, setting `holding` when one does;
    `opened` counts the connections made."""

    holding: threading.Event = field(default_factory=threading.Event)
    free: threading.Event = field(default_factory=threading.Event)
    opened: int = 0


class Held(AuditStore):
    """A reader's connection on which a read of ME's entries is held as `hold` says."""

    def __init__(self, path: Path, key: Path, hold: Hold) -> None:
        super().__init__(path, Signer.public(key))
        self.hold = hold
        hold.opened += 1

    def query(self, where: Query, *, limit: int = 100, after: str | None = None,
              prove: bool = False, newest: bool = False) -> Page:
        if where.person == ME:
            self.hold.holding.set()
            self.hold.free.wait()
        return super().query(where, limit=limit, after=after, prove=prove, newest=newest)


def store_of_four(tmp_path: Path) -> tuple[Path, Path]:
    """A store of four entries, ME's and SOMEONE's in turn: its path, and its head key's."""
    key, db = tmp_path / "head-key.json", tmp_path / "audit.db"
    with AuditStore(db, Signer.load_or_create(key)) as writer:
        writer.append_many(item(event(n, person=(ME, SOMEONE)[n % 2])) for n in range(4))
    return db, key


def held(tmp_path: Path, hold: Hold) -> Records:
    """Records of a store of four entries, ME's and SOMEONE's in turn, whose connections hold a
    read of ME's entries as `hold` says."""
    return Records(partial(Held, *store_of_four(tmp_path), hold))


async def test_a_persons_history_is_read_while_anothers_long_one_is(tmp_path: Path) -> None:
    """A resident's history read while another's is still being read (a long history, or a
    busy store) is read on a connection of its own, and is shown meanwhile: it waited for the
    other (every read on one thread, in turn). Read one after another, they use one."""
    hold = Hold()
    records = held(tmp_path, hold)
    long = asyncio.create_task(records.of_person([ME]))
    try:
        assert await asyncio.to_thread(hold.holding.wait, 30)
        short = asyncio.create_task(records.of_person([SOMEONE]))
        done, _ = await asyncio.wait({short}, timeout=10)
        assert short in done, "read while the long one is held"
    finally:
        hold.free.set()
    assert [c.entry.serial for c in (await short).entries] == [3, 1]
    assert [c.entry.serial for c in (await long).entries] == [2, 0]
    assert [c.entry.serial for c in (await records.of_person([SOMEONE])).entries] == [3, 1]
    assert hold.opened == 2, "one after another, on a connection already open"
    await records.close()


async def test_a_read_cancelled_holds_its_connection_until_its_thread_is_done(
        tmp_path: Path) -> None:
    """A page's read cancelled (its resident gone) goes on on its thread: the next read is done
    on another connection meanwhile, and the closing waits for it. Its connection was free at
    once: the next read took it, and waited behind it on its thread."""
    hold = Hold()
    records = held(tmp_path, hold)
    long = asyncio.create_task(records.of_person([ME]))
    try:
        assert await asyncio.to_thread(hold.holding.wait, 30)
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        short = asyncio.create_task(records.of_person([SOMEONE]))
        done, _ = await asyncio.wait({short}, timeout=10)
        assert short in done, "read while the cancelled one is held"
        assert hold.opened == 2, "on a connection of its own"
        closing = asyncio.create_task(records.close())
        await asyncio.sleep(0.2)
        assert not closing.done(), "the cancelled read's connection is closed once it is done"
    finally:
        hold.free.set()
    assert [c.entry.serial for c in (await short).entries] == [3, 1]
    await asyncio.wait_for(closing, 10)


# ~4 s of SQLite's time on a test machine; running() said as it starts (Slow)
SLOW = ("WITH RECURSIVE c(x) AS (SELECT coalesce(running(), 1) UNION ALL SELECT x + 1 FROM c "
        "WHERE x < 10000000) SELECT count(*) FROM c")


class Slow(AuditStore):
    """A reader's connection whose read of ME's entries runs SLOW first, in its snapshot,
    `running` set once the statement has started."""

    def __init__(self, path: Path, key: Path, running: threading.Event) -> None:
        super().__init__(path, Signer.public(key))
        cast(sqlite3.Connection, cast(Stoppable, self._db)._raw).create_function(
            "running", 0, running.set)

    @staticmethod
    def _page(cur: Cursor, where: Query, n: int, after: tuple[int, int] | None,
              newest: bool = False) -> list[tuple[Any, ...]]:
        if where.person == ME:
            cur.execute(SLOW).fetchone()
        return AuditStore._page(cur, where, n, after, newest)


async def test_a_read_cancelled_stops_its_statement_and_frees_its_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's read cancelled (its resident gone) while its statement runs is interrupted:
    the next read, on its one connection, is served at once. Its statement ran to its end
    (~4 s here), the next read waiting behind it."""
    monkeypatch.setattr(portal_records, "READERS", 1)
    running = threading.Event()
    records = Records(partial(Slow, *store_of_four(tmp_path), running))
    try:
        await _next_read_served_at_once(records, running)
    finally:
        await records.close()


async def _next_read_served_at_once(records: Records, begun: threading.Event) -> None:
    """A read of ME's entries cancelled once `begun` is set; the next read, of SOMEONE's, on the
    one connection, served at once."""
    long = asyncio.create_task(records.of_person([ME]))
    assert await asyncio.to_thread(begun.wait, 30)
    left = time.monotonic()
    await cancelled(long)
    shown = (await records.of_person([SOMEONE])).entries
    waited = time.monotonic() - left
    assert [c.entry.serial for c in shown] == [3, 1]
    assert waited < 1, f"the next read waited {waited:.1f} s for the cancelled one"


class Unlucky(Slow):
    """A reader's connection whose read of ME's entries is cancelled just as SLOW has passed
    its check (Stoppable.check) and not yet started: the check returns (`passed` set) once the
    read is stopped and its interrupt sent."""

    def __init__(self, path: Path, key: Path, running: threading.Event,
                 passed: threading.Event) -> None:
        super().__init__(path, key, running)
        held_past_its_check(cast(Stoppable, self._db), passed, SLOW)


async def test_a_read_cancelled_as_its_statement_starts_stops_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's read cancelled once its statement has passed its check and before SQLite runs
    it (the interrupt sent while no statement runs, which stops nothing) stops that statement:
    the next read, on its one connection, is served at once. The statement (SLOW, ~2-4 s here)
    ran to its end, the next read waiting behind it."""
    monkeypatch.setattr(portal_records, "READERS", 1)
    running, passed = threading.Event(), threading.Event()
    records = Records(partial(Unlucky, *store_of_four(tmp_path), running, passed))
    try:
        await _next_read_served_at_once(records, passed)
    finally:
        await records.close()


async def held_read(records: Records, hold: Hold) -> asyncio.Task[Any]:
    """A read of ME's entries begun on `records`, once it is held as `hold` says."""
    long = asyncio.create_task(records.of_person([ME]))
    assert await asyncio.to_thread(hold.holding.wait, 30)
    return long


class Paused(Slow):
    """A reader's connection whose read of ME's entries, once it has run a statement, is held
    as `hold` says, then runs SLOW (`running` set as it starts)."""

    def __init__(self, path: Path, key: Path, running: threading.Event, hold: Hold) -> None:
        super().__init__(path, key, running)
        self.hold = hold

    def query(self, where: Query, *, limit: int = 100, after: str | None = None,
              prove: bool = False, newest: bool = False) -> Page:
        if where.person == ME:
            self.size()
            self.hold.holding.set()
            self.hold.free.wait()
        return super().query(where, limit=limit, after=after, prove=prove, newest=newest)


async def test_a_read_cancelled_between_its_statements_runs_no_more_of_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's read cancelled (its resident gone) between two of its statements runs none
    after: the next read, on its one connection, is served at once. Its next statement (SLOW,
    ~4 s here) ran to its end, the next read waiting behind it."""
    monkeypatch.setattr(portal_records, "READERS", 1)
    hold, running = Hold(), threading.Event()
    records = Records(partial(Paused, *store_of_four(tmp_path), running, hold))
    try:
        await cancelled(await held_read(records, hold))
        hold.free.set()
        left = time.monotonic()
        shown = (await records.of_person([SOMEONE])).entries
        waited = time.monotonic() - left
        assert [c.entry.serial for c in shown] == [3, 1]
        assert not running.is_set() and waited < 1, f"the next read waited {waited:.1f} s"
    finally:
        hold.free.set()
        await records.close()


class SlowToInterrupt(Held):
    """A reader's connection held as `hold` says, whose interrupt takes a second (PostgreSQL's
    cancel, its server slow to answer), `interrupted` set once it is done."""

    def __init__(self, path: Path, key: Path, hold: Hold, interrupted: threading.Event) -> None:
        super().__init__(path, key, hold)
        self.interrupted = interrupted

    def interrupt(self) -> None:
        time.sleep(1)
        self.interrupted.set()


async def test_a_read_cancelled_is_interrupted_off_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page's read cancelled is interrupted off the event loop, which goes on meanwhile;
    its connection is free once the interrupt is done, so that it stops no later read. The
    loop waited for the interrupt (PostgreSQL's cancel)."""
    monkeypatch.setattr(portal_records, "READERS", 1)
    hold, interrupted = Hold(), threading.Event()
    records = Records(partial(SlowToInterrupt, *store_of_four(tmp_path), hold, interrupted))
    try:
        long = await held_read(records, hold)
        left = time.monotonic()
        await cancelled(long)
        took = time.monotonic() - left
        hold.free.set()
        shown = (await records.of_person([SOMEONE])).entries
        assert took < 0.5, f"the event loop waited {took:.1f} s for the interrupt"
        assert interrupted.is_set(), "the next read ran before the interrupt was done"
        assert [c.entry.serial for c in shown] == [3, 1]
    finally:
        hold.free.set()
        await records.close()


class Busy(AuditStore):
    """A store the audit consumer appends to while the portal reads: an entry after each page."""

    def query(self, where: Query, *, limit: int = 100, after: str | None = None,
              prove: bool = False, newest: bool = False) -> Page:
        page = super().query(where, limit=limit, after=after, prove=prove, newest=newest)
        self.append(*item(event(self.size(), person=ME)))
        return page


async def test_all_of_a_persons_entries_are_proved_against_the_head_shown(tmp_path: Path) -> None:
    with Busy(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many(item(event(n, person=(ME, SOMEONE)[n % 2])) for n in range(6))
        history = await Records(lambda: store).of_person([SOMEONE, ME])
        found, head = history.entries, history.head
        assert sorted(c.entry.serial for c in found) == [0, 1, 2, 3, 4, 5, 6]
        assert head is not None and all(c.verified and c.entry.proof is not None
                   and includes(head.head, c.entry.serial, c.entry.leaf, c.entry.proof)
                   for c in found)


class Counted(AuditStore):
    """A store counting the entries it proves, call by call."""

    def __init__(self, url: Path, signer: Signer) -> None:
        super().__init__(url, signer)
        self.proved: list[int] = []

    def prove(self, entries: Sequence[Entry]) -> Proved:
        self.proved.append(len(entries))
        return super().prove(entries)


async def test_a_page_of_a_long_history_reads_and_proves_its_own_entries_alone(
        tmp_path: Path) -> None:
    """Each page of a resident's history (under either of their ID codes) holds the next
    HISTORY_PAGE entries newest first, each proved, the holders of all of them listed: the
    whole history was read and proved for each page, twice."""
    count = 3 * HISTORY_PAGE + 6  # of which two in three theirs: three pages
    store = Counted(tmp_path / "audit.db", Signer.generate())
    with store:
        store.append_many(item(event(n, person=PERSONS[n % 3])) for n in range(count))
        records, pages, after = Records(lambda: store), [], None
        while True:
            page = await records.history([ME, OTHER], Query(), after)
            pages.append([c.entry.serial for c in page.entries])
            assert page.head is not None and all(c.verified for c in page.entries)
            assert page.holders == sorted(HOLDERS)
            if (after := page.older) is None:
                break
        mine = [n for n in reversed(range(count)) if PERSONS[n % 3] != SOMEONE]
        assert pages == [mine[at:at + HISTORY_PAGE] for at in range(0, len(mine), HISTORY_PAGE)]
        assert len(pages) == 3 and store.proved == [len(page) for page in pages]
        chosen = await records.history([ME, OTHER], Query(holder=HOLDERS[0]))
        assert [c.entry.serial for c in chosen.entries] == [
            n for n in mine if HOLDERS[0] in (HOLDERS[n % 4], HOLDERS[(n + 1) % 4])
        ][:HISTORY_PAGE]
        assert chosen.holders == sorted(HOLDERS) and chosen.older is not None
        with pytest.raises(ValueError):
            await records.history([ME], Query(), "not-a-cursor")
        await records.close()


async def test_only_what_the_signed_bytes_say_is_shown_and_verified(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with AuditStore(path, Signer.generate()) as store:
        theirs, mine = event(0, person=SOMEONE), event(1, person=ME)
        store.append_many([item(theirs), item(mine), item(event(2, person=ME))])
        with closing(sqlite3.connect(path)) as raw, raw:  # an intruder edits the columns
            raw.execute("UPDATE entries SET person = ? WHERE serial = 0", (ME,))
            raw.execute("UPDATE entries SET requester = 'pension' WHERE serial = 1")
        records = Records(lambda: store)
        found = (await records.of_person([ME])).entries
        assert [(c.entry.serial, c.entry.event, c.verified) for c in found] == [
            (2, event(2, person=ME), True), (1, mine, False)]
        assert await records.entry_of([ME], 0) is None
        moved = await records.entry_of([SOMEONE], 0)  # still theirs, but not verified
        assert moved is not None and moved.tampered == [0]
        assert [(c.entry.event, c.verified) for c in moved.entries] == [(theirs, False)]


async def test_with_the_public_key_alone_the_portal_proves_against_the_latest_head(
        tmp_path: Path) -> None:
    """My Portal reads the store the audit consumer writes, with the head key's public half
    alone: it signs no head, proves what the latest head holds, and leaves later entries
    unproved (the consumer's next head proves them)."""
    key, db = tmp_path / "head-key.json", tmp_path / "audit.db"
    with AuditStore(db, Signer.load_or_create(key)) as writer, \
            AuditStore(db, Signer.public(key)) as reader:
        records = Records(lambda: reader)
        writer.append_many(item(event(n, person=ME)) for n in range(3))
        history = await records.of_person([ME])
        found, head = history.entries, history.head
        assert head is None and [(c.verified, c.pending) for c in found] == [(False, True)] * 3
        signed = writer.head()
        writer.append(*item(event(3, person=ME)))
        history = await records.of_person([ME])
        found, head = history.entries, history.head
        assert head == signed and reader.heads() == [signed]
        assert [(c.entry.serial, c.verified, c.pending) for c in found] == [
            (3, False, True), (2, True, False), (1, True, False), (0, True, False)]
        assert [c.head for c in await records.heads()] == [signed]


async def test_an_entry_moved_past_the_trees_end_is_not_said_to_await_a_head(
        tmp_path: Path) -> None:
    """An entry's serial moved past the tree's end (1 to 100) was shown to the resident as
    awaiting the next signed head: none will hold it (no appended entry lies there)."""
    key, db = tmp_path / "head-key.json", tmp_path / "audit.db"
    with AuditStore(db, Signer.load_or_create(key)) as writer, \
            AuditStore(db, Signer.public(key)) as reader:
        writer.append_many(item(event(n, person=ME)) for n in range(3))
        writer.head()
        writer.append(*item(event(3, person=ME)))
        tamper(f"sqlite:///{db}", ("UPDATE entries SET serial = 100 WHERE serial = 1", ()))
        found = (await Records(lambda: reader).of_person([ME])).entries
        assert [(c.entry.serial, c.verified, c.pending) for c in found] == [
            (3, False, True), (2, True, False), (100, False, False), (0, True, False)]


async def test_an_operator_action_moved_past_the_trees_end_is_not_said_to_await_a_head(
        tmp_path: Path) -> None:
    """An operator action's serial moved past the tree's end (1 to 100) was shown to the
    oversight body as awaiting the next signed head, as an entry's was to a resident: none will
    hold it. Neither it nor one replaced whole (serial 2) is verified or said to await one."""
    key, db = tmp_path / "head-key.json", tmp_path / "audit.db"
    acts = actions_of(5)
    with AuditStore(db, Signer.load_or_create(key)) as writer, \
            AuditStore(db, Signer.public(key)) as reader:
        writer.append_many(map(item, acts[:3]))
        writer.head()
        writer.append_many([item(acts[3])])
        tamper(f"sqlite:///{db}", ("UPDATE operator_actions SET serial = 100 WHERE serial = 1", ()),
               ("DELETE FROM operator_actions WHERE serial = 2", ()),
               (_ACT, _action_row(2, acts[4], CODEC.encode(acts[4]))))
        shown = await Records(lambda: reader).actions(ActionQuery(), None)
        assert [(c.acted.serial, c.verified, c.pending) for c in shown.actions] == [
            (2, False, False), (3, False, True), (100, False, False), (0, True, False)]


async def test_the_latest_heads_signature_is_checked_once_a_page(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resident's page checks the latest head's signature once, where the store proves the
    entries against it: Records checked it again."""
    key, db, checks = tmp_path / "head-key.json", tmp_path / "audit.db", [0]

    def counted(public_key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
        checks[0] += 1
        return verify_signature(public_key, message, signature)

    with AuditStore(db, Signer.load_or_create(key)) as writer, \
            AuditStore(db, Signer.public(key)) as reader:
        writer.append_many(item(event(n, person=ME)) for n in range(3))
        writer.head()
        monkeypatch.setattr(heads, "verify_signature", counted)
        history = await Records(lambda: reader).of_person([ME])
        found, head = history.entries, history.head
        assert head is not None and [c.verified for c in found] == [True] * 3
        assert checks == [1]
        one = await Records(lambda: reader).entry_of([ME], 0)
        assert one is not None and [c.verified for c in one.entries] == [True] and checks == [2]


async def test_the_integrity_page_shows_the_heads_the_audit_side_signed_and_signs_none(
        store: AuditStore) -> None:
    """Records shows the heads in the store and makes none, even given a store that could sign
    (the portal holds the public half alone): a head comes from the audit side's own code."""
    store.append_many(item(event(n)) for n in range(3))
    records = Records(lambda: store)
    assert await records.heads() == [] and store.heads() == []
    signed = store.head()
    store.append(*item(event(3)))
    assert [(c.head, c.signature_ok, c.consistent) for c in await records.heads()] == [
        (signed, True, None)]
    assert store.heads() == [signed]


def head_not_the_logs(db: str, head: TreeHead) -> SignedHead:
    """`head` signed by another key than the log's, written into the store `db` as its latest
    head by whoever can write it."""
    forged = Signer.generate().sign_head(head)
    tamper(db, ("INSERT INTO heads (tree_size, root, signed_at, key_id, signature) "
                "VALUES (?, ?, ?, ?, ?)", (head.size, head.root, millis(head.timestamp),
                                           forged.key_id, forged.signature)))
    return forged


@pytest.mark.parametrize("size", [0, 1000])
async def test_no_entry_is_said_to_await_a_head_under_one_the_logs_key_did_not_sign(
        tmp_path: Path, size: int) -> None:
    """A head written into the store by whoever can write it, not signed by the log's key, is
    the latest: it proves nothing (nor is anything proved against it: of a size beyond the
    tree, the page failed), nor does it tell which entries no head holds yet: they are not
    verified, none said to be awaiting the next head (as if nothing were wrong)."""
    key, db = tmp_path / "head-key.json", tmp_path / "audit.db"
    with AuditStore(db, Signer.load_or_create(key)) as writer, \
            AuditStore(db, Signer.public(key)) as reader:
        writer.append_many(item(event(n, person=ME)) for n in range(3))
        writer.head()
        forged = head_not_the_logs(f"sqlite:///{db}",
                                   TreeHead(size, merkle.root([]), datetime.now(UTC)))
        history = await Records(lambda: reader).of_person([ME])
        found, head = history.entries, history.head
        assert head == forged
        assert [(c.verified, c.pending) for c in found] == [(False, False)] * 3



async def test_closed_the_records_close_the_store_and_the_checks_own(tmp_path: Path) -> None:
    store, checks = (AuditStore(tmp_path / "audit.db", Signer.generate()) for _ in range(2))
    records = Records(lambda: store, checks=lambda: checks)
    assert (await records.against([], None)).ok and (await records.of_person([ME])).entries == []
    await records.close()
    for closed in (store, checks):
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            closed.size()


def test_the_portals_connections_to_the_store_cache_its_budget_together(tmp_path: Path) -> None:
    """Each of the portal's connections to the audit store (READERS, and the integrity
    check's) caches its share of CACHE_MIB: each cached up to 256 MiB, 1.25 GiB together."""
    with state_folder(tmp_path / "state"):
        AuditStore(audit_path(), Signer.load_or_create()).close()
        with portal_app._audit_store() as reader:
            kib = -reader._db.execute("PRAGMA cache_size").fetchone()[0]
    assert 0 < (READERS + 1) * kib <= CACHE_MIB * 1024
