"""The linkage flow end to end on the real broker: binding, approval, rewriting, relay, logs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition

import holders.client
from audit.events import AccessLogEvent, step_of
from broker import acls, config, provision, topics
from broker.clients import KafkaAccess, read_topic
from holders.client import HolderClient, NotAuthorized, NotSentYet
from processors import decider, directory, keys, linkage, patterns, platform
from processors.codes import CodeService, UnitEpoch
from processors.context import Context
from processors.linkage import FromHolder
from renkei import groups, sqlite
from renkei.envelope import Incoming, unpacked
from renkei.exchanges import staff as staff_of
from renkei.service_loop import deliver
from renkei.town import Town
from schemas.codec import CODEC, SchemaError
from schemas.messages import LegalPattern, ProviderAnswer, ProviderQuery, Rejection
from tests.conftest import ANSWER_TIMEOUT, SILENT
from tests.kafka_helpers import audit_events, consumer, producer

pytestmark = pytest.mark.asyncio(loop_scope="session")
Clients = dict[str, HolderClient]


def bound(client: HolderClient) -> list[str]:
    return sorted(own for own, _ in client.store.bindings().items())


async def ask(client: HolderClient, own: str, pattern: str, provider: str,
              data_type: str) -> str:
    staff, terminal = staff_of(client.holder)
    return await client.request(own, pattern, provider, data_type, "審査", staff, terminal)


async def test_binding_binds_exact_matches_and_investigates_the_rest(
        clients: Clients, town: Town, first_codes: dict[str, str]) -> None:
    codes = CodeService(keys.load())
    for holder, client in clients.items():
        counts = client.store.counts("BINDING")
        assert counts.get("SENT", 0) == 0, f"{holder}: unanswered binding requests"
        assert counts["BOUND"] > 0
        entry = client.entry(holder)
        held = {first_codes[r.resident_code] for r in town.held[holder]}
        for own, link in client.store.bindings().items():
            resident = codes.resident_code(link, UnitEpoch(entry.link_unit, entry.key_epoch))
            assert resident in held, f"{holder} bound {own} to someone it does not hold"
    investigated = [reason for c in clients.values() for _, reason in c.store.investigations()]
    assert any("address" in r for r in investigated), "stale addresses go to investigation"


async def test_every_binding_is_right_no_wrong_binding(clients: Clients, town: Town,
                                                      first_codes: dict[str, str]) -> None:
    """Each bound record is bound to exactly the resident it was drawn from."""
    codes = CodeService(keys.load())
    for holder, client in clients.items():
        entry = client.entry(holder)
        unit = UnitEpoch(entry.link_unit, entry.key_epoch)
        for n, resident in enumerate(town.held[holder], start=1):
            own = f"{holder[:3].upper()}-{n:07d}"
            link = client.store.link_code(own)
            if link is not None:
                assert codes.resident_code(link, unit) == first_codes[resident.resident_code]


async def test_a_private_holder_binds_only_consenting_residents(clients: Clients) -> None:
    kenpo = clients["acme-kenpo"]
    reasons = [reason for _, reason in kenpo.store.investigations()]
    assert any("consenting" in r for r in reasons)
    assert kenpo.store.counts()["BOUND"] > 0


async def test_binding_by_personal_number(clients: Clients) -> None:
    assert clients["nenkin"].store.counts()["BOUND"] > 0.8 * len(
        clients["nenkin"].store.own_numbers())


async def test_a_shared_medical_unit_gives_one_link_code_and_units_differ(
        clients: Clients, town: Town) -> None:
    hospital, clinic, town_hall = (clients[h] for h in (
        "sakura-hospital", "minami-clinic", "sakura-town"))
    hospital_links = set(hospital.store.bindings().values())
    clinic_links = set(clinic.store.bindings().values())
    assert hospital_links & clinic_links, "the same person has one link code in the unit"
    assert not hospital_links & set(town_hall.store.bindings().values())


async def test_a_lawful_request_is_answered_with_data_only_the_requester_reads(
        clients: Clients) -> None:
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    own = bound(nenkin)[0]
    request_id = await ask(nenkin, own, "P-037", "sakura-town", "local_tax")
    outcome = await nenkin.outcome(request_id, 30)
    assert outcome.status == "FOUND" and outcome.result is not None
    (provider_log,) = town_hall.store.access_log(request_id)
    assert provider_log.side == "PROVIDER" and provider_log.counterpart == "nenkin"
    assert provider_log.content is not None and outcome.result["taxable_income"] in \
        provider_log.content
    (requester_log,) = nenkin.store.access_log(request_id)
    assert (requester_log.operator, requester_log.purpose) == (staff_of("nenkin")[0], "審査")
    events = await _events_of({request_id}, want=2)
    assert Counter(step_of(e) for e in events) == {"approved": 1, "answered": 1}
    approved = next(e for e in events if step_of(e) == "approved")
    assert (approved.requester, approved.provider, approved.pattern_id, approved.data_type) == (
        "nenkin", "sakura-town", "P-037", "local_tax")
    assert approved.legal_basis and "国民年金法" in approved.legal_basis
    assert approved.person is not None and approved.person not in (
        nenkin.store.link_code(own), "")


async def test_the_sealed_data_a_holder_receives_has_one_length_whoever_it_is_about(
        clients: Clients) -> None:
    """What the broker carries to a holder does not tell how long the data in it is: the local
    tax of people whose incomes have different numbers of digits, and the registry's four
    attributes of every record the holder bound, come sealed to one length each (as read off
    the holder's inbox)."""
    nenkin = clients["nenkin"]
    asked = [await ask(nenkin, own, "P-037", "sakura-town", "local_tax")
             for own in bound(nenkin)[:24]]
    found = {request_id: outcome.result for request_id in asked
             if (outcome := await nenkin.outcome(request_id, 30)).status == "FOUND"}
    assert len(found) > 12  # the rest are people the town hall could not bind
    assert len({len(result["taxable_income"]) for result in found.values() if result}) > 1
    answers: dict[str, int] = {}  # request id → its sealed payload's length
    candidates: list[bytes] = []
    for record in await read_topic(KafkaAccess.of("nenkin"), topics.inbox("nenkin")):
        for name, fields in map(CODEC.decode_record, unpacked(record.value)):
            if name == "LinkageAnswer" and fields["request_id"] in found:
                answers[fields["request_id"]] = len(fields["sealed_payload"])
            elif name == "BindingAnswer":
                candidates += [c["sealed_attributes"] for c in fields["candidates"]]
    assert set(answers) == set(found) and len(candidates) > 100
    assert len(set(answers.values())) == 1 and len({len(c) for c in candidates}) == 1


async def test_a_caller_who_stops_waiting_leaves_the_others_waiting(clients: Clients) -> None:
    nenkin = clients["nenkin"]
    request_id = await ask(nenkin, bound(nenkin)[1], "P-037", "sakura-town", "local_tax")
    patient = asyncio.ensure_future(nenkin.outcome(request_id, 30))
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await nenkin.outcome(request_id, 0.001)
    assert len(nenkin._waiters[request_id]) == 1  # those who gave up left no future behind
    assert (await patient).status == "FOUND"
    assert request_id not in nenkin._waiters


async def test_requests_kept_at_hand_are_bounded_and_the_store_answers_for_the_rest(
        clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer to a request no longer at hand (let go, or sent before a restart) is
    resolved from the holder's store, with the request's own operator and purpose."""
    nenkin = clients["nenkin"]
    monkeypatch.setattr(holders.client, "OPEN_KEPT", 2)
    sent = [await ask(nenkin, own, "P-037", "sakura-town", "local_tax")
            for own in bound(nenkin)[2:5]]
    assert len(nenkin._open) <= 2
    nenkin._open.clear()  # as after a restart: only the store knows them
    for request_id in sent:
        assert (await nenkin.outcome(request_id, 30)).status == "FOUND"
        (logged,) = nenkin.store.access_log(request_id)
        assert (logged.operator, logged.purpose, logged.counterpart) == (
            staff_of("nenkin")[0], "審査", "sakura-town")
    assert not set(sent) & set(nenkin._open)


async def test_requests_made_in_one_turn_share_a_commit_each_in_the_store_before_it_is_sent(
        clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests made in one turn of the event loop are recorded in one transaction of the store,
    each committed (read by another connection) before the broker is handed it."""
    nenkin = clients["nenkin"]
    other = sqlite.read_only(nenkin.store.db.execute("PRAGMA database_list").fetchone()[2])
    in_store_when_handed: list[bool] = []
    send = nenkin._producer.send

    async def handed(topic: str, value: bytes, **rest: Any) -> Any:
        in_store_when_handed.append(other.execute(
            "SELECT EXISTS (SELECT 1 FROM requests WHERE outgoing = ?)", (value,)).fetchone()[0])
        return await send(topic, value, **rest)

    statements: list[str] = []
    monkeypatch.setattr(nenkin._producer, "send", handed)
    nenkin.store.db.set_trace_callback(statements.append)
    try:
        sent = await asyncio.gather(*(ask(nenkin, own, "P-037", "sakura-town", "local_tax")
                                      for own in bound(nenkin)[5:10]))
    finally:
        nenkin.store.db.set_trace_callback(None)
        other.close()
    assert in_store_when_handed == [True] * 5
    opened = [at for at, sql in enumerate(statements) if sql.startswith("INSERT INTO requests")]
    assert len(opened) == 5
    assert statements[opened[0] - 1] == "BEGIN IMMEDIATE"
    assert "COMMIT" not in statements[opened[0]:opened[-1]]
    for request_id in sent:
        assert (await nenkin.outcome(request_id, 30)).status == "FOUND"


async def test_requests_of_one_commit_wait_for_the_broker_under_one_timer_and_stay_kept_past_it(
        clients: Clients, monkeypatch: pytest.MonkeyPatch) -> None:
    """The callers of requests recorded in one commit wait up to SEND_WAIT for the broker to take
    them under one timer, not one each; past it each is told NotSentYet, its request kept, and
    it goes once the broker takes it, answered once."""
    nenkin, loop = clients["nenkin"], asyncio.get_running_loop()
    send_wait = 0.7  # no other timer of the loop's clients is of this length
    monkeypatch.setattr(holders.client, "SEND_WAIT", send_wait)
    away: asyncio.Future[None] = loop.create_future()
    send = nenkin._producer.send

    async def handed(topic: str, value: bytes, **rest: Any) -> Any:
        await away  # the broker takes nothing until it is back
        return await send(topic, value, **rest)

    timers: list[float] = []
    call_at = loop.call_at

    def timed(when: float, *args: Any, **rest: Any) -> asyncio.TimerHandle:
        timers.append(when - loop.time())
        return call_at(when, *args, **rest)

    monkeypatch.setattr(nenkin._producer, "send", handed)
    monkeypatch.setattr(loop, "call_at", timed)
    asked = await asyncio.gather(*(ask(nenkin, own, "P-037", "sakura-town", "local_tax")
                                   for own in bound(nenkin)[5:10]), return_exceptions=True)
    monkeypatch.setattr(loop, "call_at", call_at)
    assert all(isinstance(told, NotSentYet) for told in asked), asked
    assert sum(abs(delay - send_wait) < 0.01 for delay in timers) == 1
    sent = {told.request_id for told in asked if isinstance(told, NotSentYet)}
    assert sent <= {request_id for request_id, _, _ in nenkin.store.unsent()}
    away.set_result(None)
    for request_id in sent:
        assert (await nenkin.outcome(request_id, 30)).status == "FOUND"
    assert not sent & {request_id for request_id, _, _ in nenkin.store.unsent()}
    assert all(len(nenkin.store.access_log(request_id)) == 1 for request_id in sent)


async def test_the_owner_of_a_decision_partition_decides_at_once_and_still_records_it(
        clients: Clients) -> None:
    """One instance owns every decision partition: it decides without the hop through the
    decider's topic, and the topic still gets the request's events, marked as decided, for a
    next owner to rebuild from."""
    nenkin = clients["nenkin"]
    request_id = await ask(nenkin, bound(nenkin)[1], "P-037", "sakura-town", "local_tax")
    assert (await nenkin.outcome(request_id, 30)).status == "FOUND"
    events: list[tuple[str, Any]] = []  # (schema name, the record that carried it), in order
    ctx = Context.of(keys.load())  # the platform's: its records sealed at rest
    for _ in range(50):
        events = [(name, r) for r in await read_topic(KafkaAccess.of("platform"),
                                                      decider.DECISIONS)
                  for name, fields in map(CODEC.decode_record, unpacked(platform.opened(r, ctx)))
                  if fields.get("request_id") == request_id]
        if len(events) >= 2:
            break
        await asyncio.sleep(0.2)
    assert [name for name, _ in events] == ["Pending", "Outcome"]
    assert all(dict(r.headers).get(platform.DECIDED) for _, r in events)


async def _events_of(request_ids: set[str], want: int) -> list[AccessLogEvent]:
    """The audit events of these requests, once `want` distinct ones have arrived."""
    for _ in range(50):
        events = await audit_events(request_ids)
        if len({e.event_id for e in events}) >= want:
            return events
        await asyncio.sleep(0.2)
    return await audit_events(request_ids)


@pytest.mark.parametrize(("requester", "pattern", "provider", "data_type", "reason"), [
    ("nenkin", "P-999", "sakura-town", "local_tax", "UNKNOWN_PATTERN"),
    ("sakura-kodomo", "P-075", "sakura-town", "local_tax", "PATTERN_NOT_IN_FORCE"),
    ("sakura-hospital", "P-037", "sakura-town", "local_tax", "NOT_PERMITTED"),
    ("nenkin", "P-037", "sakura-hospital", "local_tax", "WRONG_PROVIDER"),
    ("nenkin", "P-037", "nobody", "local_tax", "UNKNOWN_HOLDER"),
    ("nenkin", "P-037", "sakura-town", "resident_record", "DATA_TYPE_NOT_PERMITTED"),
])
async def test_an_unlawful_request_is_rejected_and_logged(
        clients: Clients, requester: str, pattern: str, provider: str, data_type: str,
        reason: str) -> None:
    client = clients[requester]
    request_id = await ask(client, bound(client)[0], pattern, provider, data_type)
    outcome = await client.outcome(request_id, 30)
    assert outcome.status == "REJECTED" and outcome.detail is not None
    assert outcome.detail.startswith(reason)
    (event,) = await _events_of({request_id}, want=1)
    assert (event.outcome, event.reason) == ("REJECTED", reason)
    assert event.person is not None, "the person sees attempts on them, lawful or not"


async def test_unregistered_staff_or_terminal_is_refused_and_logged(clients: Clients) -> None:
    nenkin = clients["nenkin"]
    with pytest.raises(NotAuthorized):
        await nenkin.request(bound(nenkin)[0], "P-037", "sakura-town", "local_tax", "審査",
                             "intruder", "nenkin-term-1")
    assert any(e.operator == "intruder" and e.outcome.startswith("REFUSED")
               for e in nenkin.store.access_log())


async def test_a_silent_provider_gives_a_timeout_and_its_late_answer_is_logged_not_provided(
        clients: Clients) -> None:
    """The provider's answer sent after its ticket's deadline is refused (INVALID_TICKET); one
    the broker took in time but the decider read after the sweep that timed its request out (it
    waited in the outbox) was dropped unsaid: either way its own log said FOUND, with the data,
    for data the requester never got. The audit log has both refusals alike (the second had
    none)."""
    silent = clients[SILENT]
    (expired_id, expired), (waited_id, waited) = await _timed_out_queries(clients, 2)
    with silent.store.transaction():  # answered as its server would, had it been up
        late, in_time = silent._answer(expired), silent._answer(waited)
    assert late is not None and in_time is not None, "answered, not held back"
    await deliver(silent._producer, [late])
    master = keys.load()
    ctx = Context.of(master)
    ctx.directory = {h: silent.entry(h) for h in ("sakura-town", SILENT)}
    answer = CODEC.decode(in_time.value, ProviderAnswer)
    taken = ctx.tickets.open(answer.ticket, waited_id).deadline  # just in time
    incoming = Incoming(topics.outbox(SILENT), 0, 1 << 40, taken, in_time.value)
    outcome, = linkage.answers([FromHolder(incoming, SILENT, answer)], ctx)  # read only now
    async with producer(KafkaAccess.of(acls.PLATFORM)) as platform_producer:
        await deliver(platform_producer, platform.sealed([outcome], ctx))  # as an instance would
    for request_id in (expired_id, waited_id):
        assert await _provider_entry(silent, request_id) == ("REJECTED: INVALID_TICKET", None)
        [requester] = clients["sakura-town"].store.access_log(request_id)
        assert requester.outcome == "TIMED_OUT"
    events = await _events_of({expired_id, waited_id}, want=6)
    assert sorted((e.request_id, e.kind, e.outcome, e.reason, e.requester, e.pattern_id,
                   e.data_type) for e in events if e.kind == "ANSWER" and e.outcome == "REJECTED"
                  ) == sorted((r, "ANSWER", "REJECTED", "INVALID_TICKET", SILENT, "P-016",
                               "vaccination_record") for r in (expired_id, waited_id)), (
        "the audit log has both refusals alike")


def _answers(value: bytes, request_id: str) -> bool:
    """Whether a message on a holder's outbox is its answer to `request_id`: the fuzz test's
    records there (no value, a ProviderAnswer with bytes after it) are none, as for the platform."""
    try:
        return CODEC.decode(value, ProviderAnswer).request_id == request_id
    except SchemaError:
        return False


async def test_an_answer_relayed_sent_again_past_its_deadline_is_dropped_its_provider_keeps_found(
        clients: Clients) -> None:
    """A provider killed before committing the query it answered, its answer relayed, answers it
    again once restarted; the broker took the copy past its ticket's deadline: it was refused
    (INVALID_TICKET, in the audit log under the copy's source) and the provider rewrote its entry
    FOUND as REJECTED, for data the requester had. It is dropped as a copy in time is: no
    Rejection, nothing more in the audit log, the entry FOUND."""
    nenkin, town_hall = clients["nenkin"], clients["sakura-town"]
    request_id = await ask(nenkin, bound(nenkin)[0], "P-037", "sakura-town", "local_tax")
    assert (await nenkin.outcome(request_id, 30)).status == "FOUND"
    admin = KafkaAccess.of(config.ADMIN)
    sent, = [v for r in await read_topic(admin, topics.outbox("sakura-town"))
             for v in unpacked(r.value or b"") if _answers(v, request_id)]
    ctx = Context.of(keys.load())
    ctx.directory = {h: town_hall.entry(h) for h in ("nenkin", "sakura-town")}
    answer = CODEC.decode(sent, ProviderAnswer)
    past = ctx.tickets.open(answer.ticket, request_id).deadline + timedelta(seconds=1)
    again = Incoming(topics.outbox("sakura-town"), 0, 1 << 40, past, sent)  # read only now
    async with producer(KafkaAccess.of(acls.PLATFORM)) as platform_producer:
        await deliver(platform_producer, platform.sealed(  # as an instance would
            linkage.answers([FromHolder(again, "sakura-town", answer)], ctx), ctx))
    await _decided(decider.partition_of(request_id))
    rejections = [r for r in await read_topic(admin, topics.inbox("sakura-town"))
                  for v in unpacked(r.value) if CODEC.name_of(v) == "Rejection"
                  if CODEC.decode(v, Rejection).request_id == request_id]
    assert rejections == [], "a copy of the answer relayed: dropped"
    [entry] = town_hall.store.access_log(request_id)
    assert entry.outcome == "FOUND"
    assert Counter(step_of(e) for e in await audit_events({request_id})) == {
        "approved": 1, "answered": 1}


async def _decided(partition: int) -> None:
    """Wait until the platform committed all its decision partition holds now: what was sent
    there was decided, its effects acknowledged."""
    tp = TopicPartition(decider.DECISIONS, partition)
    async with consumer(KafkaAccess.of(config.ADMIN), group=platform.GROUP) as reader:
        end = (await reader.end_offsets([tp]))[tp]
        for _ in range(100):
            if (await reader.committed(tp) or 0) >= end:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"the platform did not commit {tp} up to {end} in 10 s")


async def _timed_out_queries(clients: Clients, count: int) -> list[tuple[str, ProviderQuery]]:
    """Requests of the town hall to the silent provider, timed out; the queries it was sent."""
    town_hall, silent = clients["sakura-town"], clients[SILENT]
    silent_bound = set(silent.store.bindings().values())
    own = next(o for o in bound(town_hall) if _medical_link(clients, o) in silent_bound)
    request_ids = [await ask(town_hall, own, "P-016", SILENT, "vaccination_record")
                   for _ in range(count)]
    outcomes = await asyncio.gather(*(town_hall.outcome(r, ANSWER_TIMEOUT + 20)
                                      for r in request_ids))
    assert [o.status for o in outcomes] == ["TIMED_OUT"] * count
    events = await _events_of(set(request_ids), want=2 * count)
    assert sorted(e.outcome for e in events) == sorted(["APPROVED", "TIMED_OUT"] * count)
    queries = {q.request_id: q for r in await read_topic(KafkaAccess.of(SILENT),
                                                         topics.inbox(SILENT))
               for v in unpacked(r.value) if CODEC.name_of(v) == "ProviderQuery"
               if (q := CODEC.decode(v, ProviderQuery)).request_id in request_ids}
    return [(r, queries[r]) for r in request_ids]


async def _provider_entry(provider: HolderClient, request_id: str) -> tuple[str, str | None]:
    """The provider's entry of the request, once it says other than FOUND (or 10 s passed)."""
    for _ in range(100):
        [entry] = provider.store.access_log(request_id)
        if entry.outcome != "FOUND":
            break
        await asyncio.sleep(0.1)
    return entry.outcome, entry.content


def _medical_link(clients: Clients, town_own: str) -> str | None:
    """The medical unit's link code of a town resident, through the platform's codes."""
    codes = CodeService(keys.load())
    town_link = clients["sakura-town"].store.link_code(town_own)
    if town_link is None:
        return None
    return codes.convert(town_link, UnitEpoch("sakura-town", 0), UnitEpoch("medical", 0))


async def test_pattern_amendments_apply_live(clients: Clients) -> None:
    """A new pattern version is approved without restarting anything."""
    kenpo = clients["acme-kenpo"]
    own = bound(kenpo)[0]
    before = await kenpo.outcome(await ask(kenpo, own, "P-910", "sakura-town",
                                           "resident_record"), 30)
    assert before.status == "REJECTED" and before.detail and "UNKNOWN_PATTERN" in before.detail
    await directory.publish_patterns([LegalPattern(
        "P-910", 1, "健康保険法第3条第7項（被扶養者の認定）", "被扶養者の認定に関する事務",
        "health_insurance_society", "municipality", ("resident_record",),
        datetime.now(UTC) - timedelta(minutes=5), None, "主務省令 第910条（試験）")],
        "ops", None, chosen=patterns.not_listed)
    for _ in range(40):
        after = await kenpo.outcome(await ask(kenpo, own, "P-910", "sakura-town",
                                              "resident_record"), 30)
        if after.status == "FOUND":
            break
        await asyncio.sleep(0.25)
    assert after.status == "FOUND"


async def test_a_holder_registered_while_the_platform_runs_is_read_within_seconds(
        clients: Clients) -> None:
    """The platform looks for a new holder's outbox as its directory entry appears (about a
    second), not at its next reading of all topics (up to 15 s later)."""
    holder = "late-clinic"
    provision.add_holder(provision.admin_client(), holder, provision.Report())
    registered = time.monotonic()
    await directory.publish([directory.holder_entry(holder, "遅町クリニック",
                                                    "medical_institution")])
    admin = groups.admin()

    def read_by_the_platform() -> bool:
        found = admin.describe_consumer_groups([platform.GROUP], request_timeout=10)
        return any(tp.topic == topics.outbox(holder) for member in found[platform.GROUP].result()
                   .members for tp in member.assignment.topic_partitions)

    while not read_by_the_platform():
        assert time.monotonic() - registered < platform.METADATA_SECONDS / 3, "not read yet"
        await asyncio.sleep(0.5)
