"""The platform's access log as the pages show it: a person's entries, each checked against the
signed tree head with its inclusion proof; searches for oversight; the heads and their
consistency, and the store against the largest head anchored outside it. Read off the event
loop: a busy store waits up to its busy timeout (30 s), a check against a year of heads ~30 s."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from audit.events import AccessLogEvent, approval_id
from audit.heads import NoKey, SignedHead, consistent, includes, verify_head
from audit.sql import NoStore
from audit.store import (
    MAX_PAGE,
    Acted,
    ActionQuery,
    AuditStore,
    Committed,
    DamagedEntry,
    Entry,
    Proved,
    Query,
    Unnamed,
    VerifyReport,
    as_signed,
    cursor_of,
)
from renkei.tasks import OneThread, retrieved

HEADS_SHOWN = 50
HISTORY_PAGE = 50  # the entries a page of a resident's history shows
SEARCH_PAGE = 50  # the entries a page of the oversight body's search shows
READERS = 4  # the store's connections the pages read on side by side
CACHE_MIB = 64  # the SQLite page cache of the portal's connections to the store, together
CONNECTION_CACHE_KIB = CACHE_MIB * 1024 // (READERS + 1)  # each one's: READERS and the check's

log = logging.getLogger(__name__)

T = TypeVar("T")
Open = Callable[[], AuditStore]


class Unavailable(Exception):
    """The audit store, or the head key's public half, is not there yet (the audit consumer
    makes both at its first start) or cannot be opened now: asked again, it is tried again."""


class _Opened:
    """A store opened on its thread when first needed (again at the next read while it
    cannot be), each read done on that thread."""

    def __init__(self, open_store: Open, thread: OneThread) -> None:
        self._open, self._thread = open_store, thread
        self._store: AuditStore | None = None
        self._interrupting: asyncio.Future[None] | None = None

    async def run(self, read: Callable[[AuditStore], T], stop: threading.Event) -> T:
        """`read` done on the store, on its thread, each of its statements refused (Stopped)
        once `stop` is set; Unavailable if it cannot be opened. Interrupted, it ends once the
        interrupt is sent, which so falls on no later read's statement."""
        try:
            return await self._thread.run(partial(self._read, read, stop))
        finally:
            if self._interrupting is not None:
                await self._interrupting
                self._interrupting = None

    def interrupt(self) -> None:
        """The statement its thread runs now stopped (its read ends in the engine's error),
        off the event loop: PostgreSQL's cancel waits on its server (up to 30 s), and the
        interrupt is sent again until the statement has returned (audit.sql.Stoppable)."""
        if self._store is not None:
            self._interrupting = asyncio.get_running_loop().run_in_executor(
                None, self._interrupt, self._store)

    @staticmethod
    def _interrupt(store: AuditStore) -> None:
        try:
            store.interrupt()
        except Exception as exc:  # the engine's (the server unreachable): the read runs on
            log.warning("a cancelled read's statement could not be interrupted: %s", exc)

    def _read(self, read: Callable[[AuditStore], T], stop: threading.Event) -> T:
        if self._store is None:
            try:
                self._store = self._open()
            except (NoStore, NoKey) as exc:
                log.warning("the history cannot be shown: %s", exc)
                raise Unavailable(str(exc)) from exc
        self._store.stopped_by(stop)
        try:
            return read(self._store)
        except DamagedEntry as exc:
            log.error("the history cannot be shown: %s", exc)
            raise Unavailable(str(exc)) from exc

    async def close(self) -> None:
        """Close the store if opened, once the reads asked before are done."""
        await self._thread.close(self._close)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()


class _Pool:
    """Up to `count` connections of a store, each opened on a thread of its own when first
    needed: a read takes one no other read is using (the one freed last, so that reads one
    after another open one alone), waiting while every one is."""

    def __init__(self, open_store: Open, name: str, count: int) -> None:
        self._free: asyncio.LifoQueue[_Opened] = asyncio.LifoQueue()
        for n in range(count):
            self._free.put_nowait(_Opened(open_store, OneThread(f"{name}-{n}")))
        self._count = count

    async def run(self, read: Callable[[AuditStore], T]) -> T:
        """`read` done on a connection no other read is using; Unavailable if it cannot be
        opened. Cancelled, the read is stopped at its next statement, the one running on its
        thread interrupted: the connection is free once the read has ended there, not before."""
        opened, stop = await self._free.get(), threading.Event()
        reading = asyncio.ensure_future(opened.run(read, stop))
        reading.add_done_callback(partial(self._freed, opened))
        try:
            return await asyncio.shield(reading)
        except asyncio.CancelledError:
            if not reading.done():  # the connection still the read's: no other's interrupted
                stop.set()
                opened.interrupt()
            raise

    def _freed(self, opened: _Opened, reading: asyncio.Future[Any]) -> None:
        """`opened` free again, its read done (what it ended with taken, as no one may await
        it)."""
        retrieved(reading)
        self._free.put_nowait(opened)

    async def close(self) -> None:
        """Close every connection opened, once the reads asked before are done."""
        for _ in range(self._count):
            await (await self._free.get()).close()


@dataclass(frozen=True)
class Checked:
    """An entry (its event decoded from its signed bytes when they decode), and whether those
    bytes are in the signed head and the store's columns match them."""

    entry: Entry
    verified: bool
    pending: bool = False  # no signed head holds it yet: the audit consumer's next one will


@dataclass(frozen=True)
class Shown:
    """Entries each checked against the latest signed head (`trusted` if the log's key signed
    it: if not, none is proved)."""

    entries: list[Checked]
    trusted: bool

    @property
    def tampered(self) -> list[int]:
        """The serials of the entries neither verified nor awaiting the next head: their rows,
        or the tree's hashes, changed (under a head the log's key did not sign, none is proved,
        and that head is what is wrong)."""
        return [c.entry.serial for c in self.entries
                if not (c.verified or c.pending)] if self.trusted else []

    @property
    def proved(self) -> bool:
        """Every entry verified, or awaiting the next head, under a head the log's key signed:
        what may be asked about (under another head, none is either)."""
        return all(c.verified or c.pending for c in self.entries)


@dataclass(frozen=True)
class History(Shown):
    """A page of a person's history, newest first, checked against `head`; `older` the cursor
    of the page after it (None if none is); `holders` those of their whole history."""

    head: SignedHead | None
    older: str | None
    holders: list[str]


@dataclass(frozen=True)
class CheckedAction:
    """An operator action as its signed bytes tell it, and whether the signed head includes
    them (its columns the same); `pending` if no head signed yet covers it and it is the tree's
    leaf at its serial; neither for one stored beside the tree (before actions were leaves: not
    provable), edited, or unproved."""

    acted: Acted
    verified: bool
    pending: bool = False

    @property
    def beside(self) -> bool:
        """Stored beside the tree, before actions were leaves (not provable), as it was."""
        return self.acted.serial is None and self.acted.faithful


@dataclass(frozen=True)
class Searched(Shown):
    """A page of the log's entries, each checked against the latest signed head; `older` the
    cursor of the page after it (None if none is); a holder asked for that no entry names,
    said on it."""

    older: str | None
    unnamed: Unnamed | None


@dataclass(frozen=True)
class ActionsShown:
    """A page of operator actions, newest first, each checked against the latest signed head
    (`trusted` if the log's key signed it: if not, none is proved); `older` the cursor of the
    page after it; an empty one of a holder or unit no action is on says so (`unacted`)."""

    actions: list[CheckedAction]
    trusted: bool
    older: str | None
    unacted: Unnamed | None = None  # the holder or unit asked, if no action is on it

    @property
    def tampered(self) -> list[str]:
        """The ids of the actions neither verified, nor awaiting the next head, nor stored
        beside the tree as they were (not provable): their rows, or the tree's hashes, changed
        (under a head the log's key did not sign, none is proved, and that head is what is
        wrong)."""
        return [c.acted.action.action_id for c in self.actions
                if not (c.verified or c.pending or c.beside)] if self.trusted else []


@dataclass(frozen=True)
class HeadCheck:
    head: SignedHead
    signature_ok: bool
    consistent: bool | None  # with the head before it; None for the first


def _check(head: SignedHead | None, entry: Entry, covered: int | None) -> Checked:
    """The entry as its signed bytes tell it: verified when the signed head includes those
    bytes and the store's columns say what they say; pending when they do, and no head signed
    yet covers it (the first `covered` entries; None: that is not known, the latest head in the
    store not being the log's key's) and its leaf is the tree's at its serial (not `unproved`:
    its serial moved, past the tree's end)."""
    shown, faithful = as_signed(entry)
    if not faithful:
        log.warning("audit entry %d: its columns differ from its bytes (renkei audit verify)",
                    entry.serial)
    verified = (head is not None and faithful and entry.proof is not None
                and includes(head.head, entry.serial, entry.leaf, entry.proof))
    pending = (covered is not None and faithful and entry.proof is None
               and not entry.unproved and entry.serial >= covered)
    return Checked(shown, verified, pending)


def _each_checked(proved: Proved) -> list[Checked]:
    """The entries as their signed bytes tell them, each checked (_check) against the head
    they are proved under (its signature checked once, by the store's proofs)."""
    head = proved.head
    trusted = head if proved.trusted else None
    covered = 0 if head is None else trusted.head.size if trusted else None
    return [_check(trusted, e, covered) for e in proved.entries]


def _head_trusted(proved: Proved) -> bool:
    """Whether the latest head is the log's key's, or none is signed yet (a store's first
    entries, before the audit consumer's first head: each pending, none said tampered), as the
    store's pages take it."""
    return proved.head is None or proved.trusted


class Records:
    """The store's reads, each done on one of up to READERS connections of it, each on a
    thread of its own (used by one thread at a time), so that one resident's long history
    holds up no other's page, the event loop's pages and readers going on meanwhile; the
    integrity check's on `checks`, a connection of the same store on a thread of its own, so
    that a check of the whole store holds up no resident's page (without it, on the store's
    connections). Each connection is opened at its first read: Unavailable while it cannot
    be."""

    def __init__(self, store: Open, checks: Open | None = None) -> None:
        self._store = _Pool(store, "records", READERS)
        self._checks = self._store if checks is None else _Pool(checks, "records-check", 1)

    async def close(self) -> None:
        """Close the stores, once the reads asked before are done."""
        if self._checks is not self._store:
            await self._checks.close()
        await self._store.close()

    async def of_person(self, id_codes: Sequence[str]) -> History:
        """Every entry about the person (under any of their ID codes), newest first, all checked
        against one signed head: the latest one once they are all read (None if none is); no
        page after it, no holders listed."""
        return await self._store.run(partial(self._of_person, id_codes))

    def _of_person(self, id_codes: Sequence[str], store: AuditStore) -> History:
        found = [entry for person in id_codes
                 for entry in self._every(store, Query(person=person))]
        proved = store.prove(found)
        checked = self._checked(id_codes, proved)
        checked.sort(key=lambda c: (c.entry.event.occurred_at, c.entry.serial), reverse=True)
        return History(checked, _head_trusted(proved), proved.head, None, [])

    async def history(self, id_codes: Sequence[str], where: Query, after: str | None = None,
                      limit: int = HISTORY_PAGE, listing: bool = True) -> History:
        """The `limit` entries about the person (under any of their ID codes) matching `where`
        newest first, from the cursor `after` on (ValueError if it is no cursor), only those read
        and checked; if `listing`, the holders of all their entries listed by the store."""
        return await self._store.run(partial(self._history, id_codes, where, after, limit,
                                             listing))

    def _history(self, id_codes: Sequence[str], where: Query, after: str | None, limit: int,
                 listing: bool, store: AuditStore) -> History:
        found = sorted((entry for person in id_codes for entry in store.query(
            replace(where, person=person), limit=limit + 1, after=after, newest=True).entries),
            key=lambda e: (e.event.occurred_at, e.serial), reverse=True)
        shown = found[:limit]
        proved = store.prove(shown)
        holders = sorted(set[str]().union(*map(store.holders_of, id_codes))) if listing else []
        older = cursor_of(shown[-1]) if len(found) > limit else None
        return History(self._checked(id_codes, proved), _head_trusted(proved), proved.head, older,
                       holders)

    async def entry_of(self, id_codes: Sequence[str], serial: int) -> Shown | None:
        """One of the person's entries, alone; None if it is not about them (or does not
        exist)."""
        return await self._store.run(partial(self._entry_of, id_codes, serial))

    def _entry_of(self, id_codes: Sequence[str], serial: int, store: AuditStore
                  ) -> Shown | None:
        entry = store.entry(serial)
        if entry is None:
            return None
        proved = store.prove([entry])
        found = self._checked(id_codes, proved)
        return Shown(found, _head_trusted(proved)) if found else None

    async def approval_of(self, event: AccessLogEvent) -> Shown:
        """The approval of the exchange `event` logs a step of, as its signed bytes tell it,
        checked against the latest signed head: none if the store has no approval of it (a
        refused request, or one purged)."""
        return await self._store.run(partial(self._approval_of, event))

    @classmethod
    def _approval_of(cls, event: AccessLogEvent, store: AuditStore) -> Shown:
        approval = approval_id(event)
        return cls._entries_at(store.serials([approval] if approval else []).values(), store)

    async def entries_at(self, serials: Iterable[int]) -> Shown:
        """The entries at `serials` (those that exist), as their signed bytes tell them, each
        checked against the latest signed head: what a request asked about them is built from
        is read again, proved, not taken from the page it was chosen on."""
        return await self._store.run(partial(self._entries_at, list(serials)))

    @staticmethod
    def _entries_at(serials: Iterable[int], store: AuditStore) -> Shown:
        proved = store.prove([entry for entry in map(store.entry, serials) if entry is not None])
        return Shown(_each_checked(proved), _head_trusted(proved))

    @staticmethod
    def _every(store: AuditStore, where: Query) -> Iterator[Entry]:
        """Every match, page after page."""
        after: str | None = None
        while True:
            page = store.query(where, limit=MAX_PAGE, after=after)
            yield from page.entries
            if page.next_cursor is None:
                return
            after = page.next_cursor

    @staticmethod
    def _checked(id_codes: Sequence[str], proved: Proved) -> list[Checked]:
        """The entries about the person, as their signed bytes tell them."""
        return [c for c in _each_checked(proved) if c.entry.event.person in id_codes]

    async def search(self, where: Query, after: str | None, limit: int = SEARCH_PAGE
                     ) -> Searched:
        """A page of the log's entries matching `where`, each checked against the latest signed
        head, as `audit query` proves a page (ValueError if `after` is no cursor); an empty one
        of a holder no entry names says so (`unnamed`), as `actions` does."""
        return await self._store.run(partial(self._search, where, after, limit))

    @staticmethod
    def _search(where: Query, after: str | None, limit: int, store: AuditStore) -> Searched:
        page = store.query(where, limit=limit, after=after, prove=True)
        unnamed = None if where.holder is None or page.entries else store.unnamed(where.holder)
        checked = _each_checked(Proved(page.entries, page.head, page.trusted))
        return Searched(checked, page.trusted, page.next_cursor, unnamed)

    async def actions(self, where: ActionQuery, after: str | None,
                      limit: int = SEARCH_PAGE) -> ActionsShown:
        """A page of the operator actions matching `where`, newest first, each checked against
        the latest signed head (ValueError if `after` is no cursor)."""
        return await self._store.run(partial(self._actions, where, after, limit))

    @staticmethod
    def _actions(where: ActionQuery, after: str | None, limit: int, store: AuditStore
                 ) -> ActionsShown:
        page = store.actions(where, limit=limit, after=after)
        head = page.head if page.trusted else None
        checked = []
        for a in page.actions:
            if not a.faithful:
                log.warning("operator action %s: its columns differ from its bytes (renkei "
                            "audit verify)", a.action.action_id)
            verified = pending = False
            # a leaf: proved by the store if the trusted head holds it; if not, after that head
            if a.faithful and a.serial is not None:
                verified = (head is not None and a.proof is not None
                            and includes(head.head, a.serial, a.record, a.proof))
                pending = page.trusted and a.proof is None and not a.unproved
            checked.append(CheckedAction(a, verified, pending))
        unacted = None if where.subject is None or checked else store.unacted(where.subject)
        return ActionsShown(checked, page.trusted, page.next_cursor, unacted)

    async def against(self, anchored: Sequence[SignedHead],
                      committed: Committed | None) -> VerifyReport:
        """The store against heads `anchored` outside it and the audit consumer's last commit,
        as `audit verify` checks it (every head anchored, or those an AnchorCheck stands for
        them): its `anchor` the largest signed by the log's key, its findings what is wrong."""
        return await self._checks.run(
            lambda checks: checks.verify_outside(anchored, committed))

    async def heads(self) -> list[HeadCheck]:
        """The latest signed heads, newest first: each one's signature, and its consistency with
        the one before (the log only grew between them, nothing in it changed): those the
        audit consumer signed (the portal holds the head key's public half alone)."""
        return await self._store.run(self._heads)

    @staticmethod
    def _heads(store: AuditStore) -> list[HeadCheck]:
        checks: list[HeadCheck] = []
        previous: SignedHead | None = None
        for signed in store.heads(latest=HEADS_SHOWN + 1):
            ok = verify_head(signed, store.signer.public_key)
            linked = None
            if previous is not None:
                proof = store.consistency_proof(previous.head.size, signed.head.size)
                linked = consistent(previous.head, signed.head, proof)
            checks.append(HeadCheck(signed, ok, linked))
            previous = signed
        return checks[::-1]
