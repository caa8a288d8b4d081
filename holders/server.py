"""The communication server (コミュニケーション・サーバー, paper §7(2)): a holder's existing system
talks plain JSON over HTTP on loopback; the server does the Renkei side with the holder library.
Every request carries the bearer token the server drew at its start and wrote, with its URL, to
the holder's private address file: loopback is open to every local user, the file only to this
one.

POST /bindings and POST /requests make a request and answer 202 {"request_id", "sent"}. A call
may carry an `Idempotency-Key` header (any text up to KEY_CHARS characters, e.g. a UUID; the IETF
draft "The Idempotency-Key HTTP Header Field"): the key is stored with the request it makes, in
the same transaction, for as long as the request is kept (RETENTION_YEARS after its answer:
the server forgets it then, as `renkei holder purge` does). The same key again, as after a dropped
connection, answers the request made then (its id; `sent` as it stands) and makes none, once
the caller is found to be staff who may act (else 403, as any call); the same key with another
request (another path or field as the server reads it, each trimmed: not other bytes, field
order or whitespace naming the same one) is 422 `idempotency_key_reused`, and while the first
call is still being made 409 `idempotency_key_in_use` with Retry-After (ask again then, as
after a 503 `service_unavailable` of a store another process holds locked: the two answers that
say so). A linkage request for a record not bound to a link code is 422 `not_bound` (bind it
first); one for no record 404."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import sqlite3
import sys
from collections.abc import Awaitable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from broker.provision import registered_holder
from holders.client import (
    STORE_RETRY,
    HolderClient,
    KeyReused,
    NotAuthorized,
    NotBound,
    NotFound,
    NotInDirectory,
    NotSentYet,
)
from holders.imports import FIELD_CHARS, storable, trimmed
from holders.store import HolderStore, Keyed, KeyInUse, default_path, own_number
from renkei import event_loop, logs, sqlite
from renkei.quiet_http import QuietRunner
from renkei.service_loop import stop_on_signals, unless_stopped
from renkei.state import held, private_dir, read_json, write_json

log = logging.getLogger(__name__)
CLIENT = web.AppKey("client", HolderClient)
TOKEN = web.AppKey("token", str)
STOP = web.AppKey("stop", asyncio.Event)  # set when the server is told to stop
_OF_THE_TEXT_BODY = ("content-type", "content-length")  # an error's headers its JSON replaces
# characters a field may hold: an id, a pattern, a data type, a purpose; the seven of a linkage
# request stay well under the message size limit (codec.MAX_BYTES)
KEY_CHARS = 255  # characters of an idempotency key
# seconds a caller may wait for an outcome (?wait=S): four answer timeouts; a caller gone
# meanwhile leaves its handler waiting (aiohttp does not cancel it), so no longer than this
MOST_WAIT = 120.0
LOG_PAGE = 10_000  # access-log entries an answer holds at most (~3 MB, a tenth of a second)
# the error codes of the two answers that say to ask again, after their Retry-After: the first
# call under an idempotency key still being made (409), the store locked by another process (503)
KEY_IN_USE, STORE_BUSY = "idempotency_key_in_use", "service_unavailable"
_ASK_AGAIN_AFTER = ("Retry-After", str(math.ceil(STORE_RETRY)))
# ... and of a store that cannot be written (its disk full): its operator frees space first
_FULL_ASK_AGAIN_AFTER = ("Retry-After", "60")


@dataclasses.dataclass(frozen=True)
class Address:
    """A running communication server as it recorded itself: its URL and its bearer token."""

    url: str
    token: str = dataclasses.field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(
        d, ensure_ascii=False))


def _error(status: int, error: str, detail: str,
           headers: Iterable[tuple[str, str]] = ()) -> web.Response:
    """An error answer: {"error": a code a program tells apart, "detail": one line}."""
    response = _json({"error": error, "detail": detail}, status)
    response.headers.extend(headers)
    return response


def _code(reason: str) -> str:
    """The error code of a status's reason ("Not Found"): `not_found`."""
    return reason.lower().replace(" ", "_")


def _asked(request: web.Request) -> str:
    """A request's method and path for the server's log, each character of the path that is
    not printable escaped (a %0A "\\n": no line of the caller's making in the log)."""
    path = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in request.path)
    return f"{request.method} {path}"


@web.middleware
async def _errors_in_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error answer in JSON, as every other answer is, in the shape of the API's own
    refusals (_error: `not_bound`, …): {"error": its status's reason (`not_found`, …), "detail":
    one line}; the handlers' and aiohttp's own alike (no such path 404, a method the path does
    not take 405, a body too large 413), with their headers, each logged (a wrong token, 401, as
    a warning), and a fault of the server's (500, logged with its traceback); a request aiohttp
    refuses before any handler, _refusal's."""
    try:
        return await handler(request)
    except web.HTTPError as exc:  # logged in one line, not its detail (an own number, perhaps)
        log.log(logging.WARNING if exc.status == web.HTTPUnauthorized.status_code else
                logging.INFO, "%s refused: %d %s", _asked(request), exc.status, _code(exc.reason))
        return _error(exc.status, _code(exc.reason), exc.text or exc.reason,
                      ((name, value) for name, value in exc.headers.items()
                       if name.lower() not in _OF_THE_TEXT_BODY))
    except Exception as exc:  # a fault of the server's: its log has the traceback
        log.exception("%s failed", _asked(request))
        return _error(500, "internal_server_error",
                      f"{type(exc).__name__}: see the communication server's log")


@web.middleware
async def _busy_store(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A store whose write lock another process (an import) held past the client's LOCK_WAIT:
    503 with Retry-After, logged as a warning, not a fault of the server's; one whose file
    cannot grow (its disk full, a quota or a file-size limit reached: sqlite.unwritable), 503
    with a later Retry-After, logged in one line naming the store, not a traceback (the call's
    transaction rolled back: nothing of it kept)."""
    try:
        return await handler(request)
    except sqlite3.OperationalError as exc:
        if sqlite.unwritable(exc):
            store = request.app[CLIENT].store.path
            log.error("%s: the holder's store %s cannot be written (%s: its disk full, or a "
                      "quota or file-size limit reached): answered 503", _asked(request), store,
                      exc)
            return _error(503, STORE_BUSY, "the holder's store cannot be written (its disk is "
                          "full): nothing of this call was kept; try again once its operator "
                          "has freed space", [_FULL_ASK_AGAIN_AFTER])
        if not sqlite.busy(exc):
            raise
        log.warning("%s: the holder's store is locked by another process (%s): answered 503",
                    _asked(request), exc)
        return _error(503, STORE_BUSY, "the holder's store is busy (another process holds its "
                      "lock): try again", [_ASK_AGAIN_AFTER])


@web.middleware
async def _bearer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (401) a request without the server's token: any local user reaches loopback. The
    scheme's name is case-insensitive (RFC 9110 §11.1), the token not."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not (hmac.compare_digest(given.encode(errors="replace"), request.app[TOKEN].encode())
            and scheme.lower() == "bearer"):
        raise web.HTTPUnauthorized(text="the holder's bearer token is required (see server.json)",
                                   headers={"WWW-Authenticate": "Bearer"})
    return await handler(request)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:  # not JSON, or not UTF-8
        raise web.HTTPBadRequest(text=f"the body is not JSON: {exc}") from exc
    except RecursionError as exc:  # arrays or objects nested past Python's recursion limit
        raise web.HTTPBadRequest(text="the body is nested too deeply") from exc
    except LookupError as exc:  # its Content-Type's charset no text codec of Python's
        raise web.HTTPBadRequest(
            text=f"the body's charset {request.charset!r} is not a text encoding") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


# the fields of a call that makes a request, as docs/holder-server.md names them (by_number, a
# binding's: true or false, false if not given)
OWN_NUMBER = "own_number"
BINDING_FIELDS = (OWN_NUMBER, "operator", "terminal")
LINKAGE_FIELDS = (OWN_NUMBER, "pattern_id", "provider", "data_type", "purpose", "operator",
                  "terminal")
BY_NUMBER = "by_number"
_JSON_KINDS = ((dict, "an object"), (list, "an array"), (bool, "true or false"),
               (int | float, "a number"))  # what a field given not as a string is, in JSON's words


def _field(body: dict[str, Any], name: str) -> str:
    """A field of text, not blank, of up to FIELD_CHARS characters, without the whitespace
    around it, as an import reads a record's (holders.imports.trimmed): an id (" staff-1" is
    staff-1), a purpose its inner text kept, an own number as the store keys it (NFKC:
    holders.store.own_number); else 400."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        given = next(word for kind, word in _JSON_KINDS if isinstance(value, kind))
        raise web.HTTPBadRequest(text=f"{name!r} must be a JSON string, not {given}")
    if value is None or not (text := trimmed(value)):  # blank says nothing (the CLI: stated)
        raise web.HTTPBadRequest(text=f"{name!r} is required")
    if len(value) > FIELD_CHARS:
        raise web.HTTPBadRequest(text=f"{name!r} is over {FIELD_CHARS} characters")
    if not storable(value):
        raise web.HTTPBadRequest(text=f"{name!r} is not UTF-8 text")
    return own_number(text) if name == OWN_NUMBER else text


def _keyed(request: web.Request, body: dict[str, Any],
           asked: tuple[str | bool, ...]) -> Keyed | None:
    """The call's idempotency key, if it gave one, and a fingerprint of its path and of the
    fields it asks with as the server reads them (trimmed, by_number false if not given; not
    the body's bytes, its fields' order or any field the server does not read), and the one of
    its path and body as given that a key stored before was made under (a retry after an
    upgrade); else 400."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not key or len(key) > KEY_CHARS:
        raise web.HTTPBadRequest(text=f"an Idempotency-Key is 1 to {KEY_CHARS} characters")
    if not storable(key):
        raise web.HTTPBadRequest(text="an Idempotency-Key is UTF-8 text")
    read = json.dumps([request.path, asked], ensure_ascii=False)
    given = json.dumps([request.path, body], sort_keys=True, ensure_ascii=False)
    return Keyed(key, hashlib.sha256(read.encode()).hexdigest(),
                 hashlib.sha256(given.encode(errors="surrogatepass")).hexdigest())


def _seconds(text: str) -> float:
    """A number of seconds to wait from a query parameter, MOST_WAIT at most; else 400."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MOST_WAIT:  # NaN too
        raise web.HTTPBadRequest(
            text=f"wait={text!r} is not a number of seconds from 0 to {MOST_WAIT:.0f}")
    return seconds


def _accepted(request_id: str) -> web.Response:
    return _json({"request_id": request_id, "sent": True}, 202)


def _kept(exc: NotSentYet) -> web.Response:
    """Accepted, but the broker cannot be reached: the request is recorded and goes once it is
    back (sending it again would make a second request)."""
    return _json({"request_id": exc.request_id, "sent": False, "detail": str(exc)}, 202)


def _flag(body: dict[str, Any], name: str) -> bool:
    """A JSON true or false, false if absent or null (an optional field not given, as a
    holder's system serializing an unset boolean sends it); else 400 (the string "false" is not
    false)."""
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise web.HTTPBadRequest(text=f"{name!r} must be true or false")
    return value


async def _made(making: Awaitable[str]) -> web.Response:
    """The answer to a call that makes a request: 202 with its id (or kept, not sent yet), else
    its error's status: the idempotency key used for a different request 422, the request under it
    still being made 409 (to be asked again), an operator or terminal that may not act 403."""
    try:
        return _accepted(await making)
    except KeyReused as exc:
        return _error(422, "idempotency_key_reused", str(exc))
    except KeyInUse as exc:
        return _error(409, KEY_IN_USE, str(exc), [_ASK_AGAIN_AFTER])
    except NotAuthorized as exc:
        raise web.HTTPForbidden(text=str(exc)) from exc
    except NotSentYet as exc:
        return _kept(exc)


async def bind(request: web.Request) -> web.Response:
    client, body = request.app[CLIENT], await _body(request)
    own_number, operator, terminal = (_field(body, name) for name in BINDING_FIELDS)
    asked = (own_number, operator, terminal, _flag(body, BY_NUMBER))
    try:
        return await _made(client.bind(*asked, _keyed(request, body, asked)))
    except NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    except NotInDirectory as exc:  # the registry's or the authority's entry, not read yet:
        log.warning("%s: %s: answered 503", _asked(request), exc)  # said once, as _busy_store
        return _error(503, "service_unavailable", f"{exc} (yet): the platform publishes its "
                      "services' entries (`renkei directory publish-services`)")


async def linkage(request: web.Request) -> web.Response:
    client, body = request.app[CLIENT], await _body(request)
    own_number, pattern_id, provider, data_type, purpose, operator, terminal = (
        _field(body, name) for name in LINKAGE_FIELDS)
    asked = (own_number, pattern_id, provider, data_type, purpose, operator, terminal)
    try:
        return await _made(client.request(*asked, _keyed(request, body, asked)))
    except NotBound as exc:
        return _error(422, "not_bound", str(exc))
    except NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc


async def outcome(request: web.Request) -> web.Response:
    """A request's outcome; `?wait=S` waits up to S seconds for it, or until the server is told
    to stop (which waits for no caller)."""
    client, wait = request.app[CLIENT], _seconds(request.query.get("wait", "0"))
    request_id = request.match_info["request_id"]
    try:
        await unless_stopped(request.app[STOP], client.outcome(request_id, within=wait))
    except NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from exc
    except TimeoutError:
        pass  # still waiting for its outcome: report it as it stands
    found = client.standing(request_id)
    return _json(dataclasses.asdict(found) if found else {})


async def investigations(request: web.Request) -> web.Response:
    """The open investigations a page at a time, as the access log is (`after`, `limit`, a full
    page's Link header): all in one answer, a holder's after moving its link-code unit (one a
    binding: 500,000 took 0.5 s of the loop to read, more to answer) held the loop and the
    server's memory for as long as it took."""
    after, most = _page_asked(request)
    page = request.app[CLIENT].store.investigations_page(after, most)
    return _paged(request, [{"serial": serial, "own_number": own, "reason": reason}
                            for serial, own, reason in page], {}, most)


def _page_asked(request: web.Request) -> tuple[int, int]:
    """The page a call asks for: the serial it starts after (`after`, 0 if not given) and how
    many rows at most (`limit`, LOG_PAGE if not given, no more); else 400."""
    return _count(request, "after", 0, sys.maxsize), _count(request, "limit", LOG_PAGE, LOG_PAGE)


def _count(request: web.Request, name: str, default: int, most: int) -> int:
    """A whole number from 0 to `most` from a query parameter, `default` if not given; else
    400."""
    text = request.query.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) > most:
        raise web.HTTPBadRequest(text=f"{name}={text!r} is not a whole number from 0 to {most}")
    return int(text)


async def access_log(request: web.Request) -> web.Response:
    """The access log (of a request id, if given) a page at a time: the entries after the serial
    `after`, up to `limit` (LOG_PAGE at most), each with its serial; a page as full as asked for
    says where the next starts in its Link header (rel="next"). The whole log in one answer held
    every entry in the server's memory (a year's: 2.6 GB) and its loop from the platform's
    queries for as long as it took."""
    after, most = _page_asked(request)
    request_id = request.query.get("request_id")
    page = request.app[CLIENT].store.access_log_page(request_id, after, most)
    return _paged(request, [{"serial": serial, **dataclasses.asdict(e)} for serial, e in page],
                  {} if request_id is None else {"request_id": request_id}, most)


def _paged(request: web.Request, page: list[dict[str, Any]], asked: dict[str, str],
           most: int) -> web.Response:
    """A page of rows, each with its serial; one as full as asked for (`most`) says where the
    next starts in its Link header (rel="next"), asked with the same `asked` parameters."""
    response = _json(page)
    if page and len(page) == most:
        query = {**asked, "after": str(page[-1]["serial"]), "limit": str(most)}
        response.headers["Link"] = f'<{request.url.with_query(query).path_qs}>; rel="next"'
    return response


def address_file(holder: str) -> Path:
    """Where a running communication server writes its URL (for the holder's own systems),
    while it runs."""
    return private_dir("holders", holder) / "server.json"


def recorded(holder: str) -> Address | None:
    """The running communication server of `holder`, as it recorded itself; None if none, or
    if the process that recorded it is gone (a server killed leaves its file: its port may be
    another local user's now)."""
    path = address_file(holder)
    if not path.exists():
        return None
    found = read_json(path)
    if not _running(found.get("pid")):
        return None
    return Address(str(found["url"]), str(found["token"]))


def _running(pid: object) -> bool:
    """Whether the process `pid` runs (a file from before pids were recorded: taken as so)."""
    if not isinstance(pid, int):
        return pid is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it runs
        pass
    return True


async def run(holder: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT: answer the platform's queries, and the holder's system; a
    second run of the same holder is refused (InUse), not let take over its server.json."""
    registered_holder(holder)
    with held(private_dir("holders", holder), f"`holder run {holder}`"):
        stop = stop_on_signals()
        store = HolderStore.of(holder)
        client = HolderClient(holder, store)
        with sqlite.faults_told(default_path(holder)):  # its stop raises what ended the inbox
            try:
                if await unless_stopped(stop, client.start()):
                    await _serve_http(client, port, stop)
            finally:
                await client.stop()
                store.close()


def _refusal(status: int, detail: str) -> web.Response:
    """A request aiohttp refuses before any handler, answered in JSON as _errors_in_json
    answers, not in aiohttp's plain text."""
    return _error(status, _code(HTTPStatus(status).phrase), detail)


async def _serve_http(client: HolderClient, port: int, stop: asyncio.Event) -> None:
    """The holder's own systems' API on loopback, until `stop` is set; its address file
    removed then."""
    token = secrets.token_urlsafe(32)
    app = web.Application(middlewares=[_errors_in_json, _bearer, _busy_store])
    app[CLIENT], app[TOKEN], app[STOP] = client, token, stop
    app.add_routes([web.post("/bindings", bind), web.post("/requests", linkage),
                    web.get("/requests/{request_id}", outcome),
                    web.get("/investigations", investigations),
                    web.get("/access-log", access_log)])
    runner = QuietRunner(app, _refusal, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = runner.addresses[0][1]
        write_json(address_file(client.holder), {"url": f"http://127.0.0.1:{bound}",
                                                 "token": token, "pid": os.getpid()},
                   private=True)
        log.warning("holder %s: communication server on http://127.0.0.1:%s", client.holder,
                    bound)
        await client.until_stopped(stop)
    finally:  # the port may be another local user's next: the holder's system is told of none
        address_file(client.holder).unlink(missing_ok=True)
        await runner.cleanup()


def main(holder: str, port: int) -> None:
    logs.for_service()
    event_loop.run(run(holder, port))
