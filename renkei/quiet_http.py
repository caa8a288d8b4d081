"""aiohttp's server for Renkei's own (the communication server, My Portal, the card reader): a
request its parser refuses before any app sees it (a request line or header over its
max_line_size or max_field_size, a request that is not HTTP: 400) is answered and logged in
words that quote none of it, where aiohttp's own quote up to 100 bytes of the line or header
(an Authorization token, a session cookie), in HTTP/1.1 where aiohttp's went out in its
placeholder request's HTTP/1.0. A request that is not HTTP at all (a port scan's probe) is logged
at INFO, nobody's page lost; a client's HTTP request refused (a header too long or malformed) at
WARNING; a TLS hello, a proxy or client sending HTTPS to the plain port (misconfigured: every
request it sends is lost), at WARNING at most once in HTTPS_SAID_EVERY, with how many came since
it was last said, at INFO in between."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http import HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong
from aiohttp.web_protocol import ERROR
from multidict import MultiDictProxy

from renkei import event_loop
from renkei.clock import elapsed_seconds
from renkei.service_loop import stop_on_signals

log = logging.getLogger(__name__)
# the server's answer to a request it cannot serve: its status and what is said of it
Answer = Callable[[int, str], web.StreamResponse]
# the request a refusal answers, aiohttp's placeholder (its version HTTP/1.0) in HTTP/1.1: the
# highest version this server conforms to, which RFC 9110 (6.2) has it answer any HTTP/1.x
# client in, as nginx does; the refused request's own is not kept by aiohttp's parser
REFUSED = ERROR._replace(version=HttpVersion11)
# aiohttp's words for a request beginning as a TLS hello does (both its parsers'), and ours
TLS_HELLO = "Received HTTPS traffic on an HTTP port"
HTTPS_SENT = "a TLS hello, HTTPS sent to this plain-HTTP port (a proxy or client misconfigured?)"
HTTPS_SAID_EVERY = 600.0  # seconds on the elapsed clock: a TLS hello a WARNING at most once in it


def refused(exc: BadHttpMessage) -> str:
    """What aiohttp's parser refused, quoting none of it."""
    if isinstance(exc, LineTooLong):
        return f"a request line or header over {exc.args[1]} bytes"
    if exc.message == TLS_HELLO:
        return HTTPS_SENT
    return f"{type(exc).__name__}: not a request this server reads"


@dataclass
class HttpsSent:
    """The TLS hellos come to a server's plain-HTTP port, told once in HTTPS_SAID_EVERY on the
    `clock` (a proxy or client misconfigured sends one with each request it makes)."""

    clock: Callable[[], float] = elapsed_seconds
    _said: float | None = None  # when one was last a WARNING
    _since: int = 0  # the hellos come since, each an INFO

    def said(self) -> tuple[int, str]:
        """The level to log a TLS hello come now at, and what is said after HTTPS_SENT: a
        WARNING with how many came since the last (the first, that those in between are INFOs),
        if HTTPS_SAID_EVERY has passed since it; else an INFO, counted."""
        now = self.clock()
        if self._said is not None and now - self._said < HTTPS_SAID_EVERY:
            self._since += 1
            return logging.INFO, ""
        first, since, self._said, self._since = self._said is None, self._since, now, 0
        return logging.WARNING, f": a warning at most once in {HTTPS_SAID_EVERY:.0f} s, " + (
            "those in between at INFO" if first else f"{since} more since the last one (at INFO)")


def plain(status: int, said: str) -> web.Response:
    """aiohttp's own answer's plain text (the status, then what is said of it), neither sniffed
    nor stored."""
    response = web.Response(status=status, text=f"{status} {HTTPStatus(status).phrase}\n\n{said}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response


async def form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The request's form (aiohttp's, read once); a body aiohttp cannot read as one (not in its
    charset or the charset unknown, a multipart without its boundary or parts) refused, 400, and
    logged in words that quote none of it, where aiohttp's error went out as a 500 with its
    traceback logged."""
    try:
        return await request.post()
    except (ValueError, LookupError) as exc:  # UnicodeDecodeError is a ValueError
        log.warning("refused a form to %s from %s: %s, not a form this server reads",
                    request.path, request.remote, type(exc).__name__)
        raise web.HTTPBadRequest(text="the form could not be read") from None


class _QuietConnection(web.RequestHandler):
    """aiohttp's connection, whose refusal of a request is said and logged in `refused`'s words
    (a TLS hello as its server's `https_sent` says), and answered as its server's `answer`
    answers."""

    __slots__ = ("_answer", "_https_sent")

    def __init__(self, manager: web.Server, answer: Answer, https_sent: HttpsSent,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._answer = answer
        self._https_sent = https_sent

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, BadHttpMessage):
            message = refused(exc)
            level, said = logging.INFO if isinstance(exc, BadStatusLine) else logging.WARNING, ""
            if message == HTTPS_SENT:
                level, said = self._https_sent.said()
            log.log(level, "refused a request from %s: %s%s", request.remote, message, said)
        else:
            super().handle_error(request, status, exc, message)  # logged, as aiohttp does
        response = self._answer(status, message or HTTPStatus(status).description)
        response.force_close()  # the rest of the connection cannot be read
        return response


class _QuietServer(web.Server):
    """aiohttp's server, whose connections are _QuietConnection and whose refusals' requests
    are REFUSED; the TLS hellos come to any of them told by one HttpsSent."""

    def __init__(self, made: web.Server, answer: Answer, clock: Callable[[], float]) -> None:
        super().__init__(made.request_handler, request_factory=self._request,
                         handler_cancellation=made.handler_cancellation, **made._kwargs)
        self._made = made.request_factory
        self._answer = answer
        self._https_sent = HttpsSent(clock)

    def _request(self, message: RawRequestMessage, *args: Any) -> web.BaseRequest:
        """The app's request for `message`, REFUSED for aiohttp's placeholder."""
        return self._made(REFUSED if message is ERROR else message, *args)

    def __call__(self) -> web.RequestHandler:
        return _QuietConnection(self, self._answer, self._https_sent, loop=self._loop,
                                **self._kwargs)


class QuietRunner(web.AppRunner):
    """The app's runner, on a _QuietServer answering with `answer`, its TLS hellos told by the
    `clock`: aiohttp has no public hook for a request its parser refuses (no middleware sees it;
    handler_args only move the limits), its runner's server is where its connections are
    made."""

    def __init__(self, app: web.Application, answer: Answer,
                 clock: Callable[[], float] = elapsed_seconds, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._answer = answer
        self._clock = clock

    async def _make_server(self) -> web.Server:
        return _QuietServer(await super()._make_server(), self._answer, self._clock)


def run(app: web.Application, sock: socket.socket, answer: Answer, up: Callable[[], None],
        **kwargs: Any) -> None:
    """Serve `app` on `sock` as web.run_app would, on a QuietRunner, until SIGTERM or SIGINT
    (Ctrl-C), or the run that started it has gone; `up()` once it serves."""
    event_loop.run(_serve(app, sock, answer, up, **kwargs))


async def _serve(app: web.Application, sock: socket.socket, answer: Answer,
                 up: Callable[[], None], **kwargs: Any) -> None:
    stop = stop_on_signals()
    runner = QuietRunner(app, answer, **kwargs)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        up()
        await stop.wait()
    finally:
        await runner.cleanup()
