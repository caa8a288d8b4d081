"""A holder renewed (`renkei holder renew`) whose running server cannot read its renewed key
files, on the real broker: it says so as an error and stops rather than settle an answer sealed
to its new key UNREADABLE, the answer left on its inbox and read at the next start."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
import pytest_asyncio

from holders import client as client_module
from holders.client import HolderClient
from holders.store import SENT, HolderStore
from processors import directory
from renkei import sealing, signers
from renkei.cli import _said
from renkei.tasks import cancelled
from tests.kafka_helpers import renkei
from tests.test_holder_renew import _seen
from tests.test_linkage import ask, bound

pytestmark = pytest.mark.asyncio(loop_scope="session")
HOLDER, PROVIDER = "nenkin", "sakura-town"
# the clock skew the requesters of the holder renewed again allow (signers.CLOCK_SKEW), its
# server's and theirs alike: the time they refuse its old key from comes without the real
# one's 30 s wait
SKEW = timedelta(seconds=10)
LATE = timedelta(seconds=3)  # how long past that time its server may take to stop (loaded)


class Unread(NamedTuple):
    """The request the renewed holder sent, its status once its server stopped (or settled
    it), what ended its server, the errors it logged, and from when its requesters refuse
    what it signs with its old key."""

    request_id: str
    status: str
    ended: BaseException | None
    errors: list[str]
    refused_from: datetime


class PastGrace(NamedTuple):
    """What ended the server of the holder renewed again (None: it ran on) and when, and from
    when its requesters refuse what it signs with its old key."""

    ended: BaseException | None
    ended_at: datetime
    refused_from: datetime


class Errors(logging.Handler):
    """The messages of the error records logged to it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def _renewed_unread(running: HolderClient) -> tuple[bytes, datetime]:
    """The holder renewed while its server runs, its sealing key file left half-written before
    the server reads it (its renewal's wait started again then); the file as renewed, and
    from when its requesters refuse a session signed with its old key, as their reading of its
    directory entry says (signers.signed_by, however soon relayed)."""
    await cancelled(running._renewal)  # its key files read once damaged, not before
    renkei("holder", "renew", HOLDER, "--reason", "鍵の定期更新", "--operator", "ops-a")
    renewed = sealing.key_file(HOLDER).read_bytes()
    sealing.key_file(HOLDER).write_bytes(renewed[:len(renewed) // 2])
    running._renewal = asyncio.create_task(running._renewed())
    entry = (await directory.current())[HOLDER]
    assert entry.signing_key is not None and entry.signing_renewed_at is not None
    read = signers.signed_by(HOLDER, entry.signing_key, entry, entry.signing_renewed_at)
    assert read.previous_until is not None
    return renewed, read.previous_until


async def _restored(clients: dict[str, HolderClient], renewed: bytes) -> None:
    """The holder's sealing key file restored as renewed, its server (stopped by what it could
    not read) started again, the session's client replaced."""
    sealing.key_file(HOLDER).write_bytes(renewed)
    await asyncio.gather(clients[HOLDER].stop(), return_exceptions=True)  # raises what ended it
    clients[HOLDER].store.close()
    clients[HOLDER] = HolderClient(HOLDER, HolderStore.of(HOLDER))
    await clients[HOLDER].start()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def unread(clients: dict[str, HolderClient]) -> Unread:
    """The holder renewed while its server runs, its sealing key file left half-written before
    the server reads it; a request of it sent once its provider seals to the new key; its
    server waited for (until_stopped) until it ends or settles the request; its key file then
    restored and its server started again (the session's client replaced)."""
    running, errors = clients[HOLDER], Errors()
    logging.getLogger("holders.client").addHandler(errors)
    renewed, refused_from = await _renewed_unread(running)
    stop = asyncio.Event()
    serving = asyncio.create_task(running.until_stopped(stop))
    signing_key = (await directory.current())[HOLDER].signing_key
    assert signing_key is not None
    await _seen(clients[PROVIDER], HOLDER, signing_key)  # its provider seals to the new key
    request_id = await ask(running, bound(running)[0], "P-037", PROVIDER, "local_tax")
    settled = asyncio.create_task(running.outcome(request_id, 30))
    await asyncio.wait({serving, settled}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
    await cancelled(settled)
    stop.set()
    ended = (await asyncio.gather(serving, return_exceptions=True))[0]
    request = running.store.request(request_id)
    assert request is not None
    logging.getLogger("holders.client").removeHandler(errors)
    await _restored(clients, renewed)
    return Unread(request_id, request.status,
                  ended if isinstance(ended, BaseException) else None, errors.messages,
                  refused_from)


async def test_a_renewed_key_file_unread_stops_the_server_with_an_error_and_loses_no_answer(
        clients: dict[str, HolderClient], unread: Unread) -> None:
    """A server that could not read its key files after its holder's renewal went on with its
    old keys, said so at warning level alone, and settled an answer sealed to its new key
    UNREADABLE: the answer lost, the request ended. It logs an error saying when its requesters
    refuse its answers, and an answer it cannot open stops it, the answer left on its inbox:
    read, FOUND, once its key file is restored and it starts again."""
    assert any("its key or password files cannot be read" in m
               and f"refuse from {unread.refused_from.isoformat()}" in m
               for m in unread.errors), (unread.refused_from, unread.errors)
    assert unread.status == SENT
    assert type(unread.ended).__name__ == "RenewalNotTaken", unread.ended
    assert f"the answer to request {unread.request_id} cannot be opened" in str(unread.ended)
    _said_in_one_line(unread.ended)
    outcome = await clients[HOLDER].outcome(unread.request_id, 30)
    assert outcome.status == "FOUND"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def past_grace(clients: dict[str, HolderClient], unread: Unread) -> PastGrace:
    """What ended the server of the holder renewed again, its key file half-written, and when,
    waited for until LATE past the time its requesters refuse the answers it signs with its old
    key, they and it allowing a clock skew of SKEW, its key files read again only once the wait
    is over (RENEWAL_AGAIN); its key file then restored and its server started again."""
    running = clients[HOLDER]
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(signers, "CLOCK_SKEW", SKEW)
        patched.setattr(client_module, "RENEWAL_AGAIN", 60.0)
        renewed, refused_from = await _renewed_unread(running)
        stop = asyncio.Event()
        serving = asyncio.create_task(running.until_stopped(stop))
        await asyncio.wait({serving}, timeout=(
            refused_from + LATE - datetime.now(UTC)).total_seconds())
        ended_at = datetime.now(UTC)
        stop.set()
        ended = (await asyncio.gather(serving, return_exceptions=True))[0]
    await _restored(clients, renewed)
    return PastGrace(ended if isinstance(ended, BaseException) else None, ended_at,
                     refused_from)


async def test_a_server_that_cannot_take_its_renewed_keys_stops_once_its_answers_are_refused(
        past_grace: PastGrace) -> None:
    """Its key files unread after its holder's renewal, a server went on answering with its old
    signing key past the signing grace, each answer refused by its requester (UNREADABLE, as
    forged), its provider's log saying FOUND; and it took its requesters to refuse them only
    from the signing grace on, where they refuse a session dated a clock skew past the renewal,
    and then read its key files again only every RENEWAL_AGAIN, answering up to that long past
    it. It stops at the time they refuse them from, saying from when, why and what to do."""
    ended = past_grace.ended
    assert type(ended).__name__ == "RenewalNotTaken", ended
    assert past_grace.refused_from <= past_grace.ended_at, past_grace
    assert (f"its requesters refuse the answers it signs with its own from "
            f"{past_grace.refused_from.isoformat()}") in str(ended), str(ended)
    assert "restore the key and password files" in str(ended)
    _said_in_one_line(ended)


def _said_in_one_line(ended: BaseException | None) -> None:
    """The CLI (`renkei holder run`) says what stopped the server in one line, no traceback."""
    assert isinstance(ended, Exception)
    said = _said(ended)
    assert said == str(ended) and "\n" not in said, said
