"""My Portal, the counter and the oversight console in a real browser (Debian's Chromium driven
by Playwright), on the real broker: card logins, the verified history, a detail application
answered by the holders, a new number, the counter, oversight search, holder logs and an alert.
Each test saves a screenshot in results/screenshots/."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from audit.heads import Signer
from audit.store import AuditStore, Entry, Query
from audit.store import default_path as audit_path
from authority.store import AuthorityStore
from authority.store import default_path as authority_path
from holders.client import HolderClient
from processors import keys
from processors.codes import CodeService
from renkei.exchanges import staff as staff_of
from renkei.town import Processes, Town
from tests.browser import ARGS, at_reader, card_login, chromium_installing, enter_pin, shot
from tests.kafka_helpers import free_port, renkei, spawn, stop

pytestmark = pytest.mark.asyncio(loop_scope="session")
Clients = dict[str, HolderClient]
PIN = "4321"
PURPOSE = "国民年金保険料の免除審査 <script>alert('x')</script>"


@dataclass(frozen=True)
class Person:
    resident_code: str
    id_code: str
    card: str
    request_id: str | None = None


@dataclass(frozen=True)
class Portal:
    url: str
    people: dict[str, Person]
    staff_card: str
    oversight_card: str


def _issue(*args: str, given: str = "") -> str:
    out = renkei("card", *args, env={"RENKEI_CARD_PIN": PIN}, input=given).stdout
    found = re.search(r"card ([0-9a-f]+) ", out)
    assert found, out
    return found.group(1)


def _audit() -> AuditStore:
    return AuditStore(audit_path(), Signer.public())


async def _signed(within: float = 30) -> None:
    """Once the audit consumer has signed a head over every entry in the store now (the portal
    signs none: it shows an entry after the latest head as awaiting the next)."""
    with _audit() as store:
        size = store.size()
    for _ in range(int(within / 0.2)):
        with _audit() as store:
            latest = store.heads()[-1:]
        if latest and latest[0].head.size >= size:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"no head over the store's {size} entries within {within} s")


async def _entries(id_code: str, want: int, kind: str | None = None,
                   outcomes: set[str] | None = None) -> list[Entry]:
    """The audit store's entries about a person, once `want` (of `kind`, with one of
    `outcomes`) have arrived."""
    found: list[Entry] = []
    for _ in range(150):
        with _audit() as store:
            found = list(store.query(Query(person=id_code), limit=1000).entries)
        if len([e for e in found if (kind is None or e.event.kind == kind)
                and (outcomes is None or e.event.outcome in outcomes)]) >= want:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"{want} entries of {kind} about {id_code} did not arrive: {found}")


async def _ask(client: HolderClient, own: str, purpose: str = "審査") -> str:
    staff, terminal = staff_of(client.holder)
    request_id = await client.request(own, "P-037", "sakura-town", "local_tax", purpose, staff,
                                      terminal)
    assert (await client.outcome(request_id, 30)).status == "FOUND"
    return request_id


def _wait_http(url: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def portal(clients: Clients, town: Town, platform: Processes, first_codes: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Portal]:
    """People with history and cards, officers' cards, the card reader and the portal running
    for this file's tests alone (the suite's other portals are refused while it runs)."""
    codes = CodeService(keys.load())
    nenkin, town_hall = clients["nenkin"], town.own_numbers("sakura-town")
    shared = [(code, own) for code, own in town.own_numbers("nenkin").items()
              if code in town_hall and nenkin.store.link_code(own)
              and clients["sakura-town"].store.link_code(town_hall[code])]
    renkei("card", "init")
    people = {}
    for name, (code, own) in zip(("alice", "bob", "carol", "dave"), shared, strict=False):
        request_id = await _ask(nenkin, own, PURPOSE if name == "alice" else "審査") \
            if name in ("alice", "bob") else None
        (id_code,) = codes.id_codes([first_codes[code]])
        assert isinstance(id_code, str)
        people[name] = Person(code, id_code, _issue("issue", given=code), request_id)
    for name in ("alice", "bob"):
        await _entries(people[name].id_code, 2)
    await _signed()
    staff = _issue("officer", staff_of("sakura-town")[0], "--holder", "sakura-town",
                   "--role", "counter")
    officer = _issue("officer", "ppc-officer-1", "--holder", "oversight", "--role", "oversight")
    port, reader_port = free_port(), free_port()
    url, reader = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{reader_port}"
    logs = tmp_path_factory.mktemp("portal")
    procs = [spawn("card", "reader", "--port", str(reader_port), "--trust", url,
                   log=logs / "reader.log"),
             spawn("portal", "--port", str(port), "--reader", reader, log=logs / "portal.log")]
    try:
        await asyncio.to_thread(_wait_http, f"{url}/login")
        await asyncio.to_thread(_wait_http, f"{reader}/sign?origin={url}&authority=jpki"
                                            f"&challenge=00&return={url}/login/card")
        yield Portal(url, people, staff, officer)
    finally:
        for proc in procs:
            stop(proc)


@pytest.fixture(scope="session")
def chromium() -> str:
    return chromium_installing().result()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=ARGS)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900},
                                        locale="ja-JP")
    opened = await context.new_page()
    yield opened
    await context.close()


async def test_card_login_with_the_right_pin_shows_the_verified_history(
        portal: Portal, page: Page) -> None:
    alice = portal.people["alice"]
    await page.goto(f"{portal.url}/login")
    await shot(page, "01-login")
    await at_reader(page, portal.url)
    await page.select_option("#card", alice.card)
    await page.fill("#pin", PIN)
    await shot(page, "02-card-reader-pin")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{portal.url}/history")
    rows = page.locator(f"tr[data-request='{alice.request_id}']")
    assert await rows.count() == 2  # approved and answered
    assert await page.locator(".bad").count() == 0, "every entry verifies against the head"
    assert await rows.first.locator(".ok").count() == 1
    text = await page.inner_text("main")
    assert "国民年金法" in text and "日本年金機構" in text
    assert "情報照会 · 承認" in text and "情報提供 · 該当あり" in text, "the log's codes in words"
    await shot(page, "03-history")
    await page.select_option("#holder", "nenkin")
    await page.click(".filters button")
    assert await page.locator("tbody tr").count() >= 2
    await page.fill("#since", "2000-01-01")
    await page.fill("#until", "2000-12-31")
    await page.click(".filters button")
    assert await page.locator("tbody tr").count() == 0, "nothing that long ago"
    await page.goto(f"{portal.url}/history")
    await page.click("#lang")
    assert "Who looked at your data" in await page.inner_text("h1")
    assert "Linkage request · approved" in await page.inner_text("main")
    await page.set_viewport_size({"width": 375, "height": 800})
    await shot(page, "04-history-phone-en")


async def test_keyboard_alone_logs_in(portal: Portal, page: Page) -> None:
    await page.goto(f"{portal.url}/login")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.focus("#card-login")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#pin")
    await page.select_option("#card", portal.people["bob"].card)
    await page.focus("#pin")
    await page.keyboard.type(PIN)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{portal.url}/history")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await shot(page, "18-keyboard-login")


async def test_a_wrong_pin_is_refused_by_the_card(portal: Portal, page: Page) -> None:
    bob = portal.people["bob"]
    await at_reader(page, portal.url)
    await enter_pin(page, bob.card, "0000")
    assert "あと2回" in await page.inner_text("#reader-error")
    await shot(page, "05-wrong-pin")
    await enter_pin(page, bob.card, PIN)
    await page.wait_for_url(f"{portal.url}/history")


async def test_three_wrong_pins_lock_the_card(portal: Portal, page: Page) -> None:
    carol = portal.people["carol"]
    await at_reader(page, portal.url)
    for _ in range(3):
        await enter_pin(page, carol.card, "9999")
    assert "ロック" in await page.inner_text("#reader-error")
    await enter_pin(page, carol.card, PIN)
    assert "ロック" in await page.inner_text("#reader-error"), "locked even for the right PIN"
    assert "/history" not in page.url
    await shot(page, "06-locked-card")
    assert "LOCKED" in renkei("card", "list").stdout


async def test_a_revoked_certificate_is_refused(portal: Portal, page: Page) -> None:
    dave = portal.people["dave"]
    renkei("card", "revoke", dave.card)
    await card_login(page, portal.url, dave.card, PIN)
    assert "失効" in await page.inner_text("#refused")
    await shot(page, "07-revoked")
    await page.goto(f"{portal.url}/history")
    assert page.url.endswith("/login"), "no session for a refused card"


async def test_a_detail_application_is_answered_end_to_end(portal: Portal, page: Page) -> None:
    alice = portal.people["alice"]
    await card_login(page, portal.url, alice.card, PIN)
    await page.locator(f"tr[data-request='{alice.request_id}'] a").first.click()
    assert await page.locator(".ok").count() == 1
    await shot(page, "08-entry-with-proof")
    await page.click("#apply")
    await page.wait_for_url(re.compile(r".*/details.*"))
    await page.wait_for_selector(".application .status .ok", timeout=30_000)
    answers = await page.inner_text(".application")
    assert "<script>alert('x')</script>" in answers, "the purpose (⑫), shown as text"
    assert await page.locator(".application script").count() == 0
    assert "taxable_income" in answers, "the content (⑪)"
    assert staff_of("nenkin")[0] not in answers, "operators (⑦) are for oversight only"
    await shot(page, "09-detail-answers")
    logged = await _entries(alice.id_code, 2, kind="PORTAL")
    outcomes = sorted(e.event.outcome for e in logged if e.event.kind == "PORTAL")
    assert outcomes.count("DETAIL_APPLIED") == 2
    for _ in range(50):
        logged = await _entries(alice.id_code, 4, kind="PORTAL")
        if sum(e.event.outcome == "DETAIL_ANSWERED" for e in logged) == 2:
            break
    assert {e.event.provider for e in logged if e.event.outcome == "DETAIL_ANSWERED"} == {
        "nenkin", "sakura-town"}


async def test_a_resident_never_sees_another_residents_entries(
        portal: Portal, page: Page) -> None:
    alice, bob = portal.people["alice"], portal.people["bob"]
    bobs = await _entries(bob.id_code, 2)
    await card_login(page, portal.url, alice.card, PIN)
    assert bob.request_id and bob.request_id not in await page.content()
    for entry in bobs:
        response = await page.goto(f"{portal.url}/history/{entry.serial}")
        assert response is not None and response.status == 404
    await shot(page, "10-other-residents-entry")
    csrf = await page.get_attribute("input[name=csrf]", "value")
    applied = await page.request.post(f"{portal.url}/details", form={
        "csrf": csrf or "", "serial": str(bobs[0].serial)}, max_redirects=0)
    assert applied.status == 404
    forged = await page.request.post(f"{portal.url}/details", form={
        "serial": str(bobs[0].serial)}, max_redirects=0)
    assert forged.status == 403, "no CSRF token, no action"
    oversight = await page.goto(f"{portal.url}/oversight")
    assert oversight is not None and "/login" in page.url, "a resident is no officer"


async def test_a_new_personal_number_is_issued_and_shown_once(
        portal: Portal, page: Page) -> None:
    alice = portal.people["alice"]
    numbers = AuthorityStore(authority_path())
    before = numbers.number_of(alice.resident_code)
    await card_login(page, portal.url, alice.card, PIN)
    await page.goto(f"{portal.url}/number")
    await page.fill("#reason", "カードを紛失したため")
    await page.check("#confirm")
    await page.click("#new-number")
    shown = (await page.inner_text("#number")).replace(" ", "")
    await shot(page, "11-new-number")
    after = numbers.number_of(alice.resident_code)
    numbers.close()
    assert shown == after and after != before and re.fullmatch(r"\d{12}", shown)
    await page.goto(f"{portal.url}/number")
    assert shown not in await page.content(), "shown once"
    await page.goto(f"{portal.url}/history")
    assert shown not in await page.content()
    logged = await _entries(alice.id_code, 1, kind="PORTAL", outcomes={"NUMBER_CHANGED"})
    assert before and any(e.event.outcome == "NUMBER_CHANGED" and before not in str(e.event)
               and shown not in str(e.event) for e in logged)


async def test_counter_staff_serve_a_present_resident(portal: Portal, page: Page) -> None:
    alice = portal.people["alice"]
    await card_login(page, portal.url, portal.staff_card, PIN, realm="counter")
    await page.wait_for_url(f"{portal.url}/counter")
    await page.click("#present-card")
    await page.wait_for_selector("#pin")
    await enter_pin(page, alice.card, PIN)
    await page.wait_for_url(f"{portal.url}/counter")
    assert await page.locator(f"tr[data-request='{alice.request_id}']").count() == 2
    await shot(page, "12-counter")
    await page.click("#print")
    assert await page.locator("#print-now").count() == 1
    await shot(page, "13-counter-print")
    logged = await _entries(alice.id_code, 2, kind="PORTAL",
                            outcomes={"COUNTER_VIEWED", "COUNTER_PRINTED"})
    counter = [e.event for e in logged if e.event.outcome.startswith("COUNTER_")]
    assert {e.outcome for e in counter} == {"COUNTER_VIEWED", "COUNTER_PRINTED"}
    assert all(e.requester == "sakura-town" and e.reason and staff_of("sakura-town")[0]
               in e.reason for e in counter)
    await page.goto(f"{portal.url}/history")
    assert "/login" in page.url, "the staff session is not the resident's"


async def test_oversight_searches_asks_holders_and_checks_integrity(
        portal: Portal, page: Page) -> None:
    alice = portal.people["alice"]
    await card_login(page, portal.url, portal.oversight_card, PIN, realm="oversight")
    await page.wait_for_url(f"{portal.url}/oversight")
    await page.fill("#person", alice.id_code)
    await page.fill("#outcome", "APPROVED")
    await page.click("#search")
    row = page.locator(f"tr[data-request='{alice.request_id}']")
    assert await row.count() == 1
    await row.locator("input[type=checkbox]").check()
    await shot(page, "14-oversight-search")
    await page.click("#request-logs")
    await page.wait_for_url(f"{portal.url}/oversight/holder-logs")
    asked = page.locator("section", has_text=alice.request_id).first  # the inbox keeps others'
    await asked.locator(".status .ok").wait_for(timeout=30_000)
    answers = await asked.inner_text()
    assert staff_of("nenkin")[0] in answers and "taxable_income" in answers
    assert "<script>alert('x')</script>" in answers
    await shot(page, "15-oversight-holder-logs")
    for _ in range(30):  # the audit consumer anchors a head every 10 s
        await page.goto(f"{portal.url}/oversight/integrity")
        if await page.locator("#anchor dl").count():
            break
        await asyncio.sleep(1)
    assert await page.locator("#anchor .ok").count() == 2, "signed, and the store holds it"
    assert await page.locator("#latest .ok").count() == 1
    assert await page.locator("#heads .bad").count() == 0
    await shot(page, "16-oversight-integrity")


async def test_oversight_sees_a_live_alert(portal: Portal, page: Page, clients: Clients,
                                          town: Town) -> None:
    bob = portal.people["bob"]
    await card_login(page, portal.url, portal.oversight_card, PIN, realm="oversight")
    await page.goto(f"{portal.url}/oversight/alerts")
    own = town.own_numbers("nenkin")[bob.resident_code]
    for _ in range(5):  # the same person again and again: REPEATED_PERSON
        await _ask(clients["nenkin"], own)
    alert = page.locator(f".alert-row:has-text('REPEATED_PERSON'):has-text('{bob.id_code}')")
    await alert.first.wait_for(timeout=30_000)  # the page refreshes itself
    await shot(page, "17-oversight-alert")
