"""The card reader with its client software (JPKI利用者ソフト, simulated) on the user's machine.

A site that wants a card login sends the browser here with its origin, a challenge and where to
return. The reader signs only for origins it was told to trust; the person picks the card on the
reader and types the PIN into the reader's own page (the site never sees the PIN); the card
checks the PIN and signs; the reader posts the signature and the certificate back to the site.
The reader answers only requests addressed to it by its loopback name (not a page's own name
resolved to loopback: DNS rebinding), and takes a PIN only from its own page.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography.hazmat.primitives.serialization import Encoding

from cards import ca
from cards.card import BadPin, Card, CardLocked, NotAPin, cards, find
from cards.login import message
from renkei import quiet_http

COOKIE = "reader_csrf"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
KINDS = {ca.JPKI: "resident", ca.OFFICERS: "officer"}
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True, undefined=jinja2.StrictUndefined)


@dataclass(frozen=True)
class Reader:
    folder: Path | None
    trusted: frozenset[str]


READER = web.AppKey("reader", Reader)


@dataclass(frozen=True)
class Ask:
    """What the site asks for: which CA's card, a challenge for its origin, where to return."""

    origin: str
    authority: str
    challenge: str
    back: str

    @classmethod
    def of(cls, data: Any, trusted: frozenset[str]) -> Ask:
        ask = cls(str(data.get("origin", "")), str(data.get("authority", "")),
                  str(data.get("challenge", "")), str(data.get("return", "")))
        try:
            parts = urlsplit(ask.back)
        except ValueError:  # no address at all (`http://[x`)
            raise web.HTTPBadRequest(text="bad return address") from None
        if ask.origin not in trusted or f"{parts.scheme}://{parts.netloc}" != ask.origin:
            raise web.HTTPForbidden(text="this reader does not sign for that site")
        if ask.authority not in KINDS:
            raise web.HTTPBadRequest(text="unknown kind of card")
        try:
            bytes.fromhex(ask.challenge)
        except ValueError:
            raise web.HTTPBadRequest(text="bad challenge") from None
        return ask


def _page(name: str, status: int = 200, **context: Any) -> web.Response:
    response = web.Response(text=TEMPLATES.get_template(name).render(**context),
                            content_type="text/html", status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "form-action *")
    return response


def _choice(reader: Reader, ask: Ask) -> list[Card]:
    return [c for c in cards(reader.folder) if c.face.kind == KINDS[ask.authority]]


def _form(reader: Reader, ask: Ask, token: str, error: str | None = None,
          chosen: str | None = None, status: int = 200) -> web.Response:
    response = _page("reader.html", status, ask=ask, cards=_choice(reader, ask), token=token,
                     error=error, chosen=chosen)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
    return response


def _own_hosts(request: web.Request) -> frozenset[str]:
    """The Host values that name this reader: a loopback name with the port it was reached on."""
    transport = request.transport
    address = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(address, tuple):
        return frozenset()
    return frozenset(f"{name}:{address[1]}" for name in LOOPBACK_NAMES)


def _from_own_page(request: web.Request) -> bool:
    """Whether the browser says this request comes from one of the reader's own pages."""
    return (request.headers.get("Origin") == f"http://{request.host}"
            or request.headers.get("Sec-Fetch-Site") == "same-origin")


@web.middleware
async def _own_address_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (403) a request under another Host, and a POST from another page than the reader's."""
    if request.host.lower() not in _own_hosts(request):
        raise web.HTTPForbidden(text="this reader answers only at its own loopback address")
    if request.method not in ("GET", "HEAD") and not _from_own_page(request):
        raise web.HTTPForbidden(text="the form did not come from this reader")
    return await handler(request)


async def sign_form(request: web.Request) -> web.Response:
    reader = request.app[READER]
    ask = Ask.of(request.query, reader.trusted)
    return _form(reader, ask, request.cookies.get(COOKIE) or secrets.token_urlsafe(24))


async def sign(request: web.Request) -> web.Response:
    reader = request.app[READER]
    form = await quiet_http.form(request)
    ask = Ask.of(form, reader.trusted)
    token = request.cookies.get(COOKIE, "")
    if not token or not secrets.compare_digest(token.encode(), str(form.get("csrf", "")).encode()):
        raise web.HTTPForbidden(text="the form did not come from this reader")
    serial = str(form.get("card", ""))
    try:
        card = find(serial, reader.folder)
        signature = await asyncio.to_thread(  # scrypt, and the card's lock while another try
            card.sign, message(ask.origin, bytes.fromhex(ask.challenge)), str(form.get("pin", "")))
    except LookupError:
        return _form(reader, ask, token, "no-card", status=400)
    except NotAPin:  # not a try: the card counted none
        return _form(reader, ask, token, "not-a-pin", serial, status=400)
    except BadPin as exc:
        return _form(reader, ask, token, f"bad-pin:{exc.tries_left}", serial, status=403)
    except CardLocked:
        return _form(reader, ask, token, "locked", serial, status=403)
    return _page("reader_done.html", ask=ask, certificate=card.certificate.public_bytes(
        Encoding.PEM).decode(), signature=signature.hex())


def app(folder: Path | None, trusted: list[str]) -> web.Application:
    application = web.Application(middlewares=[_own_address_only])
    application[READER] = Reader(folder, frozenset(trusted))
    application.add_routes([web.get("/sign", sign_form), web.post("/sign", sign)])
    return application
