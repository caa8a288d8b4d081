"""A resident's new personal number, asked of the numbering authority by the resident on My
Portal or by staff at the municipal counter with the resident present (番号法第7条第2項).

The request is logged before it is sent (NUMBER_CHANGE_ASKED, under its change id: asked again,
the same event), the change once answered (NUMBER_CHANGED): a change whose answer never comes,
or comes to a portal that stops before logging it, is in the resident's history as asked, never
absent. The change is kept in the portal's inbox, the resident's (by their ID code), until its
outcome is told them (for CHANGES_KEPT at most): their next request, after a new login or at the
counter, resumes it (the same change id, the same NUMBER_CHANGE_ASKED event), and the authority
answers the number it gave.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from broker import acls
from portal.context import PLATFORM
from portal.inbox import ChangeAsked
from portal.services import NO_ANSWER, Unanswered
from portal.sessions import Resident
from portal.web import render, session_of, under_way
from renkei.questions import NO_REPLY_KEY
from renkei.refusals import TICKET_EXPIRED, TICKET_FROM_THE_FUTURE, TICKET_USED

# the authority's reasons for declining a change (registry.tickets; a question of the portal's
# fault: renkei.questions), in the page's words; a ticket missing, forged or another's: "other"
REFUSALS = {TICKET_EXPIRED: "number_refused_expired", TICKET_USED: "number_refused_used",
            TICKET_FROM_THE_FUTURE: "refused_clock", NO_REPLY_KEY: "number_refused_portal"}
# the requests for a new number under way in this portal, by resident (their ID code): one
# refused settles their change only if no other (in another of their sessions) may make it
UNDER_WAY = web.AppKey("numbers_under_way", Counter[str])


async def reason_asked(request: web.Request) -> str | None:
    """The reason the form states for a new number (the resident's own words, else theirs by
    default); None if the request was not confirmed."""
    if (await request.post()).get("confirm") != "yes":
        return None
    return await _reason_typed(request) or "本人の請求"


async def _reason_typed(request: web.Request) -> str:
    """The reason the number form was sent with, as typed (none before it is sent)."""
    return str((await request.post()).get("reason", "")).strip()[:200]


async def new_number(request: web.Request, resident: Resident, requester: str, reason: str,
                     note: str | None = None) -> str | None:
    """The resident's new number, logged as asked by `requester` (with `note`: who at the
    counter), or as first asked if this resumes a change whose outcome they have not seen; None
    if no answer came in time (it may have been made: asked again, the same change); Unanswered
    if the authority did nothing (if it declined the login's ticket as expired or not good, the
    change still waits: one asked before under it may have been made, and a new login's ticket
    resumes it; declined as used for another change, it was not made: it is settled, unless
    another request of theirs, in another session, is under way and may make it)."""
    platform = request.app[PLATFORM]
    inbox = platform.kafka.inbox
    person = resident.id_codes[0]
    asking = request.app[UNDER_WAY]
    with under_way(asking, person):
        asked = await inbox.change(ChangeAsked(person, str(uuid.uuid4()), datetime.now(UTC),
                                               requester, note))
        await platform.kafka.record("NUMBER_CHANGE_ASKED", asked.requester, person,
                                    provider=acls.AUTHORITY, request_id=asked.change_id,
                                    step="asked", at=asked.at, reason=asked.note)
        try:
            number = await platform.new_number(resident, reason, asked.change_id)
        except Unanswered as exc:
            if exc.status == NO_ANSWER:
                return None
            if exc.declined == TICKET_USED:
                _login_used(request, resident)
            if exc.declined in (None, TICKET_USED) and asking[person] == 1:
                await inbox.change_seen(asked)
            raise
    _login_used(request, resident)
    await platform.kafka.record("NUMBER_CHANGED", requester, person, provider=acls.AUTHORITY,
                                request_id=asked.change_id, step="changed", reason=note)
    await inbox.change_seen(asked)  # logged: the next request is a new change
    return number


def _login_used(request: web.Request, resident: Resident) -> None:
    """The resident's login made its one change: its form says another needs a new login."""
    session_of(request).tickets_used.add(resident.ticket)


async def form(request: web.Request, resident: Resident) -> dict[str, Any]:
    """What the number form says before a request: the resident's change whose outcome they
    have not seen, whether this login made its one change already (`used`), and the reason
    typed if it is shown again (the form sent without its confirmation)."""
    return {"pending": await pending(request, resident),
            "used": resident.ticket in session_of(request).tickets_used,
            "reason": await _reason_typed(request)}


def done(request: web.Request, number: str, back: str) -> web.Response:
    """The page showing the new number, once: its links (the language's too) go `back`."""
    return render(request, "number_done.html", number=number, back=back, here=back)


def not_changed(request: web.Request, unanswered: Unanswered, back: str) -> web.Response:
    """The page for a number the authority did not change: refused, and why, if it declined
    (the login's ticket), else not answered; its language link goes `back`."""
    if unanswered.declined is None:
        return render(request, "error.html", status=503, message="number_unanswered", here=back)
    return render(request, "error.html", status=403, message="number_refused", here=back,
                  reason=REFUSALS.get(unanswered.declined, "number_refused_other"))


async def pending(request: web.Request, resident: Resident) -> ChangeAsked | None:
    """The resident's request for a new number whose outcome they have not seen yet."""
    return await request.app[PLATFORM].kafka.inbox.change_of(resident.id_codes[0],
                                                             datetime.now(UTC))
