"""The holder library's inbox without Kafka: what the communication server does with one poll's
answers and queries (a client on a store and state folder of its own, never started)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from broker.clients import KafkaAccess
from broker.credentials import Credentials
from holders.client import BINDING, BOUND, INVESTIGATING, HolderClient, new_request_id
from holders.store import HolderStore
from registry.residents import FourAttributes, Sex
from renkei import sealing
from renkei.envelope import Send
from renkei.state import state_folder
from schemas.codec import CODEC
from schemas.messages import FOUND, BindingAnswer, BindingCandidate

HOLDER, STAFF, TERMINAL = "city-x", "staff-1", "city-x/terminal-1"
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
    """One poll's batch, as the inbox loop hands it over."""
    return await client._handle([SimpleNamespace(value=CODEC.encode(m)) for m in messages])


def binding_request(client: HolderClient, own_number: str) -> str:
    """A binding request for this record, as recorded when sent."""
    request_id = new_request_id()
    client.store.open_request(request_id, BINDING, own_number, STAFF, TERMINAL)
    return request_id


def status(client: HolderClient, request_id: str) -> str | None:
    request = client.store.request(request_id)
    return None if request is None else request.status


def found(request_id: str, link_code: str, epoch: int = 0) -> BindingAnswer:
    """The platform's answer: one resident, of the four attributes of our records."""
    sealed = sealing.seal(sealing.public_bytes(sealing.key_of(HOLDER)), CODEC.encode(PERSON),
                          request_id)
    return BindingAnswer(request_id, FOUND, "", (BindingCandidate(link_code, sealed),), epoch)


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


async def test_a_copy_of_a_binding_answer_is_only_counted(client: HolderClient) -> None:
    """Redelivered after the holder re-keyed: it must not bring back the old epoch's code."""
    client.store.add_record("H-1", PERSON)
    request_id = binding_request(client, "H-1")
    answer = found(request_id, "ABC98765XYZ")
    await handle(client, answer)
    assert client.store.rekey("ABC98765XYZ", "369PQRST246", 1) == "H-1"
    await handle(client, answer)
    assert client.store.binding("H-1") == ("369PQRST246", 1)
    assert client.store.counts(BINDING) == {BOUND: 1, "duplicates dropped": 1}
