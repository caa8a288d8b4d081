"""A holder's broker password and keys renewed by the operator (`renkei holder renew`), on the
real broker: the old password logs in no more, the new keys are in the directory, its running
server takes them and goes on requesting and providing, and the audit log says who and why."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import NamedTuple, TypeVar

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from audit import oversight
from broker import cluster, config, credentials, topics
from broker.clients import BrokerAway, KafkaAccess, asked, offsets, read_topic
from holders.client import HolderClient
from holders.store import HolderStore
from processors import directory
from renkei import sealing
from schemas.codec import CODEC, SchemaError
from schemas.messages import HolderEntry, LinkageAnswer, LinkageRequest
from tests.kafka_helpers import (
    consumer,
    log_request,
    operator_actions,
    renkei,
    reply_to,
    wait_assigned,
)
from tests.loop_helpers import Deadline
from tests.test_linkage import ask, bound

M = TypeVar("M", LinkageRequest, LinkageAnswer)

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOLDER = "sakura-town"


def _refused(creds: credentials.Credentials) -> bool:
    """Whether the broker refuses the principal's log-in with these credentials."""
    return asked([KafkaAccess(cluster.bootstrap(), creds)]).refused == [creds.username]


async def _status(client: HolderClient, pattern: str, provider: str, data_type: str) -> str:
    request_id = await ask(client, bound(client)[0], pattern, provider, data_type)
    return (await client.outcome(request_id, 30)).status


async def _seen(client: HolderClient, holder: str, signing_key: bytes) -> None:
    """Wait until the client's directory view has `holder`'s renewed entry."""
    async with asyncio.timeout(10):
        while client.entry(holder).signing_key != signing_key:
            await client.directory.changed()


class Renewed(NamedTuple):
    """The holder as it was before its renewal, what the command said, and where the audit topic
    ended before it."""

    creds: credentials.Credentials
    entry: HolderEntry
    key: X25519PrivateKey
    in_flight: bytes  # an answer sealed to its old sealing key before the renewal
    said: subprocess.CompletedProcess[str]
    audit_end: int
    across: str  # a request sent before the renewal, its answer provided after it
    serving: asyncio.Task[None]  # the server's wait (until_stopped), begun before the renewal


async def _took(client: HolderClient, public_key: bytes) -> None:
    """Wait until the running client opens answers with this sealing key (its directory view
    made anew as it takes them: each looked at for a while), and its clients run again with it
    (taken before they start: the tasks they start are the fixture's, not a test's)."""
    async with asyncio.timeout(10):
        while sealing.public_bytes(client._key) != public_key:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.directory.changed(), 0.2)
        await client._switched()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def renewed(clients: dict[str, HolderClient]) -> AsyncIterator[Renewed]:
    """The holder renewed by the operator while its communication server runs (the session's
    client, not replaced), waited for as the server does (until_stopped); a request of it sent
    before, its provider's server stopped until the renewal was taken: its query answered
    after, sealed to the new key."""
    _, audit_end = await offsets(KafkaAccess.of(config.ADMIN), topics.AUDIT)
    before = (await directory.current())[HOLDER]
    in_flight = sealing.SessionSealer().seal(before.public_key, b"answer", "R-old", HOLDER)
    old_creds, old_key = credentials.load(HOLDER), sealing.key_of(HOLDER)
    running, stop = clients[HOLDER], asyncio.Event()
    serving = asyncio.create_task(running.until_stopped(stop))
    await clients["nenkin"].stop()  # the query waits in its inbox until after the renewal
    across = await ask(running, bound(running)[0], "P-027", "nenkin", "pension_benefit")
    said = renkei("holder", "renew", HOLDER, "--reason", "情報漏えい", "--operator", "ops-a")
    await _took(running, (await directory.current())[HOLDER].public_key)
    await _started(clients, "nenkin")
    yield Renewed(old_creds, before, old_key, in_flight, said, audit_end, across, serving)
    stop.set()
    await serving  # its client stopped by signed_before: the wait ends with it


async def test_a_renewed_holder_logs_in_and_seals_with_new_secrets_alone(
        clients: dict[str, HolderClient], renewed: Renewed) -> None:
    """No command renewed a holder's broker password or its sealing and signing keys: a
    hospital resumed after a breach went on with the leaked ones (registering again kept them
    all). Renewed, its old password is refused and its new one taken, the directory publishes
    its new keys, answers sealed to its old sealing key still open, its server restarted
    requests and provides (FOUND both ways), and the audit log has the renewal with who and
    why, and how long connections it has open go on; nothing secret is said."""
    said, before = renewed.said, renewed.entry
    new_creds = credentials.load(HOLDER)
    assert new_creds.password != renewed.creds.password
    assert "renewed sakura-town" in said.stdout and "reason: 情報漏えい" in said.stdout
    # its connections open with the old password: closed by the broker (test_broker_reauth)
    assert "open are closed within 10 minutes (connections.max.reauth.ms)" in said.stdout
    assert "takes them" in said.stderr and "restart" not in said.stderr
    secrets = (new_creds.password, renewed.creds.password, renewed.key.private_bytes_raw().hex(),
               sealing.key_of(HOLDER).private_bytes_raw().hex())
    assert not any(s in said.stdout + said.stderr for s in secrets)
    assert _refused(renewed.creds) and not _refused(new_creds)
    after = (await directory.current())[HOLDER]
    assert after.public_key == sealing.public_bytes(sealing.key_of(HOLDER)) != before.public_key
    assert after.signing_key == sealing.public_bytes(sealing.signing_key_of(HOLDER))
    assert after.signing_key != before.signing_key
    assert (after.active, after.link_unit, after.key_epoch) == (
        before.active, before.link_unit, before.key_epoch)
    [action] = await operator_actions(renewed.audit_end, HOLDER)
    assert (action.action, action.operator, action.reason) == ("RENEW", "ops-a", "情報漏えい")
    running = clients[HOLDER]
    assert running._answers_in.open(renewed.in_flight, "R-old") == b"answer"  # kept a while
    nenkin = clients["nenkin"]
    await _seen(nenkin, HOLDER, after.signing_key)
    assert await _status(nenkin, "P-037", HOLDER, "local_tax") == "FOUND"
    assert await _status(running, "P-027", "nenkin", "pension_benefit") == "FOUND"
    assert not renewed.serving.done()  # its server went on
    refused = renkei("holder", "renew", "nobody", check=False)
    assert refused.returncode == 1 and "nobody" in refused.stderr


async def test_a_request_in_flight_across_a_renewal_is_answered_once(
        clients: dict[str, HolderClient], renewed: Renewed) -> None:
    """A request sent just before its holder's renewal, its provider answering after it (sealed
    to the holder's new key), by the server that took the new keys as it ran: answered FOUND,
    once (one answer on its inbox, one entry of it in its access log)."""
    running = clients[HOLDER]
    assert (await running.outcome(renewed.across, 30)).status == "FOUND"
    answers = [CODEC.decode(value, LinkageAnswer) for record in await read_topic(
        KafkaAccess.of(config.ADMIN), topics.inbox(HOLDER))
        if CODEC.name_of(value := record.value or b"") == "LinkageAnswer"]
    assert [a.status for a in answers if a.request_id == renewed.across] == ["FOUND"]
    assert len(running.store.access_log(renewed.across)) == 1


async def _started(clients: dict[str, HolderClient], holder: str) -> HolderClient:
    """The holder's communication server, stopped, started again (with its key files as they
    are now), the session's client replaced."""
    clients[holder].store.close()
    clients[holder] = HolderClient(holder, HolderStore.of(holder))
    await clients[holder].start()
    return clients[holder]


class SignedBefore(NamedTuple):
    """A request whose answer its provider signed just before its renewal, the requester's
    server stopped from before the answer came until after the renewal; the provider's
    signing key before."""

    request_id: str
    signing_key: bytes


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def signed_before(clients: dict[str, HolderClient], renewed: Renewed) -> SignedBefore:
    """The provider renewed again while an answer it signed waits in its requester's inbox, and
    both servers restarted (the session's clients replaced: the session stops them at its end)."""
    requester = clients["nenkin"]
    await clients[HOLDER].stop()  # the query waits in its inbox until its server is restarted
    async with consumer(KafkaAccess.of(config.ADMIN), topics.inbox("nenkin")) as inbox:
        await wait_assigned(inbox)
        request_id = await ask(requester, bound(requester)[0], "P-037", HOLDER, "local_tax")
        await requester.stop()  # the answer waits in its inbox until after the renewal
        provider = await _started(clients, HOLDER)  # answers, signing with its key until now
        assert (await reply_to(inbox, LinkageAnswer, request_id)).status == "FOUND"
    signing_key = sealing.public_bytes(provider._signing)
    await provider.stop()
    renkei("holder", "renew", HOLDER, "--reason", "鍵の更新", "--operator", "ops-a")
    await _started(clients, HOLDER)
    await _started(clients, "nenkin")  # the directory read first, then its inbox
    return SignedBefore(request_id, signing_key)


async def test_an_answer_signed_just_before_a_renewal_is_read_after_it(
        clients: dict[str, HolderClient], signed_before: SignedBefore) -> None:
    """A provider's answer signed with its signing key just before `renkei holder renew`, read by
    its requester after the renewal, was UNREADABLE there (the directory kept no signing key but
    the new one), the requester asking again. The renewed entry keeps the key before and when
    it was renewed: an answer session signed with it by then is read (FOUND) within the grace
    (one dated after, or read past it: test_sealing)."""
    requester = clients["nenkin"]
    assert (await requester.outcome(signed_before.request_id, 30)).status == "FOUND"
    after = requester.entry(HOLDER)
    assert after.previous_signing_key == signed_before.signing_key != after.signing_key



async def _ended(task: asyncio.Future[None], within: float) -> bool:
    """Whether `task` ended within `within` seconds (its error raised); given up if not."""
    done, _ = await asyncio.wait({task}, timeout=within)
    for ended in done:
        ended.result()
    task.cancel()
    return bool(done)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stopped_switching(clients: dict[str, HolderClient],
                            signed_before: SignedBefore) -> tuple[bool, bool]:
    """The holder renewed again as its server runs, its Kafka clients started again renewed
    where no broker answers, and the server told to stop (Ctrl-C sets the wait's `stop`, then
    the server stops the client): whether its wait ended within 2 s, and its stop within 5 s
    after; the session's client replaced."""
    running, stop = clients[HOLDER], asyncio.Event()
    serving = asyncio.create_task(running.until_stopped(stop))
    password = running.access.credentials.password
    running.access = replace(running.access, bootstrap="127.0.0.1:9")  # none there
    renkei("holder", "renew", HOLDER, "--reason", "定期更新", "--operator", "ops-a")
    deadline = Deadline(10, "its clients stopped, made again with the renewed password")
    while running.access.credentials.password == password:
        deadline.check()
        await asyncio.sleep(0.05)
    stop.set()
    ended = await _ended(serving, 2), await _ended(asyncio.ensure_future(running.stop()), 5)
    await _started(clients, HOLDER)
    return ended


async def test_a_server_told_to_stop_as_it_waits_for_the_broker_to_take_renewed_keys_stops(
        stopped_switching: tuple[bool, bool]) -> None:
    """Ctrl-C while the server's Kafka clients, stopped to take renewed keys, started again
    and waited for a broker that could not be reached: its wait (until_stopped) waited for them
    to start, and its stop too, until the broker came back. Both end within seconds."""
    assert stopped_switching == (True, True)



class AskedSwitching(NamedTuple):
    """A request made while the server's Kafka clients switched to renewed keys, and whether it
    was held back for it (_held_back) rather than recorded and sent by the clients stopping."""

    request_id: str
    held_back: bool


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def asked_switching(clients: dict[str, HolderClient],
                          stopped_switching: tuple[bool, bool]) -> AskedSwitching:
    """The holder renewed again as its server runs, a request made once its clients began to
    stop to take the renewed keys (_switching held), returned once the broker took it (the
    tasks its clients start again are the fixture's, not the test's)."""
    running = clients[HOLDER]
    assert running._held_back is None  # a client started afresh: nothing held back yet
    renewing = asyncio.create_task(asyncio.to_thread(
        renkei, "holder", "renew", HOLDER, "--reason", "定期更新", "--operator", "ops-a"))
    deadline = Deadline(30, "its clients switching to the renewed keys")
    while not running._switching.locked():
        deadline.check()
        await asyncio.sleep(0.002)
    request_id = await ask(running, bound(running)[0], "P-027", "nenkin", "pension_benefit")
    held_back = running._held_back is not None
    await renewing
    await running._switched()
    return AskedSwitching(request_id, held_back)


async def test_a_request_made_as_the_clients_switch_to_renewed_keys_is_sent_and_answered_once(
        clients: dict[str, HolderClient], asked_switching: AskedSwitching) -> None:
    """A request made while the server's Kafka clients stop and start again with renewed keys
    (_switching held): held back until they run (_recorded_once_switched), then recorded and
    sent by its own sending alone, not also as one kept; on the outbox once, answered FOUND
    once, one entry of it in the holder's access log."""
    running, request_id = clients[HOLDER], asked_switching.request_id
    assert asked_switching.held_back  # it was made in the window
    assert (await running.outcome(request_id, 30)).status == "FOUND"
    sent = await _about(topics.outbox(HOLDER), LinkageRequest, request_id)
    answers = await _about(topics.inbox(HOLDER), LinkageAnswer, request_id)
    assert (len(sent), [a.status for a in answers]) == (1, ["FOUND"])
    assert len(running.store.access_log(request_id)) == 1
    assert request_id not in [kept for kept, _, _ in running.store.unsent()]


async def _about(topic: str, kind: type[M], request_id: str) -> list[M]:
    """The messages of `kind` about `request_id` on `topic`, in order; the malformed ones other
    tests sent there passed over."""
    found = []
    for record in await read_topic(KafkaAccess.of(config.ADMIN), topic):
        with contextlib.suppress(SchemaError):
            if (message := CODEC.decode(record.value or b"", kind)).request_id == request_id:
                found.append(message)
    return found


class AskedAcross(NamedTuple):
    """What `renkei oversight holder-logs` gathered of a request the holder provided, the holder
    renewed while the command waited; the request, and the holder's signing key since."""

    found: oversight.HolderLogs
    request_id: str
    signing_key: bytes


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def asked_across(clients: dict[str, HolderClient]) -> AskedAcross:
    """The oversight body's request for the holder's log waiting in its inbox (its server
    stopped), the holder renewed, and its server started again: it answers signed with its new
    key, after the command read the directory (the session's client replaced)."""
    requester = clients["nenkin"]
    request_id = await ask(requester, bound(requester)[0], "P-037", HOLDER, "local_tax")
    assert (await requester.outcome(request_id, 30)).status == "FOUND"
    await clients[HOLDER].stop()  # the oversight body's request waits in its inbox
    async with consumer(KafkaAccess.of(config.ADMIN), topics.inbox(HOLDER)) as inbox:
        await wait_assigned(inbox)
        asking = asyncio.create_task(oversight.holder_logs(
            [HOLDER], [request_id], lambda ids: {r: {HOLDER} for r in ids}, "basis", 30))
        await log_request(inbox, request_id)  # the command has read the directory by now
    renkei("holder", "renew", HOLDER, "--reason", "鍵の更新", "--operator", "ops-a")
    signing_key = sealing.public_bytes((await _started(clients, HOLDER))._signing)
    return AskedAcross(await asking, request_id, signing_key)


async def test_the_oversight_body_takes_an_answer_signed_with_keys_renewed_as_it_waits(
        asked_across: AskedAcross) -> None:
    """`renkei oversight holder-logs` read the holder directory once, at its start: a holder
    renewed while the command waited answered signed with its new key (published after the
    command read the directory), and its genuine answer was refused as forged, the holder shown
    missing (exit 1). The command follows the directory: the answer is the holder's."""
    found = asked_across.found
    assert (found.forged, found.missing) == ([], [])
    [entry] = found.answers[HOLDER]
    assert (entry.request_id, entry.side) == (asked_across.request_id, "PROVIDER")
    assert asked_across.signing_key == (await directory.current())[HOLDER].signing_key


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def refused_switching(clients: dict[str, HolderClient]) -> BaseException | None:
    """The holder renewed again as its server runs, its Kafka clients' start with the renewed
    keys failing (the broker away, made so at the switch): what the server's wait
    (until_stopped) ended with within 10 s (a TimeoutError if it did not); the session's client
    replaced."""
    running, stop = clients[HOLDER], asyncio.Event()

    async def refused() -> None:
        raise BrokerAway("127.0.0.1:9")

    running._started = refused  # type: ignore[method-assign]
    serving = asyncio.create_task(running.until_stopped(stop))
    renkei("holder", "renew", HOLDER, "--reason", "定期更新", "--operator", "ops-a")
    done, _ = await asyncio.wait({serving}, timeout=10)
    stop.set()
    await asyncio.wait({serving})
    await running.stop()
    await _started(clients, HOLDER)
    return serving.exception() if done else TimeoutError("the server's wait went on")


async def test_a_server_whose_clients_fail_to_start_renewed_raises_the_failure(
        refused_switching: BaseException | None) -> None:
    """Its clients stopped to take renewed keys, their start again failed (refused, the broker
    away): the taking's task ended in that failure, marked as read, and the server's wait
    (until_stopped) woke, found its clients not started renewed and returned: the server
    stopped with exit status 0, the failure never told. The wait raises it."""
    assert isinstance(refused_switching, BrokerAway), repr(refused_switching)
