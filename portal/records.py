"""The platform's access log as the pages show it: a person's entries, each checked against the
signed tree head with its inclusion proof; searches for oversight; the heads and their
consistency, and the store against the largest head anchored outside it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from audit.events import AccessLogEvent, signed_event
from audit.heads import SignedHead, consistent, includes, verify_head
from audit.store import MAX_PAGE, AuditStore, Entry, Page, Proved, Query, VerifyReport

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
    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def of_person(self, id_codes: Sequence[str], holder: str | None = None,
                  since: datetime | None = None, until: datetime | None = None
                  ) -> tuple[list[Checked], SignedHead | None]:
        """Every entry about the person (under any of their ID codes), newest first, all checked
        against one signed head: the latest one once they are all read (None if none is)."""
        found = [entry for person in id_codes for entry in self._every(
            Query(person=person, holder=holder, since=since, until=until))]
        proved = self.store.prove(found)
        checked = self._checked(id_codes, proved)
        checked.sort(key=lambda c: (c.entry.event.occurred_at, c.entry.serial), reverse=True)
        return checked, proved.head

    def entry_of(self, id_codes: Sequence[str], serial: int) -> Checked | None:
        """One of the person's entries; None if it is not about them (or does not exist)."""
        entry = self.store.entry(serial)
        if entry is None:
            return None
        return next(iter(self._checked(id_codes, self.store.prove([entry]))), None)

    def events(self, serials: Iterable[int]) -> list[AccessLogEvent]:
        """The events of the entries at `serials` (those that exist), as their signed bytes
        tell them."""
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

    def search(self, where: Query, after: str | None, limit: int = 50) -> Page:
        return self.store.query(where, limit=limit, after=after)

    def against(self, anchored: Sequence[SignedHead]) -> VerifyReport:
        """The store against heads `anchored` outside it, as `audit verify` checks it (every
        one anchored, or those an AnchorCheck stands for them): its `anchor` the largest signed
        by the log's key, its findings what is wrong."""
        return self.store.verify_anchor(anchored)

    def heads(self) -> list[HeadCheck]:
        """The latest signed heads, newest first: each one's signature, and its consistency with
        the one before (the log only grew between them, nothing in it changed): those the
        audit consumer signed (the portal holds the head key's public half alone)."""
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
