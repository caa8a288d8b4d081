"""My Portal: the resident's history, one entry, the detail applications (⑪⑫), a new number.

Nothing here takes a person from the request: the person is the session's, whose card the
registry side resolved. An entry about anyone else is "not found", as one that does not exist.
"""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from audit.events import PORTAL_KIND, REJECTED, AccessLogEvent
from audit.store import Query
from portal import numbering
from portal.context import PLATFORM
from portal.inbox import Asked
from portal.kafka import NoHolder
from portal.records import Shown
from portal.services import Unanswered
from portal.sessions import Resident
from portal.web import (
    BadDay,
    history_of,
    no_holder,
    older,
    range_asked,
    render,
    resident_of,
    under_way,
)

APPLICATION_BASIS = "本人からの申請（マイポータル）：情報提供等の記録の開示"
# the applications being kept and sent in this portal, by resident (their ID code) and exchange
# (its request id): one sent again meanwhile (two posts at once) goes to the first
APPLYING = web.AppKey("applications_under_way", Counter[tuple[str, str]])


async def history(request: web.Request) -> web.Response:
    """The resident's history, filtered; a date that is none (or out of range), or an end
    before the start, is said so (400) with the filter as typed, and no entries."""
    resident = resident_of(request)
    holder = request.query.get("holder") or None
    since, until = request.query.get("since", ""), request.query.get("until", "")
    bad_date: str | None = None
    try:
        begin, end = range_asked(since, until)
        where = Query(holder=holder, since=begin, until=end)
    except BadDay as bad:
        where, bad_date = Query(holder=holder), bad.said
    shown = await history_of(request, resident.id_codes, where)
    return render(request, "history.html", status=400 if bad_date else 200, bad_date=bad_date,
                  shown=shown, holders=shown.holders, chosen=holder,
                  since=since, until=until,
                  older=older(shown, "/history", holder=holder or "", since=since, until=until),
                  pending=await numbering.pending(request, resident))


async def _entry_of(request: web.Request, resident: Resident, serial: str) -> Shown | None:
    """The resident's entry numbered `serial`, alone; None if there is none (nor any such
    number)."""
    try:
        number = int(serial)
    except ValueError:
        return None
    return await request.app[PLATFORM].records.entry_of(resident.id_codes, number)


async def entry(request: web.Request) -> web.Response:
    found = await _entry_of(request, resident_of(request), request.match_info["serial"])
    if found is None:
        return render(request, "error.html", status=404, message="not_found")
    return render(request, "entry.html", shown=found)


def _exchanged_with(event: AccessLogEvent) -> list[str]:
    """The holders an application from `event` asks: its requester, and its provider unless the
    platform refused the request, which so never reached the provider (whose entry of its id,
    if any, is of another use of it: another resident's data)."""
    if event.outcome == REJECTED:
        return [event.requester]
    return [h for h in (event.requester, event.provider) if h]


async def apply(request: web.Request) -> web.Response:
    """Ask the requester and the provider of one of the resident's entries for ⑪⑫ (not of one
    of the portal's own actions, which the entry's page offers no application for), naming when
    its exchange was approved: a provider answers its entry of that use of the request id alone
    (a timeout or answer may be logged minutes after, around the next use's), none if the
    approval is not in the store (purged). An entry not proved (its row replaced, or the tree's
    hashes) is asked about of nobody (409), as its page, saying TAMPERED, offers no application."""
    resident = resident_of(request)
    form = await request.post()
    found = await _entry_of(request, resident, str(form.get("serial", "")))
    if found is None:
        return render(request, "error.html", status=404, message="not_found")
    if not found.proved:
        return render(request, "error.html", status=409, message="entry_unproved")
    event = found.entries[0].entry.event
    if event.kind == PORTAL_KIND:  # the portal's own action: no holder exchanged anything
        return render(request, "error.html", status=400, message="not_an_exchange")
    exchange = (resident.id_codes[0], event.request_id)
    applying = request.app[APPLYING]
    with under_way(applying, exchange):
        if applying[exchange] > 1:  # sent twice at once: the first, being kept, is listed
            raise web.HTTPSeeOther("/details")
        return await _applied(request, resident, event)


async def _applied(request: web.Request, resident: Resident, event: AccessLogEvent
                   ) -> web.Response:
    """The application about `event`'s exchange asked of its holders and logged, unless one
    awaits their answers (sent twice: a double click, the page sent again): the one asked."""
    platform = request.app[PLATFORM]
    waiting = await _awaiting_answer(request, resident, event.request_id)
    if waiting is not None:
        raise web.HTTPSeeOther(f"/details#{waiting}")

    async def applied(asked: Asked) -> None:
        for holder in asked.holders:
            await platform.kafka.record("DETAIL_APPLIED", "portal", resident.id_codes[0],
                                        provider=holder, request_id=asked.request_id,
                                        step=f"applied-{holder}",
                                        reason=f"request {event.request_id}")

    approval = await platform.records.approval_of(event)
    if not approval.proved:  # its time, forged, would have a provider answer of another use
        return render(request, "error.html", status=409, message="approval_unproved")
    try:
        asked = await platform.kafka.applications.ask(
            _exchanged_with(event), [event.request_id], APPLICATION_BASIS,
            person=resident.id_codes[0], log=applied,
            exchanged_at=tuple(c.entry.event.occurred_at for c in approval.entries),
            requesters=(event.requester,))
    except NoHolder:
        return no_holder(request)
    raise web.HTTPSeeOther(f"/details#{asked.request_id}")


async def _awaiting_answer(request: web.Request, resident: Resident, exchange: str
                           ) -> str | None:
    """The resident's application about the exchange `exchange` whose holders have not all
    answered yet and are not overdue, if there is one (its id)."""
    shown = await request.app[PLATFORM].kafka.applications.of_person(resident.id_codes)
    return next((s.asked.request_id for s in shown if s.asked.request_ids == (exchange,)
                 and not s.asked.complete and not s.overdue), None)


async def details(request: web.Request) -> web.Response:
    resident = resident_of(request)
    platform = request.app[PLATFORM]
    return render(request, "details.html",
                  applications=await platform.kafka.applications.of_person(resident.id_codes))


async def number_form(request: web.Request) -> web.Response:
    resident = resident_of(request)
    return render(request, "number.html", **await numbering.form(request, resident))


async def number_change(request: web.Request) -> web.Response:
    """The numbering authority issues a new number; it is shown on this response only."""
    resident = resident_of(request)
    reason = await numbering.reason_asked(request)
    if reason is None:
        return render(request, "number.html", status=400, missing=True,
                      **await numbering.form(request, resident))
    try:
        number = await numbering.new_number(request, resident, "portal",
                                            f"{reason}（マイポータル）")
    except Unanswered as exc:
        return numbering.not_changed(request, exc, "/number")
    if number is None:
        return render(request, "number.html", status=503, unknown=True)
    return numbering.done(request, number, "/history")
