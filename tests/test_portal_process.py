"""`renkei portal` as its own process on the real broker, as a resident's browser reaches it."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from portal.web import COOKIE
from renkei.town import Town
from tests.kafka_helpers import listening_on, spawn, stop

SESSION_ID = b"s3ss10n-1d-Zq81"


@pytest.mark.parametrize("told", [signal.SIGTERM, signal.SIGINT])
def test_a_session_cookie_over_the_limits_is_refused_quoting_none_of_it(
        town: Town, tmp_path: Path, told: signal.Signals) -> None:
    """aiohttp copied up to 100 bytes of the header it refused (a session id) into its 400 and
    its log entry ("Error handling request"); the portal stops cleanly at SIGTERM or Ctrl-C
    (SIGINT), as before."""
    log = tmp_path / "portal.log"
    proc = spawn("portal", "--port", "0", "--reader", "http://127.0.0.1:9", log=log)
    try:
        port = listening_on(log, r"portal on http://127\.0\.0\.1:(\d+)")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: %s=%s%s\r\n\r\n"
                         % (COOKIE.encode(), SESSION_ID, b"x" * 9000))
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
        proc.send_signal(told)
        assert proc.wait(20) == 0, log.read_text(encoding="utf-8")
    finally:
        stop(proc)
    assert answer.startswith(b"HTTP/1.1 400 ") and SESSION_ID not in answer, answer
    said = log.read_text(encoding="utf-8")
    assert SESSION_ID.decode() not in said and "Traceback" not in said, said
    assert "refused a request from 127.0.0.1: " in said  # logged, in its own words
