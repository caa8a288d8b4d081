"""A resident's new personal number, asked of the numbering authority by the resident on My
Portal or by staff at the municipal counter with the resident present (番号法第7条第2項).

The request is logged before it is sent (NUMBER_CHANGE_ASKED, under its change id: asked again,
the same event), the change once answered (NUMBER_CHANGED): a change whose answer never comes,
or comes to a portal that stops before logging it, is in the resident's history as asked, never
absent. The change id stays the session's until the change is logged, for that resident alone.
"""

from __future__ import annotations

from aiohttp import web

from broker import acls
from portal.context import PLATFORM
from portal.services import NO_ANSWER, Unanswered
from portal.sessions import Resident
from portal.web import session_of


async def reason_asked(request: web.Request) -> str | None:
    """The reason the form states for a new number (the resident's own words, else theirs by
    default); None if the request was not confirmed."""
    form = await request.post()
    if form.get("confirm") != "yes":
        return None
    return str(form.get("reason", "")).strip()[:200] or "本人の請求"


async def new_number(request: web.Request, resident: Resident, requester: str, reason: str,
                     note: str | None = None) -> str | None:
    """The resident's new number, logged as asked by `requester` (with `note`: who at the
    counter); None if no answer came in time (it may have been made: asked again, the same
    change); Unanswered if the authority did nothing."""
    platform = request.app[PLATFORM]
    session = session_of(request)
    person = resident.id_codes[0]
    asked = session.change_for(person)
    await platform.kafka.record("NUMBER_CHANGE_ASKED", requester, person, provider=acls.AUTHORITY,
                                request_id=asked.change_id, step="asked", at=asked.at,
                                reason=note)
    try:
        number = await platform.new_number(resident, reason, asked.change_id)
    except Unanswered as exc:
        if exc.status == NO_ANSWER:
            return None
        session.change_asked = None
        raise
    await platform.kafka.record("NUMBER_CHANGED", requester, person, provider=acls.AUTHORITY,
                                request_id=asked.change_id, step="changed", reason=note)
    session.change_asked = None  # logged: the next request is a new change
    return number
