"""The web layer shared by every page: templates (autoescaped), sessions in a cookie, CSRF on
every form, security headers, and who may see what."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from audit.store import NoTime, Query, time_range
from cards import ca
from cards.login import UNCHECKABLE
from portal.context import PLATFORM
from portal.i18n import LANGS, said, words
from portal.records import History
from portal.sessions import Officer, Resident, Session, Sessions
from renkei import quiet_http
from renkei.clock import JST

log = logging.getLogger(__name__)
COOKIE = "renkei_session"
# posted by the card reader from its own site: no session's cookie comes with it (SameSite=Lax),
# none is made or set (the challenge it names finds the login's session: portal.login.returned)
READER_RETURN = "/login/card"
LOGIN_START = "/login/start"  # a card login's start, its form's realm whose login it is
# over HTTPS, a browser told to come back over HTTPS alone for a year, the site's subdomains too
HSTS = f"max-age={365 * 24 * 3600}; includeSubDomains"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True, undefined=jinja2.StrictUndefined)


def local_time(moment: datetime) -> str:
    return moment.astimezone(JST).strftime("%Y-%m-%d %H:%M:%S")


def logged_time(at: str) -> str:
    """A holder's access-log entry's time (ISO text in UTC, without its offset from an old
    version) as the page's other times are, in JST; text that is no time, as it is."""
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return at
    return local_time(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


TEMPLATES.filters["jst"] = local_time
TEMPLATES.filters["logged_time"] = logged_time


@dataclass(frozen=True)
class Site:
    """Where the portal is, and where the card reader is (the user's local client)."""

    origin: str
    reader: str
    secure_cookies: bool = False

    @property
    def cookie(self) -> str:
        """The session cookie's name: with Secure cookies, `__Host-` first, which a browser
        takes only from this host over HTTPS (no sibling subdomain's page nor a plain-HTTP answer
        plants one)."""
        return f"__Host-{COOKIE}" if self.secure_cookies else COOKIE


SITE = web.AppKey("site", Site)
SESSIONS = web.AppKey("sessions", Sessions)
SESSION = web.RequestKey("session", Session)
# the role of the officer signed in to the session that ended at this request (a new one made in
# its place), if one was: whose login its form goes back to
ENDED_ROLE = web.RequestKey("ended_role", str)
OFFICERS = ("counter", "oversight")  # the officers' roles, each side's pages under /<role>
# the officers' side of a card login's realm (a counter visitor's login is at the counter's desk)
REALM_SIDES = {**{role: role for role in OFFICERS}, "present": "counter"}


def session_of(request: web.Request) -> Session:
    return request[SESSION]


def render(request: web.Request, template: str, status: int = 200, **context: Any
           ) -> web.Response:
    return _page(_rendering(request, template, context)(), status)


async def render_apart(request: web.Request, template: str, **context: Any) -> web.Response:
    """`render` on a thread: a page long enough to hold up the others while the event loop
    rendered it (a visitor's whole history, printed at the counter)."""
    return _page(await asyncio.to_thread(_rendering(request, template, context)))


def _rendering(request: web.Request, template: str, context: dict[str, Any]
               ) -> Callable[[], str]:
    """The template's rendering with the page's context, taken now (the session's notice
    shown once); its language link goes back to `here` if the context names it (a page a GET
    shows, for one answering a form or a card's return), else to the page as asked again."""
    session = session_of(request)
    notice, session.notice = session.notice, None
    if "here" not in context:
        context["here"] = _asked_again(request)
    return partial(TEMPLATES.get_template(template).render,
                   w=words(session.lang), said=said(session.lang), lang=session.lang,
                   session=session, csrf=session.csrf, link_token=link_token(session),
                   notice=notice, path=request.path,
                   name=request.app[PLATFORM].kafka.holder_name, **context)


def _asked_again(request: web.Request) -> str:
    """The page as asked for, if a GET asks for it; else its path's page if it has one, else
    the home page (a form's answer at a path no GET shows)."""
    if request.method == "GET":
        return request.path_qs
    resource = request.match_info.route.resource
    shown = resource is not None and any(route.method == "GET" for route in resource)
    return request.path if shown else "/"


def no_holder(request: web.Request) -> web.Response:
    """The page for a request for holder-side logs that names no holder: none was sent."""
    return render(request, "error.html", status=400, message="no_holder")


def _page(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status)


def is_page(request: web.Request) -> bool:
    """Whether the request is for one of the portal's pages: not a static file, not a path
    that has no page, not the card reader's return (none needs a session, nor makes one)."""
    match = request.match_info
    return (match.http_exception is None and request.path != READER_RETURN
            and not isinstance(match.route.resource, web.StaticResource))


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Attach the session (a new one if none, expired, or signed in with a card since revoked or
    whose revocation cannot be checked now; at the counter, such a visitor's card ends the
    visitor's part alone), saying which, with the role of the officer signed in to the one that
    ended, if any; set the cookie on the way out."""
    if not is_page(request):
        return await handler(request)
    store = request.app[SESSIONS]
    sid = sent(request)
    session = store.get(sid)
    # the session's language; why its card ends it, if it does; its officer's role, if any
    lang, ended, role = LANGS[0], None, None
    if session is not None:
        ended = (_revocation(request, ca.JPKI, session.resident)
                 or _revocation(request, ca.OFFICERS, session.officer))
        if ended:
            store.end(session)
            lang, role, session = session.lang, session.role, None  # told in its language
    if session is None:
        told = store.ended(sid)  # a session ended by time or pushed out; an unknown one, nothing
        session = store.new(told.lang if told else lang)
        if ended:
            session.notice = "session_crl" if ended in UNCHECKABLE else "session_revoked"
        elif told:
            session.notice, role = told.notice, told.role
        if role is not None:
            request[ENDED_ROLE] = role
    elif present := _revocation(request, ca.JPKI, session.present):
        session.present = None  # the visitor's part ends; the staff member's goes on
        session.notice = "present_crl" if present in UNCHECKABLE else "present_revoked"
    request[SESSION] = session
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
        _cookie(request, response)
        raise
    _cookie(request, response)
    return response


def _revocation(request: web.Request, authority: str, card: Resident | Officer | None
                ) -> str | None:
    """Why a card signed in with (a resident's, an officer's or a counter visitor's) may no
    longer be (cards.login.Verifier.revocation), if it may not: what it signed in ends with it."""
    if card is None:
        return None
    return request.app[PLATFORM].verifier.revocation(authority, int(card.serial, 16))


def sent(request: web.Request) -> str | None:
    """The session id the request's cookie names, if any."""
    return request.cookies.get(request.app[SITE].cookie)


def _begun_here(request: web.Request) -> bool:
    """Whether the request's session is not the one its cookie names (none, or one ended):
    begun, or renewed, in this request."""
    return sent(request) != session_of(request).sid


def _cookie(request: web.Request, response: web.StreamResponse) -> None:
    if _begun_here(request):
        site = request.app[SITE]
        response.set_cookie(site.cookie, session_of(request).sid, httponly=True, samesite="Lax",
                            path="/", secure=site.secure_cookies)


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every POST carries the session's CSRF token in its form; one sent from a session that
    has ended since (its token that session's), or with no cookie at all, goes to its side's
    login page (its officer's role's; else, a session the portal forgot, nobody was signed in
    to, or none, the side it was sent from: the counter's, the oversight console's, else a
    resident's), which says why it ended if it was logged out, else that the form was not
    taken; one of a live session with another token (a page opened before a login or a
    log-out) is refused (403) by a page saying it was out of date.
    Each is logged, in one line (_refused_form). A body that is no form is refused, 400
    (quiet_http.form): every page's form is read here first, the handlers given it as read."""
    if request.method == "POST" and is_page(request):
        form = await quiet_http.form(request)
        session = session_of(request)
        if not secrets.compare_digest(str(form.get("csrf", "")).encode(), session.csrf.encode()):
            if _begun_here(request):  # no live session sent it: one ended, or none
                session.notice = session.notice or "form_expired"
                role = request.get(ENDED_ROLE)
                _refused_form(request, "not taken, its session ended" if sent(request)
                              else "not taken, sent with no session", role,
                              logging.INFO)  # an idle resident's, every day: no alarm
                raise web.HTTPSeeOther(login_page(role or side_of(request, form)))
            _refused_form(request, "refused, its CSRF token not its session's", session.role,
                          logging.WARNING)
            return render(request, "error.html", status=403, message="form_stale")
    return await handler(request)


def _refused_form(request: web.Request, why: str, role: str | None, level: int) -> None:
    """Log a form whose CSRF token is not its session's (a forged one's only trace) in one line:
    its path (a route's, one line), why, its session's officer's role if any; never the token
    sent nor the session's id, nor who it is."""
    log.log(level, "a form to %s %s (officer's role: %s)", request.path, why, role or "none")


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _secure(request, exc)
        raise
    _secure(request, response)
    return response


def _secure(request: web.Request, response: web.StreamResponse) -> None:
    """The headers every answer carries, and no-store on all but the static files."""
    _guarded(request.app[SITE], response)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


def _guarded(site: Site, response: web.StreamResponse) -> None:
    """The headers every answer carries; over HTTPS (Secure cookies), HSTS too: a browser
    ignores it over plain HTTP (the demo)."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"form-action 'self' {site.reader}; frame-ancestors 'none'; base-uri 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if site.secure_cookies:
        response.headers["Strict-Transport-Security"] = HSTS


def refused(site: Site, status: int, said: str) -> web.Response:
    """The answer to a request aiohttp refuses before the app sees it (renkei.quiet_http: a
    session cookie over 8190 bytes, …): no page, which needs a session and its language, but
    its plain text, not stored, with the headers every answer carries."""
    response = quiet_http.plain(status, said)
    _guarded(site, response)
    return response


def side_of(request: web.Request, form: Mapping[str, object]) -> str | None:
    """The officers' side a form was sent from, if any: its path's (`/counter…`,
    `/oversight…`); a card login's start, its realm's (its login page's)."""
    if request.path == LOGIN_START:
        return REALM_SIDES.get(str(form.get("realm", "")))
    first = request.path.split("/")[1]
    return first if first in OFFICERS else None


def login_page(role: str | None = None) -> str:
    """The login page of an officer's role, else a resident's."""
    return "/login" if role is None else f"/login?{urlencode({'as': role})}"


def resident_of(request: web.Request) -> Resident:
    found = session_of(request).resident
    if found is None:
        raise web.HTTPSeeOther(login_page())
    return found


def officer_of(request: web.Request, role: str) -> Officer:
    found = session_of(request).officer
    if found is None:
        raise web.HTTPSeeOther(login_page(role))
    if found.role != role:
        raise web.HTTPForbidden(text="this card cannot use this page")
    return found


async def history_of(request: web.Request, id_codes: Sequence[str], where: Query,
                     listing: bool = True) -> History:
    """The page of the person's history the request asks for (from its cursor `after` on), the
    holders of their whole history listed if `listing`; 400 if that is no cursor."""
    try:
        return await request.app[PLATFORM].records.history(
            id_codes, where, request.query.get("after") or None, listing=listing)
    except ValueError:
        raise web.HTTPBadRequest(text="bad cursor") from None


def older(shown: History, page: str, **kept: str) -> str | None:
    """The link to the entries older than those `shown`: `page`, its filter `kept` (None if
    there are none)."""
    return None if shown.older is None else f"{page}?{urlencode({**kept, 'after': shown.older})}"


K = TypeVar("K", bound=Hashable)


@contextmanager
def under_way(counts: Counter[K], key: K) -> Iterator[None]:
    """`key` counted under way in `counts` (this portal's, in memory) while it is: how many of
    its kind are, this one too, is `counts[key]` meanwhile."""
    counts[key] += 1
    try:
        yield
    finally:
        counts[key] -= 1
        if not counts[key]:
            del counts[key]


class BadDay(ValueError):
    """A date field that is no date, or is the first or last day there is, or a range of two
    that ends before it begins (`said`: why, in the page's words, a key of WORDS)."""

    def __init__(self, said: str) -> None:
        super().__init__(said)
        self.said = said


def day_asked(text: str | None, end: bool = False) -> datetime | None:
    """A date field (YYYY-MM-DD, Japan time) as a UTC moment: its start, or the next day's;
    BadDay if it is no date, or one no moment of which is a UTC one (the first or last day)."""
    if not text:
        return None
    try:
        start = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=JST)
    except ValueError:
        raise BadDay("date_malformed") from None
    try:
        return (start + timedelta(days=1) if end else start).astimezone(UTC)
    except OverflowError:
        raise BadDay("date_out_of_range") from None


def range_asked(since: str, until: str) -> tuple[datetime | None, datetime | None]:
    """The date fields `since` to `until`, both days in it (each read by day_asked), as a UTC
    range [since, until); BadDay if `until` is a day before `since`: a range that holds no
    time, not an empty page as if nothing had happened."""
    try:
        return time_range(day_asked(since), day_asked(until, True))
    except NoTime:
        raise BadDay("range_reversed") from None


def link_token(session: Session) -> str:
    """What the language link carries to change its session (a GET another site's link could
    send): a hash of the session's CSRF token, which so is in no address (history, logs)."""
    return hashlib.sha256(f"link:{session.csrf}".encode()).hexdigest()[:32]


async def switch_language(request: web.Request) -> web.Response:
    """Switch the session's language if the link is its page's (its token), or the session was
    made by this request (nothing in it to keep); back to the page the link names."""
    lang, session = request.match_info["lang"], session_of(request)
    own = secrets.compare_digest(request.query.get("token", "").encode(),
                                 link_token(session).encode())
    if lang in LANGS and (own or _begun_here(request)):
        session.lang = lang
    raise web.HTTPSeeOther(same_site(request.query.get("next", "/")))


def same_site(target: str) -> str:
    """`target` if it is a path on this site, else the home page: no scheme, no host, and nothing
    a browser reads as one (`//host`, `/\\host`, a tab or newline it drops on the way), nor one
    that is no address at all (`//[x`, urlsplit's ValueError)."""
    try:
        parts = urlsplit(target)
    except ValueError:
        return "/"
    local = (target.startswith("/") and not target.startswith("//") and not parts.scheme
             and not parts.netloc and target.isprintable() and "\\" not in target)
    return target if local else "/"
