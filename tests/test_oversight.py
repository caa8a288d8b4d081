"""The oversight body on the real broker: holders' access logs over Kafka (and only for it), its
requests on the audit stream, its query of the platform's log, and the detector's alerts."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import audit.oversight
from audit.cli import open_store
from audit.heads import SignedHead
from audit.merkle import verify_inclusion
from audit.oversight import _Asking, _gathered, holder_logs
from audit.oversight_cli import FALSELY_REFUSED, REFUSED, _shown, oversight_cli
from broker import acls, config, topics
from broker.clients import KafkaAccess, at_end
from broker.presence import BrokerGone
from holders.client import HolderClient
from holders.store import HolderStore
from portal.i18n import words
from portal.inbox import OVERSIGHT_KEPT, Inbox
from portal.kafka import HolderLogs, Shown
from portal.web import TEMPLATES
from processors import directory
from registry.residents import FourAttributes, Sex
from renkei import sealing
from renkei.holder_logs import SUSPENDED, Parties, seal, unsent
from renkei.town import Processes
from schemas.codec import CODEC, MAX_BYTES, SchemaError
from schemas.messages import HolderLogAnswer, HolderLogEntry, HolderLogRequest, Rejection
from tests.conftest import ANSWER_TIMEOUT
from tests.kafka_helpers import (
    audit_events,
    consumer,
    forwarder,
    free_port,
    log_request,
    logged_events,
    producer,
    renkei,
    said_in_one_line,
    wait_assigned,
)
from tests.test_audit_kafka import short_lateness
from tests.test_holder_renew import _started
from tests.test_linkage import ask, bound
from tests.test_suspension import _seen

pytestmark = pytest.mark.asyncio(loop_scope="session")
T = TypeVar("T")
BASIS = "番号法第38条（特定個人情報保護委員会による報告及び立入検査）"


async def oversight(*args: str, given: str = "") -> dict[str, object] | list[dict[str, object]]:
    """`renkei oversight …` as JSON, run aside so the holders here keep answering meanwhile
    (`given` on its stdin)."""
    result = await asyncio.to_thread(renkei, "oversight", *args, input=given)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


async def test_holders_give_their_side_of_the_log_to_the_oversight_body(
        clients: dict[str, HolderClient], platform: Processes) -> None:
    nenkin = clients["nenkin"]
    request_id = await ask(nenkin, bound(nenkin)[0], "P-037", "sakura-town", "local_tax")
    assert (await nenkin.outcome(request_id, 30)).status == "FOUND"
    await _in_the_store({request_id})
    found = await oversight("holder-logs", "--holder", "nenkin", "--holder", "sakura-town",
                      "--request", request_id, "--basis", BASIS, "--within", "30")
    assert isinstance(found, dict) and found["missing"] == []
    answers = found["answers"]
    assert isinstance(answers, dict)
    [asked_by] = answers["nenkin"]
    assert (asked_by["side"], asked_by["operator"], asked_by["terminal"], asked_by["purpose"]) == (
        "REQUESTER", "nenkin-staff-1", "nenkin-term-1", "審査")  # ⑦ ⑨ ⑫
    [given_by] = answers["sakura-town"]
    assert given_by["side"] == "PROVIDER" and given_by["counterpart"] == "nenkin"  # ⑧ ⑩
    assert given_by["content"] == asked_by["content"] and "taxable_income" in given_by["content"]
    assert isinstance(found["request_ids"], list)
    [asked_as] = found["request_ids"]
    logged = await audit_events({str(asked_as)})
    assert sorted((e.kind, e.outcome, e.requester, e.provider, e.legal_basis) for e in logged) == [
        ("OVERSIGHT", "REQUESTED", acls.OVERSIGHT, holder, BASIS)
        for holder in ("nenkin", "sakura-town")]
    person = next(e.person for e in await audit_events({request_id}) if e.person)
    assert person is not None
    for _ in range(50):  # the audit consumer appends it within moments
        page = await oversight("query", "--person", given=person)
        assert isinstance(page, dict) and isinstance(page["entries"], list)
        if request_id in {e["request_id"] for e in page["entries"]}:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the platform's log never showed the request to the oversight")
    head = page["head"]
    assert isinstance(head, dict) or head is None  # None: no head signed yet
    assert all(_proved_or_pending(e, head) for e in page["entries"])


async def test_a_holder_asked_for_its_log_is_told_only_the_requests_it_took_part_in(
        clients: dict[str, HolderClient], platform: Processes) -> None:
    """One inquiry into two exchanges, each between other holders but for the hospital: every
    holder asked was told every request id of it, and so learned of exchanges about people it
    had no part in. Each is asked only for those the platform's log names it in."""
    nenkin, hospital = clients["nenkin"], clients["sakura-hospital"]
    pension = await ask(nenkin, bound(nenkin)[0], "P-037", "sakura-town", "local_tax")
    insurance = await ask(hospital, bound(hospital)[0], "P-120", "acme-kenpo",
                          "insurance_eligibility")
    await asyncio.gather(nenkin.outcome(pension, 30), hospital.outcome(insurance, 30))
    await _in_the_store({pension, insurance})
    inbox = AIOKafkaConsumer(topics.inbox("nenkin"), **KafkaAccess.of("nenkin").aiokafka(),
                             enable_auto_commit=False)
    await inbox.start()
    try:
        await at_end(inbox)
        found = await oversight("holder-logs", "--holder", "nenkin", "--holder",
                                "sakura-hospital", "--request", pension, "--request", insurance,
                                "--basis", BASIS, "--within", "30")
        told = await _first(inbox, partial(_naming, {pension, insurance}))
    finally:
        await inbox.stop()
    assert told.request_ids == (pension,)
    assert isinstance(found, dict) and found["missing"] == []
    answers = found["answers"]
    assert isinstance(answers, dict)
    assert [e["request_id"] for e in answers["nenkin"]] == [pension]
    assert {e["request_id"] for e in answers["sakura-hospital"]} == {insurance}


async def _in_the_store(request_ids: set[str]) -> None:
    """Once the audit consumer has appended an entry of each of `request_ids` to the store."""
    for _ in range(100):
        with open_store(None, signing=False) as store:
            if set(store.parties(sorted(request_ids))) == request_ids:
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not in the audit store: {request_ids}")


def _naming(request_ids: set[str], value: bytes) -> HolderLogRequest | None:
    """A request for the holder's log naming any of `request_ids`."""
    request = CODEC.decode(value, HolderLogRequest)
    return request if request_ids & set(request.request_ids) else None


class ForgedFirst(NamedTuple):
    """What `renkei oversight holder-logs` gathered of a request the holder provided, an answer
    of no entries, unsigned, written in its name before its own; the request."""

    found: audit.oversight.HolderLogs
    request_id: str


async def _written_first(clients: dict[str, HolderClient],
                         asking: Callable[[str], Coroutine[Any, Any, T]],
                         written: Callable[[str], Sequence[HolderLogAnswer]]) -> tuple[T, str]:
    """The oversight body `asking` for the town hall's log of a request it provided, its request
    waiting in the town hall's inbox (its server stopped), the answers `written` to the part it
    is asked in written as the platform, and its server started again (the session's client
    replaced): it answers. What `asking` gave, and the request."""
    nenkin = clients["nenkin"]
    request_id = await ask(nenkin, bound(nenkin)[0], "P-037", "sakura-town", "local_tax")
    assert (await nenkin.outcome(request_id, 30)).status == "FOUND"
    await _in_the_store({request_id})
    await clients["sakura-town"].stop()  # the oversight body's request waits in its inbox
    async with consumer(KafkaAccess.of(config.ADMIN), topics.inbox("sakura-town")) as inbox:
        await wait_assigned(inbox)
        asked = asyncio.create_task(asking(request_id))
        part = (await log_request(inbox, request_id, within=60)).request_id
    async with producer(KafkaAccess.of(acls.PLATFORM)) as prod:
        for answer in written(part):
            await prod.send_and_wait(topics.OVERSIGHT_IN, CODEC.encode(answer), key=part.encode())
    await _started(clients, "sakura-town")
    return await asked, request_id


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def forged_first(clients: dict[str, HolderClient], platform: Processes) -> ForgedFirst:
    """Answers in the town hall's name before its own: not sealed, then too large, unsigned."""
    return ForgedFirst(*await _written_first(
        clients, lambda request_id: holder_logs(["sakura-town"], [request_id], _both, BASIS,
                                                within=30),
        lambda part: [HolderLogAnswer(part, "sakura-town", datetime.now(UTC), (), None,
                                      too_large) for too_large in (False, True)]))


async def test_an_unsigned_answer_of_no_entries_in_a_holders_name_is_refused_as_forged(
        forged_first: ForgedFirst) -> None:
    """The platform writes the oversight body's answers topic: an answer in a holder's name
    with no entries in it, saying the holder could not seal them to the oversight body (or that
    they were too large), unsigned, was taken as the holder's, and the holder's own answer that
    came after it passed over (shown not sealed, its entries never seen). One the holder did not
    sign is refused as forged, the holder awaited still: its own answer is taken."""
    found = forged_first.found
    assert (found.not_sealed, found.too_large, found.missing) == ([], {}, [])
    assert found.forged == ["sakura-town"]
    assert [e.request_id for e in found.answers["sakura-town"]] == [forged_first.request_id]


class FalselyRefused(NamedTuple):
    """What `renkei oversight holder-logs` said (and its exit) of a request the holder provided,
    the platform's refusal to ask it written before its own answer; the request."""

    run: subprocess.CompletedProcess[str]
    request_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def falsely_refused(clients: dict[str, HolderClient], platform: Processes
                          ) -> FalselyRefused:
    """The platform's refusal to ask the town hall, SUSPENDED, before its own answer, the
    town hall active all the while."""
    return FalselyRefused(*await _written_first(
        clients, lambda request_id: asyncio.to_thread(
            renkei, "oversight", "holder-logs", "--holder", "sakura-town", "--request",
            request_id, "--basis", BASIS, "--within", "30", check=False),
        lambda part: [HolderLogAnswer(part, "sakura-town", datetime.now(UTC), (),
                                      refused=SUSPENDED, inactive_since=datetime.now(UTC))]))


async def test_the_platforms_refusal_to_ask_a_holder_the_directory_shows_active_is_false(
        falsely_refused: FalselyRefused) -> None:
    """The platform's answer in a holder's stead, that it did not ask it (suspended, or not in
    the directory), is unsigned: the platform wrote one for a holder active all the while, and
    `renkei oversight holder-logs` took it (the holder shown refused since when the platform
    said, its own answer after it passed over), so that the platform, which the oversight body
    asks holders in order to check, could keep any holder from being asked. The directory, which
    only the operators write, belies it: it is said false, the holder awaited still, exit 1."""
    run, request_id = falsely_refused
    shown = json.loads(run.stdout)
    assert (run.returncode, shown["refused"], shown["missing"]) == (1, {}, [])
    assert shown["falsely_refused"] == {"sakura-town": FALSELY_REFUSED}
    assert [e["request_id"] for e in shown["answers"]["sakura-town"]] == [request_id]


async def test_a_holders_log_too_large_for_one_message_is_asked_for_in_parts(
        clients: dict[str, HolderClient], platform: Processes) -> None:
    """Its entries of the requests asked were over the message size limit: the holder sent
    none and was shown missing. The oversight body asks it again for halves until each fits;
    a request whose entries alone do not fit is shown too large, not missing."""
    town_hall = clients["sakura-town"]
    many = [f"many-{uuid.uuid4()}" for _ in range(12)]  # 12 x MAX_BYTES / 8: not in one message
    alone = f"alone-{uuid.uuid4()}"
    with _requests_forgotten(town_hall.store, *many, alone):
        for request_id, size in [*((r, MAX_BYTES // 8) for r in many), (alone, MAX_BYTES)]:
            town_hall.store.log(request_id, "PROVIDER", "SYSTEM", "term-1", "FOUND",
                                content="3" * size)
        found = await holder_logs(("sakura-town", "nenkin"), (*many[:6], alone, *many[6:]),
                                  _both, BASIS, within=60)
    assert (found.missing, found.too_large) == ([], {"sakura-town": [alone]})
    assert (found.forged, found.unsigned) == ([], []), "each part signed by its holder"
    assert [e.request_id for e in found.answers["sakura-town"]] == many
    assert all(e.content == "3" * (MAX_BYTES // 8) for e in found.answers["sakura-town"])
    assert found.answers["nenkin"] == () and len(found.request_ids) > 2


@contextmanager
def _requests_forgotten(store: HolderStore, *request_ids: str) -> Iterator[list[str]]:
    """`request_ids`, and those the test adds to the list yielded, made or logged by hand in the
    holder's store: their requests and access-log entries gone again after, so the session's
    other tests find the store as they would without this file."""
    made = list(request_ids)
    try:
        yield made
    finally:
        with store.transaction():
            for table in ("access_log", "requests"):
                store.db.executemany(f"DELETE FROM {table} WHERE request_id = ?",
                                     [(r,) for r in made])


def _both(request_ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The town hall and the pension office took part in each of `request_ids`."""
    return dict.fromkeys(request_ids, ("sakura-town", "nenkin"))


async def test_the_console_shows_a_holder_that_sent_no_entries_why_not_pending_for_good(
        clients: dict[str, HolderClient], platform: Processes, tmp_path: Path) -> None:
    """The console's answer from a holder with no entries sealed (too large for one message,
    or no key to seal to) was unreadable to it: the holder stayed pending on the page for
    good. It is taken and shown so: too large, ask for fewer; could not seal. (A holder not in
    the directory is not asked: the platform's refusal in its stead is taken and shown so.)"""
    town_hall = clients["sakura-town"]
    many = [f"many-{uuid.uuid4()}" for _ in range(12)]  # 12 x MAX_BYTES / 8: not in one message
    with _requests_forgotten(town_hall.store, *many):
        for request_id in many:
            town_hall.store.log(request_id, "PROVIDER", "SYSTEM", "term-1", "FOUND",
                                content="3" * (MAX_BYTES // 8))
        inbox = Inbox(tmp_path / "inbox.db")
        console = HolderLogs(KafkaAccess.of(acls.OVERSIGHT), topics.OVERSIGHT_OUT,
                             topics.OVERSIGHT_IN, sealing.key_of(acls.OVERSIGHT), inbox,
                             OVERSIGHT_KEPT, entry=lambda _: None,
                             read_to_end=lambda: asyncio.sleep(0))
        await console.start()
        try:
            too_large = await console.ask(("sakura-town", "nenkin"), many, BASIS)
            unlisted = await console.ask(("keyless-holder",), many[:1], BASIS)
            shown = {s.asked.request_id: s for s in await _answered(console, 2)}
        finally:
            await console.stop()
            await inbox.close()
    assert (shown[too_large.request_id].unsent, shown[too_large.request_id].answers) == (
        {"sakura-town": "too_large"}, {"nenkin": ()})
    assert (shown[unlisted.request_id].unsent, shown[unlisted.request_id].answers) == (
        {"keyless-holder": "refused"}, {})
    keyless = HolderLogAnswer(unlisted.request_id, "keyless-holder", datetime.now(UTC), (), None)
    not_sealed = replace(shown[unlisted.request_id], refused={},
                         unsent={"keyless-holder": str(unsent(keyless))})
    page = "".join(TEMPLATES.get_template("_answers.html").render(
        w=words("en"), shown=s, full=True, name=str) for s in [*shown.values(), not_sealed])
    assert "too large: ask for fewer entries" in page
    assert "could not seal to the oversight body" in page
    assert "not asked: this holder is not in the platform" in page


async def test_the_cli_shows_a_holder_with_no_key_to_seal_to_why_not_missing() -> None:
    """A holder that answered with no entries, having no key of the oversight body's to seal
    them to, was waited for and shown `missing`; it is shown as the console says it."""
    asking = _Asking(BASIS, cast(AIOKafkaProducer, None), audit.oversight.HolderLogs(),
                     lambda _: None, lambda: asyncio.sleep(0))
    asking.awaited = {("part-1", "keyless-holder"): ("r-1",), ("part-1", "nenkin"): ("r-1",)}
    asking.asked_at = {"part-1": datetime.now(UTC)}
    await asking.take(CODEC.encode(HolderLogAnswer("part-1", "keyless-holder",
                                                   datetime.now(UTC), (), None)),
                      X25519PrivateKey.generate(), None)
    shown = _shown(_gathered(asking, ["keyless-holder", "nenkin"], ["r-1"]))
    assert (shown["missing"], shown["not_sealed"], shown["answers"]) == (
        ["nenkin"], {"keyless-holder": "could not seal to the oversight body"}, {})
    assert words("en")["unsent_not_sealed"] == shown["not_sealed"]["keyless-holder"]


async def test_the_cli_shows_a_holder_suspended_after_its_check_refused_not_answered(
        clients: dict[str, HolderClient], platform: Processes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder suspended between the command's check that it is a holder and its ask was
    refused by the platform, and `oversight holder-logs` showed it answered with no entries,
    exit 0: it is shown refused in the console's words, since when, exit 1; the other holder
    answers. (Asked again if the platform's view of the directory was moments behind.)"""
    loop, suspended = asyncio.get_running_loop(), []

    def suspended_once_checked(db: str | None, request_ids: Sequence[str]) -> Parties:
        suspended.append(asyncio.run_coroutine_threadsafe(
            directory.suspend("sakura-town", "operator-1", "x"), loop).result())
        return _both(request_ids)

    monkeypatch.setattr(audit.oversight_cli, "_parties", suspended_once_checked)
    args = ["holder-logs", "--holder", "sakura-town", "--holder", "nenkin", "--request", "r-1",
            "--basis", BASIS, "--within", "10"]
    for _ in range(3):
        try:
            run = await asyncio.to_thread(CliRunner().invoke, oversight_cli, args)
        finally:
            await directory.resume("sakura-town", "operator-1")
        shown = json.loads(run.stdout)
        if shown.get("refused"):
            break
    await _seen(clients["nenkin"], "sakura-town", True)
    since = suspended[-1].inactive_since
    assert since is not None
    assert (run.exit_code, shown.get("refused"), shown["answers"], shown["missing"]) == (
        1, {"sakura-town": words("en")["unsent_refused_SUSPENDED"].format(
            since=since.isoformat())}, {"nenkin": []}, [])
    assert {why: words("en")[f"unsent_refused_{why}"] for why in REFUSED} == REFUSED, \
        "each reason in the console's words"


async def test_a_holder_asked_for_its_log_then_suspended_is_asked_by_the_platform_reading_late(
        platform: Processes) -> None:
    """The platform judged a holder named in the oversight body's request by the directory as
    it stood when it read the request: read again by an instance taking over from one killed
    after relaying it to the holder and before committing it, the holder suspended meanwhile, it
    was refused SUSPENDED to the oversight body, which took that refusal for the holder's answer
    though the holder had been asked (REQUESTED in the access log). It is judged as of the
    request's broker time: read late, after the holder's suspension, it is asked all the same."""
    asked = HolderLogRequest(str(uuid.uuid4()), datetime.now(UTC), ("sakura-town",), ("r-1",),
                             BASIS)
    platform.kill("platform-1")
    try:
        async with producer(KafkaAccess.of(acls.OVERSIGHT)) as prod:
            await prod.send_and_wait(topics.OVERSIGHT_OUT, CODEC.encode(asked),
                                     key=asked.request_id.encode())
        await directory.suspend("sakura-town", "operator-1", "x")
    finally:
        platform.start_platform(1, ANSWER_TIMEOUT, "info")
    try:
        events = await logged_events(asked.request_id, 1)
    finally:
        await directory.resume("sakura-town", "operator-1")
    assert [(e.outcome, e.reason) for e in events] == [("REQUESTED", None)]


async def _answered(console: HolderLogs, count: int) -> list[Shown]:
    """The console's newest `count` requests, once every holder asked has answered each."""
    for _ in range(300):
        newest = (await console.every())[:count]
        if all(s.asked.complete for s in newest):
            return newest
        await asyncio.sleep(0.1)
    raise AssertionError(f"still pending: {[s.asked.holders for s in newest]}")


def _proved_or_pending(entry: dict[str, Any], head: dict[str, Any] | None) -> bool:
    """The entry is proved against the head the query gave, or marked pending (after it)."""
    if entry.get("pending") is True:
        return "inclusion_proof" not in entry
    tree = SignedHead.from_json(head).head if head else None
    return tree is not None and verify_inclusion(
        bytes.fromhex(entry["leaf_hash"]), entry["serial"], tree.size,
        [bytes.fromhex(p) for p in entry["inclusion_proof"]], tree.root)


async def test_asking_what_is_no_holder_is_refused_at_once(platform: Processes) -> None:
    """Refused before it waits `--within` for answers (its own start alone takes seconds)."""
    within = 60
    started = time.monotonic()
    run = await asyncio.to_thread(renkei, "oversight", "holder-logs", "--holder", "nenkin",
                                  "--holder", "sakura_town", "--request", "r-1", "--basis", BASIS,
                                  "--within", str(within), check=False)
    assert run.returncode == 2 and time.monotonic() - started < within / 2, run.stderr
    said_in_one_line(run.stderr, "not an active holder of the directory: sakura_town")


@pytest.mark.usefixtures("town")
@pytest.mark.parametrize(("asked", "option", "said"), [
    (("--holder", "nenkin", "--holder", "sakura_town", "--request", "r-1"), "--holder",
     "not an active holder of the directory: sakura_town"),
    (("--holder", "nenkin", "--holder", "sakura-town", "--request", "r-1"), "--holder",
     "took part in none of the requests asked: sakura-town"),
    (("--holder", "nenkin", "--request", "r-1", "--request", "r-2"), "--request",
     "none of the holders asked took part in: r-2"),
    (("--holder", "nenkin", *[a for n in range(501) for a in ("--request", f"r-{n}")]),
     "--request", "name 1..500 request ids, not 501")])
async def test_a_holder_or_request_refused_names_its_option(
        monkeypatch: pytest.MonkeyPatch, asked: tuple[str, ...], option: str, said: str) -> None:
    """Said as click says any other bad value, naming the option given it (r-1: nenkin's
    alone), not "Invalid value: …", which left the person to guess which."""
    monkeypatch.setattr(audit.oversight_cli, "_parties",
                        lambda db, ids: {"r-1": ("nenkin",)})
    run = await asyncio.to_thread(CliRunner().invoke, oversight_cli,
                                  ["holder-logs", *asked, "--basis", BASIS, "--within", "1"])
    assert run.exit_code == 2, run.output
    said_in_one_line(run.stderr, f"Invalid value for '{option}': {said}")


@pytest.mark.usefixtures("platform")
async def test_a_broker_gone_while_the_answers_are_awaited_is_said_not_the_holders_silence(
        ) -> None:
    """The broker gone while `oversight holder-logs` waited, the holder asked was said to be
    missing, not answered in time, and nothing said that the broker was away: the oversight body
    would take the broker's absence for the holder's silence."""
    await asyncio.to_thread(renkei, "holder", "register", "quiet-town", "--name", "静町",
                            "--role", "municipality")  # in the directory; no server answers
    port = free_port()
    own = KafkaAccess.of(acls.OVERSIGHT)
    access = replace(own, bootstrap=f"127.0.0.1:{port}")
    inbox = AIOKafkaConsumer(topics.inbox("quiet-town"), **KafkaAccess.of(config.ADMIN).aiokafka(),
                             auto_offset_reset="earliest", enable_auto_commit=False)
    await inbox.start()
    try:
        async with forwarder(port, own.bootstrap, cut=True):
            asking = asyncio.create_task(holder_logs(
                ("quiet-town",), ("r-1",), lambda ids: dict.fromkeys(ids, ("quiet-town",)),
                BASIS, within=8, access=access))
            await asyncio.wait_for(inbox.getone(), 20)  # the platform relayed it: then the cut
    finally:
        await inbox.stop()
    with pytest.raises(BrokerGone, match=f"the broker at 127.0.0.1:{port} cannot be reached: "
                       "what quiet-town answered may not have come"):
        await asking


async def test_only_the_oversight_body_may_ask_for_holders_logs(
        clients: dict[str, HolderClient]) -> None:
    asked = HolderLogRequest(str(uuid.uuid4()), datetime.now(UTC), ("sakura-town",),
                             ("any",), "curiosity")
    nenkin = KafkaAccess.of("nenkin")
    async with producer(nenkin) as prod:
        with pytest.raises(TopicAuthorizationFailedError):
            await prod.send_and_wait(topics.OVERSIGHT_OUT, CODEC.encode(asked))
    inbox = AIOKafkaConsumer(topics.inbox("nenkin"), **nenkin.aiokafka(),
                             enable_auto_commit=False)
    await inbox.start()
    try:
        await at_end(inbox)
        async with producer(nenkin) as prod:  # through its own outbox, then
            await prod.send_and_wait(topics.outbox("nenkin"), CODEC.encode(asked))
        rejection = await _rejection(inbox)
    finally:
        await inbox.stop()
    assert rejection.reason == "UNEXPECTED_MESSAGE" and "HolderLogRequest" in rejection.detail


async def test_a_holder_asked_for_its_log_is_not_told_which_other_holders_are_asked(
        clients: dict[str, HolderClient]) -> None:
    """The oversight body's request names every holder under the inquiry; the platform relays
    to each a copy naming it alone, its requests unchanged: none learns which others are asked
    (it could tip off one it colluded with)."""
    asked = HolderLogRequest(f"inquiry-{uuid.uuid4()}", datetime.now(UTC),
                             ("nenkin", "sakura-town"), ("any",), BASIS)
    town_hall = KafkaAccess.of("sakura-town")
    inbox = AIOKafkaConsumer(topics.inbox("sakura-town"), **town_hall.aiokafka(),
                             enable_auto_commit=False)
    await inbox.start()
    try:
        await at_end(inbox)
        async with producer(KafkaAccess.of(acls.OVERSIGHT)) as prod:
            await prod.send_and_wait(topics.OVERSIGHT_OUT, CODEC.encode(asked))
        relayed = await _first(inbox, partial(_request, asked.request_id))
    finally:
        await inbox.stop()
    assert relayed.holders == ("sakura-town",) and relayed.request_ids == asked.request_ids


def _request(request_id: str, value: bytes) -> HolderLogRequest | None:
    request = CODEC.decode(value, HolderLogRequest)
    return request if request.request_id == request_id else None


async def _rejection(inbox: AIOKafkaConsumer, within: float = 20) -> Rejection:
    return await _first(inbox, lambda value: CODEC.decode(value, Rejection), within)


async def _first(inbox: AIOKafkaConsumer, decoded: Callable[[bytes], T | None],
                 within: float = 20) -> T:
    """The first message read from `inbox` that `decoded` gives (None or SchemaError: skipped)."""
    async with asyncio.timeout(within):
        while True:
            for records in (await inbox.getmany(timeout_ms=200)).values():
                for record in records:
                    try:
                        found = decoded(record.value or b"")
                    except SchemaError:
                        continue
                    if found is not None:
                        return found


async def test_a_burst_of_rejections_alerts_the_oversight_body(
        clients: dict[str, HolderClient], platform: Processes) -> None:
    hospital = clients["sakura-hospital"]
    own = bound(hospital)[0]
    with _requests_forgotten(hospital.store) as sent:
        for _ in range(25):  # each id kept as made: a failure half-way leaves none behind
            sent.append(await ask(hospital, own, "P-120", "sakura-town", "local_tax"))
        outcomes = await asyncio.gather(*(hospital.outcome(r, 30) for r in sent))
    assert {o.status for o in outcomes} == {"REJECTED"}
    rejected = {e.event_id for e in await audit_events(set(sent))}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alerts = await oversight("alerts", "--rule", "REJECTION_BURST", "--requester",
                           "sakura-hospital")
        assert isinstance(alerts, list)
        raised = [a for a in alerts if a["event_id"] in rejected]
        if raised:
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError("no alert for a burst of 25 rejections")
    assert raised[0]["count"] == 20 and "WRONG_PROVIDER" in str(raised[0]["detail"])


async def test_a_holder_querying_a_person_it_never_bound_alerts_the_oversight_body(
        clients: dict[str, HolderClient], platform: Processes) -> None:
    """The clinic and the hospital share the medical link-code unit: the hospital can send a
    link code only the clinic was given, and the platform takes it."""
    hospital, clinic = clients["sakura-hospital"], clients["minami-clinic"]
    before = hospital.store.bindings()
    taken = set(before.values())
    own, link = next((o, code) for o, code in clinic.store.bindings().items() if code not in taken)
    bound_at = clinic.store.binding(own)
    assert bound_at is not None
    with short_lateness(platform):  # its alert that soon
        with _bound_by_hand(hospital.store, "HOS-UNBOUND", link, bound_at[1]), \
                _requests_forgotten(hospital.store) as made:
            request_id = await ask(hospital, "HOS-UNBOUND", "P-120", "acme-kenpo",
                                   "insurance_eligibility")
            made.append(request_id)
            await hospital.outcome(request_id, 30)
        [approved] = [e for e in await audit_events({request_id}) if e.kind == "LINKAGE"]
        assert approved.outcome == "APPROVED" and approved.person is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alerts = await oversight("alerts", "--rule", "UNBOUND_PERSON", "--requester",
                                     "sakura-hospital")
            assert isinstance(alerts, list)
            if raised := [a for a in alerts if a["event_id"] == approved.event_id]:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("no alert for a linkage about a person the requester never bound")
    assert raised[0]["person"] == approved.person
    assert hospital.store.bindings() == before and "HOS-UNBOUND" not in hospital.store.own_numbers()


@contextmanager
def _bound_by_hand(store: HolderStore, own: str, link: str, epoch: int) -> Iterator[None]:
    """A record `own` the holder added and bound to `link` by hand, in its own store, not by the
    binding flow; gone again after, so the session's other tests see the bindings the flow made
    (test_linkage's found it bound to someone the holder does not hold)."""
    store.add_record(own, FourAttributes("桜 花子", "桜町1-1-1", date(1990, 1, 1), Sex.FEMALE))
    assert store.bind(own, link, epoch) is None
    try:
        yield
    finally:
        store.db.execute("DELETE FROM bindings WHERE own_number = ?", (own,))
        store.db.execute("DELETE FROM records WHERE own_number = ?", (own,))


async def test_the_cli_shows_only_the_entries_of_the_request_ids_it_asked_for() -> None:
    """A holder's answer carrying an entry of a request id it was not asked for (another
    exchange, another resident's ⑪) had it printed by `renkei oversight holder-logs`: only the
    entries of the ids asked for are kept, as the console and a resident's page show them."""
    key = X25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    entry = HolderLogEntry("r-1", "2026-12-03T09:00:00+09:00", "PROVIDER", "staff-1", "term-1",
                           "nenkin", "P-037", "local_tax", '{"taxable_income": "1"}', None, "FOUND")
    other = replace(entry, request_id="r-other", content='{"taxable_income": "2"}')
    asking = _Asking(BASIS, cast(AIOKafkaProducer, None), audit.oversight.HolderLogs(),
                     lambda _: None, lambda: asyncio.sleep(0))
    asking.awaited = {("part-1", "nenkin"): ("r-1",)}
    asking.asked_at = {"part-1": datetime.now(UTC)}
    await asking.take(CODEC.encode(HolderLogAnswer(
        "part-1", "nenkin", datetime.now(UTC), (), seal(public, "part-1", [entry, other]))), key,
        None)
    assert asking.entries == {"nenkin": [entry]}
