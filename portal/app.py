"""`renkei portal`: My Portal, the counter and the oversight console in one aiohttp app."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from audit.heads import Signer
from audit.store import AuditStore
from audit.store import default_path as audit_path
from cards.login import Verifier
from portal import counter, login, numbering, oversight, resident
from portal.context import PLATFORM, Platform
from portal.kafka import Platform as KafkaSide
from portal.records import CONNECTION_CACHE_KIB, Records, Unavailable
from portal.sessions import Sessions
from portal.web import (
    LOGIN_START,
    READER_RETURN,
    SESSIONS,
    SITE,
    Handler,
    Site,
    csrf,
    headers,
    render,
    sessions,
    switch_language,
)

log = logging.getLogger(__name__)


async def home(request: web.Request) -> web.Response:
    return render(request, "home.html")


@web.middleware
async def unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A page that reads the access log while its store cannot be opened says so, to be tried
    again later."""
    try:
        return await handler(request)
    except Unavailable:
        return render(request, "error.html", status=503, message="history_unavailable")


def build(site: Site, session_store: Sessions) -> web.Application:
    app = web.Application(middlewares=[headers, sessions, csrf, unavailable])
    app[SITE] = site
    app[SESSIONS] = session_store
    app[numbering.UNDER_WAY] = Counter()
    app[resident.APPLYING] = Counter()
    app.add_routes([
        web.get("/", home),
        web.get("/lang/{lang}", switch_language),
        web.get("/login", login.page),
        web.post(LOGIN_START, login.start),
        web.post(READER_RETURN, login.returned),
        web.get(login.SIGNED, login.card),
        web.post("/logout", login.logout),
        web.get("/history", resident.history),
        web.get("/history/{serial}", resident.entry),
        web.post("/details", resident.apply),
        web.get("/details", resident.details),
        web.get("/number", resident.number_form),
        web.post("/number", resident.number_change),
        web.get("/counter", counter.desk),
        web.post("/counter/print", counter.print_history),
        web.post("/counter/number", counter.number_change),
        web.post("/counter/finish", counter.finish),
        web.get("/oversight", oversight.search),
        web.get("/oversight/alerts", oversight.alerts),
        web.get("/oversight/actions", oversight.actions),
        web.post("/oversight/holder-logs", oversight.ask_holder_logs),
        web.get("/oversight/holder-logs", oversight.holder_logs),
        web.get("/oversight/integrity", oversight.integrity),
        web.static("/static", Path(__file__).with_name("static")),
    ])
    app.cleanup_ctx.append(_platform)
    return app


def _audit_store() -> AuditStore:
    """The audit store, read-only: its heads checked with the head key's public half alone
    (NoKey where there is none): the portal signs none, and cannot read the key that does; its
    page cache the connection's share of the portal's."""
    return AuditStore(audit_path(), Signer.public(), cache_kib=CONNECTION_CACHE_KIB)


async def _platform(app: web.Application) -> AsyncIterator[None]:
    """The audit store (the pages read it on up to READERS connections, the integrity check on
    one of its own), each opened when a page first reads on it (a login and a change of number
    need none: the portal starts before the audit consumer made it), and the Kafka side for the
    app's life. It reads no key of the platform's codes: the registry side tells a card
    holder's ID codes (portal.context)."""
    records = Records(_audit_store, checks=_audit_store)
    kafka = KafkaSide.connect()
    try:  # a start that fails (a refused log-in) closes what was opened too
        await kafka.start()
        app[PLATFORM] = Platform(records, Verifier(), kafka)
        yield
    finally:
        await kafka.stop()
        await records.close()
