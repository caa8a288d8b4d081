"""The portal's pages over HTTP without a broker or a browser: the real app, card checks and
audit store, and a Kafka side that records the portal's audit writes (or fails to)."""

from __future__ import annotations

import asyncio
import html
import logging
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import pytest_asyncio
from aiohttp import ClientResponse, DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.serialization import Encoding
from markupsafe import escape

from audit.events import OperatorAction, event_id
from audit.heads import Signer
from audit.store import _ACT, _INSERT, AuditStore, _action_row, _row
from broker import acls
from cards import ca, issue
from cards.card import Card
from cards.login import Verifier, message
from portal import app as portal_app
from portal import i18n
from portal.cli import SERVING
from portal.context import PLATFORM, Platform
from portal.i18n import WORDS, words
from portal.inbox import ANSWER_WITHIN, Asked, Inbox, overdue
from portal.kafka import Shown, holders_to_ask
from portal.records import CONNECTION_CACHE_KIB, HISTORY_PAGE, SEARCH_PAGE, History, Records
from portal.services import NO_ANSWER, Unanswered
from portal.sessions import CHALLENGES_PENDING, Officer, Resident, Sessions
from portal.web import (
    COOKIE,
    LOGIN_START,
    READER_RETURN,
    SESSIONS,
    SITE,
    Site,
    local_time,
    refused,
)
from registry import tickets
from renkei.holder_logs import NOT_LISTED, SUSPENDED
from renkei.questions import DECLINED
from renkei.quiet_http import QuietRunner
from renkei.refusals import TICKET_USED
from renkei.tasks import cancelled
from schemas.codec import CODEC
from schemas.messages import (
    REFUSED,
    TIMED_OUT,
    Alert,
    CardLogin,
    HolderEntry,
    HolderLogAnswer,
    HolderLogEntry,
)
from tests.loop_helpers import locked
from tests.test_audit_store import HOLDERS, T0, actions_of, event, item, tamper
from tests.test_portal_records import ME, Held, Hold, head_not_the_logs

ORIGIN = "http://127.0.0.1:8080"
READER = "http://127.0.0.1:8765"
LOCAL = Site(ORIGIN, READER)  # the portal and the card reader on one site, as in the demo
PIN = "1234"
Client = TestClient[web.Request, web.Application]


@dataclass
class HolderLogAsks:
    """Requests for holder-side logs (the oversight body's, residents'): (holders asked,
    request ids) each, when each said its exchanges happened and who requested them; only
    holders asked, as HolderLogs.ask does (NoHolder if none)."""

    asked: list[tuple[list[str], list[str]]] = field(default_factory=list)
    exchanged: list[tuple[datetime, ...]] = field(default_factory=list)
    requesters: list[tuple[str, ...]] = field(default_factory=list)
    kept: list[Shown] = field(default_factory=list)  # what the page shows as kept

    async def ask(self, holders: Sequence[str], request_ids: Sequence[str], legal_basis: str,
                  person: str | None = None,
                  log: Callable[[Asked], Awaitable[None]] | None = None,
                  exchanged_at: Sequence[datetime] = (), requesters: Sequence[str] = ()) -> Asked:
        asked = Asked(f"ask-{len(self.asked)}", datetime.now(UTC), holders_to_ask(holders),
                      tuple(request_ids), person)
        if log is not None:
            await log(asked)
        self.asked.append((list(asked.holders), list(request_ids)))
        self.exchanged.append(tuple(exchanged_at))
        self.requesters.append(tuple(requesters))
        return asked

    async def every(self) -> list[Shown]:
        """Those `kept` to show (what was asked is in `asked`)."""
        return self.kept

    async def of_person(self, people: Sequence[str]) -> list[Shown]:
        """Those `kept` to show, whoever asks."""
        return self.kept


class NoAlerts:
    def newest(self) -> list[Alert]:
        return []


@dataclass
class AuditWrites:
    """The portal's Kafka side as the pages use it: its inbox, its audit writes, each failing if
    `fail`, and the oversight body's requests for holder-side logs."""

    inbox: Inbox  # the residents' changes of number whose outcome they have not seen
    written: list[tuple[str, str]] = field(default_factory=list)
    fail: bool = False
    fail_on: str | None = None  # an outcome whose writes fail (the others do not)
    by: list[tuple[str, str | None]] = field(default_factory=list)  # each record's who and why
    oversight: HolderLogAsks = field(default_factory=HolderLogAsks)
    applications: HolderLogAsks = field(default_factory=HolderLogAsks)
    alerts: NoAlerts = field(default_factory=NoAlerts)
    held: str | None = None  # a holder whose name, next asked for, waits for `free` (`holding`)
    suspended: set[str] = field(default_factory=set)  # holders inactive in the directory
    holding: threading.Event = field(default_factory=threading.Event)
    free: threading.Event = field(default_factory=threading.Event)

    async def counter(self, officer: Officer, resident: Resident, outcome: str) -> None:
        if self.fail:
            raise ConnectionError("the audit stream cannot be written (simulated)")
        self.written.append((outcome, resident.id_codes[0]))

    def holder_name(self, holder: str | None) -> str:
        if holder is not None and holder == self.held:
            self.held = None
            self.holding.set()
            self.free.wait(5)
        return holder or ""

    def holder_entry(self, holder: str) -> HolderEntry | None:
        """Every holder is in the directory, active unless `suspended`."""
        return HolderEntry(holder, holder, "municipality", holder, 0, b"", False,
                           holder not in self.suspended, T0,
                           inactive_since=T0 if holder in self.suspended else None)

    async def record(self, outcome: str, requester: str, person: str, *,
                     reason: str | None = None, **_: object) -> None:
        if self.fail or outcome == self.fail_on:
            raise ConnectionError("the audit stream cannot be written (simulated)")
        self.written.append((outcome, person))
        self.by.append((requester, reason))


@dataclass
class Fakes:
    """What the portal's pages use, with the registry side's card table as a dict."""

    records: Records
    verifier: Verifier
    kafka: AuditWrites
    residents: dict[str, Resident]
    registry_away: bool = False
    number_outcome: str | None = NO_ANSWER  # how the authority's question ends (None: answered)
    number_detail: str = "no answer in time"  # and why, if it is not answered
    changes_asked: list[str] = field(default_factory=list)
    store: AuditStore | None = None  # the audit store `records` reads
    tickets_used: set[bytes] = field(default_factory=set)  # refused as used for another change
    number_held: asyncio.Event | None = None  # a question under a ticket not used waits for it
    number_holding: asyncio.Event = field(default_factory=asyncio.Event)  # set as one waits

    async def resident_of_card(self, serial: str, login: CardLogin) -> Resident | None:
        if self.registry_away:
            raise Unanswered("registry", TIMED_OUT, "no answer in time")
        return self.residents.get(serial)

    async def new_number(self, resident: Resident, reason: str, change_id: str) -> str:
        self.changes_asked.append(change_id)
        if resident.ticket in self.tickets_used:
            raise Unanswered("authority", REFUSED, DECLINED + TICKET_USED)
        if self.number_held is not None:
            self.number_holding.set()
            await self.number_held.wait()
        if self.number_outcome is not None:
            raise Unanswered("authority", self.number_outcome, self.number_detail)
        return "123456789018"


def fakes_of(client: Client) -> Fakes:
    """The fakes the `client` fixture's portal reads, to be set or looked at by a test."""
    return cast(Fakes, cast(TestServer, client.server).app[PLATFORM])


@dataclass
class Town:
    """A resident with one entry in the audit log, a counter staff member, their cards."""

    resident: Resident
    resident_card: Card
    staff_card: Card
    kafka: AuditWrites


@pytest_asyncio.fixture()
async def town(state_dir: Path, tmp_path: Path) -> AsyncIterator[Town]:
    issue.init()
    card = issue._new(ca.Authority.load(ca.JPKI), None, PIN, issue.RESIDENT, "resident",
                      tmp_path)
    resident = Resident(card.face.serial, "山田 太郎", ("R-1",), ("ABC98765XYZ",))
    staff = issue.officer_card("sakura-town-staff-1", "sakura-town", "counter", PIN, tmp_path)
    inbox = Inbox(tmp_path / "inbox.db")
    yield Town(resident, card, staff, AuditWrites(inbox))
    await inbox.close()


@pytest_asyncio.fixture()
async def client(town: Town, tmp_path: Path) -> AsyncIterator[Client]:
    """The portal's app, the audit consumer's store beside it (`Fakes.store`) read on
    connections of the app's own, read-only, as `renkei portal` reads it."""
    path, signer = tmp_path / "audit.db", Signer.generate()
    store = AuditStore(path, signer)
    store.append(*item(event(7, person=town.resident.id_codes[0])))

    def reader() -> AuditStore:
        return AuditStore(path, Signer(signer.public_key), cache_kib=CONNECTION_CACHE_KIB)

    records = Records(reader, checks=reader)
    async with TestClient(TestServer(portal_of(town, records, store))) as opened:
        yield opened
    await records.close()
    store.close()


def portal_of(town: Town, records: Records, store: AuditStore | None = None,
              site: Site = LOCAL) -> web.Application:
    """The portal's app at `site`, reading the access log through `records` (`store` beside
    it), its Kafka side and registry side the town's."""
    app = portal_app.build(site, Sessions())
    app.cleanup_ctx.clear()
    app[PLATFORM] = cast(Platform, Fakes(records, Verifier(), town.kafka,
                                         {town.resident.serial: town.resident},
                                         store=store))
    return app


class AsThePortal(TestServer):
    """The app served with `renkei portal`'s server options (a TestServer's own cancel the
    handler of a client gone, whatever the portal's are)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return QuietRunner(self.app, partial(refused, self.app[SITE]), **SERVING)


class Left(Records):
    """Records that note a history read cancelled (its page's resident gone)."""

    def __init__(self, store: Callable[[], AuditStore]) -> None:
        super().__init__(store)
        self.left = asyncio.Event()

    async def history(self, *args: Any, **kwargs: Any) -> History:
        try:
            return await super().history(*args, **kwargs)
        except asyncio.CancelledError:
            self.left.set()
            raise


async def test_a_residents_history_read_is_cancelled_when_they_leave(
        town: Town, tmp_path: Path) -> None:
    """A resident who leaves while their history is read (a long one, a busy store) cancels
    their page's read (its connection free once its thread is done): it was awaited to the end,
    and the page rendered, for no one."""
    key, db = tmp_path / "head-key.json", tmp_path / "audit.db"
    with AuditStore(db, Signer.load_or_create(key)) as writer:
        writer.append(*item(event(7, person=ME)))
    hold = Hold()
    records = Left(lambda: Held(db, key, hold))
    town.resident = replace(town.resident, id_codes=(ME,))
    async with TestClient(AsThePortal(portal_of(town, records))) as client:
        assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
        page = asyncio.create_task(client.get("/history"))
        try:
            assert await asyncio.to_thread(hold.holding.wait, 30)
            await cancelled(page)  # the resident leaves: their connection is closed
            await asyncio.wait_for(records.left.wait(), 10)
        finally:
            hold.free.set()
    await records.close()


SESSION_ID = "s3ss10n-1d-Zq81"


@pytest.mark.parametrize("site", [LOCAL, Site("https://portal.example", READER, True)])
async def test_a_session_cookie_over_the_limits_is_refused_quoting_none_of_it(
        town: Town, tmp_path: Path, caplog: pytest.LogCaptureFixture, site: Site) -> None:
    """aiohttp copied up to 100 bytes of the header it refused (a session id) into its 400 and
    its log entry ("Error handling request"): the portal's plain answer, with its headers."""
    caplog.set_level(logging.DEBUG)
    records = Records(lambda: AuditStore(tmp_path / "audit.db", Signer.generate()))
    async with AsThePortal(portal_of(town, records, site=site)) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nCookie: %s=%s%s\r\n\r\n"
                     % (site.cookie.encode(), SESSION_ID.encode(), b"x" * 9000))
        answer = await reader.read()
        writer.close()
    await records.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and SESSION_ID.encode() not in answer, answer
    assert body == b"400 Bad Request\n\na request line or header over 8190 bytes", body
    assert b"X-Content-Type-Options: nosniff" in head and b"frame-ancestors 'none'" in head
    assert (b"Strict-Transport-Security" in head) == site.secure_cookies, head
    assert SESSION_ID not in caplog.text
    assert "refused a request from 127.0.0.1: " in caplog.text  # logged, in its own words


def held_clock(store: Sessions) -> list[float]:
    """Hold the sessions' clock at a whole second, moved on by the test through the list: steps
    of a quarter hour then add up exactly (from the elapsed clock's reading they may round a
    step past a session's lifetime, as they did once in ~1,000 starts)."""
    now = [float(round(store.clock()))]
    store.clock = lambda: now[0]
    return now


async def csrf_of(client: Client, page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', await (await client.get(page)).text())
    assert found
    return found.group(1)


async def card_login(client: Client, card: Card, realm: str, page: str) -> ClientResponse:
    """Start a login from `page`, sign its challenge with the card as the reader would, post it
    back, and come back to the page it sends the browser on to: what that page answers."""
    started = await client.post("/login/start", allow_redirects=False, data={
        "csrf": await csrf_of(client, page), "realm": realm})
    assert started.status == 303, await started.text()
    returned = await client.post("/login/card", allow_redirects=False,
                                 data=signed_at_reader(card, started, ORIGIN))
    assert returned.status == 303, await returned.text()
    return await client.get(returned.headers["Location"], allow_redirects=False)


async def logged_in(client: Client, town: Town, realm: str, tmp_path: Path) -> None:
    """The client logged in as the town's resident, or as an oversight officer."""
    if realm == "resident":
        assert (await card_login(client, town.resident_card, realm, "/login")).status == 303
    else:
        officer = issue.officer_card("ppc-1", "oversight", realm, PIN, tmp_path)
        assert (await card_login(client, officer, realm, "/login?as=oversight")).status == 303


def signed_at_reader(card: Card, started: ClientResponse, origin: str) -> dict[str, str]:
    """What the card reader posts back: the challenge the login `started` with, signed by the
    card for the portal's `origin`, and the card's certificate."""
    challenge = parse_qs(urlsplit(started.headers["Location"]).query)["challenge"][0]
    signature = card.sign(message(origin, bytes.fromhex(challenge)), PIN)
    return {"challenge": challenge, "signature": signature.hex(),
            "certificate": card.certificate.public_bytes(Encoding.PEM).decode()}


async def test_the_counter_shows_a_resident_only_once_the_look_up_is_logged(
        client: Client, town: Town) -> None:
    staff = await card_login(client, town.staff_card, "counter", "/login?as=counter")
    assert staff.status == 303
    town.kafka.fail = True
    present = await card_login(client, town.resident_card, "present", "/counter")
    assert present.status == 500
    desk = await (await client.get("/counter")).text()
    assert town.resident.name not in desk and 'data-request="req-0007"' not in desk
    town.kafka.fail = False
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    desk = await (await client.get("/counter")).text()
    assert town.resident.name in desk and 'data-request="req-0007"' in desk
    assert town.kafka.written == [("COUNTER_VIEWED", town.resident.id_codes[0])]


async def test_staff_at_the_counter_ask_for_a_present_residents_new_number_logged_as_theirs(
        client: Client, town: Town) -> None:
    """A resident present at the counter asks for a new number: staff ask the authority, the
    request and the change logged with the staff member's name; not answered in time, asked
    again, it is the same change."""
    fakes = fakes_of(client)

    async def ask(confirm: str = "yes") -> tuple[int, str]:
        answer = await client.post("/counter/number", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/counter"), "confirm": confirm, "reason": "漏えい"})
        return answer.status, await answer.text()

    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await ask())[0] == 303 and fakes.changes_asked == [], "nobody present"
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    assert (await ask(confirm=""))[0] == 400 and fakes.changes_asked == []
    status, unknown = await ask()
    assert status == 503 and 'id="number-unknown"' in unknown and town.resident.name in unknown
    fakes.number_outcome = None
    status, shown = await ask()
    assert status == 200 and "9018" in shown and 'href="/counter"' in shown
    first, again = fakes.changes_asked
    assert first == again, "asked again, the same change"
    person = town.resident.id_codes[0]
    assert town.kafka.written == [("COUNTER_VIEWED", person), ("NUMBER_CHANGE_ASKED", person),
                                  ("NUMBER_CHANGE_ASKED", person), ("NUMBER_CHANGED", person)]
    staff = ("sakura-town", f"staff sakura-town-staff-1 (card {town.staff_card.face.serial})")
    assert town.kafka.by == [staff] * 3


async def in_english(client: Client, answer: ClientResponse) -> str:
    """Where the language link of the page `answer` shows leads (followed): its path, which
    must be a page shown in English."""
    link = re.search(r'href="([^"]+)"[^>]* id="lang"', await answer.text())
    assert link, answer.url
    shown = await client.get(html.unescape(link.group(1)))
    assert shown.status == 200 and '<html lang="en">' in await shown.text(), shown.url
    await switched(client, "ja")
    return shown.url.path


async def switched(client: Client, lang: str) -> ClientResponse:
    """The session's language switched to `lang` by the link of a page (the home page's)."""
    link = re.search(r'href="/lang/\w+([^"]+)"[^>]* id="lang"',
                     await (await client.get("/")).text())
    assert link
    return await client.get(f"/lang/{lang}{html.unescape(link.group(1))}",
                            allow_redirects=False)


async def test_the_language_link_of_a_forms_answer_leads_to_a_page(
        client: Client, town: Town) -> None:
    """The page showing a new number asked for at the counter (and the desk or error page
    answering that form, the printed history) switched language by getting the form's own path,
    which answers only a POST (405); a refused card login's by getting its return again (refused
    as not under way). Each leads to the page it came from: the desk, the number form, the
    login; the new number, shown once, is not shown again."""
    fakes = fakes_of(client)

    async def posted(path: str, page: str, **form: str) -> ClientResponse:
        return await client.post(path, data={"csrf": await csrf_of(client, page), **form})

    refused = await client.get("/login/signed?challenge=00", allow_redirects=False)
    assert refused.status == 403 and await in_english(client, refused) == "/login"
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    answers = [await posted("/counter/number", "/counter"),  # not confirmed: the desk
               await posted("/counter/number", "/counter", confirm="yes"),  # not answered
               await posted("/counter/print", "/counter")]
    fakes.number_outcome = None
    answers.append(await posted("/counter/number", "/counter", confirm="yes"))
    assert [a.status for a in answers] == [400, 503, 200, 200]
    assert [await in_english(client, a) for a in answers] == ["/counter"] * 4
    fakes.tickets_used.add(town.resident.ticket)
    refused_number = await posted("/counter/number", "/counter", confirm="yes")
    assert refused_number.status == 403 and await in_english(client, refused_number) == "/counter"
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    refused_number = await posted("/number", "/number", confirm="yes")
    fakes.tickets_used.clear()
    shown = await posted("/number", "/number", confirm="yes")
    assert (refused_number.status, shown.status) == (403, 200)
    assert [await in_english(client, a) for a in (refused_number, shown)] == [
        "/number", "/history"]


async def test_a_counter_visitor_whose_card_is_revoked_is_no_longer_served(
        client: Client, town: Town) -> None:
    """The visitor's card was checked at their login only: revoked afterwards, their records
    stayed on the desk, printable, for the rest of the staff member's session. Now the visitor's
    part ends at the next request, saying why; the staff member stays signed in."""
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    assert town.resident.name in await (await client.get("/counter")).text()
    issue.revoke(town.resident_card.face.serial)
    desk = await client.get("/counter", allow_redirects=False)
    shown = await desk.text()
    assert desk.status == 200 and words("ja")["present_revoked"] in shown
    assert town.resident.name not in shown and 'data-request="req-0007"' not in shown
    printed = await client.post("/counter/print", allow_redirects=False,
                                data={"csrf": await csrf_of(client, "/counter")})
    assert (printed.status, printed.headers["Location"]) == (303, "/counter")
    assert town.kafka.written == [("COUNTER_VIEWED", town.resident.id_codes[0])]
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 403


@pytest.mark.parametrize("refusal", ["unknown-card", "challenge"])
async def test_a_counter_visitors_login_refused_is_tried_again_as_the_visitors(
        client: Client, town: Town, tmp_path: Path, refusal: str) -> None:
    """A visitor's card refused at the counter (not registered, or a challenge not the one
    pending): the login page it showed offered a resident's login, which, tried again with the
    visitor's card, signed the staff member out and the visitor in to My Portal at the desk,
    their look-up logged as nobody's. It offers the visitor's login again, in the staff
    member's session."""
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    if refusal == "unknown-card":
        unknown = issue._new(ca.Authority.load(ca.JPKI), None, PIN, issue.RESIDENT, "resident",
                             tmp_path / "other")
        refused = await card_login(client, unknown, "present", "/counter")
    else:
        started = await client.post("/login/start", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/counter"), "realm": "present"})
        assert started.status == 303
        refused = await client.post("/login/card", data={  # on to the page it sends to
            "challenge": "00" * 40, "signature": "00", "certificate": ""})
    assert refused.status == 403
    realm = re.search(r'name="realm" value="([^"]+)"', await refused.text())
    assert realm is not None and realm.group(1) == "present"
    again = await card_login(client, town.resident_card, realm.group(1), "/counter")
    assert (again.status, again.headers["Location"]) == (303, "/counter")
    desk = await (await client.get("/counter")).text()
    assert town.resident.name in desk and "sakura-town-staff-1" in desk
    assert town.kafka.written == [("COUNTER_VIEWED", town.resident.id_codes[0])]


async def test_a_new_number_not_answered_in_time_is_not_said_unchanged_and_is_asked_again(
        client: Client, town: Town) -> None:
    """The numbering authority's answer did not come in time: the number may have been changed
    (the answer late, the authority stopped after acting), so the resident is not told it was
    not, but that it is not known yet; asked again, it is the same change (the authority makes
    it at most once), and its number is shown. An authority's answer that nothing was done is
    said as such, and the next request is a new change."""
    fakes = fakes_of(client)
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303

    async def ask() -> tuple[int, str]:
        answer = await client.post("/number", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/number"), "confirm": "yes", "reason": "紛失"})
        return answer.status, await answer.text()

    status, unknown = await ask()
    assert status == 503 and words("ja")["number_unknown"] in unknown
    assert "個人番号は変更されていません" not in unknown and 'id="new-number"' in unknown
    asked, changed = (("NUMBER_CHANGE_ASKED", town.resident.id_codes[0]),
                      ("NUMBER_CHANGED", town.resident.id_codes[0]))
    assert town.kafka.written == [asked], "the request logged, no NUMBER_CHANGED"
    fakes.number_outcome = None
    status, shown = await ask()
    assert status == 200 and "9018" in shown
    first, again = fakes.changes_asked
    assert first == again
    assert town.kafka.written == [asked, asked, changed], "the same request (one audit event)"
    fakes.number_outcome = TIMED_OUT
    status, unchanged = await ask()
    assert status == 503 and "個人番号は変更されていません" in unchanged
    assert fakes.changes_asked[-1] != first and town.kafka.written[-1] == asked


async def test_a_change_not_told_is_never_asked_again_for_another_resident(
        client: Client, town: Town, tmp_path: Path) -> None:
    """A resident left without knowing whether their number changed, and another logs in to the
    same browser: the other's request is a change of their own, not the first one's asked again
    (a login begins a fresh session; the authority refuses a change id of another resident)."""
    fakes = fakes_of(client)
    card = issue._new(ca.Authority.load(ca.JPKI), None, PIN, issue.RESIDENT, "resident",
                      tmp_path / "other")
    fakes.residents[card.face.serial] = Resident(card.face.serial, "佐藤 花子", ("R-2",),
                                                 ("DEF12345UVW",))

    async def ask() -> int:
        return (await client.post("/number", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/number"), "confirm": "yes"})).status

    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    assert await ask() == 503
    assert (await card_login(client, card, "resident", "/login")).status == 303
    assert await ask() == 503
    first, other = fakes.changes_asked
    assert first != other, "another resident's request is not the first one's asked again"
    assert [p for _, p in town.kafka.written] == ["ABC98765XYZ", "DEF12345UVW"]


async def test_a_change_not_seen_is_resumed_at_the_residents_next_login_wherever_they_ask(
        client: Client, town: Town, tmp_path: Path) -> None:
    """A resident left without seeing whether their number changed, and another asked for a new
    number of their own in the same browser. The first comes back, to the counter (a new
    session): the desk shows their change awaiting its outcome, and the request resumes it (the
    same change id, logged as first asked: the same audit event), so the authority answers the
    number it gave, said issued; a new login and request was a second change, a second number."""
    fakes = fakes_of(client)
    card = issue._new(ca.Authority.load(ca.JPKI), None, PIN, issue.RESIDENT, "resident",
                      tmp_path / "other")
    fakes.residents[card.face.serial] = Resident(card.face.serial, "佐藤 花子", ("R-2",),
                                                 ("DEF12345UVW",))

    async def ask(page: str, action: str) -> tuple[int, str]:
        answer = await client.post(action, allow_redirects=False, data={
            "csrf": await csrf_of(client, page), "confirm": "yes"})
        return answer.status, await answer.text()

    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    assert 'id="number-pending"' not in await (await client.get("/history")).text()
    assert (await ask("/number", "/number"))[0] == 503
    assert 'id="number-pending"' in await (await client.get("/history")).text()
    assert (await card_login(client, card, "resident", "/login")).status == 303
    assert 'id="number-pending"' not in await (await client.get("/number")).text()
    assert (await ask("/number", "/number"))[0] == 503
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    assert 'id="number-pending"' in await (await client.get("/counter")).text()
    fakes.number_outcome = None
    status, shown = await ask("/counter", "/counter/number")
    assert status == 200 and "9018" in shown and words("ja")["number_issued"] in shown
    first, other, again = fakes.changes_asked
    assert again == first != other, "the first resident's change resumed, the other's their own"
    staff = ("sakura-town", f"staff sakura-town-staff-1 (card {town.staff_card.face.serial})")
    assert town.kafka.written[-3:] == [("COUNTER_VIEWED", "ABC98765XYZ"),
                                       ("NUMBER_CHANGE_ASKED", "ABC98765XYZ"),
                                       ("NUMBER_CHANGED", "ABC98765XYZ")]
    assert town.kafka.by[0] == town.kafka.by[-2] == ("portal", None), "logged as first asked"
    assert town.kafka.by[-1] == staff
    assert 'id="number-pending"' not in await (await client.get("/counter")).text()
    assert (await ask("/counter", "/counter/number"))[0] == 200
    assert fakes.changes_asked[-1] not in (first, other), "seen: the next request is a new change"


async def test_the_number_form_shown_again_for_its_confirmation_keeps_the_reason_typed(
        client: Client, town: Town) -> None:
    """The number form sent without its confirmation is shown again (400), on My Portal and at
    the counter, with the reason the resident typed still in it (escaped), not emptied."""
    fakes = fakes_of(client)
    typed = '<b>"漏えい"</b>'

    async def sent(page: str, action: str) -> tuple[int, str]:
        answer = await client.post(action, allow_redirects=False, data={
            "csrf": await csrf_of(client, page), "reason": typed})
        return answer.status, await answer.text()

    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    kept = f'value="{html.escape(typed)}"'.replace("&quot;", "&#34;").replace("&#x27;", "&#39;")
    for page, action in (("/number", "/number"), ("/counter", "/counter/number")):
        if page == "/counter":
            assert (await card_login(client, town.staff_card, "counter",
                                     "/login?as=counter")).status == 303
            assert (await card_login(client, town.resident_card, "present",
                                     "/counter")).status == 303
        status, shown = await sent(page, action)
        assert status == 400 and kept in shown and typed not in shown, page
    assert fakes.changes_asked == []


async def test_a_ticket_refused_as_from_the_future_is_said_to_be_the_clocks_not_the_login(
        client: Client, town: Town) -> None:
    """The authority refuses a login's ticket issued ahead of its clock (the registry side's
    clock ahead of its by more than AHEAD), as it would a new login's: the page says the clocks
    disagree, not that the login could not be confirmed and to log in again."""
    fakes = fakes_of(client)
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    fakes.number_outcome, fakes.number_detail = REFUSED, DECLINED + tickets.FROM_THE_FUTURE
    answer = await client.post("/number", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/number"), "confirm": "yes"})
    refused = await answer.text()
    assert answer.status == 403 and words("ja")["number_refused_other"] not in refused
    assert words("ja")["refused_clock"] in refused


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_a_second_change_on_one_login_is_said_beforehand_and_its_refusal_settles_it(
        client: Client, town: Town, lang: str) -> None:
    """Once a login made its change of number, the form says another needs a new login; a
    second change asked anyway, which the authority refuses as the ticket used (it was not
    made), is settled: the next login shows no change awaiting its outcome (it showed the
    refused one as such for 90 days) and asks a new change."""
    fakes = fakes_of(client)
    fakes.number_outcome = None
    await switched(client, lang)
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303

    async def ask() -> tuple[int, str]:
        answer = await client.post("/number", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/number"), "confirm": "yes"})
        return answer.status, await answer.text()

    assert words(lang)["number_used"] not in await (await client.get("/number")).text()
    assert (await ask())[0] == 200
    assert words(lang)["number_used"] in await (await client.get("/number")).text()
    fakes.number_outcome, fakes.number_detail = REFUSED, DECLINED + TICKET_USED
    status, refused = await ask()
    assert status == 403 and words(lang)["number_refused_used"] in refused
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    form = await (await client.get("/number")).text()
    assert 'id="number-pending"' not in form and words(lang)["number_used"] not in form
    assert 'id="number-pending"' not in await (await client.get("/history")).text()
    fakes.number_outcome = None
    assert (await ask())[0] == 200
    made, refused_change, new = fakes.changes_asked
    assert len({made, refused_change, new}) == 3, "the refused change is not asked again"


async def test_a_ticket_used_in_one_session_leaves_the_change_another_is_making(
        client: Client, town: Town) -> None:
    """A resident logged in twice, their change of number under way in the second session (its
    ticket fresh) when the first, its ticket used, asks it too and is refused: the change is
    left to the second, unanswered there, awaiting its outcome, and asked again as the same
    change. The refusal settled it under the second: asked again, a new change (perhaps a
    second new number, the first one made but never shown)."""
    fakes = fakes_of(client)
    fakes.number_held, fakes.tickets_used = asyncio.Event(), {town.resident.ticket}
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    fakes.residents[town.resident.serial] = replace(town.resident, ticket=b"fresh")
    second = TestClient(cast(TestServer, client.server))  # the first's server: not closed here
    try:
        assert (await card_login(second, town.resident_card, "resident", "/login")).status == 303
        making = asyncio.create_task(number_asked(second))
        await fakes.number_holding.wait()
        assert (await number_asked(client))[0] == 403
        fakes.number_held.set()
        assert (await making)[0] == 503
        assert 'id="number-pending"' in await (await second.get("/number")).text()
        await number_asked(second)
        making_id, refused_id, again = fakes.changes_asked
        assert making_id == refused_id == again, "the change left to the session making it"
    finally:
        await second.session.close()


async def number_asked(client: Client) -> tuple[int, str]:
    """A new number asked on My Portal's form: the answer's status and page."""
    answer = await client.post("/number", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/number"), "confirm": "yes"})
    return answer.status, await answer.text()


async def test_a_new_number_is_asked_for_once_logged_and_the_change_kept_until_it_is(
        client: Client, town: Town) -> None:
    """The request for a new number is logged before the authority is asked: not logged, not
    asked. A change answered but not logged stays the resident's: asked again, it is the same
    change (the authority gives the number it gave), logged, and its number shown."""
    fakes = fakes_of(client)
    fakes.number_outcome = None
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303

    async def ask() -> int:
        return (await client.post("/number", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/number"), "confirm": "yes"})).status

    town.kafka.fail = True
    assert await ask() == 500
    assert fakes.changes_asked == [] and town.kafka.written == [], "not logged, not asked"
    town.kafka.fail, town.kafka.fail_on = False, "NUMBER_CHANGED"
    assert await ask() == 500
    town.kafka.fail_on = None
    assert await ask() == 200
    first, again = fakes.changes_asked
    assert first == again
    assert [o for o, _ in town.kafka.written] == ["NUMBER_CHANGE_ASKED"] * 2 + ["NUMBER_CHANGED"]


async def test_a_login_the_registry_side_does_not_answer_is_said_so(
        client: Client, town: Town) -> None:
    """Whose card it is is asked of the registry side's process, which may be away: the resident
    is told so, on the login page, not left waiting."""
    fakes_of(client).registry_away = True
    answer = await card_login(client, town.resident_card, "resident", "/login")
    assert answer.status == 503
    assert "応答がありません" in await answer.text()
    assert (await client.get("/history", allow_redirects=False)).status == 303, "not signed in"


@pytest.mark.parametrize("reason", ["stale-crl", "no-crl", "bad-crl"])
async def test_a_login_whose_revocation_list_cannot_be_checked_says_so_not_the_card(
        client: Client, town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        reason: str) -> None:
    """The JPKI CA's revocation list past its next update, not there, or not the CA's: the login
    is refused (failing closed), the page saying in Japanese and English that whether the card
    is revoked cannot be checked now, to try later; it said the card could not be verified."""
    if reason == "stale-crl":
        later = datetime.now(UTC) + timedelta(days=ca.CRL_DAYS, hours=1)
        fakes_of(client).verifier = Verifier(
            clock=lambda: later)
    else:
        other = tmp_path / "none.pem" if reason == "no-crl" else ca.crl_path(ca.OFFICERS)
        monkeypatch.setattr(ca, "crl_path", lambda name: other)
    for lang in ("ja", "en"):
        await switched(client, lang)
        answer = await card_login(client, town.resident_card, "resident", "/login")
        said = html.unescape(await answer.text())
        assert answer.status == 403
        assert words(lang)["refused_crl"] in said and words(lang)["refused_other"] not in said
    assert (await client.get("/history", allow_redirects=False)).status == 303, "not signed in"


@pytest.mark.parametrize("damage", ["missing", "damaged"])
async def test_a_login_whose_ca_certificate_cannot_be_read_says_so_not_the_card(
        client: Client, town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        damage: str) -> None:
    """The JPKI CA's certificate, which the portal checks cards against, gone from its trust
    folder or damaged (a mount missing, a copy cut short): the login is refused (failing
    closed), the page saying the fault is the portal's, not the card's; it was a bare 500 (gone)
    or said the card could not be verified (damaged)."""
    certificate = tmp_path / "ca.pem"
    if damage == "damaged":
        certificate.write_text("-----BEGIN CERTIFICATE-----\ncut\n")
    monkeypatch.setattr(ca, "certificate_path", lambda name: certificate)
    for lang in ("ja", "en"):
        await switched(client, lang)
        answer = await card_login(client, town.resident_card, "resident", "/login")
        said = html.unescape(await answer.text())
        assert answer.status == 403, said
        assert words(lang)["refused_portal"] in said and words(lang)["refused_other"] not in said
    assert (await client.get("/history", allow_redirects=False)).status == 303, "not signed in"


@pytest.mark.parametrize("path, form", [("/number", {"confirm": "yes"}), ("/logout", {})])
async def test_a_form_sent_after_its_session_ended_goes_to_the_login_saying_so(
        client: Client, town: Town, path: str, form: dict[str, str]) -> None:
    """A resident idle past the session's end sends a form (a new number asked for, the log-out
    button): the answer was a bare 403 'CSRF token missing or wrong', as for a forged form. It
    goes to the login page, which says the session ended; nothing is done."""
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    token = await csrf_of(client, "/number")
    store = cast(TestServer, client.server).app[SESSIONS]
    ended = store.clock() + store.idle.total_seconds() + 1
    store.clock = lambda: ended
    sent = await client.post(path, allow_redirects=False, data={"csrf": token, **form})
    assert (sent.status, sent.headers.get("Location")) == (303, "/login")
    login = await (await client.get("/login")).text()
    assert words("ja")["expired_session"] in html.unescape(login)
    assert fakes_of(client).changes_asked == [] and town.kafka.written == []
    forged = await client.post(path, allow_redirects=False, data={"csrf": "forged", **form})
    assert forged.status == 403, "a live session's form with another token is refused as ever"


async def test_a_form_with_another_token_from_a_live_session_is_refused_by_a_page_saying_so(
        client: Client, town: Town) -> None:
    """A form of a page opened before the login (its token the session's before) sent from the
    session logged in since was answered a bare plain-text 403 'CSRF token missing or wrong':
    the portal's own page says the page was out of date, to try again, in the session's
    language; still 403, nothing done, the session still logged in."""
    await switched(client, "en")
    before = await csrf_of(client, "/login")
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    sent = await client.post("/number", allow_redirects=False,
                             data={"csrf": before, "confirm": "yes"})
    said = html.unescape(await sent.text())
    assert (sent.status, sent.content_type) == (403, "text/html")
    assert '<html lang="en">' in said and words("en")["form_stale"] in said
    assert fakes_of(client).changes_asked == []
    assert (await client.get("/history", allow_redirects=False)).status == 200


@pytest.mark.parametrize("role, path, form", [
    ("counter", "/counter/finish", {}), ("counter", "/logout", {}),
    ("oversight", "/oversight/holder-logs", {"chosen": "1"})])
async def test_an_officers_form_sent_after_their_session_ended_goes_to_their_sides_login(
        client: Client, town: Town, tmp_path: Path, role: str, path: str,
        form: dict[str, str]) -> None:
    """Counter staff or an oversight officer idle past the session's end send a form (the
    visitor's finish, the log-out button, holder logs asked for): it went to the resident's
    login. It goes to their side's login, which says why in the session's language."""
    card = (town.staff_card if role == "counter"
            else issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path))
    login = f"/login?as={role}"
    assert (await card_login(client, card, role, login)).status == 303
    await switched(client, "en")
    token = await csrf_of(client, f"/{role}")
    store = cast(TestServer, client.server).app[SESSIONS]
    ended = store.clock() + store.idle.total_seconds() + 1
    store.clock = lambda: ended
    sent = await client.post(path, allow_redirects=False, data={"csrf": token, **form})
    assert (sent.status, sent.headers.get("Location")) == (303, login)
    said = html.unescape(await (await client.get(login)).text())
    assert '<html lang="en">' in said and words("en")["expired_session"] in said
    assert fakes_of(client).kafka.oversight.asked == []


@pytest.mark.parametrize("path, login", [("/counter/finish", "/login?as=counter"),
                                         ("/oversight/holder-logs", "/login?as=oversight"),
                                         ("/number", "/login")])
async def test_a_form_of_a_session_the_portal_forgot_goes_to_its_paths_sides_login(
        client: Client, path: str, login: str) -> None:
    """A form sent after the portal restarted, or from a session long forgotten (its cookie
    one the portal does not know), went to the resident's login from the counter's or the
    oversight console's pages: it goes to the login of the side its path is on."""
    client.session.cookie_jar.update_cookies({COOKIE: "from-before-a-restart"})
    sent = await client.post(path, allow_redirects=False, data={"csrf": "its-old-token"})
    assert (sent.status, sent.headers.get("Location")) == (303, login)
    assert fakes_of(client).kafka.oversight.asked == []


@pytest.mark.parametrize("path, login", [("/counter/finish", "/login?as=counter"),
                                         ("/number", "/login")])
async def test_a_form_sent_with_no_cookie_goes_to_its_sides_login_saying_it_was_not_taken(
        client: Client, path: str, login: str) -> None:
    """A form sent with no cookie at all (cleared, or never set) got the 403 page of a live
    session's stale form: it goes to the login of its path's side, which says the form was not
    taken, as for a session that ended."""
    sent = await client.post(path, allow_redirects=False, data={"csrf": "a-token"})
    assert (sent.status, sent.headers.get("Location")) == (303, login)
    assert words("ja")["form_expired"] in html.unescape(await (await client.get(login)).text())
    assert fakes_of(client).changes_asked == []


async def test_only_a_session_logged_in_and_ended_by_time_is_told_it_was_logged_out(
        client: Client, town: Town) -> None:
    """A forged or long-gone cookie (another portal's, one from before a restart) and an idle
    anonymous session were told 'logged out after inactivity': no one was logged in. They are
    told nothing; a resident idle past the session's end is told that, one at the login's
    lifetime, though busy, that."""
    store = cast(TestServer, client.server).app[SESSIONS]
    now = held_clock(store)
    idle, lifetime = store.idle.total_seconds(), store.lifetime.total_seconds()

    async def told(page: str) -> list[str]:
        said = html.unescape(await (await client.get(page)).text())
        return [key for key in ("expired_session", "lifetime_session")
                if words("ja")[key] in said]

    client.session.cookie_jar.update_cookies({COOKIE: "forged"})
    assert await told("/login") == []
    now[0] += idle + 1
    assert await told("/login") == [], "an anonymous session, idle"
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    now[0] += idle + 1
    assert await told("/history") == ["expired_session"]
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    for _ in range(int(lifetime / idle) * 2):  # to its lifetime, never idle
        now[0] += idle / 2
        assert await told("/history") == []
    now[0] += idle / 2
    assert await told("/history") == ["lifetime_session"]


async def test_a_login_pushed_out_by_the_most_sessions_kept_is_told_so_and_logged_once(
        client: Client, town: Town, caplog: pytest.LogCaptureFixture) -> None:
    """A resident's login under way, its session pushed out past the most sessions kept (a
    crowd, a flood), came back from the reader to a login page that said nothing of why: it
    says the portal held too many sessions, in the session's language, and the push-out is
    logged once at INFO (the portal full once at WARNING), never the session's id; a flood's
    sessions, nobody's login in them, are not logged."""
    caplog.set_level(logging.DEBUG)
    store = cast(TestServer, client.server).app[SESSIONS]
    await switched(client, "en")
    started = await client.post("/login/start", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/login"), "realm": "resident"})
    sid = started.cookies[COOKIE].value
    store.most = 1
    client.session.cookie_jar.clear()  # another browser's page pushes the login's session out
    assert (await client.get("/login")).status == 200
    client.session.cookie_jar.clear()  # the login's browser again
    client.session.cookie_jar.update_cookies({COOKIE: sid})
    returned = await client.post("/login/card", allow_redirects=False,
                                 data=signed_at_reader(town.resident_card, started, ORIGIN))
    back = await client.get(returned.headers["Location"], allow_redirects=False)
    said = html.unescape(await back.text())
    assert back.status == 403 and '<html lang="en">' in said and words("en")["session_full"] in said
    again = html.unescape(await (await client.get("/login")).text())
    assert words("en")["session_full"] not in again, "told once"
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "portal.sessions"]
    assert logged == [
        (logging.WARNING, "the portal's sessions are full, 1 kept at most: past them the least "
         "recently used is pushed out, its browser told so, logged at INFO if someone is in it "
         "(signed in, or a card login under way); said again when 0 or fewer are kept"),
        (logging.INFO, "a session pushed out, the portal keeping 1 at most (signed in: no, card "
         "logins under way: 1, officer's role: none)")]
    assert sid not in caplog.text and sid[:8] not in caplog.text


async def test_counter_staff_starting_visitors_logins_are_logged_out_at_their_logins_lifetime(
        client: Client, town: Town) -> None:
    """A login's start renews the session's id: it began the session's lifetime again, so
    counter staff starting a visitor's login within each hour were never logged out at their own
    login's lifetime. It runs from their own login."""
    store = cast(TestServer, client.server).app[SESSIONS]
    now = held_clock(store)
    idle, lifetime = store.idle.total_seconds(), store.lifetime.total_seconds()
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")
            ).status == 303
    for _ in range(int(lifetime / idle) * 2):  # to its lifetime, never idle
        now[0] += idle / 2
        assert (await card_login(client, town.resident_card, "present", "/counter")
                ).status == 303
    now[0] += idle / 2
    desk = html.unescape(await (await client.get("/counter")).text())
    assert words("ja")["lifetime_session"] in desk


async def test_a_resident_logged_out_by_time_is_told_so_in_their_language(
        client: Client, town: Town) -> None:
    """A resident reading the portal in English, logged out idle, was told so in Japanese, and
    the pages went on in Japanese: they are told in English, and the pages stay so."""
    store = cast(TestServer, client.server).app[SESSIONS]
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    await switched(client, "en")
    later = store.clock() + store.idle.total_seconds() + 1
    store.clock = lambda: later
    login = await client.get("/history")
    said = html.unescape(await login.text())
    assert login.url.path == "/login" and '<html lang="en">' in said
    assert words("en")["expired_session"] in said


async def test_a_login_page_left_open_keeps_its_language_and_says_why_its_form_was_not_taken(
        client: Client, town: Town) -> None:
    """A login page in English left open past the session's idle end lost its language (the
    next page in Japanese), and its form sent went back to the login page saying nothing: the
    next page is in English, and the form's answer says it was not taken, in English."""
    store = cast(TestServer, client.server).app[SESSIONS]
    now = held_clock(store)
    await switched(client, "en")
    token = await csrf_of(client, "/login")
    now[0] += store.idle.total_seconds() + 1
    sent = await client.post("/login/start", data={"csrf": token, "realm": "resident"})
    said = html.unescape(await sent.text())
    assert sent.url.path == "/login" and '<html lang="en">' in said
    assert words("en")["form_expired"] in said
    now[0] += store.idle.total_seconds() + 1
    shown = html.unescape(await (await client.get("/login")).text())
    assert '<html lang="en">' in shown and words("en")["form_expired"] not in shown


@pytest.mark.parametrize("realm, login", [("counter", "/login?as=counter"),
                                          ("oversight", "/login?as=oversight"),
                                          ("present", "/login?as=counter"),
                                          ("resident", "/login")])
async def test_an_officers_login_page_left_open_goes_back_to_itself_when_its_form_is_not_taken(
        client: Client, realm: str, login: str) -> None:
    """A counter's or an oversight officer's login page left open, nobody signed in, past the
    session's idle end: its form sent went to the resident's login. It goes back to the login
    page it was sent from (the realm it starts; a counter visitor's, the counter's), which says
    the form was not taken."""
    store = cast(TestServer, client.server).app[SESSIONS]
    token = await csrf_of(client, login)
    later = store.clock() + store.idle.total_seconds() + 1
    store.clock = lambda: later
    sent = await client.post("/login/start", allow_redirects=False,
                             data={"csrf": token, "realm": realm})
    assert (sent.status, sent.headers.get("Location")) == (303, login)
    assert words("ja")["form_expired"] in html.unescape(await (await client.get(login)).text())


@pytest.mark.parametrize("realm, login", [("counter", "/login?as=counter"),
                                          ("oversight", "/login?as=oversight"),
                                          ("resident", "/login")])
async def test_the_log_out_button_goes_to_the_login_of_the_side_logged_out_of(
        client: Client, town: Town, tmp_path: Path, realm: str, login: str) -> None:
    """Counter staff and oversight officers logging out landed on the resident's login
    (/login): each goes to their side's login, logged out."""
    card = {"counter": town.staff_card, "resident": town.resident_card}.get(realm) or (
        issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path))
    assert (await card_login(client, card, realm, login)).status == 303
    home = {"counter": "/counter", "oversight": "/oversight", "resident": "/history"}[realm]
    out = await client.post("/logout", allow_redirects=False,
                            data={"csrf": await csrf_of(client, home)})
    assert (out.status, out.headers.get("Location")) == (303, login)
    assert (await client.get(home, allow_redirects=False)).headers.get("Location") == login


async def test_a_form_with_a_wrong_token_is_logged_in_one_line_never_its_token_nor_session(
        client: Client, town: Town, caplog: pytest.LogCaptureFixture) -> None:
    """A form refused for its CSRF token (a forged one, from another site) left no trace in the
    portal's log: each is logged in one line, its path and its session's officer's role (at
    WARNING; one not taken because its session ended, an idle user's, at INFO);
    no line of the portal's log, from the login to the log-out, holds a session's id or a
    token (the one sent, the session's, the language link's)."""
    caplog.set_level(logging.DEBUG)
    held: set[str] = set()

    def kept() -> None:
        held.update(c.value for c in client.session.cookie_jar if c.key == COOKIE)

    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    kept()
    page = await (await client.get("/counter")).text()
    held.update(re.findall(r'name="csrf" value="([^"]+)"', page) + re.findall(r"token=(\w+)", page))
    forged = "forged-token-" + "x" * 20
    sent = await client.post("/counter/finish", allow_redirects=False, data={"csrf": forged})
    assert sent.status == 403
    store = cast(TestServer, client.server).app[SESSIONS]
    later = store.clock() + store.idle.total_seconds() + 1
    store.clock = lambda: later
    sent = await client.post("/counter/finish", allow_redirects=False, data={"csrf": forged})
    assert (sent.status, sent.headers.get("Location")) == (303, "/login?as=counter")
    kept()
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    kept()
    assert (await client.post("/logout", allow_redirects=False,
                              data={"csrf": await csrf_of(client, "/counter")})).status == 303
    kept()
    said = [(r.levelno, r.getMessage()) for r in caplog.records
            if r.name == "portal.web" and r.levelno >= logging.INFO]
    assert said == [(logging.WARNING, "a form to /counter/finish refused, its CSRF token not its "
                     "session's (officer's role: counter)"),
                    (logging.INFO, "a form to /counter/finish not taken, its session ended "
                     "(officer's role: counter)")]
    assert len(held) >= 5 and all(len(secret) >= 20 for secret in held)
    assert not [secret for secret in held | {forged} if secret in caplog.text]


@pytest.mark.parametrize("path", ["/static/portal.css", "/no-such-page"])
async def test_a_static_file_or_an_unknown_page_makes_no_session(client: Client,
                                                                path: str) -> None:
    app = cast(TestServer, client.server).app
    for method in ("GET", "POST"):
        answer = await client.request(method, path)
        assert answer.status in (200, 404, 405) and "Set-Cookie" not in answer.headers
    assert len(app[SESSIONS]) == 0


@pytest.mark.parametrize("realm, method, path, form, status", [
    (None, "GET", "/login?refused=x", None, 200),
    (None, "POST", "/login/start", {"csrf": "é", "realm": "resident"}, 303),  # no cookie: login
    (None, "POST", "/logout", {"csrf": "トークン"}, 303),
    ("resident", "GET", "/history?since=0001-01-01", None, 400),
    ("resident", "GET", "/history?until=9999-12-31", None, 400),
    ("oversight", "GET", "/oversight?since=0001-01-01", None, 400),
    ("oversight", "GET", "/oversight?until=9999-12-31", None, 400),
    ("oversight", "GET", "/oversight?person=abc98765xyz", None, 400),
    ("oversight", "GET", "/oversight?person=ABC98765XY", None, 400),
    ("oversight", "GET", "/oversight?after=99999999999999999999:1", None, 400),
    ("oversight", "GET", "/oversight?after=1:-99999999999999999999", None, 400)])
async def test_malformed_input_is_refused_not_an_error(
        client: Client, town: Town, tmp_path: Path, realm: str | None, method: str, path: str,
        form: dict[str, str] | None, status: int) -> None:
    if realm is not None:
        await logged_in(client, town, realm, tmp_path)
    answer = await client.request(method, path, data=form, allow_redirects=False)
    assert answer.status == status and 'id="refused"' not in await answer.text()


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("realm, path", [
    ("resident", "/history"), ("oversight", "/oversight"), ("oversight", "/oversight/actions")])
@pytest.mark.parametrize("query, said", [
    ({"since": "0001-01-01", "until": "9999-12-31"}, "date_out_of_range"),
    ({"since": '<b>"2024-13-01"</b>', "until": "2025-01-01"}, "date_malformed")])
async def test_a_date_out_of_range_or_malformed_is_said_on_the_page_as_typed(
        client: Client, town: Town, tmp_path: Path, lang: str, realm: str, path: str,
        query: dict[str, str], said: str) -> None:
    """A date a date picker allows but no moment of which the log can hold (the first or last
    day there is), or no date at all: the resident's history and the console's pages say so in
    the page's language, the filter as typed (escaped), nothing listed; not a bare English 400
    (the console's was, as a range ending before it begins was not)."""
    await logged_in(client, town, realm, tmp_path)
    await switched(client, lang)
    answer = await client.get(path, params={"holder": "", **query})
    page = await answer.text()
    assert answer.status == 400 and words(lang)[said] in page and 'id="bad-date"' in page
    for name, typed in query.items():
        assert f'name="{name}" value="{escape(typed)}"' in page and "<b>" not in page
    assert 'class="entries"' not in page


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("realm, path, typed, listed", [
    ("resident", "/history", {}, 'data-request="req-0007"'),
    ("oversight", "/oversight", {"pattern": '<b>"P1"</b>'}, 'data-request="req-0007"'),
    ("oversight", "/oversight/actions", {"by": '<b>"ops-a"</b>'}, 'data-action="SUSPEND@a1"')])
async def test_a_date_range_ending_before_it_begins_is_said_on_the_page_as_typed(
        client: Client, town: Town, tmp_path: Path, lang: str, realm: str, path: str,
        typed: dict[str, str], listed: str) -> None:
    """From 2024-04-02 to 2024-04-01 answered an empty page, as if nothing had happened then:
    the resident's history and the console's pages say the end is before the start, in the
    page's language (400), the filter as typed (escaped), nothing listed; one day from and to
    lists that day's."""
    store = fakes_of(client).store
    assert store
    store.append_many([item(OperatorAction("SUSPEND@a1", T0 + timedelta(hours=1), "ops-a",
                                           "SUSPEND", "city-a", None))])
    await logged_in(client, town, realm, tmp_path)
    await switched(client, lang)
    answer = await client.get(path, params={**typed, "since": "2024-04-02", "until": "2024-04-01"})
    page = await answer.text()
    assert answer.status == 400 and 'id="bad-date"' in page
    assert words(lang)["range_reversed"] in page and listed not in page
    for name, value in {**typed, "since": "2024-04-02", "until": "2024-04-01"}.items():
        assert f'name="{name}" value="{escape(value)}"' in page and "<b>" not in page
    one_day = await client.get(path, params={"since": "2024-04-01", "until": "2024-04-01"})
    shown = await one_day.text()
    assert one_day.status == 200 and listed in shown and 'id="bad-date"' not in shown


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_a_holder_no_entry_names_is_said_on_the_search_page(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """The console's search for a holder no entry names (a name mistyped, a holder's display
    name) answered "No entries.", as for a holder that took part in nothing: the page says no
    entry of the log names it, in the page's language, with the names entries give nearest it,
    as typed (escaped); a holder entries name, its page empty by the other filters, is not."""
    await logged_in(client, town, "oversight", tmp_path)
    said = words(lang)
    await switched(client, lang)
    for typed, nearest in (('<b>"nobody"</b>', ""), ("City-A", HOLDERS[0])):
        page = await (await client.get("/oversight", params={"holder": typed})).text()
        line = said["holder_unnamed"].format(holder=typed)
        if nearest:
            line += " " + said["holder_nearest"].format(names=nearest)
        assert f'id="unnamed-holder">{escape(line)}</p>' in page and "<b>" not in page
    page = await (await client.get("/oversight", params={"holder": HOLDERS[0],
                                                         "pattern": "P9"})).text()
    assert said["none_found"] in page and 'id="unnamed-holder"' not in page



@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_every_search_page_is_proved_an_entry_replaced_whole_said_tampered(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """The console's search listed a page's entries as the store's rows say, unproved and
    unmarked, whatever the filter: a row replaced whole (another event's columns and bytes)
    was shown to the oversight body as genuine. Every page is proved as `audit query`'s is:
    each entry verified under the latest signed head, awaiting the next (appended after it),
    or not verified, the page saying TAMPERED and naming it (in the page's language); a page
    without it says nothing of it; under a head the log's key did not sign, none is verified
    and the page says so."""
    store = fakes_of(client).store
    assert store
    store.append_many(item(event(n)) for n in range(1, 4))
    signed = store.head()
    store.append_many([item(event(4))])
    forged, db = event(9), f"sqlite:///{tmp_path / 'audit.db'}"
    tamper(db, ("DELETE FROM entries WHERE serial = 2", ()),
           (_INSERT, _row(2, forged, CODEC.encode(forged))))
    await logged_in(client, town, "oversight", tmp_path)
    await switched(client, lang)
    said = words(lang)

    async def marks(query: dict[str, str]) -> tuple[dict[str, str], str]:
        page = await (await client.get("/oversight", params=query)).text()
        return {request: mark for request, mark in re.findall(
            r'<tr data-request="(req-\d+)">.*?<span class="(ok|pending|bad)"', page,
            re.DOTALL)}, page

    for query, marked in (
            ({}, {"req-0007": "ok", "req-0001": "ok", "req-0009": "bad", "req-0003": "ok",
                  "req-0004": "pending"}),
            ({"holder": HOLDERS[1]}, {"req-0001": "ok", "req-0009": "bad", "req-0004": "pending"}),
            ({"pattern": "P1"}, {"req-0007": "ok", "req-0001": "ok", "req-0009": "bad",
                                 "req-0003": "ok"}),
            ({"outcome": "approved"}, {"req-0009": "bad", "req-0003": "ok"}),
            ({"person": town.resident.id_codes[0]}, {"req-0007": "ok", "req-0009": "bad",
                                                     "req-0003": "ok"}),
            ({"since": "2024-04-01", "until": "2024-04-01"},
             {"req-0007": "ok", "req-0001": "ok", "req-0009": "bad", "req-0003": "ok",
              "req-0004": "pending"})):
        shown, page = await marks(query)
        assert shown == marked, query
        line = said["search_tampered"].format(which="2")
        assert f'id="tampered">{escape(line)}</p>' in page, query
    shown, page = await marks({"outcome": "REJECTED"})
    assert shown == {"req-0007": "ok", "req-0001": "ok", "req-0004": "pending"}
    assert 'id="tampered"' not in page
    head_not_the_logs(db, replace(signed.head, size=signed.head.size + 2))
    shown, page = await marks({"outcome": "REJECTED"})
    assert shown == {"req-0007": "bad", "req-0001": "bad", "req-0004": "bad"}
    assert f'id="tampered">{escape(said["head_untrusted"])}</p>' in page


async def test_a_history_before_the_first_signed_head_is_pending_not_tampered(
        client: Client, town: Town, tmp_path: Path) -> None:
    """A store's first entries, before the audit consumer signs its first head (HEAD_SECONDS):
    the history, an entry's page and the counter's desk told the resident that the log's latest
    head is not signed by the log's key (TAMPERED, tell the oversight body), though none is
    signed yet. Each entry is pending, nothing said."""
    store = fakes_of(client).store
    assert store
    person = town.resident.id_codes[0]
    store.append_many(item(event(n, person=person)) for n in (1, 2))
    await logged_in(client, town, "resident", tmp_path)
    for path in ("/history", "/history/1"):
        page = await (await client.get(path)).text()
        assert 'id="tampered"' not in page, path
        assert '<span class="pending"' in page and '<span class="bad"' not in page, path


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_a_residents_entry_replaced_whole_is_said_tampered_on_their_history(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """My Portal's history and an entry's page (and the counter's desk and print of them)
    marked an entry of the resident's replaced whole (another event's columns and bytes, of
    them too) ✗ among verified ones and said nothing more; under a head the log's key did not
    sign, every entry so, and nothing said why: a resident shown a forged entry was told
    nothing plain. Each says TAMPERED and names it (in the page's language), as the console
    does, or says the head is not the log's key's; a page without either says nothing of it."""
    store = fakes_of(client).store
    assert store
    person = town.resident.id_codes[0]
    store.append_many(item(event(n, person=person)) for n in (1, 2))
    signed = store.head()
    store.append_many([item(event(4, person=person))])
    forged, db = event(9, person=person), f"sqlite:///{tmp_path / 'audit.db'}"
    tamper(db, ("DELETE FROM entries WHERE serial = 2", ()),
           (_INSERT, _row(2, forged, CODEC.encode(forged))))
    said = words(lang)
    line = f'id="tampered">{escape(said["history_tampered"].format(which="2"))}</p>'
    untrusted = f'id="tampered">{escape(said["history_head_untrusted"])}</p>'

    def marks(page: str) -> dict[str, str]:
        return {request: mark for request, mark in re.findall(
            r'<tr data-request="(req-\d+)">.*?<span class="(ok|pending|bad)"', page, re.DOTALL)}

    async def shown(path: str, query: dict[str, str] | None = None) -> str:
        return await (await client.get(path, params=query or {})).text()

    await logged_in(client, town, "resident", tmp_path)
    await switched(client, lang)
    page = await shown("/history")
    assert marks(page) == {"req-0007": "ok", "req-0001": "ok", "req-0009": "bad",
                                 "req-0004": "pending"}
    assert line in page
    assert line in await shown("/history/2")
    for alone in ("/history/1", "/history/3"):
        assert 'id="tampered"' not in await shown(alone), alone
    page = await shown("/history", {"holder": "pension"})
    assert marks(page) == {"req-0007": "ok"} and 'id="tampered"' not in page
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    await switched(client, lang)
    assert line in await shown("/counter")
    printed = await client.post("/counter/print", data={"csrf": await csrf_of(client, "/counter")})
    assert line in await printed.text()
    await logged_in(client, town, "resident", tmp_path)
    await switched(client, lang)
    head_not_the_logs(db, signed.head)
    page = await shown("/history", {"holder": "pension"})
    assert marks(page) == {"req-0007": "bad"} and untrusted in page
    assert untrusted in await shown("/history/0")


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_an_operator_action_replaced_whole_is_said_tampered_on_the_actions_page(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """The console's operator actions page marked an action replaced whole (another action's
    columns and bytes) not verified, among verified ones, and said nothing more; under a head
    the log's key did not sign, every action so, and nothing said why. The page says TAMPERED
    and names the action (in the page's language), as `audit actions` does, or says the head
    is not the log's key's; a page without either says nothing of it."""
    store = fakes_of(client).store
    assert store
    acts = actions_of(5)
    store.append_many(map(item, acts[:3]))
    signed = store.head()
    store.append_many([item(acts[3])])
    db = f"sqlite:///{tmp_path / 'audit.db'}"
    tamper(db, ("DELETE FROM operator_actions WHERE serial = 2", ()),
           (_ACT, _action_row(2, acts[4], CODEC.encode(acts[4]))))
    await logged_in(client, town, "oversight", tmp_path)
    await switched(client, lang)
    said = words(lang)

    async def marks(query: dict[str, str]) -> tuple[dict[str, str], str]:
        page = await (await client.get("/oversight/actions", params=query)).text()
        return {action: "ok" if 'class="ok"' in row else "bad" if 'class="bad"' in row
                else "pending" if said["verified_pending"] in row else "" for action, row in
                re.findall(r'<tr data-action="([^"]+)">(.*?)</tr>', page, re.DOTALL)}, page

    shown, page = await marks({})
    assert shown == {"SUSPEND@0000": "ok", "RENEW@0004": "bad", "REGISTER@0002": "ok",
                     "REKEY@0003": "pending"}
    line = said["actions_tampered"].format(which="RENEW@0004")
    assert f'id="tampered">{escape(line)}</p>' in page
    shown, page = await marks({"action": "SUSPEND"})
    assert shown == {"SUSPEND@0000": "ok"}
    assert 'id="tampered"' not in page
    head_not_the_logs(db, signed.head)
    shown, page = await marks({"action": "SUSPEND"})
    assert shown == {"SUSPEND@0000": "bad"}
    assert f'id="tampered">{escape(said["head_untrusted"])}</p>' in page


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_a_holder_or_unit_no_action_is_on_is_said_on_the_actions_page(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """The console's actions page for a holder or link-code unit no operator action is on (a
    name mistyped) answered "No operator actions.", as for a holder no operator acted on: the
    page says no action of the log is on it, in the page's language, with the holders and units
    actions are on nearest it, as typed (escaped); one actions are on, its page empty by the
    other filters, is not."""
    store = fakes_of(client).store
    assert store
    store.append_many([item(OperatorAction("SUSPEND@a1", T0 + timedelta(hours=1), "ops-a",
                                           "SUSPEND", "city-a", None))])
    await logged_in(client, town, "oversight", tmp_path)
    said = words(lang)
    await switched(client, lang)
    for typed, nearest in (('<b>"nobody"</b>', ""), ("City-A", "city-a")):
        page = await (await client.get("/oversight/actions", params={"holder": typed})).text()
        line = said["action_subject_unacted"].format(holder=typed)
        if nearest:
            line += " " + said["holder_nearest"].format(names=nearest)
        assert f'id="unnamed-holder">{escape(line)}</p>' in page and "<b>" not in page
    page = await (await client.get("/oversight/actions", params={"holder": "city-a",
                                                                 "action": "RENEW"})).text()
    assert said["actions_none"] in page and 'id="unnamed-holder"' not in page

FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("path", [LOGIN_START, READER_RETURN])  # a page's form; the reader's
@pytest.mark.parametrize("body, content_type", [
    (b"csrf=\xff\xfe&realm=resident", FORM),  # not UTF-8
    (b"csrf=x&realm=resident", f"{FORM}; charset=bogus"),  # a charset no one knows
    (b"csrf=x", "multipart/form-data"),  # no boundary
    (b"garbage", "multipart/form-data; boundary=xx")])  # no parts
async def test_a_body_that_is_no_form_is_refused_quoting_none_of_it(
        client: Client, caplog: pytest.LogCaptureFixture, path: str, body: bytes,
        content_type: str) -> None:
    """A form aiohttp cannot read went out as a 500, its traceback logged (aiohttp's error
    quoting the body's bytes, a forged card's return anyone may post); it is a 400, logged in
    one line that names the path and what aiohttp could not read, none of the body."""
    with caplog.at_level(logging.INFO):
        answer = await client.post(path, data=body, headers={"Content-Type": content_type},
                                   allow_redirects=False)
    assert answer.status == 400, await answer.text()
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in said] == [
        f"refused a form to {path} from 127.0.0.1"], said
    assert not any(r.exc_info for r in caplog.records)
    assert not any(part in r.getMessage() for r in said
                   for part in ("resident", "garbage", "bogus", "\xff"))


@pytest.mark.parametrize("next_page", ["http://[x", "//[x", "//ex\u2101ample"])
async def test_a_language_link_back_to_no_address_goes_home_not_to_an_error(
        client: Client, next_page: str) -> None:
    """urlsplit raises ValueError for an address no URL can be (an unclosed IPv6 host, a host
    that NFKC-normalises to another): the link any site may send went out as a 500."""
    sent = await client.get(f"/lang/en?{urlencode({'next': next_page})}", allow_redirects=False)
    assert (sent.status, sent.headers["Location"]) == (303, "/")


SIGNED_IN = [("resident", "/history", "/login"), ("counter", "/counter", "/login?as=counter")]


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("realm, page, login", SIGNED_IN)
async def test_a_revoked_card_ends_its_sessions(client: Client, town: Town, realm: str,
                                                page: str, login: str, lang: str) -> None:
    """Revoking a card signs out the sessions it signed in, at their next request: they stayed
    signed in up to 15 minutes idle, an hour in all. The login page it goes to says the card's
    certificate was revoked, in the session's language; it said the session had been idle."""
    card = town.resident_card if realm == "resident" else town.staff_card
    await switched(client, lang)
    assert (await card_login(client, card, realm, login)).status == 303
    assert (await client.get(page, allow_redirects=False)).status == 200
    issue.revoke(card.face.serial)
    signed_out = await client.get(page, allow_redirects=False)
    assert (signed_out.status, signed_out.headers["Location"]) == (303, login)
    said = html.unescape(await (await client.get(login)).text())
    assert words(lang)["session_revoked"] in said and words(lang)["expired_session"] not in said
    assert (await client.get(page, allow_redirects=False)).status == 303  # not again later
    assert len(cast(TestServer, client.server).app[SESSIONS]) == 1  # a new anonymous one


def uncheckable(authority: str, reason: str, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the CA's revocation list stale (signed by it, past its next update: stale-crl), not
    there (no-crl), or the other CA's (bad-crl)."""
    if reason == "stale-crl":
        monkeypatch.setattr(ca, "CRL_DAYS", -30 / 86_400)  # 30 s ago, after its last update
        ca.Authority.load(authority).publish_crl()
        return
    crl_path = ca.crl_path
    other = (tmp_path / "none.pem" if reason == "no-crl"
             else crl_path(ca.OFFICERS if authority == ca.JPKI else ca.JPKI))
    monkeypatch.setattr(ca, "crl_path", lambda name: other if name == authority else crl_path(name))


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("reason", ["stale-crl", "no-crl", "bad-crl"])
@pytest.mark.parametrize("realm, page, login", SIGNED_IN)
async def test_a_session_whose_revocation_list_cannot_be_checked_ends_saying_so(
        client: Client, town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, realm: str, page: str, login: str, reason: str,
        lang: str) -> None:
    """The card's CA's revocation list goes stale, away or wrong while a session it signed in
    goes on: the session ends (failing closed, as the login does), the login page saying in the
    session's language that the card's revocation status cannot be checked now and to log in
    again later, not that the card was revoked nor that the session was idle; the operator is
    told once per cause, not at each check, and once when the list can be checked again."""
    card, authority = ((town.resident_card, ca.JPKI) if realm == "resident"
                       else (town.staff_card, ca.OFFICERS))
    await switched(client, lang)
    assert (await card_login(client, card, realm, login)).status == 303
    uncheckable(authority, reason, tmp_path, monkeypatch)
    signed_out = await client.get(page, allow_redirects=False)
    assert (signed_out.status, signed_out.headers["Location"]) == (303, login)
    said = html.unescape(await (await client.get(login)).text())
    assert words(lang)["session_crl"] in said
    assert words(lang)["session_revoked"] not in said
    assert words(lang)["expired_session"] not in said
    assert (await card_login(client, card, realm, login)).status == 403  # not now
    told = [r.getMessage() for r in caplog.records if r.name == "cards.login"]
    assert told == [f"the {authority} CA's revocation list cannot be checked ({reason}): its "
                    "cards are refused until it can"]
    monkeypatch.undo()
    ca.Authority.load(authority).publish_crl()
    assert (await card_login(client, card, realm, login)).status == 303
    assert (await client.get(page, allow_redirects=False)).status == 200
    told = [r.getMessage() for r in caplog.records if r.name == "cards.login"]
    assert told[1:] == [f"the {authority} CA's revocation list can be checked again"]


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("reason", ["stale-crl", "no-crl", "bad-crl"])
async def test_a_counter_visitor_whose_revocation_list_cannot_be_checked_is_no_longer_served(
        client: Client, town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        reason: str, lang: str) -> None:
    """The JPKI CA's list cannot be checked while a visitor is served at the counter: their part
    ends, the desk saying their card's revocation status cannot be checked now (not that it was
    revoked); the staff member, whose card's CA's list is fine, stays signed in."""
    await switched(client, lang)
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    uncheckable(ca.JPKI, reason, tmp_path, monkeypatch)
    desk = await client.get("/counter", allow_redirects=False)
    shown = html.unescape(await desk.text())
    assert desk.status == 200 and town.resident.name not in shown
    assert words(lang)["present_crl"] in shown and words(lang)["present_revoked"] not in shown
    assert 'data-request="req-0007"' not in shown
    assert (await client.get("/counter", allow_redirects=False)).status == 200, "staff stay"
    assert town.kafka.written == [("COUNTER_VIEWED", town.resident.id_codes[0])]


async def test_the_oversight_body_asks_for_the_holder_logs_of_the_requests_it_chose(
        client: Client, town: Town, tmp_path: Path) -> None:
    """A checkbox's value was "request_id requester provider", split on spaces: a holder's
    request id is free text, and one with a space asked for holder-side logs under the wrong
    id, of holders the id named. It is now the entry's serial, looked up in the audit log; and
    each holder was told every chosen request id, learning of exchanges it had no part in: each
    is asked only of its own."""
    store = fakes_of(client).store
    assert store
    spaced = replace(event(8), request_id="req-1 acme-kenpo",
                     event_id=event_id("req-1 acme-kenpo", "approved"))
    store.append(*item(spaced))
    earlier = replace(event(9), request_id="ov-1",
                      event_id=event_id("ov-1", "oversight@tax-office"), kind="OVERSIGHT",
                      outcome="REQUESTED", requester=acls.OVERSIGHT,
                      provider="tax-office")  # the oversight body's own request, logged
    store.append(*item(earlier))
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    page = await (await client.get("/oversight")).text()
    chosen = re.findall(r'name="chosen"[^>]* value="([^"]+)"', page)
    csrf = await csrf_of(client, "/oversight")

    async def ask(values: list[str]) -> int:
        return (await client.post("/oversight/holder-logs", allow_redirects=False, data=[
            ("csrf", csrf), *(("chosen", v) for v in values)])).status

    assert (await ask(chosen), await ask(["99"])) == (303, 303)
    # each holder asked of the requests it took part in alone (not the oversight body, its own
    # request's requester: no holder, left out by the asking, test_portal_inbox)
    assert (event(7).requester, event(7).provider, spaced.requester, spaced.provider) == (
        "pension", "city-a", "city-a", "city-b")
    assert town.kafka.oversight.asked == [
        (["city-a"], ["req-0007", "req-1 acme-kenpo"]), (["city-b"], ["req-1 acme-kenpo"]),
        (["pension"], ["req-0007"]), (["tax-office"], ["ov-1"])], \
        "the chosen requests' ids and holders, as logged (a serial of no entry asks nobody)"
    assert await ask(["one"]) == 400


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_holder_logs_are_asked_about_proved_entries_alone(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """The console's request for holder-side logs read the chosen serials' entries as the
    store's rows say them, unproved: a row replaced whole (another event's columns and bytes)
    between the search page and the request, or a serial the page did not offer, had holders
    asked about an exchange that was never logged. Each is read again and proved: one that is
    not has nothing asked, the page saying TAMPERED and naming it (in the page's language), or
    that the head is not the log's key's; proved ones are asked about as before."""
    store = fakes_of(client).store
    assert store
    store.append_many(item(event(n)) for n in (1, 2))
    signed = store.head()
    await logged_in(client, town, "oversight", tmp_path)
    await switched(client, lang)
    said = words(lang)
    chosen = re.findall(r'name="chosen"[^>]* value="([^"]+)"',
                        await (await client.get("/oversight")).text())
    assert sorted(chosen) == ["0", "1", "2"]
    csrf = await csrf_of(client, "/oversight")
    forged, db = event(9), f"sqlite:///{tmp_path / 'audit.db'}"
    tamper(db, ("DELETE FROM entries WHERE serial = 2", ()),
           (_INSERT, _row(2, forged, CODEC.encode(forged))))

    async def ask(values: list[str]) -> tuple[int, str]:
        asked = await client.post("/oversight/holder-logs", allow_redirects=False, data=[
            ("csrf", csrf), *(("chosen", v) for v in values)])
        return asked.status, await asked.text()

    status, page = await ask(chosen)
    assert status == 409 and town.kafka.oversight.asked == []
    assert f'id="tampered">{escape(said["search_tampered"].format(which="2"))}</p>' in page
    assert escape(said["chosen_unproved"]) in page
    assert (await ask(["0", "1"]))[0] == 303
    asked = list(town.kafka.oversight.asked)
    assert {r for _, requests in asked for r in requests} == {"req-0007", "req-0001"}
    head_not_the_logs(db, signed.head)
    status, page = await ask(["0"])
    assert status == 409 and f'id="tampered">{escape(said["head_untrusted"])}</p>' in page
    assert town.kafka.oversight.asked == asked, "nothing asked since"


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_no_application_is_taken_for_an_entry_not_proved(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """A resident's application was built on their entry as the store's row says it, unproved:
    one replaced whole (another event of theirs, columns and bytes) was offered an application
    and had its holders asked about an exchange that was never logged. Its page says TAMPERED
    and offers none, and one posted is refused in the page's language, nothing asked; under a
    head the log's key did not sign, none is taken; a proved one is taken as before."""
    store = fakes_of(client).store
    assert store
    person = town.resident.id_codes[0]
    store.append_many([item(event(1, person=person))])
    signed = store.head()
    await logged_in(client, town, "resident", tmp_path)
    await switched(client, lang)
    assert 'id="apply"' in await (await client.get("/history/1")).text()
    forged, db = event(9, person=person), f"sqlite:///{tmp_path / 'audit.db'}"
    tamper(db, ("DELETE FROM entries WHERE serial = 1", ()),
           (_INSERT, _row(1, forged, CODEC.encode(forged))))

    async def apply(serial: int) -> tuple[int, str]:
        applied = await client.post("/details", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/history"), "serial": str(serial)})
        return applied.status, await applied.text()

    assert 'id="apply"' not in await (await client.get("/history/1")).text()
    status, page = await apply(1)
    assert status == 409 and escape(words(lang)["entry_unproved"]) in page
    assert town.kafka.applications.asked == [] and town.kafka.written == []
    assert (await apply(0))[0] == 303
    assert [requests for _, requests in town.kafka.applications.asked] == [["req-0007"]]
    head_not_the_logs(db, signed.head)
    assert 'id="apply"' not in await (await client.get("/history/0")).text()
    assert (await apply(0))[0] == 409
    assert len(town.kafka.applications.asked) == 1, "nothing asked since"


@pytest.mark.parametrize("typed", ["rejected", "Rejected", " REJECTED "])
async def test_the_console_matches_an_outcome_as_logged_whatever_the_case_typed(
        client: Client, tmp_path: Path, typed: str) -> None:
    """An outcome typed on the console as said (rejected) answered an empty page, as if no
    request had been rejected: the log says every outcome upper case; it is matched so, and
    kept in the form as typed."""
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    assert event(7).outcome == "REJECTED"
    answer = await client.get("/oversight", params={"outcome": typed})
    page = await answer.text()
    assert answer.status == 200 and 'data-request="req-0007"' in page
    assert f'name="outcome" value="{typed.strip()}"' in page
    other = await (await client.get("/oversight", params={"outcome": "approved"})).text()
    assert 'data-request="req-0007"' not in other


async def test_entries_of_the_portals_own_actions_chosen_are_left_out_and_the_page_says_so(
        client: Client, town: Town, tmp_path: Path) -> None:
    """Entries of the portal's own actions in a selection (a change of number, an application:
    no exchange between holders) were dropped from it without a word, and a selection of them
    alone went back to the search: the holder-logs page says how many were left out and why,
    the other entries asked about, none if none is left."""
    store = fakes_of(client).store
    assert store
    own = [store.append(*item(replace(event(n), kind="PORTAL", outcome=outcome,
                                      requester=acls.PORTAL, provider=provider)))
           for n, outcome, provider in ((8, "NUMBER_CHANGE_ASKED", acls.AUTHORITY),
                                        (9, "DETAIL_APPLIED", HOLDERS[0]))]
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303

    async def ask(serials: Sequence[int | None], lang: str) -> str:
        await switched(client, lang)
        asked = await client.post("/oversight/holder-logs", data=[
            ("csrf", await csrf_of(client, "/oversight")), *(("chosen", str(n)) for n in serials)])
        assert asked.status == 200 and asked.url.path == "/oversight/holder-logs"
        return await asked.text()

    page = await ask([0, *own], "ja")
    assert words("ja")["portal_left_out"].format(count=2) in page
    assert [ids for _, ids in town.kafka.oversight.asked] == [["req-0007"]], "the other asked"
    page = await ask(own[1:], "en")
    assert words("en")["portal_left_out"].format(count=1) in page
    assert len(town.kafka.oversight.asked) == 1, "none left: none asked"
    assert 'id="left-out"' not in await (await client.get("/oversight/holder-logs")).text()


async def test_a_holder_that_has_not_answered_in_time_is_named_with_the_time_it_was_due(
        client: Client, town: Town, tmp_path: Path) -> None:
    """A holder that never answered (its server down, or no longer a holder, whose request the
    platform never passed on) left its request "waiting" for good, the page reloading every
    2 s: once ANSWER_WITHIN is past, each holder not answered is named with the time it was
    due, and the page no longer reloads; a holder still in time is waited for as ever."""
    at = datetime.now(UTC) - ANSWER_WITHIN - timedelta(seconds=1)
    late = Asked("ov-late", at, ("city-a", "city-b"), ("req-0007",), None, {"city-a": b""})
    town.kafka.oversight.kept = [
        Shown(late, {"city-a": ()}, overdue=overdue(late, datetime.now(UTC))),
        Shown(replace(late, request_id="ov-now", at=datetime.now(UTC)), {"city-a": ()})]
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    page = await (await client.get("/oversight/holder-logs")).text()
    told = words("ja")["overdue"].format(at=html.escape(local_time(late.answer_by)))
    assert re.findall(r'data-overdue="([^"]+)"', page) == ["city-b"] and told in page
    assert re.findall(r'id="(ov-[a-z]+)"( data-refresh)?', page) == [
        ("ov-late", ""), ("ov-now", " data-refresh")]


async def test_entries_naming_no_holder_ask_nobody_and_the_page_says_so(
        client: Client, town: Town, tmp_path: Path) -> None:
    """Every name on the chosen entries a service's (the oversight body refused on its own
    topic): the request, sent naming no holder, showed as complete with nothing in it. Now none
    is sent, and the page says why."""
    store = fakes_of(client).store
    assert store
    refused = store.append(*item(replace(event(8), kind="OVERSIGHT", outcome="REJECTED",
                                         requester=acls.OVERSIGHT, provider=None)))
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    console = await client.post("/oversight/holder-logs", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/oversight"), "chosen": str(refused)})
    assert console.status == 400 and words("ja")["no_holder"] in await console.text()
    assert town.kafka.oversight.asked == []


async def test_the_console_asks_the_active_holders_and_shows_the_inactive_ones_as_such(
        client: Client, town: Town, tmp_path: Path) -> None:
    """The console refused a whole request if one holder in it was suspended (or never a
    holder): it asks the active ones, and the next page names each other one as not asked,
    inactive since when."""
    town.kafka.suspended.add("city-a")
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    page = await (await client.get("/oversight")).text()
    chosen = re.findall(r'name="chosen"[^>]* value="([^"]+)"', page)
    console = await client.post("/oversight/holder-logs", data=[
        ("csrf", await csrf_of(client, "/oversight")), *(("chosen", v) for v in chosen)])
    text = html.unescape(await console.text())
    assert console.status == 200 and re.findall(r'data-inactive="([^"]+)"', text) == ["city-a"]
    assert words("ja")["not_asked_inactive"].format(
        name="city-a", holder="city-a", since=local_time(T0)) in text
    asked = {h for holders, _ in town.kafka.oversight.asked for h in holders}
    assert asked and "city-a" not in asked


async def test_no_application_is_taken_for_an_entry_of_the_portals_own_action(
        client: Client, town: Town) -> None:
    """The entry of a change of number (the portal asked the authority) or of an application
    (the portal asked a holder) offers no application, and a POST of its serial is refused in
    the page's language before anything is asked: an application's entry once asked its holder
    about the portal's own request."""
    store = fakes_of(client).store
    assert store
    person = town.resident.id_codes[0]
    change = store.append(*item(replace(event(9, person=person), kind="PORTAL",
                                        outcome="NUMBER_CHANGE_ASKED", requester=acls.PORTAL,
                                        provider=acls.AUTHORITY)))
    application = store.append(*item(replace(event(10, person=person), kind="PORTAL",
                                             outcome="DETAIL_APPLIED", requester=acls.PORTAL,
                                             provider=HOLDERS[0])))
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    for serial, lang in ((application, "ja"), (change, "ja"), (application, "en")):
        await switched(client, lang)
        page = await client.get(f"/history/{serial}")
        assert page.status == 200 and 'id="apply"' not in await page.text()
        applied = await client.post("/details", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/history"), "serial": str(serial)})
        assert applied.status == 400, applied.status
        assert words(lang)["not_an_exchange"] in await applied.text()
    assert town.kafka.applications.asked == [] and town.kafka.written == []


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_a_refusal_in_a_holders_stead_is_worded_in_the_pages_language(
        client: Client, town: Town, lang: str) -> None:
    """The platform's refusal to ask a holder was its English sentence, shown inside the
    Japanese one: it carries why (SUSPENDED, NOT_LISTED) and since when, and the page words it
    in its own language, the date in JST as its other dates."""
    asked = Asked("ap-1", T0, ("city-a", "city-b"), ("req-0001",), town.resident.id_codes[0])
    town.kafka.applications.kept = [Shown(asked, {}, {"city-a": "refused", "city-b": "refused"},
                                          refused={
        "city-a": HolderLogAnswer("ap-1", "city-a", T0, (), refused=SUSPENDED, inactive_since=T0),
        "city-b": HolderLogAnswer("ap-1", "city-b", T0, (), refused=NOT_LISTED)})]
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    await switched(client, lang)
    page = html.unescape(await (await client.get("/details")).text())
    said = words(lang)
    assert said["unsent_refused_SUSPENDED"].format(since=local_time(T0)) in page
    assert said["unsent_refused_NOT_LISTED"] in page
    assert "since" not in page if lang == "ja" else "停止" not in page


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_a_refusal_in_a_holders_stead_is_worded_on_the_console_in_its_language(
        client: Client, town: Town, tmp_path: Path, lang: str) -> None:
    """The console's holder-logs page words the platform's refusal as My Portal does."""
    asked = Asked("ov-1", T0, ("city-a",), ("req-0001",), None, {"city-a": b""})
    town.kafka.oversight.kept = [Shown(asked, {}, {"city-a": "refused"}, refused={
        "city-a": HolderLogAnswer("ov-1", "city-a", T0, (), refused=SUSPENDED, inactive_since=T0)})]
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    await switched(client, lang)
    page = html.unescape(await (await client.get("/oversight/holder-logs")).text())
    assert words(lang)["unsent_refused_SUSPENDED"].format(since=local_time(T0)) in page


@pytest.mark.parametrize("lang", ["ja", "en"])
async def test_a_holders_entries_are_shown_in_the_pages_words_and_time(
        client: Client, town: Town, lang: str) -> None:
    """A holder's answer to an application showed its entries' side and outcome as their codes
    (REQUESTER, FOUND) and their time as the holder's UTC text, beside the page's JST dates (a
    request made at 17:00 in Japan shown at 08:00): each is in the page's words, the time in JST
    as its other times, the code kept in a title; text that is no time stays as it is."""
    at = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    asked = Asked("ap-1", T0, ("city-a",), ("req-0001",), town.resident.id_codes[0],
                  {"city-a": b""})
    entries = (HolderLogEntry("req-0001", at.isoformat(timespec="milliseconds"), "REQUESTER",
                              "", "", "city-b", "P1", "income", None, "課税", "FOUND"),
               HolderLogEntry("req-0001", "2026-12-07T08:00:01", "PROVIDER", "", "", "city-a",
                              "P1", "income", None, None, "UNREADABLE"),
               HolderLogEntry("req-0001", "not a time", "PROVIDER", "", "", "city-a", "P1",
                              "income", None, None, "TIMED_OUT"))
    town.kafka.applications.kept = [Shown(asked, {"city-a": entries})]
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    await switched(client, lang)
    page = html.unescape(await (await client.get("/details")).text())
    rows = [[re.sub(r"<[^>]*>", "", c) for c in re.findall(r"<td [^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", page.split('class="answers"')[1], re.S)]
    said = partial(_said, lang)
    assert [(side, time, outcome) for side, time, _, _, outcome in rows[1:]] == [
        (said("REQUESTER"), local_time(at), said("FOUND")),
        (said("PROVIDER"), local_time(at + timedelta(seconds=1)), said("UNREADABLE")),
        (said("PROVIDER"), "not a time", said("TIMED_OUT"))]


def _said(lang: str, code: str) -> str:
    """A code in `lang`'s words as the pages say it, checked to be no longer the code."""
    worded = i18n.said(lang)(code)
    assert worded != code
    return worded


async def test_an_application_every_holder_of_which_was_refused_shows_as_refused(
        client: Client, town: Town) -> None:
    """An application the platform refused to pass to each of its holders showed as "answered"
    (a refusal counts as an answer): it shows as refused; one a holder answered as answered."""
    person = town.resident.id_codes[0]
    refused, answered = (Asked(request_id, T0, ("city-a", "city-b"), ("req-0001",), person,
                               dict.fromkeys(("city-a", "city-b"), b""))
                         for request_id in ("ap-1", "ap-2"))
    refusal = HolderLogAnswer("ap-1", "city-a", T0, (), refused=SUSPENDED, inactive_since=T0)
    town.kafka.applications.kept = [
        Shown(refused, {}, dict.fromkeys(refused.holders, "refused"),
              refused={h: replace(refusal, holder=h) for h in refused.holders}),
        Shown(answered, {"city-b": ()}, {"city-a": "refused"}, refused={"city-a": refusal})]
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    for lang in ("ja", "en"):
        await switched(client, lang)
        page = await (await client.get("/details")).text()
        said = words(lang)
        statuses = re.findall(r'<p class="status">(.*?)</p>', page)
        assert len(statuses) == 2 and said["answered"] not in statuses[0], statuses
        assert said["all_refused"] in statuses[0] and said["answered"] in statuses[1]


async def test_an_application_names_when_its_exchange_was_approved_whatever_entry_it_is_from(
        client: Client, town: Town) -> None:
    """An application from the entry of a timeout logged long after its request (its decider
    down meanwhile) named that entry's time, around which a provider's entry of the id is of
    another use of it (another resident's data), its own perhaps not: it names the approval's
    time (the approved@ entry of its request id and copies name), whichever of the exchange's
    entries it is from; the approval not in the store (purged), it names none, and gets none
    of the provider's entries."""
    store = fakes_of(client).store
    assert store
    person, approved = town.resident.id_codes[0], T0 + timedelta(hours=1)

    def logged(step: str, at: datetime, outcome: str) -> int | None:
        return store.append(*item(replace(event(11, at, person), outcome=outcome,
                                          event_id=event_id("req-0011", step))))

    approval = logged("approved@00000000000000a1", approved, "APPROVED")
    late = logged("answered@00000000000000a1", approved + timedelta(minutes=5), TIMED_OUT)
    logged("approved@00000000000000b2", approved + timedelta(minutes=10), "APPROVED")
    unapproved = logged("answered@00000000000000c3", approved + timedelta(minutes=20), "FOUND")
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    for serial in (late, approval, unapproved):
        applied = await client.post("/details", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/history"), "serial": str(serial)})
        assert applied.status == 303, await applied.text()
    assert town.kafka.applications.exchanged == [(approved,), (approved,), ()]
    assert town.kafka.applications.requesters == [(HOLDERS[11 % 4],)] * 3  # each its own side


async def test_no_application_names_an_approval_not_proved(
        client: Client, town: Town, tmp_path: Path) -> None:
    """An application named when its exchange was approved as the approval's row said it,
    unproved: that row replaced whole (the same approval, another time: another use's of the
    request id) had the provider answer its entry of that use, another resident's data perhaps.
    The approval is read with its proof: one not proved, or under a head the log's key did not
    sign, has nothing asked, the page saying so; a proved one is named as before."""
    store = fakes_of(client).store
    assert store
    person, approved = town.resident.id_codes[0], T0 + timedelta(hours=1)
    approval = replace(event(11, approved, person), outcome="APPROVED",
                       event_id=event_id("req-0011", "approved@00000000000000a1"))
    serial = store.append(*item(approval))
    late = store.append(*item(replace(approval, occurred_at=approved + timedelta(minutes=5),
                                      outcome=TIMED_OUT, event_id=event_id(
                                          "req-0011", "answered@00000000000000a1"))))
    signed = store.head()
    assert serial is not None and late is not None
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303

    async def apply() -> tuple[int, str]:
        applied = await client.post("/details", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/history"), "serial": str(late)})
        return applied.status, await applied.text()

    assert (await apply())[0] == 303
    assert town.kafka.applications.exchanged == [(approved,)]
    forged, db = replace(approval, occurred_at=approved + timedelta(days=30)), \
        f"sqlite:///{tmp_path / 'audit.db'}"
    tamper(db, (f"DELETE FROM entries WHERE serial = {serial}", ()),
           (_INSERT, _row(serial, forged, CODEC.encode(forged))))
    status, page = await apply()
    assert status == 409 and escape(words("ja")["approval_unproved"]) in page
    assert town.kafka.applications.exchanged == [(approved,)], "nothing asked since"
    head_not_the_logs(db, signed.head)
    assert (await apply())[0] == 409 and len(town.kafka.applications.exchanged) == 1


async def test_an_application_or_entry_of_no_serial_is_the_portals_not_found_page(
        client: Client, town: Town) -> None:
    """An application posted without a serial (or with one that is no number), and an entry's
    address with no number, get the portal's "not found" page, as an entry not found does, not
    the server's bare text; nobody is asked."""
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    csrf = await csrf_of(client, "/history")
    for serial in ("", "abc", "99999999999999999999999"):
        applied = await client.post("/details", data={"csrf": csrf, "serial": serial})
        assert applied.status == 404 and words("ja")["not_found"] in await applied.text()
    shown = await client.get("/history/abc")
    assert shown.status == 404 and words("ja")["not_found"] in await shown.text()
    assert town.kafka.applications.asked == []


async def test_an_application_from_a_refused_request_asks_its_requester_alone(
        client: Client, town: Town) -> None:
    """A request refused (DUPLICATE: its id pending for another of the requester's requests,
    another resident's) never reached its provider, whose entry of that id is the other use's:
    an application from its entry asks the requester alone, and logs no application to the
    provider."""
    store = fakes_of(client).store
    assert store
    refused = store.append(*item(replace(
        event(13, person=town.resident.id_codes[0]), outcome="REJECTED",
        reason="DUPLICATE_REQUEST", event_id=event_id("req-0013", "rejected@city-b.out:0:5"))))
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    applied = await client.post("/details", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/history"), "serial": str(refused)})
    assert applied.status == 303, await applied.text()
    assert town.kafka.applications.asked == [([HOLDERS[1]], ["req-0013"])]
    assert town.kafka.written == [("DETAIL_APPLIED", town.resident.id_codes[0])]


async def test_an_application_sent_twice_asks_the_holders_once(
        client: Client, town: Town) -> None:
    """The application's form sent again (a double click, the page sent again) while the one
    it made awaits its holders' answers asks them no second time, nor logs a second
    application: it goes to the one asked. Once that is answered, the resident may ask again."""
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    applications = town.kafka.applications

    async def apply() -> ClientResponse:
        return await client.post("/details", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/history"), "serial": "0"})

    first = await apply()
    assert first.status == 303 and first.headers["Location"] == "/details#ask-0"
    asked = Asked("ask-0", datetime.now(UTC), tuple(applications.asked[0][0]), ("req-0007",),
                  town.resident.id_codes[0])
    applications.kept = [Shown(asked, {})]  # in the inbox, awaiting its answers
    again = await apply()
    assert again.status == 303 and again.headers["Location"] == "/details#ask-0"
    assert len(applications.asked) == 1 and len(town.kafka.written) == len(asked.holders)
    applications.kept = [Shown(replace(asked, answers=dict.fromkeys(asked.holders, b"")), {})]
    assert (await apply()).headers["Location"] == "/details#ask-1"


async def test_an_application_sent_twice_at_once_asks_the_holders_once(
        client: Client, town: Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two posts of the application's form at the same moment: the second comes while the first
    is being kept in the inbox and sent (not yet awaiting answers there), and goes to the list
    of applications, asking and logging nothing."""
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    applications, csrf = town.kafka.applications, await csrf_of(client, "/history")
    keeping, kept = asyncio.Event(), asyncio.Event()
    ask = applications.ask

    async def kept_slowly(*args: Any, **kwargs: Any) -> Asked:
        if not keeping.is_set():  # the first: the inbox keeps it until the second has come
            keeping.set()
            await kept.wait()
        return await ask(*args, **kwargs)

    monkeypatch.setattr(applications, "ask", kept_slowly)

    async def apply() -> ClientResponse:
        return await client.post("/details", allow_redirects=False,
                                 data={"csrf": csrf, "serial": "0"})

    first = asyncio.ensure_future(apply())
    await keeping.wait()
    again = await apply()
    kept.set()
    assert (await first).headers["Location"] == "/details#ask-0"
    assert again.status == 303 and again.headers["Location"] == "/details"
    assert len(applications.asked) == 1
    assert len(town.kafka.written) == len(applications.asked[0][0])


async def test_the_audit_consumers_write_lock_holds_up_no_history_and_it_is_as_ever(
        client: Client, town: Town, tmp_path: Path) -> None:
    """Another connection holding the audit store's write lock (the consumer's batch): the
    resident's history is read meanwhile, on the portal's read-only connections to the
    write-ahead logged store, the page it is with the store free. The test's portal read on the
    consumer's own connection, whose proofs sign heads: it waited for the lock."""
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    free_page = await (await client.get("/history")).text()
    with locked(tmp_path / "audit.db", "BEGIN IMMEDIATE", seconds=2):
        answer = await client.get("/history")
        with closing(sqlite3.connect(tmp_path / "audit.db", timeout=0)) as other, \
                pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")  # still held: read while it was
    assert answer.status == 200 and await answer.text() == free_page


async def test_the_history_is_said_unavailable_until_the_audit_store_is_there(
        client: Client, town: Town, tmp_path: Path) -> None:
    """Before the audit consumer made the store (or while it cannot be opened), the resident's
    history says it cannot be shown now; once the store is there, it is read, unrestarted. The
    page saying so in answer to a form (a visitor's history printed at the counter) switched
    language by getting the form's path (405): it goes to the home page."""
    signer, later = Signer.generate(), tmp_path / "later.db"
    fakes = fakes_of(client)
    fakes.records = Records(lambda: AuditStore(later, Signer(signer.public_key)))
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    away = await client.get("/history")
    assert away.status == 503 and words("ja")["history_unavailable"] in await away.text()
    assert (await client.get("/number")).status == 200
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    printed = await client.post("/counter/print", data={"csrf": await csrf_of(client, "/")})
    assert printed.status == 503 and await in_english(client, printed) == "/", "not /counter/print"
    AuditStore(later, signer).close()
    assert (await client.get("/history")).status == 200
    await fakes.records.close()


async def pages_of(client: Client, page: str) -> list[list[int]]:
    """The entries (by their event's number) each page shows, following its older link."""
    shown = []
    while True:
        text = await (await client.get(page)).text()
        shown.append([int(n) for n in re.findall(r'data-request="req-(\d+)"', text)])
        older = re.search(r'id="older" href="([^"]+)"', text)
        if older is None:
            return shown
        page = html.unescape(older.group(1))


async def test_a_long_history_is_shown_a_page_at_a_time_the_filter_kept(
        client: Client, town: Town) -> None:
    """The history shows its newest HISTORY_PAGE entries, the page after it the ones before
    them, the holder chosen kept from page to page: every entry was on one page (each read,
    decoded and proved, twice), the event loop rendering them all."""
    store = fakes_of(client).store
    assert store is not None
    numbers = range(7, 8 + 2 * HISTORY_PAGE)
    store.append_many(item(event(n, person=town.resident.id_codes[0])) for n in numbers[1:])
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    newest = list(reversed(numbers))
    assert await pages_of(client, "/history") == [
        newest[:HISTORY_PAGE], newest[HISTORY_PAGE:2 * HISTORY_PAGE], newest[2 * HISTORY_PAGE:]]
    theirs = [n for n in newest if HOLDERS[0] in (HOLDERS[n % 4], HOLDERS[(n + 1) % 4])]
    assert await pages_of(client, f"/history?holder={HOLDERS[0]}") == [
        theirs[:HISTORY_PAGE], theirs[HISTORY_PAGE:]]
    assert (await client.get("/history?after=nowhere")).status == 400


async def visitor_with_a_long_history(client: Client, town: Town) -> list[int]:
    """The resident, 2 * HISTORY_PAGE + 1 entries about them, present at the counter: their
    entries (by their event's number) newest first."""
    store = fakes_of(client).store
    assert store is not None
    numbers = range(7, 8 + 2 * HISTORY_PAGE)
    store.append_many(item(event(n, person=town.resident.id_codes[0])) for n in numbers[1:])
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    assert (await card_login(client, town.resident_card, "present", "/counter")).status == 303
    return list(reversed(numbers))


async def test_the_counter_shows_a_visitors_long_history_a_page_at_a_time(
        client: Client, town: Town) -> None:
    """The desk shows the visitor's newest HISTORY_PAGE entries, its link to the older ones
    keeping to the desk (its page after a number refused too): it showed every entry, each
    read, decoded and proved, on one page."""
    newest = await visitor_with_a_long_history(client, town)
    assert await pages_of(client, "/counter") == [
        newest[:HISTORY_PAGE], newest[HISTORY_PAGE:2 * HISTORY_PAGE], newest[2 * HISTORY_PAGE:]]
    refused = await client.post("/counter/number", data={"csrf": await csrf_of(client, "/counter")})
    older = re.search(r'id="older" href="([^"]+)"', await refused.text())
    assert refused.status == 400 and older is not None
    assert html.unescape(older.group(1)).startswith("/counter?after=")
    assert (await client.get("/counter?after=nowhere")).status == 400
    assert town.kafka.written == [("COUNTER_VIEWED", town.resident.id_codes[0])]


async def test_a_visitors_whole_history_is_printed_while_other_pages_are_served(
        client: Client, town: Town) -> None:
    """The print holds every entry of the visitor's history, and pages are served while it is
    rendered (a long history's rows): it was rendered on the event loop, every page waiting."""
    newest = await visitor_with_a_long_history(client, town)
    token = await csrf_of(client, "/counter")
    town.kafka.held = HOLDERS[3]  # in the visitor's entries: the print waits at its first row
    printing = asyncio.create_task(client.post("/counter/print", data={"csrf": token}))
    try:
        assert await asyncio.to_thread(town.kafka.holding.wait, 10)
        assert (await client.get("/counter")).status == 200
        assert not printing.done(), "a page served while the print is rendered"
    finally:
        town.kafka.free.set()
    printed = await printing
    shown = [int(n) for n in re.findall(r'data-request="req-(\d+)"', await printed.text())]
    assert printed.status == 200 and shown == newest
    assert town.kafka.written[-1] == ("COUNTER_PRINTED", town.resident.id_codes[0])


async def test_a_long_history_read_by_several_pages_at_once_is_shown_to_each(
        client: Client, town: Town) -> None:
    """Pages reading the audit store side by side (the portal's readers, each on a connection
    of its own) each show the history as it is read alone: the readers shared one connection,
    one's transaction begun inside another's, and pages failed."""
    store = fakes_of(client).store
    assert store is not None
    store.append_many(item(event(n, person=town.resident.id_codes[0]))
                      for n in range(8, 8 + 2 * HISTORY_PAGE))
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    alone = await (await client.get("/history")).text()
    pages = await asyncio.gather(*(client.get("/history") for _ in range(32)))
    assert [(page.status, await page.text() == alone) for page in pages] == [(200, True)] * 32


def test_the_pages_call_the_site_by_its_own_name() -> None:
    """A resident's application whose answer could not be sealed to the portal said マイナポータル
    (the government's portal) where the site calls itself マイポータル: every page's words
    name the site as it names itself."""
    ja, en = WORDS["site"]
    for said_ja, said_en in WORDS.values():
        assert "ポータル" not in said_ja.replace(ja, "") and "Portal" not in said_en.replace(en, "")


async def test_switching_language_keeps_the_pages_filter_and_cursor(client: Client,
                                                                     town: Town) -> None:
    """The language link went back to the page's path alone, its filter and cursor dropped (a
    resident looking at one holder's entries, an officer a page of a search, saw them all
    again): it goes back to the page as asked for (a page of the site alone, as ever:
    test_switching_language_goes_back_only_to_a_page_of_the_site)."""
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    page = f"/history?{urlencode({'holder': HOLDERS[0], 'since': '2020-01-01', 'after': '9:1'})}"
    shown = await client.get(page)
    link = re.search(r'href="([^"]+)"[^>]* id="lang"', await shown.text())
    assert shown.status == 200 and link
    switched = await client.get(html.unescape(link.group(1)), allow_redirects=False)
    back = urlsplit(switched.headers["Location"])
    assert (switched.status, back.path, parse_qs(back.query)) == (
        303, "/history", {"holder": [HOLDERS[0]], "since": ["2020-01-01"], "after": ["9:1"]})


async def test_another_sites_link_switches_no_sessions_language(client: Client,
                                                                 town: Town) -> None:
    """`GET /lang/en`, a link any site could send a resident's browser to, switched their
    session's language: it goes back to the page as ever, the language switched only by the
    link of the session's own page (or for a session the link itself begins)."""
    assert '<html lang="en">' in await (await client.get("/lang/en?next=/login")).text()
    assert (await card_login(client, town.resident_card, "resident", "/login")).status == 303
    for forged in ("", "?token=0", "?token=トークン"):
        sent = await client.get(f"/lang/ja{forged}")
        assert sent.status == 200 and '<html lang="en">' in await sent.text(), forged
    assert (await switched(client, "ja")).status == 303
    assert '<html lang="ja">' in await (await client.get("/history")).text()


async def test_the_holder_logs_asked_for_at_once_are_a_search_page_at_most(
        client: Client, town: Town, tmp_path: Path) -> None:
    """The holder-logs form took any number of chosen entries, each read from the audit store
    on the request's way: more than a search page's (the most the form offers) are refused with
    the page's words, nothing asked; a page's are asked about as ever."""
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    csrf = await csrf_of(client, "/oversight")

    async def ask(count: int) -> ClientResponse:
        return await client.post("/oversight/holder-logs", allow_redirects=False, data=[
            ("csrf", csrf), *(("chosen", "0") for _ in range(count))])

    refused = await ask(SEARCH_PAGE + 1)
    assert refused.status == 400
    assert words("ja")["too_many_chosen"] in html.unescape(await refused.text())
    assert town.kafka.oversight.asked == [], "nothing asked"
    assert (await ask(SEARCH_PAGE)).status == 303
    assert town.kafka.oversight.asked == [(["city-a", "pension"], ["req-0007"])]


async def test_a_card_login_behind_https_needs_no_cookie_on_the_readers_return(
        town: Town, tmp_path: Path) -> None:
    """Behind HTTPS the card reader's page (http://127.0.0.1) is another site, and a browser
    sends no SameSite=Lax cookie with its POST back: the portal found no session, and refused
    every login as an expired challenge. The return is kept with the challenge it names and the
    browser sent on by a top-level GET, which carries the cookie; a browser without the login's
    session's cookie following it is logged in to nothing. The cookie's name begins `__Host-`,
    so no sibling subdomain's page nor a plain-HTTP answer can plant one (one named without it
    is no session's)."""
    origin = "https://portal.example"
    site = Site(origin, READER, secure_cookies=True)
    records = Records(lambda: AuditStore(tmp_path / "audit.db", Signer.generate()))
    browser = TestClient(TestServer(portal_of(town, records, site=site)),
                         cookie_jar=DummyCookieJar())  # the cookies sent as a browser sends them

    async def opened() -> tuple[dict[str, str], str]:
        """A browser's first page: the cookie it sends back (Lax, Secure), the page's token."""
        page = await browser.get("/login")
        cookie = SimpleCookie(page.headers["Set-Cookie"])[f"__Host-{COOKIE}"]
        assert (cookie["samesite"], cookie["secure"], cookie["httponly"], cookie["path"],
                cookie["domain"]) == ("Lax", True, True, "/", "")
        token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert token
        return {"Cookie": f"{site.cookie}={cookie.value}"}, token.group(1)

    async with browser:
        own, token = await opened()
        started = await browser.post("/login/start", headers=own, allow_redirects=False,
                                     data={"csrf": token, "realm": "resident"})
        own = {"Cookie": f"{site.cookie}={started.cookies[site.cookie].value}"}  # renewed
        returned = await browser.post("/login/card", allow_redirects=False,
                                      data=signed_at_reader(town.resident_card, started, origin))
        assert returned.status == 303 and "Set-Cookie" not in returned.headers
        other, _ = await opened()
        for cookies in ({}, other):  # no session, or another browser's: refused, in it alone
            elsewhere = await browser.get(returned.headers["Location"], headers=cookies,
                                          allow_redirects=False)
            assert elsewhere.status == 403
        assert (await browser.get("/history", headers=other, allow_redirects=False)).status == 303
        home = await browser.get(returned.headers["Location"], headers=own,
                                 allow_redirects=False)
        assert (home.status, home.headers["Location"]) == (303, "/history")
        signed_in = {"Cookie": f"{site.cookie}={home.cookies[site.cookie].value}"}
        assert town.resident.name in await (await browser.get("/history", headers=signed_in)).text()
        planted = {"Cookie": f"{COOKIE}={home.cookies[site.cookie].value}"}  # a sibling's name
        assert (await browser.get("/history", headers=planted, allow_redirects=False)).status == 303
    await records.close()


async def answers_of(client: Client) -> list[ClientResponse]:
    """A page, a redirect, the card reader's return, a static file and a path with none."""
    return [await client.get("/login"),
            await client.get("/lang/en?next=/login", allow_redirects=False),
            await client.post("/login/card", allow_redirects=False, data={"challenge": "00"}),
            await client.get("/static/portal.css"), await client.get("/no-such-page")]


async def test_the_portal_behind_https_tells_browsers_to_come_only_over_https(
        client: Client, town: Town, tmp_path: Path) -> None:
    """Served over HTTPS, the portal sent no Strict-Transport-Security: a resident who typed its
    name was sent over plain HTTP first, where a network's man in the middle could keep them
    (its `__Host-` cookie Secure, but not the page they are shown). Every answer tells the
    browser to come over HTTPS alone for a year, its subdomains too; over plain HTTP (the
    demo), where a browser ignores it, none does."""
    for answer in await answers_of(client):
        assert "Strict-Transport-Security" not in answer.headers, answer.url
    site = Site("https://portal.example", READER, secure_cookies=True)
    records = Records(lambda: AuditStore(tmp_path / "audit.db", Signer.generate()))
    async with TestClient(TestServer(portal_of(town, records, site=site))) as secure:
        answers = await answers_of(secure)
        assert [a.status for a in answers] == [200, 303, 303, 200, 404]
        for answer in answers:
            assert answer.headers.get("Strict-Transport-Security") == (
                "max-age=31536000; includeSubDomains"), answer.url
    await records.close()


async def test_a_stray_or_forged_login_link_leaves_the_login_under_way(
        client: Client, town: Town) -> None:
    """A link to the reader's return naming another challenge (stray, forged, or not hex) used
    up the browser's pending one: the resident's login under way was refused when their card
    came back. It is refused alone; the login under way goes on."""
    started = await client.post("/login/start", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/login"), "realm": "resident"})
    for forged in ("00" * 32, "not-hex", ""):
        stray = await client.get(f"/login/signed?{urlencode({'challenge': forged})}",
                                 allow_redirects=False)
        assert stray.status == 403, forged
    returned = await client.post("/login/card", allow_redirects=False,
                                 data=signed_at_reader(town.resident_card, started, ORIGIN))
    home = await client.get(returned.headers["Location"], allow_redirects=False)
    assert (home.status, home.headers.get("Location")) == (303, "/history")


async def test_a_login_in_one_tab_leaves_another_tabs_login_under_way(
        client: Client, town: Town) -> None:
    """A resident with two tabs open starts a card login in each: the second cancelled the first,
    whose card, once back, was refused as taking too long. Each completes, in either order, the
    first after the second logged the browser in (its session renewed); past CHALLENGES_PENDING
    logins under way the oldest goes, and its tab is told that too many logins were started in
    this browser, to start again (not that it took too long, nor that it was not under way)."""
    async def start() -> ClientResponse:
        started = await client.post("/login/start", allow_redirects=False, data={
            "csrf": await csrf_of(client, "/login"), "realm": "resident"})
        assert started.status == 303
        return started

    async def completed(started: ClientResponse) -> ClientResponse:
        returned = await client.post("/login/card", allow_redirects=False,
                                     data=signed_at_reader(town.resident_card, started, ORIGIN))
        return await client.get(returned.headers["Location"], allow_redirects=False)

    first, second = await start(), await start()
    for tab in (second, first):
        home = await completed(tab)
        assert (home.status, home.headers.get("Location")) == (303, "/history")
    await client.post("/logout", data={"csrf": await csrf_of(client, "/history")})
    tabs = [await start() for _ in range(CHALLENGES_PENDING + 1)]
    replaced = await completed(tabs[0])
    said = html.unescape(await replaced.text())
    assert replaced.status == 403 and words("ja")["refused_too_many"] in said
    assert words("ja")["refused_not_under_way"] not in said
    assert (await completed(tabs[-1])).headers.get("Location") == "/history"


async def test_a_visitors_login_completes_only_while_counter_staff_are_logged_in(
        client: Client, town: Town, tmp_path: Path) -> None:
    """Counter staff start a visitor's login in one tab and log in as an oversight officer in
    another: the visitor's login, completed after, is refused, nothing looked up or logged."""
    async def start(realm: str, page: str) -> ClientResponse:
        return await client.post("/login/start", allow_redirects=False, data={
            "csrf": await csrf_of(client, page), "realm": realm})

    async def completed(card: Card, started: ClientResponse) -> ClientResponse:
        returned = await client.post("/login/card", allow_redirects=False,
                                     data=signed_at_reader(card, started, ORIGIN))
        return await client.get(returned.headers["Location"], allow_redirects=False)

    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, town.staff_card, "counter", "/login?as=counter")).status == 303
    visitor = await start("present", "/counter")
    assert (await completed(officer, await start("oversight", "/counter"))).status == 303
    assert (await completed(town.resident_card, visitor)).status == 403
    assert town.kafka.written == []


async def test_a_login_started_in_a_session_planted_in_another_browser_completes_in_none(
        client: Client, town: Town) -> None:
    """An attacker opens a session, plants its cookie in a resident's browser, starts a login
    in it and signs it with their own card, then sends the resident's browser the reader's return
    link: the resident was logged in as the attacker (their applications, their new number, the
    attacker's). The login's start renews the session, which the starting browser alone is
    given: the planted cookie names no login under way, and logs in to nothing."""
    await client.get("/login")
    planted = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    started = await client.post("/login/start", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/login"), "realm": "resident"})
    returned = await client.post("/login/card", allow_redirects=False,
                                 data=signed_at_reader(town.resident_card, started, ORIGIN))
    client.session.cookie_jar.clear()  # now the resident's browser, the attacker's cookie in it
    client.session.cookie_jar.update_cookies({COOKIE: planted})
    victim = await client.get(returned.headers["Location"], allow_redirects=False)
    assert victim.status == 403
    assert (await client.get("/history", allow_redirects=False)).status == 303, "not signed in"


async def test_a_session_planted_before_a_login_is_never_the_one_logged_in(
        client: Client, town: Town) -> None:
    """Cookie tossing on plain HTTP (the demo's; a sibling subdomain's page without `__Host-`):
    an attacker opens a session, plants its cookie in a resident's browser, and waits for them
    to log in with it. The login's start and its end each give the browser a new session id:
    neither the planted one nor the one the login was under way in is the one logged in."""
    def sid() -> str:
        return client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value

    await client.get("/login")
    planted = sid()
    started = await client.post("/login/start", allow_redirects=False, data={
        "csrf": await csrf_of(client, "/login"), "realm": "resident"})
    under_way = sid()
    returned = await client.post("/login/card", allow_redirects=False,
                                 data=signed_at_reader(town.resident_card, started, ORIGIN))
    done = await client.get(returned.headers["Location"], allow_redirects=False)
    assert (done.status, done.headers["Location"]) == (303, "/history")
    logged_in = sid()
    assert len({planted, under_way, logged_in}) == 3
    for known in (planted, under_way, logged_in):  # in the attacker's browser
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({COOKIE: known})
        history = await client.get("/history", allow_redirects=False)
        assert history.status == (200 if known == logged_in else 303), known


async def test_the_oversight_console_lists_the_operator_actions_in_words(
        client: Client, town: Town, tmp_path: Path) -> None:
    """The console never showed the operator actions (a holder suspended, resumed, registered,
    its keys renewed, a unit re-keyed): the oversight body saw them only through a replay of the
    whole audit topic. Its page lists them newest first, each worded in the page's language,
    with who did it, to which holder or unit, when and why, checked against the signed head;
    filtered by holder and action."""
    store = fakes_of(client).store
    assert store
    suspended = OperatorAction("SUSPEND@a1", T0 + timedelta(hours=1), "ops-a", "SUSPEND",
                               "city-a", "情報漏えいの疑い")
    renewed = OperatorAction("RENEW@a2", T0 + timedelta(hours=2), "ops-b", "RENEW", "city-b",
                             None)
    store.append_many([item(suspended), item(renewed)])
    store.sign_head()
    officer = issue.officer_card("ppc-1", "oversight", "oversight", PIN, tmp_path)
    assert (await card_login(client, officer, "oversight", "/login?as=oversight")).status == 303
    for lang in ("ja", "en"):
        await switched(client, lang)
        said_here = words(lang)
        page = html.unescape(await (await client.get("/oversight")).text())
        assert 'href="/oversight/actions"' in page and said_here["nav_actions"] in page
        shown = await client.get("/oversight/actions")
        text = html.unescape(await shown.text())
        assert shown.status == 200
        assert re.findall(r'data-action="([^"]+)"', text) == ["RENEW@a2", "SUSPEND@a1"]
        for words_of in (said_here["action_SUSPEND"], said_here["action_RENEW"], "ops-a",
                         "情報漏えいの疑い", local_time(suspended.occurred_at)):
            assert words_of in text, words_of
        assert text.count(said_here["verified_yes"]) == 2
        filtered = html.unescape(await (await client.get(
            "/oversight/actions?holder=city-a&action=SUSPEND")).text())
        assert re.findall(r'data-action="([^"]+)"', filtered) == ["SUSPEND@a1"]
    assert (await client.get("/oversight/actions?action=DROP")).status == 400
    assert (await client.get("/oversight/actions?after=x")).status == 400
    await switched(client, "ja")
