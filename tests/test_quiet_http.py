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


@pytest.mark.parametrize(("sent", "level"), [
    (TLS_HELLO, logging.INFO),  # https:// to the plain port
    (b"SSH-2.0-" + SECRET + b"\r\n", logging.INFO),  # a port scan's probe
    (b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization " + SECRET + b"\r\n\r\n", logging.WARNING),
    (b"GET / HTTP/1.1\r\nHost: x\r\nCookie: " + SECRET + b"x" * 9000 + b"\r\n\r\n",
     logging.WARNING)])
async def test_a_request_that_is_not_http_is_logged_at_info_one_refused_at_warning(
        caplog: pytest.LogCaptureFixture, sent: bytes, level: int) -> None:
    """Each request that was not HTTP at all (a port scan, a TLS hello on the plain port) was a
    WARNING in each server's log, beside those of a client's HTTP request refused (a header too
    long, or malformed): an INFO, the servers logging at WARNING; what was sent quoted in
    neither."""
    caplog.set_level(logging.DEBUG, quiet_http.__name__)
    runner = QuietRunner(web.Application(), quiet_http.plain, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        reader, writer = await asyncio.open_connection(*runner.addresses[0][:2])
        writer.write(sent)
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await runner.cleanup()
    assert answer.startswith(b"HTTP/1.1 400 ") and SECRET not in answer, answer
    (logged,) = caplog.records
    assert logged.levelno == level and logged.getMessage().startswith(
        "refused a request from 127.0.0.1: "), logged.getMessage()
    assert SECRET.decode() not in caplog.text
