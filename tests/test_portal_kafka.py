"""The portal's reading of holders' answers, with an in-memory topic in place of the consumer
that follows one (the rest is the real class, with a real inbox): an answer is kept only once
logged, and a failed audit write does not end the reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import portal.kafka as portal_kafka
from broker.clients import KafkaAccess
from broker.credentials import Credentials
from portal.inbox import APPLICATIONS_KEPT, Asked, Inbox
from renkei.envelope import Send
from schemas.messages import HolderLogAnswer
from tests.test_portal_inbox import answer_to


@dataclass
class Record:
    value: bytes


class Topic:
    """An answers topic, followed from its end."""

    def __init__(self) -> None:
        self.records: asyncio.Queue[Record] = asyncio.Queue()

    async def read_on(self, access: KafkaAccess, topic: str, positions: dict[int, int],
                      ready: asyncio.Event
                      ) -> AsyncIterator[tuple[int, int, bytes, datetime | None]]:
        ready.set()
        offset = positions.get(0, 0)
        while True:
            yield 0, offset, (await self.records.get()).value, None
            offset += 1


class Producer:
    async def stop(self) -> None:
        pass


async def _nothing(*args: Any) -> None:
    pass


async def _delivered(producer: Any, effects: Sequence[Send]) -> None:
    pass


def _answer(key: X25519PrivateKey, asked: Asked) -> Record:
    return Record(answer_to(key, asked, "nenkin"))


async def _until(done: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(200):
        if await done():
            return
        await asyncio.sleep(0.01)


async def test_a_failed_audit_write_neither_shows_the_answer_unlogged_nor_stops_the_reading(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    topic = Topic()
    monkeypatch.setattr(portal_kafka, "read_on", topic.read_on)
    monkeypatch.setattr(portal_kafka, "started", _nothing)
    monkeypatch.setattr(portal_kafka, "producer_for", lambda access: Producer())
    monkeypatch.setattr(portal_kafka, "deliver", _delivered)
    monkeypatch.setattr(portal_kafka, "RETRY_FIRST", 0.01)
    key, tries, shown_unlogged = X25519PrivateKey.generate(), [0], []

    async def audit_write(asked: Asked, answer: HolderLogAnswer) -> None:
        shown_unlogged.append(await complete(asked))
        tries[0] += 1
        if tries[0] == 1:
            raise ConnectionError("the audit write timed out (simulated)")

    access = KafkaAccess("127.0.0.1:9", Credentials("portal", "-"))
    inbox = Inbox(tmp_path / "inbox.db")
    logs = portal_kafka.HolderLogs(access, "out", "in", key, inbox, APPLICATIONS_KEPT,
                                   audit_write, entry=lambda _: None,
                                   read_to_end=lambda: asyncio.sleep(0))

    async def complete(asked: Asked) -> bool:
        return all(s.asked.complete for s in await logs.of_person([asked.person or ""]))

    await logs.start()
    try:
        first = await logs.ask(["nenkin"], ["rq-1"], "basis", person="ABC98765XYZ")
        second = await logs.ask(["nenkin"], ["rq-2"], "basis", person="369PQRST246")
        await topic.records.put(_answer(key, first))
        await _until(lambda: complete(first))
        await topic.records.put(_answer(key, second))
        await _until(lambda: complete(second))
        assert await complete(first) and await complete(second)
        assert tries[0] == 3 and not any(shown_unlogged)
    finally:
        await logs.stop()
        await inbox.close()


@asynccontextmanager
async def _sending(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, happened: list[str]
                   ) -> AsyncIterator[portal_kafka.HolderLogs]:
    """Applications asked of holders, started, each one sent noted in `happened` ("sent" its
    id); stopped, their inbox closed, at the end."""

    async def delivered(producer: Any, effects: Sequence[Send]) -> None:
        happened.extend(f"sent {e.key}" for e in effects)

    monkeypatch.setattr(portal_kafka, "read_on", Topic().read_on)
    monkeypatch.setattr(portal_kafka, "started", _nothing)
    monkeypatch.setattr(portal_kafka, "producer_for", lambda access: Producer())
    monkeypatch.setattr(portal_kafka, "deliver", delivered)
    access = KafkaAccess("127.0.0.1:9", Credentials("portal", "-"))
    inbox = Inbox(tmp_path / "inbox.db")
    logs = portal_kafka.HolderLogs(access, "out", "in", X25519PrivateKey.generate(), inbox,
                                   APPLICATIONS_KEPT, entry=lambda _: None,
                                   read_to_end=lambda: asyncio.sleep(0))
    await logs.start()
    try:
        yield logs
    finally:
        await logs.stop()
        await inbox.close()


async def test_an_application_is_logged_before_it_is_sent_and_not_sent_unlogged(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A portal that stops between sending an application and logging it would leave one the
    holders answer and the resident's history lacks: it is logged first, sent only once logged."""
    happened: list[str] = []

    async def logged(asked: Asked) -> None:
        happened.append(f"logged {asked.request_id}")

    async def unlogged(asked: Asked) -> None:
        raise ConnectionError("the audit write timed out (simulated)")

    async with _sending(monkeypatch, tmp_path, happened) as logs:
        with pytest.raises(ConnectionError):
            await logs.ask(["nenkin"], ["rq-1"], "basis", person="ABC98765XYZ", log=unlogged)
        assert happened == [] and await logs.of_person(["ABC98765XYZ"]) == [], \
            "not logged: not sent"
        asked = await logs.ask(["nenkin"], ["rq-2"], "basis", person="ABC98765XYZ", log=logged)
        assert happened == [f"logged {asked.request_id}", f"sent {asked.request_id}"]


async def _left_while_logged(logs: portal_kafka.HolderLogs, happened: list[str]) -> None:
    """An application asked, its resident gone (their page's handler cancelled) while its audit
    write awaits its broker, the write then done ("logged" its id noted in `happened`)."""
    writing, written = asyncio.Event(), asyncio.Event()

    async def logged(asked: Asked) -> None:
        happened.append(f"logged {asked.request_id}")  # the write is out, its ack awaited
        writing.set()
        await written.wait()

    asking = asyncio.create_task(logs.ask(["nenkin"], ["rq-1"], "basis",
                                          person="ABC98765XYZ", log=logged))
    await writing.wait()
    asking.cancel()
    written.set()
    with pytest.raises(asyncio.CancelledError):
        await asking


async def test_an_application_whose_resident_leaves_while_it_is_logged_is_sent_all_the_same(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The resident gone while their application's audit write awaits its broker (their page's
    handler cancelled): it is logged, kept and sent all the same. Cut short with the page, it
    was logged and neither kept nor sent, an application in their history no holder was asked."""
    happened: list[str] = []

    async def sent() -> bool:
        return len(happened) == 2

    async with _sending(monkeypatch, tmp_path, happened) as logs:
        await _left_while_logged(logs, happened)
        await _until(sent)
        kept = await logs.of_person(["ABC98765XYZ"])
        assert [s.asked.request_ids for s in kept] == [("rq-1",)], "kept"
        request_id = kept[0].asked.request_id
        assert happened == [f"logged {request_id}", f"sent {request_id}"]


async def test_an_application_whose_resident_left_and_whose_sending_fails_is_logged(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The resident gone while their application was logged, its sending then failed: one
    line says so (its request id, no personal data); it was said only as asyncio's "never
    retrieved", if the task was collected, the failure taken by no one (no page left)."""
    failed = asyncio.Event()

    async def undelivered(producer: Any, effects: Sequence[Send]) -> None:
        failed.set()
        raise ConnectionError("the broker is away (simulated)")

    async with _sending(monkeypatch, tmp_path, []) as logs:
        monkeypatch.setattr(portal_kafka, "deliver", undelivered)
        await _left_while_logged(logs, [])
        await failed.wait()
        await asyncio.sleep(0.01)  # the failure's callback, run after the sending's end
        request_id = (await logs.of_person(["ABC98765XYZ"]))[0].asked.request_id
        said = [r for r in caplog.records if r.name == "portal.kafka" and r.levelname == "ERROR"]
        assert len(said) == 1, "the tries to send it again are warnings"
        assert request_id in said[0].getMessage() and "ConnectionError" in said[0].getMessage()
        assert "ABC98765XYZ" not in caplog.text


async def test_an_application_whose_sending_failed_is_sent_again_while_the_portal_runs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The broker away at an application's sending: the page is told of the failure, and the
    application, kept and logged, is sent again once the broker is back. It waited for good."""
    happened: list[str] = []
    monkeypatch.setattr(portal_kafka, "RETRY_FIRST", 0.01)

    async def sent() -> bool:
        return bool(happened)

    async with _sending(monkeypatch, tmp_path, happened) as logs:
        tries = [0]

        async def away_once(producer: Any, effects: Sequence[Send]) -> None:
            tries[0] += 1
            if tries[0] == 1:
                raise ConnectionError("the broker is away (simulated)")
            happened.extend(f"sent {e.key}" for e in effects)

        monkeypatch.setattr(portal_kafka, "deliver", away_once)
        with pytest.raises(ConnectionError):
            await logs.ask(["nenkin"], ["rq-1"], "basis", person="ABC98765XYZ")
        await _until(sent)
        (kept,) = await logs.of_person(["ABC98765XYZ"])
        assert happened == [f"sent {kept.asked.request_id}"]


async def test_an_application_whose_resident_left_is_sent_before_the_stop(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The resident gone while their application was logged, the portal stopped while it is
    sent: the stop awaits its sending. It was awaited by no one, its producer stopped under it."""
    happened: list[str] = []

    async def slow(producer: Any, effects: Sequence[Send]) -> None:
        await asyncio.sleep(0.05)
        happened.extend(f"sent {e.key}" for e in effects)

    async with _sending(monkeypatch, tmp_path, happened) as logs:
        monkeypatch.setattr(portal_kafka, "deliver", slow)
        await _left_while_logged(logs, happened)
        await logs.stop()
        assert [h.split()[0] for h in happened] == ["logged", "sent"]


async def test_an_application_still_unsent_at_the_stop_is_cancelled_and_logged(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The resident gone while their application was logged, its broker away at the portal's
    stop: the stop waits its while, then cancels the sending and says so in one line (its
    request id, no personal data). It was left running, its producer stopped under it."""
    happened: list[str] = []

    async def away(producer: Any, effects: Sequence[Send]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            happened.append("cut short")
            raise

    monkeypatch.setattr(portal_kafka, "STOP_SECONDS", 0.05)
    async with _sending(monkeypatch, tmp_path, []) as logs:
        monkeypatch.setattr(portal_kafka, "deliver", away)
        await _left_while_logged(logs, [])
        await logs.stop()
        request_id = (await logs.of_person(["ABC98765XYZ"]))[0].asked.request_id
        said = [r for r in caplog.records if r.name == "portal.kafka"]
        assert happened == ["cut short"] and [r.levelname for r in said] == ["ERROR"]
        assert request_id in said[0].getMessage() and "ABC98765XYZ" not in caplog.text
