"""Portal sessions without a browser: expiry, renewal at login, one-use card challenges, and
where switching the language goes back to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from portal.sessions import CHALLENGE_SECONDS, IDLE, LIFETIME, Challenge, Sessions
from portal.web import SESSION, switch_language


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 10, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_session_expires_when_idle_and_after_its_lifetime() -> None:
    clock = Clock()
    sessions = Sessions(clock=clock)
    idle = sessions.new()
    clock.now += IDLE + timedelta(seconds=1)
    assert sessions.get(idle.sid) is None
    busy = sessions.new()
    for _ in range(int(LIFETIME / (IDLE / 2)) + 1):
        clock.now += IDLE / 2
        found = sessions.get(busy.sid)
    assert found is None, "activity does not keep a session beyond its lifetime"


def test_login_renews_the_session_id_and_csrf_token() -> None:
    sessions = Sessions()
    before = sessions.new("en")
    after = sessions.renew(before)
    assert after.sid != before.sid and after.csrf != before.csrf and after.lang == "en"
    assert sessions.get(before.sid) is None and sessions.get(after.sid) is after


def test_a_card_challenge_is_used_once_and_only_while_fresh() -> None:
    session = Sessions().new()
    now = datetime.now(UTC)
    session.challenge = Challenge(b"\x01" * 32, "resident", now)
    assert session.take_challenge("02" * 32, now) is None, "another challenge"
    assert session.take_challenge("01" * 32, now) is None, "used up by the wrong try"
    session.challenge = Challenge(b"\x01" * 32, "resident", now)
    assert session.take_challenge("01" * 32, now) is not None
    assert session.take_challenge("01" * 32, now) is None, "used once"
    session.challenge = Challenge(b"\x01" * 32, "resident", now)
    late = now + timedelta(seconds=CHALLENGE_SECONDS + 1)
    assert session.take_challenge("01" * 32, late) is None


@pytest.mark.parametrize("back, to", [
    ("/history?holder=city-a", "/history?holder=city-a"), ("/", "/"), ("", "/"),
    ("//evil.example", "/"), ("/\\evil.example", "/"), ("/\t/evil.example", "/"),
    ("/\n/evil.example", "/"), ("https://evil.example/", "/"), ("history", "/")])
async def test_switching_language_goes_back_only_to_a_page_of_the_site(back: str, to: str) -> None:
    request = make_mocked_request("GET", f"/lang/en?{urlencode({'next': back})}",
                                  match_info={"lang": "en"})
    request[SESSION] = Sessions().new()
    with pytest.raises(web.HTTPSeeOther) as redirect:
        await switch_language(request)
    assert redirect.value.location == to and request[SESSION].lang == "en"
