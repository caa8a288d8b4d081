"""The registry side's answer to My Portal: whose card logged in (J-LIS's card table, followed
through the registry's code changes), sealed back to the portal alone (renkei.questions).

The ID codes of the card's holder are told only here, and only for a card login this side checks
itself: the card's signature of the portal's origin (one this side was told is the portal's,
so that a signature a card made for another site is no use) and challenge (the JPKI CA's
certificate and CRL, as the portal checks them), the challenge fresh (issued within the last few
minutes, not ahead of this side's clock, by the time elapsed since: renkei.clock, exactly by the
mark of its issue on this machine in this boot, else by the timeline that read it) and never shown
before (cards.jlis keeps the used ones, each until it is stale). This side's process holds the ID
key (processors.keys.load_id_key); the portal does not, so whoever takes it over cannot turn a
resident code into an ID code, nor find the history of a resident who did not log in. With them it
gives a login ticket it signs (registry.tickets), which names the codes the login proved: the
numbering authority changes the number of no resident without one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta

from audit.heads import Signer
from cards import ca
from cards.jlis import CardHolders
from cards.login import FORGED_MARK, FROM_THE_FUTURE, Refused, Verifier, issue_mark, issued_at
from processors.codes import IdCodes
from registry import tickets
from registry.store import RegistryStore
from renkei.clock import Age, Clock, later, log_refused_ahead
from renkei.questions import Declined, NotFound, TooLate
from schemas.codec import CODEC
from schemas.messages import CardHolder, CardLogin

log = logging.getLogger(__name__)
FRESH = timedelta(minutes=3)  # the portal's challenge lives 2 minutes, its question 10 s more
# the refusal of a challenge stale or used before (ahead: FROM_THE_FUTURE; forged: FORGED_MARK)
CHALLENGE = "challenge"
REFUSED_AHEAD = {Age.AHEAD: FROM_THE_FUTURE, Age.FORGED: FORGED_MARK}  # a challenge's, by age
ORIGIN = "origin"  # the refusal of a signature made for a site that is not the portal
LOOPBACK = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\]):[0-9]{1,5}")


def portal_origin(origin: str, origins: frozenset[str]) -> bool:
    """Whether `origin` is the portal's: one of `origins`, or with none named, one on this
    machine's loopback (the embedded deployment's portal, on a port of its own choosing)."""
    return origin in origins if origins else LOOPBACK.fullmatch(origin) is not None


@dataclass
class CardLogins:
    """Card logins shown by the portal, and what their cards' holders are told."""

    cards: CardHolders
    registry: RegistryStore
    codes: IdCodes
    login_key: Signer
    origins: frozenset[str] = frozenset()
    verifier: Verifier = field(default_factory=Verifier)
    clock: Clock = field(default_factory=Clock)

    def card_holder(self, request_id: str, question: bytes, late: bool) -> CardHolder:
        """The card's holder: their name now, every code they have had (the current one first),
        their first, the ID codes of them all, their first code's first, and the login's
        ticket for those codes (not told after the question's deadline, nor for a login
        refused: Declined), the one told before if its question was answered: a login's ticket
        is good for one change, however often its question is shown."""
        if late:
            raise TooLate()
        login = CODEC.decode(question, CardLogin)
        codes = self.cards.resident_codes(self._checked(request_id, login), self.registry)
        current = self.registry.by_code(codes[0]) if codes else None
        first = self.registry.first_code(codes[0]) if codes else None
        if current is None or first is None:
            raise NotFound("no resident holds that card")
        own_first = [first, *(c for c in codes if c != first)]
        ids = [c for c in self.codes.id_codes(own_first) if isinstance(c, str)]
        return CardHolder(current.name, tuple(codes), first, tuple(ids), self.cards.ticket(
            login.nonce,
            lambda: tickets.ticket(self.login_key, codes, self.clock(), self.clock.mark())))

    def _checked(self, request_id: str, login: CardLogin) -> str:
        """The serial of the card whose login this is, if its signature checks and its
        challenge is fresh and shown by no other question, signed for the portal's origin;
        else Declined, logged by reason."""
        if not portal_origin(login.origin, self.origins):
            log.warning("a card login the portal showed is refused: signed for another site")
            raise Declined(ORIGIN)
        try:
            verified = self.verifier.verify(ca.JPKI, login.certificate.encode(), login.origin,
                                            login.nonce, login.signature)
        except Refused as exc:
            log.warning("a card login the portal showed is refused: %s", exc.reason)
            raise Declined(exc.reason) from None
        issued, mark = issued_at(login.nonce), issue_mark(login.nonce)
        age = None if issued is None else self.clock.judged(issued, mark, FRESH)
        if age in REFUSED_AHEAD:
            log_refused_ahead(log, age, "a card login's challenge", "the portal's")
            raise Declined(REFUSED_AHEAD[age])
        if issued is None or age is not Age.YOUNG:
            log.warning("a card login the portal showed is refused: its challenge is not fresh")
            raise Declined(CHALLENGE)
        until = later(issued, FRESH)
        forgotten = not self.clock.in_this_boot(mark) and self.cards.forgotten(until)
        if forgotten or not self.cards.first_use(login.nonce, request_id, until,
                                                 mark and mark.after(FRESH),
                                                 self.clock.earliest(), self.clock.mark()):
            log.warning("a card login the portal showed is refused: its challenge was used")
            raise Declined(CHALLENGE)
        return verified.serial
