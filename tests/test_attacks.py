"""Attacks, each a test. The map, attack → the test that proves it (file::test):

- a holder writes to another holder's outbox (the broker refuses):
  tests/test_broker.py::test_holder_cannot_write_another_holders_outbox
- a holder reads another holder's inbox (the broker refuses):
  tests/test_broker.py::test_holder_cannot_read_another_holders_inbox
  tests/test_broker.py::test_holder_cannot_write_its_own_inbox_nor_read_the_audit_log
- a request carrying another unit's link code (INVALID_LINK_CODE, case "other unit"):
  tests/test_bad_input.py::test_each_bad_input_is_rejected_with_its_reason_and_the_agent_keeps_going
- a replay of an old linkage request (STALE_REQUEST, case "STALE_REQUEST" of the same test):
  tests/test_bad_input.py::test_each_bad_input_is_rejected_with_its_reason_and_the_agent_keeps_going
  tests/test_decider.py::test_a_copy_of_a_request_is_fresh_only_within_the_replay_window
  tests/test_decider.py::test_a_settled_request_is_forgotten_once_any_copy_of_it_would_be_stale
- a replay of a request id within the window (DUPLICATE_REQUEST, the first outcome stands):
  tests/test_bad_input.py::test_a_reused_request_id_is_refused_as_a_duplicate
  tests/test_decider.py::test_a_reused_request_id_is_refused_as_duplicate
- a request id too long for any answer to it to fit the codec (MALFORMED under the id cut to
  its first 128 characters; before, the platform stopped on it, every instance, for ever):
  tests/test_outbox.py::test_a_request_id_too_long_to_answer_is_refused_under_a_cut_id
- a binding's or re-keying's request id with control characters, whose events' ids the audit store
  escapes and cuts sooner (MALFORMED at the door, as a linkage request's was):
  tests/test_outbox.py::test_a_request_id_with_control_characters_is_refused_malformed
- a request id of 128 backslashes, whose events' ids the audit store escaped past its cut and
  keyed alike, the answer's dropped as a replay of the approval's (MALFORMED at the door):
  tests/test_outbox.py::test_a_request_id_of_backslashes_too_long_in_the_audit_store_is_refused_malformed
- a provider answers with a ticket kept past its deadline, under a later request reusing its id
  (INVALID_TICKET, the ticket expired; the real answer is relayed):
  tests/test_answers.py::test_an_old_ticket_cannot_answer_a_later_request_that_reuses_its_id
- a replay of an old binding request (STALE_REQUEST, no registry look-up): new here,
  tests/test_attacks.py::test_a_replayed_old_binding_request_is_refused_as_stale
- a binding request reusing a request id already used, for another person (logged as its own:
  before, its candidate was dropped from the audit store as a replay of the first):
  tests/test_attacks.py::test_a_binding_request_reusing_an_id_is_logged_as_its_own
- a re-keying request reusing a request id already used (logged as its own: before, its event
  was dropped from the audit store as a replay of the first):
  tests/test_attacks.py::test_a_rekeying_reusing_an_id_is_logged_as_its_own
- a taken-over registry answers a binding for another holder naming the requester's message as
  its source, so that its event takes the id of the real answer's (an answer whose source is not
  a message of its requester's outbox is dropped):
  tests/test_attacks.py::test_a_registry_cannot_log_a_binding_under_another_requesters_source
- a taken-over registry answers one look-up twice with other candidates, the second's relay
  sharing the first's event ids (each event's step names what it logs by a keyed digest):
  tests/test_codes.py::test_each_answer_a_registry_gives_a_look_up_is_logged_under_its_own_id
- a new holder registered under an id that is another unit's name, given that unit's link codes
  as its own (UnitTaken: only with the unit given):
  tests/test_codes.py::test_a_new_holder_is_not_put_into_a_unit_others_are_in_unless_given_it
- a holder registered with `--unit` another holder's id, given that holder's link codes as its
  own (UnitTaken: only with --share-unit):
  tests/test_codes.py::test_a_holder_joins_another_holders_own_unit_only_if_told_to_share_it
- a holder registered under the platform services' role, passed by when its unit is re-keyed
  (ReservedRole):
  tests/test_codes.py::test_a_holder_is_not_registered_under_the_services_role
- a request under an expired legal pattern (P-075, PATTERN_NOT_IN_FORCE) or a foreign one
  (sakura-hospital under the pension service's P-037, NOT_PERMITTED), on the broker:
  tests/test_linkage.py::test_an_unlawful_request_is_rejected_and_logged
  tests/test_approval.py::test_each_unlawful_request_is_refused_with_its_reason
  tests/test_approval.py::test_the_version_in_force_at_the_request_time_decides
- an oversight request from a non-oversight principal (the broker refuses the oversight topic,
  the platform refuses it through the holder's own outbox):
  tests/test_oversight.py::test_only_the_oversight_body_may_ask_for_holders_logs
- a holder asked for its side of the log learns which other holders the same inquiry asks
  (each is told of itself alone):
  tests/test_oversight.py::test_a_holder_asked_for_its_log_is_not_told_which_other_holders_are_asked
- a tampered audit store (modified, deleted, reordered, inserted entries; forged heads):
  tests/test_audit_store.py::test_detects_a_modified_entry
  tests/test_audit_store.py::test_detects_a_deleted_entry
  tests/test_audit_store.py::test_detects_reordered_entries
  tests/test_audit_store.py::test_detects_an_inserted_entry
  tests/test_audit_store.py::test_detects_a_deletion_dressed_up_as_a_purge
  tests/test_audit_store.py::test_detects_a_rewritten_history_through_the_heads
  tests/test_audit_store.py::test_detects_forged_and_unsigned_heads_and_missing_nodes
- a revoked IC card, at login and in a session it signed in before:
  tests/test_cards.py::test_a_revoked_certificate_is_refused
  tests/test_portal.py::test_a_revoked_certificate_is_refused
  tests/test_portal_web.py::test_a_revoked_card_ends_its_sessions
- a forged IC card: another CA's card, a signature made for another site or challenge,
  tests/test_cards.py::test_a_card_of_the_other_ca_or_expired_is_refused
  tests/test_cards.py::test_a_signature_for_another_site_or_challenge_is_refused
  and, new here, a look-alike CA and a genuine certificate on a card with another key:
  tests/test_attacks.py::test_a_card_from_a_look_alike_ca_is_refused
  tests/test_attacks.py::test_a_genuine_certificate_with_another_key_is_refused
- a taken-over My Portal logs an event under the id of a platform's step first, to hide or
  falsify it (the broker refuses it the audit topic; the platform relays from the portal's own
  topic only steps of the portal's):
  tests/test_attacks.py::test_a_taken_over_portal_cannot_log_under_a_platform_events_id
- a taken-over My Portal dates its events at an end of datetime's range, to throw off the
  detector and the log's time order (the platform logs an event dated further than minutes from
  its record's append time at that time):
  tests/test_attacks.py::test_a_portals_event_dated_far_from_its_record_is_logged_at_the_brokers_time
  and under the id of an oversight request's relay to a holder named '…:portal.<step>' (only
  events whose request id and step hold no ':' are the portal's):
  tests/test_attacks.py::test_a_taken_over_portal_cannot_log_under_an_id_ending_in_its_step
- the platform reads a payload (it cannot: sealed to the requester's key): new here,
  tests/test_attacks.py::test_the_platform_cannot_open_a_relayed_answer
- canary personal data never in plaintext in broker log files or platform stores:
  tests/test_personal_data.py::test_canaries_never_reach_the_broker_or_the_platform_in_plaintext
- another local user reads a holder's access log or acts as its staff through its communication
  server on loopback (401 without the token in the holder's private server.json):
  tests/test_holder_server.py::test_a_request_without_the_servers_token_is_refused_and_reads_nothing
- a web page reaches the card reader through DNS rebinding (Host: its own name) to list the
  cards, try PINs and take a signature, or another page posts a PIN to it (403):
  tests/test_card_reader.py::test_the_reader_answers_only_at_its_own_loopback_address
  tests/test_card_reader.py::test_the_reader_takes_a_pin_only_from_its_own_page
- a flood of cookieless requests fills the portal's session table (static files and pages that
  do not exist make no session; the table is bounded, and purged at a constant cost):
  tests/test_portal_web.py::test_a_static_file_or_an_unknown_page_makes_no_session
  tests/test_portal_sessions.py::test_a_new_session_costs_the_same_however_many_are_kept
"""

from __future__ import annotations

import asyncio
import importlib
import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import TopicAuthorizationFailedError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from audit.events import PORTAL_KIND, AccessLogEvent, event_id, portal_step
from audit.heads import Signer
from audit.store import AuditStore, Query
from broker import acls, topics
from broker.clients import KafkaAccess, at_end
from cards import ca, issue
from cards.login import Refused, Verifier, challenge, message
from holders.client import HolderClient
from processors import keys
from renkei import sealing
from renkei.town import Processes
from schemas.codec import CODEC, SchemaError
from schemas.messages import (
    BY_ATTRIBUTES,
    FOUND,
    NOT_FOUND,
    BindingRequest,
    HolderLogRequest,
    LinkageAnswer,
    RegistryAnswer,
    Rejection,
    RekeyRequest,
)
from tests.conftest import SILENT
from tests.kafka_helpers import audit_events, logged_events, producer, rejection_of
from tests.test_linkage import ask, bound

REFERENCE = re.compile(r"(tests/test_\w+)\.py::(test_\w+)")
ORIGIN = "http://127.0.0.1:8080"
HOLDER = "nenkin"


def test_every_attack_in_the_map_names_a_test_that_exists() -> None:
    """The map cannot rot: each file::test it names is a test function of that module."""
    references = REFERENCE.findall(__doc__ or "")
    assert len(references) >= 20
    for path, name in references:
        module = importlib.import_module(path.replace("/", "."))
        assert callable(getattr(module, name, None)), f"{path}.py::{name} does not exist"


def _decoded(value: bytes | None) -> Rejection | LinkageAnswer | None:
    """An inbox message of the kinds these tests wait for (None for any other)."""
    try:
        return CODEC.decode(value or b"", Rejection, LinkageAnswer)
    except SchemaError:
        return None


@pytest.mark.asyncio(loop_scope="session")
async def test_a_replayed_old_binding_request_is_refused_as_stale(
        clients: dict[str, HolderClient]) -> None:
    """A binding request resent after the replay window is refused, no registry look-up made."""
    request_id = str(uuid.uuid4())
    old = BindingRequest(request_id, datetime.now(UTC) - timedelta(minutes=10), BY_ATTRIBUTES,
                         b"\x00" * 48)
    rejection = await rejection_of(HOLDER, request_id, CODEC.encode(old))
    assert rejection.reason == "STALE_REQUEST"
    for _ in range(50):
        events = await audit_events({request_id})
        if events:
            break
        await asyncio.sleep(0.2)
    assert [(e.outcome, e.reason) for e in events] == [("REJECTED", "STALE_REQUEST")]


def _binding_request(client: HolderClient, own: str, request_id: str) -> bytes:
    """A binding request by four attributes for the holder's record `own`, under `request_id`."""
    found = client.store.record(own)
    assert found is not None
    sealed = sealing.seal(client.entry(acls.REGISTRY).public_key, CODEC.encode(found[0]),
                          request_id)
    return CODEC.encode(BindingRequest(request_id, datetime.now(UTC), BY_ATTRIBUTES, sealed))


@pytest.mark.asyncio(loop_scope="session")
async def test_a_binding_request_reusing_an_id_is_logged_as_its_own(
        clients: dict[str, HolderClient], tmp_path: Path) -> None:
    """Two binding requests under one request id, for two people: the first bound, the second
    refused DUPLICATE_REQUEST (as a linkage request reusing an id is), each logged by an event of
    its own, which the audit store keeps (it keeps the first of an event id, the rest taken for
    replays)."""
    nenkin, request_id = clients[HOLDER], str(uuid.uuid4())
    async with producer(KafkaAccess.of(HOLDER)) as prod:
        for own in bound(nenkin)[:2]:
            await prod.send_and_wait(topics.outbox(HOLDER), _binding_request(
                nenkin, own, request_id), key=request_id.encode())
    found = await logged_events(request_id, 2)
    assert sorted((e.outcome, e.reason, bool(e.person)) for e in found) == [
        ("FOUND", None, True), ("REJECTED", "DUPLICATE_REQUEST", False)], found
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((e, CODEC.encode(e)) for e in found)
        assert len(store.query(Query()).entries) == 2, "the second request's refusal is in the log"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_rekeying_reusing_an_id_is_logged_as_its_own(
        clients: dict[str, HolderClient], tmp_path: Path) -> None:
    """Two re-keying requests under one request id, of other link codes: each answered and each
    logged by an event of its own, which the audit store keeps (it keeps the first of an id)."""
    request_id = str(uuid.uuid4())
    async with producer(KafkaAccess.of(HOLDER)) as prod:
        for codes in ((), ("ABC98765XYZ",)):
            await prod.send_and_wait(topics.outbox(HOLDER), CODEC.encode(RekeyRequest(
                request_id, datetime.now(UTC), 0, codes)), key=request_id.encode())
    found = await logged_events(request_id, 2)
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((e, CODEC.encode(e)) for e in found)
        kept = {e.event.reason for e in store.query(Query()).entries}
    assert kept == {e.reason for e in found} and len(kept) == 2, found


@pytest.mark.asyncio(loop_scope="session")
async def test_a_registry_cannot_log_a_binding_under_another_requesters_source(
        clients: dict[str, HolderClient], tmp_path: Path) -> None:
    """A registry's answer to another holder naming a message of the requester's outbox as its
    source is dropped; before, its event had the id of the real answer's, which the audit store
    then dropped as a replay, the relay to the requester logged nowhere."""
    request_id = str(uuid.uuid4())
    source = f"{topics.outbox(HOLDER)}:0:{uuid.uuid4().int % 10**9}"
    real = RegistryAnswer(request_id, HOLDER, NOT_FOUND, "", (), source)
    async with producer(KafkaAccess.of(acls.REGISTRY)) as prod:
        for answer in (replace(real, requester=SILENT), real):
            await prod.send_and_wait(topics.REGISTRY_OUT, CODEC.encode(answer),
                                     key=request_id.encode())
    for _ in range(100):
        found = await audit_events({request_id})
        if any(e.requester == HOLDER for e in found):
            break
        await asyncio.sleep(0.2)
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((e, CODEC.encode(e)) for e in found)
        kept = [e.event.requester for e in store.query(Query()).entries]
    assert kept == [HOLDER], found


@pytest.mark.asyncio(loop_scope="session")
async def test_a_taken_over_portal_cannot_log_under_a_platform_events_id(
        platform: Processes, tmp_path: Path) -> None:
    """The portal's principal may not write the audit topic; an event of its kind it writes on
    its own topic under the id the platform logs an oversight request's relay by is dropped, so
    the audit store keeps the platform's (it keeps the first of an id); its own steps go on."""
    inquiry, now = f"inquiry-{uuid.uuid4()}", datetime.now(UTC)
    forged = AccessLogEvent(f"{inquiry}:oversight@{HOLDER}", inquiry, now, PORTAL_KIND, "VIEWED",
                            None, None, None, "portal", None, None, None)
    own = replace(forged, event_id=event_id(inquiry, portal_step("viewed")))
    portal = KafkaAccess.of(acls.PORTAL)
    async with producer(portal) as prod:
        with pytest.raises(TopicAuthorizationFailedError):
            await prod.send_and_wait(topics.AUDIT, CODEC.encode(forged))
    async with producer(portal) as prod:
        for event in (forged, own):
            await prod.send_and_wait(topics.PORTAL_AUDIT, CODEC.encode(event))
    await logged_events(inquiry, 1)  # the portal's, relayed: the forged one before it, if at all
    async with producer(KafkaAccess.of(acls.OVERSIGHT)) as prod:
        await prod.send_and_wait(topics.OVERSIGHT_OUT, CODEC.encode(HolderLogRequest(
            inquiry, now, (HOLDER,), ("any",), "番号法第38条")))
    found = await logged_events(inquiry, 2)
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((e, CODEC.encode(e)) for e in found)
        kept = {e.event.event_id: e.event.kind for e in store.query(Query()).entries}
    assert kept == {forged.event_id: "OVERSIGHT", own.event_id: PORTAL_KIND}, found


@pytest.mark.asyncio(loop_scope="session")
async def test_a_taken_over_portal_cannot_log_under_an_id_ending_in_its_step(
        platform: Processes, tmp_path: Path) -> None:
    """An oversight request names a holder ending in ':portal.viewed', so its relay's event id
    ends in a step of the portal's; the portal's event of that id, under the request id before
    it, is dropped and the audit store keeps the platform's (before, it kept the portal's)."""
    inquiry, now = f"inquiry-{uuid.uuid4()}", datetime.now(UTC)
    holder = f"{HOLDER}:{portal_step('viewed')}"
    forged = AccessLogEvent(f"{inquiry}:oversight@{holder}", f"{inquiry}:oversight@{HOLDER}",
                            now, PORTAL_KIND, "VIEWED", None, None, None, "portal", None, None,
                            None)
    own = replace(forged, event_id=event_id(inquiry, portal_step("viewed")), request_id=inquiry)
    async with producer(KafkaAccess.of(acls.PORTAL)) as prod:
        for event in (forged, own):
            await prod.send_and_wait(topics.PORTAL_AUDIT, CODEC.encode(event),
                                     key=inquiry.encode())
    await logged_events(inquiry, 1)  # the portal's own, relayed: the forged one first, if at all
    async with producer(KafkaAccess.of(acls.OVERSIGHT)) as prod:
        await prod.send_and_wait(topics.OVERSIGHT_OUT, CODEC.encode(HolderLogRequest(
            inquiry, now, (holder,), ("any",), "番号法第38条")))
    await logged_events(inquiry, 2)
    found = await audit_events({inquiry, forged.request_id})
    with AuditStore(tmp_path / "audit.db", Signer.generate()) as store:
        store.append_many((e, CODEC.encode(e)) for e in found)
        kept = {e.event.event_id: e.event.kind for e in store.query(Query()).entries}
    assert kept == {forged.event_id: "OVERSIGHT", own.event_id: PORTAL_KIND}, found


@pytest.mark.asyncio(loop_scope="session")
async def test_a_portals_event_dated_far_from_its_record_is_logged_at_the_brokers_time(
        platform: Processes) -> None:
    """A portal taken over, or its clock wrong, dates its events at either end of datetime's
    range, or an hour back (so are its records): each is logged at the time the broker received
    its record; one dated a little back keeps its own time."""
    inquiry, now = f"dated-{uuid.uuid4()}", datetime.now(UTC)
    dated = {"first": datetime.min.replace(tzinfo=UTC), "last": datetime.max.replace(tzinfo=UTC),
             "behind": now - timedelta(hours=1), "near": now - timedelta(seconds=30)}
    events = {AccessLogEvent(event_id(inquiry, portal_step(step)), inquiry, at, PORTAL_KIND,
                             "VIEWED", None, None, None, "portal", None, None, None): step
              for step, at in dated.items()}
    written = int(dated["behind"].timestamp() * 1000)  # the records' own: the broker's counts
    async with producer(KafkaAccess.of(acls.PORTAL)) as prod:
        for event in events:
            await prod.send_and_wait(topics.PORTAL_AUDIT, CODEC.encode(event),
                                     key=inquiry.encode(), timestamp_ms=written)
    sent = datetime.now(UTC)
    logged = {e.event_id: e.occurred_at for e in await logged_events(inquiry, len(events))}
    for event, step in events.items():
        at = logged[event.event_id]
        if step == "near":
            assert at == event.occurred_at, (step, at)
        else:
            assert now - timedelta(seconds=1) <= at <= sent + timedelta(seconds=1), (step, at)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_platform_cannot_open_a_relayed_answer(
        clients: dict[str, HolderClient]) -> None:
    """The answer the platform relays is sealed to the requester: none of the platform side's
    keys opens it, the requester's does, its session signed by the provider's directory key."""
    nenkin = clients[HOLDER]
    access = KafkaAccess.of(HOLDER)
    inbox = AIOKafkaConsumer(topics.inbox(HOLDER), **access.aiokafka(), enable_auto_commit=False)
    await inbox.start()
    try:
        await at_end(inbox)
        request_id = await ask(nenkin, bound(nenkin)[3], "P-037", "sakura-town", "local_tax")
        assert (await nenkin.outcome(request_id, 30)).status == FOUND
        answer = await _answer_of(inbox, request_id)
    finally:
        await inbox.stop()
    assert answer.sealed_payload
    platform_side = [keys.load().sealing_key(), sealing.key_of(acls.REGISTRY),
                     sealing.key_of(acls.AUTHORITY), sealing.key_of("sakura-town")]
    for key in platform_side:
        with pytest.raises(sealing.CannotOpen):
            sealing.SessionOpener(key).open(answer.sealed_payload, request_id)
    requester = sealing.SessionOpener(sealing.key_of(HOLDER), holder=HOLDER)
    signing_key = nenkin.entry("sakura-town").signing_key
    assert signing_key, "the provider's entry publishes its signing key"
    provider = sealing.SignedBy("sakura-town", signing_key)
    opened = requester.open(answer.sealed_payload, request_id, provider)
    assert b"taxable_income" in opened, "positive control: the requester opens it, signed"
    with pytest.raises(sealing.CannotOpen):  # nor under another request's id
        requester.open(answer.sealed_payload, str(uuid.uuid4()), provider)


async def _answer_of(inbox: AIOKafkaConsumer, request_id: str) -> LinkageAnswer:
    async with asyncio.timeout(30):
        while True:
            for records in (await inbox.getmany(timeout_ms=300)).values():
                for record in records:
                    found = _decoded(record.value)
                    if isinstance(found, LinkageAnswer) and found.request_id == request_id:
                        return found


@pytest.fixture()
def cards_dir(state_dir: Path, tmp_path: Path) -> Path:
    issue.init()
    return tmp_path


def _login(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> str:
    nonce = challenge()
    signature = key.sign(message(ORIGIN, nonce), ec.ECDSA(hashes.SHA256()))
    return Verifier().verify(ca.OFFICERS, certificate.public_bytes(Encoding.PEM), ORIGIN, nonce,
                             signature).serial


def test_a_card_from_a_look_alike_ca_is_refused(cards_dir: Path) -> None:
    """An oversight officer's certificate from a CA of the same name, but not the same key."""
    real = x509.load_pem_x509_certificate(ca.certificate_path(ca.OFFICERS).read_bytes())
    fake_ca_key = ec.generate_private_key(ec.SECP256R1())
    fake_ca = _self_signed(real.subject, fake_ca_key)
    user_key = ec.generate_private_key(ec.SECP256R1())
    forged = _issued_by(fake_ca, fake_ca_key, user_key,
                        ca.Subject("ppc-officer-9", "oversight", "oversight"))
    assert forged.issuer == real.subject
    with pytest.raises(Refused, match="unknown-issuer"):
        _login(forged, user_key)


def test_a_genuine_certificate_with_another_key_is_refused(cards_dir: Path) -> None:
    """A copied certificate on a card of the attacker's own: the signature does not verify."""
    card = issue.officer_card("officer-attack", "oversight", "oversight", "2468", cards_dir)
    own_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Refused, match="bad-signature"):
        _login(card.certificate, own_key)


def _self_signed(name: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))


def _issued_by(issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey,
               key: ec.EllipticCurvePrivateKey, subject: ca.Subject) -> x509.Certificate:
    """A user certificate as the real CA writes one, signed by `issuer_key` (no files written)."""
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(subject.name()).issuer_name(issuer.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(issuer_key, hashes.SHA256()))

