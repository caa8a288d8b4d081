"""A running service whose broker goes away (stopped, killed, its disk full) says so once, in
its own words, since when, and that it waits; and once when the broker is back, after how long:
not only aiokafka's lines of each failed try."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker import acls, presence, topics
from broker.clients import KafkaAccess
from broker.presence import BrokerGone, Presence
from portal.inbox import Inbox
from portal.kafka import Platform as PortalSide
from renkei.envelope import Send
from renkei.service_loop import serving
from tests.kafka_helpers import forwarder, free_port

AWAY, BACK = "is away since", "is back, after"
AT = datetime(2026, 12, 7, 8, 5, 33, tzinfo=UTC)


def test_the_broker_going_and_coming_back_is_said_once_each() -> None:
    seen = Presence("127.0.0.1:19092", "renkei-registry")
    said = [seen.seen(reached, AT + timedelta(seconds=s))
            for s, reached in [(0, True), (5, False), (10, False), (15, False), (95, True),
                               (100, True)]]
    assert said == [
        None,
        "renkei-registry: the broker at 127.0.0.1:19092 is away since 2026-12-07 08:05:38 UTC "
        "(no node takes a connection): waiting for it; `renkei broker status` says why",
        None, None,
        "renkei-registry: the broker at 127.0.0.1:19092 is back, after 90 s away (since "
        "2026-12-07 08:05:38 UTC)",
        None]


async def _taking_connections() -> asyncio.Server:
    """A node that takes connections (and closes them)."""
    return await asyncio.start_server(lambda _, writer: writer.close(), "127.0.0.1", 0)


async def test_a_cluster_with_one_node_of_three_left_is_said_away() -> None:
    """Two of a three-node cluster lost, the node left still takes connections, though with no
    quorum nothing is served (test_cluster: records refused): its services, which asked only
    whether a node took a connection, never said their broker was away. A majority of the
    nodes taking connections is a cluster there."""
    nodes = [await _taking_connections() for _ in range(2)]
    taking = [f"127.0.0.1:{node.sockets[0].getsockname()[1]}" for node in nodes]
    lost = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    try:
        one_left = ",".join([taking[0], *lost])
        with pytest.raises(BrokerGone, match=r"away at .* was not back within 0 s"):
            await asyncio.wait_for(presence.away_for(one_left, 0, "renkei-registry"), 3)
        with pytest.raises(TimeoutError):  # looked at, there: looked at again in 5 s
            await asyncio.wait_for(presence.away_for(",".join([*taking, lost[0]]), 0,
                                                     "renkei-registry"), 1)
    finally:
        for node in nodes:
            node.close()
    seen = Presence(one_left, "renkei-registry")
    assert seen.seen(False, AT) == (
        f"renkei-registry: the broker at {one_left} is away since 2026-12-07 08:05:33 UTC "
        "(fewer than 2 of its 3 nodes take a connection: no quorum, nothing served): waiting "
        "for it; `renkei broker status` says why")


async def _said(caplog: pytest.LogCaptureFixture, text: str, within: float) -> list[str]:
    """The Renkei lines saying `text`, once one has been said (or `within` s have passed)."""
    for _ in range(int(within / 0.05)):
        if found := [r.getMessage() for r in caplog.records
                     if text in r.getMessage() and not r.name.startswith("aiokafka")]:
            return found
        await asyncio.sleep(0.05)
    return []


async def test_a_service_says_once_that_its_broker_went_away_and_once_that_it_is_back(
        holders: list[str], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "WATCH_SECONDS", 0.1)
    holder, port = holders[0], free_port()
    group = f"{acls.holder_group(holder)}presence-test"  # under the holder's group prefix
    own = KafkaAccess.of(holder)
    access = dataclasses.replace(own, bootstrap=f"127.0.0.1:{port}")

    async def handle(records: list[Any]) -> list[Send]:
        return []

    stop = asyncio.Event()
    caplog.set_level(logging.WARNING)
    async with forwarder(port, own.bootstrap):
        task = await serving(access, [topics.inbox(holder)], group, handle,
                             stop)
    try:
        away = await _said(caplog, AWAY, 5)
        await asyncio.sleep(0.5)  # a few more looks, the broker still away: nothing more said
        assert len(away) == 1 == len(await _said(caplog, AWAY, 0.1)), away
        assert away[0].startswith(f"{group}: the broker at 127.0.0.1:{port} is "
                                  "away since ")
        async with forwarder(port, own.bootstrap):
            back = await _said(caplog, BACK, 5)
            assert len(back) == 1 and f"127.0.0.1:{port} is back, after" in back[0], back
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.usefixtures("town")
async def test_my_portal_says_once_that_its_broker_went_away_and_once_that_it_is_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """My Portal is no service loop's (its Kafka side follows topics of its own): its broker
    gone, it said nothing, its pages failing or waiting without a line saying why."""
    monkeypatch.setattr(presence, "WATCH_SECONDS", 0.1)
    port = free_port()
    portal, oversight = (KafkaAccess.of(who) for who in (acls.PORTAL, acls.OVERSIGHT))
    away_port = f"127.0.0.1:{port}"
    side = PortalSide(dataclasses.replace(portal, bootstrap=away_port),
                      dataclasses.replace(oversight, bootstrap=away_port),
                      Inbox(tmp_path / "inbox.db"))
    caplog.set_level(logging.WARNING)
    try:
        async with forwarder(port, portal.bootstrap):
            await side.start()
        away = await _said(caplog, AWAY, 5)
        assert len(away) == 1, away
        assert away[0].startswith(f"renkei-portal: the broker at {away_port} is away since ")
        async with forwarder(port, portal.bootstrap):
            back = await _said(caplog, BACK, 5)
            assert len(back) == 1 and f"{away_port} is back, after" in back[0], back
    finally:
        await side.stop()
