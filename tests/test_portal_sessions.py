"""Portal sessions without a browser: expiry, renewal at login, how many are kept, one-use card
challenges, and where switching the language goes back to."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, tzinfo
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import portal.sessions
from portal.sessions import (
    CHALLENGE_SECONDS,
    IDLE,
    LIFETIME,
    Challenge,
    Officer,
    Resident,
    Sessions,
)
from portal.web import SESSION, SITE, Site, switch_language
from renkei.clock import AHEAD
from tests.clock_helpers import Hands, machine_clocks

RESIDENT = Resident("1a2b", "山田 太郎", ("R-1",), ("ABC98765XYZ",))


class Clock:
    """The sessions' elapsed clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def passes(self, length: timedelta) -> None:
        self.now += length.total_seconds()


class _WallStepped:
    """`datetime` as the wall clock set an hour forward tells it (NTP after a suspend, by hand)."""

    @staticmethod
    def now(tz: tzinfo | None = None) -> datetime:
        return datetime.now(tz) + timedelta(hours=1)


def test_a_session_expires_when_idle_and_after_its_lifetime() -> None:
    clock = Clock()
    sessions = Sessions(clock=clock)
    idle = sessions.new()
    clock.passes(IDLE + timedelta(seconds=1))
    assert sessions.get(idle.sid) is None
    busy = sessions.new()
    for _ in range(int(LIFETIME / (IDLE / 2)) + 1):
        clock.passes(IDLE / 2)
        found = sessions.get(busy.sid)
    assert found is None, "activity does not keep a session beyond its lifetime"


def test_a_step_of_the_wall_clock_ends_no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Idle for no time, a session lives on though the wall clock was set past its idle limit
    and its lifetime (every session once ended at such a step)."""
    sessions = Sessions()
    session = sessions.new()
    monkeypatch.setattr(portal.sessions, "datetime", _WallStepped)
    assert sessions.get(session.sid) is session


def test_a_suspend_ages_a_session_as_it_ages_its_login_ticket(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Suspended for a session's lifetime (CLOCK_BOOTTIME on, the monotonic clock stopped), a
    session ends with its login's ticket, which renkei.clock ages by the time suspended: on the
    monotonic clock it lived on, an hour with a ticket the numbering authority refused."""
    machine = machine_clocks(monkeypatch)
    sessions = Sessions()
    session = sessions.new()
    login, mark = sessions.wall(), sessions.wall.mark()
    machine["boottime"] += LIFETIME.total_seconds()
    assert sessions.wall.since(login, mark) == login + LIFETIME  # the ticket's age: expired
    assert sessions.get(session.sid) is None


def test_login_renews_the_session_id_and_csrf_token() -> None:
    sessions = Sessions()
    before = sessions.new("en")
    after = sessions.renew(before)
    assert after.sid != before.sid and after.csrf != before.csrf and after.lang == "en"
    assert sessions.get(before.sid) is None and sessions.get(after.sid) is after


def test_a_card_challenge_is_used_once_and_only_while_fresh() -> None:
    hands = Hands(datetime.now(UTC))
    sessions = Sessions(wall=hands.clock())
    session = sessions.new()
    now = sessions.wall()
    sessions.challenge(session, Challenge(b"\x01" * 32, "resident", now))
    assert session.take_challenge("02" * 32, sessions.wall) is None, "another challenge"
    assert session.take_challenge("zz", sessions.wall) is None, "no challenge at all"
    assert session.take_challenge("01" * 32, sessions.wall) is not None
    assert session.take_challenge("01" * 32, sessions.wall) is None, "used once"
    sessions.challenge(session, Challenge(b"\x01" * 32, "resident", now))
    hands.passes(timedelta(seconds=CHALLENGE_SECONDS + 1))
    assert session.take_challenge("01" * 32, sessions.wall) is None


def test_a_card_challenge_is_refused_at_its_age_or_ahead_as_the_registry_side_refuses_it() -> None:
    """Judged as the registry side judges it (and the authority a login's ticket: Clock.judged),
    a challenge is refused once CHALLENGE_SECONDS old, and if read ahead of the portal's clock by
    more than AHEAD (by its mark, or its time unmarked). The portal took it at exactly its age,
    and ahead by any time."""
    hands = Hands(datetime.now(UTC), 3600.0)
    sessions = Sessions(wall=hands.clock())
    session = sessions.new()
    at, mark = sessions.wall(), sessions.wall.mark()
    assert mark is not None
    beyond = AHEAD + timedelta(seconds=1)
    for issued, marked, taken in [(at, mark.after(beyond), False), (at + beyond, None, False),
                                  (at + AHEAD, None, True)]:
        sessions.challenge(session, Challenge(b"\x01" * 32, "resident", issued, marked))
        assert (session.take_challenge("01" * 32, sessions.wall) is not None) is taken, issued
    sessions.challenge(session, Challenge(b"\x01" * 32, "resident", at, mark))
    hands.passes(timedelta(seconds=CHALLENGE_SECONDS))
    assert session.take_challenge("01" * 32, sessions.wall) is None, "refused at its age"


@pytest.mark.parametrize("step", [timedelta(hours=1), timedelta(hours=-1)])
@pytest.mark.parametrize("before", [True, False])
@pytest.mark.parametrize("elapsed, taken", [(CHALLENGE_SECONDS - 1, True),
                                            (CHALLENGE_SECONDS + 1, False)])
def test_a_card_challenge_is_fresh_for_its_time_elapsed_whatever_steps_the_wall_clock(
        step: timedelta, before: bool, elapsed: int, taken: bool) -> None:
    """The wall clock stepped an hour (NTP, set by hand) after the portal ran for two, a challenge
    issued `before` the step or after it is taken while its time elapsed is within
    CHALLENGE_SECONDS and refused once past it. By the wall clock a step forward refused a
    pending one at once and a step back kept it fresh an hour; judged by the timeline that read
    it, one issued just after a step back was refused, for an hour."""
    hands = Hands(datetime.now(UTC))
    sessions = Sessions(wall=hands.clock())
    session = sessions.new()
    sessions.wall()
    hands.passes(timedelta(hours=2))
    if not before:
        hands.steps(step)
    sessions.challenge(session, Challenge(b"\x01" * 32, "resident", sessions.wall(),
                                          sessions.wall.mark()))
    if before:
        hands.steps(step)
    hands.passes(timedelta(seconds=elapsed))
    assert (session.take_challenge("01" * 32, sessions.wall) is not None) is taken


@pytest.mark.parametrize("back, to", [
    ("/history?holder=city-a", "/history?holder=city-a"), ("/", "/"), ("", "/"),
    ("//evil.example", "/"), ("/\\evil.example", "/"), ("/\t/evil.example", "/"),
    ("/\n/evil.example", "/"), ("https://evil.example/", "/"), ("history", "/")])
async def test_switching_language_goes_back_only_to_a_page_of_the_site(back: str, to: str) -> None:
    app = web.Application()
    app[SITE] = Site("http://127.0.0.1:8080", "http://127.0.0.1:8765")
    request = make_mocked_request("GET", f"/lang/en?{urlencode({'next': back})}",
                                  match_info={"lang": "en"}, app=app)
    request[SESSION] = Sessions().new()
    with pytest.raises(web.HTTPSeeOther) as redirect:
        await switch_language(request)
    assert redirect.value.location == to and request[SESSION].lang == "en"


def test_a_new_session_costs_the_same_however_many_are_kept() -> None:
    """Each thousand new sessions up to 100,000 kept: under 5 ms each on average (a new session
    once scanned the whole table for stale ones, 27 ms each at 100,000)."""
    sessions = Sessions()
    for thousands in range(1, 101):
        began = time.perf_counter()
        for _ in range(1000):
            sessions.new()
        each = (time.perf_counter() - began) / 1000
        assert each < 0.005, f"{each * 1000:.1f} ms each up to {thousands},000 sessions"
    assert len(sessions) == 100_000


def test_stale_sessions_go_and_past_the_most_kept_the_least_recently_used_anonymous_first(
        ) -> None:
    clock = Clock()
    sessions = Sessions(clock=clock, most=3)
    stale = [sessions.new() for _ in range(3)]
    clock.passes(IDLE + timedelta(seconds=1))
    signed_in = sessions.renew(replace(sessions.new(), resident=RESIDENT))
    assert len(sessions) == 1 and all(sessions.get(s.sid) is None for s in stale)
    first, second = sessions.new(), sessions.new()
    sessions.get(first.sid)  # used since: `second` is now the least recently used
    third = sessions.new()
    assert [sessions.get(s.sid) for s in (signed_in, first, second, third)] == [
        signed_in, first, None, third]


def test_with_all_the_most_kept_signed_in_a_visitors_login_starts_and_the_least_recently_used_goes(
        ) -> None:
    """With all `most` kept signed in, a new visitor's session was pushed out as it was made:
    nobody could log in until a session ended by time. A tenth of `most` (at least one) is kept
    for anonymous sessions: the visitor's login starts, a flood of anonymous ones pushes no
    signed-in one out, and a login past the rest pushes out the least recently used signed-in
    one, told so."""
    sessions = Sessions(clock=Clock(), most=4)
    signed_in = [sessions.renew(replace(sessions.new(), resident=RESIDENT)) for _ in range(4)]
    visitor = sessions.new()
    assert sessions.get(visitor.sid) is visitor
    assert [sessions.get(s.sid) for s in signed_in] == [None, *signed_in[1:]]
    assert sessions.ended(signed_in[0].sid) == ("session_full", "ja", None)
    for _ in range(10):
        visitor = sessions.new()
    assert all(sessions.get(s.sid) is s for s in (*signed_in[1:], visitor)), "a flood's"
    sessions.get(signed_in[1].sid)  # used since: `signed_in[2]` is the least recently used
    logged_in = sessions.renew(replace(visitor, resident=RESIDENT))
    assert [sessions.get(s.sid) for s in (*signed_in[1:], logged_in)] == [
        signed_in[1], None, signed_in[3], logged_in]
    assert sessions.ended(signed_in[2].sid) == ("session_full", "ja", None)


def test_the_portal_full_is_one_warning_and_back_under_another_each_push_out_an_info(
        caplog: pytest.LogCaptureFixture) -> None:
    """Each signed-in session pushed out was a WARNING of its own, and nothing said the portal
    was full: at its most, every login past it one more line, and a flood of anonymous requests
    pushing out the others said nothing. The signed-in sessions full, and all the sessions full,
    are each one WARNING, said again once a tenth of their room is free (not at each logout
    and login at the edge); each push-out of someone's session an INFO, as the WARNING says
    (not of an anonymous session with no login under way in it)."""
    caplog.set_level(logging.DEBUG, portal.sessions.__name__)
    clock = Clock()
    sessions = Sessions(clock=clock, most=20)  # 18 signed in at most, back under at 16
    officer = Officer("3c4d", "staff-1", "sakura-town", "counter")
    signed_in = [sessions.renew(replace(sessions.new(), officer=officer)) for _ in range(18)]
    assert not caplog.records
    for _ in range(3):
        signed_in.append(sessions.renew(replace(sessions.new(), officer=officer)))
    sessions.end(signed_in[4])  # 17 signed in: not back under, the next login pushes out again
    for _ in range(2):
        sessions.renew(replace(sessions.new(), officer=officer))
    for ended in signed_in[5:7]:
        sessions.end(ended)
    nobody = sessions.new()  # 16 signed in: back under, said as the next session is kept
    for nonce in range(6):  # a flood's logins started: past 20 kept, the least recently used
        sessions.challenge(sessions.new(), Challenge(bytes([nonce]) * 32, "resident",
                                                     sessions.wall()))
    # pushed out first, no one in it: told so, and not logged, as the WARNING says
    assert sessions.ended(nobody.sid) == ("session_full", "ja", None)
    signed_out = (logging.INFO, "a session pushed out, the portal keeping 18 signed in at most "
                  "(signed in: yes, card logins under way: 0, officer's role: counter)")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "the portal's signed-in sessions are full, 18 kept at most: past "
         "them the least recently used is pushed out, its browser told so, logged at INFO if "
         "someone is in it (signed in, or a card login under way); said again when 16 or fewer "
         "are kept"),
        *[signed_out] * 4,
        (logging.WARNING, "the portal's signed-in sessions are back under their most: 16 kept, "
         "18 at most"),
        (logging.WARNING, "the portal's sessions are full, 20 kept at most: past them the least "
         "recently used is pushed out, its browser told so, logged at INFO if someone is in it "
         "(signed in, or a card login under way); said again when 18 or fewer are kept"),
        *[(logging.INFO, "a session pushed out, the portal keeping 20 at most (signed in: no, "
           "card logins under way: 1, officer's role: none)")] * 2]


def test_only_a_signed_in_session_ended_by_time_is_told_so_once() -> None:
    """Every unknown session id was told it had been logged out after inactivity: a forged or
    long-forgotten cookie, another portal's, an anonymous session's. A signed-in session ended
    idle, or at its lifetime, is told which, once, whether found expired or purged before; an
    anonymous one is told nothing but its language."""
    clock = Clock()
    sessions = Sessions(clock=clock)
    idle, purged = (sessions.renew(replace(sessions.new(), resident=RESIDENT)) for _ in "ab")
    anonymous = sessions.new()
    clock.passes(IDLE + timedelta(seconds=1))
    assert sessions.get(idle.sid) is None and sessions.get(anonymous.sid) is None
    busy = sessions.renew(replace(sessions.new("en"), resident=RESIDENT))  # purges `purged`
    while sessions.get(busy.sid) is not None:
        clock.passes(IDLE / 2)
    assert [sessions.ended(s.sid) for s in (idle, purged, busy)] == [
        ("expired_session", "ja", None), ("expired_session", "ja", None),
        ("lifetime_session", "en", None)]
    assert sessions.ended(anonymous.sid) == (None, "ja", None)
    for sid in (idle.sid, anonymous.sid, "forged", None):
        assert sessions.ended(sid) is None


@pytest.mark.parametrize("role", ["counter", "oversight"])
def test_an_officers_session_ended_by_time_names_their_role(role: str) -> None:
    """A form sent from a counter's or an oversight officer's session ended by time went to the
    resident's login, nothing kept of whose session it was: its role is kept with why it ended,
    for its next request to go back to that side's login."""
    clock = Clock()
    sessions = Sessions(clock=clock)
    officer = Officer("3c4d", "staff-1", "sakura-town", role)
    ended = sessions.renew(replace(sessions.new("en"), officer=officer))
    clock.passes(IDLE + timedelta(seconds=1))
    assert sessions.get(ended.sid) is None
    assert sessions.ended(ended.sid) == ("expired_session", "en", role)
