"""The card reader with its client software (JPKI利用者ソフト, simulated) on the user's machine.

A site that wants a card login sends the browser here with its origin, a challenge and where to
return. The reader signs only for origins it was told to trust; the person picks the card on the
reader and types the PIN into the reader's own page (the site never sees the PIN); the card
checks the PIN and signs; the reader posts the signature and the certificate back to the site.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from cards import ca
from cards.card import BadPin, Card, CardLocked, cards, find
from cards.login import message

COOKIE = "reader_csrf"
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
        parts = urlsplit(ask.back)
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


async def sign_form(request: web.Request) -> web.Response:
    reader = request.app[READER]
    ask = Ask.of(request.query, reader.trusted)
    return _form(reader, ask, request.cookies.get(COOKIE) or secrets.token_urlsafe(24))


async def sign(request: web.Request) -> web.Response:
    reader = request.app[READER]
    form = await request.post()
    ask = Ask.of(form, reader.trusted)
    token = request.cookies.get(COOKIE, "")
    if not token or not secrets.compare_digest(token, str(form.get("csrf", ""))):
        raise web.HTTPForbidden(text="the form did not come from this reader")
    serial = str(form.get("card", ""))
    try:
        card = find(serial, reader.folder)
        signature = card.sign(message(ask.origin, bytes.fromhex(ask.challenge)),
                              str(form.get("pin", "")))
    except LookupError:
        return _form(reader, ask, token, "no-card", status=400)
    except BadPin as exc:
        return _form(reader, ask, token, f"bad-pin:{exc.tries_left}", serial, status=403)
    except CardLocked:
        return _form(reader, ask, token, "locked", serial, status=403)
    return _page("reader_done.html", ask=ask, certificate=card.certificate.public_bytes(
        Encoding.PEM).decode(), signature=signature.hex())


def app(folder: Path | None, trusted: list[str]) -> web.Application:
    application = web.Application()
    application[READER] = Reader(folder, frozenset(trusted))
    application.add_routes([web.get("/sign", sign_form), web.post("/sign", sign)])
    return application
