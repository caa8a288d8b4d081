"""`renkei portal`: serve My Portal, the counter and the oversight console."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TypedDict

import click

from portal.app import build
from portal.inbox import default_path as inbox_path
from portal.sessions import IDLE, Sessions
from portal.web import Site, refused
from renkei import logs, options, quiet_http
from renkei.options import POSITIVE, listening, port_option
from renkei.state import held


class Serving(TypedDict):
    """How the portal's app is served (aiohttp's server options)."""

    access_log: None
    handler_cancellation: bool  # a visitor gone, their request's handler is cancelled


# a resident who leaves (their connection closed) cancels their page and its read of the store
SERVING = Serving(access_log=None, handler_cancellation=True)


@click.command("portal", short_help="Serve My Portal, the counter and the oversight console.")
@port_option(8080)
@click.option("--reader", default="http://127.0.0.1:8765", show_default=True,
              callback=options.origin,
              help="the card reader's origin (the user's local JPKI client)")
@click.option("--origin", default=None, callback=options.origin,
              help="the portal's public origin, if not http://127.0.0.1:PORT (e.g. behind a "
                   "TLS proxy: https://… gives Secure cookies)")
@click.option("--idle-minutes", type=POSITIVE, default=IDLE.total_seconds() / 60,
              show_default=True, help="a session ends after this long without a request")
def portal_cli(port: int, reader: str, origin: str | None, idle_minutes: float) -> None:
    """Serve My Portal, the counter and the oversight console on loopback; a second portal on
    the same state folder is refused (InUse): its sessions, card-login challenges and changes of
    number under way are one process's, kept in memory."""
    logs.for_service()
    with held(inbox_path(), "`renkei portal`"):  # in portal/, the one folder it may write in
        sock = listening(port)
        public = origin or f"http://127.0.0.1:{sock.getsockname()[1]}"
        site = Site(public, reader, secure_cookies=public.startswith("https://"))
        app = build(site, Sessions(idle=timedelta(minutes=idle_minutes)))
        quiet_http.run(app, sock, partial(refused, site),
                       lambda: click.echo(f"portal on {site.origin}"), **SERVING)
