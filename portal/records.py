"""The platform's access log as the pages show it: a person's entries, each checked against the
signed tree head with its inclusion proof; searches for oversight; the heads and their
consistency, and the store against the largest head anchored outside it. Read off the event
loop: a busy store waits up to its busy timeout (30 s), a check against a year of heads ~30 s."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from audit.events import AccessLogEvent, signed_event
from audit.heads import SignedHead, consistent, includes, verify_head
from audit.store import MAX_PAGE, AuditStore, Entry, Page, Proved, Query, VerifyReport
from renkei.tasks import OneThread

HEADS_SHOWN = 50

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checked:
    """An entry (its event decoded from its signed bytes when they decode), and whether those
    bytes are in the signed head and the store's columns match them."""

    entry: Entry
    verified: bool
    pending: bool = False  # no signed head holds it yet: the audit consumer's next one will


@dataclass(frozen=True)
class HeadCheck:
    head: SignedHead
    signature_ok: bool
    consistent: bool | None  # with the head before it; None for the first


def _check(id_codes: Sequence[str], head: SignedHead | None, entry: Entry,
           covered: int | None) -> Checked | None:
    """The entry as its signed bytes tell it (None if they tell of someone else): verified when
    the signed head includes those bytes and the store's columns say what they say; pending
    when they do, and no head signed yet covers it (the first `covered` entries; None: that is
    not known, the latest head in the store not being the log's key's)."""
    signed = signed_event(entry.leaf)
    if signed is not None and signed != entry.event:
        log.warning("audit entry %d: its columns differ from its bytes (renkei audit verify)",
                    entry.serial)
    if (entry.event if signed is None else signed).person not in id_codes:
        return None
    verified = (head is not None and signed == entry.event and entry.proof is not None
                and includes(head.head, entry.serial, entry.leaf, entry.proof))
    pending = (covered is not None and signed == entry.event and entry.proof is None
               and entry.serial >= covered)
    return Checked(entry if signed is None else replace(entry, event=signed), verified, pending)


class Records:
    """The store's reads, each done on the store's thread (its connection used by one thread at
    a time), the event loop's pages and readers going on meanwhile; the integrity check's on
    `checks`, a connection of the same store on a thread of its own, so that a check of the
    whole store holds up no resident's page (without it, on the store's thread, in turn)."""

    def __init__(self, store: AuditStore, checks: AuditStore | None = None) -> None:
        self.store, self._thread = store, OneThread("records")
        self._checks = (store, self._thread) if checks is None else (
            checks, OneThread("records-check"))

    async def close(self) -> None:
        """Close the stores, once the reads asked before are done."""
        checks, thread = self._checks
        if thread is not self._thread:
            await thread.close(checks.close)
        await self._thread.close(self.store.close)

    async def of_person(self, id_codes: Sequence[str], holder: str | None = None,
                        since: datetime | None = None, until: datetime | None = None
                        ) -> tuple[list[Checked], SignedHead | None]:
        """Every entry about the person (under any of their ID codes), newest first, all checked
        against one signed head: the latest one once they are all read (None if none is)."""
        return await self._thread.run(partial(self._of_person, id_codes, holder, since, until))

    def _of_person(self, id_codes: Sequence[str], holder: str | None, since: datetime | None,
                   until: datetime | None) -> tuple[list[Checked], SignedHead | None]:
        found = [entry for person in id_codes for entry in self._every(
            Query(person=person, holder=holder, since=since, until=until))]
        proved = self.store.prove(found)
        checked = self._checked(id_codes, proved)
        checked.sort(key=lambda c: (c.entry.event.occurred_at, c.entry.serial), reverse=True)
        return checked, proved.head

    async def entry_of(self, id_codes: Sequence[str], serial: int) -> Checked | None:
        """One of the person's entries; None if it is not about them (or does not exist)."""
        return await self._thread.run(partial(self._entry_of, id_codes, serial))

    def _entry_of(self, id_codes: Sequence[str], serial: int) -> Checked | None:
        entry = self.store.entry(serial)
        if entry is None:
            return None
        return next(iter(self._checked(id_codes, self.store.prove([entry]))), None)

    async def events(self, serials: Iterable[int]) -> list[AccessLogEvent]:
        """The events of the entries at `serials` (those that exist), as their signed bytes
        tell them."""
        return await self._thread.run(partial(self._events, list(serials)))

    def _events(self, serials: Iterable[int]) -> list[AccessLogEvent]:
        found = [entry for entry in map(self.store.entry, serials) if entry is not None]
        return [signed_event(entry.leaf) or entry.event for entry in found]

    def _every(self, where: Query) -> Iterator[Entry]:
        """Every match, page after page."""
        after: str | None = None
        while True:
            page = self.store.query(where, limit=MAX_PAGE, after=after)
            yield from page.entries
            if page.next_cursor is None:
                return
            after = page.next_cursor

    @staticmethod
    def _checked(id_codes: Sequence[str], proved: Proved) -> list[Checked]:
        """The entries about the person, as their signed bytes tell them (the head's signature
        checked once, by the store's proofs)."""
        head = proved.head
        trusted = head if proved.trusted else None
        covered = 0 if head is None else trusted.head.size if trusted else None
        return [c for c in (_check(id_codes, trusted, e, covered) for e in proved.entries)
                if c is not None]

    async def search(self, where: Query, after: str | None, limit: int = 50) -> Page:
        return await self._thread.run(partial(self.store.query, where, limit=limit, after=after))

    async def against(self, anchored: Sequence[SignedHead]) -> VerifyReport:
        """The store against heads `anchored` outside it, as `audit verify` checks it (every
        one anchored, or those an AnchorCheck stands for them): its `anchor` the largest signed
        by the log's key, its findings what is wrong."""
        checks, thread = self._checks
        return await thread.run(partial(checks.verify_anchor, anchored))

    async def heads(self) -> list[HeadCheck]:
        """The latest signed heads, newest first: each one's signature, and its consistency with
        the one before (the log only grew between them, nothing in it changed): those the
        audit consumer signed (the portal holds the head key's public half alone)."""
        return await self._thread.run(self._heads)

    def _heads(self) -> list[HeadCheck]:
        checks: list[HeadCheck] = []
        previous: SignedHead | None = None
        for signed in self.store.heads(latest=HEADS_SHOWN + 1):
            ok = verify_head(signed, self.store.signer.public_key)
            linked = None
            if previous is not None:
                proof = self.store.consistency_proof(previous.head.size, signed.head.size)
                linked = consistent(previous.head, signed.head, proof)
            checks.append(HeadCheck(signed, ok, linked))
            previous = signed
        return checks[::-1]
