"""A holder's start: its steps that wait for the broker overlap where nothing is sent early."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from broker import config, topics
from broker.clients import KafkaAccess
from broker.clients import started as started_on
from broker.credentials import Credentials
from holders import client as client_module
from holders.client import HolderClient, new_request_id
from holders.store import PROVIDER, HolderStore
from renkei import sealing
from renkei import town as town_setup
from renkei.state import InUse, state_folder
from schemas.codec import CODEC
from schemas.messages import FOUND, TIMED_OUT, ProviderAnswer, ProviderQuery
from tests.kafka_helpers import producer, renkei

HOLDER = "start-town"
INSTANCE = "start-test"  # a static member of its own: no other holder library's


@pytest.fixture(scope="module")
def registered(town: town_setup.Town) -> str:
    renkei("holder", "register", HOLDER, "--name", "始町", "--role", "municipality")
    return HOLDER


async def test_a_holder_starts_its_producer_while_the_directory_loads(
        registered: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer's log-in went on only once the whole directory was read (~50 ms of each
    start, idle); the directory is still read whole before the start ends."""
    producer_up = asyncio.Event()

    async def started(client: Any, access: KafkaAccess) -> None:
        await started_on(client, access)
        producer_up.set()
    monkeypatch.setattr(client_module, "started", started)
    client = HolderClient(registered, HolderStore(tmp_path / "holder.db"), instance=INSTANCE)
    loaded = client.directory.loaded

    async def after_the_producer() -> None:
        async with asyncio.timeout(10):
            await producer_up.wait()
        await loaded()
    monkeypatch.setattr(client.directory, "loaded", after_the_producer)
    await client.start()
    try:
        assert client.entry(registered).holder_id == registered
    finally:
        await client.stop()
        client.store.close()


async def test_a_holder_whose_key_is_not_the_directorys_keeps_no_producer(
        registered: str, tmp_path: Path) -> None:
    """Its producer, started while the directory loads, is closed when the key check refuses
    the start: no connection is left open to send under a key no answer could be sealed to."""
    client = HolderClient(registered, HolderStore(tmp_path / "holder.db"), instance=INSTANCE)
    client._key = X25519PrivateKey.generate()
    with pytest.raises(sealing.BadSealingKey, match=r"is not the one the holder directory has"
                       r".*`renkei holder renew \S+` stopped half-way: run it again"):
        await client.start()
    conns = client._producer.client._conns.values()
    assert not any(conn.connected() for conn in conns) and client._inbox is None
    await client.directory.stop()
    client.store.close()


async def test_a_query_read_after_its_deadline_at_the_start_is_not_answered(
        registered: str, tmp_path: Path) -> None:
    """A query left in the inbox past its deadline while the holder was down (read again after
    a crash, say) was judged by its own append time alone, the only one in the batch, and
    answered: past its deadline, the platform refuses the answer, and of an answer it relayed
    before the crash, the provider's entry ended as not provided. The broker's time is read at
    the start: the query is logged TIMED_OUT, and no answer sent."""
    late = ProviderQuery(new_request_id(), b"ticket", "ABC98765XYZ", registered, "P-1",
                         "local_tax", datetime.now(UTC) + timedelta(seconds=1))
    async with producer(KafkaAccess.of(config.ADMIN)) as admin:
        await admin.send_and_wait(topics.inbox(registered), CODEC.encode(late))
    await asyncio.sleep(2)
    client = HolderClient(registered, HolderStore(tmp_path / "holder.db"), instance=INSTANCE)
    await client.start()
    try:
        for _ in range(200):  # the inbox read, up to 20 s
            if entries := client.store.access_log(late.request_id):
                break
            await asyncio.sleep(0.1)
    finally:
        await client.stop()
        client.store.close()
    assert [e.outcome for e in entries] == [TIMED_OUT]


def _logged_found(store: HolderStore, registered: str) -> ProviderQuery:
    """A query due in a second, its answer logged FOUND (the data sent), as read: its deadline
    to the millisecond."""
    query = CODEC.decode(CODEC.encode(ProviderQuery(
        new_request_id(), b"ticket", "ABC98765XYZ", registered, "P-1", "local_tax",
        datetime.now(UTC) + timedelta(seconds=1))), ProviderQuery)
    store.log(query.request_id, PROVIDER, "SYSTEM", "t", FOUND, counterpart=query.requester,
              pattern_id=query.pattern_id, data_type=query.data_type, deadline=query.deadline,
              content='{"taxable_income":"3200000"}')
    return query


async def test_an_answer_logged_before_a_crash_and_never_sent_ends_timed_out_when_read_late(
        registered: str, tmp_path: Path) -> None:
    """The provider logged its answer (FOUND, the data sent) and was killed before the broker
    had it; read again after its deadline, the query was logged TIMED_OUT, which the entry
    already there ignored: FOUND stayed, though nothing was sent. Its outbox, which lacks the
    answer, now tells: the entry ends TIMED_OUT, no data said sent."""
    store = HolderStore(tmp_path / "holder.db")
    late, after = _logged_found(store, registered), _logged_found(store, registered)
    async with producer(KafkaAccess.of(config.ADMIN)) as admin:
        for query in (late, after):  # one partition: `after` read once `late` is
            await admin.send_and_wait(topics.inbox(registered), CODEC.encode(query), key=b"k")
    await asyncio.sleep(2)
    client = HolderClient(registered, store, instance=INSTANCE)
    await client.start()
    try:
        for _ in range(200):  # the inbox read, up to 20 s
            if store.access_log(after.request_id)[0].outcome == TIMED_OUT:
                break
            await asyncio.sleep(0.1)
    finally:
        await client.stop()
    [entry] = store.access_log(late.request_id)
    store.close()
    assert (entry.outcome, entry.content) == (TIMED_OUT, None)


async def test_an_answer_the_outbox_has_is_told_sent(registered: str, tmp_path: Path) -> None:
    """Killed after the broker had the answer (before the inbox's commit): its entry stays."""
    store = HolderStore(tmp_path / "holder.db")
    late, unsent = _logged_found(store, registered), _logged_found(store, registered)
    async with producer(KafkaAccess.of(config.ADMIN)) as admin:
        await admin.send_and_wait(topics.outbox(registered), CODEC.encode(ProviderAnswer(
            late.request_id, late.ticket, late.link_code, FOUND, b"sealed")))
    client = HolderClient(registered, store, instance=INSTANCE)
    try:
        sent = await client._answers_sent([late, unsent], datetime.now(UTC) + timedelta(seconds=2))
    finally:
        await client.directory.stop()
        store.close()
    assert sent == {late.request_id}


# A holder library starting on a store in a process of its own, its broker not reachable (it
# tries again until stopped): its start under way, as a server's waiting for the broker is.
_STARTING = """
import asyncio, sys
from pathlib import Path
from broker.clients import KafkaAccess
from broker.credentials import Credentials
from holders.client import HolderClient
from holders.store import HolderStore
from renkei.state import state_folder

async def start(folder):
    await HolderClient("city-x", HolderStore(folder / "holder.db"),
                       KafkaAccess("127.0.0.1:9", Credentials("city-x", "-"))).start()

with state_folder(Path(sys.argv[1]) / "state"):
    asyncio.run(start(Path(sys.argv[1])))
"""


async def test_a_second_holder_library_on_a_store_is_refused_at_its_start(
        tmp_path: Path) -> None:
    """Two holder libraries (servers) started on one store both ran, each sending the requests
    kept and answering each query, each logged twice: the second is refused at its start,
    naming the store and the process that has it; the lock goes with that process, killed, and
    with a client's start given up in this one."""
    first = await asyncio.create_subprocess_exec(sys.executable, "-c", _STARTING, str(tmp_path),
                                                 stderr=asyncio.subprocess.PIPE)
    try:
        assert first.stderr is not None
        said = b""
        while b"cannot reach the broker" not in said:  # its start is under way
            line = await asyncio.wait_for(first.stderr.readline(), 20)
            assert line, f"the first holder library ended: {said.decode()}"
            said += line
        with state_folder(tmp_path / "state"):
            second = HolderClient("city-x", HolderStore(tmp_path / "holder.db"),
                                  KafkaAccess("127.0.0.1:9", Credentials("city-x", "-")))
            with pytest.raises(InUse) as refused:
                await asyncio.wait_for(second.start(), 5)
            first.kill()  # a crash: the OS lets its lock go
            await first.wait()
            with pytest.raises(TimeoutError):  # past the lock, to the broker: given up
                await asyncio.wait_for(second.start(), 0.5)
            with second.store.held("a third"):  # let go by the start given up
                pass
            await second.stop()
            second.store.close()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert str(refused.value) == (f"another holder library of city-x is running in "
                                  f"{tmp_path / 'holder.db'} (process {first.pid}): wait for "
                                  "it to end")
