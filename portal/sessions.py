"""Server-side sessions: a random id in an HttpOnly cookie, everything else in memory here.

A session ends after `idle` without a request or `lifetime` after it began, whichever is first
(time elapsed, on the elapsed clock: a step of the wall clock ends none and keeps none alive, a
suspend ages it as it ages the login's ticket: renkei.clock.elapsed_seconds, CLOCK_BOOTTIME),
and at its first request after the card it signed in with is revoked, or while whether it is
cannot be checked; at the counter, the visitor's part of a staff member's session ends likewise
with the visitor's card (the web layer checks both, and says which). A card challenge is good
until CHALLENGE_SECONDS have elapsed since it was issued (renkei.clock: exactly, by the elapsed
clock's mark of its issue, on this machine since its boot; else its time's timeline), whatever the
wall clock's steps, and never if read ahead of its clock (Clock.judged, as the registry side
judges it). The card reader's return, posted from its own site, comes without the session's
cookie (SameSite=Lax): it is kept with the challenge it names, and the login's own browser,
sent on to the portal's page by a top-level GET that carries the cookie, takes it.
Starting a card login replaces the session id (its lifetime runs on), and logging in replaces it
again with the CSRF token, its lifetime begun again (no fixation: a session whose id another
browser knows, planted in this one, is never the one a login is under way or completes in). Each
session has its own CSRF token, which every form carries back. At most `MOST` sessions are kept, a
tenth of them (at least one) for anonymous ones alone: past it the least recently used anonymous
one goes, and past the rest signed in the least recently used signed-in one (so a new visitor's
login can start, however many are signed in, and no flood of anonymous requests pushes a signed-in
one out). A session ended by time goes on in the language it was using at its cookie's next request
(the `most` last kept), a signed-in one told so, idle or at its lifetime, once; a session pushed
out goes on likewise, told so once, whether signed in or not (a card login under way in it is
lost), its push-out logged at INFO if someone was in it. The signed-in sessions first past their
most, and all the sessions past theirs, are each said once at WARNING, and again once a tenth of
their room is free (not at each logout and login at the edge). A cookie the portal never made, or
long forgotten, is told nothing: no one was logged out.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from renkei.clock import Age, Clock, Mark, elapsed_seconds

log = logging.getLogger(__name__)
IDLE, LIFETIME = timedelta(minutes=15), timedelta(hours=1)
MOST = 100_000  # sessions kept (~0.5 kB each); past it the least recently used go
ANONYMOUS_KEPT = 10  # one in this many of the `most` kept is for anonymous sessions alone
FREED = 10  # sessions full are said back under their most once one in this many is free again
SIGNED_IN, ALL = "signed-in sessions", "sessions"  # the kinds of sessions said full
CHALLENGE_SECONDS = 120
CHALLENGE = timedelta(seconds=CHALLENGE_SECONDS)  # a card challenge is good for, refused at it
CHALLENGES_PENDING = 4  # card logins under way in one session (a tab each); past it the oldest go


@dataclass(frozen=True)
class Resident:
    """A resident logged in with their card: the codes the registry side gave for the card,
    the current one first, and the ID codes the platform's code service computed from them, their
    own first (of their first code; the others find entries made before it was theirs alone); and
    the login's ticket the registry side signed, without which the numbering authority changes
    no number (registry.tickets: it lasts a session's LIFETIME)."""

    serial: str
    name: str
    resident_codes: tuple[str, ...]
    id_codes: tuple[str, ...]
    ticket: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class Officer:
    """Counter staff or an oversight officer, from their officer card."""

    serial: str
    staff_id: str
    holder: str
    role: str

    @property
    def acting(self) -> str:
        """Who acted, as the access log's reason names them."""
        return f"staff {self.staff_id} (card {self.serial})"


@dataclass(frozen=True)
class Signed:
    """What the card reader returned for a challenge: the card's certificate (PEM) and its
    signature (hex), as posted, checked when the login's own browser comes for them."""

    certificate: str
    signature: str


@dataclass(frozen=True)
class Challenge:
    """A card login under way: the nonce sent to the card, what the login is for, and what the
    reader returned for it, once it has."""

    nonce: bytes
    realm: str
    at: datetime
    mark: Mark | None = None  # the elapsed clock's, at `at`
    signed: Signed | None = None


class Ended(NamedTuple):
    """Why a session ended by time or was pushed out (the notice's word; None for an anonymous
    one ended by time, which nobody was logged out of), the language it used, and the role of the
    officer signed in to it (None if none): whose login its next request goes back to."""

    notice: str | None
    lang: str
    role: str | None = None


@dataclass
class Session:
    sid: str
    csrf: str
    started: float  # seconds on the sessions' elapsed clock
    seen: float
    lang: str = "ja"
    resident: Resident | None = None
    officer: Officer | None = None
    present: Resident | None = None  # at the counter: the resident who logged in with their card
    # the card logins under way in this session's browser (one a tab), by nonce, oldest first
    challenges: dict[bytes, Challenge] = field(default_factory=dict)
    # the newest of those dropped past CHALLENGES_PENDING, by nonce: their tabs are told why
    dropped: deque[bytes] = field(default_factory=lambda: deque(maxlen=CHALLENGES_PENDING))
    notice: str | None = None
    # the login tickets a number was changed under here (the authority allows one a ticket)
    tickets_used: set[bytes] = field(default_factory=set)

    def named(self, nonce_hex: str) -> Challenge | None:
        """The pending challenge whose nonce this is (hex), if there is one."""
        return self.challenges.get(_nonce(nonce_hex))

    def too_many(self, nonce_hex: str) -> bool:
        """Whether the challenge whose nonce this is (hex) was dropped past CHALLENGES_PENDING
        (too many logins started in this browser)."""
        return _nonce(nonce_hex) in self.dropped

    @property
    def role(self) -> str | None:
        """The role of the officer signed in to this session, if one is."""
        return None if self.officer is None else self.officer.role

    @property
    def signed_in(self) -> bool:
        """Whether a resident or an officer logged in to this session with their card."""
        return self.resident is not None or self.officer is not None

    def take_challenge(self, nonce_hex: str, clock: Clock) -> Challenge | None:
        """The pending challenge if it is this one and still fresh by the `clock` that read its
        time: younger than CHALLENGE_SECONDS, not ahead (Clock.judged); used up either way. A
        wrong or unknown challenge (a stray or forged link) leaves the pending ones pending."""
        pending = self.named(nonce_hex)
        if pending is None:
            return None
        del self.challenges[pending.nonce]
        return pending if clock.judged(pending.at, pending.mark, CHALLENGE) is Age.YOUNG else None


def _nonce(nonce_hex: str) -> bytes:
    """The nonce a challenge's hex names; none (empty) if it is not hex."""
    try:
        return bytes.fromhex(nonce_hex)
    except ValueError:
        return b""


@dataclass
class Sessions:
    """The live sessions, least recently used first: anonymous ones, and signed-in ones (a
    resident or an officer), which a flood of anonymous requests never pushes out."""

    idle: timedelta = IDLE
    lifetime: timedelta = LIFETIME
    clock: Callable[[], float] = elapsed_seconds
    wall: Clock = field(default_factory=Clock)  # a card challenge's time is read and judged by it
    most: int = MOST
    _anonymous: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    _signed_in: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    # the pending challenges' nonces, oldest first: the session each is for, and when it began
    _challenged: OrderedDict[bytes, tuple[str, float]] = field(default_factory=OrderedDict)
    # the sessions ended by time or pushed out, oldest first: what their next request is told
    _ended: OrderedDict[str, Ended] = field(default_factory=OrderedDict)
    _full: set[str] = field(default_factory=set)  # the kinds past their most, not back under

    def __len__(self) -> int:
        return len(self._anonymous) + len(self._signed_in)

    def new(self, lang: str = "ja") -> Session:
        """A new anonymous session."""
        return self._kept(self._fresh(lang))

    def _fresh(self, lang: str) -> Session:
        """A session with a new id and CSRF token, begun now."""
        now = self.clock()
        return Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, lang)

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, touched; None if unknown or expired (then gone)."""
        table = self._signed_in if sid in self._signed_in else self._anonymous
        session = table.get(sid or "")
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            self._ended_by_time(table.pop(session.sid), now)
            return None
        session.seen = now
        table.move_to_end(session.sid)
        return session

    def _expired(self, session: Session, now: float) -> bool:
        return self._idle(session, now) or now - session.started > self.lifetime.total_seconds()

    def _idle(self, session: Session, now: float) -> bool:
        return now - session.seen > self.idle.total_seconds()

    def _ended_by_time(self, session: Session, now: float) -> None:
        """Note an expired session's language, why it ended if signed in, and its officer's role,
        for its cookie's next request."""
        self._tell(session, None if not session.signed_in else (
            "expired_session" if self._idle(session, now) else "lifetime_session"))

    def _pushed_out(self, session: Session, most: int) -> None:
        """Note a session pushed out past the `most` of its kind kept (`most` in all, or
        signed in), for its cookie's next request; log it at INFO if someone is in it (signed
        in, or a card login under way), never its id nor whose: at its most, each login past it
        pushes one out, and a flood's requests may each start a login (the portal full is the
        WARNING, once: _filled)."""
        self._tell(session, "session_full")
        if session.signed_in or session.challenges:
            log.info("a session pushed out, the portal keeping %d %sat most (signed in: %s, card "
                     "logins under way: %d, officer's role: %s)", most,
                     "signed in " if session.signed_in else "", "yes" if session.signed_in
                     else "no", len(session.challenges), session.role or "none")

    def _filled(self, kind: str, kept: int, most: int) -> None:
        """Say at WARNING, which `renkei portal` shows, when the `kept` sessions of a `kind`
        first go past their `most` (its least recently used pushed out at each one more), and
        when they are back under it by a tenth (FREED), each once: an operator is told the
        portal is full, and that it is no more, in two lines however many push-outs between."""
        room = most - -(-most // FREED)  # a tenth free, rounded up: one at least
        if kept > most and kind not in self._full:
            self._full.add(kind)
            log.warning("the portal's %s are full, %d kept at most: past them the least recently "
                        "used is pushed out, its browser told so, logged at INFO if someone is "
                        "in it (signed in, or a card login under way); said again when %d or "
                        "fewer are kept", kind, most, room)
        elif kept <= room and kind in self._full:
            self._full.discard(kind)
            log.warning("the portal's %s are back under their most: %d kept, %d at most", kind,
                        kept, most)

    def _tell(self, session: Session, notice: str | None) -> None:
        """Keep, for the ended session's cookie's next request, the `notice` it is told, its
        language, and its officer's role (the `most` last ended)."""
        self._ended[session.sid] = Ended(notice, session.lang, session.role)
        while len(self._ended) > self.most:
            self._ended.popitem(last=False)

    def ended(self, sid: str | None) -> Ended | None:
        """How the session with this id ended by time or was pushed out, told once; None for
        any other id: unknown, or ended otherwise."""
        return self._ended.pop(sid or "", None)

    @property
    def most_signed_in(self) -> int:
        """The most signed-in sessions kept: `most` but the anonymous ones' share."""
        return self.most - max(1, self.most // ANONYMOUS_KEPT)

    def _kept(self, session: Session) -> Session:
        """Add a session; drop the stale ones, then past `most_signed_in` the least recently
        used signed-in one, and past `most` the least recently used anonymous one (never this
        one: the anonymous ones' share is one at least); say when either goes past its most, or
        back under it."""
        self._purge(session.seen)  # begun or renewed now
        (self._signed_in if session.signed_in else self._anonymous)[session.sid] = session
        self._filled(SIGNED_IN, len(self._signed_in), self.most_signed_in)
        while len(self._signed_in) > self.most_signed_in:
            self._pushed_out(self._signed_in.popitem(last=False)[1], self.most_signed_in)
        self._filled(ALL, len(self), self.most)
        while len(self) > self.most:
            self._pushed_out(self._anonymous.popitem(last=False)[1], self.most)
        return session

    def _purge(self, now: float) -> None:
        """Drop the expired sessions from the least recently used end of each table."""
        for table in (self._anonymous, self._signed_in):
            while table and self._expired(next(iter(table.values())), now):
                self._ended_by_time(table.popitem(last=False)[1], now)

    def challenge(self, session: Session, pending: Challenge) -> None:
        """Add `pending` to the session's card challenges (past CHALLENGES_PENDING the oldest
        goes: another tab's login goes on), to be found by its nonce when the reader returns
        (those older than CHALLENGE, and past `most` the oldest, forgotten)."""
        now = self.clock()
        while self._challenged and (
                len(self._challenged) >= self.most
                or now - next(iter(self._challenged.values()))[1] >= CHALLENGE_SECONDS):
            self._challenged.popitem(last=False)
        session.challenges[pending.nonce] = pending
        while len(session.challenges) > CHALLENGES_PENDING:
            oldest = next(iter(session.challenges))
            del session.challenges[oldest]
            session.dropped.append(oldest)
            self._challenged.pop(oldest, None)  # no more to be found by its reader's return
        self._challenged[pending.nonce] = (session.sid, now)

    def sign(self, nonce_hex: str, signed: Signed) -> None:
        """Keep what the reader returned with the challenge it was for, in the session pending
        it, once: the reader's return comes without the session's cookie (another site's page
        posts it), and only that session's own request takes it (Session.take_challenge)."""
        nonce = _nonce(nonce_hex)
        sid, _ = self._challenged.pop(nonce, ("", 0.0))
        session = self._anonymous.get(sid) or self._signed_in.get(sid)
        if session is not None and nonce in session.challenges:
            session.challenges[nonce] = replace(session.challenges[nonce], signed=signed)

    def renew(self, session: Session, login_start: bool = False) -> Session:
        """A fresh id and CSRF token for a session whose privilege changes (login), begun now;
        at a `login_start` the same token (the browser's other tabs' forms go on) and the same
        start (its lifetime runs on: nobody logged in). The browser's other card logins under
        way (its other tabs') go on in it."""
        self.end(session)
        fresh = self._fresh(session.lang)
        if login_start:
            fresh.csrf, fresh.started = session.csrf, session.started
        fresh.present, fresh.officer, fresh.resident, fresh.challenges, fresh.dropped = (
            session.present, session.officer, session.resident, session.challenges,
            session.dropped)
        for nonce in fresh.challenges.keys() & self._challenged.keys():
            self._challenged[nonce] = (fresh.sid, self._challenged[nonce][1])
        return self._kept(fresh)

    def end(self, session: Session) -> None:
        self._anonymous.pop(session.sid, None)
        self._signed_in.pop(session.sid, None)
