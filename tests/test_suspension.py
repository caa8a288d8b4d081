"""A holder suspended and resumed by the operator (`renkei holder suspend`, `resume`), on the
real broker: while suspended its requests and requests to it are refused."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit.events import OperatorAction, from_millis
from broker import acls, config, topics
from broker.clients import KafkaAccess, offsets, read_topic, running
from holders.client import HolderClient
from processors import decider, directory, keys, patterns
from processors import platform as platform_module
from processors.context import Context
from processors.keys import MasterKeys
from processors.platform import Views, judged_by_directory
from renkei import sealing
from renkei import town as town_setup
from renkei.broker_time import LOG_APPEND_TIME, appended_at
from renkei.cli import INTERRUPTED
from renkei.compacted import NotFollowing, holder_directory, holder_entries
from renkei.envelope import Send, send, unpacked
from renkei.exchanges import staff as staff_of
from renkei.service_loop import TRANSACTION_MS, deliver, fencing, handed, settled
from renkei.state import file_locked, private_dir
from renkei.tether import tethered
from schemas.codec import CODEC, HEADER, NewerVersion, SchemaError
from schemas.messages import HolderEntry, Ping, ProviderAnswer, ProviderQuery, Suspension
from tests.conftest import ANSWER_TIMEOUT, SILENT
from tests.kafka_helpers import (
    Stopped,
    action_of,
    at_once,
    directory_records,
    from_two_folders,
    logged_events,
    operator_actions,
    renkei,
    stopped,
    stopped_before_logging,
    stops,
)
from tests.test_linkage import _medical_link, ask, bound

pytestmark = pytest.mark.asyncio(loop_scope="session")
RESUMED_ROUNDS = 5  # suspensions and resumptions, a request each way after each resumption
STALL = 0.7  # seconds the platform is stopped before a command: past a fetch's wait (0.5 s)


async def _seen(client: HolderClient, holder: str, active: bool) -> None:
    """Wait until the holder's directory view has `holder` as active (or not)."""
    async with asyncio.timeout(10):
        while client.entry(holder).active != active:
            await client.directory.changed()


async def _ended(request_id: str) -> list[tuple[str, str, str | None]]:
    """The kind, outcome and reason of each access-log event of a request, once it is refused,
    or approved and ended TIMED_OUT (a binding's approval is not logged: its first event)."""
    events = await logged_events(request_id, 1)
    while events[0].outcome == "APPROVED" and events[-1].outcome != "TIMED_OUT":
        events = await logged_events(request_id, len(events) + 1)
    return [(e.kind, e.outcome, e.reason) for e in events]


async def _status(client: HolderClient, pattern: str, provider: str, data_type: str
                  ) -> tuple[str, str | None]:
    request_id = await ask(client, bound(client)[0], pattern, provider, data_type)
    outcome = await client.outcome(request_id, 30)
    return outcome.status, outcome.detail


async def test_a_suspended_holder_neither_requests_nor_provides_until_it_is_resumed(
        clients: dict[str, HolderClient]) -> None:
    """No command made a holder inactive: a hospital whose access was withdrawn stayed active.
    Suspended, its entry is inactive from its broker time on, kept when registered again, and
    its linkage and binding requests alike are told so (SUSPENDED, in the access log too, told
    from NOT_PERMITTED, a request the law does not permit it), as are requests to it (SUSPENDED,
    told from UNKNOWN_HOLDER, a provider not in the directory); resumed, it requests and
    provides again. Its first request may come before the platform's view of the directory has
    the suspension: approved then, it ends TIMED_OUT (SUSPENDED) in the access log, and the
    holder is told as it is refused at approval (a linkage's requester heard nothing, its
    request left sent; a binding's was relayed the registry's answer, logged answered)."""
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    before = datetime.now(UTC) - timedelta(seconds=5)  # the broker's clock is this machine's
    said = renkei("holder", "suspend", "sakura-town", "--reason", "情報漏えい").stdout
    try:
        assert "suspended sakura-town" in said and "reason: 情報漏えい" in said
        entry = (await directory.current())["sakura-town"]
        assert not entry.active and entry.inactive_since is not None
        assert before < entry.inactive_since < datetime.now(UTC)
        assert entry.inactive_since.isoformat() in said
        await _seen(nenkin, "sakura-town", False)
        suspended = ("REJECTED", "SUSPENDED: the requester is suspended since "
                     f"{entry.inactive_since.isoformat()}: not an active holder in the directory")
        asked = await ask(town_hall, bound(town_hall)[0], "P-027", "nenkin", "pension_benefit")
        told = await town_hall.outcome(asked, 30)
        assert (told.status, told.detail) == suspended
        assert await _ended(asked) in (
            [("LINKAGE", "REJECTED", "SUSPENDED")],  # a suspension, not a request the law forbids
            [("LINKAGE", "APPROVED", None), ("ANSWER", "REJECTED", "SUSPENDED"),  # its answer's
             ("ANSWER", "TIMED_OUT", "SUSPENDED")],
            [("LINKAGE", "APPROVED", None), ("ANSWER", "TIMED_OUT", "SUSPENDED")])  # no answer
        binding = await town_hall.bind(bound(town_hall)[0], *staff_of("sakura-town"))
        answered = await town_hall.outcome(binding, 30)
        assert (answered.status, answered.detail) == suspended
        assert await _ended(binding) in (
            [("BINDING", "REJECTED", "SUSPENDED")],  # refused at approval
            [("BINDING", "TIMED_OUT", "SUSPENDED")])  # its answer relayed to no one, or none
        asked = await ask(nenkin, bound(nenkin)[0], "P-037", "sakura-town", "local_tax")
        told = await nenkin.outcome(asked, 30)
        assert (told.status, told.detail) == (
            "REJECTED", "SUSPENDED: the provider 'sakura-town' is suspended since "
            f"{entry.inactive_since.isoformat()}: not an active holder in the directory")
        [refusal] = await logged_events(asked, 1)
        assert (refusal.outcome, refusal.reason, refusal.provider) == (
            "REJECTED", "SUSPENDED", "sakura-town")
        again = renkei("holder", "suspend", "sakura-town", "--reason", "x", check=False)
        assert again.returncode == 1
        assert f"sakura-town is already suspended (since {entry.inactive_since.isoformat()})" \
            in again.stderr
        renkei("holder", "register", "sakura-town", "--name", entry.name, "--role", entry.role)
        kept = (await directory.current())["sakura-town"]
        assert (kept.active, kept.inactive_since) == (False, entry.inactive_since)
    finally:
        resumed = renkei("holder", "resume", "sakura-town").stdout
    assert "resumed sakura-town" in resumed
    back = (await directory.current())["sakura-town"]
    assert back.active and back.inactive_since == entry.inactive_since  # the suspension it ends
    assert back.resumed_at is not None and back.resumed_at > entry.inactive_since
    await _seen(nenkin, "sakura-town", True)
    status, _ = await _status(nenkin, "P-037", "sakura-town", "local_tax")
    assert status == "FOUND"
    for args, said in ((("resume", "sakura-town"), "sakura-town is already active"),
                       (("suspend", "nobody", "--reason", "x"),
                        "no holder 'nobody' is in the holder directory")):
        refused = renkei("holder", *args, check=False)
        assert refused.returncode == 1 and said in refused.stderr


async def test_a_request_to_a_provider_suspended_once_it_was_approved_ends_at_once_and_once(
        clients: dict[str, HolderClient]) -> None:
    """A request approved, its provider suspended while it was unanswered, went on waiting: its
    requester heard TIMED_OUT only at the deadline, though the platform knew the provider
    suspended. It is refused as soon as the platform sees the suspension, as at approval
    (SUSPENDED, the provider named, since when), its access log ending once, TIMED_OUT
    (SUSPENDED); the provider's answer to its query once resumed, its ticket still in time, is
    refused to it, not a second answer to the requester."""
    town_hall, silent = clients["sakura-town"], clients[SILENT]
    medical = set(silent.store.bindings().values())
    own = next(o for o in bound(town_hall) if _medical_link(clients, o) in medical)
    asked = await ask(town_hall, own, "P-016", SILENT, "vaccination_record")
    [approved] = await logged_events(asked, 1)
    assert approved.outcome == "APPROVED"
    entry = await directory.suspend(SILENT, "ops-a", "x")
    try:
        suspended = time.monotonic()
        told = await town_hall.outcome(asked, ANSWER_TIMEOUT + 20)
        took = time.monotonic() - suspended
        assert (told.status, told.detail) == (
            "REJECTED", f"SUSPENDED: the provider '{SILENT}' is suspended since "
            f"{entry.inactive_since.isoformat() if entry.inactive_since else ''}: not an active "
            "holder in the directory"), f"told after {took:.1f} s"
        assert took < ANSWER_TIMEOUT / 2, f"told after {took:.1f} s, not at once"
    finally:
        await directory.resume(SILENT, "ops-b")
    await _seen(silent, SILENT, True)
    [query] = [q for r in await read_topic(KafkaAccess.of(SILENT), topics.inbox(SILENT))
               for v in unpacked(r.value or b"") if CODEC.name_of(v) == "ProviderQuery"
               if (q := CODEC.decode(v, ProviderQuery)).request_id == asked]
    assert datetime.now(UTC) < query.deadline, "the provider answers in time"
    with silent.store.transaction():  # answered as its server would, had it been up
        answer = silent._answer(query)
    assert answer is not None, "answered, not held back"
    await deliver(silent._producer, [answer])
    await asyncio.sleep(query.deadline.timestamp() - time.time() + 3)  # its deadline passed
    events = await logged_events(asked, 3)  # the answer's refusal, under its own source
    assert sorted((e.kind, e.outcome, e.reason) for e in events) == [
        ("ANSWER", "REJECTED", "INVALID_TICKET"), ("ANSWER", "TIMED_OUT", "SUSPENDED"),
        ("LINKAGE", "APPROVED", None)]
    assert sorted((e.outcome, e.requester, e.provider) for e in events) == [
        ("APPROVED", "sakura-town", SILENT), ("REJECTED", SILENT, None),  # to the provider
        ("TIMED_OUT", "sakura-town", SILENT)]
    assert await _to_requester(asked) == ["Rejection"], "one answer to the requester"
    assert (await town_hall.outcome(asked)).status == "REJECTED"


async def _to_requester(request_id: str) -> list[str]:
    """The kinds of message sakura-town's inbox has for `request_id`."""
    found = []
    for record in await read_topic(KafkaAccess.of(config.ADMIN), topics.inbox("sakura-town")):
        for value in unpacked(record.value or b""):
            try:  # other tests' junk there is no message to it
                name, fields = CODEC.decode_record(value)
            except SchemaError:
                continue
            if fields.get("request_id") == request_id:
                found.append(name)
    return found


async def test_a_holder_is_served_once_the_resume_command_has_returned(
        clients: dict[str, HolderClient], platform: town_setup.Processes) -> None:
    """A holder's request sent as soon as `renkei holder resume` had returned, or a request to it,
    was refused SUSPENDED when the platform read it before its view of the directory had read the
    resumption (its process stalled meanwhile: stopped here while it is written): each is served,
    round after round, the holder's request made while it was suspended refused SUSPENDED."""
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    told: list[tuple[str, str, str | None]] = []
    suspended_since: list[datetime] = []
    for _ in range(RESUMED_ROUNDS):
        await directory.suspend("sakura-town", "ops-a", "x")
        since = (await directory.current())["sakura-town"].inactive_since
        assert since is not None
        suspended_since.append(since)
        refused = await ask(town_hall, bound(town_hall)[0], "P-027", "nenkin", "pension_benefit")
        outcome = await town_hall.outcome(refused, 30)  # the platform's view has the suspension
        told.append((town_hall.holder, outcome.status, outcome.detail))
        served = await _asked_once(platform, directory.resume("sakura-town", "ops-b"), clients)
        for client, request_id in zip((town_hall, nenkin), served, strict=True):
            outcome = await client.outcome(request_id, 30)
            told.append((client.holder, outcome.status, outcome.detail))
    assert told == [each for since in suspended_since for each in (
        ("sakura-town", "REJECTED", f"SUSPENDED: the requester is suspended since "
         f"{since.isoformat()}: not an active holder in the directory"),
        ("sakura-town", "FOUND", None), ("nenkin", "FOUND", None))]


async def _asked_once(platform: town_setup.Processes, command: Awaitable[object],
                      clients: dict[str, HolderClient]) -> list[str]:
    """The ids of a request of sakura-town and one to it sent as soon as `command` (resuming it)
    has returned, the platform stopped from before it (its directory fetch held for records
    given up, empty) until they are written."""
    town_hall, nenkin = clients["sakura-town"], clients["nenkin"]
    with stopped(platform.running["platform-1"].pid):
        await asyncio.sleep(STALL)
        await command
        return [await ask(town_hall, bound(town_hall)[0], "P-027", "nenkin", "pension_benefit"),
                await ask(nenkin, bound(nenkin)[0], "P-037", "sakura-town", "local_tax")]


def _instance() -> Views:
    """A platform instance's views of the directory and pattern list."""
    return Views(KafkaAccess.of(acls.PLATFORM), Context.of(MasterKeys.generate()))


async def test_the_platform_reads_the_directory_first_for_all_but_decisions_made_at_once() -> None:
    """The look-up of the directory's end, a round trip a poll, is made for every poll but one of
    decision records decided at once alone, whatever the view says (it is not asked): it was
    made for a holder's requests only while some holder was inactive in the view (a resumption
    not read yet would serve them) or from the outbox of a holder it did not know (a
    registration), so one owner approved at once a request its view had not read the
    provider's suspension dated before, and the next, the first killed or frozen before
    recording it, refused it SUSPENDED by its view ahead: the audit log had it approved and
    rejected, the provider its query and its answer refused (chaos crash --instances 2 --every
    2 --suspend-every 5 --freeze-every 6 --seed 15141: not as answered 2); as it did for
    answers, whose requesters the decider judges (a provider's, the registry's, a decision
    record not decided at once)."""
    request = CODEC.encode(Ping("p-1", datetime.now(UTC)))
    answer = CODEC.encode(ProviderAnswer("r-1", b"t", "L", "FOUND", b"sealed"))
    polled = {name: SimpleNamespace(topic=topic, value=value, headers=headers)
              for name, topic, value, headers in (
        ("decided at once", decider.DECISIONS, b"", ((platform_module.DECIDED, b"mark"),)),
        ("nenkin's request", topics.outbox("nenkin"), request, None),
        ("newcomer's request", topics.outbox("newcomer-town"), request, None),
        ("nenkin's answer", topics.outbox("nenkin"), answer, None),
        ("the registry's answer", topics.REGISTRY_OUT, b"", None),
        ("a decision to make", decider.DECISIONS, b"", None))}
    assert {n: judged_by_directory([r]) for n, r in polled.items()} == {
        "decided at once": False, "nenkin's request": True, "newcomer's request": True,
        "nenkin's answer": True, "the registry's answer": True, "a decision to make": True}
    assert judged_by_directory([polled["decided at once"], polled["nenkin's request"]])
    assert not judged_by_directory([polled["decided at once"]] * 3)


async def test_a_directory_read_given_up_that_fails_since_stops_the_views_all_the_same(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A read of the directory to its end given up at DIRECTORY_WAIT and failing after (the
    broker not saying the end) had Views.stop raise its error, the views' consumers and the
    client asking the ends left open. The next read reaching the end is said, once."""
    views = _instance()
    caplog.set_level(logging.INFO, logger=platform_module.__name__)
    async with running(views, KafkaAccess.of(acls.PLATFORM)):
        monkeypatch.setattr(platform_module, "DIRECTORY_WAIT", 0.1)
        read_to_end = views.directory.read_to_end

        async def failing(*_: object) -> None:
            await asyncio.sleep(0.2)
            raise KafkaError("the directory's end not told")

        monkeypatch.setattr(views.directory, "read_to_end", failing)
        await views.directory_read()
        await asyncio.sleep(0.3)  # given up, then failed
        assert _said(caplog)[1:] == []
        monkeypatch.setattr(views.directory, "read_to_end", read_to_end)
        for _ in range(2):
            await views.directory_read()
        assert _said(caplog)[1:] == [CAUGHT_UP]
    assert views.directory._task is not None and views.directory._task.done()
    assert views.patterns._task is not None and views.patterns._task.done()


async def test_a_directory_whose_end_is_not_told_is_said_once_until_it_is_read_to_its_end(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """While the broker does not say the directory's end (a KafkaError from the look-up), each
    poll that reads first logged the warning again, a line a poll through an outage: it is said
    once, as a read given up at DIRECTORY_WAIT is, and its end said once a read reaches it."""
    views = _instance()
    caplog.set_level(logging.INFO, logger=platform_module.__name__)
    async with running(views, KafkaAccess.of(acls.PLATFORM)):
        read_to_end = views.directory.read_to_end

        async def failing(*_: object) -> None:
            raise KafkaError("the directory's end not told")

        monkeypatch.setattr(views.directory, "read_to_end", failing)
        for _ in range(3):
            await views.directory_read()
        assert _said(caplog) == [NOT_TOLD]
        monkeypatch.setattr(views.directory, "read_to_end", read_to_end)
        for _ in range(2):
            await views.directory_read()
        monkeypatch.setattr(views.directory, "read_to_end", failing)  # a second outage
        await views.directory_read()
    assert _said(caplog) == [NOT_TOLD, CAUGHT_UP, NOT_TOLD]


async def test_a_directory_entry_a_newer_version_wrote_stops_the_view_not_kept_stale() -> None:
    """An entry of a schema this version does not know (a suspension by a newer `renkei holder
    suspend`) was logged unreadable and skipped, the holder's entry before it kept: active, its
    requests approved; it stops the view (NewerVersion), as a decision or an inbox message does."""
    active = HolderEntry("city-a", "A", "municipality", "city-a", 0, b"k" * 32, False, True,
                         datetime(2026, 12, 7, tzinfo=UTC))
    suspended = CODEC.encode(replace(active, active=False, inactive_since=active.updated_at))
    newer = suspended[:2] + bytes(8) + suspended[HEADER:]  # its fingerprint one not known here
    records = directory_records((b"city-a", CODEC.encode(active)), (b"city-a", newer))
    with pytest.raises(NewerVersion, match=r"renkei\.directory holds a message this process"):
        holder_entries(records)


async def test_a_directory_entry_keyed_other_than_its_holder_is_refused(
        caplog: pytest.LogCaptureFixture) -> None:
    """A holder's entry under another record key (a copy written by hand, or by a faulty tool)
    stands beside its own key's, compaction never replacing it: the directory by holder id took
    whichever came last, a suspended holder active again. Refused now, with one log line."""
    active = HolderEntry("city-a", "A", "municipality", "city-a", 0, b"k" * 32, False, True,
                         datetime(2026, 12, 7, tzinfo=UTC))
    suspended = replace(active, active=False, inactive_since=active.updated_at)
    records = directory_records((b"city-a", CODEC.encode(active)),
                                 (b"city-a", CODEC.encode(suspended)),
                                 (b"copy-of-a", CODEC.encode(active)))
    assert [(e.holder_id, e.active) for e in holder_entries(records)] == [("city-a", False)]
    assert [r.getMessage() for r in caplog.records] == [
        "an entry on renkei.directory refused at offset 2: the entry of holder 'city-a' is "
        "keyed 'copy-of-a', not by its holder's id"]


NOT_TOLD = ("the holder directory and legal pattern list are not read to their end (KafkaError: "
            "the directory's end not told): requests are judged by them as read so far")


@pytest.mark.parametrize("ending", ["stopped", "failed"])
async def test_a_read_to_the_directory_end_is_told_when_the_view_stops_following(
        town: town_setup.Town, ending: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of a view to its topic's end waited for the view's next poll for ever once the view
    had stopped following (stopped, or its consumer failing): only Views.stop cancelling the read
    given up before stopping the view kept the platform from hanging. It is told NotFollowing."""
    platform = KafkaAccess.of(acls.PLATFORM)
    view = holder_directory(platform)
    async with running(view, platform):
        await view.loaded()
        consumer = view._consumer
        assert consumer is not None
        consumer.pause(*consumer.assignment())
        await directory.suspend("sakura-town", "ops-a", "x")
        try:
            reading = asyncio.create_task(view.read_to_end())
            await asyncio.sleep(0.7)  # a poll or more, the suspension not read
            assert not reading.done()
            if ending == "stopped":
                await view.stop()
            else:
                monkeypatch.setattr(consumer, "getmany", _failing)
            with pytest.raises(NotFollowing, match=r"stopped following renkei\.directory: "):
                await asyncio.wait_for(reading, 5)
        finally:
            await directory.resume("sakura-town", "ops-b")


async def _failing(*_: object, **__: object) -> None:
    raise KafkaError("the directory not fetched")


async def test_a_directory_view_behind_holds_the_platform_up_once_and_briefly(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The platform waits for its view of the directory to read to the directory's end before
    judging what it polled, DIRECTORY_WAIT at most: a view that cannot (its consumer paused
    here) is judged by as it is, said once, and not waited for again until it has read to the
    end that wait asked for, said once too (an operator saw it given up, never that it caught
    up); then each wait is a look-up of the end."""
    views = _instance()
    caplog.set_level(logging.INFO, logger=platform_module.__name__)
    async with running(views, KafkaAccess.of(acls.PLATFORM)):
        monkeypatch.setattr(platform_module, "DIRECTORY_WAIT", 0.3)  # not the start's own read
        consumer = views.directory._consumer
        assert consumer is not None
        consumer.pause(*consumer.assignment())
        try:
            await directory.suspend("sakura-town", "ops-a", "x")
            took = [await _timed(views.directory_read()) for _ in range(2)]
            assert 0.3 <= took[0] < 1 and took[1] < 0.05
            assert _said(caplog) == [GIVEN_UP]
            assert views.refresh().directory["sakura-town"].active  # as read so far
            consumer.resume(*consumer.assignment())
            async with asyncio.timeout(5):  # the wait given up reads on to its end
                while views.refresh().directory["sakura-town"].active:
                    await views.directory.changed()
                assert views._behind is not None
                await asyncio.wait({views._behind})  # the read given up, ended
        finally:
            consumer.resume(*consumer.assignment())
            await directory.resume("sakura-town", "ops-b")
        assert await _timed(views.directory_read()) < 0.3
        assert views.refresh().directory["sakura-town"].active
        await views.directory_read()
    assert _said(caplog) == [GIVEN_UP, CAUGHT_UP]


async def test_a_read_to_the_directory_end_waits_for_a_suspension_not_committed_yet(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """A suspension is dated by its record's broker append time (compacted.dated), and read once
    its command's transaction commits, after the operator action is logged: under load 0.78 s
    later (chaos crash --instances 2 --every 2 --suspend-every 5 --freeze-every 6 --seed 15141).
    The look-up of the directory's end asked for the end of its committed records, which stops
    before an open transaction: an owner reading an answer appended in between relayed it, its
    view without the suspension dated before the answer, and the next owner (the first killed or
    frozen before recording it) relayed it to no one. The read to the end waits for the
    transaction to end, and has the suspension, dated as every reader dates it."""
    monkeypatch.setattr(platform_module, "DIRECTORY_WAIT", 5.0)
    views = _instance()
    async with running(views, KafkaAccess.of(acls.PLATFORM)):
        suspension = directory.switched(views.refresh().directory["sakura-town"], False,
                                        datetime.now(UTC))
        try:
            written, read_before_commit = await _read_while_open(
                views, send(topics.DIRECTORY, "sakura-town", suspension))
            assert not read_before_commit, "read to its end, the suspension not committed"
            entry = views.refresh().directory["sakura-town"]
            assert not entry.active
            assert entry.inactive_since == appended_at(written)
        finally:
            await directory.resume("sakura-town", "ops-b")


async def test_a_read_to_the_directory_end_reads_the_pattern_list_to_its_end_too(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform read the directory to its end before judging what it polled, not the legal
    pattern list: a request sent once `renkei patterns publish` had returned could be judged by
    the list before it (replay's grace hid it). A version written (here again as it is on the
    list, which stays unchanged) in a transaction still open when the read begins is read
    before it ends."""
    monkeypatch.setattr(platform_module, "DIRECTORY_WAIT", 5.0)
    views = _instance()
    async with running(views, KafkaAccess.of(acls.PLATFORM)):
        version = next(iter(views.refresh().patterns.versions()))
        written, read_before_commit = await _read_while_open(
            views, send(topics.PATTERNS, patterns.key(version), version))
        assert not read_before_commit, "read to its end, the pattern version not committed"
        assert views.patterns._applied({written.topic_partition: written.offset + 1})


async def _read_while_open(views: Views, record: Send) -> tuple[Any, bool]:
    """`record` written in a transaction of the producer of operator actions, the views read to
    their ends (directory_read) begun once it is written and awaited once it is committed: the
    record's metadata, and whether the read had ended while the transaction was open (a poll or
    more after it began)."""
    async with (fencing(KafkaAccess.of(config.ADMIN), directory.OPERATOR_ACTIONS) as producer,
                producer.transaction()):
        await settled(written := await handed(producer, [record]))
        reading = asyncio.create_task(views.directory_read())
        await asyncio.sleep(0.7)  # a poll or more
        read_before_commit = reading.done()
    await asyncio.wait_for(reading, 5)
    return written[0].result(), read_before_commit


GIVEN_UP = ("the holder directory and legal pattern list are not read to their end (not within "
            "0.3 s): requests are judged by them as read so far")
CAUGHT_UP = ("the holder directory and legal pattern list are read to their end again: requests "
             "are judged by every entry written before them")


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the platform's processor logged."""
    return [r.getMessage() for r in caplog.records if r.name == platform_module.__name__]


async def _timed(waiting: Awaitable[object]) -> float:
    """Seconds `waiting` took."""
    began = time.monotonic()
    await waiting
    return time.monotonic() - began


async def test_a_suspension_is_one_record_every_reader_dates_alike(
        town: town_setup.Town) -> None:
    """A suspension was published inactive with no time, then again stamped with the first
    record's append time: an instance that had read only the first judged the holder inactive
    at every time, and refused an answer from before that another relayed. It is one record,
    dated by its broker append time by every reader, who relays an answer from before it."""
    admin, platform = KafkaAccess.of(config.ADMIN), KafkaAccess.of(acls.PLATFORM)
    _, end = await offsets(admin, topics.DIRECTORY)
    following = _instance()
    async with running(following, platform):  # an instance reading it as it comes
        said = renkei("holder", "suspend", "sakura-town", "--reason", "x").stdout
        try:
            records = await read_topic(admin, topics.DIRECTORY, start=end)
            assert [(r.key, r.timestamp_type) for r in records] == [
                (b"sakura-town", LOG_APPEND_TIME)], "one record, stamped by the broker"
            assert CODEC.decode(records[0].value, HolderEntry).inactive_since is None
            since = from_millis(records[0].timestamp)
            async with asyncio.timeout(10):
                while following.refresh().directory["sakura-town"].active:
                    await following.directory.changed()
            started = _instance()
            async with running(started, platform):  # an instance reading it from the start
                for ctx in (following.refresh(), started.refresh()):
                    assert ctx.directory["sakura-town"].inactive_since == since
                    assert ctx.active("sakura-town", since - timedelta(milliseconds=1))
                    assert not ctx.active("sakura-town", since)
            assert (await directory.current())["sakura-town"].inactive_since == since
            assert since.isoformat() in said
        finally:
            renkei("holder", "resume", "sakura-town")


async def test_a_resumption_is_one_record_every_reader_dates_alike(
        town: town_setup.Town) -> None:
    """A resumed entry was active at every time: a request refused while its holder was
    suspended, read again after the resumption by an instance taking over from one killed before
    committing it, was approved, two endings of one request. A resumption is one record naming
    the suspension it ends, dated by its broker append time by every reader, who judges the
    holder inactive from the one to the other; registered again, the holder keeps both times."""
    admin, ms = KafkaAccess.of(config.ADMIN), timedelta(milliseconds=1)
    _, end = await offsets(admin, topics.DIRECTORY)
    suspended = await directory.suspend("sakura-town", "ops-a", "情報漏えい")
    resumed = await directory.resume("sakura-town", "ops-b")
    _, resumption = await read_topic(admin, topics.DIRECTORY, start=end)
    since, back = suspended.inactive_since, appended_at(resumption)
    assert since is not None and back is not None
    assert CODEC.decode(resumption.value, HolderEntry).resumed_at is None, "one record"
    assert (resumed.active, resumed.inactive_since, resumed.resumed_at) == (True, since, back)
    with pytest.raises(directory.NotSuspendable, match=r"^sakura-town is already active$"):
        await directory.resume("sakura-town", "ops-b")
    sample = town.sample("sakura-town")
    await directory.registration("sakura-town", sample.name, sample.role, None, None, False,
                                 False, lambda: None, "ops-a")
    started = _instance()
    async with running(started, KafkaAccess.of(acls.PLATFORM)):  # reading it from the start
        ctx = started.refresh()
        entry = ctx.directory["sakura-town"]
        assert (entry.inactive_since, entry.resumed_at) == (since, back)
        assert [ctx.active("sakura-town", at) for at in (since - ms, since, back - ms, back)] \
            == [True, False, False, True]
    entry = (await directory.current())["sakura-town"]
    assert (entry.active, entry.inactive_since, entry.resumed_at) == (True, since, back)


async def test_every_suspension_a_message_read_late_can_fall_in_is_kept_by_every_reader(
        town: town_setup.Town) -> None:
    """The directory kept a holder's last suspension alone: suspended, resumed and suspended
    again, a request sent within the first suspension, read again by an instance taking over
    from one killed before committing it, was judged as of an active holder and approved, one
    its first reader had refused SUSPENDED; and one sent after the first resumption, read again
    after a second, judged alike. Each suspension a message read late can still fall in is kept
    on the entry, dated as its reader dated it by the command that suspends the holder again:
    an instance reading the directory from the start judges the holder inactive within each,
    active between them, and so does one registering it again."""
    admin, ms = KafkaAccess.of(config.ADMIN), timedelta(milliseconds=1)
    first = await directory.suspend("sakura-town", "ops-a", "x")
    resumed = await directory.resume("sakura-town", "ops-b")
    again = await directory.suspend("sakura-town", "ops-a", "x")
    back = await directory.resume("sakura-town", "ops-b")
    sample = town.sample("sakura-town")
    await directory.registration("sakura-town", sample.name, sample.role, None, None, False,
                                 False, lambda: None, "ops-a")
    times = [t for t in (first.inactive_since, resumed.resumed_at, again.inactive_since,
                         back.resumed_at) if t is not None]
    assert len(times) == 4 and times == sorted(times)
    moments = [t + d for t in times for d in (-ms, timedelta())]
    started = _instance()
    async with running(started, KafkaAccess.of(acls.PLATFORM)):  # reading it from the start
        ctx = started.refresh()
        assert [ctx.active("sakura-town", at) for at in moments] == [
            True, False, False, True, True, False, False, True]
    entry = (await directory.current(admin))["sakura-town"]
    assert entry.suspensions[-1:] == (Suspension(times[0], times[1]),)  # earlier ones before


async def test_a_suspension_and_a_resumption_are_logged_once_each_with_who_and_why(
        town: town_setup.Town) -> None:
    """No suspension or resumption reached the audit log: an auditor saw no holder's access
    withdrawn. Each is logged once, its id and time its directory record's, with who did it and
    why; a re-run that finds the holder already so refuses and logs nothing (a resume of a holder
    never suspended logged a resumption against its registration's record)."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    for _ in range(2):
        renkei("holder", "suspend", "sakura-town", "--reason", "情報漏えい", "--operator", "ops-a",
               check=False)
    for _ in range(2):
        renkei("holder", "resume", "sakura-town", "--operator", "ops-b", check=False)
    renkei("holder", "resume", "nenkin", "--operator", "ops-b", check=False)  # never suspended
    await _suspended_and_resumed_once(admin, audit_end, end)
    assert await operator_actions(audit_end, "nenkin") == []
    assert (await directory.current())["sakura-town"].active


async def test_two_suspensions_of_a_holder_at_once_are_one_logged_once(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `renkei holder suspend` of one holder at once from one state folder both read the
    directory before either wrote, both found it active, and both published and logged a
    suspension: two operator actions in the audit log for one, the second moving since when
    the holder was inactive. The one reading the directory after the other wrote is told the
    holder is already suspended, since the other's time, and logs nothing."""
    _, audit_end = await offsets(KafkaAccess.of(config.ADMIN), topics.AUDIT)
    try:
        told = await at_once(monkeypatch, directory.suspend("sakura-town", "ops-a", "情報漏えい"),
                             directory.suspend("sakura-town", "ops-b", "情報漏えい"))
        assert [a.action for a in await operator_actions(audit_end, "sakura-town")] == [
            "SUSPEND"]
        suspended, refused = sorted(told, key=lambda t: isinstance(t, Exception))
        assert isinstance(suspended, HolderEntry) and suspended.inactive_since
        assert isinstance(refused, directory.NotSuspendable)
        assert str(refused) == ("sakura-town is already suspended (since "
                                f"{suspended.inactive_since.isoformat()})")
        assert (await directory.current())["sakura-town"].inactive_since == \
            suspended.inactive_since
    finally:
        with suppress(directory.NotSuspendable):
            await directory.resume("sakura-town", "ops-a")


async def test_two_suspensions_of_a_holder_from_two_state_folders_at_once_are_one_logged_once(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two operators suspending one holder at once from two state folders (two machines with
    the admin's credentials), each under its own folder's lock, both read the directory before
    either wrote, both found it active, and both published and logged a suspension: two
    operator actions in the audit log for one, two records in the directory. The broker fences
    the one that began first: it reads the directory again, after the other's write, and is
    told the holder is already suspended, as from one state folder: one record, one action."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    try:
        told = await from_two_folders(
            monkeypatch, tmp_path, directory.suspend("sakura-town", "ops-a", "情報漏えい"),
            directory.suspend("sakura-town", "ops-b", "情報漏えい"))
        assert [a.action for a in await operator_actions(audit_end, "sakura-town")] == [
            "SUSPEND"]
        assert len(await read_topic(admin, topics.DIRECTORY, start=end)) == 1
        suspended, refused = sorted(told, key=lambda t: isinstance(t, Exception))
        assert isinstance(suspended, HolderEntry) and suspended.inactive_since
        assert isinstance(refused, directory.NotSuspendable)
        assert str(refused) == ("sakura-town is already suspended (since "
                                f"{suspended.inactive_since.isoformat()})")
    finally:
        with suppress(directory.NotSuspendable):
            await directory.resume("sakura-town", "ops-a")


async def test_a_command_fenced_off_each_time_it_reads_again_says_so_and_writes_nothing(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A command on the directory that another operator's fences off as often as it reads the
    directory again (once here) ends saying so, to be run again, having written nothing: the
    other's action is the one logged, its record the one in the directory."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    monkeypatch.setattr(directory, "ATTEMPTS", 1)
    try:
        told = await from_two_folders(
            monkeypatch, tmp_path, directory.suspend("sakura-town", "ops-a", "情報漏えい"),
            directory.suspend("sakura-town", "ops-b", "情報漏えい"))
        suspended, fenced = sorted(told, key=lambda t: isinstance(t, Exception))
        assert isinstance(fenced, directory.ActionFenced) and isinstance(suspended, HolderEntry)
        assert str(fenced) == ("another operator's action on the holder directory came first "
                               "each time it was read: SUSPEND was not done; run it again")
        record, = await read_topic(admin, topics.DIRECTORY, start=end)
        assert [a.action_id for a in await operator_actions(audit_end, "sakura-town")] == [
            action_of(record)] == [suspended.action_id]
    finally:
        with suppress(directory.NotSuspendable):
            await directory.resume("sakura-town", "ops-a")


@pytest.mark.parametrize("suspended", [False, True], ids=["suspension", "resumption"])
async def test_a_holder_registered_from_another_state_folder_as_it_is_switched_ends_as_logged(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        suspended: bool) -> None:
    """A holder re-registered from one state folder while another operator suspended (or
    resumed) it from another read the directory before the switch was written and published
    the holder as it was before it: the suspension (or resumption) undone in the directory, the
    audit log saying it was done. Fenced, the registration reads the directory again after the
    switch: the holder ends as the switch left it."""
    sample = town.sample("sakura-town")
    if suspended:
        await directory.suspend("sakura-town", "ops-a", "情報漏えい")
    switch = (directory.resume("sakura-town", "ops-a") if suspended
              else directory.suspend("sakura-town", "ops-a", "情報漏えい"))
    try:
        switched, registered = await from_two_folders(
            monkeypatch, tmp_path, switch,
            directory.registration("sakura-town", sample.name, sample.role, None, None, False,
                                   False, lambda: None, "ops-b"))
        assert isinstance(switched, HolderEntry) and isinstance(registered, tuple)
        entry = (await directory.current())["sakura-town"]
        assert (entry.active, entry.inactive_since) == (switched.active, switched.inactive_since)
    finally:
        with suppress(directory.NotSuspendable):
            await directory.resume("sakura-town", "ops-a")


async def test_a_suspension_is_told_as_published_though_a_resumption_comes_right_after(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """`renkei holder suspend` read the holder's entry back after letting go of the state
    folder's lock: a resumption in between had it tell the holder active (printed "suspended
    … (the directory topic is not stamped by the broker …)"). It tells the entry it published,
    inactive since its record's broker time, as every reader dates it."""
    admin = KafkaAccess.of(config.ADMIN)
    _, end = await offsets(admin, topics.DIRECTORY)
    lock, resumed = directory._logging_actions, asyncio.Event()

    @asynccontextmanager
    async def then_resumed() -> AsyncIterator[None]:
        async with lock():
            yield
        if not resumed.is_set():  # the suspension's lock let go: a resumption at once
            resumed.set()
            await directory.resume("sakura-town", "ops-b")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(directory, "_logging_actions", then_resumed)
            suspended = await directory.suspend("sakura-town", "ops-a", "情報漏えい")
        suspension, _ = await read_topic(admin, topics.DIRECTORY, start=end)
        assert (suspended.active, suspended.inactive_since, suspended.action_id) == (
            False, appended_at(suspension), action_of(suspension))
        assert appended_at(suspension) is not None
        assert (await directory.current())["sakura-town"].active
    finally:
        with suppress(directory.NotSuspendable):
            await directory.resume("sakura-town", "ops-a")


async def test_a_holder_registered_while_it_is_suspended_stays_suspended(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """`renkei holder register` of a holder run while it was being suspended from one state
    folder read the directory before the suspension was written and published the holder active
    after it: the suspension undone, with no resumption in the audit log. The registration
    reads the directory after the suspension (or the suspension after the registration): the
    holder stays suspended, since the suspension's time."""
    sample = town.sample("sakura-town")
    try:
        suspended, registered = await at_once(
            monkeypatch, directory.suspend("sakura-town", "ops-a", "情報漏えい"),
            directory.registration("sakura-town", sample.name, sample.role, None, None, False,
                                   False, lambda: None, "ops-b"))
        assert isinstance(suspended, HolderEntry) and isinstance(registered, tuple)
        entry = (await directory.current())["sakura-town"]
        assert (entry.active, entry.inactive_since) == (False, suspended.inactive_since)
    finally:
        with suppress(directory.NotSuspendable):
            await directory.resume("sakura-town", "ops-a")


async def _suspended_and_resumed_once(admin: KafkaAccess, audit_end: int, end: int,
                                      suspender: str = "ops-a", reason: str = "情報漏えい"
                                      ) -> None:
    """The directory holds sakura-town's suspension and resumption from `end` on, and the audit
    topic each action once from `audit_end`, at its record's time: by `suspender` (ops-a), for
    `reason`, and by ops-b."""
    suspension, resumption = await read_topic(admin, topics.DIRECTORY, start=end)
    assert await operator_actions(audit_end, "sakura-town") == [
        OperatorAction(action_of(suspension), from_millis(suspension.timestamp), suspender,
                       "SUSPEND", "sakura-town", reason),
        OperatorAction(action_of(resumption), from_millis(resumption.timestamp), "ops-b",
                       "RESUME", "sakura-town", None)]


async def _suspension_stopped_before_logging(key: X25519PrivateKey | None = None
                                             ) -> tuple[KafkaAccess, int, int]:
    """Suspend sakura-town as ops-a, for its reason, as a command of an earlier version stopped
    before logging it (stopped_before_logging, who and why sealed to `key`): the admin's access,
    and where the audit topic and the directory ended before it."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    suspended = replace((await directory.current())["sakura-town"], active=False,
                        inactive_since=None, updated_at=datetime.now(UTC))
    await stopped_before_logging([suspended], "SUSPEND", "ops-a", "情報漏えい", key)
    return admin, audit_end, end


async def test_a_suspension_whose_command_stopped_before_logging_it_writes_nothing(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """A suspension whose command stopped between writing the holder's directory record and
    logging it left the record, which every reader took the holder suspended by, unlogged until
    the next command on the holder. Both are one transaction: stopped between them, it writes
    nothing any reader reads, the holder active; run again it suspends it and logs it once. The
    record, which every holder reads, carries who and why sealed to the platform's key and bound
    to the action's id: its bytes name neither (they named both in plaintext)."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(directory, "logged", stops)
            with pytest.raises(Stopped):
                await directory.suspend("sakura-town", "ops-b", "x")
        assert await read_topic(admin, topics.DIRECTORY, start=end) == []
        assert await operator_actions(audit_end, "sakura-town") == []
        assert (await directory.current())["sakura-town"].active
        await directory.suspend("sakura-town", "ops-a", "情報漏えい")
        written, = await read_topic(admin, topics.DIRECTORY, start=end)
        assert b"ops-a" not in written.value and "情報漏えい".encode() not in written.value
        entry, key = CODEC.decode(written.value, HolderEntry), keys.load().sealing_key()
        assert entry.action_id and entry.sealed_action
        assert "ops-a" in sealing.open_sealed(key, entry.sealed_action,
                                              directory.SEALED_ACTION + entry.action_id).decode()
        with pytest.raises(sealing.CannotOpen):  # bound to its action: moved, it opens for none
            sealing.open_sealed(key, entry.sealed_action, directory.SEALED_ACTION + "SUSPEND@x")
        renkei("holder", "resume", "sakura-town", "--operator", "ops-b")
        await _suspended_and_resumed_once(admin, audit_end, end)
    finally:
        with suppress(directory.NotSuspendable):
            await directory.resume("sakura-town", "ops-a")


async def test_a_suspension_whose_earlier_command_stopped_before_logging_it_is_logged_once_after(
        town: town_setup.Town) -> None:
    """A suspension whose command, of an earlier version, stopped between writing the holder's
    directory record and logging it was never logged: a re-run found the holder suspended,
    refused, and logged nothing. The re-run logs it, once, with who did it and why, at its
    record's time; another re-run and the resumption after log it no more."""
    admin, audit_end, end = await _suspension_stopped_before_logging()
    assert not (await directory.current())["sakura-town"].active
    assert await operator_actions(audit_end, "sakura-town") == []
    for _ in range(2):
        again = renkei("holder", "suspend", "sakura-town", "--reason", "x", "--operator", "ops-b",
                       check=False)
        assert again.returncode and "already suspended" in again.stderr
    renkei("holder", "resume", "sakura-town", "--operator", "ops-b")
    await _suspended_and_resumed_once(admin, audit_end, end)


async def test_a_stopped_suspension_whose_seal_does_not_open_is_logged_unreadable_once(
        town: town_setup.Town) -> None:
    """A suspension whose command (of an earlier version) stopped before logging it, its who and
    why sealed to a key the platform no longer has (the key store replaced since), made every
    later command on the holder fail on the bad sealing key: it could not even be resumed. The
    resumption logs the suspension once, its operator and reason marked not readable, says so,
    and goes on."""
    admin, audit_end, end = await _suspension_stopped_before_logging(X25519PrivateKey.generate())
    resumed = renkei("holder", "resume", "sakura-town", "--operator", "ops-b", check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "cannot be opened with the platform's key" in resumed.stderr
    assert "marked not readable" in resumed.stderr
    await _suspended_and_resumed_once(admin, audit_end, end, directory.UNREADABLE_OPERATOR,
                                      directory.UNREADABLE_REASON)


async def test_a_stopped_suspension_written_over_by_the_towns_set_up_is_logged_once(
        town: town_setup.Town) -> None:
    """A suspension whose command (of an earlier version) stopped before logging it, its holder's
    record then written over by the town's set-up (directory.publish, as `renkei directory
    publish-services` writes too), lost its one record and was never logged: the compacted
    directory forgot it. Publish logs it first, once, at its record's time, with who did it and
    why."""
    admin, audit_end, end = await _suspension_stopped_before_logging()
    suspension, = await read_topic(admin, topics.DIRECTORY, start=end)
    await directory.publish([town_setup.directory_entry(town.sample("sakura-town"))])
    assert await operator_actions(audit_end, "sakura-town") == [
        OperatorAction(action_of(suspension), from_millis(suspension.timestamp), "ops-a",
                       "SUSPEND", "sakura-town", "情報漏えい")]
    assert (await directory.current())["sakura-town"].active


async def test_a_stopped_suspension_recovered_by_two_commands_at_once_is_logged_once(
        town: town_setup.Town) -> None:
    """A suspension whose command (of an earlier version) stopped before logging it, recovered by
    two commands at once (the town's set-up publishing sakura-town twice together), was logged
    by each: both searched the audit topic before either wrote it (the audit store keeps one,
    the topic had two). One recovery at a time logs it, the other finds it there."""
    admin, audit_end, end = await _suspension_stopped_before_logging()
    suspension, = await read_topic(admin, topics.DIRECTORY, start=end)
    entry = town_setup.directory_entry(town.sample("sakura-town"))
    await asyncio.gather(directory.publish([entry]), directory.publish([entry]))
    assert await operator_actions(audit_end, "sakura-town") == [
        OperatorAction(action_of(suspension), from_millis(suspension.timestamp), "ops-a",
                       "SUSPEND", "sakura-town", "情報漏えい")]


async def test_a_suspension_recovered_while_its_command_logs_it_is_logged_once(
        town: town_setup.Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command on sakura-town run while a suspension's command was between writing its
    directory record and logging it (the town's set-up publishing sakura-town) took the
    suspension for one whose command had stopped and logged it, and the suspension's command
    logged it too (the audit topic had it twice). The recovery waits for the command's write."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    _, end = await offsets(admin, topics.DIRECTORY)
    entry = town_setup.directory_entry(town.sample("sakura-town"))
    recovering: list[asyncio.Task[None]] = []

    async def late(producer: Any, sends: Sequence[Send]) -> list[asyncio.Future[Any]]:
        """The suspension's audit write, once the town's set-up has had 3 s to recover it."""
        if sends[0].topic == topics.AUDIT and not recovering:
            recovering.append(asyncio.create_task(directory.publish([entry])))
            await asyncio.wait(recovering, timeout=3)
        return await handed(producer, sends)

    monkeypatch.setattr(directory, "handed", late)
    await directory.suspend("sakura-town", "ops-a", "情報漏えい")
    await recovering[0]
    suspension, _ = await read_topic(admin, topics.DIRECTORY, start=end)
    assert await operator_actions(audit_end, "sakura-town") == [
        OperatorAction(action_of(suspension), from_millis(suspension.timestamp), "ops-a",
                       "SUSPEND", "sakura-town", "情報漏えい")]


async def test_a_command_waiting_for_another_commands_operator_action_says_so_and_waits(
        town: town_setup.Town, caplog: pytest.LogCaptureFixture) -> None:
    """A command on the directory while another held the lock on logging operator actions (hung
    on a broker it cannot reach, or stopped with Ctrl-Z) waited for it for ever, saying nothing.
    It says so once, after 2 s, at WARNING, naming the lock, and waits on: the lock let go, it
    goes on."""
    lock = private_dir("directory") / "actions.lock"
    entry = town_setup.directory_entry(town.sample("sakura-town"))
    with caplog.at_level(logging.WARNING), file_locked(lock):
        waiting = asyncio.create_task(directory.publish([entry]))
        await asyncio.sleep(1.5)
        assert not [r for r in caplog.records if r.name == "renkei.state"]
        await asyncio.sleep(2)
        assert not waiting.done()
    await waiting
    assert [r.getMessage() for r in caplog.records if r.name == "renkei.state"] == [
        f"waiting for another command's operator action ({lock}): Ctrl-C ends this command"]


async def test_a_suspension_without_the_platforms_key_is_refused_and_writes_nothing(
        town: town_setup.Town) -> None:
    """Who suspends and why are sealed to the platform's key on the directory record: with no
    key store the command says so in one line, exit 1, before it writes anything."""
    admin = KafkaAccess.of(config.ADMIN)
    _, end = await offsets(admin, topics.DIRECTORY)
    store = keys.store_path()
    aside = store.rename(store.with_name("master.json.aside"))
    try:
        refused = renkei("holder", "suspend", "sakura-town", "--reason", "x", check=False)
    finally:
        aside.rename(store)
    assert refused.returncode == 1
    assert f"no key store at {store}: run `renkei keys init` (the operator" in refused.stderr
    assert await read_topic(admin, topics.DIRECTORY, start=end) == []
    assert (await directory.current())["sakura-town"].active


LEFT_OPEN_MS = 3_000  # the transaction timeout of the command left open below: what is tested
# is how soon past its timeout the broker aborts it, not TRANSACTION_MS's 10 s, which it waited out
_LEFT_OPEN = """
import asyncio, sys
from broker import config, topics
from broker.clients import KafkaAccess
from processors.directory import OPERATOR_ACTIONS
from renkei import service_loop
from renkei.service_loop import producer_for

service_loop.TRANSACTION_MS = int(sys.argv[1])  # read as its producer is made

async def main() -> None:
    producer = producer_for(KafkaAccess.of(config.ADMIN), transactional_id=OPERATOR_ACTIONS)
    await producer.start()
    await producer.begin_transaction()
    sent = await (await producer.send(topics.AUDIT, b"never committed", partition=0))
    print(sent.offset, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_command_killed_in_its_transaction_holds_the_audit_readers_briefly(
        town: town_setup.Town) -> None:
    """An operator command killed between its writes and its commit leaves its transaction
    open: every reader of committed records (the audit consumer, the platform's directory view)
    reads no further in those partitions until the broker aborts it, TRANSACTION_MS after it
    began, found within the second the broker's cleanup looks (its default 10 s: up to 20 s).
    The command here times its transaction out after LEFT_OPEN_MS."""
    admin = KafkaAccess.of(config.ADMIN)
    left = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LEFT_OPEN, str(LEFT_OPEN_MS), stdout=asyncio.subprocess.PIPE,
        env=tethered())
    assert left.stdout is not None
    opened = int(await asyncio.wait_for(left.stdout.readline(), 60))
    began = time.monotonic()
    left.kill()
    await left.wait()
    held = await _held(admin, TopicPartition(topics.AUDIT, 0), opened, began)
    print(f"readers held {held:.1f} s by a transaction left open")
    assert held < (LEFT_OPEN_MS + 2_500) / 1000


async def _held(admin: KafkaAccess, tp: TopicPartition, opened: int, began: float) -> float:
    """Seconds from `began` until a reader of committed records reads past offset `opened` of
    `tp` (the record of a transaction left open): its last stable offset is past it."""
    async with running(AIOKafkaConsumer(**admin.reading(), group_id=None), admin) as reader:
        while (await reader.end_offsets([tp]))[tp] <= opened:
            assert time.monotonic() - began < (TRANSACTION_MS + 5_000) / 1000, "still held"
            await asyncio.sleep(0.05)
    return time.monotonic() - began


_INTERRUPTED_IN_ITS_TRANSACTION = """
import asyncio, signal, sys
from processors import directory
from renkei.cli import main

signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal: a test run in the
# background (nohup, `&`) ignores SIGINT, and so did the command it started, which never ended

first = directory.settled

async def settled(futures):  # the directory record on the broker, its transaction open: waits
    futures = list(futures)
    await first(futures)
    written = futures[0].result()
    print(written.partition, written.offset, flush=True)
    await asyncio.Event().wait()

directory.settled = settled
sys.argv = ["renkei", "holder", "suspend", "sakura-town", "--reason", "x"]
main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_command_interrupted_in_its_transaction_aborts_it_at_once(
        town: town_setup.Town, sig: signal.Signals) -> None:
    """A suspension a service manager stopped (SIGTERM) between its directory record and its
    commit ended at once, its transaction left open: every reader of committed records of the
    directory (the platform's view) was held until the broker aborted it, TRANSACTION_MS and more
    later (Ctrl-C, SIGINT, cancelled the command, which aborted it). Stopped either way, it
    aborts its transaction at once: readers go on, the holder active, nothing logged, "Aborted!"
    its one line, its exit code Ctrl-C's."""
    admin = KafkaAccess.of(config.ADMIN)
    _, audit_end = await offsets(admin, topics.AUDIT)
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _INTERRUPTED_IN_ITS_TRANSACTION, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=tethered())
    assert command.stdout is not None and command.stderr is not None
    try:  # a command left running holds the directory's action lock for every test after
        partition, opened = map(int, (await asyncio.wait_for(command.stdout.readline(),
                                                             60)).split())
        began = time.monotonic()
        command.send_signal(sig)
        held = await _held(admin, TopicPartition(topics.DIRECTORY, partition), opened, began)
        said = (await asyncio.wait_for(command.stderr.read(), 30)).decode()
        ended = await asyncio.wait_for(command.wait(), 30)  # reaped: the finally kills no more
    finally:
        if command.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                command.kill()
    print(f"readers held {held:.2f} s by a command interrupted ({sig.name}) in its transaction")
    assert held < 2.0
    assert ended == INTERRUPTED, said
    assert [line for line in said.splitlines() if line] == ["Aborted!"], said
    assert (await directory.current())["sakura-town"].active
    assert await operator_actions(audit_end, "sakura-town") == []
