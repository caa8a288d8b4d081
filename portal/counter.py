"""The municipal counter (窓口): staff, logged in with their officer card, serve a resident who
is present and logs in with their own card; the history is shown and printed, a new number
issued on the resident's request, and each look-up, print and request is logged with the staff
member's name."""

from __future__ import annotations

from aiohttp import web

from audit.store import Query
from portal import numbering
from portal.context import PLATFORM
from portal.services import Unanswered
from portal.sessions import Officer, Resident
from portal.web import history_of, officer_of, older, render, render_apart, session_of

ROLE = "counter"
DESK = "/counter"  # the desk's page: where the answers to its forms go back to


async def desk(request: web.Request) -> web.Response:
    officer = officer_of(request, ROLE)
    return await _desk(request, officer, session_of(request).present)


async def _desk(request: web.Request, officer: Officer, present: Resident | None,
                status: int = 200, **context: object) -> web.Response:
    """The desk: the visitor's history a page at a time (the one the request asks for), its
    link to the older entries back to the desk (no filter: the holders are not listed)."""
    shown = (await history_of(request, present.id_codes, Query(), listing=False) if present
             else None)
    return render(request, "counter.html", status=status, officer=officer, present=present,
                  shown=shown, older=shown and older(shown, DESK),
                  **(await numbering.form(request, present) if present else {}), **context)


async def number_change(request: web.Request) -> web.Response:
    """The present resident asks for a new number: staff ask the numbering authority for it,
    logged as theirs; it is shown on this response only, for the resident to write down."""
    officer = officer_of(request, ROLE)
    present = session_of(request).present
    if present is None:
        raise web.HTTPSeeOther(DESK)
    reason = await numbering.reason_asked(request)
    if reason is None:
        return await _desk(request, officer, present, status=400, missing=True, here=DESK)
    try:
        number = await numbering.new_number(request, present, officer.holder, f"{reason}（窓口）",
                                            officer.acting)
    except Unanswered as exc:
        return numbering.not_changed(request, exc, DESK)
    if number is None:
        return await _desk(request, officer, present, status=503, unknown=True, here=DESK)
    return numbering.done(request, number, DESK)


async def print_history(request: web.Request) -> web.Response:
    officer = officer_of(request, ROLE)
    present = session_of(request).present
    if present is None:
        raise web.HTTPSeeOther(DESK)
    platform = request.app[PLATFORM]
    shown = await platform.records.of_person(present.id_codes)
    await platform.kafka.counter(officer, present, "COUNTER_PRINTED")
    return await render_apart(request, "counter_print.html", officer=officer, present=present,
                              shown=shown, here=DESK)


async def finish(request: web.Request) -> web.Response:
    officer_of(request, ROLE)
    session_of(request).present = None
    raise web.HTTPSeeOther(DESK)
