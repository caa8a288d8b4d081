"""The registry side's answer to My Portal: whose card logged in (J-LIS's card table, followed
through the registry's code changes), sealed back to the portal alone (renkei.questions)."""

from __future__ import annotations

from cards.jlis import CardHolders
from registry.store import RegistryStore
from renkei.questions import NotFound, TooLate
from schemas.codec import CODEC
from schemas.messages import CardHolder, CardSerial


def card_holder(cards: CardHolders, registry: RegistryStore, request_id: str,
                question: bytes, late: bool) -> CardHolder:
    """The card's holder: their name now, every code they have had (the current one first) and
    their first, which their ID code is made from (not told after the question's deadline)."""
    if late:
        raise TooLate()
    codes = cards.resident_codes(CODEC.decode(question, CardSerial).serial, registry)
    current = registry.by_code(codes[0]) if codes else None
    first = registry.first_code(codes[0]) if codes else None
    if current is None or first is None:
        raise NotFound("no resident holds that card")
    return CardHolder(current.name, tuple(codes), first)
