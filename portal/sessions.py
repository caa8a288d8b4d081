"""Server-side sessions: a random id in an HttpOnly cookie, everything else in memory here.

A session ends after `idle` without a request or `lifetime` after it began, whichever is first.
Logging in replaces the session id (no fixation). Each session has its own CSRF token, which
every form carries back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

IDLE, LIFETIME = timedelta(minutes=15), timedelta(hours=1)
CHALLENGE_SECONDS = 120


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Resident:
    """A resident logged in with their card: the codes the registry side gave for the card,
    the current one first, and the ID codes the platform's code service computed from them, their
    own first (of their first code; the others find entries made before it was theirs alone)."""

    serial: str
    name: str
    resident_codes: tuple[str, ...]
    id_codes: tuple[str, ...]


@dataclass(frozen=True)
class Officer:
    """Counter staff or an oversight officer, from their officer card."""

    serial: str
    staff_id: str
    holder: str
    role: str


@dataclass(frozen=True)
class Challenge:
    """A card login under way: the nonce sent to the card, and what the login is for."""

    nonce: bytes
    realm: str
    at: datetime


@dataclass
class Session:
    sid: str
    csrf: str
    started: datetime
    seen: datetime
    lang: str = "ja"
    resident: Resident | None = None
    officer: Officer | None = None
    present: Resident | None = None  # at the counter: the resident who logged in with their card
    challenge: Challenge | None = None
    notice: str | None = None

    def take_challenge(self, nonce_hex: str, now: datetime) -> Challenge | None:
        """The pending challenge if it is this one and still fresh; used up either way."""
        pending, self.challenge = self.challenge, None
        if pending is None or now - pending.at > timedelta(seconds=CHALLENGE_SECONDS):
            return None
        try:
            nonce = bytes.fromhex(nonce_hex)
        except ValueError:
            return None
        return pending if secrets.compare_digest(pending.nonce, nonce) else None


@dataclass
class Sessions:
    idle: timedelta = IDLE
    lifetime: timedelta = LIFETIME
    clock: Callable[[], datetime] = _now
    _by_id: dict[str, Session] = field(default_factory=dict)

    def new(self, lang: str = "ja") -> Session:
        now = self.clock()
        for stale in [s for s in self._by_id.values() if self._expired(s, now)]:
            del self._by_id[stale.sid]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now, lang)
        self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id, touched; None if unknown or expired (then gone)."""
        session = self._by_id.get(sid or "")
        if session is None:
            return None
        now = self.clock()
        if self._expired(session, now):
            del self._by_id[session.sid]
            return None
        session.seen = now
        return session

    def _expired(self, session: Session, now: datetime) -> bool:
        return now - session.seen > self.idle or now - session.started > self.lifetime

    def renew(self, session: Session) -> Session:
        """A fresh id and CSRF token for a session whose privilege changes (login)."""
        del self._by_id[session.sid]
        fresh = self.new(session.lang)
        fresh.present, fresh.officer, fresh.resident = (session.present, session.officer,
                                                        session.resident)
        return fresh

    def end(self, session: Session) -> None:
        self._by_id.pop(session.sid, None)
