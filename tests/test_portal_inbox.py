"""The portal's inbox of requests for holder-side logs and their answers: the rules of what is
taken and kept, the store, and a portal that restarts on the real broker — the answers that came
while it was down are taken when it is back, each once, and logged once."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import stat
import subprocess
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiokafka.errors import KafkaError
from confluent_kafka.admin import NewTopic
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit.anchor import Held
from audit.heads import Signer, TreeHead
from audit.store import AuditStore, Query
from audit.store import default_path as audit_path
from broker import acls, config, topics
from broker.clients import KafkaAccess, read_topic
from broker.credentials import Credentials
from broker.provision import admin_client
from cards import issue
from holders.client import HolderClient
from portal.inbox import (
    ANSWER_WITHIN,
    APPLICATIONS_KEPT,
    CHANGES_KEPT,
    OVERSIGHT_KEPT,
    Asked,
    ChangeAsked,
    Inbox,
    kept_since,
    taken,
)
from portal.kafka import HolderLogs, NoHolder, Platform, Shown
from processors import directory
from renkei import holder_logs, sealing
from renkei.state import state_folder
from renkei.tasks import cancelled
from renkei.town import Processes, Town
from schemas.codec import CODEC
from schemas.messages import HolderLogAnswer, HolderLogEntry
from tests.kafka_helpers import free_port, logged_events, producer, renkei, spawn, stop
from tests.loop_helpers import locked, ticking
from tests.test_linkage import ask
from tests.test_portal_services import PIN, _csrf, _until_up, card_login
from tests.test_suspension import _seen

SESSION_LOOP = pytest.mark.asyncio(loop_scope="session")
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PERSON = "ABC98765XYZ"
BOOK = topics.PORTAL_IN


def _portals(key: X25519PrivateKey, inbox: Inbox, access: KafkaAccess | None = None,
             out: str = topics.PORTAL_OUT
             ) -> tuple[Callable[[], HolderLogs], list[tuple[str, str]]]:
    """A maker of the portal's application side on `inbox` (instances in turn, as restarts),
    sending to `out` as `access` (the portal's, to the platform, by default), and the (request
    id, holder) of each answer it logs to the audit stream."""
    logged: list[tuple[str, str]] = []

    async def audit_write(asked: Asked, answer: HolderLogAnswer) -> None:
        logged.append((asked.request_id, answer.holder))

    def portal() -> HolderLogs:
        return HolderLogs(access or KafkaAccess.of(acls.PORTAL), out, topics.PORTAL_IN, key,
                          inbox, APPLICATIONS_KEPT, audit_write, entry=lambda _: None,
                          read_to_end=lambda: asyncio.sleep(0))

    return portal, logged


def answer_to(key: X25519PrivateKey, asked: Asked, holder: str, about: str | None = None
              ) -> bytes:
    """A holder's answer to a resident's application, its entry (of `about`, else of the first
    request asked about) sealed to `key`."""
    entry = HolderLogEntry(about or asked.request_ids[0], "2026-01-01T00:00:00", "provider", "",
                           "", None, "P-037", "local_tax", "課税所得 3,000,000円", "審査", "FOUND")
    sealed = holder_logs.seal(sealing.public_bytes(key), holder_logs.MARK + asked.request_id,
                              [entry])
    return CODEC.encode(HolderLogAnswer(asked.request_id, holder, datetime.now(UTC), (), sealed))


def test_an_answer_is_taken_once_from_a_holder_asked_while_its_request_is_kept() -> None:
    asked = Asked("a-1", NOW - timedelta(days=89), ("nenkin", "sakura-town"), ("rq-1",), PERSON)
    since = kept_since(NOW, APPLICATIONS_KEPT)
    assert taken(asked, "nenkin", since)
    assert not taken(asked, "acme-kenpo", since), "a holder that was not asked"
    assert not taken(replace(asked, answers={"nenkin": b"x"}), "nenkin", since), \
        "a second answer of a holder (or the same one read again after a restart)"
    assert not taken(asked, "nenkin", kept_since(NOW + timedelta(days=2), APPLICATIONS_KEPT)), \
        "a request past its keeping"
    assert OVERSIGHT_KEPT >= APPLICATIONS_KEPT >= timedelta(days=90)


async def test_a_change_of_number_not_seen_is_its_residents_alone_until_seen_through_restarts(
        tmp_path: Path) -> None:
    """A resident's change whose outcome they have not seen is the one their next request
    resumes, in any session or portal process, as first asked; another resident's (the next at
    the counter) is their own; once seen, the next request is a new change."""
    path = tmp_path / "inbox.db"
    first = ChangeAsked(PERSON, "c-1", NOW + timedelta(microseconds=7), "portal")
    inbox = Inbox(path)
    try:
        assert await inbox.change_of(PERSON, NOW) is None and await inbox.change(first) == first
        assert await inbox.change(ChangeAsked(PERSON, "c-2", NOW, "sakura-town", "staff 1")) \
            == first
        other = ChangeAsked("DEF12345UVW", "c-3", NOW, "sakura-town", "staff 1")
        assert await inbox.change(other) == other
    finally:
        await inbox.close()
    inbox = Inbox(path)  # the portal restarted
    try:
        assert await inbox.change_of(PERSON, NOW) == first
        assert await inbox.change_of(other.person, NOW) == other
        await inbox.change_seen(first)
        again = ChangeAsked(PERSON, "c-4", NOW, "portal")
        assert await inbox.change_of(PERSON, NOW) is None and await inbox.change(again) == again
        await inbox.change_seen(first)  # told before: the next change stays
        assert await inbox.change_of(PERSON, NOW) == again
        assert await inbox.change_of(other.person, NOW) == other
    finally:
        await inbox.close()


async def test_a_change_of_number_not_seen_is_kept_for_its_period_then_dropped(
        tmp_path: Path) -> None:
    """A change whose outcome its resident never saw is resumed for CHANGES_KEPT, then dropped:
    their request after that is a new change, and a resident who never comes back is not kept
    (their ID code, the counter's note) by the portal for ever, as it was."""
    path = tmp_path / "inbox.db"
    gone, kept = (ChangeAsked(person, f"c-{n}", NOW - CHANGES_KEPT, "sakura-town", "staff 1")
                  for n, person in ((1, PERSON), (2, "DEF12345UVW")))
    later = NOW + timedelta(microseconds=1)
    inbox = Inbox(path)
    try:
        for change in (gone, kept):
            await inbox.change(change)
        assert await inbox.change_of(kept.person, NOW) == kept
        assert await inbox.change_of(PERSON, later) is None
        fresh = ChangeAsked(PERSON, "c-3", later, "portal")
        assert await inbox.change(fresh) == fresh
    finally:
        await inbox.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT person, change_id FROM changes").fetchall() == [
            (PERSON, "c-3")]


async def test_a_change_of_number_past_its_period_is_dropped_when_the_portal_starts(
        tmp_path: Path) -> None:
    """A resident who never came back, and no one asking for a change since: their change (their
    ID code, the counter's note) is dropped as the portal starts, even with the broker away; it
    was dropped only when someone asked for a change, and kept past its period till then."""
    path, now = tmp_path / "inbox.db", datetime.now(UTC)
    gone, kept = (ChangeAsked(person, f"c-{n}", now - CHANGES_KEPT + timedelta(minutes=m),
                              "sakura-town", "staff 1")
                  for n, person, m in ((1, PERSON, -1), (2, "DEF12345UVW", 1)))
    away = KafkaAccess("127.0.0.1:9", Credentials("portal", "-"))
    with state_folder(tmp_path / "state"):
        portal = Platform(away, away, Inbox(path))
        for change in (gone, kept):
            await portal.inbox.change(change)
        starting = asyncio.create_task(portal.start())  # it waits for the broker
        try:
            for _ in range(100):
                if _people_changing(path) == [kept.person]:
                    break
                await asyncio.sleep(0.05)
        finally:
            await cancelled(starting)
            await portal.stop()
    assert _people_changing(path) == [kept.person]


def _people_changing(path: Path) -> list[str]:
    """Whose requests for a new number the inbox at `path` keeps."""
    with closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT person FROM changes ORDER BY person")]


async def test_the_inbox_keeps_requests_answers_and_positions_for_its_period(
        tmp_path: Path) -> None:
    path = tmp_path / "inbox.db"
    inbox = Inbox(path)
    try:
        old, new = (Asked(f"a-{n}", NOW - timedelta(days=d), ("nenkin",), ("rq-1",), PERSON)
                    for n, d in ((1, 91), (2, 1)))
        for asked in (old, new, Asked("o-1", NOW, ("nenkin",), ("rq-1",))):
            await inbox.add(topics.OVERSIGHT_IN if asked.person is None else BOOK, asked)
        await inbox.read(BOOK, 0, 6, ("a-2", "nenkin", b"sealed"))
        await inbox.read(BOOK, 0, 7, ("a-2", "nenkin", b"again"))  # read again: the first is kept
        await inbox.read(BOOK, 1, 3)
        await inbox.drop(BOOK, kept_since(NOW, APPLICATIONS_KEPT))
    finally:
        await inbox.close()
    again = Inbox(path)  # another process, after a restart
    try:
        assert await inbox_of(again) == [("a-2", {"nenkin": b"sealed"})], "the old one dropped"
        assert await again.of_person(BOOK, ["someone-else"], NOW - timedelta(days=365)) == []
        assert [a.request_id for a in await again.every(topics.OVERSIGHT_IN, NOW)] == ["o-1"]
        assert await again.positions(BOOK) == {0: 8, 1: 4}
        assert await again.positions("other") == {}
    finally:
        await again.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_an_inbox_from_before_sendings_were_noted_takes_its_requests_as_sent(
        tmp_path: Path) -> None:
    """An inbox kept before requests were noted sent or unsent is given the column; its
    requests are taken as sent (their record was not kept), those asked after as noted."""
    path = tmp_path / "inbox.db"
    with closing(sqlite3.connect(path)) as old, old:
        old.execute("CREATE TABLE asked (request_id TEXT PRIMARY KEY, book TEXT NOT NULL, "
                    "at TEXT NOT NULL, holders TEXT NOT NULL, request_ids TEXT NOT NULL, "
                    "person TEXT)")
        old.execute("INSERT INTO asked VALUES ('a-1', ?, ?, '[\"nenkin\"]', '[\"rq-1\"]', ?)",
                    (BOOK, (NOW - timedelta(days=1)).isoformat(timespec="microseconds"), PERSON))
    inbox = Inbox(path)
    try:
        since = NOW - APPLICATIONS_KEPT
        await inbox.add(BOOK, Asked("a-2", NOW, ("nenkin",), ("rq-2",), PERSON))
        await inbox.to_send(BOOK, "a-2", b"record")
        assert await inbox.unsent(BOOK, since) == [("a-2", b"record")]
        await inbox.sent(BOOK, "a-2")
        assert await inbox.unsent(BOOK, since) == []
        assert [a.request_id for a in await inbox.every(BOOK, since)] == ["a-2", "a-1"]
    finally:
        await inbox.close()


async def test_a_busy_inbox_holds_up_no_page_and_keeps_what_it_was_given_once_free(
        tmp_path: Path) -> None:
    """Another connection writing in the inbox for a second: the event loop (the pages, the
    readers of the topics) goes on meanwhile, and the answer is kept once the inbox is free.
    The inbox waited for it on the event loop, which stood still."""
    path = tmp_path / "inbox.db"
    inbox = Inbox(path)
    try:
        with locked(path, "BEGIN EXCLUSIVE"):
            async with ticking() as ticker:
                await inbox.read(BOOK, 0, 6, ("a-1", "nenkin", b"sealed"))
                ticker.went_on(0.9)
        assert await inbox.positions(BOOK) == {0: 7}
    finally:
        await inbox.close()


async def test_the_inbox_keeps_where_the_anchor_check_stands(tmp_path: Path) -> None:
    """Read back as kept by another process; a place that does not read is none (the next
    check reads every head again), not a failed integrity page."""
    path = tmp_path / "inbox.db"
    signed = Signer.generate().sign_head(TreeHead(12, b"\x01" * 32, NOW))
    held = Held(7, 5, (signed, replace(signed, signature=b"\x00" * 64)))
    inbox = Inbox(path)
    try:
        assert await inbox.anchor_held() is None
        await inbox.keep_anchor_held(Held(3, 3, (signed,)))
        await inbox.keep_anchor_held(held)
    finally:
        await inbox.close()
    again = Inbox(path)
    try:
        assert await again.anchor_held() == held
        with closing(sqlite3.connect(path)) as other, other:
            other.execute("UPDATE anchor_held SET heads = '[{\"tree_size\": 1}]'")
        assert await again.anchor_held() is None
    finally:
        await again.close()


async def inbox_of(inbox: Inbox) -> list[tuple[str, dict[str, bytes]]]:
    return [(a.request_id, dict(a.answers)) for a in await inbox.of_person(
        BOOK, [PERSON], NOW - timedelta(days=365))]


@SESSION_LOOP
async def test_holders_not_answered_in_time_are_shown_overdue_those_in_time_awaited(
        town: Town, tmp_path: Path) -> None:
    """A holder that never answered an application left it "waiting" for good, unnoticed:
    once ANSWER_WITHIN is past, the holders asked that have not answered are told overdue
    (a late answer is still taken: taken), none before, none once answered."""
    inbox, now = Inbox(tmp_path / "inbox.db"), datetime.now(UTC)
    key = X25519PrivateKey.generate()
    logs = HolderLogs(KafkaAccess.of(acls.PORTAL), topics.PORTAL_OUT, topics.PORTAL_IN, key,
                      inbox, APPLICATIONS_KEPT, entry=lambda _: None,
                      read_to_end=lambda: asyncio.sleep(0))
    late = Asked("late", now - ANSWER_WITHIN - timedelta(seconds=1), ("city-a", "city-b"),
                 ("rq-1",), PERSON)
    try:
        for asked in (late, replace(late, request_id="fresh", at=now)):
            await inbox.add(BOOK, asked)
        await inbox.read(BOOK, 0, 0, ("late", "city-a", answer_to(key, late, "city-a")))
        shown = {s.asked.request_id: s.overdue for s in await logs.of_person([PERSON])}
    finally:
        await inbox.close()
    assert shown == {"late": ("city-b",), "fresh": ()}
    assert taken(late, "city-b", now - APPLICATIONS_KEPT), "a late answer is still taken"


async def test_an_answer_with_entries_of_another_exchange_shows_only_those_asked_about(
        town: Town, tmp_path: Path) -> None:
    """A holder's answer to an application was shown whole: an entry of another request id it
    sent along (another exchange, another resident's ⑪) was shown to the resident who applied.
    Only the entries of the requests asked about are shown."""
    inbox, key = Inbox(tmp_path / "inbox.db"), X25519PrivateKey.generate()
    logs = HolderLogs(KafkaAccess.of(acls.PORTAL), topics.PORTAL_OUT, topics.PORTAL_IN, key,
                      inbox, APPLICATIONS_KEPT, entry=lambda _: None,
                      read_to_end=lambda: asyncio.sleep(0))
    asked = [Asked(rid, datetime.now(UTC), ("city-a",), (about,), PERSON)
             for rid, about in (("mine", "rq-1"), ("other", "rq-2"))]
    try:
        for n, one in enumerate(asked):
            await inbox.add(BOOK, one)
            await inbox.read(BOOK, 0, n, (one.request_id, "city-a",
                                          answer_to(key, one, "city-a", "rq-1")))
        shown = {s.asked.request_id: s.answers["city-a"] for s in await logs.of_person([PERSON])}
    finally:
        await inbox.close()
    assert [e.request_id for e in shown["mine"]] == ["rq-1"] and shown["other"] == ()


async def test_a_service_named_on_an_entry_is_not_asked_for_its_side_of_the_log(
        town: Town, tmp_path: Path) -> None:
    """A resident's application about a change of number (its provider: the authority) asked
    the authority, a service that keeps no side of the log and answers none: it stayed pending
    for good. Only holders are asked, by the portal as by the oversight console."""
    inbox = Inbox(tmp_path / "inbox.db")
    logs = HolderLogs(KafkaAccess.of(acls.PORTAL), topics.PORTAL_OUT, topics.PORTAL_IN,
                      sealing.key_of(acls.PORTAL), inbox, APPLICATIONS_KEPT, entry=lambda _: None,
                      read_to_end=lambda: asyncio.sleep(0))
    await logs.start()
    try:
        asked = await logs.ask(("sakura-town", acls.AUTHORITY, acls.OVERSIGHT), ["rq-1"],
                               "basis", person=PERSON)
        kept = await inbox.asked(topics.PORTAL_IN, asked.request_id)
    finally:
        await logs.stop()
        await inbox.close()
    assert asked.holders == ("sakura-town",)
    assert kept is not None and kept.holders == ("sakura-town",)


@SESSION_LOOP
async def test_a_request_naming_no_holder_is_neither_kept_logged_nor_sent(
        town: Town, tmp_path: Path) -> None:
    """Every name a service's: the request, sent naming no holder, was kept as complete with
    nothing in it. Now NoHolder, before anything is kept, logged or sent."""
    inbox, logged = Inbox(tmp_path / "inbox.db"), list[Asked]()
    logs = HolderLogs(KafkaAccess.of(acls.PORTAL), topics.PORTAL_OUT, topics.PORTAL_IN,
                      sealing.key_of(acls.PORTAL), inbox, APPLICATIONS_KEPT, entry=lambda _: None,
                      read_to_end=lambda: asyncio.sleep(0))
    platform = KafkaAccess.of(acls.PLATFORM)  # the reader of the portal's requests
    await logs.start()
    try:
        before = len(await read_topic(platform, topics.PORTAL_OUT))

        async def log(asked: Asked) -> None:
            logged.append(asked)

        with pytest.raises(NoHolder, match="no holder among authority, portal"):
            await logs.ask((acls.AUTHORITY, acls.PORTAL, acls.AUTHORITY), ["rq-1"], "basis",
                           person=PERSON, log=log)
        kept = await inbox.every(topics.PORTAL_IN, NOW - APPLICATIONS_KEPT)
        sent = len(await read_topic(platform, topics.PORTAL_OUT)) - before
    finally:
        await logs.stop()
        await inbox.close()
    assert (kept, logged, sent) == ([], [], 0)


@SESSION_LOOP
async def test_answers_that_came_while_the_portal_was_down_are_taken_and_logged_once(
        town: Town, tmp_path: Path) -> None:
    """Three portal instances on one inbox in turn, on the real broker: the first asks and
    stops; a holder answers twice and another once; the second takes each holder's first
    answer, logged once; the third, reading on, takes none again. (The applications go to a
    topic of the test's own: a platform running in the session would refuse them at once in its
    unlisted holders' stead, before the test's answers.)"""
    key, inbox = sealing.key_of(acls.PORTAL), Inbox(tmp_path / "inbox.db")
    out = f"renkei.test.applications.{uuid.uuid4().hex[:8]}"
    admin = admin_client()  # kept until its topic is made: a client let go ends its requests
    admin.create_topics([NewTopic(out, 1, 1)])[out].result(30)
    portal, logged = _portals(key, inbox, KafkaAccess.of(config.ADMIN), out)

    async def answered(*answers: tuple[Asked, str]) -> None:
        async with producer(KafkaAccess.of(acls.PLATFORM)) as relay:  # relays holders' answers
            for asked, holder in answers:
                await relay.send_and_wait(topics.PORTAL_IN, answer_to(key, asked, holder))

    async def shown_once(logs: HolderLogs, asked: Asked) -> None:
        for _ in range(100):
            shown = next(s for s in await logs.of_person([PERSON]) if s.asked.request_id ==
                         asked.request_id)
            if shown.asked.complete:
                assert [len(e) for e in shown.answers.values()] == [1] * len(asked.holders)
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{asked.request_id} was not answered")

    holders = ("test-holder-a", "test-holder-b")
    first = portal()
    await first.start()
    try:
        asked = await first.ask(holders, ["rq-1"], "basis", person=PERSON)
    finally:
        await first.stop()
    await answered((asked, holders[0]), (asked, holders[0]), (asked, holders[1]))
    try:
        second = portal()
        await second.start()
        try:
            await shown_once(second, asked)
        finally:
            await second.stop()
        third = portal()
        await third.start()
        try:
            later = await third.ask(holders[:1], ["rq-2"], "basis", person=PERSON)
            await answered((asked, holders[1]), (later, holders[0]))
            await shown_once(third, later)
        finally:
            await third.stop()
    finally:
        await inbox.close()
    assert sorted(logged) == sorted([(asked.request_id, holders[0]),
                                     (asked.request_id, holders[1]),
                                     (later.request_id, holders[0])])


@SESSION_LOOP
async def test_an_answer_the_inbox_could_not_keep_for_a_while_is_kept_once_it_can(
        town: Town, tmp_path: Path) -> None:
    """The inbox busy (another process writing in it) when a holder's answer comes: the answer
    is taken again once it is free, and so are the answers after it; a failed write of the
    inbox, like one of the audit log, never ends the reading."""
    key, logged, path = sealing.key_of(acls.PORTAL), list[str](), tmp_path / "inbox.db"
    inbox = Inbox(path)

    async def audit_write(asked: Asked, answer: HolderLogAnswer) -> None:
        logged.append(answer.holder)

    async def relayed(asked: Asked, holder: str) -> None:
        async with producer(KafkaAccess.of(acls.PLATFORM)) as relay:
            await relay.send_and_wait(topics.PORTAL_IN, answer_to(key, asked, holder))

    holders = ("test-holder-a", "test-holder-b")
    logs = HolderLogs(KafkaAccess.of(acls.PORTAL), topics.PORTAL_OUT, topics.PORTAL_IN, key,
                      inbox, APPLICATIONS_KEPT, audit_write, entry=lambda _: None,
                      read_to_end=lambda: asyncio.sleep(0))
    await logs.start()
    try:
        asked = await logs.ask(holders, ["rq-1"], "basis", person=PERSON)
        with closing(sqlite3.connect(path, timeout=10)) as other:  # the inbox's write done
            other.execute("BEGIN EXCLUSIVE")  # held past the inbox's wait for it
            await relayed(asked, holders[0])
            for _ in range(100):  # logged, then not kept: the inbox is busy
                if logged:
                    break
                await asyncio.sleep(0.1)
            other.rollback()
        await relayed(asked, holders[1])
        for _ in range(100):
            if (kept := await inbox.asked(BOOK, asked.request_id)) and kept.complete:
                break
            await asyncio.sleep(0.1)
        kept = await inbox.asked(BOOK, asked.request_id)
        assert kept is not None and sorted(kept.answers) == list(holders), "each answer kept"
        assert set(logged) == set(holders), "each logged (again: the same audit event)"
    finally:
        await logs.stop()
        await inbox.close()


@SESSION_LOOP
async def test_an_application_logged_and_unsent_at_a_stop_is_sent_at_the_next_start(
        clients: dict[str, HolderClient], town: Town, tmp_path: Path) -> None:
    """The portal stopped while a resident's application was logged, its producer closed under
    the sending: the application, kept and logged, stayed waiting for its 90 days, sent by no
    one. Started again, the portal sends it once; the holder's answer is taken, and logged, once
    (and a third start sends nothing again)."""
    key, inbox = sealing.key_of(acls.PORTAL), Inbox(tmp_path / "inbox.db")
    portal, logged = _portals(key, inbox)

    async def copies(request_id: str) -> int:
        return sum(r.key == request_id.encode()
                   for r in await read_topic(KafkaAccess.of(acls.PLATFORM), topics.PORTAL_OUT))

    first = portal()
    await first.start()

    async def stopping(asked: Asked) -> None:
        await first.stop()  # as the application's audit write is acknowledged

    try:
        sent = await first.ask(("nenkin",), ["rq-sent"], "basis", person=PERSON)
        with pytest.raises(KafkaError):  # ProducerClosed
            await first.ask(("nenkin",), ["rq-unsent"], "basis", person=PERSON, log=stopping)
        (waiting,) = [a for a in await inbox.of_person(BOOK, [PERSON], NOW - APPLICATIONS_KEPT)
                      if a.request_id != sent.request_id]
        assert await copies(waiting.request_id) == 0
        for _ in range(2):
            again = portal()
            await again.start()
            try:
                for _ in range(100):
                    if (kept := await inbox.asked(BOOK, waiting.request_id)) and kept.complete:
                        break
                    await asyncio.sleep(0.1)
                assert [s.asked.complete for s in await again.of_person([PERSON])] == [True] * 2
            finally:
                await again.stop()
        assert await copies(waiting.request_id) == 1, "sent once, not again at the third start"
    finally:
        await inbox.close()
    assert logged.count((waiting.request_id, "nenkin")) == 1, "its answer taken, logged, once"


async def _answered_on_topic(request_id: str, holders: set[str]) -> None:
    """Wait until each holder's answer to the application is on renkei.portal.in."""
    for _ in range(150):
        answered = {answer.holder for answer in (
            CODEC.decode(r.value, HolderLogAnswer)
            for r in await read_topic(KafkaAccess.of(acls.PORTAL), topics.PORTAL_IN))
            if answer.request_id == request_id}
        if answered >= holders:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the holders did not answer application {request_id}")


async def _audited(request_id: str, outcome: str, want: int) -> list[str]:
    """The providers of the audit store's entries of `outcome` of the request, once `want`
    have arrived (or after a while)."""
    found: list[str] = []
    for _ in range(100):
        with AuditStore(audit_path(), Signer.load_or_create()) as store:
            found = [e.event.provider or "" for e in store.query(
                Query(outcome=outcome), limit=1000).entries if e.event.request_id == request_id]
        if len(found) >= want:
            break
        await asyncio.sleep(0.2)
    return found


@SESSION_LOOP
async def test_answers_to_an_application_made_before_a_restart_are_shown_once_after_it(
        clients: dict[str, HolderClient], platform: Processes, town: Town,
        tmp_path: Path) -> None:
    """A resident applies for the details of an exchange, the portal dies, the holders answer
    while it is down; the portal started again shows the answers, once each, and logs each
    once. They were in the process's memory only: the page was empty after a restart."""
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    theirs = town.own_numbers("sakura-town")
    code, own = [(code, own) for code, own in town.own_numbers("nenkin").items()
                 if code in theirs and nenkin.store.link_code(own)
                 and town_hall.store.link_code(theirs[code])][-1]
    exchange = await ask(nenkin, own, "P-037", "sakura-town", "local_tax")
    assert (await nenkin.outcome(exchange, 30)).status == "FOUND"
    issue.init()
    card = issue.resident_card(code, PIN, tmp_path)
    url = f"http://127.0.0.1:{free_port()}"

    def portal() -> subprocess.Popen[bytes]:
        return spawn("portal", "--port", url.rsplit(":", 1)[1], log=tmp_path / "portal.log")

    first = portal()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _until_up(http, f"{url}/login")
            await card_login(http, url, card)
            serial = None
            for _ in range(100):  # the audit consumer stores the exchange's entries
                async with http.get(f"{url}/history") as history:
                    serial = re.search(rf'data-request="{exchange}">\s*<td[^>]*><a href='
                                       r'"/history/(\d+)"', await history.text())
                if serial:
                    break
                await asyncio.sleep(0.2)
            assert serial, "the exchange is in the resident's history"
            async with http.post(f"{url}/details", allow_redirects=False, data={
                    "csrf": await _csrf(http, f"{url}/history/{serial.group(1)}"),
                    "serial": serial.group(1)}) as applied:
                assert applied.status == 303, await applied.text()
                application = applied.headers["Location"].split("#", 1)[1]
            first.kill()  # before the holders answer: a crash, nothing said on the way out
            first.wait()
    finally:
        stop(first)
    holders = {"nenkin", "sakura-town"}
    await _answered_on_topic(application, holders)
    second = portal()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await _until_up(http, f"{url}/login")
            await card_login(http, url, card)
            page = ""
            for _ in range(100):
                async with http.get(f"{url}/details") as details:
                    page = await details.text()
                if 'class="ok"' in page:
                    break
                await asyncio.sleep(0.2)
    finally:
        stop(second)
    assert page.count('class="card application"') == 1 and f'id="{application}"' in page, \
        "the application, after the restart"
    assert page.count('class="ok"') == 1 and page.count("<h3>") == 2, \
        "each holder's answer, once"
    assert "taxable_income" in page, "the content (⑪), opened"
    assert sorted(await _audited(application, "DETAIL_APPLIED", 2)) == sorted(holders)
    assert sorted(await _audited(application, "DETAIL_ANSWERED", 2)) == sorted(holders), \
        "each answer logged once"


ASKERS = {acls.PORTAL: (topics.PORTAL_OUT, topics.PORTAL_IN, APPLICATIONS_KEPT, PERSON),
          acls.OVERSIGHT: (topics.OVERSIGHT_OUT, topics.OVERSIGHT_IN, OVERSIGHT_KEPT, None)}


async def _refused_by(logs: HolderLogs, person: str | None) -> Shown:
    """A request for sakura-town's and nenkin's side of the log, as `logs` shows it once the
    platform refused it for sakura-town (asked again while the platform's view of the directory is
    moments behind)."""
    shown = None
    for _ in range(10):
        asked = await logs.ask(("nenkin", "sakura-town"), ["rq-1"], "basis", person=person)
        for _ in range(10):
            shown = next(s for s in await (logs.every() if person is None
                                           else logs.of_person([person]))
                         if s.asked.request_id == asked.request_id)
            if "sakura-town" in shown.asked.answers:
                break
            await asyncio.sleep(0.2)
        if shown is not None and shown.refused:
            return shown
    raise AssertionError(f"not refused: {shown}")


@SESSION_LOOP
async def test_a_request_to_a_suspended_holder_is_refused_at_once_and_logged(
        clients: dict[str, HolderClient], platform: Processes, tmp_path: Path) -> None:
    """A resident's application, or the oversight body's request, naming a suspended holder was
    dropped by the platform (the application unlogged), and the page said "no answer" only
    ANSWER_WITHIN later. The platform refuses it at once, in one way for both, saying since when
    the holder is suspended, and logs the refusal; the active holder is asked."""
    inboxes = {asker: Inbox(tmp_path / f"{asker}.db") for asker in ASKERS}
    askers = {asker: HolderLogs(KafkaAccess.of(asker), out, into, sealing.key_of(asker),
                                inboxes[asker], kept, entry=lambda _: None,
                                read_to_end=lambda: asyncio.sleep(0))
              for asker, (out, into, kept, _) in ASKERS.items()}
    for logs in askers.values():
        await logs.start()
    renkei("holder", "suspend", "sakura-town", "--reason", "x")
    try:
        since = (await directory.current())["sakura-town"].inactive_since
        assert since is not None
        await _seen(clients["nenkin"], "sakura-town", False)
        shown = {asker: await _refused_by(logs, ASKERS[asker][3])
                 for asker, logs in askers.items()}
    finally:
        renkei("holder", "resume", "sakura-town")
        for asker, logs in askers.items():
            await logs.stop()
            await inboxes[asker].close()
    await _seen(clients["nenkin"], "sakura-town", True)
    for asker, seen in shown.items():
        assert seen.unsent == {"sakura-town": "refused"}
        refused = seen.refused["sakura-town"]
        assert (refused.refused, refused.inactive_since) == (holder_logs.SUSPENDED, since)
        [refusal] = [e for e in await logged_events(seen.asked.request_id, 1)
                     if e.provider == "sakura-town"]
        assert (refusal.outcome, refusal.requester, refusal.reason) == (
            "REJECTED", asker, holder_logs.SUSPENDED)


@SESSION_LOOP
async def test_a_request_to_a_holder_not_in_the_directory_is_logged_refused_as_not_listed(
        platform: Processes, tmp_path: Path) -> None:
    """A request naming a holder not in the directory was logged refused as one naming a
    suspended holder (UNKNOWN_HOLDER both): an auditor could not tell one from the other. Each
    is logged with the platform's reason for not asking (NOT_LISTED here, SUSPENDED above)."""
    unlisted = f"unlisted-{uuid.uuid4().hex[:8]}"
    for asker, (out, into, kept, person) in ASKERS.items():
        inbox = Inbox(tmp_path / f"{asker}.db")
        logs = HolderLogs(KafkaAccess.of(asker), out, into, sealing.key_of(asker), inbox, kept,
                          entry=lambda _: None,
                          read_to_end=lambda: asyncio.sleep(0))
        await logs.start()
        try:
            asked = await logs.ask((unlisted,), ["rq-1"], "basis", person=person)
        finally:
            await logs.stop()
            await inbox.close()
        [refusal] = await logged_events(asked.request_id, 1)
        assert (refusal.outcome, refusal.requester, refusal.provider, refusal.reason) == (
            "REJECTED", asker, unlisted, holder_logs.NOT_LISTED)
