"""Bad input: each gets a clear rejection to its sender and an audit event; nothing else moves."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer

from audit.events import AccessLogEvent, step_of
from broker import config, topics
from broker.clients import KafkaAccess, at_end, records_since
from holders.client import LINKAGE, HolderClient, new_request_id
from holders.store import HolderStore
from renkei.envelope import Send
from renkei.exchanges import staff as staff_of
from renkei.windows import REPLAY_WINDOW
from schemas.codec import CODEC, MAX_BYTES
from schemas.messages import LinkageRequest, Pong, ProviderAnswer, Rejection
from tests.kafka_helpers import audit_events, producer, unreadable
from tests.test_linkage import ask, bound
from tests.test_renewal_unread import Errors

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOLDER = "nenkin"


def _request(link_code: str, request_id: str | None = None,
             sent_at: datetime | None = None) -> LinkageRequest:
    return LinkageRequest(request_id or str(uuid.uuid4()), sent_at or datetime.now(UTC),
                          link_code, "P-037", "sakura-town", "local_tax")


def _bad_inputs(nenkin: HolderClient, hospital: HolderClient) -> dict[str, bytes]:
    own = bound(nenkin)[0]
    link = nenkin.store.link_code(own)
    assert link is not None
    valid = CODEC.encode(_request(link))
    return {
        "MALFORMED": os.urandom(64),
        "UNKNOWN_SCHEMA": valid[:2] + b"\xfe" * 8 + valid[10:],
        "OVERSIZED": valid[:10] + b"\x00" * (MAX_BYTES + 1000),
        "UNEXPECTED_MESSAGE": CODEC.encode(Pong("p", datetime.now(UTC), datetime.now(UTC))),
        "INVALID_LINK_CODE": CODEC.encode(_request("ZZZZZZZZZZ9")),
        "STALE_REQUEST": CODEC.encode(_request(link, sent_at=datetime.now(UTC)
                                               - timedelta(minutes=10))),
        "truncated MALFORMED": valid[:-4],
        "negative enum index MALFORMED": _refused_as_the_last_symbol(),
        "other unit INVALID_LINK_CODE": CODEC.encode(_request(
            next(iter(hospital.store.bindings().values())))),
    }


def _refused_as_the_last_symbol() -> bytes:
    """An answer whose status is enum index -1, which fastavro read as the last symbol."""
    answer = CODEC.encode(ProviderAnswer("a-" + str(uuid.uuid4()), b"t", "L", "REFUSED", b"p"))
    status = len(answer) - 3  # the payload b"p" after it: its length 2 (zig-zag), then "p"
    assert answer[status] == 2 * 2
    return answer[:status] + b"\x01" + answer[status + 1:]


async def test_each_bad_input_is_rejected_with_its_reason_and_the_agent_keeps_going(
        clients: dict[str, HolderClient]) -> None:
    nenkin = clients[HOLDER]
    access = KafkaAccess.of(HOLDER)
    inbox = AIOKafkaConsumer(topics.inbox(HOLDER), **access.aiokafka(),
                             enable_auto_commit=False)
    await inbox.start()
    try:
        await at_end(inbox)
        bad = _bad_inputs(nenkin, clients["sakura-hospital"])
        async with producer(access) as prod:
            for value in bad.values():
                await prod.send_and_wait(topics.outbox(HOLDER), value,
                                         key=uuid.uuid4().bytes)
        rejections = await _rejections(inbox, len(bad))
    finally:
        await inbox.stop()
    assert sorted(r.reason for r in rejections) == sorted(k.split()[-1] for k in bad)
    assert all(r.detail for r in rejections), "every rejection says why"
    events = [e for e in await audit_events() if e.outcome == "REJECTED"
              and e.requester == HOLDER and e.reason in {k.split()[-1] for k in bad}]
    assert len({e.event_id for e in events}) >= len(bad)
    after = await nenkin.outcome(await ask(nenkin, bound(nenkin)[1], "P-037", "sakura-town",
                                           "local_tax"), 30)
    assert after.status == "FOUND", "lawful traffic still flows after the bad input"


async def _rejections(inbox: AIOKafkaConsumer, count: int) -> list[Rejection]:
    found: list[Rejection] = []
    async with asyncio.timeout(60):
        while len(found) < count:
            for records in (await inbox.getmany(timeout_ms=500)).values():
                for record in records:
                    message = CODEC.decode(record.value or b"", Rejection, Pong)
                    if isinstance(message, Rejection):
                        found.append(message)
    return found


async def test_a_reused_request_id_is_refused_as_a_duplicate(
        clients: dict[str, HolderClient]) -> None:
    nenkin = clients[HOLDER]
    first = await ask(nenkin, bound(nenkin)[2], "P-037", "sakura-town", "local_tax")
    assert (await nenkin.outcome(first, 30)).status == "FOUND"
    link = nenkin.store.link_code(bound(nenkin)[2])
    assert link is not None
    access = KafkaAccess.of(HOLDER)
    inbox = AIOKafkaConsumer(topics.inbox(HOLDER), **access.aiokafka(),
                             enable_auto_commit=False)
    await inbox.start()
    try:
        await at_end(inbox)
        async with producer(access) as prod:
            await prod.send_and_wait(topics.outbox(HOLDER),
                                     CODEC.encode(_request(link, request_id=first)))
        (rejection,) = await _rejections(inbox, 1)
    finally:
        await inbox.stop()
    assert (rejection.request_id, rejection.reason) == (first, "DUPLICATE_REQUEST")
    assert nenkin.store.request(first) is not None
    assert nenkin.store.request(first).status == "FOUND"  # type: ignore[union-attr]


async def test_a_request_its_holder_sent_again_is_audited_once(
        clients: dict[str, HolderClient]) -> None:
    """A request the broker took just before its holder's server was killed is kept, and sent
    again at the next start: that copy (the same bytes at another offset, before its answer or
    after) is refused to the holder alone, not audited about the person; its id reused with
    other bytes is refused and audited."""
    nenkin = clients[HOLDER]
    request, kept = _kept(nenkin, bound(nenkin)[4])
    link = request.link_code
    async with producer(KafkaAccess.of(HOLDER)) as prod:
        for _ in range(2):  # its send, then its send again by the restarted server
            await prod.send_and_wait(kept.topic, kept.value, key=link.encode())
        assert (await nenkin.outcome(request.request_id, 30)).status == "FOUND"
        await prod.send_and_wait(kept.topic, kept.value, key=link.encode())
        reuse = await prod.send_and_wait(kept.topic, CODEC.encode(_request(
            link, request.request_id, request.sent_at + timedelta(seconds=1))), key=link.encode())
    refused = f"{request.request_id}:rejected@{kept.topic}:{reuse.partition}:{reuse.offset}"
    events = await _audited(request.request_id, refused)
    assert sorted(step_of(e) for e in events) == ["answered", "approved", "rejected"], events
    assert {e.reason for e in events} == {None, "DUPLICATE_REQUEST"}
    assert nenkin.store.request(request.request_id).status == "FOUND"  # type: ignore[union-attr]


async def test_a_kept_request_the_broker_has_is_not_sent_again_at_the_next_start(
        clients: dict[str, HolderClient]) -> None:
    """A request the broker took just before its holder's server stopped is kept; the next
    start finds it on the outbox and sends no copy (one read past the replay window would be
    refused as stale and audited about the person again), its answer settling it as any; one
    the broker does not have is sent, and answered; one made before the replay window that the
    broker does not have within it is not sent (it would be refused as stale, audited about the
    person) and is settled so, kept no more; one the broker took after it (refused as stale)
    alike, not sent again."""
    nenkin = clients[HOLDER]
    since = datetime.now(UTC) - timedelta(minutes=11)
    taken, untaken, stale, taken_stale = (_kept(nenkin, own, at) for own, at in zip(
        bound(nenkin)[5:9], (None, None, since + timedelta(minutes=1), since), strict=True))
    await _taken_by_broker(*taken)
    await _taken_by_broker(*taken_stale)
    await nenkin._send_kept()
    outcomes = [await nenkin.outcome(request.request_id, 30) for request, _ in
                (taken, untaken, stale, taken_stale)]
    assert [(o.status, (o.detail or "").split(":")[0]) for o in outcomes] == [
        ("FOUND", ""), ("FOUND", ""), ("REJECTED", "STALE_REQUEST"),
        ("REJECTED", "STALE_REQUEST")]
    assert not nenkin.store.unsent()
    sent = await _on_outbox(since)
    assert [sent.count(kept.value) for _, kept in (taken, untaken, stale, taken_stale)] == [
        1, 1, 0, 1]


async def test_a_kept_request_unreadable_now_is_settled_rejected_at_the_next_start(
        clients: dict[str, HolderClient]) -> None:
    """A kept message the holder cannot read now (of a schema retired since it was kept, or
    corrupt) stops no start and is not sent: the platform could not read it either, nor name it
    in its refusal; it is settled REJECTED with why, whether the broker has it or not; the
    outbox is read for the others, the one the broker has not sent again."""
    nenkin = clients[HOLDER]
    since = datetime.now(UTC) - timedelta(minutes=1)
    taken = _kept(nenkin, bound(nenkin)[8])
    retired = [_retired(nenkin, own) for own in bound(nenkin)[9:11]]  # the first one taken
    await _taken_by_broker(taken[0], Send(taken[1].topic, taken[0].link_code, retired[0][1]))
    await _taken_by_broker(*taken)
    await nenkin._send_kept()
    assert (await nenkin.outcome(taken[0].request_id, 30)).status == "FOUND"
    for request_id, _ in retired:
        settled = nenkin.store.request(request_id)
        assert settled is not None
        assert (settled.status, (settled.detail or "").split(":")[0]) == (
            "REJECTED", "UNKNOWN_SCHEMA"), settled
    assert not nenkin.store.unsent()
    sent = await _on_outbox(since)
    assert [sent.count(value) for value in (taken[1].value, *(v for _, v in retired))] == [
        1, 1, 0]


async def test_each_kept_request_is_sent_again_when_its_holder_cannot_read_its_outbox(
        clients: dict[str, HolderClient], caplog: pytest.LogCaptureFixture) -> None:
    """A holder not granted READ on its outbox (registered before it was given, not provisioned
    again) cannot tell which kept requests the broker has: each is sent again, as before, the
    copy refused to the holder alone and the request settled by the answer to the first."""
    nenkin = clients[HOLDER]
    since = datetime.now(UTC) - timedelta(minutes=1)
    request, kept = _kept(nenkin, bound(nenkin)[10])
    await _taken_by_broker(request, kept)
    with unreadable(HOLDER, topics.outbox(HOLDER)):
        await nenkin._send_kept()
    await asyncio.gather(*nenkin._sending)  # on its way still: the first copy may be answered
    assert (f"its outbox cannot be read ([Error 29] TopicAuthorizationFailedError: "
            f"{topics.outbox(HOLDER)}): the 1 request(s) kept are all sent again") in caplog.text
    assert (await nenkin.outcome(request.request_id, 30)).status == "FOUND"
    sent = await _on_outbox(since)
    assert sent.count(kept.value) == 2


class NotSent(NamedTuple):
    """Two requests kept as their holder's server stopped, the first taken by the broker then,
    the other never; the server started again once a copy of each would be stale, its outbox
    not readable; when the test began."""

    taken: tuple[LinkageRequest, Send]
    never: tuple[LinkageRequest, Send]
    since: datetime


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def not_sent(clients: dict[str, HolderClient]) -> NotSent:
    """NotSent, the session's client replaced by the one started again (its tasks are not the
    test's)."""
    since = datetime.now(UTC)
    nenkin = clients[HOLDER]
    await nenkin.stop()  # as its server stopped, the broker away: the requests kept
    taken, never = (_kept(nenkin, own, at) for own, at in zip(bound(nenkin)[11:13], (
        since - REPLAY_WINDOW + timedelta(seconds=5), since - timedelta(minutes=11)),
        strict=True))
    await _taken_by_broker(*taken)  # fresh: the platform answers it
    await asyncio.sleep(max(0.0, (taken[0].sent_at + REPLAY_WINDOW - datetime.now(UTC))
                            .total_seconds()) + 2)  # a copy now would be stale
    nenkin.store.close()
    with unreadable(HOLDER, topics.outbox(HOLDER)):
        clients[HOLDER] = HolderClient(HOLDER, HolderStore.of(HOLDER))
        await clients[HOLDER].start()
    await asyncio.gather(*clients[HOLDER]._sending)
    return NotSent(taken, never, since)


async def test_a_kept_request_past_the_replay_window_is_not_sent_when_its_outbox_cannot_be_read(
        clients: dict[str, HolderClient], not_sent: NotSent) -> None:
    """A holder that cannot read its outbox at a start (not granted READ, or the read timed out)
    sent every kept request again, one a copy of which reaches the platform past the replay
    window among them: refused STALE_REQUEST and logged about the person again, though the
    broker took its first copy in time and the platform answered it. Such a one is not sent:
    one whose answer its inbox has is settled by it, one answered by none in time (the broker
    never took it) is settled STALE_REQUEST; each is on the outbox once at most and the access
    log has no refusal of it."""
    nenkin, kept = clients[HOLDER], (not_sent.taken, not_sent.never)
    outcomes = [await nenkin.outcome(request.request_id, 30) for request, _ in kept]
    assert [(o.status, (o.detail or "").split(":")[0]) for o in outcomes] == [
        ("FOUND", ""), ("REJECTED", "STALE_REQUEST")]
    assert not nenkin.store.unsent()
    sent = await _on_outbox(not_sent.since - timedelta(minutes=1))
    assert [sent.count(message.value) for _, message in kept] == [1, 0]
    await asyncio.sleep(3)  # a copy sent would have been refused by now
    events = await audit_events({request.request_id for request, _ in kept})
    assert [e for e in events if e.reason == "STALE_REQUEST"] == []


class SettlingFailed(NamedTuple):
    """A request kept, never taken by the broker, whose settling failed as its holder's server
    ran (its outbox not read, its store's write refused, not busy); the errors the server
    logged before its stop, what the stop raised (None: nothing), and whether the stop closed
    the producer and waited for the inbox."""

    never: LinkageRequest
    errors: list[str]
    stop_raised: BaseException | None
    stopped: bool


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def settling_failed(clients: dict[str, HolderClient]) -> SettlingFailed:
    """SettlingFailed, another request kept beside it taken by the broker (the outbox read
    where it is, and refused); the session's client replaced by one started again (its tasks
    are not the test's)."""
    nenkin, now, errors = clients[HOLDER], datetime.now(UTC), Errors()
    never, _ = _kept(nenkin, bound(nenkin)[13], now - timedelta(minutes=11))
    taken = _kept(nenkin, bound(nenkin)[14], now - REPLAY_WINDOW + timedelta(seconds=15))
    await _taken_by_broker(*taken)
    logging.getLogger("holders.client").addHandler(errors)
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(nenkin, "_settled_alone", _write_refused)
            with unreadable(HOLDER, topics.outbox(HOLDER)):
                await nenkin._send_kept()
            assert nenkin._settling is not None
            await asyncio.wait({nenkin._settling}, timeout=30)
    finally:
        logging.getLogger("holders.client").removeHandler(errors)
    raised = (await asyncio.gather(nenkin.stop(), return_exceptions=True))[0]
    stopped = nenkin._producer._closed and nenkin._inbox is not None and nenkin._inbox.done()
    nenkin.store.close()
    clients[HOLDER] = HolderClient(HOLDER, HolderStore.of(HOLDER))
    await clients[HOLDER].start()
    return SettlingFailed(never, errors.messages,
                          raised if isinstance(raised, BaseException) else None, stopped)


async def test_a_failure_settling_kept_requests_is_logged_and_the_stop_goes_on(
        clients: dict[str, HolderClient], settling_failed: SettlingFailed) -> None:
    """The settling of kept requests not sent, their outbox not read (_settled_by_inbox), was
    watched by nobody: failed (its store's write refused, not busy), it said nothing and its
    requests stayed unsettled; and the holder's stop raised its failure before closing the
    producer and waiting for the inbox. Its failure is logged in one line as it fails, the
    stop goes on, and the request kept is settled at the next start."""
    assert [m for m in settling_failed.errors if "could not be settled" in m] == [
        f"{HOLDER}: its kept request(s) not sent could not be settled (OperationalError: "
        "attempt to write a readonly database): they stay kept, settled at its next start"
    ], settling_failed.errors
    assert (settling_failed.stop_raised, settling_failed.stopped) == (None, True)
    outcome = await clients[HOLDER].outcome(settling_failed.never.request_id, 30)
    assert (outcome.status, (outcome.detail or "").split(":")[0]) == (
        "REJECTED", "STALE_REQUEST")


def _write_refused(request_id: str, status: str, detail: str) -> None:
    """A write to the store refused, not as busy: as by a store read-only."""
    with closing(sqlite3.connect("file::memory:?mode=ro", uri=True)) as read_only:
        read_only.execute("CREATE TABLE requests (request_id TEXT)")


def _kept(client: HolderClient, own: str,
          sent_at: datetime | None = None) -> tuple[LinkageRequest, Send]:
    """A linkage request about this record, recorded and kept (its message not yet sent)."""
    link = client.store.link_code(own)
    assert link is not None
    staff, terminal = staff_of(client.holder)
    request = _request(link, request_id=new_request_id(), sent_at=sent_at)
    kept = client._outgoing(link, request)
    client._opened(client.store.open_request(
        request.request_id, LINKAGE, own, staff, terminal, pattern_id="P-037",
        provider="sakura-town", data_type="local_tax", purpose="審査",
        outgoing=(kept.key, kept.value)))
    return request, kept


def _retired(client: HolderClient, own: str) -> tuple[str, bytes]:
    """A linkage request about this record kept under a schema retired since (its id, its
    message)."""
    request, kept = _kept(client, own)
    retired = kept.value[:2] + b"\xfe" * 8 + kept.value[10:]  # UNKNOWN_SCHEMA
    client.store.db.execute("UPDATE requests SET outgoing = ? WHERE request_id = ?",
                            (retired, request.request_id))
    return request.request_id, retired


async def _taken_by_broker(request: LinkageRequest, kept: Send) -> None:
    """The kept request's message taken by the broker, as just before its holder's server
    stopped."""
    async with producer(KafkaAccess.of(HOLDER)) as prod:
        await prod.send_and_wait(kept.topic, kept.value, key=request.link_code.encode())


async def _on_outbox(since: datetime) -> list[bytes]:
    """The messages on the holder's outbox from `since` on (by the broker's time)."""
    return [record.value async for record in records_since(
        KafkaAccess.of(config.ADMIN), [topics.outbox(HOLDER)], int(since.timestamp() * 1000))]


async def _audited(request_id: str, last: str) -> list[AccessLogEvent]:
    """The request's access-log events, once the one whose id is `last` is among them."""
    async with asyncio.timeout(30):
        while True:
            events = await audit_events({request_id})
            if last in {e.event_id for e in events}:
                return events
            await asyncio.sleep(0.3)
