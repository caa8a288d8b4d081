"""The municipal counter (窓口): staff, logged in with their officer card, serve a resident who
is present and logs in with their own card; the history is shown and printed, and each look-up
and print is logged with the staff member's name."""

from __future__ import annotations

from aiohttp import web

from portal.context import PLATFORM
from portal.web import officer_of, render, session_of

ROLE = "counter"


async def desk(request: web.Request) -> web.Response:
    officer = officer_of(request, ROLE)
    present = session_of(request).present
    platform = request.app[PLATFORM]
    entries, head = platform.records.of_person(present.id_codes) if present else ([], None)
    return render(request, "counter.html", officer=officer, present=present, entries=entries,
                  head=head)


async def print_history(request: web.Request) -> web.Response:
    officer = officer_of(request, ROLE)
    present = session_of(request).present
    if present is None:
        raise web.HTTPSeeOther("/counter")
    platform = request.app[PLATFORM]
    entries, head = platform.records.of_person(present.id_codes)
    await platform.kafka.counter(officer, present, "COUNTER_PRINTED")
    return render(request, "counter_print.html", officer=officer, present=present,
                  entries=entries, head=head)


async def finish(request: web.Request) -> web.Response:
    officer_of(request, ROLE)
    session_of(request).present = None
    raise web.HTTPSeeOther("/counter")
