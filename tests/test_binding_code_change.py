"""A change of resident code (住民票コード変更, at the resident's request) changes none of the
person's codes: binding before and after it, by four attributes or by personal number, gives a
holder the same link code, and My Portal still finds every entry about them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit.heads import Signer
from authority import lookups
from authority import portal as authority_portal
from authority.service import NumberingAuthority
from authority.store import AuthorityStore
from broker import acls, topics
from cards import issue
from cards.card import Card
from cards.jlis import CardHolders
from cards.login import FORGED_MARK, FROM_THE_FUTURE
from portal.context import resident as portal_resident
from processors import binding
from processors.codes import UnitEpoch
from processors.context import Context
from processors.keys import MasterKeys
from registry import portal as registry_portal
from registry import store as registry_store
from registry import tickets
from registry.portal import CHALLENGE, FRESH, CardLogins
from registry.resident_code import random_codes
from registry.residents import ChangeKind, change
from registry.service import RegistryService
from renkei import sealing
from renkei.clock import AHEAD
from renkei.envelope import Send
from renkei.questions import Declined
from renkei.state import state_folder
from schemas.codec import CODEC
from schemas.messages import (
    BY_ATTRIBUTES,
    FOUND,
    BindingAnswer,
    ChangeOfNumber,
    NumberLookup,
    PersonalNumber,
    RegistryAnswer,
    RegistryQuery,
)
from tests.clock_helpers import Hands
from tests.test_portal_services import signed, unrecorded_card
from tests.test_registry_service import _entry

CITY, PENSION = "city-a", "nenkin"
END_MINUTE = datetime(9999, 12, 31, 23, 59, tzinfo=UTC)  # the calendar's last minute


class Town:
    """A registry of 20, its numbering authority, the platform's code service and two holders."""

    def __init__(self, folder: Path) -> None:
        registry_store.build(folder / "registry.db", 20, 1)
        self.registry = registry_store.RegistryStore.open(folder / "registry.db")
        self.numbers = AuthorityStore(folder / "authority.db")
        self.authority = NumberingAuthority(self.numbers)
        self.authority.assign_registry(self.registry)
        masters = MasterKeys.generate()
        self.registry_key, self.authority_key, holder = (X25519PrivateKey.generate()
                                                         for _ in range(3))
        self.directory = {acls.PLATFORM: _entry(acls.PLATFORM, masters.sealing_key(), False),
                          acls.REGISTRY: _entry(acls.REGISTRY, self.registry_key, False),
                          CITY: _entry(CITY, holder, False),
                          PENSION: _entry(PENSION, holder, False)}
        self.service = RegistryService(self.registry, self.registry_key, self.directory.get)
        self.ctx = Context.of(masters)
        self.ctx.directory = self.directory

    def by_attributes(self, holder: str, resident_code: str) -> str:
        """The holder's link code for the resident, bound by their four attributes."""
        resident = self.registry.by_code(resident_code)
        assert resident is not None
        sealed = sealing.seal(sealing.public_bytes(self.registry_key),
                              CODEC.encode(resident.four_attributes), "b-1")
        query = RegistryQuery("b-1", holder, False, BY_ATTRIBUTES, sealed)
        return self._bound(self.service.handle([SimpleNamespace(value=CODEC.encode(query))]))

    def by_number(self, holder: str, number: str) -> str:
        """The holder's link code for the resident, bound by their personal number."""
        sealed = sealing.seal(sealing.public_bytes(self.authority_key),
                              CODEC.encode(PersonalNumber(number)), "n-1")
        source = f"{topics.HOLDER_OUTBOX.format(holder=holder)}:0:0"  # as the platform sends it
        record = SimpleNamespace(value=CODEC.encode(NumberLookup("n-1", holder, False, sealed,
                                                                 source)))
        (out,) = lookups.handle([record], self.authority, self.authority_key, self.directory.get)
        assert out.topic == topics.REGISTRY_IN
        return self._bound(self.service.handle([SimpleNamespace(value=out.value)]))

    def _bound(self, sends: list[Send]) -> str:
        (answer,) = (CODEC.decode(s.value, RegistryAnswer) for s in sends)
        to_holder, *_ = binding.answered(answer, datetime.now(UTC), self.ctx)
        relayed = CODEC.decode(to_holder.value, BindingAnswer)
        assert relayed.status == FOUND and len(relayed.candidates) == 1
        return relayed.candidates[0].link_code

    def change_code(self, resident_code: str) -> str:
        """The resident asks for a new resident code; the authority follows; the new code."""
        resident = self.registry.by_code(resident_code)
        assert resident is not None
        fresh = next(c for c in random_codes(50, seed=99) if self.registry.by_code(c) is None)
        self.registry.record(change(resident, ChangeKind.CODE_CHANGED, (fresh,),
                                    date(2026, 4, 1)))
        self.authority.assign_registry(self.registry)
        return fresh


@pytest.fixture
def town(tmp_path: Path) -> Iterator[Town]:
    made = Town(tmp_path)
    yield made
    made.registry.close()
    made.numbers.close()


def _unchanged(town: Town) -> str:
    """A resident whose code never changed."""
    return next(c for c in town.registry.resident_codes() if town.registry.first_code(c) == c)


def test_a_code_change_changes_no_link_code(town: Town) -> None:
    """Holders that bound before the change held link codes of the old code's ID code, holders
    that bound after of the new one's: a linkage between them went to a code nobody bound."""
    old = _unchanged(town)
    number = town.authority.number_of(old)
    assert number is not None
    before = {holder: town.by_attributes(holder, old) for holder in (CITY, PENSION)}
    assert town.by_number(PENSION, number) == before[PENSION]
    new = town.change_code(old)
    assert town.authority.number_of(new) == number
    for holder in (CITY, PENSION):
        assert town.by_attributes(holder, new) == before[holder]
        assert town.by_number(holder, number) == before[holder]
    city, pension = UnitEpoch(CITY, 0), UnitEpoch(PENSION, 0)
    assert town.ctx.codes.convert(before[CITY], city, pension) == before[PENSION]
    assert town.ctx.codes.resident_code(before[CITY], city) == old  # the first code, for good


def test_a_code_changed_before_binding_is_bound_by_the_first(town: Town) -> None:
    """The registry's own history: a resident generated with a code change."""
    (changed,) = town.registry.events(0, ChangeKind.CODE_CHANGED)
    now = changed.after[0]
    link = town.by_attributes(CITY, now)
    assert town.ctx.codes.resident_code(link, UnitEpoch(CITY, 0)) == changed.resident_code


def test_my_portal_finds_the_person_by_the_id_code_of_every_code_they_had(
        town: Town, tmp_path: Path) -> None:
    """Entries are made under the ID code of the person's first code; ones made before, under a
    later code's, are still found: the resident sees their whole history."""
    old = _unchanged(town)
    link = town.by_attributes(CITY, old)
    with state_folder(tmp_path / "state"):
        issue.init()
        card = unrecorded_card(tmp_path)
        cards = CardHolders(tmp_path / "cards.db")
        cards.record(card.face.serial, old)
        new = town.change_code(old)
        login = signed(card)
        holder = CardLogins(cards, town.registry, town.ctx.codes, Signer.generate()).card_holder(
            "q-1", CODEC.encode(login), False)
        cards.close()
    resident = portal_resident(card.face.serial, holder)
    assert resident.resident_codes == (new, old)
    (person,) = town.ctx.codes.id_codes_of([link], UnitEpoch(CITY, 0))
    assert resident.id_codes == (person, town.ctx.codes.id_code(new))


def test_a_card_logins_challenge_is_fresh_for_its_time_elapsed_whatever_steps_the_clock(
        town: Town, tmp_path: Path) -> None:
    """The registry side's clock stepped forward an hour: a challenge issued a minute before is
    taken, and one used before the step refused as used (after a login since), then too when
    the clock is set back the hour; set back another, one issued after it is taken, and one
    FRESH old refused as stale. Forward, both were refused as stale and the used one's use
    forgotten at the next login, so that set back it was taken again (a login replayed); judged
    by the timeline that read it, one issued after the clock was set back past where it began
    was refused as stale."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        hands = Hands(datetime.now(UTC))
        logins = _logins(town, cards, hands)
        used = CODEC.encode(signed(card, hands.wall, mark=hands.mark()))
        logins.card_holder("q-1", used, False)
        hands.passes(timedelta(minutes=1))
        pending = CODEC.encode(signed(card, hands.wall, mark=hands.mark()))
        hands.steps(timedelta(hours=1))
        hands.passes(timedelta(minutes=1))
        assert logins.card_holder("q-2", pending, False).resident_codes == (code,)
        stepped = CODEC.encode(signed(card, hands.wall, mark=hands.mark()))
        assert logins.card_holder("q-3", stepped, False).resident_codes == (code,)
        _refused_its_challenge(logins, "q-4", used)
        hands.steps(-timedelta(hours=1))
        _refused_its_challenge(logins, "q-5", used)
        hands.steps(-timedelta(hours=1))
        after = CODEC.encode(signed(card, hands.wall, mark=hands.mark()))
        hands.passes(timedelta(minutes=1))
        assert logins.card_holder("q-6", after, False).resident_codes == (code,)
        stale = CODEC.encode(signed(card, hands.wall, mark=hands.mark()))
        hands.passes(FRESH)
        _refused_its_challenge(logins, "q-7", stale)
        cards.close()


@pytest.mark.parametrize("timed", ["near year 9999", "a mark's reading years ahead"])
def test_a_challenge_the_calendar_cannot_judge_is_refused(town: Town, tmp_path: Path,
                                                         timed: str) -> None:
    """A card login's challenge timed a minute before year 10000, unmarked, or marked years
    later than this boot's elapsed clock reads, is refused as from the future, or forged: the
    end of its freshness, or its time now, past the calendar's end was an error
    (OverflowError)."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        hands = Hands(datetime.now(UTC))
        logins = _logins(town, cards, hands)
        at, mark, reason = ((END_MINUTE, None, FROM_THE_FUTURE) if timed == "near year 9999"
                            else (hands.wall, hands.mark().after(timedelta(days=10**8)),
                                  FORGED_MARK))
        _refused_its_challenge(logins, "q-1", CODEC.encode(signed(card, at, mark=mark)), reason)
        cards.close()


def test_a_challenge_timed_near_year_9999_and_marked_in_this_boot_is_as_old_as_its_mark(
        town: Town, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A card login's challenge timed a minute before year 10000 and marked now in the registry
    side's own boot (the one clock of this machine read it) is as old as its mark: taken once,
    refused as used after, and refused as not fresh once FRESH has elapsed since a mark. It was
    refused as from the future and logged as the portal's clock ahead (NTP?), which it is not."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        hands = Hands(datetime.now(UTC))
        logins = _logins(town, cards, hands)
        login = CODEC.encode(signed(card, END_MINUTE, mark=hands.mark()))
        with caplog.at_level(logging.WARNING, logger=registry_portal.__name__):
            assert logins.card_holder("q-1", login, False).resident_codes == (code,)
            _refused_its_challenge(logins, "q-2", login)
            stale = CODEC.encode(signed(card, END_MINUTE, mark=hands.mark()))
            hands.passes(FRESH)
            _refused_its_challenge(logins, "q-3", stale)
        assert "clock is ahead" not in caplog.text
        cards.close()


def test_a_challenge_from_the_future_is_refused_as_the_clocks_skew(
        town: Town, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The portal's clock just over AHEAD ahead of the registry side's (its challenge marked in
    its own boot): the login is refused as from the future, and the registry side says that the
    machines' clocks disagree; it said only that the challenge was not fresh, as of one stale or
    used. One AHEAD ahead is taken."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        hands = Hands(datetime.now(UTC))
        logins = _logins(town, cards, hands)
        portals = hands.mark("the portal's boot")
        ahead = CODEC.encode(signed(card, hands.wall + AHEAD + timedelta(seconds=1), mark=portals))
        with caplog.at_level(logging.WARNING, logger=registry_portal.__name__):
            _refused_its_challenge(logins, "q-1", ahead, FROM_THE_FUTURE)
        assert "clock is ahead" in caplog.text and "NTP" in caplog.text
        assert "forged" not in caplog.text
        within = CODEC.encode(signed(card, hands.wall + AHEAD, mark=portals))
        assert logins.card_holder("q-2", within, False).resident_codes == (code,)
        cards.close()


def test_a_challenge_whose_mark_of_this_boot_reads_ahead_is_refused_as_forged(
        town: Town, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A challenge marked in the registry side's own boot just over AHEAD later than its elapsed
    clock reads, timed now: no process of its machine made that mark, so the login is refused
    as the mark forged and logged so; it was refused as from the future and logged as the
    portal's clock ahead (NTP?), which would send an operator to the clocks. Marked AHEAD later,
    it is taken."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        hands = Hands(datetime.now(UTC))
        logins = _logins(town, cards, hands)
        ahead = hands.mark().after(AHEAD + timedelta(seconds=1))
        forged = CODEC.encode(signed(card, hands.wall, mark=ahead))
        with caplog.at_level(logging.WARNING, logger=registry_portal.__name__):
            _refused_its_challenge(logins, "q-1", forged, FORGED_MARK)
        assert "forged" in caplog.text and "NTP" not in caplog.text
        within = CODEC.encode(signed(card, hands.wall, mark=hands.mark().after(AHEAD)))
        assert logins.card_holder("q-2", within, False).resident_codes == (code,)
        cards.close()


def _logins(town: Town, cards: CardHolders, hands: Hands) -> CardLogins:
    """The registry side's card logins of this town, by the clock `hands` move."""
    return CardLogins(cards, town.registry, town.ctx.codes, Signer.generate(), clock=hands.clock())


def _recorded_card(tmp_path: Path, code: str) -> tuple[Card, CardHolders]:
    """A resident's card, and the card table that records it as the resident's of `code`."""
    issue.init()
    card = unrecorded_card(tmp_path)
    cards = CardHolders(tmp_path / "cards.db")
    cards.record(card.face.serial, code)
    return card, cards


def _refused_its_challenge(logins: CardLogins, request_id: str, login: bytes,
                           reason: str = CHALLENGE) -> None:
    with pytest.raises(Declined) as declined:
        logins.card_holder(request_id, login, False)
    assert declined.value.reason == reason


def test_a_challenge_taken_by_its_mark_is_kept_used_until_its_time_is_past_too(
        town: Town, tmp_path: Path) -> None:
    """A taken-over portal mints a challenge marked now but timed two days ahead: taken once by
    its mark, it is refused shown again after a reboot when the wall clock reaches its time (its
    use was forgotten by its mark in the boot before, so that it was taken a second time)."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        hands = Hands(datetime.now(UTC))
        ahead = hands.wall + timedelta(days=2)
        replayed = CODEC.encode(signed(card, ahead, mark=hands.mark()))
        logins = _logins(town, cards, hands)
        assert logins.card_holder("q-1", replayed, False).resident_codes == (code,)
        hands.passes(FRESH)
        logins.card_holder("q-2", CODEC.encode(signed(card, hands.wall, mark=hands.mark())), False)
        hands.boot, hands.elapsed, hands.wall = "next boot", 0.0, ahead
        rebooted = _logins(town, cards, hands)
        _refused_its_challenge(rebooted, "q-3", replayed)
        cards.close()


@pytest.mark.parametrize("marked", [True, False])
def test_a_used_challenge_is_refused_after_a_reboot_with_the_clock_set_back(
        town: Town, tmp_path: Path, marked: bool) -> None:
    """A challenge used, then dropped once stale, is refused shown again after a reboot (or a
    restart) with the wall clock set back to its time (marked or not, it is judged by its time
    then): it was taken for fresh and never used, and taken a second time."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        hands = Hands(datetime.now(UTC))
        issued = hands.wall
        replayed = CODEC.encode(signed(card, issued, mark=hands.mark() if marked else None))
        logins = _logins(town, cards, hands)
        logins.card_holder("q-1", replayed, False)
        hands.passes(FRESH)
        logins.card_holder("q-2", CODEC.encode(signed(card, hands.wall, mark=hands.mark())), False)
        hands.boot, hands.elapsed, hands.wall = "next boot", 0.0, issued + timedelta(minutes=1)
        rebooted = _logins(town, cards, hands)
        _refused_its_challenge(rebooted, "q-3", replayed)
        after = CODEC.encode(signed(card, hands.wall, mark=hands.mark()))
        assert rebooted.card_holder("q-4", after, False).resident_codes == (code,)
        cards.close()


def test_a_login_shown_again_under_its_question_gets_its_ticket_good_for_one_change(
        town: Town, tmp_path: Path) -> None:
    """A taken-over portal shows a resident's card login again under its question's id (as a
    restart of the registry side reads it again), once for each change it wants: it is told the
    ticket it was told, so that the login changes the resident's number once, not once a
    showing."""
    code = _unchanged(town)
    with state_folder(tmp_path / "state"):
        card, cards = _recorded_card(tmp_path, code)
        logins = _logins(town, cards, Hands(datetime.now(UTC)))
        login = CODEC.encode(signed(card))
        first, again = (logins.card_holder("q-1", login, False).ticket for _ in range(2))
        new_number = partial(authority_portal.new_number, town.authority,
                             logins.login_key.public_key)
        changed = new_number("c-1", CODEC.encode(ChangeOfNumber(code, "漏えい", "c-1", first)),
                             False)
        with pytest.raises(Declined) as declined:
            new_number("c-2", CODEC.encode(ChangeOfNumber(code, "漏えい", "c-2", again)), False)
        assert declined.value.reason == tickets.USED
        assert town.authority.number_of(code) == changed.personal_number
        cards.close()
