"""The numbering authority: it issues personal numbers and alone knows whose they are.

A number is 11 digits drawn with `secrets` (a CSPRNG) and the ordinance's check digit, entered
in the code-conversion table against the resident code: drawn, never derived, so nothing computes
one from the other. A draw that hits any number ever issued is drawn again: no number is reissued,
even after it is retired. A resident may ask for a new number (the old one is retired, the history
kept); a changed resident code keeps its number, so the registry's code changes are followed before
anyone is numbered. Looking a number up is a service call for holders that lawfully hold it, logged
with who asked and why.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING

from authority.check_digit import is_valid, with_check_digit
from authority.store import AuthorityStore, Forgotten
from registry.residents import ChangeEvent, ChangeKind, fingerprint
from renkei import retention, sqlite
from renkei.clock import Age, Clock, Mark

if TYPE_CHECKING:
    from registry.store import RegistryStore

REGISTRY_CURSOR = "registry"  # the cursor of a registry made before registries had an identity

log = logging.getLogger(__name__)

# said when a registry went back past the code changes followed that the authority kept
UNKEPT_TOLD = ("; those it lost that were followed before the authority kept them (a store from "
               "before that) or forgotten past the retention are not undone: their residents' "
               "numbers stay under the codes they gave, which the registry may give others (a "
               "code changed to one has the number there retired; a resident registered under "
               "one is taken for its resident, given that number): check each code change "
               "followed in the authority's history ('code-followed') against the code the "
               "registry has for its resident")


class AlreadyAssigned(ValueError):
    """The resident already has a personal number."""


class UnknownResident(LookupError):
    """No personal number is assigned to that resident code."""


class TicketUsed(PermissionError):
    """The login ticket was used for another change of number: it is good for one."""


class TicketExpired(PermissionError):
    """The login ticket expired by the authority's clock once: its use is no longer kept."""


@dataclass(frozen=True)
class TicketShown:
    """The login ticket a change of number is asked under: its identity, and when it expires (by
    the wall clock, and on the elapsed one if its login was marked: renkei.clock)."""

    ticket_id: str
    expires_at: datetime
    expires: Mark | None = None


def shape(presented: str) -> str:
    """What the look-up log keeps of what was presented as a number and is none: its length,
    never its text (a holder may send anything there: a name, a phone number, a whole record)."""
    digits = presented.isascii() and presented.isdigit()
    return f"{len(presented)} {'digits' if digits else 'characters'}"


def forgotten_told(parts: Iterable[Forgotten], cutoff: datetime) -> str:
    """What a purge forgot (the parts its transactions deleted), in words, as `renkei authority
    purge` and `serve`'s log say it: the code changes followed only if there were any."""
    lookups, followed = retention.summed(parts, Forgotten(0, 0))
    told = f"{lookups:,} look-ups logged before {cutoff.date().isoformat()} forgotten"
    return told if not followed else (
        f"{told}, and {followed:,} code change(s) followed before it that moved a number (a "
        "registry going back past them has them undone no longer)")


@dataclass
class Undone:
    """What undoing the code changes a registry lost did: numbers moved back to the codes it has
    for their residents, those retired in following them (withdrawn from the code a lost change
    gave), which stay retired, and those withdrawn in undoing them (issued to the code it has for
    a resident meanwhile); and whether it went back past the changes followed kept, some not kept
    (followed before they were, or forgotten past the retention): those it lost are not undone."""

    moved: int = 0
    retired: int = 0
    withdrawn: int = 0
    unkept: bool = False  # it may have lost changes followed whose moves were not kept


@dataclass(frozen=True)
class Move:
    """How the history records a number moved from one resident code to another: its kind and
    reason, and the reason of withdrawing a number the code it goes to has (issued to it while the
    number was under the other: the resident keeps the number they had)."""

    kind: str
    reason: str
    withdrawal: str


@dataclass(frozen=True)
class NumberChange:
    """A resident's change of number as done: the new number, and, for a request acted on
    before and asked again (a retry), when it was given then (the number's issue, if the store
    has it): nothing changed now."""

    number: str
    again: bool = False
    given_at: datetime | None = None


FOLLOWED = Move("code-followed", "resident code changed",
                "issued to a changed resident code before the change was followed: the resident "
                "keeps their number")
UNFOLLOWED = Move("code-unfollowed",
                  "the registry went back: the change of resident code it lost is undone",
                  "issued to a resident code while a change the registry lost had moved its "
                  "resident's number from it: the resident keeps their number")


def withdrawn_told(count: int) -> str:
    """What following the registry withdrew (numbers issued to a changed code before its change
    was followed, each retired), in words, as `follow`, `assign-all` and `serve`'s log say it:
    how many, never which (the history names them)."""
    return (f"{count} personal number(s) issued to a changed resident code retired (never "
            "reissued), each resident keeping the number they had: the authority's history "
            "names them ('number-withdrawn')")


def draw_number() -> str:
    return with_check_digit(f"{secrets.randbelow(10 ** 11):011d}")


class NumberingAuthority:
    def __init__(self, store: AuthorityStore, draw: Callable[[], str] = draw_number,
                 clock: Clock | None = None) -> None:
        self._store = store
        self._draw = draw
        self._clock = clock or Clock()
        self.collisions = 0  # draws that hit a number issued before, and were drawn again
        self.withdrawn = 0  # numbers issued to a changed code before its change was followed
        self._bookmarked: set[str] = set()  # the registries' cursors known kept in the store

    def assign(self, resident_code: str) -> str:
        """Give a resident their first personal number."""
        with self._store.transaction():
            if self._store.number_of(resident_code) is not None:
                raise AlreadyAssigned("that resident already has a personal number")
            return self._issue(resident_code)

    def assign_all(self, resident_codes: Iterable[str]) -> int:
        """Give a number to each resident that has none, sqlite.BATCH residents a transaction with
        a pause after each (a look-up or change waiting for the store goes then); how many were
        given. Stopped midway, the batches done are kept and the next call numbers the rest."""
        given = 0
        codes = iter(resident_codes)
        while batch := list(islice(codes, sqlite.BATCH)):
            with self._store.transaction():
                for resident_code in batch:
                    if self._store.number_of(resident_code) is None:
                        self._issue(resident_code)
                        given += 1
            time.sleep(sqlite.BATCH_PAUSE)
        return given

    def assign_registry(self, registry: RegistryStore) -> tuple[int, int]:
        """Follow the registry's code changes, then number who has none, at one instant of it:
        (changes followed, numbers given)."""
        with registry.snapshot():
            followed = self.follow_registry(registry)
            return followed, self.assign_all(registry.resident_codes())

    def follow_registry(self, registry: RegistryStore) -> int:
        """Follow the registry's code changes not seen yet; how many moved a number."""
        source = self._bookmark(registry)
        return self.follow(registry.events(self._resumed(registry, source),
                                           ChangeKind.CODE_CHANGED), source)

    def _bookmark(self, registry: RegistryStore) -> str:
        """The cursor of the registry's code changes: each registry's own, by its identity (one
        generated again numbers its changes from 1), kept for it if it comes back. A registry not
        followed before starts at its first change, said once if another was; numbers stay as
        they are (none issued is ever issued again)."""
        identity = registry.identity()
        if identity is None:
            return REGISTRY_CURSOR
        source = f"{REGISTRY_CURSOR} {identity}"
        if source not in self._bookmarked:
            if self._store.started(source) and set(self._store.sources()) - {source}:
                log.warning("the registry at %s is not the one followed before: its code changes "
                            "are followed from its first", registry.path)
            self._bookmarked.add(source)
        return source

    def _resumed(self, registry: RegistryStore, source: str) -> int:
        """Where to follow the registry's code changes from: its bookmark, or its first change if
        it went back (an older copy put back, its new changes numbered as the ones lost were):
        its change at the bookmark is not the one followed (none, or another fingerprint; a
        bookmark kept without one is judged by its change being there). The changes followed that
        it lost are undone first, said once: the codes they gave, unknown to it, it may give
        again, to others. Followed again, a change moves nothing. The bookmark is read again in
        the undo's transaction: another process (`serve`, a command) that found the registry gone
        back at once and undid it meanwhile is followed on from, nothing undone again."""
        seen, there = self._bookmark_at(registry, source)
        if there:
            return seen
        with self._store.transaction():
            seen, there = self._bookmark_at(registry, source)
            if there:
                return seen
            undone = self._unfollow_lost(registry, source)
            self._store.set_cursor(source, 0)
        log.warning("the registry at %s went back: its change %d is not the one followed (an "
                    "older copy put back, or tampered with?): the %d code changes followed that it "
                    "lost are undone, their residents' numbers back under the codes it has for "
                    "them, and its code changes are followed again from its first%s",
                    registry.path, seen, undone.moved, UNKEPT_TOLD if undone.unkept else "")
        if undone.retired or undone.withdrawn:
            log.warning("undoing the code changes the registry at %s lost: %d personal number(s) "
                        "retired in following them stay retired (numbers are never reissued), and "
                        "%d issued meanwhile to the code the registry has for their resident are "
                        "retired, each resident keeping the number they had (none is left under a "
                        "code the registry lost, which it may give another): the authority's "
                        "history names them ('number-withdrawn')", registry.path, undone.retired,
                        undone.withdrawn)
        return 0

    def _bookmark_at(self, registry: RegistryStore, source: str) -> tuple[int, bool]:
        """The bookmark of `source` (0 if none was followed), and whether the registry has the
        change at it that was followed (the same fingerprint, or any change if none was kept;
        False: it went back)."""
        seen, kept = self._store.cursor(source)
        there = registry.event(seen) if seen else None
        return seen, not seen or (there is not None and kept in (None, fingerprint(there)))

    def _unfollow_lost(self, registry: RegistryStore, source: str) -> Undone:
        """Undo the changes followed that the registry lost (in a transaction), the latest first,
        down to the latest it has (the same fingerprint at its number). A number the resident has
        since changed goes back with them; one issued meanwhile to the code the registry has for
        them is withdrawn, as following withdraws one issued to a code before its change was
        followed: none stays under a code the registry lost, which it may give another, whose
        newcomer would be taken for its resident; a number following one withdrew from the code it
        gave stays retired. Past the changes kept, with some not kept, those it lost are not
        known: not undone (unkept)."""
        undone, kept = Undone(), 0
        for seq, followed, old_code, new_code in self._store.followed(source):
            there = registry.event(seq)
            if there is not None and fingerprint(there) == followed:
                kept = seq
                break
            number = self._store.number_of(new_code)
            if number is None:
                continue
            if self._store.withdrawn_for(new_code, number):
                undone.retired += 1
            if self._move(number, new_code, old_code, UNFOLLOWED):
                undone.withdrawn += 1
            undone.moved += 1
        self._store.forget_followed(source, kept)
        undone.unkept = not kept and not self._store.all_followed_kept(source)
        return undone

    def change_number(self, resident_code: str, reason: str, request_id: str | None = None,
                      ticket: TicketShown | None = None) -> str:
        """The resident's request for a new number: the old one is retired, never reissued. A
        request (`request_id`) read again is given the number it was given, nothing retired.
        Asked under a login `ticket`, it is that ticket's one change: TicketUsed if it was used
        for another, TicketExpired if it expired by this authority's clock before (whatever the
        clock says now: its use may be forgotten), and nothing changes."""
        return self.number_change(resident_code, reason, request_id, ticket).number

    def number_change(self, resident_code: str, reason: str, request_id: str | None = None,
                      ticket: TicketShown | None = None) -> NumberChange:
        """`change_number`, told whether the request was acted on before (and when)."""
        if not reason.strip():
            raise ValueError("a change of number records the resident's reason")
        with self._store.transaction():
            given = None if request_id is None else self.number_given(request_id, resident_code)
            if given is not None:
                return NumberChange(given, again=True, given_at=self._store.issued_at(given))
            if ticket is not None:
                self._use(ticket, request_id)
            old = self._current(resident_code)
            self._store.retire(old, self._clock())
            new = self._issue(resident_code)
            self._store.record_change(self._clock(), "number-changed", resident_code, old, new,
                                      reason)
            if request_id is not None:
                self._store.record_answer(request_id, new)
        return NumberChange(new)

    def judged(self, issued: datetime, mark: Mark | None, lasts: timedelta) -> Age:
        """A login ticket's age by this authority's clock, issued then (marked `mark`), living
        `lasts`: by the time elapsed since its issue, not a clock's step (renkei.clock)."""
        return self._clock.judged(issued, mark, lasts)

    def number_given(self, request_id: str, resident_code: str) -> str | None:
        """The number a request for this resident's new number was given; None if it was not
        acted on. UnknownResident if it was given to someone else, or is no longer theirs
        (changed again since): a request id asked again is never another person's number."""
        given = self._store.answered(request_id)
        if given is not None and self._store.resident_of(given) != resident_code:
            raise UnknownResident("that request gave a number that is not this resident's now")
        return given

    def follow_code_change(self, old_code: str, new_code: str) -> None:
        """The resident's code changed: the same personal number, under the new code. A code
        changed to itself is refused (ValueError): its own number would be taken for one issued to
        the new code and retired."""
        if old_code == new_code:
            raise ValueError("a resident code cannot change to itself: its number is kept as is")
        with self._store.transaction():
            if not self._rename(old_code, new_code):
                raise UnknownResident("no personal number for that resident code")

    def follow(self, events: Iterable[ChangeEvent], source: str = REGISTRY_CURSOR) -> int:
        """Follow the registry's code changes past the last one seen (the cursor of `source`);
        how many moved a number. Each is followed and marked seen at once, so following again
        never repeats one (and a change followed again finds no number under the old code: it
        moves nothing)."""
        followed = 0
        for event in events:
            if event.kind is not ChangeKind.CODE_CHANGED or \
                    event.seq <= self.registry_cursor(source):
                continue
            told = fingerprint(event)
            with self._store.transaction():
                if self._rename(event.resident_code, event.after[0]):
                    self._store.record_followed(source, event.seq, told, event.resident_code,
                                                event.after[0], self._clock())
                    followed += 1
                self._store.set_cursor(source, event.seq, told)
        return followed

    def registry_cursor(self, source: str = REGISTRY_CURSOR) -> int:
        """The sequence number of the last registry event seen (in the cursor of `source`)."""
        return self._store.cursor(source)[0]

    def number_of(self, resident_code: str) -> str | None:
        """The resident's current number (to notify them of it)."""
        return self._store.number_of(resident_code)

    def lookup(self, number: str, holder: str, purpose: str,
               look_up: str | None = None) -> str | None:
        """The resident code behind a current personal number, for a holder that lawfully holds
        it; logged with who asked and why, once for a `look_up` (what identifies it) read again.
        None for a retired, unknown or malformed number (logged by its shape alone)."""
        if not holder.strip() or not purpose.strip():
            raise ValueError("a look-up names the holder asking and its purpose")
        if not is_valid(number):
            resident_code, outcome, kept = None, "malformed", shape(number)
        else:
            resident_code, kept = self._store.resident_of(number), number
            outcome = ("found" if resident_code is not None
                       else "retired" if self._store.was_issued(number) else "unknown")
        self._store.record_lookup(self._clock(), holder, purpose, kept, outcome, look_up)
        return resident_code

    def forget_before(self, cutoff: datetime) -> Iterator[Forgotten]:
        """Forget the look-ups logged and the code changes followed before `cutoff`, a batch a
        transaction, each yielded once committed."""
        return self._store.forget_before(cutoff)

    def counts(self) -> dict[str, int]:
        """Numbers issued, current and retired; look-ups logged."""
        return self._store.counts()

    def _rename(self, old_code: str, new_code: str) -> bool:
        """Move the number to the new code (in a transaction); False if the old code has none."""
        number = self._store.number_of(old_code)
        if number is None:
            return False
        if self._move(number, old_code, new_code, FOLLOWED):
            self.withdrawn += 1
        return True

    def _move(self, number: str, old_code: str, new_code: str, how: Move) -> bool:
        """Move the number from the old code to the new (in a transaction), recorded as `how`
        says; whether it withdrew a number the new code had (issued to it while the number was
        under the old, as `assign-all` once did before a change was followed): retired, never
        reissued, and recorded, the resident keeping their number."""
        wrong = self._store.number_of(new_code)
        if wrong is not None:
            self._store.unbind(new_code)
            self._store.retire(wrong, self._clock())
            self._store.record_change(self._clock(), "number-withdrawn", new_code, wrong, number,
                                      how.withdrawal)
        self._store.rename(old_code, new_code)
        self._store.record_change(self._clock(), how.kind, old_code, old_code, new_code,
                                  how.reason)
        return wrong is not None

    def _use(self, ticket: TicketShown, change_id: str | None) -> None:
        """Record the ticket used for the change (in a transaction), if it may be; the uses of
        the tickets expired by each timeline of the clock are forgotten (a step forward, which
        did not age them, forgets none), those marked in this boot by the time elapsed. A ticket
        marked in this boot is judged by its mark alone: its use is forgotten only once it expired
        by it, which the ticket's check refuses."""
        if not self._clock.in_this_boot(ticket.expires) and \
                self._store.ticket_forgotten(ticket.expires_at):
            raise TicketExpired("that login ticket expired: its use is no longer kept")
        if not self._store.use_ticket(ticket.ticket_id, change_id, ticket.expires_at,
                                      ticket.expires, self._clock.earliest(), self._clock.mark()):
            raise TicketUsed("that login ticket was used for another change of number")

    def _current(self, resident_code: str) -> str:
        number = self._store.number_of(resident_code)
        if number is None:
            raise UnknownResident("no personal number for that resident code")
        return number

    def _issue(self, resident_code: str) -> str:
        """Draw until the number was never issued; bind it to the resident (in a transaction)."""
        while True:
            number = self._draw()
            if not is_valid(number):
                raise ValueError("the draw gave a number without a valid check digit")
            if self._store.issue(number, resident_code, self._clock()):
                self._store.bind(resident_code, number)
                return number
            self.collisions += 1
