"""The numbering authority: check digits, the code-conversion table, changes, logged look-ups."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from stdnum.jp import in_

from audit.events import millis
from audit.heads import Signer
from authority import portal as authority_portal
from authority import serve
from authority.check_digit import check_digit, is_valid, with_check_digit
from authority.cli import _registry as cli_registry
from authority.cli import authority_cli
from authority.service import (
    AlreadyAssigned,
    NumberingAuthority,
    TicketExpired,
    TicketShown,
    TicketUsed,
    UnknownResident,
    draw_number,
    forgotten_told,
)
from authority.store import AuthorityStore, Forgotten
from broker import acls, topics
from registry import store as registry_store
from registry import tickets
from registry.resident_code import random_codes
from registry.residents import ChangeKind, Resident, change
from renkei import retention, sealing
from renkei import sqlite as renkei_sqlite
from renkei import town as town_setup
from renkei.clock import AHEAD, Age, Clock, Mark
from renkei.questions import Declined
from renkei.state import STATE_ENV
from renkei.tasks import cancelled
from schemas.codec import CODEC
from schemas.messages import (
    FOUND,
    TIMED_OUT,
    ChangeOfNumber,
    LoginTicket,
    PersonalNumber,
    PortalAnswer,
    PortalQuery,
)
from tests.clock_helpers import Hands, unmarked
from tests.kafka_helpers import free_port, spawn, stop
from tests.loop_helpers import Deadline
from tests.proc_helpers import open_files
from tests.test_registry_service import _entry

CHANGE = ["change-number", "--request-id", "F-1", "--reason", "lost"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AuthorityStore]:
    opened = AuthorityStore(tmp_path / "authority.db")
    yield opened
    opened.close()


def test_check_digit_of_the_ordinance() -> None:
    assert with_check_digit("12345678901") == "123456789018"  # the published example
    assert is_valid("123456789018") and in_.is_valid("123456789018")
    for wrong in ["123456789010", "123456789019", "12345678901", "1234567890180", "12345678901８"]:
        assert not is_valid(wrong)
    rng = random.Random(1)
    for _ in range(20_000):
        base = f"{rng.randrange(10 ** 11):011d}"
        assert str(check_digit(base)) == in_.calc_check_digit(base)
        assert is_valid(with_check_digit(base)) and in_.is_valid(with_check_digit(base))


def test_numbers_are_drawn_not_derived(store: AuthorityStore, tmp_path: Path) -> None:
    residents = random_codes(2_000, seed=1)
    first = NumberingAuthority(store)
    assert first.assign_all(residents) == 2_000
    other_store = AuthorityStore(tmp_path / "other.db")
    other = NumberingAuthority(other_store)
    other.assign_all(residents)
    numbers = [first.number_of(r) for r in residents]
    assert all(n is not None and is_valid(n) and in_.is_valid(n) for n in numbers)
    assert len(set(numbers)) == 2_000
    same = sum(first.number_of(r) == other.number_of(r) for r in residents)
    assert same == 0  # the same residents, two authorities: unrelated numbers
    other_store.close()
    assert first.assign_all(residents) == 0
    with pytest.raises(AlreadyAssigned):
        first.assign(residents[0])


def test_a_number_is_never_reissued_across_100000_changes() -> None:
    """One request at a time, as residents make them; in memory (100,000 commits to disk: slow)."""
    store = AuthorityStore(Path(":memory:"))
    residents = random_codes(1_000, seed=2)
    authority = NumberingAuthority(store)
    authority.assign_all(residents)
    rng = random.Random(3)
    for _ in range(100_000):
        authority.change_number(rng.choice(residents), "lost card")
    counts = authority.counts()
    assert counts == {"issued": 101_000, "current": 1_000, "retired": 100_000, "lookups": 0}
    current = {authority.number_of(r) for r in residents}
    assert len(current) == 1_000 and None not in current
    store.close()


def test_a_colliding_draw_is_drawn_again(store: AuthorityStore) -> None:
    """A draw that repeats any number ever issued, current or retired, is never used."""
    draws = iter(["123456789018", "123456789018", "000000000019", "123456789018",
                  "000000000019", "999999999996", "999999999996", "111111111118"])
    assert all(is_valid(n) for n in ["000000000019", "999999999996", "111111111118"])
    authority = NumberingAuthority(store, draw=lambda: next(draws))
    assert authority.assign("11111111113") == "123456789018"
    assert authority.assign("22222222226") == "000000000019"
    assert authority.change_number("11111111113", "asked") == "999999999996"  # 1 retired
    assert authority.change_number("11111111113", "asked") == "111111111118"
    assert authority.collisions == 4
    with pytest.raises(ValueError, match="check digit"):
        NumberingAuthority(store, draw=lambda: "123456789010").assign("33333333339")


def test_changing_a_number_retires_the_old_and_keeps_history(store: AuthorityStore) -> None:
    authority = NumberingAuthority(store)
    resident = random_codes(1, seed=4)[0]
    old = authority.assign(resident)
    new = authority.change_number(resident, "leaked")
    assert new != old and authority.number_of(resident) == new
    assert authority.lookup(old, "city-a", "tax assessment") is None
    assert authority.lookup(new, "city-a", "tax assessment") == resident
    (entry,) = store.history(resident)
    assert (entry.kind, entry.before, entry.after, entry.reason) == (
        "number-changed", old, new, "leaked")
    with pytest.raises(UnknownResident):
        authority.change_number("00000000000", "no such resident")


def test_two_changes_of_one_number_at_once_each_retire_the_number_before(tmp_path: Path) -> None:
    """The counter's `change-number` read the resident's number while `serve` changed it, then
    waited for its lock: it retired the old number again and replaced the new one, which the
    resident was told and which stayed issued, neither theirs nor retired."""
    path, resident = tmp_path / "authority.db", random_codes(1, seed=9)[0]
    store = AuthorityStore(path)
    first = NumberingAuthority(store).assign(resident)
    told: dict[str, str] = {}

    def at_the_counter() -> None:
        other = AuthorityStore(path)  # another process's connection
        told["counter"] = NumberingAuthority(other).change_number(resident, "lost")
        other.close()

    counter = threading.Thread(target=at_the_counter)

    def drawn_while_the_counter_asks() -> str:
        if not counter.is_alive():
            counter.start()
            time.sleep(0.2)
        return draw_number()

    portal = NumberingAuthority(store, draw=drawn_while_the_counter_asks)
    told["portal"] = portal.change_number(resident, "leaked")
    counter.join()
    assert [(e.before, e.after) for e in store.history(resident)] == [
        (first, told["portal"]), (told["portal"], told["counter"])]
    assert store.counts() == {"issued": 3, "current": 1, "retired": 2, "lookups": 0}
    store.close()


def test_a_request_for_a_new_number_read_again_is_given_the_same(store: AuthorityStore) -> None:
    """The authority's service reads a request at least once: read again (after a crash before
    its commit), it must not retire the number the resident was just shown."""
    authority = NumberingAuthority(store)
    resident, other = random_codes(2, seed=5)
    old = authority.assign(resident)
    authority.assign(other)
    new = authority.change_number(resident, "leaked", "req-1")
    assert authority.change_number(resident, "leaked", "req-1") == new
    assert authority.number_of(resident) == new
    assert [e.after for e in store.history(resident)] == [new]
    with pytest.raises(UnknownResident):  # the request id of another's change: not their number
        authority.change_number(other, "leaked", "req-1")
    assert authority.change_number(resident, "leaked", "req-2") not in (old, new)
    with pytest.raises(UnknownResident):  # changed again since: no longer the number to show
        authority.number_given("req-1", resident)


def test_a_login_ticket_is_good_for_one_change_after_a_restart_too(tmp_path: Path) -> None:
    """A ticket used for one change is refused for another, the number unchanged, by the
    authority started again on its store too; its change asked again is given its number. Once
    the ticket expired, its use is forgotten, and it is refused as expired."""
    path, now = tmp_path / "authority.db", datetime.now(UTC)
    ticket = TicketShown("ticket-1", now + tickets.LASTS)
    store = AuthorityStore(path)
    resident = random_codes(1, seed=8)[0]
    NumberingAuthority(store).assign(resident)
    new = NumberingAuthority(store).change_number(resident, "leaked", "change-1", ticket)
    for restarted in (False, True):
        if restarted:
            store.close()
            store = AuthorityStore(path)
        authority = NumberingAuthority(store)
        with pytest.raises(TicketUsed):
            authority.change_number(resident, "leaked", "change-2", ticket)
        assert authority.change_number(resident, "leaked", "change-1", ticket) == new
        assert authority.number_of(resident) == new and len(store.history(resident)) == 1
    later = NumberingAuthority(store, clock=Clock(lambda: ticket.expires_at))
    later.change_number(resident, "leaked", "change-3", TicketShown("ticket-2", ticket.expires_at
                                                                    + tickets.LASTS))
    with pytest.raises(TicketExpired):
        later.change_number(resident, "leaked", "change-4", ticket)
    assert len(store.history(resident)) == 2
    store.close()


def _changed_under(authority: NumberingAuthority, login_key: Signer, resident: str,
                   ticket: bytes, change_id: str) -> str:
    """The new number the authority gives as the portal's question for it is answered."""
    return authority_portal.new_number(authority, login_key.public_key, change_id, CODEC.encode(
        ChangeOfNumber(resident, "leaked", change_id, ticket)), False).personal_number


def _refused_as_used(authority: NumberingAuthority, login_key: Signer, resident: str,
                     ticket: bytes) -> None:
    with pytest.raises(Declined) as used:
        _changed_under(authority, login_key, resident, ticket, str(uuid.uuid4()))
    assert used.value.reason == tickets.USED


def test_two_logins_in_one_millisecond_get_two_tickets_each_good_for_one_change(
        store: AuthorityStore) -> None:
    """Two card logins of one resident at the same instant: their tickets differ, and each is
    good for one change of its own, and for no other. They were one ticket (the same bytes
    signed, the signature deterministic), whose change the second login's was refused as."""
    authority, login_key = NumberingAuthority(store), Signer.generate()
    resident = random_codes(1, seed=9)[0]
    authority.assign(resident)
    now = datetime.now(UTC)
    first, second = (tickets.ticket(login_key, [resident], now) for _ in range(2))
    assert first != second
    numbers = [_changed_under(authority, login_key, resident, ticket, change_id)
               for ticket, change_id in ((first, "change-1"), (second, "change-2"))]
    assert len(set(numbers)) == 2 and authority.number_of(resident) == numbers[1]
    for ticket in (first, second):
        _refused_as_used(authority, login_key, resident, ticket)
    assert len(store.history(resident)) == 2


def test_a_ticket_whose_use_was_forgotten_is_refused_with_the_clock_set_back(
        store: AuthorityStore, tmp_path: Path) -> None:
    """A ticket used for a change, its use forgotten once it expired by the authority's clock,
    is refused as expired when that clock is set back (an NTP step, a VM restored) to a time it
    was live, by the authority started again on its store too: it was taken for a live ticket
    never used, and given a second change."""
    now, login_key = datetime.now(UTC), Signer.generate()
    hands = Hands(now)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=13)[0]
    authority.assign(resident)
    used = tickets.ticket(login_key, [resident], now)
    _changed_under(authority, login_key, resident, used, "change-1")
    hands.passes(tickets.LASTS + timedelta(seconds=1))  # another login, after it expired
    given = _changed_under(authority, login_key, resident,
                           tickets.ticket(login_key, [resident], hands.wall), "change-2")
    hands.steps(now - hands.wall)  # set back: the first ticket looks live again
    reopened = AuthorityStore(tmp_path / "authority.db")
    for asked in (authority, NumberingAuthority(reopened, clock=hands.clock())):
        with pytest.raises(Declined) as refused:
            _changed_under(asked, login_key, resident, used, "change-3")
        assert refused.value.reason == tickets.EXPIRED
    reopened.close()
    assert authority.number_of(resident) == given and len(store.history(resident)) == 2


def _marked_ticket(hands: Hands, login_key: Signer, resident: str, boot: str | None = None
                   ) -> bytes:
    """A login's ticket now, marked with the elapsed clock in this boot (or in `boot`)."""
    return tickets.ticket(login_key, [resident], hands.wall, hands.mark(boot))


def test_a_ticket_is_good_for_its_hour_elapsed_whatever_steps_the_clock_forward(
        store: AuthorityStore) -> None:
    """The authority's clock stepped forward (NTP after a suspend, set by hand) past the expiry
    of tickets of logins before it: those are good for the rest of their hour as it elapses, and
    a used one's use is kept, not forgotten; a login's after it is good for its own hour alone.
    They were refused as expired, and their uses forgotten."""
    now, login_key = datetime.now(UTC), Signer.generate()
    hands = Hands(now)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=15)[0]
    authority.assign(resident)
    used = tickets.ticket(login_key, [resident], hands.wall)
    _changed_under(authority, login_key, resident, used, "change-1")
    hands.passes(timedelta(minutes=10))
    unused = tickets.ticket(login_key, [resident], hands.wall)
    hands.steps(timedelta(hours=2))
    hands.passes(timedelta(minutes=1))
    _changed_under(authority, login_key, resident, unused, "change-2")
    _refused_as_used(authority, login_key, resident, used)
    after = tickets.ticket(login_key, [resident], hands.wall)
    hands.passes(tickets.LASTS - timedelta(minutes=11))  # the first logins' hour is not out yet
    _refused_as_used(authority, login_key, resident, unused)
    hands.passes(timedelta(minutes=11))
    for shown in (used, unused, after):
        with pytest.raises(Declined) as refused:
            _changed_under(authority, login_key, resident, shown, str(uuid.uuid4()))
        assert refused.value.reason == tickets.EXPIRED
    assert len(store.history(resident)) == 2


@pytest.mark.parametrize("back", [timedelta(hours=1), timedelta(hours=2)])
def test_a_login_after_the_clock_is_set_back_gets_a_ticket_good_for_its_hour(
        store: AuthorityStore, back: timedelta) -> None:
    """The clock set back an hour or two (an operator's mistake, an NTP step) after the authority
    ran for an hour and a half: a ticket of a login after it, marked with the elapsed clock in
    this boot, is good for its change until its hour elapsed; one of a login before it stays
    used. Every time read in the hour stepped back was taken for the older timeline's, so each
    new ticket was refused as expired, and past an hour back as one whose use was forgotten."""
    now, login_key = datetime.now(UTC), Signer.generate()
    hands = Hands(now)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=17)[0]
    authority.assign(resident)
    first = _marked_ticket(hands, login_key, resident)
    _changed_under(authority, login_key, resident, first, "change-1")
    hands.passes(tickets.LASTS + timedelta(minutes=1))
    used = _marked_ticket(hands, login_key, resident)
    _changed_under(authority, login_key, resident, used, "change-2")  # the first's use forgotten
    hands.passes(timedelta(minutes=30))
    hands.steps(-back)
    after = _marked_ticket(hands, login_key, resident)
    hands.passes(timedelta(minutes=1))
    given = _changed_under(authority, login_key, resident, after, "change-3")
    _refused_as_used(authority, login_key, resident, used)
    hands.passes(tickets.LASTS - timedelta(minutes=1))
    with pytest.raises(Declined) as refused:
        _changed_under(authority, login_key, resident, after, "change-4")
    assert refused.value.reason == tickets.EXPIRED
    assert authority.number_of(resident) == given and len(store.history(resident)) == 3


def test_a_ticket_marked_in_another_boot_is_judged_by_the_clocks_timelines(
        store: AuthorityStore) -> None:
    """A ticket marked with another boot's elapsed clock (a login on another machine, or before
    this one booted) is judged as one without a mark: after the clock is set back an hour, by
    the older timeline, which takes it for expired; its elapsed reading is not this boot's."""
    now, login_key = datetime.now(UTC), Signer.generate()
    hands = Hands(now)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=18)[0]
    authority.assign(resident)
    hands.passes(timedelta(hours=2))
    authority.judged(hands.wall, None, tickets.LASTS)  # the clock read two hours on
    hands.steps(-timedelta(hours=1))
    for shown, refused_as in (
            (_marked_ticket(hands, login_key, resident, "another boot"), tickets.EXPIRED),
            (_marked_ticket(hands, login_key, resident), None)):
        hands.passes(timedelta(minutes=1))
        _taken_unless(authority, login_key, resident, shown, refused_as)
    assert len(store.history(resident)) == 1


def _taken_unless(authority: NumberingAuthority, login_key: Signer, resident: str,
                  shown: bytes, refused_as: str | None) -> None:
    """The ticket is taken for a change; refused for that reason instead, if there is one."""
    if refused_as is None:
        _changed_under(authority, login_key, resident, shown, str(uuid.uuid4()))
        return
    with pytest.raises(Declined) as refused:
        _changed_under(authority, login_key, resident, shown, str(uuid.uuid4()))
    assert refused.value.reason == refused_as


def test_a_store_from_before_marked_uses_forgets_its_uses_by_the_wall_clock(
        tmp_path: Path) -> None:
    """A store whose kept uses have no marks (tickets_used from before them) is given the columns
    when opened, and forgets those uses by the wall clock, as before: their ticket, expired, is
    refused as expired, a marked ticket's use kept beside them."""
    path, now = tmp_path / "authority.db", datetime.now(UTC)
    AuthorityStore(path).close()
    unmarked(path, "tickets_used", ("ticket-1", "change-1", millis(now + tickets.LASTS)))
    hands, store = Hands(now + tickets.LASTS), AuthorityStore(path)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=19)[0]
    authority.assign(resident)
    marked = TicketShown("ticket-2", hands.wall + tickets.LASTS,
                         hands.mark().after(tickets.LASTS))
    authority.change_number(resident, "leaked", "change-2", marked)
    with pytest.raises(TicketExpired):
        authority.change_number(resident, "leaked", "change-3", TicketShown(
            "ticket-1", now + tickets.LASTS))
    with pytest.raises(TicketUsed):
        authority.change_number(resident, "leaked", "change-4", marked)
    store.close()


@pytest.mark.parametrize("crashed", [False, True])
def test_a_store_from_before_forgotten_uses_were_marked_refuses_their_tickets_as_expired(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crashed: bool) -> None:
    """A store whose uses of expired tickets were dropped before it kept the latest expiry it
    forgot (tickets_forgotten), opened now (after an opening that failed before it wrote the
    mark, if `crashed`), refuses those tickets as expired with the clock set back: it had no
    mark, and gave them a second change (an opening that failed had made the mark's table)."""
    path, now, login_key = tmp_path / "authority.db", datetime.now(UTC), Signer.generate()
    hands, store = Hands(now), AuthorityStore(path)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=16)[0]
    authority.assign(resident)
    used = tickets.ticket(login_key, [resident], now)
    _changed_under(authority, login_key, resident, used, "change-1")
    hands.passes(tickets.LASTS + timedelta(seconds=1))
    given = _changed_under(authority, login_key, resident,
                           tickets.ticket(login_key, [resident], hands.wall), "change-2")
    store.close()
    old = sqlite3.connect(path)  # as a store was left before the mark was kept
    old.execute("DROP TABLE tickets_forgotten")
    old.close()
    hands.steps(now - hands.wall)
    if crashed:
        with monkeypatch.context() as failing:
            failing.setattr(AuthorityStore, "_mark_forgotten_unmarked", _crash)
            with pytest.raises(RuntimeError, match="crashed"):
                AuthorityStore(path)
    reopened = AuthorityStore(path)
    with pytest.raises(Declined) as refused:
        _changed_under(NumberingAuthority(reopened, clock=hands.clock()), login_key, resident,
                       used, "change-3")
    assert refused.value.reason == tickets.EXPIRED
    assert reopened.number_of(resident) == given and len(reopened.history(resident)) == 2
    reopened.close()


def test_an_authority_store_whose_opening_failed_leaves_it_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An opening of the store that fails (here as it marks what it forgot) closes its
    connection: it stayed open, the store's file with it, until the store was collected."""
    path = tmp_path / "authority.db"
    monkeypatch.setattr(AuthorityStore, "_mark_forgotten_unmarked", _crash)
    with pytest.raises(RuntimeError, match="crashed") as failed:
        AuthorityStore(path)
    assert failed.traceback  # kept: the store in its frame, not collected
    assert str(path.resolve()) not in open_files()
    probe = sqlite3.connect(path)
    assert str(path.resolve()) in open_files(), "an open store is seen"
    probe.close()


@pytest.mark.parametrize("marked", [True, False])
def test_a_ticket_issued_later_than_the_authoritys_clock_is_refused_as_from_the_future(
        store: AuthorityStore, marked: bool) -> None:
    """A ticket whose login's mark reads ten hours later than this boot's elapsed clock now
    (none made here: forged), or unmarked and issued ten hours later than the wall clock (from
    the future), is refused, one ahead by AHEAD taken: it was taken as young, good for a change
    for eleven hours."""
    now, login_key = datetime.now(UTC), Signer.generate()
    hands = Hands(now, 3600.0)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=19)[0]
    authority.assign(resident)
    too_far = tickets.FORGED if marked else tickets.FROM_THE_FUTURE
    for ahead, refused_as in ((timedelta(hours=10), too_far), (AHEAD, None)):
        shown = (tickets.ticket(login_key, [resident], now, hands.mark().after(ahead)) if marked
                 else tickets.ticket(login_key, [resident], now + ahead))
        _taken_unless(authority, login_key, resident, shown, refused_as)
    assert len(store.history(resident)) == 1


def test_a_ticket_from_the_future_is_logged_as_the_clocks_skew(
        store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """A ticket issued just over AHEAD later than the authority's clock (the registry side's
    clock ahead of its) is refused, and the authority says that the machines' clocks disagree:
    it said nothing, and the portal only that the ticket was refused."""
    now, login_key = datetime.now(UTC), Signer.generate()
    authority = NumberingAuthority(store, clock=Hands(now, 3600.0).clock())
    resident = random_codes(1, seed=23)[0]
    authority.assign(resident)
    shown = tickets.ticket(login_key, [resident], now + AHEAD + timedelta(seconds=1))
    with caplog.at_level(logging.WARNING, logger=tickets.__name__):
        _taken_unless(authority, login_key, resident, shown, tickets.FROM_THE_FUTURE)
    assert "clock is ahead" in caplog.text and "NTP" in caplog.text


@pytest.mark.parametrize(("timed", "reason"), [
    ("near year 9999, unmarked", tickets.FROM_THE_FUTURE),
    ("near year 9999, marked an hour and a second ago", tickets.EXPIRED),
    ("near year 9999, marked now", None),
    ("a mark's reading years ahead", tickets.FORGED)])
def test_a_ticket_the_calendar_cannot_judge_is_judged_by_its_mark(
        store: AuthorityStore, caplog: pytest.LogCaptureFixture, timed: str,
        reason: str | None) -> None:
    """A ticket timed in the last hour before year 10000, unmarked, is refused as from the future:
    its time now past the calendar's end was an error (OverflowError), not a refusal. Marked in
    this boot, it is as old as its mark (the one clock of this machine read it): expired an hour
    and a second after it, taken before; it was refused as from the future, logged as the
    registry side's clock ahead (NTP?). Marked years later than this boot's elapsed clock reads,
    it is forged."""
    login_key, hands = Signer.generate(), Hands(datetime.now(UTC), 7200.0)
    authority = NumberingAuthority(store, clock=hands.clock())
    resident = random_codes(1, seed=21)[0]
    authority.assign(resident)
    at, mark = datetime(9999, 12, 31, 23, tzinfo=UTC) - timedelta(seconds=1), {
        "near year 9999, unmarked": None,
        "near year 9999, marked an hour and a second ago": Mark.of(hands.boot,
                                                                   hands.elapsed - 3601),
        "near year 9999, marked now": hands.mark(),
        "a mark's reading years ahead": hands.mark().after(timedelta(days=10**8))}[timed]
    with caplog.at_level(logging.WARNING, logger=tickets.__name__):
        _taken_unless(authority, login_key, resident,
                      tickets.ticket(login_key, [resident], at, mark), reason)
    assert ("clock is ahead" in caplog.text) == (mark is None)
    assert bool(store.history(resident)) == (reason is None)


def _crash(store: AuthorityStore) -> None:
    raise RuntimeError("crashed")


def test_a_ticket_is_refused_as_expired_by_the_authoritys_clock(store: AuthorityStore) -> None:
    """A ticket shown once the authority's clock says it expired is refused as expired, the
    number unchanged: its expiry was judged by the real clock, whatever clock the authority had."""
    now, login_key = datetime.now(UTC), Signer.generate()
    authority = NumberingAuthority(store, clock=Clock(lambda: now + tickets.LASTS))
    resident = random_codes(1, seed=14)[0]
    number = authority.assign(resident)
    with pytest.raises(Declined) as refused:
        _changed_under(authority, login_key, resident,
                       tickets.ticket(login_key, [resident], now), "change-1")
    assert refused.value.reason == tickets.EXPIRED
    assert authority.number_of(resident) == number and not store.history(resident)


def test_a_ticket_from_before_tickets_had_a_nonce_is_good_for_one_change_still(
        store: AuthorityStore) -> None:
    """A ticket the registry side signed before (LoginTicket v1: no nonce) is good for its hour
    still, under the name the authority kept its use by then; a new one's signature shown as
    an old ticket's, its nonce left out, is forged."""
    authority, login_key = NumberingAuthority(store), Signer.generate()
    resident = random_codes(1, seed=10)[0]
    authority.assign(resident)
    expires_at = datetime.now(UTC) + tickets.LASTS
    signed = (b"renkei login ticket v1\x00" + millis(expires_at).to_bytes(8, "big")
              + len(resident).to_bytes(2, "big") + resident.encode())  # as it was signed then
    old = CODEC.encode_record("LoginTicket", {"resident_codes": [resident],
                                              "expires_at": expires_at,
                                              "signature": login_key.sign(signed)}, version=1)
    assert tickets.identity(CODEC.decode(old, LoginTicket)) == hashlib.sha256(signed).hexdigest()
    _changed_under(authority, login_key, resident, old, "change-1")
    _refused_as_used(authority, login_key, resident, old)
    new = CODEC.decode(tickets.ticket(login_key, [resident], datetime.now(UTC)), LoginTicket)
    stripped = CODEC.encode_record("LoginTicket", {"resident_codes": list(new.resident_codes),
                                                   "expires_at": new.expires_at,
                                                   "signature": new.signature}, version=1)
    with pytest.raises(Declined) as forged:
        tickets.check(login_key.public_key, stripped, resident, lambda *_: Age.YOUNG)
    assert forged.value.reason == tickets.FORGED


@pytest.mark.parametrize("mark", [{"elapsed_ms": 3_600_000}, {"boot": "another boot"},
                                  {"boot": None, "elapsed_ms": None}, {"nonce": None}])
def test_a_marked_ticket_shown_with_its_mark_changed_is_forged(mark: dict[str, object]) -> None:
    """A ticket marked with the elapsed clock at its login, shown with another reading (an hour
    younger), another boot, without its mark (to be judged by the wall clock) or without its
    nonce (as v1), is forged: its mark is signed with the rest."""
    login_key, resident = Signer.generate(), random_codes(1, seed=20)[0]
    shown = CODEC.decode(tickets.ticket(login_key, [resident], datetime.now(UTC),
                                        Mark("this boot", 7200.0)), LoginTicket)
    changed = CODEC.encode(dataclasses.replace(shown, **mark))  # type: ignore[arg-type]
    with pytest.raises(Declined) as forged:
        tickets.check(login_key.public_key, changed, resident, lambda *_: Age.YOUNG)
    assert forged.value.reason == tickets.FORGED


@pytest.mark.parametrize("oversized", ["code", "nonce", "expiry"])
def test_a_ticket_no_login_key_could_sign_is_forged(oversized: str) -> None:
    """A ticket shown in a portal's question with a resident code or a nonce longer than its
    2-byte length can tell (65,535 bytes), or an expiry before 1970: what a signature would be
    over cannot be made, so none is good; it was a generic failure (OverflowError)."""
    login_key, resident = Signer.generate(), random_codes(1, seed=12)[0]
    expires_at = datetime.now(UTC) + tickets.LASTS
    shown = LoginTicket(
        (resident, *(["x" * 65_536] if oversized == "code" else [])),
        datetime(1969, 12, 31, tzinfo=UTC) if oversized == "expiry" else expires_at,
        login_key.sign(b"anything"),
        bytes(65_536 if oversized == "nonce" else tickets.NONCE_BYTES))
    with pytest.raises(Declined) as forged:
        tickets.check(login_key.public_key, CODEC.encode(shown), resident, lambda *_: Age.YOUNG)
    assert forged.value.reason == tickets.FORGED


def test_a_changed_resident_code_keeps_its_number(store: AuthorityStore) -> None:
    authority = NumberingAuthority(store)
    old_code, new_code = random_codes(2, seed=5)
    number = authority.assign(old_code)
    authority.follow_code_change(old_code, new_code)
    assert authority.number_of(new_code) == number and authority.number_of(old_code) is None
    assert authority.lookup(number, "pension", "benefit") == new_code
    assert [e.kind for e in store.history(old_code)] == ["code-followed"]
    with pytest.raises(UnknownResident):
        authority.follow_code_change(old_code, new_code)


def test_a_code_changed_to_itself_is_refused_and_keeps_its_number(store: AuthorityStore) -> None:
    """follow_code_change(old, old) took the resident's own number for one issued to the new
    code before the change was followed, and retired it: the resident had none; now refused."""
    authority = NumberingAuthority(store)
    code = random_codes(1, seed=5)[0]
    number = authority.assign(code)
    with pytest.raises(ValueError, match="to itself"):
        authority.follow_code_change(code, code)
    assert authority.number_of(code) == number and store.history(code) == []
    assert authority.lookup(number, "pension", "benefit") == code


def test_every_lookup_is_logged_with_who_and_why(store: AuthorityStore) -> None:
    authority = NumberingAuthority(store)
    resident = random_codes(1, seed=6)[0]
    number = authority.assign(resident)
    old = number
    number = authority.change_number(resident, "asked")
    asked = [(number, "found"), (old, "retired"), ("123456789018", "unknown"),
             ("123456789010", "malformed"), (resident, "malformed")]
    for presented, _ in asked:
        authority.lookup(presented, "tax-office", "income check")
    log = store.lookups()
    assert [(e.number, e.outcome) for e in log] == [
        *asked[:3], ("12 digits", "malformed"), ("11 digits", "malformed")]
    assert all((e.holder, e.purpose) == ("tax-office", "income check") for e in log)
    with pytest.raises(ValueError):
        authority.lookup(number, "tax-office", " ")
    assert len(store.lookups()) == len(asked)


def test_a_malformed_lookup_is_logged_by_its_shape_not_what_was_sent(tmp_path: Path) -> None:
    """The log kept whatever a holder sent as a number, however long: a name and address, a
    phone number, stored in the authority's store in plaintext for good."""
    path = tmp_path / "authority.db"
    store = AuthorityStore(path)
    sent = ["山田 太郎 東京都千代田区1-1 " * 10_000, "09012345678"]
    for presented in sent:
        assert NumberingAuthority(store).lookup(presented, "tax-office", "income check") is None
    assert [(e.number, e.outcome) for e in store.lookups()] == [
        (f"{len(sent[0])} characters", "malformed"), ("11 digits", "malformed")]
    store.close()
    kept = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert "山田".encode() not in kept and b"09012345678" not in kept and len(kept) < 100_000


def test_purge_forgets_the_lookups_logged_past_the_retention(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The look-up log was never purged, though the access log is kept 7 years: `purge` forgets
    what was logged before then, a batch a transaction, and keeps the rest."""
    runner, _ = _numbered_town(tmp_path, monkeypatch)
    store = AuthorityStore(tmp_path / "authority" / "authority.db")
    now = datetime.now(UTC)
    old = 2 * renkei_sqlite.BATCH + 1
    for at in [now - timedelta(days=7 * 366)] * old + [now - timedelta(days=7 * 365 - 2)]:
        store.record_lookup(at, "tax-office", "income check", "123456789018", "unknown")
    run = runner.invoke(authority_cli, ["purge"])
    assert run.exit_code == 0, run.output
    assert f"{old:,} look-ups logged before {now.year - 7}-" in run.output
    assert [e.at for e in store.lookups()] == [now - timedelta(days=7 * 365 - 2)]
    assert "0 look-ups" in runner.invoke(authority_cli, ["purge"]).output
    store.close()


def test_purge_forgets_the_code_changes_followed_past_the_retention(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """The code changes followed that moved a number, kept to undo them if the registry goes back
    (379a510), were never forgotten: a row a change, for ever. Those followed before the
    retention are forgotten with the look-ups, said; a registry going back past them has the
    changes kept undone, and those forgotten left as they are."""
    registry, _, codes = _numbered_and_copied(tmp_path, store)
    now = datetime.now(UTC)
    hands = Hands(now - timedelta(days=7 * 366))
    authority = NumberingAuthority(store, clock=hands.clock())
    forgotten = change_code(registry, codes[0], 98)
    assert authority.follow_registry(registry) == 1
    hands.steps(timedelta(days=7 * 366 - 2))
    kept = change_code(registry, codes[1], 97)
    assert authority.follow_registry(registry) == 1
    numbers = [authority.number_of(code) for code in (forgotten, kept)]
    cutoff = now - timedelta(days=7 * 365)
    assert forgotten_told(store.forget_before(cutoff), cutoff) == (
        f"0 look-ups logged before {cutoff.date().isoformat()} forgotten, and 1 code change(s) "
        "followed before it that moved a number (a registry going back past them has them "
        "undone no longer)")
    assert forgotten_told(store.forget_before(cutoff), cutoff).endswith(" forgotten")
    seen = registry.last_seq()
    copied(tmp_path / "copy.db", registry.path)
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert authority.follow_registry(registry) == 0
    assert [authority.number_of(code) for code in (forgotten, codes[1])] == numbers
    assert [r.getMessage() for r in caplog.records] == [
        _went_back(registry.path, seen, 1, unkept=True)]
    registry.close()


def test_a_registry_gone_back_past_the_changes_a_store_kept_says_those_are_not_undone(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """A store from before the code changes followed were kept, its registry gone back past the
    changes it followed then, said that 0 were undone, their residents' numbers back under the
    codes it has: they stay under the codes those changes gave, which the registry may give
    others. It says they are not undone, and what to check."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    change_code(registry, codes[0])
    assert authority.follow_registry(registry) == 1
    seen = registry.last_seq()
    with closing(sqlite3.connect(tmp_path / "authority.db")) as db, db:
        db.execute("DROP TABLE followed")
        db.execute("ALTER TABLE cursors DROP COLUMN kept_past")
    before = AuthorityStore(tmp_path / "authority.db")
    copied(tmp_path / "copy.db", registry.path)
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert NumberingAuthority(before).follow_registry(registry) == 0
    assert [r.getMessage() for r in caplog.records] == [
        _went_back(registry.path, seen, 0, unkept=True)]
    before.close()
    registry.close()


def test_a_store_from_before_followed_changes_had_a_time_keeps_them(
        tmp_path: Path, store: AuthorityStore) -> None:
    """A store from before the code changes followed were kept with their time is opened, its
    rows kept by a purge (nobody knows when they were followed), undone if the registry goes
    back."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    number = authority.number_of(codes[0])
    change_code(registry, codes[0])
    assert authority.follow_registry(registry) == 1
    with closing(sqlite3.connect(tmp_path / "authority.db")) as db, db:
        db.execute("DROP INDEX followed_at")
        db.execute("ALTER TABLE followed DROP COLUMN at")
    before = AuthorityStore(tmp_path / "authority.db")
    assert [*before.forget_before(datetime.now(UTC) + timedelta(days=1))] == []
    copied(tmp_path / "copy.db", registry.path)
    assert NumberingAuthority(before).follow_registry(registry) == 0
    assert before.number_of(codes[0]) == number
    before.close()
    registry.close()


@pytest.mark.usefixtures("secure_delete_off")
def test_a_purged_lookup_leaves_no_trace_in_the_stores_file(tmp_path: Path) -> None:
    """A SQLite built without SQLITE_SECURE_DELETE left a deleted row's bytes in its page and
    the pages it freed: a look-up purged, the number looked up and why, stayed in the file past
    the retention; now overwritten."""
    store = AuthorityStore(tmp_path / "authority.db")
    now = datetime.now(UTC)
    for at, purpose, number in ((now - timedelta(days=8 * 366), "old check", "123456789018"),
                                (now, "recent check", "234567890128")):
        store.record_lookup(at, "tax-office", purpose, number, "unknown")
    assert [*store.forget_before(now - timedelta(days=7 * 366))] == [Forgotten(1, 0)]
    store.close()
    stored = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert b"123456789018" not in stored and b"old check" not in stored
    assert b"234567890128" in stored


def test_serve_forgets_the_lookups_logged_past_the_retention_from_its_start(
        town: town_setup.Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only `renkei authority purge` forgot the look-ups logged past the retention, while a
    holder's server forgets its own at its start and hourly: `serve` now does, from its start
    (the broker reached or not: here it is away, and the look-up forgotten all the same)."""
    store = AuthorityStore(tmp_path / "authority.db")
    now = datetime.now(UTC)
    for at in (now - timedelta(days=7 * 366), now):
        store.record_lookup(at, "tax-office", "income check", "123456789018", "unknown")
    monkeypatch.setenv("RENKEI_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    log = tmp_path / "serve.log"
    proc = spawn("authority", "serve", "--db", str(tmp_path / "authority.db"), "--registry",
                 str(tmp_path / "none.db"), log=log)
    try:
        deadline = Deadline(10, "the old look-up forgotten")
        while len(store.lookups()) > 1:
            assert proc.poll() is None, log.read_text()
            deadline.check(log.read_text())
            time.sleep(0.1)
    finally:
        stop(proc)
        store.close()
    assert "authority: 1 look-ups logged before " in log.read_text()


async def test_a_purge_waiting_for_a_store_another_process_holds_stalls_no_lookup(
        tmp_path: Path) -> None:
    """`serve` purged the look-up log in its event loop: the store held by another process, a
    purge batch waited SQLite's busy timeout (5 s) and nothing was answered meanwhile; the purge
    runs in a thread on a connection of its own, a look-up answered once the store is free."""
    path = tmp_path / "authority.db"
    store = AuthorityStore(path)
    authority = NumberingAuthority(store)
    number = authority.assign("R-1")
    store.record_lookup(datetime.now(UTC) - timedelta(days=7 * 366), "tax-office", "old check",
                        number, "found")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def looking_up(ready: asyncio.Event) -> None:
        started = time.monotonic()
        await asyncio.sleep(0.1)  # the purge begun meanwhile, waiting for the lock
        holder.execute("ROLLBACK")
        assert authority.lookup(number, "tax-office", "income check") == "R-1"
        assert time.monotonic() - started < 1.0
        deadline = Deadline(5, "the old look-up forgotten")
        while [e.purpose for e in store.lookups()] != ["income check"]:
            deadline.check()
            await asyncio.sleep(0.01)

    try:
        await serve.keeping_retention(path, looking_up, asyncio.Event())
    finally:
        holder.close()
        store.close()


async def test_a_purge_stopped_ends_after_the_transaction_it_is_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` stopped while its purge waits for the store: the purge's thread, which nothing
    cancels, ends after the batch it was waiting for, not after the whole backlog (a service
    stopping waits for it)."""
    monkeypatch.setattr(renkei_sqlite, "BATCH", 1)
    path = tmp_path / "authority.db"
    store = AuthorityStore(path)
    for n in range(3):
        store.record_lookup(datetime.now(UTC) - timedelta(days=7 * 366), "tax-office",
                            f"old check {n}", "123456789018", "unknown")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        keeping = asyncio.create_task(retention.keep(
            "authority", partial(AuthorityStore, path), forgotten_told))
        await asyncio.sleep(0.1)  # the purge begun meanwhile, waiting for the lock
        await cancelled(keeping)
        holder.execute("ROLLBACK")
        deadline = Deadline(5, "the first batch forgotten")
        while len(store.lookups()) == 3:
            deadline.check()
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the batches a purge not stopped would go on to
        assert len(store.lookups()) == 2
    finally:
        holder.close()
        store.close()


def test_change_number_run_again_with_its_request_id_changes_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`change-number` had no request id: run again (an operator's retry after a timeout), it
    retired the number it had just given and issued a third; now given the same --request-id it
    is told the number that request was given, and changes nothing more (another id: a change).
    Run again, it said 'new personal number …; the old one is retired' again, nothing changed:
    it says the request was done already, and when."""
    runner, code = _numbered_town(tmp_path, monkeypatch)
    first, again = (runner.invoke(authority_cli, CHANGE, input=code) for _ in range(2))
    assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
    number = first.output.removeprefix("new personal number ").split(";")[0]
    assert first.output == f"new personal number {number}; the old one is retired\n"
    done = re.fullmatch(rf"request F-1 was done already on (\S+): personal number {number}; "
                        r"nothing changed\n", again.output)
    assert done, again.output
    assert datetime.now(UTC) - datetime.fromisoformat(done[1]) < timedelta(minutes=1)
    other = runner.invoke(authority_cli, [*CHANGE[:2], "F-2", *CHANGE[3:]], input=code)
    assert other.exit_code == 0 and other.output != first.output, other.output
    store = AuthorityStore(tmp_path / "authority" / "authority.db")
    assert [e.kind for e in store.history(code)] == ["number-changed"] * 2
    store.close()


def test_a_store_from_before_lookups_were_logged_once_keeps_its_log(tmp_path: Path) -> None:
    """A store whose look-up log has no key (lookups from before a look-up read again was logged
    once) is given it when opened, its rows kept: a look-up read twice after them is logged once,
    another with its request id but from another message once more."""
    path, unknown = tmp_path / "authority.db", "123456789018"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE lookups (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, holder TEXT "
                "NOT NULL, purpose TEXT NOT NULL, number TEXT NOT NULL, outcome TEXT NOT NULL)")
    old.executemany("INSERT INTO lookups (at, holder, purpose, number, outcome) VALUES "
                    "(?, ?, ?, ?, ?)", [(datetime.now(UTC).isoformat(), "tax-office",
                                         "income check", unknown, "unknown")] * 2)
    old.commit()
    old.close()
    AuthorityStore(path).close()  # given the key; opened again, as it is
    store = AuthorityStore(path)
    authority = NumberingAuthority(store)
    for look_up in ("q-1@renkei.holder.tax-office.out:0:5",) * 2 + (
            "q-1@renkei.holder.tax-office.out:0:6",):
        authority.lookup(unknown, "tax-office", "income check", look_up)
    assert [(e.seq, e.number, e.outcome) for e in store.lookups()] == [
        (seq, unknown, "unknown") for seq in (1, 2, 3, 4)]
    store.close()


def test_following_the_registry(tmp_path: Path, store: AuthorityStore) -> None:
    path = tmp_path / "registry.db"
    registry_store.build(path, 500, 7)
    registry = registry_store.RegistryStore.open(path)
    authority = NumberingAuthority(store)
    authority.assign_registry(registry)
    code = next(registry.resident_codes())
    resident = registry.by_code(code)
    assert resident is not None
    number = authority.number_of(code)
    fresh = next(c for c in random_codes(5, seed=8) if registry.by_code(c) is None)
    registry.record(change(resident, ChangeKind.CODE_CHANGED, (fresh,), date(2026, 4, 1)))
    events = registry.events(authority.registry_cursor(), ChangeKind.CODE_CHANGED)
    assert authority.follow(events) == 1
    assert authority.follow(events) == 0  # seen: never followed twice
    assert authority.number_of(fresh) == number
    registry.close()


def test_a_registry_generated_again_is_followed_from_its_first_change(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """A registry generated again (`renkei registry generate --replace`, or --registry naming
    another) numbers its changes from 1, and the authority's one bookmark, past the last change of
    the registry it followed, skipped the new one's first (the resident's number left under the
    code they gave up). Each registry has its own, by the identity made when it is generated: a
    new one is followed from its first change, said once; nothing is issued again, and the old
    one's bookmark is kept for it."""
    paths = [tmp_path / "old.db", tmp_path / "new.db"]
    for path in paths:
        registry_store.build(path, 20, 1)  # the same town generated twice: the same events
    old, new = (registry_store.RegistryStore.open(path) for path in paths)
    authority = NumberingAuthority(store)
    authority.assign_registry(old)
    codes = list(old.resident_codes())
    for code in codes[10:13]:
        change_code(old, code, seed=98)  # new codes the new registry's changes do not take
    assert authority.follow_registry(old) == 3
    numbers = [authority.number_of(code) for code in codes[:3]]
    moved = [change_code(new, code) for code in codes[:3]]
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert [authority.follow_registry(new) for _ in range(2)] == [3, 0]
    assert [authority.number_of(code) for code in moved] == numbers
    assert [r.getMessage() for r in caplog.records] == [
        f"the registry at {new.path} is not the one followed before: its code changes are "
        "followed from its first"]
    assert authority.follow_registry(old) == 0  # its bookmark kept: its changes followed once
    assert store.counts() == {"issued": 20, "current": 20, "retired": 0, "lookups": 0}
    old.close()
    new.close()


def test_a_registry_put_back_from_an_older_copy_has_its_new_changes_followed(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """An older copy of the registry put back keeps its identity, and numbers its new changes as
    the ones it lost were: the authority's bookmark, past them, skipped them (the resident's number
    left under the code they gave up). Its code changes are followed again from its first (each
    followed before moves nothing), said once; those followed from the lost ones are undone (the
    copy has those residents under the codes they had before them)."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    path = registry.path
    lost = [change_code(registry, code, seed=98) for code in codes[10:13]]
    assert authority.follow_registry(registry) == 3
    numbers = [authority.number_of(code) for code in lost]
    copied(tmp_path / "copy.db", path)
    number = authority.number_of(codes[0])
    moved = change_code(registry, codes[0])
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert [authority.follow_registry(registry) for _ in range(2)] == [1, 0]
    assert authority.number_of(moved) == number
    assert [authority.number_of(code) for code in codes[10:13]] == numbers
    assert [authority.number_of(code) for code in lost] == [None] * 3
    last = registry.last_seq()
    assert [r.getMessage() for r in caplog.records] == [_went_back(path, last + 2, 3)]
    assert store.counts() == {"issued": 20, "current": 20, "retired": 0, "lookups": 0}
    registry.close()


def test_a_registry_put_back_whose_new_changes_pass_its_bookmark_is_followed_from_its_first(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """An older copy put back whose new changes bring its last change back past the bookmark
    before the authority follows looked like the registry it followed: the new changes numbered
    as the lost ones were skipped (the residents' numbers left under the codes they gave up). The
    change at the bookmark is not the one followed: said once, followed again from its first."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    path = registry.path
    for code in codes[10:12]:
        change_code(registry, code, seed=98)
    assert authority.follow_registry(registry) == 2
    seen = authority.registry_cursor(f"registry {registry.identity()}")
    copied(tmp_path / "copy.db", path)
    numbers = [authority.number_of(code) for code in codes[:3]]
    moved = [change_code(registry, code) for code in codes[:3]]
    assert registry.last_seq() > seen
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert [authority.follow_registry(registry) for _ in range(2)] == [3, 0]
    assert [authority.number_of(code) for code in moved] == numbers
    assert [r.getMessage() for r in caplog.records] == [_went_back(path, seen, 2)]
    assert store.counts() == {"issued": 20, "current": 20, "retired": 0, "lookups": 0}
    registry.close()


def test_a_code_a_registry_put_back_lost_given_to_another_takes_no_ones_number(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """An older copy put back knows nothing of the codes its lost changes gave, and gives them
    again: the authority, which had moved those residents' numbers to them, gave a resident given
    one the number of the resident who had it (their own left under a code they gave up in a lost
    change), or retired that resident's number (withdrawn from the code), and numbered the
    residents of the lost changes anew. The changes it lost are undone, said once: each resident's
    number under the code the registry has for them, none issued, none retired."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    path = registry.path
    numbers = {code: authority.number_of(code) for code in codes}
    lost = [change_code(registry, code, seed)
            for code, seed in zip(codes[:4], (98, 99, 97, 96), strict=True)]
    assert authority.follow_registry(registry) == 4
    seen = registry.last_seq()
    copied(tmp_path / "copy.db", path)
    given = [change_code(registry, code, seed)
             for code, seed in zip(codes[3:5], (99, 97), strict=True)]
    assert given == lost[1:3]  # the codes the lost changes gave, each given to another
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert authority.assign_registry(registry) == (2, 0)
        assert authority.follow_registry(registry) == 0
    now = dict(zip(codes[3:5], given, strict=True))  # each resident's code in the copy now
    assert {now.get(code, code): authority.number_of(now.get(code, code)) for code in codes} == {
        now.get(code, code): number for code, number in numbers.items()}
    assert store.counts() == {"issued": 20, "current": 20, "retired": 0, "lookups": 0}
    assert [r.getMessage() for r in caplog.records] == [_went_back(path, seen, 4)]
    registry.close()


def test_an_undo_that_cannot_give_a_number_back_says_so(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """Undoing the code changes a registry put back lost, a number retired in following one
    (issued to the code it gave before it was followed) stayed retired, numbers never being
    reissued, and a number issued meanwhile to the code the registry has for a resident was
    withdrawn, their own back under it: both went unsaid, the warning telling all the changes
    undone. Each is a WARNING, how many and where to look, naming no number and no resident
    code."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    path = registry.path
    lost = [change_code(registry, code, seed)
            for code, seed in zip(codes[:3], (98, 97, 96), strict=True)]
    authority.assign(lost[0])  # as assign-all once did, before the change was followed
    assert authority.follow_registry(registry) == 3 and authority.withdrawn == 1
    seen = registry.last_seq()
    copied(tmp_path / "copy.db", path)
    own = authority.number_of(lost[1])
    authority.assign(codes[1])  # the code the copy has for its resident, numbered meanwhile
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert authority.follow_registry(registry) == 0
    assert [authority.number_of(code) for code in lost] == [None] * 3
    assert authority.number_of(codes[1]) == own and authority.withdrawn == 1
    assert [r.getMessage() for r in caplog.records] == [
        _went_back(path, seen, 3),
        f"undoing the code changes the registry at {path} lost: 1 personal number(s) retired "
        "in following them stay retired (numbers are never reissued), and 1 issued meanwhile to "
        "the code the registry has for their resident are retired, each resident keeping the "
        "number they had (none is left under a code the registry lost, which it may give "
        "another): the authority's history names them ('number-withdrawn')"]
    registry.close()


def test_a_number_under_a_code_a_registry_put_back_lost_passes_to_no_one_given_that_code(
        tmp_path: Path, store: AuthorityStore) -> None:
    """Undoing the code changes a registry put back lost, a number whose resident's code in the
    registry had another meanwhile was left under the lost code, which the copy, knowing nothing of
    it, may give a resident it registers: `assign-all` gave the newcomer that number, and a look-up
    of it answered with the newcomer, another person's number theirs. The number issued meanwhile
    to the code the registry has for the resident is withdrawn (retired, never reissued), and their
    own goes back under it: no number stays under a lost code, the newcomer is numbered anew."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    own = authority.number_of(codes[1])
    lost = change_code(registry, codes[1], seed=97)
    assert authority.follow_registry(registry) == 1
    copied(tmp_path / "copy.db", registry.path)
    meanwhile = authority.assign(codes[1])  # the code the copy has for its resident
    assert authority.follow_registry(registry) == 0
    newcomer = registered(registry, dataclasses.replace(
        _resident(registry, codes[2]), resident_code=lost, name="新井\u3000一郎"))
    assert authority.assign_registry(registry) == (0, 1)
    assert authority.number_of(codes[1]) == own
    assert authority.number_of(newcomer) not in (own, meanwhile, None)
    assert authority.lookup(own or "", "tax-office", "income check") == codes[1]
    assert authority.lookup(meanwhile, "tax-office", "income check") is None  # retired
    assert store.counts() == {"issued": 22, "current": 21, "retired": 1, "lookups": 2}
    registry.close()


def _resident(registry: registry_store.RegistryStore, code: str) -> Resident:
    """The resident the registry has under `code`."""
    resident = registry.by_code(code)
    assert resident is not None
    return resident


def registered(registry: registry_store.RegistryStore, resident: Resident) -> str:
    """Register a new resident in the registry (a birth, a move in: the simulator generates none
    live), as the registry's own process writes it; their resident code."""
    with closing(sqlite3.connect(registry.path)) as db, db:
        db.execute(f"INSERT INTO residents ({registry_store.RESIDENT_COLUMNS}, four_key) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", registry_store._resident_row(resident))
    return resident.resident_code


def test_a_registry_gone_back_found_by_two_followers_at_once_is_undone_once(
        tmp_path: Path, store: AuthorityStore, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """`serve` and a `follow` command finding the registry gone back at once both undid the
    changes it lost and followed it again from its first: the second, its bookmark read before
    the first's undo, moved nothing and said the registry went back again. The bookmark is read
    again in the undo's transaction: the second follows on from where the first left it, said
    once."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    path = registry.path
    for code in codes[10:13]:
        change_code(registry, code, seed=98)
    assert authority.follow_registry(registry) == 3
    seen = registry.last_seq()
    copied(tmp_path / "copy.db", path)
    number = authority.number_of(codes[0])
    moved = change_code(registry, codes[0])
    beside = AuthorityStore(tmp_path / "authority.db")
    other = NumberingAuthority(beside)
    transaction = store.transaction

    def after_the_other() -> Any:
        """The first transaction, once the other authority has followed the registry whole."""
        monkeypatch.setattr(store, "transaction", transaction)
        assert other.follow_registry(registry) == 1
        return transaction()

    monkeypatch.setattr(store, "transaction", after_the_other)
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert authority.follow_registry(registry) == 0
    assert authority.number_of(moved) == number
    assert [r.getMessage() for r in caplog.records] == [_went_back(path, seen, 3)]
    assert authority.registry_cursor(f"registry {registry.identity()}") == registry.last_seq()
    beside.close()
    registry.close()


def test_a_bookmark_kept_before_fingerprints_is_followed_on_from(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """A store from before the bookmark kept its change's fingerprint: its bookmark, with its
    change in the registry, is followed on from, nothing said, nothing undone."""
    registry, authority, codes = _numbered_and_copied(tmp_path, store)
    change_code(registry, codes[0])
    assert authority.follow_registry(registry) == 1
    with closing(sqlite3.connect(tmp_path / "authority.db")) as db, db:
        db.execute("ALTER TABLE cursors DROP COLUMN fingerprint")
    before = AuthorityStore(tmp_path / "authority.db")
    number = before.number_of(codes[1])
    moved = change_code(registry, codes[1])
    with caplog.at_level(logging.WARNING, "authority.service"):
        assert NumberingAuthority(before).follow_registry(registry) == 1
    assert before.number_of(moved) == number and not caplog.records
    before.close()
    registry.close()


def _numbered(tmp_path: Path, store: AuthorityStore) -> tuple[registry_store.RegistryStore,
                                                              NumberingAuthority]:
    """A registry of 20 at tmp_path/registry.db, numbered: it and its authority."""
    registry_store.build(tmp_path / "registry.db", 20, 1)
    registry = registry_store.RegistryStore.open(tmp_path / "registry.db")
    authority = NumberingAuthority(store)
    authority.assign_registry(registry)
    return registry, authority


def _numbered_and_copied(tmp_path: Path, store: AuthorityStore) -> tuple[
        registry_store.RegistryStore, NumberingAuthority, list[str]]:
    """A registry of 20 at tmp_path/registry.db, numbered, and copied aside to tmp_path/copy.db
    as it is: it, its authority and its residents' codes."""
    registry, authority = _numbered(tmp_path, store)
    copied(registry.path, tmp_path / "copy.db")
    return registry, authority, list(registry.resident_codes())


def _went_back(path: Path, seen: int, undone: int, unkept: bool = False) -> str:
    """The authority's warning that the registry at `path` went back (past the changes followed
    it kept, if `unkept`)."""
    return (f"the registry at {path} went back: its change {seen} is not the one followed (an "
            f"older copy put back, or tampered with?): the {undone} code changes followed that it "
            "lost are undone, their residents' numbers back under the codes it has for them, and "
            "its code changes are followed again from its first" + (
                "; those it lost that were followed before the authority kept them (a store from "
                "before that) or forgotten past the retention are not undone: their residents' "
                "numbers stay under the codes they gave, which the registry may give others (a "
                "code changed to one has the number there retired; a resident registered under "
                "one is taken for its resident, given that number): check each code change "
                "followed in the authority's history ('code-followed') against the code the "
                "registry has for its resident" if unkept else ""))


def copied(source: Path, target: Path) -> None:
    """Copy the SQLite database at `source` onto `target`, whole (its backup)."""
    with closing(sqlite3.connect(source)) as read, closing(sqlite3.connect(target)) as written:
        read.backup(written)


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    registry_store.build(registry_store.default_path(), 300, 1)
    runner = CliRunner()
    assigned = runner.invoke(authority_cli, ["assign-all"])
    assert assigned.exit_code == 0 and "300 personal numbers" in assigned.output
    assert (tmp_path / "authority" / "authority.db").exists()
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    code = next(registry.resident_codes())
    registry.close()
    number = runner.invoke(authority_cli, ["number-of"], input=code).output.strip()
    assert is_valid(number)
    found = runner.invoke(authority_cli, ["lookup", "--holder", "city-a", "--purpose",
                                          "resident tax"], input=f'{{"number": "{number}"}}')
    assert found.output.strip() == code
    changed = runner.invoke(authority_cli, CHANGE,
                            input=code + "\n")
    assert changed.exit_code == 0
    again = runner.invoke(authority_cli, ["lookup", "--holder", "city-a", "--purpose",
                                          "resident tax"], input=number)
    assert again.exit_code != 0 and "no current personal number like that" in again.output
    slip = number[:-1] + str((int(number[-1]) + 1) % 10)  # its check digit mistyped
    mistyped = runner.invoke(authority_cli, ["lookup", "--holder", "city-a", "--purpose",
                                             "resident tax"], input=slip)
    assert mistyped.exit_code == 1 and "not a personal number (12 digits" in mistyped.output
    assert "follow" in runner.invoke(authority_cli, ["follow"]).output
    status = runner.invoke(authority_cli, ["status"]).output
    assert "issued 301" in status and "retired 1" in status and "lookups 3" in status


@pytest.mark.parametrize("args", [["status", "--db", "{garbage}"],
                                  ["assign-all", "--db", "{garbage}"],
                                  ["assign-all", "--registry", "{garbage}"]])
def test_a_store_that_is_no_database_is_said_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    """A --db or --registry given a file that is not SQLite (a path mistyped to a log) ended in
    sqlite3's traceback."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    registry_store.build(registry_store.default_path(), 5, 1)
    garbage = tmp_path / "notes.txt"
    garbage.write_text("not a database\n" * 8)
    run = CliRunner().invoke(authority_cli, [a.format(garbage=garbage) for a in args])
    assert run.exit_code == 1 and isinstance(run.exception, SystemExit), run.exception
    assert f"at {garbage}: file is not a database" in run.output


@pytest.mark.parametrize("args", [["status"], ["number-of"], CHANGE,
                                  ["lookup", "--holder", "city-a", "--purpose", "tax"]])
def test_an_empty_file_is_no_authority_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    """A --db mistyped to an empty file passed for a store: `status` said 'issued 0', a look-up
    was logged there, and the file was made into a store."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    empty = tmp_path / "empty.db"
    empty.touch()
    run = CliRunner().invoke(authority_cli, [*args, "--db", str(empty)], input="12345678919")
    assert run.exit_code == 1 and isinstance(run.exception, SystemExit), run.exception
    assert f"no authority store at {empty}" in run.output
    assert empty.stat().st_size == 0 and not list(tmp_path.glob("empty.db-*"))


def _numbered_town(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, str]:
    """A registry of three residents in the state folder `tmp_path`, each numbered by
    `assign-all`; the CLI's runner and a resident's code."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    registry_store.build(registry_store.default_path(), 3, 1)
    runner = CliRunner()
    assert runner.invoke(authority_cli, ["assign-all"]).exit_code == 0
    with cli_registry(None) as registry:
        return runner, next(registry.resident_codes())


def test_a_number_looked_up_as_the_card_prints_it_or_in_full_width_digits_is_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lookup` took 1234 5678 9018 (the card's groups) or １２３４… (a Japanese keyboard's digits)
    as malformed: no current number, logged as a malformed look-up of what was keyed."""
    runner, code = _numbered_town(tmp_path, monkeypatch)
    number = runner.invoke(authority_cli, ["number-of"], input=code).output.strip()
    grouped = " ".join((number[:4], number[4:8], number[8:]))
    full_width = "\u3000".join("".join(chr(ord(digit) + 0xFEE0) for digit in group)
                                for group in grouped.split())  # groups by an ideographic space
    for keyed in (grouped, full_width, f'{{"number": "{full_width}"}}'):
        found = runner.invoke(authority_cli, ["lookup", "--holder", "city-a", "--purpose",
                                              "resident tax"], input=keyed)
        assert (found.exit_code, found.output.strip()) == (0, code), keyed
    store = AuthorityStore(tmp_path / "authority" / "authority.db")
    assert [(e.number, e.outcome) for e in store.lookups()] == [(number, "found")] * 3
    store.close()


def test_a_number_looked_up_leads_to_the_code_its_resident_has_now(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lookup` did not follow the registry's code changes, as `number-of`, `change-number` and
    `serve` do: after a resident's code changed it answered the code given up, which the registry
    says is nobody's, until another command followed."""
    runner, code = _numbered_town(tmp_path, monkeypatch)
    number = runner.invoke(authority_cli, ["number-of"], input=code).output.strip()
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    try:
        fresh = change_code(registry, code)
    finally:
        registry.close()
    found = runner.invoke(authority_cli, ["lookup", "--holder", "city-a", "--purpose",
                                          "resident tax"], input=number)
    assert (found.exit_code, found.output.strip()) == (0, fresh), found.output


@pytest.mark.parametrize("command", [["lookup", "--holder", "city-a", "--purpose", "tax"],
                                     CHANGE, ["assign-all"]])
def test_a_command_on_a_store_another_process_holds_says_so_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    """With `assign-all` holding the store (a large registry's numbering is one transaction),
    `lookup`, `change-number` and another `assign-all` ended in sqlite3's traceback, 'database
    is locked'."""
    runner, code = _numbered_town(tmp_path, monkeypatch)
    path = tmp_path / "authority" / "authority.db"
    opened = renkei_sqlite.opened
    monkeypatch.setattr(renkei_sqlite, "opened",  # SQLite's wait cut from 5 s
                        lambda at: opened(at).execute("PRAGMA busy_timeout = 50").connection)
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")
    run = runner.invoke(authority_cli, command, input=code)
    holder.rollback()
    holder.close()
    assert run.exit_code == 1 and isinstance(run.exception, SystemExit), run.exception
    assert f"the authority store at {path} is held by another process" in run.output


def test_assign_all_numbers_in_batches_each_kept_and_leaving_the_store_to_others_between(
        tmp_path: Path) -> None:
    """assign-all numbered the whole registry in one transaction (~45 µs a resident: 1M held the
    store's write lock ~45 s, every look-up and change waiting past its 5 s refused meanwhile)
    and a crash lost all of it: each batch is committed, the next call numbers the rest."""
    path, residents = tmp_path / "authority.db", random_codes(2_500, seed=11)
    store = AuthorityStore(path)
    seen: list[int] = []
    two_batches = 2 * renkei_sqlite.BATCH

    def crashing_in_the_third_batch() -> str:
        if store.counts()["issued"] == two_batches + 10:
            other = sqlite3.connect(path)  # another process: what is committed
            seen.append(other.execute("SELECT COUNT(*) FROM numbers").fetchone()[0])
            other.close()
            raise RuntimeError("killed")
        return draw_number()

    with pytest.raises(RuntimeError, match="killed"):
        NumberingAuthority(store, draw=crashing_in_the_third_batch).assign_all(residents)
    assert seen == [two_batches]
    assert NumberingAuthority(store).assign_all(residents) == len(residents) - two_batches
    assert store.counts() == {"issued": 2_500, "current": 2_500, "retired": 0, "lookups": 0}
    store.close()


def test_a_resident_code_keyed_in_full_width_digits_is_the_residents(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`number-of` and `change-number` told a resident code keyed in full-width digits (a Japanese
    keyboard's) that it had no personal number."""
    runner, code = _numbered_town(tmp_path, monkeypatch)
    full_width = "".join(chr(ord(digit) + 0xFEE0) for digit in code)
    number = runner.invoke(authority_cli, ["number-of"], input=full_width)
    assert number.exit_code == 0 and is_valid(number.output.strip()), number.output
    changed = runner.invoke(authority_cli, CHANGE, input=full_width)
    assert changed.exit_code == 0, changed.output
    assert runner.invoke(authority_cli, ["number-of"], input=code).output.strip() in changed.output


@pytest.mark.parametrize("command", ["assign-all", "follow"])
def test_a_registry_that_is_another_sqlite_file_is_said_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """--registry naming the authority's own store (or an empty file) ended in sqlite3's
    traceback, 'no such table: events'; `serve` given it follows nothing, and goes on."""
    runner, _ = _numbered_town(tmp_path, monkeypatch)
    own = tmp_path / "authority" / "authority.db"
    run = runner.invoke(authority_cli, [command, "--registry", str(own)])
    assert run.exit_code == 1 and isinstance(run.exception, SystemExit), run.exception
    assert f"no registry at {own} (a SQLite file without its residents)" in run.output
    store = AuthorityStore(own)
    changes = serve.RegistryChanges(NumberingAuthority(store), own)
    changes.follow()
    changes.close()
    store.close()


def test_draws_use_the_whole_range() -> None:
    numbers = {draw_number() for _ in range(2_000)}
    assert len(numbers) == 2_000 and all(is_valid(n) for n in numbers)
    assert {n[0] for n in numbers} == set("0123456789")


def change_code(registry: registry_store.RegistryStore, code: str, seed: int = 99) -> str:
    """Record a live resident-code change of `code` in the registry; the new code (the first of
    `seed`'s random codes no resident has)."""
    resident = registry.by_code(code)
    assert resident is not None
    fresh = next(c for c in random_codes(50, seed=seed) if registry.by_code(c) is None)
    registry.record(change(resident, ChangeKind.CODE_CHANGED, (fresh,), date(2026, 4, 1)))
    return fresh


def test_assign_all_and_follow_open_the_registry_read_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """They only read it (compose mounts registry/ read-only to the authority): nothing can be
    written through the connection they read it on. It was opened read-write."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    registry_store.build(registry_store.default_path(), 5, 1)
    with cli_registry(None) as registry:
        code = next(registry.resident_codes())
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            change_code(registry, code)


def test_assign_all_after_a_code_change_moves_the_number_and_issues_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """assign-all (compose runs it at every start) read the changed code as a resident without a
    number, gave them a second one and marked the change seen, so the old one never moved."""
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    registry_store.build(registry_store.default_path(), 50, 1)
    runner = CliRunner()
    assert runner.invoke(authority_cli, ["assign-all"]).exit_code == 0
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    old = next(registry.resident_codes())
    number = runner.invoke(authority_cli, ["number-of"], input=old).output.strip()
    new = change_code(registry, old)
    registry.close()
    again = runner.invoke(authority_cli, ["assign-all"])
    assert again.exit_code == 0 and "0 personal numbers assigned" in again.output
    for _ in range(2):
        assert runner.invoke(authority_cli, ["follow"]).exit_code == 0
    assert runner.invoke(authority_cli, ["number-of"], input=new).output.strip() == number
    assert runner.invoke(authority_cli, ["number-of"], input=old).exit_code != 0
    store = AuthorityStore(tmp_path / "authority" / "authority.db")
    assert store.counts()["issued"] == 50 and store.counts()["current"] == 50
    assert [(e.kind, e.before, e.after) for e in store.history(new)] == [
        ("code-followed", old, new)]
    store.close()


def test_number_of_and_change_number_follow_the_registrys_code_changes_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resident whose code changed in the registry, the change not followed yet, was told their
    new code had no personal number, and could not be given a new one, until someone ran `follow`,
    `assign-all` or `serve`."""
    runner, old = _numbered_town(tmp_path, monkeypatch)
    number = runner.invoke(authority_cli, ["number-of"], input=old).output.strip()
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    new = change_code(registry, old)
    told = runner.invoke(authority_cli, ["number-of"], input=new)
    assert (told.exit_code, told.output.strip()) == (0, number), told.output
    assert runner.invoke(authority_cli, ["number-of"], input=old).exit_code == 1
    newer = change_code(registry, new)
    registry.close()
    changed = runner.invoke(authority_cli, CHANGE, input=newer)
    assert changed.exit_code == 0, changed.output
    store = AuthorityStore(tmp_path / "authority" / "authority.db")
    assert [e.kind for e in store.history(newer)] == ["code-followed", "number-changed"]
    assert store.counts() == {"issued": 4, "current": 3, "retired": 1, "lookups": 0}
    store.close()


def test_following_a_change_whose_new_code_was_numbered_keeps_the_old_number(
        tmp_path: Path, store: AuthorityStore) -> None:
    """A store numbered before the fix gave the new code a number of its own: following the change
    raised IntegrityError at every try; now the resident keeps their number, the wrong one is
    retired (recorded in the history, never reissued), and following again changes nothing."""
    path = tmp_path / "registry.db"
    registry_store.build(path, 20, 1)
    registry = registry_store.RegistryStore.open(path)
    authority = NumberingAuthority(store)
    authority.assign_all(registry.resident_codes())
    old = next(registry.resident_codes())
    number = authority.number_of(old)
    cursor = registry.last_seq()
    new = change_code(registry, old)
    wrong = authority.assign(new)  # as assign_all did, before following the change
    for _ in range(2):
        authority.follow(registry.events(cursor, ChangeKind.CODE_CHANGED))
    assert authority.number_of(new) == number and authority.number_of(old) is None
    assert authority.lookup(wrong, "city-a", "check") is None
    assert store.counts() == {"issued": 21, "current": 20, "retired": 1, "lookups": 1}
    assert [(e.kind, e.before, e.after) for e in store.history(new)] == [
        ("number-withdrawn", wrong, number), ("code-followed", old, new)]
    registry.close()


def test_a_number_retired_while_serving_is_a_warning_naming_no_one(
        tmp_path: Path, store: AuthorityStore, caplog: pytest.LogCaptureFixture) -> None:
    """`renkei authority serve`, logging at WARNING, said a number withdrawn from a changed code
    (issued to it before its change was followed, and retired for good) only as 'resident-code
    changes followed' at INFO: a resident's number retired went by unseen. It is a WARNING saying
    how many and where to look, naming no number and no resident code."""
    registry, authority = _numbered(tmp_path, store)
    changes = serve.RegistryChanges(authority, registry.path)
    changes.follow()
    olds = list(registry.resident_codes())[:2]
    news = [change_code(registry, old, seed) for old, seed in zip(olds, (99, 98), strict=True)]
    wrongs = [authority.assign(new) for new in news]  # as assign-all once did, before following
    try:
        with caplog.at_level(logging.WARNING, "authority.serve"):
            for _ in range(2):
                changes.follow()
    finally:
        changes.close()
        registry.close()
    assert [authority.number_of(new) for new in news] != wrongs
    assert [r.getMessage() for r in caplog.records] == [
        "following the registry's code changes: 2 personal number(s) issued to a changed "
        "resident code retired (never reissued), each resident keeping the number they had: the "
        "authority's history names them ('number-withdrawn')"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_a_request_read_again_after_its_deadline_is_answered_with_the_number_it_was_given(
        store: AuthorityStore, tmp_path: Path) -> None:
    """The authority changed the number and stopped before its answer went: the portal's
    question, read again once past its deadline, is answered with that number (not "nothing
    was done"), sealed to the question's reply key (read from it again), and nothing is changed
    again; one never acted on still changes nothing."""
    authority = NumberingAuthority(store)
    resident = random_codes(1, seed=7)[0]
    first = authority.assign(resident)
    key, portal, reply, login_key = (X25519PrivateKey.generate(), X25519PrivateKey.generate(),
                                     X25519PrivateKey.generate(), Signer.generate())
    handle = serve.serving(authority, key, serve.RegistryChanges(authority, tmp_path / "none.db"),
                           login_key.public_key)({acls.PORTAL: _entry(acls.PORTAL, portal,
                                                                      False)}.get)
    ticket = tickets.ticket(login_key, [resident], datetime.now(UTC))

    def read_late(request_id: str) -> PortalAnswer:
        sealed = sealing.seal(sealing.public_bytes(key), CODEC.encode(
            ChangeOfNumber(resident, "lost", ticket=ticket)), request_id)
        late = PortalQuery(request_id, datetime.now(UTC) - timedelta(seconds=1), sealed,
                           sealing.public_bytes(reply))
        (sent,) = handle([SimpleNamespace(topic=topics.AUTHORITY_PORTAL_IN,
                                          value=CODEC.encode(late))])
        return CODEC.decode(sent.value, PortalAnswer)

    given = authority.change_number(resident, "lost", "q-1")  # then stopped, answer unsent
    answer = read_late("q-1")
    assert (answer.status, answer.detail) == (FOUND, "")
    opened = sealing.open_sealed(reply, answer.sealed_answer, "q-1")
    assert CODEC.decode(opened, PersonalNumber).personal_number == given
    with pytest.raises(sealing.CannotOpen):
        sealing.open_sealed(portal, answer.sealed_answer, "q-1")
    assert authority.number_of(resident) == given != first
    assert [c.kind for c in store.history(resident)] == ["number-changed"]
    never = read_late("q-2")
    assert (never.status, never.sealed_answer) == (TIMED_OUT, b"")
    assert authority.number_of(resident) == given and len(store.history(resident)) == 1
