"""A service started while the broker is away waits for it, saying so, instead of crashing or
hanging: it starts once the broker is there, and stops at once if told to meanwhile. A one-off
command says in one line that the broker cannot be reached, and ends."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from audit.anchor import consumer_commit
from audit.recommit import commit_as_member
from broker import acls, config, repeats, topics
from broker.clients import KafkaAccess, started
from broker.membership import GroupMember
from renkei import town as town_setup
from renkei.bare import Sizes
from renkei.bare_holder import BareHolder
from renkei.compacted import CompactedView, NotFollowing
from renkei.state import private_dir
from renkei.window import Window
from tests.kafka_helpers import (
    forwarder,
    free_port,
    opened_by_cancelled,
    renkei,
    said_in_one_line,
    spawn,
    stop,
)

WAITING = "cannot reach the broker at"


def _away(access: KafkaAccess, port: int) -> KafkaAccess:
    """The same principal, told to find the broker where nothing listens (yet)."""
    return dataclasses.replace(access, bootstrap=f"127.0.0.1:{port}")


async def test_a_view_started_while_the_broker_is_away_loads_once_it_is_there(
        town: town_setup.Town, caplog: pytest.LogCaptureFixture) -> None:
    platform = KafkaAccess.of(acls.PLATFORM)
    port = free_port()
    view = CompactedView(_away(platform, port), topics.DIRECTORY, bytes)
    await view.start()
    loading = asyncio.create_task(view.loaded())
    try:
        await asyncio.sleep(3)
        assert not loading.done(), "the view gave up (or loaded) while the broker was away"
        assert any(WAITING in r.getMessage() for r in caplog.records)
        async with forwarder(port, platform.bootstrap):
            began = time.monotonic()
            await asyncio.wait_for(loading, 30)
            print(f"\nloaded {time.monotonic() - began:.1f} s after the broker came")
        assert view.entries, "the holder directory is not empty"
    finally:
        loading.cancel()
        await view.stop()


async def test_a_view_stopped_before_it_loaded_tells_who_waits_that_it_stopped(
        town: town_setup.Town) -> None:
    """A view stopped while the broker was away, before it loaded, had `loaded` raise
    CancelledError, as if its caller itself had been cancelled, one catching NotFollowing
    missing it: it is told NotFollowing, the view stopped, and so is a caller after."""
    view = CompactedView(_away(KafkaAccess.of(acls.PLATFORM), free_port()), topics.DIRECTORY,
                         bytes)
    await view.start()
    loading = asyncio.create_task(view.loaded())
    stopped = r"stopped following renkei\.directory: the view was stopped"
    try:
        await asyncio.sleep(1)
        assert not loading.done()
        await view.stop()
        with pytest.raises(NotFollowing, match=stopped):
            await asyncio.wait_for(loading, 5)
        with pytest.raises(NotFollowing, match=stopped):
            await view.loaded()
    finally:
        loading.cancel()
        await view.stop()


async def test_a_view_that_cannot_follow_its_topic_says_why_instead_of_waiting_forever(
        holders: list[str]) -> None:
    view = CompactedView(KafkaAccess.of(holders[0]), topics.AUDIT, bytes)  # not a holder's
    await view.start()
    try:
        with pytest.raises(NotFollowing, match="TopicAuthorizationFailed"):
            await asyncio.wait_for(view.loaded(), 30)
    finally:
        await view.stop()


@pytest.mark.parametrize("command", [
    ("platform", "run"), ("audit", "run", "--db", "{tmp}/audit.db"), ("registry", "serve"),
    ("authority", "serve"), ("holder", "run", "{holder}")], ids=lambda c: " ".join(c[:2]))
def test_a_service_waiting_for_the_broker_stops_at_once_when_told(
        command: tuple[str, ...], holders: list[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENKEI_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    log = tmp_path / "service.log"
    proc = spawn(*(a.format(tmp=tmp_path, holder=holders[0]) for a in command), log=log)
    try:
        deadline = time.monotonic() + 30
        while WAITING not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, f"{command} ended: {log.read_text()}"
            time.sleep(0.2)
        assert WAITING in log.read_text(), log.read_text()
        time.sleep(2.5)  # a second attempt, still waiting
        assert proc.poll() is None, log.read_text()
        proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert proc.wait(10) == 0, log.read_text()
        print(f"\n{' '.join(command[:2])}: stopped {time.monotonic() - began:.2f} s after SIGTERM")
    finally:
        stop(proc)
    text = log.read_text()
    assert "Traceback" not in text and "Unclosed" not in text, text
    assert text.count(WAITING) <= 2, "said once per client that waits (a view each), not per try"
    assert text.count("Unable connect to") == 1, "aiokafka's own error: once, not on every try"


@pytest.mark.parametrize("command", [
    ("oversight", "alerts"), ("oversight", "holder-logs", "--holder", "{holder}", "--request",
                              "r-1", "--basis", "a law"),
    ("audit", "replay", "--db", "{tmp}/replayed.db"), ("patterns", "publish"),
    ("directory", "publish-services"), ("broker", "provision"), ("broker", "add-holder", "x-new"),
    ("holder", "register", "x-new", "--name", "新", "--role", "municipality"),
    ("keys", "rekey", "{holder}")],
    ids=lambda c: " ".join(c[:2]))
@pytest.mark.usefixtures("platform")  # its audit consumer makes the store `audit replay` reads
def test_a_command_said_in_one_line_that_the_broker_is_away(
        command: tuple[str, ...], holders: list[str], tmp_path: Path) -> None:
    """Not a traceback (nor, for an admin request, one after waiting 30 s for the broker), nor
    the client's own 'Unable connect' line before it."""
    away = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    ended = renkei(*(a.format(tmp=tmp_path, holder=holders[0]) for a in command), check=False,
                   env={"RENKEI_BOOTSTRAP": away}, timeout=20)
    print(f"\n{' '.join(command[:2])}: ended {time.monotonic() - began:.1f} s after it began")
    assert ended.returncode == 1, ended
    said = ended.stdout + ended.stderr
    said_in_one_line(said, f"cannot reach the broker at {away}: is it running?")
    assert len(said.strip().splitlines()) == 1, f"more than the one line: {said}"


@pytest.mark.usefixtures("platform")  # its audit consumer makes the store `audit replay` reads
def test_a_replay_that_cannot_reach_the_broker_leaves_no_store_of_its_own(
        holders: list[str]) -> None:
    """It made its replay-<time>.db in the state folder, then failed on the broker: an empty
    store was left behind at every try."""
    folder = private_dir("audit")
    before = set(folder.glob("replay-*"))
    ended = renkei("audit", "replay", check=False,
                   env={"RENKEI_BOOTSTRAP": f"127.0.0.1:{free_port()}"}, timeout=20)
    assert ended.returncode == 1 and "cannot reach the broker" in ended.stderr, ended
    assert set(folder.glob("replay-*")) == before


def test_aiokafka_says_the_same_line_once_a_minute_not_on_every_try(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    repeats.install()
    node = uuid.uuid4().hex  # lines no other test has said
    fetcher, client = logging.getLogger("aiokafka.consumer.fetcher"), logging.getLogger("aiokafka")
    # at ERROR whatever a command run in this process before left aiokafka at (a chaos command
    # sets it CRITICAL: its retries are the point there)
    with caplog.at_level(logging.ERROR), caplog.at_level(logging.ERROR, logger="aiokafka"):
        for _ in range(100):
            fetcher.error("Failed fetch messages from %s: NodeNotReadyError", node)
            client.error("Unable connect to node with id %s", node)
        fetcher.error("Failed fetch messages from %s: NodeNotReadyError", f"{node}-2")
        logging.getLogger("renkei.example").error("ours: %s", node)  # not aiokafka's: as it is
        logging.getLogger("renkei.example").error("ours: %s", node)
        monkeypatch.setattr(repeats, "SAID_EVERY", 0.05)
        time.sleep(0.1)  # a minute later
        client.error("Unable connect to node with id %s", node)
    assert [r.getMessage() for r in caplog.records] == [
        f"Failed fetch messages from {node}: NodeNotReadyError",
        f"Unable connect to node with id {node}",
        f"Failed fetch messages from {node}-2: NodeNotReadyError",
        f"ours: {node}", f"ours: {node}",
        f"Unable connect to node with id {node}"]


@pytest.mark.parametrize("cancelled_at", [1, 2], ids=["bootstrap", "after-bootstrap"])
async def test_a_client_whose_start_is_cancelled_leaves_no_connection_open(
        town: town_setup.Town, cancelled_at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client whose start was cancelled (its service told to stop while it started) was left
    unstopped, its connections open until the collector found them ("Unclosed
    AIOKafkaConnection", in whatever ran then): its start is cancelled right after it opens its
    `cancelled_at`-th broker connection (the first is bootstrap's)."""
    access = KafkaAccess.of(acls.PLATFORM)
    consumer = AIOKafkaConsumer(topics.DIRECTORY, **access.reading(), group_id=None)
    opened = await opened_by_cancelled(monkeypatch, cancelled_at, started(consumer, access))
    assert [c for c in opened if c.connected()] == []


async def _window_opened(holders: list[str]) -> Coroutine[Any, Any, Any]:
    return Window(KafkaAccess.of(config.ADMIN), [topics.DIRECTORY]).__aenter__()


async def _audit_commit_as_it_is(holders: list[str]) -> Coroutine[Any, Any, Any]:
    """The audit consumer's commit made again as a member of its group (the offset and note
    read first, by a client of their own)."""
    access = KafkaAccess.of(acls.AUDIT)
    return commit_as_member(access, "cancelled-start", *await consumer_commit(access))


async def _bare_holder_started(holders: list[str]) -> Coroutine[Any, Any, Any]:
    return BareHolder(holders[0], Sizes(1, 1, 1, 1)).start()


@pytest.mark.parametrize("work", [_window_opened, _audit_commit_as_it_is, _bare_holder_started],
                         ids=["fuzz window", "audit recommit", "bare holder"])
async def test_a_command_whose_client_start_is_cancelled_leaves_no_connection_open(
        holders: list[str], work: Callable[[list[str]], Awaitable[Coroutine[Any, Any, Any]]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients Renkei started by themselves, not through broker.clients.started or
    running, were left unstopped, and their connections open, if their start failed or was
    cancelled (a command interrupted while it started)."""
    opened = await opened_by_cancelled(monkeypatch, 2, await work(holders))
    assert [c for c in opened if c.connected()] == []


async def test_a_group_member_whose_start_is_tried_again_watches_its_sends_once() -> None:
    """started() tries a consumer's start again every few seconds while the broker cannot be
    reached; a group member wrapped its client's send anew at each try, so after a long outage
    every request went through as many wrappers (a recursion limit after ~1,000 tries)."""
    member = GroupMember(group_id="renkei-test.watched-once",
                         bootstrap_servers=f"127.0.0.1:{free_port()}", request_timeout_ms=1000)
    for _ in range(3):
        with pytest.raises(KafkaConnectionError):
            await member.start()
    send, depth = member._client.send, 0
    while getattr(send, "__name__", "") == "watched":
        depth += 1
        send = next(cell.cell_contents for cell in send.__closure__ or ()
                    if callable(cell.cell_contents))
    await member.stop()
    assert depth == 1
