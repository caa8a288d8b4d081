"""A service told to stop (SIGINT) after the broker has gone away stops within seconds, rc 0,
without a traceback, its Kafka clients closed, saying in one line that a step waiting for the
broker did not end in time; and commits nothing it could not (effects before offsets). A broker
of these tests' own, in a state folder of their own, is taken down and brought back: the
suite's broker is not."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from audit.anchor import LEAST_HEAD_SECONDS, anchored_heads
from audit.cli import open_store
from audit.consumer import run as audit_run
from broker import acls, config, process, topics
from broker.clients import KafkaAccess, records_up_to, running
from broker.ports import free_port_pair
from holders.client import HolderClient, NotSentYet
from holders.server import address_file, recorded
from holders.store import HolderStore
from renkei import groups
from renkei import town as town_setup
from renkei.envelope import Send
from renkei.exchanges import staff as staff_of
from renkei.service_loop import (
    AWAY_AT_STOP,
    CLOSED_UNSENT,
    STOP_SECONDS,
    close_producer,
    deliver,
    producer_for,
    serve,
)
from renkei.state import state_folder
from renkei.tasks import cancelled, set_or_failed
from tests.kafka_helpers import consumer, spawn, stopped, wait_assigned
from tests.loop_helpers import Deadline
from tests.test_audit_store import event, item

HOLDER = "sakura-town"
GROUPS = {"platform run": acls.PLATFORM_APP, "audit run": acls.AUDIT_GROUP,
          f"holder run {HOLDER}": HolderClient.inbox_group(HOLDER)}
STOPS_WITHIN = 10.0  # seconds from SIGINT to its end
FOUND_GONE = "Unable connect to node"  # what aiokafka logs of a fetch that found no broker


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """A broker and a small town of their own (their ports: to bring the broker back up)."""
    with state_folder(tmp_path_factory.mktemp("away")):
        ports = free_port_pair()
        process.up(*ports, tethered=True)
        try:
            town_setup.build(20, 5)
            yield ports
        finally:
            process.down()


def _started(args: str, log: Path, ports: tuple[int, int]) -> subprocess.Popen[bytes]:
    """The broker up, and the service `args` running in its group."""
    process.up(*ports, tethered=True)
    address_file(HOLDER).unlink(missing_ok=True)  # a holder's own, written once it serves
    proc = spawn(*args.split(), log=log)
    deadline = time.monotonic() + 60
    while args.startswith("holder") and recorded(HOLDER) is None and time.monotonic() < deadline:
        time.sleep(0.2)  # (its static member may still be in the group from a run before)
    if not groups.wait_members(groups.admin(), GROUPS[args], 1, within=60):
        proc.kill()
        proc.wait()
        pytest.fail(f"{args} did not join its group: {log.read_text()[-3000:]}")
    return proc


def _found_gone(log: Path) -> None:
    """Until the service's Kafka clients have found the broker gone (fetches retrying), as its
    log says."""
    deadline = Deadline(STOPS_WITHIN, f"{FOUND_GONE!r} in {log}")
    while FOUND_GONE not in (said := log.read_text(errors="replace")):
        deadline.check(said[-2000:])
        time.sleep(0.1)


def _interrupted(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """SIGINT, as Ctrl-C; the exit code and how long it took (killed after STOPS_WITHIN)."""
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(STOPS_WITHIN), time.monotonic() - began
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -1, time.monotonic() - began


@pytest.mark.parametrize("args", list(GROUPS))
def test_a_service_interrupted_after_the_broker_went_away_stops_cleanly(
        args: str, own_broker: tuple[int, int], tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    proc = _started(args, log, own_broker)
    process.down()
    _found_gone(log)
    code, took = _interrupted(proc)
    said = log.read_text()
    print(f"\n{args}: rc {code} after {took:.1f} s")
    assert code == 0, said[-4000:]
    assert "Traceback" not in said and "Unclosed" not in said, said[-4000:]
    assert said.count(AWAY_AT_STOP) <= 1, said[-4000:]  # said when a step of the stop failed


def _post(url: str, token: str, body: dict[str, object],
          within: float) -> tuple[int, dict[str, Any]]:
    sent = urllib.request.Request(url, json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(sent, timeout=within) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def _copies_sent(*request_ids: str) -> list[int]:
    """How many records of each of `request_ids` the holder's outbox holds (a binding's key is
    its id)."""
    async with consumer(KafkaAccess.of(acls.PLATFORM), topics.outbox(HOLDER),
                        offset="earliest") as cons:
        await wait_assigned(cons)
        ends = await cons.end_offsets(list(cons.assignment()))
        keys = [r.key async for r in records_up_to(cons, ends)]
    return [keys.count(request_id.encode()) for request_id in request_ids]


def test_a_request_made_while_the_broker_is_away_is_kept_and_sent_once_it_is_back(
        own_broker: tuple[int, int], tmp_path: Path) -> None:
    """The holder's API answers at once that the request is kept (not sent yet); Ctrl-C then
    stops the holder within seconds, rc 0; the request goes, once, at its next start."""
    log = tmp_path / "holder.log"
    args = f"holder run {HOLDER}"
    proc = _started(args, log, own_broker)
    address = recorded(HOLDER)
    assert address is not None
    store = HolderStore.of(HOLDER)
    try:
        operator, terminal = staff_of(HOLDER)
        process.down()
        _found_gone(log)
        began = time.monotonic()
        status, body = _post(f"{address.url}/bindings", address.token, {
            "own_number": store.own_numbers()[0], "operator": operator,
            "terminal": terminal}, within=20)
        print(f"\nPOST /bindings: {status} {body} after {time.monotonic() - began:.1f} s")
        assert status == 202 and body["sent"] is False, body
        request_id = str(body["request_id"])
        code, took = _interrupted(proc)
        said = log.read_text()
        print(f"{args}: rc {code} after {took:.1f} s")
        assert code == 0 and "Traceback" not in said and "Unclosed" not in said, said[-4000:]
        assert [u[0] for u in store.unsent()] == [request_id], "not kept for the next start"
        proc = _started(args, log, own_broker)  # the broker back, the holder started again
        deadline = time.monotonic() + 30
        while store.unsent() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not store.unsent(), log.read_text()[-3000:]
        assert f"{HOLDER}: 1 request(s) recorded but not known to be sent: sending them now" in \
            log.read_text()
        assert asyncio.run(_copies_sent(request_id)) == [1]
        code, _ = _interrupted(proc)
        assert code == 0, log.read_text()[-3000:]
    finally:
        store.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_requests_in_flight_as_the_holder_stops_are_told_kept_and_go_once(
        own_broker: tuple[int, int]) -> None:
    """Requests on their way to a broker that stalled (SIGSTOP: their produce request left
    unanswered) as the holder stops: its stop closes the producer without them (STOP_SECONDS).
    Each caller is told NotSentYet, as each is kept to go at the next start, not the closed
    producer's KafkaConnectionError, which reads as a request that failed (made again, a second
    request). The broker, let go on, took them: the next start finds them on the outbox and
    sends none again."""
    process.up(*own_broker, tethered=True)
    store = HolderStore.of(HOLDER)
    client = HolderClient(HOLDER, store)
    await client.start()
    operator, terminal = staff_of(HOLDER)
    try:
        binding = [asyncio.ensure_future(client.bind(own_number, operator, terminal))
                   for own_number in store.own_numbers()[:5]]
        deadline = Deadline(STOPS_WITHIN, "the requests recorded, on their way to the broker")
        while len(client._sending) < len(binding):
            deadline.check(len(client._sending))
            await asyncio.sleep(0.001)
        (node,) = process.status()[1]
        assert node.pid is not None
        with stopped(node.pid):
            stopping = asyncio.create_task(client.stop())
            await asyncio.wait(binding, timeout=STOPS_WITHIN)
        await stopping
        told = [b.exception() if b.done() else None for b in binding]
        assert all(isinstance(t, NotSentYet) for t in told), told
        kept = [t.request_id for t in told if isinstance(t, NotSentYet)]
        assert sorted(u[0] for u in store.unsent()) == sorted(kept)
        again = HolderClient(HOLDER, store)
        await again.start()
        await again.stop()
        assert not store.unsent()
        assert await _copies_sent(*kept) == [1] * len(kept)
    finally:
        store.close()



async def test_a_batch_waiting_for_a_stalled_broker_gives_way_to_the_stop(
        own_broker: tuple[int, int], caplog: pytest.LogCaptureFixture) -> None:
    """A batch whose handler waits for the broker (an alert delivered, as the audit consumer's
    does) when the broker stalls (SIGSTOP: the produce request left unanswered) and the service
    is told to stop: serve ends within seconds, saying a step waiting for the broker did not end
    in time (its consumer's close: the broker away, most likely), not once the broker is let go
    on (the audit consumer took over 10 s to stop so, under the suite's load)."""
    process.up(*own_broker, tethered=True)
    admin = KafkaAccess.of(config.ADMIN)
    (node,) = process.status()[1]
    pid = node.pid
    assert pid is not None
    stop = asyncio.Event()
    async with running(producer_for(admin), admin) as alerts:
        await deliver(alerts, [Send(topics.ALERTS, None, b"a record for the batch to handle")])

        async def handle(records: list[Any]) -> Sequence[Send]:
            os.kill(pid, signal.SIGSTOP)
            stop.set()
            await deliver(alerts, [Send(topics.ALERTS, None, records[0].value)])
            return []

        began = time.monotonic()
        try:
            with caplog.at_level(logging.WARNING, "renkei.service_loop"):
                reached = await asyncio.wait_for(serve(
                    admin, [topics.ALERTS], f"stalled-{uuid.uuid4().hex}", handle, stop), 30)
        finally:
            took = time.monotonic() - began
            os.kill(pid, signal.SIGCONT)
    print(f"\nserve ended {took:.1f} s after it began, its batch waiting for the broker stalled")
    assert reached is False
    assert took < 4 * STOP_SECONDS
    assert [r.getMessage() for r in caplog.records if r.name == "renkei.service_loop"] == [
        AWAY_AT_STOP]


async def test_the_audit_consumer_stopped_with_the_broker_away_waits_once_for_its_last_head(
        own_broker: tuple[int, int], caplog: pytest.LogCaptureFixture) -> None:
    """Stopped with the broker away and a head to anchor, the audit consumer waited STOP_SECONDS
    for the broker to take it, then as long again for the same head as it closed its producer:
    with its consumer's own waits, past STOPS_WITHIN under load (`audit run` above). What the
    broker did not take just then is not waited for again."""
    process.up(*own_broker, tethered=True)
    stop, ready, access = asyncio.Event(), asyncio.Event(), KafkaAccess.of(acls.AUDIT)
    with open_store(None, create=True) as store:
        running = asyncio.create_task(
            audit_run(store, access, stop, LEAST_HEAD_SECONDS, ready=ready))
        try:
            await set_or_failed(ready, running)
            deadline = Deadline(STOPS_WITHIN, "a head anchored (the town's publication logged)")
            while not await anchored_heads(access):  # the heads topic known to its producer
                deadline.check("none")
                await asyncio.sleep(0.2)
            await asyncio.to_thread(process.down)
            store.append(*item(event(1)))  # a head due at the stop
            with caplog.at_level(logging.WARNING, "audit.anchor"):
                stop.set()
                await running
            ended = time.time()
        finally:
            await cancelled(running)
    *_, unanchored = [r for r in caplog.records if "is not anchored" in r.getMessage()]
    assert ended - unanchored.created < STOP_SECONDS / 2, f"{ended - unanchored.created:.1f} s"


async def test_a_send_put_back_for_a_retry_fails_once_as_its_producer_is_closed(
        own_broker: tuple[int, int]) -> None:
    """A send whose request found the broker gone (NodeNotReadyError) is put back to be sent
    again; the broker still away, the producer closed (close_producer) fails it, and aiokafka's
    callback of its first send took it out of the pending batches a second time: a KeyError's
    traceback on the loop, in a holder's log at its stop under the suite's load; and its drain's
    failure was never retrieved, a traceback too."""
    process.up(*own_broker, tethered=True)
    admin = KafkaAccess.of(config.ADMIN)
    said: list[dict[str, Any]] = []  # of this producer's batches (not earlier tests' garbage)
    asyncio.get_running_loop().set_exception_handler(lambda _, context: said.append(context) if (
        isinstance(error := context.get("exception"), KeyError)
        or CLOSED_UNSENT in str(error)) else None)
    producer = producer_for(admin)
    await producer.start()
    await deliver(producer, [Send(topics.ALERTS, None, b"the partition's leader known")])
    await asyncio.to_thread(process.down)
    sent = await producer.send(topics.ALERTS, b"put back for a retry")
    accumulator = producer._message_accumulator
    deadline = Deadline(STOPS_WITHIN, "the send put back to be sent again")
    while not any(batch._retry_count for batches in accumulator._batches.values()
                  for batch in batches):  # sent once (drained), put back
        deadline.check((accumulator._batches, accumulator._pending_batches))
        await asyncio.sleep(0.01)
    assert not await close_producer(producer, away=True)  # as the audit consumer's may
    with pytest.raises(KafkaConnectionError):
        await sent
    await asyncio.sleep(0.1)  # the callbacks of the failed send run
    assert not said, said
