"""renkei.quiet_http, the server of the communication server, My Portal and the card reader: how
a request its parser refuses is logged."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from renkei import quiet_http
from renkei.quiet_http import QuietRunner

SECRET = b"s3cr3t-t0ken-Zq81"
TLS_HELLO = bytes.fromhex("160301020001") + b"\x00\x01\xfc\x03\x03" + SECRET + b"\x00" * 40
PROBE = b"SSH-2.0-" + SECRET + b"\r\n"  # a port scan's
HTTPS_SENT = "a TLS hello, HTTPS sent to this plain-HTTP port (a proxy or client misconfigured?)"


def said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What quiet_http logged (the suite's clients, running on in the session's event loop, may
    log of their own meanwhile: a broker slow to answer them, say)."""
    return [record for record in caplog.records if record.name == quiet_http.__name__]


async def answers(runner: QuietRunner, *sent: bytes) -> list[bytes]:
    """What the server `runner` sets up answers each of `sent`, on a connection of its own."""
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        answered = []
        for request in sent:
            reader, writer = await asyncio.open_connection(*runner.addresses[0][:2])
            writer.write(request)
            answered.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
        return answered
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("sent", "level"), [
    (TLS_HELLO, logging.WARNING),  # https:// to the plain port
    (PROBE, logging.INFO),
    (b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization " + SECRET + b"\r\n\r\n", logging.WARNING),
    (b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + SECRET + b"x" * 9000 + b"\r\n\r\n",
     logging.WARNING)])
async def test_a_request_that_is_not_http_is_logged_at_info_one_refused_at_warning(
        caplog: pytest.LogCaptureFixture, sent: bytes, level: int) -> None:
    """Each request that was not HTTP at all (a port scan) was a WARNING in each server's log,
    beside those of a client's HTTP request refused (a header too long, or malformed): an INFO,
    the servers logging at WARNING, but for a TLS hello (HTTPS sent to the plain port); what was
    sent quoted in none."""
    caplog.set_level(logging.DEBUG, quiet_http.__name__)
    (answer,) = await answers(QuietRunner(web.Application(), quiet_http.plain, access_log=None),
                              sent)
    assert answer.startswith(b"HTTP/1.1 400 ") and SECRET not in answer, answer
    (logged,) = said(caplog)
    assert logged.levelno == level and logged.getMessage().startswith(
        "refused a request from 127.0.0.1: "), logged.getMessage()
    assert SECRET.decode() not in caplog.text


async def test_a_tls_hello_is_a_warning_naming_its_peer_once_in_ten_minutes_a_probe_an_info(
        caplog: pytest.LogCaptureFixture) -> None:
    """A TLS hello on a plain-HTTP port (a proxy or client misconfigured to send HTTPS to it,
    each of its requests lost) was an INFO as a port scan's probe is, never shown by the servers
    logging at WARNING: it is a WARNING naming its peer, at most once in ten minutes, saying how
    many came since the last, an INFO in between; a port scan's probe stays an INFO."""
    caplog.set_level(logging.DEBUG, quiet_http.__name__)
    hellos_at = iter([1000.0, 1001.0, 1599.0, 1600.0])  # seconds on the elapsed clock
    runner = QuietRunner(web.Application(), quiet_http.plain, clock=lambda: next(hellos_at),
                         access_log=None)
    sent = await answers(runner, TLS_HELLO, TLS_HELLO, PROBE, TLS_HELLO, TLS_HELLO)
    assert all(answer.startswith(b"HTTP/1.1 400 ") for answer in sent), sent
    info = (logging.INFO, f"refused a request from 127.0.0.1: {HTTPS_SENT}")
    assert [(r.levelno, r.getMessage()) for r in said(caplog)] == [
        (logging.WARNING, f"refused a request from 127.0.0.1: {HTTPS_SENT}: a warning at most "
         "once in 600 s, those in between at INFO"),
        info,
        (logging.INFO, "refused a request from 127.0.0.1: BadHttpMethod: not a request this "
         "server reads"),
        info,
        (logging.WARNING, f"refused a request from 127.0.0.1: {HTTPS_SENT}: a warning at most "
         "once in 600 s, 2 more since the last one (at INFO)")]
