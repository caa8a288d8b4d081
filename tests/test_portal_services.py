"""My Portal asks the services' own processes on the real broker: the registry side whose card
logs in, the numbering authority for a resident's new number. Nothing of theirs is opened in the
portal's process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from yarl import URL

from audit.heads import Signer
from authority.store import AuthorityStore
from authority.store import default_path as authority_path
from broker import acls, topics
from broker.clients import KafkaAccess
from cards import ca, issue
from cards.card import Card
from cards.jlis import CardHolders
from cards.login import FROM_THE_FUTURE, challenge, issued_at, message
from portal import app as portal_app
from portal import services
from portal.i18n import words
from portal.kafka import Platform as KafkaSide
from portal.services import ASK_SECONDS, NO_ANSWER, Unanswered
from portal.sessions import Sessions
from portal.web import COOKIE, Site
from processors import keys
from processors.codes import IdCodes
from registry import tickets
from registry.portal import FRESH
from renkei import questions, sealing
from renkei.clock import Mark
from renkei.envelope import Send, send
from renkei.service_loop import deliver
from renkei.state import state_dir
from renkei.town import Processes, Town
from schemas.codec import CODEC
from schemas.messages import (
    FOUND,
    NOT_FOUND,
    REFUSED,
    TIMED_OUT,
    CardHolder,
    CardLogin,
    ChangeOfNumber,
    LoginTicket,
    PersonalNumber,
    PortalAnswer,
    PortalQuery,
)
from tests.clock_helpers import Hands
from tests.kafka_helpers import (
    consumer,
    free_port,
    listening_on,
    producer,
    spawn,
    stop,
    stopped,
)
from tests.loop_helpers import Deadline
from tests.proc_helpers import open_files
from tests.test_questions import LOW_ORDER

# The session's holders have bound their records (clients) before this file changes residents'
# numbers: a binding made stays (a link code is of the resident code), but a holder binding
# after, by the number its record carries, finds no resident with it (test_linkage, run after
# this file on its worker, found sakura-town's records of those residents unbound).
pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.usefixtures("clients")]
PIN = "4321"
ORIGIN = "http://127.0.0.1:8080"
ELSEWHERE = "https://elsewhere.example"  # a site a card also logs in to: not the portal


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka(platform: Processes) -> AsyncIterator[KafkaSide]:
    """The portal's Kafka side, as `renkei portal` starts it."""
    side = KafkaSide.connect()
    await side.start()
    yield side
    await side.stop()


def number_of(resident_code: str) -> str | None:
    store = AuthorityStore(authority_path())
    try:
        return store.number_of(resident_code)
    finally:
        store.close()


def changes_of(resident_code: str) -> int:
    """How many times the authority's history says the resident's number was changed."""
    store = AuthorityStore(authority_path())
    try:
        return sum(c.kind == "number-changed" for c in store.history(resident_code))
    finally:
        store.close()


async def ticket_of(kafka: KafkaSide, resident_code: str, tmp_path: Path) -> bytes:
    """The login ticket the registry side's process gives at a login of the resident's card."""
    card = _card_of(resident_code, tmp_path)
    return CODEC.decode(await kafka.registry.ask(signed(card)), CardHolder).ticket


async def test_the_authoritys_process_issues_a_resident_a_new_number(
        kafka: KafkaSide, town: Town, tmp_path: Path) -> None:
    resident = town.held["sakura-town"][0].resident_code
    ticket = await ticket_of(kafka, resident, tmp_path)
    before = number_of(resident)
    started = time.monotonic()
    answer = await kafka.authority.ask(ChangeOfNumber(resident, "カードを紛失したため",
                                                      ticket=ticket))
    took = time.monotonic() - started
    number = CODEC.decode(answer, PersonalNumber).personal_number
    assert before is not None and number != before and number_of(resident) == number
    assert took < 5, f"asked and answered in {took:.2f} s"


async def test_a_question_past_its_deadline_changes_no_number(
        kafka: KafkaSide, town: Town, tmp_path: Path) -> None:
    """The portal has given up on it and told the resident so: the authority must not act."""
    resident = town.held["sakura-town"][1].resident_code
    ticket = await ticket_of(kafka, resident, tmp_path)
    before = number_of(resident)
    kafka.authority.within = 0.0
    try:
        with pytest.raises(Unanswered) as unanswered:
            await kafka.authority.ask(ChangeOfNumber(resident, "漏えいのおそれ", ticket=ticket))
    finally:
        kafka.authority.within = ASK_SECONDS
    assert unanswered.value.status == TIMED_OUT
    assert number_of(resident) == before


async def test_the_authority_changes_no_number_without_a_live_ticket_of_that_residents_login(
        kafka: KafkaSide, town: Town, tmp_path: Path) -> None:
    """Whoever took the portal over (its principal and sealing key) asks for the new number of
    a resident who did not log in, knowing only their resident code: with no ticket, one of the
    registry side's key expired, one another key signed, the live ticket of another resident's
    login, or that ticket made to name the resident or to last longer, the authority refuses,
    saying why, and the number stays; with the resident's own ticket, it is changed."""
    resident = town.held["sakura-town"][10].resident_code
    other = await ticket_of(kafka, town.held["sakura-town"][11].resident_code, tmp_path)
    now, before, changed_before = datetime.now(UTC), number_of(resident), changes_of(resident)
    theirs = CODEC.decode(other, LoginTicket)
    refused = [(b"", tickets.NO_TICKET),
               (tickets.ticket(tickets.signing_key(), [resident], now - tickets.LASTS),
                tickets.EXPIRED),
               (tickets.ticket(Signer.generate(), [resident], now), tickets.FORGED),
               (other, tickets.NOT_THEIRS),
               (CODEC.encode(replace(theirs, resident_codes=(resident,))), tickets.FORGED),
               (CODEC.encode(replace(theirs, resident_codes=(*theirs.resident_codes, resident))),
                tickets.FORGED),
               (CODEC.encode(replace(theirs, expires_at=now + timedelta(days=1))),
                tickets.FORGED)]
    for ticket, reason in refused:
        with pytest.raises(Unanswered) as unanswered:
            await kafka.authority.ask(ChangeOfNumber(resident, "漏えいのおそれ",
                                                     str(uuid.uuid4()), ticket))
        assert (unanswered.value.status, unanswered.value.declined) == (REFUSED, reason)
    assert number_of(resident) == before and changes_of(resident) == changed_before
    own = await ticket_of(kafka, resident, tmp_path)
    answer = await kafka.authority.ask(ChangeOfNumber(resident, "漏えいのおそれ",
                                                      str(uuid.uuid4()), own))
    assert CODEC.decode(answer, PersonalNumber).personal_number == number_of(resident) != before


async def test_a_login_ticket_changes_a_residents_number_once_however_often_it_is_shown(
        kafka: KafkaSide, platform: Processes, town: Town, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever took the portal over keeps the tickets of every resident who logged in within
    the hour: shown again for a change of its own, a ticket used is refused, saying so, and the
    number stays, by the authority started again too (its store keeps the ticket's use); the
    change it was used for, asked again, is given the number it was."""
    resident = town.held["sakura-town"][13].resident_code
    change = ChangeOfNumber(resident, "漏えいのおそれ", str(uuid.uuid4()),
                            await ticket_of(kafka, resident, tmp_path))
    given = CODEC.decode(await kafka.authority.ask(change), PersonalNumber).personal_number
    changed = changes_of(resident)
    for restarted in (False, True):
        if restarted:
            platform.stop("authority")
            platform.start("authority", "authority", "serve")
            monkeypatch.setattr(kafka.authority, "within", 60.0)  # while it joins its group
        with pytest.raises(Unanswered) as unanswered:
            await kafka.authority.ask(replace(change, change_id=str(uuid.uuid4())))
        assert (unanswered.value.status, unanswered.value.declined) == (REFUSED, tickets.USED)
    assert CODEC.decode(await kafka.authority.ask(change), PersonalNumber).personal_number == given
    assert number_of(resident) == given and changes_of(resident) == changed


def signed(card: Card, at: datetime | None = None, origin: str = ORIGIN,
           mark: Mark | None = None) -> CardLogin:
    """The card's login as the reader makes it for `origin`, to a challenge issued `at` (now by
    default; `mark` on the elapsed clock, if it is marked)."""
    nonce = challenge(at, mark)
    return CardLogin(card.certificate.public_bytes(Encoding.PEM).decode(), origin, nonce,
                     card.sign(message(origin, nonce), PIN))


def unrecorded_card(tmp_path: Path) -> Card:
    """A card of the JPKI CA that the registry side's card table has no holder for."""
    return issue._new(ca.Authority.load(ca.JPKI), None, PIN, issue.RESIDENT, "resident", tmp_path)


async def test_the_registry_sides_process_tells_whose_card_it_is_with_their_id_codes(
        kafka: KafkaSide, town: Town, tmp_path: Path) -> None:
    """Shown the card's login, it tells the holder and their ID codes (the ID key is its own)."""
    resident = town.held["sakura-town"][2]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    holder = CODEC.decode(await kafka.registry.ask(signed(card)), CardHolder)
    assert holder.name == resident.name and holder.resident_codes[0] == resident.resident_code
    assert holder.id_codes == (IdCodes(keys.load_id_key()).id_code(holder.first_code),)
    with pytest.raises(Unanswered) as unanswered:
        await kafka.registry.ask(signed(unrecorded_card(tmp_path)))
    assert unanswered.value.status == NOT_FOUND


async def test_the_registry_side_tells_no_codes_for_a_login_it_does_not_accept(
        kafka: KafkaSide, town: Town, tmp_path: Path) -> None:
    """A card's signature of another challenge, or made for another site, a card of another CA
    or a revoked one, a challenge too old, one from the future, one shown before: each is
    refused, by its reason, and nothing is told (the portal, or whoever took it over, learns no
    code of anyone's)."""
    resident = town.held["sakura-town"][6]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    officer = issue.officer_card("refused-officer", "sakura-town", "counter", PIN, tmp_path)
    revoked = issue.resident_card(resident.resident_code, PIN, tmp_path)
    issue.revoke(revoked.face.serial)
    now, good = datetime.now(UTC), signed(card)
    refused = [(replace(good, signature=signed(card).signature), "bad-signature"),
               (replace(good, origin="http://127.0.0.1:8081"), "bad-signature"),
               (signed(card, origin=ELSEWHERE), "origin"),
               (signed(officer), "unknown-issuer"), (signed(revoked), "revoked"),
               (signed(card, now - timedelta(minutes=10)), "challenge"),
               (signed(card, now + timedelta(minutes=10)), FROM_THE_FUTURE),
               (replace(good, nonce=good.nonce[8:], signature=card.sign(
                   message(ORIGIN, good.nonce[8:]), PIN)), "challenge")]
    for login, reason in refused:
        with pytest.raises(Unanswered) as unanswered:
            await kafka.registry.ask(login)
        assert (unanswered.value.status, unanswered.value.declined) == (REFUSED, reason)
    holder = CODEC.decode(await kafka.registry.ask(good), CardHolder)
    assert holder.resident_codes[0] == resident.resident_code and holder.id_codes
    with pytest.raises(Unanswered) as replayed:
        await kafka.registry.ask(good)
    assert (replayed.value.status, replayed.value.declined) == (REFUSED, "challenge")


@dataclass
class Watched:
    """The portal's questions as it sends them, and each key it makes for one (by its public
    half), which the test alone keeps past the ask."""

    sent: list[PortalQuery] = field(default_factory=list)
    keys: dict[bytes, X25519PrivateKey] = field(default_factory=dict)
    asked: asyncio.Event = field(default_factory=asyncio.Event)  # a question was sent


def _watched(monkeypatch: pytest.MonkeyPatch) -> Watched:
    """The portal's questions and reply keys, watched from now on."""
    watched, generate = Watched(), X25519PrivateKey.generate

    async def delivering(producer: AIOKafkaProducer, effects: Sequence[Send]) -> None:
        await deliver(producer, effects)
        watched.sent += [CODEC.decode(e.value, PortalQuery) for e in effects]
        watched.asked.set()

    def made() -> X25519PrivateKey:
        key = generate()
        watched.keys[sealing.public_bytes(key)] = key
        return key

    monkeypatch.setattr(services, "deliver", delivering)
    monkeypatch.setattr(services, "X25519PrivateKey", SimpleNamespace(generate=made))
    return watched


def _strings(data: object) -> Iterator[str]:
    """Every string in a JSON value, however deep."""
    if isinstance(data, str):
        yield data
    for inner in (data.values() if isinstance(data, dict) else
                  data if isinstance(data, list) else ()):
        yield from _strings(inner)


def _keys_kept() -> list[X25519PrivateKey]:
    """Each 32-byte secret the state folder keeps in a JSON file, as an X25519 key: every
    sealing key (the portal's long-term one among them) and whatever else is kept so."""
    found = []
    for path in state_dir().rglob("*.json"):
        with contextlib.suppress(ValueError, OSError):  # not JSON, or not readable here
            found += [X25519PrivateKey.from_private_bytes(bytes.fromhex(text))
                      for text in _strings(json.loads(path.read_text(encoding="utf-8")))
                      if re.fullmatch(r"[0-9a-f]{64}", text)]
    assert sealing.public_bytes(sealing.key_of(acls.PORTAL)) in {
        sealing.public_bytes(k) for k in found}
    return found


async def _kept_answer(topic: str, request_id: str) -> PortalAnswer:
    """The answer to `request_id` as its topic keeps it, read from the topic's start by the
    portal's principal (as whoever takes it over later would)."""
    async with consumer(KafkaAccess.of(acls.PORTAL), topic, offset="earliest") as answers:
        async with asyncio.timeout(30):
            async for record in answers:
                if record.key == request_id.encode():
                    return CODEC.decode(record.value or b"", PortalAnswer)
    raise AssertionError(f"no answer to {request_id} on {topic}")


async def _opened_with_its_own_key_alone(topic: str, question: PortalQuery,
                                         watched: Watched) -> bytes:
    """The answer kept on `topic` to `question`, opened with the key the portal made for that
    question; no key the state folder keeps opens it."""
    answer = await _kept_answer(topic, question.request_id)
    assert answer.status == FOUND
    for key in _keys_kept():
        with pytest.raises(sealing.CannotOpen):
            sealing.open_sealed(key, answer.sealed_answer, question.request_id)
    assert question.reply_key in watched.keys
    return sealing.open_sealed(watched.keys[question.reply_key], answer.sealed_answer,
                               question.request_id)


async def test_an_answer_kept_on_its_topic_opens_with_its_questions_key_alone(
        kafka: KafkaSide, town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The answers topics keep a day of answers: a card holder's name, codes and ID codes,
    a resident's new number. Once the ask is over, neither the portal's long-term key nor
    any other key in the state folder opens them (whoever takes over the portal reads none
    of those asked before), only the key the portal made for the question and has dropped."""
    resident = town.held["sakura-town"][10]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    watched = _watched(monkeypatch)
    told = await kafka.registry.ask(signed(card))
    number = await kafka.authority.ask(ChangeOfNumber(
        resident.resident_code, "漏えいのおそれ", ticket=CODEC.decode(told, CardHolder).ticket))
    login, change = watched.sent
    assert CODEC.decode(told, CardHolder).name == resident.name
    assert await _opened_with_its_own_key_alone(topics.REGISTRY_PORTAL_OUT, login,
                                                watched) == told
    assert await _opened_with_its_own_key_alone(topics.AUTHORITY_PORTAL_OUT, change,
                                                watched) == number


async def test_an_answer_made_again_after_a_restart_reaches_the_asking_portal(
        kafka: KafkaSide, platform: Processes, town: Town, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry side took a card login (its challenge used by that question) and stopped
    before it answered: started again, it reads the question again, its reply key with it,
    and its answer reaches the portal still waiting, sealed to that question's key alone."""
    resident = town.held["sakura-town"][11]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    login, watched = signed(card), _watched(monkeypatch)
    monkeypatch.setattr(kafka.registry, "within", 90.0)  # the killed member's session runs out
    registry = platform.running["registry"]
    os.kill(registry.pid, signal.SIGSTOP)
    try:
        asking = asyncio.create_task(kafka.registry.ask(login))
        await watched.asked.wait()
        (question,) = watched.sent
        issued = issued_at(login.nonce)
        assert issued is not None
        cards = CardHolders()
        try:  # what the stopped registry side did before it stopped
            assert cards.first_use(login.nonce, question.request_id, issued + FRESH, None,
                                   datetime.now(UTC), None)
        finally:
            cards.close()
    finally:
        platform.kill("registry")
        platform.start("registry", "registry", "serve")
    told = await asking
    holder = CODEC.decode(told, CardHolder)
    assert holder.name == resident.name and holder.resident_codes[0] == resident.resident_code
    assert await _opened_with_its_own_key_alone(topics.REGISTRY_PORTAL_OUT, question,
                                                watched) == told


def _with_reply_key(monkeypatch: pytest.MonkeyPatch, reply_key: bytes) -> None:
    """The portal's questions sent with `reply_key` from now on, as whoever took it over may."""
    async def delivering(producer: AIOKafkaProducer, effects: Sequence[Send]) -> None:
        await deliver(producer, [send(e.topic, e.key, replace(
            CODEC.decode(e.value, PortalQuery), reply_key=reply_key)) for e in effects])

    monkeypatch.setattr(services, "deliver", delivering)


async def test_a_question_whose_answer_cannot_be_sealed_is_declined_before_it_is_acted_on(
        kafka: KafkaSide, town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever took the portal over asks with a reply key of 32 bytes that no answer can be
    sealed to (a low-order point: the key exchange with it fails): the registry side used the
    login's challenge, the authority gave a new number, and only then did sealing the answer
    fail. Now each declines the question, saying why, and does nothing: the same login and
    change, asked with a key the portal made, are answered, the number changed once."""
    resident = town.held["sakura-town"][13].resident_code
    login = signed(_card_of(resident, tmp_path))
    change = ChangeOfNumber(resident, "漏えいのおそれ", str(uuid.uuid4()),
                            await ticket_of(kafka, resident, tmp_path))
    before, changed_before = number_of(resident), changes_of(resident)
    with monkeypatch.context() as taken_over:
        for reply_key in LOW_ORDER:
            _with_reply_key(taken_over, reply_key)
            for service, question in ((kafka.registry, login), (kafka.authority, change)):
                with pytest.raises(Unanswered) as declined:
                    await service.ask(question)
                assert (declined.value.status, declined.value.declined) == (
                    REFUSED, questions.NO_REPLY_KEY)
    assert number_of(resident) == before and changes_of(resident) == changed_before
    holder = CODEC.decode(await kafka.registry.ask(login), CardHolder)
    assert holder.resident_codes[0] == resident
    number = CODEC.decode(await kafka.authority.ask(change), PersonalNumber).personal_number
    assert number == number_of(resident) != before
    assert changes_of(resident) == changed_before + 1


async def _csrf(http: aiohttp.ClientSession, page: str) -> str:
    async with http.get(page) as answer:
        found = re.search(r'name="csrf" value="([^"]+)"', await answer.text())
    assert found
    return found.group(1)


async def _signed_at_reader(http: aiohttp.ClientSession, url: str, card: Card, realm: str,
                            page: str) -> dict[str, str]:
    """Start a login from `page` and sign the portal's challenge with the card, as the card
    reader would: what the reader posts back."""
    async with http.post(f"{url}/login/start", allow_redirects=False, data={
            "csrf": await _csrf(http, f"{url}{page}"), "realm": realm}) as started:
        nonce = parse_qs(urlsplit(started.headers["Location"]).query)["challenge"][0]
    signature = card.sign(message(url, bytes.fromhex(nonce)), PIN)
    return {"challenge": nonce, "signature": signature.hex(),
            "certificate": card.certificate.public_bytes(Encoding.PEM).decode()}


async def card_login(http: aiohttp.ClientSession, url: str, card: Card, realm: str = "resident",
                     page: str = "/login") -> str:
    """Log in with the card as its holder would (the reader's return, then the page it sends the
    browser on to); where to."""
    async with http.post(f"{url}/login/card", allow_redirects=False,
                         data=await _signed_at_reader(http, url, card, realm, page)) as returned:
        assert returned.status == 303, await returned.text()
    async with http.get(f"{url}{returned.headers['Location']}", allow_redirects=False) as done:
        assert done.status == 303, await done.text()
        return done.headers["Location"]


async def test_a_resident_logs_in_by_card_and_changes_their_number_through_the_services(
        platform: Processes, town: Town, tmp_path: Path) -> None:
    """`renkei portal` as a resident uses it: whose card it is, the registry side's process
    says; the new number, the numbering authority's; the portal holds none of their stores."""
    resident = town.held["sakura-town"][3]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    proc = spawn("portal", "--port", url.rsplit(":", 1)[1], log=tmp_path / "portal.log")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _until_up(http, f"{url}/login")
            assert await card_login(http, url, card) == "/history"
            before, shown = await _changed_from(
                http, url, "/history", resident.name, resident.resident_code,
                reason="カードを紛失したため")
        opened = open_files(proc.pid)
    finally:
        stop(proc)
    assert shown and before is not None
    after = number_of(resident.resident_code)
    assert shown == after and after != before
    assert not [f for f in opened if f.endswith(("authority.db", "registry.db", "cards.db"))]


async def test_a_portal_on_any_free_port_names_its_origin_and_takes_logins_signed_for_it(
        platform: Processes, town: Town, tmp_path: Path) -> None:
    """`--port 0`: not "portal on http://127.0.0.1:0", an origin no card signs for."""
    resident = town.held["sakura-town"][4]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    log = tmp_path / "portal.log"
    proc = spawn("portal", "--port", "0", log=log)
    try:
        port = await asyncio.to_thread(listening_on, log, r"portal on http://127\.0\.0\.1:(\d+)")
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _until_up(http, f"{url}/login")
            assert await card_login(http, url, card) == "/history"
    finally:
        stop(proc)


@contextlib.asynccontextmanager
async def _portal_in_process(tmp_path: Path, sessions: Sessions | None = None
                             ) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """`renkei portal`'s app in this process (its `sessions`), and a browser's session with it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = TestServer(portal_app.build(Site(url, "http://127.0.0.1:8765"),
                                         Sessions() if sessions is None else sessions),
                        host="127.0.0.1", port=port)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            yield url, http
    finally:
        await server.close()


async def test_a_resident_present_at_the_counter_logs_in_through_the_registry_side(
        platform: Processes, town: Town, tmp_path: Path) -> None:
    """Staff log in with their card; the resident standing there with theirs, whose holder and
    ID codes the registry side tells for that login: the desk shows them, and the resident's new
    number is issued on their login's ticket (the staff member's login has none)."""
    resident = town.held["sakura-town"][7]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    staff = issue.officer_card("present-staff", "sakura-town", "counter", PIN, tmp_path)
    async with _portal_in_process(tmp_path) as (url, http):
        assert await card_login(http, url, staff, "counter", "/login?as=counter") == "/counter"
        assert await card_login(http, url, card, "present", "/counter") == "/counter"
        before, shown = await _changed_from(http, url, "/counter", resident.name,
                                            resident.resident_code, desk="/counter")
    assert before is not None and shown == number_of(resident.resident_code) != before


async def test_a_login_the_registry_side_refuses_gets_the_refusal_page(
        kafka: KafkaSide, platform: Processes, town: Town, tmp_path: Path) -> None:
    """The portal's own checks pass, but the login's challenge was shown to the registry side
    before (here by the portal's Kafka side itself): the resident is not logged in, and sees
    why, as for a challenge the portal itself refuses."""
    resident = town.held["sakura-town"][9]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    async with _portal_in_process(tmp_path) as (url, http):
        posted = await _signed_at_reader(http, url, card, "resident", "/login")
        await kafka.registry.ask(CardLogin(posted["certificate"], url,
                                           bytes.fromhex(posted["challenge"]),
                                           bytes.fromhex(posted["signature"])))
        async with http.post(f"{url}/login/card", data=posted) as done:
            assert done.status == 403
            assert words("ja")["refused_challenge"] in await done.text()
        async with http.get(f"{url}/history", allow_redirects=False) as history:
            assert history.status != 200 and resident.name not in await history.text()


async def test_a_login_from_a_portal_whose_clock_is_ahead_is_said_to_be_the_clocks_not_the_login(
        platform: Processes, town: Town, tmp_path: Path) -> None:
    """The portal's clock is ten minutes ahead of the registry side's: that side refuses its
    card's login as from the future, and the page says the system's clocks disagree, not that
    the login took too long (to try again, which would be refused alike)."""
    resident = town.held["sakura-town"][10]
    issue.init()
    card = issue.resident_card(resident.resident_code, PIN, tmp_path)
    portals = Hands(datetime.now(UTC) + timedelta(minutes=10), boot="the portal's boot")
    async with _portal_in_process(tmp_path, Sessions(wall=portals.clock())) as (url, http):
        posted = await _signed_at_reader(http, url, card, "resident", "/login")
        async with http.post(f"{url}/login/card", data=posted) as done:
            refused = await done.text()
            assert done.status == 403 and words("ja")["refused_challenge"] not in refused
            assert words("ja")["refused_clock"] in refused


async def test_a_question_declined_for_its_reply_key_says_the_fault_is_the_portals(
        platform: Processes, town: Town, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal's questions go with a reply key no answer can be sealed to (a portal taken
    over, or broken): the authority declines the logged-in resident's change, and the registry
    side their next login, for it (no-reply-key). The pages say the fault is the portal's, not
    the login's or the card's: they said to log in again, and that the card was not good."""
    resident = town.held["sakura-town"][14].resident_code
    card = _card_of(resident, tmp_path)
    async with _signed_in(card, tmp_path) as (url, http):
        _with_reply_key(monkeypatch, LOW_ORDER[0])
        before = number_of(resident)
        status, page = await _ask_number(http, url)
        assert status == 403 and number_of(resident) == before
        assert all(words("ja")[said] in page for said in ("number_refused",
                                                          "number_refused_portal"))
        posted = await _signed_at_reader(http, url, card, "resident", "/login")
        async with http.post(f"{url}/login/card", data=posted) as done:
            assert done.status == 403
            assert words("ja")["refused_portal"] in await done.text()


async def _until_up(http: aiohttp.ClientSession, page: str, within: float = 60) -> None:
    """Wait until `page` answers 200; past `within` seconds, fail saying what it answered."""
    deadline, seen = Deadline(within, f"{page} answering 200"), "nothing yet"
    while True:
        try:
            async with http.get(page) as answer:
                if answer.status == 200:
                    return
                seen = f"answered {answer.status}"
        except aiohttp.ClientConnectionError as exc:
            seen = repr(exc)
        deadline.check(seen)
        await asyncio.sleep(0.2)


async def _unavailable(request: web.Request) -> web.Response:
    return web.Response(status=503)


async def test_a_page_never_up_is_waited_for_until_the_deadline_and_named() -> None:
    """A page answering 503 for ever: the wait fails at its deadline, saying what the page
    answered (it once waited until pytest's timeout stopped the whole run of the test)."""
    app = web.Application()
    app.router.add_get("/login", _unavailable)
    async with TestServer(app) as server, aiohttp.ClientSession() as http:
        with pytest.raises(AssertionError, match=r"not within 1 s .*answered 503"):
            async with asyncio.timeout(20):
                await _until_up(http, str(server.make_url("/login")), within=1)


@pytest.mark.parametrize("topic", [topics.REGISTRY_PORTAL_IN, topics.AUTHORITY_PORTAL_IN])
@pytest.mark.parametrize("principal", [acls.PLATFORM, acls.OVERSIGHT, "nenkin"])
async def test_only_the_portal_asks_the_services(town: Town, principal: str, topic: str) -> None:
    """Who asks is the topic's one writer: the platform (which has every link-code key), the
    oversight body or a holder cannot ask for a new number or whose a card is."""
    async with producer(KafkaAccess.of(principal)) as prod:
        with pytest.raises(TopicAuthorizationFailedError):
            await prod.send_and_wait(topic, b"a question")


async def test_a_question_no_answer_could_carry_stops_no_service(
        kafka: KafkaSide, platform: Processes, tmp_path: Path) -> None:
    """A question whose request id is longer than an answer can carry (it is the answer's key
    and in its value) is logged and dropped: answering it failed and stopped the registry's and
    the authority's processes, at every start again (holders' look-ups with them)."""
    issue.init()
    hostile = PortalQuery("q" * 600_000, datetime.now(UTC) + timedelta(seconds=10), b"")
    async with producer(KafkaAccess.of(acls.PORTAL)) as prod:
        for topic in (topics.REGISTRY_PORTAL_IN, topics.AUTHORITY_PORTAL_IN):
            await prod.send_and_wait(topic, CODEC.encode(hostile))
    with pytest.raises(Unanswered) as nobody:
        await kafka.registry.ask(signed(unrecorded_card(tmp_path)))
    with pytest.raises(Unanswered) as unknown:
        await kafka.authority.ask(ChangeOfNumber("00000000000", "漏えいのおそれ"))
    assert (nobody.value.status, unknown.value.declined) == (NOT_FOUND, tickets.NO_TICKET)
    assert platform.running["registry"].poll() is None
    assert platform.running["authority"].poll() is None


async def test_a_change_whose_answer_came_too_late_is_asked_again_and_made_once(
        kafka: KafkaSide, town: Town, platform: Processes, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal stopped waiting before the authority answered (here the authority is paused
    past the portal's wait, within the question's deadline, as a slow broker or a restart would
    have it): the number was changed, so the portal does not say it was not (NO_ANSWER, not
    the authority's TIMED_OUT); asked again under the same change id, the authority gives the
    number it gave and changes nothing more."""
    resident = town.held["sakura-town"][4].resident_code
    before, changed_before = number_of(resident), changes_of(resident)
    change = ChangeOfNumber(resident, "漏えいのおそれ", str(uuid.uuid4()),
                            await ticket_of(kafka, resident, tmp_path))
    authority = platform.running["authority"]
    monkeypatch.setattr(services, "GRACE_SECONDS", 1.0 - ASK_SECONDS)  # the portal waits 1 s
    with stopped(authority.pid), pytest.raises(Unanswered) as unanswered:
        await kafka.authority.ask(change)
    assert unanswered.value.status == NO_ANSWER
    for _ in range(100):  # the authority goes on, reads the question before its deadline
        if number_of(resident) != before:
            break
        await asyncio.sleep(0.1)
    changed = number_of(resident)
    assert changed != before and changes_of(resident) == changed_before + 1
    monkeypatch.undo()
    again = CODEC.decode(await kafka.authority.ask(change), PersonalNumber).personal_number
    assert again == changed == number_of(resident)
    assert changes_of(resident) == changed_before + 1


def _number_rows(history: str) -> list[tuple[str, str]]:
    """The history page's number-change rows: (request id, outcome) each."""
    rows = re.findall(r'<tr data-request="([^"]+)">(.*?)</tr>', history, re.DOTALL)
    return [(rid, found.group(1)) for rid, row in rows
            if (found := re.search(r"PORTAL (NUMBER_[A-Z_]+)", row))]


async def _history_once(http: aiohttp.ClientSession, url: str, outcome: str
                        ) -> list[tuple[str, str]]:
    """The resident's number-change rows, once one with `outcome` is in their history (the
    audit consumer has stored it)."""
    rows: list[tuple[str, str]] = []
    for _ in range(150):
        async with http.get(f"{url}/history") as history:
            rows = _number_rows(await history.text())
        if any(o == outcome for _, o in rows):
            return rows
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {outcome} in the resident's history: {rows}")


def _card_of(resident_code: str, tmp_path: Path) -> Card:
    """The resident's card, issued for the test (its PIN: PIN)."""
    issue.init()
    return issue.resident_card(resident_code, PIN, tmp_path)


@contextlib.asynccontextmanager
async def _signed_in(card: Card, tmp_path: Path
                     ) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """My Portal's app served for the test, and a browser logged in to it with the resident's
    card: its address and the browser."""
    async with _portal_in_process(tmp_path) as (url, http):
        assert await card_login(http, url, card) == "/history"
        yield url, http


async def _ask_number(http: aiohttp.ClientSession, url: str, desk: str = "",
                      reason: str = "漏えいのおそれ") -> tuple[int, str]:
    """The resident's request for a new number (at the counter: desk "/counter"): the page's
    status and text."""
    async with http.post(f"{url}{desk}/number", data={
            "csrf": await _csrf(http, f"{url}{desk or '/number'}"), "confirm": "yes",
            "reason": reason}) as answer:
        return answer.status, await answer.text()


async def _changed_from(http: aiohttp.ClientSession, url: str, page: str, name: str,
                        resident_code: str, desk: str = "", reason: str = "漏えいのおそれ"
                        ) -> tuple[str | None, str | None]:
    """The resident's number asked to change from `page`, which shows their name: their number
    before, and the new one the page then shows."""
    async with http.get(f"{url}{page}") as shown:
        assert name in await shown.text()
    before = number_of(resident_code)
    status, done = await _ask_number(http, url, desk, reason)
    assert status == 200
    return before, _shown(done)


def _shown(done: str) -> str | None:
    """The new number a page shows, if any."""
    shown = re.search(r'id="number">([0-9 ]+)<', done)
    return shown.group(1).replace(" ", "") if shown else None


async def _answered_late(http: aiohttp.ClientSession, url: str, resident_code: str,
                         platform: Processes, monkeypatch: pytest.MonkeyPatch
                         ) -> tuple[str, int]:
    """The resident asks for a new number and the authority changes it, but its answer comes
    after the portal stopped waiting (the page says it is not known): the number it gave, and
    how many changes of the resident's number there were before."""
    before, changed_before = number_of(resident_code), changes_of(resident_code)
    authority = platform.running["authority"]
    monkeypatch.setattr(services, "GRACE_SECONDS", 1.0 - ASK_SECONDS)  # waits 1 s
    with stopped(authority.pid):
        status, _ = await _ask_number(http, url)
    monkeypatch.undo()
    assert status == 503
    for _ in range(100):  # the authority goes on, reads the question before its deadline
        if number_of(resident_code) != before:
            break
        await asyncio.sleep(0.1)
    changed = number_of(resident_code)
    assert changed is not None and changed != before
    assert changes_of(resident_code) == changed_before + 1
    return changed, changed_before


async def test_a_change_whose_answer_never_reaches_the_portal_is_in_the_residents_history_once(
        platform: Processes, town: Town, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The authority changes the number, but its answer comes after the portal stopped waiting
    and the resident does not ask again: their history still shows the change asked for (logged
    before the question went out; it was not logged at all). Asked again, the same change: the
    new number is shown, and the request and the change are each in the history once."""
    resident = town.held["sakura-town"][5]
    card = _card_of(resident.resident_code, tmp_path)
    async with _signed_in(card, tmp_path) as (url, http):
        changed, changed_before = await _answered_late(http, url, resident.resident_code,
                                                       platform, monkeypatch)
        ((change_id, outcome),) = await _history_once(http, url, "NUMBER_CHANGE_ASKED")
        assert outcome == "NUMBER_CHANGE_ASKED"
        status, done = await _ask_number(http, url)
        assert status == 200 and _shown(done) == changed
        rows = await _history_once(http, url, "NUMBER_CHANGED")
    assert sorted(rows) == [(change_id, "NUMBER_CHANGED"), (change_id, "NUMBER_CHANGE_ASKED")]
    assert changes_of(resident.resident_code) == changed_before + 1


async def test_a_change_the_resident_never_saw_is_resumed_at_their_next_login_not_made_twice(
        platform: Processes, town: Town, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The authority changes the number, but its answer comes after the portal stopped waiting
    and the resident closes the page. They log in again later, the portal restarted since (a
    new session, none of the old one kept): their page says their request awaits its outcome,
    and asking again resumes it, so the number the authority gave is shown (a new session drew
    a new change id: a second number was issued, the first left in their history as asked). The
    request and the change are each in the history once, under the one change id."""
    resident = town.held["sakura-town"][6]
    card = _card_of(resident.resident_code, tmp_path)
    async with _signed_in(card, tmp_path) as (url, http):
        changed, changed_before = await _answered_late(http, url, resident.resident_code,
                                                       platform, monkeypatch)
    async with _signed_in(card, tmp_path) as (url, http):  # a new session, a portal started anew
        async with http.get(f"{url}/history") as history:
            assert 'id="number-pending"' in await history.text()
        status, done = await _ask_number(http, url)
        assert status == 200 and _shown(done) == changed
        assert changes_of(resident.resident_code) == changed_before + 1, "no second number"
        rows = await _history_once(http, url, "NUMBER_CHANGED")
        async with http.get(f"{url}/history") as history:
            assert 'id="number-pending"' not in await history.text()
    assert len(rows) == 2 and {o for _, o in rows} == {"NUMBER_CHANGE_ASKED", "NUMBER_CHANGED"}
    assert len({rid for rid, _ in rows}) == 1, "one change id"


async def test_a_login_ticket_the_authority_refuses_says_why_and_leaves_the_change_waiting(
        platform: Processes, town: Town, tmp_path: Path) -> None:
    """The portal shows the authority the ticket kept in the resident's session: one expired
    (here put in its place; a session outliving its ticket, were the clocks apart) is refused,
    the page says the request was refused and why, and the number was not changed. The change
    still waits (one asked before under the ticket may have been made): logged in again, the
    resident's request resumes it, under the one change id."""
    resident = town.held["sakura-town"][12]
    card = _card_of(resident.resident_code, tmp_path)
    sessions = Sessions()
    async with _portal_in_process(tmp_path, sessions) as (url, http):
        assert await card_login(http, url, card) == "/history"
        session = sessions.get(http.cookie_jar.filter_cookies(URL(url))[COOKIE].value)
        assert session is not None and session.resident is not None and session.resident.ticket
        session.resident = replace(session.resident, ticket=tickets.ticket(
            tickets.signing_key(), session.resident.resident_codes,
            datetime.now(UTC) - tickets.LASTS))
        before = number_of(resident.resident_code)
        status, page = await _ask_number(http, url)
        assert status == 403 and _shown(page) is None
        assert all(words("ja")[said] in page for said in ("number_refused",
                                                          "number_refused_expired"))
        assert words("ja")["number_unanswered"] not in page
        assert number_of(resident.resident_code) == before
        async with http.get(f"{url}/history") as history:
            assert 'id="number-pending"' in await history.text()
        assert await card_login(http, url, card) == "/history"
        status, done = await _ask_number(http, url)
        assert status == 200 and _shown(done) == number_of(resident.resident_code) != before
        rows = await _history_once(http, url, "NUMBER_CHANGED")
    assert len(rows) == 2 and {o for _, o in rows} == {"NUMBER_CHANGE_ASKED", "NUMBER_CHANGED"}
    assert len({change_id for change_id, _ in rows}) == 1, "one change id"
