"""The holder library's inbox without Kafka: what the communication server does with one poll's
answers and queries (a client on a store and state folder of its own, never started)."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaConnectionError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import topics
from broker.acls import OVERSIGHT, PORTAL
from broker.clients import KafkaAccess
from broker.credentials import Credentials
from holders import client as client_module
from holders import store as store_module
from holders.client import (
    BINDING,
    BOUND,
    INVESTIGATING,
    LINKAGE,
    REJECTED,
    REKEY,
    REKEY_AT_ONCE,
    REKEY_CODES,
    REKEY_WAIT,
    REKEYED,
    RENEWAL_AGAIN,
    SYSTEM,
    UNREADABLE,
    Applied,
    HolderClient,
    NotBound,
    NotFound,
    RekeyRefused,
    RenewalNotTaken,
    new_request_id,
)
from holders.store import SENT, Forgotten, HolderStore, Keyed, Rekeyed
from processors import linkage, outbox
from processors.context import Context
from processors.keys import MasterKeys
from processors.linkage import FromHolder
from processors.tickets import TicketSealer
from registry.residents import FourAttributes, Sex
from renkei import holder_logs, retention, sealing, signers
from renkei.envelope import Incoming, Send
from renkei.holder_logs import MARK
from renkei.state import state_folder
from renkei.tasks import cancelled
from renkei.windows import ANSWER_TIMEOUT, CLOCK_SKEW, REPLAY_WINDOW, SIGNING_GRACE
from schemas.codec import CODEC, HEADER, MAGIC, MAX_BYTES, NewerVersion
from schemas.messages import (
    FOUND,
    NOT_FOUND,
    REFUSED,
    TIMED_OUT,
    BindingAnswer,
    BindingCandidate,
    HolderEntry,
    HolderLogAnswer,
    HolderLogEntry,
    HolderLogRequest,
    LinkageAnswer,
    LinkageRequest,
    Payload,
    ProviderAnswer,
    ProviderQuery,
    Rejection,
    RekeyAnswer,
    RekeyedCode,
    Ticket,
)
from tests.clock_helpers import appended, skewed
from tests.loop_helpers import Deadline, cpu_ticking, locked, ticking

HOLDER, STAFF, TERMINAL = "city-x", "staff-1", "city-x/terminal-1"
REQUESTER = "city-y"
PERSON = FourAttributes("山田 花子", "桜町1-2-3", date(1980, 4, 1), Sex.FEMALE)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[HolderClient]:
    with state_folder(tmp_path):
        made = HolderClient(HOLDER, HolderStore(tmp_path / "holder.db"),
                            KafkaAccess("127.0.0.1:9", Credentials(HOLDER, "never used")))
        made.store.add_staff(STAFF, "Staff")
        made.store.add_terminal(TERMINAL)
        yield made
        await made.stop()
        made.store.close()


async def handle(client: HolderClient, *messages: object) -> Sequence[Send]:
    """One poll's batch, as the inbox loop hands it over, appended by the broker now."""
    return await client._handle([appended(datetime.now(UTC), CODEC.encode(m)) for m in messages])


def binding_request(client: HolderClient, own_number: str) -> str:
    """A binding request for this record, as recorded when sent."""
    request_id = new_request_id()
    client.store.open_request(request_id, BINDING, own_number, STAFF, TERMINAL)
    return request_id


def status(client: HolderClient, request_id: str) -> str | None:
    request = client.store.request(request_id)
    return None if request is None else request.status


def found(request_id: str, link_code: str, epoch: int = 0, unit: str = HOLDER) -> BindingAnswer:
    """The platform's answer: one resident, of the four attributes of our records."""
    sealed = sealing.seal(sealing.public_bytes(sealing.key_of(HOLDER)), CODEC.encode(PERSON),
                          request_id)
    return BindingAnswer(request_id, FOUND, "", (BindingCandidate(link_code, sealed),), epoch,
                         unit)


async def test_an_own_number_in_full_width_is_the_record_its_import_made_in_the_library(
        client: HolderClient) -> None:
    """The server and the imports key an own number NFKC (`Ｈ－１` is the record `H-1`), the
    library's bind() and request() did not: a holder's program using it was told no record."""
    client.store.add_record("H-1", PERSON)
    with pytest.raises(NotFound, match="record 'H-1' holds no personal number"):
        await client.bind("Ｈ－１", STAFF, TERMINAL, by_number=True)
    with pytest.raises(NotBound, match="record 'H-1' is not bound to a link code"):
        await client.request("Ｈ－１", "P-1", "town", "local_tax", "審査", STAFF, TERMINAL)


async def test_a_second_record_of_one_person_is_investigated_not_bound(
        client: HolderClient) -> None:
    for own_number in ("H-1", "H-2"):
        client.store.add_record(own_number, PERSON)
    first, second = binding_request(client, "H-1"), binding_request(client, "H-2")
    await handle(client, found(first, "ABC98765XYZ"), found(second, "ABC98765XYZ"))
    reason = "the link code is already bound to record H-1"
    assert [status(client, r) for r in (first, second)] == [BOUND, INVESTIGATING]
    assert client.store.investigations() == [("H-2", reason)]
    assert client.store.bindings() == {"H-1": "ABC98765XYZ"}
    again = binding_request(client, "H-1")  # the same record, to its code of a new epoch
    await handle(client, found(again, "369PQRST246", epoch=1))
    assert client.store.binding("H-1") == ("369PQRST246", 1)


async def test_a_binding_answered_for_a_record_removed_meanwhile_binds_nothing(
        client: HolderClient) -> None:
    """`holder records remove` refuses a record with a request in flight, but a binding's
    record is read, then its request recorded: removed between the two, its answer failed an
    assertion in the inbox; the request ends REJECTED, saying why, and nothing is bound."""
    client.store.add_record("H-9", PERSON)
    assert client.store.remove_records([(2, "H-9")]).removed == 1
    request_id = binding_request(client, "H-9")
    await handle(client, found(request_id, "ABC98765XYZ"))
    assert status(client, request_id) == REJECTED
    request = client.store.request(request_id)
    assert request is not None and "removed" in (request.detail or "")
    assert client.store.bindings() == {}


async def test_a_record_corrected_and_bound_leaves_the_investigation_queue(
        client: HolderClient) -> None:
    client.store.add_record("H-1", replace(PERSON, address="桜町9-9"))  # an old address
    first = binding_request(client, "H-1")
    await handle(client, found(first, "ABC98765XYZ"))
    assert status(client, first) == INVESTIGATING
    assert client.store.investigations() == [
        ("H-1", "the registry's address differ(s) from ours")]
    client.store.add_record("H-1", PERSON)  # the clerk corrects it
    again = binding_request(client, "H-1")
    await handle(client, found(again, "ABC98765XYZ"))
    assert status(client, again) == BOUND
    assert client.store.investigations() == []


async def test_a_copy_of_a_binding_answer_is_only_counted(client: HolderClient) -> None:
    """Redelivered after the holder re-keyed: it must not bring back the old epoch's code."""
    client.store.add_record("H-1", PERSON)
    request_id = binding_request(client, "H-1")
    answer = found(request_id, "ABC98765XYZ")
    await handle(client, answer)
    assert client.store.rekey("ABC98765XYZ", "369PQRST246", 1) == Rekeyed("H-1")
    await handle(client, answer)
    assert client.store.binding("H-1") == ("369PQRST246", 1)
    assert client.store.counts(BINDING) == {BOUND: 1, "duplicates dropped": 1}


async def test_a_copy_refused_as_a_duplicate_leaves_the_request_to_its_first(
        client: HolderClient) -> None:
    """A request kept and sent again (after a stop, or a send the broker took but did not
    acknowledge) is refused DUPLICATE_REQUEST by the platform, which has the first: that refusal
    must not end the request, whose outcome the first brings, even in a later run."""
    client.store.add_record("H-1", PERSON)
    request_id = binding_request(client, "H-1")
    await handle(client, Rejection(request_id, "DUPLICATE_REQUEST", "already used",
                                   datetime.now(UTC)))
    assert status(client, request_id) == SENT
    await handle(client, found(request_id, "ABC98765XYZ"))
    assert status(client, request_id) == BOUND


@pytest.mark.parametrize("kind", [REKEY, LINKAGE])
async def test_a_binding_answer_to_another_kind_of_request_is_dropped_and_the_batch_goes_on(
        client: HolderClient, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """One poisoned answer must not stop the inbox (a re-keying has no record to bind), nor
    bind a record its request never asked to bind."""
    client.store.add_record("H-1", PERSON)
    client.store.add_record("H-2", PERSON)
    other = new_request_id()
    client.store.open_request(other, kind, "" if kind == REKEY else "H-1", SYSTEM, TERMINAL)
    request_id = binding_request(client, "H-2")
    with caplog.at_level(logging.ERROR, "holders.client"):
        await handle(client, found(other, "ABC98765XYZ"), found(request_id, "369PQRST246"))
    assert status(client, other) == SENT  # its own answer may still come
    assert client.store.bindings() == {"H-2": "369PQRST246"}
    assert f"a BindingAnswer cannot answer {kind} request {other}" in caplog.text


async def test_a_message_a_newer_platform_wrote_stops_the_inbox_before_its_batch(
        client: HolderClient) -> None:
    """A holder library older than the platform skipped an answer of a schema it did not know
    as unreadable, committing past it: its request never answered. It stops (NewerVersion), the
    batch not applied, to read on from there once upgraded."""
    client.store.add_record("H-1", PERSON)
    request_id = binding_request(client, "H-1")
    now = datetime.now(UTC)
    records = [appended(now, CODEC.encode(found(request_id, "369PQRST246"))),
               appended(now, MAGIC + bytes(8) + b"\x02")]  # a schema no version here knows
    for record in records:
        record.topic = topics.inbox(HOLDER)
    with pytest.raises(NewerVersion, match="this holder library cannot read"):
        await client._handle(records)
    assert status(client, request_id) == SENT and client.store.bindings() == {}


def query(link_code: str, within: float = 30.0) -> ProviderQuery:
    """The platform's query to this holder, as provider, for a record's local tax, to be
    answered `within` seconds from now."""
    return ProviderQuery(new_request_id(), b"ticket", link_code, REQUESTER, "P-1", "local_tax",
                         datetime.now(UTC) + timedelta(seconds=within))


def in_directory(client: HolderClient, public_key: bytes, holder: str = REQUESTER,
                 signing_key: bytes | None = None) -> None:
    """The requester (or another party), as the directory has it, with this sealing key (and
    signing key: none, an entry of before signing)."""
    client.directory.entries[holder.encode()] = HolderEntry(
        holder, "City Y", "municipality", holder, 0, public_key, False, True,
        datetime.now(UTC), signing_key)


async def test_a_requester_key_that_cannot_be_sealed_to_refuses_its_query_only(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    for own_number in ("H-1", "H-2"):
        client.store.add_record(own_number, PERSON)
    client.store.bind("H-1", "ABC98765XYZ", 0)
    client.store.put_data("H-1", "local_tax", {"taxable_income": "3200000"})
    in_directory(client, bytes(32))  # not a key one can seal to
    request_id = binding_request(client, "H-2")
    asked = query("ABC98765XYZ")
    with caplog.at_level(logging.WARNING, "holders.client"):
        out = await handle(client, asked, found(request_id, "369PQRST246"))
    assert [s.message for s in out] == [
        ProviderAnswer(asked.request_id, asked.ticket, asked.link_code, REFUSED, b"")]
    assert [e.outcome for e in client.store.access_log(asked.request_id)] == [REFUSED]
    assert status(client, request_id) == BOUND  # the rest of the batch goes on
    assert REQUESTER in caplog.text
    assert "3200000" not in caplog.text and "ABC98765XYZ" not in caplog.text


def _providing(client: HolderClient) -> None:
    """H-1 bound to ABC98765XYZ, its local tax kept, the requester's key in the directory."""
    client.store.add_record("H-1", PERSON)
    client.store.bind("H-1", "ABC98765XYZ", 0)
    client.store.put_data("H-1", "local_tax", {"taxable_income": "3200000"})
    in_directory(client, sealing.public_bytes(sealing.key_of(REQUESTER)))


def _used_again(first: ProviderQuery, later: timedelta) -> ProviderQuery:
    """A query of `first`'s request id used again, its deadline `later` than the first's."""
    return replace(first, ticket=b"the ticket of the id used again",
                   deadline=first.deadline + later)


@pytest.mark.parametrize(("requester", "outcome"), [
    ("gone", REFUSED),  # the requester left the directory
    ("unusable", REFUSED),  # its key cannot be sealed to
    ("usable", FOUND),
])
async def test_the_provider_logs_the_content_only_when_it_was_sent(
        client: HolderClient, requester: str, outcome: str) -> None:
    client.store.add_record("H-1", PERSON)
    client.store.bind("H-1", "ABC98765XYZ", 0)
    client.store.put_data("H-1", "local_tax", {"taxable_income": "3200000"})
    keys = {"unusable": bytes(32), "usable": sealing.public_bytes(sealing.key_of(REQUESTER))}
    if requester in keys:
        in_directory(client, keys[requester])
    asked = query("ABC98765XYZ")
    await handle(client, asked)
    [entry] = client.store.access_log(asked.request_id)
    assert entry.outcome == outcome
    assert entry.content == ('{"taxable_income": "3200000"}' if outcome == FOUND else None)


async def test_a_query_read_after_its_deadline_is_not_answered_and_logged_without_content(
        client: HolderClient) -> None:
    """Read again after the server was down past it: the platform refuses any answer (its
    ticket expired) and has told the requester TIMED_OUT, so no data is sealed or said sent."""
    _providing(client)
    late, timely = query("ABC98765XYZ", within=-1), query("ABC98765XYZ")
    out = await handle(client, late, timely)
    assert [CODEC.decode(s.value, ProviderAnswer).request_id for s in out] == [timely.request_id]
    [entry] = client.store.access_log(late.request_id)
    assert (entry.outcome, entry.content, entry.counterpart) == (TIMED_OUT, None, REQUESTER)


async def test_each_query_of_a_request_id_used_again_has_its_own_providers_entry(
        client: HolderClient) -> None:
    """A requester may use a request id again once the platform has forgotten it: each query of
    it (received later: its deadline is another) has its provider's entry, a copy of one read
    again none, and the platform's refusal of an answer ends the latest entry, not one relayed
    before it (nor, read again, the one before)."""
    _providing(client)
    first = query("ABC98765XYZ")
    again = _used_again(first, timedelta(seconds=1))
    assert len(await handle(client, first, first)) == 2  # a copy: answered again, logged once
    assert len(await handle(client, again)) == 1
    sent = (FOUND, '{"taxable_income": "3200000"}')
    assert [(e.outcome, e.content) for e in client.store.access_log(first.request_id)] == [
        sent, sent]
    refused = Rejection(first.request_id, "INVALID_TICKET", "the ticket expired",
                        datetime.now(UTC))
    await handle(client, refused, refused)
    assert [(e.outcome, e.content) for e in client.store.access_log(first.request_id)] == [
        sent, ("REJECTED: INVALID_TICKET", None)]


async def test_a_refusal_ends_the_providers_entry_of_the_query_its_refused_answer_answers(
        client: HolderClient) -> None:
    """A refusal names the query whose answer it refuses (v2: by its deadline): one that comes
    after a second query of the id was answered ends the first's entry, not the second's; one of
    v1 (a platform on old code, or a record from before) names none: the latest."""
    _providing(client)
    first = query("ABC98765XYZ")
    again = _used_again(first, timedelta(minutes=3))
    await handle(client, first, again)
    now = datetime.now(UTC)
    await handle(client, Rejection(first.request_id, "INVALID_TICKET", "the ticket expired", now,
                                   first.deadline))
    sent, refused = (FOUND, '{"taxable_income": "3200000"}'), ("REJECTED: INVALID_TICKET", None)
    assert [(e.outcome, e.content) for e in client.store.access_log(first.request_id)] == [
        refused, sent]
    of_v1 = CODEC.encode_record("Rejection", {"request_id": first.request_id,
                                              "reason": "INVALID_TICKET", "detail": "",
                                              "rejected_at": now}, version=1)
    await client._handle([appended(now, of_v1)])
    assert [(e.outcome, e.content) for e in client.store.access_log(first.request_id)] == [
        refused, refused]


async def test_a_refusal_of_an_answer_with_no_providers_status_ends_its_querys_entry(
        client: HolderClient) -> None:
    """Refused MALFORMED under the ticket it carried, after a second query of its id was
    answered: the refusal ended the second's entry, its data relayed, not the first's."""
    _providing(client)
    first = query("ABC98765XYZ")
    await handle(client, first, _used_again(first, timedelta(minutes=3)))
    await handle(client, _platforms_refusal(_ticket(first), HOLDER, TIMED_OUT))
    assert [(e.outcome, e.content) for e in client.store.access_log(first.request_id)] == [
        ("REJECTED: MALFORMED", None), (FOUND, '{"taxable_income": "3200000"}')]


async def test_a_refusal_of_an_answer_under_another_providers_ticket_ends_no_entry(
        client: HolderClient) -> None:
    """Sent under a ticket for another provider, of a query of an id this holder answered
    another query of: the refusal ended this holder's entry of that other query, its data
    relayed."""
    _providing(client)
    first = query("ABC98765XYZ")
    await handle(client, first)
    theirs = _ticket(_used_again(first, timedelta(minutes=3)), provider="city-z")
    await handle(client, _platforms_refusal(theirs, HOLDER))
    assert [(e.outcome, e.content) for e in client.store.access_log(first.request_id)] == [
        (FOUND, '{"taxable_income": "3200000"}')]


async def test_a_refusal_that_ends_no_entry_is_logged_as_one(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    """A refusal of an answer to a query this holder answered none of (another provider's), or
    of a request not sent from here, was logged as an answer to an unknown request: it says
    what it is, by reason, request id and the query's deadline, nothing of a person."""
    _providing(client)
    first = query("ABC98765XYZ")
    await handle(client, first)
    refused = _platforms_refusal(
        _ticket(_used_again(first, timedelta(minutes=3)), provider="city-z"), HOLDER)
    assert refused.deadline is not None
    caplog.clear()
    with caplog.at_level(logging.WARNING, "holders.client"):
        await handle(client, refused,
                     Rejection("r-never-sent", "UNKNOWN_PATTERN", "no pattern P-9",
                               datetime.now(UTC), None))
    assert [r.getMessage() for r in caplog.records] == [
        f"{HOLDER}: a refusal (INVALID_TICKET) of {first.request_id}, no query due "
        f"{refused.deadline.isoformat()} answered here (another provider's, or forgotten): no "
        "entry ended",
        f"{HOLDER}: a refusal (UNKNOWN_PATTERN) of r-never-sent, no request sent from here nor a "
        "query answered here (another provider's, or forgotten): no entry ended"]
    assert "ABC98765XYZ" not in caplog.text and "3200000" not in caplog.text


@pytest.mark.parametrize(("answered", "opened", "refused"), [
    (TIMED_OUT, True, "REJECTED: MALFORMED"), (FOUND, False, "REJECTED: INVALID_TICKET")])
async def test_a_refusal_of_an_answer_leaves_a_request_sent_from_here_under_its_id_as_it_is(
        client: HolderClient, answered: str, opened: bool, refused: str) -> None:
    """Requesters draw their request ids: another's query may have the id of a request sent
    from here, not yet answered. The platform's refusal of this holder's answer to it (naming
    the query's deadline; or none, the answer's ticket not opened, as a refusal of a request
    names none) settled that request REJECTED, logged so: it ends the query's entry."""
    _providing(client)
    asked = query("ABC98765XYZ")
    client.store.open_request(asked.request_id, LINKAGE, "H-1", STAFF, TERMINAL,
                              pattern_id="P-2", provider=REQUESTER, data_type="resident")
    await handle(client, asked)
    await handle(client, _platforms_refusal(_ticket(asked), HOLDER, answered, opened))
    assert status(client, asked.request_id) == SENT
    assert [(e.side, e.outcome, e.content) for e in client.store.access_log(asked.request_id)] == [
        ("PROVIDER", refused, None)]


async def test_a_refusal_of_a_message_the_platform_could_not_read_is_logged_as_one(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    """The platform's refusal of a message from this holder's outbox it could not read names no
    request (its id ""): it was looked up as one and logged a refusal 'of ,'."""
    now = datetime.now(UTC)
    unreadable = Incoming(topics.outbox(HOLDER), 0, 0, now, b"not a message")
    [refused] = [s for s in outbox.handle([unreadable], _platform(), now)
                 if s.topic == topics.inbox(HOLDER)]
    with caplog.at_level(logging.WARNING, "holders.client"):
        await client._handle([appended(now, refused.value)])
    assert [r.getMessage() for r in caplog.records] == [
        f"{HOLDER}: a refusal (MALFORMED) of a message from here the platform could not read, "
        "naming no request: none settled"]


async def test_a_request_of_a_schema_the_platform_does_not_know_is_settled_refused(
        client: HolderClient) -> None:
    """A request this library wrote with a schema version the platform does not know yet (a
    library upgraded before it): the platform refused it UNKNOWN_SCHEMA naming no request, so
    it stayed SENT for ever, nothing else ever answering it; the refusal names it (its first
    field), and it is settled REJECTED, saying why."""
    now = datetime.now(UTC)
    request_id = new_request_id()
    client.store.open_request(request_id, LINKAGE, "H-1", STAFF, TERMINAL, pattern_id="P-2",
                              provider=REQUESTER, data_type="resident")
    sent = CODEC.encode(LinkageRequest(request_id, now, "ABC98765XYZ", "P-2", REQUESTER,
                                       "resident"))
    newer = Incoming(topics.outbox(HOLDER), 0, 0, now, MAGIC + bytes(8) + sent[HEADER:])
    [refused] = [s for s in outbox.handle([newer], _platform(), now)
                 if s.topic == topics.inbox(HOLDER)]
    await client._handle([appended(now, refused.value)])
    request = client.store.request(request_id)
    assert request is not None and request.status == REJECTED
    assert request.detail == "UNKNOWN_SCHEMA: unknown schema fingerprint 0000000000000000"


def _platform() -> Context:
    """The platform's context, under keys of its own."""
    return Context.of(MasterKeys.generate())


def _ticket(of: ProviderQuery, provider: str = HOLDER) -> Ticket:
    """The ticket the platform sealed into query `of` (for `provider`: another one's, else)."""
    return Ticket(of.request_id, of.requester, provider, of.pattern_id, of.data_type, "ID-CODE",
                  "LINK-A", of.link_code, of.deadline)


def _platforms_refusal(ticket: Ticket, by: str, status: str = FOUND,
                       opened: bool = True) -> Rejection:
    """The platform's refusal (linkage.answers) of an answer `by` sent under `ticket`, sealed
    by the platform (not `opened`: by another, a ticket the platform cannot open)."""
    ctx = _platform()
    sealer = ctx.tickets if opened else _platform().tickets
    answer = ProviderAnswer(ticket.request_id, sealer.seal(ticket), ticket.link_b, status, b"")
    sent = Incoming(topics.outbox(by), 0, 0, datetime.now(UTC), CODEC.encode(answer))
    refused, _ = linkage.answers([FromHolder(sent, by, answer)], ctx)
    return CODEC.decode(refused.value, Rejection)


async def test_a_query_dispatched_again_with_its_ticket_sealed_again_is_one_providers_entry(
        client: HolderClient) -> None:
    """The platform dispatches a pending request's query again after a crash, its ticket sealed
    again under another nonce: the provider answers the copy, but logs the query once."""
    _providing(client)
    first = query("ABC98765XYZ")
    sealer = TicketSealer(bytes(32))
    ticket = _ticket(first)
    copy = replace(first, ticket=sealer.seal(ticket))
    first = replace(first, ticket=sealer.seal(ticket))
    assert copy.ticket != first.ticket
    assert len(await handle(client, first)) == len(await handle(client, copy)) == 1
    assert [e.outcome for e in client.store.access_log(first.request_id)] == [FOUND]


@pytest.mark.parametrize("meanwhile", ["imported", "changed"])
async def test_a_query_read_again_is_answered_as_its_entry_says(client: HolderClient,
                                                                meanwhile: str) -> None:
    """Read again after a restart (its answer made and logged, the holder killed before the
    broker had it), with the data imported or changed meanwhile: the answer sent again was made
    from the store as it was then, FOUND with data its NOT_FOUND entry never said was sent, or
    data other than its entry's. It is the answer its entry says."""
    _providing(client)
    if meanwhile == "imported":
        client.store.db.execute("DELETE FROM data")  # none kept yet
    asked = query("ABC98765XYZ")
    await handle(client, asked)
    logged = client.store.access_log(asked.request_id)
    client.store.put_data("H-1", "local_tax", {"taxable_income": "4100000"})
    [again] = await handle(client, asked)
    assert isinstance(again.message, ProviderAnswer)
    assert client.store.access_log(asked.request_id) == logged
    if meanwhile == "imported":
        assert (logged[0].outcome, again.message.status) == (NOT_FOUND, NOT_FOUND)
        assert again.message.sealed_payload == b""
        return
    opened = sealing.SessionOpener(sealing.key_of(REQUESTER), holder=REQUESTER).open(
        again.message.sealed_payload, asked.request_id)
    assert logged[0].outcome == FOUND and "3200000" in (logged[0].content or "")
    assert CODEC.decode(opened, Payload).fields == {"taxable_income": "3200000"}


@pytest.mark.parametrize("skew", [timedelta(minutes=10), -timedelta(minutes=10)])
async def test_a_holder_with_a_wrong_clock_judges_a_querys_deadline_by_the_brokers(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch, skew: timedelta) -> None:
    """A query's deadline is of the broker's time (its receipt's append time, plus the answer
    timeout), but the holder judged it by its own clock: one 10 minutes ahead logged every query
    TIMED_OUT and answered none, one behind answered those the platform refuses. It is judged
    by the broker's time, as the inbox's records are stamped by it."""
    _providing(client)
    monkeypatch.setattr(client_module, "datetime", skewed(skew))
    late, timely = query("ABC98765XYZ", within=-1), query("ABC98765XYZ")
    out = await handle(client, late, timely)
    assert [CODEC.decode(s.value, ProviderAnswer).request_id for s in out] == [timely.request_id]
    assert [e.outcome for e in client.store.access_log(late.request_id)] == [TIMED_OUT]


async def test_a_store_locked_past_the_busy_timeout_holds_the_batch_until_it_is_free(
        client: HolderClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Another writer (an operator's command) holding the lock: the inbox waits, not stops,
    saying so once as it begins and once as it ends, with how long it waited (it said so at
    every try: an ERROR line a second while an import ran)."""
    _providing(client)
    monkeypatch.setattr(client_module, "STORE_RETRY", 0.05, raising=False)
    other = sqlite3.connect(tmp_path / "holder.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    asked = query("ABC98765XYZ")
    with caplog.at_level(logging.WARNING, "holders.client"):
        handled = asyncio.create_task(handle(client, asked))
        await asyncio.sleep(0.5)
        assert not handled.done()
        other.execute("COMMIT")
        out = await asyncio.wait_for(handled, 5)
    other.close()
    assert CODEC.decode(out[0].value, ProviderAnswer).status == FOUND
    began, ended = [r for r in caplog.records if r.name == "holders.client"]
    assert began.levelname == "ERROR"
    assert "its store is locked (database is locked): the inbox tries again" in began.message
    waited = re.search(r"its store is free again: the inbox waited ([0-9.]+) s", ended.message)
    assert waited is not None and 0.4 <= float(waited[1]) < 5


async def test_an_import_holding_the_store_does_not_stall_the_event_loop(
        client: HolderClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inbox waited for the write lock an import held up to SQLite's 5 s busy timeout a
    try, the event loop standing still all the while: no other query, no call to the server."""
    _providing(client)
    monkeypatch.setattr(client_module, "STORE_RETRY", 0.1, raising=False)
    with locked(tmp_path / "holder.db", "BEGIN IMMEDIATE", seconds=1.0):
        async with ticking() as ticker:
            out = await asyncio.wait_for(handle(client, query("ABC98765XYZ")), 5)
            ticker.went_on(1.0)
    assert CODEC.decode(out[0].value, ProviderAnswer).status == FOUND


async def test_requests_delivered_while_the_store_is_locked_are_let_go_once_it_is_free(
        client: HolderClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Told while an import held the write lock, the store raised "database is locked" in a
    callback of the loop's, and the requests stayed kept: sent again at the next start."""
    request_id = new_request_id()
    client.store.open_request(request_id, BINDING, "H-1", STAFF, TERMINAL,
                              outgoing=(request_id, b"sealed"))
    monkeypatch.setattr(client_module, "STORE_RETRY", 0.05, raising=False)
    with locked(tmp_path / "holder.db", "BEGIN IMMEDIATE", seconds=0.3):
        client._delivered_ids.append(request_id)
        client._no_longer_kept()
        assert [kept[0] for kept in client.store.unsent()] == [request_id]
    deadline = Deadline(5, "the delivered request let go")
    while client.store.unsent():
        deadline.check()
        await asyncio.sleep(0.05)


async def test_a_retry_just_after_the_broker_took_its_request_is_answered_that_request(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is told of the requests the broker took DELIVERED_EVERY later: a retry under
    the same Idempotency-Key meanwhile was told NotSentYet (the server's "sent": false, the
    broker unreachable) of a request the broker had; it is answered that request, as sent."""
    request_id, keyed = new_request_id(), Keyed("retried-key", "what was asked")
    client.store.open_request(request_id, BINDING, "H-1", STAFF, TERMINAL,
                              outgoing=(request_id, b"sealed"), keyed=keyed)

    async def taken(producer: object, sends: Sequence[Send]) -> None:
        return None

    monkeypatch.setattr(client_module, "deliver", taken)
    await client._delivered(request_id, Send(topics.outbox(HOLDER), request_id, b"sealed"))
    assert client._made(keyed) == request_id


async def test_the_stop_counts_as_kept_only_the_requests_the_broker_did_not_take(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The broker away at the stop: its warning counts the requests kept once those the broker
    took in the last DELIVERED_EVERY are kept no more, not before (which overstated it)."""
    taken, left = new_request_id(), new_request_id()
    for request_id in (taken, left):
        client.store.open_request(request_id, BINDING, "H-1", STAFF, TERMINAL,
                                  outgoing=(request_id, b"sealed"))
    client._delivered_ids.append(taken)  # the broker took it; the store is told at the stop

    async def closed_away(producer: object, away: bool = False) -> bool:
        return False

    monkeypatch.setattr(client_module, "close_producer", closed_away)
    with caplog.at_level(logging.WARNING):
        await client.stop()
    assert "before the broker took all it held (away, most likely): 1 request(s) kept" in \
        caplog.text
    assert [request_id for request_id, _, _ in client.store.unsent()] == [left]


async def test_data_too_large_to_send_refuses_its_query_only(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    """Its answer would be over the message size limit: refused and logged so, not a stop of
    the inbox (which read the same query again at each restart)."""
    for own_number, code, size in (("H-1", "ABC98765XYZ", MAX_BYTES), ("H-2", "369PQRST246", 7)):
        client.store.add_record(own_number, PERSON)
        client.store.bind(own_number, code, 0)
        client.store.put_data(own_number, "local_tax", {"taxable_income": "3" * size})
    in_directory(client, sealing.public_bytes(sealing.key_of(REQUESTER)))
    large, small = query("ABC98765XYZ"), query("369PQRST246")
    with caplog.at_level(logging.ERROR, "holders.client"):
        out = await handle(client, large, small)
    answers = [CODEC.decode(s.value, ProviderAnswer) for s in out]
    assert [(a.request_id, a.status) for a in answers] == [
        (large.request_id, REFUSED), (small.request_id, FOUND)]
    [entry] = client.store.access_log(large.request_id)
    assert (entry.outcome, entry.content) == (REFUSED, None)
    assert f"the answer to query {large.request_id} is too large to send" in caplog.text


async def _oversight_then_a_query(
        client: HolderClient, request_ids: tuple[str, ...], later: ProviderQuery,
        caplog: pytest.LogCaptureFixture) -> tuple[HolderLogAnswer, ProviderAnswer]:
    """The answers to the oversight body's request (oversight-1) for the log of `request_ids`
    and to a query read after it in the same batch (`later`), warnings captured."""
    oversight = HolderLogRequest("oversight-1", datetime.now(UTC), (HOLDER,), request_ids, "")
    with caplog.at_level(logging.WARNING, "holders.client"):
        out = await handle(client, oversight, later)
    return (CODEC.decode(out[0].value, HolderLogAnswer),
            CODEC.decode(out[1].value, ProviderAnswer))


async def test_a_log_too_large_to_send_is_answered_too_large_and_the_inbox_goes_on(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    in_directory(client, sealing.public_bytes(sealing.key_of(OVERSIGHT)), OVERSIGHT)
    asked = [new_request_id() for _ in range(3)]
    for request_id in asked:
        client.store.log(request_id, "PROVIDER", SYSTEM, TERMINAL, FOUND,
                         content="3" * (MAX_BYTES // 2))
    later = query("ABC98765XYZ")
    answered, answer = await _oversight_then_a_query(client, tuple(asked), later, caplog)
    assert (answered.request_id, answered.sealed_entries, answered.too_large) == (
        "oversight-1", None, True)
    assert answer.request_id == later.request_id
    assert "the log of oversight-1 (3 entries) is too large to send" in caplog.text


async def test_a_binding_answered_at_the_old_epoch_after_the_rekeying_is_rekeyed_too(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform answered before the unit moved; the holder had re-keyed before it came."""
    client.directory.entries[HOLDER.encode()] = HolderEntry(
        HOLDER, "City X", "municipality", HOLDER, 1, b"", False, True, datetime.now(UTC))
    asked: asyncio.Queue[dict[int, list[str]]] = asyncio.Queue()

    async def rekey(epoch: int) -> tuple[int, int]:
        """What the re-keying would ask the platform to convert."""
        asked.put_nowait(client.store.bindings_before(epoch))
        return 0, 0

    monkeypatch.setattr(client, "_rekey", rekey)
    client._epochs = asyncio.create_task(client._follow_epochs())  # stopped with the client
    client.store.add_record("H-1", PERSON)
    request_id = binding_request(client, "H-1")
    assert await asyncio.wait_for(asked.get(), 5) == {}  # at start: nothing to convert
    await handle(client, found(request_id, "ABC98765XYZ", epoch=0))
    assert await asyncio.wait_for(asked.get(), 5) == {0: ["ABC98765XYZ"]}


async def test_a_binding_answered_under_the_unit_left_is_investigated_not_bound(
        client: HolderClient) -> None:
    """The platform answered before the holder moved to another link-code unit; the holder had
    brought its bindings to the new unit before it came: it was bound, filed under the new unit
    though its code is of the one left (no person's there), its requests refused."""
    with client.store.transaction():
        client.store.move_to_unit("city-x-sector")
    for own_number in ("H-1", "H-2"):
        client.store.add_record(own_number, PERSON)
    left, moved = binding_request(client, "H-1"), binding_request(client, "H-2")
    await handle(client, found(left, "ABC98765XYZ"),
                 found(moved, "369PQRST246", unit="city-x-sector"))
    assert [status(client, r) for r in (left, moved)] == [INVESTIGATING, BOUND]
    assert client.store.investigations() == [("H-1", "answered under link-code unit 'city-x', "
                                              "the bindings being of 'city-x-sector' (the holder "
                                              "moved): bind it again")]
    assert client.store.bindings() == {"H-2": "369PQRST246"}



def at_epoch(client: HolderClient, epoch: int) -> None:
    """This holder's unit at key `epoch`, as its directory view has read it."""
    client.directory.entries[HOLDER.encode()] = HolderEntry(
        HOLDER, "City X", "municipality", HOLDER, epoch, b"", False, True, datetime.now(UTC))


def delivered_to(monkeypatch: pytest.MonkeyPatch, fails: bool = False) -> list[Send]:
    """What the client hands the broker outside its inbox loop (each acknowledged, or each
    failing: the broker away)."""
    handed: list[Send] = []

    async def deliver(_: object, effects: Sequence[Send]) -> None:
        if fails:
            raise KafkaConnectionError("the broker is away")
        handed.extend(effects)

    monkeypatch.setattr(client_module, "deliver", deliver)
    return handed


def of_epoch_two(within: float = 30.0) -> ProviderQuery:
    """A query for H-1 (bound to OLD, of epoch 0) by its codes of epochs 2 and 1."""
    return replace(query("EPOCH2CODE1", within), previous_link_code="EPOCH1CODE1")


async def test_a_query_missed_while_the_bindings_wait_for_their_rekeying_is_held_then_answered(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Back after its unit was re-keyed twice, a provider's bindings were two epochs behind the
    query's codes (of this epoch and the one before): it answered NOT_FOUND for a person it
    holds, logged so. It holds the query back, in its batch's transaction, and answers it once
    the bindings are brought to the epoch, logged once; a crash before the broker has the
    answer leaves it held, answered again as logged."""
    _providing(client)
    at_epoch(client, 2)
    asked = of_epoch_two()
    assert await handle(client, asked) == []
    assert client.store.access_log(asked.request_id) == []
    with client.store.transaction():
        client.store.rekey(OLD, "EPOCH2CODE1", 2)
    client._brought_to = 2  # as _follow_epochs notes it
    delivered_to(monkeypatch, fails=True)
    with pytest.raises(KafkaConnectionError):
        await client._answer_held()
    assert len(client.store.held_queries()) == 1  # not let go: the broker does not have it
    handed = delivered_to(monkeypatch)
    await client._answer_held()
    assert [(a.request_id, a.status) for a in (CODEC.decode(s.value, ProviderAnswer)
                                               for s in handed)] == [(asked.request_id, FOUND)]
    assert [(e.outcome, e.content) for e in client.store.access_log(asked.request_id)] == [
        (FOUND, '{"taxable_income": "3200000"}')]
    assert client.store.held_queries() == []


async def test_a_query_held_past_its_deadline_is_logged_timed_out_not_answered(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-keying took longer than the query's deadline: the platform timed it out (its
    requester told TIMED_OUT), so no answer goes and the provider's entry says so."""
    _providing(client)
    at_epoch(client, 2)
    asked = of_epoch_two(within=0.2)
    assert await handle(client, asked) == []
    await asyncio.sleep(0.3)
    client._brought_to = 2
    handed = delivered_to(monkeypatch)
    await client._answer_held()
    assert handed == []
    assert [(e.outcome, e.content) for e in client.store.access_log(asked.request_id)] == [
        (TIMED_OUT, None)]
    assert client.store.held_queries() == []


def outbox_holding(monkeypatch: pytest.MonkeyPatch, handed: list[Send]) -> None:
    """The holder's outbox, read back, holding what was `handed` to the broker."""

    async def records_between(*_: object) -> AsyncIterator[SimpleNamespace]:
        for sent in list(handed):
            yield SimpleNamespace(value=sent.value)

    monkeypatch.setattr(client_module, "records_between", records_between)


async def test_a_held_query_the_broker_has_the_answer_of_is_not_answered_again_after_a_crash(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its answer delivered, the provider was killed before it let the query go: at its next
    start the query, in time still, was answered again as logged, its data sealed and sent a
    second time. Its outbox, which has the answer, tells: the query is let go, none sent."""
    _providing(client)
    at_epoch(client, 2)
    asked = of_epoch_two()
    assert await handle(client, asked) == []
    with client.store.transaction():
        client.store.rekey(OLD, "EPOCH2CODE1", 2)
    client._brought_to = 2
    handed = delivered_to(monkeypatch)
    let_go = client._let_go
    monkeypatch.setattr(client, "_let_go", _killed)
    with pytest.raises(SystemExit):
        await client._answer_held()
    monkeypatch.setattr(client, "_let_go", let_go)
    outbox_holding(monkeypatch, handed)
    await client._answer_held()  # at the next start
    assert [CODEC.decode(s.value, ProviderAnswer).status for s in handed] == [FOUND]
    assert [e.outcome for e in client.store.access_log(asked.request_id)] == [FOUND]
    assert client.store.held_queries() == []


def _killed(*_: object) -> None:
    raise SystemExit("killed")


def platform_silent(client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform that takes each re-keying request and answers none (it waits REKEY_WITHIN)."""

    async def ask(from_epoch: int, link_codes: list[str]) -> str:
        request_id = new_request_id()
        client.store.open_request(request_id, REKEY, "", SYSTEM, client.terminal)
        return request_id

    monkeypatch.setattr(client, "_ask_rekey", ask)


async def test_a_query_held_while_the_rekeying_goes_unanswered_ends_timed_out_at_its_deadline(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The held queries were ended only once the re-keying ended: a platform not answering it
    (REKEY_WITHIN, 120 s, four times its answer timeout; then again and again) left each held,
    unlogged, long after the platform had timed it out. It ends TIMED_OUT at its deadline,
    logged once, not answered; the re-keying goes on."""
    _providing(client)
    at_epoch(client, 2)
    platform_silent(client, monkeypatch)
    handed = delivered_to(monkeypatch)
    asked = of_epoch_two(within=0.3)
    assert await handle(client, asked) == []
    with caplog.at_level(logging.WARNING, "holders.client"):
        client._epochs = asyncio.create_task(client._follow_epochs())  # stopped with the client
        await asyncio.sleep(1.0)  # the deadline 0.3 s on; the re-keying waits on
    assert client.store.held_queries() == [] and handed == [] and not client._epochs.done()
    assert [(e.outcome, e.content) for e in client.store.access_log(asked.request_id)] == [
        (TIMED_OUT, None)]
    assert caplog.text.count("1 quer(ies) held back while its bindings were re-keyed ended "
                             "past their deadline") == 1


async def test_a_query_for_nobody_here_is_answered_not_found_once_the_bindings_are_of_the_epoch(
        client: HolderClient) -> None:
    """Held back only while bindings of an older epoch wait for their re-keying."""
    _providing(client)
    at_epoch(client, 2)
    with client.store.transaction():
        client.store.rekey(OLD, NEW, 2)
    asked = of_epoch_two()
    [answer] = await handle(client, asked)
    assert CODEC.decode(answer.value, ProviderAnswer).status == NOT_FOUND
    assert client.store.held_queries() == []

OLD, NEW = "ABC98765XYZ", "369PQRST246"  # one person's link code of epoch 0, and of epoch 1


def platform_rekeying(client: HolderClient, monkeypatch: pytest.MonkeyPatch, *epochs: int,
                      moves: dict[str, str] | None = None, unit: str = HOLDER) -> list[list[str]]:
    """The platform's re-keying of `unit`, at each of `epochs` in turn (then at the last): each
    code to its new one (`moves`, by default OLD to NEW) when at a newer epoch than the codes
    are of, as it is when not. The codes each request asked about."""
    asked: list[list[str]] = []
    new_codes = {OLD: NEW} if moves is None else moves

    async def ask(from_epoch: int, link_codes: list[str]) -> str:
        request_id = new_request_id()
        client.store.open_request(request_id, REKEY, "", SYSTEM, client.terminal)
        epoch = epochs[min(len(asked), len(epochs) - 1)]
        asked.append(link_codes)
        await handle(client, RekeyAnswer(request_id, epoch, tuple(
            RekeyedCode(code, new_codes[code] if epoch > from_epoch else code)
            for code in link_codes), unit))
        return request_id

    monkeypatch.setattr(client, "_ask_rekey", ask)
    return asked


async def test_a_check_of_the_unit_answered_before_the_platform_saw_the_move_is_asked_again(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that never noted its link-code unit has its bindings checked by their codes at
    the client's first follow: a platform not yet at the holder's move found its codes of the
    unit left valid, and they were kept, the store noting the new unit."""
    client.directory.entries[HOLDER.encode()] = HolderEntry(
        HOLDER, "City X", "municipality", "city-x-sector", 0, b"", False, True,
        datetime.now(UTC))
    platform_rekeying(client, monkeypatch, 0, unit=HOLDER)
    client.store.bind("H-1", OLD, 0)
    with pytest.raises(RekeyRefused, match="answered under link-code unit 'city-x', not "
                                           "'city-x-sector'"):
        await client._follow_unit(None)
    assert client.store.bindings_unit() is None


async def test_a_rekeying_waits_for_the_platform_to_move_to_the_new_epoch(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = platform_rekeying(client, monkeypatch, 0, 0, 1)
    client.store.bind("H-1", OLD, 0)
    assert await client._rekey(1, within=5) == (1, 0)
    assert asked == [[OLD]] * 3
    assert client.store.binding("H-1") == (NEW, 1)


async def test_a_second_record_of_one_person_bound_across_a_rekeying_is_investigated(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """H-1 bound at epoch 0, H-2 (the same person keyed again) at epoch 1 before H-1 was
    re-keyed: H-1's new code is H-2's. H-1 is unbound and investigated, the re-keying done at
    once (it asked the platform again and again, then timed out, then started over)."""
    asked = platform_rekeying(client, monkeypatch, 1)
    for own_number in ("H-1", "H-2"):
        client.store.add_record(own_number, PERSON)
    client.store.bind("H-1", OLD, 0)
    second = binding_request(client, "H-2")
    await handle(client, found(second, NEW, epoch=1))
    assert status(client, second) == BOUND
    assert await asyncio.wait_for(client._rekey(1, within=3), 2) == (0, 1)
    assert asked == [[OLD]]
    assert client.store.bindings() == {"H-2": NEW}
    assert client.store.investigations() == [
        ("H-1", "its link code of epoch 1 is already bound to record H-2")]


async def test_a_second_record_answered_at_the_old_epoch_after_the_rekeying_is_investigated(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """H-1 re-keyed to epoch 1; H-2 (the same person keyed again) answered at epoch 0: its code
    is H-1's previous one, so the match is as ambiguous as at one epoch (it was bound, both
    records to one person, and its re-keying never completed)."""
    platform_rekeying(client, monkeypatch, 1)
    for own_number in ("H-1", "H-2"):
        client.store.add_record(own_number, PERSON)
    client.store.bind("H-1", OLD, 0)
    assert await client._rekey(1, within=3) == (1, 0)
    second = binding_request(client, "H-2")
    await handle(client, found(second, OLD, epoch=0))
    assert status(client, second) == INVESTIGATING
    assert client.store.investigations() == [
        ("H-2", "the link code is already bound to record H-1")]
    assert client.store.bindings() == {"H-1": NEW}


async def test_a_rekeying_answered_at_the_new_epoch_is_not_asked_again(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Codes that do not move though the platform answered at the new epoch (here each one's
    new code is the other's old one) would not move if asked again: the re-keying ends."""
    asked = platform_rekeying(client, monkeypatch, 1, moves={OLD: NEW, NEW: OLD})
    client.store.bind("H-1", OLD, 0)
    client.store.bind("H-2", NEW, 0)
    assert await asyncio.wait_for(client._rekey(1, within=3), 2) == (0, 0)
    assert asked == [[OLD, NEW]]  # in the order bound (the store's, rowid)
    assert client.store.bindings_before(1) == {0: [OLD, NEW]}


async def test_a_rekeying_of_many_bindings_does_not_stall_the_event_loop(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 200k bindings of the old epoch, reading them held the loop ~65 ms (twice: before
    asking and after, to see what moved), every query and answer in flight waiting: they are
    read a request's codes at a time, each asked once (the platform here answers at once,
    moving none: what an answer's codes cost is not timed here)."""
    stale = many_stale(client, 200_000)
    asked: list[str] = []

    async def ask(from_epoch: int, link_codes: list[str]) -> str:
        request_id = new_request_id()
        client.store.open_request(request_id, REKEY, "", SYSTEM, client.terminal)
        asked.extend(link_codes)
        await asyncio.sleep(0)  # sent: the broker takes it
        await handle(client, RekeyAnswer(request_id, 1, (), HOLDER))
        return request_id

    monkeypatch.setattr(client, "_ask_rekey", ask)
    async with cpu_ticking() as ticker:
        assert await client._rekey(1, within=5) == (0, 0)
        stood_still = ticker.stood_still()
    assert asked == stale
    assert stood_still < 0.04, stood_still


def many_stale(client: HolderClient, count: int = REKEY_CODES) -> list[str]:
    """`count` bindings of key epoch 0, their link codes in order."""
    stale = [f"C{n:010d}" for n in range(count)]
    with client.store.transaction():
        client.store.db.executemany("INSERT INTO bindings VALUES (?, ?, '', 0, NULL)",
                                    ((f"H-{code}", code) for code in stale))
    return stale


def rekeying_of(client: HolderClient, stale: list[str]) -> tuple[str, SimpleNamespace]:
    """A re-keying request of these codes, and its answer moving each (C… to N…) to epoch 1,
    as the inbox reads it."""
    request_id = new_request_id()
    client.store.open_request(request_id, REKEY, "", SYSTEM, client.terminal)
    answer = RekeyAnswer(request_id, 1, tuple(RekeyedCode(code, f"N{code[1:]}")
                                              for code in stale), HOLDER)
    return request_id, appended(datetime.now(UTC), CODEC.encode(answer))


def rekeyed_once(client: HolderClient, request_id: str, stale: list[str]) -> None:
    """Each binding moved to epoch 1 once, the request settled."""
    assert client.store.bindings_before(1) == {}
    assert client.store.binding(f"H-{stale[-1]}") == (f"N{stale[-1][1:]}", 1)
    assert len(client.store.bindings()) == len(stale)
    assert status(client, request_id) == REKEYED


async def test_applying_a_rekeying_answer_does_not_stall_the_event_loop(
        client: HolderClient) -> None:
    """The answer's 10k codes were applied in one transaction, holding the loop ~170 ms CPU on
    this loaded machine, every query and answer in flight waiting: a part at a time (the
    longest step left its decoding, ~15 ms; 13-24 ms on a slower machine, its parts 8-18 ms,
    ~210 ms in all, where a bound of 30 ms failed it: the longest step is bounded as a share of
    the whole, which one transaction holds nearly all of)."""
    stale = many_stale(client)
    request_id, answer = rekeying_of(client, stale)
    async with cpu_ticking() as ticker:
        await client._handle([answer])
        stood_still = ticker.stood_still()
    rekeyed_once(client, request_id, stale)
    assert client.store.request(request_id).result == {  # type: ignore[union-attr]
        "converted": str(len(stale)), "investigated": "0", "epoch": "1"}
    worked = ticker.turned - ticker.started
    assert stood_still < worked / 4, (stood_still, worked)


async def test_a_rekeying_answer_applied_in_part_before_a_crash_is_applied_once_read_again(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A crash between its parts leaves the request unanswered (the batch's offsets are
    committed once it is handled): read again at the restart, the answer moves the bindings
    left, none twice, and its outcome counts them all (it counted those moved after the
    restart only)."""
    stale = many_stale(client, 4 * REKEY_AT_ONCE)
    request_id, answer = rekeying_of(client, stale)
    applied = client._rekeyed_part

    def crashing(answer: RekeyAnswer, codes: Sequence[RekeyedCode]) -> Applied:
        if len(client.store.bindings_before(1)[0]) == len(stale) // 2:
            raise SystemExit("crashed")
        return applied(answer, codes)

    monkeypatch.setattr(client, "_rekeyed_part", crashing)
    with pytest.raises(SystemExit, match="crashed"):
        await client._handle([answer])
    assert len(client.store.bindings_before(1)[0]) == len(stale) // 2
    assert status(client, request_id) == SENT
    restarted = HolderClient(HOLDER, HolderStore(tmp_path / "holder.db"), client.access)
    try:
        await restarted._handle([answer])
        rekeyed_once(restarted, request_id, stale)
        assert restarted.store.db.execute(
            "SELECT count(*) FROM bindings WHERE epoch = 1 AND "
            "'C' || substr(link_code, 2) = previous_code").fetchone() == (len(stale),)
        assert restarted.store.request(request_id).result == {  # type: ignore[union-attr]
            "converted": str(len(stale)), "investigated": "0", "epoch": "1"}
    finally:
        await restarted.stop()
        restarted.store.close()


MOVED_HALF = ("answered under link-code unit 'city-x', not 'city-x-sector': asked again; 1000 "
              "binding(s) re-keyed to epoch 1 and 0 to investigation before the move was seen, "
              "of the unit left: unbound with the rest once the bindings follow the move")


def moving_after_half(client: HolderClient, monkeypatch: pytest.MonkeyPatch,
                      stale: list[str]) -> None:
    """The holder moves to link-code unit city-x-sector (the directory read meanwhile) once a
    re-keying answer's parts have moved half of `stale`."""
    entry = HolderEntry(HOLDER, "City X", "municipality", HOLDER, 1, b"", False, True,
                        datetime.now(UTC))
    client.directory.entries[HOLDER.encode()] = entry
    applied = client._rekeyed_part

    def moving(answer: RekeyAnswer, codes: Sequence[RekeyedCode]) -> Applied:
        done = applied(answer, codes)
        if len(client.store.bindings_before(1).get(0, ())) == len(stale) // 2:
            client.directory.entries[HOLDER.encode()] = replace(entry, link_unit="city-x-sector")
        return done

    monkeypatch.setattr(client, "_rekeyed_part", moving)


async def test_a_move_to_another_unit_between_the_parts_of_a_rekeying_answer_stops_it(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder moved to another link-code unit after half the answer's parts: the parts
    left move nothing, the request refused, to be asked again once the bindings follow the
    move; its detail and result say how many the parts before moved, of the unit left (they
    did not: an operator could not tell)."""
    stale = many_stale(client, 4 * REKEY_AT_ONCE)
    request_id, answer = rekeying_of(client, stale)
    moving_after_half(client, monkeypatch, stale)
    await client._handle([answer])
    assert len(client.store.bindings_before(1)[0]) == len(stale) // 2
    refused = client.store.request(request_id)
    assert refused is not None
    assert (refused.status, refused.detail, refused.result) == (REJECTED, MOVED_HALF, {
        "converted": str(len(stale) // 2), "investigated": "0", "epoch": "1"})


async def test_the_requests_waiting_for_a_rekeying_refused_partway_go_once_it_is_settled(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """The re-keying refused after half its parts (the holder moved): the requests waiting for
    their records' new codes go at once, with the code their record has (new for one moved by
    the parts before, old for one not moved), none waiting out REKEY_WAIT (10 s) for a
    re-keying settled."""
    stale = many_stale(client, 4 * REKEY_AT_ONCE)
    request_id, answer = rekeying_of(client, stale)
    moving_after_half(client, monkeypatch, stale)
    waiting = [asyncio.create_task(client._current_code(f"H-{code}"))
               for code in (stale[0], stale[-1])]
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await client._handle([answer])
    codes = await asyncio.wait_for(asyncio.gather(*waiting), REKEY_WAIT + 5)
    waited = asyncio.get_running_loop().time() - started
    assert status(client, request_id) == REJECTED
    assert codes == [f"N{stale[0][1:]}", stale[-1]]
    assert waited < 1, waited


async def test_a_move_seen_at_the_restart_after_a_crash_between_parts_says_what_they_moved(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Half the answer's parts applied, a crash, and the holder's move seen at the restart,
    before the first part left: the refusal says how many the parts before the crash moved
    (it said none, the count kept in the store dropped)."""
    stale = many_stale(client, 4 * REKEY_AT_ONCE)
    request_id, answer = rekeying_of(client, stale)
    moving_after_half(client, monkeypatch, stale)
    moved = client._rekeyed_part

    def crashing(answer: RekeyAnswer, codes: Sequence[RekeyedCode]) -> Applied:
        if client.directory.entries[HOLDER.encode()].link_unit != HOLDER:
            raise SystemExit("crashed")
        return moved(answer, codes)

    monkeypatch.setattr(client, "_rekeyed_part", crashing)
    with pytest.raises(SystemExit):
        await client._handle([answer])
    restarted = HolderClient(HOLDER, HolderStore(tmp_path / "holder.db"), client.access)
    restarted.directory.entries.update(client.directory.entries)
    try:
        await restarted._handle([answer])
        refused = restarted.store.request(request_id)
        assert refused is not None
        assert (refused.status, refused.detail) == (REJECTED, MOVED_HALF)
    finally:
        await restarted.stop()
        restarted.store.close()


async def test_bindings_moved_before_a_move_was_seen_are_unbound_as_the_bindings_follow_it(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The re-keying refused after half its parts, the failure logged says how many moved, of
    the unit left; REKEY_AGAIN later the bindings follow the move, those moved unbound with the
    rest, each investigated: none left bound with a code of the unit left."""
    monkeypatch.setattr(client_module, "REKEY_AGAIN", 0.01)
    stale = many_stale(client, 4 * REKEY_AT_ONCE)
    with client.store.transaction():
        client.store.move_to_unit(HOLDER)
    platform_rekeying(client, monkeypatch, 1, moves={c: f"N{c[1:]}" for c in stale})
    moving_after_half(client, monkeypatch, stale)
    caplog.set_level(logging.WARNING, "holders.client")
    following = asyncio.create_task(client._follow_epochs())
    deadline = Deadline(5, "the bindings unbound")
    try:
        while client.store.bindings():
            deadline.check(len(client.store.bindings()))
            await asyncio.sleep(0.01)
    finally:
        await cancelled(following)
    failed, moved = (r.getMessage() for r in caplog.records)
    assert MOVED_HALF in failed
    assert moved == (f"{HOLDER}: moved to link-code unit city-x-sector: {len(stale)} binding(s) "
                     "to investigation, to be bound again")
    assert {reason for _, reason in client.store.investigations()} == {
        "the holder moved from link-code unit 'city-x' to 'city-x-sector': bind it again"}
    assert len(client.store.investigations()) == len(stale)


async def test_the_server_forgets_what_is_past_the_retention_at_its_start_and_then_on(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """`renkei holder purge` forgot what the store kept past the access log's retention, but
    nothing ran it: the communication server's client now does, at its start and every
    FORGET_EVERY, each purge that forgot rows told at WARNING, the level the server runs at
    (one that forgot none, hourly, not)."""
    monkeypatch.setattr(retention, "FORGET_EVERY", 0.05)
    caplog.set_level(logging.WARNING, "renkei.retention")
    old = (datetime.now(UTC) - timedelta(days=366 * 7 + 2)).isoformat()
    for request_id in ("old", "recent"):
        client.store.log(request_id, "REQUESTER", STAFF, TERMINAL, "FOUND")
    client.store.db.execute("UPDATE access_log SET at = ? WHERE request_id = 'old'", (old,))
    keeping = asyncio.create_task(retention.keep(
        client.holder, partial(HolderStore, client.store.path), Forgotten.told_of))
    try:
        await _forgotten(client, "old")
        client.store.open_request("later", BINDING, "H-1", STAFF, TERMINAL)
        client.store.db.execute("UPDATE requests SET sent_at = ?", (old,))
        await _forgotten(client, "later")
        assert [e.request_id for e in client.store.access_log()] == ["recent"]
        await asyncio.sleep(0.2)  # turns that forget nothing
    finally:
        await cancelled(keeping)
    said = [re.sub(r"\d{4}-\d\d-\d\d", "DATE", r.message) for r in caplog.records]
    assert said == [f"{client.holder}: {forgot} investigations closed from before DATE forgotten"
                    for forgot in ("0 requests, 1 access-log entries and 0",
                                   "1 requests, 0 access-log entries and 0")]


async def _forgotten(client: HolderClient, request_id: str) -> None:
    """Wait until the store keeps no request or log entry of this id."""
    deadline = Deadline(5, f"{request_id} forgotten")
    while client.store.request(request_id) or client.store.access_log(request_id):
        deadline.check()
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("published", "sealed_by", "outcome"), [
    (True, "provider", FOUND),
    (True, "relay", UNREADABLE),  # sealed with only the requester's public key: refused
    (False, "relay", FOUND),  # a provider not registered again since signing: as before
])
async def test_an_answer_opens_only_from_a_session_its_provider_signed(
        client: HolderClient, caplog: pytest.LogCaptureFixture, published: bool,
        sealed_by: str, outcome: str) -> None:
    provider = Ed25519PrivateKey.generate()
    in_directory(client, bytes(32), signing_key=sealing.public_bytes(provider) if published
                 else None)
    sealer = sealing.SessionSealer(signer=sealing.Signer(REQUESTER, provider)
                                   if sealed_by == "provider" else None)
    request_id = new_request_id()
    client.store.open_request(request_id, LINKAGE, "H-1", STAFF, TERMINAL, pattern_id="P-1",
                              provider=REQUESTER, data_type="local_tax")
    sealed = sealer.seal(sealing.public_bytes(sealing.key_of(HOLDER)), CODEC.encode(
        Payload("local_tax", {"taxable_income": "3200000"})), request_id, HOLDER)
    with caplog.at_level(logging.WARNING, "holders.client"):
        await handle(client, LinkageAnswer(request_id, "ABC98765XYZ", REQUESTER, "P-1",
                                           "local_tax", FOUND, sealed))
    assert status(client, request_id) == outcome
    assert (f"no signing key of provider {REQUESTER}" in caplog.text) is not published


@pytest.mark.parametrize("published", [True, False])
async def test_a_provider_signs_its_sessions_once_its_entry_publishes_its_signing_key(
        client: HolderClient, published: bool) -> None:
    """Requesters refuse an unsigned session of a provider whose entry has a signing key, and
    expect one of a provider whose entry has none."""
    client.store.add_record("H-1", PERSON)
    client.store.bind("H-1", "ABC98765XYZ", 0)
    client.store.put_data("H-1", "local_tax", {"taxable_income": "3200000"})
    requester = sealing.key_of(REQUESTER)
    in_directory(client, sealing.public_bytes(requester))
    signing = sealing.public_bytes(sealing.signing_key_of(HOLDER))
    in_directory(client, bytes(32), HOLDER, signing if published else None)
    asked = query("ABC98765XYZ")
    [answer] = await handle(client, asked)
    assert isinstance(answer.message, ProviderAnswer)
    opened = sealing.SessionOpener(requester, holder=REQUESTER).open(
        answer.message.sealed_payload, asked.request_id,
        sealing.SignedBy(HOLDER, signing) if published else None)
    assert CODEC.decode(opened, Payload).fields == {"taxable_income": "3200000"}


async def test_a_rekeying_that_moved_bindings_is_told_at_the_servers_level(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Bindings a re-keying converted or sent to investigation are told at WARNING, the level
    the communication server runs at, as a move to another unit's and a purge's are."""
    client.directory.entries[HOLDER.encode()] = HolderEntry(
        HOLDER, "City X", "municipality", HOLDER, 1, b"", False, True, datetime.now(UTC))

    async def rekey(epoch: int) -> tuple[int, int]:
        """What the platform converted (3) and found no code of (1)."""
        return 3, 1

    monkeypatch.setattr(client, "_rekey", rekey)
    caplog.set_level(logging.WARNING, "holders.client")
    following = asyncio.create_task(client._follow_epochs())
    deadline = Deadline(5, "the re-keying told")
    try:
        while not caplog.records:
            deadline.check()
            await asyncio.sleep(0.01)
    finally:
        await cancelled(following)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, f"{HOLDER}: bindings re-keyed to epoch 1: 3 converted, 1 to "
                          "investigation")]


async def test_an_askers_key_that_cannot_be_sealed_to_answers_its_log_unsealed_only(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    """A directory key of the oversight body's that is no key one can seal to: that request is
    answered with no entries (not sealed), and the batch goes on, as for a query's requester."""
    _providing(client)
    in_directory(client, bytes(32), OVERSIGHT)
    answered, answer = await _oversight_then_a_query(client, ("r-1",), query("ABC98765XYZ"),
                                                     caplog)
    assert (answered.request_id, answered.sealed_entries, answered.too_large) == (
        "oversight-1", None, False)
    assert answer.status == FOUND
    assert OVERSIGHT in caplog.text


async def _contents_answered(client: HolderClient, asked: HolderLogRequest
                             ) -> list[str | None]:
    """The ⑪ of the entries of r-1 `client` answers `asked` with, opened by its asker."""
    out, = await handle(client, asked)
    answer = CODEC.decode(out.value, HolderLogAnswer)
    key = sealing.key_of(holder_logs.asker(asked.request_id))
    return [e.content for e in holder_logs.opened(
        key, replace(answer, request_id=answer.request_id.removeprefix(MARK)), ("r-1",))]


async def test_a_residents_application_is_answered_with_their_use_of_a_request_id_alone(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A requester used one request id for two residents (once the platform forgot it): the
    second's application, naming when their exchange happened, is answered with the provider's
    entry of that use alone, sealed to My Portal; an older portal's, naming no time, with none
    of the provider's; the oversight body's, by id alone, with both."""
    in_directory(client, sealing.public_bytes(sealing.key_of(PORTAL)), PORTAL)
    in_directory(client, sealing.public_bytes(sealing.key_of(OVERSIGHT)), OVERSIGHT)
    first = datetime.now(UTC) - timedelta(minutes=10)
    second = first + REPLAY_WINDOW + CLOCK_SKEW
    for approved, person in ((first, "alice"), (second, "bob")):
        monkeypatch.setattr(store_module, "_now", lambda at=approved: store_module._stamp(at))
        client.store.log("r-1", "PROVIDER", SYSTEM, TERMINAL, FOUND, counterpart=REQUESTER,
                         content=f'{{"name": "{person}"}}', deadline=approved + ANSWER_TIMEOUT)

    answered = partial(_contents_answered, client)
    application = HolderLogRequest(f"{MARK}a-1", datetime.now(UTC), (HOLDER,), ("r-1",), "",
                                   (second,))
    assert await answered(application) == ['{"name": "bob"}']
    assert await answered(replace(application, exchanged_at=())) == []
    oversight = HolderLogRequest("oversight-1", datetime.now(UTC), (HOLDER,), ("r-1",), "")
    assert await answered(oversight) == ['{"name": "alice"}', '{"name": "bob"}']


async def test_a_residents_application_gets_the_side_of_its_exchange_alone_not_an_id_used_again(
        client: HolderClient) -> None:
    """This holder provided to REQUESTER under its request id r-1 (alice's data), and drew r-1
    for a request of its own too (carol's data, from another provider): an application naming
    REQUESTER as the exchange's requester is answered with the provider's entry for REQUESTER
    alone, one naming this holder with its own request's alone; an older portal's, naming none,
    as before (both)."""
    in_directory(client, sealing.public_bytes(sealing.key_of(PORTAL)), PORTAL)
    now = datetime.now(UTC)
    client.store.log("r-1", "PROVIDER", SYSTEM, TERMINAL, FOUND, counterpart=REQUESTER,
                     content='{"name": "alice"}', deadline=now + ANSWER_TIMEOUT)
    client.store.log("r-1", "REQUESTER", STAFF, TERMINAL, FOUND, counterpart="nenkin",
                     content='{"name": "carol"}')
    application = HolderLogRequest(f"{MARK}a-1", now, (HOLDER, REQUESTER), ("r-1",), "",
                                   (now,), (REQUESTER,))
    assert await _contents_answered(client, application) == ['{"name": "alice"}']
    assert await _contents_answered(client, replace(application, requesters=(HOLDER,))) == [
        '{"name": "carol"}']
    assert await _contents_answered(client, replace(application, requesters=())) == [
        '{"name": "alice"}', '{"name": "carol"}']


async def test_its_log_answers_are_signed_once_its_entry_publishes_its_signing_key(
        client: HolderClient) -> None:
    """A holder's answer to the oversight body was only sealed, to a public key: the platform
    relaying it could seal one alike. Once its directory entry publishes its signing key, the
    holder signs what it answers, for the asker and that request id, and the asker's check of
    that key takes it; before (an entry of before signing), it answers unsigned as it did."""
    in_directory(client, sealing.public_bytes(sealing.key_of(OVERSIGHT)), OVERSIGHT)
    client.store.log("r-1", "PROVIDER", SYSTEM, TERMINAL, FOUND, counterpart=REQUESTER,
                     content='{"name": "alice"}')
    asked = HolderLogRequest("oversight-1", datetime.now(UTC), (HOLDER,), ("r-1",), "")
    own = sealing.public_bytes(sealing.key_of(HOLDER))

    async def checked(signing_key: bytes | None) -> tuple[HolderLogEntry, ...]:
        in_directory(client, own, HOLDER, signing_key)
        out, = await handle(client, asked)
        return holder_logs.relayed_verified(
            sealing.key_of(OVERSIGHT), CODEC.decode(out.value, HolderLogAnswer), ("r-1",),
            OVERSIGHT, client.directory.entries[HOLDER.encode()], None, asked.sent_at).entries

    signing = sealing.public_bytes(sealing.signing_key_of(HOLDER))
    assert [e.content for e in await checked(signing)] == ['{"name": "alice"}']
    assert [e.content for e in await checked(None)] == ['{"name": "alice"}']  # unsigned
    in_directory(client, own, HOLDER, None)
    out, = await handle(client, asked)
    with pytest.raises(holder_logs.Forged):  # the holder said unsigned: its key refuses it
        holder_logs.verified(sealing.key_of(OVERSIGHT), CODEC.decode(out.value, HolderLogAnswer),
                             ("r-1",), OVERSIGHT, sealing.SignedBy(HOLDER, signing),
                             datetime.now(UTC))


async def test_a_renewal_whose_key_file_is_missing_or_damaged_is_waited_out_no_key_made(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    """`renkei holder renew` while the server ran, the directory publishing its new keys: the
    server read its key files with nothing of its own around it. One damaged (a file not whole)
    raised BadSealingKey and ended the server; one missing had a new key made and written into
    it, which no one published. It goes on with the keys it has, makes none, says why, and
    reads them again later, within the signing grace of the renewal its entry names (past it,
    test_renewal_unread: it stops); a change of the directory that leaves its keys as they are
    is let be."""
    own = (sealing.public_bytes(client._key), sealing.public_bytes(client._signing))
    in_directory(client, own[0], HOLDER, own[1])
    renewal = asyncio.create_task(client._renewed())
    try:
        published(client, REQUESTER, bytes(32))  # another's entry: it runs on
        sealing.renew_keys(HOLDER, datetime.now(UTC) + timedelta(days=1))
        renewed = (sealing.public_bytes(sealing.key_of(HOLDER)),
                   sealing.public_bytes(sealing.signing_key_of(HOLDER)))
        signing = sealing.key_file(HOLDER, sealing.SIGNING)
        with caplog.at_level(logging.WARNING, "holders.client"):
            signing.write_text('{"private": "ab')  # damaged
            published(client, HOLDER, *renewed, renewed_from=own[1])
            await asyncio.sleep(0.05)
            assert not renewal.done()
            signing.unlink()  # missing
            published(client, HOLDER, *renewed, renewed_from=own[1])
            await asyncio.sleep(0.05)
        assert not renewal.done() and not signing.exists()
        assert (sealing.public_bytes(client._key), sealing.public_bytes(client._signing)) == own
        assert "cannot be read" in caplog.text and "answers with its own" in caplog.text
    finally:
        renewal.cancel()
        await asyncio.wait({renewal})



async def test_an_answer_sealed_to_its_renewed_key_before_the_server_switched_is_read(
        client: HolderClient, caplog: pytest.LogCaptureFixture) -> None:
    """`renkei holder renew` while the server ran: a provider whose directory view published the
    renewed key before the server switched to it (_renewed) sealed its answer to it, as did the
    platform a binding's candidates; each was settled UNREADABLE for good, the holder to ask
    again. Each is opened with the key the holder's key file holds now; one sealed to no key of
    its is UNREADABLE still, said once."""
    provider = Ed25519PrivateKey.generate()
    in_directory(client, bytes(32), signing_key=sealing.public_bytes(provider))
    client.store.add_record("H-2", PERSON)
    sealing.renew_keys(HOLDER, datetime.now(UTC) + timedelta(days=1))
    renewed = sealing.public_bytes(sealing.key_of(HOLDER))
    sealer = sealing.SessionSealer(signer=sealing.Signer(REQUESTER, provider))
    answers = []
    for sealed_to in (renewed, sealing.public_bytes(X25519PrivateKey.generate())):
        request_id = new_request_id()
        client.store.open_request(request_id, LINKAGE, "H-1", STAFF, TERMINAL,
                                  pattern_id="P-1", provider=REQUESTER, data_type="local_tax")
        answers.append(LinkageAnswer(request_id, "ABC98765XYZ", REQUESTER, "P-1", "local_tax",
                                     FOUND, sealer.seal(sealed_to, CODEC.encode(Payload(
                                         "local_tax", {"taxable_income": "3200000"})),
                                         request_id, HOLDER)))
    binding = binding_request(client, "H-2")
    with caplog.at_level(logging.WARNING, "holders.client"):
        await handle(client, *answers, found(binding, "369PQRST246"))
    assert [status(client, a.request_id) for a in answers] == [FOUND, UNREADABLE]
    assert status(client, binding) == BOUND
    assert caplog.text.count("cannot be read") == 1


def published(client: HolderClient, holder: str, public_key: bytes,
              signing_key: bytes | None = None, renewed_from: bytes | None = None,
              renewed_at: datetime | None = None) -> None:
    """An entry read by the client's directory view as it follows the topic (its version on);
    with `renewed_from`, as `renkei holder renew` publishes it (now, or at `renewed_at`): that
    signing key its key before."""
    in_directory(client, public_key, holder, signing_key)
    if renewed_from is not None:
        key = holder.encode()
        client.directory.entries[key] = replace(client.directory.entries[key],
                                                previous_signing_key=renewed_from,
                                                signing_renewed_at=renewed_at or datetime.now(UTC))
    client.directory.version += 1
    client.directory._changed.set()


def renewed_unread(client: HolderClient, renewed_at: datetime) -> None:
    """This holder's entry as `renkei holder renew` at `renewed_at` publishes it, its keys
    renewed, none of which the client has taken (its key files unread): the signing key it runs
    with the key before."""
    published(client, HOLDER, sealing.public_bytes(X25519PrivateKey.generate()),
              sealing.public_bytes(Ed25519PrivateKey.generate()),
              renewed_from=sealing.public_bytes(client._signing), renewed_at=renewed_at)


async def test_a_server_renewed_its_keys_unread_stops_when_its_answers_are_refused_not_later(
        client: HolderClient) -> None:
    """`renkei holder renew` while the server ran, its key files unread: it read them again
    only every RENEWAL_AGAIN, and stopped at the first read past the time its requesters refuse
    what it signs with its own key from (signers.previous_until), answering up to RENEWAL_AGAIN
    past it, each answer refused as forged. It stops at that time."""
    sealing.key_file(HOLDER, sealing.SIGNING).write_text('{"private": "ab')  # damaged
    renewal = asyncio.create_task(client._renewed())
    try:
        renewed_at = datetime.now(UTC) - CLOCK_SKEW + timedelta(seconds=1)
        refused_from = signers.previous_until(renewed_at)
        renewed_unread(client, renewed_at)
        await asyncio.wait({renewal}, timeout=1 + RENEWAL_AGAIN / 2)
        ended_at = datetime.now(UTC)
        assert renewal.done(), f"running {ended_at - refused_from} past {refused_from}"
        assert refused_from <= ended_at <= refused_from + timedelta(seconds=1), ended_at
        with pytest.raises(RenewalNotTaken, match=f"from {re.escape(refused_from.isoformat())}"):
            renewal.result()
    finally:
        renewal.cancel()
        await asyncio.wait({renewal})


async def test_a_server_renewed_twice_its_keys_unread_stops_at_once(
        client: HolderClient) -> None:
    """Renewed twice while its key files could not be read: its entry names as the key before
    the second renewal's, so its requesters refuse what it signs with its own at once; it took
    them to refuse it only from the second renewal and a clock skew on, signing and answering
    until then. It stops at its first read."""
    sealing.key_file(HOLDER, sealing.SIGNING).write_text('{"private": "ab')  # damaged
    published(client, HOLDER, sealing.public_bytes(X25519PrivateKey.generate()),
              sealing.public_bytes(Ed25519PrivateKey.generate()),
              renewed_from=sealing.public_bytes(Ed25519PrivateKey.generate()))  # not its own
    renewal = asyncio.create_task(client._renewed())
    try:
        await asyncio.wait({renewal}, timeout=2)
        assert renewal.done(), "still running, its answers refused"
        with pytest.raises(RenewalNotTaken):
            renewal.result()
    finally:
        renewal.cancel()
        await asyncio.wait({renewal})


async def test_a_server_renewed_its_keys_unread_signs_no_answer_its_requesters_refuse(
        client: HolderClient) -> None:
    """`renkei holder renew` while the server ran, its key files unread: between the time its
    requesters refuse what it signs with its own key from (signers.previous_until) and its
    stop, it signed answers' sessions and answers to log requests with it, each refused as
    forged, FOUND in its log. It signs none dated past that time: RenewalNotTaken, its batch
    not committed (nothing logged: read at the next start). Before it, it signs and its
    requester takes the answer."""
    client.store.add_record("H-1", PERSON)
    client.store.bind("H-1", "ABC98765XYZ", 0)
    client.store.put_data("H-1", "local_tax", {"taxable_income": "3200000"})
    client.store.log("r-1", "PROVIDER", SYSTEM, TERMINAL, FOUND, content='{"a": "1"}')
    in_directory(client, sealing.public_bytes(sealing.key_of(REQUESTER)))
    in_directory(client, sealing.public_bytes(sealing.key_of(OVERSIGHT)), OVERSIGHT)
    signing = sealing.public_bytes(client._signing)
    renewed_unread(client, datetime.now(UTC) - CLOCK_SKEW - timedelta(seconds=1))
    asked = query("ABC98765XYZ")
    for message in (asked, HolderLogRequest("oversight-1", datetime.now(UTC), (HOLDER,),
                                            ("r-1",), "")):
        with pytest.raises(RenewalNotTaken, match="refuse the answers it signs with its own"):
            await handle(client, message)
    assert client.store.access_log(asked.request_id) == []
    renewed_at = datetime.now(UTC) - CLOCK_SKEW + timedelta(seconds=10)
    renewed_unread(client, renewed_at)
    [out] = await handle(client, asked)
    answer = CODEC.decode(out.value, ProviderAnswer)
    assert answer.status == FOUND
    entry = client.directory.entries[HOLDER.encode()]
    assert entry.signing_key is not None and entry.previous_signing_key == signing
    sealing.SessionOpener(sealing.key_of(REQUESTER), holder=REQUESTER).open(
        answer.sealed_payload, asked.request_id,
        signers.signed_by(HOLDER, entry.signing_key, entry, datetime.now(UTC)))


def renewed_provider(client: HolderClient, old: Ed25519PrivateKey, renewed_at: datetime) -> None:
    """The provider (REQUESTER's name) as the directory has it since `renkei holder renew` at
    `renewed_at`: a new signing key, its key before (`old`) and the renewal's time kept."""
    in_directory(client, bytes(32), signing_key=sealing.public_bytes(
        Ed25519PrivateKey.generate()))
    entry = client.directory.entries[REQUESTER.encode()]
    client.directory.entries[REQUESTER.encode()] = replace(
        entry, previous_signing_key=sealing.public_bytes(old), signing_renewed_at=renewed_at)


@pytest.mark.parametrize(("relayed_after", "outcome"), [
    (timedelta(seconds=10), FOUND),  # relayed by its ticket's deadline, read minutes later
    (SIGNING_GRACE + timedelta(seconds=1), UNREADABLE),  # relayed past the grace
])
async def test_an_answer_signed_before_its_providers_renewal_is_judged_by_its_relaying(
        client: HolderClient, monkeypatch: pytest.MonkeyPatch, relayed_after: timedelta,
        outcome: str) -> None:
    """A provider signed an answer's session with its signing key just before `renkei holder
    renew`; the platform relayed it at once, the requester read it 10 minutes later (its server
    down, or behind). It was UNREADABLE, judged by the broker's time it was read at, past
    SIGNING_GRACE; it is judged by its record's append time on the inbox, when the platform
    relayed it: in the grace, read. One relayed past the grace is refused still (the old key
    leaked, say)."""
    old = Ed25519PrivateKey.generate()
    now = datetime.now(UTC)
    renewed_at = now - timedelta(minutes=10)
    renewed_provider(client, old, renewed_at)
    request_id = new_request_id()
    client.store.open_request(request_id, LINKAGE, "H-1", STAFF, TERMINAL, pattern_id="P-1",
                              provider=REQUESTER, data_type="local_tax")
    with monkeypatch.context() as provider_clock:  # as it sealed: just before the renewal
        provider_clock.setattr(time, "time", (renewed_at - timedelta(seconds=1)).timestamp)
        sealed = sealing.SessionSealer(signer=sealing.Signer(REQUESTER, old)).seal(
            sealing.public_bytes(sealing.key_of(HOLDER)), CODEC.encode(
                Payload("local_tax", {"taxable_income": "3200000"})), request_id, HOLDER)
    client.broker_time.read([appended(now)])  # the start's ping: the broker's time now
    await client._handle([appended(renewed_at + relayed_after, CODEC.encode(LinkageAnswer(
        request_id, "ABC98765XYZ", REQUESTER, "P-1", "local_tax", FOUND, sealed)))])
    assert status(client, request_id) == outcome


async def test_a_start_while_an_import_holds_the_store_settles_a_kept_request_once_it_is_free(
        client: HolderClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A start (or a switch to renewed keys) while `renkei holder records import` held the
    store's write lock, a kept request to be settled, not sent (its message unreadable now):
    "database is locked" ended the start, the server's too. It waits for the store as the
    inbox does (_in_store), the loop going on, and settles it once the store is free."""
    request_id = new_request_id()
    client.store.open_request(request_id, BINDING, "H-1", STAFF, TERMINAL,
                              outgoing=(request_id, b"not a message"))
    monkeypatch.setattr(client_module, "STORE_RETRY", 0.05)
    with locked(tmp_path / "holder.db", "BEGIN IMMEDIATE", seconds=0.3):
        async with ticking() as ticker:
            await asyncio.wait_for(client._send_kept(), 5)
            ticker.went_on(0.3)
    assert status(client, request_id) == REJECTED
    assert not client.store.unsent()
