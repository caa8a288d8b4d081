"""A holder's stop and its background tasks, on the real broker: a task's failure is told in one
line as it fails, the server stopping if it cannot answer rightly without the task (the key
epochs' following) and going on if it may for a while (the retention's purges, tried again), and
the stop runs each of its steps either way; and what a stop says of a step that did not end in
time is what is known of it."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker import config, provision, topics
from broker.clients import KafkaAccess
from holders import client as client_module
from holders.client import HolderClient
from holders.store import HolderStore
from renkei import retention
from renkei import town as town_setup
from renkei.cli import _said
from renkei.envelope import Send
from renkei.service_loop import AWAY_AT_STOP, CUT_AT_STOP
from renkei.state import InUse
from schemas.codec import CODEC
from schemas.messages import Pong
from tests.kafka_helpers import producer
from tests.loop_helpers import Deadline

HOLDER = "tomaru-town"
WITHIN = 5.0  # seconds for a failure to be told, and the server to stop on it
EVERY_STEP = {"producer": True, "inbox": True, "directory": True, "store": True}


@pytest.fixture(scope="module")
def provisioned(town: town_setup.Town) -> str:
    """A holder on the broker (its principal, topics and ACLs), not in the directory."""
    provision.add_holder(provision.admin_client(), HOLDER, provision.Report())
    return HOLDER


async def _stopped_every_step(client: HolderClient) -> None:
    """The client's stop: it raised nothing, and did each of its steps."""
    raised = (await asyncio.gather(client.stop(), return_exceptions=True))[0]
    assert raised is None, repr(raised)
    assert _stopped_whole(client) == EVERY_STEP


def _stopped_whole(client: HolderClient) -> dict[str, bool]:
    """Which of the stop's steps were done: the producer closed, the inbox loop ended, the
    directory no longer followed, the store let go (another client may start on it)."""
    try:
        with client.store.held("a client after the stop"):
            let_go = True
    except InUse:
        let_go = False
    directory = client.directory._task
    return {"producer": bool(client._producer._closed),
            "inbox": client._inbox is not None and client._inbox.done(),
            "directory": directory is None or directory.done(), "store": let_go}


def _told(caplog: pytest.LogCaptureFixture, *loggers: str) -> list[str]:
    """What these loggers said (of the levels caught)."""
    return [r.getMessage() for r in caplog.records if r.name in loggers]


def _damaged(folder: Path) -> Any:
    """A read of a store whose file is damaged: SQLite's own error (no database there)."""
    (folder / "damaged.db").write_bytes(b"not a database, " * 512)
    with closing(sqlite3.connect(folder / "damaged.db")) as damaged:
        return damaged.execute("SELECT min(deadline) FROM held_queries").fetchone()


async def test_a_failure_following_the_key_epochs_is_logged_stops_the_server_and_its_stop(
        provisioned: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The following of its unit's key epochs (_follow_epochs: the bindings re-keyed, the
    queries held back meanwhile answered or ended), a task nobody awaited but the stop, ended at
    a failure it does not go on past (its store's read refused) unsaid, the server going on
    without it; and the stop raised that failure before it closed the producer, waited for the
    inbox and stopped the directory. It is logged in one line as it fails and stops the server
    (until_stopped raises it, which the CLI says in that line), and the stop runs every step."""
    client = HolderClient(provisioned, HolderStore(tmp_path / "holder.db"))
    await client.start()
    try:
        serving = asyncio.create_task(client.until_stopped(asyncio.Event()))
        with caplog.at_level(logging.ERROR, "holders.client"):
            monkeypatch.setattr(client.store, "held_due", lambda: _damaged(tmp_path))
            client._held_more.set()  # its held queries looked at again: the read refused
            await asyncio.wait({serving}, timeout=WITHIN)
            told = _told(caplog, "holders.client")  # not what its stop says (a late close)
        await _stopped_every_step(client)
        assert serving.done(), "the server went on without following its key epochs"
        failure = serving.exception()
        assert isinstance(failure, client_module.EpochsNotFollowed), repr(failure)
        assert told == [_said(failure)] == [
            f"{provisioned}: following its link-code unit's key epochs failed (DatabaseError: "
            "file is not a database): its bindings are no longer re-keyed, nor the queries "
            "held back answered; it stops: start it again (a move made meanwhile is followed "
            "at its start)"]
    finally:
        client.store.close()


async def test_a_failure_forgetting_past_the_retention_is_logged_and_the_server_goes_on(
        provisioned: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The purge of what its store keeps past the access log's retention (retention.keep), on
    a connection of its own, ended for good at a failure other than SQLite's own (its store not
    opened: the OSError sqlite.connected raises on a full disk) unsaid, nothing forgotten after
    while the server ran; and the stop raised it before its every other step (the store too
    kept held). It is logged in one line as it fails and tried again at the next time, the
    server going on; the stop runs every step."""
    def unopened(path: Path) -> HolderStore:
        raise OSError(None, "cannot open a SQLite store (database or disk is full)", str(path))

    monkeypatch.setattr(client_module, "HolderStore", unopened)  # the purges' own connection
    monkeypatch.setattr(retention, "FORGET_EVERY", 0.2)
    client = HolderClient(provisioned, HolderStore(tmp_path / "holder.db"))
    try:
        with caplog.at_level(logging.WARNING, "renkei.retention"):
            await client.start()
            serving = asyncio.create_task(client.until_stopped(asyncio.Event()))
            deadline = Deadline(WITHIN, "the purge's failure told, and the purge tried again")
            while len(_told(caplog, "renkei.retention")) < 2:
                deadline.check(_told(caplog, "renkei.retention"))
                await asyncio.sleep(0.05)
        assert not serving.done(), "the server stopped"
        await _stopped_every_step(client)
        await asyncio.wait({serving})
        assert set(_told(caplog, "renkei.retention")) == {
            f"{provisioned}: forgetting what is past the retention stopped (OSError: [Errno None]"
            f" cannot open a SQLite store (database or disk is full): '{tmp_path}/holder.db'): "
            "what it keeps past it is kept until the next time, in 0 s"}
    finally:
        client.store.close()


async def test_a_stop_its_batch_slow_at_says_so_not_that_the_broker_was_away(
        provisioned: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A batch of its inbox still handled STOP_SECONDS after the stop (a slow handler, the
    broker there) is given up, and said so: the stop said the broker could not be reached,
    twice (serve's line, and the holder's at its producer's close), though the broker answered
    its every step. serve says the batch had not ended (a slow handler, or one waiting for the
    broker), the holder that its producer was closed at once for it; a stop whose step that
    waits for the broker alone did not end in time (the broker away, most likely) is said so
    (test_stop_broker_away)."""
    handling = asyncio.Event()

    async def slow(records: list[Any]) -> Sequence[Send]:
        handling.set()
        await asyncio.sleep(60)
        return []

    client = HolderClient(provisioned, HolderStore(tmp_path / "holder.db"))
    monkeypatch.setattr(client, "_handle", slow)
    await client.start()
    try:
        async with producer(KafkaAccess.of(config.ADMIN)) as platform:  # passed over by the
            now = datetime.now(UTC)  # holder's own handler, should it ever read it again
            await platform.send_and_wait(topics.inbox(provisioned),
                                         CODEC.encode(Pong("slow-batch", now, now)))
        async with asyncio.timeout(WITHIN):
            await handling.wait()
        with caplog.at_level(logging.WARNING):
            await client.stop()
        said = _told(caplog, "renkei.service_loop", "holders.client")
        assert said == [CUT_AT_STOP, f"{provisioned}: its producer closed at shutdown at once, "
                        "a step of its inbox's stop not having ended in time (said before): 0 "
                        "request(s) kept, sent at the next start"], said
        assert AWAY_AT_STOP not in said
    finally:
        client.store.close()


@pytest.mark.parametrize("step", ["_send_kept", "serving"])
async def test_a_start_cancelled_midway_stops_what_it_started(
        provisioned: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """A start cancelled (another library's failed to start: scenario.started_clients) as it
    sent the requests kept, or joined its inbox group, let go of its store alone: its directory
    view was followed on and its producer left open ("Unclosed AIOKafkaProducer"). It stops
    what it started, as a stop does (the producer at once), the store let go."""
    reached = asyncio.Event()

    async def waiting(*args: Any, **kwargs: Any) -> None:
        reached.set()
        await asyncio.sleep(60)

    client = HolderClient(provisioned, HolderStore(tmp_path / "holder.db"))
    monkeypatch.setattr(client if step == "_send_kept" else client_module, step, waiting)
    starting = asyncio.create_task(client.start())
    try:
        async with asyncio.timeout(30):
            await reached.wait()
        starting.cancel()
        await asyncio.wait({starting}, timeout=WITHIN)
        assert starting.cancelled()
        assert _stopped_whole(client) == {**EVERY_STEP, "inbox": False}  # it never started
    finally:
        client.store.close()
