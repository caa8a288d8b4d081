"""The oversight console (監視機関): search every platform log entry, live alerts, holder-side
logs of chosen requests, and the audit log's integrity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from audit.events import ACTION_KINDS, ID_CODE, PORTAL_KIND, outcome_asked
from audit.store import ActionQuery, Query
from portal.context import PLATFORM
from portal.kafka import NoHolder, holders_to_ask
from portal.records import SEARCH_PAGE
from portal.web import BadDay, no_holder, officer_of, range_asked, render
from renkei.holder_logs import each_own, not_asked

ROLE = "oversight"
OVERSIGHT_BASIS = "個人情報保護委員会（第三者機関）による監視・調査"
FILTERS = ("holder", "pattern", "person", "outcome", "since", "until")
ACTION_FILTERS = ("holder", "action", "by", "since", "until")
LEFT_OUT = "left_out"  # the holder-logs page's: chosen entries of the portal's own actions
INACTIVE = "inactive"  # the holder-logs page's: holders named not asked, not active ones


async def search(request: web.Request) -> web.Response:
    """The log's entries the filter asks for; an end date before the start date is said so on
    the page (400), the filter as typed, no entries; a holder no entry names (no page tells of
    it) said so, with the names entries give nearest it."""
    officer_of(request, ROLE)
    platform = request.app[PLATFORM]
    q = {k: request.query.get(k, "").strip() for k in FILTERS}
    if q["person"] and not ID_CODE.fullmatch(q["person"]):  # else: no entry, as if nobody looked
        raise web.HTTPBadRequest(text="an ID code is 11 characters 0-9A-Z, upper case")
    return await _found(request, "oversight.html", q, "searched", lambda since, until, after: (
        platform.records.search(Query(
            person=q["person"] or None, holder=q["holder"] or None, pattern=q["pattern"] or None,
            outcome=outcome_asked(q["outcome"]), since=since, until=until), after)),
        alerts=platform.kafka.alerts.newest()[:5])


async def actions(request: web.Request) -> web.Response:
    """The operator actions on the holder directory (a holder suspended, resumed, registered,
    its keys renewed, a unit re-keyed), newest first: who did what to which holder or unit,
    when and why, each checked against the signed head; an end date before the start date is
    said so on the page (400), the filter as typed, no actions."""
    officer_of(request, ROLE)
    platform = request.app[PLATFORM]
    q = {k: request.query.get(k, "").strip() for k in ACTION_FILTERS}
    # an unknown one refused: else none found, as if none was done
    if q["action"] and q["action"] not in ACTION_KINDS:
        raise web.HTTPBadRequest(text=f"an action is one of {', '.join(ACTION_KINDS)}")
    return await _found(request, "actions.html", q, "shown", lambda since, until, after: (
        platform.records.actions(ActionQuery(
            subject=q["holder"] or None, action=q["action"] or None, operator=q["by"] or None,
            since=since, until=until), after)), kinds=ACTION_KINDS)


async def _found(request: web.Request, template: str, q: dict[str, str], name: str,
                 read: Callable[[datetime | None, datetime | None, str | None], Awaitable[Any]],
                 **context: Any) -> web.Response:
    """`template` showing its filter `q` as typed and, as `name`, what `read` finds in q's range
    of days from the page `after` asks for on (a cursor that is none: 400); a date field that
    is no date (or no moment of it the log can hold), or an end date before the start date, is
    said on it instead (400), nothing read."""
    try:
        since, until = range_asked(q["since"], q["until"])
    except BadDay as bad:
        return render(request, template, status=400, bad_date=bad.said, q=q, **{name: None},
                      **context)
    try:
        found = await read(since, until, request.query.get("after") or None)
    except ValueError:
        raise web.HTTPBadRequest(text="bad cursor") from None
    return render(request, template, bad_date=None, q=q, **{name: found}, **context)


async def alerts(request: web.Request) -> web.Response:
    officer_of(request, ROLE)
    platform = request.app[PLATFORM]
    return render(request, "alerts.html", alerts=platform.kafka.alerts.newest())


async def ask_holder_logs(request: web.Request) -> web.Response:
    """Ask the holders of the chosen requests (requester and provider) for their side, each
    only of those it took part in (each_own): each chosen by its entry's serial, its request id
    and holders read from the audit log; those of the portal's own actions (no exchange between
    holders) left out, the next page saying how many. At most a search page's entries (the most
    the form offers) are read, more refused (400). Each is read again and proved (entries_at):
    if one is not (its row replaced since the page, or a serial the page did not offer), nothing
    is asked and the page says TAMPERED, naming it (409). The active holders alone are asked,
    the next page naming the others (suspended, or not in the directory) as not asked."""
    officer_of(request, ROLE)
    platform = request.app[PLATFORM]
    form = await request.post()
    values = form.getall("chosen", [])
    if len(values) > SEARCH_PAGE:
        return render(request, "error.html", status=400, message="too_many_chosen")
    try:
        serials = [int(str(v)) for v in values]
    except ValueError:
        raise web.HTTPBadRequest(text="bad choice") from None
    shown = await platform.records.entries_at(serials)
    if not shown.proved:
        return render(request, "error.html", status=409, message="chosen_unproved",
                      unproved=shown)
    found = [c.entry.event for c in shown.entries]
    chosen = [e for e in found if e.kind != PORTAL_KIND]
    left_out = len(found) - len(chosen)
    if not found:
        raise web.HTTPSeeOther("/oversight")
    inactive: list[str] = []
    if chosen:
        parties: dict[str, set[str]] = {}
        for e in chosen:
            parties.setdefault(e.request_id, set()).update(
                h for h in (e.requester, e.provider) if h)
        try:
            holders = holders_to_ask([h for named in parties.values() for h in named])
        except NoHolder:
            return no_holder(request)
        active = [h for h in holders if not_asked(platform.kafka.holder_entry(h)) is None]
        inactive = [h for h in holders if h not in active]
        for named, own in each_own(active, sorted(r for r, named in parties.items()
                                                  if named.intersection(active)), parties):
            await platform.kafka.oversight.ask(named, own, OVERSIGHT_BASIS)
    told = urlencode([(LEFT_OUT, left_out)] * bool(left_out) + [(INACTIVE, h) for h in inactive])
    raise web.HTTPSeeOther(f"/oversight/holder-logs?{told}" if told else "/oversight/holder-logs")


async def holder_logs(request: web.Request) -> web.Response:
    officer_of(request, ROLE)
    platform = request.app[PLATFORM]
    return render(request, "holder_logs.html", requests=await platform.kafka.oversight.every(),
                  left_out=_left_out(request),
                  inactive={h: platform.kafka.holder_entry(h)
                            for h in request.query.getall(INACTIVE, [])})


def _left_out(request: web.Request) -> int:
    """How many chosen entries the request asked just before left out (the portal's own
    actions): 0 if the page's address says no number."""
    try:
        return max(int(request.query.get(LEFT_OUT, "0")), 0)
    except ValueError:
        return 0


async def integrity(request: web.Request) -> web.Response:
    officer_of(request, ROLE)
    platform = request.app[PLATFORM]
    return render(request, "integrity.html", heads=await platform.records.heads(),
                  anchor=await platform.kafka.anchor.check(platform.records.against))
