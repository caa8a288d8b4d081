"""`renkei portal`: My Portal, the counter and the oversight console in one aiohttp app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from audit.heads import Signer
from audit.store import AuditStore
from audit.store import default_path as audit_path
from cards.login import Verifier
from portal import counter, login, oversight, resident
from portal.context import PLATFORM, Platform
from portal.kafka import Platform as KafkaSide
from portal.records import Records
from portal.sessions import Sessions
from portal.web import SESSIONS, SITE, Site, csrf, headers, render, sessions, switch_language

log = logging.getLogger(__name__)


async def home(request: web.Request) -> web.Response:
    return render(request, "home.html")


def build(site: Site, session_store: Sessions) -> web.Application:
    app = web.Application(middlewares=[headers, sessions, csrf])
    app[SITE] = site
    app[SESSIONS] = session_store
    app.add_routes([
        web.get("/", home),
        web.get("/lang/{lang}", switch_language),
        web.get("/login", login.page),
        web.post("/login/start", login.start),
        web.post("/login/card", login.card),
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
        web.post("/oversight/holder-logs", oversight.ask_holder_logs),
        web.get("/oversight/holder-logs", oversight.holder_logs),
        web.get("/oversight/integrity", oversight.integrity),
        web.static("/static", Path(__file__).with_name("static")),
    ])
    app.cleanup_ctx.append(_platform)
    return app


async def _platform(app: web.Application) -> AsyncIterator[None]:
    """Open the audit store (twice: the integrity check reads it on a connection of its own)
    and the Kafka side for the app's life. The store's heads are checked with the head key's
    public half alone (NoKey where there is none): the portal signs none, and cannot read the
    key that does. It reads no key of the platform's codes: the registry side tells a card
    holder's ID codes (portal.context)."""
    public = Signer.public()
    records = Records(AuditStore(audit_path(), public), checks=AuditStore(audit_path(), public))
    kafka = KafkaSide.connect()
    try:  # a start that fails (a refused log-in) closes what was opened too
        await kafka.start()
        app[PLATFORM] = Platform(records, Verifier(), kafka)
        yield
    finally:
        await kafka.stop()
        await records.close()
