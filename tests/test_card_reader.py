"""The simulated card reader over HTTP, without a browser: whom it answers."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import threading
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cards import ca, issue, reader
from cards.card import PIN_TRIES, Card
from registry import store as registry_store
from renkei.state import STATE_ENV
from tests.kafka_helpers import listening_on, spawn, stop

PORTAL = "http://127.0.0.1:8080"
PIN = "1234"
Client = TestClient[web.Request, web.Application]
ASK = {"origin": PORTAL, "authority": ca.OFFICERS, "challenge": "00" * 32,
       "return": f"{PORTAL}/login/card"}


@pytest.fixture()
def card(state_dir: Path, tmp_path: Path) -> Card:
    issue.init()
    return issue.officer_card("staff-reader", "sakura-town", "counter", PIN, tmp_path)


@pytest_asyncio.fixture()
async def client(card: Card) -> AsyncIterator[Client]:
    async with TestClient(TestServer(reader.app(card.path.parent, [PORTAL]))) as opened:
        yield opened


async def _form(client: Client, card: Card, pin: str) -> dict[str, str]:
    """The reader's own form, as its page fills it in."""
    page = await (await client.get(f"/sign?{urlencode(ASK)}")).text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token, page
    return {**ASK, "csrf": token.group(1), "card": card.face.serial, "pin": pin}


def _own_origin(client: Client) -> str:
    return f"http://127.0.0.1:{client.port}"


async def test_the_reader_signs_for_its_own_page(client: Client, card: Card) -> None:
    form = await _form(client, card, PIN)
    done = await client.post("/sign", data=form, headers={"Origin": _own_origin(client)})
    assert done.status == 200 and 'name="signature"' in await done.text()
    wrong = await client.post("/sign", data={**form, "pin": "0000"},
                              headers={"Sec-Fetch-Site": "same-origin"})
    assert wrong.status == 403 and "reader-error" in await wrong.text()
    assert Card(card.path).tries_left == PIN_TRIES - 1


async def test_the_reader_answers_only_at_its_own_loopback_address(client: Client,
                                                                   card: Card) -> None:
    """A page on another name (DNS rebinding) neither lists the cards nor tries a PIN."""
    form = await _form(client, card, "0000")
    foreign = {"Host": f"evil.example:{client.port}"}
    page = await client.get(f"/sign?{urlencode(ASK)}", headers=foreign)
    assert page.status == 403 and card.face.serial not in await page.text()
    tried = await client.post("/sign", data=form,
                              headers={**foreign, "Origin": f"http://evil.example:{client.port}"})
    assert tried.status == 403
    assert Card(card.path).tries_left == PIN_TRIES


@pytest.mark.parametrize("headers", [{}, {"Origin": "https://evil.example"},
                                     {"Origin": "null", "Sec-Fetch-Site": "cross-site"}])
async def test_the_reader_takes_a_pin_only_from_its_own_page(
        client: Client, card: Card, headers: dict[str, str]) -> None:
    """Another site's form (or a client that is no browser page) cannot try a PIN."""
    form = await _form(client, card, "0000")
    tried = await client.post("/sign", data=form, headers=headers)
    assert tried.status == 403
    assert Card(card.path).tries_left == PIN_TRIES


async def test_a_malformed_csrf_token_is_refused_not_an_error(client: Client, card: Card) -> None:
    form = {**await _form(client, card, PIN), "csrf": "トークン"}
    tried = await client.post("/sign", data=form, headers={"Origin": _own_origin(client)})
    assert tried.status == 403


@pytest.mark.parametrize("pin", ["", "123", "12345", "1234\n", "１２３４", "x" * 1000])
async def test_a_pin_that_is_not_4_digits_is_refused_and_costs_no_try(
        client: Client, card: Card, pin: str) -> None:
    """The page's form asks for 4 digits, but a client that is no browser page counted a try
    down for anything else (three such and the card was locked): a card refuses what is no PIN
    before it counts, and the reader says so (400), the card's tries as they were."""
    tried = await client.post("/sign", data=await _form(client, card, pin),
                              headers={"Origin": _own_origin(client)})
    assert tried.status == 400 and "A PIN is 4 digits" in await tried.text()
    assert Card(card.path).tries_left == PIN_TRIES


@pytest.mark.parametrize("change", [{"card": "a" * 300}, {"return": "http://[x"},
                                    {"return": "http://ex\u2101ample/"}])
async def test_a_card_or_return_address_that_is_none_is_refused_not_an_error(
        client: Client, card: Card, change: dict[str, str]) -> None:
    """A serial longer than a file name (OSError from the card folder) and a return address
    urlsplit cannot split (ValueError) went out as 500s; each is a 400, no try counted."""
    form = {**await _form(client, card, PIN), **change}
    tried = await client.post("/sign", data=form, headers={"Origin": _own_origin(client)})
    assert tried.status == 400, await tried.text()
    if "return" in change:
        asked = await client.get(f"/sign?{urlencode({**ASK, **change})}")
        assert asked.status == 400
    assert Card(card.path).tries_left == PIN_TRIES


async def test_a_body_that_is_no_form_is_refused_not_an_error(client: Client, card: Card) -> None:
    body = urlencode(await _form(client, card, PIN)).encode() + b"&pin=\xff"
    tried = await client.post("/sign", data=body, headers={
        "Origin": _own_origin(client), "Content-Type": "application/x-www-form-urlencoded"})
    assert tried.status == 400 and await tried.text() == "the form could not be read"
    assert Card(card.path).tries_left == PIN_TRIES


def _held(card: Card, let_go: threading.Event) -> threading.Thread:
    """A thread holding the card (as a try of another process would) until `let_go`, or for
    10 s: a reader that waits for it on its event loop stops the test's own loop that long."""
    taken = threading.Event()

    def hold() -> None:
        with card.in_use():
            taken.set()
            let_go.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    return holder


async def test_the_reader_answers_while_a_try_waits_for_the_card(client: Client,
                                                                 card: Card) -> None:
    """A try waiting for the card (another reader or a script mid-try on it) or its PIN being
    checked leaves the reader answering: its page is shown meanwhile (the try on the event loop
    answered nothing until it was done)."""
    form = await _form(client, card, PIN)
    let_go = threading.Event()
    holder = _held(card, let_go)
    try:
        trying = asyncio.create_task(
            client.post("/sign", data=form, headers={"Origin": _own_origin(client)}))
        await asyncio.sleep(0.5)  # the try sent, waiting for the card
        page = await client.get(f"/sign?{urlencode(ASK)}")
        assert page.status == 200 and not trying.done(), "the page waited for the try"
    finally:
        let_go.set()
        holder.join()
    done = await trying
    assert done.status == 200 and 'name="signature"' in await done.text()


async def test_a_residents_card_on_the_reader_does_not_name_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "state"))
    registry_store.build(registry_store.default_path(), 20, 1)
    registry = registry_store.RegistryStore.open(registry_store.default_path())
    code = next(registry.resident_codes())
    resident = registry.by_code(code)
    registry.close()
    assert resident is not None
    issue.init()
    card = issue.resident_card(code, PIN, tmp_path)
    ask = urlencode({**ASK, "authority": ca.JPKI})
    async with TestClient(TestServer(reader.app(tmp_path, [PORTAL]))) as client:
        page = await (await client.get(f"/sign?{ask}")).text()
    assert card.face.serial in page and resident.name not in page


def test_a_reader_on_any_free_port_names_the_port_it_listens_on(card: Card,
                                                                 tmp_path: Path) -> None:
    """`--port 0`: not "card reader on port 0", which no portal could be pointed to."""
    log = tmp_path / "reader.log"
    proc = spawn("card", "reader", "--port", "0", "--trust", PORTAL, "--dir",
                 str(card.path.parent), log=log)
    try:
        port = listening_on(log, r"card reader on port (\d+)")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sign?{urlencode(ASK)}") as page:
            assert page.status == 200 and 'name="pin"' in page.read().decode()
    finally:
        stop(proc)


TOKEN = b"r3ad3r-csrf-Zq81"


@pytest.mark.parametrize("told", [signal.SIGTERM, signal.SIGINT])
def test_a_cookie_over_the_limits_is_refused_quoting_none_of_it_and_the_reader_stops_when_told(
        card: Card, tmp_path: Path, told: signal.Signals) -> None:
    """aiohttp copied up to 100 bytes of the header it refused (the reader's CSRF token) into
    its 400 and its log entry ("Error handling request"); the reader stops cleanly at SIGTERM or
    Ctrl-C (SIGINT), as before; its log line is in the services' form (renkei.logs.FORMAT), its
    time and level before it, not Python's default ("WARNING:renkei.quiet_http:…")."""
    log = tmp_path / "reader.log"
    proc = spawn("card", "reader", "--port", "0", "--trust", PORTAL, "--dir",
                 str(card.path.parent), log=log)
    try:
        port = listening_on(log, r"card reader on port (\d+)")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /sign HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s=%s%s\r\n\r\n"
                         % (port, reader.COOKIE.encode(), TOKEN, b"x" * 9000))
            answer = b"".join(iter(lambda: sock.recv(65536), b""))
        proc.send_signal(told)
        assert proc.wait(10) == 0, log.read_text(encoding="utf-8")
    finally:
        stop(proc)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and TOKEN not in answer, answer
    assert body == b"400 Bad Request\n\na request line or header over 8190 bytes", body
    said = log.read_text(encoding="utf-8")
    assert TOKEN.decode() not in said and "Traceback" not in said, said
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING refused a request from "
                     r"127\.0\.0\.1: ", said, re.MULTILINE), said  # logged, in its own words
