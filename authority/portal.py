"""The numbering authority's answer to My Portal: a resident's new number, asked for by the
resident on the portal, and sealed back to the portal alone (renkei.questions); only for a
resident the login ticket shown with the question names (registry.tickets), once per ticket."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from authority.service import (
    NumberingAuthority,
    TicketExpired,
    TicketShown,
    TicketUsed,
    UnknownResident,
)
from registry import tickets
from renkei.questions import Declined, NotFound, TooLate
from schemas.codec import CODEC
from schemas.messages import ChangeOfNumber, PersonalNumber


def new_number(authority: NumberingAuthority, login_key: Ed25519PublicKey, request_id: str,
               question: bytes, late: bool) -> PersonalNumber:
    """The resident's old number retired and a new one issued (once per change, asked again in
    as many questions as the portal needs); read after its deadline, the number the change was
    given before, if it was (TooLate if not: nothing changes). Nothing is done or told for a
    resident code that no ticket live by the authority's clock (by its age: not the clock's
    steps), signed with the registry side's `login_key`, names, nor a second change under one
    ticket (Declined)."""
    change = CODEC.decode(question, ChangeOfNumber)
    shown = tickets.check(login_key, change.ticket, change.resident_code, authority.judged)
    change_id = change.change_id or request_id
    try:
        if not late:
            return PersonalNumber(authority.change_number(
                change.resident_code, change.reason, change_id,
                TicketShown(tickets.identity(shown), shown.expires_at, tickets.expiry_mark(shown))))
        given = authority.number_given(change_id, change.resident_code)
    except UnknownResident as exc:
        raise NotFound(str(exc)) from exc
    except TicketUsed:
        raise Declined(tickets.USED) from None
    except TicketExpired:
        raise Declined(tickets.EXPIRED) from None
    if given is None:
        raise TooLate()
    return PersonalNumber(given)
